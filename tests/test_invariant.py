"""The characteristic-algebra (invariant) solver: its universal inverse, agreement with the
elimination solver, and the structured fully symbolic d = 4 SGD result checked against its
defining equation, scipy, the spectral radius and a Monte Carlo run of the real update."""

from __future__ import annotations

import itertools

import flint
import numpy as np
import pytest
import sympy as sp
from scipy.linalg import solve_discrete_lyapunov

import symsgd as ss
from symsgd import cayley
from symsgd.cayley import NotApplicable, SteinSolution, solve_stein, universal
from symsgd.certify import evaluate_many
from symsgd.landscapes import symmetric_matrix
from symsgd.lyapunov import InvariantSolver
from symsgd.numeric import numpy_source
from symsgd.recursion import build_recursion
from tests.oracles import state_space

lam = ss.lr


def polynomial(p, gens) -> sp.Expr:
    """A python-flint ``fmpz_mpoly`` as the sympy polynomial in ``gens``."""
    return sp.Add(
        *[
            int(coeff) * sp.Mul(*[g**k for g, k in zip(gens, exps)])
            for exps, coeff in p.to_dict().items()
        ]
    )


def at_point(matrix, point: dict) -> sp.Matrix:
    """The exact value of ``matrix`` at a rational ``point`` (one walk of the shared
    subexpressions of structured results: ``symsgd.certify.evaluate_many``); raises
    ``ZeroDivisionError`` at a pole."""
    fpoint = {s: flint.fmpq(int(v.p), int(v.q)) for s, v in point.items()}
    values = evaluate_many(list(matrix), [fpoint])
    exact = [sp.Rational(int(v[0].p), int(v[0].q)) for v in values]
    return sp.Matrix(matrix.rows, matrix.cols, exact)


def _symbolic(kind: str, d: int, **kw):
    optimizer = {
        "sgd": lambda: ss.SGD(lam, **kw),
        "heavy-ball": lambda: ss.HeavyBall(lam, ss.momentum, **kw),
        "nesterov": lambda: ss.Nesterov(lam, ss.momentum, **kw),
    }[kind]()
    return optimizer, ss.Quadratic.symbolic(d), ss.AdditiveNoise(symmetric_matrix(d, "c"))


# -- the universal inverse ------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_universal_inverse_solves_its_defining_equation_in_the_algebra(n):
    """(x + y - s x y) * sum g_ab (x^a y^b + x^b y^a) == D modulo p(x) and p(y)."""
    uni = universal(n)
    c = sp.symbols(f"c0:{n}")
    s, x, y = sp.symbols("s x y")
    g = sum(
        polynomial(p, (*c, s)) * (x**a * y**b + (x**b * y**a if a != b else 0))
        for (a, b), p in zip(uni.basis, uni.g)
    )
    residual = sp.expand((x + y - s * x * y) * g - polynomial(uni.D, (*c, s)))
    p = x**n + sum(c[a] * x**a for a in range(n))
    residual = sp.rem(sp.Poly(residual, x), sp.Poly(p, x)).as_expr()
    residual = sp.rem(sp.Poly(residual, y), sp.Poly(p.subs(x, y), y)).as_expr()
    assert sp.expand(residual) == 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_universal_denominator_is_the_product_over_eigenvalue_pairs(n):
    """D(c, s) = prod_{i<=j} (k_i + k_j - s k_i k_j) where p(x) = prod (x - k_i)."""
    rng = np.random.default_rng(n)
    roots = [sp.Integer(int(k)) for k in rng.integers(-5, 6, size=n)]
    s_value = sp.Rational(int(rng.integers(1, 9)), 7)
    x = sp.Symbol("x")
    coeffs = sp.Poly(sp.prod([x - k for k in roots]), x).all_coeffs()[::-1]  # c_0, c_1, ...
    uni = universal(n)
    c = sp.symbols(f"c0:{n}")
    s = sp.Symbol("s")
    D = polynomial(uni.D, (*c, s)).subs({**dict(zip(c, coeffs[:n])), s: s_value})
    expected = sp.prod(
        [roots[i] + roots[j] - s_value * roots[i] * roots[j] for i in range(n) for j in range(i, n)]
    )
    assert D == expected


# -- agreement with fraction-free elimination ------------------------------------------------


