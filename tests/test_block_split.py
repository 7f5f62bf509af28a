"""The trace split (issue 11): online Gaussian regression with a block-diagonal A, whose
minibatch noise couples the blocks only through κ = Tr(A Σ_x), solved per block with κ as an
unknown and closed by one scalar equation (symsgd.lyapunov.TraceSplitSolver; in float64
symsgd.moments.TraceSplit).

Checked against the unsplit exact elimination (d = 2, 3, exact equality), the independent
Kronecker oracle of tests/oracle_kron.py at random points and over random block structures
(hypothesis, derandomized), and a seeded simulation of the real optimizer with real Gaussian
minibatches (ss.crosscheck).  Finite data sets must not split.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symsgd as ss
from symsgd.lyapunov import TraceSplitSolver, solve
from symsgd.moments import NumericMap
from symsgd.recursion import build_recursion, numeric_recursion
from tests import oracle_kron as ok

R = sp.Rational
g = sp.Symbol("g", positive=True)
s2 = sp.Symbol("sigma2", positive=True)


def _symbols(d: int) -> tuple:
    return sp.symbols(f"a1:{d + 1}", positive=True)


def _optimizers():
    return [
        ss.SGD(ss.lr),
        ss.SGD(ss.lr, weight_decay=g),
        ss.HeavyBall(ss.lr, ss.momentum),
    ]


@pytest.mark.parametrize("d, which", [(2, 0), (2, 1), (2, 2), (3, 0), (3, 2)])
def test_split_equals_unsplit_exact(d, which):
    """Σ from the split equals the unsplit exact elimination, entry by entry, exactly (weight
    decay with θ* in one block: its offset stays in that block)."""
    a = _symbols(d)
    land = ss.LinearRegression(sp.diag(*a), label_variance=s2, theta_star=[1] + [0] * (d - 1))
    r = build_recursion(_optimizers()[which], land, ss.MinibatchNoise(ss.batch_size))
    split = solve(r, "trace-split")
    exact = solve(r, "exact")
    assert split.method == "trace-split" and split.certificate.how == "exact"
    assert (split.state_cov - exact.state_cov).applyfunc(sp.cancel).is_zero_matrix


def _oracle(opt_rule, A, sigma2, S, lr, b=None):
    d = A.shape[0]
    M, B, K = ok.state_space(opt_rule, A)
    Q0, L = ok.online_regression_noise(A, sigma2, S, np.zeros(d) if b is None else b)
    return ok.stationary_state(M, B, K, Q0, L), ok.spectral_radius(M, B, K, L)


def test_structured_d6_against_kronecker_oracle():
    """Symbolic heavy ball on diagonal A, d = 6: ``stationary`` answers with the structured
    split (certified exactly) and agrees with the Kronecker oracle at random points."""
    d = 6
    a = _symbols(d)
    r = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(sp.diag(*a), label_variance=s2),
        ss.MinibatchNoise(ss.batch_size),
    )
    assert r.method == "trace-split-structured" and r.certificate.how == "exact"
    f = r.lambdify()
    rng = np.random.default_rng(3)
    for _ in range(3):
        eig = rng.uniform(0.3, 2.0, d)
        lr, mu, S = 0.1, 0.4, 3.0
        want, rho = _oracle(ok.heavy_ball_rule(lr, mu, np.eye(d)), np.diag(eig), 0.7, S, lr)
        assert rho < 1
        got = f(lr=lr, mu=mu, S=S, sigma2=0.7, **{str(x): v for x, v in zip(a, eig)})
        np.testing.assert_allclose(np.asarray(got, float), want[:d, :d], rtol=1e-9, atol=1e-14)


def test_structured_series_matches_expanded():
    """The structured form's series (learning rate, order 3) and entries equal those of the
    expanded answer (d = 2, where both exist)."""
    a = _symbols(2)
    r = build_recursion(
        ss.SGD(ss.lr), ss.LinearRegression(sp.diag(*a), s2), ss.MinibatchNoise(ss.batch_size)
    )
    structured = TraceSplitSolver(form="structured").solve(r)
    exact = solve(r, "exact").state_cov
    assert structured.method == "trace-split-structured"
    series = structured.form.series(ss.lr, 3)
    want = exact.applyfunc(lambda e: sp.series(e, ss.lr, 0, 3).removeO())
    assert (series - want).applyfunc(sp.cancel).is_zero_matrix
    assert (structured.state_cov - exact).applyfunc(sp.cancel).is_zero_matrix


@st.composite
def block_problems(draw):
    """Random block structures: 2–4 blocks of size 1 or 2, each an SPD rational block; SGD or
    heavy ball; batch size 1–4."""
    sizes = draw(st.lists(st.sampled_from([1, 2]), min_size=2, max_size=4))
    blocks = []
    for m in sizes:
        if m == 1:
            blocks.append(sp.Matrix([[R(draw(st.integers(1, 8)), 4)]]))
        else:
            x, y, z = (draw(st.integers(-3, 3)) for _ in range(3))
            L = sp.Matrix([[2 + abs(x), 0], [y, 1 + abs(z)]]) / 3
            blocks.append(L * L.T)
    A = sp.diag(*blocks)
    momentum = draw(st.booleans())
    S = draw(st.integers(1, 4))
    return A, momentum, S


@settings(derandomize=True, max_examples=12, deadline=None)
@given(block_problems())
def test_random_block_structures_against_oracle(problem):
    """Random block-diagonal A with a symbolic learning rate: the split (forced, expanded or
    structured by size) agrees with the Kronecker oracle at a stable learning rate."""
    A, momentum, S = problem
    d = A.rows
    opt = ss.HeavyBall(ss.lr, R(1, 3)) if momentum else ss.SGD(ss.lr)
    r = build_recursion(opt, ss.LinearRegression(A, label_variance=R(1, 2)), ss.MinibatchNoise(S))
    split = solve(r, "trace-split")
    assert split.method.startswith("trace-split")
    An = np.array(A.evalf(), dtype=float)
    lr = 0.2 / (1 + np.trace(An))
    rule = ok.heavy_ball_rule(lr, 1 / 3, np.eye(d)) if momentum else ok.sgd_rule(lr, np.eye(d))
    want, rho = _oracle(rule, An, 0.5, float(S), lr)
    assert rho < 1
    got = np.array(split.state_cov.xreplace({ss.lr: sp.Float(lr, 30)}).evalf(), dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


@settings(derandomize=True, max_examples=15, deadline=None)
@given(block_problems(), st.floats(0.05, 0.9))
def test_numeric_split_against_oracle(problem, fraction):
    """Float64: the per-block solve (NumericMap.split) equals the dense Kronecker solve, and its
    stability verdict equals the oracle's ρ(T) < 1 on both sides of the edge."""
    A, momentum, S = problem
    d = A.rows
    An = np.array(A.evalf(), dtype=float)
    for lr in (fraction * 2 / np.trace(An), 3.0 / np.trace(An) * (1 + fraction)):
        opt = ss.HeavyBall(lr, 1 / 3) if momentum else ss.SGD(lr)
        land = ss.LinearRegression(sp.Matrix(An), label_variance=0.5)
        T = NumericMap.from_recursion(numeric_recursion(opt, land, ss.MinibatchNoise(S)))
        split = T.split()
        assert split is not None
        rule = ok.heavy_ball_rule(lr, 1 / 3, np.eye(d)) if momentum else ok.sgd_rule(lr, np.eye(d))
        want, rho = _oracle(rule, An, 0.5, float(S), lr)
        if abs(rho - 1) < 1e-6:
            continue
        assert split.stable == (rho < 1)
        if rho < 1:
            np.testing.assert_allclose(T.solve(), want, rtol=1e-8, atol=1e-14)


