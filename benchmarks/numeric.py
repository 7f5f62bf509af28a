"""Numeric and diagonal problems: symsgd against a baseline in the same process, and scaling.

    .venv/bin/python benchmarks/numeric.py            # a few minutes
    .venv/bin/python benchmarks/numeric.py --quick    # under a minute, smaller d

For each family and dimension d it prints the time of ``ss.stationary`` (the derivation
alone: the problem is built first), the time of a baseline computed here on the same matrices,
their ratio, and per family the fitted scaling exponent p of time ∝ d^p (least squares on
log time vs log d).  Families:

* ``sgd``, ``heavy-ball``: all-numeric float H (random SPD), C = I/2, additive noise; baseline
  scipy ``solve_discrete_lyapunov`` on the same state matrix M and forcing BCBᵀ (target:
  ratio ≤ 3);
* ``minibatch``: SGD on a float finite data set (N = 50) with minibatch noise (S = 4); baseline
  the dense Kronecker solve of (I − T) vec Σ = vec G with T built in numpy (target: d = 20
  under 1 s);
* ``diagonal``: ``Quadratic.diagonal(d)`` with a symbolic diagonal C, symbolic λ; baseline d
  times the same derivation for one scalar mode (target: linear in d, d = 100 under 5 s);
* ``online-sgd``, ``online-hb``: SGD / heavy ball on online Gaussian regression with a float
  diagonal A (minibatch noise, S = 4: blocks coupled through Tr(AΣ), solved per block by
  ``symsgd.moments.TraceSplit``); baseline the unsplit float path on the same map in this
  process (its stability check and Stein-preconditioned GMRES solve, the trace coupling hidden
  from it);
* ``natural-grad``, ``natural-grad-mb``: NaturalGradient with its default Fisher on float H, C
  (additive) and on float online regression (minibatch, S = 8); ``adam``: Adam with v = None
  (additive, float H, C, β₁ = 0.9, ε = 10⁻⁸; ``adam`` leaves β₂ symbolic, as by default, which
  keeps it off the float path today; ``adam-beta2`` gives β₂ = 0.999); baseline scipy
  ``solve_discrete_lyapunov`` on the recursion's own M and BQ₀Bᵀ (additive), the dense
  Kronecker solve (minibatch).

Times are the best of ``--repeat`` runs (default 3; 1 with ``--quick``), with BLAS on one
thread unless ``--all-threads``; the load average is printed because other processes change
the numbers.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

# one BLAS thread unless --all-threads: on a shared 2-core machine a multi-threaded BLAS that
# competes with other processes makes both timings swing by 10× and more
if "--all-threads" not in sys.argv:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np
import sympy as sp
from scipy.linalg import solve_discrete_lyapunov

import symsgd as ss


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def spd(rng, d: int) -> np.ndarray:
    A = rng.standard_normal((d, d))
    return A @ A.T / d + np.eye(d)


def additive(kind: str, d: int, repeat: int, rng) -> tuple[float, float]:
    H = spd(rng, d)
    lr, mu = 0.1, 0.5
    land, noise = ss.Quadratic(H), ss.AdditiveNoise(np.eye(d) / 2)
    if kind == "sgd":
        opt = ss.SGD(lr)
        M, B = np.eye(d) - lr * H, -lr * np.eye(d)
    else:
        opt = ss.HeavyBall(lr, mu)
        I, Z = np.eye(d), np.zeros((d, d))
        M = np.block([[(1 + mu) * I - lr * H, -mu * I], [I, Z]])
        B = np.vstack([-lr * I, Z])
    G = B @ (np.eye(d) / 2) @ B.T
    ours = best(lambda: ss.stationary(opt, land, noise), repeat)
    base = best(lambda: solve_discrete_lyapunov(M, G), repeat)
    return ours, base


def minibatch(d: int, repeat: int, rng) -> tuple[float, float]:
    N, S, lr = 50, 4, 0.02
    X = rng.standard_normal((N, d))
    y = X @ np.ones(d) + 0.3 * rng.standard_normal(N)
    land, noise = ss.LinearRegression.from_data(X, y), ss.MinibatchNoise(S, dataset_size=N)
    ours = best(lambda: ss.stationary(ss.SGD(lr), land, noise), repeat)

    def baseline():  # the dense Kronecker solve, everything in numpy
        alpha, beta = (1 / N - 1 / N**2) * S, -S / N**2  # with replacement: Cov(n_i, n_j)
        theta = np.linalg.lstsq(X, y, rcond=None)[0]
        e = y - X @ theta
        G0 = X.T @ X
        Q0 = (alpha * (X.T * e**2) @ X + beta * np.outer(X.T @ e, X.T @ e)) / S**2
        L = np.zeros((d * d, d * d))
        for k in range(d * d):
            E = np.zeros(d * d)
            E[k] = 1
            E = E.reshape(d, d)
            E = (E + E.T) / 2
            q = np.einsum("ij,jk,ik->i", X, E, X)
            L[:, k] = ((alpha * (X.T * q) @ X + beta * G0 @ E @ G0) / S**2).reshape(-1)
        M = np.eye(d) - lr * G0 / N
        B = -lr * np.eye(d)
        T = np.kron(M, M) + np.kron(B, B) @ L
        return np.linalg.solve(np.eye(d * d) - T, (B @ Q0 @ B.T).reshape(-1))

    return ours, best(baseline, repeat)


def diagonal(d: int, repeat: int) -> tuple[float, float]:
    C = sp.diag(*sp.symbols(f"c1:{d + 1}", positive=True))
    land = ss.Quadratic.diagonal(d)
    ours = best(lambda: ss.stationary(ss.SGD(ss.lr), land, ss.AdditiveNoise(C)), repeat)
    h, c = sp.symbols("h c", positive=True)
    one = best(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c)), repeat)
    return ours, d * one


def online_diagonal(kind: str, d: int, repeat: int, rng) -> tuple[float, float]:
    from symsgd.moments import NumericMap

    eig = rng.uniform(0.5, 2.0, d)
    land = ss.LinearRegression(sp.diag(*[sp.Float(v) for v in eig]), label_variance=0.5)
    lr = 0.4 / eig.sum()
    opt = ss.SGD(lr) if kind == "online-sgd" else ss.HeavyBall(lr / 2, 0.5)
    noise = ss.MinibatchNoise(4)
    result = ss.stationary(opt, land, noise)
    ours = best(lambda: ss.stationary(opt, land, noise), repeat)
    T = NumericMap.from_recursion(result.recursion)
    coupling = T.linear

    def baseline():  # the same map with its trace coupling hidden: the unsplit float path
        hidden = NumericMap(T.M, T.B, T.K, T.Q0, None, lambda S: coupling(S))
        assert hidden.split() is None and hidden.stable()
        return hidden.solve()

    return ours, best(baseline, 1)


def preconditioned(kind: str, d: int, repeat: int, rng) -> tuple[float, float]:
    H, C = spd(rng, d), spd(rng, d)
    if kind == "natural-grad":
        opt, land, noise = ss.NaturalGradient(0.1), ss.Quadratic(H), ss.AdditiveNoise(C)
    elif kind in ("adam", "adam-beta2"):
        beta2 = {"beta2": 0.999} if kind == "adam-beta2" else {}
        opt = ss.Adam(0.01, beta1=0.9, eps=1e-8, **beta2)
        land, noise = ss.Quadratic(H), ss.AdditiveNoise(C)
    else:
        opt = ss.NaturalGradient(0.02)
        land, noise = ss.LinearRegression(H, label_variance=0.5), ss.MinibatchNoise(8)
    result = ss.stationary(opt, land, noise)
    ours = best(lambda: ss.stationary(opt, land, noise), repeat)
    from symsgd.moments import NumericMap

    T = NumericMap.from_recursion(result.recursion)
    M, B, K = T.M, T.B, T.K
    if kind != "natural-grad-mb":
        G = B @ C @ B.T
        return ours, best(lambda: solve_discrete_lyapunov(M, G), repeat)
    A = H  # online regression: Q(Σ) = (AUA + Tr(AU)A + σ²A)/S
    vecA = A.reshape(-1)
    L = (np.kron(A, A) + np.outer(vecA, vecA)) / 8
    Q0 = 0.5 * A / 8

    def dense():
        n = M.shape[0]
        T = np.kron(M, M) + np.kron(B, B) @ L @ np.kron(K, K)
        return np.linalg.solve(np.eye(n * n) - T, (B @ Q0 @ B.T).reshape(-1))

    return ours, best(dense, repeat)


def exponent(ds: list[int], times: list[float]) -> float:
    x, y = np.log(ds), np.log(times)
    return float(np.polyfit(x, y, 1)[0]) if len(ds) > 1 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller d, one repeat")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--all-threads", action="store_true", help="BLAS on every core")
    parser.add_argument("--only", nargs="*", default=None, help="families to run (default all)")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    rng = np.random.default_rng(0)
    sizes = {
        "sgd": [30, 60] if args.quick else [30, 100, 200],
        "heavy-ball": [30, 60] if args.quick else [30, 100, 200],
        "minibatch": [5, 10] if args.quick else [5, 10, 20],
        "diagonal": [10, 30] if args.quick else [10, 30, 100],
        "online-sgd": [50] if args.quick else [50, 200],
        "online-hb": [50] if args.quick else [50, 200],
        "natural-grad": [5, 10, 30],
        "natural-grad-mb": [5, 10, 30],
        "adam": [2, 5, 10],
        "adam-beta2": [2, 5, 10, 30],
    }
    baseline = {
        "sgd": "scipy solve_discrete_lyapunov",
        "heavy-ball": "scipy solve_discrete_lyapunov",
        "minibatch": "numpy dense Kronecker solve",
        "diagonal": "d × one scalar mode",
        "online-sgd": "unsplit float path (GMRES)",
        "online-hb": "unsplit float path (GMRES)",
        "natural-grad": "scipy solve_discrete_lyapunov",
        "natural-grad-mb": "numpy dense Kronecker solve",
        "adam": "scipy solve_discrete_lyapunov",
        "adam-beta2": "scipy solve_discrete_lyapunov",
    }
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; best of {repeat}")
    ss.stationary(ss.SGD(0.1), ss.Quadratic(1.0), ss.AdditiveNoise(1.0))  # imports, caches
    print(f"{'family':12s} {'d':>4s} {'symsgd s':>10s} {'baseline s':>11s} {'ratio':>7s}  baseline")
    for family, ds in sizes.items():
        if args.only and family not in args.only:
            continue
        times = []
        for d in ds:
            if family in ("sgd", "heavy-ball"):
                ours, base = additive(family, d, repeat, rng)
            elif family == "minibatch":
                ours, base = minibatch(d, repeat, rng)
            elif family.startswith("online"):
                ours, base = online_diagonal(family, d, repeat, rng)
            elif family in ("natural-grad", "natural-grad-mb", "adam", "adam-beta2"):
                ours, base = preconditioned(family, d, repeat, rng)
            else:
                ours, base = diagonal(d, repeat)
            times.append(ours)
            print(
                f"{family:12s} {d:4d} {ours:10.4f} {base:11.4f} {ours / base:7.2f}  "
                f"{baseline[family]}",
                flush=True,
            )
        print(f"{family:12s} scaling exponent (time ∝ d^p): p = {exponent(ds, times):.2f}")


if __name__ == "__main__":
    main()
