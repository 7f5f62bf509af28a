"""symsgd.gaussianity against independent references.

References written here: the cumulant-generating function log det(I − 2tQ)^(−1/2) expanded by
sympy; the cdf of the generalised chi-square by Imhof's inversion (mpmath) and by a scalar
scipy quadrature of the χ² convolution; brute-force enumeration of minibatches in exact rational
arithmetic; ≥ 4·10⁵ minibatch gradients drawn by the simulator's own oracles (real Gaussian
inputs, real batches of rows) with the DKW bound as tolerance; the stationary moments of
``symsgd.tails.stationary_moments`` and a simulation of the real SGD update; the discrete
Lyapunov equation of heavy ball and the continuous one of its Langevin SDE solved here.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import scipy.linalg
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

import symsgd as ss
from symsgd.gaussianity import (
    BERRY_ESSEEN_CONSTANT,
    PooledNoiseMoments,
    finite_population_cumulants,
    langevin,
    noise_law,
    pooled_noise,
    pooled_noise_moments,
)
from symsgd.sampling import prepare
from symsgd.tails import stationary_moments, tail_index

#: simulated minibatch gradients per check (the brief: at least 4·10⁵)
DRAWS = 400_000
#: DKW: P(sup|F_n − F| > ε) ≤ 2 exp(−2nε²) — at failure probability 1e-6
DKW = math.sqrt(math.log(2 / 1e-6) / (2 * DRAWS))


def draws(landscape, noise, at, direction, seed: int) -> np.ndarray:
    """DRAWS projected minibatch gradients u·ĝ(θ) from the simulator's own oracle."""
    problem = prepare(ss.SGD(0.1), landscape, noise, {})
    grad = problem.oracle.make(np.random.default_rng(seed), DRAWS)
    theta = np.repeat(np.asarray(at, dtype=float).reshape(-1, 1), DRAWS, axis=1)
    return np.asarray(direction, dtype=float) @ grad(theta)