def test_numeric_diagonal_large_goes_through_split():
    """d = 60 diagonal, heavy ball: the float path splits, certifies by its residual, and matches
    the oracle on a corner block."""
    d = 60
    eig = np.linspace(0.5, 2.0, d)
    land = ss.LinearRegression(sp.diag(*[sp.Float(v) for v in eig]), label_variance=0.5)
    opt = ss.HeavyBall(0.002, 0.5)
    r = ss.stationary(opt, land, ss.MinibatchNoise(4))
    assert r.method == "numeric-float" and r.certificate.how == "float"
    assert NumericMap.from_recursion(r.recursion).split() is not None
    cov = np.asarray(r.cov, dtype=float)
    assert np.abs(cov - np.diag(np.diag(cov))).max() == 0
    # independently: mode k alone with its local noise a_k²Σ/S and unit forcing a_k/S has the
    # θ-variance u_k (the oracle's dense solve of the 2-state heavy ball); the full forcing is
    # (σ² + κ)a_k/S, so Σ_k = (σ² + κ)u_k and κ = Σ a_kΣ_k gives κ = σ²s/(1 − s), s = Σ a_ku_k
    lr, mu, S, sigma2 = 0.002, 0.5, 4.0, 0.5
    unit = []
    for a in eig:
        M, B, K = ok.state_space(ok.heavy_ball_rule(lr, mu, np.eye(1)), np.array([[a]]))
        X = ok.stationary_state(M, B, K, np.array([[a / S]]), np.array([[a * a / S]]))
        unit.append(X[0, 0])
    unit = np.array(unit)
    s = np.sum(eig * unit)
    kappa = sigma2 * s / (1 - s)
    np.testing.assert_allclose(np.diag(cov), (sigma2 + kappa) * unit, rtol=1e-9)


