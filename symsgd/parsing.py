r"""Read a hand formula — a plain string, LaTeX or a sympy object — into sympy, without ``eval``.

:func:`parse_formula` turns what you typed into a sympy expression or matrix; :func:`verify
<symsgd.verify.verify>` uses the same reader against the symbols of a derived result.

Plain strings go through a small recursive-descent parser that knows numbers, names,
``+ - * / ^ **``, parentheses, implicit multiplication and a short whitelist of functions; LaTeX
goes through sympy's ANTLR LaTeX parser behind a whitelist of commands (display environments and
``\left/\right`` stripped, a power on a parenthesised group kept on the group).  Names are matched
to known symbols by name, after normalising Greek letters (``λ``, ``\lambda``, ``lambda``) and
subscripts (``h_{11}``, ``h_11``, ``h11``), and by alias: ``λ``/``η``/``lr`` is the learning rate,
``μ``/``β``/``momentum`` the momentum, ``S``/``B`` the batch size, ``N`` the data-set size, ``γ``
the weight decay, ``σ`` the label noise.  Against an eigen-mode result (``Quadratic.commuting``) a
formula may also use the result's matrix names — ``λ[H(2I - λH)]^{-1}C``, as
:meth:`~symsgd.Stationary.latex` prints it — which are read mode by mode (``H`` → h, ``C`` → c,
``I`` → 1; see :func:`mode_matrices`).

    >>> parse_formula(r"\frac{\eta c}{h(2-\eta h)}") == parse_formula("lr c/(h(2 - lr h))")
    True
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sympy as sp
from sympy.core.function import AppliedUndef

from symsgd import symbols as _lib
from symsgd._util import substitute, symbols_in

__all__ = ["Names", "library_alias", "mode_matrices", "parse_formula", "parse_with_names"]

_EXAMPLE = "write it as e.g. 'lr*c/(h*(2 - lr*h))' or LaTeX '\\frac{\\lambda c}{h(2-\\lambda h)}'"
_MAX_LENGTH = 20_000
_MAX_DEPTH = 200

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
_CONSTANTS: dict[str, sp.Expr] = {"e": sp.E, "pi": sp.pi}


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
        #: appended to unknown-name errors that look like matrix names (set by
        #: :func:`~symsgd.verify.verify`)
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
        if not getattr(landscape, "modes", False) or not callable(method):
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
# plain strings: tokenizer + recursive-descent parser (no eval)
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[^\W\d]\w*)"
    r"|(?P<op>\*\*|[-+*/^()\[\],√])"
)


class _ParseError(ValueError):
    pass


_REPLACE = {"²": "^2", "³": "^3", "·": "*", "⋅": "*", "×": "*", "−": "-", "–": "-"}


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


class _Plain:
    """expr := term (('+'|'-') term)*;  term := unary (('*'|'/') unary | power)*;
    unary := ('+'|'-') unary | power;  power := atom (('^'|'**') unary)?;
    atom := number | name | function '(' args ')' | '(' expr ')' | '[' list ']' | '√' atom."""

    def __init__(self, text: str, names: Names):
        self.names = names
        self.unknown: list[str] = []
        self.tokens: list[tuple[str, str, int]] = []
        self.pos = 0
        self.depth = 0
        self._tokenize(text)

    def _tokenize(self, text: str) -> None:
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
            if kind != "ws":
                self.tokens.append((kind, m.group(), at))
            at = m.end()

    # -- helpers
    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _accept(self, *ops: str) -> str | None:
        tok = self._peek()
        if tok is not None and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            return tok[1]
        return None

    def _expect(self, op: str) -> None:
        if self._accept(op) is None:
            tok = self._peek()
            where = f"{tok[1]!r} at position {tok[2]}" if tok else "the end"
            raise _ParseError(f"expected {op!r} but found {where}")

    def _starts_atom(self) -> bool:
        tok = self._peek()
        return tok is not None and (tok[0] in ("num", "name") or tok[1] in ("(", "[", "√"))

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
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _ParseError("the formula is nested too deeply")
        value = self._term()
        while (op := self._accept("+", "-")) is not None:
            rhs = self._term()
            value = value + rhs if op == "+" else value - rhs
        self.depth -= 1
        return value

    def _term(self) -> Any:
        value = self._unary()
        while True:
            op = self._accept("*", "/")
            if op == "*":
                value = value * self._unary()
            elif op == "/":
                value = value / self._unary()
            elif self._starts_atom():  # implicit multiplication: 2λh, h(2-λh)
                value = value * self._power()
            else:
                return value

    def _unary(self) -> Any:
        if self._accept("-") is not None:
            return -self._unary()
        if self._accept("+") is not None:
            return self._unary()
        return self._power()

    def _power(self) -> Any:
        factors = self._atom()
        if self._accept("^", "**") is not None:
            factors[-1] = factors[-1] ** self._unary()  # λh^2 is λ·h², as in sympy
        return sp.Mul(*factors) if len(factors) > 1 else factors[0]

    def _atom(self) -> list:
        tok = self._peek()
        if tok is None:
            raise _ParseError("the formula ends too early")
        kind, text, at = tok
        self.pos += 1
        if kind == "num":
            return [sp.Rational(text)]
        if kind == "name":
            return self._name(text, at)
        if text == "(":
            value = self._expr()
            self._expect(")")
            return [value]
        if text == "[":
            return [_List(self._args("]"))]
        if text == "√":
            return [sp.sqrt(sp.Mul(*self._atom()))]
        raise _ParseError(f"unexpected {text!r} at position {at}")

    def _args(self, close: str) -> list:
        items = [self._expr()]
        while self._accept(",") is not None:
            items.append(self._expr())
        self._expect(close)
        return items

    def _name(self, word: str, at: int) -> list:
        nxt = self._peek()
        if (
            word in _FUNCTIONS
            and nxt is not None
            and nxt[1] == "("
            and word not in self.names.by_raw
        ):
            self.pos += 1
            args = self._args(")")
            f, low, high = _FUNCTIONS[word]
            if f in (_trace, _det) and self.names.matrices:
                raise _ParseError(
                    f"{word}() sums or multiplies over all eigen-modes, so it cannot be read "
                    f"mode by mode; {_NO_TRACES}"
                )
            if len(args) < low or (high is not None and len(args) > high):
                raise _ParseError(f"{word}() takes {low}{'' if high == low else '+'} argument(s)")
            return [f(*args)]
        if word in _FUNCTIONS and word not in self.names.by_raw:
            raise _ParseError(f"the function {word} needs parentheses: {word}(...)")
        found = self.names.resolve(word)
        if found is not None:
            return [found]
        pieces = self.names.split(word)
        if pieces is not None:
            return pieces
        if self.names.context:
            self.unknown.append(word)
            return [sp.Dummy(word)]
        return [sp.Symbol(_free_name(word))]


# --------------------------------------------------------------------------------------------
# LaTeX: sympy's ANTLR parser behind a command whitelist
# --------------------------------------------------------------------------------------------

_LATEX_OK = (
    frozenset(
        """frac dfrac tfrac sqrt left right cdot times div exp log ln sin cos tan sinh cosh tanh
    arcsin arccos arctan quad qquad mathit pi thinspace medspace thickspace""".split()
    )
    | _GREEK_WORDS
)
_LATEX_DROP = re.compile(r"\\(displaystyle|textstyle|limits|nonumber)\b|\\left\.|\\right\.")
_LATEX_TEXT = re.compile(r"\\(?:mathrm|text|textrm|mathit|operatorname|mathsf)\s*\{([^{}]*)\}")
_LATEX_MATRIX = re.compile(
    r"^(?:\\left\s*[\[(]|[\[(])?\s*\\begin\{([pbB]?matrix)\}(.*)\\end\{\1\}\s*"
    r"(?:\\right\s*[\])]|[\])])?$",
    re.DOTALL,
)
_LATEX_ENV = re.compile(r"^\\begin\{(align\*?|equation\*?)\}(.*)\\end\{\1\}$", re.DOTALL)
_PLACEHOLDER = "zzsymsgzz"  # no "d": ANTLR lexes d<letter> as a differential
_OPEN = re.compile(r"\\left\s*\(|\(")
_CLOSE = re.compile(r"\\right\s*\)|\)")
# a function command (with optional sub/superscripts) right before a parenthesis: its argument
_CALL_BEFORE = re.compile(
    r"\\(?:exp|log|ln|sin|cos|tan|sinh|cosh|tanh|arcsin|arccos|arctan|sqrt)"
    r"(?:\s*[_^]\s*(?:\{[^{}]*\}|\\[A-Za-z]+|[^\s{}\\]))*\s*$"
)

_POWER_NEXT = re.compile(r"\s*\^")
_COMMAND = re.compile(r"\\(?:[A-Za-z]+|.)", re.DOTALL)


def _brace_powers(text: str) -> str:
    r"""``h(2-\lambda h)^{2}`` -> ``h{(2-\lambda h)}^{2}``: the power belongs to the parentheses.

    sympy's LaTeX grammar reads a name followed by parentheses as a function call, so the power
    would apply to the whole call, ``(h(2-λh))²``; :func:`_parse_latex_text` turns calls of
    unknown names into products, which would then be ``h²(2-λh)²``.  Bracing each parenthesised
    group that is raised to a power (unless it is the argument of ``\exp``, ``\sin``, ...,
    whose power does apply to the call: ``\sin(x)^{2}`` is sin²x) keeps the power on the group,
    as written.  Groups in brackets or braces are never read as calls and are left alone.
    """
    opens: list[int] = []
    inserts: list[tuple[int, str]] = []
    at = 0
    while at < len(text):
        if (m := _OPEN.match(text, at)) is not None:
            opens.append(at)
            at = m.end()
        elif (m := _CLOSE.match(text, at)) is not None:
            at = m.end()
            if not opens:
                continue
            start = opens.pop()
            if _POWER_NEXT.match(text, at) is None:
                continue
            before = text[:start].rstrip()
            if before and before[-1] not in "_^" and _CALL_BEFORE.search(before) is None:
                inserts += [(start, "{"), (at, "}")]
        elif (m := _COMMAND.match(text, at)) is not None:  # a command (or \\, \{) as a whole
            at = m.end()
        else:
            at += 1
    for position, brace in sorted(inserts, reverse=True):
        text = text[:position] + brace + text[position:]
    return text


def _parse_latex_text(text: str, names: Names, unknown: list[str]) -> Any:
    s = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    s = _LATEX_DROP.sub(" ", s).strip().rstrip(".,").strip()
    env = _LATEX_ENV.match(s)
    if env:  # render(env="align"/"equation"): one line "lhs &= rhs", read as rhs
        s = env.group(2).strip()
        if re.search(r"\\\\|\\text\s*\{\s*where", s):
            raise _ParseError(
                "the 'where D = …' layout of a matrix result cannot be read back; write the "
                "matrix entrywise"
            )
        s = re.sub(r"^[^=]*=", "", s, count=1).rstrip(".,").strip()
    m = _LATEX_MATRIX.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip() and r.strip() != "\\hline"]
        cells = [
            [_parse_latex_text(cell, names, unknown) for cell in row.split("&")] for row in rows
        ]
        if len({len(r) for r in cells}) != 1:
            raise _ParseError("the matrix rows have different lengths")
        return sp.ImmutableMatrix(cells)

    # \mathrm{lr}, \text{batch_size}, \operatorname{tr}: known functions or placeholder names
    words: dict[str, str] = {}

    def text_word(match: re.Match) -> str:
        word = match.group(1).replace("\\_", "_").strip()
        if word in ("exp", "log", "ln", "sin", "cos", "tan", "sinh", "cosh", "tanh"):
            return "\\" + word
        if not re.fullmatch(r"[^\W\d]\w*", word):
            raise _ParseError(f"cannot read {match.group(0)!r} as a name")
        key = _PLACEHOLDER + "".join("abcefghijk"[int(k)] for k in str(len(words)))
        words[key] = word
        return f"\\mathit{{{key}}}"

    s = _LATEX_TEXT.sub(text_word, s)
    bad = sorted({c for c in re.findall(r"\\([A-Za-z]+)", s) if c not in _LATEX_OK})
    if bad:
        raise _ParseError(
            "unsupported LaTeX command(s) "
            + ", ".join("\\" + c for c in bad)
            + " (known: \\frac, \\sqrt, \\left/\\right, \\cdot, \\exp, \\log, Greek letters)"
        )
    try:
        from sympy.parsing.latex import parse_latex
        from sympy.parsing.latex.errors import LaTeXParsingError
    except ImportError as err:  # pragma: no cover - sympy always ships the module
        raise _latex_import_error(err) from err
    try:
        parsed = parse_latex(_brace_powers(s))
    except ImportError as err:
        raise _latex_import_error(err) from err
    except LaTeXParsingError as err:
        raise _ParseError(" ".join(str(err).split())) from err
    if isinstance(parsed, sp.Equality):  # "\Sigma = ..." reads as its right-hand side
        parsed = parsed.rhs
    if isinstance(parsed, sp.core.relational.Relational):
        raise _ParseError("an inequality is not a formula")

    # sympy reads h(2-\lambda h) as a function h applied to (2 - λh): it is a product here
    def as_product(f: AppliedUndef) -> sp.Expr:
        if len(f.args) != 1:
            raise _ParseError(f"{f} reads as a function call; write a product with \\cdot")
        return sp.Symbol(f.func.__name__) * f.args[0]

    parsed = _rebuild(parsed.replace(lambda e: isinstance(e, AppliedUndef), as_product))
    mapping = {}
    for s_ in parsed.free_symbols:
        raw = words.get(s_.name, s_.name)
        found = names.resolve(raw)
        if found is None:
            if names.context:
                unknown.append(raw)
                continue
            found = sp.Symbol(_free_name(raw))
        mapping[s_] = found
    return parsed.xreplace(mapping)


def _latex_import_error(err: Exception) -> ImportError:
    return ImportError(
        "reading LaTeX needs the ANTLR runtime that sympy's LaTeX parser uses; install it with "
        "`pip install 'symsgd[latex]'` (antlr4-python3-runtime==4.11.*), or write the formula as "
        f"a plain string like 'lr*c/(h*(2 - lr*h))'. ({err})"
    )


def _rebuild(expr: sp.Basic) -> sp.Basic:
    """Re-evaluate a tree built with ``evaluate=False`` (as sympy's LaTeX parser does)."""
    if not expr.args or isinstance(expr, sp.Symbol):
        return expr
    return expr.func(*[_rebuild(a) for a in expr.args])


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
        if len(text) > _MAX_LENGTH:
            raise ValueError(f"could not parse hand formula: longer than {_MAX_LENGTH} characters")
        try:
            if _is_latex(text):
                unknown: list[str] = []
                value = _parse_latex_text(text, names, unknown)
            else:
                body = text
                for old, new in _REPLACE.items():
                    body = body.replace(old, new)
                if body.count("=") == 1:  # "Var = ..." reads as its right-hand side
                    body = body.split("=")[1]
                parser = _Plain(body, names)
                value = parser.parse()
                unknown = parser.unknown
        except _ParseError as err:
            raise ValueError(f"could not parse hand formula {text!r}: {err}; {_EXAMPLE}") from None
        except (TypeError, AttributeError, sp.SympifyError, sp.ShapeError) as err:
            raise ValueError(
                f"could not parse hand formula {text!r}: {type(err).__name__}: {err}; {_EXAMPLE}"
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

    A string containing ``\``, ``{``, ``}`` or ``$`` is LaTeX (read by sympy's ANTLR parser,
    ``pip install 'symsgd[latex]'``); any other string is plain: numbers, names, ``+ - * / ^ **``,
    parentheses, implicit multiplication (``2λh``, ``h(2-λh)``; ``λh^2`` is λ·h²), ``√``, ``²``,
    ``[[a, b], [c, d]]`` for matrices and the functions sqrt, exp, log, ln, abs, sin, cos, tan,
    (a)sinh…, min, max, tr, det, Matrix.  ``lhs = rhs`` reads as ``rhs``.

    ``symbols`` (an iterable of Symbols, or a sympy object whose free symbols are used) are the
    symbols names should resolve to: a name matches the symbol with the same spelling up to Greek
    letters and subscript braces (``λ`` = ``\lambda`` = ``lambda``, ``h_{11}`` = ``h_11`` =
    ``h11``), else the one symbol of its alias group (λ, η, lr: learning rate; μ, β, momentum;
    S, B, batch_size; N, dataset_size; γ, weight_decay; σ, label_noise); runs of letters split
    into known names (``λh`` = λ·h); ``e`` and ``pi`` are constants; any other name is an error.
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
