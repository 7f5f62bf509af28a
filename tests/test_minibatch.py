"""Minibatch noise: derived covariances against batch enumeration, Gaussian fourth moments,
weight decay and the linear-scaling rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp

import symsgd as ss
from symsgd.landscapes import isserlis_quartic
from symsgd.noise import sampling_design
from tests.oracles import enumerated_batch_cov, gaussian_minibatch_cov

lam = ss.lr
a = sp.Symbol("a", positive=True)

X_SMALL = np.array([[1.0, 0.5], [-0.3, 1.2], [0.8, -0.7], [1.5, 0.1], [-1.1, -0.4]])
Y_SMALL = np.array([0.7, -1.2, 0.4, 2.0, -0.3])


def _rational(arr):
    return sp.Matrix(arr.tolist()).applyfunc(sp.nsimplify)


@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("S", [1, 2, 3])
def test_finite_data_matches_enumeration_of_every_batch(replacement, S):
    land = ss.LinearRegression.from_data(_rational(X_SMALL), _rational(Y_SMALL))
    noise = ss.MinibatchNoise(S, replacement=replacement)
    lr_ = sp.Rational(1, 4)
    result = ss.stationary(ss.SGD(lr_), land, noise)
    assert result.method == "numeric-exact"
    got = np.array(result.cov, dtype=float)
    want = enumerated_batch_cov(X_SMALL, Y_SMALL, S, float(lr_), replacement)
    assert np.allclose(got, want, rtol=1e-10, atol=1e-14)


def test_finite_data_symbolic_learning_rate_matches_enumeration():
    land = ss.LinearRegression.from_data(_rational(X_SMALL[:4]), _rational(Y_SMALL[:4]))
    result = ss.stationary(ss.SGD(lam), land, ss.MinibatchNoise(2, replacement=False))
    f = result.lambdify()
    for lr_ in (0.05, 0.2, 0.4):
        want = enumerated_batch_cov(X_SMALL[:4], Y_SMALL[:4], 2, lr_, False)
        assert np.allclose(f(lr=lr_), want, rtol=1e-9)


def test_full_batch_without_replacement_has_no_noise():
    land = ss.LinearRegression.from_data(_rational(X_SMALL), _rational(Y_SMALL))
    result = ss.stationary(ss.SGD(lam), land, ss.MinibatchNoise(5, replacement=False))
    assert result.cov == sp.zeros(2, 2)


def test_sampling_design_matches_enumeration():
    for N, S, replacement in [(4, 2, True), (4, 2, False), (5, 3, False), (3, 3, True)]:
        if replacement:
            batches = list(itertools.product(range(N), repeat=S))
        else:
            batches = list(itertools.combinations(range(N), S))
        counts = np.array([[b.count(i) for i in range(N)] for b in batches], dtype=float)
        cov = np.cov(counts.T, bias=True)
        alpha, beta = sampling_design(S, N, replacement)
        assert np.allclose(cov, float(alpha) * np.eye(N) + float(beta), atol=1e-12)


def test_isserlis_matches_brute_force_pairings_and_monte_carlo(rng):
    A = sp.Matrix([[2, 1, 0], [1, 3, 1], [0, 1, 1]]) / 2
    M = sp.Matrix([[1, 2, 0], [0, 1, 3], [1, 0, 2]])
    got = isserlis_quartic(A, M)
    # entrywise sum over k, l of E[x_i x_k x_l x_j] M_kl with the three pairings written out
    d = 3
    brute = sp.zeros(d, d)
    for i, j, k, l in itertools.product(range(d), repeat=4):
        brute[i, j] += M[k, l] * (A[i, k] * A[l, j] + A[i, l] * A[k, j] + A[i, j] * A[k, l])
    assert got == brute
    x = rng.multivariate_normal(np.zeros(d), np.array(A, dtype=float), size=400_000)
    Mn = np.array(M, dtype=float)
    q = np.einsum("nk,kl,nl->n", x, Mn, x)
    mc = np.einsum("ni,n,nj->ij", x, q, x) / len(x)
    se = np.sqrt(np.var(np.einsum("ni,n,nj->nij", x, q, x), axis=0) / len(x))
    assert np.all(np.abs(mc - np.array(got, dtype=float)) < 6 * se)


def test_online_explicit_matrix_matches_textbook_fixed_point():
    A = sp.Matrix([[3, 1], [1, 2]]) / 2
    sigma2, S = sp.Rational(1, 2), 3
    for name, opt, kw in [
        ("sgd", ss.SGD(sp.Rational(1, 5)), {}),
        ("heavy-ball", ss.HeavyBall(sp.Rational(1, 10), sp.Rational(1, 2)), {"mu": 0.5}),
        (
            "preconditioned",
            ss.Preconditioned(
                sp.Rational(1, 5),
                sp.Matrix([[1, sp.Rational(1, 4)], [sp.Rational(1, 4), sp.Rational(1, 2)]]),
            ),
            {"P": np.array([[1, 0.25], [0.25, 0.5]])},
        ),
        ("sgd", ss.SGD(sp.Rational(1, 5), weight_decay=sp.Rational(1, 10)), {"wd": 0.1}),
    ]:
        result = ss.stationary(
            opt, ss.LinearRegression(A, label_variance=sigma2), ss.MinibatchNoise(S)
        )
        want = gaussian_minibatch_cov(
            name, np.array(A, dtype=float), float(sigma2), S, float(opt.lr), **kw
        )
        assert np.allclose(np.array(result.cov, dtype=float), want, rtol=1e-9)


def test_weight_decay_gives_noise_without_label_noise():
    """With L2 the minimum moves off θ*, so per-sample gradients there do not vanish: the noise
    has a rank-one part and the variance is non-zero even with σ² = 0."""
    gamma = ss.weight_decay
    land = ss.LinearRegression(a, label_variance=0, theta_star=2)
    result = ss.stationary(ss.SGD(lam, weight_decay=gamma), land, ss.MinibatchNoise(1))
    assert result.cov != 0
    assert sp.cancel(result.cov.subs(gamma, 0)) == 0
    values = {lam: 0.1, gamma: 0.3, a: 1.0}
    # independent: 1-D second-moment recursion with u = δ + b, b = −γθ*/(a+γ)
    b = -0.3 * 2 / 1.3
    lr_, g, A = 0.1, 0.3, 1.0
    # Var(δ') = (1 − λ(a+γ))² V + λ² (a² (V + b²) + a (V + b²) a) ... from Q = 2a²E[u²] − a²E[u]² …
    # Q(V) = a²(V + b²) + a·a(V + b²)  (Isserlis: E x⁴ = 3a², minus the squared mean a²u²)
    V = lr_**2 * 2 * A**2 * b**2 / (1 - (1 - lr_ * (A + g)) ** 2 - lr_**2 * 2 * A**2)
    assert np.isclose(float(result.cov.subs(values)), V, rtol=1e-12)


def test_noise_cov_exposes_how_far_c_proportional_to_h_is():
    s = ss.label_noise
    result = ss.stationary(
        ss.SGD(lam), ss.LinearRegression(a, label_variance=s**2), ss.MinibatchNoise(ss.batch_size)
    )
    Q = result.noise_cov
    # Q = (a²V + aV·a + σ²a)/S at the stationary V: larger than the σ²a/S of "C ∝ H"
    V = result.cov
    assert sp.cancel(Q - (2 * a**2 * V + s**2 * a) / ss.batch_size) == 0


def test_linear_scaling_rule_fails():
    """At fixed λ/S the stationary variance still changes with S (exact result)."""
    s = ss.label_noise
    result = ss.stationary(
        ss.SGD(lam), ss.LinearRegression(a, label_variance=s**2), ss.MinibatchNoise(ss.batch_size)
    )
    f = result.lambdify()
    ratio = 0.2
    values = [float(f(lr=ratio * S, batch_size=S, a=1.0, sigma=1.0)) for S in (1, 2, 4)]
    assert values[0] != pytest.approx(values[1], rel=1e-3)
    assert values[1] != pytest.approx(values[2], rel=1e-3)
    # the continuous-time prediction is blind to it
    ct = result.continuous_time().lambdify()
    ct_values = [float(ct(lr=ratio * S, batch_size=S, a=1.0, sigma=1.0)) for S in (1, 2, 4)]
    assert ct_values[0] == pytest.approx(ct_values[2], rel=1e-12)


def test_dataset_size_mismatch_is_reported():
    land = ss.LinearRegression.from_data(_rational(X_SMALL), _rational(Y_SMALL))
    with pytest.raises(ValueError, match="does not match"):
        ss.stationary(ss.SGD(lam), land, ss.MinibatchNoise(2, dataset_size=7))
    with pytest.raises(ValueError, match="cannot exceed"):
        ss.MinibatchNoise(6, dataset_size=5, replacement=False)


@pytest.mark.parametrize(
    "optimizer",
    [ss.SGD(lam), ss.HeavyBall(lam, ss.momentum)],
    ids=["sgd", "heavy-ball"],
)
def test_eigen_mode_trace_closure_matches_explicit_diagonal(optimizer):
    """The commuting (trace-closed) answer equals the explicit d = 3 solve, mode by mode."""
    s = ss.label_noise
    modes = ss.stationary(
        optimizer,
        ss.LinearRegression.commuting(a, label_variance=s**2),
        ss.MinibatchNoise(ss.batch_size),
    )
    values = {"lr": sp.Rational(1, 10), "batch_size": 2, "sigma": 1}
    if isinstance(optimizer, ss.HeavyBall):
        values["momentum"] = sp.Rational(1, 2)
    eigenvalues = [1, 2, 3]
    by_modes = modes.subs(values).on_modes(eigenvalues)
    explicit_opt = (
        ss.SGD(values["lr"])
        if not isinstance(optimizer, ss.HeavyBall)
        else ss.HeavyBall(values["lr"], values["momentum"])
    )
    explicit = ss.stationary(
        explicit_opt,
        ss.LinearRegression(sp.diag(*eigenvalues), label_variance=1),
        ss.MinibatchNoise(2),
    )
    assert by_modes == explicit.cov
    assert modes.subs(values).on_modes(eigenvalues, "loss") == explicit.loss


def test_eigen_mode_closed_form_matches_published_reference():
    """REFERENCES.md 3 in the commuting form, at exact eigenvalues."""
    s, S = ss.label_noise, ss.batch_size
    result = ss.stationary(
        ss.SGD(lam), ss.LinearRegression.commuting(a, label_variance=s**2), ss.MinibatchNoise(S)
    )
    eig = [sp.Rational(1, 2), 1, sp.Rational(5, 2)]
    point = {lam: sp.Rational(1, 7), S: 3, s: 2}
    G = [2 - lam * (1 + 1 / S) * e for e in eig]
    kappa = sum(e / g for e, g in zip(eig, G))
    reference = [lam * s**2 / (S - lam * kappa) / g for g in G]
    got = result.subs(point).on_modes(eig)
    for k in range(3):
        assert sp.nsimplify(got[k, k] - reference[k].subs(point)) == 0
    assert "Tr" in str(result.conditions)


def test_eigen_mode_trace_condition_is_enforced():
    """λ Tr(...) < 1 can fail although every mode is stable on its own."""
    s = ss.label_noise
    result = ss.stationary(
        ss.SGD(lam), ss.LinearRegression.commuting(a, label_variance=s**2), ss.MinibatchNoise(1)
    ).subs(lr=sp.Rational(1, 10), sigma=1)
    with pytest.raises(ss.UnstableError, match="Tr"):
        result.on_modes([1] * 30)  # each mode alone is fine (λa = 0.1 < 2/3)


# -- the label-noise keyword ----------------------------------------------------------------------


def test_label_variance_is_the_keyword_and_label_noise_is_deprecated():
    s = ss.label_noise  # the symbol is the standard deviation σ
    new = ss.LinearRegression(a, label_variance=s**2, theta_star=1)
    assert new.label_variance == s**2 and new.label_noise == s**2  # old attribute still reads
    assert "label_variance=sigma**2" in repr(new)
    with pytest.warns(DeprecationWarning, match="use label_variance=") as caught:
        old = ss.LinearRegression(a, label_noise=s**2, theta_star=1)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert old == new
    with pytest.warns(DeprecationWarning, match="use label_variance="):
        old_modes = ss.LinearRegression.commuting(a, label_noise=2)
    assert old_modes == ss.LinearRegression.commuting(a, label_variance=2)
    assert ss.LinearRegression(a, 3) == ss.LinearRegression(a, label_variance=3)  # positional
    with pytest.raises(TypeError, match="once"):
        ss.LinearRegression(a, label_variance=1, label_noise=1)
    # both keywords give the same derived law
    noise = ss.MinibatchNoise(2)
    with pytest.warns(DeprecationWarning):
        legacy = ss.stationary(ss.SGD(lam), ss.LinearRegression(a, label_noise=s**2), noise)
    assert legacy.cov == ss.stationary(ss.SGD(lam), new.__class__(a, s**2), noise).cov


@pytest.mark.parametrize("bad", [-1, sp.nan, 1j, sp.oo])
def test_label_variance_must_be_a_finite_non_negative_real(bad):
    with pytest.raises(ValueError, match="label_variance"):
        ss.LinearRegression(a, label_variance=bad)


# -- natural gradient's default Fisher ------------------------------------------------------------


def _per_sample_covariance(X: np.ndarray, Y: np.ndarray, gamma: float) -> np.ndarray:
    """Cov_i of the per-sample gradients x_i(x_iᵀθ − y_i) at θ_γ = (XᵀX/N + γ)⁻¹XᵀY/N, i uniform
    over the N samples (divisor N)."""
    N, d = X.shape
    theta = np.linalg.solve(X.T @ X / N + gamma * np.eye(d), X.T @ Y / N)
    grads = X * (X @ theta - Y)[:, None]
    mean = grads.mean(axis=0)
    return grads.T @ grads / N - np.outer(mean, mean)


@pytest.mark.parametrize("gamma", [0, sp.Rational(1, 3)])
def test_natural_gradient_fisher_is_the_per_sample_covariance_for_every_batch_size(gamma):
    land = ss.LinearRegression.from_data(_rational(X_SMALL), _rational(Y_SMALL))
    want = _per_sample_covariance(X_SMALL, Y_SMALL, float(gamma))
    N = X_SMALL.shape[0]
    optimizer = ss.NaturalGradient(lam, weight_decay=gamma)
    preconditioners = set()
    for replacement in (True, False):
        for S in range(1, N + 1):
            noise = ss.MinibatchNoise(S, replacement=replacement)
            F = noise.fisher(land, gamma)
            assert np.allclose(np.array(F, dtype=float), want, rtol=1e-12, atol=1e-15)
            preconditioners.add(sp.ImmutableMatrix(optimizer.preconditioner(land, noise)))
    assert len(preconditioners) == 1  # independent of S and of the sampling design
    # at S = N without replacement the batch noise vanishes, the Fisher does not
    full = ss.MinibatchNoise(N, replacement=False)
    assert full.covariance(land, sp.zeros(2, 2), gamma) == sp.zeros(2, 2)
    assert abs(np.linalg.det(want)) > 1e-6
    P = np.array(optimizer.preconditioner(land, full), dtype=float)
    assert np.allclose(P @ want, np.eye(2), atol=1e-12)
    result = ss.stationary(optimizer, land, full)  # full batch: no noise, no fluctuations
    assert result.cov == sp.zeros(2, 2)


def test_natural_gradient_fisher_online_is_label_variance_times_a():
    A = sp.Matrix([[2, 1], [1, 3]])
    s2 = sp.Rational(3, 4)
    land = ss.LinearRegression(A, label_variance=s2)
    for S in (1, 3, ss.batch_size):
        assert ss.MinibatchNoise(S).fisher(land) == s2 * A
    assert ss.AdditiveNoise(A).fisher(ss.Quadratic(A)) == A
