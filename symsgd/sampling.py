r"""Turn a symbolic problem into a numeric one with real noise samplers.

:func:`prepare` substitutes the parameter values into an optimizer, landscape and noise model and
returns a :class:`Problem`: the optimizer as a numeric stepper, the preconditioner, the minimiser,
the spectral radius of the second-moment map and a stochastic-gradient oracle that samples real
gradients at the absolute parameters θ:

* :class:`~symsgd.noise.AdditiveNoise`: :math:`g(\theta) = H(\theta - \theta_*) + \xi`,
  :math:`\xi\sim N(0, C)` (``C`` may be singular; its symmetric square root is used);
* :class:`~symsgd.noise.MinibatchNoise` on :class:`~symsgd.landscapes.LinearRegression`:
  :math:`g(\theta) = \frac1S\sum_{i\in\text{batch}} x_i(x_i^\top\theta - y_i)` with fresh Gaussian
  samples :math:`x_i\sim N(0, A)`, :math:`y_i = \theta_*^\top x_i + \epsilon_i` (``dataset_size =
  oo``) or a batch of rows of the data set drawn with or without replacement.

The optimizer adds ``weight_decay·θ`` itself, so the chains settle around the minimiser
:math:`\theta_\gamma = (H+\gamma I)^{-1} H\theta_*` of the weight-decayed training loss, which the
problem carries (with the training loss as a function of the deviation from it).  A problem whose
second-moment map has spectral radius ρ ≥ 1 has no stationary law: :func:`prepare` raises
:class:`~symsgd.UnstableError` carrying ρ and the values (with advice found numerically); the
caller that holds the symbolic stability conditions names the failing one
(:func:`symsgd.stability.name_condition`).  The only symbolic object built here is the one
recursion with the values substituted.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ._util import field_symbols, float_fields, replace_fields
from .errors import FLAT_ADVICE, UnstableError
from .landscapes import Landscape, LinearRegression, Quadratic
from .models import EmpiricalLoss, LocalLandscape
from .moments import NumericMap
from .noise import AdditiveNoise, MinibatchNoise, Noise
from .numeric import resolve_values
from .optimizers import Optimizer
from .recursion import build_recursion
from .stability import as_number, parameter_label

__all__ = ["Problem", "check_pieces", "nonlinear", "prepare"]


# ---------------------------------------------------------------------------------------------
# substituting the parameter values
# ---------------------------------------------------------------------------------------------


def _array(m) -> np.ndarray:
    return np.array(sp.Matrix(m).evalf(), dtype=float)


def _sqrt_psd(C: np.ndarray, name: str) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (singular allowed)."""
    w, V = np.linalg.eigh((C + C.T) / 2)
    scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
    if w.size and w.min() < -1e-10 * scale:
        raise ValueError(
            f"{name} must be positive semi-definite; its smallest eigenvalue is "
            f"{w.min():.6g} at these parameters."
        )
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def _minimiser(landscape: Landscape, weight_decay) -> sp.Matrix:
    r"""The minimiser :math:`\theta_\gamma = (H + \gamma I)^{-1} H\theta_*` of the weight-decayed
    training loss, exactly (sympy) for a numeric landscape."""
    d = landscape.dim
    if isinstance(landscape, LocalLandscape):  # θ_γ = θ_e + b (a nonzero mean gradient allowed)
        return sp.Matrix(landscape.theta_star) + landscape.offset(weight_decay)
    star = getattr(landscape, "theta_star", None)
    star = sp.zeros(d, 1) if star is None else sp.Matrix(star)
    if star.is_zero_matrix:
        return sp.zeros(d, 1)
    H = sp.Matrix(landscape.hessian)
    return (H + sp.sympify(weight_decay) * sp.eye(d)).LUsolve(H * star)


# ---------------------------------------------------------------------------------------------
# gradient oracles
# ---------------------------------------------------------------------------------------------


