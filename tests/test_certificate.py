"""Every result proves itself: certificates, the wrong answers the audit found, and the
value checks where numbers meet a result (issue: trust)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp
from scipy.linalg import solve_discrete_lyapunov

import symsgd as ss
from symsgd import lyapunov
from symsgd.catalogue import CATALOGUE
from symsgd.certify import certify, certify_stationary
from symsgd.exact import flint_factor
from symsgd.recursion import build_recursion

R = sp.Rational
a = sp.Symbol("a", positive=True)
h, c = sp.symbols("h c", positive=True)

# the 3×3 decimal problem where a wrong covariance that looked exact was returned
H_DEC = np.array([[0.572, 0.002, -0.516], [0.002, 2.084, -1.471], [-0.516, -1.471, 4.171]])
C_DEC = np.array([[5.02, -2.199, -0.025], [-2.199, 1.804, -0.751], [-0.025, -0.751, 0.718]])


# -- the bug and its cause -----------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "exact"])
def test_decimal_3x3_problem_gives_scipys_answer(method):
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(H_DEC), ss.AdditiveNoise(C_DEC), method=method)
    for lam in (0.05, 0.15, 0.3):
        want = solve_discrete_lyapunov(np.eye(3) - lam * H_DEC, lam**2 * C_DEC)
        got = r.lambdify()(lr=lam)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert r.certificate is not None and r.certificate.how == "exact"


def test_flint_factor_survives_the_overflow_and_multiplies_back():
    """python-flint's factor() raises OverflowError on this univariate polynomial (it sorts
    factors with coefficients above a machine word); the fallback factors it completely."""
    import flint

    ctx = flint.fmpz_mpoly_ctx.get(("x0",), "lex")
    (x,) = ctx.gens()
    big = 10**40 + 7
    p = (big * x**2 + 3 * x - big) * (x**3 - big * x + 1) * (2 * x - 1) ** 2
    content, factors = flint_factor(p)
    product = ctx.from_dict({(0,): content})
    for f, e in factors:
        product *= f**e
    assert product == p
    assert sorted(e for _, e in factors) == [1, 1, 2]


# -- certificates --------------------------------------------------------------------------
@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.name)
def test_every_catalogue_result_carries_a_certificate(case):
    r = case.derive()
    assert r.certificate is not None
    assert "certified" in str(r.certificate)
    assert r.certificate.how in ("exact", "explicit", "float")


class _WrongSolver(lyapunov.Solver):
    """A strategy that returns a plausible but wrong answer (twice the truth)."""

    name = "wrong"

    def applies_to(self, recursion):
        return True

    def solve(self, recursion):
        right = lyapunov.ExactSolver().solve(recursion)
        return lyapunov.Solution(2 * right.state_cov, right.denominator, self.name)


def test_a_wrong_candidate_is_discarded_and_the_next_strategy_answers(monkeypatch):
    monkeypatch.setattr(lyapunov, "SOLVERS", (_WrongSolver(), lyapunov.ExactSolver()))
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sp.cancel(r.cov - ss.lr * c / (h * (2 - ss.lr * h))) == 0
    assert r.method == "exact"


def test_no_certified_candidate_raises_internal_error(monkeypatch):
    monkeypatch.setattr(lyapunov, "SOLVERS", (_WrongSolver(),))
    # the last resort (sympy's DomainMatrix elimination) must not apply either
    monkeypatch.setattr(lyapunov.ExactSolver, "applies_to", lambda self, recursion: False)
    with pytest.raises(ss.InternalError, match="no solver strategy produced a certified"):
        ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))


def test_certificate_rejects_a_candidate_with_a_foreign_symbol():
    rec = build_recursion(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    x = sp.Symbol("x")
    with pytest.raises(ss.InternalError, match="depends on x"):
        certify_stationary(rec, sp.Matrix([[x]]))


def test_certificate_rejects_an_answer_wrong_by_a_tiny_relative_amount():
    """Exact arithmetic: a relative error of 1e-30 is still an error."""
    rec = build_recursion(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    right = ss.lr * c / (h * (2 - ss.lr * h))
    certify_stationary(rec, sp.Matrix([[right]]))
    with pytest.raises(ss.InternalError, match="does not solve"):
        certify_stationary(rec, sp.Matrix([[right * (1 + R(1, 10**30))]]))


def test_continuous_time_is_certified():
    r = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(h), ss.AdditiveNoise(c))
    ct = r.continuous_time()
    assert "continuous time" in str(ct.certificate)


# -- eigen-mode results: certified on an explicit diagonal instance ------------------------
def test_nesterov_minibatch_eigen_mode_closes_the_trace_at_the_look_ahead_point():
    """Nesterov evaluates its gradient at θ + μ(θ − θ_prev): the cross-mode trace of the
    minibatch noise is taken there (it was closed with θ's moment, 14/125 instead of 7/61)."""
    modes = ss.stationary(
        ss.Nesterov(R(1, 5), R(1, 2)),
        ss.LinearRegression.commuting(a, label_variance=1),
        ss.MinibatchNoise(2),
    )
    explicit = ss.stationary(
        ss.Nesterov(R(1, 5), R(1, 2)),
        ss.LinearRegression(sp.Matrix([[1]]), label_variance=1),
        ss.MinibatchNoise(2),
    )
    assert modes.on_modes([1]) == sp.Matrix([[R(7, 61)]])
    assert explicit.cov == R(7, 61)
    assert modes.certificate.how == "explicit"


@pytest.mark.parametrize(
    "optimizer",
    [
        ss.DampedNewton(R(1, 10)),
        ss.NaturalGradient(R(1, 10), fisher=a),
        ss.NaturalGradient(R(1, 10)),
        ss.HeavyBall(R(1, 10), R(1, 2)),
    ],
    ids=["damped-newton", "natural-gradient-fisher-a", "natural-gradient-default", "heavy-ball"],
)
def test_eigen_mode_minibatch_matches_the_explicit_diagonal_problem(optimizer):
    """These crashed ("mode coupling is not affine") before; now each agrees exactly with the
    explicit problem on the same spectrum."""
    modes = ss.stationary(
        optimizer, ss.LinearRegression.commuting(a, label_variance=1), ss.MinibatchNoise(2)
    )
    fisher = getattr(optimizer, "fisher", None)
    explicit_opt = (
        ss.NaturalGradient(optimizer.lr, fisher=sp.diag(1, 3)) if fisher == a else optimizer
    )
    explicit = ss.stationary(
        explicit_opt, ss.LinearRegression(sp.diag(1, 3), label_variance=1), ss.MinibatchNoise(2)
    )
    assert sp.simplify(modes.on_modes([1, 3]) - explicit.cov) == sp.zeros(2, 2)
    assert modes.certificate.how == "explicit"


def test_eigen_mode_minibatch_with_weight_decay_and_offset_minimum_is_refused():
    """The weight-decayed minimum is offset along every mode at once, which correlates the
    modes: there is no eigen-mode form (it returned zero off-diagonal entries before)."""
    t = sp.Symbol("t")
    with pytest.raises(ValueError, match="no eigen-mode form"):
        ss.stationary(
            ss.SGD(ss.lr, weight_decay=ss.weight_decay),
            ss.LinearRegression.commuting(a, 1, t),
            ss.MinibatchNoise(2),
        )
    # the explicit problem does have off-diagonal entries
    explicit = ss.stationary(
        ss.SGD(R(1, 10), weight_decay=R(1, 2)),
        ss.LinearRegression(sp.diag(1, 3), 1, [1, 1]),
        ss.MinibatchNoise(2),
    )
    assert explicit.cov[0, 1] != 0


# -- values are checked where they enter ---------------------------------------------------
def _heavy_ball_minibatch():
    return ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(sp.diag(1, R(1, 2)), label_variance=1),
        ss.MinibatchNoise(1),
    )