def sample_cumulants(x: np.ndarray, groups: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased k-statistics k1..k4 and their standard errors over independent groups."""
    parts = np.array([[stats.kstat(g, n) for n in range(1, 5)] for g in np.split(x, groups)])
    whole = np.array([stats.kstat(x, n) for n in range(1, 5)])
    return whole, parts.std(axis=0, ddof=1) / math.sqrt(groups)


def ecdf_distance(x: np.ndarray, cdf, grid_size: int = 0) -> float:
    """sup_t |F_n(t) − F(t)| for a continuous F (both sides of every jump).  With
    ``grid_size`` F is evaluated only on that many sample quantiles g_j and the sup is bounded
    above: for g_j ≤ t ≤ g_(j+1), F_n(t) − F(t) ≤ F_n(g_(j+1)−) − F(g_j) and F(t) − F_n(t) ≤
    F(g_(j+1)) − F_n(g_j) (both monotone), so the result is ≥ the true sup."""
    xs = np.sort(x)
    n = len(xs)
    if not grid_size:
        F = cdf(xs)
        return float(max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n)))
    idx = np.unique(np.linspace(0, n - 1, grid_size).astype(int))
    g = np.concatenate([[xs[0] - 1e3], xs[idx], [xs[-1] + 1e3]])
    F = cdf(g)
    Fn_at = np.searchsorted(xs, g, side="right") / n  # F_n(g_j)
    Fn_below = np.searchsorted(xs, g, side="left") / n  # F_n(g_j−)
    upper = np.max(Fn_below[1:] - F[:-1])
    lower = np.max(F[1:] - Fn_at[:-1])
    return float(max(upper, lower))


def chi2_convolution_cdf(x: float, qp: float, qm: float, S: int) -> float:
    """P((q₊G₊ + q₋G₋)/S ≤ x), G± ~ χ²_S, by a scalar quadrature over G₋ (scipy.stats)."""

    def f(g):
        return stats.chi2.pdf(g, S) * stats.chi2.cdf(max(0.0, (S * x - qm * g) / qp), S)

    start = max(0.0, -S * x / -qm)
    return integrate.quad(f, start, np.inf, limit=500, epsabs=1e-13)[0]


def imhof_cdf(x: float, lambdas: list, dof: int) -> float:
    """Imhof (1961): P(Σλ_j χ²_dof ≤ x) = ½ − (1/π)∫ sin θ(u)/(u ρ(u)) du."""

    def integrand(u):
        theta = sum(dof * mp.atan(lam * u) for lam in lambdas) / 2 - x * u / 2
        rho = mp.fprod((1 + lam**2 * u**2) ** (mp.mpf(dof) / 4) for lam in lambdas)
        return mp.sin(theta) / (u * rho)

    with mp.workdps(30):
        cuts = [0] + [mp.mpf(2) ** k for k in range(-2, 14)] + [mp.inf]  # oscillations
        return float(mp.mpf(1) / 2 - mp.quad(integrand, cuts) / mp.pi)


# ---------------------------------------------------------------------------------------------
# Gaussian inputs: the generalised chi-square
# ---------------------------------------------------------------------------------------------


def test_cumulants_are_those_of_the_quadratic_form_symbolically():
    """κ_n·S^(n−1) equals n!·[tⁿ] of −½ log det(I − 2tKΩ) (the CGF of one sample's wᵀKw),
    for a symbolic 2×2 A, label variance, displacement and direction."""
    a11, a22, s2 = sp.symbols("a11 a22 s2", positive=True)
    a12, d1, d2, u1, u2, t = sp.symbols("a12 d1 d2 u1 u2 t", real=True)
    S = sp.Symbol("S", positive=True, integer=True)
    A = sp.Matrix([[a11, a12], [a12, a22]])
    land = ss.LinearRegression(A, label_variance=s2)
    law = noise_law(land, ss.MinibatchNoise(S), at=[d1, d2], direction=[u1, u2])
    # one sample: u·x (xᵀδ − ε) = wᵀKw, w = (x, ε) ~ N(0, diag(A, σ²))
    a_vec = sp.Matrix([u1, u2, 0])
    b_vec = sp.Matrix([d1, d2, -1])
    K = (a_vec * b_vec.T + b_vec * a_vec.T) / 2
    Omega = sp.diag(A, s2)
    cgf = -sp.log((sp.eye(3) - 2 * t * K * Omega).det()) / 2
    series = sp.expand(sp.series(cgf, t, 0, 5).removeO())
    for n in range(1, 5):
        single = sp.factorial(n) * series.coeff(t, n)
        assert sp.simplify(law.cumulant(n) * S ** (n - 1) - single) == 0
    # the mean is the full gradient uᵀAδ; the variance is uᵀ C(δ) u / S with C from Isserlis
    assert sp.simplify(law.mean - (a_vec[:2, 0].T * A * sp.Matrix([d1, d2]))[0, 0]) == 0
    delta = sp.Matrix([d1, d2])
    C = land.gradient_covariance(delta * delta.T)
    u = sp.Matrix([u1, u2])
    assert sp.simplify(law.variance - (u.T * C * u)[0, 0] / S) == 0


def test_cumulant_of_any_order_and_the_symmetry_at_the_minimum():
    a, sigma = sp.symbols("a sigma", positive=True)
    S = ss.batch_size
    law = noise_law(ss.LinearRegression(a, label_variance=sigma**2), ss.MinibatchNoise(S), at=0)
    for n in (1, 3, 5, 7):
        assert law.cumulant(n) == 0  # q₋ = −q₊: every odd cumulant vanishes
    assert sp.simplify(law.cumulant(6) - 2**5 * 120 * 2 * (a * sigma**2 / 4) ** 3 / S**5) == 0
    assert sp.simplify(law.excess_kurtosis - 6 / S) == 0  # 3·(1/S)·(κ₄/κ₂² of one draw = 6)
    away = noise_law(ss.LinearRegression(a, label_variance=sigma**2), ss.MinibatchNoise(S), at=1)
    g1 = sp.simplify(away.skewness * sp.sqrt(S))
    assert S not in g1.free_symbols and g1 != 0  # skewness ∝ S^(−1/2)


@pytest.mark.parametrize(
    ("A", "sigma2", "at", "u", "S"),
    [
        (1, 1, 0, 1, 2),  # the minimum: symmetric law
        (1, 1, 1, 1, 2),  # away from it: skewed
        ([[2, 1], [1, 1]], 0.5, [1, 0], [0, 1], 3),  # two parameters, a projection
    ],
)
def test_gaussian_law_against_simulated_gradients(A, sigma2, at, u, S):
    land = ss.LinearRegression(A, label_variance=sigma2)
    noise = ss.MinibatchNoise(S)
    law = noise_law(land, noise, at=at, direction=u)
    x = draws(land, noise, at, np.atleast_1d(u), seed=11)
    k, se = sample_cumulants(x)
    exact = np.array([float(c) for c in law.cumulants])
    assert np.all(np.abs(k - exact) <= 5 * se), (k, exact, se)
    # the exact cdf against the empirical one (DKW), and the Kolmogorov distance to the normal
    assert ecdf_distance(x, law.cdf, grid_size=3000) <= DKW
    mean, sd = float(law.mean), math.sqrt(float(law.variance))
    empirical_distance = ecdf_distance(x, lambda t: special.ndtr((t - mean) / sd))
    assert abs(empirical_distance - law.kolmogorov()) <= DKW
    assert law.kolmogorov() > 5 * DKW  # the law is visibly not normal at this S
    assert law.kolmogorov() <= law.berry_esseen()


@pytest.mark.parametrize("S", [1, 2, 5, 40])
def test_exact_cdf_against_imhof_and_a_scalar_convolution(S):
    law = noise_law(ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(S), at=1)
    qp, qm = (float(q) for q in law.weights)
    sd = math.sqrt(float(law.variance))
    xs = float(law.mean) + sd * np.array([-2.5, -1.0, -0.3, 0.0, 0.4, 1.5, 3.0])
    ours = law.cdf(xs)
    for x, value in zip(xs, ours):
        assert abs(value - chi2_convolution_cdf(x, qp, qm, S)) < 1e-9
        if S >= 5:  # Imhof's integrand decays like u^(−1−S): mpmath is reliable from here
            assert abs(value - imhof_cdf(x, [qp / S, qm / S], S)) < 1e-9


def test_third_absolute_moment_by_a_fine_grid():
    law = noise_law(ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(4), at=1)
    qp, qm = (float(q) for q in law.weights)
    z = np.linspace(-12, 12, 4001)
    Z1, Z2 = np.meshgrid(z, z)
    f = np.abs(qp * (Z1**2 - 1) + qm * (Z2**2 - 1)) ** 3 * np.exp(-(Z1**2 + Z2**2) / 2)
    grid = f.sum() * (z[1] - z[0]) ** 2 / (2 * math.pi)
    assert law.third_absolute_moment() == pytest.approx(grid, rel=1e-6)
    rho, sigma1 = law.third_absolute_moment(), math.sqrt(float(law.variance) * 4)
    assert law.berry_esseen() == pytest.approx(BERRY_ESSEEN_CONSTANT * rho / sigma1**3 / 2)


def fitted_slope(S_values, distances) -> float:
    return float(np.polyfit(np.log(S_values), np.log(distances), 1)[0])


def test_kolmogorov_distance_falls_like_1_over_S_at_the_minimum_and_1_over_root_S_away():
    """Fitted log-log slopes −1 (symmetric law at the minimum: the skewness vanishes, the
    first Edgeworth term is the kurtosis one, O(1/S)) and −½ (skewed law away from it), with
    the Edgeworth constants: |γ₁|/(6√(2π)) away, |γ₂|·max|φHe₃|/24 at the minimum."""
    land = ss.LinearRegression(1, label_variance=1)
    S_values = [64, 128, 256, 512, 1024]
    at_min, away, laws_min, laws_away = [], [], [], []
    for S in S_values:
        law0 = noise_law(land, ss.MinibatchNoise(S), at=0)
        law1 = noise_law(land, ss.MinibatchNoise(S), at=1)
        at_min.append(law0.kolmogorov())
        away.append(law1.kolmogorov())
        laws_min.append(law0)
        laws_away.append(law1)
        assert at_min[-1] <= law0.berry_esseen() and away[-1] <= law1.berry_esseen()
    assert fitted_slope(S_values, at_min) == pytest.approx(-1.0, abs=0.02)
    assert fitted_slope(S_values, away) == pytest.approx(-0.5, abs=0.02)
    z = np.linspace(0, 4, 40001)
    peak = np.max(np.abs(np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi) * (z**3 - 3 * z)))
    g2 = float(laws_min[-1].excess_kurtosis)
    assert at_min[-1] == pytest.approx(abs(g2) * peak / 24, rel=0.02)
    g1 = float(laws_away[-1].skewness)
    assert away[-1] == pytest.approx(abs(g1) / (6 * math.sqrt(2 * math.pi)), rel=0.05)


# ---------------------------------------------------------------------------------------------
# finite data sets: the sampling design
# ---------------------------------------------------------------------------------------------


def enumerated_cumulants(values: list, S: int, replacement: bool) -> list[Fraction]:
    """κ₁..κ₄ of the batch mean by listing every ordered draw (with replacement) or subset."""
    N = len(values)
    if replacement:
        batches = list(itertools.product(range(N), repeat=S))
    else:
        batches = list(itertools.combinations(range(N), S))
    means = [sum((values[i] for i in b), Fraction(0)) / S for b in batches]
    w = Fraction(1, len(batches))
    m = [sum((w * x**r for x in means), Fraction(0)) for r in range(1, 5)]
    k1 = m[0]
    c2 = m[1] - k1**2
    c3 = m[2] - 3 * k1 * m[1] + 2 * k1**3
    c4 = m[3] - 4 * k1 * m[2] + 6 * k1**2 * m[1] - 3 * k1**4
    return [k1, c2, c3, c4 - 3 * c2**2]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-5, 5), min_size=2, max_size=6),
    S=st.integers(1, 4),
    replacement=st.booleans(),
)
def test_finite_population_cumulants_against_enumeration(values, S, replacement):
    if not replacement and S > len(values):
        S = len(values)
    ours = finite_population_cumulants(values, S, replacement)
    reference = enumerated_cumulants([Fraction(v) for v in values], S, replacement)
    assert [sp.Rational(r.numerator, r.denominator) for r in reference] == ours


def test_without_replacement_is_not_the_iid_law_times_the_finite_population_factor():
    S, N = 2, 5
    values = [0, 0, 0, 1, 4]
    wr = finite_population_cumulants(values, S, replacement=True)
    wo = finite_population_cumulants(values, S, replacement=False)
    factor = sp.Rational(N - S, N - 1)
    assert wo[1] == factor * wr[1]  # the variance is the familiar (N − S)/(N − 1) factor …
    assert wo[2] != factor * wr[2] and wo[3] != factor * wr[3]  # … the rest are not
    full = finite_population_cumulants(values, N, replacement=False)
    assert full[1:] == [0, 0, 0]  # S = N: the batch is the data set


@settings(derandomize=True, max_examples=15, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=3, max_size=5),
    theta=st.tuples(st.integers(-2, 2), st.integers(-2, 2)),
    S=st.integers(1, 3),
    replacement=st.booleans(),
)
def test_noise_law_of_a_data_set_against_enumerated_gradients(rows, theta, S, replacement):
    """The per-sample gradients x_i(x_iᵀθ − y_i) written here, every batch listed."""
    X = [[x1, 1] for x1, _ in rows]  # an intercept keeps XᵀX invertible when x1 varies
    if len({x1 for x1, _ in rows}) < 2:
        X[0][0] += 1
    y = [y_ for _, y_ in rows]
    land = ss.LinearRegression.from_data(X, y)
    S = min(S, len(X)) if not replacement else S
    u = [1, -2]
    law = noise_law(
        land, ss.MinibatchNoise(S, replacement=replacement), at=list(theta), direction=u
    )
    grads = [
        sum(Fraction(u[j]) * xi[j] for j in range(2))
        * (sum(Fraction(xi[j]) * theta[j] for j in range(2)) - yi)
        for xi, yi in zip(X, y)
    ]
    reference = enumerated_cumulants(grads, S, replacement)
    assert [sp.Rational(r.numerator, r.denominator) for r in reference] == list(law.cumulants)


DATA = np.random.default_rng(5).normal(size=(9, 2)).round(2)
LABELS = (DATA @ [1.0, -0.5] + np.random.default_rng(6).normal(size=9)).round(2)


@pytest.mark.parametrize("replacement", [True, False])
def test_data_set_law_against_simulated_minibatches(replacement):
    land = ss.LinearRegression.from_data(DATA.tolist(), LABELS.tolist())
    noise = ss.MinibatchNoise(3, replacement=replacement)
    at, u = [0.6, -0.1], [1.0, 0.5]
    law = noise_law(land, noise, at=at, direction=u)
    assert law.cdf_method.startswith("exact")
    x = draws(land, noise, at, u, seed=3)
    k, se = sample_cumulants(x)
    exact = np.array([float(c) for c in law.cumulants])
    assert np.all(np.abs(k - exact) <= 5 * se), (k, exact, se)
    # a discrete law: compare the empirical cdf at the atoms (DKW) and the Kolmogorov distance
    atoms = np.unique(np.round(x, 9))
    emp = np.searchsorted(np.sort(x), atoms + 1e-9, side="right") / len(x)
    assert np.max(np.abs(emp - law.cdf(atoms + 1e-9))) <= DKW
    mean, sd = float(law.mean), math.sqrt(float(law.variance))
    Phi = special.ndtr((atoms - mean) / sd)
    below = np.concatenate([[0.0], emp[:-1]])
    empirical_distance = max(np.max(np.abs(emp - Phi)), np.max(np.abs(below - Phi)))
    assert abs(empirical_distance - law.kolmogorov()) <= DKW
    if replacement:
        assert law.kolmogorov() <= law.berry_esseen()
    else:
        assert law.berry_esseen() is None


def test_large_designs_fall_back_to_edgeworth_and_say_so():
    land = ss.LinearRegression.from_data(DATA.tolist(), LABELS.tolist())
    law = noise_law(land, ss.MinibatchNoise(9, replacement=True), at=[0.6, -0.1], direction=[1, 0])
    assert law.cdf_method.startswith("exact")  # C(17, 9) = 24310 multisets
    big = ss.LinearRegression.from_data(
        np.vstack([DATA] * 4).tolist(), np.concatenate([LABELS] * 4).tolist()
    )
    law = noise_law(big, ss.MinibatchNoise(8, replacement=False), at=[0.6, -0.1], direction=[1, 0])
    assert law.cdf_method.startswith("approximate: second-order Edgeworth")
    assert 0 < law.kolmogorov() < 0.2


# ---------------------------------------------------------------------------------------------
# the noise pooled over the stationary law of θ
# ---------------------------------------------------------------------------------------------

A_SYM = sp.Symbol("a", positive=True)
ONLINE = ss.stationary(
    ss.SGD(ss.lr), ss.LinearRegression(A_SYM, label_variance=1), ss.MinibatchNoise(ss.batch_size)
)
POINT = {ss.lr: sp.Rational(3, 10), A_SYM: 1, ss.batch_size: 2}  # tail index α ≈ 10


def test_pooled_moments_against_the_library_and_the_fixed_theta_law():
    p = pooled_noise(ONLINE, POINT)
    assert p.tail_index.alpha >= 8
    assert p.tail_index.alpha == tail_index(ONLINE, POINT).alpha  # the iterates' index
    m = stationary_moments(ONLINE, {k: float(v) for k, v in POINT.items()})
    assert [float(v) for v in p.theta_moments] == pytest.approx(list(m.moments), rel=1e-12)
    assert p.theta_moments[1] == sp.nsimplify(ONLINE.cov.subs(POINT))
    # E[ξ⁴ | θ] from χ²/Gaussian moments equals κ₄ + 3κ₂² of the generalised chi-square at θ
    u = sp.Symbol("u", real=True)
    law = noise_law(ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(2), at=u)
    fixed = law.cumulants[3] + 3 * law.cumulants[1] ** 2
    assert sp.simplify(p.conditional_fourth.subs(sp.Symbol("u", real=True), u) - fixed) == 0
    assert p.kurtosis_at_minimum == 3 + law.excess_kurtosis.subs(u, 0)
    assert p.kurtosis > p.kurtosis_at_minimum  # mixing over θ fattens the tails


def test_pooled_moments_symbolic_second_moment():
    """E ξ² = (2a²E u² + σ²a)/S with E u² the library's Var θ (weight decay 0)."""
    p = pooled_noise(ONLINE)
    a, S = A_SYM, ss.batch_size
    expected = (2 * a**2 * ONLINE.cov + a) / S
    assert sp.simplify(p.second_moment - expected) == 0


def test_pooled_fourth_moment_and_kurtosis_against_the_real_optimizer():
    """SGD's own step on the simulator's minibatch oracle; the noise ξ_t = ĝ_t(θ_t) − a(θ_t −
    θ*) recorded at every step after burn-in; standard errors over independent chains."""
    p = pooled_noise(ONLINE, POINT)
    problem = prepare(
        ss.SGD(ss.lr),
        ss.LinearRegression(A_SYM, label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
        POINT,
    )
    chains, burn_in, steps = 4000, 60, 600
    grad = problem.oracle.make(np.random.default_rng(2024), chains)
    precondition = problem.precondition()
    theta = np.zeros((1, chains))
    m2 = np.zeros(chains)
    m4 = np.zeros(chains)
    recorded = {}

    def recording(x):
        g = grad(x)
        recorded["xi"] = (g - problem.hessian @ x)[0]  # θ* = 0
        return g

    for t in range(burn_in + steps):
        (theta,) = problem.stepper.step((theta,), recording, precondition)
        if t >= burn_in:
            xi = recorded["xi"]
            m2 += xi**2
            m4 += xi**4
    m2, m4 = m2 / steps, m4 / steps
    se2, se4 = m2.std(ddof=1) / math.sqrt(chains), m4.std(ddof=1) / math.sqrt(chains)
    assert abs(m2.mean() - float(p.second_moment)) <= 5 * se2
    assert abs(m4.mean() - float(p.fourth_moment)) <= 5 * se4
    kurt = m4.mean() / m2.mean() ** 2
    # delta method over chains for the ratio
    grad_k = np.array([-2 * m4.mean() / m2.mean() ** 3, 1 / m2.mean() ** 2])
    cov = np.cov(np.vstack([m2, m4])) / chains
    se_k = math.sqrt(grad_k @ cov @ grad_k)
    assert abs(kurt - float(p.kurtosis)) <= 5 * se_k
    assert abs(kurt - float(p.kurtosis_at_minimum)) > 5 * se_k  # pooled ≠ fixed θ


def test_pooled_noise_refuses_infinite_moments_and_other_problems():
    with pytest.raises(ValueError, match=r"E u\^4 is infinite.*tail index is ≤ 4"):
        pooled_noise(ONLINE, {ss.lr: sp.Rational(1, 2), A_SYM: 1, ss.batch_size: 1})
    r = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(1), ss.AdditiveNoise(1))
    with pytest.raises(NotImplementedError, match="covers MinibatchNoise on an explicit Line"):
        pooled_noise(r)
    with pytest.raises(TypeError, match=r"ss\.stationary"):
        pooled_noise(object())


# ---------------------------------------------------------------------------------------------
# heavy ball against its Langevin picture
# ---------------------------------------------------------------------------------------------


def discrete_heavy_ball(lam, mu, h, c):
    """Var θ, Var v, Cov(θ_t, v_t) of z = (θ_t, θ_{t−1}), z' = Mz + (−λξ, 0): the discrete
    Lyapunov equation Σ = MΣMᵀ + BBᵀc solved by sympy here."""
    M = sp.Matrix([[1 + mu - lam * h, -mu], [1, 0]])
    s11, s12, s22 = sp.symbols("s11 s12 s22")
    Sig = sp.Matrix([[s11, s12], [s12, s22]])
    B = sp.Matrix([-lam, 0])
    eqs = Sig - M * Sig * M.T - B * B.T * c
    sol = sp.solve([eqs[0, 0], eqs[0, 1], eqs[1, 1]], [s11, s12, s22], dict=True)[0]
    var = sol[s11]
    var_v = 2 * sol[s11] - 2 * sol[s12]
    cross = sol[s11] - sol[s12]
    return var, var_v, cross


def test_langevin_against_independent_lyapunov_solutions():
    h, c = sp.symbols("h c", positive=True)
    lam, mu = ss.lr, ss.momentum
    r = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    cmp = langevin(r)
    var, var_v, cross = discrete_heavy_ball(lam, mu, h, c)
    assert sp.simplify(cmp.var_theta_exact - var) == 0
    assert sp.simplify(cmp.var_v_exact - var_v) == 0
    assert sp.simplify(cmp.correlation_exact**2 - cross**2 / (var * var_v)) == 0
    assert sp.simplify(cmp.var_theta_ratio - 2 * (1 + mu) / (2 + 2 * mu - lam * h)) == 0
    assert sp.simplify(sp.limit(cmp.var_theta_ratio, lam, 0)) == 1
    # at fixed μ the velocity is not Langevin: v' = μv − λξ gives Var v → λ²c/(1 − μ²), so the
    # ratio tends to 2/(1 + μ); the Langevin limit holds the friction (1 − μ)/√λ = g fixed
    assert sp.simplify(sp.limit(cmp.var_v_ratio, lam, 0) - 2 / (1 + mu)) == 0
    g, eps = sp.symbols("g epsilon", positive=True)
    scaling = {lam: eps**2, mu: 1 - g * eps}
    assert sp.limit(cmp.var_v_ratio.subs(scaling), eps, 0) == 1
    assert sp.limit(cmp.var_theta_ratio.subs(scaling), eps, 0) == 1
    assert sp.limit(cmp.correlation_exact.subs(scaling), eps, 0) == 0
    # the Langevin side: the stationary covariance of dθ = p dt, dp = (−γp − hθ)dt + √D dW
    point = {lam: 0.2, mu: 0.8, h: 1.5, c: 0.7}
    step = math.sqrt(point[lam])
    friction = (1 - point[mu]) / step
    D = point[c] * point[lam] / step
    F = np.array([[0.0, 1.0], [-point[h], -friction]])
    P = scipy.linalg.solve_continuous_lyapunov(F, -np.diag([0.0, D]))
    assert float(cmp.step.subs(point)) == pytest.approx(step)
    assert float(cmp.friction.subs(point)) == pytest.approx(friction)
    assert float(cmp.var_theta_langevin.subs(point)) == pytest.approx(P[0, 0], rel=1e-12)
    assert float(cmp.var_v_langevin.subs(point)) == pytest.approx(point[lam] * P[1, 1], rel=1e-12)
    assert abs(P[0, 1]) < 1e-12 and cmp.correlation_langevin == 0
    assert float(cmp.correlation_exact.subs(point)) > 0.1  # not zero in discrete time


def test_langevin_with_minibatch_noise_uses_the_stationary_noise_level():
    r = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(1, label_variance=1),
        ss.MinibatchNoise(4),
    ).subs({ss.lr: sp.Rational(1, 10), ss.momentum: sp.Rational(1, 2)})
    cmp = langevin(r)
    c = r.noise_cov
    assert cmp.temperature == sp.Rational(1, 10) * c / (2 * sp.Rational(1, 2))
    # Cov(θ_t, v_t) = ½ Var v in discrete time, whatever the noise
    assert (
        sp.simplify(cmp.correlation_exact - sp.sqrt(cmp.var_v_exact / cmp.var_theta_exact) / 2) == 0
    )
    sim = ss.simulate(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(1, label_variance=1),
        ss.MinibatchNoise(4),
        {ss.lr: 0.1, ss.momentum: 0.5},
        seed=7,
        chains=2000,
        steps=2000,
    )
    assert abs(sim.cov[0, 0] - float(cmp.var_theta_exact)) <= 5 * sim.cov_stderr[0, 0]
    assert abs(sim.velocity_cov[0, 0] - float(cmp.var_v_exact)) <= 5 * sim.velocity_cov_stderr[0, 0]


def test_langevin_refuses_other_optimizers():
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(1), ss.AdditiveNoise(1))
    with pytest.raises(TypeError, match="heavy-ball"):
        langevin(r)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly():
    land = ss.LinearRegression(sp.eye(2), label_variance=1)
    with pytest.raises(ValueError, match="give direction="):
        noise_law(land, ss.MinibatchNoise(2), at=[0, 0])
    with pytest.raises(ValueError, match="at must have 2 entries"):
        noise_law(land, ss.MinibatchNoise(2), at=[0], direction=[1, 0])
    with pytest.raises(ValueError, match="nonzero"):
        noise_law(land, ss.MinibatchNoise(2), at=[0, 0], direction=[0, 0])
    with pytest.raises(TypeError, match="per-sample gradients"):
        noise_law(ss.Quadratic(1), ss.MinibatchNoise(2), at=0)
    with pytest.raises(TypeError, match="MinibatchNoise"):
        noise_law(ss.LinearRegression(1, label_variance=1), ss.AdditiveNoise(1), at=0)
    point_mass = noise_law(ss.LinearRegression(1, label_variance=0), ss.MinibatchNoise(2), at=0)
    with pytest.raises(ValueError, match="point mass"):
        point_mass.kolmogorov()
    symbolic = noise_law(ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(2), at="t")
    with pytest.raises(ValueError, match=r"needs a value for every parameter.*t"):
        symbolic.cdf(0.0)
    with pytest.raises(ValueError, match="order must be an integer"):
        finite_population_cumulants([1, 2], 1, True, order=0)


