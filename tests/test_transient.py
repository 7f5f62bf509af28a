"""ss.transient: exact moments after t steps, against plain iteration, brute-force enumeration of
minibatch paths, a seeded simulation of the real optimizer, and the stationary law."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import sympy as sp

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
    with pytest.raises(NotImplementedError, match="one-dimensional state"):
        ss.transient(
            opt, land, noise, theta0=[1, 1], steps=sp.Symbol("t", integer=True, nonnegative=True)
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