class _Oracle:
    """A stochastic-gradient oracle for one block of chains (created in the block's thread)."""

    #: array elements touched per chain and step, relative to a scalar additive problem
    work: int = 1

    def make(self, rng: np.random.Generator, n: int) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Additive(_Oracle):
    r""":math:`g(\theta) = H\theta - H\theta_* + L z` with :math:`z\sim N(0, I)` and
    :math:`LL^\top = C`."""

    H: np.ndarray
    shift: np.ndarray  # H θ*
    L: np.ndarray

    @property
    def work(self) -> int:
        return self.H.shape[0] ** 2

    def make(self, rng, n):
        d = self.H.shape[0]
        z = np.empty((d, n))
        normal = rng.standard_normal
        if d == 1:
            h, s, c = float(self.H[0, 0]), float(self.L[0, 0]), float(self.shift[0])

            def grad(x):
                normal(out=z)
                g = x * h
                np.multiply(z, s, out=z)
                g += z
                if c:
                    g -= c
                return g

            return grad
        H, L, shift = self.H, self.L, self.shift[:, None]
        diagonal = np.count_nonzero(L - np.diag(np.diagonal(L))) == 0
        scale = np.diagonal(L)[:, None].copy()
        has_shift = bool(np.any(shift))

        def grad_matrix(x):
            normal(out=z)
            g = H @ x
            if diagonal:
                np.multiply(z, scale, out=z)
                g += z
            else:
                g += L @ z
            if has_shift:
                g -= shift
            return g

        return grad_matrix


@dataclass(frozen=True)
class _Online(_Oracle):
    r"""Fresh Gaussian minibatches: :math:`x_i = L_A z_i`, :math:`y_i = \theta_*^\top x_i +
    \sigma\epsilon_i`, :math:`g = \frac1S\sum_i x_i(x_i^\top\theta - y_i)`."""

    LA: np.ndarray
    star: np.ndarray
    sigma: float
    batch: int

    @property
    def work(self) -> int:
        return self.LA.shape[0] * (self.batch + 1)

    def make(self, rng, n):
        d, S = self.LA.shape[0], self.batch
        LA, star, sigma = self.LA, self.star[:, None], self.sigma
        z = np.empty((S, d, n))
        eps = np.empty((S, n))
        has_star = bool(np.any(star))

        def grad(x):
            rng.standard_normal(out=z)
            xs = np.matmul(LA, z)  # (S, d, n): x_i = L_A z_i
            u = x - star if has_star else x
            r = np.einsum("sin,in->sn", xs, u)
            if sigma:
                rng.standard_normal(out=eps)
                r -= sigma * eps
            return np.einsum("sin,sn->in", xs, r) / S

        return grad


def _batch_sampler(
    rng: np.random.Generator, N: int, S: int, n: int, replacement: bool
) -> Callable[[], np.ndarray]:
    """Minibatch indices for ``n`` chains, shape (S, n), one call per step: S rows drawn
    uniformly with replacement, or a uniformly random S-subset without (the S smallest of N
    i.i.d. uniforms).  Every finite-data oracle draws its batches here, so oracles of the same
    data set, batch design and generator state draw the *same* batches (common random numbers:
    :func:`nonlinear`)."""
    if replacement:
        return lambda: rng.integers(0, N, size=(S, n))
    if S == N:
        full = np.broadcast_to(np.arange(N)[:, None], (N, n))
        return lambda: full
    uniform = np.empty((N, n))

    def subset():
        rng.random(out=uniform)
        return np.argpartition(uniform, S - 1, axis=0)[:S]

    return subset


def _sampled_work(d: int, S: int, N: int, replacement: bool) -> int:
    """Block-sizing work of the per-sample oracles of a general model (linearised and nonlinear
    alike, so that both split the chains into the same blocks and draw the same batches)."""
    return d * d * (S + 1) + (0 if replacement else N)


@dataclass(frozen=True)
class _Data(_Oracle):
    r"""Minibatches of a finite data set (:func:`_batch_sampler`):
    :math:`g = \frac1S\sum_{i\in\text{batch}} x_i(x_i^\top\theta - y_i)`."""

    X: np.ndarray  # (N, d)
    Y: np.ndarray  # (N,)
    batch: int
    replacement: bool

    @property
    def work(self) -> int:
        N, d = self.X.shape
        return d * (self.batch + 1) + (0 if self.replacement else N)

    def make(self, rng, n):
        X, Y, S = self.X, self.Y, self.batch
        indices = _batch_sampler(rng, X.shape[0], S, n, self.replacement)

        def grad(x):
            idx = indices()
            xs = X[idx]  # (S, n, d)
            r = np.einsum("snd,dn->sn", xs, x) - Y[idx]
            return np.einsum("snd,sn->dn", xs, r) / S

        return grad


