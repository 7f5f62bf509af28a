"""The cross-check as a statistical test: calibrated false alarms, power, reports and sweeps."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import sympy as sp
from scipy import stats

import symsgd as ss
from symsgd import BurnInWarning, CrossCheck, assert_crosscheck, crosscheck, sweep
from symsgd.sampling import Problem
from symsgd.statistics import (
    MAX_RELATIVE_STDERR,
    MIN_CHAINS,
    MIN_EFFECTIVE_SAMPLES,
    holm,
    sufficiency,
)

h, c = sp.symbols("h c", positive=True)
lr = ss.lr
POINT = {lr: 1.5, h: 1.0, c: 0.5}  # λh = 1.5: far from the continuous-time limit
TINY = {"chains": 256, "steps": 32}


@pytest.fixture(scope="module")
def sgd():
    return ss.stationary(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c))


def _binomial_interval(n: int, p: float, coverage: float = 0.999) -> tuple[int, int]:
    """Central interval holding a Binomial(n, p) count with probability ≥ ``coverage``."""
    tail = (1 - coverage) / 2
    return int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p))


def test_false_alarm_rate_is_the_nominal_level(sgd):
    """200 seeded crosschecks of the correct formula at level 0.1.

    * one entry (``cov``): the test is exact (Student t), so the alarm count is Binomial(200, 0.1)
      — asserted inside its central 99.9% interval;
    * all three entries with Holm: the family-wise rate is at most the level (the entries are
      strongly correlated, so it lies between level/3 and level) — asserted below the upper end
      of the 99.9% interval for rate = level, and above that of rate = level/3.
    """
    level, runs = 0.1, 200
    single = family = 0
    for seed in range(runs):
        report = crosscheck(sgd, POINT, seed=seed, level=level, **TINY)
        assert report.verdict != "inconclusive", report.reason  # TINY is above the minimum
        cov_row = report.table[0]
        single += cov_row.p <= level
        family += not report.passed
    low, high = _binomial_interval(runs, level)
    assert low <= single <= high, (single, low, high)
    assert family <= high
    assert family >= _binomial_interval(runs, level / 3)[0]


def test_wrong_formula_fails_reliably(sgd):
    """The continuous-time prediction λc/(2h) is wrong at λh = 1.5 (the exact value is 4× it):
    the check must fail for every one of 50 seeds."""
    wrong = sgd.continuous_time()
    assert sp.simplify(wrong.cov - lr * c / (2 * h)) == 0
    failures = sum(
        not crosscheck(wrong, POINT, problem=sgd, seed=seed, **TINY).passed for seed in range(50)
    )
    assert failures >= 0.99 * 50


def test_z_scores_are_standard_normal(sgd):
    """Across seeds the z-score of one entry is ~ N(0, 1) (Kolmogorov–Smirnov, α = 0.001)."""
    z = [
        crosscheck(sgd, POINT, seed=1000 + s, quantities=("cov",), **TINY).table[0].z
        for s in range(100)
    ]
    assert stats.kstest(z, "norm").pvalue > 0.001


def test_holm_step_down():
    assert holm([0.001, 0.2, 0.012, 0.04], 0.05) == [True, False, True, False]
    assert holm([0.02, 0.03], 0.05) == [True, True]  # 0.02 ≤ 0.05/2, then 0.03 ≤ 0.05/1
    assert holm([0.03, 0.04], 0.05) == [False, False]  # 0.03 > 0.05/2 stops at once
    assert holm([0.04, 0.01], 0.05) == holm([0.01, 0.04], 0.05)[::-1]


def test_report_table_plot_and_assert(sgd):
    report = crosscheck(sgd, POINT, seed=0, **TINY)
    assert isinstance(report, CrossCheck) and report.passed and bool(report)
    text = str(report)
    assert "crosscheck PASSED" in text and "velocity_cov[0,0]" in text and "Holm" in text
    row = report.table[0]
    assert row.z == pytest.approx((row.theory - row.estimate) / row.stderr)
    fig = report.plot()
    assert len(fig.axes) == 2

    wrong = sgd.continuous_time()
    with pytest.raises(AssertionError, match=r"crosscheck FAILED(.|\n)*cov\[0,0\]"):
        assert_crosscheck(wrong, POINT, problem=sgd, seed=0, **TINY)
    with pytest.raises(TypeError, match="problem="):
        crosscheck(wrong, POINT)


def test_crosscheck_rejects_unstable_points(sgd):
    """The simulator reports ρ at the values; the result's own conditions name the failing one."""
    with pytest.raises(ss.UnstableError, match=r"h\*lambda < 2") as info:
        crosscheck(sgd, {lr: 2.5, h: 1.0, c: 0.5})
    assert info.value.rho == pytest.approx(2.25)  # (1 − 2.5)²
    assert str(info.value.condition) == "h*lambda < 2"


