"""Monte Carlo oracle: the real optimizer, simulated, agrees with the exact theory.

Every comparison is a :func:`symsgd.assert_crosscheck` at a fixed seed, whose tolerance
is the standard error measured in the same run (family-wise level 1%, Holm), never a hard-coded
number.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
import sympy as sp

import symsgd as ss
from symsgd import (
    BurnInWarning,
    Simulation,
    UnstableError,
    assert_crosscheck,
    crosscheck,
    simulate,
)
from symsgd.catalogue import CATALOGUE
from symsgd.moments import spectral_radius
from symsgd.sampling import Problem, prepare
from symsgd.statistics import MIN_BURN_IN_RELAXATIONS, default_burn_in, default_size

h, c, a = sp.symbols("h c a", positive=True)
lr, mu = ss.lr, ss.momentum


# -- agreement with the theory -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "params"),
    [
        (ss.SGD(lr), {lr: 0.7}),
        (ss.HeavyBall(lr, mu), {lr: 0.1, mu: 0.9}),
        (ss.Nesterov(lr, mu), {lr: 0.3, mu: 0.6}),
        (ss.DampedNewton(lr), {lr: 0.8}),
    ],
    ids=["sgd", "heavy-ball", "nesterov", "damped-newton"],
)
def test_scalar_quadratic_agrees(optimizer, params):
    result = ss.stationary(optimizer, ss.Quadratic(h), ss.AdditiveNoise(c))
    report = assert_crosscheck(result, {**params, h: 1.5, c: 0.5}, seed=1)
    assert [row.name for row in report.table] == ["cov[0,0]", "velocity_cov[0,0]", "loss"]


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_catalogue_agrees(case):
    assert_crosscheck(case.derive(), case.params, seed=2)


def test_explicit_2d_with_singular_noise():
    H = sp.Matrix([[2, 1], [1, 3]])
    C = sp.Matrix([[1, 1], [1, 1]])  # rank one: the symmetric square root handles it
    for optimizer in (ss.SGD(lr), ss.HeavyBall(lr, mu)):
        result = ss.stationary(optimizer, ss.Quadratic(H), ss.AdditiveNoise(C))
        report = assert_crosscheck(
            result, {lr: 0.2, mu: 0.5} if optimizer.blocks == 2 else {lr: 0.2}, seed=3
        )
        assert len(report.table) == 3 + 3 + 1


def test_online_regression_with_offset_and_weight_decay():
    """θ* ≠ 0 with weight decay: statistics are about θ_γ = (A + γI)⁻¹Aθ*, and the measured
    training loss includes the bias ½(θ_γ − θ*)ᵀA(θ_γ − θ*)."""
    A = sp.Matrix([[1, sp.Rational(1, 2)], [sp.Rational(1, 2), 2]])
    land = ss.LinearRegression(A, label_variance=sp.Rational(1, 4), theta_star=[1, -2])
    optimizer = ss.SGD(lr, weight_decay=sp.Rational(1, 5))
    result = ss.stationary(optimizer, land, ss.MinibatchNoise(3))
    report = assert_crosscheck(result, {lr: 0.2}, seed=4)
    assert np.all(np.abs(report.simulation.mean) < 5 * report.simulation.mean_stderr)


def test_preconditioned_minibatch_regression():
    A = sp.Matrix([[1, sp.Rational(1, 2)], [sp.Rational(1, 2), 2]])
    P = sp.Matrix([[1, sp.Rational(1, 4)], [sp.Rational(1, 4), sp.Rational(1, 2)]])
    land = ss.LinearRegression(A, label_variance=sp.Rational(1, 2))
    result = ss.stationary(ss.Preconditioned(lr, P), land, ss.MinibatchNoise(2))
    assert_crosscheck(result, {lr: 0.3}, seed=6)


@pytest.mark.parametrize("replacement", [True, False])
def test_finite_data_minibatches(replacement):
    X = sp.Matrix([[1, 0], [0, 1], [1, 1], [2, -1], [-1, 1], [1, 2]]) / 2
    y = sp.Matrix([1, -1, 0, 2, 1, -2]) / 2
    land = ss.LinearRegression.from_data(X, y)
    for optimizer in (ss.SGD(lr), ss.HeavyBall(lr, mu)):
        result = ss.stationary(optimizer, land, ss.MinibatchNoise(2, replacement=replacement))
        assert_crosscheck(
            result, {lr: 0.5, mu: 0.3} if optimizer.blocks == 2 else {lr: 0.5}, seed=5
        )


def test_mode_coupled_regression_on_an_explicit_spectrum():
    """Minibatch noise couples the eigen-modes through Tr(AΣ): simulate the explicit diagonal
    problem with the given spectrum, compare with ``on_modes``."""
    land = ss.LinearRegression.commuting(a, label_variance=ss.label_noise**2)
    result = ss.stationary(ss.SGD(lr), land, ss.MinibatchNoise(ss.batch_size))
    params = {lr: 0.2, ss.label_noise: 0.8, ss.batch_size: 2}
    report = assert_crosscheck(result, params, eigenvalues=[1, 2, 3], seed=6)
    assert report.simulation.dim == 3
    assert_crosscheck(result, {**params, a: 1.5}, seed=6)  # one mode alone: a 1-D problem


def test_additive_modes_on_an_explicit_spectrum():
    result = ss.stationary(ss.HeavyBall(lr, mu), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
    report = assert_crosscheck(result, {lr: 0.3, mu: 0.5, c: 0.7}, eigenvalues=[1, 3], seed=7)
    loss = next(row for row in report.table if row.quantity == "loss")
    per_mode = [float(result.loss.subs({lr: 0.3, mu: 0.5, c: 0.7, h: e})) for e in (1, 3)]
    assert loss.theory == pytest.approx(sum(per_mode))


# -- the simulator itself ------------------------------------------------------------------------


SGD_PIECES = (ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c))


def _sgd_problem(rate=0.5):
    return prepare(*SGD_PIECES, {"lr": rate, h: 1, c: 1})


def _sgd_run(rate=0.5, **kwargs):
    return simulate(*SGD_PIECES, {"lr": rate, h: 1, c: 1}, **kwargs)


def test_same_seed_same_numbers_whatever_the_threads():
    one = _sgd_run(chains=5000, steps=50, seed=7, workers=1)
    two = _sgd_run(chains=5000, steps=50, seed=7, workers=2)
    for field in ("cov", "cov_stderr", "velocity_cov", "mean"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))
    assert one.loss == two.loss
    other = _sgd_run(chains=5000, steps=50, seed=8)
    assert other.cov[0, 0] != one.cov[0, 0]


def test_many_blocks_same_numbers_whatever_the_threads():
    """50 000 chains run in several blocks (each with its own spawned generator), shared out
    to 1, 2 or 3 threads: the numbers are the same."""
    runs = [_sgd_run(chains=50_000, steps=4, burn_in=30, seed=11, workers=w) for w in (1, 2, 3)]
    for other in runs[1:]:
        for field in ("cov", "cov_stderr", "velocity_cov", "velocity_cov_stderr", "mean"):
            np.testing.assert_array_equal(getattr(runs[0], field), getattr(other, field))
    # and the run measures the stationary variance
    exact = 0.5 / (2 - 0.5)  # λc / (h(2 − λh)) at λ = 0.5, h = c = 1
    assert abs(runs[0].cov[0, 0] - exact) < 5 * runs[0].cov_stderr[0, 0]


def test_seed_sequence_is_not_consumed():
    seq = np.random.SeedSequence(123)
    first = _sgd_run(chains=100, steps=20, seed=seq)
    again = _sgd_run(chains=100, steps=20, seed=seq)
    assert first.cov[0, 0] == again.cov[0, 0]
    assert first.seed is seq


def test_shapes_and_types():
    sim = _sgd_run(chains=64, steps=10, seed=0)
    assert isinstance(sim, Simulation)
    assert sim.cov.shape == sim.cov_stderr.shape == sim.velocity_cov.shape == (1, 1)
    assert sim.mean.shape == (1,)
    assert isinstance(sim.loss, float) and isinstance(sim.loss_stderr, float)
    # loss = ½ h θ², chain by chain, so its estimate is exactly ½ h cov
    assert sim.loss == pytest.approx(0.5 * sim.cov[0, 0], rel=1e-12)


def test_unstable_parameters_raise_naming_the_condition():
    with pytest.raises(UnstableError, match=r"h\*lambda < 2") as info:
        simulate(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c), {lr: 2.5, h: 1.0, c: 1.0})
    assert info.value.condition is not None
    with pytest.raises(UnstableError, match="spectral radius"):
        simulate(
            ss.SGD(lr),
            ss.Quadratic(sp.Matrix([[1, 0], [0, 3]])),
            ss.AdditiveNoise(sp.eye(2)),
            {lr: 0.7},
        )


def test_prepare_reports_rho_and_simulate_names_the_condition():
    """The simulator works from numbers: prepare's error carries ρ and the values (no symbolic
    condition, advice found numerically); simulate() names the failing condition."""
    params = {lr: 2.5, h: 1.0, c: 1.0}
    with pytest.raises(UnstableError, match=r"spectral radius.*ρ = 2\.25 ≥ 1") as info:
        prepare(*SGD_PIECES, params)
    numeric = info.value
    assert numeric.rho == pytest.approx(2.25) and numeric.condition is None  # (1 − 2.5)²
    assert numeric.values == {c: 1, h: 1, lr: 2.5}
    assert "Lower the learning rate (ρ = 0.0625 < 1 at the learning rate 1.25)" in str(numeric)
    with pytest.raises(UnstableError, match=r"the condition h\*lambda < 2 fails") as info:
        simulate(*SGD_PIECES, params)
    assert info.value.rho == pytest.approx(2.25) and info.value.values == numeric.values


def test_minibatch_instability_raises():
    land = ss.LinearRegression(a, label_variance=1)
    with pytest.raises(UnstableError, match="lambda"):
        # the mean recursion is stable (λa = 1.5 < 2) but the multiplicative noise is not
        simulate(ss.SGD(lr), land, ss.MinibatchNoise(1), {lr: 1.5, a: 1.0})


def test_divergence_during_the_run_raises(monkeypatch):
    """The runtime guard catches growth the pre-check did not predict (forced here by a
    preconditioner that multiplies the gradient by 5 on a problem prepared at λ = 0.5: the run
    steps with λ = 2.5, |1 − 2.5| = 1.5 > 1)."""
    monkeypatch.setattr(Problem, "precondition", lambda self: lambda v: 5.0 * v)
    with pytest.raises(UnstableError, match="diverged at step") as info:
        _sgd_run(chains=16, steps=10_000, burn_in=4, seed=0)  # 4 ≥ 5τ = 3.6 at ρ = 0.25
    assert info.value.rho == pytest.approx(0.25)  # the prepared problem's ρ


def test_missing_and_unknown_parameters():
    with pytest.raises(ValueError, match="missing c"):
        simulate(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c), {lr: 0.1, h: 1})
    with pytest.raises(ValueError, match="unknown parameter"):
        simulate(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c), {lr: 0.1, h: 1, c: 1, "x": 1})
    # Adam's beta2 does not enter the near-minimum update and needs no value
    sim = simulate(
        ss.Adam(lr),
        ss.Quadratic(h),
        ss.AdditiveNoise(c),
        {lr: 0.1, ss.beta1: 0.5, ss.eps: 0.1, h: 1, c: 1},
        chains=64,
        steps=10,
    )
    assert np.isfinite(sim.cov[0, 0])


def test_minibatch_needs_samples():
    with pytest.raises(ValueError, match="per-sample gradients"):
        simulate(ss.SGD(lr), ss.Quadratic(h), ss.MinibatchNoise(2), {lr: 0.1, h: 1})


@pytest.mark.parametrize(
    ("optimizer", "landscape", "noise", "params"),
    [
        (ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c), {lr: 0.4, h: 1.5, c: 1}),
        (
            ss.Nesterov(lr, mu),
            ss.Quadratic(sp.Matrix([[2, 1], [1, 1]])),
            ss.AdditiveNoise(sp.eye(2)),
            {lr: 0.3, mu: 0.5},
        ),
        (
            ss.HeavyBall(lr, mu),
            ss.LinearRegression(sp.Matrix([[1, 0], [0, 2]]), label_variance=1),
            ss.MinibatchNoise(2),
            {lr: 0.2, mu: 0.4},
        ),
    ],
)
def test_spectral_radius_matches_stability_module(optimizer, landscape, noise, params):
    p = prepare(optimizer, landscape, noise, params)
    rec = ss.build_recursion(optimizer, landscape, noise)
    assert p.rho == pytest.approx(spectral_radius(rec, p.values), rel=1e-9)


def test_progress_bar_is_off_when_not_interactive(capsys):
    _sgd_run(chains=64, steps=10, seed=0, progress=None)  # captured stderr: not a terminal
    _sgd_run(chains=64, steps=10, seed=0, progress=False)
    assert capsys.readouterr().err == ""
    _sgd_run(chains=64, steps=10, seed=0, progress=True)  # forced on
    assert "chain-step" in capsys.readouterr().err


def test_default_burn_in_and_size():
    assert default_burn_in(0.0) == 10
    assert default_burn_in(0.5) == 27  # 0.5**27 < 1e-8 < 0.5**26
    with pytest.warns(RuntimeWarning, match="burn-in capped"):
        assert default_burn_in(1 - 1e-9) == 1_000_000
    chains, steps = default_size(0.9, 0.01, None, None, 8192)
    assert chains * steps >= 2 * 19 / 0.01**2  # τ = (1 + ρ)/(1 − ρ) = 19
    assert default_size(0.9, 0.01, None, 100, 8192)[0] == pytest.approx(3800, abs=1)


@pytest.mark.parametrize("rate", [1.0, 0.1])
def test_relative_error_target_is_met_roughly(rate):
    """The default size aims at rel_se from a Gaussian estimate of the autocorrelation time; the
    measured relative error lands within 25% of it (white noise at λh = 1, ρ = 0.81 at 0.1)."""
    sim = _sgd_run(rate, rel_se=0.01, seed=0)
    assert 0.5 < (sim.cov_stderr[0, 0] / sim.cov[0, 0]) / 0.01 < 1.25


def test_memory_does_not_grow_with_steps():
    _sgd_run(chains=64, steps=1, seed=0)  # warm the caches before measuring
    peaks = []
    for steps in (100, 10_000):
        tracemalloc.start()
        _sgd_run(chains=2048, steps=steps, burn_in=10, seed=0, workers=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0]


def test_crosscheck_compares_only_what_the_theory_defines():
    result = ss.stationary(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    report = crosscheck(
        result.continuous_time(), {lr: 0.1, h: 1, c: 1}, problem=result, chains=512, steps=64
    )
    assert [row.quantity for row in report.table] == ["cov", "loss"]
    assert any("velocity_cov" in note for note in report.notes)


# -- values are checked where they enter -------------------------------------------------------

ADDITIVE = (ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c))
GOOD = {lr: 0.5, h: 1.0, c: 1.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({lr: -0.1}, r"lr must be > 0 \(lambda is declared positive\); got -0.1"),
        ({lr: 0}, r"lr must be > 0"),
        ({h: -1.0}, r"h must be > 0 \(h is declared positive\)"),
        ({c: -0.5}, r"c must be > 0"),
        ({c: float("nan")}, r"parameter c must be a finite number"),
        ({c: float("inf")}, r"parameter c must be a finite number"),
        ({lr: 0.5 + 0.1j}, r"parameter lr must be a real number"),
        ({h: "steep"}, r"parameter h must be a number"),
        ({h: sp.Symbol("q")}, r"parameter h must be a number"),
    ],
    ids=["lr<0", "lr=0", "h<0", "c<0", "nan", "inf", "complex", "text", "symbol"],
)
def test_values_contradicting_the_domain_raise_naming_the_parameter(change, message):
    with pytest.raises(ValueError, match=message) as info:
        simulate(*ADDITIVE, {**GOOD, **change}, chains=64, steps=8)
    assert not isinstance(info.value, UnstableError)


def test_batch_size_must_be_a_positive_integer_and_fit_the_data():
    land = ss.LinearRegression(a, sp.Integer(1))
    noise = ss.MinibatchNoise(ss.batch_size)
    for S in (1.5, 0, -2):
        with pytest.raises(ValueError, match=r"batch_size must be an integer ≥ 1 \(S is declared"):
            simulate(ss.SGD(lr), land, noise, {lr: 0.1, a: 1.0, ss.batch_size: S})
    X = sp.Matrix([[1, 0], [0, 1], [1, 1]])
    data = ss.LinearRegression.from_data(X, sp.Matrix([1, 2, 3]))
    without = ss.MinibatchNoise(ss.batch_size, replacement=False)
    with pytest.raises(
        ValueError, match=r"batch_size must be ≤ the data-set size N = 3; got S = 4"
    ):
        simulate(ss.SGD(lr), data, without, {lr: 0.1, ss.batch_size: 4})


def test_domain_errors_of_unconstrained_symbols_are_not_instabilities():
    """Symbols without assumptions: λ ≤ 0, negative curvature or label-noise variance are domain
    errors (ValueError naming the quantity), never an UnstableError saying "lower the learning
    rate"."""
    eta, g, s2 = sp.symbols("eta g s2")  # no assumptions
    with pytest.raises(ValueError, match=r"learning rate eta must be > 0; got -0\.1") as info:
        simulate(ss.SGD(eta), ss.Quadratic(h), ss.AdditiveNoise(c), {eta: -0.1, h: 1, c: 1})
    assert not isinstance(info.value, UnstableError)
    with pytest.raises(ValueError, match=r"Hessian .* positive semi-definite.*g = -1") as info:
        simulate(ss.SGD(lr), ss.Quadratic(g), ss.AdditiveNoise(c), {lr: 0.1, g: -1, c: 1})
    assert not isinstance(info.value, UnstableError)
    assert "Lower the learning rate" not in str(info.value)
    land = ss.LinearRegression(a, s2)
    with pytest.raises(ValueError, match=r"label-noise variance s2 must be ≥ 0; got -1"):
        simulate(ss.SGD(lr), land, ss.MinibatchNoise(2), {lr: 0.1, a: 1, s2: -1})


