"""Fully symbolic momentum (heavy ball, Nesterov): the companion solver against the old paths.

Run:  python benchmarks/companion.py [--cap SECONDS] [--no-baseline] [--d4]

For each optimizer it prints, in this one run:

* d = 2 (fully symbolic H, C; λ, μ): ``ss.stationary(..., method="companion")`` against the
  paths used before it, ``method="invariant"`` (the characteristic algebra of the 4×4 state)
  and ``method="exact"`` (fraction-free elimination of the 10-unknown half-vectorised system),
  as ratios old / companion; the answers are compared for exact equality;
* d = 3: the absolute time of ``ss.stationary(...)`` (``method="auto"``, which picks the companion
  solver; target < 10 s, certificate included), the answer's form, and — unless
  ``--no-baseline`` — the old path ``method="exact"`` (21 unknowns) in a child process stopped
  at ``--cap`` seconds (">" when it did not finish);
* the scaling exponent of the companion time between d = 2 and d = 3 (and d = 4 with ``--d4``:
  heavy ball d = 4 takes ~20 s; Nesterov d = 4, whose pair denominator has degree 2 in each of
  x and y, did not finish in 15 minutes).

Every time includes building the recursion, solving and certifying.  Nothing here asserts on
wall-clock time.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

from derive import baseline  # the capped child-process timer (benchmarks/ is on sys.path)
from sympy.core.cache import clear_cache

import symsgd as ss
from symsgd.landscapes import symmetric_matrix

KINDS = {"heavy-ball": ss.HeavyBall, "nesterov": ss.Nesterov}


def problem(kind: str, d: int):
    return (
        KINDS[kind](ss.lr, ss.momentum),
        ss.Quadratic.symbolic(d),
        ss.AdditiveNoise(symmetric_matrix(d, "c")),
    )


def timed(kind: str, d: int, method: str):
    clear_cache()
    start = time.perf_counter()
    result = ss.stationary(*problem(kind, d), method=method)
    return time.perf_counter() - start, result


def _exact_seconds(kind: str, d: int) -> float:
    """Seconds of the old path (``method="exact"``), run by derive.baseline in a child."""
    return timed(kind, d, "exact")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=300.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--d4", action="store_true")
    args = parser.parse_args()
    for kind in KINDS:
        print(f"== {kind} ==")
        t2, fast = timed(kind, 2, "companion")
        line = f"d = 2  companion {t2:7.3f} s"
        for old in ("invariant", "exact"):
            t_old, slow = timed(kind, 2, old)
            same = slow.state_cov == fast.state_cov
            line += f" | {old} {t_old:7.3f} s (ratio {t_old / t2:5.2f}, equal: {same})"
        print(line)
        t3, r3 = timed(kind, 3, "auto")
        print(
            f"d = 3  {r3.method} {t3:7.3f} s (target < 10 s; certificate: {r3.certificate.how}, "
            f"{len(r3.certificate.points)} points; structured: {r3.structured})"
        )
        if not args.no_baseline:
            t_old = baseline(kind, 3, args.cap, worker=_exact_seconds)
            shown = f"> {args.cap:.0f} s" if t_old is None else f"{t_old:.1f} s"
            ratio = f"> {args.cap / t3:.0f}" if t_old is None else f"{t_old / t3:.0f}"
            print(f"       old path method='exact' (21 unknowns): {shown} (ratio {ratio})")
        times = {2: t2, 3: t3}
        if args.d4:
            t4, r4 = timed(kind, 4, "auto")
            times[4] = t4
            print(f"d = 4  {r4.method} {t4:7.3f} s (certificate: {r4.certificate.how})")
        ds = sorted(times)
        for a, b in itertools.pairwise(ds):
            slope = math.log(times[b] / times[a]) / math.log(b / a)
            print(f"       scaling exponent d = {a} -> {b}: time ~ d^{slope:.1f}")


if __name__ == "__main__":
    main()
