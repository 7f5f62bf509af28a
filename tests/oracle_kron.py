r"""An independent float64 oracle for stationary covariances: update rules written out here,
state matrices probed from them numerically, the noise covariance built from its own derivation,
and the self-consistent stationary equation solved by one dense Kronecker solve.

Nothing here imports symsgd.

* The optimizer is a plain update rule ``step(state, grad)`` on numpy vectors with the gradient
  oracle :math:`g(x) = Gx + \xi` (:math:`G = H + \gamma I`).  :func:`state_space` reads the
  state matrix ``M`` (columns: the step of a unit state with ξ = 0), the noise input ``B`` (the
  step of the zero state with ξ = a unit vector) and the gradient-evaluation map ``K`` (the point
  at which the rule calls ``grad``, as a linear function of the state) off that rule.
* The gradient-noise covariance at an evaluation point whose deviation has second moment
  :math:`\Sigma_y` is affine, :math:`Q(\Sigma_y) = Q_0 + \mathcal L(\Sigma_y)`; :mod:`noise`
  functions return ``(Q0, L)`` with ``L`` the :math:`d^2\times d^2` matrix acting on the
  row-major ``vec`` of :math:`\Sigma_y`.
* The state second moment solves
  :math:`\operatorname{vec}\Sigma_z = (I - M\otimes M - (B\otimes B)\,L\,(K\otimes K))^{-1}
  \operatorname{vec}(BQ_0B^\top)`; it exists iff the spectral radius of
  :math:`T = M\otimes M + (B\otimes B)L(K\otimes K)` (the second-moment map) is below 1.

Derivations of the noise models (each checked in the test suite by Monte Carlo / enumeration):

* online Gaussian regression, :math:`x\sim N(0,A)`, label noise variance :math:`\sigma^2`,
  per-sample gradient :math:`x(x^\top u - \epsilon)` at :math:`u = \delta + b` (``b`` the offset
  of the weight-decayed minimum from θ*): by Isserlis,
  :math:`\mathbb E[xx^\top U xx^\top] = 2AUA + \operatorname{Tr}(AU)A`, so the covariance
  around the mean :math:`AU` is :math:`AUA + \operatorname{Tr}(AU)A + \sigma^2A` with
  :math:`U = \Sigma_y + bb^\top`, divided by the batch size S;
* finite data: per-sample gradients :math:`a_i(\delta) = X_i\delta - c_i`; the batch gradient
  :math:`\frac1S\sum_i n_i a_i` with batch counts :math:`n_i` has covariance
  :math:`\frac1{S^2}\sum_{ij}\operatorname{Cov}(n_i,n_j)(X_i\Sigma X_j + c_ic_j^\top)`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

# -- update rules -----------------------------------------------------------------------------


def sgd_rule(lr: float, P: np.ndarray) -> tuple[int, Callable]:
    """θ' = θ − λ P g(θ)."""

    def step(state, grad):
        (theta,) = state
        return (theta - lr * P @ grad(theta),)

    return 1, step


def heavy_ball_rule(lr: float, mu: float, P: np.ndarray) -> tuple[int, Callable]:
    """θ' = θ − λ P g(θ) + μ(θ − θ₋); state (θ, θ₋)."""

    def step(state, grad):
        theta, prev = state
        return (theta - lr * P @ grad(theta) + mu * (theta - prev), theta)

    return 2, step


def nesterov_rule(lr: float, mu: float, P: np.ndarray) -> tuple[int, Callable]:
    """y = θ + μ(θ − θ₋), θ' = y − λ P g(y); state (θ, θ₋)."""

    def step(state, grad):
        theta, prev = state
        y = theta + mu * (theta - prev)
        return (y - lr * P @ grad(y), theta)

    return 2, step


def state_space(rule: tuple[int, Callable], G: np.ndarray):
    """``(M, B, K)`` of the linear recursion z' = M z + B ξ, read off the update rule by probing
    it with unit vectors (gradient oracle g(x) = G x + ξ; K maps z to the point where g is
    evaluated)."""
    blocks, step = rule
    d = G.shape[0]
    n = blocks * d

    def run(z, xi):
        seen = []

        def grad(x):
            seen.append(x)
            return G @ x + xi

        out = step(tuple(z[k * d : (k + 1) * d] for k in range(blocks)), grad)
        assert len(seen) == 1, "the rule must evaluate the gradient exactly once"
        return np.concatenate(out), seen[0]

    M = np.zeros((n, n))
    K = np.zeros((d, n))
    for j in range(n):
        z = np.zeros(n)
        z[j] = 1.0
        M[:, j], K[:, j] = run(z, np.zeros(d))
    B = np.zeros((n, d))
    for j in range(d):
        xi = np.zeros(d)
        xi[j] = 1.0
        B[:, j], x = run(np.zeros(n), xi)
        assert not x.any()
    return M, B, K


