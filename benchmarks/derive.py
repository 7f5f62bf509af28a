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
            ratio = f">{args.cap / t:.0f}x" if tb is None else f"{tb / t:.0f}x"
        print(
            f"{kind + ' d=' + str(d):18s} {unknowns:8d} {t:9.3f} {tc:13.3f} {base:>11s} {ratio:>8s}"
        )


if __name__ == "__main__":
    main()
