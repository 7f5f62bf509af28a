"""The fourth-moment radius against independent references, and crosscheck's warning.

References written here: the real root of 6λ³ − 6λ² + 3λ − 1 (numpy.roots) for the S = 2, a = 1
edge; the binomial expansion in χ² moments for scalar SGD; Gauss–Laguerre quadrature over the
χ² law of the minibatch Hessian for heavy ball; brute-force enumeration of ordered minibatches for
finite data; and the library's Monte Carlo estimate within five of its own standard errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
from scipy.special import gamma as gamma_function
from scipy.special import roots_genlaguerre

import symsgd as ss
from symsgd.sampling import prepare
from symsgd.tails import (
    GROUPS,
    fourth_moment,
    fourth_moment_radius,
    sgd_fourth_moment,
    sgd_fourth_moment_edge,
)

a = sp.Symbol("a", positive=True)
ONLINE = (
    ss.SGD(ss.lr),
    ss.LinearRegression(a, label_variance=1),
    ss.MinibatchNoise(ss.batch_size),
)
DATA_X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]]
DATA_Y = [1.0, 2.0, 0.0, 1.0]


def chi2_moment(k: int, dof: int) -> float:
    """E[u^k] for u ~ χ²_dof."""
    return float(np.prod([dof + 2 * j for j in range(k)]))


def exact_multiplier_moment(power: int, lr: float, a_: float, S: int, gamma: float = 0.0) -> float:
    """E[(1 − λ(a u / S + γ))^power] with u ~ χ²_S: the scalar online update multiplies θ by
    1 − λ·((1/S)Σ x_i² + γ), x_i ~ N(0, a)."""
    k = lr * a_ / S
    c = 1 - lr * gamma
    return sum(
        math.comb(power, j) * c ** (power - j) * (-k) ** j * chi2_moment(j, S)
        for j in range(power + 1)
    )


def kron4(A: np.ndarray) -> np.ndarray:
    A2 = np.kron(A, A)
    return np.kron(A2, A2)


def radius(T: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(T))))


# -- the S = 2, a = 1 edge -----------------------------------------------------------------------


def test_exact_edge_for_batch_two_is_the_real_root_of_the_cubic():
    roots = np.roots([6, -6, 3, -1])
    (reference,) = [r.real for r in roots if abs(r.imag) < 1e-12]
    edge = sgd_fourth_moment_edge(1, 2)
    assert abs(float(edge) - reference) < 1e-12
    assert abs(reference - 0.6265) < 1e-4  # the number quoted in the docs
    # the symbolic map reproduces the cubic: E(1 − λĥ)⁴ − 1 = 4λ(6λ³ − 6λ² + 3λ − 1)
    lam = ss.lr
    assert (
        sp.expand(
            sgd_fourth_moment(lam, 1, 2) - 1 - 4 * lam * (6 * lam**3 - 6 * lam**2 + 3 * lam - 1)
        )
        == 0
    )
    # and the radius of the prepared problem crosses 1 there
    at = prepare(*ONLINE, {ss.lr: reference, a: 1, ss.batch_size: 2})
    assert abs(fourth_moment_radius(at) - 1) < 1e-9
    below = prepare(*ONLINE, {ss.lr: reference - 0.01, a: 1, ss.batch_size: 2})
    above = prepare(*ONLINE, {ss.lr: reference + 0.01, a: 1, ss.batch_size: 2})
    assert fourth_moment_radius(below) < 1 < fourth_moment_radius(above)


@pytest.mark.parametrize(("a_", "S", "gamma"), [(1, 1, 0), (2, 3, 0), (1.5, 4, 0.25)])
def test_edge_solves_the_hand_expanded_moment(a_, S, gamma):
    edge = float(sgd_fourth_moment_edge(a_, S, gamma))
    assert edge > 0
    assert abs(exact_multiplier_moment(4, edge, a_, S, gamma) - 1) < 1e-9
    # the smallest positive root: below it the moment is < 1
    grid = np.linspace(edge / 100, edge * 0.999, 50)
    assert all(exact_multiplier_moment(4, x, a_, S, gamma) < 1 for x in grid)


@pytest.mark.parametrize("bad", [dict(a_=0, S=2), dict(a_=1, S=0), dict(a_=1, S=1.5)])
def test_edge_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="sgd_fourth_moment_edge"):
        sgd_fourth_moment_edge(bad["a_"], bad["S"])


# -- exact radii against independent references --------------------------------------------------


@pytest.mark.parametrize(
    ("lr", "a_", "S", "gamma"), [(0.3, 1.5, 2, 0.0), (0.8, 1.0, 2, 0.0), (0.4, 1.5, 3, 0.5)]
)
def test_scalar_sgd_radius_is_the_hand_expanded_moment(lr, a_, S, gamma):
    problem = prepare(
        ss.SGD(ss.lr, weight_decay=gamma), *ONLINE[1:], {ss.lr: lr, a: a_, ss.batch_size: S}
    )
    result = fourth_moment(problem)
    assert result.method == "exact-chi2" and result.stderr == 0
    reference = exact_multiplier_moment(4, lr, a_, S, gamma)
    assert result.radius == pytest.approx(reference, rel=1e-12)


def test_heavy_ball_radius_matches_gauss_laguerre_quadrature():
    """Heavy ball on scalar online regression: A(ĥ) = [[1 + μ − λĥ, −μ], [1, 0]] with ĥ = (a/S)χ²_S;
    E[A^{⊗4}] by generalized Gauss–Laguerre quadrature (exact for this degree-4 polynomial)."""
    lr, mu, a_, S = 0.2, 0.5, 1.3, 3
    problem = prepare(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(a, label_variance=1),
        ss.MinibatchNoise(S),
        {ss.lr: lr, ss.momentum: mu, a: a_},
    )
    result = fourth_moment(problem)
    assert result.method == "exact-chi2"
    # χ²_S = 2t, t ~ Gamma(S/2): ∫ f(2t) t^(S/2−1) e^(−t) dt / Γ(S/2)
    nodes, weights = roots_genlaguerre(5, S / 2 - 1)
    total = np.zeros((16, 16))
    for t, w in zip(nodes, weights):
        h_hat = a_ * 2 * t / S
        A = np.array([[1 + mu - lr * h_hat, -mu], [1.0, 0.0]])
        total += w * kron4(A)
    total /= gamma_function(S / 2)
    assert result.radius == pytest.approx(radius(total), rel=1e-10)


@pytest.mark.parametrize("replacement", [True, False])
def test_finite_data_radius_matches_enumeration_of_ordered_batches(replacement):
    """SGD on a finite data set: A = I − λĤ_batch; every ordered batch is equally likely."""
    lr, S = 0.3, 2
    X, Y = np.array(DATA_X), DATA_Y
    land = ss.LinearRegression.from_data(sp.Matrix(DATA_X), Y)
    problem = prepare(ss.SGD(lr), land, ss.MinibatchNoise(S, replacement=replacement), {})
    result = fourth_moment(problem)
    assert result.method == "exact-batches"
    N = X.shape[0]
    batches = (
        itertools.product(range(N), repeat=S)
        if replacement
        else itertools.permutations(range(N), S)
    )
    terms = [kron4(np.eye(2) - lr * X[list(b)].T @ X[list(b)] / S) for b in batches]
    assert result.radius == pytest.approx(radius(sum(terms) / len(terms)), rel=1e-12)


# -- the Monte Carlo fallback --------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.3, 0.6265, 0.8])
def test_monte_carlo_agrees_with_the_exact_radius_within_five_standard_errors(lr):
    problem = prepare(*ONLINE, {ss.lr: lr, a: 1, ss.batch_size: 2})
    exact = fourth_moment(problem)
    sampled = fourth_moment(problem, method="monte-carlo", seed=3)
    assert sampled.method == "monte-carlo" and sampled.stderr > 0
    assert abs(sampled.radius - exact.radius) < 5 * sampled.stderr, (sampled, exact)
    # the jackknife error is the right size: the sample-mean error of the scalar A⁴ from the
    # exact eighth moment (within a factor 2)
    se = math.sqrt((exact_multiplier_moment(8, lr, 1, 2) - exact.radius**2) / sampled.samples)
    assert se / 2 < sampled.stderr < 2 * se


def test_monte_carlo_agrees_with_enumeration_for_finite_data():
    land = ss.LinearRegression.from_data(sp.Matrix(DATA_X), DATA_Y)
    problem = prepare(ss.SGD(0.4), land, ss.MinibatchNoise(2, replacement=False), {})
    exact = fourth_moment(problem)
    sampled = fourth_moment(problem, samples=20_000, seed=1, method="monte-carlo")
    assert exact.method == "exact-batches" and sampled.samples == 20_000
    assert abs(sampled.radius - exact.radius) < 5 * sampled.stderr, (sampled, exact)


def test_large_data_set_without_replacement_falls_back_to_monte_carlo():
    """C(30, 10) subsets are too many to enumerate and not i.i.d. draws: Monte Carlo."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    land = ss.LinearRegression.from_data(sp.Matrix(X), list(rng.normal(size=30)))
    problem = prepare(ss.SGD(0.2), land, ss.MinibatchNoise(10, replacement=False), {})
    result = fourth_moment(problem, samples=4_000)
    assert result.method == "monte-carlo" and result.stderr > 0 and not result.exact
    assert "±" in repr(result)
    with pytest.raises(ValueError, match="method='monte-carlo'"):
        fourth_moment(problem, method="exact")
    with pytest.raises(ValueError, match="samples must be"):
        fourth_moment(problem, samples=GROUPS)
    with pytest.raises(ValueError, match="method must be"):
        fourth_moment(problem, method="sampled")


