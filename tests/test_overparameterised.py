"""Over-parameterised / rank-deficient linear regression (issue 15): ``from_data`` reduces a
singular XᵀX to the row space R = range(Xᵀ), reports the flat directions N = ker X, and the
stationary covariance lifted to the original coordinates is checked against an independent
full-space oracle (every minibatch of the real data set enumerated, the d²-dimensional
defining equation solved by numpy) and against the real optimizer's own step on real
minibatches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg as sla
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symsgd as ss
from symsgd.geometry import alignment_from_gradients
from symsgd.sampling import prepare

# n = 2 < d = 4, interpolating (y = Xθ solvable)
X_WIDE = [[1, 1, 0, 2], [0, 1, 1, -1]]
Y_WIDE = [2, 0]
# n = 6 > d = 4 with a duplicated column (column 3 = column 1): rank 3, nonzero residuals
X_DUP = [[1, 2, 1, 0], [0, 1, 0, 1], [2, 0, 2, 1], [1, 1, 1, 1], [0, 2, 0, -1], [1, 0, 1, 2]]
Y_DUP = [1, 0, 2, -1, 1, 3]


# ------------------------------------------------------------------------------------------
# independent oracle: the full d-dimensional defining equation, every minibatch enumerated
# ------------------------------------------------------------------------------------------


def _batches(N: int, S: int, replacement: bool):
    """Every minibatch (as index tuples) with its probability."""
    if replacement:
        batches = list(itertools.product(range(N), repeat=S))
    else:
        batches = list(itertools.combinations(range(N), S))
    return batches, 1.0 / len(batches)


def _full_space_terms(X, y, lr, gamma, S, replacement):
    """``(T, F)`` of the defining equation vec Σ = T vec Σ + F in the d original coordinates:
    T = E_b[M_b ⊗ M_b], M_b = I − λ(Ĥ_b + γI), F = λ² vec E_b[z_b z_bᵀ],
    z_b = ĝ_b(θ_γ) + γθ_γ (the step's noise at the weight-decayed minimum θ_γ)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    N, d = X.shape
    H = X.T @ X / N
    theta_gamma = np.linalg.lstsq(H + gamma * np.eye(d), X.T @ y / N, rcond=None)[0]
    if gamma == 0:  # the minimum-norm minimiser, independently of the library
        theta_gamma = np.linalg.pinv(X) @ y
    batches, p = _batches(N, S, replacement)
    T = np.zeros((d * d, d * d))
    F = np.zeros((d, d))
    for b in batches:
        Xb, yb = X[list(b)], y[list(b)]
        Hb = Xb.T @ Xb / S
        z = Xb.T @ (Xb @ theta_gamma - yb) / S + gamma * theta_gamma
        M = np.eye(d) - lr * (Hb + gamma * np.eye(d))
        T += p * np.kron(M, M)
        F += p * lr**2 * np.outer(z, z)
    return T, F.reshape(-1), theta_gamma


def _oracle_covariance(X, y, lr, gamma, S, replacement=True):
    """Σ solving (I − T) vec Σ = F in d² dimensions.  Without weight decay I − T is singular
    exactly on N ⊗ N (N = ker X): the minimum-norm least-squares solution is the one with no
    N-block — checked to solve the system and to have that kernel."""
    X = np.asarray(X, float)
    d = X.shape[1]
    T, F, _ = _full_space_terms(X, y, lr, gamma, S, replacement)
    A = np.eye(d * d) - T
    sol, *_ = np.linalg.lstsq(A, F, rcond=None)
    assert np.allclose(A @ sol, F, atol=1e-13)
    rank = np.linalg.matrix_rank(A, tol=1e-10)
    flat = d - np.linalg.matrix_rank(X)
    assert rank == d * d - (flat * flat if gamma == 0 else 0)
    Sigma = sol.reshape(d, d)
    return (Sigma + Sigma.T) / 2


def _floats(m) -> np.ndarray:
    return np.array(sp.Matrix(m).evalf(30).tolist(), dtype=float)


# ------------------------------------------------------------------------------------------
# the reduction: θ*, range basis, flat directions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y", [(X_WIDE, Y_WIDE), (X_DUP, Y_DUP)], ids=["n<d-interpolating", "duplicated-column"]
)
def test_exact_reduction(X, y):
    land = ss.LinearRegression.from_data(X, y)
    red = land.reduction
    Xm, ym = sp.Matrix(X), sp.Matrix(y)
    r, d = Xm.rank(), Xm.cols
    assert (red.dim, red.rank, land.dim) == (d, r, r)
    # minimum-norm least squares, exactly: sympy's Moore–Penrose pseudo-inverse
    assert red.theta_star == Xm.pinv() * ym
    assert all(v.is_Rational for v in red.theta_star)
    U, V = sp.Matrix(red.basis), sp.Matrix(red.flat_basis)
    assert V.shape == (d, d - r) and len(red.flat_directions) == d - r
    assert (Xm * V).is_zero_matrix  # orthogonal to every sample x_i: they span ker X
    assert (U.T * U - sp.eye(r)).applyfunc(sp.radsimp).is_zero_matrix
    assert (V.T * V - sp.eye(d - r)).applyfunc(sp.radsimp).is_zero_matrix
    assert (U.T * V).applyfunc(sp.radsimp).is_zero_matrix
    # U Uᵀ is the projector onto the row space: X⁺X
    assert (U * U.T - Xm.pinv() * Xm).applyfunc(sp.radsimp).is_zero_matrix
    # the reduced landscape is the data X U in the coordinates c = Uᵀθ
    assert land.theta_star.applyfunc(sp.radsimp) == red.coordinates(red.theta_star)
    assert red.point(land.theta_star) == red.theta_star
    assert (
        (sp.Matrix(land.hessian) - U.T * Xm.T * Xm * U / Xm.rows)
        .applyfunc(sp.radsimp)
        .is_zero_matrix
    )
    text = repr(land)
    assert f"rank {r} < d = {d}" in text and "flat along" in text
    assert "flat along" in land.describe()


