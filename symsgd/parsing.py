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

import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sympy as sp

from symsgd import symbols as _lib
from symsgd._util import substitute, symbols_in

__all__ = ["Names", "library_alias", "mode_matrices", "parse_formula", "parse_with_names"]

_EXAMPLE = "write it as e.g. 'lr*c/(h*(2 - lr*h))' or LaTeX '\\frac{\\lambda c}{h(2-\\lambda h)}'"

# --------------------------------------------------------------------------------------------
# names: Greek letters, subscripts, aliases
# --------------------------------------------------------------------------------------------

_GREEK_NAMES = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega"
).split()
_GREEK_CHARS: dict[str, str] = dict(zip("αβγδεζηθικλμνξοπρστυφχψω", _GREEK_NAMES, strict=True))
_GREEK_CHARS.update(
    {"ϵ": "epsilon", "ϑ": "theta", "ϕ": "phi", "ϱ": "rho", "ς": "sigma", "µ": "mu"}  # µ: micro
)
_GREEK_CHARS.update(
    {
        ch: name.capitalize()
        for ch, name in zip(
            "ΓΔΘΛΞΠΣΥΦΨΩ",
            "gamma delta theta lambda xi pi sigma upsilon phi psi omega".split(),
            strict=True,
        )
    }
)
_GREEK_WORDS = (
    frozenset(_GREEK_NAMES)
    | {n.capitalize() for n in _GREEK_NAMES}
    | {"varepsilon", "vartheta", "varphi", "varrho", "varsigma"}
)

# alias groups on normalised names -> the library symbol they denote
_GROUPS: tuple[tuple[frozenset[str], sp.Symbol], ...] = (
    (frozenset({"lambda", "eta", "lr", "learningrate"}), _lib.lr),
    (frozenset({"mu", "beta", "momentum"}), _lib.momentum),
    (frozenset({"S", "B", "batchsize"}), _lib.batch_size),
    (frozenset({"N", "datasetsize"}), _lib.dataset_size),
    (frozenset({"gamma", "weightdecay"}), _lib.weight_decay),
    (frozenset({"sigma", "labelnoise"}), _lib.label_noise),
    (frozenset({"beta1"}), _lib.beta1),
    (frozenset({"beta2"}), _lib.beta2),
    (frozenset({"epsilon", "eps"}), _lib.eps),
)
_GROUP_OF: dict[str, int] = {name: i for i, (names, _) in enumerate(_GROUPS) for name in names}
#: named constants (``e`` is not one: Euler's number is ``\mathrm{e}``, ``e^{…}`` or ``exp``)
_CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi}


#: names that look like the matrices of an eigen-mode result (for a hint in error messages)
_MATRIX_LOOKING = frozenset({"H", "C", "I", "P", "A", "F"})
_NO_TRACES = (
    "reading traces over the modes (minibatch LinearRegression.commuting results) is not "
    "supported; compare result.on_modes([...]) on an explicit spectrum, or pass a sympy "
    "expression built from the result's own traces"
)


def _normalize(name: str) -> str:
    r"""Canonical spelling of a name: ``\lambda``, ``λ`` -> ``lambda``; ``h_{11}`` -> ``h11``."""
    s = "".join(_GREEK_CHARS.get(ch, ch) for ch in name.strip())
    s = re.sub(r"[\\{}_\s]", "", s)
    return re.sub(r"^var(epsilon|theta|phi|rho|sigma)", r"\1", s)


def library_alias(name: str) -> sp.Symbol | None:
    r"""The library symbol that ``name`` is an alias of (``λ``, ``\eta``, ``lr`` → the learning
    rate :data:`symsgd.symbols.lr`; see the module docstring), or ``None``.

    >>> library_alias("η"), library_alias("batch_size"), library_alias("h")
    (lambda, S, None)
    """
    group = _GROUP_OF.get(_normalize(name))
    return None if group is None else _GROUPS[group][1]


