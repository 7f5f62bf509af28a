"""General per-sample losses: ss.EmpiricalLoss, its minimum, its local problem (near) and the exact
stationary law of the linearised dynamics.

Independent oracles: per-sample gradients and Hessians of the two-layer tanh network written out
by hand here; the stationary covariance of linearised SGD by enumerating every minibatch (its
exact random linear map) and one dense Kronecker solve; linear regression through the separate
``LinearRegression.from_data`` code path.  The Monte Carlo half (the real optimizer on the real
loss) is in tests/test_nonlinear.py.
"""

from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symsgd as ss
from symsgd import models

# -- independent oracles ------------------------------------------------------------------------


def tanh_terms(theta, data):
    """Per-sample loss, gradient and Hessian of ½(b·tanh(a x) − y)², derived by hand."""
    a, b = theta
    x, y = data[:, 0], data[:, 1]
    t = np.tanh(a * x)
    s2 = 1 - t**2  # sech²
    r = b * t - y
    g = np.stack([r * b * x * s2, r * t], axis=1)
    haa = (b * x * s2) ** 2 + r * b * x**2 * (-2 * t * s2)
    hab = t * b * x * s2 + r * x * s2
    hbb = t**2
    H = np.stack([np.stack([haa, hab], 1), np.stack([hab, hbb], 1)], 1)
    return 0.5 * r**2, g, H


def enumerated_sgd_cov(Hs, gs, S, lr, replacement, gamma=0.0, theta_star=None, at_decay=False):
    """Stationary second moment of linearised SGD θ' = θ − λ(ĝ_B(θ) + γθ) about its fixed point,
    every minibatch enumerated: δ' = (I − λ(Ĥ_B + γI))δ − λc_B with c_B = ĝ_B + Ĥ_B b + γθ_γ
    (ĝ_B(θ) the batch mean of g_i + H_i(θ − θ*); ``at_decay``: θ* is the fixed point itself)."""
    N, d = gs.shape
    H = Hs.mean(axis=0)
    star = np.zeros(d) if theta_star is None else np.asarray(theta_star, dtype=float)
    theta_g = star if at_decay else np.linalg.solve(H + gamma * np.eye(d), H @ star)
    b = theta_g - star
    if replacement:
        batches = [(idx, 1.0 / N**S) for idx in itertools.product(range(N), repeat=S)]
    else:
        subsets = list(itertools.combinations(range(N), S))
        batches = [(idx, 1.0 / len(subsets)) for idx in subsets]
    T = np.zeros((d * d, d * d))
    F = np.zeros((d, d))
    for idx, p in batches:
        HB = sum(Hs[i] for i in idx) / S
        cB = sum(gs[i] for i in idx) / S + HB @ b + gamma * theta_g
        R = np.eye(d) - lr * (HB + gamma * np.eye(d))
        T += p * np.kron(R, R)
        F += p * lr**2 * np.outer(cB, cB)
    return np.linalg.solve(np.eye(d * d) - T, F.reshape(-1)).reshape(d, d)