def test_instability_advice_fits_the_cause():
    # a flat direction: no learning rate helps, so the advice must not say to lower it
    flat = (ss.SGD(lr), ss.Quadratic(sp.diag(1, 0)), ss.AdditiveNoise(sp.eye(2)))
    with pytest.raises(UnstableError) as info:
        simulate(*flat, {lr: 0.1})
    assert "singular" in str(info.value) and "Lower the learning rate" not in str(info.value)
    # too large a numeric step (no symbolic condition to name): lowering it helps, and the
    # advice says where (at half the learning rate ρ = (1 − 0.35·3)² < 1)
    steep = (ss.SGD(sp.Rational(7, 10)), ss.Quadratic(sp.diag(1, 3)), ss.AdditiveNoise(sp.eye(2)))
    rho_half = f"{(1 - 0.35) ** 2:.3g}"  # the slow mode at λ = 0.35 (the fast one: 0.05²)
    with pytest.raises(UnstableError, match=rf"Lower the learning rate \(ρ = {rho_half} < 1 at"):
        simulate(*steep, {})
    # momentum ≥ 1 (a symbol without assumptions): the advice is about the momentum
    m = sp.Symbol("m")
    stuck = (ss.HeavyBall(lr, m), ss.Quadratic(1), ss.AdditiveNoise(1))
    with pytest.raises(UnstableError, match=r"m < 1 fails") as info:
        simulate(*stuck, {lr: 0.1, m: 1.2})
    assert "Lower the learning rate" not in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("chains", 2.5),
        ("chains", 1),
        ("chains", True),
        ("steps", 0),
        ("steps", "100"),
        ("burn_in", -1),
        ("burn_in", 2.5),
        ("rel_se", 0),
        ("rel_se", 1.5),
        ("workers", 0),
        ("seed", -1),
        ("seed", "zero"),
        ("progress", "yes"),
    ],
)
def test_run_options_are_checked_before_preparing(option, value):
    """Parameters that preparing would refuse (a missing c; ρ = 4 at λ = 3) must not mask a
    bad option: the options are checked first."""
    for params in ({lr: 0.5, h: 1.0}, {**GOOD, lr: 3.0}):
        with pytest.raises(ValueError, match=rf"^{option} must be"):
            simulate(*ADDITIVE, params, **{option: value})


