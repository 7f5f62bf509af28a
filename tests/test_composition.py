"""Optimizers that declare their readout and compose: the EMA of the iterates (``Averaged``) and
quasi-hyperbolic momentum (``QHM``), against independent hand derivations, explicit-matrix solves
and seeded simulations of the real update."""

import numpy as np
import pytest
import scipy.linalg
import sympy as sp

import symsgd as ss
from symsgd.optimizers import QHM, Averaged
from symsgd.recursion import build_recursion

h, c, a = sp.symbols("h c a", positive=True)
beta = sp.Symbol("beta", nonnegative=True)
nu = sp.Symbol("nu", nonnegative=True)
lr, mu = ss.lr, ss.momentum


def _zero(expr) -> bool:
    return sp.simplify(sp.together(expr)) == 0


# ---------------------------------------------------------------------------------------------
# Averaged(SGD) on a scalar quadratic: the defining equations solved by hand
# ---------------------------------------------------------------------------------------------


def _averaged_sgd_oracle():
    r"""x' = a x − λξ (a = 1 − λh), y' = βy + (1 − β)x', Var ξ = c: the stationary moments from
    their three defining equations (not from the library's recursion)."""
    xx, xy, yy = sp.symbols("xx xy yy")
    q = 1 - lr * h
    equations = [
        sp.Eq(xx, q**2 * xx + lr**2 * c),
        # E[x'y'] = β E[x'y] + (1 − β) E[x'²], E[x'y] = q E[xy]
        sp.Eq(xy, beta * q * xy + (1 - beta) * xx),
        # E[y'²] = β² E[y²] + 2β(1 − β) E[y x'] + (1 − β)² E[x'²]
        sp.Eq(yy, beta**2 * yy + 2 * beta * (1 - beta) * q * xy + (1 - beta) ** 2 * xx),
    ]
    solution = sp.solve(equations, [xx, xy, yy], dict=True)[0]
    return solution[xx], solution[xy], solution[yy], q


def test_averaged_sgd_scalar_variance_is_exact():
    result = ss.stationary(Averaged(ss.SGD(lr), beta), ss.Quadratic(h), ss.AdditiveNoise(c))
    xx, xy, yy, q = _averaged_sgd_oracle()
    # the closed form: Var θ̄ = (1 − β)(1 + qβ) / ((1 + β)(1 − qβ)) · Var θ
    closed = (
        (1 - beta) * (1 + q * beta) / ((1 + beta) * (1 - q * beta)) * lr * c / (h * (2 - lr * h))
    )
    assert _zero(yy - closed)
    assert _zero(result.cov - yy)
    assert _zero(result.state_cov[0, 0] - xx) and _zero(result.state_cov[0, 1] - xy)
    assert result.recursion.theta_map == sp.ImmutableMatrix([[0, 1]])  # it reports θ̄
    assert _zero(result.loss - h * yy / 2)
    # v̄' = ȳ' − ȳ = (1 − β)(x' − y): E[v̄²] = (1 − β)²(E x'² − 2q E[xy] + E y²)
    assert _zero(result.velocity_cov - (1 - beta) ** 2 * (xx - 2 * q * xy + yy))
    # the average adds the condition β < 1 to SGD's λh < 2
    # λ = 1/2, h = c = 1, β = 1/2: Var θ = 1/3, times (1/2)(5/4) / ((3/2)(3/4)) = 5/9
    half = sp.Rational(1, 2)
    assert result.subs({lr: half, h: 1, c: 1, beta: half}).cov == sp.Rational(5, 27)
    with pytest.raises(ss.UnstableError):
        result.subs({lr: sp.Rational(1, 2), h: 1, c: 1, beta: sp.Rational(3, 2)})


def test_averaged_with_no_memory_is_the_inner_optimizer():
    problem = (ss.Quadratic(h), ss.AdditiveNoise(c))
    plain = ss.stationary(ss.HeavyBall(lr, mu), *problem)
    averaged = ss.stationary(Averaged(ss.HeavyBall(lr, mu), 0), *problem)
    assert _zero(averaged.cov - plain.cov)
    assert _zero(averaged.velocity_cov - plain.velocity_cov)


