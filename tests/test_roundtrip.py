r"""Round trip: ``verify(result.latex(...), result)`` is ``equal`` for all that ``latex`` prints.

Every catalogue case, every readout (``what=``), both layouts (``env=None``/``"align"``) and both
notations (default, ``lr=r"\eta"``/``batch="B"``); explicit-matrix results in the
``\frac{g}{D}\begin{pmatrix}…`` + "where D = …" layout; eigen-mode results with traces over the
modes (``\operatorname{Tr}``); the structured d = 4 form (``\Bigl[…\Bigr]`` with D and the
invariants e_k defined after "where"); and the ``\big``/``\Big``/``\bigl``/``\left`` spellings of
the delimiters.  A round trip that passes only because both sides were read alike is excluded by
the negative controls: a perturbed formula in the same layout must come out NOT equal.
"""

from __future__ import annotations

import re
import warnings

import pytest
import sympy as sp

import symsgd as ss
from symsgd import verify
from symsgd.catalogue import CATALOGUE
from symsgd.landscapes import symmetric_matrix

READOUTS = ("cov", "velocity_cov", "cross_cov", "noise_cov", "loss", "test_loss")
ETA_B = {"lr": r"\eta", "batch": "B"}
#: (env, notation) pairs: both layouts, and both notations in the align layout
LAYOUTS = ((None, {}), ("align", {}), ("align", ETA_B), (None, ETA_B))
a = sp.Symbol("a", positive=True)


def _derive(make):
    with warnings.catch_warnings():  # label_noise= is deprecated (issue 9 §3), same value
        warnings.simplefilter("ignore", DeprecationWarning)
        return make()


EXTRA = {
    # explicit 3×3 numbers: \frac{\lambda}{D}\begin{pmatrix}…\end{pmatrix}, where D = …
    "explicit-3x3": lambda: ss.stationary(
        ss.SGD(ss.lr),
        ss.Quadratic(sp.Matrix([[2, 1, 0], [1, 3, 1], [0, 1, 4]])),
        ss.AdditiveNoise(sp.eye(3)),
    ),
    "explicit-minibatch-2x2": lambda: ss.stationary(
        ss.SGD(ss.lr),
        ss.LinearRegression(sp.Matrix([[2, 1], [1, 3]]), label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
    ),
    # eigen-mode results whose modes couple through Tr[…]
    "trace-sgd": lambda: ss.stationary(
        ss.SGD(ss.lr),
        ss.LinearRegression.commuting(a, label_variance=ss.label_noise**2),
        ss.MinibatchNoise(ss.batch_size),
    ),
    "trace-heavy-ball": lambda: ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression.commuting(a, label_variance=1),
        ss.MinibatchNoise(ss.batch_size),
    ),
}
CASES = {case.name: case.derive for case in CATALOGUE} | EXTRA
#: every readout × layout × notation (trace-heavy-ball: its cov in the delimiter test below)
ALL_READOUTS = [name for name in CASES if name != "trace-heavy-ball"]


@pytest.fixture(scope="module")
def results():
    return {name: _derive(make) for name, make in CASES.items()}


def _readouts(result) -> list[str]:
    return [w for w in READOUTS if getattr(result, w, None) is not None]


@pytest.mark.parametrize("name", ALL_READOUTS)
def test_every_readout_layout_and_notation_round_trips(results, name):
    result = results[name]
    checked = 0
    for what in _readouts(result):
        for env, notation in LAYOUTS[:3] if what != "cov" else LAYOUTS:
            text = result.latex(what=what, env=env, **notation)
            # with env the left-hand side (\operatorname{Var}[v] = …) says which readout it
            # is; without, what= says it
            verdict = verify(text, result, what=None if env else what)
            assert verdict.equal, (what, env, notation, text, str(verdict))
            assert verdict.method == "exact", (what, env, text, str(verdict))
            checked += 1
    assert checked >= 4


def test_catalogue_is_covered_and_layouts_are_the_ones_named():
    """The cases above do print the layouts this file claims to read."""
    catalogue = {case.name for case in CATALOGUE}
    assert catalogue <= set(CASES)
    explicit = _derive(EXTRA["explicit-3x3"]).latex(env="align")
    assert r"\begin{pmatrix}" in explicit and r"\text{where } D &=" in explicit
    assert re.search(r"\\frac\{[^{}]*\}\{[^{}]*D\}", _derive(EXTRA["explicit-3x3"]).latex())
    assert r"\operatorname{Tr}" in _derive(EXTRA["trace-sgd"]).latex()


