"""Small helpers shared by the modules (private)."""

from __future__ import annotations

import copy
import numbers
from dataclasses import is_dataclass

import numpy as np
import sympy as sp


def _entry(value, name: str, where: str) -> sp.Expr:
    """One scalar entry: a number or sympy expression that is finite and not complex."""
    if isinstance(value, str):
        raise TypeError(
            f"{where}{name} must be a number, a sympy expression or a matrix of them; got the "
            f"string {value!r} (pass sp.Symbol({value!r}, positive=True) for a symbol)."
        )
    if not isinstance(value, (numbers.Number, sp.Basic, np.generic)):
        raise TypeError(
            f"{where}{name} must be a number, a sympy expression or a matrix of them; "
            f"got {type(value).__name__} {value!r}."
        )
    try:
        entry = sp.sympify(value, strict=True)
    except (sp.SympifyError, TypeError, ValueError):
        raise TypeError(
            f"{where}{name} must be a number or sympy expression; got {value!r}."
        ) from None
    if not isinstance(entry, sp.Expr):
        raise TypeError(f"{where}{name} must be a number or sympy expression; got {entry!r}.")
    if entry.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        raise ValueError(f"{where}{name} must be finite; got {entry}.")
    if entry.is_real is False or entry.has(sp.I):
        raise ValueError(
            f"{where}{name} must be real; got {entry}, a complex number (only real "
            f"parameters have a stationary covariance here)."
        )
    return entry


