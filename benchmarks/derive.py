"""Derivation speed: symsgd's solver strategies against sympy's generic exact solver.

Run:  python benchmarks/derive.py [--cap SECONDS] [--no-baseline] [--d5] [--fresh]

For each fully symbolic case it prints the time of ``ss.stationary(..., method="auto")`` (build
the recursion + solve + canonical answer; the solver it picked is ``result.method``), the time to
derive the stability conditions separately, and two baselines, each run in a child process of
this run and stopped at ``--cap`` seconds (a ratio ">" means the baseline did not finish):
``method="exact"`` (symsgd's fraction-free Bareiss elimination) and sympy's generic
``DomainMatrix.solve_den`` on the *same* half-vectorised system (not run for d = 4).  Fully
symbolic SGD d = 4 always runs (``--d4`` is accepted for compatibility and does nothing);
``--d5`` adds fully symbolic SGD d = 5 (31 symbols, structured; no baselines).
``--momentum3`` adds fully symbolic heavy-ball and Nesterov d = 3 (state dimension 6; target
< 10 s each: 0.5 s and 2.6 s with the companion solver, see ``benchmarks/companion.py`` for the
ratios against the old paths).
``--split`` times online Gaussian regression with a symbolic diagonal A = diag(a1..ad),
symbolic σ², λ, S (and μ for heavy ball) and minibatch noise for d = 2, 4, 8, 16: the trace
split (``method="trace-split"``: each mode with κ = Tr(AΣ) as an unknown, then κ closed) against
the unsplit exact elimination (``method="exact"``, capped child process), with the scaling
exponent of the split.
``--fresh`` times fully symbolic SGD d = 5 in fresh Python processes (``import symsgd`` +
``ss.stationary``, target < 6 s), once with an empty universal-polynomial disk cache and once
with it filled (the ratio warm/cold is printed; d = 5 itself is below the dimension kept on
disk, ``symsgd.cayley.PERSIST_FROM``, so both runs derive it — in milliseconds), and the
universal polynomials of d = 6..8 derived against read back from the cache.
Nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

import sympy as sp

import symsgd as ss
from symsgd.catalogue import CATALOGUE
from symsgd.landscapes import symmetric_matrix
from symsgd.lyapunov import halfvec_system
from symsgd.recursion import build_recursion
from symsgd.stability import stability_conditions


def _domainmatrix_worker(kind: str, d: int) -> float:
    """Seconds for DomainMatrix.solve_den on the half-vectorised system (built untimed)."""
    problem = _symbolic_problem(kind, d)
    rec = build_recursion(*problem)
    A, b = halfvec_system(rec)
    start = time.perf_counter()
    from sympy.polys.matrices import DomainMatrix

    dm = DomainMatrix.from_Matrix(sp.Matrix.hstack(A, b)).to_field()
    n = A.rows
    dm[:, :n].solve_den(dm[:, n:])
    return time.perf_counter() - start


def _exact_worker(kind: str, d: int) -> float:
    """Seconds for ``ss.stationary(..., method="exact")`` (Bareiss elimination)."""
    problem = _symbolic_problem(kind, d)
    start = time.perf_counter()
    ss.stationary(*problem, method="exact")
    return time.perf_counter() - start


def _online_problem(kind: str, d: int):
    """Online regression, symbolic diagonal A, symbolic σ² and batch size (``kind`` is
    ``"online-sgd"`` or ``"online-hb"``)."""
    a = sp.symbols(f"a1:{d + 1}", positive=True)
    opt = ss.SGD(ss.lr) if kind == "online-sgd" else ss.HeavyBall(ss.lr, ss.momentum)
    land = ss.LinearRegression(sp.diag(*a), label_variance=sp.Symbol("sigma2", positive=True))
    return opt, land, ss.MinibatchNoise(ss.batch_size)


def _online_exact_worker(kind: str, d: int) -> float:
    """Seconds for the unsplit ``method="exact"`` derivation of :func:`_online_problem`."""
    problem = _online_problem(kind, d)
    start = time.perf_counter()
    ss.stationary(*problem, method="exact")
    return time.perf_counter() - start


def split_scaling(cap: float, no_baseline: bool) -> None:
    """The trace split vs the unsplit exact elimination, d = 2, 4, 8, 16."""
    import numpy as np

    print("online regression, symbolic diagonal A, minibatch noise: trace split vs unsplit")
    print(f"{'case':16s} {'split s':>8s} {'method':>24s} {'exact s':>9s} {'ratio':>8s}")
    for kind in ("online-sgd", "online-hb"):
        ds, times = [2, 4, 8, 16], []
        for d in ds:
            runs = []
            for _ in range(2):  # best of two, each from an empty sympy cache
                from sympy.core.cache import clear_cache

                clear_cache()
                problem = _online_problem(kind, d)
                runs.append(timed(lambda p=problem: ss.stationary(*p, method="trace-split")))
            result, t = min(runs, key=lambda run: run[1])
            times.append(t)
            if no_baseline:
                exact, ratio = "skipped", ""
            else:
                exact, ratio = _against(baseline(kind, d, cap, _online_exact_worker), t, cap)
            print(
                f"{kind + ' d=' + str(d):16s} {t:8.3f} {result.method:>24s} {exact:>9s} {ratio:>8s}"
            )
        p = float(np.polyfit(np.log(ds[1:]), np.log(times[1:]), 1)[0])
        print(f"{kind:16s} split scaling exponent (d = 4..16, time ∝ d^p): p = {p:.2f}")


def _child(worker, args, queue):
    from sympy.core.cache import clear_cache

    clear_cache()  # no head start from the parent's sympy cache
    queue.put(worker(*args))


def baseline(kind: str, d: int, cap: float, worker=_domainmatrix_worker) -> float | None:
    """Seconds ``worker(kind, d)`` reports from a child process, or None past ``cap``."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(worker, (kind, d), queue))
    proc.start()
    proc.join(cap)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return None
    if proc.exitcode != 0:
        raise RuntimeError(f"{worker.__name__}({kind!r}, {d}) failed (exit code {proc.exitcode})")
    return queue.get(timeout=10)


