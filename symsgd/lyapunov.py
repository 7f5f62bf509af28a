r"""Solvers for the stationary second moment of a :class:`~symsgd.recursion.LinearRecursion`.

Every solver solves the same equation, for symmetric :math:`\Sigma`:

.. math:: \Sigma = M \Sigma M^\top + B\,\bigl(Q_0 + \mathcal L(K\Sigma K^\top)\bigr)\,B^\top .

Strategies (:data:`SOLVERS`, tried in order; the first whose ``applies_to`` is true is used):

``EigenmodeSolver``
    explicit matrices that are all diagonal (H, C, P — the commuting case in its eigenbasis) with
    additive noise: the scalar problem is solved once with symbolic eigenvalues and substituted
    mode by mode, so the cost does not grow with d.
``NumericSolver``
    every entry a number: exact over the rationals (sympy ``DomainMatrix`` over QQ) when the
    entries are rational, float64 (scipy's Bartels–Stewart ``solve_discrete_lyapunov``, or the
    vectorised system for state-dependent noise) otherwise.
``InvariantSolver``
    symbolic explicit matrices with state-independent noise (integer-polynomial entries): the
    characteristic-algebra formula of :mod:`symsgd.cayley` — a universal n(n+1)/2 elimination in
    the coefficients of the characteristic polynomial only, then composition; large answers
    (fully symbolic SGD with d ≥ 4) are kept in that structured form.
``ExactSolver``
    anything symbolic (scalar, eigen-mode and explicit symbolic matrices): the half-vectorised
    system (n(n+1)/2 unknowns) solved by fraction-free elimination (:func:`symsgd.exact.solve_den`).

Each returns a :class:`Solution` with the state covariance as cancelled ``numerator /
denominator`` entries and the common denominator (the stability polynomial).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from .certify import certify_stationary
from .errors import InternalError
from .exact import canonical, desqrt, solve_canonical
from .moments import NumericMap, from_halfvec, halfvec_operator_system, halfvec_system
from .noise import AdditiveNoise
from .recursion import LinearRecursion

__all__ = [
    "SOLVERS",
    "EigenmodeSolver",
    "ExactSolver",
    "InvariantSolver",
    "NumericSolver",
    "Solution",
    "solve",
    "solve_symmetric",
]


@dataclass(frozen=True)
class Solution:
    """The stationary state second moment and how it was obtained."""

    state_cov: sp.ImmutableMatrix
    #: common denominator of the entries, factored (1 for numeric solutions)
    denominator: sp.Expr
    method: str
    #: the structured characteristic-algebra form (:class:`symsgd.cayley.StructuredForm`) when
    #: the entries are kept unexpanded; readouts must then not expand them
    form: object = None
    #: what was checked before the solution was returned (:class:`symsgd.certify.Certificate`)
    certificate: object = None


def solve_symmetric(
    operator: Callable[[sp.Matrix], sp.Matrix], forcing: sp.MatrixBase, n: int
) -> tuple[sp.ImmutableMatrix, sp.Expr]:
    """Exact symmetric solution of ``operator(Σ) = forcing`` and its factored denominator."""
    A, b = halfvec_operator_system(operator, forcing, n)
    (A, b), back = desqrt([A, b])
    entries, denominator = solve_canonical(A, b)
    return from_halfvec(n, entries).subs(back), denominator.subs(back)


class Solver:
    """Abstract solver strategy."""

    name = "abstract"

    def applies_to(self, recursion: LinearRecursion) -> bool:
        raise NotImplementedError

    def solve(self, recursion: LinearRecursion) -> Solution:
        raise NotImplementedError


class ExactSolver(Solver):
    r"""Fraction-free exact elimination on the half-vectorised equation.

    Solve :math:`\Sigma = M\Sigma M^\top + B(Q_0 + \mathcal L(K\Sigma K^\top))B^\top` for symmetric
    Σ with symbolic entries.  ``engine`` is ``"flint"`` (default when available) or
    ``"domainmatrix"``.

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.recursion import build_recursion
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = build_recursion(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> ExactSolver().solve(r).state_cov[0, 0]
    c*lambda/(h*(-h*lambda + 2))
    """

    name = "exact"

    def __init__(self, engine: str = "auto"):
        self.engine = engine

    def applies_to(self, recursion):
        return True

    def solve(self, recursion):
        A, b = halfvec_system(recursion)
        (A, b), back = desqrt([A, b])
        entries, denominator = solve_canonical(A, b, method=self.engine)
        state_cov = from_halfvec(recursion.n, entries)
        if back:
            state_cov, denominator = state_cov.subs(back), denominator.subs(back)
        return Solution(state_cov, denominator, self.name)


class InvariantSolver(Solver):
    r"""The characteristic-algebra solution of :math:`\Sigma = M\Sigma M^\top + BQ_0B^\top`
    (:func:`symsgd.cayley.solve_stein`) for symbolic explicit matrices with additive noise.

    ``form`` is ``"auto"`` (expanded canonical entries while they are small, the structured form
    beyond), ``"expanded"`` or ``"structured"``.

    >>> import symsgd as ss
    >>> from symsgd.landscapes import symmetric_matrix
    >>> from symsgd.recursion import build_recursion
    >>> C = symmetric_matrix(2, "c")
    >>> r = build_recursion(ss.SGD(ss.lr), ss.Quadratic.symbolic(2), ss.AdditiveNoise(C))
    >>> InvariantSolver().solve(r).denominator
    (h_11*h_22 - h_12**2)*(-h_11*h_22*lambda + h_11 + h_12**2*lambda + h_22)*(h_11*h_22*lambda**2
    - 2*h_11*lambda - h_12**2*lambda**2 - 2*h_22*lambda + 4)
    """

    name = "invariant"

    def __init__(self, form: str = "auto"):
        self.form = form

    def applies_to(self, recursion):
        from .cayley import NotApplicable, SteinSolution

        if recursion.noise.depends_on_state() or recursion.n < 2:
            return False
        M, F = recursion.M, recursion.forcing()
        if not (M.free_symbols or F.free_symbols) or desqrt([M, F])[1]:
            return False
        try:
            SteinSolution(M, F)
        except NotApplicable:
            return False
        return True

    def solve(self, recursion):
        from .cayley import solve_stein

        X, denominator, form = solve_stein(recursion.M, recursion.forcing(), self.form)
        if form is None:
            return Solution(X, denominator, self.name)
        return Solution(X, denominator, f"{self.name}-structured", form=form)


class EigenmodeSolver(Solver):
    """Diagonal H, C and P (the commuting case in its eigenbasis), additive noise: solve one
    mode with symbolic eigenvalues and substitute — cost independent of d."""

    name = "eigenmode"

    def applies_to(self, recursion):
        land = recursion.landscape
        if land.eigenmode or land.dim == 1 or not isinstance(recursion.noise, AdditiveNoise):
            return False
        opt = recursion.optimizer
        P = opt.preconditioner(land, recursion.noise)
        mats = [land.hessian, recursion.noise.C] + ([] if P is None else [P])
        if not (recursion.M.free_symbols or recursion.forcing().free_symbols):
            return False  # all numeric: the numeric solver is direct (floats stay floats)
        return all(m.is_diagonal() for m in mats)

    def solve(self, recursion):
        from .landscapes import Quadratic
        from .recursion import build_recursion

        land, noise, opt = recursion.landscape, recursion.noise, recursion.optimizer
        d = land.dim
        h, c = sp.Dummy("h", positive=True), sp.Dummy("c", nonnegative=True)
        solved: dict = {}  # one exact solve per distinct per-mode optimizer
        n1 = opt.blocks
        S = sp.zeros(n1 * d, n1 * d)
        for k in range(d):
            mode_opt = opt.restrict(k)
            if mode_opt not in solved:
                one = build_recursion(mode_opt, Quadratic(h), AdditiveNoise(c))
                solved[mode_opt] = ExactSolver().solve(one).state_cov
            mode = solved[mode_opt].subs({h: land.hessian[k, k], c: noise.C[k, k]})
            for a in range(n1):
                for b in range(n1):
                    S[a * d + k, b * d + k] = mode[a, b]
        common = sp.Integer(1)
        for e in S:
            if e != 0:
                common = sp.lcm(common, sp.fraction(sp.together(e))[1])
        return Solution(sp.ImmutableMatrix(S), canonical(common), self.name)


class NumericSolver(Solver):
    """Every entry numeric: exact rationals via ``DomainMatrix`` over QQ, floats via scipy."""

    name = "numeric"

    def __init__(self, exact: bool | None = None):
        self.exact = exact

    def applies_to(self, recursion):
        mats = [recursion.M, recursion.B, recursion.forcing()]
        if recursion.noise.depends_on_state():
            A, _ = halfvec_system(recursion)
            mats.append(A)
        return all(not sp.sympify(e).free_symbols for m in mats for e in m)

    def solve(self, recursion):
        floats = any(e.has(sp.Float) for m in (recursion.M, recursion.B) for e in m)
        exact = (not floats) if self.exact is None else self.exact
        n = recursion.n
        if exact:
            A, b = halfvec_system(recursion)
            from sympy.polys.matrices import DomainMatrix

            dm = DomainMatrix.from_Matrix(A).to_field()
            bd = DomainMatrix.from_Matrix(b).convert_to(dm.domain)
            try:
                x = dm.lu_solve(bd).to_Matrix()
            except Exception as exc:  # singular system
                raise ValueError(f"the stationary equation is singular: {exc}") from None
            return Solution(from_halfvec(n, list(x)), sp.Integer(1), "numeric-exact")
        S = numeric_state_cov(recursion)
        return Solution(sp.ImmutableMatrix(sp.Matrix(S.tolist())), sp.Integer(1), "numeric-float")


def numeric_state_cov(recursion: LinearRecursion) -> np.ndarray:
    """Float solution of the stationary equation (all entries numeric)."""
    return NumericMap.from_recursion(recursion).solve()


SOLVERS: tuple[Solver, ...] = (EigenmodeSolver(), NumericSolver(), InvariantSolver(), ExactSolver())


def solve(recursion: LinearRecursion, method: str = "auto", conditions=None) -> Solution:
    """Solve with the first strategy that applies (``method="auto"``) or the named one
    (``"eigenmode"``, ``"numeric"``, ``"invariant"``, ``"exact"``, ``"domainmatrix"``).

    Every candidate is certified against the stationary equation (:mod:`symsgd.certify`,
    points drawn inside ``conditions`` when given) before it is returned.  With ``"auto"`` a
    candidate that fails its certificate is discarded and the next applicable strategy is
    tried; when none passes (or the named strategy fails) :class:`~symsgd.InternalError` is
    raised — a wrong answer is never returned.
    """
    named = {
        "eigenmode": EigenmodeSolver(),
        "numeric": NumericSolver(),
        "invariant": InvariantSolver(),
        "exact": ExactSolver(),
        "domainmatrix": ExactSolver(engine="domainmatrix"),
    }
    if method == "auto":
        # capability checks are made lazily, in order: a later strategy's check can be costly
        candidates = (*SOLVERS, named["domainmatrix"])
    elif method in named:
        candidates = (named[method],)
        if not candidates[0].applies_to(recursion):
            raise ValueError(f"the {method!r} solver does not apply to this problem.")
    else:
        raise ValueError(
            f"method must be one of 'auto', {', '.join(map(repr, named))}; got {method!r}."
        )
    failures = []
    for solver in candidates:
        if method == "auto" and not solver.applies_to(recursion):
            continue
        try:
            solution = solver.solve(recursion)
            certificate = certify_stationary(recursion, solution.state_cov, conditions)
        except InternalError as exc:
            failures.append(f"{solver.name}: {exc}")
            continue
        return replace(solution, certificate=certificate)
    raise InternalError(
        "no solver strategy produced a certified stationary law; nothing was returned. "
        + " | ".join(failures)
    )