@pytest.mark.parametrize(
    "kind, d, kw",
    [
        ("sgd", 2, {}),
        ("sgd", 3, {}),
        ("sgd", 2, {"weight_decay": ss.weight_decay}),
        ("heavy-ball", 2, {}),
        ("nesterov", 2, {}),
    ],
)
def test_invariant_solver_gives_the_elimination_answer_exactly(kind, d, kw):
    problem = _symbolic(kind, d, **kw)
    fast = ss.stationary(*problem)
    assert fast.method == "invariant"
    slow = ss.stationary(*problem, method="exact")
    assert fast.state_cov == slow.state_cov  # the same canonical expressions
    assert fast.denominator == slow.denominator


def test_preconditioned_with_a_symbolic_diagonal_preconditioner():
    P = sp.diag(*sp.symbols("p1 p2", positive=True))
    problem = (ss.Preconditioned(lam, P), ss.Quadratic.symbolic(2), ss.AdditiveNoise(sp.eye(2)))
    fast = ss.stationary(*problem, method="invariant")
    slow = ss.stationary(*problem, method="exact")
    assert fast.cov == slow.cov


@pytest.mark.parametrize("d", [2, 3])
def test_structured_form_equals_the_expanded_form(d):
    rec = build_recursion(*_symbolic("sgd", d))
    expanded, _, none = solve_stein(rec.M, rec.forcing(), "expanded")
    structured, _, form = solve_stein(rec.M, rec.forcing(), "structured")
    assert none is None and form is not None
    rng = np.random.default_rng(d)
    symbols = sorted(expanded.free_symbols, key=str)
    point = {s: sp.Rational(int(rng.integers(1, 30)), int(rng.integers(1, 30))) for s in symbols}
    assert at_point(expanded, point) == at_point(structured, point)


def test_structured_form_refuses_when_a_numerator_shares_a_factor_with_d():
    """With H = [[h, 1], [1, h]] the eigenvectors are fixed and the off-diagonal entries lose
    the factor h_1 + h_2 - λ h_1 h_2; the structured form would not be cancelled."""
    h, c = sp.symbols("h c", positive=True)
    M = sp.eye(2) - lam * sp.Matrix([[h, 1], [1, h]])
    F = lam**2 * sp.Matrix([[c, 1], [1, 2]])
    with pytest.raises(ValueError, match="form='expanded'"):
        solve_stein(M, F, "structured")
    X, den, form = solve_stein(M, F)  # auto: the expanded (cancelled) form
    assert form is None
    assert sp.simplify(X - M * X * M.T - F) == sp.zeros(2, 2)
    assert sp.degree(sp.fraction(sp.factor(X[0, 1]))[1], h) < sp.degree(den, h)


def test_non_integer_coefficients_fall_back_to_elimination():
    problem = (ss.SGD(sp.Rational(1, 10)), ss.Quadratic.symbolic(2), ss.AdditiveNoise(sp.eye(2)))
    rec = build_recursion(*problem)
    assert not InvariantSolver().applies_to(rec)
    with pytest.raises(NotApplicable):
        SteinSolution(rec.M, rec.forcing())
    assert ss.stationary(*problem).method == "exact"
    with pytest.raises(ValueError, match="does not apply"):
        ss.stationary(*problem, method="invariant")


def test_numpy_source_parenthesises_compound_code_that_starts_with_a_temporary():
    """A power of a product whose first factor is a named subexpression: ``_t0*x2`` must be
    wrapped before ``**2`` (a bug that gave wrong numbers for structured results)."""
    x, y, z = sp.symbols("x y z")
    exprs = [((x + y) * z) ** 2, x + y, 1 / ((x + y) * z + 1)]
    namespace: dict = {}
    exec(numpy_source([x, y, z], exprs), namespace)
    got = namespace["f"](1.5, 2.0, 3.0)
    want = [float(e.subs({x: 1.5, y: 2.0, z: 3.0})) for e in exprs]
    assert np.allclose(got, want, rtol=1e-14)


# -- fully symbolic SGD with d = 4: the structured result -----------------------------------

D4 = 4


@pytest.fixture(scope="module")
def sgd4():
    return ss.stationary(*_symbolic("sgd", D4))


