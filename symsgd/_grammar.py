r"""The grammar of hand formulas (the reading half of :mod:`symsgd.parsing`): one small
recursive-descent parser, never ``eval``, over tokens ``(kind, text, position)``; this module
also tokenises plain strings (:mod:`symsgd._latex_reader` tokenises LaTeX).

Every input is read in time linear in its length or refused: see the limits below.

>>> from symsgd._names import Names
>>> Parser(plain_tokens("2 x^2 + lr"), Names(None)).parse()
lambda + 2*x**2
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping
from typing import Any

import sympy as sp

from ._names import NO_TRACES, Names, free_name

__all__ = [
    "FUNCTIONS",
    "MAX_BITS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "REPLACE",
    "ParseError",
    "Parser",
    "check_limits",
    "matrix_of",
    "plain_tokens",
    "read_plain",
]

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


class ParseError(ValueError):
    pass


def check_limits(text: str) -> None:
    """Length and nesting depth, checked in one pass before parsing."""
    if len(text) > MAX_LENGTH:
        raise ParseError(
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
        raise ParseError(
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
        raise ParseError("an exponent must be a scalar")
    exponent = sp.sympify(exponent)
    if exponent.is_Number and exponent.is_Rational:
        top = abs(exponent.p) + (exponent.q if not exponent.is_Integer else 0)
        if isinstance(base, sp.Expr) and base.is_Rational and base not in (0, 1, -1):
            if _bits(base) * abs(exponent) > MAX_BITS:
                raise ParseError(
                    f"{base}^{exponent} is too large: powers of numbers may have at most "
                    f"{MAX_BITS} bits (symsgd.parsing.MAX_BITS)"
                )
        elif top > MAX_EXPONENT and not (isinstance(base, sp.Expr) and base in (0, 1, -1)):
            raise ParseError(
                f"the exponent {exponent} is too large: exponents may be at most "
                f"{MAX_EXPONENT} in size (symsgd.parsing.MAX_EXPONENT)"
            )
    elif isinstance(base, sp.MatrixBase):
        raise ParseError(f"a matrix can only be raised to an integer power, not {exponent}")
    if isinstance(base, sp.MatrixBase):
        if not base.is_square:
            raise ParseError("only a square matrix has powers")
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

REPLACE = {"²": "^2", "³": "^3", "·": "*", "⋅": "*", "×": "*", "−": "-", "–": "-"}


def _number(text: str) -> sp.Rational:
    exponent = text.lower().partition("e")[2]
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise ParseError(
            f"the number {text} is too large: a decimal exponent may be at most {MAX_EXPONENT} "
            f"(symsgd.parsing.MAX_EXPONENT)"
        )
    return sp.Rational(text)


def plain_tokens(text: str) -> list[tuple[str, str, int]]:
    for old, new in REPLACE.items():
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
            raise ParseError(f"{why} at position {at}")
        kind = m.lastgroup or ""
        if kind == "name":
            word = m.group()
            if word.startswith("_") or "__" in word:
                raise ParseError(f"names starting with '_' are not allowed ({word!r})")
            if keyword.iskeyword(word) and word != "lambda":
                raise ParseError(f"{word!r} is a Python keyword, not part of a formula")
            if word in FUNCTIONS:
                kind = "func"
        if kind != "ws":
            tokens.append((kind, m.group(), at))
        at = m.end()
    return tokens


# --------------------------------------------------------------------------------------------
# the grammar (a recursive-descent parser, no eval)
# --------------------------------------------------------------------------------------------


class _List(list):
    """A bracketed list in a plain formula; arithmetic on it is an error, not list repetition."""

    def _no_arithmetic(self, *args: Any) -> Any:
        raise ParseError("a bracketed list [..] can only be a whole matrix, like [[a, b], [c, d]]")

    __add__ = __radd__ = __iadd__ = __sub__ = __rsub__ = _no_arithmetic
    __mul__ = __rmul__ = __imul__ = __truediv__ = __rtruediv__ = _no_arithmetic
    __pow__ = __rpow__ = __neg__ = __pos__ = _no_arithmetic
    __hash__ = None  # type: ignore[assignment]


def matrix_of(items: list) -> sp.ImmutableMatrix:
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


FUNCTIONS: dict[str, tuple[Callable, int, int | None]] = {
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
    "Matrix": _fn(lambda rows: matrix_of(rows), 1),
}
_TRACES = frozenset({"tr", "Tr", "trace", "Trace"})


def _product(values: list) -> Any:
    out = values[0]
    for v in values[1:]:
        out = out * v
    return out


class Parser:
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
        tokenize: Callable[[str], list[tuple[str, str, int]]] | None = None,
    ):
        self.names = names
        self.latex = latex
        #: reads the raw text of a subscript (``\log_{2}``) into tokens (LaTeX only)
        self.tokenize = tokenize
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
            raise ParseError(f"expected {op!r} but found {where}")

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
            raise ParseError(
                f"the formula is nested more than {MAX_DEPTH} levels deep (brackets, signs and "
                f"powers; symsgd.parsing.MAX_DEPTH)"
            )

    # -- grammar
    def parse(self) -> Any:
        if not self.tokens:
            raise ParseError("the formula is empty")
        value = self._expr()
        tok = self._peek()
        if tok is not None:
            raise ParseError(f"unexpected {tok[1]!r} at position {tok[2]}")
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
                    raise ParseError("cannot divide by a matrix; write X^{-1}")
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
                raise ParseError("a double superscript: write {a^{b}}^{c} or a^{b c}")
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
                    raise ParseError("write a power of a transpose as {X^{\\top}}^{k}")
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
            raise ParseError("the formula ends too early")
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
        raise ParseError(f"unexpected {text!r} at position {at}")

    def _command(self, text: str, at: int) -> Any:
        if text == "E":
            return sp.E
        if text == "frac":
            num = self._group_arg()
            den = self._group_arg()
            if isinstance(den, sp.MatrixBase):
                raise ParseError("cannot divide by a matrix; write X^{-1}")
            return num / den
        if text == "sqrt":
            index = None
            if self._accept("[") is not None:
                index = self._expr()
                self._expect("]")
            value = self._group_arg()
            if isinstance(value, sp.MatrixBase):
                raise ParseError("\\sqrt of a matrix is not supported")
            return sp.sqrt(value) if index is None else sp.root(value, index)
        if text == "begin":
            return self._matrix()
        shown = "\\top" if text == "T" else text
        raise ParseError(f"unexpected {shown!r} at position {at}")

    def _matrix(self) -> sp.ImmutableMatrix:
        rows: list[list] = [[]]
        while True:
            if self._is_cmd("end"):
                self.pos += 1
                break
            if self._peek() is None:
                raise ParseError("\\begin{pmatrix} without \\end{pmatrix}")
            rows[-1].append(self._expr())
            if self._accept("&") is not None:
                continue
            if self._accept("\\\\") is not None:
                rows.append([])
                continue
            if not self._is_cmd("end"):
                tok = self._peek()
                raise ParseError(f"unexpected {tok[1]!r} at position {tok[2]} in a matrix")
        rows = [r for r in rows if r]
        if not rows or len({len(r) for r in rows}) != 1:
            raise ParseError("the matrix rows have different lengths")
        if any(isinstance(x, sp.MatrixBase) for r in rows for x in r):
            raise ParseError("a matrix entry is itself a matrix")
        return sp.ImmutableMatrix(rows)

    def _args(self, close: str) -> list:
        items = [self._expr()]
        while self._accept(",") is not None:
            items.append(self._expr())
        self._expect(close)
        return items

    def _call(self, word: str, at: int) -> Any:
        f, low, high = FUNCTIONS[word]
        base = power = None
        if self._peek() is not None and self._peek()[0] == "sub":  # \log_{2}
            raw = self._peek()[1]
            self.pos += 1
            if word != "log" or self.tokenize is None:
                raise ParseError(f"a subscript on \\{word} is not supported")
            sub = Parser(
                self.tokenize(raw), self.names, latex=True, defs=self.defs, tokenize=self.tokenize
            )
            sub.depth = self.depth
            base = sub.parse()
            self.unknown += sub.unknown
        if self.latex and self._accept("^") is not None:  # \sin^{2}(x) = (sin x)^2
            power = self._exponent()
            if isinstance(power, sp.Expr) and power.is_number and power.is_negative:
                raise ParseError(
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
            raise ParseError(f"the function {word} needs parentheses: {word}(...)")
        if len(args) < low or (high is not None and len(args) > high):
            raise ParseError(f"{word}() takes {low}{'' if high == low else '+'} argument(s)")
        if self.names.matrices and word in _TRACES:
            return self._mode_trace(args[0], word)
        if f is _det and self.names.matrices:
            raise ParseError(
                f"{word}() multiplies over all eigen-modes, so it cannot be read mode by mode; "
                f"{NO_TRACES}"
            )
        if any(isinstance(a, sp.MatrixBase) for a in args) and f not in (_trace, _det):
            if not all(isinstance(a, sp.MatrixBase) and a.shape == (1, 1) for a in args):
                raise ParseError(f"{word}() of a matrix is not supported")
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
            raise ParseError(
                f"{word}[...] must be a function of one mode matrix to be read mode by mode "
                f"(found {len(modes)}); {NO_TRACES}"
            )
        mode = modes.pop()
        others = [n for n, s in self.names.matrices.items() if n != "I" and s != mode]
        if sp.sympify(body) == mode and others:
            # Tr of the identity function does not record which matrix it sums (a sympy Lambda
            # x -> x forgets its variable), so Tr[H] and Tr[C] would read alike
            raise ParseError(
                f"{word}[X] of a lone mode matrix cannot be told apart from the other mode "
                f"matrices ({', '.join(others)}) of this result; {NO_TRACES}"
            )
        return mode_trace(sp.sympify(body), mode)

    def _name(self, word: str, at: int) -> list:
        if word in self.defs:
            return [self.defs[word]]
        if word in FUNCTIONS and word not in self.names.by_raw:
            return [self._call(word, at)]
        found = self.names.resolve(word)
        if found is None and word == "e":
            nxt = self._peek()
            if nxt is not None and nxt[1] in ("^", "**"):  # e^{x} is exp(x)
                self.pos += 1
                exponent = self._exponent()
                if isinstance(exponent, (sp.MatrixBase, _Transpose)):
                    raise ParseError("e^{...} needs a scalar exponent")
                return [sp.exp(exponent)]
        if found is not None:
            return [found]
        pieces = None if self.latex else self.names.split(word)
        if pieces is not None:
            return pieces
        if self.names.context:
            self.unknown.append(word)
            return [sp.Dummy(word)]
        return [sp.Symbol(free_name(word))]


# --------------------------------------------------------------------------------------------


def read_plain(text: str, names: Names) -> tuple[Any, list[str]]:
    """Read a plain formula: ``(value, unknown names)``; ``lhs = rhs`` reads as ``rhs``."""
    body = text
    if body.count("=") == 1:  # "Var = ..." reads as its right-hand side
        body = body.split("=")[1]
    defs = dict(getattr(names, "definitions", {}) or {})
    parser = Parser(plain_tokens(body), names, defs=defs)
    return parser.parse(), parser.unknown
