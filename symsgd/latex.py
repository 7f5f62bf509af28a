r"""LaTeX rendering of results.

* Eigen-mode results print as matrix functions of ``H``, ``C`` (and ``P``):
  :math:`\lambda\,[H(2I - \lambda H)]^{-1} C` — every factor that involves a mode eigenvalue
  becomes a matrix, constants become multiples of the identity, and because the matrices commute
  the order is free: inverse first, then the other matrix factors, then ``C``.
* Explicit matrices with a common denominator print as :math:`\frac{1}{D}\,(\dots)` followed by a
  "where D = …" line.
* Notation options: the learning-rate symbol (``lr="\\eta"``), the batch-size symbol
  (``batch="B"``), and an ``align`` environment.
"""

from __future__ import annotations

import sympy as sp

from .exact import oriented_factor_list, reference_point
from .symbols import batch_size, lr

__all__ = ["latex_expr", "matrix_function_latex", "render"]


def _symbol_names(lr_name: str | None, batch_name: str | None) -> dict:
    names = {}
    if lr_name:
        names[lr] = lr_name
    if batch_name:
        names[batch_size] = batch_name
    return names


def latex_expr(expr, lr_name: str | None = None, batch_name: str | None = None) -> str:
    """``sympy.latex`` with the notation options applied."""
    return sp.latex(expr, symbol_names=_symbol_names(lr_name, batch_name))


def _polynomial_matrix_latex(poly: sp.Expr, names: dict, opts: dict) -> str:
    """A polynomial in mode eigenvalues as a matrix polynomial (constants become multiples of I)."""
    mode_syms = [s for s in names if poly.has(s)]
    p = sp.Poly(poly, *mode_syms)
    terms = sorted(p.terms(), key=lambda t: (sum(t[0]), t[0]))
    pieces = []
    for monom, coeff in terms:
        sign, parts = oriented_factor_list(coeff) if coeff.free_symbols else (coeff, [])
        coeff = sign * sp.Mul(*[f**e for f, e in parts])
        mats = "".join(
            names[s] if e == 1 else f"{names[s]}^{{{e}}}" for s, e in zip(mode_syms, monom) if e
        ) or "I"
        negative = bool(coeff.subs(reference_point(coeff.free_symbols)) < 0)
        c = -coeff if negative else coeff
        if c == 1:
            body = mats
        else:
            c_tex = latex_expr(c, **opts)
            if c.is_Add:
                c_tex = rf"\left({c_tex}\right)"
            body = f"{c_tex} {mats}"
        pieces.append((negative, body))
    out = ""
    for k, (negative, body) in enumerate(pieces):
        if k == 0:
            out = f"- {body}" if negative else body
        else:
            out += f" - {body}" if negative else f" + {body}"
    return out


def matrix_function_latex(expr: sp.Expr, names: dict, lr_name=None, batch_name=None) -> str:
    r"""Render a scalar rational function of mode eigenvalues as a matrix function.

    ``names`` maps eigenvalue symbols to matrix names, e.g. ``{h: "H", c: "C"}``.

    >>> h, c, l = sp.symbols("h c lambda", positive=True)
    >>> matrix_function_latex(l * c / (h * (2 - l * h)), {h: "H", c: "C"})
    '\\lambda \\left[H \\left(2 I - \\lambda H\\right)\\right]^{-1} C'
    """
    opts = {"lr_name": lr_name, "batch_name": batch_name}
    if expr == 0:
        return "0"
    num, den = sp.fraction(sp.together(expr))
    scalar = sp.Integer(1)
    mat_num, mat_den = [], []
    for part, target, power in ((num, mat_num, 1), (den, mat_den, -1)):
        constant, factors = oriented_factor_list(part)
        scalar *= constant**power
        for f, e in factors:
            if any(f.has(s) for s in names):
                target.append((f, e))
            else:
                scalar *= f ** (power * e)
    # the noise matrix C goes last, H-only factors first
    last = [n for s, n in names.items() if n == "C"]

    def render_factor(f, e, inverse=False):
        if f in names:
            base = names[f]
            single = True
        else:
            base = _polynomial_matrix_latex(sp.expand(f), names, opts)
            single = False
        if inverse:
            return base, e, single
        if e != 1:
            return (rf"{base}^{{{e}}}" if single else rf"\left({base}\right)^{{{e}}}")
        return base if single else rf"\left({base}\right)"

    out = []
    if scalar != 1:
        s_tex = latex_expr(scalar, **opts)
        out.append(rf"\left({s_tex}\right)" if scalar.is_Add else s_tex)
    if mat_den:
        inner = []
        for f, e in mat_den:
            inner.append(render_factor(f, e))
        body = " ".join(inner)
        if all(f in names for f, _ in mat_den):
            out.extend(f"{names[f]}^{{-{e}}}" for f, e in mat_den)
        else:
            out.append(rf"\left[{body}\right]^{{-1}}")
    key = {n: i for i, n in enumerate(last)}
    mat_num.sort(key=lambda fe: (fe[0] in names and names.get(fe[0]) in key, str(fe[0])))
    for f, e in mat_num:
        out.append(render_factor(f, e))
    return " ".join(out) if out else "1"


def render(lhs: str, expr, *, names: dict | None = None, denominator=None, env: str | None = None,
           lr_name: str | None = None, batch_name: str | None = None) -> str:
    """LaTeX of ``lhs = expr`` for a scalar, a mode result (``names``) or a matrix."""
    opts = {"lr_name": lr_name, "batch_name": batch_name}
    where = None
    if names:
        body = matrix_function_latex(expr, names, **opts)
    elif isinstance(expr, sp.MatrixBase) and denominator is not None and denominator != 1 and (
        denominator.free_symbols
    ):
        D = sp.Symbol("D")
        inner = expr.applyfunc(lambda e: sp.cancel(e * denominator))
        body = rf"\frac{{1}}{{D}} {latex_expr(inner, **opts)}"
        where = rf"D = {latex_expr(denominator, **opts)}"
        del D
    else:
        body = latex_expr(expr, **opts)
    if env is None:
        return body if where is None else rf"{body}, \quad \text{{where }} {where}"
    if env != "align":
        raise ValueError(f"env must be None or 'align'; got {env!r}.")
    lines = [rf"{lhs} &= {body}"]
    if where is not None:
        lines.append(rf"\text{{where }} {where.replace(' = ', ' &= ', 1)}")
    return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"