def _random_problem(rng, scale: float):
    """Random symmetric positive-definite H and C (rational) and λ = scale * 2 / λ_max(H)."""
    A = rng.integers(-3, 4, size=(D4, D4))
    H = sp.Matrix(A @ A.T + np.eye(D4, dtype=int))
    B = rng.integers(-2, 3, size=(D4, D4))
    C = sp.Matrix(B @ B.T) + sp.eye(D4) / 2
    top = max(np.linalg.eigvalsh(np.array(H, dtype=float)))
    return H, C, sp.nsimplify(round(scale * 2 / top, 4))


def _values(H, C, lr) -> dict:
    values = {"lr": lr}
    for i, j in itertools.combinations_with_replacement(range(D4), 2):
        values[f"h_{i + 1}{j + 1}"] = H[i, j]
        values[f"c_{i + 1}{j + 1}"] = C[i, j]
    return values


def _scipy(H, C, lr) -> np.ndarray:
    Hf = np.array(H, dtype=float)
    M, B, _ = state_space("sgd", Hf, float(lr))
    return solve_discrete_lyapunov(M, B @ np.array(C, dtype=float) @ B.T)


def test_d4_is_structured_and_fast_to_derive(sgd4):
    assert sgd4.method == "invariant-structured" and sgd4.structured
    assert len(sgd4.free_symbols) == 21


def test_d4_solves_the_stationary_equation_exactly(sgd4):
    rng = np.random.default_rng(4)
    H, C, lr = _random_problem(rng, 0.6)
    point = {sp.Symbol(k) if k != "lr" else lam: v for k, v in _values(H, C, lr).items()}
    point = {next(s for s in sgd4.free_symbols if str(s) == str(k)): v for k, v in point.items()}
    X = at_point(sgd4.cov, point)
    M = sp.eye(D4) - lr * H
    assert X - M * X * M.T == lr**2 * C  # exact rational arithmetic


def test_d4_lambdified_matches_scipy_at_many_points(sgd4):
    f = sgd4.lambdify()
    rng = np.random.default_rng(5)
    worst = 0.0
    for scale in np.linspace(0.05, 0.95, 12):
        H, C, lr = _random_problem(rng, scale)
        values = {k: float(v) for k, v in _values(H, C, lr).items()}
        got = np.array(f(**values), dtype=float)
        ref = _scipy(H, C, lr)
        worst = max(worst, np.abs(got - ref).max() / np.abs(ref).max())
    assert worst < 1e-9


def test_d4_denominator_is_the_product_over_eigenvalue_pairs(sgd4):
    rng = np.random.default_rng(6)
    H, C, lr = _random_problem(rng, 0.5)
    values = {
        s: v
        for s in sgd4.denominator.free_symbols
        for k, v in _values(H, C, lr).items()
        if str(s) == k or (k == "lr" and s == lam)
    }
    got = float(sgd4.denominator.xreplace(values))
    h = np.linalg.eigvalsh(np.array(H, dtype=float))
    lrf = float(lr)
    want = np.prod([h[i] + h[j] - lrf * h[i] * h[j] for i in range(D4) for j in range(i, D4)])
    assert got == pytest.approx(want, rel=1e-12)


def test_d4_conditions_agree_with_the_spectral_radius(sgd4):
    rng = np.random.default_rng(7)
    seen = set()
    for scale in (0.3, 0.7, 0.95, 1.05, 1.4):
        H, C, lr = _random_problem(rng, scale)
        values = {
            s: v
            for s in sgd4.conditions.free_symbols
            for k, v in _values(H, C, lr).items()
            if str(s) == k or (k == "lr" and s == lam)
        }
        rho = max(abs(1 - float(lr) * np.linalg.eigvalsh(np.array(H, dtype=float))))
        inside = bool(sgd4.conditions.xreplace(values))
        assert inside == (rho < 1), (scale, rho)
        seen.add(inside)
    assert seen == {True, False}


