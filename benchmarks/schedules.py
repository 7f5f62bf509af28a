"""Periodic steady states of schedules: ``periodic_state`` against a baseline in the same process.

    .venv/bin/python benchmarks/schedules.py

For each case it prints the time of :func:`symsgd.schedules.periodic_state` (recursions built,
solved, certified), the time of the baseline computed here — iterating the float64 maps of every
phase from zero, one period at a time, until the state changes by less than 10⁻¹² relative
(what one would do without the composed solve) — their ratio, and the largest relative
difference between the two answers.  Cases: a two-phase SGD cycle on a scalar quadratic with
one unstable phase (exact, ℚ), heavy-ball on a finite data set (exact), a float online-regression
heavy-ball cycle with d = 4 (dense) and d = 7 (n = 14: the GMRES + Arnoldi path), and a slow
cycle (ρ close to 1) where the iteration needs many periods.  Times are the best of 3 runs with
BLAS on one thread; nothing is asserted.
"""

from __future__ import annotations

import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import symsgd as ss  # noqa: E402
from symsgd.moments import NumericMap  # noqa: E402
from symsgd.recursion import numeric_recursion  # noqa: E402
from symsgd.schedules import Schedule, periodic_state  # noqa: E402

R = sp.Rational


def best(fn, *args, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def baseline(schedule, landscape, noise, rtol: float = 1e-12, max_periods: int = 10**6):
    """Σ at the start of phase 0, by iterating every phase's float map from zero."""
    maps = [
        NumericMap.from_recursion(numeric_recursion(o, landscape, noise))
        for o in schedule.optimizers
    ]
    forcings = [T.forcing() for T in maps]
    S = np.zeros((maps[0].n, maps[0].n))
    for _ in range(max_periods):
        old = S
        for T, t, f in zip(maps, schedule.steps, forcings):
            for _ in range(t):
                S = T.apply(S) + f
        if np.abs(S - old).max() <= rtol * np.abs(S).max():
            return S
    return S


def online(d: int, seed: int):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((d, d))
    A = G @ G.T / d + 0.5 * np.eye(d)
    top = float(np.linalg.eigvalsh(A).max())
    return sp.Matrix(A.tolist()), top


def cases():
    X4, Y4 = [[1, 0], [1, 1], [0, 2], [2, -1]], [1, 2, 1, 0]
    yield (
        "sgd scalar, unstable phase (Q)",
        Schedule.cyclical(ss.SGD, [R(5, 2), R(1, 2)]),
        ss.Quadratic(1),
        ss.AdditiveNoise(1),
    )
    yield (
        "heavy-ball finite data (Q)",
        Schedule([ss.HeavyBall(1, R(1, 4)), ss.HeavyBall(R(3, 10), R(1, 10))], steps=[1, 3]),
        ss.LinearRegression.from_data(X4, Y4),
        ss.MinibatchNoise(2, replacement=False),
    )
    for d in (4, 7):
        A, top = online(d, 5)
        yield (
            f"heavy-ball online d={d} (float)",
            Schedule.cyclical(ss.HeavyBall, [(1.0 / top, 0.3), (0.3 / top, 0.5)]),
            ss.LinearRegression(A, label_variance=sp.Float(0.5)),
            ss.MinibatchNoise(8),
        )
    A, top = online(4, 6)
    yield (
        "slow cycle d=4 (float)",
        Schedule.cyclical(ss.HeavyBall, [(0.02 / top, 0.3), (0.01 / top, 0.5)], steps=[5, 5]),
        ss.LinearRegression(A, label_variance=sp.Float(0.5)),
        ss.MinibatchNoise(8),
    )


def main() -> None:
    print(f"{'case':36s} {'periodic_state':>14s} {'baseline':>10s} {'ratio':>7s} {'rel diff':>9s}")
    for name, schedule, land, noise in cases():
        t_new, state = best(periodic_state, schedule, land, noise)
        t_base, S = best(baseline, schedule, land, noise)
        got = np.array(state.state_covs[0].evalf(), dtype=float)
        diff = float(np.abs(got - S).max() / np.abs(S).max())
        print(f"{name:36s} {t_new:13.4f}s {t_base:9.4f}s {t_new / t_base:7.2f} {diff:9.1e}")


if __name__ == "__main__":
    main()
