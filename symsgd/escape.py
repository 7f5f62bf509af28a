r"""First passage of SGD over a loss level: the exact discrete-time answer and four theories.

The question of Mori, Ziyin, Liu & Ueda (*Power-law escape rate of SGD*, ICML 2022): how many
steps does SGD started at a minimum take until its loss first reaches :math:`c\,L_*`?

**The exact chain.**  For a one-dimensional state (SGD on one parameter) the update is
:math:`\delta' = M\delta + B\,\xi(K\delta)`, with ξ the gradient noise at the evaluated point.
For online Gaussian regression (:math:`x\sim N(0,a)`, label noise σ², batch S) the noise given
the minibatch Hessian :math:`\hat h = \frac aS\chi^2_S` is
:math:`\xi = (\hat h - a)(u + b_0) - \nu`, :math:`\nu\mid\hat h\sim N(0, \sigma^2\hat h/S)`
(:math:`b_0` the minimiser minus the noiseless optimum, nonzero under weight decay), so the
transition kernel is a χ² mixture of Gaussians,

.. math:: P(\delta, dy) = \mathbb E_{\hat h}\,
   N\bigl(y;\ M\delta + B(\hat h - a)(K\delta + b_0),\ B^2\sigma^2\hat h/S\bigr)\,dy ,

and with additive noise :math:`\xi = \sqrt C\,z` a single Gaussian.

**Poisson equation.**  The mean number of steps :math:`m(\delta)` until :math:`L \ge cL_*` solves
:math:`(I - P)m = 1` on :math:`D = \{L < cL_*\}` (m = 0 outside).  :func:`first_passage` solves it
by finite volumes: D is cut into n cells, row i of :math:`P_D` holds the exact probabilities
:math:`P(x_i, \text{cell}_j)` from the cell centre :math:`x_i` (the kernel's CDF at the cell
edges: a Gauss–Legendre quadrature over the χ variable :math:`v = \sqrt{S\hat h/a}` on panels
graded towards v = 0, where the Gaussian collapses), and the answer on two grids (n and 2n + 1
cells) gives the error estimate.  :func:`stationary_density` uses the same kernel on a wide
interval; its variance is checked against the library's exact :func:`symsgd.stationary`.

**Theories** (:func:`exponents`): the slope :math:`d\ln\mathbb E\tau/d\ln c` at large c

* **Kesten** (the real chain): α/2, α the tail index (:func:`symsgd.tails.tail_index`): the
  stationary law has :math:`P(|\delta| > x)\sim x^{-\alpha}` and L grows like δ²;
* **Mori et al.**: decoupled noise :math:`\Sigma \approx 2L h_*/S` in the SDE
  :math:`d\theta = -L'dt + \sqrt{\eta\Sigma}\,dW` gives :math:`p\propto L^{-\varphi}`,
  :math:`\varphi = 1 + S/(\eta h_*)`, and a 1-D level-crossing exponent
  :math:`\tfrac12 + S/(\eta h_*)` (:func:`mori_exponent`, derived here from the zero-flux
  condition, not transcribed);
* **exact-noise SDE**: the same SDE with the exact online noise
  :math:`\Sigma = (2L h + h^2\delta^2)/S`: :math:`\tfrac12 + S/(2\eta h)`;
* **Ziyin et al. (variance-matched)**: Mori's law :math:`p\propto L^{-\varphi}` with φ set so that
  its variance equals the exact discrete-time variance of :func:`symsgd.stationary` (the
  discrete-time fluctuation of Ziyin, Liu, Mori & Ueda, ICLR 2022, put into the power law).

With **additive** noise escape is Arrhenius with the *discrete* temperature:
:math:`d\ln\mathbb E\tau/d\Delta L\to 1/(h\,\mathrm{Var}\,\delta) = (2-\lambda h)/(\lambda c)`
(:func:`arrhenius_exponent`), against the SDE's :math:`2/(\lambda c)`.

**Which curvature.**  Every formula here is for linear regression, where the Hessian of the
loss and the Gauss–Newton matrix coincide (h = a).  At the minimum of a non-quadratic model
with label noise (the double well of :func:`symsgd.models.double_well`) they differ: the
decoupling :math:`\Sigma\approx 2LG/S` is a statement about the per-sample gradients, i.e. the
Gauss–Newton/Fisher matrix G, which Mori et al. write as the Hessian :math:`h_*`; the drift,
relaxation and the Arrhenius temperature use the Hessian.  (The double-well escape
experiment of the issue is not built in this module yet.)

Times are in **steps**; SDE time is :math:`t = \eta\cdot\text{steps}` (slopes in log c and in ΔL
are the same in both units).

:func:`simulate_first_passage` runs the *real* optimizer (its own ``step`` on real minibatches,
:func:`symsgd.sampling.prepare` / :func:`symsgd.sampling.nonlinear`) from the minimiser and records
every level's first passage in one run; censored chains enter an events/exposure estimator with a
delta-method standard error.  :func:`fit_exponent` fits the slope with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .errors import UnstableError
from .sampling import Problem, prepare

__all__ = [
    "DEFAULT_CELLS",
    "LEVEL",
    "MAX_STEPS",
    "Escapes",
    "Exponent",
    "FirstPassage",
    "StationaryDensity",
    "arrhenius_exponent",
    "exact_noise_exponent",
    "exponents",
    "first_passage",
    "fit_exponent",
    "mori_exponent",
    "mori_rate",
    "simulate_first_passage",
    "stationary_density",
    "ziyin_exponent",
]

#: cells of the coarse finite-volume grid (the fine grid has 2n + 1)
DEFAULT_CELLS = 150
#: Gauss–Legendre nodes per panel of the χ quadrature
PANEL_NODES = 8
#: width of the uniform χ panels, and the grading ratio of the panels towards v = 0
PANEL_WIDTH = 0.5
GRADING = 4.0
#: the χ quadrature drops the mass beyond this upper tail probability
CHI_TAIL = 1e-18
#: mean passage times beyond this are refused (I − P is then singular to double precision)
MAX_STEPS = 1e12
#: the stationary density is computed on ±(this many) standard deviations
STATIONARY_WIDTH = 24.0


# ---------------------------------------------------------------------------------------------
# the exact transition kernel of a scalar chain
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kernel:
    r"""δ' | δ, v ~ N(M δ + B(ĥ − a)(K δ + b0), s²ĥ) with ĥ = (a/S)v², v ~ χ_S (online), or
    N(M δ, s²) (additive: ``S = 0``)."""

    M: float
    B: float
    K: float
    a: float
    S: int
    b0: float
    s: float  # additive: sd of Bξ; online: |B|σ/√S (times √ĥ)
    loss: object  # _LossModel: L(δ) = ½H(δ + b)² + const

    @property
    def additive(self) -> bool:
        return self.S == 0

    def chi_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights of E f(v), v ~ χ_S: Gauss–Legendre on panels graded towards 0."""
        from scipy.special import gammaln
        from scipy.stats import chi2

        S = self.S
        top = math.sqrt(chi2.isf(CHI_TAIL, S))
        edges = [0.0, 1e-6]
        while edges[-1] * GRADING < 1:
            edges.append(edges[-1] * GRADING)
        edges.append(1.0)
        edges.extend(np.arange(1.0 + PANEL_WIDTH, top + PANEL_WIDTH, PANEL_WIDTH).tolist())
        t, w = np.polynomial.legendre.leggauss(PANEL_NODES)
        lo, hi = np.array(edges[:-1])[:, None], np.array(edges[1:])[:, None]
        v = ((hi - lo) / 2 * t + (hi + lo) / 2).ravel()
        wv = ((hi - lo) / 2 * w).ravel()
        log_density = (S - 1) * np.log(v) - v * v / 2 - (S / 2 - 1) * math.log(2) - gammaln(S / 2)
        weights = wv * np.exp(log_density)
        return v, weights / weights.sum()

    def cdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r""":math:`P(\delta' \le y_j \mid \delta = x_i)`, shape (len(x), len(y))."""
        from scipy.special import ndtr

        x, y = np.asarray(x, float), np.asarray(y, float)
        if self.additive:
            return ndtr((y[None, :] - self.M * x[:, None]) / self.s)
        v, w = self.chi_nodes()
        h = self.a / self.S * v * v
        sd = self.s * np.sqrt(h)  # (Q,)
        out = np.empty((x.size, y.size))
        for i, xi in enumerate(x):
            mu = self.M * xi + self.B * (h - self.a) * (self.K * xi + self.b0)  # (Q,)
            out[i] = w @ ndtr((y[None, :] - mu[:, None]) / sd[:, None])
        return out

    def matrix(self, edges: np.ndarray) -> np.ndarray:
        """Finite-volume transition probabilities between the cells (rows: from the centres)."""
        centres = (edges[1:] + edges[:-1]) / 2
        return np.diff(self.cdf(centres, edges), axis=1)

    def interval(self, excess: float) -> tuple[float, float]:
        """The deviations with L(δ) − L(0) < ``excess``: an interval (L is a parabola)."""
        H, b = float(self.loss.H[0, 0]), float(self.loss.b[0])
        if not H > 0:
            raise ValueError("first_passage: the loss needs a positive curvature at the minimum.")
        radius = math.sqrt(2 * excess / H + b * b)
        return -b - radius, -b + radius

    @property
    def minimum_loss(self) -> float:
        H, b = float(self.loss.H[0, 0]), float(self.loss.b[0])
        return 0.5 * H * b * b + float(self.loss.const)