def as_scalar(value, name: str, where: str = "") -> sp.Expr:
    """``value`` as a finite real sympy scalar (number or expression), else a ``TypeError`` /
    ``ValueError`` naming ``name`` (prefixed by ``where``, e.g. ``"SGD: "``).

    >>> as_scalar(0.5, "lr")
    0.500000000000000
    >>> as_scalar(float("nan"), "lr", "SGD: ")
    Traceback (most recent call last):
    ...
    ValueError: SGD: lr must be finite; got nan.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return _entry(value, name, where)


def as_matrix(value, name: str) -> sp.Matrix:
    """Return ``value`` as an immutable square sympy Matrix (a scalar becomes 1x1).

    Accepted: a number or sympy expression, a sympy matrix, a 0-d or 2-D numpy array, or nested
    lists/tuples (rows of equal length).  Every entry must be finite and real.  Anything else
    raises ``TypeError`` (wrong kind of value) or ``ValueError`` (wrong shape, NaN/inf/complex
    entries), naming ``name``.

    >>> as_matrix([[1, 0], [0, 2]], "H").shape
    (2, 2)
    >>> as_matrix([[1, 0], [0]], "H")
    Traceback (most recent call last):
    ...
    ValueError: H must be a square matrix; its rows have different lengths (2, 1).
    """
    if isinstance(value, sp.MatrixBase):
        rows = value.tolist()
    elif isinstance(value, np.ndarray):
        if value.ndim == 0:
            rows = [[value[()]]]
        elif value.ndim == 2:
            rows = value.tolist()
        else:
            raise ValueError(
                f"{name} must be a scalar or a 2-D square matrix; got an array of shape "
                f"{value.shape}."
            )
    elif isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must be a non-empty square matrix; got {value!r}.")
        if all(isinstance(r, (list, tuple, np.ndarray)) for r in value):
            rows = [list(r) for r in value]
            lengths = tuple(len(r) for r in rows)
            if len(set(lengths)) != 1:
                raise ValueError(
                    f"{name} must be a square matrix; its rows have different lengths {lengths}."
                )
            if any(
                isinstance(e, (list, tuple, np.ndarray, sp.MatrixBase)) for r in rows for e in r
            ):
                raise ValueError(
                    f"{name} must be a scalar or a 2-D square matrix; got more than two levels "
                    f"of nesting."
                )
        elif any(isinstance(r, (list, tuple, np.ndarray, sp.MatrixBase)) for r in value):
            raise ValueError(
                f"{name} must be a square matrix given as a list of rows; got a mix of rows "
                f"and scalars."
            )
        else:  # a flat list is a column, as sp.Matrix reads it
            rows = [[e] for e in value]
    elif hasattr(value, "shape") and hasattr(value, "tolist"):  # other array types
        return as_matrix(np.asarray(value), name)
    else:
        rows = [[value]]
    entries = [[_entry(e, name, "") for e in row] for row in rows]
    m = sp.ImmutableMatrix(entries)
    if m.rows != m.cols:
        raise ValueError(f"{name} must be square; got shape {m.shape}.")
    return m


def is_numeric(m: sp.MatrixBase) -> bool:
    """True if every entry is a number (no free symbols)."""
    return all(not sp.sympify(e).free_symbols for e in m)


def check_symmetric(m: sp.MatrixBase, name: str) -> None:
    diff = (m - m.T).applyfunc(sp.expand)
    if any(e != 0 for e in diff):
        raise ValueError(
            f"{name} must be symmetric; got {name} - {name}ᵀ = {sp.sstr(diff)}. "
            f"Pass a symmetric matrix (for example (M + M.T)/2)."
        )


def check_psd(m: sp.MatrixBase, name: str, strict: bool = False) -> None:
    """For numeric matrices, reject indefinite (or singular, if ``strict``) ones."""
    if not is_numeric(m):
        return
    import numpy as np

    eig = np.linalg.eigvalsh(np.array(m.evalf(), dtype=float))
    scale = max(1.0, float(np.max(np.abs(eig))))
    low = eig.min()
    if low < -1e-12 * scale or (strict and low <= 1e-12 * scale):
        kind = "positive definite" if strict else "positive semi-definite"
        raise ValueError(
            f"{name} must be {kind}; its smallest eigenvalue is {low:.6g}. "
            f"A covariance or curvature with negative eigenvalues has no stationary law here."
        )


def _fields(obj) -> dict:
    """The values an object holds, without its caches (attributes named ``*_cache``, which
    hold results computed from the values and must not survive a copy with new values)."""
    return {k: v for k, v in vars(obj).items() if not k.endswith("_cache")}


def _fresh_copy(obj):
    """``copy.copy(obj)`` without the caches of :func:`_fields`."""
    new = copy.copy(obj)
    for key in [k for k in vars(new) if k.endswith("_cache")]:
        del new.__dict__[key]
    return new


def _is_value_object(value) -> bool:
    """A frozen dataclass the library builds from (an optimizer inside a wrapper optimizer)."""
    return is_dataclass(value) and not isinstance(value, type)


def _leaves(obj) -> list:
    """Every sympy value ``obj`` holds: its fields, tuples/lists of them, and the fields of
    nested value objects (``Averaged(SGD(lr))`` holds ``SGD(lr)``)."""
    out: list = []
    stack = list(_fields(obj).values())
    while stack:
        value = stack.pop()
        if isinstance(value, sp.Basic):
            out.append(value)
        elif isinstance(value, (tuple, list)):
            stack.extend(value)
        elif _is_value_object(value):
            stack.extend(_fields(value).values())
    return out


def field_symbols(obj) -> set:
    """Free symbols of every sympy value a frozen value object holds (fields, tuples of them,
    nested value objects)."""
    return set().union(*(value.free_symbols for value in _leaves(obj)))


def field_atoms(obj, kind: type) -> set:
    """Atoms of type ``kind`` (e.g. ``sp.Float``) in the sympy values a value object holds."""
    return set().union(*(value.atoms(kind) for value in _leaves(obj)))


def map_fields(obj, fn):
    """A copy of the frozen value object ``obj`` with ``fn`` applied to every sympy value it
    holds (in fields, tuples/lists of them and nested value objects).  Fields are set directly:
    the constructor validated the symbolic object already."""

    def visit(value):
        if isinstance(value, sp.Basic):
            return fn(value)
        if isinstance(value, (tuple, list)):
            return type(value)(visit(v) for v in value)
        if _is_value_object(value):
            return map_fields(value, fn)
        return value

    new = _fresh_copy(obj)
    for key, value in _fields(obj).items():
        object.__setattr__(new, key, visit(value))
    return new


def replace_fields(obj, values: dict):
    """A copy of the frozen value object ``obj`` with ``values`` substituted (``xreplace``) in
    every sympy value it holds (:func:`map_fields`)."""
    if not values:
        return _fresh_copy(obj)
    return map_fields(obj, lambda value: value.xreplace(values))


def float_fields(obj):
    """A copy of a numeric value object whose scalar number fields (its own and those of nested
    value objects) are Python floats, so that :meth:`~symsgd.Optimizer.step` runs on numpy
    arrays at numpy speed; matrices and tuples stay as they are."""
    new = _fresh_copy(obj)
    for key, value in _fields(obj).items():
        if _is_value_object(value):
            object.__setattr__(new, key, float_fields(value))
        elif (
            isinstance(value, sp.Expr) and not isinstance(value, sp.MatrixBase) and value.is_number
        ):
            object.__setattr__(new, key, float(value))
    return new


def substitute(value, mapping: dict):
    """``value.xreplace(mapping)`` visiting every distinct subexpression once.

    sympy's ``xreplace`` walks the expression *tree*; the structured results of
    :mod:`symsgd.cayley` share subexpressions (matrix powers, characteristic coefficients), so
    their tree is ~10⁷ nodes while the DAG has ~10⁴.  Works on expressions, booleans and
    matrices (one memo across the entries).

    >>> x, y = sp.symbols("x y")
    >>> substitute(sp.Matrix([x + y, (x + y) ** 2]), {x: 1})
    Matrix([
    [    y + 1],
    [(y + 1)**2]])
    """
    if not mapping:
        return value
    memo: dict = {}

    def walk(node):
        done = memo.get(node)
        if done is not None:
            return done
        if node in mapping:
            out = mapping[node]
        elif not node.args:
            out = node
        else:
            args = [walk(a) for a in node.args]
            changed = any(a is not b for a, b in zip(args, node.args))
            out = node.func(*args) if changed else node
        memo[node] = out
        return out

    if isinstance(value, sp.MatrixBase):
        out = value.applyfunc(walk)
        return sp.ImmutableMatrix(out) if isinstance(value, sp.ImmutableMatrix) else out
    return walk(sp.sympify(value))


def symbols_in(value) -> set:
    """``value.free_symbols`` visiting every distinct subexpression once (see
    :func:`substitute`); ``value`` is an expression, a boolean or a matrix.

    >>> x, y = sp.symbols("x y")
    >>> sorted(symbols_in(sp.Matrix([x + y, 2 * x])), key=str)
    [x, y]
    """
    seen: set = set()
    out: set = set()
    stack = list(value) if isinstance(value, sp.MatrixBase) else [sp.sympify(value)]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.is_Symbol:
            out.add(node)
        elif getattr(node, "bound_symbols", None):  # Lambda, Sum: not the bound variables
            out |= node.free_symbols
        elif node.args:
            stack.extend(node.args)
        else:
            out |= node.free_symbols
    return out


def numbers_only(*pieces) -> tuple[bool, bool]:
    """``(every field of the pieces is a number, some of them floats)``: one cheap walk over
    the nonzero entries (plain numbers are recognised by class, before any
    ``free_symbols``)."""
    floats = False
    for piece in pieces:
        for leaf in _leaves(piece):
            if isinstance(leaf, sp.MatrixBase):
                numbers, some = number_kind(leaf)
            else:
                numbers, some = not leaf.free_symbols, leaf.has(sp.Float)
            if not numbers:
                return False, False
            floats = floats or some
    return True, floats


#: (every entry a number, some entry a float) of recently inspected immutable matrices
_KINDS: dict = {}


def number_kind(m: sp.MatrixBase) -> tuple[bool, bool]:
    """``(every entry a number, some entry a float)`` over the nonzero entries (plain numbers
    recognised by class before any ``free_symbols``), remembered for immutable matrices."""
    hit = _KINDS.get(id(m))
    if hit is not None and hit[0] is m:
        return hit[1]
    numbers, floats = True, False
    for e in m.values():
        if e.is_Number:
            floats = floats or e.is_Float
        elif e.free_symbols:
            numbers, floats = False, False
            break
        else:
            floats = floats or e.has(sp.Float)
    if isinstance(m, sp.ImmutableMatrix):
        if len(_KINDS) > 16:
            _KINDS.clear()
        _KINDS[id(m)] = (m, (numbers, floats))
    return numbers, floats