def tanh_data(seed: int, N: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    y = 0.8 * np.tanh(2.0 * x) + 0.1 * rng.normal(size=N)
    return np.c_[x, y]


def floats(m) -> np.ndarray:
    m = m if isinstance(m, (sp.MatrixBase, list)) else [[m]]  # 1-d results are scalars
    return np.array(sp.Matrix(m).evalf(), dtype=float)


# -- the minimum ----------------------------------------------------------------------------------


def test_minimum_is_exact_when_a_rational_point_solves_the_exact_gradient():
    w, x, y = sp.symbols("w x y")
    model = ss.EmpiricalLoss((w * x - y) ** 2 / 2, [w], [x, y], [[1, 1], [2, 3], [-1, 0]])
    # least squares: Σxy / Σx² = 7/6
    assert model.minimum(start=[5]) == sp.Matrix([sp.Rational(7, 6)])


def test_minimum_of_the_double_well_is_the_exact_surd():
    model = models.double_well([[1, 1], [1, 3], [2, 1]])
    # minima at w² = mean(xy)/mean(x²) = 6/6 = 1 ... with these rows: (1+3+2)/(1+1+4) = 1
    assert model.minimum(start=[0.3]) == sp.Matrix([1])
    assert model.minimum(start=[-2]) == sp.Matrix([-1])
    model = models.double_well([[1, 1], [1, 3]])
    assert model.minimum(start=[1]) == sp.Matrix([sp.sqrt(2)])


def test_minimum_of_the_tanh_network_has_thirty_digits():
    data = tanh_data(0, 64)
    model = models.two_layer_tanh(data)
    star = model.minimum(start=[0.5, 0.5])
    assert all(isinstance(v, sp.Float) and v._prec >= 99 for v in star)  # ≥ 30 digits
    # the hand-derived full gradient, evaluated in mpmath at 40 digits, vanishes to ~1e-28
    with mpmath.workdps(40):
        a, b = (mpmath.mpf(str(v)) for v in star)
        grad = [mpmath.mpf(0), mpmath.mpf(0)]
        for xv, yv in data:
            xv, yv = mpmath.mpf(xv), mpmath.mpf(yv)
            t = mpmath.tanh(a * xv)
            r = b * t - yv
            grad[0] += r * b * xv * (1 - t**2)
            grad[1] += r * t
        assert max(abs(g) for g in grad) / len(data) < mpmath.mpf(10) ** -27
    # and it is a minimum of the hand-derived loss (float64 check on a small circle)
    loss0 = tanh_terms(floats(star).ravel(), data)[0].mean()
    for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        shifted = floats(star).ravel() + 1e-3 * np.array([np.cos(angle), np.sin(angle)])
        assert tanh_terms(shifted, data)[0].mean() > loss0


def test_a_start_that_finds_no_minimum_is_a_clear_error():
    # separable data: the logistic loss decreases forever along w → ∞
    model = models.logistic_regression([[1.0], [2.0], [-1.0], [-3.0]], [1, 1, 0, 0])
    with pytest.raises(ValueError, match=r"found no minimum.*L2"):
        model.minimum(start=[0.1])
    # with an L2 term it has one
    regular = models.logistic_regression([[1.0], [2.0], [-1.0], [-3.0]], [1, 1, 0, 0], l2=0.1)
    star = regular.minimum(start=[0.1])
    assert abs(float(regular.gradient(floats(star).ravel())[0])) < 1e-12


def test_a_saddle_is_refused_by_minimum_and_by_near():
    model = models.double_well([[1, 1], [1, 3]])
    with pytest.raises(
        ValueError, match=r"saddle point or a maximum.*eigenvalue -4"
    ):  # −2·mean(xy)
        model.minimum(start=[0])  # the gradient vanishes at the start: the barrier top
    with pytest.raises(ValueError, match="saddle point or a maximum"):
        model.near([0])


def test_near_refuses_a_point_that_is_not_stationary():
    model = models.double_well([[1, 1], [1, 3]])
    with pytest.raises(ValueError, match=r"not a stationary point.*minimum\(start"):
        model.near([1])
    data = tanh_data(1, 16)
    with pytest.raises(ValueError, match="not a stationary point"):
        models.two_layer_tanh(data).near([0.5, 0.5])


# -- bad models -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": sp.Abs(sp.Symbol("w") - sp.Symbol("x"))}, "Abs.*not differentiable"),
        ({"loss": sp.Max(sp.Symbol("w"), sp.Symbol("x"))}, "Max.*not differentiable"),
        ({"loss": sp.Symbol("w") * sp.Symbol("q")}, "uses q, which is neither"),
        ({"params": ["w"]}, "params must hold sympy Symbols"),
        ({"params": []}, "params is empty"),
        ({"inputs": [sp.Symbol("w")]}, "both a parameter and an input"),
        ({"data": [[1, 2], [3, 4]]}, "one value per input \\(1 inputs\\)"),
        ({"data": []}, "data is empty"),
        ({"data": "abc"}, "data must be a table"),
        ({"data": [[float("nan")]]}, "finite"),
        ({"loss": sp.Matrix([sp.Symbol("w")])}, "scalar sympy expression"),
        ({"loss": "w**2"}, "loss must be a sympy expression"),
    ],
)
def test_bad_models_get_clear_errors(kwargs, match):
    w, x = sp.symbols("w x")
    base = {"loss": (w - x) ** 2, "params": [w], "inputs": [x], "data": [[1], [2]]}
    with pytest.raises((ValueError, TypeError), match=match):
        ss.EmpiricalLoss(**{**base, **kwargs})