# -- noise models: (Q0, L) ----------------------------------------------------------------------


def additive_noise(C: np.ndarray):
    d = C.shape[0]
    return C.copy(), np.zeros((d * d, d * d))


def online_regression_noise(A: np.ndarray, sigma2: float, S: float, b: np.ndarray):
    """Gaussian inputs x ~ N(0, A), label-noise variance σ², batch size S, offset b."""
    d = A.shape[0]
    vecA = A.reshape(-1)
    L = (np.kron(A, A) + np.outer(vecA, vecA)) / S  # Σ -> (AΣA + Tr(AΣ)A)/S
    Ubb = np.outer(b, b)
    Q0 = (A @ Ubb @ A + np.trace(A @ Ubb) * A + sigma2 * A) / S
    assert L.shape == (d * d, d * d)
    return Q0, L


def count_covariance(S: int, N: int, replacement: bool) -> np.ndarray:
    """Cov(n_i, n_j) of the batch counts: multinomial(S, 1/N) with replacement, a uniform
    S-subset without."""
    I = np.eye(N)
    if replacement:
        return S / N * (I - 1.0 / N)
    p = S / N
    off = S * (S - 1) / (N * (N - 1)) - p * p if N > 1 else 0.0
    return p * (1 - p) * I + off * (1 - I)


def count_covariance_by_enumeration(S: int, N: int, replacement: bool) -> np.ndarray:
    """Cov(n_i, n_j) by listing every equally likely batch (tiny N only)."""
    batches = (
        itertools.product(range(N), repeat=S)
        if replacement
        else itertools.combinations(range(N), S)
    )
    counts = np.array([np.bincount(np.array(b, dtype=int), minlength=N) for b in batches], float)
    mean = counts.mean(0)
    return (counts.T @ counts) / len(counts) - np.outer(mean, mean)


def finite_data_noise(
    X: np.ndarray, y: np.ndarray, gamma: float, S: int, replacement: bool, design=None
):
    """Minibatches of a finite data set (rows of X), around θ_γ = argmin of the weight-decayed
    mean loss; returns (Q0, L, θ_γ, Ĥ)."""
    N, d = X.shape
    H = X.T @ X / N
    theta_g = np.linalg.solve(H + gamma * np.eye(d), X.T @ y / N)
    W = count_covariance(S, N, replacement) if design is None else design
    Xs = [np.outer(x, x) for x in X]
    cs = [x * (yy - x @ theta_g) for x, yy in zip(X, y)]
    L = np.zeros((d * d, d * d))
    Q0 = np.zeros((d, d))
    for i in range(N):
        for j in range(N):
            L += W[i, j] * np.kron(Xs[i], Xs[j])
            Q0 += W[i, j] * np.outer(cs[i], cs[j])
    # np.kron(Xi, Xj) vec(Σ) = vec(Xi Σ Xjᵀ) (row-major vec); symmetrised by the i <-> j sum
    return Q0 / S**2, L / S**2, theta_g, H


# -- the stationary solve -----------------------------------------------------------------------


def second_moment_map(M, B, K, L) -> np.ndarray:
    return np.kron(M, M) + np.kron(B, B) @ L @ np.kron(K, K)


def spectral_radius(M, B, K, L) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(second_moment_map(M, B, K, L)))))


def stationary_state(M, B, K, Q0, L) -> np.ndarray:
    """Σ_z from (I − T) vec Σ_z = vec(B Q0 Bᵀ)."""
    n = M.shape[0]
    T = second_moment_map(M, B, K, L)
    rhs = (B @ Q0 @ B.T).reshape(-1)
    sol = np.linalg.solve(np.eye(n * n) - T, rhs).reshape(n, n)
    return (sol + sol.T) / 2


def stability_edge(radius: Callable[[float], float], upper: float, grid: int = 80) -> float:
    """The first learning rate in (0, upper] where ``radius`` reaches 1 (scan, then bisect)."""
    lrs = np.linspace(upper / grid, upper, grid)
    previous = 0.0
    for lr in lrs:
        if radius(lr) >= 1.0:
            lo, hi = previous, lr
            for _ in range(45):
                mid = (lo + hi) / 2
                if radius(mid) >= 1.0:
                    hi = mid
                else:
                    lo = mid
            return lo
        previous = lr
    raise AssertionError(f"no instability found up to lr = {upper}")