@dataclass(frozen=True)
class _Local(_Oracle):
    r"""Minibatches of the linearised per-sample gradients of a general model near θ*
    (:class:`~symsgd.models.LocalLandscape`):
    :math:`g(\theta) = \frac1S\sum_{i\in\text{batch}}\bigl(g_i + H_i(\theta - \theta_*)\bigr)`."""

    Hs: np.ndarray  # (N, d, d)
    gs: np.ndarray  # (N, d)
    star: np.ndarray  # (d,)
    batch: int
    replacement: bool

    @property
    def work(self) -> int:
        N, d = self.gs.shape
        return _sampled_work(d, self.batch, N, self.replacement)

    def make(self, rng, n):
        Hs, gs, S = self.Hs, self.gs, self.batch
        N, d = gs.shape
        star = self.star[:, None]
        indices = _batch_sampler(rng, N, S, n, self.replacement)
        if d == 1:
            h, g0 = Hs[:, 0, 0], gs[:, 0]

            def grad_scalar(x):
                idx = indices()
                return ((h[idx] * (x - star)).sum(axis=0) + g0[idx].sum(axis=0))[None, :] / S

            return grad_scalar

        def grad(x):
            idx = indices()
            H = Hs[idx].sum(axis=0)  # (n, d, d)
            g = gs[idx].sum(axis=0)  # (n, d)
            return (np.einsum("nij,jn->in", H, x - star) + g.T) / S

        return grad


@dataclass(frozen=True)
class _Nonlinear(_Oracle):
    r"""Minibatches of the real per-sample gradients of a general model
    (:class:`~symsgd.models.EmpiricalLoss`): :math:`g(\theta) =
    \frac1S\sum_{i\in\text{batch}}\nabla\ell(\theta; x_i)`, the compiled (lambdified, CSE)
    gradient evaluated at the chains' θ columns with the batch's data rows, shape (S, chains)."""

    gradient: Callable  # (*θ, *x) -> d arrays broadcasting over (S, chains)
    X: np.ndarray  # (N, k)
    dim: int
    batch: int
    replacement: bool

    @property
    def work(self) -> int:
        return _sampled_work(self.dim, self.batch, self.X.shape[0], self.replacement)

    def make(self, rng, n):
        S, d = self.batch, self.dim
        N = self.X.shape[0]
        columns = [np.ascontiguousarray(self.X[:, j]) for j in range(self.X.shape[1])]
        f = self.gradient
        indices = _batch_sampler(rng, N, S, n, self.replacement)

        def grad(x):
            idx = indices()
            parts = f(*x, *(c[idx] for c in columns))
            g = np.empty((d, n))
            for a in range(d):
                p = parts[a]
                if np.ndim(p) == 2:
                    np.sum(p, axis=0, out=g[a])
                    g[a] /= S
                else:  # a component that does not depend on the data (an L2 term)
                    g[a] = p
            return g

        return grad


def _make_oracle(land: Landscape, noise: Noise) -> _Oracle:
    d = land.dim
    star = getattr(land, "theta_star", None)
    star = np.zeros(d) if star is None else _array(star).reshape(d)
    if isinstance(noise, AdditiveNoise):
        noise.covariance(land, sp.zeros(d, d))  # validates the shape
        H = _array(land.hessian)
        return _Additive(H=H, shift=H @ star, L=_sqrt_psd(_array(noise.C), "C"))
    if isinstance(noise, MinibatchNoise):
        N = noise.resolved_dataset_size(land)  # raises for landscapes without samples
        S = noise.batch_size
        if not (S.is_Integer and S >= 1):
            raise ValueError(f"MinibatchNoise: batch_size must be an integer ≥ 1; got {S}.")
        S = int(S)
        if N is not sp.oo and not noise.replacement and S > int(N):
            raise ValueError(
                f"MinibatchNoise: without replacement the batch_size must be ≤ the data-set "
                f"size N = {N}; got S = {S}. Lower the batch size or sample with replacement."
            )
        if isinstance(land, LocalLandscape):
            Hs, gs = land.numeric_terms()
            return _Local(Hs=Hs, gs=gs, star=star, batch=S, replacement=noise.replacement)
        if land.data is None:
            sigma2 = float(_label_variance(land))
            return _Online(
                LA=_sqrt_psd(_array(land.A), "A"), star=star, sigma=math.sqrt(sigma2), batch=S
            )
        X, Y = (_array(m) for m in land.data)
        return _Data(X=X, Y=Y.ravel(), batch=S, replacement=noise.replacement)
    raise NotImplementedError(
        f"simulate() samples AdditiveNoise and MinibatchNoise gradients; got {noise!r}."
    )