def _problem(result, params: Mapping | None, context: str) -> Problem:
    recursion = getattr(result, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"{context} needs a result of ss.stationary(...), which carries its recursion; "
            f"got {type(result).__name__}."
        )
    given = {**getattr(result, "values", {}), **dict(params or {})}
    return prepare(recursion.optimizer, recursion.landscape, recursion.noise, given)


def _kernel(problem: Problem, context: str) -> _Kernel:
    from .sampling import _Additive, _Online

    M, B, K = (np.asarray(m, float) for m in problem.state_space)
    if M.shape != (1, 1) or problem.dim != 1:
        raise NotImplementedError(
            f"{context} solves the Poisson equation of a one-dimensional state (SGD on one "
            f"parameter); {problem.describe()} has a state of dimension {M.shape[0]}."
        )
    if problem.loss_model is None:
        raise NotImplementedError(f"{context}: no training loss for {problem.describe()}.")
    m, b, k = float(M[0, 0]), float(B[0, 0]), float(K[0, 0])
    oracle = problem.oracle
    if isinstance(oracle, _Additive):
        s = abs(b) * float(oracle.L[0, 0])
        if not s > 0:
            raise ValueError(f"{context}: the additive noise vanishes; there is no escape.")
        return _Kernel(m, b, k, float(oracle.H[0, 0]), 0, 0.0, s, problem.loss_model)
    if isinstance(oracle, _Online):
        if not oracle.sigma > 0:
            raise ValueError(
                f"{context}: without label noise the minibatch noise vanishes at the minimum "
                "(L* = 0, a point-mass stationary law): there is no escape to c·L*."
            )
        a = float((oracle.LA @ oracle.LA.T)[0, 0])
        b0 = float(problem.theta_min[0] - oracle.star[0])
        S = int(oracle.batch)
        return _Kernel(m, b, k, a, S, b0, abs(b) * oracle.sigma / math.sqrt(S), problem.loss_model)
    raise NotImplementedError(
        f"{context} has the exact kernel of additive noise and of online Gaussian minibatches; "
        f"{problem.describe()} samples a finite data set (a finite mixture of point masses, "
        "whose stationary law may be singular): use simulate_first_passage."
    )