def test_sweep_in_local_processes(sgd):
    s = sweep(sgd, "lr", [0.5, 1.0, 1.5], {h: 1.0, c: 0.5}, chains=4096, steps=200, seed=1)
    assert s.param == lr
    np.testing.assert_allclose(s.theory, 0.5 * s.values / (2 - s.values))  # λc/(h(2 − λh))
    np.testing.assert_allclose(s.continuous, 0.5 * s.values / 2)
    assert np.all(np.abs(s.estimate - s.theory) < 5 * s.stderr)
    assert s.theory_grid.shape == s.grid.shape == (200,)
    fig = s.plot()
    assert fig.axes[0].get_xlabel() == "lambda"


def test_sweep_beyond_the_stability_edge_gives_nan(sgd):
    s = sweep(sgd, lr, [1.0, 2.5], {h: 1.0, c: 0.5}, chains=256, steps=32, workers=1)
    assert np.isfinite(s.estimate[0]) and np.isnan(s.estimate[1]) and np.isnan(s.theory[1])
    assert s.messages[0] is None and "h*lambda < 2" in s.messages[1]


def test_sweep_of_a_matrix_readout():
    H = sp.Matrix([[2, 1], [1, 3]])
    result = ss.stationary(ss.SGD(lr), ss.Quadratic(H), ss.AdditiveNoise(sp.eye(2)))
    s = sweep(result, lr, [0.1, 0.3], chains=1024, steps=64, workers=1)
    assert s.estimate.shape == s.theory.shape == (2, 2, 2)
    assert np.all(np.abs(s.estimate - s.theory) < 5 * s.stderr)
    assert s.plot() is not None


def test_sweep_on_a_dask_cluster_matches_local(sgd):
    distributed = pytest.importorskip("dask.distributed")
    values = [0.5, 1.0, 1.5]
    kwargs = {"chains": 512, "steps": 64, "seed": 2}
    local = sweep(sgd, lr, values, {h: 1.0, c: 0.5}, workers=1, **kwargs)
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = sweep(sgd, lr, values, {h: 1.0, c: 0.5}, client=client, **kwargs)
    np.testing.assert_array_equal(remote.estimate, local.estimate)
    np.testing.assert_array_equal(remote.stderr, local.stderr)


# --------------------------------------------------------------------------------------------
# sweep: readouts that do not depend on the swept parameter, and validation before simulating
# --------------------------------------------------------------------------------------------

a, k, sigma = sp.symbols("a k sigma", positive=True)
S = ss.batch_size


@pytest.fixture(scope="module")
def scaled_batch():
    """SGD with λ = kS on online regression: the SDE prediction kσ²/(2(1 − ak)) has no S."""
    return ss.stationary(
        ss.SGD(k * S), ss.LinearRegression(a, label_variance=sigma**2), ss.MinibatchNoise(S)
    )


def test_sweep_over_a_parameter_the_sde_does_not_depend_on(scaled_batch):
    fixed = {a: 1.0, k: 0.1, sigma: 1.0}
    s = sweep(scaled_batch, S, [1, 2], fixed, chains=512, steps=64, workers=1, grid=5)
    np.testing.assert_allclose(s.theory, 0.1 / (2 - 0.1 * (s.values + 2)))  # kσ²/(2 − ak(S+2))
    np.testing.assert_allclose(s.continuous, [0.1 / 1.8] * 2)  # flat: kσ²/(2(1 − ak))
    np.testing.assert_array_equal(s.grid, [1, 2])  # S is an integer: the curves at integers
    np.testing.assert_allclose(s.continuous_grid, np.full(2, 0.1 / 1.8))
    assert np.all(np.isfinite(s.estimate)) and s.messages == (None, None)