def test_finite_data_does_not_split():
    """A finite data set: per-sample inputs mix the blocks (even when XᵀX is diagonal), so
    no trace coupling is offered and the split refuses."""
    X = sp.Matrix([[1, 1], [1, -1], [2, 0], [0, 2]])
    y = sp.Matrix([1, 0, 2, -1])
    land = ss.LinearRegression.from_data(X, y)
    assert (X.T * X).is_diagonal()
    noise = ss.MinibatchNoise(2)
    assert noise.trace_coupling(land) is None
    r = build_recursion(ss.SGD(ss.lr), land, noise)
    assert not TraceSplitSolver().applies_to(r)
    with pytest.raises(ValueError, match="'trace-split' solver does not apply"):
        solve(r, "trace-split")
    Xf = np.array(X.evalf(), dtype=float)
    land_f = ss.LinearRegression.from_data(sp.Matrix(Xf), sp.Matrix(np.array(y.evalf(), float)))
    T = NumericMap.from_recursion(numeric_recursion(ss.SGD(0.1), land_f, noise))
    assert T.split() is None


def test_offset_across_blocks_does_not_split():
    """Weight decay with θ* in two blocks puts A b bᵀ A in Q₀, coupling them: no split."""
    a = _symbols(2)
    land = ss.LinearRegression(sp.diag(*a), label_variance=1, theta_star=[1, 1])
    r = build_recursion(ss.SGD(ss.lr, weight_decay=g), land, ss.MinibatchNoise(2))
    assert not TraceSplitSolver().applies_to(r)


def test_trace_coupling_is_the_noise_linear_part():
    """The offered coupling sFΣFᵀ + Tr(WΣ)D equals the noise model's own Q(Σ) − Q(0) for a
    symbolic block-diagonal A and symmetric Σ, with weight decay."""
    a = _symbols(3)
    A = sp.Matrix([[a[0], a[1], 0], [a[1], a[2], 0], [0, 0, a[0]]])
    land = ss.LinearRegression(A, label_variance=s2, theta_star=[1, 0, 2])
    noise = ss.MinibatchNoise(ss.batch_size)
    Sigma = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"s{min(i, j)}{max(i, j)}"))
    coupling = noise.trace_coupling(land, weight_decay=g)
    change = noise.covariance(land, Sigma, g) - noise.covariance(land, sp.zeros(3, 3), g)
    assert (coupling(Sigma) - change).applyfunc(sp.expand).is_zero_matrix