def test_lambdify_checks_the_spectral_radius_when_conditions_are_incomplete():
    r = _heavy_ball_minibatch()
    assert r.conditions_complete is False
    f = r.lambdify()
    with pytest.raises(ss.UnstableError, match="spectral radius"):
        f(lr=0.45, momentum=0.5)
    out = r.lambdify(unstable="nan")(lr=np.array([0.1, 0.45]), momentum=0.5)
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))
    assert np.all(np.diagonal(out[0]) > 0)


def test_mpmath_backend_honours_unstable_nan():
    import mpmath

    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(2), ss.AdditiveNoise(1))
    value = r.lambdify(backend="mpmath", unstable="nan")(lr=3)
    assert mpmath.isnan(value)
    with pytest.raises(ss.UnstableError):
        r.lambdify(backend="mpmath")(lr=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": -0.1, "momentum": 0.5}, "lambda .*> 0"),
        ({"lr": 0.0, "momentum": 0.5}, "lambda .*> 0"),
        ({"lr": float("nan"), "momentum": 0.5}, "lambda .*finite"),
        ({"lr": float("inf"), "momentum": 0.5}, "lambda .*finite"),
        ({"lr": 0.1 + 0.1j, "momentum": 0.5}, "lambda .*real"),
        ({"lr": 0.1, "momentum": -0.5}, "mu .*≥ 0"),
    ],
)
def test_lambdify_refuses_values_outside_the_domain(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _heavy_ball_minibatch().lambdify()(**kwargs)


def test_subs_refuses_values_outside_the_domain():
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    with pytest.raises(ValueError, match=r"c .*> 0"):
        r.subs(c=-1)
    with pytest.raises(ValueError, match=r"lambda .*> 0"):
        r.subs(lr=-R(1, 10))


def test_batch_size_must_be_an_integer_and_at_most_the_data_set_without_replacement():
    X = sp.Matrix([[1, 0], [0, 1], [1, 1], [2, -1]])
    y = sp.Matrix([1, 0, 2, 1])
    land = ss.LinearRegression.from_data(X, y)
    r = ss.stationary(ss.SGD(R(1, 10)), land, ss.MinibatchNoise(replacement=False))
    f = r.lambdify()
    assert np.all(np.diagonal(f(batch_size=2)) > 0)
    with pytest.raises(ValueError, match=r"S .*integer"):
        f(batch_size=2.5)
    with pytest.raises(ValueError, match=r"without replacement needs S <= 4"):
        f(batch_size=6)
    with pytest.raises(ValueError, match=r"without replacement needs S <= 4"):
        r.subs(batch_size=6)


def test_on_modes_refuses_a_zero_eigen_mode():
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic.commuting(a), ss.AdditiveNoise(1))
    with pytest.raises(ValueError, match=r"eigenvalue a.*> 0"):
        r.on_modes([0, 1])


