"""Loss landscapes near a minimum.

A landscape knows its Hessian ``H`` (the curvature the optimizer feels) and, for the
expected-loss readouts, how to turn the stationary covariance of the deviation ``θ − θ*``
into an expected loss.

Three forms of ``H`` are supported:

* a scalar (symbol or number): a one-dimensional problem;
* an explicit ``sympy.Matrix`` (numeric or symbolic entries);
* commuting eigen-modes (:meth:`Quadratic.commuting`): ``H``, the noise covariance ``C`` and the
  preconditioner share eigenvectors, each mode is solved as a scalar problem in the mode's
  eigenvalues, and the answer is read as a matrix function of ``H`` and ``C``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ._util import _entry, as_matrix, check_psd, check_symmetric

__all__ = [
    "COUPLING",
    "Landscape",
    "LinearRegression",
    "Quadratic",
    "RangeReduction",
    "SampledLandscape",
    "isserlis_quartic",
]

#: The cross-mode trace κ = Tr(A E[uuᵀ]) of an eigen-mode landscape (``eigenmode=True``): one
#: mode's problem cannot see the other modes, so its minibatch noise and loss hold κ as this
#: symbol; :func:`symsgd.stationary` closes it self-consistently (:func:`symsgd.modes.close_trace`).
COUPLING = sp.Symbol("kappa", nonnegative=True)


@dataclass(frozen=True)
class Landscape:
    """Abstract base: a loss with Hessian ``hessian`` (``dim × dim``) at its minimum."""

    hessian: sp.ImmutableMatrix
    #: True for eigen-mode problems: ``hessian`` is the 1×1 matrix of one mode's eigenvalue.
    eigenmode: bool = False
    #: for eigen-mode problems: eigenvalue symbol -> name of the matrix it stands for.
    mode_names: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def dim(self) -> int:
        """Number of parameters (1 for scalar and eigen-mode problems)."""
        return self.hessian.rows

    def loss(self, cov: sp.MatrixBase, weight_decay=0) -> sp.Expr:
        r"""Expected loss :math:`\mathbb E[L(\theta)] = \tfrac12 \operatorname{Tr}(H\Sigma)`."""
        return sp.Rational(1, 2) * (self.hessian * cov).trace()

    def numeric_loss(self, cov, weight_decay=0) -> float:
        r""":meth:`loss` in float64 for an all-numeric problem (``cov`` a d×d array):
        :math:`\tfrac12\operatorname{Tr}(H\Sigma)`."""
        return 0.5 * float(np.einsum("ij,ji->", _floats(self.hessian), cov))

    def describe(self) -> str:
        return type(self).__name__

    def one_mode(self) -> Landscape:
        """An eigen-mode problem read as the explicit one-dimensional problem of one mode (the
        eigenvalue symbols stay; nothing couples to other modes); other landscapes unchanged.

        >>> import symsgd as ss
        >>> ss.Quadratic.commuting().one_mode()
        Quadratic(h)
        """
        if not self.eigenmode:
            return self
        from ._util import replace_fields

        land = replace_fields(self, {})
        object.__setattr__(land, "eigenmode", False)
        object.__setattr__(land, "mode_names", {})
        return land


@dataclass(frozen=True, init=False)
class Quadratic(Landscape):
    r"""The quadratic loss :math:`L(\theta) = \tfrac12 \theta^\top H \theta`.

    Parameters
    ----------
    H:
        A scalar (sympy symbol or number) or a symmetric square matrix (``sympy.Matrix``, nested
        lists or a numpy array).

    Examples
    --------
    >>> import sympy as sp
    >>> import symsgd as ss
    >>> h = sp.Symbol("h", positive=True)
    >>> ss.Quadratic(h).dim
    1
    >>> ss.Quadratic(sp.Matrix([[2, 1], [1, 2]])).dim
    2
    >>> ss.Quadratic.commuting().eigenmode
    True
    """

    def __init__(self, H, *, _modes: bool = False, _names: dict | None = None):
        matrix = as_matrix(H, "H")
        check_symmetric(matrix, "H")
        object.__setattr__(self, "hessian", matrix)
        object.__setattr__(self, "eigenmode", _modes)
        object.__setattr__(self, "mode_names", dict(_names or {}))

    @classmethod
    def commuting(cls, h: sp.Symbol | None = None) -> Quadratic:
        r"""An eigen-mode problem: ``H`` commutes with the noise covariance and preconditioner.

        The problem is solved for one mode with Hessian eigenvalue ``h`` (default: a positive
        symbol ``h``); noise and preconditioner scalars are that mode's eigenvalues of ``C``
        and ``P``.  Results print as matrix functions, e.g.
        :math:`\lambda [H(2I - \lambda H)]^{-1} C`.
        """
        h = sp.Symbol("h", positive=True) if h is None else h
        if not isinstance(h, sp.Symbol):
            raise ValueError(
                f"Quadratic.commuting(h) needs a sympy Symbol for the eigenvalue; got {h!r}."
            )
        return cls(h, _modes=True, _names={h: "H"})

    @classmethod
    def diagonal(cls, d: int, name: str = "h") -> Quadratic:
        """An explicit diagonal Hessian ``diag(h_1, …, h_d)`` with positive symbolic entries."""
        if int(d) != d or d < 1:
            raise ValueError(f"Quadratic.diagonal(d) needs a positive integer d; got {d!r}.")
        hs = sp.symbols(f"{name}_1:{int(d) + 1}", positive=True)
        return cls(sp.diag(*hs))

    @classmethod
    def symbolic(cls, d: int, name: str = "h") -> Quadratic:
        """A fully symbolic symmetric ``d × d`` Hessian with entries ``h_ij`` (i ≤ j)."""
        return cls(symmetric_matrix(d, name))

    def __repr__(self) -> str:
        if self.eigenmode:
            return f"Quadratic.commuting({self.hessian[0, 0]})"
        if self.dim == 1:
            return f"Quadratic({self.hessian[0, 0]})"
        return f"Quadratic(Matrix({sp.sstr(self.hessian.tolist())}))"


def symmetric_matrix(d: int, name: str, diagonal_positive: bool = True) -> sp.ImmutableMatrix:
    """A symmetric ``d × d`` matrix of symbols ``{name}_{ij}`` (i ≤ j), diagonal ones positive."""
    if int(d) != d or d < 1:
        raise ValueError(f"the dimension must be a positive integer; got {d!r}.")
    d = int(d)
    m = sp.zeros(d, d)
    for i in range(d):
        for j in range(i, d):
            pos = diagonal_positive and i == j
            s = (
                sp.Symbol(f"{name}_{i + 1}{j + 1}", positive=True)
                if pos
                else sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True)
            )
            m[i, j] = m[j, i] = s
    return sp.ImmutableMatrix(m)


def isserlis_quartic(A: sp.MatrixBase, M: sp.MatrixBase, trace=None) -> sp.Matrix:
    r""":math:`\mathbb E[x x^\top M x x^\top]` for :math:`x \sim N(0, A)`, by Isserlis' theorem.

    The fourth moment :math:`\mathbb E[x_i x_k x_l x_j]` is the sum over the three pairings of
    the positions (i, k, l, j) of products of covariances; ``k`` and ``l`` are contracted with
    :math:`M_{kl}`.  Each pairing becomes one matrix contraction:

    * (i k)(l j) → :math:`A M A`,  (i l)(k j) → :math:`A M^\top A`,
    * (i j)(k l) → :math:`A\,\operatorname{Tr}(A M)`.

    ``trace`` replaces :math:`\operatorname{Tr}(AM)` (for eigen-mode problems, where the trace runs
    over all modes while ``A`` and ``M`` hold one mode).

    >>> a = sp.Symbol("a", positive=True)
    >>> isserlis_quartic(sp.Matrix([[a]]), sp.Matrix([[1]]))  # E x^4 = 3 a^2
    Matrix([[3*a**2]])
    """
    A, M = sp.Matrix(A), sp.Matrix(M)
    positions = ("i", "k", "l", "j")  # x_i (x_k M_kl x_l) x_j
    out = sp.zeros(A.rows, A.cols)
    for pairing in _pairings(positions):
        pairs = {frozenset(p) for p in pairing}
        if pairs == {frozenset("ik"), frozenset("lj")}:
            out += A * M * A
        elif pairs == {frozenset("il"), frozenset("kj")}:
            out += A * M.T * A
        elif pairs == {frozenset("ij"), frozenset("kl")}:
            out += A * ((A * M).trace() if trace is None else trace)
        else:  # pragma: no cover - there are exactly three pairings of four positions
            raise AssertionError(pairing)
    return out


def _pairings(items: tuple) -> list[list[tuple]]:
    """All perfect matchings of ``items`` (Isserlis/Wick pairings)."""
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for k, partner in enumerate(rest):
        remaining = rest[:k] + rest[k + 1 :]
        for tail in _pairings(remaining):
            out.append([(first, partner), *tail])
    return out


_UNSET = object()


def _rows(value, name: str) -> list:
    """``value`` (nested lists, a numpy array or a sympy matrix) as a list of rows."""
    if isinstance(value, sp.MatrixBase):
        return value.tolist()
    if hasattr(value, "tolist") and hasattr(value, "ndim"):
        return _rows(value.tolist(), name) if value.ndim == 2 else _bad_rank(value, name)
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(r, (list, tuple)) for r in value):
            return [list(r) for r in value]
        return _bad_rank(value, name)
    raise TypeError(
        f"from_data: {name} must be an N×d array or list of rows; got {type(value).__name__} "
        f"{value!r}."
    )


def _bad_rank(value, name: str):
    shown = f"an array of shape {value.shape}" if hasattr(value, "shape") else repr(value)
    raise ValueError(f"from_data: {name} must be 2-D (one row per sample); got {shown}.")


def _flat(value, name: str) -> list:
    """A vector given as a list, a tuple, a 1-D or single-column array or a sympy matrix."""
    if isinstance(value, sp.MatrixBase):
        return list(value) if 1 in value.shape else _not_vector(value, name)
    if hasattr(value, "tolist") and hasattr(value, "ndim"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        out = []
        for entry in value:
            if isinstance(entry, (list, tuple)):
                if len(entry) != 1:
                    return _not_vector(value, name)
                entry = entry[0]
            out.append(entry)
        return out
    return [value]


def _not_vector(value, name: str):
    raise ValueError(f"{name} must be a vector (one entry per coordinate); got {value!r}.")


def _column(value, d: int, name: str = "theta_star") -> sp.ImmutableMatrix:
    """``value`` as a d×1 column of finite real entries, or an error naming ``name``."""
    entries = _flat(value, name)
    if len(entries) != d:
        raise ValueError(
            f"LinearRegression: {name} must have {d} entries (one per coordinate of A, which is "
            f"{d}×{d}); got {len(entries)}."
        )
    return sp.ImmutableMatrix([[_entry(e, name, "LinearRegression: ")] for e in entries])


def _label_variance(label_variance, label_noise, where: str) -> sp.Expr:
    """The label-noise variance from ``label_variance=`` or the deprecated ``label_noise=``."""
    if label_noise is not _UNSET:
        if label_variance is not _UNSET:
            raise TypeError(
                f"{where}: pass the label-noise variance once, as label_variance=σ²; "
                f"label_noise= is its deprecated old name."
            )
        warnings.warn(
            f"{where}: label_noise= is deprecated because it takes the variance σ² while "
            f"ss.label_noise is the standard deviation σ; use label_variance= (same value).",
            DeprecationWarning,
            stacklevel=3,
        )
        label_variance = label_noise
    return sp.S.Zero if label_variance is _UNSET else label_variance


@dataclass(frozen=True)
class SampleSums:
    r"""Sums over the per-sample gradient terms :math:`X_i\delta - c_i` of a finite data set:
    ``X_sum`` :math:`= \sum_iX_i`, ``c_sum`` :math:`= \sum_ic_i`, ``cc`` :math:`=
    \sum_ic_ic_i^\top`, and :meth:`own` :math:`(\Sigma) = \sum_iX_i\Sigma X_i`."""

    X_sum: sp.ImmutableMatrix
    c_sum: sp.ImmutableMatrix
    cc: sp.ImmutableMatrix
    #: numeric terms: (a, b, c, e) -> Σ_i X_i[a, b] X_i[c, e]; None when the terms hold symbols
    tensor: dict | None
    terms: tuple

    @classmethod
    def of(cls, terms: list, d: int) -> SampleSums:
        X_sum = sum((sp.Matrix(X) for X, _ in terms), sp.zeros(d, d))
        c_sum = sum((sp.Matrix(c) for _, c in terms), sp.zeros(d, 1))
        cc = sum((sp.Matrix(c) * sp.Matrix(c).T for _, c in terms), sp.zeros(d, d))
        numeric = all(not sp.Matrix(X).free_symbols for X, _ in terms)
        tensor = None
        if numeric:
            tensor = {}
            for X, _ in terms:
                for a in range(d):
                    for b in range(d):
                        if X[a, b] == 0:
                            continue
                        for c in range(d):
                            for e in range(d):
                                key = (a, b, c, e)
                                tensor[key] = tensor.get(key, 0) + X[a, b] * X[c, e]
        return cls(
            sp.ImmutableMatrix(X_sum),
            sp.ImmutableMatrix(c_sum),
            sp.ImmutableMatrix(cc),
            tensor,
            tuple(terms),
        )

    def own(self, Sigma: sp.MatrixBase) -> sp.Matrix:
        r""":math:`\sum_iX_i\Sigma X_i`."""
        d = Sigma.rows
        if self.tensor is None:
            return sum((X * Sigma * X for X, _ in self.terms), sp.zeros(d, d))
        out = sp.zeros(d, d)
        for (a, b, c, e), v in self.tensor.items():
            out[a, e] += v * Sigma[b, c]
        return out


class SampledLandscape(Landscape):
    r"""Base of landscapes whose gradient is an average of per-sample gradients (minibatch
    noise is derived from them): :class:`LinearRegression` and the local problem
    :class:`symsgd.models.LocalLandscape` of a general per-sample loss.

    A subclass provides ``theta_star`` (the point the weight decay is measured from),
    :attr:`dataset_size` and, for a finite data set, :meth:`sample_terms` — the per-sample
    gradients :math:`a_i(\delta) = X_i\delta - c_i` at :math:`\theta = \theta_\gamma + \delta`
    — and :meth:`numeric_sample_terms` (the same in float64).
    """

    @property
    def dataset_size(self):
        """N for a finite data set, ``sp.oo`` for fresh samples."""
        raise NotImplementedError

    def sample_terms(self, weight_decay=0) -> list[tuple[sp.Matrix, sp.Matrix]]:
        r"""``[(X_i, c_i)]`` with per-sample gradients :math:`X_i\delta - c_i`."""
        raise NotImplementedError

    def sample_sums(self, weight_decay=0) -> SampleSums:
        r"""The sums over the data set that minibatch noise needs (:class:`SampleSums`), computed
        once per weight decay (numeric terms: the fourth-order tensor of
        :math:`\sum_iX_i\otimes X_i` is summed once, so applying it to a symbolic Σ costs
        :math:`d^4` terms, not N matrix products)."""
        cache = self.__dict__.setdefault("_sums_cache", {})
        key = sp.sympify(weight_decay)
        if key not in cache:
            cache[key] = SampleSums.of(self.sample_terms(weight_decay), self.dim)
        return cache[key]

    def numeric_sample_terms(self, weight_decay=0) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_terms` in float64: arrays ``X`` of shape (N, d, d) and ``c`` (N, d)."""
        terms = self.sample_terms(weight_decay)
        return (
            np.array([_floats(X) for X, _ in terms]),
            np.array([_floats(c).reshape(-1) for _, c in terms]),
        )

    def offset(self, weight_decay=0) -> sp.Matrix:
        r""":math:`b = \theta_\gamma - \theta_*`: where the (weight-decayed) minimum lies
        relative to the noiseless optimum (zero without weight decay)."""
        gamma = sp.sympify(weight_decay)
        if gamma == 0:
            return sp.zeros(self.dim, 1)
        H = sp.Matrix(self.hessian)
        shifted = H + gamma * sp.eye(self.dim)
        return (-gamma * shifted.LUsolve(sp.Matrix(self.theta_star))).applyfunc(sp.cancel)

    def numeric_offset(self, weight_decay=0) -> np.ndarray:
        r""":meth:`offset` in float64 (all-numeric problems): :math:`b = -\gamma(H+\gamma I)^{-1}
        \theta_*`, a length-d vector."""
        gamma = float(sp.sympify(weight_decay))
        star = _floats(self.theta_star).reshape(-1)
        if gamma == 0:
            return np.zeros_like(star)
        shifted = _floats(self.hessian) + gamma * np.eye(self.dim)
        return -gamma * np.linalg.solve(shifted, star)


