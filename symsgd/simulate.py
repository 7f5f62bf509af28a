r"""Monte Carlo simulation of the real optimizer near a minimum.

:func:`simulate` runs the optimizer's own update rule — :meth:`~symsgd.optimizers.Optimizer.step`,
the rule the :class:`~symsgd.recursion.LinearRecursion` is derived from — on numpy arrays of shape
``(d, chains)``, with real stochastic gradients evaluated at the absolute parameters θ:

* :class:`~symsgd.noise.AdditiveNoise`: :math:`g(\theta) = H(\theta - \theta_*) + \xi`,
  :math:`\xi\sim N(0, C)` (``C`` may be singular; its symmetric square root is used);
* :class:`~symsgd.noise.MinibatchNoise` on :class:`~symsgd.landscapes.LinearRegression`:
  :math:`g(\theta) = \frac1S\sum_{i\in\text{batch}} x_i(x_i^\top\theta - y_i)` with fresh Gaussian
  samples :math:`x_i\sim N(0, A)`, :math:`y_i = \theta_*^\top x_i + \epsilon_i` (``dataset_size =
  oo``) or a batch of rows of the data set drawn with or without replacement.

The optimizer adds ``weight_decay·θ`` itself.  Statistics are of the deviation
:math:`\delta = \theta - \theta_\gamma` from the minimiser :math:`\theta_\gamma = (H+\gamma I)^{-1}
H\theta_*` of the weight-decayed training loss, streamed per chain (memory
:math:`O(\text{chains}\cdot d^2)`, independent of the number of steps):

.. math:: \hat\Sigma = \frac1{\text{chains}}\sum_c \frac1T\sum_{t=1}^T
          \delta_{c,t}\delta_{c,t}^\top,

and the same for the velocity :math:`v_t = \theta_t - \theta_{t-1}`.

Each chain's time average is one independent, identically distributed sample, so the standard error
is the across-chain standard deviation of those averages over :math:`\sqrt{\text{chains}}` — honest
under any autocorrelation within a chain.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
import sympy as sp

from .errors import UnstableError
from .landscapes import Landscape, LinearRegression, Quadratic
from .noise import AdditiveNoise, MinibatchNoise, Noise
from .numeric import resolve_values
from .optimizers import Optimizer
from .recursion import build_recursion
from .stability import advice, stability_conditions

__all__ = ["Problem", "Simulation", "default_burn_in", "default_size", "prepare", "run", "simulate"]

#: |θ| beyond this (or NaN) means the run diverged
DIVERGENCE_BOUND = 1e100
#: burn-in leaves a relative transient of at most this in the second moments
BURN_IN_TOLERANCE = 1e-8
#: longest automatic burn-in
MAX_BURN_IN = 1_000_000
#: chain-steps of work (≈ array elements touched per step) in one block; sized for the L2 cache
BLOCK_WORK = 16384


@dataclass(frozen=True)
class Simulation:
    r"""Stationary statistics of a simulated optimizer, with standard errors.

    All matrices are numpy arrays of shape ``(d, d)`` — ``(1, 1)`` for scalar and eigen-mode
    problems (``Stationary.cov`` is then a scalar: compare with ``sim.cov[0, 0]``).

    ``cov`` is :math:`\mathbb E[\delta\delta^\top]` of the deviation from the minimiser, which is
    Var θ at stationarity (where :math:`\mathbb E\delta = 0`; ``mean`` reports the measured
    :math:`\mathbb E\delta` as a check).  ``velocity_cov`` is :math:`\mathbb E[v v^\top]` for
    :math:`v_t = \theta_t - \theta_{t-1}` of consecutive iterates.  ``loss`` is the time-averaged
    training loss of the iterates (``½θᵀHθ`` for a quadratic; the population or empirical
    squared-error loss for linear regression), ``None`` for a landscape without a numeric loss.

    Standard errors (``*_stderr``) are the across-chain standard deviation of the per-chain time
    averages divided by :math:`\sqrt{\text{chains}}` (``chains − 1`` degrees of freedom).
    ``seed`` reproduces the run when passed back to :func:`simulate`.
    """

    cov: np.ndarray
    cov_stderr: np.ndarray
    velocity_cov: np.ndarray
    velocity_cov_stderr: np.ndarray
    loss: float | None
    loss_stderr: float | None
    mean: np.ndarray
    mean_stderr: np.ndarray
    chains: int
    steps: int
    burn_in: int
    seed: int | np.random.SeedSequence
    #: spectral radius ρ of the second-moment map at the parameters (sets the burn-in)
    spectral_radius: float
    #: the parameter values used, keyed by symbol
    params: dict = field(repr=False)
    #: wall-clock seconds of the run (excluding preparation)
    elapsed: float = field(default=0.0, repr=False)

    @property
    def dim(self) -> int:
        return self.cov.shape[0]


# ---------------------------------------------------------------------------------------------
# preparing a numeric problem
# ---------------------------------------------------------------------------------------------


def _free_symbols(obj) -> set:
    """Free symbols of every sympy value held by a value object (fields, tuples of them)."""
    out: set = set()
    for value in vars(obj).values():
        out |= _symbols_in(value)
    return out


def _symbols_in(value) -> set:
    if isinstance(value, sp.Basic):
        return set(value.free_symbols)
    if isinstance(value, (tuple, list)):
        out: set = set()
        for v in value:
            out |= _symbols_in(v)
        return out
    return set()


def _substitute(obj, values: dict):
    """A copy of the frozen value object ``obj`` with ``values`` substituted in every sympy field.

    Fields are replaced directly (the constructors validated the symbolic object already)."""
    new = copy.copy(obj)
    for name, value in vars(obj).items():
        object.__setattr__(new, name, _subs_value(value, values))
    return new


def _subs_value(value, values):
    if isinstance(value, sp.Basic):
        return value.xreplace(values)
    if isinstance(value, tuple):
        return tuple(_subs_value(v, values) for v in value)
    if isinstance(value, list):
        return [_subs_value(v, values) for v in value]
    return value


def _as_number(key, value) -> sp.Expr:
    number = sp.sympify(value)
    if not isinstance(number, sp.Expr) or number.free_symbols or not number.is_number:
        raise ValueError(f"parameter {key} must be a number; got {value!r}.")
    if number.is_Float and float(number).is_integer():
        return sp.Integer(int(number))
    return number


def _float_fields(optimizer: Optimizer) -> Optimizer:
    """A copy of a numeric optimizer whose scalar fields are Python floats, so that
    :meth:`~symsgd.optimizers.Optimizer.step` runs on numpy arrays at numpy speed."""
    new = copy.copy(optimizer)
    for f in fields(optimizer):
        value = getattr(optimizer, f.name)
        if (
            isinstance(value, sp.Expr)
            and not isinstance(value, sp.MatrixBase)
            and (value.is_number)
        ):
            object.__setattr__(new, f.name, float(value))
    return new


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
    star = getattr(landscape, "theta_star", None)
    star = sp.zeros(d, 1) if star is None else sp.Matrix(star)
    if star.is_zero_matrix:
        return sp.zeros(d, 1)
    H = sp.Matrix(landscape.hessian)
    return (H + sp.sympify(weight_decay) * sp.eye(d)).LUsolve(H * star)


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


@dataclass(frozen=True)
class _Data(_Oracle):
    r"""Minibatches of a finite data set: S rows drawn uniformly with replacement, or a uniformly
    random S-subset without;
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
        N = X.shape[0]
        uniform = np.empty((N, n))

        def indices():
            if self.replacement:
                return rng.integers(0, N, size=(S, n))
            if S == N:
                return np.broadcast_to(np.arange(N)[:, None], (N, n))
            rng.random(out=uniform)  # the S smallest of N i.i.d. uniforms: a uniform S-subset
            return np.argpartition(uniform, S - 1, axis=0)[:S]

        def grad(x):
            idx = indices()
            xs = X[idx]  # (S, n, d)
            r = np.einsum("snd,dn->sn", xs, x) - Y[idx]
            return np.einsum("snd,sn->dn", xs, r) / S

        return grad


