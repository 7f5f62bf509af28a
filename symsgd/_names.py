r"""How the names in a hand formula resolve to symbols (the name half of :mod:`symsgd.parsing`).

A name is compared after normalising Greek letters (``λ``, ``\lambda``, ``lambda``) and
subscripts (``h_{11}``, ``h_11``, ``h11``); the library's symbols are also reached by the names
and spellings :data:`symsgd.symbols.REGISTRY` lists (``η``/``lr`` the learning rate, ``B`` the
batch size, ...).  An eigen-mode result's matrix names (``H``, ``C``, ``I``) read mode by mode.

>>> normalize(r"\lambda_{1}"), normalize("λ1")
('lambda1', 'lambda1')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import sympy as sp

from .symbols import GREEK_CHARS, GREEK_WORDS, REGISTRY

__all__ = ["NO_TRACES", "Names", "free_name", "library_alias", "mode_matrices", "normalize"]

#: named constants (``e`` is not one: Euler's number is ``\mathrm{e}``, ``e^{…}`` or ``exp``)
_CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi}

#: names that look like the matrices of an eigen-mode result (for a hint in error messages)
_MATRIX_LOOKING = frozenset({"H", "C", "I", "P", "A", "F"})
#: why traces over the modes of minibatch eigen-mode results cannot be read
NO_TRACES = (
    "reading traces over the modes (minibatch LinearRegression.commuting results) is not "
    "supported; compare result.on_modes([...]) on an explicit spectrum, or pass a sympy "
    "expression built from the result's own traces"
)


def normalize(name: str) -> str:
    r"""Canonical spelling of a name: ``\lambda``, ``λ`` -> ``lambda``; ``h_{11}`` -> ``h11``."""
    s = "".join(GREEK_CHARS.get(ch, ch) for ch in name.strip())
    s = re.sub(r"[\\{}_\s]", "", s)
    return re.sub(r"^var(epsilon|theta|phi|rho|sigma)", r"\1", s)


#: normalised name, alias or spelling -> the library symbol it denotes
_SPELLED: dict[str, sp.Symbol] = {
    normalize(name): entry.symbol
    for entry in REGISTRY
    for name in (entry.name, entry.alias, *entry.spellings)
}


def library_alias(name: str) -> sp.Symbol | None:
    r"""The library symbol that ``name`` is an alias of (``λ``, ``\eta``, ``lr`` → the learning
    rate :data:`symsgd.symbols.lr`; see the module docstring), or ``None``.

    >>> library_alias("η"), library_alias("batch_size"), library_alias("h")
    (lambda, S, None)
    """
    return _SPELLED.get(normalize(name))


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
            self.by_norm.setdefault(normalize(s.name), []).append(s)

    def resolve(self, name: str, constants: bool = True) -> sp.Expr | None:
        if name in self.by_raw:
            return self.by_raw[name]
        if name in self.matrices:
            self.used.add(name)
            return self.matrices[name]
        n = normalize(name)
        hits = self.by_norm.get(n, [])
        if len(hits) > 1:
            raise ValueError(
                f"the name {name!r} matches several symbols of the derived result "
                f"({', '.join(s.name for s in hits)}); pass a sympy expression built from them"
            )
        if hits:
            return hits[0]
        library = _SPELLED.get(n)
        if library is not None:
            if not self.context:
                return library
            hits = [s for s in self.known if _SPELLED.get(normalize(s.name)) == library]
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
        if normalize(word) in GREEK_WORDS or re.fullmatch(r"[^\W\d_]\d*", text):
            return sp.Symbol(free_name(text))
        return None

    def unknown_error(self, names: Iterable[str], what: str) -> ValueError:
        listed = ", ".join(s.name for s in self.known) or "no symbols"
        names = sorted(set(names))
        shown = "{" + ", ".join(repr(n) for n in names) + "}"
        if self.matrices:
            listed += " (per mode: " + ", ".join(self.matrices) + ")"
        hint = ""
        if self.matrices and set(names) & {"Tr", "tr", "trace", "Trace", "det"}:
            hint = f"; a trace or determinant sums or multiplies over all modes: {NO_TRACES}"
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


def free_name(name: str) -> str:
    """Spell Greek letters out so the symbol prints as the letter (``λ`` -> ``lambda``)."""
    return "".join(GREEK_CHARS.get(ch, ch) for ch in name)


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
