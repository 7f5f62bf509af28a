"""Gradient-noise models.

A noise model knows one thing: the covariance of the gradient noise at the point where the
gradient is evaluated, as an *affine* function of that point's second-moment matrix
:math:`\\Sigma_x = \\mathbb E[x x^\\top]` (x the deviation from the minimum):

.. math:: Q(\\Sigma_x) = Q_0 + \\mathcal L(\\Sigma_x).

Additive noise has :math:`\\mathcal L = 0`; minibatch noise does not (multiplicative noise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ._util import as_matrix, as_scalar, check_psd, check_symmetric
from .landscapes import Landscape, LinearRegression, SampledLandscape, _floats
from .moments import TraceCoupling

__all__ = ["AdditiveNoise", "MinibatchNoise", "Noise", "sampling_design"]


class Noise:
    """Abstract base of noise models."""

    def depends_on_state(self) -> bool:
        """True if the noise covariance depends on the parameters (multiplicative noise)."""
        raise NotImplementedError

    def covariance(
        self, landscape: Landscape, second_moment: sp.MatrixBase, weight_decay=0
    ) -> sp.Matrix:
        r"""The gradient-noise covariance :math:`Q(\Sigma_x)` at a point whose deviation from the
        (weight-decayed) minimum has second moment :math:`\Sigma_x` (affine in it)."""
        raise NotImplementedError

    def numeric_covariance(
        self, landscape: Landscape, weight_decay=0
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray] | None]:
        r"""``(Q0, L)`` in float64 for an all-numeric problem: :math:`Q_0 = Q(0)` and the
        linear part :math:`\mathcal L(\Sigma_x) = Q(\Sigma_x) - Q_0` as a numpy function of a
        d×d array (``None`` for state-independent noise).  The default evaluates
        :meth:`covariance` at Σ = 0 (models with a linear part override this)."""
        d = landscape.dim
        Q0 = self.covariance(landscape, sp.zeros(d, d), weight_decay)
        if self.depends_on_state():
            raise NotImplementedError(f"{type(self).__name__} has no numeric covariance.")
        return _floats(Q0), None

    def fisher(self, landscape: Landscape, weight_decay=0) -> sp.Matrix:
        r"""The default Fisher of :class:`~symsgd.NaturalGradient`: the covariance :math:`C_1` of
        *one* gradient sample at the (weight-decayed) minimum.  For a model whose gradient noise
        is not built from samples this is the noise covariance at the minimum, :math:`Q(0)`."""
        d = landscape.dim
        return self.covariance(landscape, sp.zeros(d, d), weight_decay)

    def numeric_fisher(self, landscape: Landscape, weight_decay=0) -> np.ndarray:
        """:meth:`fisher` in float64 for an all-numeric problem (the default converts the
        sympy matrix; models override it with a numpy computation)."""
        return _floats(self.fisher(landscape, weight_decay))

    def mode_names(self, landscape: Landscape) -> dict:
        """Eigenvalue symbol -> matrix name, for eigen-mode problems."""
        return {}

    def trace_coupling(self, landscape: Landscape, weight_decay=0) -> TraceCoupling | None:
        r"""The linear part :math:`\mathcal L(\Sigma) = Q(\Sigma) - Q(0)` as a
        :class:`~symsgd.moments.TraceCoupling` :math:`sF\Sigma F^\top +
        \operatorname{Tr}(W\Sigma)D` when it has that form (then block-diagonal problems
        split, :class:`symsgd.lyapunov.TraceSplitSolver`), else None (the default)."""
        return None


@dataclass(frozen=True, init=False)
class AdditiveNoise(Noise):
    r"""Gradient noise of constant covariance ``C``: :math:`g = H\theta + \xi`,
    :math:`\operatorname{Cov}\xi = C`.

    ``C`` is a scalar (also the eigenvalue of ``C`` in eigen-mode problems) or a symmetric
    positive semi-definite matrix.

    >>> import sympy as sp, symsgd as ss
    >>> ss.AdditiveNoise(sp.Symbol("c", positive=True)).depends_on_state()
    False
    """

    C: sp.ImmutableMatrix

    def __init__(self, C):
        matrix = as_matrix(C, "C")
        check_symmetric(matrix, "C")
        check_psd(matrix, "C")
        object.__setattr__(self, "C", matrix)

    def depends_on_state(self) -> bool:
        return False

    def covariance(
        self, landscape: Landscape, second_moment: sp.MatrixBase, weight_decay=0
    ) -> sp.Matrix:
        if self.C.shape != landscape.hessian.shape:
            what = (
                "a scalar (the mode's eigenvalue of C)"
                if landscape.eigenmode
                else (f"a {landscape.dim}×{landscape.dim} matrix")
            )
            raise ValueError(
                f"AdditiveNoise: C has shape {self.C.shape} but the landscape has dimension "
                f"{landscape.dim}; pass {what}."
            )
        return sp.Matrix(self.C)

    def numeric_covariance(self, landscape, weight_decay=0):
        """``(C, None)`` in float64: the noise does not depend on the state."""
        if self.C.shape != landscape.hessian.shape:
            self.covariance(landscape, sp.zeros(landscape.dim, landscape.dim))  # the error
        return _floats(self.C), None

    def numeric_fisher(self, landscape, weight_decay=0):
        """``C`` in float64."""
        return self.numeric_covariance(landscape, weight_decay)[0]

    def mode_names(self, landscape: Landscape) -> dict:
        c = self.C[0, 0]
        return {c: "C"} if landscape.eigenmode and isinstance(c, sp.Symbol) else {}

    def __repr__(self) -> str:
        if self.C.rows == 1:
            return f"AdditiveNoise({self.C[0, 0]})"
        return f"AdditiveNoise(Matrix({sp.sstr(self.C.tolist())}))"


def _count(value, name: str, infinite: bool = False) -> sp.Expr:
    """A batch or data-set size: an integer or a sympy expression (``sp.oo`` for N if
    ``infinite``); strings, NaN and complex numbers are refused naming ``name``."""
    if infinite and (value is sp.oo or (isinstance(value, float) and value == float("inf"))):
        return sp.oo
    what = "an integer ≥ 1 or sp.oo" if infinite else "an integer ≥ 1"
    try:
        return as_scalar(value, name, "MinibatchNoise: ")
    except TypeError:
        raise TypeError(
            f"MinibatchNoise: {name} must be {what} or a sympy symbol; got "
            f"{type(value).__name__} {value!r}."
        ) from None
    except ValueError:
        raise ValueError(f"MinibatchNoise: {name} must be {what}; got {value!r}.") from None


def sampling_design(batch_size, dataset_size, replacement: bool) -> tuple[sp.Expr, sp.Expr]:
    r"""Second moments of the batch counts :math:`n_i` (how often sample i is in the batch).

    Returns ``(alpha, beta)`` with :math:`\operatorname{Cov}(n_i, n_j) = \alpha\delta_{ij} +
    \beta`, derived from the sampling design:

    * with replacement (S i.i.d. uniform indices): the counts are multinomial(S, 1/N):
      :math:`\mathbb E n_i = S/N`, :math:`\mathbb E n_in_j = S(S-1)/N^2 + \delta_{ij}S/N`;
    * without replacement (a uniform S-subset): :math:`n_i\in\{0,1\}`,
      :math:`\mathbb E n_i = S/N`, :math:`\mathbb E n_in_j = S(S-1)/(N(N-1))` for i ≠ j.

    >>> S, N = sp.symbols("S N", positive=True)
    >>> sampling_design(S, N, True)
    (S/N, -S/N**2)
    """
    S, N = sp.sympify(batch_size), sp.sympify(dataset_size)
    mean = S / N
    if replacement:
        second_diag = S * (S - 1) / N**2 + S / N
        second_off = S * (S - 1) / N**2
    else:
        second_diag = S / N  # n_i^2 = n_i
        second_off = S * (S - 1) / (N * (N - 1))
    beta = sp.cancel(second_off - mean**2)
    alpha = sp.cancel(second_diag - mean**2 - beta)
    return alpha, beta


@dataclass(frozen=True, init=False)
class MinibatchNoise(Noise):
    r"""The noise of averaging the per-sample gradients of a random minibatch of size S.

    The minibatch gradient is :math:`g = \frac1S\sum_i n_i\,a_i(\theta)` with batch counts
    :math:`n_i` from the sampling design (:func:`sampling_design`).  Its covariance around the
    full gradient, averaged over the stationary deviation δ (mean 0, second moment Σ), is
    *derived* from the landscape's per-sample gradients:

    * Gaussian inputs, ``dataset_size = oo`` (fresh samples each step):
      :math:`Q(\Sigma) = \frac1S\,\mathbb E_\delta\operatorname{Cov}[\nabla\ell\mid\delta]`, the
      per-sample covariance from Isserlis' theorem
      (:meth:`~symsgd.landscapes.LinearRegression.gradient_covariance`);
    * a finite data set with :math:`a_i(\delta) = X_i\delta - c_i`:
      :math:`Q(\Sigma) = \frac1{S^2}\bigl[\alpha\sum_i (X_i\Sigma X_i + c_ic_i^\top)
      + \beta\,(\textstyle\sum_i X_i)\Sigma(\sum_i X_i)
      + \beta\,(\sum_i c_i)(\sum_i c_i)^\top\bigr]`.

    ``dataset_size=None`` takes N from the landscape (``oo`` for the Gaussian form).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> noise = ss.MinibatchNoise(batch_size=ss.batch_size)
    >>> noise.covariance(ss.LinearRegression(a, label_variance=1), sp.Matrix([[0]]))
    Matrix([[a/S]])
    """

    batch_size: sp.Expr
    dataset_size: sp.Expr | None
    replacement: bool

    def __init__(self, batch_size=None, dataset_size=None, replacement: bool = True):
        from .symbols import batch_size as S_symbol

        S = S_symbol if batch_size is None else _count(batch_size, "batch_size")
        if S.is_number and (not S.is_integer or S < 1):
            raise ValueError(f"MinibatchNoise: batch_size must be an integer ≥ 1; got {S}.")
        N = None if dataset_size is None else _count(dataset_size, "dataset_size", infinite=True)
        if N is not None and N is not sp.oo and N.is_number and (not N.is_integer or N < 1):
            raise ValueError(
                f"MinibatchNoise: dataset_size must be an integer ≥ 1 or sp.oo; got {N}."
            )
        if (
            N is not None
            and N.is_number
            and N is not sp.oo
            and S.is_number
            and S > N
            and (not replacement)
        ):
            raise ValueError(
                f"MinibatchNoise: without replacement the batch (S = {S}) cannot exceed the "
                f"data set (N = {N})."
            )
        object.__setattr__(self, "batch_size", S)
        object.__setattr__(self, "dataset_size", N)
        object.__setattr__(self, "replacement", bool(replacement))

    def depends_on_state(self) -> bool:
        return True

    def resolved_dataset_size(self, landscape: Landscape):
        """N, taken from the landscape when not given (and checked against it)."""
        if not isinstance(landscape, SampledLandscape):
            raise ValueError(
                "MinibatchNoise needs per-sample gradients, which Quadratic does not define; use "
                "LinearRegression(A, label_variance=σ²), LinearRegression.from_data(X, y) or "
                "EmpiricalLoss(...).near(θ*), or AdditiveNoise(C) for a quadratic loss."
            )
        own = landscape.dataset_size
        N = own if self.dataset_size is None else self.dataset_size
        if N != own:
            raise ValueError(
                f"MinibatchNoise(dataset_size={N}) does not match the landscape, whose data set "
                f"has N = {own} (sp.oo means fresh Gaussian samples); drop dataset_size or fix it."
            )
        return N

    def covariance(
        self, landscape: Landscape, second_moment: sp.MatrixBase, weight_decay=0
    ) -> sp.Matrix:
        N = self.resolved_dataset_size(landscape)
        S = self.batch_size
        Sigma = sp.Matrix(second_moment)
        if Sigma.shape != landscape.hessian.shape:
            raise ValueError(
                f"second moment of shape {Sigma.shape} for a {landscape.dim}-d problem."
            )
        if N is sp.oo:
            return landscape.gradient_covariance(Sigma, weight_decay) / S
        alpha, beta = sampling_design(S, N, self.replacement)
        sums = landscape.sample_sums(weight_decay)
        X_sum, c_sum = sp.Matrix(sums.X_sum), sp.Matrix(sums.c_sum)
        own = sums.own(Sigma) + sums.cc
        return (alpha * own + beta * (X_sum * Sigma * X_sum + c_sum * c_sum.T)) / S**2

    def numeric_covariance(self, landscape, weight_decay=0):
        r"""``(Q0, L)`` in float64 without sympy matrices (all-numeric problems):

        * finite data, :math:`a_i = X_i\delta - c_i` with :math:`X_i = x_ix_i^\top`,
          :math:`c_i = x_ie_i`: :math:`S^2Q_0 = \alpha X^\top\operatorname{diag}(e^2)X +
          \beta(X^\top e)(X^\top e)^\top` and :math:`S^2\mathcal L(\Sigma) =
          \alpha X^\top\operatorname{diag}(x_i^\top\Sigma x_i)X + \beta G\Sigma G`,
          :math:`G = X^\top X` — O(N d²) per application;
        * Gaussian inputs: :math:`SQ_0 = A\,bb^\top A + \operatorname{Tr}(Abb^\top)A +
          \sigma^2A` and :math:`S\mathcal L(\Sigma) = A\Sigma A + \operatorname{Tr}(A\Sigma)A`
          (Isserlis, :meth:`~symsgd.landscapes.LinearRegression.gradient_covariance`);
        * general per-sample terms :math:`X_i\delta - c_i` (a local problem
          :meth:`symsgd.EmpiricalLoss.near`): :math:`S^2Q_0 = \alpha\sum_ic_ic_i^\top +
          \beta\,\bar c\bar c^\top` and :math:`S^2\mathcal L(\Sigma) = \alpha\sum_iX_i\Sigma X_i
          + \beta\,\bar X\Sigma\bar X` (:math:`\bar X = \sum_i X_i`, :math:`\bar c = \sum_i
          c_i`) — O(N d³).

        >>> import numpy as np, symsgd as ss
        >>> land = ss.LinearRegression(2, label_variance=1)
        >>> Q0, L = ss.MinibatchNoise(4).numeric_covariance(land)
        >>> Q0, L(np.array([[1.0]]))  # σ²a/S, (a² + a²)/S
        (array([[0.5]]), array([[2.]]))
        """
        N = self.resolved_dataset_size(landscape)
        S = float(self.batch_size)
        if N is sp.oo:
            A = _floats(landscape.A)
            b = landscape.numeric_offset(weight_decay)
            Ab = A @ b
            sigma2 = float(landscape.label_variance)
            Q0 = (np.outer(Ab, Ab) + float(b @ Ab) * A + sigma2 * A) / S

            return Q0, TraceCoupling(A, 1 / S, A, A / S)
        alpha, beta = (float(v) for v in sampling_design(self.batch_size, N, self.replacement))
        if not isinstance(landscape, LinearRegression):  # general per-sample terms X_iδ − c_i
            Xs, cs = landscape.numeric_sample_terms(weight_decay)
            X_sum, c_sum = Xs.sum(axis=0), cs.sum(axis=0)
            Q0 = (alpha * cs.T @ cs + beta * np.outer(c_sum, c_sum)) / S**2

            def general(Sigma):
                own = np.einsum("nij,jk,nkl->il", Xs, Sigma, Xs, optimize=True)
                return (alpha * own + beta * X_sum @ Sigma @ X_sum) / S**2

            return Q0, general
        X, e = landscape.numeric_samples(weight_decay)
        G = X.T @ X
        Xe = X.T @ e
        Q0 = (alpha * (X.T * e**2) @ X + beta * np.outer(Xe, Xe)) / S**2

        def linear(Sigma):
            q = np.einsum("ij,jk,ik->i", X, Sigma, X)
            return (alpha * (X.T * q) @ X + beta * G @ Sigma @ G) / S**2

        return Q0, linear

    def trace_coupling(self, landscape: Landscape, weight_decay=0) -> TraceCoupling | None:
        r"""Online Gaussian regression (``LinearRegression(A, label_variance=σ²)``, N = oo,
        an explicit matrix A): the linear part of the noise is local up to one trace,

        .. math:: S\,\mathcal L(\Sigma) = A\Sigma A + \operatorname{Tr}(A\Sigma)\,A,

        Isserlis' three pairings of :math:`\mathbb E[xx^\top\Sigma xx^\top]` (two give
        :math:`A\Sigma A`, one :math:`A\operatorname{Tr}(A\Sigma)`) minus the squared mean
        :math:`A\Sigma A` (:meth:`~symsgd.landscapes.LinearRegression.gradient_covariance`;
        the offset b of weight decay enters only :math:`Q_0`).  Returned as
        ``TraceCoupling(F=A, scale=1/S, W=A, D=A/S)``.  None for finite data sets (a sample
        :math:`x_i` mixes every block of A) and for eigen-mode landscapes (their trace is
        closed by :func:`symsgd.modes.close_trace`).

        >>> import sympy as sp, symsgd as ss
        >>> land = ss.LinearRegression(sp.diag(1, 2), label_variance=1)
        >>> L = ss.MinibatchNoise(4).trace_coupling(land)
        >>> L(sp.diag(1, 1)) == ss.MinibatchNoise(4).covariance(land, sp.diag(1, 1)) - \
        ...     ss.MinibatchNoise(4).covariance(land, sp.zeros(2, 2))
        True
        """
        if not isinstance(landscape, LinearRegression) or landscape.eigenmode:
            return None
        if landscape.data is not None or self.resolved_dataset_size(landscape) is not sp.oo:
            return None
        A = sp.ImmutableMatrix(landscape.A)
        S = self.batch_size
        return TraceCoupling(A, 1 / S, A, A / S)

    def fisher(self, landscape: Landscape, weight_decay=0) -> sp.Matrix:
        r"""The per-sample gradient covariance at the minimum, :math:`C_1 =
        \operatorname{Cov}_i[\nabla\ell_i]` for one sample i — independent of the batch size S
        and of the sampling design (those only scale how much of :math:`C_1` a minibatch
        average keeps):

        * Gaussian inputs (N = oo): :math:`C_1 = \sigma^2 A` without weight decay (in general
          :meth:`~symsgd.landscapes.LinearRegression.gradient_covariance` at Σ = 0);
        * a finite data set, i uniform over the N samples:
          :math:`C_1 = \frac1N\sum_i c_ic_i^\top - \bar c\,\bar c^\top`,
          :math:`\bar c = \frac1N\sum_i c_i` (zero without weight decay).

        With replacement :math:`C_1 = S\,Q(0)`; without replacement
        :math:`S\,Q(0) = \frac{N-S}{N-1}C_1`, which vanishes at S = N — the batch noise, not the
        per-sample covariance.

        >>> import sympy as sp, symsgd as ss
        >>> a, S = sp.Symbol("a", positive=True), ss.batch_size
        >>> ss.MinibatchNoise(S).fisher(ss.LinearRegression(a, label_variance=2))
        Matrix([[2*a]])
        """
        N = self.resolved_dataset_size(landscape)
        d = landscape.dim
        if N is sp.oo:
            return landscape.gradient_covariance(sp.zeros(d, d), weight_decay)
        sums = landscape.sample_sums(weight_decay)
        mean, own = sp.Matrix(sums.c_sum) / N, sp.Matrix(sums.cc) / N
        return (own - mean * mean.T).applyfunc(sp.cancel)

    def numeric_fisher(self, landscape, weight_decay=0):
        r""":meth:`fisher` in float64, without sympy matrices (all-numeric problems):
        :math:`C_1 = Abb^\top A + \operatorname{Tr}(Abb^\top)A + \sigma^2A` for Gaussian
        inputs, :math:`C_1 = \frac1N\sum_ic_ic_i^\top - \bar c\bar c^\top` for a finite data
        set (:math:`c_i = x_ie_i`, or the general per-sample terms of a local problem).

        >>> import sympy as sp, symsgd as ss
        >>> land = ss.LinearRegression(sp.diag(1.0, 2.0), label_variance=0.5)
        >>> ss.MinibatchNoise(4).numeric_fisher(land)  # σ²A
        array([[0.5, 0. ],
               [0. , 1. ]])
        """
        N = self.resolved_dataset_size(landscape)
        if N is sp.oo:
            A = _floats(landscape.A)
            b = landscape.numeric_offset(weight_decay)
            Ab = A @ b
            return np.outer(Ab, Ab) + float(b @ Ab) * A + float(landscape.label_variance) * A
        if isinstance(landscape, LinearRegression):
            X, e = landscape.numeric_samples(weight_decay)
            cs = X * e[:, None]
        else:
            _, cs = landscape.numeric_sample_terms(weight_decay)
        mean = cs.mean(axis=0)
        return cs.T @ cs / float(N) - np.outer(mean, mean)

    def __repr__(self) -> str:
        N = "" if self.dataset_size is None else f", dataset_size={self.dataset_size}"
        return f"MinibatchNoise(batch_size={self.batch_size}{N}, replacement={self.replacement})"