@dataclass(frozen=True)
class _LossModel:
    r"""Training loss :math:`\tfrac12(\delta + b)^\top H(\delta + b) + \text{const}` of the
    deviation δ from the minimiser (``b`` = minimiser − least-squares/noiseless optimum)."""

    H: np.ndarray
    b: np.ndarray
    const: float

    def per_chain(self, m1: np.ndarray, s2: np.ndarray, pairs) -> np.ndarray:
        i, j = pairs
        weight = np.where(i == j, 0.5, 1.0) * self.H[i, j]
        out = weight @ s2 + (self.H @ self.b) @ m1
        return out + 0.5 * self.b @ self.H @ self.b + self.const


def _loss_model(landscape: Landscape, theta_min: sp.Matrix) -> _LossModel | None:
    d = landscape.dim
    H = _array(landscape.hessian)
    if isinstance(landscape, Quadratic):
        return _LossModel(H, np.zeros(d), 0.0)
    if isinstance(landscape, LinearRegression):
        star = sp.Matrix(landscape.theta_star)
        b = _array(theta_min - star).ravel()
        if landscape.data is None:
            return _LossModel(H, b, float(landscape.label_noise) / 2)
        X, Y = (_array(m) for m in landscape.data)
        residual = X @ _array(star).ravel() - Y.ravel()
        return _LossModel(H, b, float(residual @ residual) / (2 * X.shape[0]))
    return None