@pytest.mark.parametrize(
    "X, y", [(X_WIDE, Y_WIDE), (X_DUP, Y_DUP)], ids=["n<d-interpolating", "duplicated-column"]
)
def test_float_reduction_matches_numpy(X, y):
    Xf = np.asarray(X, float)
    land = ss.LinearRegression.from_data(Xf, np.asarray(y, float))
    red = land.reduction
    d, r = Xf.shape[1], np.linalg.matrix_rank(Xf)
    assert red.rank == r and not red.exact
    assert np.allclose(_floats(red.theta_star).ravel(), np.linalg.pinv(Xf) @ y, atol=1e-12)
    U, V = _floats(red.basis), _floats(red.flat_basis)
    assert np.allclose(Xf @ V, 0, atol=1e-12)
    assert np.allclose(np.hstack([U, V]).T @ np.hstack([U, V]), np.eye(d), atol=1e-12)
    assert np.allclose(U @ U.T, np.linalg.pinv(Xf) @ Xf, atol=1e-12)
    # the same subspaces as the exact reduction
    exact = ss.LinearRegression.from_data(X, y).reduction
    assert np.allclose(_floats(exact.flat_basis) @ _floats(exact.flat_basis).T, V @ V.T)


def test_float_rank_is_the_rank_of_the_curvature():
    """Float data: a curvature s² below float resolution (d·ε·s²_max, numpy's rank of XᵀX)
    is flat; one well above it is kept."""
    X = np.asarray(X_DUP, float)
    noise = np.random.default_rng(3).normal(size=6)
    near = X.copy()
    near[:, 2] += 1e-12 * noise  # s_min² ~ 1e-24 s_max²: flat in float64
    assert ss.LinearRegression.from_data(near, Y_DUP).reduction.rank == 3
    far = X.copy()
    far[:, 2] += 1e-3 * noise
    assert ss.LinearRegression.from_data(far, Y_DUP).reduction is None


def test_full_rank_data_are_unchanged():
    land = ss.LinearRegression.from_data([[1, 0], [0, 2], [1, 1]], [1, 2, 0])
    assert land.reduction is None and land.dim == 2
    assert repr(land) == "LinearRegression.from_data(N=3, d=2)"


def test_symbolic_singular_and_zero_data_are_refused():
    a = sp.Symbol("a", positive=True)
    with pytest.raises(ValueError, match=r"XᵀX is singular.*symbolic X"):
        ss.LinearRegression.from_data([[a, a], [2 * a, 2 * a]], [1, 2])
    with pytest.raises(ValueError, match=r"X is zero"):
        ss.LinearRegression.from_data([[0, 0], [0, 0]], [1, 2])
    with pytest.raises(ValueError, match=r"X is zero"):
        ss.LinearRegression.from_data(np.zeros((2, 3)), [1.0, 2.0])


