"""The numeric fast path at scale: all-numeric problems never go through symbolic algebra.

Every answer is checked against an independent oracle computed here: scipy's
``solve_discrete_lyapunov`` on state matrices written out by hand (additive noise), and the
dense Kronecker solve of :mod:`tests.oracle_kron` with the noise derived there (minibatch
noise on a finite data set, with and without replacement, and online regression).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.linalg import solve_discrete_lyapunov

import symsgd as ss
from symsgd.moments import DENSE_MAX_STATE
from tests import oracle_kron as ok


def _spd(rng, d: int) -> np.ndarray:
    A = rng.standard_normal((d, d))
    return A @ A.T / d + np.eye(d)


def _cov(result) -> np.ndarray:
    return np.array(result.cov.tolist(), dtype=float)


def _close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-9) -> None:
    assert np.abs(got - want).max() <= rtol * np.abs(want).max()


@pytest.mark.parametrize("d", [30, 60])
def test_numeric_sgd_and_heavy_ball_match_scipy(d):
    rng = np.random.default_rng(d)
    H, lr, mu = _spd(rng, d), 0.1, 0.5
    C = np.diag(rng.uniform(0.2, 1.0, d))
    land, noise = ss.Quadratic(H), ss.AdditiveNoise(C)
    sgd = ss.stationary(ss.SGD(lr), land, noise)
    _close(_cov(sgd), solve_discrete_lyapunov(np.eye(d) - lr * H, lr**2 * C))
    hb = ss.stationary(ss.HeavyBall(lr, mu), land, noise)
    I, Z = np.eye(d), np.zeros((d, d))
    M = np.block([[(1 + mu) * I - lr * H, -mu * I], [I, Z]])
    B = np.vstack([-lr * I, Z])
    state = solve_discrete_lyapunov(M, B @ C @ B.T)
    _close(_cov(hb), state[:d, :d])
    for r in (sgd, hb):
        assert r.method == "numeric-float"
        assert r.certificate.how == "float" and r.certificate.max_residual < 1e-9
        assert r.conditions == sp.true and r.free_symbols == set()
    # readouts in float64 agree with the state covariance they come from
    D = M - np.eye(2 * d)
    velocity = (D @ state @ D.T + B @ C @ B.T)[:d, :d]
    _close(np.array(hb.velocity_cov.tolist(), dtype=float), velocity)
    assert float(hb.loss) == pytest.approx(0.5 * np.trace(H @ state[:d, :d]), rel=1e-12)
    lag = (np.linalg.matrix_power(M, 3) @ state)[:d, :d]
    _close(np.array(hb.autocov(3).tolist(), dtype=float), lag)


def test_numeric_result_keeps_its_readouts():
    rng = np.random.default_rng(3)
    d = 12
    H = _spd(rng, d)
    r = ss.stationary(ss.Nesterov(0.05, 0.6), ss.Quadratic(H), ss.AdditiveNoise(np.eye(d)))
    f = r.lambdify(("cov", "loss"))
    out = f()
    _close(np.asarray(out["cov"], dtype=float), _cov(r))
    assert float(out["loss"]) == pytest.approx(float(r.loss))
    # the lazily built sympy state covariance is the float one
    state = np.array(r.state_cov.tolist(), dtype=float)
    assert state.shape == (2 * d, 2 * d) and np.allclose(state[:d, :d], _cov(r))
    assert r.simplify() is r and r.subs({}).cov == r.cov


@pytest.mark.parametrize("replacement", [True, False])
def test_finite_data_minibatch_matches_the_kronecker_oracle(replacement):
    rng = np.random.default_rng(7)
    N, d, S, lr = 30, 10, 4, 0.05
    X = rng.standard_normal((N, d))
    y = X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(N)
    land = ss.LinearRegression.from_data(X, y)
    for opt, rule in (
        (ss.SGD(lr), ok.sgd_rule(lr, np.eye(d))),
        (ss.HeavyBall(lr, 0.5), ok.heavy_ball_rule(lr, 0.5, np.eye(d))),
    ):
        r = ss.stationary(opt, land, ss.MinibatchNoise(S, replacement=replacement))
        Q0, L, _theta, Hhat = ok.finite_data_noise(X, y, 0.0, S, replacement)
        M, B, K = ok.state_space(rule, Hhat)
        want = ok.stationary_state(M, B, K, Q0, L)[:d, :d]
        _close(_cov(r), want, 1e-8)
        assert r.method == "numeric-float" and r.certificate.how == "float"
        # the noise readout is Q(KΣKᵀ) of the oracle
        state = ok.stationary_state(M, B, K, Q0, L)
        Q = Q0 + (L @ (K @ state @ K.T).reshape(-1)).reshape(d, d)
        _close(np.array(r.noise_cov.tolist(), dtype=float), Q, 1e-8)


def test_large_state_dependent_problem_uses_the_operator_and_matches_the_oracle():
    """n above DENSE_MAX_STATE: GMRES + Arnoldi on the map applied as an operator."""
    rng = np.random.default_rng(11)
    d, S, lr, mu = 10, 5, 0.05, 0.4
    assert 2 * d > DENSE_MAX_STATE
    A = _spd(rng, d)
    land = ss.LinearRegression(A, label_variance=0.3, theta_star=rng.standard_normal(d).tolist())
    r = ss.stationary(ss.HeavyBall(lr, mu, weight_decay=0.1), land, ss.MinibatchNoise(S))
    M, B, K = ok.state_space(ok.heavy_ball_rule(lr, mu, np.eye(d)), A + 0.1 * np.eye(d))
    b = -0.1 * np.linalg.solve(A + 0.1 * np.eye(d), np.array(land.theta_star.tolist(), float))
    Q0, L = ok.online_regression_noise(A, 0.3, S, b.reshape(-1))
    _close(_cov(r), ok.stationary_state(M, B, K, Q0, L)[:d, :d], 1e-8)
    assert r.certificate.how == "float"


def test_rational_inputs_switch_to_float_with_a_note():
    rng = np.random.default_rng(5)
    d = 6  # n = 12 for heavy ball: above the exact limit
    H = sp.Matrix(d, d, lambda i, j: sp.Rational(int(rng.integers(-2, 3)), 8))
    H = H * H.T + sp.eye(d)
    C = sp.eye(d) / 2
    lr, mu = sp.Rational(1, 10), sp.Rational(1, 2)
    small = ss.stationary(ss.SGD(lr), ss.Quadratic(H), ss.AdditiveNoise(C))
    assert small.method == "numeric-exact"  # n = 6: exact
    big = ss.stationary(ss.HeavyBall(lr, mu), ss.Quadratic(H), ss.AdditiveNoise(C))
    assert big.method == "numeric-float (exact inputs, n = 12: exact elimination skipped)"
    Hf = np.array(H.tolist(), dtype=float)
    I, Z = np.eye(d), np.zeros((d, d))
    M = np.block([[1.5 * I - 0.1 * Hf, -0.5 * I], [I, Z]])
    B = np.vstack([-0.1 * I, Z])
    _close(_cov(big), solve_discrete_lyapunov(M, B @ (I / 2) @ B.T)[:d, :d])
    # the exact answer and the float one agree where both are computed
    exact_small = np.array(small.cov.tolist(), dtype=float)
    _close(exact_small, solve_discrete_lyapunov(I - 0.1 * Hf, 0.01 * I / 2))


def test_unstable_additive_numeric_problem_raises_with_the_radius():
    rng = np.random.default_rng(2)
    d = 20
    H = _spd(rng, d)
    lr = 2.5 / np.linalg.eigvalsh(H).max()  # ρ(M) = 1.5
    with pytest.raises(ss.UnstableError, match=r"ρ = 2\.25") as info:
        ss.stationary(ss.SGD(lr), ss.Quadratic(H), ss.AdditiveNoise(np.eye(d)))
    assert len(str(info.value)) < 400  # a short name for a large matrix, not its entries


def test_second_moment_instability_with_a_stable_mean_is_found_without_the_dense_map():
    rng = np.random.default_rng(4)
    d, lr, mu = 8, 0.3, 0.3
    A = _spd(rng, d)
    M, B, K = ok.state_space(ok.heavy_ball_rule(lr, mu, np.eye(d)), A)
    assert 2 * d > DENSE_MAX_STATE and np.abs(np.linalg.eigvals(M)).max() < 1  # mean stable
    _, L = ok.online_regression_noise(A, 1.0, 1, np.zeros(d))
    rho = ok.spectral_radius(M, B, K, L)
    assert rho > 1
    with pytest.raises(ss.UnstableError) as info:
        ss.stationary(ss.HeavyBall(lr, mu), ss.LinearRegression(A, 1.0), ss.MinibatchNoise(1))
    assert f"ρ = {rho:.6g}" in str(info.value)


# -- natural gradient's default Fisher in float64 ------------------------------------------------
def test_natural_gradient_default_fisher_float_matches_scipy():
    """Float H, C (d = 12): F = C is inverted in float64; the answer matches scipy's Stein solve
    with M = I − λC⁻¹H and forcing λ²C⁻¹CC⁻¹ = λ²C⁻¹, written out here."""
    d, lr = 12, 0.1
    rng = np.random.default_rng(11)
    H, C = _spd(rng, d), _spd(rng, d)
    r = ss.stationary(ss.NaturalGradient(lr), ss.Quadratic(H), ss.AdditiveNoise(C))
    assert r.method == "numeric-float" and r.certificate.how == "float"
    Ci = np.linalg.inv(C)
    want = solve_discrete_lyapunov(np.eye(d) - lr * Ci @ H, lr**2 * Ci)
    _close(_cov(r), want)


def test_natural_gradient_online_regression_float_matches_oracle():
    """Online regression, float A (d = 5), minibatch noise: the default Fisher σ²A in float64
    against the Kronecker oracle with P = (σ²A)⁻¹."""
    d, lr, sigma2, S = 5, 0.05, 0.5, 8
    A = _spd(np.random.default_rng(5), d)
    land = ss.LinearRegression(sp.Matrix(A), label_variance=sigma2)
    r = ss.stationary(ss.NaturalGradient(lr), land, ss.MinibatchNoise(S))
    assert r.method == "numeric-float"
    M, B, K = ok.state_space(ok.sgd_rule(lr, np.linalg.inv(sigma2 * A)), A)
    Q0, L = ok.online_regression_noise(A, sigma2, S, np.zeros(d))
    _close(_cov(r), ok.stationary_state(M, B, K, Q0, L))


def test_numeric_fisher_equals_the_exact_fisher():
    """numeric_fisher (numpy) equals fisher (sympy) converted: online regression with weight
    decay and θ*, a finite data set with weight decay, additive noise."""
    A = sp.Matrix([[2, 1], [1, 3]]) / 2
    gamma = sp.Rational(1, 3)
    cases = [
        (ss.LinearRegression(A, label_variance=sp.Rational(1, 2), theta_star=[1, -2]), 3),
        (
            ss.LinearRegression.from_data(
                sp.Matrix([[1, 2], [0, 1], [3, -1], [1, 1]]), sp.Matrix([1, 0, 2, -1])
            ),
            2,
        ),
    ]
    for land, S in cases:
        noise = ss.MinibatchNoise(S)
        exact = np.array(noise.fisher(land, gamma).evalf(), dtype=float)
        np.testing.assert_allclose(noise.numeric_fisher(land, gamma), exact, rtol=1e-12)
    C = sp.Matrix([[1, sp.Rational(1, 4)], [sp.Rational(1, 4), 2]])
    got = ss.AdditiveNoise(C).numeric_fisher(ss.Quadratic(A))
    np.testing.assert_allclose(got, np.array(C.evalf(), dtype=float))


def test_natural_gradient_singular_float_fisher_is_refused():
    H = np.eye(2)
    C = np.array([[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="Fisher F is singular"):
        ss.stationary(ss.NaturalGradient(0.1), ss.Quadratic(H), ss.AdditiveNoise(C))


def test_adam_in_recursion_drops_only_beta2():
    """β₂ does not enter the linear theory: in_recursion() sets it to 0 and keeps the rest (the
    frozen recursion is the same)."""
    from symsgd.recursion import build_recursion

    opt = ss.Adam(ss.lr, beta1=sp.Rational(9, 10), eps=0)
    land, noise = ss.Quadratic(sp.Matrix([[2, 0], [0, 1]])), ss.AdditiveNoise(sp.eye(2))
    inner = opt.in_recursion()
    assert inner.beta2 == 0 and inner.beta1 == opt.beta1 and inner.lr == opt.lr
    a, b = build_recursion(opt, land, noise), build_recursion(inner, land, noise)
    assert a.M == b.M and a.B == b.B
    avg = ss.Averaged(opt, decay=sp.Rational(1, 2)).in_recursion()
    assert avg.inner.beta2 == 0


def test_adam_default_beta2_takes_the_numeric_path_with_the_same_answer():
    # β₂ does not enter the linear theory, so a symbolic default must not force sympy
    rng = np.random.default_rng(3)
    G = rng.normal(size=(12, 12))
    H = G @ G.T / 12 + 0.5 * np.eye(12)
    land, noise = ss.Quadratic(H), ss.AdditiveNoise(np.eye(12))
    default = ss.stationary(ss.Adam(0.01, 0.9, eps=1e-8), land, noise)
    given_beta2 = ss.stationary(ss.Adam(0.01, 0.9, beta2=0.999, eps=1e-8), land, noise)
    assert default.method.startswith("numeric-float")
    np.testing.assert_allclose(
        np.array(default.cov, float), np.array(given_beta2.cov, float), rtol=1e-12, atol=0
    )
