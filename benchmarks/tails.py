"""Exact fourth-moment radii against the Monte Carlo estimate they replace, in one process.

Run:  python benchmarks/tails.py

For online Gaussian regression in d = 2, 3 and a data set sampled with replacement (too many
multisets to enumerate) it times ``fourth_moment(method="monte-carlo")`` at the default number of
draws (the former route) and the exact route (Isserlis' theorem / sums of i.i.d. draws), and
prints the time ratio, the Monte Carlo error in its own standard errors and its relative error.
Then it times the exact tail index and Lyapunov exponent of scalar and isotropic problems.
"""

from __future__ import annotations

import time

import numpy as np
import sympy as sp

import symsgd as ss
from symsgd.sampling import prepare
from symsgd.tails import fourth_moment, lyapunov_exponent, tail_index


def problems():
    yield (
        "online d=2, S=4",
        prepare(
            ss.SGD(0.2),
            ss.LinearRegression(sp.Matrix([[2, 0.5], [0.5, 1]]), label_variance=1),
            ss.MinibatchNoise(4),
            {},
        ),
    )
    yield (
        "online d=3, S=8",
        prepare(
            ss.SGD(0.1),
            ss.LinearRegression(sp.diag(1, 2, 3), label_variance=1),
            ss.MinibatchNoise(8),
            {},
        ),
    )
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    land = ss.LinearRegression.from_data(sp.Matrix(X), list(rng.normal(size=40)))
    yield "data N=40, S=6 (with replacement)", prepare(ss.SGD(0.3), land, ss.MinibatchNoise(6), {})


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    print(f"{'problem':36} {'exact':>10} {'MC':>10} {'z':>6} {'rel.err':>8} {'time MC/exact':>14}")
    for name, problem in problems():
        exact, t_exact = timed(lambda p=problem: fourth_moment(p))
        sampled, t_mc = timed(lambda p=problem: fourth_moment(p, method="monte-carlo", seed=1))
        z = (sampled.radius - exact.radius) / sampled.stderr
        rel = abs(sampled.radius - exact.radius) / exact.radius
        print(
            f"{name:36} {exact.radius:10.6f} {sampled.radius:10.6f} {z:6.2f} {rel:8.2%} "
            f"{t_mc / t_exact:14.1f}  ({exact.method})"
        )
    a = sp.Symbol("a", positive=True)
    scalar = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(ss.batch_size)
    )
    isotropic = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression(sp.eye(2), label_variance=1), ss.MinibatchNoise(2)
    )
    for name, result, values in (
        ("scalar S=2, λ=0.9", scalar, {ss.lr: 0.9, a: 1, ss.batch_size: 2}),
        ("scalar S=1, λ=0.01", scalar, {ss.lr: 0.01, a: 1, ss.batch_size: 1}),
        ("isotropic d=2, S=2, λ=0.7", isotropic, {ss.lr: 0.7}),
    ):
        t, t_tail = timed(lambda r=result, v=values: tail_index(r, v))
        g, t_lyap = timed(lambda r=result, v=values: lyapunov_exponent(r, v))
        print(
            f"{name:28} alpha = {t.alpha:.10g} ({t_tail:.2f} s), "
            f"lyapunov = {g.value:.10g} ({t_lyap:.2f} s)"
        )


if __name__ == "__main__":
    main()
