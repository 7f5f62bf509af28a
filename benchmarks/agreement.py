"""Theory against simulation for the whole catalogue and extra minibatch problems.

Run:  python benchmarks/agreement.py [--rel-se R]

For every problem it derives the exact result, simulates the real optimizer with real noise
(``ss.crosscheck``) and prints, over all compared entries (cov, velocity_cov, loss), the largest
relative error |estimate − theory| / |theory| (small off-diagonal entries inflate it), the loss's
relative error, the largest |z| and the Holm verdict at level 0.01.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy as sp

import symsgd as ss
from symsgd.catalogue import CATALOGUE


def extra_problems():
    """Minibatch problems beyond the catalogue: explicit matrices and finite data sets."""
    lam, S = ss.lr, ss.batch_size
    A = sp.Matrix([[2, sp.Rational(1, 2)], [sp.Rational(1, 2), 1]])
    yield (
        "sgd-minibatch-explicit-2d",
        ss.stationary(ss.SGD(lam), ss.LinearRegression(A, label_variance=1), ss.MinibatchNoise(S)),
        {lam: 0.2, S: 4},
    )
    X = sp.Matrix([[1, 0], [0, 1], [1, 1], [2, -1], [-1, 1]])
    y = sp.Matrix([1, 0, 2, 1, -1])
    data = ss.LinearRegression.from_data(X, y)
    for replacement in (True, False):
        noise = ss.MinibatchNoise(2, dataset_size=5, replacement=replacement)
        yield (
            f"sgd-finite-data-{'with' if replacement else 'without'}-replacement",
            ss.stationary(ss.SGD(lam), data, noise),
            {lam: 0.2},
        )
    yield (
        "heavy-ball-minibatch-explicit-2d",
        ss.stationary(
            ss.HeavyBall(lam, ss.momentum),
            ss.LinearRegression(A, label_variance=1),
            ss.MinibatchNoise(S),
        ),
        {lam: 0.05, ss.momentum: 0.5, S: 4},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rel-se", type=float, default=0.003)
    args = parser.parse_args()
    problems = [(c.name, c.derive(), c.params) for c in CATALOGUE] + list(extra_problems())
    head = f"{'problem':40} {'entries':>7} {'max rel err':>12} {'loss rel err':>12} {'max |z|':>8}"
    print(f"{head}  verdict   seconds")
    for seed, (name, result, params) in enumerate(problems):
        start = time.perf_counter()
        report = ss.crosscheck(result, params, seed=seed, rel_se=args.rel_se)
        rel = max(abs(r.estimate - r.theory) / abs(r.theory) for r in report.table if r.theory != 0)
        (loss,) = [r for r in report.table if r.quantity == "loss"]
        loss_rel = abs(loss.estimate - loss.theory) / abs(loss.theory)
        z = float(np.max(np.abs(report.z)))
        verdict = "passed" if report.passed else "FAILED"
        seconds = time.perf_counter() - start
        print(
            f"{name:40} {len(report.table):7d} {rel:12.2e} {loss_rel:12.2e} {z:8.2f}  "
            f"{verdict:8} {seconds:7.1f}"
        )


if __name__ == "__main__":
    main()