def test_d4_readouts_subs_loss_latex(sgd4):
    rng = np.random.default_rng(8)
    H, C, lr = _random_problem(rng, 0.5)
    values = _values(H, C, lr)
    fixed = sgd4.subs(values)
    ref = _scipy(H, C, lr)
    assert np.allclose(np.array(fixed.cov, dtype=float), ref, rtol=1e-12, atol=0)
    loss = float(fixed.loss)
    assert loss == pytest.approx(0.5 * np.trace(np.array(H, dtype=float) @ ref), rel=1e-12)
    too_fast = sp.nsimplify(round(1.5 * float(lr) / scale_of(H, lr), 4))  # 1.5x the limit
    with pytest.raises(ss.UnstableError):
        sgd4.subs({**values, "lr": too_fast})
    text = sgd4.latex()
    assert r"\det(x I - H) = x^{4} - e_{1} x^{3} + e_{2} x^{2} - e_{3} x + e_{4}" in text
    assert "HCH" in text and r"\frac{\lambda}{D}" in text
    assert sgd4.latex(lr="eta").count(r"\eta") > 10 and r"\lambda" not in sgd4.latex(lr="eta")
    assert sgd4.latex(env="align").startswith(r"\begin{align}")
    with pytest.raises(ValueError, match="structured"):
        sgd4.latex(what="loss")


def scale_of(H, lr) -> float:
    """λ λ_max(H) / 2: the fraction of the stability limit λ is at."""
    return float(lr) * max(np.linalg.eigvalsh(np.array(H, dtype=float))) / 2


def test_d4_agrees_with_a_monte_carlo_run_of_real_sgd(sgd4):
    """The real update θ ← θ − λ(Hθ + ξ) with Gaussian ξ ~ N(0, C); every entry within the
    Holm-corrected level 0.01 (z-scores of the independent-chain standard errors)."""
    rng = np.random.default_rng(9)
    H, C, lr = _random_problem(rng, 0.5)
    report = ss.crosscheck(sgd4, _values(H, C, lr), seed=3, rel_se=0.01)
    assert report.passed, report


def test_d4_continuous_time_solves_the_lyapunov_equation_and_is_the_small_lr_limit(sgd4):
    from scipy.linalg import solve_continuous_lyapunov

    ct = sgd4.continuous_time()
    assert ct.structured
    f, g = ct.lambdify(), sgd4.lambdify()
    rng = np.random.default_rng(10)
    H, C, lr = _random_problem(rng, 0.5)
    values = {k: float(v) for k, v in _values(H, C, lr).items()}
    Hf, Cf = np.array(H, dtype=float), np.array(C, dtype=float)
    sde = np.array(f(**values), dtype=float)
    assert np.allclose(sde, solve_continuous_lyapunov(Hf, values["lr"] * Cf), rtol=1e-10)
    # λ → 0: Σ_discrete / Σ_SDE → 1 with an O(λ) gap
    gaps = []
    for small in (1e-2, 1e-3):
        at = {**values, "lr": small * values["lr"]}
        exact, approx = np.array(g(**at), dtype=float), np.array(f(**at), dtype=float)
        gaps.append(np.abs(exact - approx).max() / np.abs(approx).max())
    assert gaps[1] < gaps[0] / 5 and gaps[1] < 1e-2
    text = ct.latex()
    assert r"\det(x I - H)" in text and "HCH" in text
    # right half-plane conditions against the eigenvalues
    for sign in (1, -1):
        point = {
            s: v
            for s in ct.conditions.free_symbols
            for k, v in _values(sign * H, C, lr).items()
            if str(s) == k
        }
        assert bool(ct.conditions.xreplace(point)) == (sign == 1)


def test_flint_fraction_agrees_with_sympy_cancel():
    from symsgd.exact import flint_fraction

    x, y, z = sp.symbols("x y z")
    exprs = [
        x / (x**2 - y**2) + 1 / (x + y),
        (x * y - z) ** 2 / (z - x * y) + sp.Rational(3, 7) * x,
        1 / (1 / x + 1 / y) - x * y / (x + y),
        ((x + 1) ** 3 - 1) / x / (y + 2),
    ]
    for e in exprs:
        got = flint_fraction(e)
        if e.equals(0):
            assert got[0] == 0
            continue
        num, den = got
        assert (
            sp.expand(num * sp.fraction(sp.cancel(e))[1] - den * sp.fraction(sp.cancel(e))[0]) == 0
        )
        assert sp.gcd(num, den).is_number
    assert flint_fraction(sp.sin(x) / x) is None and flint_fraction(sp.Float(0.5) * x) is None


