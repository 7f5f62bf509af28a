"""Tests of symsgd.latex: every printed formula must read back (symsgd.verify) as the same
function it was printed from, and look the way a paper would write it."""

from __future__ import annotations

import re
import time

import pytest
import sympy as sp

import symsgd as ss
from symsgd import parse_formula, verify
from symsgd.catalogue import CATALOGUE, case, h
from symsgd.landscapes import symmetric_matrix
from symsgd.latex import matrix_function_latex, matrix_latex, render, scalar_latex
from symsgd.symbols import batch_size, lr, momentum

c = sp.Symbol("c", positive=True)
MODE_CASES = [case for case in CATALOGUE if case.landscape.eigenmode]


def scalar_variant(case):
    """The catalogue problem on a scalar landscape (``Quadratic(h)`` for eigen-mode cases)."""
    landscape = ss.Quadratic(h) if case.landscape.eigenmode else case.landscape
    return ss.stationary(case.optimizer, landscape, case.noise)


@pytest.fixture(scope="module")
def scalar_results():
    return {case.name: scalar_variant(case) for case in CATALOGUE}


@pytest.fixture(scope="module")
def mode_results():
    return {case.name: case.derive() for case in MODE_CASES}


@pytest.fixture(scope="module")
def symbolic_2x2():
    H = ss.Quadratic.symbolic(2)
    return ss.stationary(ss.SGD(lr), H, ss.AdditiveNoise(symmetric_matrix(2, "c")))


def modes_to_scalars(tex: str) -> str:
    r"""Read a matrix-function formula of commuting matrices as the same function of one
    eigenvalue each: ``I`` -> 1, ``H`` -> h, ``C^{1/2}`` -> \sqrt{c}, ``[..]^{-1}`` -> (..)^{-1}."""
    tex = tex.replace(r"C^{1/2}", r"\sqrt{c}").replace(r"\left[", r"\left(")
    tex = tex.replace(r"\right]", r"\right)")
    tex = re.sub(r"(?<![\\A-Za-z])I(?![A-Za-z])", r"\\left(1\\right)", tex)
    for name in "HCP":
        tex = re.sub(rf"(?<![\\A-Za-z]){name}(?![A-Za-z])", name.lower(), tex)
    return tex


def standalone(symbol: str, tex: str) -> bool:
    """Whether ``symbol`` occurs in ``tex`` as a name of its own (not inside ``\\Sigma`` etc.)."""
    return re.search(rf"(?<![\\A-Za-z]){re.escape(symbol)}(?![A-Za-z])", tex) is not None


# --------------------------------------------------------------------------------------------
# round trips over the catalogue
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.name)
@pytest.mark.parametrize("what", ["cov", "loss"])
def test_scalar_latex_round_trips(case, what, scalar_results):
    result = scalar_results[case.name]
    tex = result.latex(what=what)
    assert tex.startswith(r"\frac{"), tex
    target = result if what == "cov" else getattr(result, what)
    verdict = verify(tex, target)
    assert verdict, f"{tex}\n{verdict}"


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.name)
def test_notation_options_round_trip(case, scalar_results):
    result = scalar_results[case.name]
    tex = result.latex(lr=r"\eta", batch="B")
    assert r"\eta" in tex and r"\lambda" not in tex
    assert not standalone("S", tex)
    if batch_size in result.cov.free_symbols:
        assert standalone("B", tex)
    assert verify(tex, result), tex
    # the notation also accepts bare Greek names and unicode letters
    assert result.latex(lr="eta", batch="B") == result.latex(lr="η", batch="B") == tex


@pytest.mark.parametrize("case", MODE_CASES, ids=lambda case: case.name)
def test_sympy_latex_of_mode_results_round_trips(case, mode_results):
    result = mode_results[case.name]
    assert verify(sp.latex(result.cov), result)


@pytest.mark.parametrize("case", MODE_CASES, ids=lambda case: case.name)
def test_matrix_function_form_is_the_same_function(case, mode_results):
    result = mode_results[case.name]
    tex = result.latex()
    assert not any(standalone(s, tex) for s in ("h", "c", "p")), tex  # matrices only
    assert standalone("H", tex) and tex.endswith("C"), tex
    assert verify(modes_to_scalars(tex), result), tex
    assert verify(modes_to_scalars(result.latex(lr="eta")), result)


