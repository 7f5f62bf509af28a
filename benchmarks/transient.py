"""Minibatch transients on a diagonal online regression: the per-mode path against the dense map.

    .venv/bin/python benchmarks/transient.py [--cap 60] [--steps 100]

``ss.transient`` of ``LinearRegression(diag(a_1..a_d), σ²)`` with ``MinibatchNoise(S)`` now
follows the modes (their own blocks coupled by the trace Tr(AΣ), each pair's cross block alone,
see symsgd/_transient.py); the baseline is the previous path — the dense affine map on
(mean, half-vectorised second moment, 1), of size kd + kd(kd+1)/2 + 1, raised to the power t
by repeated squaring (python-flint in ℚ, numpy in float64) — timed in a child process capped at
``--cap`` seconds (``derive.baseline``; ">" when it did not finish).  Both answers are compared
exactly (ℚ) or to 10⁻⁹ relative (float) where the baseline finished.  Cases: SGD and heavy ball,
exact and float, d = 4, 8, 16, 50, 200 with eigenvalues j/100 drawn from a seeded generator,
θ₀ = 1 in every mode.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402
from derive import baseline  # noqa: E402  (benchmarks/ is on sys.path)

import symsgd as ss  # noqa: E402
from symsgd._transient import _affine, _power_apply, _start  # noqa: E402
from symsgd.moments import from_halfvec, pairs  # noqa: E402

R = sp.Rational


def problem(kind: str, d: int, exact: bool):
    rng = np.random.default_rng(d)
    eig = [R(int(v), 100) for v in rng.integers(1, 200, size=d)]
    if not exact:
        eig = [float(e) for e in eig]
    opt = {"sgd": ss.SGD(R(1, 20)), "heavy-ball": ss.HeavyBall(R(1, 40), R(1, 2))}[kind]
    if not exact:
        opt = {"sgd": ss.SGD(0.05), "heavy-ball": ss.HeavyBall(0.025, 0.5)}[kind]
    land = ss.LinearRegression(sp.diag(*eig), label_variance=R(1, 3) if exact else 1 / 3)
    return opt, land, ss.MinibatchNoise(4), [1] * d


def dense(opt, land, noise, theta0, steps):
    """The previous path: the dense affine map to the power ``steps``; θ's second moment."""
    rec = ss.build_recursion(opt, land, noise)
    n = rec.n
    z0 = _start(opt, theta0, land.dim)
    S0 = z0 * z0.T
    v0 = sp.Matrix([*z0, *[S0[i, j] for i, j in pairs(n)], 1])
    v, _ = _power_apply(_affine(rec), v0, steps)
    S = sp.Matrix(from_halfvec(n, list(v[n : n + len(pairs(n))])))
    Theta = sp.Matrix(rec.theta_map)
    return Theta * S * Theta.T


_STEPS = 100
_KEEP: dict = {}


def _worker(name: str, d: int) -> float:
    kind, number = name.split("/")
    args = problem(kind, d, number == "exact")
    start = time.perf_counter()
    out = dense(*args, _STEPS)
    seconds = time.perf_counter() - start
    _KEEP["out"] = out
    return seconds


def main() -> None:
    global _STEPS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=60.0, help="baseline cap in seconds")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    _STEPS = args.steps
    print(f"t = {args.steps} steps; baseline capped at {args.cap:.0f} s")
    print(f"{'case':<22}{'d':>5}{'modes s':>10}{'dense s':>10}{'ratio':>10}  agree")
    for kind in ("sgd", "heavy-ball"):
        for number in ("exact", "float"):
            for d in (4, 8, 16, 50, 200):
                opt, land, noise, theta0 = problem(kind, d, number == "exact")
                start = time.perf_counter()
                r = ss.transient(opt, land, noise, theta0=theta0, steps=args.steps)
                t = time.perf_counter() - start
                tb = baseline(f"{kind}/{number}", d, args.cap, _worker) if d <= 50 else None
                agree = "-"
                if tb is not None:
                    want = dense(opt, land, noise, theta0, args.steps)
                    if number == "exact":
                        agree = "exact" if want == r.second_moment else "DIFFER"
                    else:
                        w = np.array(want, dtype=float)
                        g = np.array(r.second_moment, dtype=float)
                        agree = f"{np.abs(g - w).max() / np.abs(w).max():.1e}"
                shown = "not run" if d > 50 else f">{args.cap:.0f}"
                base = shown if tb is None else f"{tb:.2f}"
                ratio = "-" if tb is None else f"{tb / t:.3g}x"
                print(f"{kind + '/' + number:<22}{d:>5}{t:>10.2f}{base:>10}{ratio:>10}  {agree}")


if __name__ == "__main__":
    main()