# ------------------------------------------------------------------------------------------
# the stationary covariance against the full-space oracle
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gamma, S, replacement",
    [(0, 2, True), (0, 3, False), (sp.Rational(1, 5), 2, True), (sp.Rational(1, 5), 2, False)],
)
def test_lifted_covariance_solves_full_space_equation(gamma, S, replacement):
    lr = sp.Rational(1, 10)
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    result = ss.stationary(
        ss.SGD(lr, weight_decay=gamma), land, ss.MinibatchNoise(S, replacement=replacement)
    )
    assert result.conditions is sp.true
    lifted = land.reduction.lift(result.cov)
    assert all(v.is_Rational for v in lifted)  # exact data, exact (rational) answer
    oracle = _oracle_covariance(X_DUP, Y_DUP, float(lr), float(gamma), S, replacement)
    assert np.abs(oracle).max() > 1e-3  # label noise: not the trivial Σ = 0
    assert np.allclose(_floats(lifted), oracle, rtol=1e-9, atol=1e-13)
    V = _floats(land.reduction.flat_basis)
    assert np.allclose(V.T @ _floats(lifted), 0, atol=1e-15)  # nothing random on N


def test_weight_decay_matches_the_full_space_local_problem_of_the_same_loss():
    """A second, independent derivation in the d original coordinates: the same squared loss
    as an EmpiricalLoss, expanded at its weight-decayed minimum θ_γ (its Hessian is singular,
    H + γI is not), gives exactly the lifted covariance of the reduced problem."""
    theta, xs, label = sp.symbols("t1:5"), sp.symbols("x1:5"), sp.Symbol("y")
    loss = (sum(t * x for t, x in zip(theta, xs)) - label) ** 2 / 2
    model = ss.EmpiricalLoss(loss, theta, (*xs, label), [[*r, v] for r, v in zip(X_DUP, Y_DUP)])
    gamma, lr = sp.Rational(1, 5), sp.Rational(1, 10)
    X = sp.Matrix(X_DUP)
    theta_gamma = (X.T * X / 6 + gamma * sp.eye(4)).LUsolve(X.T * sp.Matrix(Y_DUP) / 6)
    local = model.near(list(theta_gamma), weight_decay=gamma)
    assert len(local.flat_directions) == 1  # the same manifold of minima
    opt, noise = ss.SGD(lr, weight_decay=gamma), ss.MinibatchNoise(2)
    full = sp.Matrix(ss.stationary(opt, local, noise).cov)
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    assert full == land.reduction.lift(ss.stationary(opt, land, noise).cov)


def test_float_data_give_the_same_covariance():
    land = ss.LinearRegression.from_data(np.asarray(X_DUP, float), np.asarray(Y_DUP, float))
    result = ss.stationary(ss.SGD(0.1, weight_decay=0.2), land, ss.MinibatchNoise(2))
    oracle = _oracle_covariance(X_DUP, Y_DUP, 0.1, 0.2, 2)
    assert np.allclose(land.reduction.lift(_floats(result.cov)), oracle, rtol=1e-9, atol=1e-13)


def test_heavy_ball_on_the_reduced_problem_matches_the_full_space_oracle():
    """Momentum: the state (θ, θ₋) moves in R ⊕ R as well; the oracle is the full 2d-state
    second-moment equation with every minibatch."""
    lr, mu = 0.05, 0.5
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    res = ss.stationary(ss.HeavyBall(lr, mu), land, ss.MinibatchNoise(2, replacement=False))
    X, y = np.asarray(X_DUP, float), np.asarray(Y_DUP, float)
    N, d = X.shape
    star = np.linalg.pinv(X) @ y
    batches, p = _batches(N, 2, False)
    n = 2 * d
    T, F = np.zeros((n * n, n * n)), np.zeros((n, n))
    for b in batches:
        Xb, yb = X[list(b)], y[list(b)]
        M = np.zeros((n, n))
        M[:d, :d] = (1 + mu) * np.eye(d) - lr * Xb.T @ Xb / 2
        M[:d, d:] = -mu * np.eye(d)
        M[d:, :d] = np.eye(d)
        z = np.concatenate([-lr * Xb.T @ (Xb @ star - yb) / 2, np.zeros(d)])
        T += p * np.kron(M, M)
        F += p * np.outer(z, z)
    A = np.eye(n * n) - T
    sol = np.linalg.lstsq(A, F.reshape(-1), rcond=None)[0]
    assert np.allclose(A @ sol, F.reshape(-1), atol=1e-14)
    oracle = sol.reshape(n, n)[:d, :d]
    lifted = land.reduction.lift(_floats(res.cov))
    assert np.allclose(lifted, (oracle + oracle.T) / 2, rtol=1e-8, atol=1e-14)


