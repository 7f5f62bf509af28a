"""Tail index, Lyapunov exponent, moment conditions and stationary moments (symsgd.tails).

Independent references written here: χ² moments from ``sympy.stats`` (not the library's
moment-generating function), learning rates where E(1 − λĥ)^{2k} = 1 solved by sympy, scipy
quadrature and brentq for the Kesten root, brute-force sums over ordered minibatches, tensor
Gauss–Hermite quadrature over every Gaussian input of a minibatch (exact for the polynomial
E[A^{⊗4}]), numpy Monte Carlo of ‖Ae₁‖, and seeded simulations of the real optimizer with real
minibatches.  Statistical checks allow four standard errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
import sympy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import integrate, optimize
from scipy import stats as sstats

import symsgd as ss
from symsgd.sampling import prepare
from symsgd.tails import (
    fourth_moment,
    lyapunov_exponent,
    moment_conditions,
    moment_radius,
    sgd_fourth_moment,
    sgd_fourth_moment_edge,
    stationary_fourth_moments,
    stationary_moments,
    symbolic_moments,
    tail_index,
)

a = sp.Symbol("a", positive=True)
ONLINE = ss.stationary(
    ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(ss.batch_size)
)


def chi2_raw_moments(S: int, k_max: int) -> list:
    """E[U^j], U ~ χ²_S, from sympy.stats (an independent route to the moments)."""
    U = st.ChiSquared("U", S)
    return [sp.simplify(st.E(U**j)) for j in range(k_max + 1)]


def even_moment_edge(S: int, k: int) -> float:
    """The smallest λ > 0 with E(1 − λĥ)^{2k} = 1, ĥ = χ²_S / S (a = 1), by sympy."""
    lam = sp.Symbol("lam", positive=True)
    raw = chi2_raw_moments(S, 2 * k)
    expr = sum(sp.binomial(2 * k, j) * (-lam / S) ** j * raw[j] for j in range(2 * k + 1)) - 1
    roots = sp.solve(sp.cancel(expr / lam), lam)
    real = [complex(r) for r in roots]
    return min(r.real for r in real if abs(r.imag) < 1e-12 and r.real > 0)


def scipy_kesten(lr: float, a_: float, S: int, gamma: float = 0.0) -> float:
    """Root of E|1 − λγ − λ(a/S)U|^α = 1 by scipy quadrature and brentq."""
    c, k = 1 - lr * gamma, lr * a_ / S
    u0 = c / k

    def moment(alpha):
        f = lambda u: abs(c - k * u) ** alpha * sstats.chi2.pdf(u, S)  # noqa: E731
        left = integrate.quad(f, 0, u0, limit=200, epsabs=1e-14, epsrel=1e-13)[0]
        right = integrate.quad(f, u0, np.inf, limit=200, epsabs=1e-14, epsrel=1e-13)[0]
        return left + right

    return optimize.brentq(lambda x: math.log(moment(x)), 0.05, 60, xtol=1e-12)


# -- the Kesten equation for scalar online SGD -----------------------------------------------


@pytest.mark.parametrize("S", [1, 2, 4])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_tail_index_is_2k_where_the_2k_th_moment_map_is_one(S, k):
    lr = even_moment_edge(S, k)
    t = tail_index(ONLINE, {ss.lr: lr, a: 1, ss.batch_size: S})
    assert t.exact and abs(t.alpha - 2 * k) < 1e-6, t
    assert t.bracket[0] <= t.alpha <= t.bracket[1]


@pytest.mark.parametrize(("a_", "S"), [(1, 1), (2.5, 2), (0.5, 4), (1, 8)])
def test_tail_index_is_two_at_the_mean_square_edge(a_, S):
    edge = ONLINE.stability_edge(ss.lr)
    assert sp.simplify(edge - 2 * ss.batch_size / (a * (ss.batch_size + 2))) == 0
    lr = float(edge.subs({a: a_, ss.batch_size: S}))
    t = tail_index(ONLINE, {ss.lr: lr, a: a_, ss.batch_size: S})
    assert abs(t.alpha - 2) < 1e-9, t
    # just inside the edge: a finite variance, α > 2; just outside: α < 2 but a law exists
    inside = tail_index(ONLINE, {ss.lr: 0.99 * lr, a: a_, ss.batch_size: S})
    outside = tail_index(ONLINE, {ss.lr: 1.01 * lr, a: a_, ss.batch_size: S})
    assert 2 < inside.alpha < 2.2 and 1.8 < outside.alpha < 2
    assert lyapunov_exponent(ONLINE, {ss.lr: 1.01 * lr, a: a_, ss.batch_size: S}).stationary


@pytest.mark.parametrize(
    ("lr", "a_", "S", "gamma"), [(0.5, 1.0, 1, 0.0), (0.9, 1.5, 3, 0.2), (0.35, 2.0, 2, 0.5)]
)
def test_tail_index_matches_scipy_quadrature_with_weight_decay(lr, a_, S, gamma):
    result = ss.stationary(
        ss.SGD(ss.lr, weight_decay=ss.weight_decay),
        ss.LinearRegression(a, label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
    )
    t = tail_index(result, {ss.lr: lr, a: a_, ss.batch_size: S, ss.weight_decay: gamma})
    assert t.alpha == pytest.approx(scipy_kesten(lr, a_, S, gamma), abs=1e-8)


def test_small_learning_rate_constant():
    """α·λa/S → c* with c* = x/2, x(ln x − 1) = 1 (Laplace's method on E|1 − εU|^{c/ε} = 1:
    the dominant inputs have λĥ ≈ 1 + 2c, where c log 2c = c + ½)."""
    x = sp.Symbol("x", positive=True)
    star = float(sp.nsolve(x * (sp.log(x) - 1) - 1, x, 3.5)) / 2
    assert abs(star - 1.7955) < 1e-3
    products = []
    for eps in (0.03, 0.01, 0.003):
        t = tail_index(ONLINE, {ss.lr: eps, a: 1, ss.batch_size: 1})
        products.append(t.alpha * eps)
    assert products[0] < products[1] < products[2] < star  # increasing to the limit
    assert star - products[2] < 0.005
    # the same limit for another batch size (ε = λa/S), approached more slowly
    four = [
        tail_index(ONLINE, {ss.lr: 4 * eps, a: 1, ss.batch_size: 4}).alpha * eps
        for eps in (0.003, 0.001)
    ]
    assert four[0] < four[1] < star and star - four[1] < 0.015


# -- finite data sets -------------------------------------------------------------------------

X1 = np.array([1.0, 0.5, -1.5, 2.0])
Y1 = np.array([1.0, 0.0, -1.0, 3.0])


def data_result(S: int, replacement: bool, weight_decay: bool = False):
    land = ss.LinearRegression.from_data(sp.Matrix(X1.reshape(-1, 1)), list(Y1))
    opt = ss.SGD(ss.lr, weight_decay=ss.weight_decay) if weight_decay else ss.SGD(ss.lr)
    return ss.stationary(opt, land, ss.MinibatchNoise(S, replacement=replacement))


def ordered_factors(lr: float, S: int, replacement: bool) -> np.ndarray:
    batches = (
        itertools.product(range(len(X1)), repeat=S)
        if replacement
        else itertools.permutations(range(len(X1)), S)
    )
    return np.array([1 - lr * np.mean(X1[list(b)] ** 2) for b in batches])


def test_finite_data_with_every_factor_contracting_has_no_power_law():
    result = data_result(1, True)
    edge = 2 / np.max(X1**2)  # λ·max x² ≤ 2: every |1 − λx²| ≤ 1
    for lr in (0.5 * edge, edge):
        t = tail_index(result, {ss.lr: lr})
        assert t.alpha == math.inf, t
    g = lyapunov_exponent(result, {ss.lr: edge})
    assert g.value == pytest.approx(np.mean(np.log(np.abs(1 - edge * X1**2))), rel=1e-12)
    # just beyond: one factor exceeds 1 and a power law appears, with a large α
    t = tail_index(result, {ss.lr: 1.05 * edge})
    A = np.abs(1 - 1.05 * edge * X1**2)
    assert math.isfinite(t.alpha) and t.alpha > 4
    assert np.mean(A**t.alpha) == pytest.approx(1, abs=1e-10)


@pytest.mark.parametrize(
    ("S", "replacement", "lr"), [(1, True, 0.8), (2, True, 0.9), (2, False, 0.7)]
)
def test_finite_data_tail_index_solves_the_sum_over_ordered_batches(S, replacement, lr):
    A = np.abs(ordered_factors(lr, S, replacement))
    reference = optimize.brentq(lambda x: np.log(np.mean(A**x)), 1e-3, 50, xtol=1e-13)
    t = tail_index(data_result(S, replacement), {ss.lr: lr})
    assert t.alpha == pytest.approx(reference, abs=1e-9)
    g = lyapunov_exponent(data_result(S, replacement), {ss.lr: lr})
    assert g.value == pytest.approx(np.mean(np.log(A)), rel=1e-12) and g.value < 0


# -- rotation-invariant problems --------------------------------------------------------------


def chi2_pdf(x: float, dof: int) -> float:
    return x ** (dof / 2 - 1) * math.exp(-x / 2) / (2 ** (dof / 2) * math.gamma(dof / 2))


def isotropic_expectation(fn, k: float, S: int, d: int) -> float:
    """E fn((1 − kU)² + k²UV), U ~ χ²_S, V ~ χ²_{d−1} independent: scipy nested quadrature
    in u = x², v = y² (a route independent of the library's Tricomi-function inner integral)."""
    tol = dict(limit=200, epsabs=1e-13, epsrel=1e-12)

    def inner(x):
        u = x * x
        s, t = (1 - k * u) ** 2, k * k * u
        return integrate.quad(
            lambda y: fn(s + t * y * y) * 2 * y * chi2_pdf(y * y, d - 1), 0, np.inf, **tol
        )[0]

    def outer(x):
        return inner(x) * 2 * x * chi2_pdf(x * x, S)

    root = math.sqrt(1 / k)
    return integrate.quad(outer, 0, root, **tol)[0] + integrate.quad(outer, root, np.inf, **tol)[0]


@pytest.mark.parametrize(("d", "lr", "S"), [(2, 0.9, 1), (3, 0.8, 2)])
def test_isotropic_tail_index_solves_the_norm_equation_by_monte_carlo(d, lr, S):
    result = ss.stationary(
        ss.SGD(ss.lr),
        ss.LinearRegression(sp.eye(d), label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
    )
    values = {ss.lr: lr, ss.batch_size: S}
    t = tail_index(result, values)
    g = lyapunov_exponent(result, values)
    assert t.exact and "isotropic" in t.method and g.exact
    # scipy: nested quadrature over U ~ χ²_S and V ~ χ²_{d−1} of ‖Ae₁‖² = (1 − kU)² + k²UV
    k = lr / S
    assert isotropic_expectation(lambda q: q ** (t.alpha / 2), k, S, d) == pytest.approx(
        1, abs=1e-9
    )
    assert isotropic_expectation(lambda q: math.log(q) / 2, k, S, d) == pytest.approx(
        g.value, abs=1e-9
    )
    # ‖A e₁‖ with A = I − (λ/S) Σ x_i x_iᵀ, real Gaussian inputs
    rng = np.random.default_rng(7)
    n = 200_000
    x = rng.standard_normal((n, S, d))
    Ae1 = np.zeros((n, d))
    Ae1[:, 0] = 1
    Ae1 -= lr / S * np.einsum("nsi,ns->ni", x, x[:, :, 0])
    norm = np.linalg.norm(Ae1, axis=1)
    power = norm**t.alpha
    assert abs(power.mean() - 1) < 4 * power.std() / math.sqrt(n)
    logs = np.log(norm)
    assert abs(logs.mean() - g.value) < 4 * logs.std() / math.sqrt(n)
    # the even moments of ‖Ae₁‖ are the exact radii ρ(E[A^{⊗2k}]) of Isserlis' operator
    rmap = prepare(
        ss.SGD(0.3), ss.LinearRegression(sp.eye(d), label_variance=1), ss.MinibatchNoise(S), {}
    )
    radius, method = moment_radius(rmap, 4)
    norm = np.linalg.norm(np.eye(d)[0] - 0.3 / S * np.einsum("nsi,ns->ni", x, x[:, :, 0]), axis=1)
    assert method == "exact-isserlis"
    assert abs(radius - np.mean(norm**4)) < 4 * np.std(norm**4) / math.sqrt(n)


# -- exact even-moment radii (Isserlis) against tensor Gauss–Hermite quadrature -----------------


def gauss_hermite_operator(M, B, K, H, L, S, order):
    """E[A^{⊗order}] for A = M + B(Ĥ − H)K, Ĥ = (1/S) Σ (L z_i)(L z_i)ᵀ, by a tensor
    Gauss–Hermite rule over all d·S standard normal inputs (exact for this polynomial)."""
    d = L.shape[0]
    nodes, weights = np.polynomial.hermite_e.hermegauss(order + 1)
    weights = weights / weights.sum()
    n = M.shape[0]
    total = np.zeros((n**order, n**order))
    for idx in itertools.product(range(order + 1), repeat=d * S):
        z = nodes[list(idx)].reshape(S, d)
        w = np.prod(weights[list(idx)])
        x = z @ L.T
        Hs = x.T @ x / S
        A = M + B @ (Hs - H) @ K
        P = np.ones((1, 1))
        for _ in range(order):
            P = np.kron(P, A)
        total += w * P
    return total


@settings(derandomize=True, max_examples=8, deadline=None)
@given(
    lr=hs.floats(0.05, 0.6),
    off=hs.floats(-0.4, 0.4),
    momentum=hs.sampled_from([None, 0.3]),
)
def test_isserlis_fourth_moment_operator_matches_gauss_hermite(lr, off, momentum):
    A = sp.Matrix([[1, sp.Float(off)], [sp.Float(off), 1.5]])
    land = ss.LinearRegression(A, label_variance=1)
    if momentum is None:
        problem = prepare(ss.SGD(lr), land, ss.MinibatchNoise(2), {})
        S = 2
    else:
        problem = prepare(ss.HeavyBall(lr / 3, momentum), land, ss.MinibatchNoise(1), {})
        S = 1
    M, B, K = problem.state_space
    L = np.linalg.cholesky(np.array(A, dtype=float))
    reference = gauss_hermite_operator(M, B, K, problem.hessian, L, S, 4 if momentum is None else 2)
    order = 4 if momentum is None else 2
    radius, method = moment_radius(problem, order)
    assert method == "exact-isserlis"
    assert radius == pytest.approx(np.max(np.abs(np.linalg.eigvals(reference))), rel=1e-10)
    if momentum is None:
        exact = fourth_moment(problem)
        assert exact.method == "exact-isserlis" and exact.radius == pytest.approx(radius)


def test_bracket_from_even_moments_for_an_anisotropic_problem():
    A = sp.diag(1, 2)
    result = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression(A, label_variance=1), ss.MinibatchNoise(2)
    )
    for lr, bracket in ((0.2, (6, 8)), (0.4, (2, 4)), (0.6, (0, 2))):
        t = tail_index(result, {ss.lr: lr})
        assert t.alpha is None and not t.exact and t.bracket == bracket, t
        assert "even-moment bracket (exact-isserlis" in t.method
    # the ends of (6, 8]: the radii of orders 6 and 8 by Gauss–Hermite quadrature cross 1
    problem = prepare(
        ss.SGD(0.2), ss.LinearRegression(A, label_variance=1), ss.MinibatchNoise(2), {}
    )
    M, B, K = problem.state_space
    L = np.sqrt(np.array(A, dtype=float))
    for order, below in ((6, True), (8, False)):
        reference = gauss_hermite_operator(M, B, K, problem.hessian, L, 2, order)
        radius = np.max(np.abs(np.linalg.eigvals(reference)))
        assert moment_radius(problem, order)[0] == pytest.approx(radius, rel=1e-9)
        assert (radius < 1) == below


def test_data_with_replacement_moments_are_sums_of_iid_draws():
    """N = 25, S = 4 with replacement has C(28, 4) > MAX_BATCHES multisets: the operator comes
    from sums of i.i.d. draws; the reference averages all 25⁴ ordered batches."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=25)
    y = rng.normal(size=25)
    land = ss.LinearRegression.from_data(sp.Matrix(x.reshape(-1, 1)), list(y))
    problem = prepare(ss.SGD(0.6), land, ss.MinibatchNoise(4), {})
    result = fourth_moment(problem)
    assert result.method == "exact-samples"
    x2 = x**2
    mean = sum(np.ix_(x2, x2, x2, x2)) / 4  # ĥ over every ordered batch
    reference = np.mean((1 - 0.6 * mean) ** 4)
    assert result.radius == pytest.approx(reference, rel=1e-12)


# -- symbolic moment conditions ------------------------------------------------------------------


def test_moment_conditions_are_the_library_conditions_and_the_chi2_expansion():
    lam, S = ss.lr, ss.batch_size
    second = moment_conditions(ONLINE, 2)
    # order 2: the mean-square edge of the library's conditions
    edge = sp.solve(sp.Eq(second.lhs, 1), lam)
    assert any(sp.simplify(e - ONLINE.stability_edge(lam)) == 0 for e in edge)
    fourth = moment_conditions(ONLINE, 4)
    assert sp.expand(fourth.lhs - sgd_fourth_moment(lam, a, S)) == 0
    # order 6 at S = 2, a = 1: the sympy.stats expansion
    raw = chi2_raw_moments(2, 6)
    reference = sum(sp.binomial(6, j) * (-lam / 2) ** j * raw[j] for j in range(7))
    assert sp.expand(moment_conditions(ONLINE, 6).lhs.subs({S: 2, a: 1}) - reference) == 0
    with pytest.raises(ValueError, match="even integer"):
        moment_conditions(ONLINE, 3)
    heavy = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(a, label_variance=1),
        ss.MinibatchNoise(2),
    )
    with pytest.raises(NotImplementedError, match="one-dimensional state"):
        moment_conditions(heavy, 4)


# -- stationary moments and kurtosis ---------------------------------------------------------


def simulate_final_states(result, values, chains, steps, seed):
    """δ = θ − θ_min of ``chains`` independent runs of the real optimizer (its own step, real
    minibatches from the simulator's oracle) after ``steps`` steps."""
    problem = prepare(
        result.recursion.optimizer, result.recursion.landscape, result.recursion.noise, values
    )
    rng = np.random.default_rng(seed)
    grad = problem.oracle.make(rng, chains)
    state = problem.stepper.initial_state(np.repeat(problem.theta_min[:, None], chains, axis=1))
    precondition = problem.precondition()
    for _ in range(steps):
        state = problem.stepper.step(state, grad, precondition)
    return (problem.stepper.readout(state) - problem.theta_min[:, None]).ravel()


def kurtosis_and_stderr(delta: np.ndarray) -> tuple[float, float]:
    """Sample kurtosis m4/m2² (mean known to be 0) and its delta-method standard error."""
    m2, m4 = np.mean(delta**2), np.mean(delta**4)
    k = m4 / m2**2
    grad = np.array([-2 * m4 / m2**3, 1 / m2**2])
    cov = np.cov(np.stack([delta**2, delta**4])) / delta.size
    return k, float(np.sqrt(grad @ cov @ grad))


def _case_result(case: str):
    """The scalar SGD result of a named moment-test case."""
    if case == "online":
        return ONLINE
    if case == "online-decay":
        return ss.stationary(
            ss.SGD(ss.lr, weight_decay=ss.weight_decay),
            ss.LinearRegression(a, label_variance=1, theta_star=[1]),
            ss.MinibatchNoise(ss.batch_size),
        )
    return data_result(1, True) if case == "data" else data_result(2, False)


@pytest.mark.parametrize(
    ("case", "values"),
    [
        ("online", {ss.lr: 0.15, a: 1, ss.batch_size: 1}),
        ("online-decay", {ss.lr: 0.12, a: 1.5, ss.batch_size: 2, ss.weight_decay: 0.3}),
        ("data", {ss.lr: 0.3}),
    ],
)
def test_stationary_kurtosis_matches_the_real_optimizer(case, values):
    result = _case_result(case)
    exact = stationary_moments(result, values, order=8)
    assert exact.variance == pytest.approx(float(sp.sympify(result.cov).subs(values)), rel=1e-10)
    t = tail_index(result, values)
    assert t.alpha > 8  # a finite eighth moment: the standard error below is valid
    delta = simulate_final_states(result, values, chains=400_000, steps=150, seed=11)
    k, se = kurtosis_and_stderr(delta)
    assert abs(k - exact.kurtosis) < 4 * se, (k, se, exact.kurtosis)
    assert abs(exact.kurtosis - 3) > 4 * se or case == "data"  # heavier than Gaussian, seen
    # the exact eighth moment sizes the error bar: compare the delta-method variance
    m = exact.moments
    assert abs(np.mean(delta**2) - m[1]) < 4 * np.std(delta**2) / math.sqrt(delta.size)


def test_stationary_moments_refuses_infinite_moments():
    lr = even_moment_edge(1, 2) * 1.05  # E A⁴ > 1
    with pytest.raises(ValueError, match="order 4 is infinite"):
        stationary_moments(ONLINE, {ss.lr: lr, a: 1, ss.batch_size: 1}, order=4)


# -- the Lyapunov exponent against the real optimizer ----------------------------------------------


def real_log_growth(optimizer, params: dict, lr: float, chains: int, steps: int, burn_in: int):
    """log-growth rate per step of the real optimizer's state on noiseless scalar online
    regression (a = 1, S = 1, θ* = 0, no label noise: the update is exactly linear, δ' = Aδ):
    the optimizer's own ``step`` with real minibatch gradients from the simulator's oracle.
    The numeric stepper comes from a stable learning rate ``params[lr]`` and the preconditioner
    scales it to ``lr`` (the iterates may diverge, where ``prepare`` refuses to simulate)."""
    problem = prepare(optimizer, ss.LinearRegression(a), ss.MinibatchNoise(1), {a: 1, **params})
    stepper = problem.stepper
    scale = lr / float(stepper.lr)
    grad = problem.oracle.make(np.random.default_rng(5), chains)
    state = stepper.initial_state(np.ones((1, chains)))
    logs = np.zeros(chains)
    for t in range(burn_in + steps):
        state = stepper.step(state, grad, lambda v: scale * v)
        size = np.sqrt(sum(block[0] ** 2 for block in state))
        if t >= burn_in:
            logs += np.log(size)
        state = tuple(block / size for block in state)  # renormalise: the map is linear
    return logs / steps


@pytest.mark.parametrize("lr", [1.2, 3.0, 6.0])
def test_lyapunov_exponent_sign_and_value_match_the_real_optimizer(lr):
    g = lyapunov_exponent(ONLINE, {ss.lr: lr, a: 1, ss.batch_size: 1})
    growth = real_log_growth(ss.SGD(ss.lr), {ss.lr: 0.1}, lr, chains=4000, steps=100, burn_in=0)
    se = growth.std(ddof=1) / math.sqrt(growth.size)
    assert abs(growth.mean() - g.value) < 4 * se, (growth.mean(), se, g)
    assert abs(g.value) > 4 * se  # the sign is resolved
    if g.stationary:  # beyond the mean-square edge but a stationary law: a tail index
        t = tail_index(ONLINE, {ss.lr: lr, a: 1, ss.batch_size: 1})
        assert 0 < t.alpha < 2
    else:
        with pytest.raises(ss.UnstableError, match="Lyapunov exponent"):
            tail_index(ONLINE, {ss.lr: lr, a: 1, ss.batch_size: 1})


def noisy_sgd_log_deviation(lr: float, steps: int, chains: int, seed: int) -> np.ndarray:
    """log|δ_T| of SGD (its own step, real minibatches with label noise σ = 1, a = 1, S = 1)
    started at the minimum; the stepper from a stable λ, its preconditioner scaling it to lr."""
    land = ss.LinearRegression(a, label_variance=1)
    problem = prepare(ss.SGD(ss.lr), land, ss.MinibatchNoise(1), {a: 1, ss.lr: 0.1})
    scale = lr / float(problem.stepper.lr)
    grad = problem.oracle.make(np.random.default_rng(seed), chains)
    state = problem.stepper.initial_state(np.zeros((1, chains)))
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            state = problem.stepper.step(state, grad, lambda v: scale * v)
    return np.log(np.abs(problem.stepper.readout(state)[0]))


@pytest.mark.parametrize("lr", [1.2, 3.0])
def test_stationary_law_exists_iff_the_lyapunov_exponent_is_negative(lr):
    """Both learning rates are beyond the mean-square edge 2/3 (ρ ≥ 1: prepare refuses them).
    γ < 0: the law of δ_T is the same at T = 60 and T = 120 (two-sample Kolmogorov–Smirnov on
    independent chains); γ > 0: log|δ_T| moves up by about γ·60 between them."""
    g = lyapunov_exponent(ONLINE, {ss.lr: lr, a: 1, ss.batch_size: 1})
    early = noisy_sgd_log_deviation(lr, 60, 4000, seed=1)
    late = noisy_sgd_log_deviation(lr, 120, 4000, seed=2)
    with pytest.raises(ss.UnstableError):
        prepare(ss.SGD(lr), ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(1), {})
    if g.stationary:
        assert sstats.ks_2samp(early, late).pvalue > 1e-3
    else:
        shift = np.median(late) - np.median(early)
        assert abs(shift - 60 * g.value) < 0.2 * 60 * g.value, (shift, g)


def test_monte_carlo_lyapunov_exponent_matches_the_real_heavy_ball():
    """Heavy ball has a 2-d state: the projective-chain estimate against the log-growth of the
    real optimizer's state."""
    lr, mu = 1.5, 0.5
    result = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(a, label_variance=1),
        ss.MinibatchNoise(1),
    )
    g = lyapunov_exponent(result, {ss.lr: lr, ss.momentum: mu, a: 1}, steps=300, seed=2)
    assert g.method == "monte-carlo" and g.stderr > 0
    growth = real_log_growth(
        ss.HeavyBall(ss.lr, ss.momentum),
        {ss.lr: 0.1, ss.momentum: mu},
        lr,
        chains=1000,
        steps=300,
        burn_in=100,
    )
    se = math.hypot(growth.std(ddof=1) / math.sqrt(growth.size), g.stderr)
    assert abs(growth.mean() - g.value) < 4 * se, (growth.mean(), g)


def test_additive_noise_and_noiseless_minimum_have_every_moment():
    h, c = sp.symbols("h c", positive=True)
    additive = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert tail_index(additive, {ss.lr: 0.5, h: 1, c: 1}).alpha == math.inf
    g = lyapunov_exponent(additive, {ss.lr: 0.5, h: 1, c: 1})
    assert g.value == pytest.approx(math.log(0.5)) and g.stationary
    noiseless = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a), ss.MinibatchNoise(1))
    t = tail_index(noiseless, {ss.lr: 0.5, a: 1})
    assert t.alpha == math.inf and "point mass" in t.method
    with pytest.raises(TypeError, match=r"ss\.stationary"):
        tail_index("not a result", {})