@dataclass(frozen=True, init=False)
class LinearRegression(SampledLandscape):
    r"""Linear regression with per-sample loss :math:`\ell = \tfrac12(\theta^\top x - y)^2`.

    *Gaussian (online) form* ``LinearRegression(A, label_variance=σ², theta_star=None)``: inputs
    :math:`x\sim N(0, A)`, labels :math:`y = \theta_*^\top x + \epsilon` with
    :math:`\operatorname{Var}\epsilon = \sigma^2`; the Hessian is ``A``.  ``A`` is a scalar, an
    explicit matrix, or (:meth:`commuting`) an eigenvalue symbol.  ``label_variance`` is the
    label-noise *variance* σ²; the library symbol :data:`symsgd.label_noise` is the standard
    deviation σ, so a symbolic variance is ``label_variance=ss.label_noise**2``.  The old keyword
    ``label_noise=`` (also σ²) still works and raises a :class:`DeprecationWarning`.

    *Finite data* ``LinearRegression.from_data(X, y)``: rows of ``X`` are the inputs; the loss is
    the mean over the N samples; the Hessian is :math:`\hat H = X^\top X/N`; ``theta_star`` is
    the least-squares minimiser.

    Results concern the deviation from the minimiser of the training loss (with weight decay γ
    that minimiser is :math:`\theta_\gamma = (H+\gamma I)^{-1} H\theta_*`).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> land = ss.LinearRegression(a, label_variance=ss.label_noise**2)
    >>> land.hessian, land.label_variance
    (Matrix([[a]]), sigma**2)
    """

    A: sp.ImmutableMatrix | None = None
    #: the label-noise variance σ² (0 for finite data)
    label_variance: sp.Expr = sp.S.Zero
    theta_star: sp.ImmutableMatrix | None = None
    data: tuple | None = None
    #: for rank-deficient data (:meth:`from_data`): the map between the coordinates
    #: :math:`c = U^\top\theta` of this landscape and the original θ, with the flat directions
    reduction: RangeReduction | None = None

    def __init__(
        self,
        A,
        label_variance=_UNSET,
        theta_star=None,
        *,
        label_noise=_UNSET,
        _modes: bool = False,
        _names: dict | None = None,
        _data: tuple | None = None,
        _reduction: RangeReduction | None = None,
    ):
        label_variance = _label_variance(label_variance, label_noise, "LinearRegression")
        matrix = as_matrix(A, "A")
        check_symmetric(matrix, "A")
        check_psd(matrix, "A")
        try:
            sigma2 = sp.sympify(label_variance)
        except (sp.SympifyError, TypeError):
            sigma2 = None
        if not isinstance(sigma2, sp.Expr) or sigma2.is_real is False:
            raise ValueError(
                f"LinearRegression: label_variance must be a real number or sympy expression "
                f"(the label-noise variance σ²); got {label_variance!r}."
            )
        if sigma2.is_negative or sigma2.has(sp.nan, sp.oo, -sp.oo, sp.zoo):
            raise ValueError(
                f"LinearRegression: label_variance is the label-noise *variance* σ² and must be "
                f"a finite number ≥ 0; got {sigma2}."
            )
        d = matrix.rows
        star = sp.ImmutableMatrix(sp.zeros(d, 1)) if theta_star is None else _column(theta_star, d)
        object.__setattr__(self, "hessian", matrix)
        object.__setattr__(self, "eigenmode", _modes)
        object.__setattr__(self, "mode_names", dict(_names or {}))
        object.__setattr__(self, "A", matrix)
        object.__setattr__(self, "label_variance", sigma2)
        object.__setattr__(self, "theta_star", star)
        object.__setattr__(self, "data", _data)
        object.__setattr__(self, "reduction", _reduction)

    @property
    def label_noise(self) -> sp.Expr:
        """Old name of :attr:`label_variance` (the variance σ², not σ); kept for reading."""
        return self.label_variance

    @classmethod
    def commuting(
        cls,
        a: sp.Symbol | None = None,
        label_variance=_UNSET,
        theta_star=None,
        *,
        label_noise=_UNSET,
    ) -> LinearRegression:
        r"""Eigen-mode form: ``a`` is one eigenvalue of the input covariance ``A`` (and
        ``theta_star`` the component of θ* along that mode); ``label_variance`` is σ².  Minibatch
        noise couples the modes through :math:`\operatorname{Tr}(A\Sigma)`;
        :func:`symsgd.stationary` closes that trace self-consistently and answers with traces of
        matrix functions of ``A``.

        >>> import symsgd as ss
        >>> ss.LinearRegression.commuting(label_variance=1)
        LinearRegression.commuting(a, label_variance=1)
        """
        label_variance = _label_variance(label_variance, label_noise, "LinearRegression.commuting")
        a = sp.Symbol("a", positive=True) if a is None else a
        if not isinstance(a, sp.Symbol):
            raise ValueError(f"LinearRegression.commuting(a) needs a sympy Symbol; got {a!r}.")
        return cls(a, label_variance, theta_star, _modes=True, _names={a: "A"})

    @classmethod
    def from_data(cls, X, y) -> LinearRegression:
        r"""A finite data set: ``X`` is N×d (rows are samples), ``y`` has N entries.

        **Full column rank** (:math:`X^\top X` invertible): the landscape in the original
        coordinates, :math:`\hat H = X^\top X/N` and :math:`\theta_* = (X^\top X)^{-1}X^\top y`.

        **Rank r < d** (fewer samples than features, interpolation, collinear features): the
        minimiser is not unique, and the landscape is the problem on the row space
        :math:`R = \operatorname{range}(X^\top)` (:class:`RangeReduction` in :attr:`reduction`):

        * :math:`\theta_* = X^+y` is the minimum-norm least-squares solution (the one in R);
          exact data give it exactly (a rational basis B of R:
          :math:`\theta_* = B(B^\top X^\top XB)^{-1}B^\top X^\top y`);
        * every per-sample gradient :math:`x_i(x_i^\top\theta - y_i)` lies in R, so
          :math:`N = R^\perp = \ker X` — the null space of :math:`\hat H`, the **flat
          directions** — is never touched by the data.  With an orthonormal basis U of R
          (d×r) and V of N, write :math:`\theta = \theta_* + Uc' + Vn`.  An optimizer with a
          scalar learning rate (SGD, HeavyBall, Nesterov, QHM, Averaged; weight decay γ
          included) moves c' exactly as it moves the parameters of the data set :math:`XU`
          (the gradient of :math:`\tfrac1{2N}|XUc - y|^2` in :math:`c = U^\top\theta` is
          :math:`U^\top\nabla L`, and :math:`U^\top\gamma\theta = \gamma c`), while
          :math:`n_{t+1} = n_t - \lambda\gamma n_t` (SGD; the momentum methods run the same
          deterministic recursion on n): no noise ever enters N.
        * The returned landscape is therefore ``LinearRegression.from_data(X U, y)`` in the
          coordinates c (dimension r, :math:`\hat H_c = U^\top\hat HU` invertible,
          :math:`c_* = U^\top\theta_*`), and everything the library does with a landscape
          (:func:`symsgd.stationary`, :func:`symsgd.simulate`) applies unchanged.  The
          covariance in the original coordinates is
          :math:`\Sigma = U\Sigma_cU^\top` (:meth:`RangeReduction.lift`): with weight decay
          γ > 0 the N-component decays to 0 deterministically, so Σ is exactly zero on N; without
          weight decay the N-component is a conserved quantity of the start
          (:math:`n_t = V^\top\theta_0`), so the law of θ is the law on R shifted by that fixed
          vector, and Σ (a covariance: nothing random on N) is still :math:`U\Sigma_cU^\top`.
        * A preconditioner P that does not map R into itself (Adam's diagonal, a general
          ``Preconditioned`` P) rotates gradient noise into N, where without weight decay it
          accumulates: such optimizers are refused (:meth:`RangeReduction.check_optimizer`).
        * Interpolation (:math:`y = X\theta` solvable): every residual is 0, the minibatch
          noise vanishes at the minimum, and the stationary law is the point mass Σ = 0 where
          the mean-square recursion is stable.

        Exact data keep an exact reduction (U has square roots of rationals; the lifted Σ is
        rational again); float data are reduced by the SVD of X (rank: the curvatures
        :math:`s_k^2` above :math:`d\,\epsilon\,s_{\max}^2`, ``numpy.linalg.matrix_rank`` of
        :math:`X^\top X`: a curvature below float resolution is flat).  Symbolic X
        with a singular :math:`X^\top X` is refused: its rank depends on the symbols' values.

        >>> import symsgd as ss
        >>> land = ss.LinearRegression.from_data([[1, 1, 0], [0, 1, 1]], [2, 0])
        >>> land.dim, land.reduction.dim, land.reduction.theta_star.T
        (2, 3, Matrix([[4/3, 2/3, -2/3]]))
        >>> land.reduction.flat_directions[0].T
        Matrix([[sqrt(3)/3, -sqrt(3)/3, sqrt(3)/3]])
        """
        rows = _rows(X, "X")
        lengths = sorted({len(r) for r in rows})
        if len(lengths) != 1 or lengths[0] == 0:
            raise ValueError(
                f"from_data: X must be rectangular (every row a sample with the same d ≥ 1 "
                f"features); its rows have lengths {[len(r) for r in rows]}."
            )
        X = sp.ImmutableMatrix([[_entry(e, "X", "from_data: ") for e in r] for r in rows])
        y_list = _flat(y, "y")
        if len(y_list) != X.rows:
            raise ValueError(
                f"from_data: y must have one entry per row of X ({X.rows}); got {len(y_list)} "
                f"entries."
            )
        Y = sp.ImmutableMatrix([[_entry(e, "y", "from_data: ")] for e in y_list])
        N, _d = X.shape
        if (X.has(sp.Float) or Y.has(sp.Float)) and not (X.free_symbols or Y.free_symbols):
            return cls._from_float_data(X, Y)
        H = (X.T * X) / N
        det = sp.factor(H.det())
        if det != 0:
            star = (X.T * X).LUsolve(X.T * Y).applyfunc(sp.cancel)
            return cls(H.applyfunc(sp.cancel), 0, star, _data=(X, Y))
        if X.free_symbols:
            raise ValueError(
                "from_data: XᵀX is singular, so the least-squares minimiser is not unique; "
                "with symbolic X the rank (and so the flat directions) depends on the symbols' "
                "values, so the reduction to the row space of X needs numeric X. Add samples, "
                "remove collinear features, or give numbers."
            )
        _refuse_zero(X)
        B = sp.Matrix.hstack(*X.T.columnspace())  # a rational basis of R = range(Xᵀ)
        gram = B.T * X.T * X * B
        star = (B * gram.LUsolve(B.T * X.T * Y)).applyfunc(sp.cancel)
        U = sp.Matrix.hstack(*_orthonormal(list(B.T.tolist()), X.cols))
        flat = _orthonormal([list(v) for v in X.nullspace()], X.cols)
        reduction = RangeReduction(sp.ImmutableMatrix(U), tuple(flat), star, (X, Y))
        return cls._reduced(reduction)

    @classmethod
    def _from_float_data(cls, X: sp.ImmutableMatrix, Y: sp.ImmutableMatrix) -> LinearRegression:
        """Float data: Ĥ and the least-squares minimiser in float64 (floats stay floats; the
        sympy elimination of a d×d float system is what made d = 20 cost a second).  A
        rank-deficient X is reduced to its row space by the SVD (see :meth:`from_data`)."""
        Xf, Yf = _floats(X), _floats(Y).reshape(-1)
        N, d = Xf.shape
        _, s, Vt = np.linalg.svd(Xf, full_matrices=True)
        # the rank numpy.linalg.matrix_rank gives XᵀX (the curvatures s²): the decision the
        # full-rank path always made
        tol = (float(s.max()) ** 2 if s.size else 0.0) * d * np.finfo(float).eps
        r = int(np.sum(s**2 > tol))
        if r == d:
            gram = Xf.T @ Xf
            star = np.linalg.solve(gram, Xf.T @ Yf)
            return cls(sp.ImmutableMatrix(gram / N), 0, star.tolist(), _data=(X, Y))
        _refuse_zero(X, r)
        signs = np.sign(Vt[np.arange(d), np.argmax(np.abs(Vt), axis=1)])
        Vt = Vt * signs[:, None]  # each basis vector's largest entry positive: reproducible
        U, V = Vt[:r].T, Vt[r:].T
        star = U @ np.linalg.lstsq(Xf @ U, Yf, rcond=None)[0]
        reduction = RangeReduction(
            sp.ImmutableMatrix(U),
            tuple(sp.ImmutableMatrix(V[:, [k]]) for k in range(d - r)),
            sp.ImmutableMatrix(star.reshape(-1, 1)),
            (X, Y),
        )
        return cls._reduced(reduction)

    @classmethod
    def _reduced(cls, reduction: RangeReduction) -> LinearRegression:
        """The landscape of the data (X U, y) in the coordinates c = Uᵀθ (full rank r)."""
        X, Y = reduction.data
        U = reduction.basis
        if reduction.exact:
            Xc = sp.ImmutableMatrix((X * U).applyfunc(sp.radsimp))
            H = (Xc.T * Xc / X.rows).applyfunc(sp.radsimp)
            star = (U.T * reduction.theta_star).applyfunc(sp.radsimp)
        else:
            Uf = _floats(U)
            Xcf = _floats(X) @ Uf
            gram = Xcf.T @ Xcf
            Xc = sp.ImmutableMatrix(Xcf)
            H = sp.ImmutableMatrix((gram + gram.T) / (2 * X.rows))
            star = (Uf.T @ _floats(reduction.theta_star).reshape(-1)).tolist()
        return cls(H, 0, star, _data=(Xc, Y), _reduction=reduction)

    @property
    def dataset_size(self):
        """N for finite data, ``sp.oo`` for the Gaussian (online) form."""
        return sp.oo if self.data is None else self.data[0].rows

    def gradient_covariance(self, second_moment: sp.MatrixBase, weight_decay=0) -> sp.Matrix:
        r"""Per-sample gradient covariance of the Gaussian form, averaged over the parameter
        deviation :math:`\delta` (mean 0, second moment :math:`\Sigma`):

        :math:`\mathbb E_\delta \operatorname{Cov}[x(x^\top u - \epsilon)\mid\delta]` with
        :math:`u = \delta + b`, from Isserlis' theorem (:func:`isserlis_quartic`) minus the squared
        mean :math:`A\,\mathbb E[uu^\top] A`, plus the label-noise term :math:`\sigma^2 A`.
        """
        if self.data is not None:
            raise ValueError("gradient_covariance is for the Gaussian form; use sample_terms().")
        b = self.offset(weight_decay)
        U = sp.Matrix(second_moment) + b * b.T  # E[u u^T]
        A = sp.Matrix(self.A)
        trace = COUPLING if self.eigenmode else None
        return isserlis_quartic(A, U, trace) - A * U * A + self.label_variance * A

    def coupling_density(self, cov: sp.MatrixBase, weight_decay=0) -> sp.Expr:
        r"""One mode's share :math:`a(\Sigma + b^2)` of the coupling trace
        :math:`\kappa = \operatorname{Tr}(A\,\mathbb E[uu^\top])` (eigen-mode form)."""
        b = self.offset(weight_decay)
        return (sp.Matrix(self.A) * (sp.Matrix(cov) + b * b.T))[0, 0]

    def numeric_samples(self, weight_decay=0) -> tuple[np.ndarray, np.ndarray]:
        r""":meth:`sample_terms` in float64 (all-numeric finite data): the N×d inputs ``X`` and
        the residuals :math:`e_i = y_i - x_i^\top\theta_\gamma` at the (weight-decayed)
        minimum, so that :math:`X_i = x_ix_i^\top` and :math:`c_i = x_ie_i`."""
        if self.data is None:
            raise ValueError(
                "numeric_samples needs a finite data set (LinearRegression.from_data)."
            )
        X, Y = (_floats(m) for m in self.data)
        center = _floats(self.theta_star).reshape(-1) + self.numeric_offset(weight_decay)
        return X, Y.reshape(-1) - X @ center

    def numeric_sample_terms(self, weight_decay=0) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_terms` in float64 from :meth:`numeric_samples`: :math:`X_i =
        x_ix_i^\top` (shape (N, d, d)) and :math:`c_i = x_ie_i` (shape (N, d))."""
        X, e = self.numeric_samples(weight_decay)
        return np.einsum("ni,nj->nij", X, X), X * e[:, None]

    def sample_terms(self, weight_decay=0) -> list[tuple[sp.Matrix, sp.Matrix]]:
        r"""For finite data: per-sample gradients are :math:`a_i(\delta) = X_i\delta - c_i` at
        :math:`\theta = \theta_\gamma + \delta`, with :math:`X_i = x_i x_i^\top` and
        :math:`c_i = x_i e_i`, :math:`e_i = y_i - x_i^\top\theta_\gamma`;
        returns ``[(X_i, c_i)]``."""
        if self.data is None:
            raise ValueError("sample_terms needs a finite data set (LinearRegression.from_data).")
        X, Y = self.data
        center = sp.Matrix(self.theta_star) + self.offset(weight_decay)
        out = []
        for i in range(X.rows):
            x = sp.Matrix(X.row(i)).T
            e = sp.cancel(Y[i, 0] - (x.T * center)[0, 0])
            out.append((x * x.T, x * e))
        return out

    def loss(self, cov: sp.MatrixBase, weight_decay=0) -> sp.Expr:
        r"""Expected training loss at stationarity.

        Gaussian form: :math:`\tfrac12\operatorname{Tr}(A(\Sigma + bb^\top)) + \sigma^2/2`.
        Finite data: :math:`\tfrac12\operatorname{Tr}(\hat H\Sigma) + \frac1{2N}\sum_i e_i^2`.
        """
        cov = sp.Matrix(cov)
        if self.data is None:
            if self.eigenmode:  # ½ Tr(A E[uuᵀ]) is half the closed coupling trace
                return sp.Rational(1, 2) * (COUPLING + self.label_variance)
            b = self.offset(weight_decay)
            return sp.Rational(1, 2) * (
                (sp.Matrix(self.A) * (cov + b * b.T)).trace() + self.label_variance
            )
        X, Y = self.data
        N = X.rows
        center = sp.Matrix(self.theta_star) + self.offset(weight_decay)
        e2 = sum(sp.cancel(Y[i, 0] - (sp.Matrix(X.row(i)) * center)[0, 0]) ** 2 for i in range(N))
        return sp.Rational(1, 2) * (sp.Matrix(self.hessian) * cov).trace() + e2 / (2 * N)

    def numeric_loss(self, cov, weight_decay=0) -> float:
        """:meth:`loss` in float64 (all-numeric problems; ``cov`` a d×d array)."""
        if self.eigenmode:
            raise ValueError("numeric_loss is for explicit matrices, not eigen-mode problems.")
        quadratic = float(np.einsum("ij,ji->", _floats(self.hessian), cov))
        if self.data is None:
            A, b = _floats(self.A), self.numeric_offset(weight_decay)
            return 0.5 * (quadratic + float(b @ A @ b) + float(self.label_variance))
        _X, e = self.numeric_samples(weight_decay)
        return 0.5 * quadratic + float(e @ e) / (2 * len(e))

    def numeric_test_loss(self, cov, weight_decay=0) -> float | None:
        """:meth:`test_loss` in float64 (None for a finite data set)."""
        return None if self.data is not None else self.numeric_loss(cov, weight_decay)

    def describe(self) -> str:
        """The class name, and for a rank-deficient data set its reduction and flat
        directions (:meth:`RangeReduction.describe`)."""
        if self.reduction is None:
            return type(self).__name__
        return f"LinearRegression on data with {self.reduction.describe()}"

    def test_loss(self, cov: sp.MatrixBase, weight_decay=0) -> sp.Expr | None:
        """Expected loss on a fresh sample (Gaussian form only; None for a finite data set)."""
        if self.data is not None:
            return None
        return self.loss(cov, weight_decay)

    def __repr__(self) -> str:
        if self.reduction is not None:
            return (
                f"LinearRegression.from_data(N={self.data[0].rows}, d={self.reduction.dim}, "
                f"{self.reduction.describe()})"
            )
        if self.data is not None:
            return f"LinearRegression.from_data(N={self.data[0].rows}, d={self.dim})"
        A = self.A[0, 0] if self.dim == 1 else f"Matrix({sp.sstr(self.A.tolist())})"
        head = "LinearRegression.commuting" if self.eigenmode else "LinearRegression"
        star = self.theta_star
        star = "" if star is None or star.is_zero_matrix else f", theta_star={sp.sstr(list(star))}"
        return f"{head}({A}, label_variance={self.label_variance}{star})"


def _refuse_zero(X: sp.MatrixBase, rank: int | None = None) -> None:
    if (rank == 0) if rank is not None else X.is_zero_matrix:
        raise ValueError(
            "from_data: X is zero (rank 0), so every θ is a least-squares minimiser and no "
            "direction has curvature; there is no stationary problem to state."
        )


def _orthonormal(vectors: list, d: int) -> list[sp.ImmutableMatrix]:
    """Exact Gram–Schmidt of ``vectors`` (lists of d entries) into orthonormal columns."""
    if not vectors:
        return []
    out = sp.GramSchmidt([sp.Matrix(v).reshape(d, 1) for v in vectors], orthonormal=True)
    return [sp.ImmutableMatrix(v.applyfunc(sp.radsimp)) for v in out]


def _preconditioner_owner(optimizer) -> str | None:
    """The class name of an optimizer that applies a preconditioner P (``None`` for the scalar
    learning-rate family), looking through wrappers that hold an ``inner`` optimizer.  Found by
    which class defines ``preconditioner`` (the base ``Optimizer`` returns the identity), so
    this module needs no import of :mod:`symsgd.optimizers`."""
    while getattr(optimizer, "inner", None) is not None:
        optimizer = optimizer.inner
    for klass in type(optimizer).__mro__:
        if "preconditioner" in vars(klass):
            return None if klass.__name__ == "Optimizer" else type(optimizer).__name__
    return None


@dataclass(frozen=True)
class RangeReduction:
    r"""How a rank-deficient :meth:`LinearRegression.from_data` landscape sits in the original
    coordinates (its :attr:`~LinearRegression.reduction`).

    ``basis`` is U (d×r, orthonormal columns spanning the row space
    :math:`R = \operatorname{range}(X^\top)`); the landscape's coordinates are
    :math:`c = U^\top\theta` and its data are :math:`XU`.  ``flat_directions`` is an
    orthonormal basis (columns) of :math:`N = \ker X = R^\perp`, the null space of
    :math:`\hat H` — the same word as :attr:`symsgd.models.LocalLandscape.flat_directions`: the
    minimisers form the affine space :math:`\theta_* + N`.  Unlike a general model, linear
    regression's per-sample gradients never point along N, so a scalar-learning-rate optimizer
    never moves the N-component randomly, and the problem on R has a stationary law (see
    :meth:`LinearRegression.from_data`).  ``theta_star`` is the minimum-norm least-squares
    solution :math:`X^+y` (d×1) and ``data`` the original ``(X, y)``.

    >>> import symsgd as ss
    >>> land = ss.LinearRegression.from_data([[1, 1], [2, 2]], [1, 2])
    >>> red = land.reduction
    >>> red.basis.T, red.flat_directions[0].T
    (Matrix([[sqrt(2)/2, sqrt(2)/2]]), Matrix([[-sqrt(2)/2, sqrt(2)/2]]))
    >>> red.lift([[1]])  # U Σ_c Uᵀ
    Matrix([
    [1/2, 1/2],
    [1/2, 1/2]])
    """

    basis: sp.ImmutableMatrix
    flat_directions: tuple
    theta_star: sp.ImmutableMatrix
    data: tuple = field(repr=False)

    @property
    def dim(self) -> int:
        """d, the number of original parameters."""
        return self.basis.rows

    @property
    def rank(self) -> int:
        """r, the rank of X (the dimension of the reduced landscape)."""
        return self.basis.cols

    @property
    def exact(self) -> bool:
        """True when the reduction was computed exactly (no float in the data)."""
        return not self.basis.has(sp.Float)

    @property
    def flat_basis(self) -> sp.ImmutableMatrix:
        """The flat directions as the columns of one d×(d−r) matrix V."""
        if not self.flat_directions:
            return sp.ImmutableMatrix(sp.zeros(self.dim, 0))
        return sp.ImmutableMatrix(sp.Matrix.hstack(*self.flat_directions))

    def lift(self, cov):
        r"""A covariance :math:`\Sigma_c` of the coordinates c (r×r: a sympy matrix, a numpy
        array, or a scalar when r = 1) as the covariance :math:`U\Sigma_cU^\top` of θ (d×d):
        zero on the flat directions (see :meth:`LinearRegression.from_data` for why that is the
        whole answer with and without weight decay).  Exact inputs give exact entries (rational
        for rational data)."""
        if isinstance(cov, np.ndarray) and cov.ndim == 2:
            U = _floats(self.basis)
            return U @ cov @ U.T
        if not isinstance(cov, (sp.MatrixBase, list, tuple, np.ndarray)):
            cov = [[cov]]  # a rank-1 reduction: results of a 1-D landscape are scalars
        cov = sp.Matrix(cov)
        if cov.shape != (self.rank, self.rank):
            raise ValueError(
                f"lift: Σ_c must be {self.rank}×{self.rank} (the reduced coordinates); got "
                f"{cov.rows}×{cov.cols}."
            )
        out = sp.Matrix(self.basis) * cov * sp.Matrix(self.basis).T
        if not self.exact:
            return out
        simplify = sp.radsimp if not out.free_symbols else (lambda e: sp.cancel(sp.radsimp(e)))
        return out.applyfunc(simplify)

    def coordinates(self, theta) -> sp.Matrix:
        r"""The reduced coordinates :math:`c = U^\top\theta` of a point θ (d entries)."""
        return (sp.Matrix(self.basis).T * _column(theta, self.dim, "theta")).applyfunc(
            sp.radsimp if self.exact else (lambda e: e)
        )

    def flat_component(self, theta) -> sp.Matrix:
        r"""The flat component :math:`n = V^\top\theta` (the part of θ no data gradient moves)."""
        return (sp.Matrix(self.flat_basis).T * _column(theta, self.dim, "theta")).applyfunc(
            sp.radsimp if self.exact else (lambda e: e)
        )

    def point(self, c, flat=None) -> sp.Matrix:
        r""":math:`\theta = Uc + Vn` from reduced coordinates c and a flat component n (default
        0: the point on R, e.g. :math:`U c_* = \theta_*`)."""
        theta = sp.Matrix(self.basis) * _column(c, self.rank, "c")
        if flat is not None and self.flat_directions:
            theta += sp.Matrix(self.flat_basis) * _column(flat, self.dim - self.rank, "flat")
        return theta.applyfunc(sp.radsimp if self.exact else (lambda e: e))

    def check_optimizer(self, optimizer) -> None:
        r"""Refuse an optimizer with a preconditioner (``Preconditioned``, ``DampedNewton``,
        ``NaturalGradient``, ``Adam``): its P acts in the original coordinates, and unless
        :math:`PR \subseteq R` it rotates gradient noise into the flat directions N, where
        nothing pulls it back (without weight decay the N-component random-walks; with it N
        and R are coupled), so the problem on R is not the optimizer's problem.  The scalar
        learning-rate family (SGD, HeavyBall, Nesterov, QHM, Averaged of them) passes.

        >>> import symsgd as ss
        >>> land = ss.LinearRegression.from_data([[1, 1]], [1])
        >>> land.reduction.check_optimizer(ss.HeavyBall(ss.lr, ss.momentum))
        """
        name = _preconditioner_owner(optimizer)
        if name is None:
            return
        raise ValueError(
            f"{name} on a rank-deficient data set (rank {self.rank} < d = {self.dim}; "
            f"{self.dim - self.rank} flat direction(s)): its preconditioner P acts in the "
            f"original coordinates and, unless P maps the row space of X into itself, rotates "
            f"gradient noise into the flat directions, which nothing pulls back — the problem "
            f"on the row space (the coordinates c = Uᵀθ of this landscape) is then not the "
            f"optimizer's problem. Use SGD, HeavyBall, Nesterov, QHM or Averaged; or, to "
            f"precondition in the reduced coordinates on purpose, build "
            f"LinearRegression.from_data(X·U, y) with U = land.reduction.basis."
        )

    def describe(self) -> str:
        """The reduction in words, with the flat directions (4 significant digits)."""
        shown = "; ".join(
            "(" + ", ".join(sp.sstr(sp.N(v, 4)) for v in d) + ")" for d in self.flat_directions
        )
        return (
            f"rank {self.rank} < d = {self.dim}: coordinates c = Uᵀθ on the row space of X, "
            f"flat along {shown}"
        )


#: float64 copies of recently converted immutable matrices (id -> (matrix, array)): one
#: derivation converts H for the curvature check, the recursion and the loss
_FLOAT_COPIES: dict = {}


def _floats(m) -> np.ndarray:
    """A numeric sympy matrix as a float64 array (``ValueError`` naming a leftover symbol)."""
    if isinstance(m, sp.ImmutableMatrix):
        hit = _FLOAT_COPIES.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1].copy()
        out = _convert(m)
        if len(_FLOAT_COPIES) > 16:
            _FLOAT_COPIES.clear()
        _FLOAT_COPIES[id(m)] = (m, out)
        return out.copy()
    return _convert(m)


def _convert(m) -> np.ndarray:
    rows = m.tolist() if isinstance(m, sp.MatrixBase) else m
    try:
        return np.array(rows, dtype=float)
    except TypeError:  # a symbol, or sqrt(2) and other exact irrationals
        m = sp.Matrix(m)
        if m.free_symbols:
            names = ", ".join(sorted(map(str, m.free_symbols)))
            raise ValueError(f"a numeric value is needed for {names}.") from None
        return np.array(m.evalf(), dtype=float)
