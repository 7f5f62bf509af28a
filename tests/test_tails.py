"""The fourth-moment radius against an exact scalar reference, and crosscheck's warning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import symsgd as ss
from symsgd.sampling import prepare
from symsgd.tails import SAMPLES, fourth_moment_radius

a = sp.Symbol("a", positive=True)
ONLINE = (ss.SGD(ss.lr), ss.LinearRegression(a, label_noise=1), ss.MinibatchNoise(ss.batch_size))


def chi2_moment(k: int, dof: int) -> float:
    """E[u^k] for u ~ χ²_dof."""
    return float(np.prod([dof + 2 * j for j in range(k)]))


def exact_multiplier_moment(power: int, lr: float, a_: float, S: int) -> float:
    """E[(1 − λ a u / S)^power] with u ~ χ²_S: the scalar online update multiplies θ by
    1 − λ·(1/S)Σ x_i², x_i ~ N(0, a)."""
    k = lr * a_ / S
    return sum(math.comb(power, j) * (-k) ** j * chi2_moment(j, S) for j in range(power + 1))


@pytest.mark.parametrize("lr", [0.3, 0.5, 0.6, 0.7, 0.8])
def test_scalar_radius_matches_the_exact_moment_within_five_standard_errors(lr):
    S, a_ = 2, 1.0
    problem = prepare(*ONLINE, {ss.lr: lr, a: a_, ss.batch_size: S})
    estimate = fourth_moment_radius(problem)
    exact = exact_multiplier_moment(4, lr, a_, S)
    # the estimate is a sample mean of A⁴ over SAMPLES[1] draws: its standard error follows
    # from the exact eighth moment
    se = math.sqrt((exact_multiplier_moment(8, lr, a_, S) - exact**2) / SAMPLES[1])
    assert abs(estimate - exact) < 5 * se, (estimate, exact, se)


def test_additive_noise_has_every_moment():
    h = sp.Symbol("h", positive=True)
    problem = prepare(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(1), {ss.lr: 1.9, h: 1})
    assert fourth_moment_radius(problem) is None


def test_large_states_are_not_estimated():
    A = sp.diag(1, 2, 3, 4)
    problem = prepare(
        ss.SGD(ss.lr), ss.LinearRegression(A, label_noise=1), ss.MinibatchNoise(4), {ss.lr: 0.05}
    )
    assert fourth_moment_radius(problem) is None


def test_crosscheck_warns_about_power_law_tails_only_where_they_are():
    result = ss.stationary(*ONLINE)
    heavy = ss.crosscheck(result, {ss.lr: 0.8, a: 1, ss.batch_size: 2}, seed=0)
    assert not heavy.reliable and heavy.fourth_moment_radius > 1
    assert any("infinite fourth moment" in note for note in heavy.notes)
    assert "infinite fourth moment" in str(heavy)
    light = ss.crosscheck(result, {ss.lr: 0.3, a: 1, ss.batch_size: 2}, seed=0)
    assert light.reliable and light.fourth_moment_radius < 1
    assert not any("fourth moment" in note for note in light.notes)