def _symbolic_problem(kind: str, d: int):
    opt = {
        "sgd": lambda: ss.SGD(ss.lr),
        "heavy-ball": lambda: ss.HeavyBall(ss.lr, ss.momentum),
        "nesterov": lambda: ss.Nesterov(ss.lr, ss.momentum),
    }[kind]()
    return opt, ss.Quadratic.symbolic(d), ss.AdditiveNoise(symmetric_matrix(d, "c"))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _against(tb: float | None, t: float, cap: float) -> tuple[str, str]:
    """A baseline's seconds and its ratio to ``t`` (">" when it did not finish)."""
    if tb is None:
        return f">{cap:.0f}", f">{cap / t:.0f}x"
    return f"{tb:.2f}", f"{tb / t:.2g}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=60.0, help="baseline cap in seconds")
    parser.add_argument(
        "--d4",
        action="store_true",
        help="no-op, kept for compatibility: fully symbolic SGD d = 4 always runs",
    )
    parser.add_argument("--d5", action="store_true", help="also derive fully symbolic SGD d = 5")
    parser.add_argument("--no-baseline", action="store_true", help="skip the child-process runs")
    parser.add_argument(
        "--momentum3",
        action="store_true",
        help="also derive fully symbolic heavy-ball and Nesterov d = 3 (minutes; no baselines)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="time fully symbolic SGD d = 5 in fresh processes"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="only the trace split of online regression with a diagonal A (d = 2..16)",
    )
    args = parser.parse_args()
    if args.split:
        split_scaling(args.cap, args.no_baseline)
        return
    if args.fresh:
        fresh_process()
        print()

    print("eigen-mode / scalar derivations (target < 0.2 s each)")
    print(f"{'case':24s} {'derive s':>9s} {'conditions s':>13s}")
    for case in CATALOGUE:
        result, t = timed(case.derive)
        _, tc = timed(lambda r=result: r.conditions)
        print(f"{case.name:24s} {t:9.3f} {tc:13.3f}")

    print()
    print("fully symbolic explicit matrices (H, C symmetric with symbolic entries)")
    print('auto = method="auto"; exact = method="exact" (Bareiss); DomainMatrix = sympy solve_den')
    print(
        f"{'case':14s} {'unknowns':>8s} {'auto s':>7s} {'auto solver':>20s} {'conditions s':>12s} "
        f"{'exact s':>8s} {'ratio':>7s} {'DomainMatrix s':>14s} {'ratio':>7s}"
    )
    usable = {}
    cases = [("sgd", 2), ("sgd", 3), ("heavy-ball", 2), ("sgd", 4)] + ([("sgd", 5)] * args.d5)
    cases += [("heavy-ball", 3), ("nesterov", 3)] if args.momentum3 else []
    for kind, d in cases:
        problem = _symbolic_problem(kind, d)
        result, t = timed(lambda p=problem: ss.stationary(*p, method="auto"))
        _, tc = timed(lambda r=result: stability_conditions(r.recursion))
        n = result.recursion.n
        unknowns = n * (n + 1) // 2
        if args.no_baseline or d >= 5 or (kind != "sgd" and d >= 3):
            exact, exact_ratio, dm, dm_ratio = "skipped", "", "skipped", ""
        else:
            exact, exact_ratio = _against(baseline(kind, d, args.cap, _exact_worker), t, args.cap)
            if d >= 4:
                dm, dm_ratio = "not run", ""
            else:
                dm, dm_ratio = _against(baseline(kind, d, args.cap), t, args.cap)
        print(
            f"{kind + ' d=' + str(d):14s} {unknowns:8d} {t:7.3f} {result.method:>20s} "
            f"{tc:12.3f} {exact:>8s} {exact_ratio:>7s} {dm:>14s} {dm_ratio:>7s}"
        )
        if kind == "sgd" and d in (3, 4):
            usable[d] = result

    for d, result in usable.items():
        print()
        print(f"the fully symbolic SGD d = {d} result stays usable (seconds)")
        usability(result, d)

    print()
    lambdify_vs_scipy()