# ---------------------------------------------------------------------------------------------
# Poisson equation and stationary density
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstPassage:
    r"""Mean number of steps from the minimiser until :math:`L \ge L_* + \Delta L`
    (``barrier`` = ΔL; ``level`` = c when the barrier was given as :math:`(c-1)L_*`).
    ``steps`` is the Richardson extrapolation :math:`m_{2n+1} + (m_{2n+1} - m_n)/3` of the two
    grids (``cells``; the finite-volume error is O(h²)) and ``error`` the correction
    :math:`|m_{2n+1} - m_n|/3`."""

    steps: float
    error: float
    level: float | None
    barrier: float
    cells: tuple[int, int]

    def time(self, lr: float) -> float:
        """SDE time :math:`t = \\eta\\cdot\\text{steps}`."""
        return lr * self.steps

    def __repr__(self) -> str:
        what = f"level={self.level:g}" if self.level is not None else f"barrier={self.barrier:g}"
        return f"FirstPassage({what}, steps={self.steps:.8g} ± {self.error:.2g})"


def _solve_passage(kernel: _Kernel, lo: float, hi: float, n: int) -> float:
    edges = np.linspace(lo, hi, n + 1)
    P = kernel.matrix(edges)
    m = np.linalg.solve(np.eye(n) - P, np.ones(n))
    residual = np.max(np.abs(m - P @ m - 1))
    if not residual < 1e-8 * max(1.0, float(np.max(m))):
        raise ArithmeticError(f"first_passage: the Poisson solve has residual {residual:.3g}.")
    if not np.max(m) < MAX_STEPS:
        raise ArithmeticError(
            f"first_passage: the mean passage time {np.max(m):.3g} steps exceeds {MAX_STEPS:g}: "
            "the exit probabilities 1 − Σ_j P_ij are lost in double-precision rounding; lower "
            "the level."
        )
    centres = (edges[1:] + edges[:-1]) / 2
    return float(np.interp(0.0, centres, m))