def test_matrix_function_forms_of_the_classics(mode_results):
    sgd = r"\lambda {\left[H \left(2 I - \lambda H\right)\right]}^{-1} C"
    assert mode_results["sgd"].latex() == sgd
    assert mode_results["heavy-ball"].latex() == (
        r"\frac{\lambda \left(1 + \mu\right)}{1 - \mu} "
        r"{\left[H \left(2 \left(1 + \mu\right) I - \lambda H\right)\right]}^{-1} C"
    )
    assert mode_results["damped-newton"].latex() == r"\frac{\lambda}{2 - \lambda} H^{-2} C"
    assert mode_results["preconditioned"].latex() == (
        r"\lambda {\left[H \left(2 I - \lambda H P\right)\right]}^{-1} P C"
    )
    assert mode_results["sgd-weight-decay"].latex() == (
        r"\lambda {\left[\left(H + \gamma I\right) \left(2 I - \lambda \left(H + \gamma I\right)"
        r"\right)\right]}^{-1} C"
    )
    assert r"C^{1/2} + \epsilon I" in mode_results["adam"].latex()


@pytest.mark.parametrize("name", ["sgd-minibatch", "heavy-ball-minibatch"])
def test_mode_traces_print_as_traces_of_matrix_functions(name):
    """Minibatch noise on commuting regression couples the modes through Tr f(A); with one
    mode (Tr f(A) = f(a)) the printed formula must be the scalar catalogue result."""
    scalar = case(name)
    a = sp.Symbol("a", positive=True)
    landscape = ss.LinearRegression.commuting(a, label_variance=ss.label_noise**2)
    result = ss.stationary(scalar.optimizer, landscape, scalar.noise)
    tex = result.latex(batch="B")
    assert r"\operatorname{Tr}\left[{\left(2 B" in tex and tex.count(r"\right]") == 1
    one_mode = tex.replace(r"\operatorname{Tr}\left[", r"\left(").replace(r"\right]", r"\right)")
    one_mode = re.sub(r"(?<![\\A-Za-z])I(?![A-Za-z])", r"\\left(1\\right)", one_mode)
    one_mode = re.sub(r"(?<![\\A-Za-z])A(?![A-Za-z])", "a", one_mode)
    assert verify(one_mode, scalar.derive()), one_mode


# --------------------------------------------------------------------------------------------
# layout of scalar results
# --------------------------------------------------------------------------------------------


def test_scalar_layout_numerator_over_factored_denominator(scalar_results):
    assert scalar_results["sgd"].latex() == r"\frac{\lambda c}{h \left(2 - \lambda h\right)}"
    assert scalar_results["heavy-ball"].latex() == (
        r"\frac{\lambda c \left(1 + \mu\right)}"
        r"{h \left(1 - \mu\right) \left(2 \left(1 + \mu\right) - \lambda h\right)}"
    )
    assert scalar_results["sgd-minibatch"].latex() == (
        r"\frac{\lambda \sigma^{2}}{2 S - \lambda a \left(2 + S\right)}"
    )


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.name)
def test_factors_are_oriented_positive(case, scalar_results):
    """No factor starts with a minus sign, and no sum opens with a negative term."""
    for what in ("cov", "loss"):
        tex = scalar_results[case.name].latex(what=what)
        assert r"\left(- " not in tex and "{- " not in tex, tex
        assert not tex.startswith("-"), tex


def test_sums_are_polynomials_in_the_learning_rate():
    a = sp.Symbol("a", positive=True)
    expr = lr / (4 - 2 * lr * (a + h) + lr**2 * a * h)
    assert scalar_latex(expr) == (
        r"\frac{\lambda}{\left(2 - \lambda a\right) \left(2 - \lambda h\right)}"
    )
    irreducible = lr / (4 - 2 * lr * (a + h) + lr**2 * (a * h - 1))
    tex = scalar_latex(irreducible)
    assert (
        tex
        == r"\frac{\lambda}{4 - 2 \lambda \left(a + h\right) + \lambda^{2} \left(a h - 1\right)}"
    )
    assert verify(tex, irreducible)


def test_negative_and_constant_results():
    assert scalar_latex(-lr * c / (h * (2 - lr * h))).startswith(r"- \frac{\lambda c}")
    assert scalar_latex(sp.Rational(3, 4)) == r"\frac{3}{4}"
    assert scalar_latex(sp.Integer(0)) == "0"
    assert scalar_latex(lr * momentum) == r"\lambda \mu"
    assert verify(scalar_latex(-lr * c / (h * (2 - lr * h))), -lr * c / (h * (2 - lr * h)))


def test_non_rational_results_fall_back_to_sympy():
    expr = sp.exp(-lr * h) * c
    assert scalar_latex(expr) == sp.latex(expr)