# ---------------------------------------------------------------------------------------------
# the prepared problem
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LossModel:
    r"""Training loss :math:`\tfrac12(\delta + b)^\top H(\delta + b) + \text{const}` of the
    deviation δ from the minimiser (``b`` = minimiser − least-squares/noiseless optimum)."""

    H: np.ndarray
    b: np.ndarray
    const: float
    #: the gradient ḡ of the loss at the expansion point (a local problem expanded at a
    #: weight-decayed minimum): the loss gains ḡᵀ(δ + b)
    g: np.ndarray | None = None

    def per_chain(self, m1: np.ndarray, s2: np.ndarray, pairs) -> np.ndarray:
        i, j = pairs
        weight = np.where(i == j, 0.5, 1.0) * self.H[i, j]
        out = weight @ s2 + (self.H @ self.b) @ m1
        if self.g is not None:
            out = out + self.g @ m1 + self.g @ self.b
        return out + 0.5 * self.b @ self.H @ self.b + self.const


def _loss_model(landscape: Landscape, theta_min: sp.Matrix) -> _LossModel | None:
    d = landscape.dim
    H = _array(landscape.hessian)
    if isinstance(landscape, Quadratic):
        return _LossModel(H, np.zeros(d), 0.0)
    if isinstance(landscape, LocalLandscape):  # L* + ḡᵀ(δ + b) + ½(δ + b)ᵀH(δ + b)
        b = _array(theta_min - sp.Matrix(landscape.theta_star)).ravel()
        g = landscape.numeric_terms()[1].mean(axis=0)
        return _LossModel(H, b, float(landscape.minimum_loss), g if np.any(g) else None)
    if isinstance(landscape, LinearRegression):
        star = sp.Matrix(landscape.theta_star)
        b = _array(theta_min - star).ravel()
        if landscape.data is None:
            return _LossModel(H, b, float(_label_variance(landscape)) / 2)
        X, Y = (_array(m) for m in landscape.data)
        residual = X @ _array(star).ravel() - Y.ravel()
        return _LossModel(H, b, float(residual @ residual) / (2 * X.shape[0]))
    return None


@dataclass(frozen=True)
class Problem:
    """A simulation-ready numeric problem (see :func:`prepare`)."""

    optimizer: Optimizer  # the symbolic pieces, for messages
    landscape: Landscape
    noise: Noise
    values: dict  # symbol -> sympy number
    stepper: Optimizer  # numeric copy whose scalar fields are floats
    P: np.ndarray | None
    oracle: _Oracle
    theta_min: np.ndarray
    loss_model: _LossModel | None
    rho: float
    #: numeric (M, B, K) of the recursion z' = Mz + Bξ (ξ the gradient noise at Kz)
    state_space: tuple[np.ndarray, np.ndarray, np.ndarray]
    hessian: np.ndarray  # numeric Hessian of the landscape (population or empirical)
    #: θ = theta_map · z: the optimizer's readout of its state (n_θ × n)
    theta_map: np.ndarray | None = None
    #: "linearised" (the landscape's own gradients) or "nonlinear" (the real gradients of the
    #: model of a :class:`~symsgd.models.LocalLandscape`: :func:`nonlinear`)
    dynamics: str = "linearised"

    @property
    def dim(self) -> int:
        return self.theta_min.shape[0]

    def precondition(self) -> Callable[[np.ndarray], np.ndarray]:
        P = self.P
        if P is None:
            return _identity
        if P.shape == (1, 1):
            p = float(P[0, 0])
            return lambda v: p * v
        if np.count_nonzero(P - np.diag(np.diagonal(P))) == 0:
            diag = np.diagonal(P)[:, None].copy()
            return lambda v: diag * v
        return lambda v: P @ v

    def describe(self) -> str:
        name = type(self.optimizer).__name__
        if self.dynamics == "nonlinear":
            star = ", ".join(f"{float(v):.6g}" for v in self.landscape.theta_star)
            return (
                f"{name} on the nonlinear {self.landscape.model!r} from θ* = [{star}] with "
                f"{self.noise!r}"
            )
        return f"{name} on {self.landscape!r} with {self.noise!r}"

    def instability(self, rho: float, reason: str | None = None) -> UnstableError:
        """The :class:`UnstableError` for this problem at spectral radius ``rho`` (``reason``:
        what went wrong, when not just ρ ≥ 1)."""
        return _instability(self, rho, reason)