# -- property test: partly symbolic matrices -------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def partly_symbolic(draw):
    """H, C symmetric with each entry either its own symbol or a small integer (zeros
    included, numeric diagonal ≥ 3 > the off-diagonal row sums), SGD or heavy ball (d = 2)."""
    d = draw(st.integers(2, 3))
    kind = draw(st.sampled_from(["sgd", "heavy-ball"] if d == 2 else ["sgd"]))

    def matrix(name):
        M = sp.zeros(d, d)
        for i in range(d):
            for j in range(i, d):
                if draw(st.booleans()):
                    value = sp.Symbol(f"{name}_{i + 1}{j + 1}", positive=i == j)
                else:
                    # diagonally dominant numeric parts: H and C stay positive definite
                    value = sp.Integer(draw(st.integers(3, 5) if i == j else st.integers(-1, 1)))
                M[i, j] = M[j, i] = value
        return M

    return kind, matrix("h"), matrix("c")


@settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(partly_symbolic())
def test_invariant_and_elimination_agree_on_partly_symbolic_problems(problem):
    kind, H, C = problem
    opt = ss.SGD(lam) if kind == "sgd" else ss.HeavyBall(lam, ss.momentum)
    pieces = (opt, ss.Quadratic(H), ss.AdditiveNoise(C))
    rec = build_recursion(*pieces)
    if not InvariantSolver().applies_to(rec):
        return  # e.g. no symbol at all besides the ones the eigen-mode solver takes
    fast = ss.stationary(*pieces, method="invariant")
    slow = ss.stationary(*pieces, method="exact")
    symbols = sorted(fast.state_cov.free_symbols | slow.state_cov.free_symbols, key=str)
    rng = np.random.default_rng(len(symbols))
    checked = 0
    while checked < 2:
        point = {
            s: sp.Rational(int(rng.integers(1, 40)), int(rng.integers(2, 40))) for s in symbols
        }
        try:
            a, b = at_point(fast.state_cov, point), at_point(slow.state_cov, point)
        except ZeroDivisionError:
            continue  # a pole
        assert a == b
        checked += 1


def _error_ratio(series, exact, values) -> float:
    """Relative error of a truncated series at λ/100 over that at λ/1000 (100 for an error
    ∝ λ², i.e. a correct series to order λ³)."""
    errors = []
    for small in (1e-2, 1e-3):
        at = {**values, "lr": small * values["lr"]}
        e = np.array(exact(**at), dtype=float)
        errors.append(np.abs(np.array(series(**at), dtype=float) - e).max() / np.abs(e).max())
    return errors[0] / errors[1]


def test_d4_series_in_the_learning_rate(sgd4):
    """series(lr, 2) is the SDE prediction; series(lr, 3) errs by O(λ³) (relative O(λ²))."""
    from symsgd.numeric import lambdify_result

    rng = np.random.default_rng(11)
    H, C, lr = _random_problem(rng, 0.5)
    values = {k: float(v) for k, v in _values(H, C, lr).items()}
    first = lambdify_result({"s": sgd4.series(lam, 2)})
    sde = sgd4.continuous_time().lambdify()
    assert np.allclose(first(**values), sde(**values), rtol=1e-12)
    second = lambdify_result({"s": sgd4.series(lam, 3)})
    assert 50 < _error_ratio(second, sgd4.lambdify(), values) < 200  # relative error ∝ λ²
    h11 = next(s for s in sgd4.free_symbols if str(s) == "h_11")
    with pytest.raises(ValueError, match="structured"):
        sgd4.series(h11, 2)


def test_d4_verify_rejects_a_wrong_hand_formula_with_a_counterexample(sgd4):
    """A hand formula that misses λ c_11 / 2 in one entry, checked against the structured
    result by high-precision evaluation inside the conditions."""
    c11 = next(s for s in sgd4.free_symbols if str(s) == "c_11")
    wrong = sp.Matrix(sgd4.cov)
    wrong[0, 0] += lam * c11 / 2
    verdict = ss.verify(wrong, sgd4)
    assert not verdict and verdict.counterexample is not None


# -- review findings -------------------------------------------------------------------------