def test_integral_floats_are_accepted_as_sizes():
    sim = _sgd_run(chains=64.0, steps=1e1, seed=0)
    assert (sim.chains, sim.steps) == (64, 10) and isinstance(sim.steps, int)


def test_short_burn_in_warns_with_the_recommended_value():
    """ρ = 0.81 at λh = 0.1: τ = 1/(−ln ρ) ≈ 4.75 steps, so the stated minimum is 5τ → 24."""
    p = _sgd_problem(0.1)
    assert p.rho == pytest.approx(0.81)
    least = math.ceil(MIN_BURN_IN_RELAXATIONS / -math.log(0.81))
    assert least == 24
    with pytest.warns(BurnInWarning, match=rf"burn_in=10 .*Use burn_in ≥ {least}"):
        _sgd_run(0.1, chains=64, steps=8, burn_in=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BurnInWarning)
        _sgd_run(0.1, chains=64, steps=8, burn_in=least, seed=0)  # at the minimum: silent
        _sgd_run(0.1, chains=64, steps=8, seed=0)  # the default burn-in: silent


def test_effective_samples():
    sim = _sgd_run(0.1, chains=100, steps=19, seed=0)  # (1 + ρ)/(1 − ρ) = 9.526
    assert sim.effective_samples == pytest.approx(100 * 19 * 0.19 / 1.81)
