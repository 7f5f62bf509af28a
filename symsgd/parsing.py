r"""Read a hand formula — a plain string, LaTeX or a sympy object — into sympy, without ``eval``.

:func:`parse_formula` turns what you typed into a sympy expression or matrix; :func:`verify
<symsgd.verify>` uses the same reader against the symbols of a derived result.

Plain strings and LaTeX are tokenised separately and read by one small recursive-descent grammar:
numbers, names, ``+ - * / ^ **``, brackets, implicit multiplication and a short whitelist of
functions; in LaTeX also ``\frac``, ``\sqrt[n]{}``, ``\cdot``, ``\left``/``\right`` and
``\big``/``\Big``/``\bigl``/``\Bigr``… (sizes are ignored), ``\operatorname{..}``/
``\mathrm{..}``/``\text{..}`` names, ``\begin{pmatrix}`` matrices, ``X^{\top}`` and the
``align``/``equation`` environments.  A LaTeX document as :meth:`symsgd.Stationary.latex` prints
it is read whole: ``lhs = body`` (the body is read), and "where D = …" definitions (also
``\det(x I - H) = x^n - e_1 x^{n-1} + …``, which defines the invariants ``e_k`` of H, and
``K = \begin{pmatrix}…``) are substituted into the body (see :func:`latex_document`).
Products keep their order, so matrix formulas (``H C H^{\top}``) are read as matrix products.

Names are matched to known symbols by name, after normalising Greek letters (``λ``, ``\lambda``,
``lambda``) and subscripts (``h_{11}``, ``h_11``, ``h11``), and by alias: ``λ``/``η``/``lr`` is
the learning rate, ``μ``/``β``/``momentum`` the momentum, ``S``/``B`` the batch size, ``N`` the
data-set size, ``γ`` the weight decay, ``σ`` the label noise.  Against an eigen-mode result
(``Quadratic.commuting``) a formula may also use the result's matrix names —
``λ[H(2I - λH)]^{-1}C``, as :meth:`~symsgd.Stationary.latex` prints it — which are read mode by
mode (``H`` → h, ``C`` → c, ``I`` → 1; ``\operatorname{Tr}[f(A)]`` → the trace over the modes;
see :func:`mode_matrices`).

**Euler's number** is ``\mathrm{e}`` (LaTeX), ``e^{…}``/``e^x``/``e**x`` (the exponential, in
LaTeX and plain strings) or ``exp(…)``; anywhere else ``e`` is a plain symbol (``2e`` is 2·e),
and a plain decimal exponent stays a number (``1e3`` = 1000).  A symbol named ``e`` in the
derived result takes precedence: ``e^{2}`` is then its square.

**Limits.**  Every input is read in time linear in its length or refused with a ValueError that
names the limit: at most :data:`MAX_LENGTH` characters, brackets/signs/powers nested at most
:data:`MAX_DEPTH` deep, powers of symbols with exponents up to :data:`MAX_EXPONENT` and powers of
numbers up to :data:`MAX_BITS` bits (``10^(10^10)`` and ``2^2^2^2^2^2^2`` are refused at once).

    >>> parse_formula(r"\frac{\eta c}{h(2-\eta h)}") == parse_formula("lr c/(h(2 - lr h))")
    True
    >>> parse_formula(r"e^{-x} + \mathrm{e} + e")
    e + E + exp(-x)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sympy as sp

from ._grammar import (
    MAX_BITS,
    MAX_DEPTH,
    MAX_EXPONENT,
    MAX_LENGTH,
    ParseError,
    check_limits,
    matrix_of,
    read_plain,
)
from ._latex_reader import latex_document, read_latex
from ._names import Names, library_alias, mode_matrices
from ._util import substitute, symbols_in

__all__ = [
    "MAX_BITS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "Names",
    "latex_document",
    "library_alias",
    "mode_matrices",
    "parse_formula",
    "parse_with_names",
]

_EXAMPLE = "write it as e.g. 'lr*c/(h*(2 - lr*h))' or LaTeX '\\frac{\\lambda c}{h(2-\\lambda h)}'"


def _known_symbols(symbols: Any) -> list[sp.Symbol] | None:
    if symbols is None:
        return None
    if isinstance(symbols, (sp.Basic, sp.MatrixBase)):
        return sorted(symbols.free_symbols, key=sp.default_sort_key)
    if isinstance(symbols, Mapping):
        symbols = symbols.values()
    if isinstance(symbols, (str, bytes)) or not isinstance(symbols, Iterable):
        raise TypeError(
            "symbols must be an iterable of sympy Symbols (e.g. sp.symbols('h c')), a sympy "
            f"expression whose free symbols are used, or None; got {symbols!r} "
            f"({type(symbols).__name__})"
        )
    out = []
    for s in symbols:
        if not isinstance(s, sp.Symbol):
            raise TypeError(f"symbols must be sympy Symbols; got {s!r} ({type(s).__name__})")
        out.append(s)
    return out


def _is_latex(text: str) -> bool:
    return any(ch in text for ch in "\\{}$")


def parse_with_names(hand: Any, names: Names, what: str) -> sp.Expr | sp.ImmutableMatrix:
    """Read ``hand`` (a string, a sympy object, or rows of them) with ``names`` resolving its
    names; ``what`` is how error messages call the owner of the known symbols.

    >>> import sympy as sp
    >>> from symsgd.symbols import lr
    >>> h = sp.Symbol("h", positive=True)
    >>> names = Names([h, lr], mode_matrices({h: "H"}))
    >>> parse_with_names("lr/(H(2I - lr H))", names, "the result"), sorted(names.used)
    (lambda/(h*(-h*lambda + 2)), ['H', 'I'])
    """
    if isinstance(hand, str):
        text = hand
        shown = text if len(text) <= 200 else text[:200] + f"… ({len(text)} characters)"
        try:
            check_limits(text)
            if _is_latex(text):
                value, unknown = read_latex(text, names)
            else:
                value, unknown = read_plain(text, names)
        except ParseError as err:
            raise ValueError(f"could not parse hand formula {shown!r}: {err}; {_EXAMPLE}") from None
        except (TypeError, AttributeError, sp.SympifyError, sp.ShapeError) as err:
            raise ValueError(
                f"could not parse hand formula {shown!r}: {type(err).__name__}: {err}; {_EXAMPLE}"
            ) from None
        except (ValueError, ZeroDivisionError, NotImplementedError) as err:
            raise ValueError(f"could not parse hand formula {shown!r}: {err}; {_EXAMPLE}") from None
        except RecursionError:  # pragma: no cover - the depth limit comes first
            raise ValueError(
                f"could not parse hand formula {shown!r}: nested too deeply; {_EXAMPLE}"
            ) from None
        if unknown:
            raise names.unknown_error(unknown, what)
        if isinstance(value, list):
            value = matrix_of(value)
    elif isinstance(hand, (list, tuple)):  # rows of entries, each read like a formula
        rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in hand]
        return sp.ImmutableMatrix([[parse_with_names(e, names, what) for e in row] for row in rows])
    else:
        try:  # strict: never fall back to parsing str(hand)
            value = sp.sympify(hand, strict=True)
        except sp.SympifyError as err:
            raise TypeError(
                f"hand must be a string, a sympy expression or a Matrix; got {type(hand).__name__}"
            ) from err
        mapping, unknown = {}, []
        for s in symbols_in(value):
            found = names.resolve(s.name) if isinstance(s, sp.Symbol) else s
            if found is None:
                if names.context:
                    unknown.append(s.name)
                    continue
                found = s
            mapping[s] = found
        if unknown:
            raise names.unknown_error(unknown, what)
        value = substitute(value, mapping)
    if isinstance(value, sp.MatrixBase):
        return sp.ImmutableMatrix(value)
    if not isinstance(value, sp.Expr):
        raise ValueError(f"could not parse hand formula {hand!r}: it is not an expression")
    return value


def parse_formula(text: Any, symbols: Any = None) -> sp.Expr | sp.ImmutableMatrix:
    r"""Read a formula — a plain string, LaTeX, or a sympy object — without running any code.

    A string containing ``\``, ``{``, ``}`` or ``$`` is LaTeX (read by this module's own
    parser: no extra dependency); any other string is plain: numbers, names, ``+ - * / ^ **``,
    parentheses, implicit multiplication (``2λh``, ``h(2-λh)``; ``λh^2`` is λ·h²), ``√``, ``²``,
    ``[[a, b], [c, d]]`` for matrices and the functions sqrt, exp, log, ln, abs, sin, cos, tan,
    (a)sinh…, min, max, tr, det, Matrix.  ``lhs = rhs`` reads as ``rhs``.

    ``symbols`` (an iterable of Symbols, or a sympy object whose free symbols are used) are the
    symbols names should resolve to: a name matches the symbol with the same spelling up to Greek
    letters and subscript braces (``λ`` = ``\lambda`` = ``lambda``, ``h_{11}`` = ``h_11`` =
    ``h11``), else the one symbol of its alias group (λ, η, lr: learning rate; μ, β, momentum;
    S, B, batch_size; N, dataset_size; γ, weight_decay; σ, label_noise); runs of letters split
    into known names (``λh`` = λ·h); ``pi`` is π, and Euler's number is ``\mathrm{e}``,
    ``e^{…}`` or ``exp(…)`` (a lone ``e`` is a symbol); any other name is an error.
    Without ``symbols``, aliases give the library symbols of :mod:`symsgd.symbols` and other
    names plain symbols.

    >>> import sympy as sp
    >>> parse_formula("lr*c/(h*(2 - lr*h))")
    c*lambda/(h*(-h*lambda + 2))
    >>> h, c = sp.symbols("h c", positive=True)
    >>> e = parse_formula(r"\frac{\eta c}{h(2-\eta h)}", symbols=[h, c, sp.Symbol("lambda")])
    >>> e.free_symbols == {h, c, sp.Symbol("lambda")}
    True
    >>> parse_formula("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: could not parse hand formula "__import__('os')": names starting with '_' ...
    """
    return parse_with_names(text, Names(_known_symbols(symbols)), "the list of symbols")
