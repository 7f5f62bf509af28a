r"""LaTeX hand formulas (the LaTeX half of :mod:`symsgd.parsing`): the tokeniser and the
reading of whole documents as :meth:`symsgd.Stationary.latex` prints them — delimiters,
``align``/``equation`` environments, ``lhs = body`` and "where D = …" definitions (also
``\det(x I - H) = x^n - e_1 x^{n-1} + …``, which defines the invariants ``e_k`` of H).

>>> from symsgd._names import Names
>>> read_latex(r"\frac{\eta}{2}", Names(None))
(lambda/2, [])
"""

from __future__ import annotations

import re
from typing import Any

import sympy as sp

from ._grammar import FUNCTIONS, REPLACE, ParseError, Parser, plain_tokens
from ._names import Names, normalize
from .symbols import GREEK_WORDS

__all__ = ["latex_document", "latex_tokens", "read_latex"]

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
    raise ParseError(f"unbalanced '{{' at position {at}")


def _skip_ws(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _flat_word(raw: str) -> str:
    """``\\text{test}`` -> ``test``, ``{11}`` -> ``11``, ``\\lambda`` -> ``lambda``."""
    word = re.sub(r"\\(?:" + "|".join(sorted(_LATEX_WORDS)) + r")\s*", "", raw)
    word = word.replace("\\_", "_").replace("\\", "")
    return re.sub(r"[{}\s]", "", word)


def latex_tokens(text: str) -> list[tuple[str, str, int]]:
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
                raise ParseError(f"a lone '\\' at position {at}")
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
                    raise ParseError(f"\\{cmd} needs an environment name at position {start}")
                env, at = _group(text, at)
                if env.strip() not in _LATEX_MATRICES:
                    raise ParseError(
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
                    raise ParseError(f"\\{cmd} needs a {{...}} argument at position {start}")
                raw, at = _group(text, at)
                word = _flat_word(raw)
                if word == "e" and cmd in ("mathrm", "text", "textrm", "operatorname"):
                    tokens.append(("cmd", "E", start))
                elif word == "T" and last_op() == "^":
                    tokens.append(("cmd", "T", start))
                elif word in FUNCTIONS:
                    tokens.append(("func", word, start))
                elif _WORD_RE.fullmatch(word) and not word.startswith("_"):
                    tokens.append(("name", word, start))
                else:
                    raise ParseError(f"cannot read {text[start:at]!r} as a name")
            elif cmd in _LATEX_FUNCS:
                tokens.append(("func", cmd, start))
            elif cmd in GREEK_WORDS or cmd == "pi":
                tokens.append(("name", cmd, start))
            else:
                raise ParseError(
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
                raise ParseError("a subscript '_' at the end of the formula")
            tokens.append(("sub", raw, at))
            continue
        if ch == "_":
            if not tokens or tokens[-1][0] != "name":
                raise ParseError(f"a subscript '_' must follow a name (position {at})")
            at = _skip_ws(text, at + 1)
            if text.startswith("{", at):
                raw, end = _group(text, at)
            elif (m := _COMMAND_RE.match(text, at)) is not None:
                raw, end = m.group(0), m.end()
            elif at < n:
                raw, end = text[at], at + 1
            else:
                raise ParseError("a subscript '_' at the end of the formula")
            word = _flat_word(raw)
            if not re.fullmatch(r"\w+", word):
                raise ParseError(f"cannot read the subscript {raw!r} at position {at}")
            kind, name, pos = tokens[-1]
            tokens[-1] = (kind, f"{name}_{word}", pos)
            at = end
            continue
        if ch in REPLACE:
            tokens.extend(plain_tokens(REPLACE[ch]))
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
                and word.group() in FUNCTIONS
                and len(word.group()) > 1
                and text.startswith("(", _skip_ws(text, word.end()))
            ):  # exp(x) written without the backslash
                tokens.append(("func", word.group(), at))
                at = word.end()
                continue
            tokens.append(("name", ch, at))
            at += 1
            continue
        raise ParseError(f"unexpected character {ch!r} at position {at}")
    return tokens


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
                raise ParseError(
                    f"unsupported environment {env.group(1)!r} (known: "
                    f"{', '.join(_LATEX_ENVS)} around a formula, pmatrix/bmatrix inside)"
                )
        else:
            s = env.group(2)
    s = " ".join(_top_level_split(s, ("&",))) if env else s
    lines = [p for p in _top_level_split(s, ("\\\\",)) if p.strip()]
    if not lines:
        raise ParseError("the formula is empty")
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
                raise ParseError(f"cannot read the definition {part.strip()!r} (write 'D = …')")
            definitions.append((pieces[0].strip(), pieces[1].strip()))
    pieces = _top_level_split(head, ("=",))
    if len(pieces) > 2:
        raise ParseError("a formula with more than one '=' (write one 'lhs = rhs')")
    lhs = pieces[0].strip() if len(pieces) == 2 else None
    body = pieces[-1].strip().rstrip(".,").strip()
    return lhs, body, definitions


def read_latex(text: str, names: Names) -> tuple[Any, list[str]]:
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
            parser = Parser(latex_tokens(rhs), names, latex=True, defs=defs, tokenize=latex_tokens)
            parser.parse()
            raise ParseError(f"cannot read the definition {name} = {rhs}")
        pending = waiting
    parser = Parser(latex_tokens(body), names, latex=True, defs=defs, tokenize=latex_tokens)
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
        parser = Parser(latex_tokens(rhs), free, latex=True, tokenize=latex_tokens)
        poly = parser.parse()
        x = sp.Symbol("x")
        unknowns = sorted(poly.free_symbols - {x}, key=sp.default_sort_key)
        char = matrix.charpoly(x).as_expr()
        equations = sp.Poly(sp.expand(poly - char), x).all_coeffs()
        solution = sp.solve(equations, unknowns, dict=True)
        if len(solution) != 1 or set(solution[0]) != set(unknowns):
            raise ParseError(
                f"the definition {name} = {rhs} does not determine {', '.join(map(str, unknowns))}"
            )
        for s, value in solution[0].items():
            defs[s.name] = value
            defs[normalize(s.name)] = value
        return
    tokens = latex_tokens(name)
    if len(tokens) != 1 or tokens[0][0] != "name":
        raise ParseError(f"cannot read the definition of {name!r}: define a single name")
    parser = Parser(latex_tokens(rhs), names, latex=True, defs=defs, tokenize=latex_tokens)
    value = parser.parse()
    if parser.unknown:
        raise _Unresolved
    defs[tokens[0][1]] = value
