"""Noise geometry (symsgd.geometry) against independent references.

References written here: Gaussian moments through a Cholesky factor and the moments of standard
normals (not Isserlis' matrix formula); per-sample gradients and a central-difference Jacobian
for the two-layer network; brute-force optimisation of the alignment over θ; the dense
Kronecker second-moment map of tests/oracle_kron.py (never imports symsgd); the Kesten exponent
κ by quadrature against the χ²₁ density; and the real optimizer (its own step, real minibatches
from symsgd.sampling.prepare) for every simulation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize

import symsgd as ss
from symsgd import geometry as geo
from symsgd.models import two_layer_tanh
from symsgd.sampling import prepare
from tests import oracle_kron as ok

# ---------------------------------------------------------------------------------------------
# population alignment, symbolically
# ---------------------------------------------------------------------------------------------


def gaussian_sigma1(L: sp.Matrix, u: sp.Matrix, sigma2) -> sp.Matrix:
    """Cov[x(xᵀu − ε)] for x = Lz, z ~ N(0, I): expand in z and replace each monomial by its
    standard-normal moment (E z⁴ = 3, E z² = 1, odd moments 0)."""
    d = L.rows
    z = sp.symbols(f"z_1:{d + 1}")
    x = L * sp.Matrix(z)
    r = (x.T * u)[0, 0]
    second = (x * x.T * (r**2 + sigma2)).applyfunc(sp.expand)  # E ε² = σ², E ε = 0

    def expect(expr):
        poly = sp.Poly(expr, *z)
        total = 0
        for powers, coeff in poly.terms():
            m = 1
            for p in powers:
                m *= 0 if p % 2 else math.prod(range(p - 1, 0, -2))
            total += coeff * m
        return sp.expand(total)

    mean = (x * r).applyfunc(lambda e: expect(sp.expand(e)))
    return (second.applyfunc(expect) - mean * mean.T).applyfunc(sp.expand)


def test_population_alignment_matches_gaussian_moments_and_bounds():
    l11, l22 = sp.symbols("l11 l22", positive=True)
    l21 = sp.Symbol("l21", real=True)
    s2 = sp.Symbol("s2", positive=True)
    L = sp.Matrix([[l11, 0], [l21, l22]])
    A = (L * L.T).applyfunc(sp.expand)
    p = geo.population_alignment(ss.LinearRegression(A, label_variance=s2))
    u, v = p.u, p.v
    reference = gaussian_sigma1(L, u, s2)
    assert (p.sigma1 - reference).applyfunc(sp.expand).is_zero_matrix
    uAu, vAv, uAv = ((a.T * A * b)[0, 0] for a, b in ((u, u), (v, v), (u, v)))
    # g − 1 = (vᵀAu)² / ((uᵀAu + σ²) vᵀAv) and the Gram identity behind the upper bound
    assert sp.simplify(p.directional - 1 - uAv**2 / ((uAu + s2) * vAv)) == 0
    gram = sp.expand(uAu * vAv - uAv**2 - A.det() * (u[0] * v[1] - u[1] * v[0]) ** 2)
    assert gram == 0  # so (vᵀAu)² ≤ uᵀAu·vᵀAv: g ≤ 1 + uᵀAu/(uᵀAu + σ²), equality at v = u
    assert sp.simplify(p.directional.subs(dict(zip(v, u))) - p.directional_bounds[1]) == 0
    assert p.directional_bounds[0] == 1
    assert sp.simplify(p.mu - 1 - (u.T * A**3 * u)[0, 0] / ((uAu + s2) * (A**2).trace())) == 0


def test_population_mu_bounds_diagonal_and_noiseless():
    a1, a2 = sp.symbols("a1 a2", positive=True)
    p = geo.population_alignment(ss.LinearRegression(sp.diag(a1, a2), label_variance=1))
    assert sp.simplify(p.mu_bounds[1] - (1 + sp.Max(a1**2, a2**2) / (a1**2 + a2**2))) == 0
    assert p.mu_bounds[0] == 1
    # approached along the top eigenvector as |u| → ∞, never exceeded
    mu = sp.lambdify([a1, a2, *p.u], p.mu)
    assert mu(2, 1, 1e6, 0) == pytest.approx(1 + 4 / 5, rel=1e-9)
    assert mu(2, 1, 0, 0) == 1
    q = geo.population_alignment(ss.LinearRegression(sp.diag(2, 1), label_variance=0))
    assert q.mu_bounds == (1 + sp.Rational(1, 5), 1 + sp.Rational(4, 5))
    iso = geo.population_alignment(ss.LinearRegression(3 * sp.eye(4), label_variance=0))
    assert iso.mu_bounds == (sp.Rational(5, 4), sp.Rational(5, 4))  # σ² = 0: μ ≡ 1 + 1/d


def test_population_alignment_against_sampled_gradients():
    """Σ₁ of 4·10⁵ simulated per-sample gradients x(xᵀu − ε) within 5 standard errors."""
    rng = np.random.default_rng(7)
    A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    star = np.array([0.5, -1.0, 0.25])
    theta = np.array([1.0, 0.0, -0.5])
    land = ss.LinearRegression(sp.Matrix(A), label_variance=sp.Rational(1, 2), theta_star=star)
    exact = geo.alignment(land, theta)
    n = 400_000
    x = rng.standard_normal((n, 3)) @ np.linalg.cholesky(A).T
    y = x @ star + math.sqrt(0.5) * rng.standard_normal(n)
    g = x * (x @ theta - y)[:, None]
    c = g - g.mean(axis=0)
    products = np.einsum("ni,nj->nij", c, c)
    se = products.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(products.mean(axis=0) - exact.sigma1) < 5 * se)
    loss = 0.5 * np.mean((x @ theta - y) ** 2)
    assert exact.loss == pytest.approx(loss, rel=0.01)
    assert 1 <= exact.mu <= 1 + np.max(np.linalg.eigvalsh(A)) ** 2 / np.sum(A * A)


# ---------------------------------------------------------------------------------------------
# the exact range over θ
# ---------------------------------------------------------------------------------------------


def _data(seed: int, N: int, d: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, d)), rng.normal(size=N)


@pytest.mark.parametrize("direction", [None, [1.0, -0.5, 2.0]])
def test_alignment_range_contains_2000_displacements_and_is_attained(direction):
    X, y = _data(3, 7, 3)
    land = ss.LinearRegression.from_data(X, y)
    rng_ = geo.alignment_range(land, direction)
    rng = np.random.default_rng(11)
    star = np.array([float(v) for v in land.theta_star])
    scales = 10.0 ** rng.uniform(-3, 3, size=2000)
    values = []
    for s in scales:
        at = geo.alignment(land, star + s * rng.standard_normal(3))  # per-sample Σ₁, brute force
        values.append(at.mu if direction is None else at.directional(direction))
    assert all(rng_.contains(v) for v in values)
    assert rng_.low < min(values) and max(values) < rng_.high  # the extremes are not random luck
    for target, where in ((rng_.low, rng_.argmin), (rng_.high, rng_.argmax)):
        assert where is not None  # residuals never vanish on a generic data set: attained
        at = geo.alignment(land, where)
        value = at.mu if direction is None else at.directional(direction)
        assert value == pytest.approx(target, rel=1e-9)


def test_alignment_range_population_and_interpolation():
    A = np.diag([2.0, 1.0])
    land = ss.LinearRegression(sp.Matrix(A), label_variance=1, theta_star=[1, 1])
    r = geo.alignment_range(land)
    assert r.low == pytest.approx(1.0) and r.high == pytest.approx(1 + 4 / 5)
    assert np.allclose(r.argmin, [1, 1])  # μ = 1 at the minimum
    assert r.argmax is None  # 1 + λ²max/TrA² is approached only as |u| → ∞
    g = geo.alignment_range(land, [1.0, 0.0])
    assert g.high == pytest.approx(2.0) and g.argmax is None  # sup 2 only at |u| → ∞
    # over-parameterised, interpolating data (singular XᵀX, zero loss on an affine set)
    X, y = _data(5, 2, 3)
    r = geo.alignment_range((X, y))
    assert r.argmax is not None and r.argmin is not None
    G = X.T @ X / 2

    def mu(theta):
        res = X @ theta - y
        g = X * res[:, None]
        sigma1 = g.T @ g / 2 - np.outer(g.mean(0), g.mean(0))
        return np.trace(sigma1 @ G) / (res @ res / 2 * np.sum(G * G))

    assert mu(r.argmax) == pytest.approx(r.high, rel=1e-9)
    samples = [mu(np.random.default_rng(k).normal(size=3) * 3) for k in range(300)]
    assert all(r.contains(s) for s in samples)


def _brute_force_extremes(X, y, direction):
    N, d = X.shape
    G = X.T @ X / N

    def value(theta):
        res = X @ theta - y
        g = X * res[:, None]
        sigma1 = g.T @ g / N - np.outer(g.mean(0), g.mean(0))
        loss2 = res @ res / N
        if direction is None:
            return np.trace(sigma1 @ G) / (loss2 * np.sum(G * G))
        v = np.asarray(direction)
        return v @ sigma1 @ v / (loss2 * (v @ G @ v))

    rng = np.random.default_rng(0)
    best_lo, best_hi = np.inf, -np.inf

    def theta(phi):  # 3φ/(1 − |φ|²): every θ from the open unit ball (|θ| → ∞ at the sphere)
        return 3 * phi / (1 - min(float(phi @ phi), 1 - 1e-12))

    for _ in range(12):
        start = rng.normal(size=d)
        start *= rng.uniform(0.1, 0.95) / np.linalg.norm(start)
        for sign in (1, -1):
            res = optimize.minimize(
                lambda p, s=sign: s * value(theta(p)) if p @ p < 1 else 1e9,
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 4000},
            )
            if sign == 1:
                best_lo = min(best_lo, res.fun)
            else:
                best_hi = max(best_hi, -res.fun)
    return best_lo, best_hi


@settings(
    derandomize=True,
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    N=st.integers(2, 6),
    d=st.integers(1, 2),
    seed=st.integers(0, 10_000),
    directional=st.booleans(),
)
def test_alignment_range_vs_brute_force_optimisation(N, d, seed, directional):
    X, y = _data(seed, N, d)
    direction = np.ones(d) if directional else None
    r = geo.alignment_range((X, y), direction)
    lo, hi = _brute_force_extremes(X, y, direction)
    scale = max(1.0, abs(r.high))
    assert lo >= r.low - 1e-9 * scale and hi <= r.high + 1e-9 * scale  # nothing beyond
    assert lo == pytest.approx(r.low, abs=2e-4 * scale)  # and the extremes are reached
    assert hi == pytest.approx(r.high, abs=2e-4 * scale)


# ---------------------------------------------------------------------------------------------
# stationary alignment: a ratio of means, against the real optimizer
# ---------------------------------------------------------------------------------------------


def test_stationary_alignment_ratio_of_means_vs_simulation():
    X, y = _data(21, 6, 2)
    land = ss.LinearRegression.from_data(X, y)
    lr = 0.3
    noise = ss.MinibatchNoise(2)
    result = ss.stationary(ss.SGD(ss.lr), land, noise)
    exact = geo.stationary_alignment(result, {ss.lr: lr})
    problem = prepare(ss.SGD(ss.lr), land, noise, {ss.lr: lr})
    chains, burn_in, steps = 400, 200, 1500
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(4)))
    state = problem.stepper.initial_state(np.repeat(problem.theta_min[:, None], chains, axis=1))
    grad = problem.oracle.make(rng, chains)
    pre = problem.precondition()
    N = X.shape[0]
    G = X.T @ X / N
    num, den, ratio = np.zeros(chains), np.zeros(chains), np.zeros(chains)
    for t in range(burn_in + steps):
        state = problem.stepper.step(state, grad, pre)
        if t < burn_in:
            continue
        theta = problem.stepper.readout(state)  # (d, chains)
        res = X @ theta - y[:, None]  # (N, chains)
        g = X[:, :, None] * res[:, None, :]  # (N, d, chains): per-sample gradients
        mean = g.mean(axis=0)
        sigma1 = np.einsum("nic,njc->ijc", g, g) / N - np.einsum("ic,jc->ijc", mean, mean)
        top = np.einsum("ijc,ji->c", sigma1, G)
        bottom = (res**2).mean(axis=0) * np.sum(G * G)
        num += top / steps
        den += bottom / steps
        ratio += top / bottom / steps
    estimate = num.mean() / den.mean()
    influence = (num - estimate * den) / den.mean()
    se = influence.std(ddof=1) / math.sqrt(chains)
    assert abs(estimate - exact) < 5 * se, (estimate, exact, se)
    # the mean of ratios E μ(θ) is another number (≈ 0.514 against 0.527 here, ~28 standard
    # errors apart): stationary_alignment is the ratio of means, as documented
    se_ratio = ratio.std(ddof=1) / math.sqrt(chains)
    assert abs(ratio.mean() - exact) > 10 * se_ratio
    # alignment_samples gives the per-iterate values
    thetas = problem.stepper.readout(state)
    assert np.allclose(geo.alignment_samples(land, thetas), top / bottom)


# ---------------------------------------------------------------------------------------------
# the mean-square edge against the Frobenius bound
# ---------------------------------------------------------------------------------------------


def test_edge_table_trace_not_frobenius():
    S = 4
    rows = geo.edge_table([1, 3, 10, 30, 100, 300], S)
    for row in rows:
        d = row.d
        assert row.exact == pytest.approx(2 * S / (S + d + 1), rel=1e-12)
        assert row.bound == pytest.approx(math.sqrt(S / d), rel=1e-12)
        assert row.mu == pytest.approx(1.0)
        assert row.exact <= row.bound  # the bound is a necessary condition
    assert rows[-1].trace_ratio > 0.98  # λ_c → 2S/Tr H
    fro = [r.frobenius_ratio for r in rows]
    assert fro[-1] < 0.25 and fro[-1] < fro[-2] < fro[-3]  # λ_c ‖H‖_F/√S → 0
    assert rows[-1].looseness > 2 * rows[1].looseness


def test_stability_edge_against_kronecker_oracle():
    a = np.array([3.0, 1.0, 0.5, 0.2])
    S = 2
    A = np.diag(a)

    def radius(lr):
        M, B, K = ok.state_space(ok.sgd_rule(lr, np.eye(4)), A)
        _, L = ok.online_regression_noise(A, 0.0, S, np.zeros(4))
        return ok.spectral_radius(M, B, K, L)

    reference = ok.stability_edge(radius, upper=2 / a.max())
    assert geo.stability_edge(a, S) == pytest.approx(reference, rel=1e-9)
    # the library's own recursion agrees on the side of the edge
    edge = geo.stability_edge(a, S)
    for factor, stable in ((0.999, True), (1.001, False)):
        problem = prepare(
            ss.SGD(edge * factor),
            ss.LinearRegression(sp.Matrix(A), 1),
            ss.MinibatchNoise(S),
            {},
            require_stable=False,
        )
        assert (problem.rho < 1) == stable


# ---------------------------------------------------------------------------------------------
# escape directions and mean-square blow-up without escape
# ---------------------------------------------------------------------------------------------

a_sym = sp.Symbol("a", positive=True)
SCALAR = ss.stationary(
    ss.SGD(ss.lr), ss.LinearRegression(a_sym, label_variance=0), ss.MinibatchNoise(1)
)


def kesten_kappa(lr: float) -> float:
    """κ > 0 with E|1 − λχ²₁|^κ = 1 (quadrature against the χ²₁ density)."""

    def moment(k):
        def f(x):
            return abs(1 - lr * x) ** k * x**-0.5 * math.exp(-x / 2) / math.sqrt(2 * math.pi)

        return integrate.quad(f, 0, 1 / lr)[0] + integrate.quad(f, 1 / lr, np.inf)[0] - 1

    return optimize.brentq(moment, 0.05, 2.0)


def test_mean_square_blowup_is_not_escape():
    """ρ = 2 ≥ 1 but γ < 0: E u² grows, yet almost no chain leaves the ball (Doob's bound
    (r0/R)^κ on ever leaving) and almost all converge; at γ > 0 almost every chain leaves."""
    params = {ss.lr: 1.0, a_sym: 1}
    rho = prepare(*_pieces(SCALAR), params, require_stable=False).rho
    gamma = ss.lyapunov_exponent(SCALAR, params)
    assert rho == pytest.approx(2.0) and gamma.value < 0 and gamma.exact
    R = 100.0
    sim = geo.simulate_escape(SCALAR, params, radius=R, steps=400, chains=4000, seed=1)
    bound = R ** -kesten_kappa(1.0)
    assert sim.left <= bound + 5 * math.sqrt(bound / sim.chains)
    assert sim.converged > 0.95
    params = {ss.lr: 3.0, a_sym: 1}
    gamma = ss.lyapunov_exponent(SCALAR, params)
    assert gamma.value > 0
    sim = geo.simulate_escape(SCALAR, params, radius=R, steps=600, chains=2000, seed=2)
    assert sim.left > 0.95 and sim.converged == 0


def _pieces(result):
    rec = result.recursion
    return rec.optimizer, rec.landscape, rec.noise


TWO = ss.stationary(
    ss.SGD(ss.lr),
    ss.LinearRegression(sp.diag(1, sp.Rational(1, 4)), label_variance=0),
    ss.MinibatchNoise(ss.batch_size),
)


def test_lyapunov_sign_against_escape_two_dimensional():
    for params, converges in (
        ({ss.lr: 1.2, ss.batch_size: 2}, True),
        ({ss.lr: 3.0, ss.batch_size: 1}, False),
    ):
        rho = prepare(*_pieces(TWO), params, require_stable=False).rho
        assert rho > 1
        gamma = ss.lyapunov_exponent(TWO, params, chains=300, steps=600)
        assert gamma.stationary is converges
        sim = geo.simulate_escape(TWO, params, radius=100.0, steps=500, chains=1000, seed=3)
        if converges:
            assert sim.left < 0.02 and sim.converged > 0.95
        else:
            assert sim.left > 0.95


def test_three_escape_directions_and_perron_growth_by_simulation():
    params = {ss.lr: 1.2, ss.batch_size: 2}
    e = geo.escape_directions(TWO, params, chains=300, steps=300, seed=5)
    # independent Perron vector: the dense Kronecker map of the oracle
    A = np.diag([1.0, 0.25])
    M, B, K = ok.state_space(ok.sgd_rule(1.2, np.eye(2)), A)
    _, L = ok.online_regression_noise(A, 0.0, 2, np.zeros(2))
    w, V = np.linalg.eig(ok.second_moment_map(M, B, K, L))
    top = np.argmax(np.abs(w))
    P = V[:, top].real.reshape(2, 2)
    P /= np.trace(P)
    order = np.argsort(np.diag(A))  # e.basis: ascending Hessian eigenvalues
    assert np.allclose(e.mean_square, np.diag(P)[order], atol=1e-10)
    assert e.rho == pytest.approx(abs(w[top]), rel=1e-10) and e.rho > 1
    assert e.lyapunov.value < 0 and e.gd.tolist() == [0.0, 0.0]  # |1 − λh| < 1: GD converges
    # the typical direction is another object than the mean-square one
    assert np.all(np.abs(e.typical - e.mean_square) > 5 * e.typical_stderr)
    # the real minibatch maps, population resampled by |A v|²: fractions and growth rate, within
    # 5 standard errors plus 5/particles for the O(1/particles) bias of the particle
    # approximation (measured ≈ 2/particles here: 0.0034, 0.0015, 0.0004 at 500, 1500, 5000)
    n = 3000
    g = geo.simulate_growth(TWO, params, particles=n, replicas=8, steps=120, burn_in=30)
    assert np.all(np.abs(g.fractions - e.mean_square) < 5 * g.fractions_stderr + 5 / n)
    assert abs(g.log_rho - math.log(e.rho)) < 5 * g.log_rho_stderr + 5 / n
    # ... and not the typical direction
    assert np.all(np.abs(g.fractions - e.typical) > 0.3)


def test_gd_escape_direction():
    e = geo.escape_directions(TWO, {ss.lr: 2.5, ss.batch_size: 8}, chains=50, steps=50)
    assert e.gd_factors.tolist() == pytest.approx([abs(1 - 2.5 * 0.25), abs(1 - 2.5)])
    assert e.gd.tolist() == [0.0, 1.0]  # |1 − 2.5·1| > 1: along the top Hessian direction


# ---------------------------------------------------------------------------------------------
# a two-layer network
# ---------------------------------------------------------------------------------------------


def test_two_layer_tanh_alignment_vs_independent_jacobian():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    data = np.c_[x, 0.8 * np.tanh(2 * x) + 0.1 * rng.normal(size=40)]
    model = two_layer_tanh(data, width=2)
    theta = np.array([1.5, 0.6, -0.7, 0.3])
    got = geo.alignment(model, theta)

    def f(t, xs):
        return t[1] * np.tanh(t[0] * xs) + t[3] * np.tanh(t[2] * xs)

    h = 1e-6
    J = np.stack(
        [
            (f(theta + h * np.eye(4)[k], x) - f(theta - h * np.eye(4)[k], x)) / (2 * h)
            for k in range(4)
        ],
        axis=1,
    )
    res = f(theta, x) - data[:, 1]
    g = J * res[:, None]
    assert np.allclose(got.gauss_newton, J.T @ J / 40, atol=1e-8)
    assert np.allclose(got.sigma1, np.cov(g.T, bias=True), atol=1e-8)
    assert got.loss == pytest.approx(0.5 * np.mean(res**2), rel=1e-12)
    # Hessian = G + residual term: the library's Hessian minus G is the mean of r_i ∇²f_i
    second = model.hessian(theta) - got.gauss_newton
    assert np.abs(second).max() > 1e-3  # not a quadratic model: G ≠ H away from interpolation
    same = geo.alignment(model, theta, gauss_newton=lambda t: J.T @ J / 40)
    assert same.mu == pytest.approx(got.mu, rel=1e-6)
    lo, hi = got.directional_range()
    assert lo <= got.directional(rng.normal(size=4)) <= hi


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(TypeError, match="LinearRegression"):
        geo.alignment(ss.Quadratic(1), [0.0])
    with pytest.raises(TypeError, match="Gaussian LinearRegression"):
        geo.population_alignment(ss.LinearRegression.from_data([[1], [2]], [1, 2]))
    with pytest.raises(ValueError, match="direction must have 2 entries"):
        geo.alignment_range(ss.LinearRegression(sp.eye(2), 1), [1.0])
    logistic = ss.models.logistic_regression([[1], [2], [-1]], [1, 0, 0])
    with pytest.raises(ValueError, match="Gauss–Newton"):
        geo.alignment(logistic, [0.1])
    with pytest.raises(ss.UnstableError):
        geo.stationary_alignment(SCALAR, {ss.lr: 1.0, a_sym: 1})


def test_alignment_range_large_data_set_reaches_the_population_range():
    """N = 10⁵ samples (the forms never build the N × N matrix X G Xᵀ): the exact range over θ
    is near the population's [1, 1 + λ²max/TrA²] = [1, 3/2] (d = 2, A = I, σ² = 1), and the
    extremes are attained at θ where the per-sample alignment agrees."""
    rng = np.random.default_rng(8)
    N, d = 100_000, 2
    X = rng.standard_normal((N, d))
    y = X @ np.array([1.0, -1.0]) + rng.standard_normal(N)
    r = geo.alignment_range((X, y))
    assert abs(r.low - 1) < 0.02 and abs(r.high - 1.5) < 0.03
    G = X.T @ X / N
    for target, where in ((r.low, r.argmin), (r.high, r.argmax)):
        res = X @ where - y
        g = X * res[:, None]  # per-sample gradients
        sigma1 = g.T @ g / N - np.outer(g.mean(0), g.mean(0))
        mu = np.trace(sigma1 @ G) / (res @ res / N * np.sum(G * G))
        assert mu == pytest.approx(target, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# the stationary alignment of a two-layer network (linearised dynamics around a minimum)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tanh_net():
    """b·tanh(a x) on 12 points with label noise (L* > 0): a well-conditioned minimum
    (Hessian eigenvalues 0.13 and 1.06)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=12)
    y = 2.0 * np.tanh(x) + 0.2 * rng.normal(size=12)
    model = two_layer_tanh(np.c_[x, y])
    star = model.minimum(start=[1, 2])
    return model, star, model.near(star), x, y


