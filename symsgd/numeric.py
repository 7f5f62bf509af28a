"""Fast numeric functions from symbolic results.

:func:`lambdify_result` turns a set of sympy expressions / matrices (sharing free symbols) into a
:class:`NumericFunction`: keyword arguments by symbol name (``str(symbol)``) or, for library
symbols, their Python alias (``lr``, ``momentum``, ...); numpy inputs broadcast; common
subexpressions are eliminated once for all outputs; the stability conditions are evaluated at every
point and violated points raise :class:`~symsgd.UnstableError` (or become NaN on request).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from ._util import symbols_in
from .domain import check_values
from .errors import UnstableError
from .symbols import canonical_name, lookup

__all__ = ["NumericFunction", "lambdify_result", "mpmath_evaluator", "resolve_values"]


def _with_alias(name: str, joint: str = "alias") -> str:
    """``"lambda (alias lr)"`` for a library symbol's name, else the name."""
    entry = lookup(name)
    return f"{name} ({joint} {entry.alias})" if entry is not None else name


def _names(symbols) -> dict[str, sp.Symbol]:
    out: dict[str, sp.Symbol] = {}
    for s in sorted(symbols, key=str):
        name = str(s)
        if name in out and out[name] != s:
            raise ValueError(
                f"two different symbols are both named {name!r} (with different assumptions); "
                f"rename one so numeric functions can tell them apart."
            )
        out[name] = s
    return out


def resolve_values(values: Mapping, symbols) -> dict[sp.Symbol, object]:
    """Map ``{symbol or name or alias: value}`` onto the given symbols.

    Unknown names raise ``ValueError`` listing the names that are accepted.
    """
    by_name = _names(symbols)
    out: dict[sp.Symbol, object] = {}
    for key, value in values.items():
        name = str(key) if isinstance(key, sp.Symbol) else canonical_name(str(key))
        if name not in by_name:
            accepted = ", ".join(_with_alias(n) for n in by_name)
            raise ValueError(f"unknown parameter {key!r}; this result depends on: {accepted}.")
        out[by_name[name]] = value
    return out


_NUMPY_FUNCTIONS = {
    sp.exp: "exp",
    sp.log: "log",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.tan: "tan",
    sp.Abs: "abs",
}


class _Unsupported(Exception):
    pass


def numpy_source(symbols: list, exprs: list) -> str:
    """Python source of ``def f(x0, x1, ...): return [e0, e1, ...]`` evaluating ``exprs`` with
    numpy, written straight from the expression trees.

    sympy's printers sort the terms of every sum, which takes seconds on the ~10⁴-term
    polynomials of fully symbolic matrix results; this walks each tree once, in its stored order,
    and names every repeated subexpression once (common-subexpression elimination by structural
    equality).  Only rational functions, powers and ``exp``/``log``/``sin``/``cos``/``tan``/
    ``Abs`` are written; anything else raises ``_Unsupported``.

    >>> x, y = sp.symbols("x y")
    >>> print(numpy_source([x, y], [(x + y) ** 2 / (x + y + 1) + sp.sqrt(x + y)]))
    def f(x0, x1):
        _t0 = x0 + x1
        return [_t0**0.5 + (_t0**2)*((1.0 + x0 + x1)**-1)]
    """
    args = {s: f"x{k}" for k, s in enumerate(symbols)}
    counts: dict = {}
    stack = list(exprs)
    while stack:
        node = stack.pop()
        if node.is_Atom:
            continue
        counts[node] = counts.get(node, 0) + 1
        if counts[node] == 1:
            stack.extend(node.args)
    lines: list[str] = []
    names: dict = {}

    def emit(node) -> str:
        if node in names:
            return names[node]
        if node.is_Symbol:
            if node not in args:
                raise _Unsupported(node)
            return args[node]
        if node.is_Number:
            if not node.is_real:
                raise _Unsupported(node)
            return repr(float(node))
        if node.is_Add:
            code = " + ".join(emit(a) for a in node.args)
        elif node.is_Mul:
            code = "*".join(_wrap(a, emit(a)) for a in node.args)
        elif node.is_Pow:
            base, exp = node.args
            if not exp.is_Number:
                raise _Unsupported(node)
            power = int(exp) if exp.is_Integer else float(exp)
            code = f"{_wrap(base, emit(base))}**{power!r}"
        elif node.func in _NUMPY_FUNCTIONS:
            (arg,) = node.args
            code = f"{_NUMPY_FUNCTIONS[node.func]}({emit(arg)})"
        else:
            raise _Unsupported(node)
        if counts.get(node, 0) > 1:
            name = f"_t{len(names)}"
            lines.append(f"    {name} = {code}")
            names[node] = name
            return name
        return code

    results = [emit(e) for e in exprs]
    header = f"def f({', '.join(args[s] for s in symbols)}):"
    return "\n".join([header, *lines, f"    return [{', '.join(results)}]"])