# -- fourth moments of small states: the linear system on 4-tensors -------------------------------


@pytest.mark.parametrize(
    ("case", "values"),
    [
        ("online", {ss.lr: 0.3, a: 1.5, ss.batch_size: 2}),
        ("online-decay", {ss.lr: 0.12, a: 1.5, ss.batch_size: 2, ss.weight_decay: 0.3}),
        ("data", {ss.lr: 0.3}),
        ("data-subsets", {ss.lr: 0.5}),
    ],
)
def test_tensor_system_agrees_with_the_scalar_moment_recursion(case, values):
    result = _case_result(case)
    scalar = stationary_moments(result, values, order=4)
    tensor = stationary_fourth_moments(result, values)
    assert tensor.cov[0, 0] == pytest.approx(scalar.moments[1], rel=1e-10)
    assert tensor.fourth[0, 0, 0, 0] == pytest.approx(scalar.moments[3], rel=1e-9)
    assert tensor.kurtosis[0] == pytest.approx(scalar.kurtosis, rel=1e-9)
    # the homogeneous 4-tensor E[(δ, 1)^⊗4] holds every moment of order ≤ 4, odd ones included
    H = tensor.homogeneous
    assert H.shape == (2, 2, 2, 2) and H[1, 1, 1, 1] == pytest.approx(1, abs=1e-12)
    for k in range(1, 5):
        index = (0,) * k + (1,) * (4 - k)
        assert H[index] == pytest.approx(scalar.moments[k - 1], rel=1e-9, abs=1e-12), k
        assert H[tuple(reversed(index))] == pytest.approx(H[index], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("optimizer", "landscape", "values"),
    [
        (ss.SGD(ss.lr), ss.LinearRegression(sp.diag(1, 2), label_variance=1), {ss.lr: 0.1}),
        (
            ss.HeavyBall(ss.lr, ss.momentum),
            ss.LinearRegression(a, label_variance=1),
            {ss.lr: 0.1, ss.momentum: 0.4, a: 1},
        ),
    ],
)
def test_fourth_moments_of_small_states_match_the_real_optimizer(optimizer, landscape, values):
    result = ss.stationary(optimizer, landscape, ss.MinibatchNoise(1))
    exact = stationary_fourth_moments(result, values)
    assert np.allclose(
        exact.cov,
        np.array(sp.Matrix([result.cov]).subs(values), dtype=float).reshape(exact.cov.shape),
    )
    problem = prepare(optimizer, landscape, ss.MinibatchNoise(1), values)
    assert moment_radius(problem, 8)[0] < 1  # a finite eighth moment: valid standard errors
    rng = np.random.default_rng(21)
    chains = 300_000
    grad = problem.oracle.make(rng, chains)
    stepper = problem.stepper
    state = stepper.initial_state(np.repeat(problem.theta_min[:, None], chains, axis=1))
    for _ in range(120):
        state = stepper.step(state, grad, problem.precondition())
    delta = stepper.readout(state) - problem.theta_min[:, None]
    for i in range(delta.shape[0]):
        k, se = kurtosis_and_stderr(delta[i])
        assert abs(k - exact.kurtosis[i]) < 4 * se, (i, k, se, exact.kurtosis[i])
        assert abs(exact.kurtosis[i] - 3) > 4 * se  # the departure from Gaussian is seen
    pair = delta[0] ** 2 * delta[-1] ** 2  # a mixed fourth moment
    se = pair.std() / math.sqrt(chains)
    assert abs(pair.mean() - exact.fourth[0, 0, -1, -1]) < 4 * se