def test_pooled_moments_with_weight_decay_against_stationary_moments():
    """u = θ − θ* = δ + (θ_γ − θ*) with δ the deviation symsgd.tails measures."""
    r = ss.stationary(
        ss.SGD(ss.lr, weight_decay=ss.weight_decay),
        ss.LinearRegression(1, label_variance=1, theta_star=[2]),
        ss.MinibatchNoise(2),
    )
    point = {ss.lr: sp.Rational(3, 10), ss.weight_decay: sp.Rational(1, 5)}
    p = pooled_noise(r, point)
    d = stationary_moments(r, {k: float(v) for k, v in point.items()}).moments
    b = float(-point[ss.weight_decay] * 2 / (1 + point[ss.weight_decay]))
    expected = [d[0] + b, d[1] + 2 * b * d[0] + b**2]
    assert [float(v) for v in p.theta_moments[:2]] == pytest.approx(expected, rel=1e-12)


def test_local_problem_of_a_quadratic_model_has_the_same_law_as_its_data_set():
    w, x, y = sp.symbols("w x y")
    data = [[1, 1], [2, 3], [sp.Rational(1, 2), -1]]
    model = ss.EmpiricalLoss((w * x - y) ** 2 / 2, params=[w], inputs=[x, y], data=data)
    star = model.minimum(start=[0])
    at = [star[0] + sp.Rational(3, 10)]
    noise = ss.MinibatchNoise(2, replacement=False)
    local = noise_law(model.near(star), noise, at=at)
    direct = noise_law(
        ss.LinearRegression.from_data([[1], [2], [sp.Rational(1, 2)]], [1, 3, -1]), noise, at=at
    )
    assert [sp.simplify(p - q) for p, q in zip(local.cumulants, direct.cumulants)] == [0] * 4
    assert local.kolmogorov() == pytest.approx(direct.kolmogorov(), abs=1e-14)