def _wrap(node, code: str) -> str:
    atomic = node.is_Atom and not (node.is_Number and node.is_negative)
    named = _TEMPORARY.fullmatch(code) is not None  # "_t3", but not "_t3*x0" or "_t3 + x0"
    return code if atomic or named or node.func in _NUMPY_FUNCTIONS else f"({code})"


_TEMPORARY = re.compile(r"_t\d+")


def _fast_numpy(symbols: list, exprs: list):
    """A numpy function of ``symbols`` returning ``exprs`` (see :func:`numpy_source`), or None
    when an expression holds something the fast writer does not handle."""
    try:
        source = numpy_source(symbols, [sp.sympify(e) for e in exprs])
    except _Unsupported:
        return None
    namespace = {name: getattr(np, name) for name in _NUMPY_FUNCTIONS.values() if name != "abs"}
    namespace["abs"] = np.abs
    exec(compile(source, "<symsgd.numeric>", "exec"), namespace)
    return namespace["f"]


#: coefficients beyond this magnitude are rescaled before float evaluation
_FLOAT_SAFE = 1e150


def _rescaled(poly: sp.Expr, scale) -> sp.Expr:
    """``poly / scale`` with float coefficients (the polynomial is only evaluated in floats)."""
    terms = (t.as_coeff_Mul() for t in poly.args)
    return sp.Add(*[sp.Float(c / scale, 17) * m for c, m in terms])


def _polynomial_scale(poly: sp.Expr) -> sp.Rational | None:
    """The largest coefficient magnitude of an expanded polynomial ``poly`` when it is out of
    float range, else None."""
    if not poly.is_Add:
        return None
    coeffs = [term.as_coeff_Mul()[0] for term in poly.args]
    if not all(c.is_Rational for c in coeffs):
        return None
    big = max(abs(c) for c in coeffs)
    small = min(abs(c) for c in coeffs if c != 0)
    if big < _FLOAT_SAFE and small > 1 / _FLOAT_SAFE:
        return None
    return big


def float_safe(expr: sp.Expr) -> sp.Expr:
    r"""``expr`` rewritten so that float evaluation does not overflow: every polynomial factor
    :math:`p` whose coefficients are out of float range becomes :math:`p/s` (s its largest
    coefficient magnitude) and the constant absorbs :math:`s^{e}` — mathematically the same
    function.  Exact data given as floats (``LinearRegression.from_data`` with float data)
    produce such coefficients (10³⁰⁰ and beyond).

    >>> x = sp.Symbol("x")
    >>> big = sp.Integer(10) ** 400
    >>> float_safe((big * x + big) / (big * x + 3 * big))
    (1.0*x + 1.0)/(3*(0.33333333333333333*x + 1.0))
    """
    if not isinstance(expr, sp.Expr) or expr.is_Atom:
        return expr
    coeff, factors = sp.Integer(1), []
    changed = False
    for factor in sp.Mul.make_args(expr):
        base, exp = factor.as_base_exp()
        if exp.is_Integer and base.is_Add:
            scale = _polynomial_scale(base)
            if scale is not None:
                base = _rescaled(base, scale)
                coeff *= scale ** int(exp)
                changed = True
            factors.append(base ** int(exp))
        elif factor.is_Rational:
            coeff *= factor
        else:
            factors.append(factor)
    if not changed:
        return expr
    return (
        sp.Mul(sp.Float(coeff, 17), *factors)
        if abs(coeff) > _FLOAT_SAFE
        else sp.Mul(coeff, *factors)
    )