def hand_terms(star, x, y):
    """Per-sample gradients, Hessians and output Jacobians of ½(b tanh(ax) − y)², by hand."""
    a, b = star
    t = np.tanh(a * x)
    s2 = 1 - t**2  # sech²
    r = b * t - y
    J = np.c_[b * x * s2, t]  # ∇f
    d2f = np.zeros((len(x), 2, 2))  # ∇²f
    d2f[:, 0, 0] = -2 * b * x**2 * s2 * t
    d2f[:, 0, 1] = d2f[:, 1, 0] = x * s2
    g = r[:, None] * J
    H = np.einsum("ni,nj->nij", J, J) + r[:, None, None] * d2f
    return g, H, J, r


def test_two_layer_stationary_alignment_against_an_independent_computation(tanh_net):
    """Ratio of means over the linearised stationary law, written here from hand-derived
    per-sample terms and the library's Var θ (``result.cov``): E Tr(Σ₁G) = mean_i(g_iᵀGg_i +
    Tr(H_iGH_iΣ)) − Tr(HGHΣ) (ḡ = 0), E 2L = 2L* + Tr(HΣ), G = mean J_iJ_iᵀ."""
    model, star, local, x, y = tanh_net
    st_ = np.array([float(v) for v in star])
    g, Hs, J, r = hand_terms(st_, x, y)
    G = J.T @ J / len(x)
    H = Hs.mean(axis=0)
    assert np.allclose(H, np.array(local.hessian, dtype=float), atol=1e-10)
    result = ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(3))
    for lr in (0.05, 0.3):
        Sigma = np.array(result.cov.subs(ss.lr, lr), dtype=float)
        num = np.mean(np.einsum("ni,ij,nj->n", g, G, g)) + np.mean(
            np.einsum("nij,jk,nkl,li->n", Hs, G, Hs, Sigma)
        )
        num -= np.trace(H @ G @ H @ Sigma)
        den = (float(np.mean(r**2)) + np.trace(H @ Sigma)) * np.sum(G * G)
        got = geo.stationary_alignment(result, {ss.lr: lr})
        assert got == pytest.approx(num / den, rel=1e-9)
        v = [1.0, -0.5]
        num_v = np.mean((g @ v) ** 2) + np.mean(np.einsum("i,nij,jk,nlk,l->n", v, Hs, Sigma, Hs, v))
        num_v -= v @ H @ Sigma @ H @ v
        den_v = (float(np.mean(r**2)) + np.trace(H @ Sigma)) * (v @ G @ v)
        got_v = geo.stationary_alignment(result, {ss.lr: lr}, direction=v)
        assert got_v == pytest.approx(num_v / den_v, rel=1e-9)
    # λ → 0: the pointwise alignment of the network at its minimum
    mu_star = geo.alignment(model, st_).mu
    small = geo.stationary_alignment(result, {ss.lr: 1e-4})
    assert small == pytest.approx(mu_star, rel=1e-3)