# -- property-based checks against the independent oracles -----------------------------------------


@settings(derandomize=True, max_examples=15, deadline=None)
@given(
    xs=hs.lists(hs.floats(-2, 2).filter(lambda v: abs(v) > 0.05), min_size=2, max_size=5),
    lr=hs.floats(0.2, 1.5),
    S=hs.sampled_from([1, 2]),
    replacement=hs.booleans(),
)
def test_property_finite_data_kesten_root(xs, lr, S, replacement):
    x = np.array(xs)
    if not replacement and S > len(x):
        return
    y = np.linspace(-1, 1, len(x))
    land = ss.LinearRegression.from_data(sp.Matrix(x.reshape(-1, 1)), list(y))
    result = ss.stationary(ss.SGD(ss.lr), land, ss.MinibatchNoise(S, replacement=replacement))
    batches = (
        itertools.product(range(len(x)), repeat=S)
        if replacement
        else itertools.permutations(range(len(x)), S)
    )
    A = np.abs(np.array([1 - lr * np.mean(x[list(b)] ** 2) for b in batches]))
    gamma = np.mean(np.log(A)) if np.all(A > 0) else -np.inf
    g = lyapunov_exponent(result, {ss.lr: lr})
    assert g.value == pytest.approx(gamma, rel=1e-10) or g.value == gamma == -np.inf
    if gamma >= 0:
        with pytest.raises(ss.UnstableError):
            tail_index(result, {ss.lr: lr})
        return
    t = tail_index(result, {ss.lr: lr})
    if np.max(A) <= 1:
        assert t.alpha == math.inf
        return
    hi = 1.0
    while np.mean(A**hi) < 1:
        hi *= 2
    reference = optimize.brentq(lambda v: np.log(np.mean(A**v)), 1e-9, hi, xtol=1e-13)
    assert t.alpha == pytest.approx(reference, rel=1e-8)
    assert t.bracket[0] <= t.alpha <= t.bracket[1]


