"""The solver strategies agree with each other and with scipy (hypothesis property tests)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symsgd as ss
from symsgd import lyapunov
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


# -- one dispatch for discrete and continuous time -------------------------------------------
h, c = sp.symbols("h c", positive=True)


def test_continuous_equation_goes_through_the_same_strategies():
    """The SDE's Lyapunov equation AΣ + ΣAᵀ = G: exact elimination (d = 1), the invariant
    formula (symbolic d ≥ 2), the numeric solver (all numeric: exact rationals or scipy for
    floats), each certified against the continuous equation."""
    one = lyapunov.solve(lyapunov.StationaryEquation.continuous(sp.Matrix([[h]]), [[ss.lr * c]]))
    assert one.method == "exact" and one.state_cov[0, 0] == ss.lr * c / (2 * h)
    assert "AΣ + ΣAᵀ = G" in str(one.certificate)
    H = sp.Matrix([[h, 1], [1, 2]])
    two = lyapunov.solve(lyapunov.StationaryEquation.continuous(H, ss.lr * sp.eye(2)))
    assert two.method == "invariant"
    assert (H * two.state_cov + two.state_cov * H.T - ss.lr * sp.eye(2)).applyfunc(
        sp.cancel
    ) == sp.zeros(2, 2)
    A = sp.Matrix([[2, 1], [1, 3]])
    exact = lyapunov.solve(lyapunov.StationaryEquation.continuous(A, sp.eye(2)))
    assert (
        exact.method == "numeric-exact" and A * exact.state_cov + exact.state_cov * A.T == sp.eye(2)
    )
    floats = lyapunov.solve(lyapunov.StationaryEquation.continuous(A * 1.0, sp.eye(2) * 1.0))
    assert floats.method == "numeric-float" and floats.certificate.how == "float"
    assert np.allclose(
        np.array(floats.state_cov, dtype=float), np.array(exact.state_cov, dtype=float)
    )


def test_continuous_time_of_minibatch_noise_is_the_state_dependent_lyapunov_solution():
    a = sp.Symbol("a", positive=True)
    S = ss.batch_size
    r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, 1), ss.MinibatchNoise(S))
    ct = r.continuous_time()
    # 2aΣ = λ(Q(Σ))/… : Q(Σ) = (2a²Σ + a)/S for 1-D Gaussian inputs
    sigma = ct.cov
    assert sp.cancel(2 * a * sigma - ss.lr * (2 * a**2 * sigma + a) / S) == 0
    assert ct.method == "exact" and "continuous time" in str(ct.certificate)


class _Doubling(lyapunov.Solver):
    """A strategy that returns twice the truth, for discrete and continuous equations."""

    name = "wrong"

    def applies_to(self, problem):
        return True

    def solve(self, problem):
        right = lyapunov.ExactSolver().solve(problem)
        return lyapunov.Solution(2 * right.state_cov, right.denominator, self.name)


def test_a_wrong_continuous_time_candidate_is_discarded_too(monkeypatch):
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    monkeypatch.setattr(lyapunov, "SOLVERS", (_Doubling(), lyapunov.ExactSolver()))
    ct = r.continuous_time()
    assert ct.cov == ss.lr * c / (2 * h) and ct.method == "exact"


def test_the_invariant_pieces_are_built_once_per_derivation(monkeypatch):
    from symsgd import cayley

    built = []

    class Counting(cayley.SteinSolution):
        def __init__(self, *args, **kw):
            built.append(args)
            super().__init__(*args, **kw)

    monkeypatch.setattr(cayley, "SteinSolution", Counting)
    C = sp.Matrix([[c, 1], [1, 2]])
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(sp.Matrix([[h, 1], [1, 2]])), ss.AdditiveNoise(C))
    assert r.method == "invariant" and len(built) == 1


def test_eigenmode_solver_reads_the_mode_blocks_off_the_recursion():
    """Diagonal H and C: each mode's block of the recursion is solved on its own; a noise that
    mixes the modes (off-diagonal C) leaves the strategy out."""
    h1, h2 = sp.symbols("h1 h2", positive=True)
    problem = (ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(sp.diag(h1, h2)))
    rec = ss.build_recursion(*problem, ss.AdditiveNoise(sp.diag(c, 1)))
    fast = lyapunov.EigenmodeSolver().solve(rec)
    slow = lyapunov.ExactSolver().solve(rec)
    assert (fast.state_cov - slow.state_cov).applyfunc(sp.cancel) == sp.zeros(4, 4)
    mixed = ss.build_recursion(*problem, ss.AdditiveNoise(sp.Matrix([[c, 1], [1, 2]])))
    assert lyapunov.EigenmodeSolver().applies_to(rec)
    assert not lyapunov.EigenmodeSolver().applies_to(mixed)


def test_results_are_frozen_and_subs_replaces_values_only():
    import dataclasses

    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert dataclasses.is_dataclass(r) and dataclasses.is_dataclass(r.continuous_time())
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.values = {}
    fixed = r.subs(c=1)
    assert fixed.solution is r.solution and fixed.recursion is r.recursion
    assert fixed.values == {c: 1} and r.values == {}
    simple = fixed.simplify()
    assert simple.values == {c: 1} and sp.cancel(simple.cov - fixed.cov) == 0
    assert simple.conditions == fixed.conditions


def test_eigenmode_denominator_is_the_product_of_the_modes_at_any_dimension():
    """Each mode's block is solved on its own and the common denominator merged from the
    factored per-mode ones (d = 6 Nesterov used to take minutes in sympy's lcm)."""
    d = 6
    hs = sp.symbols(f"h1:{d + 1}", positive=True)
    opt = ss.Nesterov(ss.lr, ss.momentum)
    r = ss.stationary(opt, ss.Quadratic(sp.diag(*hs)), ss.AdditiveNoise(sp.eye(d)))
    assert r.method == "eigenmode"
    one = ss.stationary(opt, ss.Quadratic(h), ss.AdditiveNoise(1))
    expected = sp.Mul(*[one.denominator.subs(h, hk) for hk in hs])
    assert sp.cancel(r.denominator / expected) in (1, -1)
    for k, hk in enumerate(hs):
        assert sp.cancel(r.cov[k, k] - one.cov.subs(h, hk)) == 0


def test_block_diagonal_problems_split_per_block_and_agree_with_elimination():
    """A block-diagonal H and C (a symbolic 2×2 block and a scalar one) are solved one block at
    a time; the answer equals the elimination of the whole system and has zero cross blocks."""
    h11, h12, h22, h3 = sp.symbols("h11 h12 h22 h3", positive=True)
    c11, c22, c3 = sp.symbols("c11 c22 c3", positive=True)
    H = sp.Matrix([[h11, h12, 0], [h12, h22, 0], [0, 0, h3]])
    C = sp.Matrix([[c11, 0, 0], [0, c22, 0], [0, 0, c3]])
    for optimizer in (ss.SGD(ss.lr), ss.HeavyBall(ss.lr, ss.momentum)):
        pieces = (optimizer, ss.Quadratic(H), ss.AdditiveNoise(C))
        split = ss.stationary(*pieces)
        assert split.method == "block-diagonal"
        whole = ss.stationary(*pieces, method="exact")
        difference = (split.state_cov - whole.state_cov).applyfunc(sp.cancel)
        assert difference.is_zero_matrix
        assert split.cov[0, 2] == 0 and split.cov[1, 2] == 0