def _has_huge_number(expr: sp.Basic) -> bool:
    """Whether a rational out of float range occurs in ``expr`` (each shared node once)."""
    seen: set = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.is_Rational:
            if abs(node) > _FLOAT_SAFE or (node != 0 and abs(node) < 1 / _FLOAT_SAFE):
                return True
        else:
            stack.extend(node.args)
    return False


def _float_safe_condition(cond: sp.Basic) -> sp.Basic:
    """A relation ``lhs < rhs`` as ``(rhs − lhs)/s > 0`` with its polynomial margin rescaled
    into float range (a positive scale keeps the inequality)."""
    if not isinstance(cond, (sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan, sp.GreaterThan)):
        return cond
    if not _has_huge_number(cond):
        return cond
    margin = sp.expand(cond.gts - cond.lts)
    scale = _polynomial_scale(margin)
    if scale is None:
        return cond
    margin = _rescaled(margin, scale)
    strict = isinstance(cond, (sp.StrictLessThan, sp.StrictGreaterThan))
    return sp.StrictGreaterThan(margin, 0) if strict else sp.GreaterThan(margin, 0)


class NumericFunction:
    """A vectorised numeric function of a result's free symbols (see :func:`lambdify_result`)."""

    def __init__(
        self,
        outputs: dict,
        conditions,
        backend: str,
        unstable: str,
        constraints: tuple = (),
        radius=None,
    ):
        #: domain relations checked before evaluating (:mod:`symsgd.domain`)
        self._constraints = tuple(constraints)
        #: ``radius(point) -> float``: the numeric spectral radius of the second-moment map,
        #: checked at every point when the symbolic conditions are incomplete
        self._radius = radius
        symbols: set = set()
        for value in outputs.values():
            symbols |= symbols_in(value)
        cond_parts = [c for c in sp.And.make_args(conditions) if c not in (sp.true,)]
        self.symbols = sorted(symbols, key=str)
        self.names = [str(s) for s in self.symbols]
        _names(self.symbols)  # reject clashing names early
        self.backend = backend
        self.unstable = unstable
        self._shapes = {
            k: (v.shape if isinstance(v, sp.MatrixBase) else ()) for k, v in outputs.items()
        }
        flat = []
        for value in outputs.values():
            flat.extend(list(value) if isinstance(value, sp.MatrixBase) else [value])
        if backend == "numpy":
            flat = [float_safe(sp.sympify(e)) for e in flat]
            cond_parts = [_float_safe_condition(c) for c in cond_parts]
        if backend == "mpmath":
            evaluate = mpmath_evaluator(self.symbols, flat)
            self._f = lambda *args: evaluate(list(args))
        else:
            fast = _fast_numpy(self.symbols, flat)
            self._f = fast or sp.lambdify(self.symbols, flat, modules="numpy", cse=True)
        cond_symbols = (
            sorted(set().union(*[c.free_symbols for c in cond_parts]), key=str)
            if (cond_parts)
            else []
        )
        self._conditions = cond_parts
        self._cond_symbols = cond_symbols
        self._cond_f = [sp.lambdify(cond_symbols, c, modules="numpy") for c in cond_parts]
        self._keys = list(outputs)

    def __repr__(self) -> str:
        return f"<NumericFunction of ({', '.join(self.names)}) -> {', '.join(self._keys)}>"

    def _arguments(self, kwargs) -> dict:
        values = resolve_values(kwargs, self.symbols)
        missing = [str(s) for s in self.symbols if s not in values]
        if missing:
            shown = [_with_alias(m, "or") for m in missing]
            raise TypeError(f"missing values for {', '.join(shown)}.")
        return values

    def __call__(self, **kwargs):
        values = self._arguments(kwargs)
        check_values(values, "lambdify()", self._constraints)
        args = [values[s] for s in self.symbols]
        if self.backend == "numpy":
            args = [np.asarray(a, dtype=float) for a in args]
        bad = self._check(values)
        if bad is not None and self.backend == "mpmath":
            nan = {k: self._nan_like(self._shapes[k], mpmath.nan) for k in self._keys}
            return nan if len(nan) > 1 else nan[self._keys[0]]
        raw = self._f(*args)
        out = {}
        i = 0
        for key in self._keys:
            shape = self._shapes[key]
            size = int(np.prod(shape)) if shape else 1
            part = raw[i : i + size]
            i += size
            out[key] = self._assemble(part, shape, args)
            if bad is not None and self.backend == "numpy":
                arr = out[key]
                lead = arr.shape[: arr.ndim - len(shape)]
                arr[np.broadcast_to(bad, lead)] = np.nan
        return out if len(out) > 1 else out[self._keys[0]]

    @staticmethod
    def _nan_like(shape, nan):
        if not shape:
            return nan
        return [[nan] * shape[1] for _ in range(shape[0])]

    def _assemble(self, part, shape, args):
        if self.backend == "mpmath":
            if not shape:
                return part[0]
            return [part[r * shape[1] : (r + 1) * shape[1]] for r in range(shape[0])]
        arrays = np.broadcast_arrays(
            *[np.asarray(p, dtype=float) for p in part], *[np.asarray(a, dtype=float) for a in args]
        )
        entries = arrays[: len(part)]
        if not shape:
            return np.array(entries[0], dtype=float)
        stacked = np.stack(entries, axis=-1)
        return stacked.reshape(stacked.shape[:-1] + tuple(shape))

    def _check(self, values):
        ok = self._radius_check(values)
        if not self._cond_f:
            return None if ok is None or np.all(ok) else ~ok
        args = [np.asarray(values[s], dtype=float) for s in self._cond_symbols]
        shape = np.broadcast(*args).shape if args else ()
        ok = np.ones(shape, dtype=bool) if ok is None else np.broadcast_to(ok, shape).copy()
        for cond, f in zip(self._conditions, self._cond_f):
            holds = np.asarray(f(*args), dtype=bool)
            if self.unstable == "raise" and not np.all(holds):
                flat = np.broadcast_arrays(*args, holds)
                idx = np.flatnonzero(~flat[-1].ravel())[0]
                at = {s: float(a.ravel()[idx]) for s, a in zip(self._cond_symbols, flat[:-1])}
                from .stability import advice

                failing = np.size(holds) - np.count_nonzero(holds)
                count = f"It fails at {failing} of {np.size(holds)} points. "
                raise UnstableError.at(
                    "lambdify()",
                    at,
                    condition=cond,
                    advice=f"{count if np.size(holds) > 1 else ''}{advice(cond, at)} Or "
                    "lambdify(unstable='nan') to get NaN.",
                )
            ok = ok & holds
        return None if np.all(ok) else ~ok

    def _radius_check(self, values):
        """Stability by the numeric spectral radius at every point (None when not needed)."""
        if self._radius is None:
            return None
        arrays = np.broadcast_arrays(*[np.asarray(values[s], dtype=float) for s in self.symbols])
        shape = arrays[0].shape if arrays else ()
        ok = np.ones(shape, dtype=bool)
        for idx in np.ndindex(*shape):
            point = {s: float(a[idx]) for s, a in zip(self.symbols, arrays)}
            rho = self._radius(point)
            if rho < 1:
                continue
            if self.unstable == "raise":
                raise UnstableError.at(
                    "lambdify()",
                    point,
                    rho=rho,
                    advice="The symbolic conditions are incomplete for this problem, so it is "
                    "checked numerically. Lower the learning rate, or lambdify(unstable='nan') "
                    "to get NaN.",
                )
            ok[idx] = False
        return ok


