"""The solver strategies agree with each other and with scipy (hypothesis property tests)."""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symsgd as ss
from tests.oracles import additive_cov

SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def as_matrix(value) -> sp.Matrix:
    """Results are scalars for d = 1 and matrices otherwise."""
    return value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])


fractions = st.fractions(min_value=sp.Rational(1, 4), max_value=3, max_denominator=9)


@st.composite
def diagonal_problem(draw, max_d=6):
    d = draw(st.integers(1, max_d))
    hs = [sp.Rational(draw(fractions)) for _ in range(d)]
    cs = [sp.Rational(draw(fractions)) for _ in range(d)]
    lr_scale = draw(
        st.fractions(
            min_value=sp.Rational(1, 20), max_value=sp.Rational(19, 20), max_denominator=20
        )
    )
    lr = sp.Rational(lr_scale) * 2 / max(hs)  # inside 0 < λh < 2 for every mode
    return hs, cs, lr


@st.composite
def dense_problem(draw, max_d=4):
    d = draw(st.integers(1, max_d))
    entries = draw(st.lists(st.integers(-3, 3), min_size=d * d, max_size=d * d))
    R = sp.Matrix(d, d, entries)
    H = R * R.T + sp.eye(d)  # symmetric positive definite, rational
    entries = draw(st.lists(st.integers(-2, 2), min_size=d * d, max_size=d * d))
    Rc = sp.Matrix(d, d, entries)
    C = Rc * Rc.T + sp.eye(d) / 2
    top = max(np.linalg.eigvalsh(np.array(H, dtype=float)))
    scale = draw(st.sampled_from([sp.Rational(1, 10), sp.Rational(1, 2), sp.Rational(9, 10)]))
    lr = sp.nsimplify(scale * 2 / sp.Rational(int(np.ceil(top * 100)), 100))
    return H, C, lr


@SETTINGS
@given(diagonal_problem())
def test_eigenmode_exact_numeric_and_scipy_agree_on_diagonal_problems(problem):
    hs, cs, lr = problem
    H, C = sp.diag(*hs), sp.diag(*cs)
    args = (ss.SGD(lr), ss.Quadratic(H), ss.AdditiveNoise(C))
    auto = ss.stationary(*args)
    exact = ss.stationary(*args, method="exact")
    numeric = ss.stationary(*args, method="numeric")
    assert auto.method in ("eigenmode", "numeric-exact")
    d = len(hs)
    assert (as_matrix(auto.cov) - as_matrix(exact.cov)).applyfunc(sp.nsimplify) == sp.zeros(d, d)
    assert (as_matrix(numeric.cov) - as_matrix(exact.cov)).applyfunc(sp.nsimplify) == sp.zeros(d, d)
    want = additive_cov("sgd", np.array(H, dtype=float), np.array(C, dtype=float), float(lr))
    assert np.allclose(np.array(as_matrix(exact.cov), dtype=float), want, rtol=1e-10)


@SETTINGS
@given(dense_problem(), st.sampled_from(["sgd", "heavy-ball"]))
def test_exact_rational_float_and_scipy_agree_on_dense_problems(problem, name):
    H, C, lr = problem
    mu = sp.Rational(1, 2)
    opt = ss.SGD(lr) if name == "sgd" else ss.HeavyBall(lr, mu)
    exact = ss.stationary(opt, ss.Quadratic(H), ss.AdditiveNoise(C))
    # a diagonal H with a diagonal C is recognised as commuting and solved mode by mode
    assert exact.method in ("numeric-exact", "eigenmode")
    floats = ss.stationary(
        type(opt)(*(float(v) for v in ((lr,) if name == "sgd" else (lr, mu)))),
        ss.Quadratic(H),
        ss.AdditiveNoise(C),
    )
    assert floats.method in ("numeric-float", "eigenmode")
    kw = {} if name == "sgd" else {"mu": float(mu)}
    want = additive_cov(name, np.array(H, dtype=float), np.array(C, dtype=float), float(lr), **kw)
    assert np.allclose(np.array(as_matrix(exact.cov), dtype=float), want, rtol=1e-10)
    assert np.allclose(np.array(as_matrix(floats.cov), dtype=float), want, rtol=1e-9)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(st.integers(2, 6))
def test_symbolic_eigenmode_matches_exact_elimination(d):
    """Symbolic diagonal problems: eigen-mode reduction vs the general exact solver (d = 2) and
    vs the commuting scalar formula (all d)."""
    land = ss.Quadratic.diagonal(d)
    cs = sp.symbols(f"c_1:{d + 1}", positive=True)
    args = (ss.HeavyBall(ss.lr, ss.momentum), land, ss.AdditiveNoise(sp.diag(*cs)))
    fast = ss.stationary(*args)
    assert fast.method == "eigenmode"
    mode = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.Quadratic.commuting(),
        ss.AdditiveNoise(sp.Symbol("c", positive=True)),
    )
    h, c = sp.Symbol("h", positive=True), sp.Symbol("c", positive=True)
    for k in range(d):
        expected = mode.cov.subs({h: land.hessian[k, k], c: cs[k]})
        assert sp.cancel(fast.cov[k, k] - expected) == 0
    if d <= 2:  # symbolic heavy-ball elimination beyond d = 2 belongs to the benchmark
        exact = ss.stationary(*args, method="exact")
        assert (exact.cov - fast.cov).applyfunc(sp.cancel) == sp.zeros(d, d)