def _identity(v):
    return v


def prepare(
    optimizer: Optimizer,
    landscape: Landscape,
    noise: Noise,
    params: Mapping,
    *,
    require_stable: bool = True,
) -> Problem:
    """Substitute ``params`` (keys: symbols, names or aliases) into the problem and build its
    numeric gradient oracle; raises :class:`UnstableError` if the second moments are unbounded
    there (ρ ≥ 1) unless ``require_stable=False`` (the tail index and the Lyapunov exponent are
    defined beyond the mean-square edge: :mod:`symsgd.tails`).

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> p = prepare(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c), {"lr": 0.5, h: 1, c: 1})
    >>> round(p.rho, 6)  # (1 - λh)²
    0.25
    """
    check_pieces(optimizer, landscape, noise, params)
    reduction = getattr(landscape, "reduction", None)  # a rank-deficient data set's row space
    if reduction is not None:
        reduction.check_optimizer(optimizer)
    symbols = field_symbols(optimizer) | field_symbols(landscape) | field_symbols(noise)
    resolved = resolve_values(dict(params or {}), symbols)
    values = {k: as_number(k, v) for k, v in resolved.items()}
    opt, land, nz = (replace_fields(x, values) for x in (optimizer, landscape, noise))
    land = land.one_mode()  # one eigen-mode: simulate the explicit 1-D problem with that eigenvalue
    rec = build_recursion(opt, land, nz)  # the one (numeric) recursion
    missing = symbols - set(values)
    pieces = field_symbols(landscape) | field_symbols(noise)
    # optimizer fields the update does not use (Adam's beta2) need no value
    missing &= pieces | rec.M.free_symbols | rec.B.free_symbols
    if missing:
        names = ", ".join(sorted(map(str, missing)))
        raise ValueError(f"simulate() needs a value for every parameter; missing {names}.")
    _check_domain(optimizer, landscape, noise, opt, land, nz, values)
    d = land.dim
    gamma = opt.weight_decay
    theta_min = _minimiser(land, gamma)
    P = opt.preconditioner(land, nz)
    oracle = _make_oracle(land, nz)
    moments = NumericMap.from_recursion(rec)
    rho = moments.radius()
    problem = Problem(
        optimizer=optimizer,
        landscape=landscape,
        noise=noise,
        values=values,
        stepper=float_fields(opt),
        P=None if P is None else _array(P),
        oracle=oracle,
        theta_min=_array(theta_min).reshape(d),
        loss_model=_loss_model(land, theta_min),
        rho=rho,
        state_space=(moments.M, moments.B, moments.K),
        hessian=_array(land.hessian),
        theta_map=_array(rec.theta_map),
    )
    if require_stable and not rho < 1:
        raise problem.instability(rho)
    return problem