@settings(derandomize=True, max_examples=4, deadline=None)
@given(
    lr=hs.floats(0.1, 1.5),
    a_=hs.floats(0.5, 2.0),
    S=hs.integers(1, 5),
    gamma=hs.sampled_from([0.0, 0.3]),
)
def test_property_online_kesten_root_against_scipy(lr, a_, S, gamma):
    result = ss.stationary(
        ss.SGD(ss.lr, weight_decay=ss.weight_decay),
        ss.LinearRegression(a, label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
    )
    values = {ss.lr: lr, a: a_, ss.batch_size: S, ss.weight_decay: gamma}
    c, k = 1 - lr * gamma, lr * a_ / S
    log_mean = (
        integrate.quad(
            lambda u: np.log(abs(c - k * u)) * sstats.chi2.pdf(u, S), 0, c / k, limit=200
        )[0]
        + integrate.quad(
            lambda u: np.log(abs(c - k * u)) * sstats.chi2.pdf(u, S), c / k, np.inf, limit=200
        )[0]
    )
    g = lyapunov_exponent(result, values)
    assert g.value == pytest.approx(log_mean, abs=1e-7)
    if log_mean > -1e-3:  # too close to the edge of existence for scipy's root
        return
    reference = scipy_kesten(lr, a_, S, gamma)
    assert tail_index(result, values).alpha == pytest.approx(reference, rel=1e-7)


@settings(derandomize=True, max_examples=10, deadline=None)
@given(
    xs=hs.lists(hs.floats(-1.5, 1.5), min_size=2, max_size=4),
    lr=hs.floats(0.05, 0.4),
    S=hs.sampled_from([1, 2]),
)
def test_property_scalar_recursion_equals_tensor_system(xs, lr, S):
    x = np.array(xs)
    if np.sum(x**2) < 0.1:
        return
    y = np.cos(np.arange(len(x)))
    land = ss.LinearRegression.from_data(sp.Matrix(x.reshape(-1, 1)), list(y))
    result = ss.stationary(ss.SGD(ss.lr), land, ss.MinibatchNoise(S))
    try:
        scalar = stationary_moments(result, {ss.lr: lr}, order=4)
    except ValueError:  # an infinite fourth moment: both routes must say so
        with pytest.raises(ValueError, match="infinite"):
            stationary_fourth_moments(result, {ss.lr: lr})
        return
    tensor = stationary_fourth_moments(result, {ss.lr: lr})
    assert tensor.cov[0, 0] == pytest.approx(scalar.moments[1], rel=1e-9)
    assert tensor.fourth[0, 0, 0, 0] == pytest.approx(scalar.moments[3], rel=1e-8)


def test_symbolic_moments_closed_form():
    """The closed form E δ⁴: its second moment is the library's covariance (symbolically, with
    weight decay and θ* ≠ 0), its values are those of the independent 4-tensor system (Isserlis),
    and the kurtosis blows up exactly at the fourth-moment edge."""
    theta = sp.Symbol("theta_s", real=True)
    result = ss.stationary(
        ss.SGD(ss.lr, weight_decay=ss.weight_decay),
        ss.LinearRegression(a, label_variance=ss.label_noise, theta_star=[theta]),
        ss.MinibatchNoise(ss.batch_size),
    )
    m = symbolic_moments(result)
    assert sp.simplify(m[1] - sp.sympify(result.cov)) == 0
    assert sp.simplify(m[0]) == 0  # E b = 0: the stationary mean is the minimiser
    values = {
        ss.lr: sp.Rational(1, 5),
        a: sp.Rational(3, 2),
        ss.batch_size: 3,
        ss.weight_decay: sp.Rational(1, 4),
        ss.label_noise: 2,
        theta: sp.Rational(-1, 2),
    }
    tensor = stationary_fourth_moments(result, values)
    assert float(m[3].subs(values)) == pytest.approx(tensor.fourth[0, 0, 0, 0], rel=1e-10)
    assert float(m[1].subs(values)) == pytest.approx(tensor.cov[0, 0], rel=1e-10)
    kurtosis = sp.factor((m[3] / m[1] ** 2).subs({ss.batch_size: 1, a: 1, ss.weight_decay: 0}))
    assert kurtosis.subs(ss.lr, 0) == 3  # Gaussian in the small-step limit
    edge = sgd_fourth_moment_edge(1, 1)
    _, denominator = sp.fraction(sp.cancel(kurtosis))
    assert abs(float(denominator.subs(ss.lr, edge))) < 1e-12