def test_float_data_lambdify_does_not_overflow():
    """Float data are read exactly, so the exact answer has coefficients beyond 1e308; the
    numeric function rescales them and agrees with the exact value at a point."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 2))
    y = X @ np.array([1.0, -0.5]) + 0.3 * rng.normal(size=6)
    land = ss.LinearRegression.from_data(X, y)
    noise = ss.MinibatchNoise(2, replacement=False)
    f = ss.stationary(ss.SGD(ss.lr), land, noise).lambdify()
    exact = ss.stationary(ss.SGD(R(1, 10)), land, noise).cov
    np.testing.assert_allclose(f(lr=0.1), np.array(exact.evalf(), dtype=float), rtol=1e-12)
    with pytest.raises(ss.UnstableError):
        f(lr=5.0)


# -- symbols and names ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: ss.SGD(ss.lr, weight_decay=sp.Symbol("gamma", positive=True)), "gamma"),
        (lambda: ss.SGD(sp.Symbol("lambda")), "lambda"),
        (lambda: ss.HeavyBall(ss.lr, sp.Symbol("mu")), "mu"),
    ],
)
def test_user_symbols_named_like_library_symbols_are_refused(build, name):
    with pytest.raises(ValueError, match=f"'{name}'.*rename"):
        ss.stationary(build(), ss.Quadratic(h), ss.AdditiveNoise(c))


def test_two_user_symbols_with_one_name_are_refused():
    with pytest.raises(ValueError, match="two different symbols are both named 'h'"):
        ss.stationary(ss.SGD(ss.lr), ss.Quadratic(sp.Symbol("h")), ss.AdditiveNoise(c * h))


def test_series_latex_and_continuous_time_use_the_optimizers_own_learning_rate():
    eta = sp.Symbol("eta", positive=True)
    r = ss.stationary(ss.SGD(eta), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sp.expand(r.series(n=3) - (eta * c / (2 * h) + eta**2 * c / 4)) == 0
    assert r"\eta" in r.latex(lr=r"\eta") and "lambda" not in r.latex(lr=r"\eta")
    ct = r.continuous_time()
    assert sp.cancel(ct.cov - eta * c / (2 * h)) == 0
    assert sp.cancel(ct.series(n=2) - eta * c / (2 * h)) == 0


def test_label_variance_and_deprecated_label_noise_agree():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ss.LinearRegression(a, label_noise=2)
    new = ss.LinearRegression(a, label_variance=2)
    r_old = ss.stationary(ss.SGD(ss.lr), old, ss.MinibatchNoise(2))
    r_new = ss.stationary(ss.SGD(ss.lr), new, ss.MinibatchNoise(2))
    assert sp.cancel(r_old.cov - r_new.cov) == 0


# -- review findings -----------------------------------------------------------------------
def test_irrational_answers_are_checked_exactly_not_at_a_tiny_point(monkeypatch):
    """Answers with √2 were checked at 60 digits at one point where λ ~ 1e-19, so an error
    ∝ λ³ passed; the residual is now an algebraic number proved zero (or not)."""
    real = lyapunov.ExactSolver.solve

    def wrong(self, recursion):
        right = real(self, recursion)
        return lyapunov.Solution(right.state_cov * (1 + ss.lr**3), right.denominator, "wrong")

    monkeypatch.setattr(lyapunov.ExactSolver, "solve", wrong)
    monkeypatch.setattr(lyapunov, "SOLVERS", (lyapunov.ExactSolver(),))
    with pytest.raises(ss.InternalError):
        ss.stationary(ss.SGD(ss.lr), ss.Quadratic(sp.sqrt(2) * h), ss.AdditiveNoise(c))


def test_float_certificate_checks_small_entries_and_positivity(monkeypatch):
    real = lyapunov.NumericSolver.solve

    def flipped(self, recursion):
        right = real(self, recursion)
        S = sp.Matrix(right.state_cov)
        S[1, 1] = -S[1, 1]
        return lyapunov.Solution(sp.ImmutableMatrix(S), right.denominator, "wrong")

    monkeypatch.setattr(lyapunov.NumericSolver, "solve", flipped)
    r = ss.stationary(
        ss.SGD(0.1),
        ss.Quadratic(sp.Matrix([[1.0, 0.0], [0.0, 1.0]])),
        ss.AdditiveNoise(sp.Matrix([[1e8, 0.0], [0.0, 1e-8]])),
    )
    assert r.method != "wrong"  # the negative variance was discarded, the next strategy answered
    assert float(r.cov[1, 1]) == pytest.approx(0.01 * 1e-8 / (1 - 0.81), rel=1e-9)


def test_continuous_time_of_a_trace_coupled_eigen_mode_result_is_refused():
    r = ss.stationary(
        ss.SGD(ss.lr), ss.LinearRegression.commuting(label_variance=1), ss.MinibatchNoise(2)
    )
    with pytest.raises(ValueError, match="couple through a trace"):
        r.continuous_time()


def test_subs_refuses_a_symbolic_value_of_the_wrong_sign():
    r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    with pytest.raises(ValueError, match=r"lambda .*> 0"):
        r.subs(lr=-h)


def test_answers_with_square_roots_are_certified_exactly_and_fast():
    """Adam with a symbolic learning rate on an explicit 2×2 problem whose noise diagonal is not
    a square (√2, √3 in the preconditioner) took minutes in sympy's zero test; the residual is
    now decided in Q(√2, √3) exactly."""
    R = sp.Rational
    H = sp.Matrix([[2, 1], [1, 3]])
    result = ss.stationary(
        ss.Adam(ss.lr, R(9, 10), R(999, 1000), R(1, 10**8)),
        ss.Quadratic(H),
        ss.AdditiveNoise(H),
        timeout=60,
    )
    assert result.certificate.how == "exact" and len(result.certificate.points) == 2
    assert result.cov.has(sp.sqrt(2)) and result.cov.has(sp.sqrt(3))


def test_a_wrong_answer_with_square_roots_is_refused():
    """The exact decision in Q(√p, …) catches an error of 10⁻³⁰ that a 100-digit evaluation
    relative to the answer's size would only just see, and it never calls a right answer wrong
    (√6 = √2·√3 and √8 = 2√2 are the same numbers)."""
    x = sp.Symbol("x", positive=True)
    r2, r6 = sp.sqrt(2), sp.sqrt(6)

    def residual(X, point):
        return (r6 + r2 * x) * X - sp.eye(1) * (sp.sqrt(8) + x)

    right = sp.Matrix([[(2 * r2 + x) / (r2 * sp.sqrt(3) + r2 * x)]])
    assert certify(residual, right, [x]).how == "exact"
    wrong = right * (1 + sp.Rational(1, 10**30))
    with pytest.raises(ss.InternalError, match="non-zero element"):
        certify(residual, wrong, [x])
