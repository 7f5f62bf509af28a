r"""Check a hand-derived formula against a derived result.

:func:`verify` answers one question — is the formula on your notepad the same function as the one
symsgd derived? — after :mod:`symsgd.parsing` has read what you typed (plain string or LaTeX, names
matched to the result's symbols by spelling and alias, eigen-mode matrix names read mode by mode).

Two routes decide equality of ``hand`` and ``derived`` (entrywise for matrices):

1. **exact**: ``cancel(together(hand - derived)) == 0`` proves equality of rational functions;
   a non-zero rational remainder with rational coefficients proves they differ;
2. **numeric**: otherwise (square roots, exponentials, huge expressions) both sides are evaluated
   with mpmath at 50 significant digits at random points inside the result's ``conditions``; they
   agree if ``|hand - derived| <= rtol * max(|hand|, |derived|)`` (``rtol = 1e-20``) at every
   point, up to a rounding floor of ``10**(10 - digits)`` times the largest magnitude (1, if
   larger), so ``digits`` below 20 are refused: they would let formulas differing by more than
   1e-10 pass.

    >>> import sympy as sp
    >>> from symsgd.symbols import lr
    >>> h, c = sp.symbols("h c", positive=True)
    >>> print(verify("λ c/(h(2-λh))", lr*c/(h*(2 - lr*h))))
    equal: the hand formula agrees with the derived result (exact cancellation)
"""

from __future__ import annotations

import math
import numbers
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import mpmath
import sympy as sp

from ._result import LATEX_LHS
from ._util import substitute, symbols_in
from .budget import DerivationTimeout, time_limit
from .modes import ModeTrace
from .numeric import mpmath_evaluator
from .parsing import (
    Names,
    latex_document,
    library_alias,
    mode_matrices,
    parse_formula,
    parse_with_names,
)
from .symbols import lookup
from .symbols import lr as _library_lr