def test_averaged_of_averaged_composes():
    """EMA of an EMA: the second average reads the first one's readout."""
    once = Averaged(ss.SGD(lr), sp.Rational(1, 2))
    twice = Averaged(once, sp.Rational(1, 3))
    r = build_recursion(twice, ss.Quadratic(h), ss.AdditiveNoise(c))
    assert twice.blocks == 3 and r.theta_map == sp.ImmutableMatrix([[0, 0, 1]])
    # the last row of M: z̄' = (1/3) z̄ + (2/3)((1/2) ȳ + (1/2)(1 − λh) x)
    assert sp.expand(r.M[2, 0] - sp.Rational(1, 3) * (1 - lr * h)) == 0
    assert r.M[2, 1] == sp.Rational(1, 3) and r.M[2, 2] == sp.Rational(1, 3)


# ---------------------------------------------------------------------------------------------
# Averaged on an explicit 2×2 problem, against an independent numpy/scipy solve
# ---------------------------------------------------------------------------------------------

H2 = sp.Matrix([[2, sp.Rational(1, 2)], [sp.Rational(1, 2), 1]])
C2 = sp.Matrix([[1, sp.Rational(1, 5)], [sp.Rational(1, 5), sp.Rational(1, 2)]])


@pytest.mark.parametrize("momentum", [None, sp.Rational(1, 2)])
def test_averaged_on_a_2x2_matrix_problem_matches_scipy(momentum):
    lam, b = sp.Rational(1, 4), sp.Rational(3, 5)
    inner = ss.SGD(lam) if momentum is None else ss.HeavyBall(lam, momentum)
    result = ss.stationary(Averaged(inner, b), ss.Quadratic(H2), ss.AdditiveNoise(C2))
    # by hand: x' = A x − λξ (+ μ(x − x₋)), y' = βy + (1 − β)x'
    H, C, I, Z = np.array(H2, float), np.array(C2, float), np.eye(2), np.zeros((2, 2))
    lam_, b_ = float(lam), float(b)
    if momentum is None:
        step = np.hstack([I - lam_ * H, Z])  # x' as a map of (x, y)
        M = np.vstack([step, (1 - b_) * step + np.hstack([Z, b_ * I])])
        B = np.vstack([-lam_ * I, -(1 - b_) * lam_ * I])
    else:
        m = float(momentum)
        step = np.hstack([(1 + m) * I - lam_ * H, -m * I, Z])  # state (x, x₋, y)
        M = np.vstack([step, np.hstack([I, Z, Z]), (1 - b_) * step + np.hstack([Z, Z, b_ * I])])
        B = np.vstack([-lam_ * I, Z, -(1 - b_) * lam_ * I])
    state = scipy.linalg.solve_discrete_lyapunov(M, B @ C @ B.T)
    expected = state[-2:, -2:]
    assert np.allclose(np.array(result.cov, float), expected, rtol=1e-12, atol=1e-14)
    assert np.allclose(np.array(result.state_cov, float), state, rtol=1e-12, atol=1e-14)


def test_averaged_solves_per_mode_on_a_diagonal_problem():
    """Diagonal H, C, P: the modes of the averaged state do not mix; one solve per mode."""
    p1, p2 = sp.symbols("p1 p2", positive=True)
    b = sp.Rational(1, 2)
    H = sp.diag(2, 1)
    C = sp.diag(1, 3)
    result = ss.stationary(
        Averaged(ss.Preconditioned(lr, sp.diag(p1, p2)), b), ss.Quadratic(H), ss.AdditiveNoise(C)
    )
    assert result.method == "eigenmode"
    for k, (p, hk, ck) in enumerate([(p1, 2, 1), (p2, 1, 3)]):
        one = ss.stationary(
            Averaged(ss.Preconditioned(lr, p), b), ss.Quadratic(hk), ss.AdditiveNoise(ck)
        )
        assert _zero(result.cov[k, k] - one.cov)
    assert result.cov[0, 1] == 0