# ---------------------------------------------------------------------------------------------
# the pooled noise beyond scalar SGD: d = 2, finite data sets, heavy ball
# ---------------------------------------------------------------------------------------------

A2 = sp.Matrix([[1, sp.Rational(1, 2)], [sp.Rational(1, 2), 2]])
STAR2 = [1, -1]
X4 = [[1, 0], [0, 1], [1, 1], [2, -1]]
Y4 = [1, 2, 0, 1]


def online_d2(decay=True):
    opt = ss.SGD(ss.lr, weight_decay=ss.weight_decay) if decay else ss.SGD(ss.lr)
    land = ss.LinearRegression(A2, label_variance=1, theta_star=STAR2)
    return ss.stationary(opt, land, ss.MinibatchNoise(2))


def data_d2(replacement: bool):
    return ss.stationary(
        ss.SGD(ss.lr, weight_decay=ss.weight_decay),
        ss.LinearRegression.from_data(X4, Y4),
        ss.MinibatchNoise(2, replacement=replacement),
    )


D2_POINT = {ss.lr: 0.1, ss.weight_decay: 0.2}


def kron_oracle(draws, H, r, lam, gamma=0.0, mu=None):
    r"""E ξξᵀ and E ξ^{⊗4} pooled over the stationary law, written independently of the
    library: absolute coordinates θ (and θ_{t−1} for heavy ball) made homogeneous, the explicit
    update with ĝ_b(θ) = H_bθ − r_b for each weighted draw b, the stationary moment equations
    vec W = E[Ã^{⊗k}] vec W solved with np.kron, and ξ_b = (H_b − H)θ − (r_b − r)."""
    d = H.shape[0]
    n1 = (d if mu is None else 2 * d) + 1
    As, Xis, ws = [], [], []
    for w, Hb, rb in draws:
        A = np.zeros((n1, n1))
        if mu is None:
            A[:d, :d] = np.eye(d) - lam * (Hb + gamma * np.eye(d))
        else:
            A[:d, :d] = (1 + mu) * np.eye(d) - lam * Hb
            A[:d, d : 2 * d] = -mu * np.eye(d)
            A[d : 2 * d, :d] = np.eye(d)
        A[:d, -1] = lam * rb
        A[-1, -1] = 1.0
        Xi = np.zeros((d, n1))
        Xi[:, :d] = Hb - H
        Xi[:, -1] = -(rb - r)
        As.append(A)
        Xis.append(Xi)
        ws.append(w)
    out = []
    for k in (2, 4):
        T = np.zeros((n1**k, n1**k))
        E = np.zeros((d**k, n1**k))
        for w, A, Xi in zip(ws, As, Xis):
            KA, KX = A, Xi
            for _ in range(k - 1):
                KA, KX = np.kron(KA, A), np.kron(KX, Xi)
            T += w * KA
            E += w * KX
        system = np.eye(n1**k) - T
        system[-1] = 0.0
        system[-1, -1] = 1.0
        rhs = np.zeros(n1**k)
        rhs[-1] = 1.0
        out.append((E @ np.linalg.solve(system, rhs)).reshape((d,) * k))
    return out