def test_two_layer_forms_are_the_first_order_expansion_of_the_real_alignment(tanh_net):
    """At θₑ the forms give the network's exact μ; nearby they differ from it by O(|u|)."""
    model, star, local, _, _ = tanh_net
    st_ = np.array([float(v) for v in star])
    P, Q = geo.alignment_forms(local)
    w0 = np.append(st_, 1.0)
    assert w0 @ P @ w0 / (w0 @ Q @ w0) == pytest.approx(geo.alignment(model, st_).mu, rel=1e-9)
    errors = []
    for h in (0.02, 0.01, 0.005):
        th = st_ + h * np.array([1.0, -1.0])
        w = np.append(th, 1.0)
        errors.append(abs(w @ P @ w / (w @ Q @ w) - geo.alignment(model, th).mu))
    assert 1.6 < errors[0] / errors[1] < 2.4 and 1.6 < errors[1] / errors[2] < 2.4


def ratio_of_means(sim, P, Q, st_):
    """Per-chain numerator Tr(P W_c) and denominator Tr(Q W_c), W_c = E[(θ,1)(θ,1)ᵀ] of chain c
    from its time averages of δ and δδᵀ (δ = θ − θₑ)."""
    pc = sim.per_chain
    m, C = pc.mean, pc.cov
    d = st_.size
    W = np.zeros((m.shape[0], d + 1, d + 1))
    W[:, :d, :d] = C + st_[None, :, None] * m[:, None, :] + m[:, :, None] * st_[None, None, :]
    W[:, :d, :d] += np.outer(st_, st_)[None]
    W[:, :d, d] = W[:, d, :d] = st_[None] + m
    W[:, d, d] = 1.0
    return np.einsum("ij,cij->c", P, W), np.einsum("ij,cij->c", Q, W)


