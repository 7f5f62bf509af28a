r"""Monte Carlo simulation of the real optimizer near a minimum.

:func:`simulate` runs the optimizer's own update rule — :meth:`~symsgd.optimizers.Optimizer.step`,
the rule the :class:`~symsgd.recursion.LinearRecursion` is derived from — on numpy arrays of shape
``(d, chains)``, with real stochastic gradients sampled at the absolute parameters θ by the
problem :func:`~symsgd.sampling.prepare` builds (see :mod:`symsgd.sampling` for the gradients).

Statistics are of the deviation :math:`\delta = \theta - \theta_\gamma` from the minimiser
:math:`\theta_\gamma = (H+\gamma I)^{-1} H\theta_*` of the weight-decayed training loss, streamed
per chain (memory :math:`O(\text{chains}\cdot d^2)`, independent of the number of steps):

.. math:: \hat\Sigma = \frac1{\text{chains}}\sum_c \frac1T\sum_{t=1}^T
          \delta_{c,t}\delta_{c,t}^\top,

and the same for the velocity :math:`v_t = \theta_t - \theta_{t-1}`.

Each chain's time average is one independent, identically distributed sample, so the standard error
is the across-chain standard deviation of those averages over :math:`\sqrt{\text{chains}}` — honest
under any autocorrelation within a chain.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .budget import check_progress, progress_bar
from .errors import UnstableError
from .landscapes import Landscape
from .models import EmpiricalLoss
from .noise import Noise
from .optimizers import Optimizer
from .sampling import Problem, nonlinear, prepare
from .stability import explain
from .statistics import (
    BURN_IN_TOLERANCE,
    MIN_BURN_IN_RELAXATIONS,
    default_burn_in,
    default_size,
    integrated_time,
    relaxation_time,
)

__all__ = [
    "BurnInWarning",
    "ChainAverages",
    "Problem",
    "Simulation",
    "check_run_options",
    "check_seed",
    "prepare",
    "run",
    "simulate",
    "usable_cpus",
]

#: |θ| beyond this (or NaN) means the run diverged
DIVERGENCE_BOUND = 1e100
#: chain-steps of work (≈ array elements touched per step) in one block; sized for the L2 cache
#: (measured by benchmarks/simulate.py: the scalar rate peaks between 8192 and 32768)
BLOCK_WORK = 16384
#: the bit generator of every block (numpy's default PCG64).  The normal draws are most of a
#: scalar simulation's time; benchmarks/simulate.py prints the simulator's rate against this
#: generator's own draw rate.  (PCG64DXSM draws no faster here; SFC64 about 14 % faster.)
BIT_GENERATOR = np.random.PCG64
#: array elements (chain-steps × :attr:`work`) one thread gets through per second, a cautious
#: figure below the measured 0.7–1 × 10⁸ (scalar) and 7 × 10⁷ (d = 10 minibatch): it predicts
#: the run time, and so whether a progress bar shows (:func:`symsgd.budget.progress_bar`)
WORK_RATE = 5e7


class BurnInWarning(UserWarning):
    """An explicit ``burn_in`` shorter than :data:`MIN_BURN_IN_RELAXATIONS` relaxation times of
    the second moments: the estimates carry the start-up transient (biased towards the initial
    state at rest).  The message gives the recommended value."""


@dataclass(frozen=True)
class ChainAverages:
    r"""The time averages of each chain (one independent sample per chain): ``mean`` (chains, d)
    of δ, ``cov`` (chains, d, d) of :math:`\delta\delta^\top` and ``velocity_cov`` of
    :math:`vv^\top`.  :attr:`Simulation.cov` is ``cov.mean(axis=0)`` and its standard error the
    standard deviation over the chains (``ddof=1``) over :math:`\sqrt{\text{chains}}`.  Runs
    with common random numbers (the same minibatches) are compared chain by chain:
    ``(a.cov - b.cov)`` has a far smaller spread than either."""

    mean: np.ndarray
    cov: np.ndarray
    velocity_cov: np.ndarray


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
    #: the per-chain time averages (``simulate(..., per_chain=True)``), else None
    per_chain: ChainAverages | None = field(default=None, repr=False, compare=False)
    #: "linearised" or "nonlinear" (an :class:`~symsgd.EmpiricalLoss` simulated itself)
    dynamics: str = "linearised"

    @property
    def dim(self) -> int:
        return self.cov.shape[0]

    @property
    def effective_samples(self) -> float:
        r"""About how many independent samples of the second moments the run holds:
        chains · steps / :func:`integrated_time` (ρ); the relative standard error of a
        Gaussian second moment is about :math:`\sqrt{2/n_\text{eff}}`."""
        return self.chains * self.steps / integrated_time(self.spectral_radius)


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
    rng = np.random.Generator(BIT_GENERATOR(seed))
    grad = problem.oracle.make(rng, n)
    precondition = problem.precondition()
    step, readout = problem.stepper.step, problem.stepper.readout
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
                _check(readout(state), t, report, n * every)
        previous = readout(state)
        for t in range(1, steps + 1):
            state = step(state, grad, precondition)
            theta = readout(state)
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
        _check(readout(state), burn_in + steps, report, n * ((burn_in + steps) % every))
    return m1 / steps, s2 / steps, sv / steps


def _check(theta: np.ndarray, t: int, report, work: int) -> None:
    if not np.max(np.abs(theta)) < DIVERGENCE_BOUND:  # also catches NaN
        raise _Diverged(t)
    report(work)


def _blocks(chains: int, size: int) -> list[int]:
    """Near-equal block sizes of at most ``size`` chains, in a number of blocks that 2 and 4
    threads share evenly (a multiple of 2 from 2 blocks on, of 4 from 5 on): 10⁵ chains make 8
    blocks, not 7, so two threads finish together.  Depends only on ``chains`` and ``size``,
    never on the number of threads (the numbers of a seed do not depend on ``workers``)."""
    k = -(-chains // size)
    if k > 1:
        k = -(-k // (4 if k > 4 else 2)) * (4 if k > 4 else 2)
    k = min(k, chains)
    base, extra = divmod(chains, k)
    return [base + (1 if b < extra else 0) for b in range(k)]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU
    count): the default number of threads of :func:`run`."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _block_seeds(seed: np.random.SeedSequence, k: int) -> list[np.random.SeedSequence]:
    """Children of ``seed`` as ``spawn`` would make them, without mutating ``seed``."""
    return [
        np.random.SeedSequence(
            seed.entropy, spawn_key=(*seed.spawn_key, b), pool_size=seed.pool_size
        )
        for b in range(k)
    ]


def simulate(
    optimizer: Optimizer,
    landscape: Landscape | EmpiricalLoss,
    noise: Noise,
    params: Mapping,
    *,
    theta0=None,
    chains: int | None = None,
    steps: int | None = None,
    burn_in: int | None = None,
    seed: int | np.random.SeedSequence | None = None,
    rel_se: float = 0.01,
    workers: int | None = None,
    progress: bool | None = None,
    per_chain: bool = False,
) -> Simulation:
    r"""Simulate ``optimizer`` on ``landscape`` with real ``noise`` and measure its stationary
    second moments (see the module docstring for the gradients and statistics).

    ``params`` maps symbols, names or aliases to numbers (``{lr: 0.1, "momentum": 0.9, h: 1}``).
    Defaults: ``burn_in`` from the spectral radius ρ of the second-moment map
    (:func:`default_burn_in`); ``chains``/``steps`` for a relative standard error ``rel_se``
    (:func:`default_size`).  Chains run in blocks of a cache-sized number of chains, each with its
    own generator (:data:`BIT_GENERATOR`) spawned from ``numpy.random.SeedSequence(seed)``,
    spread over ``workers`` threads (default: the CPUs the process may use,
    :func:`usable_cpus`); the numbers depend only on ``seed``, ``chains``, ``steps`` and
    ``burn_in``, not on ``workers``.  A progress bar appears for runs predicted to be long
    on a terminal (``progress=None``; force with True/False: :func:`symsgd.budget.progress_bar`).

    Every input is checked before running: ``ValueError`` names the parameter and its allowed
    range for values that contradict the symbol's assumptions (λ ≤ 0 for the positive
    ``lr``, a non-integer or non-positive batch size, a negative value of a symbol declared
    positive), NaN/inf/complex values, a Hessian that is not positive semi-definite, a batch
    larger than the data set without replacement, missing parameters, and ``chains`` (integer
    ≥ 2), ``steps`` (≥ 1), ``burn_in`` (≥ 0), ``rel_se`` (in (0, 1)), ``workers``, ``seed`` and
    ``progress``.
    An explicit ``burn_in`` shorter than :data:`MIN_BURN_IN_RELAXATIONS` relaxation times
    :math:`\tau = 1/(-\ln\rho)` warns (:class:`BurnInWarning`, with the recommended value).

    Raises :class:`~symsgd.UnstableError` before running when ρ ≥ 1 (naming the violated
    stability condition, which is derived only then), or when the iterates overflow.

    ``per_chain=True`` keeps each chain's time averages (:attr:`Simulation.per_chain`, a
    :class:`ChainAverages`), for comparing runs chain by chain.

    **The real nonlinear dynamics.**  When ``landscape`` is an :class:`~symsgd.EmpiricalLoss`
    (a per-sample loss and its data set), the optimizer's own ``step`` runs on the *real*
    per-sample gradients :math:`\nabla\ell(\theta; x_i)` of the loss (its compiled gradient at
    the chains' θ, with the rows of real minibatches drawn with or without replacement as
    ``noise = MinibatchNoise(S, replacement=…)`` says), not on their linearisation.  ``theta0``
    (required) must be a minimum (:meth:`~symsgd.EmpiricalLoss.minimum`; else the
    ``ValueError`` of :meth:`~symsgd.EmpiricalLoss.near`): the chains start there and δ is
    measured from it (from the minimiser :math:`\theta_\gamma` of the linearised weight-decayed
    loss when the optimizer has weight decay).  The local problem ``model.near(theta0)`` supplies
    the spectral radius ρ (so the default burn-in and sizes), the stability check and the
    preconditioner of preconditioned optimizers (:func:`symsgd.sampling.nonlinear`).
    ``Simulation.loss`` is None for these runs (the training loss would cost a pass over the
    whole data set per step).  The same ``seed``, ``chains``, ``steps`` and ``burn_in`` on
    ``model`` and on ``model.near(theta0)`` draw the same minibatches (common random numbers),
    so ``per_chain`` differences measure the departure from the linearised dynamics.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> sim = simulate(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c),
    ...                {"lr": 0.5, h: 1.0, c: 1.0}, chains=2000, steps=500, seed=0)
    >>> exact = 0.5 * 1.0 / (1.0 * (2 - 0.5))  # λc / (h(2 − λh))
    >>> bool(abs(sim.cov[0, 0] - exact) < 5 * sim.cov_stderr[0, 0])
    True
    """
    check_run_options(chains, steps, burn_in, rel_se, workers)
    check_seed(seed)
    check_progress(progress)
    model = None
    if isinstance(landscape, EmpiricalLoss):
        if theta0 is None:
            raise ValueError(
                "simulate(): the nonlinear dynamics of an EmpiricalLoss start at a minimum; pass "
                "theta0=model.minimum(start=…)."
            )
        model, landscape = landscape, landscape.near(theta0)
    elif theta0 is not None:
        raise ValueError(
            f"simulate(): theta0 is the start of the nonlinear dynamics of an EmpiricalLoss; "
            f"the chains on {landscape!r} start at its minimiser. Drop theta0."
        )
    try:
        problem = prepare(optimizer, landscape, noise, params)
    except UnstableError as exc:  # ρ ≥ 1: name the failing condition (derived only now)
        raise explain(exc, optimizer, landscape, noise) from None
    if model is not None:
        problem = nonlinear(problem)
    return run(
        problem,
        chains=chains,
        steps=steps,
        burn_in=burn_in,
        seed=seed,
        rel_se=rel_se,
        workers=workers,
        progress=progress,
        per_chain=per_chain,
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
    per_chain: bool = False,
) -> Simulation:
    """:func:`simulate` for a problem already :func:`prepare`-d (reuse it across seeds)."""
    chains, steps, burn_in, rel_se, workers = check_run_options(
        chains, steps, burn_in, rel_se, workers
    )
    check_seed(seed)
    progress = check_progress(progress)
    if not isinstance(per_chain, (bool, np.bool_)):
        raise ValueError(f"per_chain must be True or False; got {per_chain!r}.")
    block = max(64, BLOCK_WORK // max(1, problem.oracle.work))
    if burn_in is None:
        burn_in = default_burn_in(problem.rho)
    else:
        _warn_short_burn_in(burn_in, problem.rho)
    chains, steps = default_size(problem.rho, rel_se, chains, steps, block, burn_in)
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    sizes = _blocks(chains, block)
    seeds = _block_seeds(seq, len(sizes))
    workers = min(len(sizes), workers or usable_cpus())
    start = time.perf_counter()
    total = chains * (burn_in + steps)
    bar = progress_bar(
        total,
        unit="chain-step",
        predicted=total * max(1, problem.oracle.work) / (WORK_RATE * workers),
        progress=progress,
    )
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
            problem.rho, f"the simulation diverged at step {exc.step}"
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
        per_chain=_chain_averages(m1, s2, sv, pairs, d) if per_chain else None,
        dynamics=problem.dynamics,
    )


def _chain_averages(m1, s2, sv, pairs, d: int) -> ChainAverages:
    i, j = pairs
    n = m1.shape[1]
    cov, vel = np.empty((n, d, d)), np.empty((n, d, d))
    cov[:, i, j] = cov[:, j, i] = s2.T
    vel[:, i, j] = vel[:, j, i] = sv.T
    return ChainAverages(mean=m1.T.copy(), cov=cov, velocity_cov=vel)


def _integer(name: str, value, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, np.integer, float, np.floating)
    ):
        raise ValueError(f"{name} must be an integer ≥ {low}; got {value!r}.")
    if not (math.isfinite(value) and float(value).is_integer() and value >= low):
        raise ValueError(f"{name} must be an integer ≥ {low}; got {value!r}.")
    return int(value)


def check_run_options(chains, steps, burn_in, rel_se, workers) -> tuple:
    """The simulation sizes checked (``ValueError`` naming the option and its range) and
    normalised to Python ints: ``chains`` ≥ 2, ``steps`` ≥ 1, ``burn_in`` ≥ 0 and ``workers``
    ≥ 1 integers or None (integral floats such as ``1e4`` are accepted), ``rel_se`` in (0, 1).

    >>> check_run_options(1e3, None, 0, 0.01, None)
    (1000, None, 0, 0.01, None)
    """
    out = (
        _integer("chains", chains, 2),
        _integer("steps", steps, 1),
        _integer("burn_in", burn_in, 0),
    )
    try:
        fine = 0 < float(rel_se) < 1 and not isinstance(rel_se, bool)
    except (TypeError, ValueError):
        fine = False
    if not fine:
        raise ValueError(f"rel_se must be a number in (0, 1); got {rel_se!r}.")
    return (*out, float(rel_se), _integer("workers", workers, 1))


def _warn_short_burn_in(burn_in: int, rho: float) -> None:
    tau = relaxation_time(rho)
    if burn_in >= MIN_BURN_IN_RELAXATIONS * tau:
        return
    least = math.ceil(MIN_BURN_IN_RELAXATIONS * tau)
    warnings.warn(
        f"burn_in={burn_in} is shorter than {MIN_BURN_IN_RELAXATIONS} relaxation times of the "
        f"second moments (τ = 1/(−ln ρ) = {tau:.3g} steps at ρ = {rho:.4g}): the chains start "
        f"at rest and still carry a relative transient ρ^burn_in = {rho**burn_in:.2g}, so the "
        f"estimates are biased. Use burn_in ≥ {least}, or burn_in=None for the default "
        f"{_quiet_default_burn_in(rho)} (transient {BURN_IN_TOLERANCE:g}).",
        BurnInWarning,
        stacklevel=3,
    )


def _quiet_default_burn_in(rho: float) -> int:
    """:func:`default_burn_in` without its warning (for messages)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return default_burn_in(rho)


def check_seed(seed) -> None:
    """``seed`` must be None, an integer ≥ 0 or a ``numpy.random.SeedSequence``."""
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"seed must be None, an integer ≥ 0 or a numpy.random.SeedSequence; got {seed!r}."
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