def test_structured_form_refuses_a_factor_that_one_random_line_could_miss():
    """A shared factor g7 - g8 whose leading form vanishes along some directions: the
    structured form must not keep it (two random lines with wide slopes)."""
    g = sp.symbols("g0:9")
    U = sp.Matrix([[2, 1], [1, 1]])
    A = U * sp.diag(g[7], -g[8]) * U.inv()
    F = U * sp.diag(sum(g[:1] + g[2:7]), g[1]) * U.T
    with pytest.raises(ValueError, match="form='expanded'"):
        solve_stein(A, F, "structured", continuous=True)
    X, _, _ = solve_stein(A, F, continuous=True)
    assert sp.expand(A * X + X * A.T - F) == sp.zeros(2, 2)


@pytest.mark.parametrize(
    "M",
    [sp.diag(1 - lam * sp.Symbol("a"), 1), sp.eye(2), sp.Matrix([[1 - lam, lam], [lam, 1 - lam]])],
)
def test_singular_stein_equations_raise(M):
    with pytest.raises(ValueError, match="singular"):
        solve_stein(M, lam**2 * sp.eye(2))


def test_printed_denominator_is_positive_inside_the_stable_region(sgd4):
    """D's factors in the invariants e_k are oriented at a realisable (positive-definite)
    point, so D > 0 for every positive-definite H at small λ."""
    e = [sp.Symbol(f"e_{k}", positive=True) for k in range(1, D4 + 1)]
    c = [(-1) ** (D4 - a) * e[D4 - a - 1] for a in range(D4)]
    s_dummy = sp.Dummy("s")

    def poly(p):
        return sp.expand(polynomial(p, (*c, s_dummy)).xreplace({s_dummy: lam}))

    const, factors = sgd4.form.invariant_denominator(e, poly)
    D = const * sp.Mul(*[f**m for f, m in factors])
    rng = np.random.default_rng(12)
    for _ in range(5):
        h = np.sort(rng.uniform(0.1, 10, size=D4))
        values = {
            e[k - 1]: sum(np.prod(s) for s in itertools.combinations(h, k)) for k in range(1, 5)
        }
        values[lam] = 0.01 / h.max()
        assert float(D.xreplace(values)) > 0


def test_structured_latex_defines_k_when_it_is_not_h():
    r = ss.stationary(*_symbolic("sgd", D4, weight_decay=ss.weight_decay))
    assert r.structured
    assert r"K = \left[\begin{matrix}\gamma + h_{11}" in r.latex()


def test_series_of_structured_results_with_scaled_and_absent_learning_rate(sgd4):
    from symsgd.numeric import lambdify_result

    ct = sgd4.continuous_time()  # s = 0: the series is the prefactor's
    values = {
        k: float(v) for k, v in _values(*_random_problem(np.random.default_rng(13), 0.5)).items()
    }
    assert np.allclose(
        lambdify_result({"s": ct.series(lam, 2)})(**values), ct.lambdify()(**values), rtol=1e-12
    )
    doubled = ss.stationary(ss.SGD(2 * lam), *_symbolic("sgd", D4)[1:])
    series = lambdify_result({"s": doubled.series(lam, 3)})
    assert 50 < _error_ratio(series, doubled.lambdify(), values) < 200
    fixed = sgd4.subs(lr=sp.Rational(1, 1000))
    assert fixed.series(lam, 2) == fixed.cov  # λ already fixed: the value itself


def test_free_symbols_skip_bound_variables_of_mode_traces():
    r = ss.stationary(
        ss.SGD(lam),
        ss.LinearRegression.commuting(label_variance=ss.label_noise),
        ss.MinibatchNoise(ss.batch_size),
    )
    assert all(not s.name.startswith("_") for s in r.free_symbols)


# -- the on-disk cache of the universal polynomials -------------------------------------------

CACHED_N = 6  # the smallest dimension kept on disk (symsgd.cayley.PERSIST_FROM)


@pytest.fixture
def cache_in(tmp_path, monkeypatch):
    """SYMSGD_CACHE_DIR in a fresh directory and an empty in-process cache (restored after)."""
    monkeypatch.setenv("SYMSGD_CACHE_DIR", str(tmp_path / "cache"))
    universal.cache_clear()
    yield tmp_path / "cache"
    universal.cache_clear()