@dataclass(frozen=True)
class Problem:
    """A simulation-ready numeric problem (see :func:`prepare`)."""

    optimizer: Optimizer  # the symbolic pieces, for messages and stability conditions
    landscape: Landscape
    noise: Noise
    values: dict  # symbol -> sympy number
    stepper: Optimizer  # numeric copy whose scalar fields are floats
    P: np.ndarray | None
    oracle: _Oracle
    theta_min: np.ndarray
    loss_model: _LossModel | None
    rho: float

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
        return f"{type(self.optimizer).__name__} on {self.landscape!r} with {self.noise!r}"

    def instability(self, rho: float, what: str) -> UnstableError:
        """The :class:`UnstableError` naming the violated stability condition."""
        return _instability(self, rho, what)


def _identity(v):
    return v


def prepare(optimizer: Optimizer, landscape: Landscape, noise: Noise, params: Mapping) -> Problem:
    """Substitute ``params`` (keys: symbols, names or aliases) into the problem and build its
    numeric gradient oracle; raises :class:`UnstableError` if no stationary law exists there.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> p = prepare(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c), {"lr": 0.5, h: 1, c: 1})
    >>> round(p.rho, 6)  # (1 - λh)²
    0.25
    """
    symbols = _free_symbols(optimizer) | _free_symbols(landscape) | _free_symbols(noise)
    resolved = resolve_values(params, symbols)
    values = {k: _as_number(k, v) for k, v in resolved.items()}
    missing = symbols - set(values)
    pieces = _free_symbols(landscape) | _free_symbols(noise)
    if missing - pieces:  # optimizer fields the update does not use (Adam's beta2) need no value
        rec = build_recursion(optimizer, landscape, noise)
        missing &= rec.M.free_symbols | rec.B.free_symbols | pieces
    if missing:
        names = ", ".join(sorted(map(str, missing)))
        raise ValueError(f"simulate() needs a value for every parameter; missing {names}.")
    opt, land, nz = (_substitute(x, values) for x in (optimizer, landscape, noise))
    if land.modes:  # one eigen-mode: simulate the explicit 1-D problem with that eigenvalue
        object.__setattr__(land, "modes", False)
        object.__setattr__(land, "mode_names", {})
    d = land.dim
    gamma = opt.weight_decay
    theta_min = _minimiser(land, gamma)
    P = opt.preconditioner(land, nz)
    oracle = _make_oracle(land, nz)
    rho = _second_moment_radius(opt, land, nz)
    problem = Problem(
        optimizer=optimizer,
        landscape=landscape,
        noise=noise,
        values=values,
        stepper=_float_fields(opt),
        P=None if P is None else _array(P),
        oracle=oracle,
        theta_min=_array(theta_min).reshape(d),
        loss_model=_loss_model(land, theta_min),
        rho=rho,
    )
    if not rho < 1:
        raise problem.instability(rho, "")
    return problem


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
        if land.data is None:
            sigma2 = float(land.label_noise)
            return _Online(
                LA=_sqrt_psd(_array(land.A), "A"), star=star, sigma=math.sqrt(sigma2), batch=S
            )
        if not noise.replacement and S > int(N):
            raise ValueError(
                f"MinibatchNoise: without replacement the batch (S = {S}) cannot "
                f"exceed the data set (N = {N})."
            )
        X, Y = (_array(m) for m in land.data)
        return _Data(X=X, Y=Y.ravel(), batch=S, replacement=noise.replacement)
    raise NotImplementedError(
        f"simulate() samples AdditiveNoise and MinibatchNoise gradients; got {noise!r}."
    )


