r"""Traces over eigen-modes, for commuting problems whose modes couple through a trace, and the
closure of that trace (:func:`close_trace`).

In a commuting problem every matrix is a function of the same eigenbasis, so a per-mode answer
:math:`f(a)` stands for the matrix :math:`f(A)`.  Minibatch noise couples the modes through
:math:`\kappa = \operatorname{Tr}(A\Sigma)`; the closed form then contains traces of matrix
functions, represented here by :class:`ModeTrace` — ``ModeTrace(Lambda(x, f(x)))`` is
:math:`\operatorname{Tr} f(A) = \sum_k f(a_k)`.

>>> import sympy as sp
>>> x = sp.Dummy("x")
>>> expand_traces(ModeTrace(sp.Lambda(x, 1 / x)), [1, 2, 4])
7/4
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .landscapes import COUPLING

__all__ = ["COUPLING", "ModeTrace", "close_trace", "expand_traces", "mode_trace"]


class ModeTrace(sp.Function):
    """``ModeTrace(Lambda(x, f))`` = Tr f(A), the sum of ``f`` over the eigenvalues of A."""

    nargs = 1
    is_commutative = True
    is_real = True
    #: matrix name used when printing (set by the result that creates the trace)
    matrix_name = "A"

    @classmethod
    def eval(cls, body):
        if not isinstance(body, sp.Lambda):
            raise TypeError("ModeTrace takes a sympy Lambda of one eigenvalue variable.")
        return None

    @property
    def free_symbols(self):
        return self.args[0].free_symbols

    def _shown(self) -> sp.Expr:
        """The body with the eigenvalue written as the matrix (``1/(2 - λA)``)."""
        from .exact import canonical

        body = self.args[0]
        (x,) = body.variables
        return canonical(body.expr).subs(x, sp.Symbol(self.matrix_name))

    def _latex(self, printer):
        # plain sympy printing; symsgd.latex renders traces in its own notation
        return rf"\operatorname{{Tr}}\left[{printer.doprint(self._shown())}\right]"

    def _sympystr(self, printer):
        return f"Tr[{printer.doprint(self._shown())}]"


def mode_trace(expr: sp.Expr, mode: sp.Symbol) -> sp.Expr:
    """Tr of the matrix function ``expr`` of the mode eigenvalue ``mode``; constant factors
    (free of ``mode``) are pulled out."""
    from .exact import canonical

    expr = canonical(expr)
    coeff, rest = sp.S.One, []
    for part in sp.Mul.make_args(expr):
        if part.has(mode):
            rest.append(part)
        else:
            coeff *= part
    # a fixed bound variable, so that traces of the same function compare equal
    x = sp.Symbol(f"_{mode}", **mode.assumptions0)
    # a constant c is the matrix function c·I: its trace is c·Tr(I) = c·d
    body = sp.Mul(*rest).subs(mode, x) if rest else sp.Integer(1)
    return coeff * ModeTrace(sp.Lambda(x, body))


def expand_traces(expr, eigenvalues: Sequence):
    """Replace every :class:`ModeTrace` by the sum of its function over ``eigenvalues``."""
    values = [sp.sympify(v) for v in eigenvalues]

    def expand(t):
        body = t.args[0]
        return sp.Add(*[body(v) for v in values])

    return expr.replace(lambda e: isinstance(e, ModeTrace), expand)


def close_trace(density: sp.Expr, coupling: sp.Symbol, mode: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    r"""Close a cross-mode trace self-consistently: ``(κ, Tr v(A))``.

    One mode's share of the trace, ``density`` :math:`= u(a) + v(a)\kappa`, is affine in the
    trace :math:`\kappa` itself (``coupling``); summing it over the modes gives
    :math:`\kappa = \operatorname{Tr}u(A) + \kappa\operatorname{Tr}v(A)`, so
    :math:`\kappa = \operatorname{Tr}u(A)/(1 - \operatorname{Tr}v(A))`, which exists iff
    :math:`\operatorname{Tr}v(A) < 1`.

    >>> a, k = sp.Symbol("a", positive=True), sp.Symbol("kappa")
    >>> kappa, slope = close_trace(a * (1 + k) / 4, k, a)
    >>> kappa, slope
    (Tr[A]/(4*(1 - Tr[A]/4)), Tr[A]/4)
    """
    density = sp.cancel(density)
    if sp.cancel(sp.diff(density, coupling, 2)) != 0:  # pragma: no cover - linear theory
        raise RuntimeError("the mode coupling is not affine in the trace; cannot close it.")
    slope = sp.cancel(sp.diff(density, coupling))
    intercept = sp.cancel(density.subs(coupling, 0))
    t_slope = mode_trace(slope, mode)
    t_intercept = mode_trace(intercept, mode) if intercept != 0 else sp.Integer(0)
    return t_intercept / (1 - t_slope), t_slope
