"""symsgd.schedules: the periodic steady state of a cyclical schedule and the moments after a
finite schedule, against an independent Kronecker oracle (tests/oracle_kron.py: update rules and
noise derived there, maps iterated from zero for many periods and solved densely), brute-force
enumeration of minibatch paths, hypothesis-drawn schedules, and seeded simulations of the real
optimizers cycling on real minibatches."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

import symsgd as ss
from symsgd.sampling import prepare
from symsgd.schedules import PeriodicState, Schedule, periodic_state, run_schedule
from symsgd.statistics import holm
from tests import oracle_kron as ok

R = sp.Rational
H2 = sp.Matrix([[2, 1], [1, 3]])
C2 = sp.Matrix([[1, R(1, 3)], [R(1, 3), 2]])
X4 = [[1, 0], [1, 1], [0, 2], [2, -1]]
Y4 = [1, 2, 1, 0]


# ---------------------------------------------------------------------------------------------
# the independent oracle
# ---------------------------------------------------------------------------------------------


def _oracle_noise(landscape, noise, d):
    """``(Q0, L, G)`` from the oracle's derivations (G the Hessian at the minimum)."""
    if isinstance(noise, ss.AdditiveNoise):
        Q0, L = ok.additive_noise(np.array(sp.Matrix(noise.C).evalf(), dtype=float))
        return Q0, L, np.array(sp.Matrix(landscape.hessian).evalf(), dtype=float)
    S = int(noise.batch_size)
    if landscape.data is None:
        A = np.array(sp.Matrix(landscape.A).evalf(), dtype=float)
        Q0, L = ok.online_regression_noise(A, float(landscape.label_variance), S, np.zeros(d))
        return Q0, L, A
    X, y = (np.array(sp.Matrix(m).evalf(), dtype=float) for m in landscape.data)
    Q0, L, _, H = ok.finite_data_noise(X, y.ravel(), 0.0, S, noise.replacement)
    return Q0, L, H


def _oracle_maps(schedule, landscape, noise):
    """Per phase ``(T, f)`` on row-major vec Σ_z: T = M⊗M + (B⊗B)L(K⊗K), f = vec BQ₀Bᵀ."""
    d = landscape.dim
    Q0, L, G = _oracle_noise(landscape, noise, d)
    out = []
    for opt in schedule.optimizers:
        lr, mu = float(opt.lr), float(getattr(opt, "momentum", 0))
        if type(opt) is ss.SGD:
            rule = ok.sgd_rule(lr, np.eye(d))
        elif type(opt) is ss.HeavyBall:
            rule = ok.heavy_ball_rule(lr, mu, np.eye(d))
        else:
            assert type(opt) is ss.Nesterov
            rule = ok.nesterov_rule(lr, mu, np.eye(d))
        M, B, K = ok.state_space(rule, G)
        out.append((ok.second_moment_map(M, B, K, L), (B @ Q0 @ B.T).reshape(-1)))
    return out


def _one_period(maps: list, steps) -> tuple:
    """The affine one-period map ``v ↦ Av + b`` composed from the phases' ``(T, f)`` maps
    (each applied ``t`` times), and the spectral radius of A."""
    q = maps[0][0].shape[0]
    A, b = np.eye(q), np.zeros(q)
    for (T, f), t in zip(maps, steps):
        for _ in range(t):
            A, b = T @ A, T @ b + f
    return A, b, float(np.max(np.abs(np.linalg.eigvals(A))))


def _oracle_periodic(schedule, landscape, noise):
    """``(radius, [vec Σ_k])`` by a dense solve of the composed one-period map, and the same
    by iterating every phase from zero for many periods (returned second)."""
    maps = _oracle_maps(schedule, landscape, noise)
    A, b, radius = _one_period(maps, schedule.steps)
    if radius >= 1:
        return radius, None, None
    s = np.linalg.solve(np.eye(len(b)) - A, b)
    dense = [s]
    for (T, f), t in list(zip(maps, schedule.steps))[:-1]:
        for _ in range(t):
            s = T @ s + f
        dense.append(s)
    s = np.zeros(len(b))
    periods = int(np.ceil(np.log(1e-16) / np.log(max(radius, 1e-3)))) + 5
    for _ in range(periods):
        iterated = []
        for (T, f), t in zip(maps, schedule.steps):
            iterated.append(s)
            for _ in range(t):
                s = T @ s + f
    return radius, dense, iterated