def test_theta_of_the_wrong_length_is_refused():
    model = models.two_layer_tanh(tanh_data(0, 8))
    with pytest.raises(ValueError, match="2 entries"):
        model.minimum(start=[0.5])
    with pytest.raises(ValueError, match="2 entries"):
        model.near([0.5, 0.5, 1])


# -- the local problem ----------------------------------------------------------------------------


def test_near_gives_the_hand_derived_per_sample_terms():
    data = tanh_data(2, 40)
    model = models.two_layer_tanh(data)
    local = model.near(model.minimum(start=[0.5, 0.5]))
    theta = floats(local.theta_star).ravel()
    _, g, H = tanh_terms(theta, data)
    Xs, cs = local.numeric_sample_terms()
    np.testing.assert_allclose(Xs, H, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(-cs, g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(floats(local.hessian), H.mean(axis=0), rtol=1e-12)
    assert local.precision == "float64" and local.flat_directions == ()


def test_exact_data_near_an_exact_minimum_gives_the_linear_regression_answer_exactly():
    """Least squares written as a per-sample loss is LinearRegression.from_data: both code paths
    must give the same exact stationary law (with and without replacement, with weight decay)."""
    w1, w2, x1, x2, y = sp.symbols("w1 w2 x1 x2 y")
    X = [[1, 0], [1, 1], [0, 2], [2, -1]]
    Y = [1, 2, 2, 0]
    model = ss.EmpiricalLoss(
        (w1 * x1 + w2 * x2 - y) ** 2 / 2, [w1, w2], [x1, x2, y], [[*r, v] for r, v in zip(X, Y)]
    )
    star = model.minimum(start=[0, 0])
    reference = ss.LinearRegression.from_data(X, Y)
    assert star == sp.Matrix(reference.theta_star)
    local = model.near(star)
    assert local.precision == "exact" and local.hessian == reference.hessian
    for replacement, gamma in ((True, 0), (False, 0), (True, sp.Rational(1, 10))):
        noise = ss.MinibatchNoise(2, replacement=replacement)
        mine = ss.stationary(ss.SGD(ss.lr, weight_decay=gamma), local, noise)
        theirs = ss.stationary(ss.SGD(ss.lr, weight_decay=gamma), reference, noise)
        assert (mine.cov - theirs.cov).applyfunc(sp.cancel).is_zero_matrix
        assert sp.cancel(mine.loss - theirs.loss) == 0


@pytest.mark.parametrize("replacement", [True, False])
def test_linearised_sgd_law_matches_every_minibatch_enumerated(replacement):
    data = tanh_data(3, 6)
    model = models.two_layer_tanh(data)
    local = model.near(model.minimum(start=[0.5, 0.5]))
    theta = floats(local.theta_star).ravel()
    _, g, H = tanh_terms(theta, data)
    for lr in (0.05, 0.5):
        r = ss.stationary(ss.SGD(lr), local, ss.MinibatchNoise(3, replacement=replacement))
        oracle = enumerated_sgd_cov(H, g, 3, lr, replacement)
        np.testing.assert_allclose(floats(r.cov), oracle, rtol=1e-9, atol=1e-15)
    # the symbolic-λ answer, evaluated, is the same law
    r = ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(3, replacement=replacement))
    np.testing.assert_allclose(
        floats(r.cov.subs(ss.lr, sp.Rational(1, 2))),
        enumerated_sgd_cov(H, g, 3, 0.5, replacement),
        rtol=1e-9,
    )


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10**6),
    N=st.integers(3, 6),
    S=st.integers(1, 3),
    replacement=st.booleans(),
    lr=st.floats(0.01, 1.0),
    gamma=st.sampled_from([0.0, 0.05]),
)
def test_random_tanh_problems_match_the_enumeration_oracle(seed, N, S, replacement, lr, gamma):
    if not replacement and S > N:
        return
    data = tanh_data(seed, N)
    model = models.two_layer_tanh(data)
    try:
        star = model.minimum(start=[0.7, 0.7])
    except ValueError:  # no minimum from this start (e.g. the saddle at the origin): skip data
        return
    local = model.near(star)
    theta = floats(local.theta_star).ravel()
    _, g, H = tanh_terms(theta, data)
    opt = ss.SGD(lr, weight_decay=gamma)
    noise = ss.MinibatchNoise(S, replacement=replacement)
    try:
        r = ss.stationary(opt, local, noise)
    except (ss.UnstableError, ValueError) as exc:
        # the oracle's second-moment map must then have spectral radius ≥ 1 (or a flat H)
        assert "flat" in str(exc) or "spectral radius" in str(exc) or "never hold" in str(exc)
        return
    oracle = enumerated_sgd_cov(H, g, S, lr, replacement, gamma, theta)
    scale = np.max(np.abs(oracle)) + 1e-300
    assert np.max(np.abs(floats(r.cov) - oracle)) <= 1e-7 * scale + 1e-25  # S = N: no noise