__all__ = ["Verdict", "parse_formula", "verify"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verify`; ``bool(verdict)`` is :attr:`equal`.

    ``method`` is ``"exact"`` (decided by cancelling ``hand - derived``), ``"numeric"`` (random
    high-precision points) or ``"shape"`` (the shapes differ).  ``counterexample`` is ``None``
    when equal, else ``{"point": {symbol: value}, "hand": value, "derived": value}`` (plus
    ``"entry": (i, j)`` for matrices); ``hand`` is the parsed hand formula and ``derived`` the
    expression it was compared with — for an eigen-mode result both are per-mode scalars and
    :attr:`modes` says which matrix names were read as eigenvalues.
    """

    equal: bool
    method: str
    counterexample: dict | None
    hand: Any
    derived: Any
    explanation: str = ""
    #: for a hand formula in the matrix names of an eigen-mode result: ``{matrix name:
    #: eigenvalue}`` of the names it used (read mode by mode, see :func:`verify`); else ``None``
    modes: dict | None = None
    #: ``n`` when the comparison was of Taylor series in the learning rate up to O(λⁿ)
    #: (``verify(..., order=n)``), else ``None``
    order: int | None = None

    def __bool__(self) -> bool:
        return self.equal

    def __str__(self) -> str:
        return f"{'equal' if self.equal else 'NOT equal'}: {self.explanation}"


def _small(expr: sp.Basic, limit: int) -> bool:
    for count, _ in enumerate(sp.preorder_traversal(expr)):
        if count > limit:
            return False
    return True


def _exact(hand: list, derived: list, timeout: float | None) -> tuple[str, int | None]:
    """``("zero", None)``, ``("nonzero", index)`` or ``("unknown", None)`` for hand - derived."""
    nonzero: int | None = None
    unknown = False
    try:
        with time_limit(timeout, warn=False):
            for k, (a, b) in enumerate(zip(hand, derived, strict=True)):
                diff = a - b
                if diff == 0:
                    continue
                if not _small(diff, 20_000):
                    unknown = True
                    continue
                diff = sp.cancel(sp.together(diff))
                if diff == 0:
                    continue
                num = sp.numer(diff)
                gens = sorted(num.free_symbols, key=sp.default_sort_key)
                if not gens:
                    rational = bool(num.is_Rational)
                else:
                    try:
                        domain = sp.Poly(num, *gens).domain
                        rational = bool(domain.is_QQ or domain.is_ZZ)
                    except sp.PolynomialError:
                        rational = False
                if rational:
                    nonzero = k
                    break
                unknown = True
    except DerivationTimeout:
        return "unknown", None
    if nonzero is not None:
        return "nonzero", nonzero
    return ("unknown", None) if unknown else ("zero", None)


def _mode_note(matrices: dict[str, sp.Expr], used: set[str]) -> str:
    """How the verdict read the matrix names ``used`` of an eigen-mode formula."""
    order = sorted(used, key=lambda n: (n == "I", list(matrices).index(n)))
    return (
        f"compared mode by mode: {', '.join(order)} read as the eigenvalues "
        f"{', '.join(str(matrices[n]) for n in order)} of one eigen-mode of the commuting "
        f"matrices"
    )


#: the readouts of a result, by name
_READOUTS = tuple(LATEX_LHS)
#: left-hand sides :meth:`symsgd.Stationary.latex` prints (white space removed), and the
#: readout each names; the state covariance Σ_z of a structured form is ``cov`` too
_LHS_READOUT = {re.sub(r"\s+", "", lhs): name for name, lhs in LATEX_LHS.items()} | {
    r"\Sigma_z": "cov",
    r"\Sigma_{z}": "cov",
}


#: the numeric route keeps this many of the ``digits`` for rounding: values closer than
#: ``10**(_SLACK - digits)`` times the largest magnitude count as equal whatever ``rtol`` says
_SLACK = 10
#: the fewest and most significant digits ``verify(digits=...)`` accepts: fewer than 20 would let
#: the rounding floor accept formulas that differ by more than 1e-10; more than 1000 is slow
MIN_DIGITS, MAX_DIGITS = 20, 1000


def _integer(value: Any, name: str, low: int, high: int | None, why: str) -> int:
    """``value`` as an int in [low, high]; a TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer ({why}); got {value!r} ({type(value).__name__})"
        )
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be an integer {allowed} ({why}); got {value}")
    return value


def _real(value: Any, name: str, why: str) -> float:
    """``value`` as a finite float; a TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, sp.Rational, sp.Float)):
        raise TypeError(
            f"{name} must be a real number ({why}); got {value!r} ({type(value).__name__})"
        )
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number ({why}); got {value!r}")
    return out


def _check_options(
    points: Any, rtol: Any, digits: Any, seed: Any, timeout: Any, modes: Any
) -> tuple[int, float, int, float | None]:
    """Validate the keyword options of :func:`verify` (each error names its argument)."""
    points = _integer(points, "points", 1, None, "how many random points the numeric route checks")
    rtol = _real(rtol, "rtol", "the relative tolerance of the numeric route, 0 <= rtol < 1")
    if not 0 <= rtol < 1:
        raise ValueError(
            f"rtol must satisfy 0 <= rtol < 1 (the relative tolerance of the numeric route; a "
            f"tolerance >= 1 accepts any two values of the same sign); got {rtol:g}"
        )
    digits = _integer(
        digits,
        "digits",
        MIN_DIGITS,
        MAX_DIGITS,
        f"significant digits of the numeric route; {_SLACK} of them are kept for rounding, so "
        f"fewer than {MIN_DIGITS} would accept formulas that differ by more than "
        f"1e-{MIN_DIGITS - _SLACK}; more than {MAX_DIGITS} is needlessly slow",
    )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(
            f"seed must be an integer or None (it makes the random points reproducible); got "
            f"{seed!r} ({type(seed).__name__})"
        )
    if timeout is not None:
        timeout = _real(timeout, "timeout", "seconds, > 0; None for no limit")
        if timeout <= 0:
            raise ValueError(
                f"timeout must be a positive number of seconds, or None for no limit; got "
                f"{timeout:g}"
            )
        timeout = min(timeout, 1e8)  # setitimer overflows beyond ~3 years; that is no limit
    if modes is not None and not isinstance(modes, Mapping):
        raise TypeError(
            f"modes must be a mapping {{eigenvalue Symbol: matrix name}} such as "
            f"result.mode_names(), or None; got {modes!r} ({type(modes).__name__})"
        )
    return points, rtol, digits, timeout


def _is_result(derived: Any) -> bool:
    return (
        hasattr(derived, "cov")
        and hasattr(derived, "conditions")
        and not isinstance(derived, (sp.Basic, sp.MatrixBase))
    )


def _readout_of(hand: Any) -> str | None:
    r"""The readout a LaTeX hand formula names on its left-hand side (``\operatorname{Var}[v]
    = …`` -> ``"velocity_cov"``), else ``None``."""
    if not isinstance(hand, str) or "=" not in hand or not _is_latex_text(hand):
        return None
    try:
        lhs = latex_document(hand)[0]
    except ValueError:
        return None
    if lhs is None:
        return None
    return _LHS_READOUT.get(re.sub(r"\s+", "", lhs))


def _is_latex_text(text: str) -> bool:
    return any(ch in text for ch in "\\{}$")


def _unpack(derived: Any, what: str) -> tuple[Any, sp.Basic]:
    if _is_result(derived):
        conditions = derived.conditions
        value = derived.cov if what == "cov" else getattr(derived, what, None)
        if value is None:
            raise ValueError(
                f"what={what!r}: the derived result has no {what}; it has "
                f"{', '.join(w for w in _READOUTS if getattr(derived, w, None) is not None)}"
            )
        return value, sp.true if conditions is None else sp.sympify(conditions, strict=True)
    if isinstance(derived, str):
        raise TypeError("derived must be a sympy expression, a Matrix or a result with .cov")
    return derived, _denominator_region(derived)


def _matrix_definitions(derived: Any, known: set) -> dict[str, Any]:
    """``{"H": Hessian, "C": noise covariance, "I": identity}`` of an explicit-matrix result,
    so that a hand formula may be written in its matrices (as the structured LaTeX is)."""
    landscape = getattr(derived, "landscape", None)
    if landscape is None or getattr(landscape, "eigenmode", True) or not _is_result(derived):
        return {}
    hessian = getattr(landscape, "hessian", None)
    if not isinstance(hessian, sp.MatrixBase):
        return {}
    out: dict[str, Any] = {"H": hessian, "I": sp.eye(hessian.rows)}
    if isinstance(getattr(landscape, "A", None), sp.MatrixBase):
        out["A"] = landscape.A
    noise = getattr(derived, "_noise_matrix", None)
    C = noise() if callable(noise) else None
    if isinstance(C, sp.MatrixBase):
        out["C"] = C
    values = dict(getattr(derived, "values", {}) or {})
    taken = {s.name for s in known}
    return {
        name: sp.ImmutableMatrix(substitute(m, values) if values else m)
        for name, m in out.items()
        if name not in taken
    }


def _denominator_region(derived: Any) -> sp.Basic:
    """For a bare expression (no ``conditions`` known): the region around small learning rates
    where every denominator factor keeps the sign it has there.  For the library's results the
    denominator is the stability polynomial, so this keeps sampled points inside the region
    where the stationary law exists (no negative "variances" as counterexamples)."""
    from .exact import oriented_factor_list

    entries = list(derived) if isinstance(derived, sp.MatrixBase) else [derived]
    region = []
    for entry in entries:
        if not isinstance(entry, sp.Expr) or entry.is_number or sp.count_ops(entry) > 400:
            continue
        den = sp.fraction(sp.together(entry))[1]
        try:
            _, factors = oriented_factor_list(den)
        except (sp.PolificationFailed, sp.PolynomialError):
            continue
        for factor, _power in factors:
            if factor.free_symbols and not factor.is_positive:
                region.append(sp.StrictGreaterThan(factor, 0))
    return sp.And(*region)


def _as_object(value: Any) -> sp.Expr | sp.ImmutableMatrix:
    if isinstance(value, str):
        raise TypeError("derived must be a sympy expression, a Matrix or a result with .cov")
    if isinstance(value, (sp.MatrixBase, list)) or (
        hasattr(value, "shape") and len(getattr(value, "shape", ())) == 2
    ):
        if isinstance(value, sp.MatrixBase):
            return sp.ImmutableMatrix(value)
        rows = value.tolist() if hasattr(value, "tolist") else value
        rows = [r if isinstance(r, (list, tuple)) else [r] for r in rows]
        return sp.ImmutableMatrix([[sp.sympify(e, strict=True) for e in row] for row in rows])
    return sp.sympify(value, strict=True)


def _bounds(key: Any, bounds: Any) -> tuple[sp.Rational, sp.Rational]:
    """``assumptions[key] = (low, high)`` as rationals with low < high (else a clear error)."""
    where = f"assumptions[{key}]"
    if isinstance(bounds, (str, bytes)) or not isinstance(bounds, Iterable):
        raise TypeError(
            f"{where} must be a sampling range (low, high) of two finite numbers; got "
            f"{bounds!r} ({type(bounds).__name__})"
        )
    bounds = tuple(bounds)
    if len(bounds) != 2:
        raise ValueError(
            f"{where} must be a sampling range (low, high) of two finite numbers; got "
            f"{len(bounds)} value{'s' if len(bounds) != 1 else ''}: {bounds!r}"
        )
    try:
        low, high = (_to_rational(b) for b in bounds)
    except (TypeError, ValueError, sp.SympifyError):
        low = high = None
    if not all(isinstance(v, sp.Rational) for v in (low, high)):
        raise ValueError(
            f"{where} = {bounds!r}: both ends must be finite real numbers, like (0, 2)"
        )
    if not low < high:
        raise ValueError(f"{where} = {bounds!r}: need low < high")
    return low, high


def _to_rational(x: Any) -> sp.Rational:
    if isinstance(x, (float, str)):
        return sp.Rational(str(x))  # Rational reads decimal and "p/q" strings without eval
    value = sp.sympify(x, strict=True)
    return value if value.is_Rational else sp.Rational(str(sp.N(value, 30)))


class _Sampler:
    """Random rational points inside ``region``; the learning rate halves until it fits."""

    def __init__(self, symbols: list[sp.Symbol], region: sp.Basic, ranges: dict, seed):
        self.symbols = symbols
        self.region = region
        self.ranges = ranges
        self.rng = random.Random(seed)
        self.shrink = [s for s in symbols if library_alias(s.name) == _library_lr]

    def _draw(self, s: sp.Symbol) -> sp.Rational:
        if s in self.ranges:
            low, high = self.ranges[s]
        else:
            # the library symbol it denotes; decays and momentum are sampled in [0, 1]
            entry = lookup(library_alias(s.name))
            if s.is_integer:
                low = 1 if s.is_positive else 0 if s.is_nonnegative else -64
                high = -1 if s.is_negative else 0 if s.is_nonpositive else 64
            elif entry is not None and entry.unit_interval and not s.is_negative:
                low, high = 0, 1
            elif s.is_nonnegative:
                low, high = 0, 3
            elif s.is_nonpositive:
                low, high = -3, 0
            else:
                low, high = -3, 3
        if s.is_integer:
            return sp.Integer(self.rng.randint(math.ceil(low), math.floor(high)))
        return low + (high - low) * sp.Rational(self.rng.randint(1, 999), 1000)

    def _inside(self, point: dict) -> bool:
        if self.region is sp.true:
            return True
        for part in sp.And.make_args(self.region):  # stop at the first violated condition
            value = substitute(part, point)  # shared subexpressions once
            if not (value is sp.true or value == True):  # noqa: E712 - sympy booleans
                return False
        return True

    def points(self, tries: int = 2000) -> Iterator[dict]:
        """Yield points inside the region; raise ValueError if none is found in ``tries``."""
        found = 0
        for _ in range(tries):
            point = {s: self._draw(s) for s in self.symbols}
            inside = self._inside(point)
            for _halving in range(12 if self.shrink else 0):
                if inside:
                    break
                point = {s: v / 2 if s in self.shrink else v for s, v in point.items()}
                inside = self._inside(point)
            if not inside:
                continue
            found += 1
            yield point
        if not found:
            raise ValueError(
                f"found no point satisfying the conditions {self.region} in {tries} random "
                f"tries; pass assumptions={{symbol: (low, high)}} to say where to sample"
            )


def _mp(value: Any) -> Any:
    return mpmath.mpmathify(value)


def _finite(v: Any) -> bool:
    return (
        bool(mpmath.isfinite(v))
        if not isinstance(v, mpmath.mpc)
        else bool(mpmath.isfinite(v.real) and mpmath.isfinite(v.imag))
    )


def _close(a: Any, b: Any, rtol: float, floor: Any) -> bool:
    return abs(a - b) <= max(rtol * max(abs(a), abs(b)), floor)


def _sym_value(v: Any, digits: int) -> sp.Expr:
    if isinstance(v, mpmath.mpc):
        return sp.Float(v.real, digits) + sp.I * sp.Float(v.imag, digits)
    return sp.Float(v, digits)


def _digits_to_show(a: Any, b: Any, digits: int) -> int:
    """Enough significant digits that the two printed values visibly differ (at least 8)."""
    scale = max(abs(a), abs(b))
    if scale == 0 or a == b:
        return 8
    agree = -mpmath.log10(abs(a - b) / scale)
    return int(min(digits, max(8, int(mpmath.ceil(agree)) + 3)))


def _pretty(symbol: sp.Symbol) -> str:
    return sp.pretty(symbol, use_unicode=True)


def _format_point(point: dict) -> str:
    def show(v: sp.Rational) -> str:
        return str(v) if v.is_Integer else f"{float(v):.6g}"

    return ", ".join(f"{_pretty(s)}={show(v)}" for s, v in point.items()) or "every point"


def _agrees(parsed, target, how: str) -> Verdict:
    """The verdict "equal by exact cancellation"; ``how`` ends the parenthesis."""
    return Verdict(
        True,
        "exact",
        None,
        parsed,
        target,
        f"the hand formula agrees with the derived result (exact cancellation{how}",
    )


def verify(
    hand: Any,
    derived: Any,
    assumptions: Any = None,
    *,
    points: int = 8,
    rtol: float = 1e-20,
    digits: int = 50,
    seed: int | None = 0,
    timeout: float | None = 5.0,
    modes: Mapping | None = None,
    what: str | None = None,
    order: int | None = None,
) -> Verdict:
    r"""Decide whether a hand-derived formula equals a derived result.

    ``hand`` is a sympy Expr/Matrix, a plain string or LaTeX (see
    :func:`~symsgd.parsing.parse_formula`); its names are matched to the symbols of ``derived`` (a
    sympy Expr/Matrix, or an object with ``.cov`` and ``.conditions`` such as
    :class:`symsgd.Stationary`).  Equality is decided

    * exactly when possible: ``cancel(together(hand - derived)) == 0`` (proof), or a non-zero
      rational remainder (proof of the contrary, with a point where the values differ);
    * otherwise at ``points`` random points inside ``conditions`` (and ``assumptions``: a sympy
      Boolean, or ``{symbol: (low, high)}`` sampling ranges), evaluated with mpmath at
      ``digits`` significant digits: equal iff ``|hand - derived| <= rtol·max(|hand|, |derived|)``
      everywhere.  Points are rational; the learning rate is halved until the point is inside.

    ``timeout`` (seconds) bounds reading the hand formula (a ValueError after that; the
    parser's limits — length, nesting, exponent size, see :mod:`symsgd.parsing` — refuse hostile
    input long before), the exact attempt (then the numeric route decides), and the Taylor
    series of ``order=``; ``seed`` makes the points reproducible.

    **Options are checked first**, each error naming its argument: ``points`` an integer
    :math:`\ge 1`; ``rtol`` in [0, 1); ``digits`` an integer from 20 to 1000 (the numeric
    route keeps 10 of them for rounding: values closer than :math:`10^{10-\text{digits}}` times
    the largest magnitude count as equal, and the verdict states that effective tolerance);
    ``timeout`` positive seconds or ``None`` (no limit); ``seed`` an integer or ``None``;
    ``modes`` a mapping or ``None``; ``assumptions`` a sympy condition or ``{symbol: (low,
    high)}`` with finite ends, low < high.

    **What is compared.**  Against a result, ``hand`` is compared with ``result.cov``, or with
    the readout ``what=`` names (``"velocity_cov"``, ``"cross_cov"``, ``"noise_cov"``,
    ``"loss"``, ``"test_loss"``).  LaTeX whose left-hand side is one that
    :meth:`~symsgd.Stationary.latex` prints (``\operatorname{Var}[v] = …``, ``\mathbb{E}[L] =
    …``) picks that readout when ``what`` is not given, so ``verify(result.latex(what=w,
    env="align"), result)`` compares the right thing; an explicit ``what`` wins.  Everything
    ``latex()`` prints reads back: the ``\frac{g}{D}\begin{pmatrix}…\end{pmatrix}`` layout with
    "where D = …", the structured ``\frac{λ}{D}\Bigl[…\Bigr]`` form with ``D`` and the
    invariants ``e_k`` of H defined after "where", ``\operatorname{Tr}[…]`` over eigen-modes,
    and ``\left``/``\big``/``\Bigl``… delimiters.

    **Small-λ expansions.**  ``order=n`` compares the Taylor series of both sides in the
    learning rate (the derived result's learning-rate symbol; the hand formula may write it λ, η
    or lr) up to and excluding order n: a hand formula that is an expansion agrees to
    :math:`O(\lambda^n)`.  The verdict's ``method`` then starts with ``"series O(λ^n)"``,
    :attr:`Verdict.order` is n, and a disagreement names the lowest differing coefficient.

    **Euler's number** is ``\mathrm{e}``, ``e^{…}`` (also ``e^x`` in plain strings) or
    ``exp(…)``; a lone ``e`` is a plain symbol (an unknown name against a result without one),
    so ``2e`` never silently means 2·2.718….

    **Explicit matrices.**  Against an explicit result (``Quadratic(Matrix(...))``), the names
    ``H`` (the Hessian; ``A`` for ``LinearRegression``), ``C`` (the additive noise covariance) and
    ``I`` stand for the problem's matrices, unless the result has scalar symbols so named:
    ``λ[H(2I - λH)]^{-1}`` is read as matrix algebra, in the order written.

    **Eigen-mode results** (``Quadratic.commuting``, ...) are matrix functions
    :math:`f(H, C, \dots)` of commuting matrices that share their eigenvectors, so on each
    eigen-mode the formula is the scalar function :math:`f(h, c, \dots)` of that mode's
    eigenvalues.  When ``derived`` is such a result, the hand formula may be written in its
    matrix names (``result.mode_names()``: H, C, P, A, F, ``C^{1/2}``, ...; ``I`` the
    identity): it is read mode by mode — ``H`` → h, ``C`` → c, ``I`` → 1, ``X^{-1}`` → 1/x,
    products commute — and compared with the per-mode result as above, e.g.
    :math:`\lambda[H(2I - \lambda H)]^{-1}C` → :math:`\lambda c/(h(2 - \lambda h))`.  The
    verdict then says so (and :attr:`Verdict.modes` lists the matrix names read).  ``modes``
    (``{eigenvalue symbol: matrix name}``, e.g. ``result.mode_names()``) does the same for a bare
    expression such as ``result.cov``; ``modes={}`` turns the reading off.  Explicit matrices are
    never read this way (their ``H`` is not a scalar).

    >>> import sympy as sp
    >>> from symsgd.symbols import lr
    >>> h, c = sp.symbols("h c", positive=True)
    >>> exact = lr*c/(h*(2 - lr*h))
    >>> print(verify(r"\frac{\eta c}{h(2-\eta h)}", exact))
    equal: the hand formula agrees with the derived result (exact cancellation)
    >>> v = verify("lr c/(2h)", exact)          # the continuous-time (SDE) answer
    >>> bool(v), v.method, sorted(v.counterexample)
    (False, 'exact', ['derived', 'hand', 'point'])
    >>> verify("sqrt(λh + 2 sqrt(λh) + 1)", 1 + sp.sqrt(lr*h)).method  # √ defeats cancel
    'numeric'
    >>> import symsgd as ss
    >>> modes = ss.stationary(ss.SGD(lr), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
    >>> v = verify(r"\lambda [H(2I - \lambda H)]^{-1} C", modes)
    >>> print(v)  # doctest: +NORMALIZE_WHITESPACE
    equal: the hand formula agrees with the derived result (exact cancellation); compared mode
    by mode: H, C, I read as the eigenvalues h, c, 1 of one eigen-mode of the commuting matrices
    >>> v.hand == lr*c/(h*(2 - lr*h)), v.modes  # the per-mode scalar, and what was read
    (True, {'C': c, 'H': h, 'I': 1})
    >>> verify(r"\frac{\lambda c}{2h} + \frac{\lambda^2 c}{4}", modes, order=3).method
    'series O(λ^3), exact'
    >>> bool(verify(modes.latex(what="velocity_cov", env="align"), modes))
    True

    Too few digits would let the rounding floor swallow a factor of two, so they are refused:

    >>> verify("2 sqrt(1 + λh)", sp.sqrt(1 + lr*h), digits=5)
    Traceback (most recent call last):
    ...
    ValueError: digits must be an integer between 20 and 1000 (significant digits of ...; got 5
    """
    points, rtol, digits, timeout = _check_options(points, rtol, digits, seed, timeout, modes)
    if what is None:
        what = (_readout_of(hand) if _is_result(derived) else None) or "cov"
    if what not in _READOUTS:
        raise ValueError(f"what must be one of {', '.join(map(repr, _READOUTS))}; got {what!r}")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 1):
        raise ValueError(
            f"order must be a positive integer (agreement up to O(λ^order)); got {order!r}"
        )
    matrices = mode_matrices(derived if modes is None else modes)
    target, conditions = _unpack(derived, what)
    target = _as_object(target)

    ranges_in: dict = {}
    region_extra: sp.Basic = sp.true
    if isinstance(assumptions, Mapping):
        ranges_in = dict(assumptions)
    elif assumptions is not None:
        try:
            region_extra = sp.sympify(assumptions, strict=True)
        except (sp.SympifyError, TypeError, ValueError):
            region_extra = None
        if not isinstance(region_extra, sp.logic.boolalg.Boolean) or isinstance(
            region_extra, sp.Symbol
        ):
            raise TypeError(
                "assumptions must be a sympy condition such as sp.And(h > 0, lr < 1), or a "
                f"mapping {{symbol: (low, high)}} of sampling ranges; got {assumptions!r} "
                f"({type(assumptions).__name__})"
            )
    range_syms = [k for k in ranges_in if isinstance(k, sp.Symbol)]
    known = symbols_in(target) | set(conditions.free_symbols) | set(range_syms)
    names = Names(known, matrices)
    names.definitions = _matrix_definitions(derived, known) if not matrices else {}
    if getattr(getattr(derived, "landscape", None), "eigenmode", True):
        names.matrix_hint = (
            "; to read a matrix-function formula (H, C, I, ...) of an eigen-mode result "
            "(Quadratic.commuting, ...) mode by mode, pass the result itself, "
            "verify(hand, result), or modes=result.mode_names()"
        )
    else:
        names.matrix_hint = (
            "; this result has explicit matrices: write the hand formula in their entries (a "
            "[[.., ..], [.., ..]] matrix for a matrix result) or in its matrices "
            f"{', '.join(sorted(names.definitions)) or '(none known)'}"
        )
    what_name = "the derived result"
    parsed = _parse_in_time(hand, names, what_name, timeout)
    used = set(names.used)

    # assumptions name symbols by object or by name; bring them onto the derived symbols
    ranges: dict[sp.Symbol, tuple] = {}
    for key, bounds in ranges_in.items():
        found = names.resolve(key.name if isinstance(key, sp.Symbol) else str(key))
        if not isinstance(found, sp.Symbol):
            raise names.unknown_error([str(key)], what_name)
        low, high = _bounds(key, bounds)
        ranges[found] = (low, high)
    if region_extra is not sp.true:
        mapping = {}
        for s in region_extra.free_symbols:
            found = names.resolve(s.name)
            if found is None:
                raise names.unknown_error([s.name], what_name)
            mapping[s] = found
        region_extra = region_extra.xreplace(mapping)
    region = sp.And(conditions, region_extra)

    if order is not None:
        lr_symbol = names.resolve("lr")
        if not isinstance(lr_symbol, sp.Symbol):
            raise ValueError(
                f"order={order} compares Taylor series in the learning rate, but the derived "
                f"result has no learning-rate symbol (it uses "
                f"{', '.join(sorted(s.name for s in known)) or 'no symbols'})"
            )
        parsed, target = _series_pair(parsed, target, derived, what, lr_symbol, order, timeout)

    verdict = _decide(
        parsed,
        target,
        region,
        ranges,
        points=points,
        rtol=rtol,
        digits=digits,
        seed=seed,
        timeout=timeout,
        traces=[m for n, m in matrices.items() if n != "I" and isinstance(m, sp.Symbol)]
        or not _is_result(derived),
    )
    if order is not None:
        power = f"{_pretty(lr_symbol)}^{order}" if order > 1 else _pretty(lr_symbol)
        first = "" if verdict.equal else _first_difference(parsed, target, lr_symbol, timeout)
        verdict = replace(
            verdict,
            method=f"series O({power}), {verdict.method}",
            order=order,
            explanation=(
                f"Taylor series in {_pretty(lr_symbol)} up to and excluding order {order} "
                f"(terms before O({power})): {first}{verdict.explanation}"
            ),
        )
    if what != "cov":
        verdict = replace(verdict, explanation=f"{verdict.explanation} [compared with {what}]")
    if not used:  # written in eigenvalues (or not an eigen-mode result): nothing was reread
        return verdict
    return replace(
        verdict,
        explanation=f"{verdict.explanation}; {_mode_note(matrices, used)}",
        modes={name: matrices[name] for name in sorted(used)},
    )


class _ParseTimeout(ValueError):
    pass


def _parse_in_time(hand: Any, names: Names, what: str, timeout: float | None) -> Any:
    """:func:`~symsgd.parsing.parse_with_names` within ``timeout`` seconds (a ValueError
    after that; the parser's own limits normally refuse a hostile input much sooner)."""
    try:
        with time_limit(timeout, warn=False):
            return parse_with_names(hand, names, what)
    except DerivationTimeout:
        raise ValueError(
            f"reading the hand formula took longer than timeout={timeout} s; simplify it or "
            f"pass a larger timeout"
        ) from None


def _series_pair(
    hand: Any, target: Any, derived: Any, what: str, lr: sp.Symbol, order: int, timeout
) -> tuple[Any, Any]:
    """Taylor polynomials in ``lr`` of both sides, up to and excluding ``lr**order``."""

    def taylor(value: Any) -> Any:
        if isinstance(value, sp.MatrixBase):
            return sp.ImmutableMatrix(value.applyfunc(taylor))
        value = sp.sympify(value)
        if lr not in value.free_symbols:
            return value
        return sp.series(value, lr, 0, order).removeO()

    try:
        with time_limit(timeout, warn=False):
            left = taylor(hand)
            series = getattr(derived, "series", None)
            if what == "cov" and _is_result(derived) and callable(series):
                right = series(lr, order)
                if isinstance(target, sp.MatrixBase) and not isinstance(right, sp.MatrixBase):
                    right = sp.ImmutableMatrix([[right]])
                right = taylor(right) if not isinstance(right, sp.MatrixBase) else right
            else:
                right = taylor(target)
    except DerivationTimeout:
        raise ValueError(
            f"the Taylor series to order {order} took longer than timeout={timeout} s; pass a "
            f"larger timeout or compare at a lower order"
        ) from None
    if isinstance(right, sp.MatrixBase):
        right = sp.ImmutableMatrix(right)
    return left, right


def _first_difference(hand: Any, target: Any, lr: sp.Symbol, timeout: float | None) -> str:
    """``"the λ^k coefficients differ (…): "`` for the lowest power of ``lr`` at which two
    Taylor polynomials differ, or ``""`` when that is too costly to find."""
    pairs = list(zip(hand, target)) if isinstance(hand, sp.MatrixBase) else [(hand, target)]
    cols = hand.cols if isinstance(hand, sp.MatrixBase) else 1
    name = _pretty(lr)
    try:
        with time_limit(timeout, warn=False):
            for k in range(64):
                for index, (a, b) in enumerate(pairs):
                    if not (_small(a, 2_000) and _small(b, 2_000)):
                        return ""
                    ca = sp.cancel(sp.diff(a, lr, k).subs(lr, 0) / sp.factorial(k))
                    cb = sp.cancel(sp.diff(b, lr, k).subs(lr, 0) / sp.factorial(k))
                    if sp.cancel(ca - cb) != 0:
                        where = f" in entry {divmod(index, cols)}" if cols > 1 or index else ""
                        power = "1" if k == 0 else name if k == 1 else f"{name}^{k}"
                        return (
                            f"the {power} coefficients differ{where} (hand {sp.sstr(ca)}, "
                            f"derived {sp.sstr(cb)}); "
                        )
    except DerivationTimeout:
        return ""
    return ""


def _opaque_traces(entries: list) -> dict:
    """``{ModeTrace: Dummy}``, one Dummy per trace function (bodies compared after
    cancelling)."""
    out: dict = {}
    keys: list[tuple[sp.Expr, sp.Dummy]] = []
    x = sp.Dummy("x")
    for e in entries:
        if not isinstance(e, sp.Basic):
            continue
        for t in e.atoms(ModeTrace):
            body = t.args[0]
            key = sp.cancel(body.expr.xreplace({body.variables[0]: x}))
            for k, d in keys:
                if k == key:
                    out[t] = d
                    break
            else:
                d = sp.Dummy(f"Tr{len(keys)}")
                keys.append((key, d))
                out[t] = d
    return out


def _expand_on_spectrum(entries: list, modes: list) -> tuple[dict, list]:
    """``{ModeTrace: its sum over three modes}`` and the eigenvalues used: the trace's own mode
    eigenvalue (one of ``modes``, the eigenvalue symbols of the result) and two more like it."""
    out: dict = {}
    used: list = []
    for e in entries:
        if not isinstance(e, sp.Basic):
            continue
        for t in e.atoms(ModeTrace):
            x = t.args[0].variables[0]
            named = [m for m in modes if m.name == x.name.lstrip("_")]
            if named:
                mode = named[0]
            elif len(modes) == 1:
                mode = modes[0]
            else:
                mode = sp.Symbol(x.name.lstrip("_"), **x.assumptions0)
            spectrum = [mode] + [sp.Symbol(f"{mode.name}_{k}", **mode.assumptions0) for k in (2, 3)]
            out[t] = sp.Add(*[t.args[0](v) for v in spectrum])
            used += [v for v in spectrum if v not in used]
    return out, used


def _decide(
    parsed: Any,
    target: Any,
    region: sp.Basic,
    ranges: dict,
    *,
    points: int,
    rtol: float,
    digits: int,
    seed: int | None,
    timeout: float | None,
    traces: Any = True,
) -> Verdict:
    """The comparison of :func:`verify` once both sides are sympy objects on the same symbols
    (``traces``: false if they cannot contain traces over eigen-modes, else the eigenvalue
    symbols of the modes, or ``True`` when unknown)."""
    # shapes
    h_mat, d_mat = isinstance(parsed, sp.MatrixBase), isinstance(target, sp.MatrixBase)
    if h_mat and parsed.shape == (1, 1) and not d_mat:
        parsed = parsed[0, 0]
        h_mat = False
    if d_mat and target.shape == (1, 1) and not h_mat:
        target = target[0, 0]
        d_mat = False
    if h_mat != d_mat or (h_mat and parsed.shape != target.shape):

        def describe(x: Any) -> str:
            return f"a {x.rows}×{x.cols} matrix" if isinstance(x, sp.MatrixBase) else "a scalar"

        return Verdict(
            False,
            "shape",
            None,
            parsed,
            target,
            f"the hand formula is {describe(parsed)} but the derived result is {describe(target)}",
        )
    hand_entries = list(parsed) if h_mat else [parsed]
    target_entries = list(target) if d_mat else [target]
    cols = target.cols if d_mat else 1

    traces_note = ""
    if traces and any(
        e.has(ModeTrace) for e in hand_entries + target_entries if isinstance(e, sp.Basic)
    ):
        # traces over the modes: equal as functions of the traces (each distinct trace one
        # unknown) proves equality; otherwise compare on a three-mode spectrum
        opaque = _opaque_traces(hand_entries + target_entries)
        status, _ = _exact(
            [e.xreplace(opaque) for e in hand_entries],
            [e.xreplace(opaque) for e in target_entries],
            timeout,
        )
        if status == "zero":
            return _agrees(parsed, target, ", each trace over the modes taken as one unknown)")
        expanded, spectrum = _expand_on_spectrum(
            [*hand_entries, *target_entries, region], traces if isinstance(traces, list) else []
        )
        hand_entries = [e.xreplace(expanded) for e in hand_entries]
        target_entries = [e.xreplace(expanded) for e in target_entries]
        region = region.xreplace(expanded)
        traces_note = (
            f" (traces over the modes expanded on the spectrum {', '.join(map(str, spectrum))})"
        )

    status, _ = _exact(hand_entries, target_entries, timeout)
    if status == "zero":
        caveat = (
            "; traces that differ as functions may still agree on more modes, so this is "
            "evidence on three modes, not a proof)"
        )
        return _agrees(parsed, target, f"{traces_note}{caveat}" if traces_note else ")")

    symbols = sorted(
        set().union(*(symbols_in(e) for e in hand_entries + target_entries))
        | set(region.free_symbols)
        | set(ranges),
        key=sp.default_sort_key,
    )
    used = [s for s in symbols if isinstance(s, sp.Symbol)]
    f_hand = mpmath_evaluator(used, hand_entries)
    f_target = mpmath_evaluator(used, target_entries)
    sampler = _Sampler(used, region, ranges, seed)
    floor = mpmath.mpf(10) ** (_SLACK - digits)
    method = "exact" if status == "nonzero" else "numeric"
    checked = 0
    try:
        for point in sampler.points():
            values = [point[s] for s in used]
            with mpmath.workdps(digits):
                try:
                    hv = [_mp(v) for v in f_hand(values)]
                    dv = [_mp(v) for v in f_target(values)]
                except (ZeroDivisionError, ValueError, OverflowError):
                    continue  # a pole or a branch cut: draw another point
                if not all(_finite(v) for v in hv + dv):
                    continue
                scale = max([abs(v) for v in hv + dv] + [mpmath.mpf(1)])
                for k, (a, b) in enumerate(zip(hv, dv, strict=True)):
                    if not _close(a, b, rtol, floor * scale):
                        cex: dict[str, Any] = {
                            "point": dict(point),
                            "hand": _sym_value(a, min(digits, 30)),
                            "derived": _sym_value(b, min(digits, 30)),
                        }
                        shown = _digits_to_show(a, b, digits)
                        entry = ""
                        if d_mat:
                            cex["entry"] = divmod(k, cols)
                            entry = f" in entry {cex['entry']}"
                        how = (
                            "exact: hand - derived cancels to a non-zero rational function"
                            if method == "exact"
                            else f"numeric, {digits} digits"
                        )
                        return Verdict(
                            False,
                            method,
                            cex,
                            parsed,
                            target,
                            f"at {_format_point(point)} the hand formula gives "
                            f"{mpmath.nstr(a, shown)} but the derived result gives "
                            f"{mpmath.nstr(b, shown)}{entry} ({how}){traces_note}",
                        )
            checked += 1
            if checked >= (points if method == "numeric" else max(points, 64)) or not used:
                break
    except ValueError:
        if method != "exact":
            raise
    if method == "exact":
        return Verdict(
            False,
            "exact",
            None,
            parsed,
            target,
            "hand - derived cancels to a non-zero rational function (exact); no sample point "
            "inside the conditions separated them numerically",
        )
    if checked == 0:
        raise ValueError(
            "could not evaluate the formulas at any point inside the conditions (poles or "
            "branch cuts everywhere tried); pass assumptions={symbol: (low, high)}"
        )
    return Verdict(
        True,
        "numeric",
        None,
        parsed,
        target,
        f"the hand formula agrees with the derived result at {checked} random point"
        f"{'s' if checked != 1 else ''} inside the conditions (relative difference <= "
        f"{max(rtol, 10.0 ** (_SLACK - digits)):g} at {digits} digits; numeric evidence, not a "
        "proof)",
    )