def _rewrite(path, edit):
    """Apply ``edit`` to the cached payload and store it with a *valid* checksum (a tamperer
    who knows the format): only the algebraic check can reject it."""
    import hashlib
    import json

    document = json.loads(path.read_text())
    edit(document["payload"])
    text = json.dumps(document["payload"], sort_keys=True, separators=(",", ":"))
    document["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(json.dumps(document))


def _sgd6():
    a = sp.Symbol("a", positive=True)
    H = sp.Matrix(6, 6, lambda i, j: 4 if i == j else (1 if abs(i - j) == 1 else 0))
    H[0, 1] = H[1, 0] = a
    return ss.SGD(lam), ss.Quadratic(H), ss.AdditiveNoise(sp.eye(6))


def test_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SYMSGD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cayley.cache_dir() == tmp_path / "xdg" / "symsgd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cayley.cache_dir() == tmp_path / "home" / ".cache" / "symsgd"
    monkeypatch.setenv("SYMSGD_CACHE_DIR", str(tmp_path / "mine"))
    assert cayley.cache_dir() == tmp_path / "mine"
    assert cayley.cache_file(7).parent == tmp_path / "mine"


def test_cache_round_trip(cache_in):
    derived = cayley.derive_universal(CACHED_N)
    path = cayley.cache_file(CACHED_N)
    assert not path.exists()
    first = universal(CACHED_N)  # derived and written
    assert path.exists() and not list(cache_in.glob("*.tmp"))  # atomic: no leftover
    assert (first.D, first.g, first.basis) == (derived.D, derived.g, derived.basis)
    loaded = cayley.read_cached_universal(CACHED_N)
    assert loaded is not None
    assert (loaded.D, loaded.g, loaded.basis) == (derived.D, derived.g, derived.basis)
    universal.cache_clear()
    path.write_text(path.read_text())  # the next process reads the file
    again = universal(CACHED_N)
    assert (again.D, again.g) == (derived.D, derived.g)
    assert cayley.check_universal(again)
    assert cayley.read_cached_universal(CACHED_N + 1) is None  # nothing stored for 7


@pytest.mark.parametrize(
    "tamper",
    ["bytes", "checksum", "format", "numerator", "scaled", "dimension"],
)
def test_a_corrupt_or_tampered_cache_file_is_ignored_and_rewritten(cache_in, tamper):
    universal(CACHED_N)
    path = cayley.cache_file(CACHED_N)
    good = path.read_text()
    if tamper == "bytes":
        path.write_text(good[: len(good) // 2] + "7" + good[len(good) // 2 + 1 :])
    elif tamper == "checksum":
        path.write_text(good.replace('"sha256":"', '"sha256":"0', 1))
    elif tamper == "format":
        _rewrite(path, lambda p: p.update(format=cayley.CACHE_FORMAT + 1))
    elif tamper == "numerator":  # a wrong g with a recomputed checksum
        _rewrite(path, lambda p: p["g"].__setitem__(3, p["g"][3] + " + c0"))
    elif tamper == "scaled":  # g/D unchanged as a fraction, but D no longer the product
        _rewrite(path, lambda p: p.update(D=f"2*({p['D']})", g=[f"2*({g})" for g in p["g"]]))
    else:
        _rewrite(path, lambda p: p.update(n=CACHED_N + 1))
    assert path.read_text() != good
    assert cayley.read_cached_universal(CACHED_N) is None
    universal.cache_clear()
    result = ss.stationary(*_sgd6(), method="invariant")  # derives again, rewrites the file
    assert result.certificate is not None
    assert cayley.read_cached_universal(CACHED_N) is not None
    ref = ss.stationary(*_sgd6(), method="exact")
    point = {s: sp.Rational(3 if s.name == "a" else 1, 10) for s in ref.free_symbols}
    assert at_point(result.state_cov, point) == at_point(ref.state_cov, point)


def test_an_unwritable_cache_directory_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SYMSGD_CACHE_DIR", str(blocker / "cache"))  # mkdir must fail
    universal.cache_clear()
    try:
        uni = universal(CACHED_N)
        assert cayley.check_universal(uni)
        assert not cayley.write_cached_universal(uni)
        assert cayley.read_cached_universal(CACHED_N) is None
        assert ss.stationary(*_sgd6(), method="invariant").certificate is not None
    finally:
        universal.cache_clear()