def _second_moment_radius(opt: Optimizer, land: Landscape, noise: Noise) -> float:
    r"""Spectral radius of :math:`T(\Sigma) = M\Sigma M^\top + B\mathcal L(K\Sigma K^\top)B^\top`
    for a numeric problem.

    The same quantity as :func:`symsgd.stability.spectral_radius`, assembled in numpy as
    :math:`M\otimes M + (B\otimes B)\,\mathcal L\,(K\otimes K)` with :math:`\mathcal L` probed at
    the d(d+1)/2 symmetric unit matrices — one noise-covariance call each instead of two per
    state-space unit matrix, so large momentum problems stay fast.
    """
    rec = build_recursion(opt, land, noise)
    M = _array(rec.M)
    if not noise.depends_on_state():
        return float(np.max(np.abs(np.linalg.eigvals(M)))) ** 2 if M.size else 0.0
    B, K = _array(rec.B), _array(rec.K)
    d = land.dim
    Q0 = _array(rec.noise_cov(sp.zeros(d, d)))
    L = np.zeros((d * d, d * d))
    for i in range(d):
        for j in range(i, d):
            E = sp.zeros(d, d)
            E[i, j] = E[j, i] = 1
            column = (_array(rec.noise_cov(E)) - Q0).reshape(-1)
            if i == j:
                L[:, i * d + i] = column
            else:  # L acts on the symmetric part: e_i e_jᵀ ↦ L(E_ij)/2
                L[:, i * d + j] = L[:, j * d + i] = column / 2
    T = np.kron(M, M) + np.kron(B, B) @ L @ np.kron(K, K)
    return float(np.max(np.abs(np.linalg.eigvals(T))))


def _instability(problem: Problem, rho: float, what: str) -> UnstableError:
    values = problem.values
    shown = ", ".join(f"{k} = {sp.sstr(v)}" for k, v in sorted(values.items(), key=str))
    name = problem.describe()
    failing, conditions = [], None
    rec = build_recursion(problem.optimizer, problem.landscape, problem.noise)
    if rec.M.free_symbols | rec.B.free_symbols | rec.forcing().free_symbols:
        conditions, _ = stability_conditions(rec)
        failing = [c for c in sp.And.make_args(conditions) if c.xreplace(values) == sp.false]
    radius = f"spectral radius of the second-moment map ρ = {rho:.6g}"
    head = f"simulate() needs a stable recursion{what}: "
    if failing:
        spelled = " and ".join(sp.sstr(c) for c in sp.And.make_args(conditions))
        message = (
            f"{head}for {name} that means {spelled}; the condition {sp.sstr(failing[0])} "
            f"fails at {shown} ({radius} ≥ 1). "
            f"{advice(failing[0], values)}"
        )
    else:
        message = (
            f"{head}the second moments of {name} grow at {shown} ({radius}"
            f"{' ≥ 1' if not rho < 1 else ''}). Lower the learning rate."
        )
    return UnstableError(message, condition=failing[0] if failing else None, values=values)


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------


class _Diverged(Exception):
    def __init__(self, step: int):
        self.step = step


