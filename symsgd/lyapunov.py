r"""Solvers for a stationary second-moment equation, discrete or continuous time.

Every solver solves one linear equation :math:`\mathcal F(\Sigma) = G` for symmetric
:math:`\Sigma` (a :class:`StationaryEquation`):

* **discrete time**, from a :class:`~symsgd.recursion.LinearRecursion`
  (:meth:`StationaryEquation.of`):
  :math:`\Sigma - M\Sigma M^\top - B\mathcal L(K\Sigma K^\top)B^\top = BQ_0B^\top`;
* **continuous time** (the SDE of :mod:`symsgd._continuous`,
  :meth:`StationaryEquation.continuous`):
  :math:`A\Sigma + \Sigma A^\top - \lambda_{\rm eff}P(Q(\Sigma) - Q_0)P^\top =
  \lambda_{\rm eff}PQ_0P^\top`.

With state-independent noise both are *Stein* / *Lyapunov* equations in one matrix
(:math:`\Sigma - M\Sigma M^\top = F`, :math:`A\Sigma + \Sigma A^\top = G`).

Strategies (:data:`SOLVERS`, tried in order; the first whose ``applies_to`` is true is used):

``EigenmodeSolver``
    discrete time, symbolic, additive noise, and a recursion that does not mix the eigen-modes
    (diagonal H, C and P — the commuting case in its eigenbasis): each mode's small block of
    the equation is solved on its own, read off the recursion's matrices.
``NumericSolver``
    every entry a number: exact over the rationals (sympy ``DomainMatrix`` over QQ) when the
    entries are rational, float64 otherwise (:class:`symsgd.moments.NumericMap` in discrete
    time; scipy's ``solve_continuous_lyapunov``, or the half-vectorised system for
    state-dependent noise, in continuous time).
``TraceSplitSolver``
    symbolic, with noise local up to one trace (online Gaussian regression's minibatch noise,
    :math:`S\mathcal L(X) = AXA + \operatorname{Tr}(AX)A`) and block-diagonal matrices
    (a diagonal or block-diagonal A): each block solved with the trace κ as an unknown, then
    the one scalar equation for κ (method ``"trace-split"``); cost linear in the blocks.
``CompanionSolver``
    (from state dimension :data:`COMPANION_FROM_STATE` on) symbolic momentum-type recursions
    (k ≥ 2 state blocks, each block of ``M`` and ``B`` a polynomial in the symmetric H) with
    additive noise: a k² elimination over the optimizer's parameters and two variables, then
    one d(d+1)/2 universal elimination in the characteristic coefficients of H
    (:mod:`symsgd.companion`); large answers (fully symbolic heavy ball and Nesterov with
    d = 3) are kept structured.
``InvariantSolver``
    symbolic matrices with state-independent noise (integer-polynomial entries): the
    characteristic-algebra formula of :mod:`symsgd.cayley` — a universal n(n+1)/2 elimination in
    the coefficients of the characteristic polynomial only, then composition; large answers
    (fully symbolic SGD with d ≥ 4) are kept in that structured form.
``ExactSolver``
    anything symbolic: the half-vectorised system (n(n+1)/2 unknowns) solved by fraction-free
    elimination (:func:`symsgd.exact.solve_den`).

Each returns a :class:`Solution` with the covariance as cancelled ``numerator / denominator``
entries and the common denominator (the stability polynomial).  :func:`solve` certifies every
candidate against its equation (:mod:`symsgd.certify`) before returning it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import sympy as sp

from .certify import (
    Certificate,
    certify,
    certify_float_state,
    certify_stationary,
    probe_symbols,
)
from .companion import CompanionSolution, polynomial_blocks
from .errors import InternalError
from .exact import canonical, desqrt, solve_canonical
from .moments import (
    NumericMap,
    block_rows,
    coupled_groups,
    from_halfvec,
    halfvec_operator_system,
    halfvec_system,
)
from .recursion import LinearRecursion

__all__ = [
    "SOLVERS",
    "CompanionSolver",
    "EigenmodeSolver",
    "ExactSolver",
    "InvariantSolver",
    "NumericSolver",
    "Solution",
    "StationaryEquation",
    "TraceSplitForm",
    "TraceSplitSolver",
    "numeric_solution",
    "numeric_state_cov",
    "solve",
]


@dataclass(frozen=True)
class Solution:
    """The stationary second moment and how it was obtained."""

    state_cov: sp.ImmutableMatrix
    #: common denominator of the entries, factored (1 for numeric solutions)
    denominator: sp.Expr
    method: str
    #: the structured characteristic-algebra form (:class:`symsgd.cayley.StructuredForm`) when
    #: the entries are kept unexpanded; readouts must then not expand them
    form: object = None
    #: what was checked before the solution was returned (:class:`symsgd.certify.Certificate`)
    certificate: object = None
    #: the float64 state second moment of the numeric fast path (:func:`numeric_solution`);
    #: ``state_cov`` is then None and readouts convert only what they return
    array: np.ndarray | None = field(default=None, repr=False, compare=False)


# -- the equation ------------------------------------------------------------------------------
def _is_numeric(*matrices) -> bool:
    return all(not sp.sympify(e).free_symbols for m in matrices for e in m)


def _has_float(*matrices) -> bool:
    return any(sp.sympify(e).has(sp.Float) for m in matrices for e in m)


def _abs(m: sp.MatrixBase) -> sp.Matrix:
    return sp.Matrix(m).applyfunc(abs)


#: the equation of a recursion while anyone holds it (keyed by the recursion's id; the equation
#: holds its recursion, so the id stays unique while the entry lives)
_EQUATIONS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class StationaryEquation:
    r"""A stationary equation :math:`\mathcal F(\Sigma) = G` for symmetric n×n Σ, with
    :math:`\mathcal F` linear — what every solver strategy takes.

    Build it with :meth:`of` (discrete time, from a recursion; one object per recursion, so
    the half-vectorised system and the characteristic-algebra pieces are built once) or
    :meth:`continuous` (the SDE's Lyapunov equation).  ``stein`` is the one matrix of the Stein
    form (``M`` of :math:`\Sigma - M\Sigma M^\top = G`, or ``A`` of the continuous
    :math:`A\Sigma + \Sigma A^\top = G`) when the noise does not depend on the state, else None.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> eq = StationaryEquation.continuous(sp.Matrix([[h]]), sp.Matrix([[ss.lr * c]]))
    >>> solve(eq).state_cov
    Matrix([[c*lambda/(2*h)]])
    """

    def __init__(
        self,
        operator: Callable[[sp.Matrix], sp.Matrix],
        forcing: sp.MatrixBase,
        *,
        stein: sp.MatrixBase | None,
        continuous: bool,
        text: str,
        recursion: LinearRecursion | None = None,
        sizes: Callable[[sp.Matrix], sp.Matrix] | None = None,
    ):
        #: the linear map F (symmetric matrices to symmetric matrices)
        self.operator = operator
        #: the right-hand side G
        self.forcing = sp.ImmutableMatrix(forcing)
        self.n = self.forcing.rows
        self.stein = None if stein is None else sp.ImmutableMatrix(stein)
        self.continuous = continuous
        #: the equation as printed in certificates
        self.text = text
        #: the discrete-time recursion the equation was read off (None in continuous time)
        self.recursion = recursion
        # X -> the entrywise size of the terms of F(X), the scale of a float residual
        self._sizes = sizes

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def of(cls, recursion: LinearRecursion) -> StationaryEquation:
        r"""The discrete-time equation :math:`\Sigma - T(\Sigma) = BQ_0B^\top` of
        ``recursion`` (the same object for the same recursion while it is held, e.g. through
        one :func:`solve`, so capability checks and solvers share what they build)."""
        if isinstance(recursion, StationaryEquation):
            return recursion
        if not isinstance(recursion, LinearRecursion):
            raise TypeError(
                f"expected a LinearRecursion or a StationaryEquation; got {recursion!r}."
            )
        key = id(recursion)
        hit = _EQUATIONS.get(key)
        if hit is not None and hit.recursion is recursion:
            return hit
        from .certify import STATIONARY_EQUATION

        additive = not recursion.noise.depends_on_state()
        out = cls(
            lambda E: E - recursion.second_moment_map(E),
            recursion.forcing(),
            stein=recursion.M if additive else None,
            continuous=False,
            text=STATIONARY_EQUATION,
            recursion=recursion,
        )
        _EQUATIONS[key] = out
        return out

    @classmethod
    def continuous(
        cls,
        A: sp.MatrixBase,
        G: sp.MatrixBase,
        coupling: Callable[[sp.Matrix], sp.Matrix] | None = None,
        text: str = "AΣ + ΣAᵀ = G (continuous time)",
    ) -> StationaryEquation:
        r""":math:`A\Sigma + \Sigma A^\top - \mathcal C(\Sigma) = G`, with ``coupling``
        :math:`\mathcal C` the state-dependent part of the noise (None for additive noise)."""
        A = sp.ImmutableMatrix(A)

        def operator(S):
            out = A * S + S * A.T
            return out if coupling is None else out - coupling(S)

        def sizes(S):  # entrywise |A||S| + |S||A|ᵀ (+ |C(S)|): the scale of F(S)'s terms
            out = _abs(A) * _abs(S) + _abs(S) * _abs(A).T
            return out if coupling is None else out + _abs(coupling(S))

        return cls(
            operator,
            G,
            stein=A if coupling is None else None,
            continuous=True,
            text=text,
            sizes=sizes,
        )

    # -- what the solvers read --------------------------------------------------------------
    @cached_property
    def system(self) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
        """The half-vectorised system ``A s = b`` (built once)."""
        if self.recursion is not None:
            return halfvec_system(self.recursion)
        A, b = halfvec_operator_system(self.operator, self.forcing, self.n)
        return sp.ImmutableMatrix(A), sp.ImmutableMatrix(b)

    def _matrices(self) -> tuple:
        r = self.recursion
        if r is not None:
            return (r.M, r.B, self.forcing)
        return (self.stein, self.forcing) if self.stein is not None else (self.forcing,)

    @cached_property
    def numeric(self) -> bool:
        """Every coefficient a number (no symbol)."""
        mats = self._matrices()
        if self.stein is None and not _is_numeric(self.forcing):
            return False
        if self.stein is None:
            mats = (*mats, self.system[0])
        return _is_numeric(*mats)

    @cached_property
    def floats(self) -> bool:
        """Some coefficient is a float (numeric answers are then float64)."""
        if self.recursion is not None:  # M and B decide (a float forcing stays exact)
            return _has_float(self.recursion.M, self.recursion.B)
        return _has_float(*self._matrices(), *(() if self.stein is not None else self.system))

    @cached_property
    def stein_solution(self):
        """The characteristic-algebra solution (:class:`symsgd.cayley.SteinSolution`) of the
        Stein form, built once; None when the formula does not apply (state-dependent noise,
        n < 2, all numeric, square roots, entries that are not integer polynomials)."""
        from .cayley import NotApplicable, SteinSolution

        M, F = self.stein, self.forcing
        if M is None or self.n < 2 or self.numeric or desqrt([M, F])[1]:
            return None
        try:
            return SteinSolution(M, F, self.continuous)
        except NotApplicable:
            return None

    @cached_property
    def companion_blocks(self):
        """The block polynomials of a symbolic momentum-type recursion with additive noise
        (:func:`symsgd.companion.polynomial_blocks`), read once; None when they do not
        apply."""
        r = self.recursion
        if r is None or self.stein is None or self.numeric or desqrt([r.M, self.forcing])[1]:
            return None
        return polynomial_blocks(r)

    @cached_property
    def trace_blocks(self):
        """``(coupling, blocks)`` of a recursion whose noise is local up to one trace
        (:meth:`symsgd.noise.Noise.trace_coupling`) and whose matrices split into at least two
        blocks (``(state rows, coordinates)`` each); None otherwise.  Read once."""
        r = self.recursion
        if r is None or r.landscape.eigenmode or r.landscape.dim < 2:
            return None
        coupling = r.noise.trace_coupling(r.landscape, r.optimizer.weight_decay)
        if coupling is None:
            return None
        blocks = _mode_blocks(r, *(sp.Matrix(m) for m in (coupling.F, coupling.W, coupling.D)))
        return None if blocks is None else (coupling, blocks)

    def numeric_solve(self) -> np.ndarray:
        """The float64 solution of an all-numeric equation."""
        if self.recursion is not None:
            return numeric_state_cov(self.recursion)
        G = np.array(self.forcing.evalf(), dtype=float)
        if self.stein is not None and self.continuous:
            from scipy.linalg import solve_continuous_lyapunov

            X = solve_continuous_lyapunov(np.array(self.stein.evalf(), dtype=float), G)
        else:
            A, b = self.system
            s = np.linalg.solve(np.array(A.evalf(), dtype=float), np.array(b.evalf(), dtype=float))
            X = np.array(from_halfvec(self.n, list(s.reshape(-1))).tolist(), dtype=float)
        return (X + X.T) / 2

    # -- certification ----------------------------------------------------------------------
    def certify(self, candidate: sp.MatrixBase, conditions: sp.Basic | None = None) -> Certificate:
        """:func:`symsgd.certify.certify` the candidate against this equation (raises
        :class:`~symsgd.InternalError` when it does not solve it)."""
        if self.recursion is not None:
            return certify_stationary(self.recursion, candidate, conditions)
        G = self.forcing

        def residual(X, point):
            R = sp.Matrix(self.operator(X)).xreplace(point) - G.xreplace(point)
            if not _has_float(X):
                return R
            terms = _abs(X) + _abs(G)
            if self._sizes is not None:
                terms = terms + sp.Matrix(self._sizes(X)).xreplace(point)
            return R, terms

        symbols = sp.Matrix(candidate).free_symbols | G.free_symbols
        symbols |= probe_symbols(self.operator, self.n)
        return certify(residual, candidate, symbols, equation=self.text, conditions=conditions)


# -- the strategies ----------------------------------------------------------------------------
class Solver:
    """Abstract solver strategy: ``applies_to`` and ``solve`` take a
    :class:`StationaryEquation` or a :class:`~symsgd.recursion.LinearRecursion`."""

    name = "abstract"

    def applies_to(self, problem: StationaryEquation | LinearRecursion) -> bool:
        raise NotImplementedError

    def solve(self, problem: StationaryEquation | LinearRecursion) -> Solution:
        raise NotImplementedError


class ExactSolver(Solver):
    r"""Fraction-free exact elimination on the half-vectorised equation.

    Solve :math:`\mathcal F(\Sigma) = G` for symmetric Σ with symbolic entries (for a recursion
    :math:`\Sigma = M\Sigma M^\top + B(Q_0 + \mathcal L(K\Sigma K^\top))B^\top`).  ``engine`` is
    ``"flint"`` (default when available) or ``"domainmatrix"``.

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

    def applies_to(self, problem):
        return True

    def solve(self, problem):
        equation = StationaryEquation.of(problem)
        (A, b), back = desqrt(list(equation.system))
        entries, denominator = solve_canonical(A, b, method=self.engine)
        state_cov = from_halfvec(equation.n, entries)
        if back:
            state_cov, denominator = state_cov.subs(back), denominator.subs(back)
        return Solution(state_cov, denominator, self.name)


class InvariantSolver(Solver):
    r"""The characteristic-algebra solution of :math:`\Sigma = M\Sigma M^\top + F` (or
    :math:`A\Sigma + \Sigma A^\top = G`; :class:`symsgd.cayley.SteinSolution`) for symbolic
    matrices with state-independent noise.  The capability check builds the solution's pieces
    once per equation and :meth:`solve` uses them.

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
        if form not in ("auto", "expanded", "structured"):
            raise ValueError(f"form must be 'auto', 'expanded' or 'structured'; got {form!r}.")
        self.form = form

    def applies_to(self, problem):
        return StationaryEquation.of(problem).stein_solution is not None

    def solve(self, problem):
        stein = StationaryEquation.of(problem).stein_solution
        if stein is None:
            raise ValueError("the 'invariant' solver does not apply to this problem.")
        X, denominator, form = stein.solve(self.form)
        if form is None:
            return Solution(X, denominator, self.name)
        return Solution(X, denominator, f"{self.name}-structured", form=form)


class CompanionSolver(Solver):
    r"""A symbolic k-block recursion (k ≥ 2: heavy ball, Nesterov, ...) whose blocks are
    polynomials in the symmetric Hessian, with additive noise: the scalar-pair system in
    (x, y) = (H on the left, H on the right), then the universal inverse of its denominator in
    the characteristic algebra of H (:class:`symsgd.companion.CompanionSolution`).  The
    capability check reads the block polynomials once per equation.

    ``form`` is ``"auto"`` (expanded canonical entries while they are small, the structured
    form beyond), ``"expanded"`` or ``"structured"``.

    >>> import symsgd as ss
    >>> from symsgd.landscapes import symmetric_matrix
    >>> from symsgd.recursion import build_recursion
    >>> r = build_recursion(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic.symbolic(2),
    ...                     ss.AdditiveNoise(symmetric_matrix(2, "c")))
    >>> CompanionSolver().solve(r).state_cov == ExactSolver().solve(r).state_cov
    True
    """

    name = "companion"

    def __init__(self, form: str = "auto", min_state: int = 0):
        if form not in ("auto", "expanded", "structured"):
            raise ValueError(f"form must be 'auto', 'expanded' or 'structured'; got {form!r}.")
        self.form = form
        #: smallest state dimension n = k·d it takes (the ``"auto"`` order leaves smaller states
        #: to the invariant solver, whose universal polynomials of dimension n ≤ 4 are instant
        #: and give the same canonical answer)
        self.min_state = min_state

    def applies_to(self, problem):
        equation = StationaryEquation.of(problem)
        if equation.n < self.min_state:
            return False
        return equation.companion_blocks is not None

    def solve(self, problem):
        equation = StationaryEquation.of(problem)
        blocks = equation.companion_blocks
        if blocks is None:
            raise ValueError("the 'companion' solver does not apply to this problem.")
        X, denominator, form = CompanionSolution(equation.recursion, blocks).solve(self.form)
        if form is None:
            return Solution(X, denominator, self.name)
        return Solution(X, denominator, f"{self.name}-structured", form=form)


class EigenmodeSolver(Solver):
    r"""A symbolic discrete-time recursion with additive noise whose eigen-modes do not mix
    (diagonal H, C and P — the commuting case in its eigenbasis): the state coordinates of mode
    k, :math:`\{a d + k\}` over the optimizer's blocks a, span an invariant subspace of ``M`` and
    receive only noise component k, so each mode's small Stein equation
    :math:`\Sigma_k = M_k\Sigma_kM_k^\top + B_kC_{kk}B_k^\top` is read off the recursion's own
    matrices and solved exactly on its own; cross-mode entries are zero.  Block-diagonal
    problems (H, C and P block-diagonal with the same blocks) split the same way, one small
    equation per block (method ``"block-diagonal"``): the cost grows linearly in the number of
    blocks."""

    name = "eigenmode"

    def applies_to(self, problem):
        equation = StationaryEquation.of(problem)
        r = equation.recursion
        if r is None or equation.stein is None or equation.numeric:
            return False  # all numeric: the numeric solver is direct (floats stay floats)
        land = r.landscape
        if land.eigenmode or land.dim == 1:
            return False
        return _mode_blocks(r) is not None

    def solve(self, problem):
        equation = StationaryEquation.of(problem)
        r = equation.recursion
        blocks = _mode_blocks(r)
        if blocks is None:
            raise ValueError("the 'eigenmode' solver does not apply to this problem.")
        d = r.landscape.dim
        Q0 = r.noise_cov(sp.zeros(d, d))
        S = sp.zeros(r.n, r.n)
        denominators = []
        exact = ExactSolver()
        M_all, B_all = sp.Matrix(r.M), sp.Matrix(r.B)  # once: a copy per mode is O(d³)
        for rows, coords in blocks:
            M = M_all.extract(rows, rows)
            B = B_all.extract(rows, coords)
            F = B * Q0.extract(coords, coords) * B.T
            mode = StationaryEquation(
                lambda E, M=M: E - M * E * M.T, F, stein=M, continuous=False, text=""
            )
            one = exact.solve(mode)
            for i, a in enumerate(rows):
                for j, b in enumerate(rows):
                    S[a, b] = one.state_cov[i, j]
            denominators.append(one.denominator)
        name = self.name if all(len(c) == 1 for _, c in blocks) else "block-diagonal"
        return Solution(sp.ImmutableMatrix(S), _common_denominator(denominators), name)


def _common_denominator(denominators: list) -> sp.Expr:
    """The lcm of factored, oriented denominators (:func:`symsgd.exact.solve_canonical`): each
    factor at its highest power (numeric constants dropped)."""
    powers: dict = {}
    for den in denominators:
        for factor in sp.Mul.make_args(den):
            base, e = factor.as_base_exp()
            if not base.is_number:
                powers[base] = max(powers.get(base, 0), e)
    return sp.Mul(*[b**e for b, e in powers.items()])


def _mode_blocks(r: LinearRecursion, *extra) -> list[tuple[list[int], list[int]]] | None:
    """The independent blocks of a block-diagonal problem: ``(state rows, noise coordinates)``
    for each connected group of coordinates that ``M``, ``B``, ``K``, the noise's ``Q₀`` and
    the ``extra`` d×d matrices couple (one eigen-mode per group for a diagonal problem); None
    when everything is one block (:func:`symsgd.moments.coupled_groups`: coordinate k of θ
    sits at state rows ``a·d + k``, one per optimizer block a)."""
    d, n = r.landscape.dim, r.n
    Q0 = sp.Matrix(r.noise_cov(sp.zeros(d, d)))
    groups = coupled_groups(d, n, (Q0, sp.Matrix(r.M), sp.Matrix(r.B), sp.Matrix(r.K), *extra))
    if groups is None:
        return None
    return [(block_rows(d, n, ks), ks) for ks in groups]


@dataclass(frozen=True)
class TraceSplitForm:
    r"""A trace-split solution kept unexpanded: block b of the state second moment is
    :math:`U_b + \kappa V_b` (each entry cancelled) with the one closed trace
    :math:`\kappa = \sum_b p_b / (1 - \sum_b q_b)` shared by all entries
    (:class:`TraceSplitSolver`).  Readouts use the entries as they are; expanding them into
    one cancelled fraction would multiply out the denominators of every block."""

    #: what kind of structured answer this is (error messages name it)
    description = "online regression split into blocks coupled by one trace κ = Tr(AΣ)"
    #: ``(state rows, U_b, V_b)`` per block (sympy matrices)
    blocks: tuple
    #: :math:`\sum_b p_b` and :math:`\sum_b q_b` (unexpanded sums over the blocks)
    numerator: sp.Expr
    slope: sp.Expr
    n: int

    @property
    def kappa(self) -> sp.Expr:
        r"""The closed trace :math:`\kappa = \sum_b p_b / (1 - \sum_b q_b)`."""
        return self.numerator / (1 - self.slope)

    def series(self, symbol: sp.Symbol, n: int) -> sp.Matrix:
        r"""Taylor series of the state second moment in ``symbol`` about 0, up to and
        excluding order ``n``: each block's :math:`U_b`, :math:`V_b`, :math:`p_b` and
        :math:`q_b` expanded as a power series (coefficients by the division recurrence of
        numerator by denominator), then κ and :math:`U_b + \kappa V_b` as truncated products —
        never one cancelled fraction of the whole."""
        out = sp.zeros(self.n, self.n)
        if n < 1:
            return out
        p, q = (
            _series_add([_taylor(t, symbol, n) for t in sp.Add.make_args(e)], n)
            for e in (self.numerator, self.slope)
        )
        one_minus = [sp.Integer(1) - q[0], *(-c for c in q[1:])]
        kappa = _series_mul(p, _series_inverse(one_minus, symbol), n)
        for rows, U, V in self.blocks:
            for i, a in enumerate(rows):
                for j, b in enumerate(rows):
                    if U[i, j] == 0 and V[i, j] == 0:
                        continue
                    u, v = _taylor(U[i, j], symbol, n), _taylor(V[i, j], symbol, n)
                    value = _series_add([u, _series_mul(v, kappa, n)], n)
                    out[a, b] = sp.Add(*(canonical(c) * symbol**k for k, c in enumerate(value)))
        return out


def _taylor(e: sp.Expr, x: sp.Symbol, n: int) -> list:
    r"""The first ``n`` Taylor coefficients at x = 0 of a rational function ``e``:
    :math:`q_k = (a_k - \sum_{j=1}^{k} b_jq_{k-j})/b_0` for numerator a and denominator b."""
    num, den = sp.fraction(sp.together(e))
    a = sp.Poly(sp.expand(num), x).all_coeffs()[::-1] if num.has(x) else [num]
    b = sp.Poly(sp.expand(den), x).all_coeffs()[::-1] if den.has(x) else [den]
    if b[0] == 0:
        raise ValueError(f"series(): the answer has a pole at {x} = 0.")
    out: list = []
    for k in range(n):
        value = a[k] if k < len(a) else sp.Integer(0)
        value -= sp.Add(*(b[j] * out[k - j] for j in range(1, min(k, len(b) - 1) + 1)))
        out.append(sp.cancel(value / b[0]))
    return out


def _series_add(terms: list, n: int) -> list:
    return [sp.Add(*(t[k] for t in terms)) for k in range(n)]


def _series_mul(u: list, v: list, n: int) -> list:
    return [sp.cancel(sp.Add(*(u[j] * v[k - j] for j in range(k + 1)))) for k in range(n)]


def _series_inverse(u: list, x: sp.Symbol) -> list:
    if sp.cancel(u[0]) == 0:
        raise ValueError(f"series(): the answer has a pole at {x} = 0.")
    out: list = []
    for k in range(len(u)):
        value = (sp.Integer(1) if k == 0 else 0) - sp.Add(
            *(u[j] * out[k - j] for j in range(1, k + 1))
        )
        out.append(sp.cancel(value / u[0]))
    return out


class TraceSplitSolver(Solver):
    r"""A symbolic discrete-time recursion whose noise is local up to one trace,
    :math:`\mathcal L(X) = sFXF^\top + \operatorname{Tr}(WX)D`
    (:meth:`symsgd.noise.Noise.trace_coupling`: online Gaussian regression's minibatch noise,
    :math:`S\mathcal L(X) = AXA + \operatorname{Tr}(AX)A`), with ``M``, ``B``, ``K``,
    :math:`Q_0` and F, W, D block-diagonal on the same blocks (e.g. a diagonal or
    block-diagonal A, for SGD, weight decay, heavy ball, Nesterov, ...).

    The blocks couple only through the scalar :math:`\kappa = \operatorname{Tr}(WK\Sigma
    K^\top)`.  Block b's equation, with κ an unknown,

    .. math:: \Sigma_b - M_b\Sigma_bM_b^\top - sB_bF_bK_b\Sigma_bK_b^\top F_b^\top B_b^\top
              = B_b(Q_{0,b} + \kappa D_b)B_b^\top,

    is solved exactly on its own (:class:`ExactSolver`, once for each of the two forcings):
    :math:`\Sigma_b = U_b + \kappa V_b`.
    Its share of the trace is affine in κ, :math:`p_b + q_b\kappa`, and summing closes it,
    :math:`\kappa = \sum_b p_b / (1 - \sum_b q_b)` — as the eigen-mode path closes its trace
    (:func:`symsgd.modes.close_trace`).  Cross-block entries are zero.  The cost grows
    linearly in the number of blocks.  The assembled answer is certified against the full
    equation by :func:`solve`, as every strategy's.

    ``form``: ``"auto"`` (entries expanded into cancelled fractions up to
    :data:`SPLIT_EXPANDED_MAX_BLOCKS` blocks, the structured :class:`TraceSplitForm` beyond),
    ``"expanded"`` or ``"structured"``.

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.recursion import build_recursion
    >>> a1, a2 = sp.symbols("a1 a2", positive=True)
    >>> r = build_recursion(ss.SGD(ss.lr), ss.LinearRegression(sp.diag(a1, a2), 1),
    ...                     ss.MinibatchNoise(ss.batch_size))
    >>> split = TraceSplitSolver().solve(r)
    >>> split.method, (split.state_cov - ExactSolver().solve(r).state_cov).applyfunc(sp.cancel)
    ('trace-split', Matrix([
    [0, 0],
    [0, 0]]))
    """

    name = "trace-split"

    def __init__(self, form: str = "auto", min_blocks: int = 2, min_state: int = 0):
        if form not in ("auto", "expanded", "structured"):
            raise ValueError(f"form must be 'auto', 'expanded' or 'structured'; got {form!r}.")
        self.form = form
        #: it takes a problem of at least ``min_blocks`` blocks or state dimension
        #: ``min_state`` (the ``"auto"`` order leaves smaller ones to the unsplit exact
        #: elimination, which is fast there and gives its canonical expanded answer)
        self.min_blocks = min_blocks
        self.min_state = min_state

    def applies_to(self, problem):
        equation = StationaryEquation.of(problem)
        if equation.recursion is None or equation.stein is not None or equation.numeric:
            return False
        split = equation.trace_blocks
        if split is None:
            return False
        return len(split[1]) >= self.min_blocks or equation.n >= self.min_state

    def solve(self, problem):
        equation = StationaryEquation.of(problem)
        split = equation.trace_blocks
        if split is None:
            raise ValueError("the 'trace-split' solver does not apply to this problem.")
        coupling, blocks = split
        r = equation.recursion
        d = r.landscape.dim
        Q0 = sp.Matrix(r.noise_cov(sp.zeros(d, d)))
        M_all, B_all, K_all = sp.Matrix(r.M), sp.Matrix(r.B), sp.Matrix(r.K)
        exact = ExactSolver()
        solved, denominators = [], []
        p_sum, q_sum = [], []
        for rows, coords in blocks:
            M = M_all.extract(rows, rows)
            B = B_all.extract(rows, coords)
            K = K_all.extract(coords, rows)
            part = coupling.block(coords)
            G = B * sp.Matrix(part.F) * K
            s = part.scale

            def operator(E, M=M, G=G, s=s):
                return E - M * E * M.T - s * G * E * G.T

            # the block's equation is linear in (Σ_b, κ): Σ_b = U + κV, one solve per forcing
            U, V = (
                exact.solve(
                    StationaryEquation(operator, B * F * B.T, stein=None, continuous=False, text="")
                )
                for F in (Q0.extract(coords, coords), sp.Matrix(part.D))
            )
            weight = K.T * sp.Matrix(part.W) * K  # Tr(W K X Kᵀ) = Tr(weight X)
            p_sum.append(canonical((weight * U.state_cov).trace()))
            q_sum.append(canonical((weight * V.state_cov).trace()))
            solved.append((rows, U.state_cov, V.state_cov))
            denominators += [U.denominator, V.denominator]
        slope, numerator = sp.Add(*q_sum), sp.Add(*p_sum)
        closed = numerator / (1 - slope)
        structured = self.form == "structured" or (
            self.form == "auto" and len(blocks) > SPLIT_EXPANDED_MAX_BLOCKS
        )
        S = sp.zeros(r.n, r.n)
        for rows, U, V in solved:
            for i, a in enumerate(rows):
                for j, b in enumerate(rows):
                    if U[i, j] == 0 and V[i, j] == 0:
                        continue
                    value = U[i, j] + V[i, j] * closed
                    S[a, b] = value if structured else canonical(value)
        if not structured:
            dens = [sp.fraction(e)[1] for e in S if e != 0]
            return Solution(sp.ImmutableMatrix(S), _common_denominator(dens), self.name)
        form = TraceSplitForm(tuple(solved), numerator, slope, r.n)
        denominator = _common_denominator(denominators) * (1 - slope)
        return Solution(sp.ImmutableMatrix(S), denominator, f"{self.name}-structured", form=form)


#: in the ``"auto"`` form the trace-split answer is expanded into cancelled fractions up to
#: this many blocks; beyond, the expanded fractions grow exponentially in the number of
#: blocks (online regression, diagonal A: ~10³ operations at d = 4, ~10⁵ at d = 8, ~4·10⁶ at
#: d = 12) and the structured form is kept
SPLIT_EXPANDED_MAX_BLOCKS = 3

#: in the ``"auto"`` order the trace-split solver answers from this many blocks, or this state
#: dimension, on (below, the unsplit exact elimination takes ≲ 0.5 s and keeps its canonical
#: expanded answer; heavy ball with d = 4, n = 8, takes it over two minutes)
SPLIT_FROM_BLOCKS = 5
SPLIT_FROM_STATE = 8


class NumericSolver(Solver):
    """Every entry numeric: exact rationals via ``DomainMatrix`` over QQ, floats via float64
    (:class:`symsgd.moments.NumericMap` in discrete time)."""

    name = "numeric"

    def __init__(self, exact: bool | None = None):
        self.exact = exact

    def applies_to(self, problem):
        return StationaryEquation.of(problem).numeric

    def solve(self, problem):
        equation = StationaryEquation.of(problem)
        exact = (not equation.floats) if self.exact is None else self.exact
        if exact:
            from sympy.polys.matrices import DomainMatrix

            A, b = equation.system
            dm = DomainMatrix.from_Matrix(A).to_field()
            bd = DomainMatrix.from_Matrix(b).convert_to(dm.domain)
            try:
                x = dm.lu_solve(bd).to_Matrix()
            except Exception as exc:  # singular system
                raise ValueError(f"the stationary equation is singular: {exc}") from None
            return Solution(from_halfvec(equation.n, list(x)), sp.Integer(1), "numeric-exact")
        S = equation.numeric_solve()
        return Solution(sp.ImmutableMatrix(sp.Matrix(S.tolist())), sp.Integer(1), "numeric-float")


def numeric_state_cov(recursion: LinearRecursion) -> np.ndarray:
    """Float solution of the stationary equation of ``recursion`` (all entries numeric):
    :meth:`symsgd.moments.NumericMap.solve`."""
    return NumericMap.from_recursion(recursion).solve()


def numeric_solution(T: NumericMap, method: str = "numeric-float") -> Solution:
    r"""The float64 stationary law of an all-numeric problem from its second-moment map ``T``
    (:class:`symsgd.moments.NumericMap`, e.g. of
    :func:`symsgd.recursion.numeric_recursion`): solved in O(n³) (scipy's Stein solver for
    additive noise; the Stein-preconditioned Krylov solve for large state-dependent ones) and
    certified by its float residual (:func:`symsgd.certify.certify_float_state`) before it is
    returned.  No sympy matrix is built: ``state_cov`` is None and ``array`` holds the answer.
    The caller has checked stability (:meth:`~symsgd.moments.NumericMap.stable`).

    >>> import numpy as np
    >>> T = NumericMap(np.array([[0.5]]), np.array([[1.0]]), np.array([[1.0]]), np.eye(1))
    >>> s = numeric_solution(T)
    >>> s.array, s.certificate.how  # 1 / (1 − 0.25)
    (array([[1.33333333]]), 'float')
    """
    state = T.solve()
    certificate = certify_float_state(T, state)
    return Solution(None, sp.Integer(1), method, certificate=certificate, array=state)


#: in the ``"auto"`` order the companion solver answers momentum-type problems from this state
#: dimension on (fully symbolic heavy ball with d = 3, n = 6: ~1 s, where the invariant solver's
#: universal polynomials of dimension 6 and the 21-unknown elimination take minutes)
COMPANION_FROM_STATE = 6

SOLVERS: tuple[Solver, ...] = (
    EigenmodeSolver(),
    NumericSolver(),
    TraceSplitSolver(min_blocks=SPLIT_FROM_BLOCKS, min_state=SPLIT_FROM_STATE),
    CompanionSolver(min_state=COMPANION_FROM_STATE),
    InvariantSolver(),
    ExactSolver(),
)


def solve(
    problem: StationaryEquation | LinearRecursion, method: str = "auto", conditions=None
) -> Solution:
    """Solve with the first strategy that applies (``method="auto"``) or the named one
    (``"eigenmode"``, ``"numeric"``, ``"trace-split"``, ``"companion"``, ``"invariant"``,
    ``"exact"``, ``"domainmatrix"``).

    ``problem`` is a :class:`~symsgd.recursion.LinearRecursion` (its discrete-time equation) or
    any :class:`StationaryEquation` (e.g. the continuous-time one).  Every candidate is
    certified against the equation (:mod:`symsgd.certify`, points drawn inside ``conditions``
    when given) before it is returned.  With ``"auto"`` a candidate that fails its certificate
    is discarded and the next applicable strategy is tried; when none passes (or the named
    strategy fails) :class:`~symsgd.InternalError` is raised — a wrong answer is never returned.
    """
    named = {
        "eigenmode": EigenmodeSolver(),
        "numeric": NumericSolver(),
        "trace-split": TraceSplitSolver(),
        "companion": CompanionSolver(),
        "invariant": InvariantSolver(),
        "exact": ExactSolver(),
        "domainmatrix": ExactSolver(engine="domainmatrix"),
    }
    equation = StationaryEquation.of(problem)
    # strategies see what they were given: a recursion stays a recursion (they accept both)
    given = problem
    if method == "auto":
        # capability checks are made lazily, in order: a later strategy's check can be costly
        candidates = (*SOLVERS, named["domainmatrix"])
    elif method in named:
        candidates = (named[method],)
        if not candidates[0].applies_to(given):
            raise ValueError(f"the {method!r} solver does not apply to this problem.")
    else:
        raise ValueError(
            f"method must be one of 'auto', {', '.join(map(repr, named))}; got {method!r}."
        )
    failures = []
    for solver in candidates:
        if method == "auto" and not solver.applies_to(given):
            continue
        try:
            solution = solver.solve(given)
            certificate = equation.certify(solution.state_cov, conditions)
        except InternalError as exc:
            failures.append(f"{solver.name}: {exc}")
            continue
        return replace(solution, certificate=certificate)
    raise InternalError(
        "no solver strategy produced a certified stationary law; nothing was returned. "
        + " | ".join(failures)
    )
