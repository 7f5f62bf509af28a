"""symsgd.applications against independent oracles: ss.transient (matrix powers in Q), hand
derivations, scipy minimisation of the exact curves, spectral radii by bisection, and seeded
simulations of the real optimizers on real minibatches (tolerances in standard errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

import symsgd as ss
from symsgd.applications import (
    budget_curve,
    exact_minimum,
    implicit_weight_decay,
    optimal_lr,
    optimal_weight_decay,
    posterior_lr,
    simulate_schedule,
    simulate_transient,
    stable_interval,
    transient_generating_function,
)
from symsgd.moments import NumericMap

R = sp.Rational
LAND2 = ss.LinearRegression(sp.diag(1, R(1, 4)), R(1, 4))  # online regression, d = 2
X3 = [[1, 0], [0, 2], [1, 1]]
Y3 = [1, 2, 0]


# ---------------------------------------------------------------------------------------------
# the budget curve and the optimal learning rate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [R(1, 5), R(1, 2), R(9, 10)])
def test_budget_curve_matches_transient_exactly(lam):
    noise = ss.MinibatchNoise(4)
    curve = budget_curve(ss.SGD, LAND2, noise, theta0=[1, 2], steps=7)
    want = ss.transient(ss.SGD(lam), LAND2, noise, theta0=[1, 2], steps=7).test_loss
    got, _ = curve.exact(lam)
    assert got == want
    assert curve.loss(float(lam)) == pytest.approx(float(want), rel=1e-12)


def test_budget_slope_scalar_symbolic_and_finite_difference():
    # scalar: ss.transient solves the map in closed form for a symbolic λ — differentiate it
    lam = sp.Symbol("l", positive=True)
    land, noise = ss.Quadratic(2), ss.AdditiveNoise(R(1, 3))
    closed = ss.transient(ss.SGD(lam), land, noise, theta0=[1], steps=5).loss
    curve = budget_curve(ss.SGD, land, noise, theta0=[1], steps=5)
    for x in (R(1, 7), R(3, 5)):
        value, slope = curve.exact(x)
        assert value == sp.nsimplify(closed.subs(lam, x))
        assert slope == sp.cancel(sp.diff(closed, lam).subs(lam, x))
    # heavy ball on finite data (mean term of the noise): central difference of exact values
    land = ss.LinearRegression.from_data(X3, Y3)
    noise = ss.MinibatchNoise(2)
    curve = budget_curve(lambda x: ss.HeavyBall(x, R(1, 2)), land, noise, theta0=[1, -1], steps=6)
    x, h = R(1, 5), R(1, 10**8)

    def exact(v):
        return ss.transient(ss.HeavyBall(v, R(1, 2)), land, noise, theta0=[1, -1], steps=6).loss

    diff = (exact(x + h) - exact(x - h)) / (2 * h)
    assert float(curve.exact(x)[1] - diff) == pytest.approx(0, abs=1e-12)
    assert curve.slope(float(x)) == pytest.approx(float(diff), rel=1e-9)


def test_optimal_lr_against_hand_and_scipy():
    # one step, scalar: L = ½[(1 − λh)²θ₀² + λ²c] is least at λ = hθ₀²/(h²θ₀² + c)
    h, c, th = R(3, 2), R(1, 2), R(2)
    best = optimal_lr(ss.SGD, ss.Quadratic(h), ss.AdditiveNoise(c), theta0=[th], steps=1)
    assert best.lr == pytest.approx(float(h * th**2 / (h**2 * th**2 + c)), abs=1e-10)
    assert best.certified and not best.boundary
    lo, hi = best.bracket
    assert lo < h * th**2 / (h**2 * th**2 + c) < hi
    # online regression d = 2, minibatch noise: scipy on the exact curve of ss.transient
    noise = ss.MinibatchNoise(2)
    best = optimal_lr(ss.SGD, LAND2, noise, theta0=[1, 2], steps=12)

    def loss(x):
        return float(ss.transient(ss.SGD(x), LAND2, noise, theta0=[1, 2], steps=12).test_loss)

    ref = minimize_scalar(
        loss, bounds=(0.05, best.bounds[1]), method="bounded", options={"xatol": 1e-10}
    )
    assert best.lr == pytest.approx(ref.x, abs=1e-6)
    assert best.loss == pytest.approx(ref.fun, rel=1e-12)
    assert best.certified and abs(best.slope) < 1e-8
    quick = optimal_lr(ss.SGD, LAND2, noise, theta0=[1, 2], steps=12, certify=False)
    assert not quick.certified and quick.lr == best.lr
    # the default upper bound is the constant-rate edge 2S/(a(S+2)) of the stiffest mode... of
    # the whole map: bisection on ρ(T) agrees with the exact stationary edge
    edge = ss.stationary(ss.SGD(ss.lr), LAND2, noise).stability_edge(ss.lr)
    assert best.bounds[1] == pytest.approx(float(edge), rel=1e-9)


def test_optimal_lr_boundary_and_bad_input():
    # noiseless and started far away: the loss after T steps keeps falling up to λ = 1/h
    best = optimal_lr(
        ss.SGD,
        ss.Quadratic(1),
        ss.AdditiveNoise(0),
        theta0=[1],
        steps=1,
        bounds=(R(1, 10), R(1, 2)),
    )
    assert best.boundary and best.lr == 0.5
    with pytest.raises(ValueError, match="bounds"):
        optimal_lr(ss.SGD, ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[1], steps=2, bounds=(1, 0))
    with pytest.raises(ValueError, match="every parameter but the learning rate"):
        budget_curve(
            ss.SGD,
            ss.Quadratic(sp.Symbol("h", positive=True)),
            ss.AdditiveNoise(1),
            theta0=[1],
            steps=2,
        )
    with pytest.raises(ValueError, match="no fresh-sample loss"):
        budget_curve(
            ss.SGD, ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[1], steps=2, what="test_loss"
        )
    with pytest.raises(ValueError, match="steps"):
        budget_curve(ss.SGD, ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[1], steps=-1)
    with pytest.raises(ValueError, match="use its argument"):
        budget_curve(
            lambda x: ss.SGD(R(1, 2)), ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[1], steps=2
        )


# ---------------------------------------------------------------------------------------------
# simulation of finite runs and schedules
# ---------------------------------------------------------------------------------------------


def _z(sim, r):
    mean = np.array(r.mean, dtype=float).reshape(-1)
    second = np.array(r.second_moment, dtype=float)
    z_mean = (sim.mean - mean) / sim.mean_stderr
    z_second = (sim.second_moment - second) / sim.second_moment_stderr
    z_loss = (sim.loss - float(r.loss)) / sim.loss_stderr
    return np.concatenate([z_mean, z_second[np.triu_indices(len(mean))], [z_loss]])


def test_simulate_transient_online_minibatch_against_transient():
    noise = ss.MinibatchNoise(4)
    opt = ss.SGD(R(1, 2))
    sim = simulate_transient(opt, LAND2, noise, theta0=[1, 2], steps=15, chains=40000, seed=3)
    r = ss.transient(opt, LAND2, noise, theta0=[1, 2], steps=15)
    assert np.all(np.abs(_z(sim, r)) < 5), _z(sim, r)
    # the test can fail: one step fewer is far off
    wrong = ss.transient(opt, LAND2, noise, theta0=[1, 2], steps=14)
    assert np.max(np.abs(_z(sim, wrong))) > 10


def test_simulate_transient_heavy_ball_finite_data_and_common_numbers():
    land, noise = ss.LinearRegression.from_data(X3, Y3), ss.MinibatchNoise(2)
    opt = ss.HeavyBall(R(3, 10), R(1, 2))
    sim = simulate_transient(opt, land, noise, theta0=[R(1, 2), -1], steps=6, chains=40000, seed=1)
    r = ss.transient(opt, land, noise, theta0=[R(1, 2), -1], steps=6)
    assert np.all(np.abs(_z(sim, r)) < 5), _z(sim, r)
    again = simulate_transient(
        opt, land, noise, theta0=[R(1, 2), -1], steps=6, chains=40000, seed=1
    )
    assert np.array_equal(sim.losses, again.losses)  # seeded: identical chains


def test_simulate_transient_negative_weight_decay_reaches_the_stationary_law():
    g = sp.Symbol("g", real=True)
    h, c, lam, gamma = R(1), R(1), R(1, 2), R(-1, 4)
    # by hand: one mode contracting by 1 − λ(h + γ): Σ = λc/((h + γ)(2 − λ(h + γ)))
    want = lam * c / ((h + gamma) * (2 - lam * (h + gamma)))
    exact = ss.stationary(ss.SGD(lam, weight_decay=g), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sp.cancel(exact.cov.subs(g, gamma) - want) == 0
    sim = simulate_transient(
        ss.SGD(lam, weight_decay=g),
        ss.Quadratic(h),
        ss.AdditiveNoise(c),
        theta0=[0],
        steps=120,
        params={g: -0.25},
        chains=40000,
        seed=2,
    )
    z = (sim.second_moment[0, 0] - float(want)) / sim.second_moment_stderr[0, 0]
    assert abs(z) < 5
    assert abs(sim.mean[0]) < 5 * sim.mean_stderr[0]
    # the law at γ = 0 is detectably different
    zero = lam * c / (h * (2 - lam * h))
    assert abs((sim.second_moment[0, 0] - float(zero)) / sim.second_moment_stderr[0, 0]) > 10


def test_simulate_schedule_against_periodic_state():
    cycle = ss.Schedule.cyclical(ss.SGD, [R(5, 2), R(1, 2)])  # λh = 5/2 alone diverges
    land, noise = ss.Quadratic(1), ss.AdditiveNoise(1)
    state = ss.periodic_state(cycle, land, noise)
    samples = simulate_schedule(cycle, land, noise, cycles=20, chains=40000, seed=4)

    def z(covs):
        return [
            ((x[0] ** 2).mean() - float(cv[0, 0]))
            / ((x[0] ** 2).std(ddof=1) / math.sqrt(x.shape[1]))
            for x, cv in zip(samples, covs)
        ]

    assert np.all(np.abs(z(state.covs)) < 5), z(state.covs)
    assert np.max(np.abs(z(state.covs[::-1]))) > 10  # the phases swapped


def test_simulation_bad_input():
    with pytest.raises(ValueError, match="chains"):
        simulate_transient(
            ss.SGD(1), ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[0], steps=1, chains=1
        )
    with pytest.raises(ValueError, match="theta0 must have length 2"):
        simulate_transient(ss.SGD(1), LAND2, ss.MinibatchNoise(1), theta0=[0], steps=1)
    with pytest.raises(ValueError, match="cycles"):
        simulate_schedule(ss.Schedule([ss.SGD(1)]), ss.Quadratic(1), ss.AdditiveNoise(1), cycles=-1)


# ---------------------------------------------------------------------------------------------
# exact minimisation, the stable interval and the optimal weight decay
# ---------------------------------------------------------------------------------------------


@settings(derandomize=True, max_examples=25, deadline=None)
@given(
    st.lists(st.integers(-6, 6), min_size=4, max_size=4),
    st.integers(1, 4),
)
def test_exact_minimum_quartic_against_scipy(coeffs, lead):
    x = sp.Symbol("x")
    f = lead * x**4 + sum(R(c, 2) * x**k for k, c in enumerate(coeffs))
    m = exact_minimum(f, x)
    assert m.exists
    fn = sp.lambdify(x, f)
    # the global minimum of a quartic lies within the Cauchy bound of f′'s roots
    bound = 1 + max(abs(float(c)) for c in sp.Poly(sp.diff(f, x), x).all_coeffs()[1:]) / (4 * lead)
    grid = np.linspace(-bound, bound, 4001)
    k = int(np.argmin(fn(grid)))
    ref = minimize_scalar(
        fn,
        bounds=(grid[max(k - 1, 0)], grid[min(k + 1, 4000)]),
        method="bounded",
        options={"xatol": 1e-12},
    )
    assert m.fx == pytest.approx(ref.fun, abs=1e-9)
    assert sp.diff(f, x).subs(x, m.point).evalf(30) == pytest.approx(0, abs=1e-20)


def test_exact_minimum_without_minimiser_and_bad_input():
    x = sp.Symbol("x")
    assert not exact_minimum(x**3 - 3 * x, x).exists  # a local minimum only: −∞ at −∞
    assert exact_minimum(x**3 - 3 * x, x, (-1, 5)).x == 1.0
    assert not exact_minimum(1 / x, x, (0, 1)).exists
    with pytest.raises(ValueError, match="depend on x only"):
        exact_minimum(x * sp.Symbol("y"), x)
    with pytest.raises(ValueError, match="lo < hi"):
        exact_minimum(x, x, (1, 0))


def test_stable_interval_against_spectral_radius():
    g = sp.Symbol("g", real=True)
    lam, S = R(3, 2), 32
    land, noise = ss.LinearRegression(1, 1, [R(1, 2)]), ss.MinibatchNoise(S)
    r = ss.stationary(ss.SGD(lam, weight_decay=g), land, noise)
    lo, hi = stable_interval(r, g)
    for edge in (lo, hi):
        for side in (-1e-6, 1e-6):
            rec = ss.build_recursion(ss.SGD(lam, weight_decay=g), land, noise)
            rho = NumericMap.from_recursion(rec, {g: float(edge) + side}).radius()
            inside = (side > 0) == (edge == lo)
            assert (rho < 1) == inside, (edge, side, rho)
    # a nonnegative symbol keeps its domain
    r0 = ss.stationary(ss.SGD(lam, weight_decay=ss.weight_decay), land, noise)
    assert stable_interval(r0, ss.weight_decay) == (0, hi)
    with pytest.raises(ValueError, match="no stationary law"):
        stable_interval(r, g, at=1)


def test_optimal_weight_decay_negative_against_scipy_and_simulation():
    g = sp.Symbol("g", real=True)
    lam, S = R(3, 2), 32
    land, noise = ss.LinearRegression(1, 1, [R(1, 2)]), ss.MinibatchNoise(S)
    r = ss.stationary(ss.SGD(lam, weight_decay=g), land, noise)
    m = optimal_weight_decay(r, g)
    lo, hi = stable_interval(r, g)
    fn = sp.lambdify(g, r.test_loss)
    ref = minimize_scalar(
        fn, bounds=(float(lo) + 1e-3, float(hi) - 1e-3), method="bounded", options={"xatol": 1e-12}
    )
    assert m.exists and m.x < 0
    assert m.x == pytest.approx(ref.x, abs=1e-6)
    # simulation: the stationary test loss at γ* and at γ = 0, and their paired difference
    runs = {}
    for gamma in (m.x, 0.0):
        runs[gamma] = simulate_transient(
            ss.SGD(lam, weight_decay=g),
            land,
            noise,
            theta0=[0],
            steps=60,
            params={g: gamma},
            chains=40000,
            seed=6,
        )
        want = float(r.test_loss.subs(g, gamma))
        assert abs(runs[gamma].loss - want) < 5 * runs[gamma].loss_stderr
    d = runs[m.x].losses - runs[0.0].losses
    gap = float(r.test_loss.subs(g, m.point) - r.test_loss.subs(g, 0))
    assert gap < 0
    assert abs(d.mean() - gap) < 5 * d.std(ddof=1) / math.sqrt(d.size)
    assert d.mean() + 5 * d.std(ddof=1) / math.sqrt(d.size) < 0  # γ* beats γ = 0, measurably


def test_optimal_weight_decay_positive_at_small_lr_and_bad_input():
    g = sp.Symbol("g", real=True)
    r = ss.stationary(
        ss.SGD(R(1, 10), weight_decay=g),
        ss.LinearRegression(1, 1, [R(1, 2)]),
        ss.MinibatchNoise(32),
    )
    assert optimal_weight_decay(r, g).x > 0
    with pytest.raises(ValueError, match="substitute numbers"):
        sym = ss.stationary(
            ss.SGD(ss.lr, weight_decay=g), ss.LinearRegression(1, 1, [1]), ss.MinibatchNoise(2)
        )
        optimal_weight_decay(sym, g)


# ---------------------------------------------------------------------------------------------
# posterior sampling
# ---------------------------------------------------------------------------------------------


def test_posterior_lr_scalar_finite_data_and_simulation():
    X = [[1], [2], [-1], [3], [0], [1]]
    y = [1, 1, 0, 2, 1, -1]
    land, noise = ss.LinearRegression.from_data(X, y), ss.MinibatchNoise(2)
    r = ss.stationary(ss.SGD(ss.lr), land, noise)
    N, h = 6, land.hessian[0, 0]
    star = land.theta_star[0]
    s2 = sum((yi - xi[0] * star) ** 2 for xi, yi in zip(X, y)) / N
    target = s2 / (N * h)
    p = posterior_lr(r, target)
    assert p.exact_match and p.kl == 0
    assert sp.cancel(r.cov.subs(ss.lr, p.lr) - target) == 0
    assert 0 < p.lr < p.edge
    sim = ss.simulate(
        ss.SGD(ss.lr), land, noise, {ss.lr: float(p.lr)}, chains=2000, steps=2000, seed=8
    )
    assert abs(sim.cov[0, 0] - float(target)) < 5 * sim.cov_stderr[0, 0]


def test_posterior_lr_matrix_against_scipy_kl():
    land, noise = LAND2, ss.MinibatchNoise(4)
    r = ss.stationary(ss.SGD(ss.lr), land, noise)
    target = sp.diag(R(1, 10), R(1, 5))
    p = posterior_lr(r, target)
    Ti = np.linalg.inv(np.array(target, dtype=float))
    f = sp.lambdify(ss.lr, r.cov)

    def kl(x):
        P = Ti @ np.array(f(x), dtype=float)
        return 0.5 * (np.trace(P) - 2 - math.log(np.linalg.det(P)))

    ref = minimize_scalar(
        kl, bounds=(1e-4, float(p.edge) - 1e-6), method="bounded", options={"xatol": 1e-12}
    )
    assert float(p.lr) == pytest.approx(ref.x, abs=1e-6)
    assert p.kl == pytest.approx(ref.fun, rel=1e-9)
    assert not p.exact_match


# ---------------------------------------------------------------------------------------------
# the implicit weight decay of discrete time
# ---------------------------------------------------------------------------------------------


def test_implicit_weight_decay_against_hand_derivations():
    g = sp.Symbol("g", real=True)
    h, c, a = sp.symbols("h c a", positive=True)
    lam, mu = ss.lr, ss.momentum
    # SGD, additive: λc/(h(2 − λh)) = λc/(2(h + γ)) ⇔ γ = −λh²/2 (all orders)
    r = ss.stationary(ss.SGD(lam, weight_decay=g), ss.Quadratic(h), ss.AdditiveNoise(c))
    iw = implicit_weight_decay(r, g, n=3)
    assert iw.coefficients == (0, -(h**2) / 2, 0, 0)
    assert sp.cancel(iw.exact + lam * h**2 / 2) == 0
    # heavy ball: AR(2) variance λc(1+μ)/(h(1−μ)(2+2μ−λh)) against λ/(1−μ) · c/(2(h+γ))
    r = ss.stationary(ss.HeavyBall(lam, mu, weight_decay=g), ss.Quadratic(h), ss.AdditiveNoise(c))
    iw = implicit_weight_decay(r, g, n=2)
    assert sp.cancel(iw.exact + lam * h**2 / (2 * (1 + mu))) == 0
    assert sp.cancel(iw.coefficients[1] + h**2 / (2 * (1 + mu))) == 0
    # online regression with minibatch noise: the exact law at γ_eff is the discrete one
    r = ss.stationary(
        ss.SGD(lam, weight_decay=g), ss.LinearRegression(a, 1), ss.MinibatchNoise(ss.batch_size)
    )
    iw = implicit_weight_decay(r, g, n=2)
    cont = r.continuous_time().cov
    assert sp.cancel(cont.subs(g, iw.exact) - r.cov.subs(g, 0)) == 0
    assert sp.cancel(cont.subs(g, 0) - r.cov.subs(g, 0)) != 0  # continuous time at γ = 0 is not


def test_implicit_weight_decay_bad_input():
    with pytest.raises(ValueError, match="keep"):
        implicit_weight_decay(ss.stationary(ss.SGD(ss.lr), ss.Quadratic(1), ss.AdditiveNoise(1)))
    g = sp.Symbol("g", real=True)
    r = ss.stationary(
        ss.SGD(ss.lr, weight_decay=g), ss.Quadratic(sp.diag(1, 2)), ss.AdditiveNoise(sp.eye(2))
    )
    with pytest.raises(NotImplementedError, match="matrix covariance"):
        implicit_weight_decay(r, g)
    with pytest.raises(ValueError, match="n must be"):
        implicit_weight_decay(r, g, n=0)


# ---------------------------------------------------------------------------------------------
# the eigen-mode learning curve with minibatch noise: generating functions with traces
# ---------------------------------------------------------------------------------------------


def _dense_curve(optimizer, landscape, noise, theta0, count):
    """θ's second moments and the loss for t = 0..count−1 by exact iteration of the dense
    half-vectorised map (symsgd.moments) of an explicit problem."""
    from symsgd.moments import from_halfvec, halfvec_system, operator_matrix, pairs

    rec = ss.build_recursion(optimizer, landscape, noise)
    T = operator_matrix(rec)
    _, f = halfvec_system(rec)
    z = sp.Matrix.vstack(*[sp.Matrix(b) for b in optimizer.initial_state(sp.Matrix(theta0))])
    S0 = z * z.T
    s = sp.Matrix([S0[i, j] for i, j in pairs(rec.n)])
    Theta = sp.Matrix(rec.theta_map)
    seconds, losses = [], []
    for _ in range(count):
        S = Theta * sp.Matrix(from_halfvec(rec.n, list(s))) * Theta.T
        seconds.append([S[i, i] for i in range(landscape.dim)])
        losses.append(landscape.loss(S))
        s = T * s + f
    return seconds, losses


@pytest.mark.parametrize("kind", ["sgd", "heavy-ball", "nesterov"])
def test_generating_function_symbolic_against_dense_map(kind):
    """Fully symbolic λ, μ, S, σ and θ₀ = c/a (a start depending on the mode): the series at
    the spectrum (3/2, 1/4) and a parameter point equal the iterated dense map of the explicit
    two-mode problem for t = 0..7, and the explicit diagonal transient at t = 7."""
    a, c = sp.Symbol("a", positive=True), sp.Symbol("c")
    lam, mu, S, sigma = ss.lr, ss.momentum, ss.batch_size, ss.label_noise
    symbolic = {
        "sgd": ss.SGD(lam),
        "heavy-ball": ss.HeavyBall(lam, mu),
        "nesterov": ss.Nesterov(lam, mu),
    }[kind]
    land = ss.LinearRegression.commuting(a, label_variance=sigma**2)
    gf = transient_generating_function(symbolic, land, ss.MinibatchNoise(S), theta0=c / a)
    assert "equal for every t" in gf.certificate
    point = {lam: R(1, 6), mu: R(1, 3), sigma: R(1, 2), c: R(2, 3), S: 2}
    spectrum = [R(3, 2), R(1, 4)]
    optimizer = {
        "sgd": ss.SGD(R(1, 6)),
        "heavy-ball": ss.HeavyBall(R(1, 6), R(1, 3)),
        "nesterov": ss.Nesterov(R(1, 6), R(1, 3)),
    }[kind]
    explicit = ss.LinearRegression(sp.diag(*spectrum), label_variance=R(1, 4))
    theta0 = [R(2, 3) / e for e in spectrum]
    seconds, losses = _dense_curve(optimizer, explicit, ss.MinibatchNoise(2), theta0, 8)
    assert gf.coefficients("loss", spectrum, 8, point) == losses
    per_mode = gf.coefficients("second_moment", spectrum, 8, point)
    assert [list(v) for v in zip(*per_mode)] == seconds
    late = gf.at(7, spectrum, point)
    r = ss.transient(optimizer, explicit, ss.MinibatchNoise(2), theta0=theta0, steps=7)
    assert late["loss"] == r.loss
    assert late["second_moment"] == [r.second_moment[i, i] for i in range(2)]
    assert late["mean"] == list(r.mean)


def test_generating_function_sgd_closed_form_and_errors():
    """SGD with numbers: κ(z) is one closed ratio of traces; the loss series at a 3-mode
    spectrum equals the explicit transient at every t ≤ 5; bad input is refused."""
    a = sp.Symbol("a", positive=True)
    land = ss.LinearRegression.commuting(a, label_variance=1)
    gf = transient_generating_function(ss.SGD(R(1, 4)), land, ss.MinibatchNoise(2), theta0=1)
    from symsgd.modes import ModeTrace

    assert gf.kappa.has(ModeTrace) and gf.loss.has(ModeTrace)
    spectrum = [1, 2, R(1, 2)]
    curve = gf.coefficients("loss", spectrum, 6)
    for t in range(6):
        r = ss.transient(
            ss.SGD(R(1, 4)),
            ss.LinearRegression(sp.diag(*spectrum), label_variance=1),
            ss.MinibatchNoise(2),
            theta0=[1, 1, 1],
            steps=t,
        )
        assert curve[t] == r.loss
    with pytest.raises(ValueError, match="eigen-mode online regression"):
        transient_generating_function(
            ss.SGD(R(1, 4)),
            ss.LinearRegression(2, label_variance=1),
            ss.MinibatchNoise(2),
            theta0=1,
        )
    with pytest.raises(ValueError, match="what must be"):
        gf.coefficients("variance", spectrum, 3)
    with pytest.raises(NotImplementedError, match="weight decay"):
        transient_generating_function(
            ss.SGD(R(1, 4), weight_decay=R(1, 10)), land, ss.MinibatchNoise(2), theta0=1
        )