def test_averaged_delegates_to_the_inner_optimizer():
    p = sp.Symbol("p", positive=True)
    gamma = ss.weight_decay
    inner = ss.Preconditioned(lr, p, weight_decay=gamma)
    avg = Averaged(inner, beta)
    assert (avg.lr, avg.weight_decay) == (lr, gamma)
    assert avg.mode_names() == {p: "P"}
    assert avg.continuous_lr() == lr
    assert avg.symbols() == {lr, p, gamma, beta}
    assert avg.preconditioner(ss.Quadratic(h), ss.AdditiveNoise(c)) == sp.Matrix([[p]])
    assert Averaged(ss.HeavyBall(lr, mu), beta).continuous_lr() == lr / (1 - mu)
    assert repr(Averaged(ss.SGD(lr), beta)) == (
        "Averaged(inner=SGD(lr=lambda, weight_decay=0), decay=beta)"
    )
    # the weight decay enters through the inner gradient
    r = ss.stationary(avg, ss.Quadratic(h), ss.AdditiveNoise(c))
    assert gamma in r.cov.free_symbols


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((ss.SGD(lr), 1), ValueError, r"Averaged: decay must satisfy 0 ≤ β < 1; got β = 1"),
        ((ss.SGD(lr), -0.1), ValueError, r"decay must satisfy 0 ≤ β < 1"),
        ((ss.SGD(lr), float("nan")), ValueError, r"decay must be finite"),
        ((ss.SGD(lr), "beta"), TypeError, r"decay must be a number"),
        ((ss.SGD(lr), None), TypeError, r"needs the decay β"),
        (("sgd", 0.5), TypeError, r"inner must be a symsgd optimizer"),
    ],
)
def test_averaged_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        Averaged(*args)


# ---------------------------------------------------------------------------------------------
# QHM: its two limits exactly, and the general case against a hand-built recursion
# ---------------------------------------------------------------------------------------------


def test_qhm_with_nu_zero_is_sgd():
    problem = (ss.Quadratic(h), ss.AdditiveNoise(c))
    qhm = ss.stationary(QHM(lr, mu, 0), *problem)
    sgd = ss.stationary(ss.SGD(lr), *problem)
    assert _zero(qhm.cov - sgd.cov)
    assert _zero(qhm.velocity_cov - sgd.velocity_cov)


def test_qhm_with_nu_one_is_heavy_ball_with_a_damped_learning_rate():
    """ν = 1: θ' = θ + β(θ − θ₋) − λ(1 − β)g, heavy ball with μ = β and learning rate λ(1 − β)."""
    problem = (ss.Quadratic(h), ss.AdditiveNoise(c))
    qhm = ss.stationary(QHM(lr, mu, 1), *problem)
    heavy = ss.stationary(ss.HeavyBall(lr * (1 - mu), mu), *problem)
    assert _zero(qhm.cov - heavy.cov)
    assert _zero(qhm.velocity_cov - heavy.velocity_cov)
    assert _zero(qhm.loss - heavy.loss)