def nonlinear(problem: Problem) -> Problem:
    r"""``problem`` — prepared (:func:`prepare`) on the local problem
    :class:`~symsgd.models.LocalLandscape` of an :class:`~symsgd.EmpiricalLoss` with
    :class:`~symsgd.MinibatchNoise` — with the *real* dynamics: the oracle returns the minibatch
    mean of the real per-sample gradients :math:`\nabla\ell(\theta; x_i)` of the model (its
    compiled gradient, :meth:`~symsgd.EmpiricalLoss.compiled`) instead of their linearisation
    :math:`g_i + H_i(\theta - \theta_*)`.  Everything else is the local problem's: the minimiser
    the chains start from and are measured from, the preconditioner of preconditioned optimizers,
    and the spectral radius ρ (which sets the burn-in).  The training loss is not measured
    (``loss_model`` None): it would cost a full pass over the data per step.

    Both oracles draw their minibatches with the same helper and split the chains into the same
    blocks, so runs of the two problems with the same ``seed``, ``chains``, ``steps`` and
    ``burn_in`` use the *same* minibatches (common random numbers): their per-chain difference
    measures the departure from the linearised dynamics with a small standard error.

    Raises ``ValueError`` for another landscape or noise model, or a model with symbolic data.

    >>> import sympy as sp, symsgd as ss
    >>> w, x = sp.symbols("w x")
    >>> model = ss.EmpiricalLoss((w**3 / 3 - w) * x, [w], [x], [1, 2, 3])
    >>> local = model.near(model.minimum(start=[2]))  # ∇ℓ = (w² − 1)x: the minimum w = 1
    >>> full = ss.MinibatchNoise(3, replacement=False)  # the whole data set: mean x = 2
    >>> p = nonlinear(prepare(ss.SGD(ss.lr), local, full, {"lr": 0.1}))
    >>> p.oracle.make(np.random.default_rng(0), 3)(np.array([[1.0, 2.0, 3.0]]))  # 2(w² − 1)
    array([[ 0.,  6., 16.]])
    """
    land = problem.landscape
    if not isinstance(land, LocalLandscape) or not isinstance(land.model, EmpiricalLoss):
        raise ValueError(
            f"the nonlinear dynamics need the local problem of an EmpiricalLoss "
            f"(model.near(θ*)); got {land!r}, whose dynamics are its own."
        )
    if not isinstance(problem.noise, MinibatchNoise):
        raise ValueError(
            f"the nonlinear dynamics sample real minibatches of the data set: use "
            f"MinibatchNoise(S, replacement=…); got {problem.noise!r}."
        )
    model = land.model
    oracle = _Nonlinear(
        gradient=model.compiled().gradient,
        X=model.data_array(),
        dim=model.dim,
        batch=problem.oracle.batch,
        replacement=problem.oracle.replacement,
    )
    return dataclasses.replace(problem, oracle=oracle, loss_model=None, dynamics="nonlinear")


def prepare_result(
    result, params: Mapping | None, context: str, *, require_stable: bool = True
) -> Problem:
    """:func:`prepare` for the problem ``result`` (of :func:`symsgd.stationary`) was derived
    from, at ``params`` merged with ``result.values``; errors name ``context`` (e.g.
    ``"tail_index()"``).  ``require_stable=False``: also beyond the mean-square edge."""
    from ._result import recursion_of

    recursion = recursion_of(result, context)
    given = {**getattr(result, "values", {}), **dict(params or {})}
    pieces = (recursion.optimizer, recursion.landscape, recursion.noise)
    try:
        return prepare(*pieces, given, require_stable=require_stable)
    except ValueError as exc:  # "simulate() needs a value" → the caller's name
        raise ValueError(str(exc).replace("simulate()", context)) from None


def check_pieces(optimizer, landscape, noise, params=None, name: str = "params") -> None:
    """``TypeError`` naming the argument when ``optimizer``, ``landscape`` or ``noise`` is not
    a symsgd value object or ``params`` (``name`` in messages) is not a mapping (or None).

    >>> import symsgd as ss
    >>> check_pieces(ss.SGD(ss.lr), ss.Quadratic(1), ss.AdditiveNoise(1), [0.1])
    Traceback (most recent call last):
    ...
    TypeError: params must be a mapping {symbol, name or alias: number}, e.g. {"lr": 0.1}; got list.
    """
    for arg, value, kind, example in (
        ("optimizer", optimizer, Optimizer, "ss.SGD(ss.lr)"),
        ("landscape", landscape, Landscape, "ss.Quadratic(h)"),
        ("noise", noise, Noise, "ss.AdditiveNoise(c)"),
    ):
        if not isinstance(value, kind):
            raise TypeError(
                f"{arg} must be a symsgd {kind.__name__} such as {example}; got {value!r}."
            )
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(
            f"{name} must be a mapping {{symbol, name or alias: number}}, e.g. "
            f'{{"lr": 0.1}}; got {type(params).__name__}.'
        )


def _at(piece, values: dict) -> str:
    """``" (at h = -1, c = 2)"``: the given values of the symbols ``piece`` depends on."""
    used = field_symbols(piece)
    shown = ", ".join(
        f"{parameter_label(k)} = {sp.sstr(v)}"
        for k, v in sorted(values.items(), key=str)
        if k in used
    )
    return f" (at {shown})" if shown else ""


def _label_variance(landscape):
    """The label-noise variance σ² of a regression landscape (None for other landscapes)."""
    value = getattr(landscape, "label_variance", None)
    return getattr(landscape, "label_noise", None) if value is None else value


