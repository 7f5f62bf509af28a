"""Regenerate the README figures: ``python docs/figures.py`` (about a minute on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import sympy as sp

import symsgd as ss
from symsgd.tails import sgd_fourth_moment_edge

HERE = Path(__file__).parent


def sweep_figure() -> None:
    h, c, a = sp.symbols("h c a", positive=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))

    sgd = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    rates = [0.1, 0.4, 0.7, 1.0, 1.3, 1.6, 1.8, 1.9]
    ss.sweep(sgd, ss.lr, rates, {h: 1.0, c: 1.0}, seed=1).plot(ax=left)
    left.set_title("SGD, additive noise, h = 1: exact vs SDE (dashed)")
    left.set_yscale("log")

    mini = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(ss.batch_size)
    )
    # mean-square edge: λa = 2S/(S+2) = 1 at S = 2.  Well before it the stationary law has
    # power-law tails (Mori et al. 2022): E θ⁴ is infinite from the real root λ ≈ 0.6265 of
    # 6λ³ − 6λ² + 3λ − 1 on (where E(1 − λu/2)⁴ = 1 with u ~ χ²₂), and without a finite fourth
    # moment no standard error of the variance is valid, so the sweep stops at λ = 0.6.
    edge = float(sgd_fourth_moment_edge(1, 2))
    rates = [0.05, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert max(rates) < edge, (rates, edge)
    ss.sweep(mini, ss.lr, rates, {a: 1.0, ss.batch_size: 2}, seed=2).plot(ax=right)
    right.set_title("SGD, real minibatches (S = 2), a = 1, σ² = 1")
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(HERE / "sweep.png", dpi=110)


def crosscheck_figure() -> None:
    H = sp.Matrix([[2, 1], [1, 3]])
    C = sp.Matrix([[1, sp.Rational(1, 2)], [sp.Rational(1, 2), 2]])
    result = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(H), ss.AdditiveNoise(C))
    report = ss.crosscheck(result, {ss.lr: 0.2, ss.momentum: 0.8}, seed=0)
    print(report)
    report.plot().savefig(HERE / "crosscheck.png", dpi=110)


if __name__ == "__main__":
    sweep_figure()
    crosscheck_figure()
