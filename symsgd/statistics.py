r"""Monte Carlo statistics of the simulator and the cross-check: how long a chain must run.

The second moments of a stable recursion relax like :math:`\rho^t`, with ρ the spectral radius of
the second-moment map (:meth:`symsgd.moments.NumericMap.radius`): the *relaxation time*
:math:`\tau = 1/(-\ln\rho)` sets the burn-in, the *integrated autocorrelation time*
:math:`(1+\rho)/(1-\rho)` of a quadratic statistic sets how many independent samples a run holds,
and so the run size for a target relative standard error.  A cross-check flags entries with
Holm's step-down procedure (:func:`holm`) and gives no verdict on a run too small to see a
difference (:func:`sufficiency`, with the thresholds :data:`MIN_CHAINS`,
:data:`MIN_EFFECTIVE_SAMPLES` and :data:`MAX_RELATIVE_STDERR`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BURN_IN_TOLERANCE",
    "MAX_BURN_IN",
    "MAX_RELATIVE_STDERR",
    "MIN_BURN_IN_RELAXATIONS",
    "MIN_CHAINS",
    "MIN_EFFECTIVE_SAMPLES",
    "default_burn_in",
    "default_size",
    "holm",
    "integrated_time",
    "relaxation_time",
    "sufficiency",
]

#: burn-in leaves a relative transient of at most this in the second moments
BURN_IN_TOLERANCE = 1e-8
#: longest automatic burn-in
MAX_BURN_IN = 1_000_000
#: an explicit burn-in shorter than this many relaxation times τ = 1/(−ln ρ) warns
#: (:class:`~symsgd.BurnInWarning`): the chains start at rest, so the first measured step still
#: carries a relative transient ρ^burn_in > e⁻⁵ ≈ 0.7 % of the second moments
MIN_BURN_IN_RELAXATIONS = 5
#: fewer independent chains than this make the verdict inconclusive
MIN_CHAINS = 30
#: fewer effective samples chains·steps·(1 − ρ)/(1 + ρ) than this (a predicted relative standard
#: error of the second moments above √(2/800) = 5 %) make a verdict without flags inconclusive
MIN_EFFECTIVE_SAMPLES = 800
#: a measured relative standard error of a diagonal entry of cov above this makes a verdict
#: without flags inconclusive
MAX_RELATIVE_STDERR = 0.1


def relaxation_time(rho: float) -> float:
    r"""Steps for the second moments to relax by a factor e: :math:`\tau = 1/(-\ln\rho)` for
    the spectral radius ρ of the second-moment map (0 for ρ = 0, ∞ for ρ ≥ 1).

    >>> round(relaxation_time(0.81), 3)
    4.746
    """
    if rho <= 0:
        return 0.0
    if rho >= 1:
        return math.inf
    return -1.0 / math.log(rho)


def integrated_time(rho: float) -> float:
    r"""Integrated autocorrelation time :math:`(1+\rho)/(1-\rho)` of a quadratic statistic
    whose autocorrelation decays like :math:`\rho^{|t|}`: a run of ``n`` chain-steps carries
    about ``n / integrated_time(rho)`` independent samples of the second moments.

    >>> round(integrated_time(0.81), 3)
    9.526
    """
    return (1 + rho) / (1 - rho) if rho < 1 else math.inf


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
    tau = integrated_time(rho)
    need = math.ceil(2 * tau / rel_se**2)
    if chains is None and steps is None:
        chains = min(max(64, need // max(burn_in, 64)), 2 * block)
    if chains is None:
        chains = max(32, -(-need // steps))
    if steps is None:
        steps = max(64, -(-need // chains))
    return int(chains), int(steps)


def holm(p: Sequence[float], level: float) -> list[bool]:
    r"""Holm's step-down procedure: sort the m p-values and flag the k-th smallest while
    :math:`p_{(k)} \le \text{level}/(m-k+1)`; the flags (in the order of ``p``) control the
    family-wise error rate at ``level`` under any dependence between the tests.

    >>> holm([0.001, 0.2, 0.012, 0.04], 0.05)
    [True, False, True, False]
    """
    order = np.argsort(p, kind="stable")
    m = len(p)
    flagged = [False] * m
    for k, index in enumerate(order):
        if p[index] <= level / (m - k):
            flagged[index] = True
        else:
            break
    return flagged


def sufficiency(sim, table: Sequence) -> str | None:
    r"""Why the simulation ``sim`` (a :class:`~symsgd.Simulation`) is too small for a verdict
    on the compared entries ``table`` (rows of a :class:`~symsgd.CrossCheck`), with the
    ``chains``/``steps`` that would do; None when it is large enough.  The stated minimum:
    :data:`MIN_CHAINS` chains; and, when no entry is flagged, :data:`MIN_EFFECTIVE_SAMPLES`
    effective samples :math:`n_\text{eff} = \text{chains}\cdot\text{steps}\,(1-\rho)/(1+\rho)`
    and a measured relative standard error of each diagonal entry of ``cov`` of at most
    :data:`MAX_RELATIVE_STDERR`.
    """
    tau = integrated_time(sim.spectral_radius)
    n_eff = sim.effective_samples
    chains = max(sim.chains, MIN_CHAINS)
    diagonal = [
        row.stderr / abs(row.estimate)
        for row in table
        if row.quantity == "cov" and row.entry[0] == row.entry[1] and row.estimate != 0
    ]
    measured = max(diagonal, default=0.0)
    # steps for the stated minimum, scaled up when the measured error is the binding one
    factor = max(1.0, (measured / MAX_RELATIVE_STDERR) ** 2 * n_eff / MIN_EFFECTIVE_SAMPLES)
    steps = max(sim.steps, math.ceil(factor * MIN_EFFECTIVE_SAMPLES * tau / chains), math.ceil(tau))
    advice = (
        f"re-run with chains ≥ {chains} and steps ≥ {steps}, or leave chains and steps unset "
        "(the default sizes the run for rel_se)"
    )
    if sim.chains < MIN_CHAINS:
        return (
            f"{sim.chains} chains are too few: the standard errors come from the spread of "
            f"{sim.chains} independent per-chain averages ({sim.chains - 1} degrees of "
            f"freedom), and a verdict needs at least {MIN_CHAINS} chains; {advice}."
        )
    if any(row.flagged for row in table):
        return None
    if n_eff < MIN_EFFECTIVE_SAMPLES:
        return (
            f"{sim.chains} chains × {sim.steps} steps hold about {n_eff:.0f} effective samples "
            f"(chains·steps·(1−ρ)/(1+ρ) at ρ = {sim.spectral_radius:.4g}), fewer than the "
            f"{MIN_EFFECTIVE_SAMPLES} a verdict needs (a predicted relative standard error of "
            f"{math.sqrt(2 / n_eff):.2g} > {math.sqrt(2 / MIN_EFFECTIVE_SAMPLES):.2g}): a "
            f"wrong formula could pass; {advice}."
        )
    if measured > MAX_RELATIVE_STDERR:
        return (
            f"the measured relative standard error of cov is {measured:.2g} > "
            f"{MAX_RELATIVE_STDERR:g} (heavy tails or slow modes): a wrong formula could "
            f"pass; {advice}."
        )
    return None