def test_sweep_passes_only_the_parameters_a_curve_depends_on(sgd):
    """A result with c substituted: its curves no longer take c, which the sweep still holds
    (from the result's values) for the simulation; a curve free of the swept parameter is
    constant along the grid (see the batch-size sweep above)."""
    s = sweep(sgd.subs({c: 0.5}), lr, [0.5, 1.0], {h: 1.0}, chains=256, steps=16, workers=1)
    np.testing.assert_allclose(s.theory, 0.5 * s.values / (2 - s.values))  # λc/(h(2 − λh))
    np.testing.assert_allclose(s.continuous_grid, 0.5 * s.grid / 2)  # λc/(2h)
    assert np.all(np.isfinite(s.estimate))


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if sweep starts a simulation (a chain asks the prepared problem for its
    preconditioner before its first step, in this process or a forked worker)."""

    def forbidden(self):
        raise AssertionError("a simulation started before the inputs were validated")

    monkeypatch.setattr(Problem, "precondition", forbidden)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: sweep(r, "q", [0.5], {h: 1.0, c: 0.5}), "unknown parameter 'q'"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, "q": 0.5}), "unknown parameter 'q'"),
        (lambda r: sweep(r, lr, [], {h: 1.0, c: 0.5}), "non-empty 1-D"),
        (lambda r: sweep(r, lr, ["fast"], {h: 1.0, c: 0.5}), "sequence of numbers"),
        (lambda r: sweep(r, lr, [0.5, np.nan], {h: 1.0, c: 0.5}), "finite"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0}), "missing c|depends on c"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: sp.Symbol("z")}), "must be a number"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, chains=1), "chains must be"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, what="mean"), "what must be"),
        # the theory cannot follow a parameter the result already substitutes
        (lambda r: sweep(r.subs({c: 0.5}), c, [0.5, 1.0], {h: 1.0, lr: 0.5}), "already has c"),
        # a continuous-time result has no velocity_cov (and carries no problem of its own)
        (
            lambda r: sweep(
                r.continuous_time(),
                lr,
                [0.5],
                {h: 1.0, c: 0.5},
                what="velocity_cov",
                problem=(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c)),
            ),
            "has no 'velocity_cov'",
        ),
    ],
)
def test_sweep_rejects_bad_input_before_any_simulation(sgd, no_simulation, call, message):
    with pytest.raises(ValueError, match=message):
        call(sgd)


def test_sweep_rejects_a_bad_point_before_simulating_the_good_ones(scaled_batch, no_simulation):
    # batch sizes must be integers: S = 1.5 is refused before S = 1 is simulated
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        sweep(scaled_batch, S, [1, 1.5], {a: 1.0, k: 0.1, sigma: 1.0}, workers=1)


def test_sweep_unstable_points_are_nan_without_simulating_them(sgd, monkeypatch):
    simulated = []
    real = Problem.precondition

    def counting(self):
        simulated.append(self.values[lr])
        return real(self)

    monkeypatch.setattr(Problem, "precondition", counting)
    s = sweep(sgd, lr, [1.0, 2.5], {h: 1.0, c: 0.5}, chains=256, steps=32, workers=1)
    assert set(simulated) == {1} and np.isnan(s.estimate[1]) and "h*lambda < 2" in s.messages[1]


# --------------------------------------------------------------------------------------------
# a check cannot pass vacuously
# --------------------------------------------------------------------------------------------


def test_two_chains_are_never_passed(sgd):
    """2 chains: one degree of freedom, so even z = 24 is not significant at level 0.01 — the
    old verdict was PASSED.  Now it is inconclusive, for the right formula and the wrong one."""
    wrong = sgd.continuous_time()
    verdicts = set()
    for seed in range(20):
        for result, extra in ((sgd, {}), (wrong, {"problem": sgd})):
            report = crosscheck(result, POINT, seed=seed, chains=2, steps=500, **extra)
            assert not report.passed and not bool(report)
            verdicts.add(report.verdict)
            assert f"at least {MIN_CHAINS} chains" in report.reason
    assert verdicts == {"inconclusive"}
    text = str(report)
    assert "crosscheck INCONCLUSIVE" in text and "verdict: inconclusive: 2 chains" in text
    assert "inconclusive" in repr(report)
    with pytest.raises(AssertionError, match="INCONCLUSIVE"):
        assert_crosscheck(sgd, POINT, seed=0, chains=2, steps=500)


def test_too_few_effective_samples_is_inconclusive_and_the_advice_suffices(sgd):
    """30 chains × 5 steps at ρ = 0.25: n_eff = 150·0.75/1.25 = 90 < 800.  Re-running with the
    recommended chains and steps gives a verdict (passed, for the right formula)."""
    report = crosscheck(sgd, POINT, seed=0, chains=MIN_CHAINS, steps=5)
    assert report.verdict == "inconclusive" and not report.passed
    assert report.simulation.effective_samples == pytest.approx(MIN_CHAINS * 5 * 0.75 / 1.25)
    assert "effective samples" in report.reason
    chains, steps = map(int, re.search(r"chains ≥ (\d+) and steps ≥ (\d+)", report.reason).groups())
    assert chains * steps * 0.75 / 1.25 >= MIN_EFFECTIVE_SAMPLES
    again = crosscheck(sgd, POINT, seed=0, chains=chains, steps=steps)
    assert again.verdict == "passed" and again.reason is None


def test_a_detected_difference_fails_even_in_a_small_run(sgd):
    """With ≥ 30 chains the t statistics are valid, so a flagged entry is a real failure even
    when the run is too small to certify a pass (the wrong formula is 4× off)."""
    wrong = sgd.continuous_time()
    report = crosscheck(wrong, POINT, problem=sgd, seed=0, chains=MIN_CHAINS, steps=5)
    assert report.verdict == "failed" and report.reason is None


def test_measured_standard_error_too_large_is_inconclusive(sgd):
    """Heavy tails or slow modes show in the measured error: inflate it past 10 %."""
    report = crosscheck(sgd, POINT, seed=0, **TINY)
    assert sufficiency(report.simulation, report.table) is None
    inflated = [
        dataclasses.replace(row, stderr=2 * MAX_RELATIVE_STDERR * abs(row.estimate))
        if row.quantity == "cov"
        else row
        for row in report.table
    ]
    reason = sufficiency(report.simulation, inflated)
    assert reason is not None and "measured relative standard error" in reason


def test_crosscheck_verdict_is_consistent():
    with pytest.raises(ValueError, match="contradicts"):
        CrossCheck(
            passed=True,
            table=[],
            level=0.01,
            simulation=None,
            problem="",
            verdict="inconclusive",
        )


def test_short_burn_in_warns_through_crosscheck(sgd):
    point = {lr: 0.1, h: 1.0, c: 0.5}  # ρ = 0.81: τ ≈ 4.75, the minimum 5τ → 24 steps
    least = math.ceil(5 / -math.log(0.81))
    with pytest.warns(BurnInWarning, match=rf"burn_in=3 .*burn_in ≥ {least}"):
        crosscheck(sgd, point, seed=0, burn_in=3, **TINY)


# --------------------------------------------------------------------------------------------
# crosscheck and sweep: bad values are refused before any simulation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chains": 2.5}, r"chains must be an integer ≥ 2"),
        ({"steps": 0}, r"steps must be an integer ≥ 1"),
        ({"burn_in": -1}, r"burn_in must be an integer ≥ 0"),
        ({"burn_in": 1.5}, r"burn_in must be an integer ≥ 0"),
        ({"rel_se": 2.0}, r"rel_se must be a number in \(0, 1\)"),
        ({"seed": -3}, r"seed must be"),
        ({"level": 1.5}, r"level must be a number in \(0, 1\)"),
        ({"level": "high"}, r"level must be a number"),
        ({"quantities": "covariance"}, r"quantities must be"),
        ({"quantities": ()}, r"quantities must be"),
        ({"params": {**POINT, lr: -0.5}}, r"lr must be > 0"),
        ({"params": {**POINT, c: float("nan")}}, r"parameter c must be a finite number"),
        ({"params": {**POINT, h: 1j}}, r"parameter h must be a real number"),
        ({"params": {lr: 0.5}}, r"missing c, h"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_crosscheck_rejects_bad_input_before_simulating(sgd, no_simulation, kwargs, message):
    kwargs = dict(kwargs)
    params = kwargs.pop("params", POINT)
    with pytest.raises(ValueError, match=message) as info:
        crosscheck(sgd, params, **kwargs)
    assert not isinstance(info.value, ss.UnstableError)


def test_crosscheck_rejects_bad_eigenvalues(no_simulation):
    result = ss.stationary(
        ss.SGD(lr), ss.LinearRegression.commuting(a, sigma**2), ss.MinibatchNoise(S)
    )
    point = {lr: 0.1, sigma: 1.0, S: 2}
    for bad in ([1.0, -2.0], [1.0, math.inf], [], "12", [1 + 1j]):
        with pytest.raises(ValueError, match="eigenvalues must be"):
            crosscheck(result, point, eigenvalues=bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: sweep(r, lr, [0.5, -0.1], {h: 1.0, c: 0.5}), r"lr must be > 0"),
        (lambda r: sweep(r, c, [0.5, -1.0], {h: 1.0, lr: 0.5}), r"c must be > 0"),
        (lambda r: sweep(r, lr, [0.5], {h: -1.0, c: 0.5}), r"h must be > 0"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, seed=-1), r"seed must be"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, workers=0), r"workers must be"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, grid=2.5), r"grid must be"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, steps=10.5), r"steps must be"),
        (lambda r: sweep(r, lr, [0.5], {h: 1.0, c: 0.5}, burn_in=-2), r"burn_in must be"),
    ],
    ids=["lr<0", "c<0", "fixed h<0", "seed", "workers", "grid", "steps", "burn_in"],
)
def test_sweep_rejects_domain_errors_before_any_simulation(sgd, no_simulation, call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(sgd)
    assert not isinstance(info.value, ss.UnstableError)