def first_passage(
    result,
    params: Mapping | None = None,
    level: float | None = None,
    *,
    barrier: float | None = None,
    cells: int = DEFAULT_CELLS,
) -> FirstPassage:
    r"""Mean number of steps of the real chain of ``result`` (from :func:`symsgd.stationary`,
    at ``params``) started at the minimiser until its loss first reaches :math:`c\,L_*`
    (``level=c`` > 1) or :math:`L_* + \Delta L` (``barrier=ΔL`` > 0; for additive noise, where
    :math:`L_* = 0`): the solution of the discrete-time Poisson equation :math:`(I - P)m = 1` on
    :math:`\{L < cL_*\}` with the exact transition kernel (see the module docstring), by finite
    volumes on ``cells`` and ``2·cells + 1`` cells, Richardson-extrapolated (the size of the
    correction is the ``error``).

    One-dimensional states only (SGD on one parameter), with additive noise or online Gaussian
    minibatch noise; ``UnstableError`` without a stationary variance.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> fp = first_passage(r, {ss.lr: 0.3, a: 1}, level=4)
    >>> round(fp.steps, 1), fp.error < 1e-3 * fp.steps
    (453.5, True)
    """
    problem = _problem(result, params, "first_passage()")
    kernel = _kernel(problem, "first_passage()")
    excess = _excess(kernel, level, barrier, "first_passage()")
    if not (isinstance(cells, int) and cells >= 10):
        raise ValueError(f"first_passage: cells must be an integer ≥ 10; got {cells!r}.")
    lo, hi = kernel.interval(excess)
    n = cells | 1  # odd: the minimiser of a symmetric interval is a cell centre
    coarse = _solve_passage(kernel, lo, hi, n)
    fine = _solve_passage(kernel, lo, hi, 2 * n + 1)
    value = fine + (fine - coarse) / 3  # Richardson: the finite-volume error is O(h²)
    return FirstPassage(value, abs(fine - coarse) / 3, level, excess, (n, 2 * n + 1))


def _excess(kernel: _Kernel, level, barrier, context: str) -> float:
    if (level is None) == (barrier is None):
        raise ValueError(f"{context}: give exactly one of level=c (L ≥ c·L*) or barrier=ΔL.")
    if barrier is not None:
        if not (isinstance(barrier, (int, float)) and math.isfinite(barrier) and barrier > 0):
            raise ValueError(f"{context}: barrier must be a positive number; got {barrier!r}.")
        return float(barrier)
    if not (isinstance(level, (int, float)) and math.isfinite(level) and level > 1):
        raise ValueError(f"{context}: level must be a number c > 1 (L ≥ c·L*); got {level!r}.")
    star = kernel.minimum_loss
    if not star > 0:
        raise ValueError(
            f"{context}: L* = {star:g} at the minimum, so c·L* is no barrier; give barrier=ΔL."
        )
    return (level - 1) * star


@dataclass(frozen=True)
class StationaryDensity:
    """The finite-volume stationary law: cell ``edges``, ``density`` per cell, and its
    ``variance`` (Richardson-extrapolated from the two grids, error O(h²)) with the size of
    the correction as ``error``."""

    edges: np.ndarray
    density: np.ndarray
    mean: float
    variance: float
    error: float


def _stationary(kernel: _Kernel, lo: float, hi: float, n: int):
    edges = np.linspace(lo, hi, n + 1)
    P = kernel.matrix(edges)
    P /= P.sum(axis=1, keepdims=True)  # the chain conditioned to stay (tail mass ~ 0)
    system = P.T - np.eye(n)
    system[-1] = 1.0  # replace one (redundant) balance equation by the normalisation
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    residual = float(np.max(np.abs(pi @ P - pi)))
    if not (residual < 1e-12 and np.all(pi > -1e-12)):
        raise ArithmeticError(
            f"stationary_density: no stationary vector of the kernel (residual {residual:.3g})."
        )
    centres = (edges[1:] + edges[:-1]) / 2
    width = edges[1] - edges[0]
    mean = float(pi @ centres)
    second = float(pi @ (centres**2)) + width**2 / 12  # uniform within a cell
    return edges, pi / width, mean, second - mean**2