# ------------------------------------------------------------------------------------------
# the real optimizer on real minibatches, in the original d coordinates
# ------------------------------------------------------------------------------------------


def _simulate_full_space(opt, X, y, theta0, center, S, steps, burn, chains, seed, on_step):
    """The optimizer's own ``step`` on (d, chains) arrays with real minibatches (S distinct
    rows per chain and step); returns the per-chain time averages of δδᵀ, δ = θ − ``center``.
    ``on_step(t, θ)`` sees every iterate."""
    rng = np.random.default_rng(seed)
    X, y = np.asarray(X, float), np.asarray(y, float)
    N, d = X.shape

    def grad(th):
        picks = np.argsort(rng.random((chains, N)), axis=1)[:, :S]
        Xb, yb = X[picks], y[picks]  # (chains, S, d), (chains, S)
        res = np.einsum("csd,dc->cs", Xb, th) - yb
        return np.einsum("csd,cs->dc", Xb, res) / S

    # the optimizer's own step with float fields (as ss.simulate runs it), dimension-free
    land = ss.LinearRegression.from_data(X, y)
    opt = prepare(opt, land, ss.MinibatchNoise(S, replacement=False), {}).stepper
    state = opt.initial_state(np.repeat(np.asarray(theta0, float).reshape(d, 1), chains, 1))
    sums = np.zeros((chains, d, d))
    for t in range(steps + burn):
        state = opt.step(state, grad, lambda v: v)
        theta = opt.readout(state)
        on_step(t, theta)
        if t >= burn:
            delta = theta - np.asarray(center, float).reshape(d, 1)
            sums += np.einsum("ic,jc->cij", delta, delta)
    return sums / steps


def _compare_on_R(per_chain, cov, U, V, k=4.5):
    """Per-chain averages projected on R (UᵀPU) against UᵀΣU within k standard errors
    (across-chain), and nothing on the flat directions."""
    chains = per_chain.shape[0]
    on_R = np.einsum("ia,cij,jb->cab", U, per_chain, U)
    mean, se = on_R.mean(0), on_R.std(0, ddof=1) / np.sqrt(chains)
    z = np.abs(mean - U.T @ cov @ U) / se
    assert np.all(z < k), z
    # the N-part of δ is float rounding (~1e-16): 12 orders below the entries on R
    assert np.abs(np.einsum("ia,cij->caj", V, per_chain)).max() < 1e-14


def test_simulation_of_sgd_matches_lifted_covariance_and_flat_part_is_frozen():
    lr, S = 0.1, 2
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    red = land.reduction
    cov = _floats(
        red.lift(ss.stationary(ss.SGD(lr), land, ss.MinibatchNoise(S, replacement=False)).cov)
    )
    U, V = _floats(red.basis), _floats(red.flat_basis)
    n0 = np.array([0.7])  # start on the manifold of minima, off the minimum-norm point
    theta0 = _floats(red.theta_star).ravel() + V @ n0
    drift = []

    def watch(t, theta):
        drift.append(float(np.max(np.abs(V.T @ theta - n0[:, None]))))

    per_chain = _simulate_full_space(
        ss.SGD(lr), X_DUP, Y_DUP, theta0, theta0, S, 1500, 300, 400, 11, watch
    )
    assert max(drift) < 1e-12  # no data gradient has a component along N: n is conserved
    _compare_on_R(per_chain, cov, U, V)


def test_simulation_with_weight_decay_flat_part_decays_deterministically():
    lr, gamma, S = 0.1, 0.2, 2
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    red = land.reduction
    opt = ss.SGD(lr, weight_decay=gamma)
    cov = _floats(red.lift(ss.stationary(opt, land, ss.MinibatchNoise(S, replacement=False)).cov))
    U, V = _floats(red.basis), _floats(red.flat_basis)
    X = np.asarray(X_DUP, float)
    theta_gamma = np.linalg.solve(X.T @ X / 6 + gamma * np.eye(4), X.T @ Y_DUP / 6)
    n0 = np.array([1.5])
    gap = []

    def watch(t, theta):
        expected = (1 - lr * gamma) ** (t + 1) * n0  # deterministic, no noise enters N
        gap.append(float(np.max(np.abs(V.T @ theta - expected[:, None]))))

    per_chain = _simulate_full_space(
        opt, X_DUP, Y_DUP, theta_gamma + V @ n0, theta_gamma, S, 1500, 300, 400, 12, watch
    )
    assert max(gap) < 1e-12
    # after the burn-in (1 − λγ)^t n0 < 1e-2, so its square is far below the tolerance on R;
    # on N the time average is that deterministic decay only
    on_N = np.einsum("ia,cij,jb->cab", V, per_chain, V)
    decay = (1 - lr * gamma) ** (2 * np.arange(301, 1801)) * n0[0] ** 2
    assert np.allclose(on_N, decay.mean(), rtol=1e-9)
    on_R = np.einsum("ia,cij,jb->cab", U, per_chain, U)
    mean, se = on_R.mean(0), on_R.std(0, ddof=1) / np.sqrt(on_R.shape[0])
    assert np.all(np.abs(mean - U.T @ cov @ U) < 4.5 * se)


