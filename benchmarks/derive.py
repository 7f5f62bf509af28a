"""Derivation speed: symsgd's solver strategies against sympy's generic exact solver.

Run:  python benchmarks/derive.py [--cap SECONDS] [--d4]

For each case it prints symsgd's time (build the recursion + solve + canonical answer), the
time to derive the stability conditions separately, and the generic baseline: sympy's
``DomainMatrix.solve_den`` on the *same* half-vectorised system, run in a child process of this
run and stopped at ``--cap`` seconds (a ratio ">" means the baseline did not finish).
Nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import sympy as sp

import symsgd as ss
from symsgd.catalogue import CATALOGUE
from symsgd.landscapes import symmetric_matrix
from symsgd.lyapunov import halfvec_system
from symsgd.recursion import build_recursion
from symsgd.stability import stability_conditions


def _baseline_worker(args, queue):
    kind, d = args
    problem = _symbolic_problem(kind, d)
    rec = build_recursion(*problem)
    A, b = halfvec_system(rec)
    start = time.perf_counter()
    from sympy.polys.matrices import DomainMatrix

    dm = DomainMatrix.from_Matrix(sp.Matrix.hstack(A, b)).to_field()
    n = A.rows
    dm[:, :n].solve_den(dm[:, n:])
    queue.put(time.perf_counter() - start)


def baseline(kind: str, d: int, cap: float) -> float | None:
    """Seconds for DomainMatrix.solve_den on the same system, or None past ``cap``."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_baseline_worker, args=((kind, d), queue))
    proc.start()
    proc.join(cap)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return None
    return queue.get()


def _symbolic_problem(kind: str, d: int):
    opt = ss.SGD(ss.lr) if kind == "sgd" else ss.HeavyBall(ss.lr, ss.momentum)
    return opt, ss.Quadratic.symbolic(d), ss.AdditiveNoise(symmetric_matrix(d, "c"))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=60.0, help="baseline cap in seconds")
    parser.add_argument("--d4", action="store_true", help="also run fully symbolic SGD d = 4")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    print("eigen-mode / scalar derivations (target < 0.2 s each)")
    print(f"{'case':24s} {'derive s':>9s} {'conditions s':>13s}")
    for case in CATALOGUE:
        result, t = timed(case.derive)
        _, tc = timed(lambda r=result: r.conditions)
        print(f"{case.name:24s} {t:9.3f} {tc:13.3f}")

    print()
    print("fully symbolic explicit matrices (H, C symmetric with symbolic entries)")
    print(
        f"{'case':18s} {'unknowns':>8s} {'symsgd s':>9s} {'conditions s':>13s} "
        f"{'baseline s':>11s} {'ratio':>8s}"
    )
    cases = [("sgd", 2), ("sgd", 3), ("heavy-ball", 2)] + ([("sgd", 4)] if args.d4 else [])
    for kind, d in cases:
        problem = _symbolic_problem(kind, d)
        result, t = timed(lambda p=problem: ss.stationary(*p, method="exact"))
        _, tc = timed(lambda r=result: stability_conditions(r.recursion))
        n = result.recursion.n
        unknowns = n * (n + 1) // 2
        if args.no_baseline:
            base, ratio = "skipped", ""
        else:
            tb = baseline(kind, d, args.cap)
            base = f">{args.cap:.0f}" if tb is None else f"{tb:.2f}"
            ratio = f">{args.cap / t:.0f}x" if tb is None else f"{tb / t:.2g}x"
        print(
            f"{kind + ' d=' + str(d):18s} {unknowns:8d} {t:9.3f} {tc:13.3f} {base:>11s} {ratio:>8s}"
        )
        if (kind, d) == ("sgd", 3):
            usable = result

    print()
    print("the fully symbolic SGD d = 3 result stays usable (seconds)")
    # a stable point: H = 2I + 1/10 off the diagonal, C = I + 1/10 off the diagonal, λ = 1/10
    values = {s: sp.Rational(1, 10) for s in usable.free_symbols}
    values.update({s: 2 for s in usable.free_symbols if str(s) in ("h_11", "h_22", "h_33")})
    values.update({s: 1 for s in usable.free_symbols if str(s) in ("c_11", "c_22", "c_33")})
    _, t_subs = timed(lambda: usable.subs(values).cov)
    _, t_latex = timed(lambda: usable.latex())
    _, t_lambdify = timed(lambda: usable.lambdify())
    print(f"subs {t_subs:.3f}   latex {t_latex:.3f}   lambdify {t_lambdify:.3f}")

    print()
    lambdify_vs_scipy()


def lambdify_vs_scipy(points: int = 10**6, scipy_points: int = 2000) -> None:
    """A lambdified heavy-ball d = 2 result over ``points`` random parameter points against
    ``scipy.linalg.solve_discrete_lyapunov`` called point by point (timed on ``scipy_points``
    points and scaled), in this process."""
    import numpy as np
    from scipy.linalg import solve_discrete_lyapunov

    h1, h2, c1, c2 = sp.symbols("h_1 h_2 c_1 c_2", positive=True)
    H, C = sp.diag(h1, h2), sp.Matrix([[c1, c1 / 2], [c1 / 2, c2]])
    result = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(H), ss.AdditiveNoise(C))
    f = result.lambdify()
    rng = np.random.default_rng(0)
    p = {
        "h_1": rng.uniform(0.5, 2, points),
        "h_2": rng.uniform(0.5, 2, points),
        "c_1": rng.uniform(1, 2, points),
        "c_2": rng.uniform(1, 2, points),
        "momentum": rng.uniform(0, 0.9, points),
    }
    p["lr"] = (
        rng.uniform(0.01, 0.9, points) * 2 * (1 + p["momentum"]) / np.maximum(p["h_1"], p["h_2"])
    )
    out, _ = timed(lambda: f(**p))  # the first call allocates; time the best of three
    t_fast = min(timed(lambda: f(**p))[1] for _ in range(3))

    def one(k):
        lr, m = p["lr"][k], p["momentum"][k]
        Hk = np.diag([p["h_1"][k], p["h_2"][k]])
        Ck = np.array([[p["c_1"][k], p["c_1"][k] / 2], [p["c_1"][k] / 2, p["c_2"][k]]])
        I, Z = np.eye(2), np.zeros((2, 2))
        M = np.block([[(1 + m) * I - lr * Hk, -m * I], [I, Z]])
        B = np.vstack([-lr * I, Z])
        return solve_discrete_lyapunov(M, B @ Ck @ B.T)[:2, :2]

    ref, t_slow = timed(lambda: [one(k) for k in range(scipy_points)])
    ok = all(np.allclose(out[k], r, rtol=1e-8) for k, r in enumerate(ref[:50]))
    per_point = t_slow / scipy_points
    print(f"heavy-ball d = 2, lambdified over {points:.0e} points: {t_fast:.3f} s (best of 3,")
    print("stability conditions checked at every point); scipy point by")
    print(
        f"point: {per_point * 1e6:.1f} µs/point ({per_point * points:.1f} s for {points:.0e});"
        f" ratio {per_point * points / t_fast:.0f}x; same values: {ok}"
    )


if __name__ == "__main__":
    main()