class Names:
    """Resolve names written in a formula to symbols.

    With ``known`` symbols (context mode) a name resolves to the known symbol with the same
    normalised name, else to the unique known symbol of its alias group, else to ``e``/``π``;
    anything else is unknown.  Without (free mode) aliases give the library symbols and other
    names become plain symbols.

    ``matrices`` (eigen-mode results only) maps matrix names to what they are on one mode:
    ``{"H": h, "C": c, "I": 1}``; a name spelled exactly like a known symbol stays that symbol.
    The matrix names a formula used are collected in :attr:`used`.
    """

    def __init__(
        self, known: Iterable[sp.Symbol] | None, matrices: Mapping[str, sp.Expr] | None = None
    ):
        self.context = known is not None
        self.known = sorted(set(known or ()), key=sp.default_sort_key)
        self.by_raw = {s.name: s for s in self.known}
        self.matrices = dict(matrices or {})
        self.used: set[str] = set()
        #: names that stand for given values in a formula (e.g. ``{"H": Hessian matrix}`` for
        #: an explicit result), before any symbol
        self.definitions: dict[str, Any] = {}
        #: appended to unknown-name errors that look like matrix names (set by
        #: :func:`symsgd.verify`)
        self.matrix_hint = ""
        self.by_norm: dict[str, list[sp.Symbol]] = {}
        for s in self.known:
            self.by_norm.setdefault(_normalize(s.name), []).append(s)

    def resolve(self, name: str, constants: bool = True) -> sp.Expr | None:
        if name in self.by_raw:
            return self.by_raw[name]
        if name in self.matrices:
            self.used.add(name)
            return self.matrices[name]
        n = _normalize(name)
        hits = self.by_norm.get(n, [])
        if len(hits) > 1:
            raise ValueError(
                f"the name {name!r} matches several symbols of the derived result "
                f"({', '.join(s.name for s in hits)}); pass a sympy expression built from them"
            )
        if hits:
            return hits[0]
        group = _GROUP_OF.get(n)
        if group is not None:
            if not self.context:
                return _GROUPS[group][1]
            hits = [s for s in self.known if _GROUP_OF.get(_normalize(s.name)) == group]
            if len(hits) == 1:
                return hits[0]
        if constants and n in _CONSTANTS:
            return _CONSTANTS[n]
        return None

    def split(self, token: str) -> list[sp.Expr] | None:
        """Split a run of letters into known names (fewest pieces), e.g. ``λh`` -> λ·h."""
        if len(token) > 64 or "_" in token:
            return None
        best: list[list[sp.Expr] | None] = [None] * (len(token) + 1)
        best[0] = []
        for end in range(1, len(token) + 1):
            for start in range(end):
                prev = best[start]
                if prev is None:
                    continue
                piece = self._piece(token[start:end])
                if piece is not None and (best[end] is None or len(prev) + 1 < len(best[end])):
                    best[end] = [*prev, piece]
        found = best[-1]
        return found if found is not None and len(found) > 1 else None

    def _piece(self, text: str) -> sp.Expr | None:
        found = self.resolve(text, constants=False)
        if found is not None or self.context:
            return found
        # free mode: Greek names, or one letter with an optional numeric subscript
        word = re.sub(r"\d+$", "", text)
        if _normalize(word) in _GREEK_WORDS or re.fullmatch(r"[^\W\d_]\d*", text):
            return sp.Symbol(_free_name(text))
        return None

    def unknown_error(self, names: Iterable[str], what: str) -> ValueError:
        listed = ", ".join(s.name for s in self.known) or "no symbols"
        names = sorted(set(names))
        shown = "{" + ", ".join(repr(n) for n in names) + "}"
        if self.matrices:
            listed += " (per mode: " + ", ".join(self.matrices) + ")"
        hint = ""
        if self.matrices and set(names) & {"Tr", "tr", "trace", "Trace", "det"}:
            hint = f"; a trace or determinant sums or multiplies over all modes: {_NO_TRACES}"
        if not self.matrices and set(names) & _MATRIX_LOOKING:
            hint = self.matrix_hint
        if "e" in names:
            hint += (
                "; a lone e is a plain symbol: write Euler's number as \\mathrm{e}, e^{…} or exp(…)"
            )
        return ValueError(
            f"hand formula uses symbols {shown} that {what} does not have: "
            f"{what} uses {listed}. Rename them (the learning rate may be written λ, η or lr, the "
            f"momentum μ, β or momentum, the batch size S or B), or compare against a result "
            f"that has them{hint}"
        )


def _free_name(name: str) -> str:
    """Spell Greek letters out so the symbol prints as the letter (``λ`` -> ``lambda``)."""
    return "".join(_GREEK_CHARS.get(ch, ch) for ch in name)


def mode_matrices(source: Any) -> dict[str, sp.Expr]:
    """``{matrix name: its eigenvalue on one mode}`` (with ``"I": 1``) of an eigen-mode result,
    or of a ``{eigenvalue symbol: matrix name}`` mapping; ``{}`` for anything else.

    >>> import sympy as sp
    >>> h, c = sp.symbols("h c", positive=True)
    >>> mode_matrices({h: "H", c: "C"})
    {'H': h, 'C': c, 'I': 1}
    """
    if isinstance(source, Mapping):
        given = dict(source)
    else:
        landscape = getattr(source, "landscape", None)
        method = getattr(source, "mode_names", None)
        if not getattr(landscape, "eigenmode", False) or not callable(method):
            return {}
        given = dict(method())
    out: dict[str, sp.Expr] = {}
    for symbol, name in given.items():
        if not isinstance(symbol, sp.Symbol) or not isinstance(name, str):
            raise TypeError(
                f"modes must map eigenvalue Symbols to matrix names, like {{h: 'H', c: 'C'}}; "
                f"got {symbol!r}: {name!r}"
            )
        if name in out and out[name] != symbol:
            raise ValueError(f"modes names two eigenvalues {name!r}: {out[name]} and {symbol}")
        out[name] = symbol
    if out and "I" not in out:
        out["I"] = sp.Integer(1)
    return out


# --------------------------------------------------------------------------------------------
# limits: every input is read in time linear in its length, or refused with a ValueError
# --------------------------------------------------------------------------------------------

#: longest formula read (characters)
MAX_LENGTH = 20_000
#: deepest nesting of brackets, signs and powers
MAX_DEPTH = 100
#: largest |integer exponent| of a power of a symbol or matrix (a symbolic power beyond it only
#: slows the comparison down) and of a decimal literal's exponent (``1e400``)
MAX_EXPONENT = 1000
#: largest number (in bits) a power of a number may produce (10^6000 is about 20 000 bits)
MAX_BITS = 20_000


class _ParseError(ValueError):
    pass


def _check_limits(text: str) -> None:
    """Length and nesting depth, checked in one pass before parsing."""
    if len(text) > MAX_LENGTH:
        raise _ParseError(
            f"the formula has {len(text)} characters; at most {MAX_LENGTH} are read "
            f"(symsgd.parsing.MAX_LENGTH)"
        )
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise _ParseError(
            f"brackets are nested {deepest} levels deep; at most {MAX_DEPTH} are read "
            f"(symsgd.parsing.MAX_DEPTH)"
        )


def _bits(x: sp.Rational) -> int:
    return max(int(x.p).bit_length(), int(x.q).bit_length())


