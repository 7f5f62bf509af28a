"""The cross-check as a statistical test: calibrated false alarms, power, reports and sweeps."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import sympy as sp
from scipy import stats

import symsgd as ss
from symsgd.crosscheck import CrossCheck, _holm, assert_crosscheck, crosscheck, sweep

crosscheck_module = importlib.import_module("symsgd.crosscheck")  # ss.crosscheck is the function

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
    assert _holm([0.001, 0.2, 0.012, 0.04], 0.05) == [True, False, True, False]
    assert _holm([0.02, 0.03], 0.05) == [True, True]  # 0.02 ≤ 0.05/2, then 0.03 ≤ 0.05/1
    assert _holm([0.03, 0.04], 0.05) == [False, False]  # 0.03 > 0.05/2 stops at once
    assert _holm([0.04, 0.01], 0.05) == _holm([0.01, 0.04], 0.05)[::-1]


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
    with pytest.raises(ss.UnstableError, match=r"h\*lambda < 2"):
        crosscheck(sgd, {lr: 2.5, h: 1.0, c: 0.5})


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
        ss.SGD(k * S), ss.LinearRegression(a, label_noise=sigma**2), ss.MinibatchNoise(S)
    )


def test_sweep_over_a_parameter_the_sde_does_not_depend_on(scaled_batch):
    fixed = {a: 1.0, k: 0.1, sigma: 1.0}
    s = sweep(scaled_batch, S, [1, 2], fixed, chains=512, steps=64, workers=1, grid=5)
    np.testing.assert_allclose(s.theory, 0.1 / (2 - 0.1 * (s.values + 2)))  # kσ²/(2 − ak(S+2))
    np.testing.assert_allclose(s.continuous, [0.1 / 1.8] * 2)  # flat: kσ²/(2(1 − ak))
    np.testing.assert_allclose(s.continuous_grid, np.full(5, 0.1 / 1.8))
    assert np.all(np.isfinite(s.estimate)) and s.messages == (None, None)


def test_evaluate_passes_only_the_parameters_a_readout_depends_on():
    from symsgd.crosscheck import _evaluate
    from symsgd.numeric import lambdify_result

    f = lambdify_result({"cov": sp.Matrix([[h, 0], [0, 2 * h]])})  # free of λ and of c
    points = np.array([0.1, 0.2, 0.3])
    out = _evaluate(f, {"h": 1.5, "c": 0.5}, "lambda", points)
    assert out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out[:, 1, 1], [3.0, 3.0, 3.0])
    scalar = _evaluate(lambdify_result({"cov": lr * c}), {"h": 1.5, "c": 0.5}, "lambda", points)
    np.testing.assert_allclose(scalar, 0.5 * points)


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if sweep starts a simulation (in this process or through a pool)."""
    module = crosscheck_module

    def forbidden(*args, **kwargs):
        raise AssertionError("a simulation started before the inputs were validated")

    monkeypatch.setattr(module, "run", forbidden)
    monkeypatch.setattr(module, "_map", forbidden)


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
    module = crosscheck_module
    calls = []
    real_run = module.run

    def counting_run(problem, **kwargs):
        calls.append(problem.values)
        return real_run(problem, **kwargs)

    monkeypatch.setattr(module, "run", counting_run)
    s = sweep(sgd, lr, [1.0, 2.5], {h: 1.0, c: 0.5}, chains=256, steps=32, workers=1)
    assert len(calls) == 1 and np.isnan(s.estimate[1]) and "h*lambda < 2" in s.messages[1]