def _theta_block(state: np.ndarray, d: int) -> np.ndarray:
    return state[:d, :d]


def _assert_close(got, want, rtol):
    got = np.array(sp.Matrix(got).evalf(), dtype=float)
    scale = max(np.abs(want).max(), 1e-300)
    assert np.abs(got - want).max() <= rtol * scale, (got, want)


CASES = {
    "sgd-additive-2x2": (
        Schedule.cyclical(ss.SGD, [R(1, 2), R(1, 10), R(1, 5)], steps=[1, 2, 1]),
        ss.Quadratic(H2),
        ss.AdditiveNoise(C2),
    ),
    "heavy-ball-finite-data": (
        Schedule.cyclical(ss.HeavyBall, [(R(2, 5), R(1, 2)), (R(1, 10), R(1, 5))]),
        ss.LinearRegression.from_data(X4, Y4),
        ss.MinibatchNoise(2, replacement=False),
    ),
    "nesterov-online": (
        Schedule.cyclical(ss.Nesterov, [(R(1, 4), R(1, 3)), (R(1, 16), R(3, 4))], steps=[2, 1]),
        ss.LinearRegression(sp.Matrix([[1, R(1, 2)], [R(1, 2), 2]]), label_variance=1),
        ss.MinibatchNoise(3),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_periodic_state_matches_kron_oracle(name):
    schedule, land, noise = CASES[name]
    d = land.dim
    state = periodic_state(schedule, land, noise)
    assert isinstance(state, PeriodicState) and state.method == "exact"
    assert state.certificate.how == "exact"
    assert all(isinstance(e, sp.Rational) for S in state.state_covs for e in S)
    radius, dense, iterated = _oracle_periodic(schedule, land, noise)
    assert state.radius == pytest.approx(radius, rel=1e-10)
    n = state.state_covs[0].rows
    for k in range(len(schedule)):
        want = dense[k].reshape(n, n)
        _assert_close(state.state_covs[k], want, 1e-10)
        _assert_close(state.state_covs[k], iterated[k].reshape(n, n), 1e-10)
        _assert_close(state.covs[k], _theta_block(want, d), 1e-10)
        H = np.array(sp.Matrix(land.hessian).evalf(), dtype=float)
        if isinstance(land, ss.Quadratic):
            assert float(state.loss[k]) == pytest.approx(
                0.5 * np.trace(H @ _theta_block(want, d)), rel=1e-10
            )
            assert state.test_loss is None
        elif land.data is None:  # online regression: the test loss is the training loss
            assert state.test_loss[k] == state.loss[k]
            assert float(state.loss[k]) == pytest.approx(
                0.5 * (np.trace(H @ _theta_block(want, d)) + 1), rel=1e-10
            )
    # the cycle average: the mean of the second moments over every step of the period
    maps = _oracle_maps(schedule, land, noise)
    total, s = np.zeros(n * n), dense[0]
    for (T, f), t in zip(maps, schedule.steps):
        for _ in range(t):
            total, s = total + s, T @ s + f
    _assert_close(state.mean_cov, _theta_block((total / schedule.period).reshape(n, n), d), 1e-10)
    # the same problem with float parameters: the float64 path agrees
    floats = Schedule(
        [copy.copy(o) for o in schedule.optimizers],
        steps=schedule.steps,
    )
    for o in floats.optimizers:
        for field in ("lr", "momentum"):
            if hasattr(o, field):
                object.__setattr__(o, field, sp.Float(getattr(o, field)))
    numeric = periodic_state(floats, land, noise)
    assert numeric.method == "float" and numeric.certificate.how == "float"
    assert numeric.certificate.max_residual <= 1e-9
    for k in range(len(schedule)):
        _assert_close(numeric.state_covs[k], dense[k].reshape(n, n), 1e-9)


# ---------------------------------------------------------------------------------------------
# hypothesis: random schedules against the oracle
# ---------------------------------------------------------------------------------------------

rates = st.fractions(min_value=R(1, 20), max_value=R(6, 5), max_denominator=40).map(
    lambda f: R(f.numerator, f.denominator)
)
momenta = st.fractions(min_value=0, max_value=R(9, 10), max_denominator=40).map(
    lambda f: R(f.numerator, f.denominator)
)


@st.composite
def schedules(draw):
    kind = draw(st.sampled_from(["sgd", "heavy-ball"]))
    P = draw(st.integers(1, 3))
    steps = draw(st.lists(st.integers(1, 3), min_size=P, max_size=P))
    if kind == "sgd":
        optimizers = [ss.SGD(draw(rates)) for _ in range(P)]
    else:
        optimizers = [ss.HeavyBall(draw(rates), draw(momenta)) for _ in range(P)]
    problem = draw(st.sampled_from(["additive", "finite-data"]))
    if problem == "additive":
        land, noise = ss.Quadratic(H2), ss.AdditiveNoise(C2)
    else:
        land = ss.LinearRegression.from_data(X4, Y4)
        noise = ss.MinibatchNoise(draw(st.integers(1, 3)), replacement=draw(st.booleans()))
    return Schedule(optimizers, steps=steps), land, noise


@settings(
    derandomize=True,
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(schedules())
def test_random_schedules_against_oracle(case):
    schedule, land, noise = case
    radius, dense, _ = _oracle_periodic(schedule, land, noise)
    if abs(radius - 1) < 1e-6:
        return  # too close to the edge for the float oracle to decide
    if radius > 1:
        with pytest.raises(ss.UnstableError, match="spectral radius") as info:
            periodic_state(schedule, land, noise)
        assert info.value.rho == pytest.approx(radius, rel=1e-8)
        return
    state = periodic_state(schedule, land, noise)
    assert state.radius == pytest.approx(radius, rel=1e-8)
    n = state.state_covs[0].rows
    for k in range(len(schedule)):
        _assert_close(state.state_covs[k], dense[k].reshape(n, n), 1e-8)
        cov = np.array(state.covs[k].evalf(), dtype=float)
        assert np.linalg.eigvalsh(cov).min() >= -1e-12 * np.abs(cov).max()


# ---------------------------------------------------------------------------------------------
# single steps unstable, the cycle stable
# ---------------------------------------------------------------------------------------------


def test_unstable_steps_stable_cycle():
    """λh = 5/2 alone has ρ = (1 − 5/2)² = 9/4 > 1; alternating with λh = 1/2 the period map
    has ρ = 9/4 · 1/4 = 9/16 < 1.  Scalar: Σ₀ = ((1 − λ₂)²λ₁² + λ₂²)c / (1 − 𝒜) worked out by
    hand from Σ₁ = (1 − λ₁)²Σ₀ + λ₁²c, Σ₀ = (1 − λ₂)²Σ₁ + λ₂²c."""
    fast, slow = ss.SGD(R(5, 2)), ss.SGD(R(1, 2))
    land, noise = ss.Quadratic(1), ss.AdditiveNoise(3)
    with pytest.raises(ss.UnstableError):
        ss.stationary(fast, land, noise)
    state = periodic_state(Schedule([fast, slow]), land, noise)
    assert state.radius == pytest.approx(9 / 16)
    a1, a2 = R(9, 4), R(1, 4)
    s0 = (a2 * R(25, 4) * 3 + R(1, 4) * 3) / (1 - a1 * a2)
    assert state.covs[0][0, 0] == s0
    assert state.covs[1][0, 0] == a1 * s0 + R(25, 4) * 3
    assert state.mean_loss == (state.loss[0] + state.loss[1]) / 2
    # heavy-ball: the first phase alone unstable (λh beyond 2(1 + μ)), the cycle stable
    land2 = ss.Quadratic(H2)
    hot = ss.HeavyBall(1, R(1, 2))  # λ·max eig(H) = 3.62 > 2(1 + μ) = 3
    cool = ss.HeavyBall(R(1, 5), R(1, 10))
    with pytest.raises(ss.UnstableError):
        ss.stationary(hot, land2, ss.AdditiveNoise(C2))
    cycle = Schedule([hot, cool], steps=[1, 3])
    state = periodic_state(cycle, land2, ss.AdditiveNoise(C2))
    radius, dense, _ = _oracle_periodic(cycle, land2, ss.AdditiveNoise(C2))
    assert state.radius == pytest.approx(radius) and radius < 1
    _assert_close(state.state_covs[1], dense[1].reshape(4, 4), 1e-10)


def test_symbolic_scalar_and_heavy_ball():
    l1, l2, h, c = sp.symbols("lambda1 lambda2 h c", positive=True)
    state = periodic_state(Schedule([ss.SGD(l1), ss.SGD(l2)]), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert state.method == "symbolic"
    a1, a2 = (1 - l1 * h) ** 2, (1 - l2 * h) ** 2
    s0 = (a2 * l1**2 * c + l2**2 * c) / (1 - a1 * a2)
    assert sp.cancel(state.covs[0][0, 0] - s0) == 0
    assert sp.cancel(state.radius - a1 * a2) == 0
    # the condition against the exact answer at rational points on both sides of the edge
    for v1, v2, stable in [(R(5, 2), R(1, 2), True), (R(5, 2), R(1, 10), False)]:
        at = {l1: v1, l2: v2, h: 1, c: 3}
        assert bool(state.conditions.subs(at)) is stable
        if stable:
            exact = periodic_state(
                Schedule([ss.SGD(v1), ss.SGD(v2)]), ss.Quadratic(1), ss.AdditiveNoise(3)
            )
            assert state.covs[0].subs(at) == exact.covs[0]
    # heavy-ball (n = 2) with a symbolic learning rate: equal to the exact answer at a point
    lam = ss.lr
    cycle = Schedule([ss.HeavyBall(lam, R(1, 2)), ss.HeavyBall(R(1, 5), R(1, 4))])
    sym = periodic_state(cycle, ss.Quadratic(2), ss.AdditiveNoise(1))
    num = periodic_state(
        Schedule([ss.HeavyBall(R(3, 5), R(1, 2)), ss.HeavyBall(R(1, 5), R(1, 4))]),
        ss.Quadratic(2),
        ss.AdditiveNoise(1),
    )
    for k in range(2):
        assert sym.state_covs[k].subs(lam, R(3, 5)) == num.state_covs[k]
    assert bool(sym.conditions.subs(lam, R(3, 5)))
    assert not bool(sym.conditions.subs(lam, 5))
    assert sym.radius is None


# ---------------------------------------------------------------------------------------------
# finite schedules
# ---------------------------------------------------------------------------------------------


def _brute_force(schedule, X, y, theta0, cycles):
    """E[δ], E[δδᵀ] at the end of each phase of the last cycle by enumerating every index path
    (S = 1, with replacement; depth first, each prefix once) through the real optimizers' own
    ``step``."""
    Xm, ym = sp.Matrix(X), sp.Matrix(y)
    star = (Xm.T * Xm).LUsolve(Xm.T * ym)
    N = Xm.rows
    plan = [opt for _ in range(cycles) for opt, t in schedule for _ in range(t)]
    ends = list(itertools.accumulate([t for _ in range(cycles) for _, t in schedule]))
    want_at = ends[-len(schedule) :]
    out = {t: (sp.zeros(2, 1), sp.zeros(2, 2)) for t in want_at}

    def visit(state, depth, weight):
        if depth in out:
            delta = sp.Matrix(plan[depth - 1].readout(state)) - star
            m, s = out[depth]
            out[depth] = (m + delta * weight, s + delta * delta.T * weight)
        if depth == len(plan):
            return
        opt = plan[depth]
        for i in range(N):
            x = Xm.row(i).T

            def grad(point, x=x, i=i):
                return x * ((x.T * point)[0, 0] - ym[i])

            visit(opt.step(state, grad, lambda v: v), depth + 1, weight / N)

    visit(plan[0].initial_state(star + sp.Matrix(theta0)), 0, sp.Integer(1))
    return [out[t] for t in want_at]


def test_run_schedule_matches_enumerated_paths():
    X3, Y3 = [[1, 0], [1, 1], [0, 2]], [1, 2, 1]
    land = ss.LinearRegression.from_data(X3, Y3)
    noise = ss.MinibatchNoise(batch_size=1, replacement=True)
    cycle = Schedule([ss.HeavyBall(R(1, 3), R(1, 4)), ss.HeavyBall(R(1, 2), R(1, 2))], steps=[1, 2])
    theta0 = [R(1, 2), -1]
    run = run_schedule(cycle, land, noise, theta0=theta0, cycles=2)
    assert run.method == "exact" and run.cycles == 2
    want = _brute_force(cycle, X3, Y3, theta0, cycles=2)
    assert [p.steps for p in run.phases] == [4, 6]
    for phase, (mean, second) in zip(run.phases, want):
        assert phase.mean == mean
        assert phase.second_moment == second
    assert run.final is run.phases[-1]


def test_run_schedule_agrees_with_transient_and_periodic_state():
    land, noise = ss.Quadratic(H2), ss.AdditiveNoise(C2)
    opt = ss.HeavyBall(R(1, 5), R(1, 3))
    one = run_schedule(Schedule([opt], steps=[7]), land, noise, theta0=[1, -2])
    direct = ss.transient(opt, land, noise, theta0=[1, -2], steps=7)
    assert one.final.second_moment == direct.second_moment
    assert one.final.mean == direct.mean and one.final.loss == direct.loss
    # two phases split a constant run: 3 + 4 steps
    split = run_schedule(Schedule([opt, opt], steps=[3, 4]), land, noise, theta0=[1, -2])
    assert split.final.second_moment == direct.second_moment
    # many cycles from any start: the periodic state
    cycle = Schedule.cyclical(ss.HeavyBall, [(R(3, 4), R(1, 2)), (R(1, 5), R(1, 10))], steps=[1, 3])
    periodic = periodic_state(cycle, land, noise)
    far = run_schedule(cycle, land, noise, theta0=[3, 1], cycles=300)
    for k, phase in enumerate(far.phases):
        after = periodic.covs[(k + 1) % 2]
        _assert_close(phase.cov, np.array(after.evalf(), dtype=float), 1e-12)
    floats = Schedule.cyclical(ss.HeavyBall, [(0.75, 0.5), (0.2, 0.1)], steps=[1, 3])
    far_float = run_schedule(floats, land, noise, theta0=[3.0, 1.0], cycles=300)
    assert far_float.method == "float"
    _assert_close(far_float.final.cov, np.array(periodic.covs[0].evalf(), dtype=float), 1e-9)


def test_unused_symbols_and_other_optimizers():
    """Adam's β₂ (a symbol by default) does not enter the linear theory, and its frozen
    preconditioner 1/√v is a float: the float path, not a symbolic or a wrong "exact" one.
    A √2 in the Hessian: solved exactly in ℚ(√2), equal to the float path.  A symbolic θ₀
    in run_schedule makes it symbolic."""
    H, C = sp.Matrix([[2, 0], [0, 1]]), sp.Matrix([[1, 0], [0, 2]])
    land, noise = ss.Quadratic(H), ss.AdditiveNoise(C)
    adam = Schedule.cyclical(lambda a: ss.Adam(a, beta1=R(1, 2), eps=0), [R(1, 2), R(1, 10)])
    state = periodic_state(adam, land, noise)
    assert state.method == "float"
    radius, dense, _ = _oracle_periodic_generic(adam, land, noise)
    assert state.radius == pytest.approx(radius)
    n = state.state_covs[0].rows
    _assert_close(state.state_covs[0], dense.reshape(n, n), 1e-10)
    root = sp.Matrix([[sp.sqrt(2), R(1, 2)], [R(1, 2), 1]])
    cycle = Schedule.cyclical(lambda a: ss.HeavyBall(a, R(1, 3)), [R(1, 2), R(1, 10)])
    exact = periodic_state(cycle, ss.Quadratic(root), ss.AdditiveNoise(C))
    assert exact.method == "algebraic" and exact.covs[0][0, 0].has(sp.sqrt(2))
    radius, dense, _ = _oracle_periodic_generic(cycle, ss.Quadratic(root), ss.AdditiveNoise(C))
    assert exact.radius == pytest.approx(radius)
    _assert_close(exact.state_covs[0], dense.reshape(4, 4), 1e-12)
    run = run_schedule(cycle, ss.Quadratic(root), ss.AdditiveNoise(C), theta0=[1, 2], cycles=3)
    floats = Schedule.cyclical(lambda a: ss.HeavyBall(a, 1 / 3), [0.5, 0.1])
    run_f = run_schedule(
        floats, ss.Quadratic(root.evalf()), ss.AdditiveNoise(C), theta0=[1, 2], cycles=3
    )
    assert run.method == "algebraic" and run_f.method == "float"
    _assert_close(run.final.cov, np.array(run_f.final.cov.evalf(), dtype=float), 1e-12)
    with pytest.raises(ss.UnstableError):
        periodic_state(
            Schedule.cyclical(lambda a: ss.HeavyBall(a, R(1, 3)), [R(2), R(1, 10)]),
            ss.Quadratic(root),
            ss.AdditiveNoise(C),
        )
    x = sp.Symbol("x")
    run = run_schedule(
        Schedule([ss.SGD(R(1, 2))]), ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[x]
    )
    assert (
        run.method == "symbolic" and sp.expand(run.final.second_moment[0, 0] - (x**2 + 1) / 4) == 0
    )


def _oracle_periodic_generic(schedule, land, noise):
    """Σ at the start of phase 0 from the recursions' own float matrices (additive noise):
    the composed Stein map T = M⊗M solved densely — for optimizers the oracle has no rule."""
    C = np.array(sp.Matrix(noise.C).evalf(), dtype=float)
    maps = []
    for opt in schedule.optimizers:
        rec = ss.build_recursion(opt, land, noise)
        M, B = (np.array(sp.Matrix(m).evalf(), dtype=float) for m in (rec.M, rec.B))
        maps.append((np.kron(M, M), (B @ C @ B.T).reshape(-1)))
    A, b, radius = _one_period(maps, schedule.steps)
    return radius, np.linalg.solve(np.eye(len(b)) - A, b), None


def test_step_decay_symbolic_scalar():
    lam, c = sp.symbols("lambda c", positive=True)
    decay = Schedule.step_decay(ss.SGD, lam, R(1, 2), phases=2, steps=2)
    run = run_schedule(decay, ss.Quadratic(1), ss.AdditiveNoise(c), theta0=[1])
    s = 1
    for rate in (lam, lam, lam / 2, lam / 2):
        s = (1 - rate) ** 2 * s + rate**2 * c
    assert sp.expand(run.final.second_moment[0, 0] - s) == 0
    assert run.method == "symbolic"


# ---------------------------------------------------------------------------------------------
# large states: the operator path (GMRES + Arnoldi) against the dense oracle
# ---------------------------------------------------------------------------------------------


def test_float_operator_path_large_state():
    rng = np.random.default_rng(5)
    d = 7  # heavy-ball: n = 14 > DENSE_MAX_STATE
    G = rng.standard_normal((d, d))
    A = G @ G.T / d + 0.5 * np.eye(d)
    land = ss.LinearRegression(sp.Matrix(A.tolist()), label_variance=sp.Float(0.5))
    noise = ss.MinibatchNoise(8)
    top = float(np.linalg.eigvalsh(A).max())
    cycle = Schedule.cyclical(ss.HeavyBall, [(1.0 / top, 0.3), (0.3 / top, 0.5)])
    state = periodic_state(cycle, land, noise)
    assert state.method == "float"
    Q0, L = ok.online_regression_noise(A, 0.5, 8, np.zeros(d))
    maps = []
    for lr, mu in [(1.0 / top, 0.3), (0.3 / top, 0.5)]:
        M, B, K = ok.state_space(ok.heavy_ball_rule(lr, mu, np.eye(d)), A)
        maps.append((ok.second_moment_map(M, B, K, L), (B @ Q0 @ B.T).reshape(-1)))
    (T0, f0), (T1, f1) = maps
    Acyc = T1 @ T0
    assert state.radius == pytest.approx(float(np.max(np.abs(np.linalg.eigvals(Acyc)))), rel=1e-7)
    s0 = np.linalg.solve(np.eye(4 * d * d) - Acyc, T1 @ f0 + f1)
    _assert_close(state.state_covs[0], s0.reshape(2 * d, 2 * d), 1e-8)
    _assert_close(state.state_covs[1], (T0 @ s0 + f0).reshape(2 * d, 2 * d), 1e-8)


# ---------------------------------------------------------------------------------------------
# simulation of the real optimizers on real minibatches
# ---------------------------------------------------------------------------------------------


def _float_stepper(optimizer):
    stepper = copy.copy(optimizer)  # the same step with float fields: numpy speed
    for name in ("lr", "momentum", "weight_decay"):
        if hasattr(stepper, name):
            object.__setattr__(stepper, name, float(getattr(optimizer, name)))
    return stepper


def _simulate_cycle(schedule, land, noise, chains, cycles, seed):
    """θ − θ* at the start of each phase after ``cycles`` periods, for ``chains`` independent
    chains started at rest at the minimum: the optimizers' own ``step`` in turn, with the real
    gradient oracle of :func:`symsgd.sampling.prepare` (which depends only on the landscape and
    the noise: prepared with a stable constant-rate SGD)."""
    problem = prepare(ss.SGD(R(1, 100)), land, noise, {})
    grad = problem.oracle.make(np.random.default_rng(seed), chains)
    star = problem.theta_min[:, None]
    steppers = [_float_stepper(o) for o in schedule.optimizers]
    state = steppers[0].initial_state(np.repeat(star, chains, axis=1))
    ident = problem.precondition()
    for _ in range(cycles):
        for stepper, t in zip(steppers, schedule.steps):
            for _ in range(t):
                state = stepper.step(state, grad, ident)
    samples = []
    for stepper, t in zip(steppers, schedule.steps):
        samples.append(np.asarray(stepper.readout(state), dtype=float) - star)
        for _ in range(t):
            state = stepper.step(state, grad, ident)
    return samples


def _z_scores(samples, covs):
    """Per phase and entry (i ≤ j): (sample E[δ_iδ_j] − Σ_ij) / its standard error (the
    periodic mean is zero, so the raw second moment is the covariance)."""
    out = []
    for x, cov in zip(samples, covs):
        cov = np.array(sp.Matrix(cov).evalf(), dtype=float)
        d = x.shape[0]
        for i in range(d):
            for j in range(i, d):
                prod = x[i] * x[j]
                se = prod.std(ddof=1) / math.sqrt(prod.size)
                out.append((prod.mean() - cov[i, j]) / se)
    return np.array(out)


def _holm_flags(z, level=1e-3):
    return holm(list(2 * norm.sf(np.abs(z))), level)


def _chi2_moments(S):
    """E u^k, k = 1..4, for u = χ²_S / S (exact)."""
    return [math.prod(S + 2 * i for i in range(k)) / S**k for k in range(1, 5)]


def test_simulation_scalar_online_unstable_step():
    """Online Gaussian regression, batch 32: the constant-rate edge is λ = 2S/(a(S+2)) ≈ 1.88;
    λ = 1.95 alone diverges, alternated with λ = 0.5 it is stable.  The multiplier of a step
    is a = 1 − λu with u = χ²_S/S, so E a⁴ over the period is Π_k E(1 − λ_ku)⁴ < 1: the
    periodic law has a finite fourth moment and the standard errors below are valid."""
    S = 32
    land = ss.LinearRegression(1, label_variance=1)
    noise = ss.MinibatchNoise(S)
    fast, slow = ss.SGD(R(39, 20)), ss.SGD(R(1, 2))
    with pytest.raises(ss.UnstableError):
        ss.stationary(fast, land, noise)
    m = [1.0, *_chi2_moments(S)]
    fourth = [
        sum(math.comb(4, k) * (-float(o.lr)) ** k * m[k] for k in range(5)) for o in (fast, slow)
    ]
    assert fourth[0] > 1 and fourth[0] * fourth[1] < 0.5
    cycle = Schedule([fast, slow])
    state = periodic_state(cycle, land, noise)
    assert state.radius < 0.35
    samples = _simulate_cycle(cycle, land, noise, chains=40000, cycles=40, seed=11)
    z = _z_scores(samples, state.covs)
    assert not any(_holm_flags(z)), z
    # the test can fail: the phases swapped, or the constant-rate law of the slow phase
    assert any(_holm_flags(_z_scores(samples, state.covs[::-1])))
    assert any(_holm_flags(_z_scores(samples, [c * R(21, 20) for c in state.covs])))  # 5 % off
    constant = sp.Matrix([[ss.stationary(slow, land, noise).cov]])
    assert any(_holm_flags(_z_scores(samples, [constant, constant])))


def _fourth_moment_radius(schedule, X, y, S, replacement):
    """ρ of the one-period map E[A⊗A⊗A⊗A] of the per-batch state matrices (every batch
    enumerated): below one, the periodic law has finite fourth moments."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    N, d = X.shape
    batches = (
        list(itertools.product(range(N), repeat=S))
        if replacement
        else list(itertools.combinations(range(N), S))
    )
    total = None
    for opt, t in schedule:
        stepper = _float_stepper(opt)
        n = d * opt.blocks
        E4 = np.zeros((n**4, n**4))
        for batch in batches:
            Hb = sum(np.outer(X[i], X[i]) for i in batch) / S
            A = np.zeros((n, n))
            for j in range(n):
                z = np.zeros(n)
                z[j] = 1
                new = stepper.step(
                    tuple(z[b * d : (b + 1) * d] for b in range(opt.blocks)),
                    lambda x, Hb=Hb: Hb @ x,
                    lambda v: v,
                )
                A[:, j] = np.concatenate(new)
            A2 = np.kron(A, A)
            E4 += np.kron(A2, A2) / len(batches)
        phase = np.linalg.matrix_power(E4, t)
        total = phase if total is None else phase @ total
    return float(np.max(np.abs(np.linalg.eigvals(total))))


def test_simulation_heavy_ball_finite_data():
    """Heavy-ball cycling (λ, μ) on minibatches of 2 drawn without replacement from 4 rows:
    the first phase alone is unstable; the one-period fourth-moment map, enumerated over every
    batch, has ρ < 1, so each phase's covariance has a valid standard error."""
    land = ss.LinearRegression.from_data(X4, Y4)
    noise = ss.MinibatchNoise(2, replacement=False)
    hot, cool = ss.HeavyBall(1, R(1, 4)), ss.HeavyBall(R(3, 10), R(1, 10))
    with pytest.raises(ss.UnstableError):
        ss.stationary(hot, land, noise)
    cycle = Schedule([hot, cool], steps=[1, 3])
    assert _fourth_moment_radius(cycle, X4, Y4, 2, False) < 0.5
    state = periodic_state(cycle, land, noise)
    samples = _simulate_cycle(cycle, land, noise, chains=40000, cycles=60, seed=7)
    z = _z_scores(samples, state.covs)
    assert z.size == 6
    assert not any(_holm_flags(z)), z
    assert any(_holm_flags(_z_scores(samples, state.covs[::-1])))
    assert any(_holm_flags(_z_scores(samples, [c * R(21, 20) for c in state.covs])))  # 5 % off


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(ValueError, match="state block"):
        Schedule([ss.SGD(1), ss.HeavyBall(1, R(1, 2))])
    with pytest.raises(ValueError, match=r"state layout.*at rest"):
        Schedule([ss.HeavyBall(1, R(1, 2)), ss.QHM(1, R(1, 2), R(1, 2))])
    with pytest.raises(ValueError, match="same weight decay"):
        Schedule([ss.SGD(1), ss.SGD(1, weight_decay=R(1, 10))])
    with pytest.raises(ValueError, match=r"steps\[1\] must be an integer ≥ 1"):
        Schedule([ss.SGD(1), ss.SGD(1)], steps=[1, 0])
    with pytest.raises(ValueError, match="one count per phase"):
        Schedule([ss.SGD(1), ss.SGD(1)], steps=[1])
    with pytest.raises(ValueError, match="at least one"):
        Schedule([])
    with pytest.raises(TypeError, match="phase 1 must be a symsgd optimizer"):
        Schedule([ss.SGD(1), 0.1])
    land, noise = ss.Quadratic(1), ss.AdditiveNoise(1)
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        periodic_state([ss.SGD(1)], land, noise)
    with pytest.raises(ss.UnstableError, match="spectral radius") as info:
        periodic_state(Schedule.cyclical(ss.SGD, [R(5, 2), R(1, 10)]), land, noise)
    assert info.value.rho == pytest.approx(2.25 * 0.81)
    with pytest.raises(ss.UnstableError):  # ρ(𝒜) = 1 exactly: decided in ℚ, not by rounding
        periodic_state(Schedule([ss.SGD(2), ss.SGD(2)]), land, noise)
    with pytest.raises(ss.UnstableError, match="spectral radius"):
        periodic_state(Schedule.cyclical(ss.SGD, [2.5, 0.1]), land, noise)
    with pytest.raises(NotImplementedError, match="eigen-mode"):
        periodic_state(Schedule([ss.SGD(R(1, 2))]), ss.Quadratic.commuting(sp.Symbol("h")), noise)
    lam = ss.lr
    long = Schedule([ss.HeavyBall(lam, R(1, 2))] * 3, steps=[3, 3, 3])
    with pytest.raises(NotImplementedError, match="period of ≤"):
        periodic_state(long, land, noise)
    with pytest.raises(ValueError, match="exact numbers beside them"):
        periodic_state(Schedule([ss.SGD(lam), ss.SGD(0.5)]), land, noise)
    with pytest.raises(ValueError, match="not floats"):
        run_schedule(Schedule([ss.SGD(lam)]), land, noise, theta0=[0.5])
    with pytest.raises(ValueError, match="cycles must be an integer ≥ 1"):
        run_schedule(Schedule([ss.SGD(R(1, 2))]), land, noise, theta0=[1], cycles=0)
    with pytest.raises(NotImplementedError, match="one-dimensional state"):
        run_schedule(Schedule([ss.HeavyBall(lam, R(1, 2))]), land, noise, theta0=[1])
