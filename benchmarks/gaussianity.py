"""How Gaussian is the minibatch gradient: the table behind derivations/07_gaussianity.

Prints, for one-parameter online regression (a = 1, σ² = 1):

* the exact Kolmogorov distance to the moment-matched normal at the minimum (θ = θ*) and away
  from it (θ − θ* = 1) against S, the Berry–Esseen bound, and the distance measured on 4·10⁵
  minibatch gradients drawn by the simulator's oracle (small S), with the fitted log-log slopes
  (−1 at the minimum, −½ away);
* the kurtosis at fixed θ* against the pooled kurtosis over the stationary law of SGD, with the
  iterates' tail index;
* the time of the vectorised exact cdf against a baseline: one scalar scipy quadrature per
  point (same process, ratio printed).

Run: ``.venv/bin/python benchmarks/gaussianity.py``
"""

from __future__ import annotations

import math
import time

import numpy as np
import sympy as sp
from scipy import integrate, special, stats

import symsgd as ss
from symsgd.gaussianity import noise_law, pooled_noise
from symsgd.sampling import prepare

DRAWS = 400_000


def simulated_distance(at: float, S: int, law) -> float:
    land, noise = ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(S)
    grad = prepare(ss.SGD(0.1), land, noise, {}).oracle.make(np.random.default_rng(S), DRAWS)
    x = np.sort(grad(np.full((1, DRAWS), float(at)))[0])
    Phi = special.ndtr((x - float(law.mean)) / math.sqrt(float(law.variance)))
    n = len(x)
    return float(max(np.max(np.arange(1, n + 1) / n - Phi), np.max(Phi - np.arange(n) / n)))


def main() -> None:
    land = ss.LinearRegression(1, label_variance=1)
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    print(f"{'S':>5} {'D(θ*)':>11} {'BE(θ*)':>9} {'sim':>9} {'D(θ*+1)':>11} {'BE':>9} {'sim':>9}")
    rows = []
    for S in sizes:
        law0 = noise_law(land, ss.MinibatchNoise(S), at=0)
        law1 = noise_law(land, ss.MinibatchNoise(S), at=1)
        d0, d1 = law0.kolmogorov(), law1.kolmogorov()
        s0 = f"{simulated_distance(0, S, law0):9.5f}" if S <= 16 else f"{'':9}"
        s1 = f"{simulated_distance(1, S, law1):9.5f}" if S <= 16 else f"{'':9}"
        print(
            f"{S:5d} {d0:11.3e} {law0.berry_esseen():9.4f} {s0} {d1:11.3e} "
            f"{law1.berry_esseen():9.4f} {s1}"
        )
        rows.append((S, d0, d1))
    big = [r for r in rows if r[0] >= 64]
    logS = np.log([r[0] for r in big])
    print(
        f"fitted slopes (S ≥ 64): minimum {np.polyfit(logS, np.log([r[1] for r in big]), 1)[0]:.4f}"
        f", away {np.polyfit(logS, np.log([r[2] for r in big]), 1)[0]:.4f}"
    )
    print(
        f"(DKW half-width of the simulated distances at 1e-6: "
        f"{math.sqrt(math.log(2e6) / (2 * DRAWS)):.4f})"
    )

    a = sp.Symbol("a", positive=True)
    r = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(ss.batch_size)
    )
    print(f"\n{'λ':>5} {'S':>3} {'α':>8} {'kurt fixed θ*':>14} {'kurt pooled':>12}")
    for lam, S in [(0.1, 4), (0.3, 4), (0.3, 2), (0.5, 2), (0.3, 1)]:
        p = pooled_noise(r, {ss.lr: sp.nsimplify(lam), a: 1, ss.batch_size: S})
        print(
            f"{lam:5.2f} {S:3d} {p.tail_index.alpha:8.3f} {float(p.kurtosis_at_minimum):14.4f} "
            f"{float(p.kurtosis):12.4f}"
        )

    law = noise_law(land, ss.MinibatchNoise(8), at=1)
    qp, qm = (float(q) for q in law.weights)
    xs = float(law.mean) + math.sqrt(float(law.variance)) * np.linspace(-4, 4, 400)
    start = time.perf_counter()
    ours = law.cdf(xs)
    fast = time.perf_counter() - start

    def scalar(x: float) -> float:
        def f(g):
            return stats.chi2.pdf(g, 8) * stats.chi2.cdf(max(0.0, (8 * x - qm * g) / qp), 8)

        return integrate.quad(f, max(0.0, 8 * x / qm), np.inf, limit=500, epsabs=1e-12)[0]

    start = time.perf_counter()
    base = np.array([scalar(x) for x in xs])
    slow = time.perf_counter() - start
    print(
        f"\ncdf at 400 points: vectorised {fast:.3f} s, scalar-quad baseline {slow:.3f} s "
        f"(ratio {slow / fast:.1f}×), max difference {np.max(np.abs(ours - base)):.1e}"
    )


if __name__ == "__main__":
    main()