def _power_of(base: Any, exponent: Any) -> Any:
    """``base ** exponent`` after checking that it is small enough to build and compare."""
    if isinstance(exponent, _Transpose):
        return base.T if isinstance(base, sp.MatrixBase) else base
    if isinstance(exponent, (sp.MatrixBase, list)):
        raise _ParseError("an exponent must be a scalar")
    exponent = sp.sympify(exponent)
    if exponent.is_Number and exponent.is_Rational:
        top = abs(exponent.p) + (exponent.q if not exponent.is_Integer else 0)
        if isinstance(base, sp.Expr) and base.is_Rational and base not in (0, 1, -1):
            if _bits(base) * abs(exponent) > MAX_BITS:
                raise _ParseError(
                    f"{base}^{exponent} is too large: powers of numbers may have at most "
                    f"{MAX_BITS} bits (symsgd.parsing.MAX_BITS)"
                )
        elif top > MAX_EXPONENT and not (isinstance(base, sp.Expr) and base in (0, 1, -1)):
            raise _ParseError(
                f"the exponent {exponent} is too large: exponents may be at most "
                f"{MAX_EXPONENT} in size (symsgd.parsing.MAX_EXPONENT)"
            )
    elif isinstance(base, sp.MatrixBase):
        raise _ParseError(f"a matrix can only be raised to an integer power, not {exponent}")
    if isinstance(base, sp.MatrixBase):
        if not base.is_square:
            raise _ParseError("only a square matrix has powers")
        return sp.ImmutableMatrix(base**exponent)
    return base**exponent


class _Transpose:
    """The exponent of ``X^{\\top}``."""


_TRANSPOSE = _Transpose()

# --------------------------------------------------------------------------------------------
# tokens: plain strings and LaTeX both become (kind, text, position) for one grammar
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[^\W\d]\w*)"
    r"|(?P<op>\*\*|[-+*/^()\[\],√])"
)

_REPLACE = {"²": "^2", "³": "^3", "·": "*", "⋅": "*", "×": "*", "−": "-", "–": "-"}


def _number(text: str) -> sp.Rational:
    exponent = text.lower().partition("e")[2]
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise _ParseError(
            f"the number {text} is too large: a decimal exponent may be at most {MAX_EXPONENT} "
            f"(symsgd.parsing.MAX_EXPONENT)"
        )
    return sp.Rational(text)


def _plain_tokens(text: str) -> list[tuple[str, str, int]]:
    for old, new in _REPLACE.items():
        text = text.replace(old, new)
    tokens = []
    at = 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None:
            ch = text[at]
            if ch == ".":
                why = "a '.' outside a number (attribute access is not allowed)"
            elif ch in "'\"":
                why = "quotes (strings are not allowed)"
            else:
                why = f"unexpected character {ch!r}"
            raise _ParseError(f"{why} at position {at}")
        kind = m.lastgroup or ""
        if kind == "name":
            word = m.group()
            if word.startswith("_") or "__" in word:
                raise _ParseError(f"names starting with '_' are not allowed ({word!r})")
            if keyword.iskeyword(word) and word != "lambda":
                raise _ParseError(f"{word!r} is a Python keyword, not part of a formula")
            if word in _FUNCTIONS:
                kind = "func"
        if kind != "ws":
            tokens.append((kind, m.group(), at))
        at = m.end()
    return tokens


#: LaTeX commands that only change spacing or size, and delimiter sizes
_LATEX_SKIP = frozenset(
    """displaystyle textstyle scriptstyle limits nonumber notag quad qquad thinspace medspace
    thickspace negthinspace hline""".split()
)
_LATEX_SIZES = frozenset(
    """left right middle big Big bigg Bigg bigl bigr Bigl Bigr biggl biggr Biggl Biggr bigm Bigm
    biggm Biggm""".split()
)
_LATEX_FUNCS = frozenset(
    "exp log ln sin cos tan sinh cosh tanh arcsin arccos arctan det tr Tr min max".split()
)
_LATEX_WORDS = frozenset("text mathrm operatorname mathit textrm mathsf mathbf textit".split())
_LATEX_MATRICES = frozenset({"matrix", "pmatrix", "bmatrix", "Bmatrix", "smallmatrix"})
_LATEX_ENVS = ("align", "align*", "equation", "equation*", "gather", "gather*")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|.)", re.DOTALL)
_WORD_RE = re.compile(r"[^\W\d]\w*")


def _group(text: str, at: int) -> tuple[str, int]:
    """The raw content of the brace group starting at ``text[at] == '{'``, and the end."""
    depth = 0
    k = at
    while k < len(text):
        ch = text[k]
        if ch == "\\":
            k += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[at + 1 : k], k + 1
        k += 1
    raise _ParseError(f"unbalanced '{{' at position {at}")