@pytest.mark.parametrize("name", ["explicit-3x3", "trace-sgd", "heavy-ball"])
def test_a_perturbed_formula_in_the_same_layout_is_not_equal(results, name):
    result = results[name]
    text = result.latex(env="align")
    # change one coefficient: the first "2" that stands alone as a number
    wrong = re.sub(r"(?<![\w{^])2(?![\w}])", "3", text, count=1)
    assert wrong != text
    verdict = verify(wrong, result)
    assert not verdict.equal, (wrong, str(verdict))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (r"\bigl", r"\bigr"),
        (r"\Bigl", r"\Bigr"),
        (r"\big", r"\big"),
        (r"\Big", r"\Big"),
        (r"\biggl", r"\biggr"),
        ("", ""),  # bare delimiters
    ],
)
@pytest.mark.parametrize("name", ["heavy-ball", "trace-heavy-ball", "explicit-minibatch-2x2"])
def test_delimiter_sizes_are_accepted(results, name, left, right):
    result = results[name]
    text = result.latex()
    assert r"\left" in text
    resized = text.replace(r"\left", left).replace(r"\right", right)
    assert verify(resized, result).equal, resized


def test_plain_readouts_against_bare_expressions_with_modes(results):
    """Without the result object: the readout expression itself plus modes=."""
    result = results["sgd"]
    text = result.latex(what="velocity_cov")
    verdict = verify(text, result.velocity_cov, modes=result.mode_names())
    assert verdict.equal and verdict.method == "exact"
    assert not verify(text, result.cov, modes=result.mode_names()).equal


def test_readout_named_on_the_left_overrides_the_default_and_what_overrides_it(results):
    result = results["sgd"]
    velocity = result.latex(what="velocity_cov", env="align")
    assert verify(velocity, result).equal  # the lhs Var[v] picks velocity_cov
    assert not verify(velocity, result, what="cov").equal  # what= wins
    with pytest.raises(ValueError, match="what must be one of"):
        verify(velocity, result, what="variance")
    with pytest.raises(ValueError, match="has no test_loss"):
        verify("1", result, what="test_loss")


def test_structured_d4_round_trips():
    """The invariant-structured form: \\frac{λ}{D}\\Bigl[… H^a C H^b …\\Bigr] with D and the
    invariants e_k of H defined after "where".  Decided numerically (the expanded entries have
    ~10⁶ terms); off-diagonal entries are sampled small so random points are inside the
    conditions (positive-definite H) quickly."""
    result = ss.stationary(
        ss.SGD(ss.lr), ss.Quadratic.symbolic(4), ss.AdditiveNoise(symmetric_matrix(4, "c"))
    )
    assert result.method == "invariant-structured"
    text = result.latex(env="align", lr=r"\eta")
    assert r"\Bigl[" in text and r"\det(x I - H)" in text
    small = sp.Rational(1, 10)
    ranges = {s: (-small, small) for s in result.cov.free_symbols if not s.is_positive}
    verdict = verify(text, result, assumptions=ranges, points=2, timeout=20)
    assert verdict.equal and verdict.method == "numeric", str(verdict)


def test_structured_layout_with_its_own_K_is_read():
    """A structured result whose K is not H prints ``K = \\begin{pmatrix}…`` after "where";
    read at d = 2 through the same layout (symsgd.latex.structured_latex) against the exact
    solution of the Stein equation."""
    from symsgd.cayley import solve_stein
    from symsgd.latex import structured_latex

    K = symmetric_matrix(2, "k")
    F = sp.Matrix([[1, 0], [0, 2]])
    X, _den, form = solve_stein(sp.eye(2) - ss.lr * K, ss.lr**2 * F, form="structured")
    body, where = structured_latex(form, "K", "F")
    text = rf"\Sigma = {body}, \quad \text{{where }} {where}"
    assert r"K = \left[\begin{matrix}" in text and r"F = \left[\begin{matrix}" in text
    verdict = verify(text, X)
    assert verdict.equal, (text, str(verdict))
    wrong = text.replace(r"F = \left[\begin{matrix}1", r"F = \left[\begin{matrix}2", 1)
    assert wrong != text and not verify(wrong, X).equal
