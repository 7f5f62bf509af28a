"""ss.transient: exact moments after t steps, against plain iteration, brute-force enumeration of
minibatch paths, a seeded simulation of the real optimizer, and the stationary law."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symsgd as ss

R = sp.Rational
H2 = sp.Matrix([[2, 1], [1, 3]])
C2 = sp.Matrix([[1, R(1, 3)], [R(1, 3), 2]])
X3 = [[1, 0], [1, 1], [0, 2]]
Y3 = [1, 2, 1]


def _iterate(optimizer, landscape, noise, theta0, t):
    """Plain exact iteration of m ← Mm, S ← MSMᵀ + BQBᵀ (additive noise) from the recursion."""
    rec = ss.build_recursion(optimizer, landscape, noise)
    M, B = sp.Matrix(rec.M), sp.Matrix(rec.B)
    z = sp.Matrix.vstack(*[sp.Matrix(b) for b in optimizer.initial_state(sp.Matrix(theta0))])
    m, S = z, z * z.T
    Q = sp.Matrix(noise.C)
    for _ in range(t):
        m, S = M * m, M * S * M.T + B * Q * B.T
    Theta = sp.Matrix(rec.theta_map)
    return Theta * m, Theta * S * Theta.T


@pytest.mark.parametrize(
    "optimizer", [ss.SGD(R(1, 5)), ss.HeavyBall(R(1, 10), R(1, 2))], ids=["sgd", "heavy-ball"]
)
def test_additive_exact_matches_iteration_and_stationary(optimizer):
    land, noise = ss.Quadratic(H2), ss.AdditiveNoise(C2)
    theta0 = [R(3, 2), -1]
    for t in (0, 1, 7):
        r = ss.transient(optimizer, land, noise, theta0=theta0, steps=t)
        mean, second = _iterate(optimizer, land, noise, theta0, t)
        assert r.mean == mean and r.second_moment == second
        assert r.cov == second - mean * mean.T
        assert all(isinstance(e, sp.Rational) for e in r.cov)
        assert r.loss == (H2 * second).trace() / 2
    far = ss.transient(optimizer, land, noise, theta0=theta0, steps=400)
    stat = np.array(ss.stationary(optimizer, land, noise).cov.evalf(), dtype=float)
    assert np.allclose(np.array(far.cov.evalf(), dtype=float), stat, rtol=1e-12, atol=0)
    assert 0 < far.rate < 1


def _brute_force(optimizer, X, y, theta0, t):
    """E[δ_t], E[δ_tδ_tᵀ] by enumerating all N^t index paths (S = 1, with replacement)."""
    Xm, ym = sp.Matrix(X), sp.Matrix(y)
    star = (Xm.T * Xm).LUsolve(Xm.T * ym)
    N = Xm.rows
    mean, second = sp.zeros(2, 1), sp.zeros(2, 2)
    for path in itertools.product(range(N), repeat=t):
        state = optimizer.initial_state(star + sp.Matrix(theta0))
        for i in path:
            x = Xm.row(i).T

            def grad(point, x=x, i=i):
                return x * ((x.T * point)[0, 0] - ym[i])

            state = optimizer.step(state, grad, lambda v: v)
        delta = sp.Matrix(optimizer.readout(state)) - star
        mean += delta / N**t
        second += delta * delta.T / N**t
    return mean, second


@pytest.mark.parametrize(
    "optimizer", [ss.SGD(R(1, 2)), ss.HeavyBall(R(1, 3), R(1, 4))], ids=["sgd", "heavy-ball"]
)
@pytest.mark.parametrize("t", [2, 3])
def test_minibatch_matches_enumerated_paths(optimizer, t):
    land = ss.LinearRegression.from_data(X3, Y3)
    noise = ss.MinibatchNoise(batch_size=1, replacement=True)
    theta0 = [R(1, 2), -1]
    r = ss.transient(optimizer, land, noise, theta0=theta0, steps=t)
    mean, second = _brute_force(optimizer, X3, Y3, theta0, t)
    assert r.mean == mean
    assert r.second_moment == second


def test_minibatch_momentum_against_simulation():
    rng = np.random.default_rng(13)
    lr, mu, S, steps, chains = 0.3, 0.5, 2, 5, 20000
    X = np.array(X3, dtype=float)
    y = np.array(Y3, dtype=float)
    star = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ star
    optimizer = ss.HeavyBall(lr, mu)
    land = ss.LinearRegression.from_data(X3, Y3)
    theta0 = [0.5, -1.0]
    r = ss.transient(optimizer, land, ss.MinibatchNoise(S), theta0=theta0, steps=steps)
    stepper = copy.copy(optimizer)  # the same step with float fields: numpy speed
    for name in ("lr", "momentum", "weight_decay"):
        object.__setattr__(stepper, name, float(getattr(optimizer, name)))
    state = stepper.initial_state(np.repeat(np.array(theta0)[:, None], chains, axis=1))
    for _ in range(steps):
        idx = rng.integers(0, len(y), size=(S, chains))

        def grad(point, idx=idx):
            g = np.zeros_like(point)
            for row in idx:
                xs = X[row].T  # d × chains
                g += xs * (np.einsum("ij,ij->j", xs, point) - e[row]) / S
            return g

        state = stepper.step(state, grad, lambda v: v)
    theta = np.asarray(stepper.readout(state), dtype=float)
    got_mean, got_var = theta.mean(axis=1), theta.var(axis=1, ddof=1)
    centred = theta - got_mean[:, None]
    se_mean = np.sqrt(got_var / chains)
    se_var = np.sqrt(((centred**4).mean(axis=1) - got_var**2) / chains)
    want_mean = np.array(r.mean, dtype=float).reshape(-1)
    want_var = np.diag(np.array(r.cov, dtype=float))
    assert np.all(np.abs(got_mean - want_mean) <= 5 * se_mean)
    assert np.all(np.abs(got_var - want_var) <= 5 * se_var)
    assert all(isinstance(v, sp.Float) for v in r.cov)  # float inputs give floats


def test_symbolic_steps_scalar_sgd():
    t = sp.Symbol("t", integer=True, nonnegative=True)
    lam = ss.lr
    cases = [
        (ss.SGD(R(1, 3)), ss.Quadratic(2), ss.AdditiveNoise(R(1, 2))),
        (ss.SGD(R(1, 3)), ss.LinearRegression.from_data([[1], [2]], [1, 3]), ss.MinibatchNoise(1)),
    ]
    for optimizer, land, noise in cases:
        r = ss.transient(optimizer, land, noise, theta0=[R(3, 2)], steps=t)
        assert sp.simplify(r.second_moment[0, 0].subs(t, 0) - R(9, 4)) == 0
        exact3 = ss.transient(optimizer, land, noise, theta0=[R(3, 2)], steps=3)
        assert sp.nsimplify(r.second_moment[0, 0].subs(t, 3)) == exact3.second_moment[0, 0]
        assert r.mean[0, 0].subs(t, 3) == exact3.mean[0, 0]
    # symbolic λ too: substituting λ and t gives the exact numeric answer
    sym = ss.transient(
        ss.SGD(lam), ss.Quadratic(2), ss.AdditiveNoise(R(1, 2)), theta0=[R(3, 2)], steps=t
    )
    value = sym.second_moment[0, 0].subs({lam: R(1, 3), t: 3})
    assert (
        sp.nsimplify(value)
        == _iterate(ss.SGD(R(1, 3)), ss.Quadratic(2), ss.AdditiveNoise(R(1, 2)), [R(3, 2)], 3)[1][
            0, 0
        ]
    )


def test_curve_and_bad_input():
    opt, land, noise = ss.SGD(R(1, 5)), ss.Quadratic(H2), ss.AdditiveNoise(C2)
    r = ss.transient(opt, land, noise, theta0=[1, 1], steps=4, curve=True)
    assert len(r.losses) == 5
    for t, value in enumerate(r.losses):
        exact = ss.transient(opt, land, noise, theta0=[1, 1], steps=t).loss
        assert value == pytest.approx(float(exact), rel=1e-12)
    with pytest.raises(ValueError, match="steps must be ≥ 0"):
        ss.transient(opt, land, noise, theta0=[1, 1], steps=-1)
    with pytest.raises(TypeError, match="steps must be an integer"):
        ss.transient(opt, land, noise, theta0=[1, 1], steps=2.5)
    with pytest.raises(ValueError, match="theta0 must have length 2"):
        ss.transient(opt, land, noise, theta0=[1], steps=2)
    with pytest.raises(ValueError, match="steps: a symbolic number"):
        ss.transient(opt, land, noise, theta0=[1, 1], steps=sp.Symbol("t"))
    t = sp.Symbol("t", integer=True, nonnegative=True)
    with pytest.raises(NotImplementedError, match="factor of degree 3"):
        # minibatch heavy ball: the second-moment map's characteristic cubic is irreducible
        ss.transient(
            ss.HeavyBall(R(1, 3), R(1, 2)),
            ss.LinearRegression(1, 1),
            ss.MinibatchNoise(4),
            theta0=[1],
            steps=t,
        )
    with pytest.raises(NotImplementedError, match="one-dimensional state"):
        ss.transient(ss.HeavyBall(ss.lr, R(1, 2)), land, noise, theta0=[1, 1], steps=3)
    with pytest.raises(NotImplementedError, match="here of size 28"):
        ss.transient(
            ss.HeavyBall(ss.lr, ss.momentum),
            ss.Quadratic(sp.diag(1, 2, 3)),
            ss.AdditiveNoise(sp.eye(3)),
            theta0=[1, 1, 1],
            steps=t,
        )


def test_eigen_mode_transient_with_additive_noise_is_the_mode_alone():
    """Quadratic.commuting with additive noise: each mode is its own scalar problem, so the
    symbolic-t answer is the explicit 1-D one, and as t → ∞ it tends to the stationary law of
    the mode (checked at a numeric stable point)."""
    t = sp.Symbol("t", integer=True, nonnegative=True)
    h, c = sp.symbols("h c", positive=True)
    mode = ss.transient(
        ss.SGD(ss.lr), ss.Quadratic.commuting(h), ss.AdditiveNoise(c), theta0=[1], steps=t
    )
    alone = ss.transient(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c), theta0=[1], steps=t)
    assert sp.simplify(mode.second_moment[0, 0] - alone.second_moment[0, 0]) == 0
    stationary = ss.stationary(ss.SGD(ss.lr), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
    point = {ss.lr: sp.Rational(1, 3), h: 2, c: 5}
    late = mode.second_moment[0, 0].subs(point).subs(t, 400)
    assert abs(float(late - stationary.cov.subs(point))) < 1e-30
    with pytest.raises(NotImplementedError, match="trace that changes with t"):
        a = sp.Symbol("a", positive=True)
        ss.transient(
            ss.SGD(ss.lr),
            ss.LinearRegression.commuting(a, label_variance=1),
            ss.MinibatchNoise(ss.batch_size),
            theta0=[1],
            steps=3,
        )


# ---------------------------------------------------------------------------------------------
# minibatch noise on a diagonal (eigenbasis) problem: the reduced per-mode + trace path
# ---------------------------------------------------------------------------------------------


def _dense_oracle(optimizer, landscape, noise, theta0, t):
    """Exact iteration of the full half-vectorised affine map (symsgd.moments) from z₀z₀ᵀ:
    mean Mᵗz₀ (online regression has no mean term), second moment s ← Ts + f."""
    from symsgd.moments import from_halfvec, halfvec_system, operator_matrix, pairs

    rec = ss.build_recursion(optimizer, landscape, noise)
    T = operator_matrix(rec)
    _, f = halfvec_system(rec)
    M = sp.Matrix(rec.M)
    z = sp.Matrix.vstack(*[sp.Matrix(b) for b in optimizer.initial_state(sp.Matrix(theta0))])
    S0 = z * z.T
    s = sp.Matrix([S0[i, j] for i, j in pairs(rec.n)])
    for _ in range(t):
        z, s = M * z, T * s + f
    Theta = sp.Matrix(rec.theta_map)
    S = sp.Matrix(from_halfvec(rec.n, list(s)))
    return Theta * z, Theta * S * Theta.T, S, rec


MOMENTA = [
    ss.SGD(R(1, 5)),
    ss.HeavyBall(R(1, 10), R(1, 2)),
    ss.Nesterov(R(1, 8), R(1, 3)),
]


@pytest.mark.parametrize("optimizer", MOMENTA, ids=["sgd", "heavy-ball", "nesterov"])
def test_minibatch_diagonal_matches_dense_map(optimizer):
    """The reduced path (modes' own blocks coupled by the trace, pairs' cross blocks alone)
    equals the dense (d(d+1)/2)²-map exactly, for the state, θ, loss and rate; a repeated
    eigenvalue and a mode starting at 0 are included."""
    from symsgd.moments import spectral_radius

    land = ss.LinearRegression(sp.diag(1, 2, R(1, 2), 2), label_variance=R(1, 3))
    noise = ss.MinibatchNoise(2)
    theta0 = [1, -2, R(1, 2), 0]
    for t in (0, 1, 5):
        r = ss.transient(optimizer, land, noise, theta0=theta0, steps=t, curve=True)
        mean, second, state, rec = _dense_oracle(optimizer, land, noise, theta0, t)
        assert r.mean == mean and r.second_moment == second
        assert r.state_second_moment == state
        assert r.cov == second - mean * mean.T
        assert r.loss == land.loss(second) == r.test_loss
        assert r.losses[-1] == pytest.approx(float(r.loss), rel=1e-14)
        assert all(isinstance(e, sp.Rational) for e in r.second_moment)
    assert r.rate == pytest.approx(spectral_radius(rec), rel=1e-12)


@settings(derandomize=True, max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["sgd", "heavy-ball", "nesterov"]),
    eig=st.lists(st.integers(1, 12), min_size=2, max_size=3),
    lr=st.integers(1, 6),
    S=st.integers(1, 4),
    theta0=st.lists(st.integers(-2, 2), min_size=3, max_size=3),
    t=st.integers(0, 4),
)
def test_minibatch_diagonal_random_problems(kind, eig, lr, S, theta0, t):
    lam = R(lr, 20)
    optimizer = {
        "sgd": ss.SGD(lam),
        "heavy-ball": ss.HeavyBall(lam, R(1, 3)),
        "nesterov": ss.Nesterov(lam, R(1, 4)),
    }[kind]
    land = ss.LinearRegression(sp.diag(*[R(e, 4) for e in eig]), label_variance=R(1, 2))
    noise = ss.MinibatchNoise(S)
    start = theta0[: len(eig)]
    r = ss.transient(optimizer, land, noise, theta0=start, steps=t)
    mean, second, _, _ = _dense_oracle(optimizer, land, noise, start, t)
    assert r.mean == mean and r.second_moment == second


def test_minibatch_diagonal_float_against_numeric_map():
    """d = 12 in float64 against plain iteration of symsgd.moments.NumericMap (the float map
    of the full recursion), relative 1e-12; the exact answer at the same (rational) point
    agrees."""
    from symsgd.moments import NumericMap
    from symsgd.recursion import numeric_recursion

    rng = np.random.default_rng(5)
    eig = [R(int(v), 8) for v in rng.integers(1, 16, size=12)]
    theta0 = [int(v) for v in rng.integers(-2, 3, size=12)]
    opt = ss.HeavyBall(0.05, 0.5)
    land = ss.LinearRegression(sp.diag(*[float(e) for e in eig]), label_variance=0.25)
    noise = ss.MinibatchNoise(3)
    t = 40
    r = ss.transient(opt, land, noise, theta0=theta0, steps=t)
    rec = numeric_recursion(opt, land, noise)
    T = NumericMap.from_recursion(rec)
    z = np.concatenate([np.array(theta0, float)] * 2)
    S = np.outer(z, z)
    for _ in range(t):
        S = T.apply(S) + T.forcing()
    got = np.array(r.state_second_moment, dtype=float)
    assert np.allclose(got, S, rtol=1e-12, atol=1e-14 * np.abs(S).max())
    assert all(isinstance(e, sp.Float) for e in r.cov if e != 0)  # float inputs give floats
    exact = ss.transient(
        ss.HeavyBall(R(1, 20), R(1, 2)),
        ss.LinearRegression(sp.diag(*eig), label_variance=R(1, 4)),
        noise,
        theta0=theta0,
        steps=t,
    )
    assert float(exact.loss) == pytest.approx(float(r.loss), rel=1e-12)
    dense_rate = np.abs(np.linalg.eigvals(T.matrix())).max()  # the full 300 × 300 map
    assert exact.rate == pytest.approx(dense_rate, rel=1e-12)


def test_minibatch_diagonal_against_simulation():
    """The real heavy-ball optimizer with real fresh Gaussian minibatches
    (applications.simulate_transient): each θ-variance, the cross moment and the test loss
    within 5 standard errors of the exact values after 6 steps."""
    from symsgd.applications import simulate_transient

    opt = ss.HeavyBall(R(1, 4), R(1, 2))
    land = ss.LinearRegression(sp.diag(2, 1, R(1, 2)), label_variance=R(1, 2))
    noise = ss.MinibatchNoise(2)
    theta0 = [1, -1, 2]
    r = ss.transient(opt, land, noise, theta0=theta0, steps=6)
    sim = simulate_transient(opt, land, noise, theta0=theta0, steps=6, chains=40_000, seed=3)
    want = np.array(r.second_moment, dtype=float)
    gap = np.abs(sim.second_moment - want)
    assert np.all(gap <= 5 * sim.second_moment_stderr)
    assert abs(sim.loss - float(r.test_loss)) <= 5 * sim.loss_stderr
    assert np.all(np.abs(sim.mean - np.array(r.mean, dtype=float).ravel()) <= 5 * sim.mean_stderr)


def test_symbolic_steps_beyond_one_dimension():
    """Symbolic t where the affine map's characteristic polynomial splits into factors of
    degree ≤ 2: numeric Nesterov (complex-conjugate roots), SGD on a 2-d quadratic, and fully
    symbolic heavy ball (λ, μ, h, c).  The closed form at t = 3 and 10 equals the exact
    integer-t answer (repeated squaring in ℚ), its ρ_k are roots of the map (certified inside
    at t = 0..N−1), and the rate is the largest |root| of the second-moment map."""
    from symsgd.moments import spectral_radius

    t = sp.Symbol("t", integer=True, nonnegative=True)
    h, c = sp.symbols("h c", positive=True)
    numeric = {ss.lr: R(1, 3), ss.momentum: R(1, 2), h: 2, c: R(1, 2)}
    cases = [
        (ss.Nesterov(R(1, 3), R(1, 2)), ss.Quadratic(2), ss.AdditiveNoise(R(1, 2)), {}),
        (ss.SGD(R(1, 5)), ss.Quadratic(H2), ss.AdditiveNoise(C2), {}),
        (ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(h), ss.AdditiveNoise(c), numeric),
    ]
    for optimizer, land, noise, point in cases:
        theta0 = [R(3, 2), -1][: land.dim]
        r = ss.transient(optimizer, land, noise, theta0=theta0, steps=t)
        # the symbolic case's concrete twin at the point
        opt_n = optimizer if not point else ss.HeavyBall(R(1, 3), R(1, 2))
        land_n = land if not point else ss.Quadratic(2)
        noise_n = noise if not point else ss.AdditiveNoise(R(1, 2))
        for k in (3, 10):
            exact = ss.transient(opt_n, land_n, noise_n, theta0=theta0, steps=k)
            got = r.second_moment.xreplace(point).subs(t, k).applyfunc(sp.expand)
            assert (got - exact.second_moment).applyfunc(sp.simplify).is_zero_matrix
            assert sp.expand(r.mean.xreplace(point).subs(t, k) - exact.mean).is_zero_matrix
        rec = ss.build_recursion(opt_n, land_n, noise_n)
        rate = r.rate.xreplace(point) if point else r.rate
        assert float(sp.N(rate)) == pytest.approx(spectral_radius(rec), rel=1e-12)