def lambdify_result(
    outputs: dict,
    conditions=sp.true,
    backend: str = "numpy",
    unstable: str = "raise",
    constraints: tuple = (),
    radius=None,
) -> NumericFunction:
    """Build a :class:`NumericFunction` for ``outputs`` (name -> Expr or Matrix).

    >>> x = sp.Symbol("x", positive=True)
    >>> f = lambdify_result({"y": 1 / (2 - x)}, sp.StrictLessThan(x, 2))
    >>> float(f(x=1.0))
    1.0
    """
    if backend not in ("numpy", "mpmath"):
        raise ValueError(f"backend must be 'numpy' or 'mpmath'; got {backend!r}.")
    if unstable not in ("raise", "nan"):
        raise ValueError(f"unstable must be 'raise' or 'nan'; got {unstable!r}.")
    return NumericFunction(outputs, conditions, backend, unstable, constraints, radius)


# --------------------------------------------------------------------------------------------
# the mpmath evaluator (lambdify's mpmath backend, and symsgd.verify's numeric comparison)
# --------------------------------------------------------------------------------------------

_MP_FUNCTIONS: dict[type, Callable] = {
    sp.exp: mpmath.exp,
    sp.log: mpmath.log,
    sp.Abs: abs,
    sp.sin: mpmath.sin,
    sp.cos: mpmath.cos,
    sp.tan: mpmath.tan,
    sp.sinh: mpmath.sinh,
    sp.cosh: mpmath.cosh,
    sp.tanh: mpmath.tanh,
    sp.asin: mpmath.asin,
    sp.acos: mpmath.acos,
    sp.atan: mpmath.atan,
    sp.Min: min,
    sp.Max: max,
}