def stationary_density(
    result, params: Mapping | None = None, *, cells: int = 4 * DEFAULT_CELLS
) -> StationaryDensity:
    r"""The stationary law of the real scalar chain of ``result`` at ``params`` from the exact
    kernel (the same finite volumes as :func:`first_passage`) on ±:data:`STATIONARY_WIDTH`
    standard deviations (the chain's second-moment fixed point; tests check the variance against
    :func:`symsgd.stationary`), on
    ``cells`` and ``2·cells + 1`` cells.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(2))
    >>> d = stationary_density(r, {ss.lr: 0.1, a: 1}, cells=300)
    >>> exact = 0.1 / (2 * 2 - 0.1 * 4)  # λσ²/(2S − λa(S + 2))
    >>> bool(abs(d.variance / exact - 1) < 1e-4)
    True
    """
    problem = _problem(result, params, "stationary_density()")
    kernel = _kernel(problem, "stationary_density()")
    if not (isinstance(cells, int) and cells >= 10):
        raise ValueError(f"stationary_density: cells must be an integer ≥ 10; got {cells!r}.")
    sd = math.sqrt(_exact_variance(problem))
    half = STATIONARY_WIDTH * sd
    _, _, _, coarse = _stationary(kernel, -half, half, cells | 1)
    edges, density, mean, fine = _stationary(kernel, -half, half, 2 * (cells | 1) + 1)
    value = fine + (fine - coarse) / 3  # Richardson: the finite-volume error is O(h²)
    return StationaryDensity(edges, density, mean, value, abs(fine - coarse) / 3)


def _exact_variance(problem: Problem) -> float:
    r"""Stationary variance of the scalar chain from its own kernel (for the domain width):
    :math:`V = (B^2b_0^2\,2a^2/S + s^2a)/(1 - M^2 - q^2\,2a^2/S)`, q = BK (the mean is 0)."""
    kernel = _kernel(problem, "stationary_density()")
    if kernel.additive:
        return kernel.s**2 / (1 - kernel.M**2)
    a, S, m, q = kernel.a, kernel.S, kernel.M, kernel.B * kernel.K
    spread = 2 * a * a / S  # Var ĥ
    A2 = m * m + q * q * spread
    if not A2 < 1:
        raise problem.instability(A2)
    return (kernel.B**2 * kernel.b0**2 * spread + kernel.s**2 * a) / (1 - A2)


# ---------------------------------------------------------------------------------------------
# the real optimizer: first passages of every level in one run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Escapes:
    r"""First passages of the real optimizer, every level from one set of chains.

    For level k, chain i contributes its exposure :math:`e_{ik} = \min(\tau_{ik}, T)` and event
    :math:`d_{ik} = [\tau_{ik}\le T]`; ``steps[k]`` :math:`= \sum_i e_{ik}/\sum_i d_{ik}` (the
    sample mean when every chain escaped; with censoring the exact mean when the escape is
    memoryless after relaxation), ``cov`` the delta-method covariance of ``steps`` across the
    independent chains (levels share chains, so they are correlated), ``stderr`` its diagonal's
    square root, ``events`` the escapes per level."""

    levels: np.ndarray  # c (or ΔL when barriers were given)
    barriers: np.ndarray  # ΔL
    steps: np.ndarray
    stderr: np.ndarray
    cov: np.ndarray
    events: np.ndarray
    chains: int
    horizon: int