def _run_block(
    problem: Problem,
    n: int,
    burn_in: int,
    steps: int,
    seed: np.random.SeedSequence,
    report: Callable[[int], None],
) -> tuple:
    """Run ``n`` chains for ``burn_in + steps`` steps; return their time averages
    ``(mean δ, δδᵀ upper triangle, vvᵀ upper triangle)`` of shapes (d, n), (p, n), (p, n)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    grad = problem.oracle.make(rng, n)
    precondition = problem.precondition()
    step = problem.stepper.step
    d = problem.dim
    centre = problem.theta_min[:, None]
    centred = bool(np.any(centre))
    state = problem.stepper.initial_state(np.repeat(centre, n, axis=1))
    i, j = np.triu_indices(d)
    m1 = np.zeros((d, n))
    s2 = np.zeros((i.size, n))
    sv = np.zeros((i.size, n))
    tmp = np.empty((d, n))
    every = 64
    with np.errstate(all="ignore"):
        for t in range(1, burn_in + 1):
            state = step(state, grad, precondition)
            if t % every == 0:
                _check(state[0], t, report, n * every)
        previous = state[0]
        for t in range(1, steps + 1):
            state = step(state, grad, precondition)
            theta = state[0]
            delta = np.subtract(theta, centre, out=tmp) if centred else theta
            m1 += delta
            if d == 1:
                s2 += delta * delta
                v = theta - previous
                v *= v
                sv += v
            else:
                s2 += delta[i] * delta[j]
                v = theta - previous
                sv += v[i] * v[j]
            previous = theta
            if (burn_in + t) % every == 0:
                _check(theta, burn_in + t, report, n * every)
        _check(state[0], burn_in + steps, report, n * ((burn_in + steps) % every))
    return m1 / steps, s2 / steps, sv / steps


def _check(theta: np.ndarray, t: int, report, work: int) -> None:
    if not np.max(np.abs(theta)) < DIVERGENCE_BOUND:  # also catches NaN
        raise _Diverged(t)
    report(work)


def _blocks(chains: int, size: int) -> list[int]:
    k = -(-chains // size)
    base, extra = divmod(chains, k)
    return [base + (1 if b < extra else 0) for b in range(k)]


def _block_seeds(seed: np.random.SeedSequence, k: int) -> list[np.random.SeedSequence]:
    """Children of ``seed`` as ``spawn`` would make them, without mutating ``seed``."""
    return [
        np.random.SeedSequence(
            seed.entropy, spawn_key=(*seed.spawn_key, b), pool_size=seed.pool_size
        )
        for b in range(k)
    ]


def default_burn_in(rho: float) -> int:
    r"""Steps for the second moments to relax to a relative :math:`10^{-8}` of stationarity
    from rest: :math:`\lceil\log 10^{-8}/\log\rho\rceil` (at least 10, at most 10⁶).

    >>> default_burn_in(0.81)
    88
    """
    if rho <= 0:
        return 10
    burn = math.ceil(math.log(BURN_IN_TOLERANCE) / math.log(rho))
    if burn > MAX_BURN_IN:
        warnings.warn(
            f"the recursion relaxes very slowly (ρ = {rho:.9g}); burn-in capped at "
            f"{MAX_BURN_IN} steps leaves a relative transient of {rho**MAX_BURN_IN:.3g}. "
            f"Pass burn_in= explicitly.",
            RuntimeWarning,
            stacklevel=3,
        )
        burn = MAX_BURN_IN
    return max(burn, 10)


def default_size(
    rho: float, rel_se: float, chains: int | None, steps: int | None, block: int, burn_in: int = 0
) -> tuple[int, int]:
    r"""``(chains, steps)`` for a target relative standard error ``rel_se`` of the second
    moments (relative to :math:`\sqrt{\Sigma_{ii}\Sigma_{jj}}`).

    For a Gaussian stationary law the time average of a quadratic statistic over ``n``
    chain-steps has relative variance about :math:`2\tau/n` with the integrated autocorrelation
    time :math:`\tau = (1+\rho)/(1-\rho)`; so :math:`n = 2\tau/\text{rel\_se}^2`.  Heavier tails
    (minibatch noise) make the measured standard error somewhat larger than targeted.  When
    neither is given, the chains are as few as keep the burn-in (paid once per chain) below
    half the work, between 64 and two blocks (``block`` chains each, run in parallel).

    >>> default_size(0.81, 0.01, 1000, None, 8192)
    (1000, 191)
    >>> default_size(0.9801, 0.01, None, None, 16384, burn_in=917)
    (2170, 918)
    """
    if not 0 < rel_se < 1:
        raise ValueError(f"rel_se must be in (0, 1); got {rel_se}.")
    tau = (1 + rho) / (1 - rho)
    need = math.ceil(2 * tau / rel_se**2)
    if chains is None and steps is None:
        chains = min(max(64, need // max(burn_in, 64)), 2 * block)
    if chains is None:
        chains = max(32, -(-need // steps))
    if steps is None:
        steps = max(64, -(-need // chains))
    return int(chains), int(steps)


def simulate(
    optimizer: Optimizer,
    landscape: Landscape,
    noise: Noise,
    params: Mapping,
    *,
    chains: int | None = None,
    steps: int | None = None,
    burn_in: int | None = None,
    seed: int | np.random.SeedSequence | None = None,
    rel_se: float = 0.01,
    workers: int | None = None,
    progress: bool | None = None,
) -> Simulation:
    r"""Simulate ``optimizer`` on ``landscape`` with real ``noise`` and measure its stationary
    second moments (see the module docstring for the gradients and statistics).

    ``params`` maps symbols, names or aliases to numbers (``{lr: 0.1, "momentum": 0.9, h: 1}``).
    Defaults: ``burn_in`` from the spectral radius ρ of the second-moment map
    (:func:`default_burn_in`); ``chains``/``steps`` for a relative standard error ``rel_se``
    (:func:`default_size`).  Chains run in blocks of a cache-sized number of chains, each with its
    own generator spawned from ``numpy.random.SeedSequence(seed)``, spread over ``workers``
    threads (default: the CPU count); the numbers depend only on ``seed``, ``chains``, ``steps``
    and ``burn_in``, not on ``workers``.  A progress bar appears for long interactive runs
    (``progress=None``; force with True/False).

    Raises :class:`~symsgd.UnstableError`, naming the violated stability condition, before running
    when ρ ≥ 1, or when the iterates overflow.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> sim = simulate(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c),
    ...                {"lr": 0.5, h: 1.0, c: 1.0}, chains=2000, steps=500, seed=0)
    >>> exact = 0.5 * 1.0 / (1.0 * (2 - 0.5))  # λc / (h(2 − λh))
    >>> bool(abs(sim.cov[0, 0] - exact) < 5 * sim.cov_stderr[0, 0])
    True
    """
    problem = prepare(optimizer, landscape, noise, params)
    return run(
        problem,
        chains=chains,
        steps=steps,
        burn_in=burn_in,
        seed=seed,
        rel_se=rel_se,
        workers=workers,
        progress=progress,
    )


def run(
    problem: Problem,
    *,
    chains: int | None = None,
    steps: int | None = None,
    burn_in: int | None = None,
    seed: int | np.random.SeedSequence | None = None,
    rel_se: float = 0.01,
    workers: int | None = None,
    progress: bool | None = None,
) -> Simulation:
    """:func:`simulate` for a problem already :func:`prepare`-d (reuse it across seeds)."""
    block = max(64, BLOCK_WORK // max(1, problem.oracle.work))
    burn_in = default_burn_in(problem.rho) if burn_in is None else int(burn_in)
    chains, steps = default_size(problem.rho, rel_se, chains, steps, block, burn_in)
    if chains < 2 or steps < 1 or burn_in < 0:
        raise ValueError(
            f"need chains ≥ 2, steps ≥ 1 and burn_in ≥ 0; got chains={chains}, "
            f"steps={steps}, burn_in={burn_in}."
        )
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    sizes = _blocks(chains, block)
    seeds = _block_seeds(seq, len(sizes))
    workers = min(len(sizes), workers or os.cpu_count() or 1)
    start = time.perf_counter()
    bar = _progress_bar(chains * (burn_in + steps), progress)
    try:

        def one(b):
            return _run_block(problem, sizes[b], burn_in, steps, seeds[b], bar.update)

        if workers == 1:
            parts = [one(b) for b in range(len(sizes))]
        else:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(one, range(len(sizes))))
    except _Diverged as exc:
        raise problem.instability(
            problem.rho, f" (the simulation diverged at step {exc.step})"
        ) from None
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    m1, s2, sv = (np.concatenate([p[k] for p in parts], axis=1) for k in range(3))
    d = problem.dim
    pairs = np.triu_indices(d)
    cov, cov_se = _symmetric(s2, pairs, d)
    vel, vel_se = _symmetric(sv, pairs, d)
    mean, mean_se = _mean_se(m1)
    loss = loss_se = None
    if problem.loss_model is not None:
        loss, loss_se = (float(x) for x in _mean_se(problem.loss_model.per_chain(m1, s2, pairs)))
    return Simulation(
        cov=cov,
        cov_stderr=cov_se,
        velocity_cov=vel,
        velocity_cov_stderr=vel_se,
        loss=loss,
        loss_stderr=loss_se,
        mean=mean,
        mean_stderr=mean_se,
        chains=chains,
        steps=steps,
        burn_in=burn_in,
        seed=seed if isinstance(seed, (int, np.integer)) else seq,
        spectral_radius=problem.rho,
        params=dict(problem.values),
        elapsed=elapsed,
    )


def _mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[-1]
    return x.mean(axis=-1), x.std(axis=-1, ddof=1) / math.sqrt(n)


def _symmetric(per_chain: np.ndarray, pairs, d: int) -> tuple[np.ndarray, np.ndarray]:
    mean, se = _mean_se(per_chain)
    out, out_se = np.empty((d, d)), np.empty((d, d))
    i, j = pairs
    out[i, j] = out[j, i] = mean
    out_se[i, j] = out_se[j, i] = se
    return out, out_se


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, progress: bool | None):
    if progress is False:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    # disable=None: off when stderr is not a terminal; delay: only runs longer than a few seconds
    return tqdm(
        total=total,
        unit="chain-step",
        unit_scale=True,
        smoothing=0.1,
        disable=None if progress is None else not progress,
        delay=0 if progress else 3.0,
        leave=False,
    )