def test_online_regression_in_two_dimensions_is_exact_by_isserlis():
    """Formerly Monte Carlo: now E[A^{⊗4}] by Isserlis, within five Monte Carlo errors."""
    problem = prepare(
        ss.SGD(0.2), ss.LinearRegression(sp.diag(1, 2), label_variance=1), ss.MinibatchNoise(2), {}
    )
    exact = fourth_moment(problem)
    assert exact.method == "exact-isserlis" and exact.exact and exact.stderr == 0
    sampled = fourth_moment(problem, samples=20_000, seed=4, method="monte-carlo")
    assert abs(sampled.radius - exact.radius) < 5 * sampled.stderr, (sampled, exact)


def test_additive_noise_has_every_moment():
    h = sp.Symbol("h", positive=True)
    problem = prepare(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(1), {ss.lr: 1.9, h: 1})
    assert fourth_moment_radius(problem) is None
    assert fourth_moment(problem) is None


def test_large_states_are_not_estimated():
    A = sp.diag(1, 2, 3, 4)
    problem = prepare(
        ss.SGD(ss.lr),
        ss.LinearRegression(A, label_variance=1),
        ss.MinibatchNoise(4),
        {ss.lr: 0.05},
    )
    assert fourth_moment_radius(problem) is None


def test_crosscheck_warns_about_power_law_tails_only_where_they_are():
    result = ss.stationary(*ONLINE)
    heavy = ss.crosscheck(result, {ss.lr: 0.8, a: 1, ss.batch_size: 2}, seed=0)
    assert not heavy.reliable and heavy.fourth_moment_radius > 1
    assert any("infinite fourth moment" in note for note in heavy.notes)
    assert "infinite fourth moment" in str(heavy)
    light = ss.crosscheck(result, {ss.lr: 0.3, a: 1, ss.batch_size: 2}, seed=0)
    assert light.reliable and light.fourth_moment_radius < 1
    assert not any("fourth moment" in note for note in light.notes)