def simulate_first_passage(
    system,
    params: Mapping | None = None,
    *,
    levels: Sequence[float] | None = None,
    barriers: Sequence[float] | None = None,
    chains: int = 20_000,
    steps: int = 10_000,
    seed: int = 0,
    loss=None,
) -> Escapes:
    r"""Run the real optimizer of ``system`` — a result of :func:`symsgd.stationary` (with
    ``params``) or a prepared :class:`~symsgd.sampling.Problem` (e.g. the nonlinear dynamics of
    :func:`symsgd.sampling.nonlinear`) — from the minimiser for at most ``steps`` steps on
    ``chains`` chains, and record the first step with :math:`L \ge cL_*` for every ``levels`` c
    (or :math:`L \ge L_* + \Delta L` for ``barriers``) in the same run (see :class:`Escapes`).

    The loss is the problem's training loss (:math:`\frac12H(\delta+b)^2 + \text{const}`); for
    a nonlinear problem pass ``loss`` (θ of shape (d, n) → n losses) and barriers.  Chains that
    passed every level are dropped from the run.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> e = simulate_first_passage(r, {ss.lr: 0.3, a: 1}, levels=[4], chains=2000, seed=1)
    >>> exact = first_passage(r, {ss.lr: 0.3, a: 1}, level=4).steps
    >>> bool(abs(e.steps[0] - exact) < 4 * e.stderr[0])
    True
    """
    problem = system if isinstance(system, Problem) else _problem(system, params, "simulate")
    for name, value in (("chains", chains), ("steps", steps)):
        if not (isinstance(value, int) and value >= 2):
            raise ValueError(
                f"simulate_first_passage: {name} must be an integer ≥ 2; got {value!r}."
            )
    if loss is None:
        model = problem.loss_model
        if model is None:
            raise ValueError(
                f"simulate_first_passage: {problem.describe()} has no training loss; pass loss=."
            )
        H, b, const = float(model.H[0, 0]), float(model.b[0]), float(model.const)
        if problem.dim != 1:
            raise NotImplementedError("simulate_first_passage: pass loss= for d > 1.")

        def loss(theta, _centre=float(problem.theta_min[0])):
            u = theta[0] - _centre + b
            return 0.5 * H * u * u + const

        star = 0.5 * H * b * b + const
    else:
        star = float(loss(problem.theta_min[:, None])[0])
    if (levels is None) == (barriers is None):
        raise ValueError("simulate_first_passage: give exactly one of levels= or barriers=.")
    if levels is not None:
        if not star > 0:
            raise ValueError(
                "simulate_first_passage: L* = 0, so c·L* is no barrier; use barriers=."
            )
        shown = np.asarray(levels, float)
        if not np.all(shown > 1):
            raise ValueError(f"simulate_first_passage: every level c must be > 1; got {levels!r}.")
        excess = (shown - 1) * star
    else:
        excess = shown = np.asarray(barriers, float)
        if not np.all(excess > 0):
            raise ValueError(f"simulate_first_passage: barriers must be > 0; got {barriers!r}.")
    thresholds = star + excess
    K = thresholds.size
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    tau = np.full((K, chains), steps + 1, dtype=np.int64)  # steps + 1: censored
    alive = np.arange(chains)
    state = problem.stepper.initial_state(np.repeat(problem.theta_min[:, None], chains, axis=1))
    grad = problem.oracle.make(rng, chains)
    precondition = problem.precondition()
    step, readout = problem.stepper.step, problem.stepper.readout
    top = thresholds.max()
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            state = step(state, grad, precondition)
            value = loss(readout(state))
            if not np.all(np.isfinite(value)):
                raise UnstableError(f"simulate_first_passage: the iterates diverged at step {t}.")
            crossed = value[None, :] >= thresholds[:, None]
            first = crossed & (tau[:, alive] > steps)
            if first.any():
                rows, cols = np.nonzero(first)
                tau[rows, alive[cols]] = t
            done = value >= top
            if done.any():  # every level passed: drop these chains
                keep = ~done
                alive = alive[keep]
                if alive.size == 0:
                    break
                state = _take(state, keep)
                grad = problem.oracle.make(rng, alive.size)
    exposure = np.minimum(tau, steps).astype(float)
    events = (tau <= steps).astype(float)
    if np.any(events.sum(axis=1) == 0):
        raise ValueError(
            "simulate_first_passage: no chain escaped at some level; run longer (steps=)."
        )
    mean_e, mean_d = exposure.mean(axis=1), events.mean(axis=1)
    estimate = mean_e / mean_d
    influence = (exposure - estimate[:, None] * events) / mean_d[:, None]  # (K, chains)
    cov = influence @ influence.T / chains**2
    return Escapes(
        levels=shown,
        barriers=excess,
        steps=estimate,
        stderr=np.sqrt(np.diag(cov)),
        cov=cov,
        events=events.sum(axis=1).astype(int),
        chains=chains,
        horizon=steps,
    )


def _take(state, keep: np.ndarray):
    """The optimizer state restricted to the chains ``keep`` (arrays of shape (d, n))."""
    if isinstance(state, np.ndarray):
        return state[..., keep] if state.ndim else state
    if isinstance(state, tuple):
        return tuple(_take(s, keep) for s in state)
    if isinstance(state, list):
        return [_take(s, keep) for s in state]
    if isinstance(state, dict):
        return {k: _take(v, keep) for k, v in state.items()}
    return state


@dataclass(frozen=True)
class Exponent:
    """A fitted slope of log E τ against log c (or against ΔL) with its standard error."""

    slope: float
    stderr: float
    intercept: float

    def z(self, theory: float) -> float:
        return (self.slope - theory) / self.stderr