def _check_domain(optimizer, landscape, noise, opt, land, nz, values: dict) -> None:
    r"""Refuse values outside the problem's domain, whatever the symbols declare: a learning
    rate λ ≤ 0, weight decay γ < 0, a Hessian that is not positive semi-definite (not a minimum:
    no learning rate gives a stationary law) or a negative label-noise variance.  Each
    ``ValueError`` names the quantity, the allowed range and the values that put it there."""
    lr = sp.sympify(opt.lr)
    if lr.is_number and not bool(lr > 0):
        raise ValueError(
            f"the learning rate {sp.sstr(optimizer.lr)} must be > 0; got {sp.sstr(lr)}"
            f"{_at(optimizer, values)}."
        )
    gamma = sp.sympify(opt.weight_decay)
    if gamma.is_number and bool(gamma < 0):
        raise ValueError(
            f"the weight decay {sp.sstr(optimizer.weight_decay)} must be ≥ 0; got "
            f"{sp.sstr(gamma)}{_at(optimizer, values)}."
        )
    H = sp.Matrix(land.hessian)
    if not H.free_symbols:
        eig = np.linalg.eigvalsh(_array(H))
        scale = max(1.0, float(np.max(np.abs(eig))))
        if eig.min() < -1e-12 * scale:
            raise ValueError(
                f"the Hessian {sp.sstr(sp.Matrix(landscape.hessian))} must be positive "
                f"semi-definite (a minimum); its smallest eigenvalue is {eig.min():.6g}"
                f"{_at(landscape, values)}. Along a direction of negative curvature the "
                "iterates run away whatever the learning rate."
            )
    sigma2 = _label_variance(land)
    if isinstance(sigma2, sp.Expr) and sigma2.is_number and bool(sigma2 < 0):
        raise ValueError(
            f"the label-noise variance {sp.sstr(_label_variance(landscape))} must be ≥ 0; got "
            f"{sp.sstr(sigma2)}{_at(landscape, values)}."
        )


def _instability(problem: Problem, rho: float, reason: str | None = None) -> UnstableError:
    """ρ (and ``reason``) at the problem's values, with advice found numerically; the caller
    that holds the symbolic conditions names the failing one
    (:func:`symsgd.stability.name_condition`)."""
    return UnstableError.at(
        "simulate()",
        dict(sorted(problem.values.items(), key=str)),
        subject=problem.describe(),
        rho=rho,
        reason=reason,
        advice=_advice(problem, rho),
    )


def _advice(problem: Problem, rho: float) -> str:
    """What to change, found numerically (no symbolic condition is derived here): lower the
    learning rate only if that restores ρ < 1 (tried at ½, ⅒ and 1/100 of it); otherwise say
    that a flat direction (singular Hessian) or another parameter is the cause."""
    if rho < 1:  # the run overflowed although the second moments are bounded
        return (
            "The second moments are bounded but the iterates overflowed: the stationary law "
            "has heavy (power-law) tails here. Lower the learning rate (or raise the batch size)."
        )
    values = problem.values
    opt, land, nz = (
        replace_fields(x, values) for x in (problem.optimizer, problem.landscape, problem.noise)
    )
    land = land.one_mode()
    gamma = (
        float(sp.sympify(opt.weight_decay))
        if not sp.sympify(opt.weight_decay).free_symbols
        else 0.0
    )
    eig = np.linalg.eigvalsh(problem.hessian) + gamma
    if eig.size and eig.min() <= 1e-12 * max(1.0, float(np.max(np.abs(eig)))):
        return FLAT_ADVICE
    lr = sp.sympify(opt.lr)
    if lr.is_number:
        for factor in (sp.Rational(1, 2), sp.Rational(1, 10), sp.Rational(1, 100)):
            smaller = copy.copy(opt)
            object.__setattr__(smaller, "lr", lr * factor)
            try:
                radius = NumericMap.from_recursion(build_recursion(smaller, land, nz)).radius()
            except (ValueError, TypeError, ArithmeticError):  # pragma: no cover - defensive
                break
            if radius < 1:
                return (
                    f"Lower the learning rate (ρ = {radius:.3g} < 1 at the learning rate "
                    f"{float(lr * factor):.6g})."
                )
        return (
            "Lowering the learning rate does not help (ρ ≥ 1 even at 1/100 of it): another "
            "parameter is out of range (e.g. momentum ≥ 1)."
        )
    return "Lower the learning rate."