# -- flat directions ------------------------------------------------------------------------------


def test_a_manifold_of_minima_reports_its_flat_direction_and_asks_for_weight_decay():
    model = models.two_layer_linear([[1, 1], [2, 3], [-1, -1]])
    star = model.minimum(start=[1, 2])
    local = model.near(star)
    a, b = floats(star).ravel()
    assert abs(a * b - 4 / 3) < 1e-12  # a·b = Σxy/Σx² = 8/6
    (flat,) = local.flat_directions
    v = floats(flat).ravel()
    # tangent to the hyperbola a·b = const: (a, −b) up to sign and scale
    assert abs(v @ np.array([b, a])) < 1e-12
    with pytest.raises(ValueError, match=r"singular.*flat along.*minimum-norm point"):
        ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(1))
    with pytest.raises(ValueError, match=r"not the one this local problem was expanded for"):
        ss.stationary(ss.SGD(0.02, weight_decay=0.05), local, ss.MinibatchNoise(1))
    # weight decay γ: expand at the minimum of L + γ|θ|²/2 — the balanced point |a| = |b| of the
    # hyperbola, shrunk; the law exists, is certified and matches the enumeration oracle
    gamma = sp.Rational(1, 20)
    star_g = model.minimum(start=[1, 2], weight_decay=gamma)
    a_g, b_g = floats(star_g).ravel()
    assert abs(abs(a_g) - abs(b_g)) < 1e-12
    # stationarity of the weight-decayed loss, by hand: (ab·Σx² − Σxy)/N · (b, a) + γ(a, b) = 0
    residual = (a_g * b_g * 6 - 8) / 3
    assert abs(residual * b_g + 0.05 * a_g) < 1e-12
    local_g = model.near(star_g, weight_decay=gamma)
    assert local_g.mean_gradient == -gamma * sp.Matrix(local_g.theta_star)
    r = ss.stationary(ss.SGD(sp.Rational(1, 50), weight_decay=gamma), local_g, ss.MinibatchNoise(1))
    Hraw, graw = local_g.numeric_terms()
    oracle = enumerated_sgd_cov(Hraw, graw, 1, 0.02, True, 0.05, [a_g, b_g], at_decay=True)
    np.testing.assert_allclose(floats(r.cov), oracle, rtol=1e-8)
    data = np.array([[1, 1], [2, 3], [-1, -1]], dtype=float)
    assert data.shape == (3, 2)


# -- noise approximations --------------------------------------------------------------------------


def test_noise_approximations_beside_the_exact_per_sample_covariance():
    data = tanh_data(4, 200)
    model = models.two_layer_tanh(data)
    local = model.near(model.minimum(start=[0.5, 0.5]))
    approx = local.noise_approximations()
    theta = floats(local.theta_star).ravel()
    loss, g, H = tanh_terms(theta, data)
    C1 = g.T @ g / len(g)
    np.testing.assert_allclose(floats(approx.exact), C1, rtol=1e-10)
    # the per-sample covariance is what MinibatchNoise's Fisher means (S-independent)
    np.testing.assert_allclose(floats(ss.MinibatchNoise(7).fisher(local)), C1, rtol=1e-10)
    np.testing.assert_allclose(floats(approx.loss_hessian), 2 * loss.mean() * H.mean(0), rtol=1e-10)
    Hm = H.mean(0)
    c = np.trace(C1 @ Hm) / np.trace(Hm @ Hm)
    np.testing.assert_allclose(floats(approx.proportional), c * Hm, rtol=1e-10)
    for name, M in (("loss_hessian", 2 * loss.mean() * Hm), ("proportional", c * Hm)):
        expected = np.linalg.norm(M - C1) / np.linalg.norm(C1)
        assert approx.errors[name] == pytest.approx(expected, rel=1e-9)
    # least squares is the best multiple of H
    assert approx.errors["proportional"] <= approx.errors["loss_hessian"] + 1e-12
    noise = approx.noise("proportional", 4)
    np.testing.assert_allclose(floats(noise.C), c * Hm / 4, rtol=1e-10)
    with pytest.raises(ValueError, match="name must be"):
        approx.noise("diagonal", 4)