_FRESH = """
import time
start = time.perf_counter()
import symsgd as ss
from symsgd.landscapes import symmetric_matrix
d = {d}
C = symmetric_matrix(d, "c")
r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic.symbolic(d), ss.AdditiveNoise(C))
assert r.certificate is not None
print(time.perf_counter() - start, r.method)
"""


def fresh_process(d: int = 5) -> None:
    """Seconds for ``import symsgd`` + fully symbolic SGD ``d`` in a new interpreter, with the
    disk cache of the universal polynomials empty and then filled; then the universal
    polynomials of d = 6..8 derived against read back (verified) from the cache."""
    from symsgd import cayley

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMSGD_CACHE_DIR": cache}
        times = []
        for label in ("empty cache", "filled cache"):
            out = subprocess.run(
                [sys.executable, "-c", _FRESH.format(d=d)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            times.append(float(out[0]))
            print(
                f"fresh process, fully symbolic SGD d = {d}, {label}: {times[-1]:.2f} s ({out[1]})"
            )
        print(f"target < 6 s; filled / empty = {times[1] / times[0]:.2f}")
        os.environ["SYMSGD_CACHE_DIR"] = cache
        try:
            for n in (6, 7, 8):
                uni, t_derive = timed(lambda n=n: cayley.derive_universal(n))
                cayley.write_cached_universal(uni)
                back, t_read = timed(lambda n=n: cayley.read_cached_universal(n))
                assert back is not None and back.g == uni.g
                print(
                    f"universal polynomials n = {n}: derive {t_derive:.3f} s, read + verify "
                    f"{t_read:.3f} s (ratio {t_derive / t_read:.2g}x)"
                )
        finally:
            del os.environ["SYMSGD_CACHE_DIR"]


def usability(result, d: int) -> None:
    """Time the readouts of a fully symbolic SGD result at a stable point, H = 2I + 1/10 off the
    diagonal, C = I + 1/10 off the diagonal, λ = 1/10, and check its cov there against
    ``scipy.linalg.solve_discrete_lyapunov``."""
    import numpy as np
    from scipy.linalg import solve_discrete_lyapunov

    diagonal = {
        f"{name}_{i}{i}": value for name, value in (("h", 2), ("c", 1)) for i in range(1, d + 1)
    }
    values = {s: diagonal.get(str(s), sp.Rational(1, 10)) for s in result.free_symbols}
    _, t_conditions = timed(lambda: result.conditions)
    _, t_loss = timed(lambda: result.loss)
    cov, t_subs = timed(lambda: result.subs(values).cov)
    _, t_latex = timed(lambda: result.latex())
    f, t_lambdify = timed(lambda: result.lambdify())
    out, t_call = timed(lambda: f(**{str(s): float(v) for s, v in values.items()}))
    print(
        f"conditions {t_conditions:.3f}   loss {t_loss:.3f}   subs {t_subs:.3f}   "
        f"latex {t_latex:.3f}   lambdify {t_lambdify:.3f}   one call {t_call:.4f}"
    )
    H = np.array(symmetric_matrix(d, "h").xreplace(values), dtype=float)
    C = np.array(symmetric_matrix(d, "c").xreplace(values), dtype=float)
    lr = float(values[ss.lr])
    ref = solve_discrete_lyapunov(np.eye(d) - lr * H, lr**2 * C)  # Σ = MΣMᵀ + λ²C
    err_subs = np.abs(np.array(cov, dtype=float) - ref).max()
    err_call = np.abs(np.asarray(out, dtype=float) - ref).max()
    print(
        f"max |subs cov - scipy| {err_subs:.1e}   max |lambdified - scipy| {err_call:.1e}"
        f"   (method {result.method!r})"
    )


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