def ratio_and_se(parts, signs=(1,)):
    """Σ_k sign_k·(mean num_k / mean den_k) over chains and its delta-method standard error."""
    rows, grad, value = [], [], 0.0
    for (num, den), sign in zip(parts, signs):
        R = num.mean() / den.mean()
        value += sign * R
        rows += [num, den]
        grad += [sign / den.mean(), -sign * R / den.mean()]
    grad = np.array(grad)
    cov = np.atleast_2d(np.cov(np.vstack(rows))) / rows[0].size
    return value, math.sqrt(grad @ cov @ grad)


def test_two_layer_stationary_alignment_against_the_real_network(tanh_net):
    """ss.simulate of SGD on the real two-layer network (nonlinear gradients, real minibatches)
    and on its linearisation with the same minibatches (common random numbers), at λ and λ/2.
    The linearised runs match the exact ratio of means within 5 standard errors; the real
    network's departure b(λ) (paired per chain) is the O(λ) nonlinear bias: b(λ)/λ agrees at
    both λ within 5 standard errors (measured: b ≈ −0.07λ, about 30 % of the stationary shift
    μ_stat − μ(θₑ) ≈ −0.22λ)."""
    model, star, local, _, _ = tanh_net
    st_ = np.array([float(v) for v in star])
    noise = ss.MinibatchNoise(3)
    result = ss.stationary(ss.SGD(ss.lr), local, noise)
    P, Q = geo.alignment_forms(local)
    mu_star = geo.alignment(model, st_).mu
    biases = []
    for lr in (0.3, 0.15):
        exact = geo.stationary_alignment(result, {ss.lr: lr})
        kw = dict(chains=1000, steps=2000, seed=3, per_chain=True)
        real = ss.simulate(ss.SGD(ss.lr), model, noise, {ss.lr: lr}, theta0=star, **kw)
        lin = ss.simulate(ss.SGD(ss.lr), local, noise, {ss.lr: lr}, **kw)
        real_parts = ratio_of_means(real, P, Q, st_)
        lin_parts = ratio_of_means(lin, P, Q, st_)
        value, se = ratio_and_se([lin_parts])
        assert abs(value - exact) <= 5 * se
        assert abs(exact - mu_star) > 20 * se  # the stationary shift is resolved
        biases.append(ratio_and_se([real_parts, lin_parts], signs=(1, -1)))
    (b1, se1), (b2, se2) = biases
    assert abs(b1) > 10 * se1 and abs(b2) > 10 * se2  # the nonlinear bias is real …
    assert abs(b1 - 2 * b2) <= 5 * math.sqrt(se1**2 + 4 * se2**2)  # … and O(λ)