def fit_exponent(
    escapes: Escapes | None = None,
    *,
    levels: Sequence[float] | None = None,
    steps: Sequence[float] | None = None,
    cov=None,
    low: float = -math.inf,
    high: float = math.inf,
    variable: str = "log",
) -> Exponent:
    r"""Least-squares slope of :math:`\ln\mathbb E\tau` against :math:`\ln c` (``variable="log"``)
    or against the barrier ΔL (``"linear"``: the Arrhenius slope) over the levels in
    [``low``, ``high``], from an :class:`Escapes` or from ``levels``, ``steps`` and their
    covariance ``cov``.  The standard error is exact for the least-squares weights w under the
    given covariance: :math:`\mathrm{se}^2 = w^\top\,\mathrm{Cov}(\ln\hat m)\,w`, with
    :math:`\mathrm{Cov}(\ln\hat m)_{kl} = \mathrm{Cov}_{kl}/(m_km_l)` (the levels of one run share
    chains).

    >>> cov = [[1, 0, 0], [0, 4, 0], [0, 0, 16]]
    >>> e = fit_exponent(levels=[2, 4, 8], steps=[10, 20, 40], cov=cov)
    >>> round(e.slope, 12), round(e.stderr, 4)
    (1.0, 0.102)
    """
    if escapes is not None:
        x = escapes.barriers if variable == "linear" else escapes.levels
        m, C = escapes.steps, escapes.cov
    else:
        x, m = np.asarray(levels, float), np.asarray(steps, float)
        C = np.zeros((x.size, x.size)) if cov is None else np.asarray(cov, float)
    if variable not in ("log", "linear"):
        raise ValueError(f"fit_exponent: variable must be 'log' or 'linear'; got {variable!r}.")
    sel = (x >= low) & (x <= high)
    if sel.sum() < 2:
        raise ValueError("fit_exponent: at least two levels are needed in [low, high].")
    x, m, C = x[sel], m[sel], C[np.ix_(sel, sel)]
    u = np.log(x) if variable == "log" else x
    y = np.log(m)
    w = (u - u.mean()) / np.sum((u - u.mean()) ** 2)
    slope = float(w @ y)
    logcov = C / np.outer(m, m)
    return Exponent(
        slope, float(math.sqrt(max(w @ logcov @ w, 0.0))), float(y.mean() - slope * u.mean())
    )


# ---------------------------------------------------------------------------------------------
# the theories, derived symbolically
# ---------------------------------------------------------------------------------------------

#: the level c of :func:`mori_rate`
LEVEL = sp.Symbol("c", positive=True)


def _scalar_pieces(result, context: str):
    """(lr, h, S, L*) of SGD on one-parameter online regression with minibatch noise, or
    (lr, h, None, C) with additive noise, from the result's recursion."""
    from .landscapes import LinearRegression, Quadratic
    from .noise import AdditiveNoise, MinibatchNoise

    recursion = getattr(result, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"{context} needs a result of ss.stationary(...); got {type(result).__name__}."
        )
    land, noise, opt = recursion.landscape, recursion.noise, recursion.optimizer
    if land.dim != 1 or recursion.M.shape != (1, 1):
        raise NotImplementedError(f"{context} covers one-parameter SGD; got {land!r}.")
    h = sp.Matrix(land.hessian)[0, 0]
    lr = opt.lr
    if isinstance(noise, MinibatchNoise) and isinstance(land, LinearRegression):
        if land.data is not None:
            raise NotImplementedError(f"{context} covers online regression (no finite data set).")
        from .sampling import _label_variance

        return lr, h, noise.batch_size, _label_variance(land) / 2
    if isinstance(noise, AdditiveNoise) and isinstance(land, (Quadratic, LinearRegression)):
        return lr, h, None, sp.Matrix(noise.C)[0, 0]
    raise NotImplementedError(f"{context}: no theory for {noise!r} on {land!r}.")


