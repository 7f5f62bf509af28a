"""Simulation throughput and memory: prints numbers and ratios, never asserts wall-clock.

    .venv/bin/python benchmarks/simulate.py            # about a minute
    .venv/bin/python benchmarks/simulate.py --quick    # a few seconds, smaller runs

Reports, all measured in this process:

* scalar SGD with additive Gaussian noise: chain-steps/s of the runner
  (``symsgd._simulate.run``, a prepared problem) on one thread and on all cores, against two
  baselines — a plain Python loop (one chain at a time, ``random.gauss``) and a straightforward
  numpy loop (all chains in one array, fresh arrays for every operation, one thread);
* a d = 10 online linear regression with minibatch noise (S = 8): chain-steps/s;
* tracemalloc peak memory for 10³ and 10⁵ steps (it must not grow with the number of steps).

The target (DESIGN.md) is ≥ 10⁸ scalar chain-steps/s on 2 cores; the machine's load average is
printed because other processes change the numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
import tracemalloc
import warnings

import numpy as np
import sympy as sp

import symsgd as ss
from symsgd import BurnInWarning
from symsgd._simulate import run  # times the run alone, without preparing
from symsgd.sampling import prepare

LR, H, C = 0.1, 1.0, 0.5


def naive_python(steps: int) -> float:
    """One chain, plain Python floats: the update, the noise and the running sums."""
    rnd = random.Random(0)
    theta = previous = 0.0
    s2 = sv = 0.0
    sd = math.sqrt(C)
    for _ in range(steps):
        g = H * theta + rnd.gauss(0.0, sd)
        theta = theta - LR * g
        s2 += theta * theta
        sv += (theta - previous) ** 2
        previous = theta
    return s2 / steps


def naive_numpy(chains: int, steps: int) -> float:
    """All chains in one array, new arrays for every operation, one thread."""
    rng = np.random.default_rng(0)
    theta = np.zeros(chains)
    s2 = np.zeros(chains)
    sv = np.zeros(chains)
    for _ in range(steps):
        previous = theta
        g = H * theta + rng.normal(0.0, math.sqrt(C), size=chains)
        theta = theta - LR * g
        s2 = s2 + theta**2
        sv = sv + (theta - previous) ** 2
    return float(np.mean(s2 / steps))


def rate(work: float, fn) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return work / elapsed, elapsed


def scalar(quick: bool) -> None:
    h, c = sp.symbols("h c", positive=True)
    problem = prepare(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c), {ss.lr: LR, h: H, c: C})
    chains = 2**17
    steps = 200 if quick else 2000
    cores = os.cpu_count() or 1
    print(f"scalar SGD, additive noise: {chains} chains × {steps} steps (float64)")
    run(problem, chains=4096, steps=10, burn_in=0, seed=0)  # warm-up
    results = {}
    for workers in (1, cores):
        r, t = rate(
            chains * steps,
            lambda w=workers: run(
                problem, chains=chains, steps=steps, burn_in=0, seed=0, workers=w, progress=False
            ),
        )
        results[workers] = r
        print(
            f"  symsgd.simulate, {workers} thread{'s' if workers > 1 else ''}: "
            f"{r / 1e6:8.1f} M chain-steps/s ({t:.2f} s)"
        )
    python_steps = 20_000 if quick else 200_000
    r_py, _ = rate(python_steps, lambda: naive_python(python_steps))
    print(f"  baseline, plain Python loop:      {r_py / 1e6:8.2f} M chain-steps/s")
    np_steps = steps // 4
    r_np, _ = rate(chains * np_steps, lambda: naive_numpy(chains, np_steps))
    print(f"  baseline, naive numpy loop:       {r_np / 1e6:8.1f} M chain-steps/s")
    best = results[cores]
    print(
        f"  ratio vs naive numpy: {best / r_np:.1f}×; vs plain Python: {best / r_py:.0f}×; "
        f"{cores} threads vs 1: {best / results[1]:.2f}×"
    )
    print(f"  target ≥ 100 M chain-steps/s on 2 cores: {'met' if best >= 1e8 else 'NOT met'}")


def regression(quick: bool) -> None:
    d, S = 10, 8
    rng = np.random.default_rng(0)
    G = rng.standard_normal((d, d))
    A = sp.Matrix(np.round(G @ G.T / d + 0.5 * np.eye(d), 3)).applyfunc(sp.nsimplify)
    land = ss.LinearRegression(A, label_variance=sp.Rational(1, 4))
    start = time.perf_counter()
    problem = prepare(ss.SGD(ss.lr), land, ss.MinibatchNoise(S), {ss.lr: 0.05})
    setup = time.perf_counter() - start
    chains, steps = 4096, (100 if quick else 1000)
    print(
        f"d = {d} online regression, minibatch S = {S}, SGD: {chains} chains × {steps} steps "
        f"(setup incl. spectral radius {setup:.2f} s, ρ = {problem.rho:.4f})"
    )
    for workers in (1, os.cpu_count() or 1):
        r, t = rate(
            chains * steps,
            lambda w=workers: run(
                problem, chains=chains, steps=steps, burn_in=0, seed=0, workers=w, progress=False
            ),
        )
        print(
            f"  {workers} thread{'s' if workers > 1 else ''}: {r / 1e6:8.2f} M chain-steps/s "
            f"({r * d / 1e6:.1f} M coordinate-steps/s, {t:.2f} s)"
        )


def memory(quick: bool) -> None:
    h, c = sp.symbols("h c", positive=True)
    problem = prepare(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c), {ss.lr: LR, h: H, c: C})
    chains = 1024 if quick else 4096
    print(f"memory (tracemalloc peak), {chains} chains, one thread:")
    peaks = []
    for steps in (10**3, 10**4 if quick else 10**5):
        tracemalloc.start()
        run(problem, chains=chains, steps=steps, burn_in=0, seed=0, workers=1, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peaks.append(peak)
        print(f"  {steps:>7} steps: {peak / 1024:8.1f} KiB")
    print(f"  ratio: {peaks[1] / peaks[0]:.2f} (independent of the number of steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    # throughput runs start at rest on purpose (burn_in=0): no statistics are read from them
    warnings.simplefilter("ignore", BurnInWarning)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} before starting\n")
    scalar(args.quick)
    print()
    regression(args.quick)
    print()
    memory(args.quick)


if __name__ == "__main__":
    main()
