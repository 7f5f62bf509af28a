"""``result.stability_edge(symbol)``: the largest stable value, checked against known closed forms
and, independently, against the spectral radius of the second-moment map on both sides."""

from __future__ import annotations

import numpy as np
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


def test_always_true_quadratic_margins_are_dropped_and_the_rest_is_exact():
    """Online minibatch SGD: the margin (S+2)a²λ² − 2Saλ + 2S > 0 has discriminant
    −4Sa²(S + 4) < 0 and is dropped; what remains decides stability exactly — against the
    spectral radius of the second-moment map from tests/oracle_kron.py at random points on
    both sides of the edge."""
    import numpy as np

    from tests import oracle_kron as ok

    a, sigma = sp.symbols("a sigma", positive=True)
    S, lam = ss.batch_size, ss.lr
    r = ss.stationary(
        ss.SGD(lam), ss.LinearRegression(a, label_variance=sigma**2), ss.MinibatchNoise(S)
    )
    assert r.conditions == sp.StrictLessThan(S * a * lam + 2 * a * lam, 2 * S)
    quadratic = (S + 2) * a**2 * lam**2 - 2 * S * a * lam + 2 * S
    assert sp.factor(sp.discriminant(quadratic, lam)) == -4 * S * a**2 * (S + 4)
    rng = np.random.default_rng(0)
    for _ in range(40):
        Sv, av = int(rng.integers(1, 9)), float(rng.uniform(0.2, 3))
        lv = float(rng.uniform(0.05, 1.5)) * 2 * Sv / ((Sv + 2) * av)  # both sides of the edge
        M, B, K = ok.state_space(ok.sgd_rule(lv, np.eye(1)), np.array([[av]]))
        _, L = ok.online_regression_noise(np.array([[av]]), 1.0, Sv, np.zeros(1))
        rho = ok.spectral_radius(M, B, K, L)
        if abs(rho - 1) < 1e-9:
            continue
        assert bool(r.conditions.subs({S: Sv, a: av, lam: lv})) == (rho < 1)


def test_heavy_ball_minibatch_conditions_agree_with_the_spectral_radius():
    """The five Schur margins of minibatch heavy ball (none dropped: none is a positive-definite
    quadratic) decide stability exactly at random points."""
    import numpy as np

    from tests import oracle_kron as ok

    a = sp.Symbol("a", positive=True)
    S, lam, mu = ss.batch_size, ss.lr, ss.momentum
    r = ss.stationary(
        ss.HeavyBall(lam, mu), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(S)
    )
    rng = np.random.default_rng(1)
    agree = 0
    for _ in range(40):
        Sv, av, mv = (
            int(rng.integers(1, 9)),
            float(rng.uniform(0.2, 3)),
            float(rng.uniform(0, 0.95)),
        )
        lv = float(rng.uniform(0.05, 2.0)) * 2 * (1 + mv) / av
        M, B, K = ok.state_space(ok.heavy_ball_rule(lv, mv, np.eye(1)), np.array([[av]]))
        _, L = ok.online_regression_noise(np.array([[av]]), 1.0, Sv, np.zeros(1))
        rho = ok.spectral_radius(M, B, K, L)
        if abs(rho - 1) < 1e-9:
            continue
        assert bool(r.conditions.subs({S: Sv, a: av, lam: lv, mu: mv})) == (rho < 1)
        agree += 1
    assert agree >= 35


def test_eigenvalue_ranges_of_commuting_problems_agree_with_the_spectral_radius():
    """Every eigenvalue must lie in the range: inside it the mode's map is stable, just outside
    it is not (spectral radius of the explicit 1-D problem at that eigenvalue)."""
    h, c = sp.symbols("h c", positive=True)
    for opt in (ss.SGD(ss.lr), ss.HeavyBall(ss.lr, ss.momentum), ss.Nesterov(ss.lr, ss.momentum)):
        r = ss.stationary(opt, ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
        span = r.eigenvalue_range()
        point = {ss.lr: sp.Rational(1, 2), ss.momentum: sp.Rational(1, 3)}
        top = span.end.subs(point)
        for hv, stable in (
            (top * sp.Rational(99, 100), True),
            (top * sp.Rational(101, 100), False),
        ):
            rec = ss.build_recursion(opt, ss.Quadratic(hv), ss.AdditiveNoise(1))
            assert (spectral_radius(rec, point) < 1) == stable, (opt, hv)
    with pytest.raises(ValueError, match="eigen-mode results"):
        ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c)).eigenvalue_range()
    a = sp.Symbol("a", positive=True)
    coupled = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression.commuting(a, label_variance=1), ss.MinibatchNoise(2)
    )
    with pytest.raises(NotImplementedError, match="trace condition"):
        coupled.eigenvalue_range()


def test_edge_reads_product_margins_and_isolated_exclusions():
    """Explicit 3-d online regression with S = 1: the conditions hold a factored '> 0' margin
    and Ne(·, 0) exclusions; the edge is 2/5, where the spectral radius crosses 1."""
    r = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression(sp.eye(3), label_variance=1), ss.MinibatchNoise(1)
    )
    edge = r.stability_edge(ss.lr)
    assert edge == sp.Rational(2, 5)
    assert spectral_radius(r.recursion, {ss.lr: edge * sp.Rational(99, 100)}) < 1
    assert spectral_radius(r.recursion, {ss.lr: edge * sp.Rational(101, 100)}) > 1


def test_lienard_chipart_drops_implied_coefficients_and_agrees_with_the_spectral_radius():
    """Minibatch heavy ball keeps 4 margins (a_0, a_1, a_3 and Δ_2 of the bilinear-transformed
    cubic: a_2 > 0 is implied by Liénard–Chipart), and "every margin positive" agrees with
    ρ(T) < 1 of the second-moment map at 400 random points (λ, μ, S), both sides of the edge."""
    from symsgd.moments import spectral_radius
    from symsgd.stability import hurwitz_conditions

    b = sp.symbols("b0:4", real=True)
    assert hurwitz_conditions(list(b), minimal=True) == [
        b[0],
        b[1],
        b[3],
        b[1] * b[2] - b[0] * b[3],
    ]
    assert len(hurwitz_conditions(list(b))) == 5  # the default keeps every coefficient
    lr, mu, S = ss.lr, ss.momentum, ss.batch_size
    r = ss.stationary(ss.HeavyBall(lr, mu), ss.LinearRegression(1, 1), ss.MinibatchNoise(S))
    margins = list(r.conditions.args)
    assert len(margins) == 4
    rec = ss.build_recursion(ss.HeavyBall(lr, mu), ss.LinearRegression(1, 1), ss.MinibatchNoise(S))
    rng = np.random.default_rng(11)
    inside = outside = 0
    for _ in range(400):
        point = {
            lr: sp.Rational(int(rng.integers(1, 400)), 100),
            mu: sp.Rational(int(rng.integers(0, 100)), 100),
            S: int(rng.integers(1, 9)),
        }
        rho = spectral_radius(rec, point)
        if abs(rho - 1) < 1e-9:
            continue
        holds = all(bool(c.subs(point)) for c in margins)
        assert holds == (rho < 1), (point, rho)
        inside += holds
        outside += not holds
    assert inside > 50 and outside > 50
