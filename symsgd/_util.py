"""Small helpers shared by the modules (private)."""

from __future__ import annotations

import copy
import numbers

import sympy as sp

Scalar = sp.Expr | numbers.Number


def as_matrix(value, name: str) -> sp.Matrix:
    """Return ``value`` as an immutable square sympy Matrix (a scalar becomes 1x1)."""
    if isinstance(value, sp.MatrixBase):
        m = sp.ImmutableMatrix(value)
    elif hasattr(value, "shape") and len(getattr(value, "shape", ())) == 2:  # numpy arrays
        m = sp.ImmutableMatrix(sp.Matrix(value.tolist()))
    elif isinstance(value, (list, tuple)):
        m = sp.ImmutableMatrix(value)
    else:
        m = sp.ImmutableMatrix([[sp.sympify(value)]])
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
    return dict(vars(obj))


def field_symbols(obj) -> set:
    """Free symbols of every sympy value a frozen value object holds (fields, tuples of them)."""
    out: set = set()
    stack = list(_fields(obj).values())
    while stack:
        value = stack.pop()
        if isinstance(value, sp.Basic):
            out |= value.free_symbols
        elif isinstance(value, (tuple, list)):
            stack.extend(value)
    return out


def field_atoms(obj, kind: type) -> set:
    """Atoms of type ``kind`` (e.g. ``sp.Float``) in the sympy values a value object holds."""
    out: set = set()
    stack = list(_fields(obj).values())
    while stack:
        value = stack.pop()
        if isinstance(value, sp.Basic):
            out |= value.atoms(kind)
        elif isinstance(value, (tuple, list)):
            stack.extend(value)
    return out


def replace_fields(obj, values: dict):
    """A copy of the frozen value object ``obj`` with ``values`` substituted (``xreplace``) in
    every sympy field — fields are set directly, the constructor validated the symbolic object
    already."""

    def subs(value):
        if isinstance(value, sp.Basic):
            return value.xreplace(values) if values else value
        if isinstance(value, (tuple, list)):
            return type(value)(subs(v) for v in value)
        return value

    new = copy.copy(obj)
    for key, value in _fields(obj).items():
        object.__setattr__(new, key, subs(value))
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