# -- symbolic data ---------------------------------------------------------------------------------


def test_symbolic_data_near_an_exact_stationary_point():
    s = sp.Symbol("s", positive=True)
    w, x, y = sp.symbols("w x y")
    model = ss.EmpiricalLoss((w * x - y) ** 2 / 2, [w], [x, y], [[s, 2 * s], [1, 0]])
    star = 2 * s**2 / (s**2 + 1)
    local = model.near([star])
    assert sp.simplify(local.hessian[0, 0] - (s**2 + 1) / 2) == 0
    with pytest.raises(ValueError, match="not a stationary point"):
        model.near([1])
    with pytest.raises(ValueError, match=r"symbols.*no numeric data"):
        model.minimum(start=[1])
    r = ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(1))
    # one more independent check: at s = 1 the data are x = (1, 1), y = (2, 0), w* = 1 and
    # residuals ±1; SGD with S = 1: δ' = (1 − λ)δ ∓ λ, so Var = λ²/(1 − (1 − λ)²) = λ/(2 − λ)
    assert sp.simplify(r.cov.subs(s, 1) - ss.lr / (2 - ss.lr)) == 0


def test_catalogue_models_build_and_state_their_parameters():
    assert models.two_layer_tanh([[1, 1], [2, 1]], width=2).params == sp.symbols("a_1 b_1 a_2 b_2")
    assert models.double_well([[1, 1]], dims=2).dim == 2
    with pytest.raises(ValueError, match="dims must be 1 or 2"):
        models.double_well([[1, 1]], dims=3)
    with pytest.raises(ValueError, match="one label 0 or 1"):
        models.logistic_regression([[1.0], [2.0]], [1, 2])


@pytest.mark.parametrize("name", sorted(models.EXAMPLES))
def test_every_built_in_example_has_a_minimum_and_a_local_problem(name):
    model, star = models.example(name)
    theta = floats(star).ravel()
    # a minimum: zero gradient, and the loss rises in every direction of a small circle
    assert np.max(np.abs(model.gradient(theta))) < 1e-12
    local = model.near(star)
    flat = [floats(v).ravel() for v in local.flat_directions]
    rng = np.random.default_rng(0)
    for _ in range(8):
        u = rng.normal(size=model.dim)
        for v in flat:  # along a flat direction the loss is constant to second order
            u -= (u @ v) * v
        u *= 1e-3 / np.linalg.norm(u)
        assert model.value(theta + u) > model.value(theta)
    assert bool(flat) == (name == "two-layer-linear")
    if not flat:
        r = ss.stationary(ss.SGD(0.01), local, ss.MinibatchNoise(4))
        assert np.all(np.linalg.eigvalsh(floats(r.cov)) > 0)
    with pytest.raises(ValueError, match="unknown model"):
        models.example("resnet")


def test_an_exact_minimum_with_a_surd_is_recognised_as_stationary():
    w, x = sp.symbols("w x")
    model = ss.EmpiricalLoss((w**3 / 3 + w**2 / 2) * x - w * x, [w], [x], [1, 2, 3])
    star = model.minimum(start=[1])  # w² + w − 1 = 0: the golden ratio conjugate
    assert sp.simplify(star[0] - (sp.sqrt(5) - 1) / 2) == 0
    local = model.near(star)
    assert local.precision == "exact"
    assert sp.simplify(local.hessian[0, 0] - 2 * (2 * star[0] + 1)) == 0  # mean x = 2


def test_exact_flat_directions_are_an_orthonormal_basis_of_the_null_space():
    w1, w2, x, y = sp.symbols("w1 w2 x y")
    model = ss.EmpiricalLoss(
        (w1 * x + 2 * w2 * x - y) ** 2 / 2, [w1, w2], [x, y], [[1, 1], [2, 3], [-1, 0]]
    )
    local = model.near(model.minimum(start=[0, 0]))
    assert local.precision == "exact"
    (v,) = local.flat_directions
    assert sp.simplify((v.T * v)[0, 0]) == 1  # unit length, exactly
    assert (sp.Matrix(local.hessian) * v).applyfunc(sp.simplify) == sp.zeros(2, 1)