def test_ss_simulate_runs_on_the_reduced_landscape():
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    noise = ss.MinibatchNoise(2)
    exact = _floats(ss.stationary(ss.SGD(sp.Rational(1, 10)), land, noise).cov)
    sim = ss.simulate(
        ss.SGD(ss.lr), land, noise, {ss.lr: 0.1}, chains=200, steps=1500, burn_in=300, seed=5
    )
    z = np.abs(np.asarray(sim.cov, float) - exact) / np.asarray(sim.cov_stderr, float)
    assert np.all(z < 4.5), z


# ------------------------------------------------------------------------------------------
# interpolation: Σ = 0 and the mean-square edge
# ------------------------------------------------------------------------------------------


def _edge_oracle(X, S):
    """The largest λ with spectral radius < 1 of the second-moment map restricted to R ⊗ R
    (R from scipy's orthonormal range basis), every minibatch (with replacement) enumerated."""
    X = np.asarray(X, float)
    N, _ = X.shape
    Q = sla.orth(X.T)
    batches, p = _batches(N, S, True)

    def rho(lr):
        r = Q.shape[1]
        T = np.zeros((r * r, r * r))
        for b in batches:
            Xb = X[list(b)] @ Q
            M = np.eye(r) - lr * Xb.T @ Xb / S
            T += p * np.kron(M, M)
        return max(abs(np.linalg.eigvals(T)))

    from scipy.optimize import brentq

    grid = np.linspace(1e-3, 3, 3000)
    first = next(g for g in grid if rho(g) >= 1)
    return brentq(lambda lr: rho(lr) - 1, first - 1e-3, first)


def test_interpolation_point_mass_and_edge():
    land = ss.LinearRegression.from_data(X_WIDE, Y_WIDE)
    assert land.loss(sp.zeros(2, 2)) == 0  # L* = 0: y = Xθ* exactly
    res = ss.stationary(ss.SGD(ss.lr), land, ss.MinibatchNoise(1))
    assert res.cov.is_zero_matrix
    edge = res.stability_edge(ss.lr)
    assert float(edge) == pytest.approx(_edge_oracle(X_WIDE, 1), rel=1e-9)
    inside = ss.stationary(ss.SGD(sp.Rational(1, 10)), land, ss.MinibatchNoise(1))
    assert inside.cov.is_zero_matrix and inside.conditions is sp.true and inside.loss == 0
    assert land.reduction.lift(inside.cov).is_zero_matrix
    beyond = float(edge) * 1.01
    with pytest.raises(ss.UnstableError):
        ss.stationary(ss.SGD(beyond), land, ss.MinibatchNoise(1))


# ------------------------------------------------------------------------------------------
# preconditioned optimizers are refused
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer",
    [
        ss.Adam(ss.lr),
        ss.Preconditioned(ss.lr, sp.diag(1, 2)),
        ss.NaturalGradient(ss.lr),
        ss.DampedNewton(ss.lr),
        ss.Averaged(ss.Adam(ss.lr), decay=sp.Rational(1, 2)),
    ],
    ids=["Adam", "Preconditioned", "NaturalGradient", "DampedNewton", "Averaged(Adam)"],
)
def test_preconditioned_optimizers_are_refused(optimizer):
    red = ss.LinearRegression.from_data(X_WIDE, Y_WIDE).reduction
    with pytest.raises(ValueError, match=r"preconditioner P .* flat directions"):
        red.check_optimizer(optimizer)