def gaussian_draws(A, star, sigma, S, nodes=5):
    """Tensor Gauss–Hermite quadrature over the S inputs and label noises (exact for the
    polynomials of degree ≤ 2·nodes − 1 in each variable: the 4-tensors have degree 8)."""
    d = A.shape[0]
    LA = np.linalg.cholesky(A)
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    dims = S * (d + 1)
    draws = []
    for idx in itertools.product(range(nodes), repeat=dims):
        v = z[list(idx)].reshape(S, d + 1)
        weight = float(np.prod(w[list(idx)]))
        xs = v[:, :d] @ LA.T
        ys = xs @ star + sigma * v[:, d]
        draws.append((weight, xs.T @ xs / S, xs.T @ ys / S))
    return draws


def data_draws(X, Y, S, replacement):
    """Every ordered minibatch (uniform over N^S tuples, or over the ordered S-subsets)."""
    N = X.shape[0]
    if replacement:
        tuples = list(itertools.product(range(N), repeat=S))
    else:
        tuples = list(itertools.permutations(range(N), S))
    return [
        (1 / len(tuples), X[list(b)].T @ X[list(b)] / S, X[list(b)].T @ Y[list(b)] / S)
        for b in tuples
    ]


def test_pooled_second_moment_is_the_lyapunov_identity():
    """SGD: Σ = MΣMᵀ + λ²E[ξξᵀ] at stationarity, so E ξξᵀ = (Σ − MΣMᵀ)/λ² (Σ the library's
    Var θ): d = 2 online with weight decay and θ* ≠ 0, and a data set both ways."""
    H_on = np.array(A2, dtype=float)
    H_data = np.array(X4, float).T @ np.array(X4, float) / 4
    for r, H in ((online_d2(), H_on), (data_d2(True), H_data), (data_d2(False), H_data)):
        p = pooled_noise(r, D2_POINT)
        assert isinstance(p, PooledNoiseMoments) and "pooled over the stationary" in p.scope
        Sigma = np.array(r.cov.subs(D2_POINT), dtype=float)
        M = np.eye(2) - 0.1 * (H + 0.2 * np.eye(2))
        assert p.second == pytest.approx((Sigma - M @ Sigma @ M.T) / 0.01, rel=1e-9)


