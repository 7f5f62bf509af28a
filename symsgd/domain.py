r"""Where parameter values are allowed: checked wherever numbers meet a result.

A value may contradict its symbol's assumptions (a learning rate :math:`\lambda \le 0`, a
negative variance, a fractional batch size), be no real number at all (NaN, ±inf, complex), or
fall outside the problem's domain (a batch larger than the data set when sampling without
replacement).  :func:`check_values` raises a ``ValueError`` that names the parameter, the
allowed range and what was given — before any formula is evaluated, so such inputs never turn
into silent negative variances.

>>> import symsgd as ss
>>> check_values({ss.lr: -0.1}, "lambdify()")
Traceback (most recent call last):
...
ValueError: lambdify(): lambda (alias lr) must be > 0 (the learning rate); got -0.1.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import sympy as sp

from .symbols import lookup

__all__ = ["Constraint", "check_values", "problem_constraints"]


def _label(symbol: sp.Symbol) -> str:
    """``"lambda (alias lr)"`` for the library's own symbols, else the name."""
    entry = lookup(symbol)
    return entry.label() if entry is not None else str(symbol)


def _show(value) -> str:
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else f"an array containing {arr.ravel()[0]!r}"


def _as_array(symbol: sp.Symbol, value, context: str) -> np.ndarray:
    if isinstance(value, sp.Basic):
        if value.free_symbols:  # a symbolic value: refuse what its assumptions contradict
            if (symbol.is_positive and value.is_positive is False) or (
                symbol.is_nonnegative and value.is_nonnegative is False
            ):
                sign = "> 0" if symbol.is_positive else "≥ 0"
                raise ValueError(f"{context}: {_label(symbol)} must be {sign}; got {value}.")
            return None
        if (not value.is_real and value.is_real is not None) or value.has(sp.I):
            raise ValueError(f"{context}: {_label(symbol)} must be real; got {value}.")
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            raise ValueError(f"{context}: {_label(symbol)} must be finite; got {value}.")
        value = float(value)
    try:
        arr = np.asarray(value)
    except Exception:
        raise TypeError(f"{context}: {_label(symbol)} must be a number; got {value!r}.") from None
    if arr.dtype.kind == "c":
        if np.any(arr.imag != 0):
            raise ValueError(f"{context}: {_label(symbol)} must be real; got {_show(value)}.")
        arr = arr.real
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{context}: {_label(symbol)} must be a real number or array; got {value!r}."
        )
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{context}: {_label(symbol)} must be finite; got {_show(value)}.")
    return arr


def check_values(values: dict, context: str, constraints: Iterable[Constraint] = ()) -> None:
    """Raise ``ValueError`` when a value contradicts its symbol's assumptions or a constraint
    of the problem (see the module docstring); arrays are checked entrywise."""
    arrays = {}
    for symbol, value in values.items():
        if not isinstance(symbol, sp.Symbol):
            continue
        arr = _as_array(symbol, value, context)
        if arr is None:
            continue
        arrays[symbol] = arr
        entry = lookup(str(symbol))  # by name: a user's own λ plays the same role
        why = f" ({entry.description})" if entry is not None else " (the symbol is declared so)"
        if symbol.is_positive and np.any(arr <= 0):
            bad = arr[arr <= 0].ravel()[0] if arr.ndim else arr.item()
            raise ValueError(f"{context}: {_label(symbol)} must be > 0{why}; got {bad!r}.")
        if symbol.is_nonnegative and np.any(arr < 0):
            bad = arr[arr < 0].ravel()[0] if arr.ndim else arr.item()
            raise ValueError(f"{context}: {_label(symbol)} must be ≥ 0{why}; got {bad!r}.")
        if symbol.is_integer and np.any(arr != np.round(arr)):
            bad = arr[arr != np.round(arr)].ravel()[0] if arr.ndim else arr.item()
            raise ValueError(f"{context}: {_label(symbol)} must be an integer{why}; got {bad!r}.")
    for constraint in constraints:
        constraint.check(arrays, context)


class Constraint:
    """A domain relation between parameters (e.g. S ≤ N), with the reason it must hold."""

    def __init__(self, relation: sp.Basic, reason: str):
        self.relation = relation
        self.reason = reason

    def check(self, arrays: dict, context: str) -> None:
        symbols = sorted(self.relation.free_symbols, key=str)
        if not all(s in arrays for s in symbols):
            return
        f = sp.lambdify(symbols, self.relation, modules="numpy")
        holds = np.asarray(f(*[arrays[s] for s in symbols]), dtype=bool)
        if not np.all(holds):
            # name the first point where the relation fails (not merely the first entry)
            *values, holds = np.broadcast_arrays(*[arrays[s] for s in symbols], holds)
            first = np.flatnonzero(~holds.ravel())[0]
            given = ", ".join(f"{s} = {v.ravel()[first].item()!r}" for s, v in zip(symbols, values))
            raise ValueError(
                f"{context}: {self.reason} needs {sp.sstr(self.relation)}; got {given}."
            )

    def __repr__(self) -> str:
        return f"Constraint({self.relation}, {self.reason!r})"


def problem_constraints(noise, landscape) -> list[Constraint]:
    """The domain relations a problem imposes on its parameters."""
    out = []
    S = getattr(noise, "batch_size", None)
    if S is None:
        return out
    N = noise.resolved_dataset_size(landscape) if hasattr(noise, "resolved_dataset_size") else None
    if N is not None and N is not sp.oo and not getattr(noise, "replacement", True):
        relation = sp.Le(S, N)
        if relation not in (sp.true, sp.false):
            out.append(Constraint(relation, "sampling without replacement"))
    return out