def _skip_ws(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _flat_word(raw: str) -> str:
    """``\\text{test}`` -> ``test``, ``{11}`` -> ``11``, ``\\lambda`` -> ``lambda``."""
    word = re.sub(r"\\(?:" + "|".join(sorted(_LATEX_WORDS)) + r")\s*", "", raw)
    word = word.replace("\\_", "_").replace("\\", "")
    return re.sub(r"[{}\s]", "", word)


def _latex_tokens(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    at, n = 0, len(text)

    def last_op() -> str | None:
        return tokens[-1][1] if tokens and tokens[-1][0] == "op" else None

    while at < n:
        ch = text[at]
        if ch.isspace() or ch == "~":
            at += 1
            continue
        if ch == "\\":
            if text.startswith("\\\\", at):
                tokens.append(("op", "\\\\", at))
                at += 2
                continue
            m = _COMMAND_RE.match(text, at)
            if m is None:  # a lone backslash at the end
                raise _ParseError(f"a lone '\\' at position {at}")
            cmd, start, at = m.group(1), at, m.end()
            if cmd in (",", ";", "!", ":", " ") or cmd in _LATEX_SKIP:
                continue
            if cmd in _LATEX_SIZES:
                at = _skip_ws(text, at)
                if text.startswith(".", at):  # \left. and \right. delimit nothing
                    at += 1
                continue
            if cmd in ("{", "}"):
                tokens.append(("op", "(" if cmd == "{" else ")", start))
            elif cmd in ("lbrack", "rbrack"):
                tokens.append(("op", "[" if cmd == "lbrack" else "]", start))
            elif cmd in ("cdot", "times", "ast"):
                tokens.append(("op", "*", start))
            elif cmd == "div":
                tokens.append(("op", "/", start))
            elif cmd in ("frac", "dfrac", "tfrac", "cfrac"):
                tokens.append(("cmd", "frac", start))
            elif cmd in ("sqrt", "top", "intercal"):
                tokens.append(("cmd", "T" if cmd != "sqrt" else "sqrt", start))
            elif cmd in ("begin", "end"):
                at = _skip_ws(text, at)
                if not text.startswith("{", at):
                    raise _ParseError(f"\\{cmd} needs an environment name at position {start}")
                env, at = _group(text, at)
                if env.strip() not in _LATEX_MATRICES:
                    raise _ParseError(
                        f"the environment {env!r} can only enclose the whole formula (known "
                        f"inside a formula: {', '.join(sorted(_LATEX_MATRICES))})"
                    )
                tokens.append(("cmd", cmd, start))
            elif cmd in _LATEX_WORDS:
                at = _skip_ws(text, at)
                if text.startswith("*", at):  # \operatorname*
                    at += 1
                    at = _skip_ws(text, at)
                if not text.startswith("{", at):
                    raise _ParseError(f"\\{cmd} needs a {{...}} argument at position {start}")
                raw, at = _group(text, at)
                word = _flat_word(raw)
                if word == "e" and cmd in ("mathrm", "text", "textrm", "operatorname"):
                    tokens.append(("cmd", "E", start))
                elif word == "T" and last_op() == "^":
                    tokens.append(("cmd", "T", start))
                elif word in _FUNCTIONS:
                    tokens.append(("func", word, start))
                elif _WORD_RE.fullmatch(word) and not word.startswith("_"):
                    tokens.append(("name", word, start))
                else:
                    raise _ParseError(f"cannot read {text[start:at]!r} as a name")
            elif cmd in _LATEX_FUNCS:
                tokens.append(("func", cmd, start))
            elif cmd in _GREEK_WORDS or cmd == "pi":
                tokens.append(("name", cmd, start))
            else:
                raise _ParseError(
                    f"unsupported LaTeX command \\{cmd} at position {start} (known: \\frac, "
                    f"\\sqrt, \\left/\\right, \\big..., \\cdot, \\exp, \\log, \\operatorname, "
                    f"\\begin{{pmatrix}}, Greek letters)"
                )
            continue
        if ch.isdigit() or (ch == "." and at + 1 < n and text[at + 1].isdigit()):
            after_frac = (tokens and tokens[-1] == ("cmd", "frac", tokens[-1][2])) or (
                len(tokens) > 1
                and tokens[-2][:2] == ("cmd", "frac")
                and tokens[-1][0] == "num"
                and text[at - 1].isdigit()
            )
            if last_op() in ("^", "_") or after_frac:  # x^23 is x^2·3, \frac12 is 1/2
                tokens.append(("num", ch, at))
                at += 1
                continue
            m = re.compile(r"\d*\.?\d+|\d+\.?").match(text, at)
            assert m is not None
            tokens.append(("num", m.group(), at))
            at = m.end()
            continue
        if ch == "_" and tokens and tokens[-1][0] == "func":  # \log_{2}: the base, as a group
            at = _skip_ws(text, at + 1)
            if text.startswith("{", at):
                raw, at = _group(text, at)
            elif at < n:
                raw, at = text[at], at + 1
            else:
                raise _ParseError("a subscript '_' at the end of the formula")
            tokens.append(("sub", raw, at))
            continue
        if ch == "_":
            if not tokens or tokens[-1][0] != "name":
                raise _ParseError(f"a subscript '_' must follow a name (position {at})")
            at = _skip_ws(text, at + 1)
            if text.startswith("{", at):
                raw, end = _group(text, at)
            elif (m := _COMMAND_RE.match(text, at)) is not None:
                raw, end = m.group(0), m.end()
            elif at < n:
                raw, end = text[at], at + 1
            else:
                raise _ParseError("a subscript '_' at the end of the formula")
            word = _flat_word(raw)
            if not re.fullmatch(r"\w+", word):
                raise _ParseError(f"cannot read the subscript {raw!r} at position {at}")
            kind, name, pos = tokens[-1]
            tokens[-1] = (kind, f"{name}_{word}", pos)
            at = end
            continue
        if ch in _REPLACE:
            tokens.extend(_plain_tokens(_REPLACE[ch]))
            at += 1
            continue
        if ch in "+-*/^()[]{}&,=√":
            tokens.append(("op", ch, at))
            at += 1
            continue
        if ch.isalpha():
            word = re.compile(r"[A-Za-z]+").match(text, at)
            if (
                word is not None
                and word.group() in _FUNCTIONS
                and len(word.group()) > 1
                and text.startswith("(", _skip_ws(text, word.end()))
            ):  # exp(x) written without the backslash
                tokens.append(("func", word.group(), at))
                at = word.end()
                continue
            tokens.append(("name", ch, at))
            at += 1
            continue
        raise _ParseError(f"unexpected character {ch!r} at position {at}")
    return tokens


# --------------------------------------------------------------------------------------------
# the grammar (a recursive-descent parser, no eval)
# --------------------------------------------------------------------------------------------


class _List(list):
    """A bracketed list in a plain formula; arithmetic on it is an error, not list repetition."""

    def _no_arithmetic(self, *args: Any) -> Any:
        raise _ParseError("a bracketed list [..] can only be a whole matrix, like [[a, b], [c, d]]")

    __add__ = __radd__ = __iadd__ = __sub__ = __rsub__ = _no_arithmetic
    __mul__ = __rmul__ = __imul__ = __truediv__ = __rtruediv__ = _no_arithmetic
    __pow__ = __rpow__ = __neg__ = __pos__ = _no_arithmetic
    __hash__ = None  # type: ignore[assignment]


def _matrix_of(items: list) -> sp.ImmutableMatrix:
    if all(isinstance(row, list) for row in items):
        return sp.ImmutableMatrix(items)
    if any(isinstance(row, list) for row in items):
        raise ValueError("a matrix needs rows of the same kind, like [[a, b], [c, d]]")
    return sp.ImmutableMatrix(items)


def _trace(x):
    return x.trace() if isinstance(x, sp.MatrixBase) else x


def _det(x):
    return x.det() if isinstance(x, sp.MatrixBase) else x


def _fn(f: Callable, low: int, high: int | None = None) -> tuple[Callable, int, int | None]:
    return f, low, low if high is None else high


_FUNCTIONS: dict[str, tuple[Callable, int, int | None]] = {
    "sqrt": _fn(sp.sqrt, 1),
    "cbrt": _fn(sp.cbrt, 1),
    "exp": _fn(sp.exp, 1),
    "log": _fn(sp.log, 1, 2),
    "ln": _fn(sp.log, 1),
    "abs": _fn(sp.Abs, 1),
    "Abs": _fn(sp.Abs, 1),
    "sin": _fn(sp.sin, 1),
    "cos": _fn(sp.cos, 1),
    "tan": _fn(sp.tan, 1),
    "sinh": _fn(sp.sinh, 1),
    "cosh": _fn(sp.cosh, 1),
    "tanh": _fn(sp.tanh, 1),
    "asin": _fn(sp.asin, 1),
    "acos": _fn(sp.acos, 1),
    "atan": _fn(sp.atan, 1),
    "arcsin": _fn(sp.asin, 1),
    "arccos": _fn(sp.acos, 1),
    "arctan": _fn(sp.atan, 1),
    "min": _fn(sp.Min, 1, None),
    "Min": _fn(sp.Min, 1, None),
    "max": _fn(sp.Max, 1, None),
    "Max": _fn(sp.Max, 1, None),
    "tr": _fn(_trace, 1),
    "Tr": _fn(_trace, 1),
    "trace": _fn(_trace, 1),
    "Trace": _fn(_trace, 1),
    "det": _fn(_det, 1),
    "Matrix": _fn(lambda rows: _matrix_of(rows), 1),
}
_TRACES = frozenset({"tr", "Tr", "trace", "Trace"})


def _product(values: list) -> Any:
    out = values[0]
    for v in values[1:]:
        out = out * v
    return out


class _Parser:
    """One grammar for plain strings and LaTeX (``latex=True``):

    expr := term (('+'|'-') term)*;  term := unary (('*'|'/') unary | power)*;
    unary := ('+'|'-') unary | power;  power := atom ('^' exponent)*;
    atom := number | name | function args | '(' expr ')' | '[' list ']' | '√' atom
            | LaTeX: '{' expr '}' | '[' expr ']' | \\frac{}{} | \\sqrt[]{} | \\mathrm{e}
            | \\begin{pmatrix} rows \\end{pmatrix}.

    In plain strings the exponent is a unary expression (``2^-1``, right-associative); in LaTeX
    a group or one token (``x^{10}``, ``x^2``, ``X^{\\top}``).  Nesting is counted: deeper than
    :data:`MAX_DEPTH` is an error, never a ``RecursionError``.
    """

    def __init__(
        self,
        tokens: list[tuple[str, str, int]],
        names: Names,
        latex: bool = False,
        defs: Mapping[str, Any] | None = None,
    ):
        self.names = names
        self.latex = latex
        self.defs = dict(defs or {})
        self.unknown: list[str] = []
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # -- helpers
    def _peek(self, ahead: int = 0) -> tuple[str, str, int] | None:
        k = self.pos + ahead
        return self.tokens[k] if k < len(self.tokens) else None

    def _accept(self, *ops: str) -> str | None:
        tok = self._peek()
        if tok is not None and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            return tok[1]
        return None

    def _is_cmd(self, *names: str) -> bool:
        tok = self._peek()
        return tok is not None and tok[0] == "cmd" and tok[1] in names

    def _expect(self, op: str) -> None:
        if self._accept(op) is None:
            tok = self._peek()
            where = f"{tok[1]!r} at position {tok[2]}" if tok else "the end"
            raise _ParseError(f"expected {op!r} but found {where}")

    def _starts_atom(self) -> bool:
        tok = self._peek()
        if tok is None:
            return False
        if tok[0] in ("num", "name", "func"):
            return True
        if tok[0] == "cmd":
            return tok[1] in ("frac", "sqrt", "begin", "E")
        return tok[1] in (("(", "[", "{", "√") if self.latex else ("(", "[", "√"))

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _ParseError(
                f"the formula is nested more than {MAX_DEPTH} levels deep (brackets, signs and "
                f"powers; symsgd.parsing.MAX_DEPTH)"
            )

    # -- grammar
    def parse(self) -> Any:
        if not self.tokens:
            raise _ParseError("the formula is empty")
        value = self._expr()
        tok = self._peek()
        if tok is not None:
            raise _ParseError(f"unexpected {tok[1]!r} at position {tok[2]}")
        return value

    def _expr(self) -> Any:
        value = self._term()
        while (op := self._accept("+", "-")) is not None:
            rhs = self._term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def _term(self) -> Any:
        value = self._unary()
        while True:
            op = self._accept("*", "/")
            if op == "*":
                value = value * self._unary()
            elif op == "/":
                rhs = self._unary()
                if isinstance(rhs, sp.MatrixBase):
                    raise _ParseError("cannot divide by a matrix; write X^{-1}")
                value = value / rhs
            elif self._starts_atom():  # implicit multiplication: 2λh, h(2-λh)
                value = value * self._power()
            else:
                return value

    def _unary(self) -> Any:
        self._enter()
        if self._accept("-") is not None:
            value = -self._unary()
        elif self._accept("+") is not None:
            value = self._unary()
        else:
            value = self._power()
        self.depth -= 1
        return value

    def _power(self) -> Any:
        factors = self._atom()
        previous = None
        while self._accept("^", "**") is not None:
            exponent = self._exponent()
            if previous is not None and _TRANSPOSE not in (previous, exponent):
                # a^{b}^{c} is an error in LaTeX; only X^{\top}^{k} (as printed) is read
                raise _ParseError("a double superscript: write {a^{b}}^{c} or a^{b c}")
            factors[-1] = _power_of(factors[-1], exponent)  # λh^2 is λ·h²
            previous = exponent
            if not self.latex:
                break
        return _product(factors) if len(factors) > 1 else factors[0]

    def _exponent(self) -> Any:
        if not self.latex:
            return self._unary()
        if self._is_cmd("T"):
            self.pos += 1
            return _TRANSPOSE
        if self._accept("{") is not None:
            if self._is_cmd("T"):
                self.pos += 1
                value: Any = _TRANSPOSE
                if self._accept("}") is None:  # X^{\top 2}
                    raise _ParseError("write a power of a transpose as {X^{\\top}}^{k}")
                return value
            value = self._expr()
            self._expect("}")
            return value
        self._enter()
        tok = self._peek()
        if tok is not None and tok[1] in ("-", "+"):  # x^-1
            self.pos += 1
            value = self._exponent()
            value = -value if tok[1] == "-" else value
        else:
            value = _product(self._atom())
        self.depth -= 1
        return value

    def _group_arg(self) -> Any:
        """A LaTeX argument: ``{...}`` or one token."""
        if self._accept("{") is not None:
            value = self._expr()
            self._expect("}")
            return value
        return _product(self._atom())

    def _atom(self) -> list:
        tok = self._peek()
        if tok is None:
            raise _ParseError("the formula ends too early")
        kind, text, at = tok
        self.pos += 1
        if kind == "num":
            return [_number(text)]
        if kind == "name":
            return self._name(text, at)
        if kind == "func":
            return [self._call(text, at)]
        if kind == "cmd":
            return [self._command(text, at)]
        closing = {"(": ")", "{": "}"}
        if self.latex:
            closing["["] = "]"
        if text in closing:  # the nesting is counted by _unary
            value = self._expr()
            self._expect(closing[text])
            return [value]
        if text == "[":
            return [_List(self._args("]"))]
        if text == "√":
            self._enter()
            value = sp.sqrt(_product(self._atom()))
            self.depth -= 1
            return [value]
        raise _ParseError(f"unexpected {text!r} at position {at}")

    def _command(self, text: str, at: int) -> Any:
        if text == "E":
            return sp.E
        if text == "frac":
            num = self._group_arg()
            den = self._group_arg()
            if isinstance(den, sp.MatrixBase):
                raise _ParseError("cannot divide by a matrix; write X^{-1}")
            return num / den
        if text == "sqrt":
            index = None
            if self._accept("[") is not None:
                index = self._expr()
                self._expect("]")
            value = self._group_arg()
            if isinstance(value, sp.MatrixBase):
                raise _ParseError("\\sqrt of a matrix is not supported")
            return sp.sqrt(value) if index is None else sp.root(value, index)
        if text == "begin":
            return self._matrix()
        shown = "\\top" if text == "T" else text
        raise _ParseError(f"unexpected {shown!r} at position {at}")

    def _matrix(self) -> sp.ImmutableMatrix:
        rows: list[list] = [[]]
        while True:
            if self._is_cmd("end"):
                self.pos += 1
                break
            if self._peek() is None:
                raise _ParseError("\\begin{pmatrix} without \\end{pmatrix}")
            rows[-1].append(self._expr())
            if self._accept("&") is not None:
                continue
            if self._accept("\\\\") is not None:
                rows.append([])
                continue
            if not self._is_cmd("end"):
                tok = self._peek()
                raise _ParseError(f"unexpected {tok[1]!r} at position {tok[2]} in a matrix")
        rows = [r for r in rows if r]
        if not rows or len({len(r) for r in rows}) != 1:
            raise _ParseError("the matrix rows have different lengths")
        if any(isinstance(x, sp.MatrixBase) for r in rows for x in r):
            raise _ParseError("a matrix entry is itself a matrix")
        return sp.ImmutableMatrix(rows)

    def _args(self, close: str) -> list:
        items = [self._expr()]
        while self._accept(",") is not None:
            items.append(self._expr())
        self._expect(close)
        return items

    def _call(self, word: str, at: int) -> Any:
        f, low, high = _FUNCTIONS[word]
        base = power = None
        if self._peek() is not None and self._peek()[0] == "sub":  # \log_{2}
            raw = self._peek()[1]
            self.pos += 1
            if word != "log":
                raise _ParseError(f"a subscript on \\{word} is not supported")
            sub = _Parser(_latex_tokens(raw), self.names, latex=True, defs=self.defs)
            sub.depth = self.depth
            base = sub.parse()
            self.unknown += sub.unknown
        if self.latex and self._accept("^") is not None:  # \sin^{2}(x) = (sin x)^2
            power = self._exponent()
            if isinstance(power, sp.Expr) and power.is_number and power.is_negative:
                raise _ParseError(
                    f"\\{word}^{{{power}}} is ambiguous (an inverse function or a power?): "
                    f"write \\arc{word} or (\\{word} x)^{{{power}}}"
                )
        value = self._apply(word, f, low, high)
        if base is not None:
            value = value / sp.log(base)
        return value if power is None else _power_of(value, power)

    def _apply(self, word: str, f: Callable, low: int, high: int | None) -> Any:
        nxt = self._peek()
        if (
            nxt is not None
            and nxt[0] == "op"
            and nxt[1] in ("(", "{", "[")
            and (self.latex or nxt[1] == "(")
        ):
            self.pos += 1
            self._enter()
            args = self._args({"(": ")", "{": "}", "[": "]"}[nxt[1]])
            self.depth -= 1
        elif self.latex and self._starts_atom():  # \log x, \exp \lambda
            args = [self._power()]
        else:
            raise _ParseError(f"the function {word} needs parentheses: {word}(...)")
        if len(args) < low or (high is not None and len(args) > high):
            raise _ParseError(f"{word}() takes {low}{'' if high == low else '+'} argument(s)")
        if self.names.matrices and word in _TRACES:
            return self._mode_trace(args[0], word)
        if f is _det and self.names.matrices:
            raise _ParseError(
                f"{word}() multiplies over all eigen-modes, so it cannot be read mode by mode; "
                f"{_NO_TRACES}"
            )
        if any(isinstance(a, sp.MatrixBase) for a in args) and f not in (_trace, _det):
            if not all(isinstance(a, sp.MatrixBase) and a.shape == (1, 1) for a in args):
                raise _ParseError(f"{word}() of a matrix is not supported")
            args = [a[0, 0] for a in args]
        return f(*args)

    def _mode_trace(self, body: Any, word: str) -> sp.Expr:
        """``Tr f(A)`` of an eigen-mode formula: the sum of ``f`` over the eigenvalues."""
        from .modes import mode_trace

        modes = {
            s
            for n, s in self.names.matrices.items()
            if isinstance(s, sp.Symbol) and n != "I" and s in sp.sympify(body).free_symbols
        }
        if len(modes) != 1:
            raise _ParseError(
                f"{word}[...] must be a function of one mode matrix to be read mode by mode "
                f"(found {len(modes)}); {_NO_TRACES}"
            )
        mode = modes.pop()
        others = [n for n, s in self.names.matrices.items() if n != "I" and s != mode]
        if sp.sympify(body) == mode and others:
            # Tr of the identity function does not record which matrix it sums (a sympy Lambda
            # x -> x forgets its variable), so Tr[H] and Tr[C] would read alike
            raise _ParseError(
                f"{word}[X] of a lone mode matrix cannot be told apart from the other mode "
                f"matrices ({', '.join(others)}) of this result; {_NO_TRACES}"
            )
        return mode_trace(sp.sympify(body), mode)

    def _name(self, word: str, at: int) -> list:
        if word in self.defs:
            return [self.defs[word]]
        if word in _FUNCTIONS and word not in self.names.by_raw:
            return [self._call(word, at)]
        found = self.names.resolve(word)
        if found is None and word == "e":
            nxt = self._peek()
            if nxt is not None and nxt[1] in ("^", "**"):  # e^{x} is exp(x)
                self.pos += 1
                exponent = self._exponent()
                if isinstance(exponent, (sp.MatrixBase, _Transpose)):
                    raise _ParseError("e^{...} needs a scalar exponent")
                return [sp.exp(exponent)]
        if found is not None:
            return [found]
        pieces = None if self.latex else self.names.split(word)
        if pieces is not None:
            return pieces
        if self.names.context:
            self.unknown.append(word)
            return [sp.Dummy(word)]
        return [sp.Symbol(_free_name(word))]


# --------------------------------------------------------------------------------------------
# LaTeX documents: delimiters, environments, "lhs = rhs" and "where D = ..." definitions
# --------------------------------------------------------------------------------------------

_WHERE = re.compile(r"\\(?:text|mathrm|textrm)\s*\{\s*where\s*\}|\bwhere\b")
_DET = re.compile(r"^\\det\s*(?:\\left\s*)?\(\s*x\s*I\s*-\s*([A-Za-z])\s*(?:\\right\s*)?\)$")


def _top_level_split(text: str, seps: tuple[str, ...]) -> list[str]:
    """Split at separators outside brackets and ``\\begin{..}...\\end{..}``."""
    parts, depth, env, start, k = [], 0, 0, 0, 0
    while k < len(text):
        if text.startswith("\\begin", k):
            env += 1
        elif text.startswith("\\end", k):
            env -= 1
        hit = next((s for s in seps if text.startswith(s, k) and depth == 0 and env == 0), None)
        if hit is not None:
            parts.append(text[start:k])
            k += len(hit)
            start = k
            continue
        ch = text[k]
        if ch == "\\":
            k += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        k += 1
    parts.append(text[start:])
    return parts


def latex_document(text: str) -> tuple[str | None, str, list[tuple[str, str]]]:
    r"""Split LaTeX as :meth:`symsgd.Stationary.latex` prints it into ``(lhs, body,
    [(name, definition), ...])``: delimiters (``$``, ``\[``), ``align``/``equation``
    environments, the alignment ``&``, ``lhs = body`` and the "where D = …" definitions are
    taken apart.

    >>> latex_document(r"\begin{align}\Sigma &= \frac{a}{D} \\ \text{where } D &= 2\end{align}")
    ('\\Sigma', '\\frac{a}{D}', [('D', '2')])
    """
    s = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    env = re.match(r"^\\begin\s*\{([a-z]+\*?)\}(.*)\\end\s*\{\1\}$", s, re.DOTALL)
    if env:
        if env.group(1) not in _LATEX_ENVS:
            if env.group(1) not in _LATEX_MATRICES:
                raise _ParseError(
                    f"unsupported environment {env.group(1)!r} (known: "
                    f"{', '.join(_LATEX_ENVS)} around a formula, pmatrix/bmatrix inside)"
                )
        else:
            s = env.group(2)
    s = " ".join(_top_level_split(s, ("&",))) if env else s
    lines = [p for p in _top_level_split(s, ("\\\\",)) if p.strip()]
    if not lines:
        raise _ParseError("the formula is empty")
    head, definitions = lines[0], []
    where = _WHERE.search(head)
    tail = [] if where is None else [head[where.end() :]]
    if where is not None:
        head = head[: where.start()]
    for line in lines[1:]:
        w = _WHERE.search(line)
        tail.append(line[w.end() :] if w else line)
    head = re.sub(r"(?:,|\\quad|\\qquad|\\[,;]|\s)+$", "", head.strip())
    for chunk in tail:
        for part in _top_level_split(chunk, (",",)):
            part = re.sub(r"^(?:\\quad|\\qquad|\\[,;]|\s)+", "", part).strip().rstrip(".")
            if not part:
                continue
            pieces = _top_level_split(part, ("=",))
            if len(pieces) != 2:
                raise _ParseError(f"cannot read the definition {part.strip()!r} (write 'D = …')")
            definitions.append((pieces[0].strip(), pieces[1].strip()))
    pieces = _top_level_split(head, ("=",))
    if len(pieces) > 2:
        raise _ParseError("a formula with more than one '=' (write one 'lhs = rhs')")
    lhs = pieces[0].strip() if len(pieces) == 2 else None
    body = pieces[-1].strip().rstrip(".,").strip()
    return lhs, body, definitions


def _parse_latex(text: str, names: Names) -> tuple[Any, list[str]]:
    _lhs, body, definitions = latex_document(text)
    defs: dict[str, Any] = dict(getattr(names, "definitions", {}) or {})
    unknown: list[str] = []
    pending = list(definitions)
    for _round in range(len(pending) + 1):  # definitions may use each other, in any order
        if not pending:
            break
        waiting = []
        for name, rhs in pending:
            try:
                _define(name, rhs, names, defs)
            except _Unresolved:
                waiting.append((name, rhs))
        if len(waiting) == len(pending):
            name, rhs = waiting[0]
            parser = _Parser(_latex_tokens(rhs), names, latex=True, defs=defs)
            parser.parse()
            raise _ParseError(f"cannot read the definition {name} = {rhs}")
        pending = waiting
    parser = _Parser(_latex_tokens(body), names, latex=True, defs=defs)
    value = parser.parse()
    unknown += parser.unknown
    return value, unknown


class _Unresolved(Exception):
    pass


def _define(name: str, rhs: str, names: Names, defs: dict) -> None:
    """Read one "where" definition into ``defs`` (raise :class:`_Unresolved` if it uses names
    not defined yet)."""
    det = _DET.match(name)
    if det:  # \det(x I - K) = x^n - e_1 x^{n-1} + ...: e_k are the invariants of K
        matrix = defs.get(det.group(1))
        if not isinstance(matrix, sp.MatrixBase):
            raise _Unresolved
        free = Names(None)
        parser = _Parser(_latex_tokens(rhs), free, latex=True)
        poly = parser.parse()
        x = sp.Symbol("x")
        unknowns = sorted(poly.free_symbols - {x}, key=sp.default_sort_key)
        char = matrix.charpoly(x).as_expr()
        equations = sp.Poly(sp.expand(poly - char), x).all_coeffs()
        solution = sp.solve(equations, unknowns, dict=True)
        if len(solution) != 1 or set(solution[0]) != set(unknowns):
            raise _ParseError(
                f"the definition {name} = {rhs} does not determine {', '.join(map(str, unknowns))}"
            )
        for s, value in solution[0].items():
            defs[s.name] = value
            defs[_normalize(s.name)] = value
        return
    tokens = _latex_tokens(name)
    if len(tokens) != 1 or tokens[0][0] != "name":
        raise _ParseError(f"cannot read the definition of {name!r}: define a single name")
    parser = _Parser(_latex_tokens(rhs), names, latex=True, defs=defs)
    value = parser.parse()
    if parser.unknown:
        raise _Unresolved
    defs[tokens[0][1]] = value


def _parse_plain(text: str, names: Names) -> tuple[Any, list[str]]:
    body = text
    if body.count("=") == 1:  # "Var = ..." reads as its right-hand side
        body = body.split("=")[1]
    defs = dict(getattr(names, "definitions", {}) or {})
    parser = _Parser(_plain_tokens(body), names, defs=defs)
    return parser.parse(), parser.unknown


# --------------------------------------------------------------------------------------------
# parse_formula
# --------------------------------------------------------------------------------------------


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
            _check_limits(text)
            if _is_latex(text):
                value, unknown = _parse_latex(text, names)
            else:
                value, unknown = _parse_plain(text, names)
        except _ParseError as err:
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
            value = _matrix_of(value)
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