def test_pooled_moments_agree_with_the_symbolic_scalar_path():
    numeric = pooled_noise_moments(ONLINE, POINT)
    exact = pooled_noise(ONLINE, POINT)
    assert numeric.second_moment() == pytest.approx(float(exact.second_moment), rel=1e-12)
    assert numeric.fourth_moment() == pytest.approx(float(exact.fourth_moment), rel=1e-10)
    assert numeric.kurtosis() == pytest.approx(float(exact.kurtosis), rel=1e-10)
    assert numeric.tail_index.alpha == exact.tail_index.alpha


def test_pooled_d2_online_against_a_gauss_hermite_kronecker_oracle():
    p = pooled_noise(online_d2(), D2_POINT)
    A = np.array(A2, dtype=float)
    star = np.array(STAR2, float)
    draws = gaussian_draws(A, star, 1.0, 2)
    second, fourth = kron_oracle(draws, A, A @ star, 0.1, gamma=0.2)
    assert p.second == pytest.approx(second, rel=1e-9, abs=1e-12)
    assert p.fourth == pytest.approx(fourth, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("replacement", [True, False])
def test_pooled_data_set_against_enumerated_ordered_batches(replacement):
    p = pooled_noise(data_d2(replacement), D2_POINT)
    X, Y = np.array(X4, float), np.array(Y4, float)
    draws = data_draws(X, Y, 2, replacement)
    second, fourth = kron_oracle(draws, X.T @ X / 4, X.T @ Y / 4, 0.1, gamma=0.2)
    assert p.second == pytest.approx(second, rel=1e-9, abs=1e-12)
    assert p.fourth == pytest.approx(fourth, rel=1e-8, abs=1e-12)
    assert "enumerated" in p.method


HB = ss.stationary(
    ss.HeavyBall(ss.lr, ss.momentum),
    ss.LinearRegression(1, label_variance=1),
    ss.MinibatchNoise(2),
)
HB_POINT = {ss.lr: 0.1, ss.momentum: 0.5}


def test_pooled_heavy_ball_against_a_gauss_hermite_kronecker_oracle():
    p = pooled_noise(HB, HB_POINT)
    draws = gaussian_draws(np.eye(1), np.zeros(1), 1.0, 2)
    second, fourth = kron_oracle(draws, np.eye(1), np.zeros(1), 0.1, mu=0.5)
    assert p.second == pytest.approx(second, rel=1e-9)
    assert p.fourth == pytest.approx(fourth, rel=1e-8)


def simulate_noise(r, point, grad_mean, directions, chains=2000, burn_in=150, steps=500, seed=7):
    """Run the optimizer's own step on the simulator's real minibatch oracle and record
    ξ_t = ĝ_t(x_t) − ∇L(x_t) at the point x_t where the step takes its gradient; per-chain time
    averages of (u·ξ)² and (u·ξ)⁴ for each direction u (one independent sample per chain)."""
    rec = r.recursion
    problem = prepare(rec.optimizer, rec.landscape, rec.noise, point)
    grad = problem.oracle.make(np.random.default_rng(seed), chains)
    pre = problem.precondition()
    U = np.asarray(directions, float)
    state = problem.stepper.initial_state(np.repeat(problem.theta_min[:, None], chains, axis=1))
    m2 = np.zeros((len(U), chains))
    m4 = np.zeros((len(U), chains))
    last = {}

    def recording(x):
        g = grad(x)
        last["xi"] = g - grad_mean(x)
        return g

    for t in range(burn_in + steps):
        state = problem.stepper.step(state, recording, pre)
        if t >= burn_in:
            proj = U @ last["xi"]
            m2 += proj**2
            m4 += proj**4
    return m2 / steps, m4 / steps


def assert_pooled_matches(p, m2, m4, directions, z=5.0):
    chains = m2.shape[1]
    for k, u in enumerate(directions):
        se2 = m2[k].std(ddof=1) / math.sqrt(chains)
        se4 = m4[k].std(ddof=1) / math.sqrt(chains)
        assert abs(m2[k].mean() - p.second_moment(u)) <= z * se2
        assert abs(m4[k].mean() - p.fourth_moment(u)) <= z * se4
        grad_k = np.array([-2 * m4[k].mean() / m2[k].mean() ** 3, 1 / m2[k].mean() ** 2])
        se_k = math.sqrt(grad_k @ (np.cov(np.vstack([m2[k], m4[k]])) / chains) @ grad_k)
        assert abs(m4[k].mean() / m2[k].mean() ** 2 - p.kurtosis(u)) <= z * se_k


DIRS2 = [[1, 0], [0, 1], [1, 1], [1, -2]]


def test_pooled_d2_online_against_the_real_optimizer():
    r = online_d2()
    p = pooled_noise(r, D2_POINT)
    assert p.tail_index.bracket[0] >= 8  # the fourth moment's standard error is valid
    A, star = np.array(A2, dtype=float), np.array(STAR2, float)[:, None]
    m2, m4 = simulate_noise(r, D2_POINT, lambda x: A @ (x - star), DIRS2)
    assert_pooled_matches(p, m2, m4, DIRS2)


@pytest.mark.parametrize("replacement", [True, False])
def test_pooled_data_set_against_the_real_optimizer(replacement):
    r = data_d2(replacement)
    p = pooled_noise(r, D2_POINT)
    assert p.tail_index.bracket[0] >= 8
    X, Y = np.array(X4, float), np.array(Y4, float)[:, None]
    m2, m4 = simulate_noise(r, D2_POINT, lambda x: X.T @ (X @ x - Y) / 4, DIRS2, seed=11)
    assert_pooled_matches(p, m2, m4, DIRS2)


def test_pooled_heavy_ball_against_the_real_optimizer():
    p = pooled_noise(HB, HB_POINT)
    assert p.tail_index.bracket[0] >= 8
    m2, m4 = simulate_noise(HB, HB_POINT, lambda x: x, [[1.0]], chains=3000, seed=5)
    assert_pooled_matches(p, m2, m4, [[1.0]])
    assert p.kurtosis() > 3 + 6 / 2  # heavier than the fixed-θ* law's 3 + 6/S


def test_pooled_moments_refuse_clearly():
    with pytest.raises(ValueError, match="give direction="):
        pooled_noise(online_d2(), D2_POINT).kurtosis()
    lr_edge = {ss.lr: 0.36, ss.weight_decay: 0.0}  # ρ = 0.75 < 1 but ρ₄ = 3.0 ≥ 1
    p = pooled_noise(online_d2(), lr_edge)
    assert p.fourth is None and "infinite" in p.fourth_reason
    with pytest.raises(ValueError, match="no fourth moment here — infinite"):
        p.kurtosis([1, 0])
    w, x, y = sp.symbols("w x y")
    model = ss.EmpiricalLoss((w * x - y) ** 2 / 2, [w], [x, y], [[1, 1], [2, 3], [-1, 0]])
    r = ss.stationary(ss.SGD(ss.lr), model.near(model.minimum(start=[0])), ss.MinibatchNoise(2))
    with pytest.raises(NotImplementedError, match="EmpiricalLoss local problems"):
        pooled_noise(r, {ss.lr: 0.1})


@settings(derandomize=True, max_examples=10, deadline=None)
@given(
    d=st.integers(1, 2),
    N=st.integers(3, 5),
    S=st.integers(1, 3),
    replacement=st.booleans(),
    momentum=st.booleans(),
    entries=st.lists(st.integers(-2, 2), min_size=15, max_size=15),
)
def test_pooled_data_sets_against_the_kronecker_oracle(d, N, S, replacement, momentum, entries):
    """Random small data sets, both designs, SGD or heavy ball: every moment against the
    enumerated-batch Kronecker oracle."""
    S = min(S, N if replacement else N - 1)
    X = np.array(entries[: N * d], float).reshape(N, d)
    Y = np.array(entries[N * d : N * d + N], float) + 0.5
    H = X.T @ X / N
    if np.linalg.eigvalsh(H)[0] < 0.2:
        X = X + np.eye(N, d) * 2  # make XᵀX well conditioned
        H = X.T @ X / N
    lam = 0.15 / np.linalg.eigvalsh(H)[-1]
    opt = ss.HeavyBall(ss.lr, ss.momentum) if momentum else ss.SGD(ss.lr)
    point = {ss.lr: lam, ss.momentum: 0.3} if momentum else {ss.lr: lam}
    r = ss.stationary(
        opt,
        ss.LinearRegression.from_data(X.astype(int).tolist(), (2 * Y).astype(int).tolist()),
        ss.MinibatchNoise(S, replacement=replacement),
    )
    p = pooled_noise_moments(r, point)
    draws = data_draws(X, 2 * Y, S, replacement)
    second, fourth = kron_oracle(draws, H, X.T @ (2 * Y) / N, lam, mu=0.3 if momentum else None)
    scale = np.max(np.abs(second))
    assert p.second == pytest.approx(second, rel=1e-8, abs=1e-12 + 1e-10 * scale)
    assert p.fourth is not None
    assert p.fourth == pytest.approx(fourth, rel=1e-7, abs=1e-12 + 1e-9 * scale**2)


def test_pooled_rank_deficient_data_set_is_lifted_to_the_original_coordinates():
    """X of rank 1 in d = 2: the library works on range(Xᵀ); ξ = Uξ_c.  References: the
    Lyapunov identity in the original coordinates, and the Kronecker oracle on the data
    projected by this test's own SVD basis, lifted back."""
    X = np.array([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0], [-1.0, -1.0]])
    Y = np.array([1.0, 0.0, 2.0, 1.0])
    r = ss.stationary(
        ss.SGD(ss.lr),
        ss.LinearRegression.from_data(X.astype(int).tolist(), [1, 0, 2, 1]),
        ss.MinibatchNoise(2, replacement=False),
    )
    p = pooled_noise(r, {ss.lr: 0.1})
    assert p.second.shape == (2, 2) and "lifted" in p.method
    H = X.T @ X / 4
    Mx = np.eye(2) - 0.1 * H
    reduction = r.recursion.landscape.reduction
    cov_c = sp.Matrix([[r.cov.subs(ss.lr, 0.1)]]) if r.cov.is_number else r.cov.subs(ss.lr, 0.1)
    Sigma = np.array(reduction.lift(cov_c).evalf(), dtype=float)
    assert p.second == pytest.approx((Sigma - Mx @ Sigma @ Mx.T) / 0.01, rel=1e-9)
    U = np.linalg.svd(X)[2][:1].T  # this test's own basis of range(Xᵀ)
    draws = data_draws(X @ U, Y, 2, replacement=False)
    second_c, fourth_c = kron_oracle(draws, U.T @ H @ U, U.T @ X.T @ Y / 4, 0.1)
    assert p.second == pytest.approx(U @ second_c @ U.T, rel=1e-9)
    lifted = np.einsum("ai,bj,ck,dl,ijkl->abcd", U, U, U, U, fourth_c)
    assert p.fourth == pytest.approx(lifted, rel=1e-8)
    assert abs(p.second_moment([1, -1])) < 1e-12 * p.second_moment([1, 1])  # none along ker X