def test_square_roots_print_as_roots():
    expr = lr / (sp.sqrt(c) + momentum)
    tex = scalar_latex(expr)
    assert r"\sqrt{c}" in tex
    assert verify(tex, expr)
    assert matrix_function_latex(lr * c / (h * (sp.sqrt(c) + 1)), {h: "H", c: "C"}) == (
        r"\lambda {\left[H \left(I + C^{1/2}\right)\right]}^{-1} C"
    )


# --------------------------------------------------------------------------------------------
# explicit matrices
# --------------------------------------------------------------------------------------------


def test_symbolic_matrix_prints_with_a_where_block(symbolic_2x2):
    result = symbolic_2x2
    start = time.perf_counter()
    tex = result.latex()
    assert time.perf_counter() - start < 5
    m = re.fullmatch(
        r"\\frac\{(.+?)\}\{D\} (\\begin\{pmatrix\}.*\\end\{pmatrix\}), \\quad "
        r"\\text\{where \} D = (.*)",
        tex,
    )
    assert m, tex[:200]
    symbols = result.cov.free_symbols
    g = parse_formula(m.group(1), symbols=symbols)
    M = parse_formula(m.group(2), symbols=symbols)
    D = parse_formula(m.group(3), symbols=symbols)
    assert M.shape == (2, 2)
    assert verify(g * M / D, result)
    # the common denominator is the product of the stability factors, det H first
    assert m.group(3).startswith(r"\left(h_{11} h_{22} - h_{12}^{2}\right)")


def test_align_environment(symbolic_2x2, mode_results):
    tex = mode_results["sgd"].latex(env="align")
    assert tex == (
        "\\begin{align}\n"
        r"\Sigma &= \lambda {\left[H \left(2 I - \lambda H\right)\right]}^{-1} C"
        "\n\\end{align}"
    )
    lines = symbolic_2x2.latex(env="align").split("\n")
    assert lines[0] == r"\begin{align}" and lines[-1] == r"\end{align}"
    assert lines[1].startswith(r"\Sigma &= \frac{\lambda}{D} \begin{pmatrix}")
    assert lines[1].endswith(r"\end{pmatrix} \\")
    assert lines[2].startswith(r"\text{where } D &= \left(h_{11} h_{22}")
    loss = mode_results["sgd"].latex(env="align*", what="loss")
    assert loss.startswith("\\begin{align*}\n\\mathbb{E}[L] &= \\frac{")
    assert loss.endswith("\\end{align*}")
    eq = symbolic_2x2.latex(env="equation")
    assert eq.startswith("\\begin{equation}\n\\Sigma = ") and r"\text{where } D = " in eq


def test_bad_environment_is_rejected(mode_results):
    with pytest.raises(ValueError, match="env must be"):
        mode_results["sgd"].latex(env="eqnarray")


def test_diagonal_results_print_entrywise_and_round_trip():
    cs = sp.symbols("c_1:3", positive=True)
    result = ss.stationary(ss.SGD(lr), ss.Quadratic.diagonal(2), ss.AdditiveNoise(sp.diag(*cs)))
    tex = result.latex()
    assert tex.startswith(r"\begin{pmatrix} \frac{\lambda c_{1}}{h_{1} \left(2 - \lambda h_{1}")
    assert "where" not in tex
    assert verify(tex, result)


def test_shared_denominator_is_pulled_out():
    x, y = sp.symbols("x y", positive=True)
    body, where = matrix_latex(sp.Matrix([[x / (1 + x * y), 0], [0, y / (1 + x * y)]]))
    assert body == r"\frac{1}{D} \begin{pmatrix} x & 0 \\ 0 & y \end{pmatrix}"
    assert where == "D = 1 + x y"
    body, where = matrix_latex(sp.Matrix([[x, 1], [1, y]]))
    assert where is None and verify(body, sp.Matrix([[x, 1], [1, y]]))


def test_render_unwraps_one_by_one_matrices():
    assert render("x", sp.Matrix([[lr * c]])) == r"\lambda c"


def test_greek_notation_comes_from_the_symbol_registry():
    """latex's notation options and parsing read the same Greek tables (symsgd.symbols)."""
    from symsgd.latex import command
    from symsgd.symbols import GREEK_CHARS, LATEX_GREEK

    for char, name in GREEK_CHARS.items():
        expected = "\\" + name if name in LATEX_GREEK else char  # there is no \omicron
        assert command(char) == expected, char
        if name in LATEX_GREEK:
            assert command(name) == "\\" + name
            # what latex prints, parsing reads back as the same letter
            assert parse_formula(command(name)) == parse_formula(char)
    assert command("B") == "B" and command(r"\tilde{\eta}") == r"\tilde{\eta}"