@pytest.mark.parametrize(
    "optimizer",
    [
        ss.SGD(ss.lr, weight_decay=1),
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.Nesterov(ss.lr, ss.momentum),
        ss.QHM(ss.lr, ss.momentum, sp.Rational(7, 10)),
        ss.Averaged(ss.SGD(ss.lr), decay=sp.Rational(1, 2)),
    ],
    ids=["SGD", "HeavyBall", "Nesterov", "QHM", "Averaged(SGD)"],
)
def test_scalar_learning_rate_optimizers_pass(optimizer):
    ss.LinearRegression.from_data(X_WIDE, Y_WIDE).reduction.check_optimizer(optimizer)


# ------------------------------------------------------------------------------------------
# property: random small rank-deficient integer data
# ------------------------------------------------------------------------------------------


@st.composite
def _rank_deficient(draw):
    d = draw(st.integers(2, 4))
    N = draw(st.integers(2, 5))
    entries = st.integers(-2, 2)
    X = [[draw(entries) for _ in range(d)] for _ in range(N)]
    if N >= d or draw(st.booleans()):  # force a duplicated (collinear) column
        i, j = draw(st.permutations(range(d)))[:2]
        k = draw(st.sampled_from([1, -1, 2]))
        for row in X:
            row[j] = k * row[i]
    rank = sp.Matrix(X).rank()
    if rank == 0:
        X[0][0] = 1
    y = [draw(entries) for _ in range(N)]
    S = draw(st.integers(1, min(N, 2)))
    gamma = draw(st.sampled_from([0, sp.Rational(1, 4)]))
    replacement = draw(st.booleans())
    return X, y, S, gamma, replacement


@settings(derandomize=True, max_examples=20, deadline=None)
@given(_rank_deficient())
def test_property_lifted_covariance_solves_full_space_equation(case):
    X, y, S, gamma, replacement = case
    land = ss.LinearRegression.from_data(X, y)
    assert land.reduction is not None
    largest = max(sum(v * v for v in row) for row in X)
    lr = sp.Rational(1, 2 * largest)  # every minibatch step is a contraction on R: stable
    res = ss.stationary(
        ss.SGD(lr, weight_decay=gamma), land, ss.MinibatchNoise(S, replacement=replacement)
    )
    Sigma = _floats(land.reduction.lift(res.cov))
    T, F, _ = _full_space_terms(X, y, float(lr), float(gamma), S, replacement)
    d = len(X[0])
    residual = Sigma.reshape(-1) - T @ Sigma.reshape(-1) - F
    assert np.abs(residual).max() < 1e-9
    V = _floats(land.reduction.flat_basis)
    assert V.size and np.abs(Sigma @ V).max() < 1e-12  # nothing random on N
    assert Sigma.shape == (d, d)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ss.Adam(ss.lr),
        lambda: ss.NaturalGradient(sp.Rational(1, 10)),
        lambda: ss.Preconditioned(ss.lr, sp.eye(2)),
    ],
    ids=["Adam", "NaturalGradient", "Preconditioned"],
)
def test_stationary_and_simulate_refuse_preconditioners_on_a_row_space(make):
    land = ss.LinearRegression.from_data(X_WIDE, Y_WIDE)
    with pytest.raises(ValueError, match="flat direction"):
        ss.stationary(make(), land, ss.MinibatchNoise(1))
    with pytest.raises(ValueError, match="flat direction"):
        ss.simulate(make(), land, ss.MinibatchNoise(1), {"lr": 0.1}, chains=4, steps=2)


def test_alignment_takes_theta_in_either_coordinate_system():
    land = ss.LinearRegression.from_data(X_DUP, Y_DUP)
    theta = [0.3, -0.2, 0.5, 0.1]  # d entries; its flat component is invisible to the data
    X, y = np.array(X_DUP, float), np.array(Y_DUP, float)
    r = X @ np.array(theta) - y  # per-sample gradients x_i r_i in the full d coordinates
    direct = alignment_from_gradients(X * r[:, None], X.T @ X / len(r), r @ r / (2 * len(r)))
    reduced = ss.alignment(land, np.array(land.reduction.coordinates(theta), float).ravel())
    lifted = ss.alignment(land, theta)
    assert lifted.mu == pytest.approx(direct.mu, rel=1e-10)
    assert reduced.mu == pytest.approx(direct.mu, rel=1e-10)
    v = np.array([1.0, 0.5, -1.0, 2.0])  # g(v) of the projection of v on the row space
    U = np.array(land.reduction.basis, float)
    assert lifted.directional(U.T @ v) == pytest.approx(direct.directional(v), rel=1e-10)