def test_crosscheck_real_minibatches_d3():
    """The d = 3 split answer against the real optimizer with real Gaussian minibatches
    (seeded; the crosscheck's own standard-error tolerance with Holm correction)."""
    a = _symbols(3)
    r = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(sp.diag(*a), label_variance=1),
        ss.MinibatchNoise(2),
        method="trace-split",
    )
    assert r.method == "trace-split"
    values = {ss.lr: R(1, 5), ss.momentum: R(1, 2), a[0]: 1, a[1]: R(1, 2), a[2]: R(1, 4)}
    report = ss.crosscheck(r, values, seed=7, rel_se=0.01)
    assert report.passed, report


def test_auto_order_splits_large_states_and_keeps_small_ones_exact():
    """``method="auto"``: SGD with d = 4 (state 4) keeps the unsplit canonical answer; heavy
    ball with d = 4 (state 8, where the unsplit elimination takes minutes) is split."""
    a = _symbols(4)
    land = ss.LinearRegression(sp.diag(*a), label_variance=s2)
    noise = ss.MinibatchNoise(ss.batch_size)
    assert ss.stationary(ss.SGD(ss.lr), land, noise).method == "exact"
    hb = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), land, noise)
    assert hb.method == "trace-split-structured" and hb.certificate.how == "exact"


def test_latex_of_a_structured_trace_split_keeps_kappa_as_one_symbol():
    a = sp.symbols("a1:6", positive=True)
    sigma = sp.Symbol("sigma", positive=True)
    land = ss.LinearRegression(sp.diag(*a), label_variance=sigma**2)
    r = ss.stationary(ss.SGD(ss.lr), land, ss.MinibatchNoise(ss.batch_size))
    assert r.method.startswith("trace-split")
    text = r.latex(env="align*", lr=r"\eta")
    assert text.count(r"\kappa") >= 6 and r"\operatorname{Tr}(A\Sigma)" in text
    assert r"\eta" in text and r"\lambda" not in text
    # the printed entries are U + κV: at κ = Tr(AΣ) they are the result's own entries
    kappa = sum(a[i] * r.cov[i, i] for i in range(5))
    point = {
        ss.lr: R(1, 7),
        ss.batch_size: 3,
        sigma: 2,
        **{x: R(k + 1, 2) for k, x in enumerate(a)},
    }
    k = sp.Symbol("kappa")
    entry = ss.lr * (sigma**2 + k) / (2 * ss.batch_size - a[0] * ss.lr * (ss.batch_size + 1))
    assert sp.simplify(entry.subs(k, kappa).subs(point) - r.cov[0, 0].subs(point)) == 0


@pytest.mark.parametrize("lr", [0.2, 0.9, 1.6])
@pytest.mark.parametrize("make", [lambda lr: ss.SGD(lr), lambda lr: ss.HeavyBall(lr / 2, 0.6)])
def test_split_spectral_radius_is_the_dense_one_on_both_sides_of_the_edge(make, lr):
    # ρ(T) from the blocks' secular equation against eigenvalues of the dense n²×n² matrix
    rng = np.random.default_rng(11)
    A = sp.diag(*rng.uniform(0.2, 2.0, size=5).tolist(), sp.Matrix([[1.0, 0.3], [0.3, 0.8]]))
    land = ss.LinearRegression(A, label_variance=1.0)
    T = NumericMap.from_recursion(numeric_recursion(make(lr), land, ss.MinibatchNoise(2)))
    split = T.split()
    assert split is not None
    dense = float(np.max(np.abs(np.linalg.eigvals(T.matrix()))))
    assert split.radius == pytest.approx(dense, rel=1e-9)
    assert T.radius() == split.radius and T.stable() == (dense < 1)