def test_qhm_general_nu_matches_a_hand_built_lyapunov_solve():
    """State (θ, m): m' = βm + (1 − β)(hθ + ξ), θ' = θ − λ((1 − ν)(hθ + ξ) + ν m')."""
    result = ss.stationary(QHM(lr, mu, nu), ss.Quadratic(h), ss.AdditiveNoise(c))
    g_theta, g_xi = h, 1  # g = hθ + ξ
    m_row = [(1 - mu) * g_theta, mu]
    m_xi = (1 - mu) * g_xi
    t_row = [1 - lr * ((1 - nu) * g_theta + nu * m_row[0]), -lr * nu * m_row[1]]
    t_xi = -lr * ((1 - nu) * g_xi + nu * m_xi)
    M = sp.Matrix([t_row, m_row])
    B = sp.Matrix([t_xi, m_xi])
    s = sp.symbols("s0:3")
    S = sp.Matrix([[s[0], s[1]], [s[1], s[2]]])
    equations = list(S - M * S * M.T - c * B * B.T)
    solution = sp.solve([equations[0], equations[1], equations[3]], s, dict=True)[0]
    assert _zero(result.cov - solution[s[0]])
    assert QHM(lr, mu, nu).continuous_lr() == lr


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"momentum": mu}, TypeError, r"QHM needs nu"),
        ({"momentum": mu, "nu": sp.Rational(3, 2)}, ValueError, r"nu must satisfy 0 ≤ ν ≤ 1"),
        ({"momentum": 1, "nu": 0.5}, ValueError, r"momentum must satisfy 0 ≤ β < 1"),
        ({"momentum": mu, "nu": -1}, ValueError, r"got ν = -1"),
    ],
)
def test_qhm_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        QHM(lr, **kwargs)


# ---------------------------------------------------------------------------------------------
# the readout declared by the optimizer is what the recursion and the simulator report
# ---------------------------------------------------------------------------------------------


def test_a_readout_that_does_not_return_the_point_at_rest_is_refused():
    class Shifted(ss.SGD):
        def readout(self, state):
            return 2 * state[0]

    with pytest.raises(RuntimeError, match=r"readout\(initial_state\(x\)\) must be x"):
        build_recursion(Shifted(lr), ss.Quadratic(h), ss.AdditiveNoise(c))


SEEDED = [
    (Averaged(ss.SGD(lr), beta), {lr: 0.5, beta: 0.6}),
    (Averaged(ss.HeavyBall(lr, mu), beta), {lr: 0.3, mu: 0.5, beta: 0.5}),
    (QHM(lr, mu, nu), {lr: 0.5, mu: 0.6, nu: 0.7}),
]
PROBLEMS = {
    "additive": (ss.Quadratic(h), ss.AdditiveNoise(c), {h: 1.5, c: 0.7}),
    "minibatch": (
        ss.LinearRegression(a, label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
        {a: 1.5, ss.batch_size: 2},
    ),
}


@pytest.mark.parametrize("noise", list(PROBLEMS))
@pytest.mark.parametrize("optimizer, params", SEEDED, ids=["ema-sgd", "ema-heavy-ball", "qhm"])
def test_simulation_of_the_real_update_agrees(optimizer, params, noise):
    landscape, noise_model, extra = PROBLEMS[noise]
    result = ss.stationary(optimizer, landscape, noise_model)
    report = ss.crosscheck(result, {**params, **extra}, seed=7)
    assert report.passed, report
    # the simulator measured the readout (θ̄ for Averaged), not the inner iterate
    sim = report.simulation
    theory = float(result.subs({**params, **extra}).cov)
    assert abs(sim.cov[0, 0] - theory) < 5 * sim.cov_stderr[0, 0]


def test_simulation_tells_the_average_from_the_iterate():
    """Averaging shrinks the variance well beyond the Monte Carlo error: a simulator that
    reported the inner iterate instead of the readout would fail here."""
    params = {lr: 0.5, beta: 0.9, h: 1.5, c: 0.7}
    averaged = ss.stationary(Averaged(ss.SGD(lr), beta), ss.Quadratic(h), ss.AdditiveNoise(c))
    plain = ss.stationary(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    sim = ss.simulate(
        Averaged(ss.SGD(lr), beta), ss.Quadratic(h), ss.AdditiveNoise(c), params, seed=3
    )
    want = float(averaged.subs(params).cov)
    other = float(plain.subs({k: v for k, v in params.items() if k != beta}).cov)
    assert want < 0.5 * other
    assert abs(sim.cov[0, 0] - want) < 5 * sim.cov_stderr[0, 0]