def _mp_value(expr: sp.Basic, env: dict, point: dict, memo: dict) -> Any:
    """Evaluate ``expr`` with mpmath at the current precision by walking its tree.

    (Faster than ``lambdify`` for one-off evaluation of large results, whose code generation
    dominates.)  Unknown node types fall back to sympy's ``evalf`` of the substituted node.
    """
    if expr in memo:
        return memo[expr]
    if expr.is_Symbol:
        value = env[expr]
    elif expr.is_Rational:
        value = mpmath.mpf(expr.p) / expr.q
    elif expr.is_Add:
        value = mpmath.fsum(_mp_value(a, env, point, memo) for a in expr.args)
    elif expr.is_Mul:
        value = mpmath.fprod(_mp_value(a, env, point, memo) for a in expr.args)
    elif expr.is_Pow:
        base, exp = expr.args
        b = _mp_value(base, env, point, memo)
        if exp.is_Integer:
            value = b ** int(exp)
        elif exp == sp.S.Half:
            value = mpmath.sqrt(b)
        else:
            value = mpmath.power(b, _mp_value(exp, env, point, memo))
    elif type(expr) in _MP_FUNCTIONS and expr.args:
        value = _MP_FUNCTIONS[type(expr)](*[_mp_value(a, env, point, memo) for a in expr.args])
    else:
        numeric = expr.xreplace(point).evalf(mpmath.mp.dps)
        if numeric.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or numeric.free_symbols:
            raise ZeroDivisionError(f"cannot evaluate {expr} at this point")
        value = numeric._to_mpmath(mpmath.mp.prec)
    memo[expr] = value
    return value


def _mpf(value):
    if isinstance(value, sp.Rational):
        return mpmath.mpf(value.p) / value.q
    if isinstance(value, sp.Basic):
        return value._to_mpmath(mpmath.mp.prec)
    return mpmath.mpmathify(value)


def mpmath_evaluator(symbols: list[sp.Symbol], entries: list) -> Callable[[list], list]:
    """``evaluate(values) -> [entry values]``: mpmath evaluation of ``entries`` at the point
    ``symbols = values`` (sympy rationals, numbers or mpmath numbers), at the current mpmath
    precision, by walking each expression tree once (shared subexpressions once).

    Faster than ``sympy.lambdify`` for one-off evaluation of large results, whose code
    generation dominates; rationals are exact up to the working precision.  Unknown node types
    fall back to sympy's ``evalf`` of the substituted node; a pole raises
    ``ZeroDivisionError``.

    >>> x, y = sp.symbols("x y")
    >>> f = mpmath_evaluator([x, y], [x / y + sp.exp(x), sp.Integer(1) / 3])
    >>> with mpmath.workdps(30):
    ...     print(*f([sp.Integer(0), sp.Rational(1, 2)]))
    1.0 0.333333333333333333333333333333
    """
    exprs = [sp.sympify(e, strict=True) for e in entries]

    def evaluate(values: list) -> list:
        point = dict(zip(symbols, values, strict=True))
        env = {s: _mpf(v) for s, v in point.items()}
        exact = {s: v if isinstance(v, sp.Basic) else sp.sympify(v) for s, v in point.items()}
        memo: dict = {}
        return [_mp_value(e, env, exact, memo) for e in exprs]

    return evaluate