def _sde_exponent(drift: sp.Expr, diffusion: sp.Expr, x: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    r"""For :math:`dx = \mu\,dt + \sqrt{D}\,dW`: the stationary density
    :math:`p\propto D^{-1}\exp\int 2\mu/D` (zero flux) and the large-level slope of the mean
    first passage to :math:`|x| = b` in :math:`\ln b^2`: :math:`\mathbb E\tau =
    \int_0^b \frac{2}{Dp}\int_{-y}^{y}p` grows like :math:`\int^b y^{2k}dy\propto (b^2)^{k+1/2}`
    with :math:`2k = \lim y\,\partial_y\ln(1/(Dp))`."""
    log_p = -sp.log(diffusion) + sp.integrate(sp.cancel(2 * drift / diffusion), x)
    k = sp.limit(x * sp.diff(-sp.log(diffusion) - log_p, x) / 2, x, sp.oo)
    return sp.simplify(log_p), sp.simplify(k + sp.Rational(1, 2))


def mori_exponent(result) -> sp.Expr:
    r"""Mori et al.'s slope :math:`d\ln\mathbb E\tau/d\ln c`, derived: the SDE
    :math:`d\delta = -L'dt + \sqrt{\eta\Sigma}\,dW` with decoupled noise :math:`\Sigma = 2Lh_*/S`
    (L = L_* + hδ²/2, h the Hessian, which equals the Gauss–Newton matrix here) in time
    t = η·steps; its stationary law is :math:`L^{-(1 + S/(\eta h))}` and the slope
    :math:`\tfrac12 + S/(\eta h)`.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(ss.batch_size))
    >>> ss.verify("1/2 + S/(lambda*a)", mori_exponent(r)).equal
    True
    """
    lr, h, S, star = _scalar_pieces(result, "mori_exponent()")
    if S is None:
        raise ValueError(
            "mori_exponent() needs minibatch noise (additive noise: arrhenius_exponent)."
        )
    x = sp.Symbol("x", real=True)
    L = star + h * x**2 / 2
    return _sde_exponent(-sp.diff(L, x), lr * 2 * L * h / S, x)[1]


def mori_rate(result) -> sp.Expr:
    r"""Mori et al.'s escape rate to :math:`cL_*` up to a constant: :math:`c^{-(1/2 + S/(\eta h))}`
    in the symbol :data:`LEVEL` (c); the mean first passage is its inverse.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(2))
    >>> mori_rate(r)
    c**(-1/2 - 2/(a*lambda))
    """
    return LEVEL ** (-mori_exponent(result))


def exact_noise_exponent(result) -> sp.Expr:
    r"""The slope of the SDE with the *exact* online noise
    :math:`\Sigma = (2Lh + h^2\delta^2)/S` (decoupling drops the second term):
    :math:`\tfrac12 + S/(2\eta h)`, derived like :func:`mori_exponent`."""
    lr, h, S, star = _scalar_pieces(result, "exact_noise_exponent()")
    x = sp.Symbol("x", real=True)
    L = star + h * x**2 / 2
    return _sde_exponent(-sp.diff(L, x), lr * (2 * L * h + h**2 * x**2) / S, x)[1]


def ziyin_exponent(result) -> sp.Expr:
    r"""Mori's law :math:`p\propto L^{-\varphi}` with φ set by the *exact discrete-time*
    variance V of :func:`symsgd.stationary` (Ziyin et al.): for L = L_* + hδ²/2 the law's
    variance is :math:`(2L_*/h)/(2\varphi - 3)`, and the slope is :math:`\varphi - \tfrac12`."""
    _, h, _, star = _scalar_pieces(result, "ziyin_exponent()")
    phi = sp.Symbol("phi", positive=True)
    V = sp.Matrix(result.cov)[0, 0] if isinstance(result.cov, sp.MatrixBase) else result.cov
    (solution,) = sp.solve(sp.Eq((2 * star / h) / (2 * phi - 3), V), phi)
    return sp.simplify(solution - sp.Rational(1, 2))


def arrhenius_exponent(result) -> sp.Expr:
    r""":math:`d\ln\mathbb E\tau/d\Delta L` at large barriers for additive noise: the stationary
    law is Gaussian with the exact discrete variance V (:func:`symsgd.stationary`), so
    :math:`P(L - L_* > \Delta L)\propto e^{-\Delta L/(hV)}` and the slope is :math:`1/(hV)`
    (:math:`(2-\lambda h)/(\lambda c)` for SGD; the SDE's V = λc/(2h) gives 2/(λc)).

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> ss.verify("(2 - lambda*h)/(lambda*c)", arrhenius_exponent(r)).equal
    True
    """
    _, h, _, _ = _scalar_pieces(result, "arrhenius_exponent()")
    V = sp.Matrix(result.cov)[0, 0] if isinstance(result.cov, sp.MatrixBase) else result.cov
    return sp.simplify(1 / (h * V))


def exponents(result, params: Mapping | None = None) -> dict[str, float]:
    r"""The large-c slope of :math:`\ln\mathbb E\tau` vs :math:`\ln c` by four theories, at
    ``params``: ``"kesten"`` α/2 (the real chain, :func:`symsgd.tails.tail_index`), ``"mori"``
    (:func:`mori_exponent`), ``"exact-noise SDE"`` (:func:`exact_noise_exponent`) and
    ``"ziyin"`` (:func:`ziyin_exponent`).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> {k: round(v, 4) for k, v in exponents(r, {ss.lr: 0.5, a: 1}).items()}
    {'kesten': 1.452, 'mori': 2.5, 'exact-noise SDE': 1.5, 'ziyin': 1.5}
    """
    from .numeric import resolve_values
    from .tails import tail_index

    given = {**getattr(result, "values", {}), **dict(params or {})}
    out = {"kesten": tail_index(result, params).alpha / 2}
    for name, f in (
        ("mori", mori_exponent),
        ("exact-noise SDE", exact_noise_exponent),
        ("ziyin", ziyin_exponent),
    ):
        expr = f(result)
        values = resolve_values(given, expr.free_symbols)
        out[name] = float(expr.xreplace({k: sp.sympify(v) for k, v in values.items()}))
    return out
