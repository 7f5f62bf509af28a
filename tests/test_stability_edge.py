"""``result.stability_edge(symbol)``: the largest stable value, checked against known closed forms
and, independently, against the spectral radius of the second-moment map on both sides."""

from __future__ import annotations

import pytest
import sympy as sp

import symsgd as ss
from symsgd.moments import spectral_radius

h, c, a, sigma = sp.symbols("h c a sigma", positive=True)
lr, mu, S = ss.lr, ss.momentum, ss.batch_size


def _online(optimizer):
    return ss.stationary(
        optimizer, ss.LinearRegression(a, label_variance=sigma**2), ss.MinibatchNoise(S)
    )


@pytest.mark.parametrize(
    ("result", "edge"),
    [
        (lambda: ss.stationary(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c)), 2 / h),
        (
            lambda: ss.stationary(ss.HeavyBall(lr, mu), ss.Quadratic(h), ss.AdditiveNoise(c)),
            2 * (1 + mu) / h,
        ),
        (
            lambda: ss.stationary(ss.Nesterov(lr, mu), ss.Quadratic(h), ss.AdditiveNoise(c)),
            2 * (1 + mu) / (h * (1 + 2 * mu)),
        ),
        # Ziyin et al. (ICLR 2022): online regression with minibatch noise, λa < 2S/(S + 2)
        (lambda: _online(ss.SGD(lr)), 2 * S / (a * (S + 2))),
    ],
    ids=["sgd", "heavy-ball", "nesterov", "online-minibatch-sgd"],
)
def test_closed_form_edges(result, edge):
    assert sp.simplify(result().stability_edge(lr) - edge) == 0


@pytest.mark.parametrize(
    ("optimizer", "fixed"),
    [
        (ss.SGD(lr), {a: 1, S: 2}),
        (ss.SGD(lr), {a: sp.Rational(3, 2), S: 5}),
        (ss.HeavyBall(lr, mu), {mu: sp.Rational(1, 2), a: 1, S: 2}),
        (ss.HeavyBall(lr, mu), {mu: sp.Rational(9, 10), a: 2, S: 4}),
        (ss.Nesterov(lr, mu), {mu: sp.Rational(1, 2), a: 1, S: 3}),
    ],
    ids=["sgd-S2", "sgd-S5", "hb-mu0.5", "hb-mu0.9", "nesterov-mu0.5"],
)
def test_edge_is_where_the_spectral_radius_reaches_one(optimizer, fixed):
    """Independent of the conditions: ρ(T) < 1 just below the edge and > 1 just above it."""
    result = _online(optimizer)
    edge = result.subs(fixed).stability_edge(lr)
    assert edge.is_positive and edge.is_finite
    values = {sigma: 1, **fixed}
    below = spectral_radius(result.recursion, {**values, lr: edge * sp.Rational(99, 100)})
    above = spectral_radius(result.recursion, {**values, lr: edge * sp.Rational(101, 100)})
    assert below < 1 < above


def test_unbounded_parameter_and_refusals():
    sgd = ss.stationary(ss.SGD(lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sgd.stability_edge(c) == sp.oo  # the noise level bounds nothing
    with pytest.raises(TypeError, match="takes a sympy Symbol"):
        sgd.stability_edge("lr")
    with pytest.raises(NotImplementedError, match="substitute numbers for the other parameters"):
        _online(ss.HeavyBall(lr, mu)).stability_edge(lr)


def test_margins_in_one_positive_symbol_are_decided_by_exact_root_counting():
    """conditions_from drops factors with no root in λ > 0 and keeps, unevaluated, margins with
    one; the 300-digit coefficients of float-data problems are decided exactly and fast."""
    from symsgd.stability import conditions_from

    lam = ss.lr
    assert conditions_from([lam**2 + 1]) == sp.true
    assert conditions_from([-(lam + 2)]) == sp.false
    assert conditions_from([lam * (lam + 3)]) == sp.true
    big = sp.Rational(10**300 + 1, 10**299)
    margin = conditions_from([big - lam])  # λ < 10.000…1: a root inside
    assert margin.subs(lam, 10) == sp.true and margin.subs(lam, 11) == sp.false
    tiny = conditions_from([(lam - 1) ** 2 + sp.Rational(1, 10**300)])  # no real root at all
    assert tiny == sp.true
    touching = conditions_from([(lam - 1) ** 2])  # a double root inside: ≠ 0 there
    assert touching.subs(lam, 1) == sp.false and touching.subs(lam, 2) == sp.true
