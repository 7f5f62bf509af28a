"""Cost of the certificate: the exact check of every result against its defining equation.

Run:  python benchmarks/certify.py [--repeat K]

For every catalogue case and the fully symbolic explicit problems (SGD d = 2, 3, heavy ball
d = 2, the d = 3 decimal problem with a symbolic learning rate) it prints the time of
``ss.stationary`` (which includes the certificate), the time of the certificate alone
(:func:`symsgd.certify.certify_stationary` re-run on the same candidate, or
:func:`~symsgd.certify.certify_modes` for trace-coupled eigen-mode results) and their ratio.
Target: certificate ≤ 10 % of the derivation for d ≤ 3.  Best of ``--repeat`` runs, all in
this process.  Nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symsgd as ss
from symsgd.catalogue import CATALOGUE
from symsgd.certify import certify_modes, certify_stationary
from symsgd.landscapes import symmetric_matrix

_H = np.array([[0.572, 0.002, -0.516], [0.002, 2.084, -1.471], [-0.516, -1.471, 4.171]])
_C = np.array([[5.02, -2.199, -0.025], [-2.199, 1.804, -0.751], [-0.025, -0.751, 0.718]])


def problems():
    for case in CATALOGUE:
        yield case.name, (case.optimizer, case.landscape, case.noise)
    for d in (2, 3):
        yield (
            f"symbolic sgd d={d}",
            (ss.SGD(ss.lr), ss.Quadratic.symbolic(d), ss.AdditiveNoise(symmetric_matrix(d, "c"))),
        )
    yield (
        "symbolic heavy-ball d=2",
        (
            ss.HeavyBall(ss.lr, ss.momentum),
            ss.Quadratic.symbolic(2),
            ss.AdditiveNoise(symmetric_matrix(2, "c")),
        ),
    )
    yield "decimal d=3, symbolic lr", (ss.SGD(ss.lr), ss.Quadratic(_H), ss.AdditiveNoise(_C))


def best(fn, repeat: int) -> tuple[object, float]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def certificate_only(result) -> float:
    if result.closure:
        return best(lambda: certify_modes(result), 1)[1]
    rec = result.recursion
    return best(lambda: certify_stationary(rec, result.solution.state_cov), 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    print(f"{'case':28s} {'stationary s':>13s} {'certificate s':>14s} {'share':>7s}  method")
    shares = []
    for name, problem in problems():
        result, total = best(lambda p=problem: ss.stationary(*p), args.repeat)
        cert = min(certificate_only(result) for _ in range(args.repeat))
        shares.append(cert / total)
        print(f"{name:28s} {total:13.4f} {cert:14.4f} {cert / total:7.1%}  {result.method}")
    print(f"median share {np.median(shares):.1%}, max {max(shares):.1%}")


if __name__ == "__main__":
    main()
