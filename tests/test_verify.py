"""Tests of symsgd.verify: safe parsing of hand formulas and the exact / numeric equality check."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symsgd as ss
from symsgd import Verdict, parse_formula, verify
from symsgd.symbols import batch_size, dataset_size, lr, momentum

h, c = sp.symbols("h c", positive=True)
mu = momentum

#: exact stationary variance of SGD on a scalar quadratic with additive noise
SGD_VAR = lr * c / (h * (2 - lr * h))
#: ... and of heavy-ball momentum
HB_VAR = lr * c * (1 + mu) / (h * (1 - mu) * (2 * (1 + mu) - lr * h))


@dataclass(frozen=True)
class Result:
    """Stand-in for symsgd.Stationary: only what verify() reads."""

    cov: object
    conditions: object = sp.true


SGD_RESULT = Result(SGD_VAR, sp.And(lr * h > 0, lr * h < 2))
HB_RESULT = Result(HB_VAR, sp.And(lr * h < 2 * (1 + mu), mu < 1))


def _value_at(expr: sp.Expr, point: dict) -> sp.Float:
    """Independent evaluation (exact substitution, then 40 digits) of a counterexample."""
    return sp.N(expr.xreplace(point), 40)


# --------------------------------------------------------------------------------------------
# right formulas, in several spellings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hand",
    [
        "lr*c/(h*(2-lr*h))",
        "lr*c/(h*(2 - lr*h))",
        "λ c/(h(2-λh))",
        "λc/(2h - λh²)",
        "η c/(h (2 - η h))",
        "eta*c/(2*h - eta*h**2)",
        "lambda*c/(2*h - lambda*h^2)",
        "learning_rate*c/(h*(2-learning_rate*h))",
        "λ·c/(h·(2−λh))",
        "0.5*lr*c/(h - 0.5*lr*h^2)",
        "Var = lr c/(h(2 - lr h))",
        r"\frac{\lambda c}{h(2-\lambda h)}",
        r"\frac{\lambda c}{h\left(2-\lambda h\right)}",
        r"$\dfrac{\eta\, c}{2h - \eta h^{2}}$",
        r"\frac{\mathrm{lr}\, c}{h(2-\mathrm{lr}\, h)}",
        r"\lambda c \cdot \frac{1}{h} \cdot \frac{1}{2 - \lambda h}",
        SGD_VAR,
        sp.expand(lr * c) / sp.expand(h * (2 - lr * h)),
    ],
)
def test_equivalent_spellings_are_equal_exactly(hand):
    verdict = verify(hand, SGD_VAR)
    assert verdict.equal and bool(verdict)
    assert verdict.method == "exact"
    assert verdict.counterexample is None
    assert str(verdict).startswith("equal: ")


def test_expanded_against_factored_momentum_formula():
    expanded = sp.expand(sp.numer(sp.together(HB_VAR))) / sp.expand(sp.denom(sp.together(HB_VAR)))
    assert verify(str(expanded), HB_RESULT).equal
    assert verify("lr c (1+beta)/(h (1-beta)(2+2beta-lr h))", HB_RESULT).equal
    assert verify("λc(1+μ)/(h(1-μ)(2(1+μ)-λh))", HB_RESULT).equal


def test_hand_symbols_without_assumptions_map_to_derived_symbols():
    lam_plain, h_plain, c_plain = sp.symbols("lambda h c")  # no positivity, other objects
    verdict = verify(lam_plain * c_plain / (h_plain * (2 - lam_plain * h_plain)), SGD_VAR)
    assert verdict.equal
    assert verdict.hand.free_symbols == {lr, h, c}


def test_derived_with_its_own_learning_rate_name():
    eta = sp.Symbol("eta", positive=True)
    assert verify("λ c/(h(2-λh))", SGD_VAR.subs(lr, eta)).equal
    assert verify("lr c/(h(2-lr h))", SGD_VAR.subs(lr, eta)).equal


def test_beta_is_a_symbol_of_its_own_when_derived_has_one():
    beta = sp.Symbol("beta", positive=True)
    verdict = verify("beta*c", beta * c)
    assert verdict.equal and verdict.hand.free_symbols == {beta, c}
    # the derived result calls its momentum β: μ and momentum mean it too
    assert verify("μ c", beta * c).equal
    with pytest.raises(ValueError, match="does not have"):
        verify("beta*c + gamma", beta * c)


def test_batch_and_dataset_size_aliases():
    derived = lr * c / (batch_size * h) * (1 - batch_size / dataset_size)
    assert verify("lr c/(B h) (1 - B/N)", derived).equal
    assert verify("lr*c/(batch_size*h)*(1 - batch_size/dataset_size)", derived).equal


def test_subscripted_names_match_in_every_spelling():
    h11, h22 = sp.symbols("h_11 h_22", positive=True)
    derived = lr / (h11 + h22)
    for hand in ("lr/(h_11 + h_22)", "lr/(h11 + h22)", r"\frac{\lambda}{h_{11} + h_{22}}"):
        verdict = verify(hand, derived)
        assert verdict.equal, hand
        assert verdict.hand.free_symbols == {lr, h11, h22}


# --------------------------------------------------------------------------------------------
# wrong formulas
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("derived", [SGD_VAR, SGD_RESULT])
@pytest.mark.parametrize("hand", ["lr*c/(2*h)", r"\frac{\lambda c}{2h}", "λc/(2h)"])
def test_continuous_time_answer_is_not_the_exact_one(hand, derived):
    verdict = verify(hand, derived)
    assert not verdict.equal and not bool(verdict)
    assert verdict.method == "exact"
    cex = verdict.counterexample
    assert set(cex) == {"point", "hand", "derived"}
    point = cex["point"]
    assert set(point) == {lr, h, c}
    # the reported values are the two formulas at that point, and they really differ
    hand_value, derived_value = _value_at(lr * c / (2 * h), point), _value_at(SGD_VAR, point)
    assert abs(cex["hand"] - hand_value) <= 1e-25 * abs(hand_value)
    assert abs(cex["derived"] - derived_value) <= 1e-25 * abs(derived_value)
    assert abs(hand_value - derived_value) > 1e-3 * abs(derived_value)
    text = str(verdict)
    assert text.startswith("NOT equal: at ") and "λ=" in text and "h=" in text
    if isinstance(derived, Result):  # the point lies inside the stability conditions
        assert 0 < point[lr] * point[h] < 2


def test_counterexample_lies_inside_momentum_conditions():
    verdict = verify("λc/(2h)", HB_RESULT)
    assert not verdict.equal
    point = verdict.counterexample["point"]
    assert point[mu] < 1 and point[lr] * point[h] < 2 * (1 + point[mu])
    assert HB_RESULT.conditions.xreplace(point) is sp.true


def test_same_seed_same_counterexample():
    a = verify("lr*c/(2*h)", SGD_RESULT, seed=3)
    b = verify("lr*c/(2*h)", SGD_RESULT, seed=3)
    assert a.counterexample == b.counterexample


# --------------------------------------------------------------------------------------------
# numeric route
# --------------------------------------------------------------------------------------------

SQRT_DERIVED = 1 + sp.sqrt(lr * h)


def test_sqrt_identity_is_equal_numerically():
    hand = "sqrt(λh + 2 sqrt(λh) + 1)"  # = 1 + √(λh), which cancel() cannot see
    verdict = verify(hand, SQRT_DERIVED)
    assert verdict.equal and verdict.method == "numeric"
    assert "8 random points" in str(verdict)
    assert verify(r"\sqrt{\lambda h + 2\sqrt{\lambda h} + 1}", SQRT_DERIVED).equal


def test_small_numeric_difference_is_found():
    verdict = verify("sqrt(λh + 2 sqrt(λh) + 1)", SQRT_DERIVED + sp.Rational(1, 10**15))
    assert not verdict.equal and verdict.method == "numeric"
    cex = verdict.counterexample
    assert abs(cex["derived"] - cex["hand"]) == pytest.approx(1e-15, rel=1e-6)
    # the sentence prints enough digits to see the difference
    shown = re.search(r"gives (\S+) but the derived result gives (\S+)", str(verdict))
    assert shown is not None and shown.group(1) != shown.group(2)


def test_exp_and_log_formulas():
    derived = sp.exp(-lr * h) * sp.log(1 + c)
    assert verify("exp(-lr h) ln(1+c)", derived).equal
    assert verify(r"e^{-\lambda h} \log(1 + c)", derived).equal
    assert not verify("exp(-lr h) log(1+2c)", derived).equal


def test_conditions_restrict_sampling_and_unreachable_conditions_raise():
    # √(x²) = |x| equals x only where x > 0: the conditions decide
    x = sp.Symbol("x", real=True)
    verdict = verify("sqrt(x^2)", Result(x, sp.And(x > 1, x < 2)))
    assert verdict.equal and verdict.method == "numeric"
    assert not verify("sqrt(x^2)", Result(x, x < 0)).equal
    with pytest.raises(ValueError, match="no point satisfying the conditions"):
        verify("sqrt(x^2)", Result(x, x > 50))
    assert verify("sqrt(x^2)", Result(x, x > 50), {x: (50, 60)}).equal


def test_assumptions_boolean_and_ranges():
    x = sp.Symbol("x", real=True)
    assert verify("sqrt(x^2)", x, x > 0).equal
    verdict = verify("sqrt(x^2)", x, {"x": (-2, -1)})
    assert not verdict.equal
    assert -2 < verdict.counterexample["point"][x] < -1


def test_sampling_of_integer_symbols():
    verdict = verify("lr/S + lr/S^2", lr / batch_size)
    assert not verdict.equal
    value = verdict.counterexample["point"][batch_size]
    assert value.is_Integer and 1 <= value <= 64


# --------------------------------------------------------------------------------------------
# matrices and result objects
# --------------------------------------------------------------------------------------------

H2 = sp.Matrix([[1 / (h * (2 - lr * h)), 0], [0, 1 / (c * (2 - lr * c))]]) * lr


def test_matrices_equal_entrywise():
    assert verify("[[lr/(h(2-lr h)), 0], [0, lr/(c(2 - lr c))]]", H2).equal
    assert verify("Matrix([[lr/(h(2-lr h)), 0], [0, lr/(c(2 - lr c))]])", H2).equal
    assert verify(sp.latex(H2), H2).equal
    assert verify(sp.ImmutableMatrix(H2), H2).equal


def test_matrix_counterexample_names_the_entry():
    result = Result(H2, sp.And(lr * h < 2, lr * c < 2))
    verdict = verify("[[lr/(h(2-lr h)), 0], [0, lr/(2c)]]", result)
    assert not verdict.equal and verdict.method == "exact"
    assert verdict.counterexample["entry"] == (1, 1)
    assert "entry (1, 1)" in str(verdict)


def test_shape_mismatch_is_not_equal_with_a_message():
    verdict = verify("[[lr, 0], [0, lr], [0, 0]]", H2)
    assert not verdict.equal and verdict.method == "shape"
    assert "3×2 matrix" in str(verdict) and "2×2 matrix" in str(verdict)
    assert not verify("lr", H2).equal
    assert verify("lr/(h(2-lr h))", sp.Matrix([[SGD_VAR / c]])).equal  # 1×1 ~ scalar


def test_result_object_with_true_conditions():
    assert verify("λ c/(h(2-λh))", Result(SGD_VAR)).equal


# --------------------------------------------------------------------------------------------
# unknown names and unsafe input
# --------------------------------------------------------------------------------------------


def test_unknown_symbol_is_an_error_not_a_false_verdict():
    with pytest.raises(ValueError, match=r"uses symbols \{'q'\} that the derived result"):
        verify("q*lr*c/(h*(2-lr*h))", SGD_VAR)
    with pytest.raises(ValueError, match="the derived result uses c, h, lambda"):
        verify(r"\frac{q}{h}", SGD_VAR)
    with pytest.raises(ValueError, match="does not have"):
        verify(sp.Symbol("q") * lr, SGD_VAR)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch {path}')",
        "().__class__.__bases__[0].__subclasses__()",
        "lr.__class__",
        "import os",
        "lambda x: x",
        'exec(\'open("{path}", "w")\')',
        "c; open('{path}', 'w')",
        "[lr]*2",
        "sqrt x",
        "1/(h",
        "",
        r"\mathbb{E}\left[c\right]",
    ],
)
def test_malicious_or_malformed_strings_are_rejected(text, tmp_path):
    target = tmp_path / "pwned"
    with pytest.raises(ValueError, match="could not parse hand formula"):
        verify(text.replace("{path}", str(target)), SGD_VAR)
    assert not target.exists()


def test_strings_inside_lists_are_parsed_safely_too(tmp_path):
    target = tmp_path / "pwned"
    attack = f"__import__('os').system('touch {target}')"
    with pytest.raises(ValueError, match="could not parse hand formula"):
        verify([[attack]], sp.Matrix([[h]]))
    with pytest.raises(ValueError):  # sympy's SympifyError, raised before any parsing
        verify("h", [[attack]])
    with pytest.raises(TypeError):
        verify("h", attack)
    assert not target.exists()
    assert verify([["lr h", 0]], sp.Matrix([[lr * h, 0]])).equal


def test_parse_error_message_says_how_to_write_it():
    with pytest.raises(ValueError, match=r"write it as e\.g\. 'lr\*c/\(h\*\(2 - lr\*h\)\)'"):
        parse_formula("a.b")
    with pytest.raises(ValueError, match="attribute access"):
        parse_formula("a.b")


def test_parsing_never_evaluates_python(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert verify("λ c/(h(2-λh))", SGD_VAR).equal
    assert verify(r"\frac{\lambda c}{h\bigl(2-\lambda h\bigr)}", SGD_VAR).equal
    assert parse_formula("[[a, b], [c, sqrt(d)]]").shape == (2, 2)
    assert parse_formula(r"\begin{pmatrix} a & b \\ c & \sqrt{d} \end{pmatrix}").shape == (2, 2)


# --------------------------------------------------------------------------------------------
# parse_formula and LaTeX round trips
# --------------------------------------------------------------------------------------------


def test_parse_formula_free_mode_uses_library_symbols():
    assert parse_formula("lr*c/(h*(2 - lr*h))").free_symbols >= {lr}
    assert parse_formula("η + μ + β") == lr + 2 * mu
    assert parse_formula("2λh^2") == 2 * lr * sp.Symbol("h") ** 2
    assert parse_formula("e^x + pi") == sp.exp(sp.Symbol("x")) + sp.pi
    assert parse_formula("[a, b]").shape == (2, 1)


def test_parse_formula_with_symbols():
    expr = parse_formula("λh c", symbols=[h, c, lr])
    assert expr == lr * h * c
    assert parse_formula("hc", symbols=SGD_VAR) == h * c


@pytest.mark.parametrize(
    "expr",
    [
        SGD_VAR,
        HB_VAR,
        lr * c * (1 + mu) / (h * (1 - mu) * (2 * (1 + mu) - lr * h)) + lr**2 * c / 2,
        sp.sqrt(lr * c) / (1 + h) ** 3,
        lr**2 * c * h / (2 - lr * h) ** 2 - sp.Rational(3, 7) * lr,
        sp.exp(-lr * h) * c / (1 - mu),
        H2,
    ],
)
def test_latex_round_trip(expr):
    verdict = verify(sp.latex(expr), expr)
    assert verdict.equal, sp.latex(expr)


NAMES = [lr, h, c, mu]


def _expressions():
    leaves = st.sampled_from(NAMES) | st.integers(1, 5).map(sp.Integer)
    return st.recursive(
        leaves,
        lambda sub: st.one_of(
            st.tuples(sub, sub).map(lambda t: t[0] + t[1]),
            st.tuples(sub, sub).map(lambda t: t[0] * t[1]),
            st.tuples(sub, sub).map(lambda t: t[0] - t[1]),
            st.tuples(sub, sub).map(lambda t: t[0] / (1 + t[1] ** 2)),
        ),
        max_leaves=8,
    )


@settings(derandomize=True, max_examples=40, deadline=None)
@given(_expressions())
def test_plain_and_latex_round_trips_of_random_expressions(expr):
    expr = sp.sympify(expr)
    context = [*NAMES]
    assert sp.cancel(parse_formula(str(expr), symbols=context) - expr) == 0
    assert sp.cancel(parse_formula(sp.latex(expr), symbols=context) - expr) == 0


# --------------------------------------------------------------------------------------------
# LaTeX powers: of a parenthesised group after a name, of a whole function call
# --------------------------------------------------------------------------------------------

a_, b_, n_, x_ = sp.symbols("a b n x", positive=True)
h1 = sp.Symbol("h_1", positive=True)


@pytest.mark.parametrize(
    ("latex", "meant"),
    [
        # powers of a group that is not a call
        (r"\frac{\lambda}{(2-\lambda h)^{2}}", lr / (2 - lr * h) ** 2),
        (r"\sqrt{c}^{2}", c),
        (r"\sqrt{x}^{3}", x_ ** sp.Rational(3, 2)),
        (r"\left(\frac{a}{b}\right)^{n}", (a_ / b_) ** n_),
        # powers of a whole function call: f(x)^n = f(x)·…·f(x)
        (r"\exp(x)^2", sp.exp(x_) ** 2),
        (r"\exp\left(x\right)^{2}", sp.exp(x_) ** 2),
        (r"\sin(x)^{2}", sp.sin(x_) ** 2),
        (r"\cos\left(x\right)^{2}", sp.cos(x_) ** 2),
        (r"\log(x)^2", sp.log(x_) ** 2),
        (r"\log_{2}(x)^2", (sp.log(x_) / sp.log(2)) ** 2),
        (r"\sin^{2}(x)", sp.sin(x_) ** 2),
        # a name before parentheses is a product; the power belongs to the parentheses only
        # (sympy's grammar reads h(...) as a call, which used to give h²(2 - λh)²)
        (r"h(2-\lambda h)^{2}", h * (2 - lr * h) ** 2),
        (r"h\left(2-\lambda h\right)^{2}", h * (2 - lr * h) ** 2),
        (r"\frac{c}{h(2-\lambda h)^2}", c / (h * (2 - lr * h) ** 2)),
        (r"h\left(2-\lambda h\right)^{-1}", h / (2 - lr * h)),
        (r"\lambda(2-\lambda h)^{2}", lr * (2 - lr * h) ** 2),
        (r"h_{1}(2-x)^{2}", h1 * (2 - x_) ** 2),
        (r"h (2)^{2}", 4 * h),
        (sp.latex(c * h * (2 - lr * h) ** 2), c * h * (2 - lr * h) ** 2),  # sympy's own output
        # ... unless the group with the name is bracketed or braced as a whole
        (r"{h(2-\lambda h)}^{-1}", 1 / (h * (2 - lr * h))),
        (r"\left[h(2-\lambda h)\right]^{-1}", 1 / (h * (2 - lr * h))),
        (r"[h(2-\lambda h)]^{2}", (h * (2 - lr * h)) ** 2),
    ],
)
def test_latex_powers_bind_as_written(latex, meant):
    verdict = verify(latex, meant)
    assert verdict.equal, (latex, verdict.hand, str(verdict))


@pytest.mark.parametrize(
    ("plain", "meant"),
    [
        ("h(2-λh)^2", h * (2 - lr * h) ** 2),
        ("exp(x)^2", sp.exp(x_) ** 2),
        ("sin(x)^2", sp.sin(x_) ** 2),
        ("sqrt(c)^2", c),
        ("(a/b)^n", (a_ / b_) ** n_),
        ("λ/(2-λh)^2", lr / (2 - lr * h) ** 2),
    ],
)
def test_plain_powers_bind_like_latex(plain, meant):
    assert verify(plain, meant).equal


# --------------------------------------------------------------------------------------------
# eigen-mode results: hand formulas in matrix names, read mode by mode
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def modes():
    import symsgd as ss

    return ss.stationary(ss.SGD(lr), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))


@pytest.mark.parametrize(
    "hand",
    [
        r"\lambda [H(2I-\lambda H)]^{-1} C",
        r"\lambda {\left[H \left(2 I - \lambda H\right)\right]}^{-1} C",
        r"\lambda C H^{-1} (2I - \lambda H)^{-1}",  # any order: the matrices commute
        r"\frac{\lambda}{2} H^{-1} \left(I - \frac{\lambda}{2} H\right)^{-1} C",
        "λ (H(2I-λH))^-1 C",
        "lr*C*H^-1*(2*I - lr*H)^-1",
    ],
)
def test_matrix_function_formula_of_an_eigen_mode_result(hand, modes):
    verdict = verify(hand, modes)
    assert verdict.equal and verdict.method == "exact", str(verdict)
    assert sp.cancel(verdict.hand - SGD_VAR) == 0  # the per-mode scalar that was compared
    assert verdict.modes == {"H": h, "C": c, "I": 1}
    assert "compared mode by mode: H, C, I read as the eigenvalues h, c, 1" in str(verdict)


def test_wrong_matrix_formula_fails_per_mode_with_an_eigenvalue_counterexample(modes):
    verdict = verify(r"\frac{\lambda}{2} H^{-1} C", modes)  # the continuous-time answer
    assert not verdict.equal and verdict.method == "exact"
    assert set(verdict.counterexample["point"]) == {lr, h, c}
    assert str(verdict).startswith("NOT equal") and "mode by mode" in str(verdict)
    assert verdict.modes == {"H": h, "C": c}


def test_scalar_formula_of_an_eigen_mode_result_is_not_reread(modes):
    verdict = verify(r"\frac{\lambda c}{h(2-\lambda h)}", modes)
    assert verdict.equal and verdict.modes is None
    assert "mode by mode" not in str(verdict)


def test_matrix_names_of_a_bare_expression_need_modes(modes):
    hand = r"\lambda [H(2I-\lambda H)]^{-1} C"
    with pytest.raises(ValueError, match=r"pass the result itself.*modes=result.mode_names\(\)"):
        verify(hand, modes.cov)
    assert verify(hand, modes.cov, modes=modes.mode_names()).modes == {"H": h, "C": c, "I": 1}
    with pytest.raises(ValueError, match="uses symbols"):  # modes={} turns the reading off
        verify(hand, modes, modes={})
    with pytest.raises(TypeError, match="eigenvalue Symbols to matrix names"):
        verify(hand, modes.cov, modes={"H": h})


def test_explicit_matrices_are_read_as_matrices_not_per_mode():
    import symsgd as ss

    H = sp.Matrix([[2, 1], [1, 3]])
    result = ss.stationary(ss.SGD(lr), ss.Quadratic(H), ss.AdditiveNoise(sp.eye(2)))
    # Σ solves Σ - (I - λH)Σ(I - λH) = λ²C; with C = I, H Σ + Σ H - λ H Σ H = λ I, so for this
    # H (which commutes with C) Σ = λ [H(2I - λH)]^{-1} as a matrix product
    verdict = verify(r"\lambda [H(2I-\lambda H)]^{-1}", result)
    assert verdict.equal and verdict.modes is None and verdict.method == "exact"
    expected = lr * (H * (2 * sp.eye(2) - lr * H)).inv()
    assert sp.simplify(verdict.hand - expected) == sp.zeros(2, 2)
    wrong = verify(r"\lambda [H(2I+\lambda H)]^{-1}", result)
    assert not wrong.equal and "entry" in wrong.counterexample
    with pytest.raises(ValueError, match="in its matrices C, H, I"):
        verify("lr P", result)


def test_traces_over_modes_are_read_and_determinants_refused(modes):
    # Tr H² sums over all the modes: not the per-mode result, shown on a spectrum of three modes
    verdict = verify(r"\operatorname{Tr}\left[H^{2}\right] C", modes)
    assert not verdict.equal
    assert "traces over the modes expanded" in verdict.explanation
    with pytest.raises(ValueError, match="cannot be read mode by mode"):
        verify("det(H)", modes)
    with pytest.raises(ValueError, match="must be a function of one mode matrix"):
        verify(r"\operatorname{Tr}[H C]", modes)
    with pytest.raises(ValueError, match="cannot be told apart"):
        verify(r"\operatorname{Tr}[H] C", modes)


def _eigen_mode_cases():
    from symsgd.catalogue import CATALOGUE

    # all of them round-trip: each is Quadratic.commuting with additive noise, so no mode traces
    # (the minibatch cases use an explicit scalar LinearRegression(a): not eigen-mode results)
    cases = [case for case in CATALOGUE if case.landscape.eigenmode]
    assert cases
    return cases


@pytest.mark.parametrize("case", _eigen_mode_cases(), ids=lambda case: case.name)
def test_catalogue_eigen_mode_latex_round_trips(case):
    result = case.derive()
    text = result.latex()
    verdict = verify(text, result)
    assert verdict.equal, (text, str(verdict))
    assert "mode by mode" in str(verdict) and "H" in verdict.modes
    sde = result.continuous_time()
    assert verify(sde.latex(), sde).equal
    for env in ("align", "equation*"):
        assert verify(result.latex(env=env, lr="eta"), result).equal


# --------------------------------------------------------------------------------------------
# the Verdict value and the module's examples
# --------------------------------------------------------------------------------------------


def test_verdict_is_frozen_and_carries_both_sides():
    verdict = verify("λ c/(h(2-λh))", SGD_RESULT)
    assert isinstance(verdict, Verdict)
    assert verdict.derived == SGD_VAR
    assert sp.cancel(verdict.hand - SGD_VAR) == 0
    with pytest.raises(AttributeError):
        verdict.equal = False  # type: ignore[misc]
    assert str(verdict) == (
        "equal: the hand formula agrees with the derived result (exact cancellation)"
    )


def test_huge_expression_goes_numeric_within_budget():
    # 1000 terms whose denominators are written differently on the two sides: too large for the
    # exact route's size limit, decided numerically instead
    k_max = 1000
    hand = sp.Add(*[lr * c * (1 + mu) ** k / ((k + 1) * (2 * h - lr * h**2)) for k in range(k_max)])
    derived = sp.Add(*[SGD_VAR * (1 + mu) ** k / (k + 1) for k in range(k_max)])
    verdict = verify(hand, Result(derived, HB_RESULT.conditions), timeout=2.0)
    assert verdict.equal and verdict.method == "numeric"


def test_exact_route_respects_the_time_budget(monkeypatch):
    def slow_cancel(*args, **kwargs):
        time.sleep(60)

    monkeypatch.setattr(sp, "cancel", slow_cancel)
    start = time.perf_counter()
    verdict = verify("λc/(2h - λh²)", SGD_RESULT, timeout=0.2)
    assert time.perf_counter() - start < 30
    assert verdict.equal and verdict.method == "numeric"


def test_counterexamples_for_a_bare_expression_stay_where_its_denominators_keep_their_sign():
    """Without ``conditions`` the sampler must not report a point outside the stability region
    (where the derived "variance" is negative)."""
    h, c = sp.symbols("h c", positive=True)
    derived = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c)).cov
    for seed in range(5):
        verdict = ss.verify(r"\frac{\eta c}{h(2+\eta h)}", derived, seed=seed)
        assert not verdict.equal
        point = verdict.counterexample["point"]
        assert point[ss.lr] * point[h] < 2
        assert verdict.counterexample["derived"] > 0


# --------------------------------------------------------------------------------------------
# Euler's number: only \mathrm{e}, e^{…} or exp(…); a lone e is a symbol
# --------------------------------------------------------------------------------------------

E_SYM = sp.Symbol("e")


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        (r"\mathrm{e}", sp.E),
        (r"\text{e}", sp.E),
        (r"e^{x}", sp.exp(sp.Symbol("x"))),
        (r"e^{-\lambda h}", sp.exp(-lr * sp.Symbol("h"))),
        (r"\exp(x)", sp.exp(sp.Symbol("x"))),
        ("exp(x)", sp.exp(sp.Symbol("x"))),
        ("e^x", sp.exp(sp.Symbol("x"))),
        ("e**2", sp.exp(2)),
        ("e", E_SYM),
        (r"e", E_SYM),
        ("2e", 2 * E_SYM),
        (r"\frac{e}{2}", E_SYM / 2),
        ("e*x", E_SYM * sp.Symbol("x")),
        (r"e x", E_SYM * sp.Symbol("x")),
        ("1e3", sp.Integer(1000)),  # a plain decimal exponent stays a number
        (r"\mathrm{e}^{2}", sp.exp(2)),
    ],
)
def test_euler_number_only_where_written_as_such(text, meant):
    assert parse_formula(text) == meant


def test_a_lone_e_against_a_result_is_an_unknown_symbol_with_a_hint():
    with pytest.raises(ValueError, match=r"a lone e is a plain symbol.*\\mathrm\{e\}"):
        verify("λ c e/(h(2-λh))", SGD_RESULT)
    # the exponential is read as such and compared (here: not equal)
    assert not verify(r"\frac{\lambda c}{h(2-\lambda h)} e^{\lambda}", SGD_RESULT).equal
    assert verify(r"\frac{\lambda c}{h(2-\lambda h)} e^{0}", SGD_RESULT).equal


def test_a_result_symbol_named_e_is_that_symbol():
    e = sp.Symbol("e", positive=True)
    derived = Result(lr * e, sp.true)
    assert verify("lr e", derived).equal
    assert verify(r"\lambda e", derived).equal
    assert not verify(r"\lambda \mathrm{e}", derived).equal


# --------------------------------------------------------------------------------------------
# order=n: agreement up to O(λⁿ) of a small-λ expansion
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scalar_sgd():
    result = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    # the exact law is λc/(h(2 − λh)) = λc/(2h) + λ²c/4 + λ³ch/8 + … (independent check)
    assert sp.cancel(result.cov - SGD_VAR) == 0
    return result


@pytest.mark.parametrize(
    ("hand", "order", "equal"),
    [
        (r"\frac{\lambda c}{2h} + \frac{\lambda^{2} c}{4}", 3, True),
        (r"\frac{\lambda c}{2h} + \frac{\lambda^{2} c}{3}", 3, False),  # wrong λ² term
        (r"\frac{\lambda c}{2h}", 2, True),
        (r"\frac{\lambda c}{2h}", 3, False),  # misses the λ² term
        (r"\frac{\eta c}{3h}", 2, False),  # wrong first-order term
        (r"\frac{\lambda c}{2h} + \frac{\lambda^{2} c}{4} + 7 \lambda^{3}", 3, True),  # O(λ³)
        ("λc/(2h) + λ^2 c/4 + λ^3 c h/8", 4, True),
        ("λc/(2h) + λ^2 c/4 + λ^3 c h/9", 4, False),
        (r"\frac{\lambda c}{h(2-\lambda h)}", 5, True),  # the exact formula at any order
    ],
)
def test_order_compares_taylor_series_in_the_learning_rate(scalar_sgd, hand, order, equal):
    verdict = verify(hand, scalar_sgd, order=order)
    assert verdict.equal is equal, str(verdict)
    assert verdict.order == order
    assert verdict.method.startswith(f"series O(λ^{order})") or (
        order == 1 and verdict.method.startswith("series O(λ)")
    )
    assert f"up to and excluding order {order}" in verdict.explanation
    # without order= a truncated expansion is never equal to the exact law
    if hand != r"\frac{\lambda c}{h(2-\lambda h)}":
        assert not verify(hand, scalar_sgd).equal


def test_order_reports_the_first_differing_coefficient(scalar_sgd):
    verdict = verify("λc/(2h) + λ^2 c/3", scalar_sgd, order=3)
    assert not verdict.equal
    assert "λ^2 coefficient" in verdict.explanation
    assert "c/3" in verdict.explanation and "c/4" in verdict.explanation


def test_order_on_matrices_and_eigen_modes(modes):
    # eigen-mode: λ[H(2I − λH)]^{-1}C = λ C/(2H) + λ² C/4 + O(λ³), read mode by mode
    assert verify(r"\frac{\lambda}{2} H^{-1} C + \frac{\lambda^{2}}{4} C", modes, order=3).equal
    assert not verify(r"\frac{\lambda}{2} H^{-1} C", modes, order=3).equal
    # explicit 2×2: the first order is λ times the Lyapunov solution of HΣ + ΣH = C
    H = sp.Matrix([[2, 1], [1, 3]])
    result = ss.stationary(ss.SGD(lr), ss.Quadratic(H), ss.AdditiveNoise(sp.eye(2)))
    X = sp.Matrix(2, 2, sp.symbols("x0:4"))
    solved = sp.solve(list(H * X + X * H.T - sp.eye(2)), list(X))
    first = lr * X.subs(solved)
    assert verify(first, result, order=2).equal
    assert not verify(first * 2, result, order=2).equal


def test_order_needs_a_positive_integer_and_a_learning_rate():
    with pytest.raises(ValueError, match="order must be a positive integer"):
        verify("h", SGD_RESULT, order=0)
    with pytest.raises(ValueError, match="order must be a positive integer"):
        verify("h", SGD_RESULT, order=2.0)
    with pytest.raises(ValueError, match="no learning-rate symbol"):
        verify("h", Result(h * c), order=2)


# --------------------------------------------------------------------------------------------
# bounded parsing: hostile inputs fail fast with a ValueError that names the limit
# --------------------------------------------------------------------------------------------

HOSTILE = [
    ("10^(10^10)", "at most 20000 bits"),
    ("10**10**10", "at most 20000 bits"),
    ("2^2^2^2^2^2^2", "at most 20000 bits"),
    (r"2^{2^{2^{2^{2^{2}}}}}", "at most 20000 bits"),
    (r"10^{10^{10}}", "at most 20000 bits"),
    ("h^(10^10)", "exponents may be at most 1000"),
    (r"h^{100000}", "exponents may be at most 1000"),
    ("1e999999", "a decimal exponent may be at most 1000"),
    ("(" * 10_000 + "h" + ")" * 10_000, "at most 20000 are read"),  # too long, first
    ("(" * 5_000 + "h" + ")" * 5_000, "nested 5000 levels deep; at most 100 are read"),
    (r"\left(" * 1_000 + "h" + r"\right)" * 1_000, "at most 100 are read"),
    ("{" * 5_000 + "h" + "}" * 5_000, "at most 100 are read"),
    (r"\frac{1}{" * 1_000 + "h" + "}" * 1_000, "at most 100 are read"),
    ("[" * 5_000 + "h" + "]" * 5_000, "at most 100 are read"),
    ("-" * 10_000 + "h", "nested more than 100 levels"),
    ("√" * 10_000 + "h", "nested more than 100 levels"),
    ("h" + "^{h" * 3_000 + "}" * 3_000, "at most 100 are read"),
    ("h" + "^h" * 5_000, "nested more than 100 levels"),
    ("h+" * 50_000 + "h", "at most 20000 are read"),
    (r"\lambda+" * 12_500 + "h", "at most 20000 are read"),
    ("1" * 100_000, "at most 20000 are read"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE, ids=lambda x: str(x)[:24])
def test_hostile_inputs_fail_fast_with_the_limit_named(text, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        verify(text, SGD_RESULT)
    assert time.perf_counter() - start < 1.0
    assert not isinstance(info.value.__cause__, RecursionError)
    assert len(str(info.value)) < 1000  # the input is not echoed in full


def test_nesting_up_to_the_limit_is_read():
    deep = "(" * 98 + "λ c/(h(2-λh))" + ")" * 98  # 100 levels with the formula's own
    assert verify(deep, SGD_RESULT).equal
    assert verify(
        r"\left(" * 60 + r"\frac{\lambda c}{h(2-\lambda h)}" + r"\right)" * 60, SGD_RESULT
    )


def test_the_timeout_covers_parsing():
    # reading this formula computes the determinant of a 9×9 matrix of polynomials, which takes
    # far longer than the timeout: the reading itself is interrupted
    rows = ", ".join(
        "[" + ", ".join(f"(h + {i}c + {j}λ)^{i + j + 1}" for j in range(9)) + "]" for i in range(9)
    )
    start = time.perf_counter()
    with pytest.raises(
        ValueError, match=r"reading the hand formula took longer than timeout=0\.3 s"
    ):
        verify(f"det(Matrix([{rows}])) + λ c/(h(2-λh))", SGD_RESULT, timeout=0.3)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo hacked')",
        "__import__",
        "h.__class__",
        "h.__class__.__mro__",
        "().__class__.__bases__[0].__subclasses__()",
        "import os",
        "exec('1')",
        "eval('h')",
        "getattr(h, 'real')",
        "lambda: h",
        "open('/etc/passwd')",
        "h; import os",
        "h___class__",
        r"\input{/etc/passwd}",
        r"\def\x{h}\x",
        r"\mathrm{__import__}",
        r"\operatorname{os.system}",
        r"\begin{verbatim}h\end{verbatim}",
    ],
)
def test_malicious_strings_are_refused_by_the_safe_parser(text):
    with pytest.raises(ValueError, match="could not parse hand formula"):
        parse_formula(text)
    with pytest.raises(ValueError):
        verify(text, SGD_RESULT)


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        (r"\frac12", sp.Rational(1, 2)),
        (r"\frac{12}{5}", sp.Rational(12, 5)),
        (r"{x}^23", 3 * sp.Symbol("x") ** 2),  # LaTeX: one character after ^ (x^23 is plain)
        (r"\Bigl[x\Bigr]^{2}", sp.Symbol("x") ** 2),
        (r"\bigl(x + 1\bigr)\big(x\big)", (sp.Symbol("x") + 1) * sp.Symbol("x")),
        (r"\left\{x\right\}^{2}", sp.Symbol("x") ** 2),
        (r"\sqrt[3]{8}", sp.Integer(2)),
        (r"\log_{2}(8)", sp.Integer(3)),
    ],
)
def test_latex_details_read_as_typeset(text, meant):
    assert sp.simplify(parse_formula(text) - meant) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"a^{b}^{c}", "double superscript"),
        (r"\sin^{-1}(x)", "ambiguous"),
        (r"\frac{1}{\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}}", "cannot divide by a matrix"),
        (r"\begin{pmatrix} 1 & 0 \\ 0 \end{pmatrix}", "different lengths"),
        (r"\begin{cases} 1 \end{cases}", "environment"),
        (r"\Sigma = a = b", "more than one '='"),
    ],
)
def test_ambiguous_latex_is_refused_not_guessed(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_formula(text)


def test_every_library_name_alias_and_spelling_reads_as_its_symbol():
    """The names a hand formula may use come from the one registry in symsgd.symbols."""
    from symsgd.symbols import REGISTRY

    for entry in REGISTRY:
        for name in (entry.name, entry.alias, *entry.spellings):
            assert parse_formula(name) == entry.symbol, (name, entry.alias)
            # the same spellings pick the result's own symbol in context
            assert parse_formula(f"2*{name}", symbols=[entry.symbol, h]) == 2 * entry.symbol


def test_mpmath_lambdify_and_verify_evaluate_alike():
    """lambdify(backend="mpmath") uses the evaluator verify compares with: it agrees with the
    numpy backend, and with exact rational arithmetic to the working precision."""
    import mpmath

    result = ss.stationary(ss.HeavyBall(lr, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    point = {"lr": 0.375, "momentum": 0.25, "h": 1.5, "c": 0.75}  # exact in binary
    fast = float(result.lambdify()(**point))
    exact = result.cov.subs({lr: sp.Rational(3, 8), mu: sp.Rational(1, 4), h: sp.Rational(3, 2)})
    exact = exact.subs(c, sp.Rational(3, 4))
    assert exact.is_Rational
    with mpmath.workdps(40):
        precise = result.lambdify(backend="mpmath")(**point)
        assert abs(precise - mpmath.mpf(exact.p) / exact.q) < mpmath.mpf(10) ** -35
    assert abs(float(precise) - fast) <= 1e-12 * abs(fast)
