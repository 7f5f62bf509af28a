"""``result.stability_edge(symbol)``: the largest stable value, checked against known closed forms
and, independently, against the spectral radius of the second-moment map on both sides."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

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
        _online(ss.Nesterov(lr, mu)).stability_edge(lr)  # a quadratic margin in λ


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
    """Minibatch heavy ball: a_2 > 0 of the bilinear-transformed cubic is implied by
    Liénard–Chipart (4 Schur margins remain), three of those by the mean-square edge
    (:func:`symsgd.stability.implies`), which with μ < 1 is what is left; "every condition
    holds" agrees with ρ(T) < 1 of the second-moment map at 400 random points (λ, μ, S), both
    sides of the edge."""
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
    assert len(margins) == 2 and sp.StrictLessThan(mu, 1) in margins
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
        holds = all(bool(c.xreplace(point)) for c in margins)
        assert holds == (rho < 1), (point, rho)
        inside += holds
        outside += not holds
    assert inside > 50 and outside > 50


# --- conditions implied by others are dropped, each by an exact proof -----------------------------

x_pos = sp.Symbol("x", positive=True)


def _all_margins(optimizer):
    """Every Schur margin of the online minibatch problem before implied ones are dropped."""
    from symsgd.stability import characteristic_polynomial, conditions_from, schur_conditions

    a = sp.Symbol("a", positive=True)
    rec = ss.build_recursion(
        optimizer, ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(S)
    )
    z = sp.Symbol("z")
    polys = schur_conditions(characteristic_polynomial(rec, z), z)
    relations = [conditions_from([p]) for p in polys]
    return rec, a, [r for r in relations if r is not sp.true]


def _radius(rule, av, Sv):
    from tests import oracle_kron as ok

    M, B, K = ok.state_space(rule, np.array([[av]]))
    _, L = ok.online_regression_noise(np.array([[av]]), 1.0, Sv, np.zeros(1))
    return ok.spectral_radius(M, B, K, L)


@pytest.mark.parametrize(
    ("name", "optimizer", "rule", "kept"),
    [
        ("heavy-ball", ss.HeavyBall(lr, mu), "heavy_ball_rule", 2),
        ("nesterov", ss.Nesterov(lr, mu), "nesterov_rule", 3),
    ],
)
def test_implied_margins_are_dropped_and_the_rest_agrees_with_the_spectral_radius(
    name, optimizer, rule, kept
):
    """Heavy ball keeps the mean-square edge and μ < 1 (2 of the 4 Schur margins + the bound);
    Nesterov keeps 2 margins and μ < 1.  At 480 seeded points — half of them within 5% of the
    edge found by bisection on ρ(T) of the independent Kronecker oracle — the kept conditions
    hold iff ρ(T) < 1, and every dropped margin holds wherever the kept ones do."""
    from tests import oracle_kron as ok

    _rec, a, margins = _all_margins(optimizer)
    result = ss.stationary(
        optimizer, ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(S)
    )
    conditions = list(sp.And.make_args(result.conditions))
    assert len(conditions) == kept and sp.StrictLessThan(mu, 1) in conditions
    dropped = [m for m in margins if m not in conditions]
    assert len(dropped) == len(margins) - (kept - 1) >= 2
    symbols = (S, a, lr, mu)
    holds = sp.lambdify(symbols, sp.And(*conditions), "numpy")
    implied = [sp.lambdify(symbols, m, "numpy") for m in dropped]
    make = getattr(ok, rule)
    rng = np.random.default_rng(2026)
    inside = outside = near = 0
    for k in range(480):
        Sv, av, mv = (
            int(rng.integers(1, 9)),
            float(rng.uniform(0.2, 3)),
            float(rng.uniform(0, 0.97)),
        )

        def radius(lv, Sv=Sv, av=av, mv=mv):
            return _radius(make(lv, mv, np.eye(1)), av, Sv)

        if k % 2:
            edge = ok.stability_edge(radius, 4 * (1 + mv) / av, grid=20)
            lv = edge * (1 + float(rng.choice([-1, 1])) * float(rng.uniform(1e-3, 0.05)))
            near += 1
        else:
            lv = float(rng.uniform(0.02, 1.6)) * 2 * (1 + mv) / av
        rho = radius(lv)
        if abs(rho - 1) < 1e-9:
            continue
        stable = bool(holds(Sv, av, lv, mv))
        assert stable == (rho < 1), (name, Sv, av, lv, mv, rho)
        if stable:
            assert all(bool(f(Sv, av, lv, mv)) for f in implied)
        inside += stable
        outside += not stable
    assert inside > 100 and outside > 100 and near == 240


def test_prover_proves_implications_and_refuses_non_implications():
    """Hand-made pairs: implications hold (returned: the momentum bounds the proof used) or fail
    at a witness point, where the prover must refuse (None)."""
    from symsgd.stability import drop_implied, implies

    s = sp.Symbol("s", positive=True)
    # s > 2 + x implies s > 1, not conversely (witness s = 2, x = 1)
    assert implies(sp.StrictLessThan(2 + x_pos, s), sp.StrictLessThan(1, s)) == frozenset()
    assert implies(sp.StrictLessThan(1, s), sp.StrictLessThan(2 + x_pos, s)) is None
    # a margin plus a square is implied; minus a square is not (witness x = 1/2, s just above x)
    edge = sp.StrictLessThan(x_pos, s)
    assert implies(edge, sp.StrictGreaterThan(s - x_pos + (x_pos - 1) ** 2, 0)) == frozenset()
    weaker = sp.StrictGreaterThan(s - x_pos - (x_pos - 1) ** 2, 0)
    assert implies(edge, weaker) is None
    point = {s: sp.Rational(51, 100), x_pos: sp.Rational(1, 2)}
    assert edge.subs(point) == sp.true and weaker.subs(point) == sp.false
    # the heavy-ball pair of the issue, written out in x = aλ: proved with μ ∈ [0, 1) ...
    f4 = 2 * S * mu**2 - S * mu * x_pos + S * x_pos - 2 * S + 2 * mu * x_pos + 2 * x_pos
    f2 = (
        4 * S * mu**3 - 2 * S * mu**2 * x_pos + S * mu * x_pos**2 - S * x_pos**2
        + 2 * S * x_pos - 4 * S - 2 * mu * x_pos**2 - 2 * x_pos**2
    )  # fmt: skip
    pair = (sp.StrictLessThan(f4, 0), sp.StrictLessThan(f2, 0))
    assert implies(*pair) == frozenset({mu})
    # ... and μ < 1 is needed: at μ = 3/2 the edge holds while the candidate fails
    witness = {mu: sp.Rational(3, 2), x_pos: 20, S: 100}
    assert f4.subs(witness) < 0 and f2.subs(witness) > 0
    assert drop_implied(list(pair)) == [pair[0], sp.StrictLessThan(mu, 1)]
    # s(1 − x) > 1 forces 1 − x > 0 (a candidate free of s); not 2 − 3x > 0 (x = 1/2, s = 3)
    forced = sp.StrictGreaterThan(s * (1 - x_pos), 1)
    assert implies(forced, sp.StrictLessThan(x_pos, 1)) == frozenset()
    assert implies(forced, sp.StrictLessThan(3 * x_pos, 2)) is None
    # a non-polynomial or non-strict relation is never used
    assert implies(sp.StrictLessThan(sp.sqrt(x_pos), s), sp.StrictLessThan(0, s)) is None
    assert implies(sp.LessThan(2 + x_pos, s), sp.StrictLessThan(1, s)) is None
    # float or irrational coefficients: no exact proof is attempted
    assert implies(sp.StrictLessThan(2.0 + x_pos, s), sp.StrictLessThan(1, s)) is None
    assert implies(sp.StrictLessThan(sp.sqrt(2) + x_pos, s), sp.StrictLessThan(1, s)) is None


_coef = st.integers(-3, 3)


def _poly(coeffs, x, m):
    monomials = [sp.Integer(1), x, m, x * m, x**2, m**2]
    return sum(c * t for c, t in zip(coeffs, monomials))


@settings(derandomize=True, max_examples=80, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=3, max_size=3),
    st.lists(_coef, min_size=6, max_size=6),
    st.lists(st.integers(0, 3), min_size=6, max_size=6),
    st.lists(st.integers(-1, 3), min_size=6, max_size=6),
    st.lists(st.integers(-1, 3), min_size=6, max_size=6),
    st.integers(0, 3),
    st.booleans(),
)
def test_prover_never_claims_a_false_implication(affine, ae, be, pa, pb, shape, with_momentum):
    """Random pairs g_e = sA_e + B_e (A_e affine in x or any quadratic, B_e ≤ 0 or any),
    g_c = g_e + sP_a + P_b (implied when P_a, P_b ≥ 0 on the domain, often not): whenever the
    prover says "implied", no sampled point of the domain (many next to the edge
    s = −B_e/A_e) has g_e > 0 ≥ g_c — in exact rational arithmetic."""
    from fractions import Fraction

    from symsgd.stability import implies

    s = sp.Symbol("s", positive=True)
    m = mu if with_momentum else sp.Symbol("m", positive=True)
    alpha, beta, gamma = affine
    Ae = alpha + beta * m - gamma * x_pos if shape % 2 else _poly(ae, x_pos, m)
    Be = -_poly(be, x_pos, m) if shape < 2 else _poly([min(c, 1) for c in ae], x_pos, m)
    ge = sp.expand(s * Ae + Be)
    gc = sp.expand(ge + s * _poly(pa, x_pos, m) + _poly(pb, x_pos, m))
    if not ge.has(s) or not gc.free_symbols <= ge.free_symbols:
        return
    used = implies(sp.StrictGreaterThan(ge, 0), sp.StrictGreaterThan(gc, 0))
    if used is None:
        return
    args = (s, x_pos, m)
    fe, fc = sp.lambdify(args, ge), sp.lambdify(args, gc)
    fa, fb = sp.lambdify(args, Ae), sp.lambdify(args, Be)
    rng = np.random.default_rng(7)
    for _ in range(300):
        xv = Fraction(int(rng.integers(1, 2000)), 100)
        mv = Fraction(int(rng.integers(0, 1000)), 1000)
        A, B = fa(0, xv, mv), fb(0, xv, mv)
        if A > 0 and rng.random() < 0.7:  # next to the edge s_e = −B/A
            sv = -B / A + Fraction(int(rng.integers(1, 1000)), 10**6)
        else:
            sv = Fraction(int(rng.integers(1, 4000)), 100)
        if sv <= 0:
            continue
        if fe(sv, xv, mv) > 0:
            assert fc(sv, xv, mv) > 0, (ge, gc, sv, xv, mv)


def test_minibatch_heavy_ball_edge_in_closed_form_under_its_own_momentum_bound():
    # the kept margin is linear in λ; its slope −a(S(1−μ) + 2(1+μ)) is negative only because
    # the conditions themselves say μ < 1, which stability_edge now reads
    a = sp.Symbol("a", positive=True)
    land = ss.LinearRegression(a, label_variance=1)
    r = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), land, ss.MinibatchNoise(ss.batch_size))
    edge = r.stability_edge(ss.lr)
    S, mu = ss.batch_size, ss.momentum
    hand = 2 * S * (1 - mu**2) / (a * (S * (1 - mu) + 2 * (1 + mu)))  # μ = 0: 2S/(a(S + 2))
    assert sp.simplify(edge - hand) == 0
    rng = np.random.default_rng(5)
    for _ in range(6):  # the spectral radius crosses 1 at the edge
        point = {
            a: sp.Rational(int(rng.integers(1, 9)), 4),
            S: int(rng.integers(1, 9)),
            mu: sp.Rational(int(rng.integers(0, 19)), 20),
        }
        lam = float(edge.subs(point))
        for factor, stable in ((0.999, True), (1.001, False)):
            rec = ss.build_recursion(
                ss.HeavyBall(lam * factor, point[mu]),
                ss.LinearRegression(point[a], label_variance=1),
                ss.MinibatchNoise(point[S]),
            )
            assert (spectral_radius(rec, {}) < 1) is stable
