"""Independent numeric oracles for the tests.

The state-space matrices here are written out by hand from each optimizer's update rule (not
taken from symsgd's derived recursion), and the stationary covariance is solved with scipy.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.linalg import solve_discrete_lyapunov


def state_space(
    name: str,
    H: np.ndarray,
    lr: float,
    mu: float = 0.0,
    P=None,
    wd: float = 0.0,
    beta1: float = 0.0,
    nu: float = 0.0,
    ema: float = 0.0,
):
    """(M, B, K) of z' = M z + B ξ for the optimizer ``name`` (typed in by hand); θ is the first
    block of z, except for ``"ema-<inner>"``, whose reported θ̄ is the last block."""
    d = H.shape[0]
    I, Z = np.eye(d), np.zeros((d, d))
    P = I if P is None else P
    G = H + wd * I
    if name in ("sgd", "preconditioned", "damped-newton", "natural-gradient"):
        return I - lr * P @ G, -lr * P, I
    if name == "heavy-ball":
        M = np.block([[(1 + mu) * I - lr * P @ G, -mu * I], [I, Z]])
        return M, np.vstack([-lr * P, Z]), np.hstack([I, Z])
    if name == "nesterov":
        A = I - lr * P @ G
        M = np.block([[(1 + mu) * A, -mu * A], [I, Z]])
        return M, np.vstack([-lr * P, Z]), np.hstack([(1 + mu) * I, -mu * I])
    if name == "adam":
        # m' = b1 m + (1-b1)(G θ + ξ);  θ' = θ - lr P m'
        M = np.block(
            [[I - lr * (1 - beta1) * P @ G, -lr * beta1 * P], [(1 - beta1) * G, beta1 * I]]
        )
        return M, np.vstack([-lr * (1 - beta1) * P, (1 - beta1) * I]), np.hstack([I, Z])
    if name == "qhm":
        # m' = μ m + (1-μ)(G θ + ξ);  θ' = θ - lr P((1-ν)(G θ + ξ) + ν m')
        fresh = (1 - nu) + nu * (1 - mu)  # weight of this step's gradient in the step
        M = np.block([[I - lr * fresh * P @ G, -lr * nu * mu * P], [(1 - mu) * G, mu * I]])
        return M, np.vstack([-lr * fresh * P, (1 - mu) * I]), np.hstack([I, Z])
    if name.startswith("ema-"):
        # the inner (M, B, K) on (z, θ̄), θ̄' = β θ̄ + (1-β) θ' with θ = the inner's first block
        Mi, Bi, Ki = state_space(name[4:], H, lr, mu=mu, P=P, wd=wd, beta1=beta1, nu=nu)
        n = Mi.shape[0]
        R = np.hstack([I, np.zeros((d, n - d))])
        M = np.block([[Mi, np.zeros((n, d))], [(1 - ema) * R @ Mi, ema * I]])
        return M, np.vstack([Bi, (1 - ema) * R @ Bi]), np.hstack([Ki, Z])
    raise ValueError(name)


def _theta(name: str, S: np.ndarray, d: int) -> np.ndarray:
    """The reported block of a state second moment (the average θ̄ for ``"ema-…"``)."""
    return S[-d:, -d:] if name.startswith("ema-") else S[:d, :d]


def additive_cov(name, H, C, lr, **kw) -> np.ndarray:
    """Stationary Var θ with additive noise, by scipy's Lyapunov solver."""
    M, B, _ = state_space(name, H, lr, **kw)
    S = solve_discrete_lyapunov(M, B @ C @ B.T)
    return _theta(name, S, H.shape[0])


def gaussian_minibatch_cov(name, A, sigma2, S, lr, iterations=20000, **kw) -> np.ndarray:
    """Stationary Var θ for online regression with minibatch noise, by fixed-point iteration of
    Σ_z = Lyap(M, B Q(KΣK^T) B^T) with the textbook Gaussian noise covariance
    Q(Σ) = (AΣA + Tr(AΣ) A + σ² A) / S."""
    M, B, K = state_space(name, A, lr, **kw)
    n = M.shape[0]
    Sz = np.zeros((n, n))
    for _ in range(iterations):
        X = K @ Sz @ K.T
        Q = (A @ X @ A + np.trace(A @ X) * A + sigma2 * A) / S
        new = solve_discrete_lyapunov(M, B @ Q @ B.T)
        if np.max(np.abs(new - Sz)) < 1e-15 * max(1.0, np.max(np.abs(new))):
            Sz = new
            break
        Sz = new
    return _theta(name, Sz, A.shape[0])


def enumerated_batch_cov(X: np.ndarray, y: np.ndarray, S: int, lr: float, replacement: bool):
    """Stationary Var θ for SGD on a finite data set, enumerating every possible minibatch.

    Each batch B (with its probability) gives the exact random linear map
    δ' = (I - λ H_B) δ + λ c_B; the second moment obeys
    Σ' = Σ_B p_B [(I - λH_B) Σ (I - λH_B)^T + λ² c_B c_B^T], solved as a linear system.
    """
    N, d = X.shape
    theta_star = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ theta_star
    if replacement:
        batches = [(idx, 1.0 / N**S) for idx in itertools.product(range(N), repeat=S)]
    else:
        subsets = list(itertools.combinations(range(N), S))
        batches = [(idx, 1.0 / len(subsets)) for idx in subsets]
    I = np.eye(d)
    T = np.zeros((d * d, d * d))
    F = np.zeros((d, d))
    for idx, p in batches:
        HB = sum(np.outer(X[i], X[i]) for i in idx) / S
        cB = sum(X[i] * e[i] for i in idx) / S
        R = I - lr * HB
        T += p * np.kron(R, R)
        F += p * lr**2 * np.outer(cB, cB)
    vec = np.linalg.solve(np.eye(d * d) - T, F.reshape(-1))
    return vec.reshape(d, d)


def random_spd(rng, d: int, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return Q @ np.diag(rng.uniform(low, high, size=d)) @ Q.T
