"""Small helpers shared by the modules (private)."""

from __future__ import annotations

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
