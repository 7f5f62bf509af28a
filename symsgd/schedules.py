r"""Learning-rate and momentum schedules: the exact periodic steady state and finite runs.

A :class:`Schedule` is a sequence of *phases*: optimizers :math:`\mathcal O_0, \dots,
\mathcal O_{P-1}` sharing one state layout (e.g. SGD at the learning rates λ₀, …, λ_{P−1}, or
heavy-ball with a learning rate and momentum per phase), phase k applying :math:`\mathcal O_k`
for :math:`n_k` consecutive steps (one by default).  Phase k's second moment map on the raw
second moment :math:`S = \mathbb E[zz^\top]` of the state is the affine map of
:mod:`symsgd.moments`,

.. math:: \Phi_k(S) = T_k(S) + f_k, \qquad
          T_k(S) = M_kSM_k^\top + B_k\,\mathcal L(K_kSK_k^\top)\,B_k^\top, \quad
          f_k = B_kQ_0B_k^\top ,

so one pass over the period :math:`N = \sum_k n_k` steps is the composition
:math:`\Phi = \Phi_{P-1}^{n_{P-1}}\circ\dots\circ\Phi_0^{n_0}`, with linear part
:math:`\mathcal A = T_{P-1}^{n_{P-1}}\cdots T_0^{n_0}` and forcing
:math:`b = \Phi(0)`.

**Periodic steady state** (:func:`periodic_state`).  Repeating the schedule forever, the second
moment at the start of phase k converges to :math:`\Sigma_k` with

.. math:: \Sigma_{k+1} = \Phi_k^{n_k}(\Sigma_k) \quad (k = 0, \dots, P-1,\ \Sigma_P = \Sigma_0),
          \qquad \Sigma_0 = (I - \mathcal A)^{-1} b ,

from any start if and only if :math:`\rho(\mathcal A) < 1`.  Each :math:`T_k` is a positive map
(it sends positive semidefinite matrices to positive semidefinite ones: :math:`\mathcal L(S)` is
a covariance), so :math:`\mathcal A` is positive too, and then :math:`\rho(\mathcal A) < 1` iff
:math:`(I-\mathcal A)X = I` has a positive definite solution X [#]_ — for rational problems that
decides existence exactly.  The periodic mean is zero: :math:`\mathcal A(S) \succeq
\bar MS\bar M^\top` with :math:`\bar M` the product of the :math:`M_k^{n_k}`, so
:math:`\rho(\bar M)^2 \le \rho(\mathcal A) < 1`.  A single phase may be unstable on its own
(:math:`\rho(T_k) > 1`, a learning rate above the constant-rate edge) while the cycle is stable.

.. [#] If :math:`\rho(\mathcal A) < 1`, :math:`X = \sum_j \mathcal A^j(I) \succeq I`.
   Conversely the adjoint :math:`\mathcal A^*` is positive with a Perron eigenvector
   :math:`W \succeq 0`, :math:`\mathcal A^*W = \rho W`; pairing :math:`X - \mathcal A X = I`
   with W gives :math:`(1-\rho)\langle W, X\rangle = \operatorname{Tr} W > 0`, and
   :math:`\langle W, X\rangle > 0` for X ≻ 0, so ρ < 1.

**Finite schedules** (:func:`run_schedule`).  Started at rest at θ₀, the mean and raw second
moment follow the affine map on (m, s, 1) of :func:`symsgd.transient` (including the mean term
of minibatch noise on finite data), one per phase; the moments at the end of each phase of the
last cycle are the product of those maps applied to the start, powers taken by repeated
squaring — exactly in :math:`\mathbb Q` for rational inputs, in float64 for float inputs.

>>> import sympy as sp, symsgd as ss
>>> R = sp.Rational
>>> cycle = Schedule.cyclical(ss.SGD, [R(5, 2), R(1, 2)])  # λh = 5/2 > 2 alone diverges
>>> state = periodic_state(cycle, ss.Quadratic(1), ss.AdditiveNoise(1))
>>> state.covs  # Σ before the λ = 5/2 step and before the λ = 1/2 step
(Matrix([[29/7]]), Matrix([[109/7]]))
>>> state.radius, state.method  # (1 − 5/2)² (1 − 1/2)² = 9/4 · 1/4
(0.5625, 'exact')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.polys.matrices import DomainMatrix

from ._transient import Transient, _affine, _start
from ._util import field_atoms, field_symbols
from .certify import FLOAT_RTOL, Certificate
from .errors import InternalError, UnstableError
from .landscapes import Landscape, LinearRegression
from .moments import (
    DENSE_MAX_STATE,
    NumericMap,
    from_halfvec,
    halfvec_system,
    operator_matrix,
    pairs,
    spectral_radius,
)
from .noise import Noise
from .optimizers import Optimizer
from .recursion import LinearRecursion, build_recursion, numeric_recursion
from .stability import conditions_from, schur_conditions

__all__ = ["PeriodicState", "Schedule", "ScheduleRun", "periodic_state", "run_schedule"]

#: the equation every phase of a periodic state is certified against
PERIODIC_EQUATION = "Σ_{k+1} = Φ_k^{n_k}(Σ_k), Φ_k(S) = M_kSM_kᵀ + B_kQ(K_kSK_kᵀ)B_kᵀ (cyclic)"
#: largest half-vector length n(n+1)/2 solved with symbolic parameters (n ≤ 2)
MAX_SYMBOLIC_PAIRS = 3
#: longest period (in steps) solved with symbolic parameters when the state is not scalar
MAX_SYMBOLIC_PERIOD = 8


# ---------------------------------------------------------------------------------------------
# the schedule
# ---------------------------------------------------------------------------------------------


def _layout(optimizer: Optimizer) -> tuple:
    """The optimizer's state layout: its blocks at rest at a scalar point x (e.g. (x, x) for
    heavy-ball's (θ, θ₋), (x, 0) for a momentum buffer)."""
    x = sp.Symbol("x")
    return tuple(sp.expand(sp.sympify(b)) for b in optimizer.initial_state(x))


@dataclass(frozen=True, init=False)
class Schedule:
    r"""A sequence of phases ``(optimizer, steps)`` applied in order (see the module).

    All optimizers must share one state layout — the same number of state blocks and the same
    state at rest (``initial_state``) — and one weight decay (it moves the minimum the moments
    are measured from); ``steps`` (default 1 per phase) are positive integers.

    >>> import sympy as sp, symsgd as ss
    >>> s = Schedule([ss.SGD(sp.Rational(1, 2)), ss.SGD(sp.Rational(1, 4))], steps=[1, 3])
    >>> len(s), s.period
    (2, 4)
    >>> Schedule([ss.SGD(1), ss.HeavyBall(1, sp.Rational(1, 2))])
    Traceback (most recent call last):
    ...
    ValueError: Schedule: every phase must share one state layout; phase 0 (SGD) has 1 state block(s) but phase 1 (HeavyBall) has 2.
    """  # noqa: E501

    optimizers: tuple[Optimizer, ...]
    steps: tuple[int, ...]

    def __init__(self, optimizers: Sequence[Optimizer], steps: Sequence[int] | int | None = None):
        optimizers = tuple(optimizers) if not isinstance(optimizers, Optimizer) else (optimizers,)
        if not optimizers:
            raise ValueError("Schedule: give at least one optimizer.")
        for k, opt in enumerate(optimizers):
            if not isinstance(opt, Optimizer):
                raise TypeError(
                    f"Schedule: phase {k} must be a symsgd optimizer (e.g. ss.SGD(0.1)); "
                    f"got {opt!r}."
                )
        if steps is None:
            steps = (1,) * len(optimizers)
        elif isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
            steps = (int(steps),) * len(optimizers)
        steps = tuple(steps)
        if len(steps) != len(optimizers):
            raise ValueError(
                f"Schedule: steps must give one count per phase ({len(optimizers)}); "
                f"got {len(steps)}."
            )
        for k, n in enumerate(steps):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer, sp.Integer)) or n < 1:
                raise ValueError(f"Schedule: steps[{k}] must be an integer ≥ 1; got {n!r}.")
        first = optimizers[0]
        head = f"phase 0 ({type(first).__name__})"
        for k, opt in enumerate(optimizers[1:], start=1):
            this = f"phase {k} ({type(opt).__name__})"
            if opt.blocks != first.blocks:
                raise ValueError(
                    f"Schedule: every phase must share one state layout; {head} has "
                    f"{first.blocks} state block(s) but {this} has {opt.blocks}."
                )
            if _layout(opt) != _layout(first):
                raise ValueError(
                    f"Schedule: every phase must share one state layout; {head} is at rest in "
                    f"the state {_layout(first)} but {this} in {_layout(opt)} (different "
                    "state variables cannot be handed from one phase to the next)."
                )
            if sp.sympify(opt.weight_decay - first.weight_decay) != 0:
                raise ValueError(
                    f"Schedule: every phase must have the same weight decay (it moves the "
                    f"minimum the moments are measured from); {head} has "
                    f"{first.weight_decay}, {this} has {opt.weight_decay}."
                )
        object.__setattr__(self, "optimizers", optimizers)
        object.__setattr__(self, "steps", tuple(int(n) for n in steps))

    @classmethod
    def cyclical(
        cls,
        make_optimizer: Callable[..., Optimizer],
        values: Sequence,
        steps: Sequence[int] | int | None = None,
    ) -> Schedule:
        """One phase per entry of ``values``: ``make_optimizer(v)`` (a tuple ``v`` is unpacked,
        e.g. ``(lr, momentum)`` for ``ss.HeavyBall``).

        >>> import symsgd as ss
        >>> Schedule.cyclical(ss.HeavyBall, [(0.1, 0.5), (0.3, 0.2)]).optimizers[1]
        HeavyBall(lr=0.300000000000000, weight_decay=0, momentum=0.200000000000000)
        """
        values = list(values)
        return cls(
            [make_optimizer(*v) if isinstance(v, tuple) else make_optimizer(v) for v in values],
            steps,
        )

    @classmethod
    def step_decay(
        cls,
        make_optimizer: Callable[..., Optimizer],
        initial,
        factor,
        phases: int,
        steps: int,
    ) -> Schedule:
        r"""``phases`` phases of ``steps`` steps each at the values initial·factorᵏ
        (k = 0, …, phases − 1): a step decay of the learning rate.

        >>> import sympy as sp, symsgd as ss
        >>> s = Schedule.step_decay(ss.SGD, sp.Rational(1, 2), sp.Rational(1, 10), 3, 100)
        >>> [o.lr for o in s.optimizers], s.steps
        ([1/2, 1/20, 1/200], (100, 100, 100))
        """
        if isinstance(phases, bool) or not isinstance(phases, (int, np.integer)) or phases < 1:
            raise ValueError(f"Schedule.step_decay: phases must be an integer ≥ 1; got {phases!r}.")
        initial, factor = sp.sympify(initial), sp.sympify(factor)
        return cls([make_optimizer(initial * factor**k) for k in range(phases)], steps)

    def __len__(self) -> int:
        return len(self.optimizers)

    def __iter__(self):
        return iter(zip(self.optimizers, self.steps))

    @property
    def period(self) -> int:
        """Steps in one pass of the schedule."""
        return sum(self.steps)


# ---------------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------------


def _check(schedule, landscape, noise, where: str) -> None:
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"{where}: schedule must be a Schedule (e.g. Schedule.cyclical(ss.SGD, "
            f"[0.5, 0.1])); got {schedule!r}."
        )
    if not isinstance(landscape, Landscape):
        raise TypeError(f"{where}: landscape must be e.g. ss.Quadratic(h); got {landscape!r}.")
    if not isinstance(noise, Noise):
        raise TypeError(f"{where}: noise must be e.g. ss.AdditiveNoise(c); got {noise!r}.")
    if landscape.eigenmode:
        raise NotImplementedError(f"{where}: eigen-mode problems are not supported yet.")


def _kind(schedule: Schedule, landscape: Landscape, noise: Noise, recs=None) -> str:
    """How to solve: ``"symbolic"`` (free symbols), ``"float"`` (any float), ``"exact"`` (all
    rational) or ``"algebraic"`` (numbers such as √2: exact in their number field).  Without
    the recursions ``recs`` it reads the pieces' fields (``"symbolic"`` meaning "build the
    recursions and look again"); with them, the entries of their second-moment maps — only the
    symbols those use count (Adam's β₂ does not enter the linear theory), and floats a
    preconditioner introduces (Adam's √v) count.  Floats beside used symbols are refused."""
    pieces = (*schedule.optimizers, landscape, noise)
    floats = set().union(*(field_atoms(p, sp.Float) for p in pieces))
    symbols = set().union(*(field_symbols(p) for p in pieces))
    if recs is None:
        return "symbolic" if symbols else ("float" if floats else "exact")
    maps = [_affine_half(rec) for rec in recs]
    symbols = set().union(*(G.free_symbols for G in maps))
    floats |= set().union(*(G.atoms(sp.Float) for G in maps))
    if symbols and floats:
        raise ValueError(
            f"symbolic parameters need exact numbers beside them (sp.Rational), not floats "
            f"({', '.join(sorted(map(str, floats)))}): the answer is checked to cancel "
            "identically."
        )
    if symbols:
        return "symbolic"
    if floats:
        return "float"
    return "exact" if all(e.is_Rational for G in maps for e in G) else "algebraic"


def _same_readout(recs: list[LinearRecursion]) -> None:
    """Every phase's recursion has the same state dimension and readout Θ."""
    n0 = recs[0].n
    for k, rec in enumerate(recs[1:], start=1):
        if rec.n != n0:
            raise ValueError(
                f"Schedule: every phase must share one state layout; phase 0 has state "
                f"dimension {n0} but phase {k} has {rec.n}."
            )
    theta = [_theta_array(rec) for rec in recs]
    for k, th in enumerate(theta[1:], start=1):
        if not np.array_equal(th, theta[0]):
            raise ValueError(
                f"Schedule: every phase must read θ from the same state entries; phase {k} "
                "reads it differently from phase 0."
            )


def _theta_array(rec: LinearRecursion) -> np.ndarray:
    if rec.arrays is not None:
        return rec.arrays[3]
    return np.array(sp.Matrix(rec.theta_map).evalf(), dtype=float)


def _to_flint(m: sp.MatrixBase):
    import flint

    return flint.fmpq_mat(
        m.rows, m.cols, [flint.fmpq(int(sp.Rational(e).p), int(sp.Rational(e).q)) for e in m]
    )


def _from_flint(m) -> sp.Matrix:
    return sp.Matrix(
        m.nrows(),
        m.ncols(),
        [sp.Rational(int(e.p), int(e.q)) for e in m.entries()],
    )


def _field_matrices(mats: list[sp.Matrix]) -> list:
    """The matrices as DomainMatrix over one field (rational functions of their symbols)."""
    out = [DomainMatrix.from_Matrix(sp.Matrix(m), extension=True) for m in mats]
    dom = out[0].domain
    for m in out[1:]:
        dom = dom.unify(m.domain)
    dom = dom.get_field()
    return [m.convert_to(dom) for m in out]


def _psd_exact(S: sp.MatrixBase, strict: bool = False) -> bool:
    """A rational symmetric matrix is positive semidefinite (``strict``: definite), decided
    exactly by symmetric Gaussian elimination in ℚ with diagonal pivoting: pivot on the
    largest diagonal entry; a negative one (zero, when ``strict``) refutes, a zero one needs
    its row to vanish."""
    from fractions import Fraction

    rows = [
        [Fraction(int(sp.Rational(e).p), int(sp.Rational(e).q)) for e in S.row(i)]
        for i in range(S.rows)
    ]
    live = list(range(S.rows))
    while live:
        k = max(live, key=lambda i: rows[i][i])
        pivot = rows[k][k]
        if pivot < 0 or (strict and pivot == 0):
            return False
        if pivot == 0:  # the largest diagonal entry is zero: every live entry must vanish
            return all(rows[i][j] == 0 for i in live for j in live)
        live.remove(k)
        for i in live:
            factor = rows[i][k] / pivot
            if factor:
                for j in live:
                    rows[i][j] -= factor * rows[k][j]
    return True


def _pd_exact(S: sp.MatrixBase) -> bool:
    return _psd_exact(S, strict=True)


# ---------------------------------------------------------------------------------------------
# the periodic steady state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodicState:
    r"""The periodic steady state of a schedule repeated forever (see the module).

    ``covs[k]`` is Var θ (= E θθᵀ: the periodic mean is zero) at the *start* of phase k, just
    before its first step (so ``covs[(k+1) % P]`` is the law after phase k);
    ``state_covs[k]`` the same for the whole state z; ``loss[k]`` / ``test_loss[k]`` the expected
    training / fresh-sample loss there (``test_loss`` None where the landscape has none);
    ``mean_cov``, ``mean_loss`` and ``mean_test_loss`` their averages over every step of the
    period; ``radius`` ρ(𝒜) of the one-period linear map (a float; for a scalar state with
    symbolic parameters the expression 𝒜 ≥ 0 itself, None for a larger symbolic state);
    ``conditions`` the existence condition ρ(𝒜) < 1 (a sympy boolean: ``true`` for numeric
    problems, the Schur conditions of 𝒜's characteristic polynomial for symbolic ones);
    ``method`` ``"exact"`` (ℚ), ``"algebraic"`` (a number field such as ℚ(√2)), ``"symbolic"``
    or ``"float"``; ``certificate`` what was checked.
    """

    schedule: Schedule
    covs: tuple
    state_covs: tuple
    loss: tuple
    test_loss: tuple | None
    mean_cov: sp.Matrix
    mean_loss: object
    mean_test_loss: object
    radius: object
    conditions: sp.Basic
    method: str
    certificate: Certificate

    @property
    def period(self) -> int:
        """Steps in one period."""
        return self.schedule.period


def periodic_state(schedule: Schedule, landscape: Landscape, noise: Noise) -> PeriodicState:
    r"""The exact periodic steady state of ``schedule`` repeated forever: the fixed point
    :math:`\Sigma_0 = (I-\mathcal A)^{-1}b` of the one-period affine map and its images
    :math:`\Sigma_{k+1} = \Phi_k^{n_k}(\Sigma_k)` (see the module for the math).

    * rational inputs: solved in :math:`\mathbb Q` (python-flint) on the half-vectorised second
      moment; existence decided exactly (:math:`(I-\mathcal A)X = I` has X ≻ 0); every phase
      certified by stepping its map :math:`n_k` times exactly from :math:`\Sigma_k` onto
      :math:`\Sigma_{k+1}`, and every Σ_k positive semidefinite;
    * float inputs: float64, a dense solve on vec Σ for states of dimension ≤
      :data:`~symsgd.moments.DENSE_MAX_STATE` (GMRES on the composed operator beyond), one
      step of iterative refinement, each phase certified by its float residual relative to
      the size of its terms (≤ ``FLOAT_RTOL``);
    * algebraic numbers (a √2 in H; no symbols): exactly in their number field, radius and
      positive semidefiniteness in float64;
    * floats anywhere (also those a preconditioner makes, Adam's 1/√v): the float path;
    * symbolic parameters: a scalar state (any period), or n ≤ 2 with a period of at most
      :data:`MAX_SYMBOLIC_PERIOD` steps; the cyclic equations are checked to cancel
      identically, ``conditions`` are the Schur conditions of 𝒜.

    Raises :class:`~symsgd.UnstableError` (with ``rho``) when a numeric schedule has
    ρ(𝒜) ≥ 1.

    >>> import sympy as sp, symsgd as ss
    >>> lam1, lam2 = sp.symbols("lambda1 lambda2", positive=True)
    >>> s = periodic_state(Schedule([ss.SGD(lam1), ss.SGD(lam2)]), ss.Quadratic(1),
    ...                    ss.AdditiveNoise(1))
    >>> s.radius  # the one-period map 𝒜 = (1 − λ₁)²(1 − λ₂)²
    (lambda1 - 1)**2*(lambda2 - 1)**2
    >>> want = (lam2**2 + (1 - lam2)**2 * lam1**2) / (1 - s.radius)  # Σ before the λ₁ step
    >>> sp.cancel(s.covs[0][0, 0] - want)
    0
    >>> s.conditions  # 𝒜 < 1
    -(lambda1*lambda2 - lambda1 - lambda2)*(lambda1*lambda2 - lambda1 - lambda2 + 2) > 0
    """
    _check(schedule, landscape, noise, "periodic_state")
    kind = _kind(schedule, landscape, noise)
    if kind == "float":
        return _periodic_float(schedule, landscape, noise)
    recs = [build_recursion(opt, landscape, noise) for opt in schedule.optimizers]
    _same_readout(recs)
    kind = _kind(schedule, landscape, noise, recs)
    if kind == "float":
        return _periodic_float(schedule, landscape, noise)
    if kind == "exact":
        return _periodic_exact(schedule, landscape, noise, recs)
    return _periodic_symbolic(schedule, landscape, noise, recs, algebraic=kind == "algebraic")


def _affine_half(rec: LinearRecursion) -> sp.Matrix:
    """[[T, f], [0, 1]] on (s, 1), s the half-vectorised raw second moment."""
    T = operator_matrix(rec)
    _, f = halfvec_system(rec)
    p = T.rows
    G = sp.zeros(p + 1, p + 1)
    G[:p, :p] = T
    G[:p, p] = f
    G[p, p] = 1
    return G


def _affine_in(fn, d: int, dom):
    """``fn`` (a d×d symmetric matrix ↦ expression, affine: a loss) as a function of a
    DomainMatrix over ``dom``, its coefficients read off once at a matrix of placeholders —
    so no sympy arithmetic on the (large) rational functions of a symbolic answer."""
    if fn is None:
        return None
    marks = {(i, j): sp.Dummy(f"s{i}{j}") for i in range(d) for j in range(i, d)}
    D = sp.Matrix(d, d, lambda i, j: marks[(min(i, j), max(i, j))])
    expr = fn(D)
    if expr is None:
        return None
    expr = sp.expand(expr)
    zero = {m: 0 for m in marks.values()}
    const = dom.from_sympy(expr.xreplace(zero))
    coeffs = {k: dom.from_sympy(expr.coeff(m)) for k, m in marks.items()}

    def apply(C):
        out = const
        for (i, j), c in coeffs.items():
            if c:
                out = out + c * C[i, j].element
        return dom.to_sympy(out)

    return apply


def _phase_readouts(covs: list, losses: list, tests: list, has_test: bool) -> dict:
    """The readout fields of a periodic state from per-phase values whose last entry is the
    cycle average."""
    return {
        "covs": tuple(covs[:-1]),
        "mean_cov": covs[-1],
        "loss": tuple(losses[:-1]),
        "mean_loss": losses[-1],
        "test_loss": tuple(tests[:-1]) if has_test else None,
        "mean_test_loss": tests[-1] if has_test else None,
    }


def _field_readouts(landscape, wd, Theta, states, mean_state, dom):
    """:func:`_readouts` for a symbolic answer: states are DomainMatrix over the field ``dom``."""
    d = Theta.rows
    Th = DomainMatrix.from_Matrix(Theta).convert_to(dom)
    loss = _affine_in(lambda S: landscape.loss(S, wd), d, dom)
    test = getattr(landscape, "test_loss", None)
    test = None if test is None else _affine_in(lambda S: test(S, wd), d, dom)
    covs, losses, tests = [], [], []
    for S in [*states, mean_state]:
        C = Th * S * Th.transpose()
        covs.append(sp.ImmutableMatrix(C.to_Matrix()))
        losses.append(loss(C))
        tests.append(None if test is None else test(C))
    return _phase_readouts(covs, losses, tests, test is not None)


def _readouts(landscape, schedule, recs, states, mean_state, numeric: bool):
    """θ covariances, losses and their averages from state second moments."""
    canonical = sp.cancel
    wd = schedule.optimizers[0].weight_decay
    Theta = sp.Matrix(recs[0].theta_map) if not numeric else None
    test = getattr(landscape, "test_loss", None)
    covs, losses, tests = [], [], []
    for S in [*states, mean_state]:
        if numeric:
            th = _theta_array(recs[0])
            C = th @ S @ th.T
            cov = sp.ImmutableMatrix(C)
            loss = float(landscape.numeric_loss(C, wd))
            t = getattr(landscape, "numeric_test_loss", None)
            tl = None if test is None else (None if t is None else t(C, wd))
        else:
            cov = sp.ImmutableMatrix((Theta * S * Theta.T).applyfunc(canonical))
            loss = canonical(landscape.loss(cov, wd))
            tl = None if test is None else test(cov, wd)
            tl = None if tl is None else canonical(tl)
        covs.append(cov)
        losses.append(loss)
        tests.append(tl)
    return _phase_readouts(covs, losses, tests, any(t is not None for t in tests))


def _periodic_exact(schedule, landscape, noise, recs) -> PeriodicState:
    import flint

    n = recs[0].n
    p = n * (n + 1) // 2
    G = [_to_flint(_affine_half(rec)) for rec in recs]
    powers = [g**t for g, t in zip(G, schedule.steps)]
    cycle = flint.fmpq_mat(p + 1, p + 1, [int(i == j) for i in range(p + 1) for j in range(p + 1)])
    for P in powers:
        cycle = P * cycle
    A = _from_flint(cycle)[:p, :p]
    b = _from_flint(cycle)[:p, p]
    radius = _float_radius(np.array(A.evalf(), dtype=float))
    eye_half = sp.Matrix([int(i == j) for i, j in pairs(n)])
    I_A = _to_flint(sp.eye(p) - A)
    try:
        X = _from_flint(I_A.solve(_to_flint(eye_half)))
        stable = _pd_exact(from_halfvec(n, list(X)))
    except ZeroDivisionError:  # I − 𝒜 singular: 1 is an eigenvalue
        stable = False
    if stable != (radius < 1) and abs(radius - 1) > 1e-9:
        raise InternalError(
            f"periodic_state: the exact existence test ({stable}) contradicts the float "
            f"spectral radius ρ = {radius:.12g}; nothing was returned."
        )
    if not stable:
        raise UnstableError.at(
            "periodic_state()",
            subject=_describe(schedule, landscape, noise),
            rho=radius,
            reason="the one-period second-moment map has spectral radius ≥ 1",
            advice="Lower the learning rates of the cycle (or shorten its unstable phases).",
        )
    s0 = _from_flint(I_A.solve(_to_flint(b)))
    halves = [s0]
    for P in powers[:-1]:
        v = _from_flint(P * _to_flint(sp.Matrix([*halves[-1], 1])))
        halves.append(v[:p, 0])
    # the average over every step of the period: Σ_k Σ_{j<n_k} Φ_kʲ(Σ_k)
    total = sp.zeros(p, 1)
    for g, t, s in zip(G, schedule.steps, halves):
        big = flint.fmpq_mat(2 * (p + 1), 2 * (p + 1))
        for i in range(p + 1):
            for j in range(p + 1):
                big[i, j] = g[i, j]
            big[i, p + 1 + i] = 1
            big[p + 1 + i, p + 1 + i] = 1
        pw = big**t
        acc = flint.fmpq_mat(p + 1, p + 1)
        for i in range(p + 1):
            for j in range(p + 1):
                acc[i, j] = pw[i, p + 1 + j]
        total += _from_flint(acc * _to_flint(sp.Matrix([*s, 1])))[:p, 0]
    mean_half = total / schedule.period
    certificate = _certify_exact(schedule, recs, halves, n)
    states = [sp.Matrix(from_halfvec(n, list(s))) for s in halves]
    mean_state = sp.Matrix(from_halfvec(n, list(mean_half)))
    readouts = _readouts(landscape, schedule, recs, states, mean_state, numeric=False)
    return PeriodicState(
        schedule=schedule,
        state_covs=tuple(sp.ImmutableMatrix(S) for S in states),
        radius=radius,
        conditions=sp.true,
        method="exact",
        certificate=certificate,
        **readouts,
    )


def _certify_exact(schedule, recs, halves, n) -> Certificate:
    """Step each phase's map n_k times exactly from Σ_k — a single step through the
    recursion's own :meth:`~symsgd.LinearRecursion.second_moment_map` on full matrices, longer
    phases through its half-vectorised matrix in ℚ — and require Σ_{k+1} exactly, cyclically;
    every Σ_k positive semidefinite."""
    P = len(recs)
    for k, (rec, t) in enumerate(zip(recs, schedule.steps)):
        start = sp.Matrix(from_halfvec(n, list(halves[k])))
        want = sp.Matrix(from_halfvec(n, list(halves[(k + 1) % P])))
        if t == 1:
            got = rec.second_moment_map(start) + rec.forcing()
        else:
            g = _to_flint(_affine_half(rec))
            v = _to_flint(sp.Matrix([*halves[k], 1]))
            for _ in range(t):
                v = g * v
            got = sp.Matrix(from_halfvec(n, list(_from_flint(v)[: len(halves[k]), 0])))
        gap = (got - want).applyfunc(sp.expand)
        if not gap.is_zero_matrix:
            raise InternalError(
                f"periodic_state: phase {k} does not map Σ_{k} onto Σ_{(k + 1) % P} exactly; "
                "nothing was returned."
            )
        if not _psd_exact(start):
            raise InternalError(
                f"periodic_state: Σ_{k} is not positive semidefinite; nothing was returned."
            )
    return Certificate(PERIODIC_EQUATION, "exact", (), 0.0, (f"{P} phase(s), cyclic",))


def _periodic_symbolic(schedule, landscape, noise, recs, algebraic: bool) -> PeriodicState:
    """Symbolic parameters — or algebraic numbers (``algebraic``: no symbols, entries such as
    √2) — solved in the field of their rational functions (sympy's DomainMatrix)."""
    n = recs[0].n
    p = n * (n + 1) // 2
    if not algebraic and (
        p > MAX_SYMBOLIC_PAIRS or (p > 1 and schedule.period > MAX_SYMBOLIC_PERIOD)
    ):
        free = set().union(*(field_symbols(x) for x in (*schedule.optimizers, landscape, noise)))
        raise NotImplementedError(
            f"periodic_state: symbolic parameters need a scalar state, or a state of dimension "
            f"≤ 2 and a period of ≤ {MAX_SYMBOLIC_PERIOD} steps; this one has n = {n} and a "
            f"period of {schedule.period}. Give numbers for "
            f"{', '.join(sorted(map(str, free)))}."
        )
    # exact arithmetic in the field of rational functions of the parameters (sympy's
    # DomainMatrix): canonical elements, so the certificate's zero test is exact
    G = _field_matrices([_affine_half(rec) for rec in recs])
    dom = G[0].domain
    powers = [g**t for g, t in zip(G, schedule.steps)]
    cycle = DomainMatrix.eye(p + 1, dom)
    for P in powers:
        cycle = P * cycle
    A, b = cycle[:p, :p], cycle[:p, p:]
    one = DomainMatrix([[dom.one]], (1, 1), dom)
    if algebraic:
        radius = _float_radius(np.array(A.to_Matrix().evalf(), dtype=float))
        if not radius < 1:
            raise UnstableError.at(
                "periodic_state()",
                subject=_describe(schedule, landscape, noise),
                rho=radius,
                reason="the one-period second-moment map has spectral radius ≥ 1",
                advice="Lower the learning rates of the cycle (or shorten its unstable phases).",
            )
    halves = [(DomainMatrix.eye(p, dom) - A).lu_solve(b)]
    for P in powers[:-1]:
        halves.append((P * halves[-1].vstack(one))[:p, :])
    total = DomainMatrix.zeros((p, 1), dom)
    for g, t, s in zip(G, schedule.steps, halves):
        v = s.vstack(one)
        for _ in range(t):
            total = total + v[:p, :]
            v = g * v
    mean_half = total * dom.convert(sp.Rational(1, schedule.period))
    # certificate: every phase, stepped n_k times one step at a time, maps Σ_k onto Σ_{k+1}
    P_ = len(recs)
    for k, (g, t) in enumerate(zip(G, schedule.steps)):
        v = halves[k].vstack(one)
        for _ in range(t):
            v = g * v
        if not (v[:p, :] - halves[(k + 1) % P_]).is_zero_matrix:
            raise InternalError(
                f"periodic_state: phase {k} does not map Σ_{k} onto Σ_{(k + 1) % P_} "
                "identically; nothing was returned."
            )
    if algebraic:  # Σ_k ⪰ 0, checked in float64 (its entries are algebraic numbers)
        for k, h in enumerate(halves):
            X = np.array(from_halfvec(n, list(h.to_Matrix())).evalf(), dtype=float)
            if np.linalg.eigvalsh(X).min() < -FLOAT_RTOL * max(np.abs(X).max(), 1e-300):
                raise InternalError(
                    f"periodic_state: Σ_{k} is not positive semidefinite; nothing was returned."
                )
    how = "exactly in the number field" if algebraic else "identically in the parameters"
    certificate = Certificate(PERIODIC_EQUATION, "exact", (), 0.0, (how,))
    charpoly = [dom.to_sympy(c) for c in A.charpoly()]
    A = A.to_Matrix()
    index = pairs(n)

    def full(h):  # the symmetric n×n DomainMatrix of a half-vector
        rows = [[dom.zero] * n for _ in range(n)]
        for r, (i, j) in enumerate(index):
            rows[i][j] = rows[j][i] = h[r, 0].element
        return DomainMatrix(rows, (n, n), dom)

    dstates = [full(h) for h in halves]
    dmean = full(mean_half)
    z = sp.Dummy("z")
    if algebraic:
        conditions = sp.true
    elif p == 1:
        radius = sp.factor(A[0, 0])
        conditions = conditions_from([1 - A[0, 0]])  # 𝒜 ≥ 0: a positive map
    else:
        radius = None
        poly = sp.Add(*[c * z ** (p - i) for i, c in enumerate(charpoly)])
        conditions = conditions_from(schur_conditions(poly, z))
    states = [sp.ImmutableMatrix(S.to_Matrix()) for S in dstates]
    Theta = sp.Matrix(recs[0].theta_map)
    wd = schedule.optimizers[0].weight_decay
    readouts = _field_readouts(landscape, wd, Theta, dstates, dmean, dom)
    return PeriodicState(
        schedule=schedule,
        state_covs=tuple(states),
        radius=radius,
        conditions=conditions,
        method="algebraic" if algebraic else "symbolic",
        certificate=certificate,
        **readouts,
    )


def _float_radius(A: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(A)))) if A.size else 0.0


def _describe(schedule, landscape, noise) -> str:
    names = ", ".join(type(o).__name__ for o in schedule.optimizers)
    return f"the schedule [{names}] on {landscape!r} with {noise!r}"


def _phase_map(T: NumericMap, S: np.ndarray, t: int, forcing: np.ndarray) -> np.ndarray:
    for _ in range(t):
        S = T.apply(S) + forcing
    return S


def _periodic_float(schedule, landscape, noise) -> PeriodicState:
    recs = [numeric_recursion(opt, landscape, noise) for opt in schedule.optimizers]
    _same_readout(recs)
    maps = [NumericMap.from_recursion(rec) for rec in recs]
    forcings = [T.forcing() for T in maps]
    n = maps[0].n
    steps = schedule.steps

    def cycle_linear(S):
        for T, t in zip(maps, steps):
            for _ in range(t):
                S = T.apply(S)
        return S

    b = np.zeros((n, n))
    for T, t, f in zip(maps, steps, forcings):
        b = _phase_map(T, b, t, f)
    if n <= DENSE_MAX_STATE:
        q = n * n
        A = np.eye(q)
        for T, t in zip(maps, steps):
            A = np.linalg.matrix_power(T.matrix(), t) @ A
        radius = _float_radius(A)
        solve = _dense_solver(np.eye(q) - A)
    else:
        op = _operator(cycle_linear, n)
        radius = _arnoldi(op, n)
        solve = _gmres_solver(cycle_linear, n)
    if not radius < 1:
        raise UnstableError.at(
            "periodic_state()",
            subject=_describe(schedule, landscape, noise),
            rho=radius,
            reason="the one-period second-moment map has spectral radius ≥ 1",
            advice="Lower the learning rates of the cycle (or shorten its unstable phases).",
        )
    S0 = solve(b)
    for _ in range(2):  # iterative refinement on the one-period fixed point
        S = S0
        for T, t, f in zip(maps, steps, forcings):
            S = _phase_map(T, S, t, f)
        S0 = S0 + solve(S - S0)
    S0 = (S0 + S0.T) / 2
    states = [S0]
    total = np.zeros((n, n))
    for k, (T, t, f) in enumerate(zip(maps, steps, forcings)):
        S = states[k]
        for _ in range(t):
            total += S
            S = T.apply(S) + f
        if k < len(maps) - 1:
            states.append((S + S.T) / 2)
    mean_state = total / schedule.period
    certificate = _certify_float(maps, forcings, steps, states)
    readouts = _readouts(landscape, schedule, recs, states, mean_state, numeric=True)
    return PeriodicState(
        schedule=schedule,
        state_covs=tuple(sp.ImmutableMatrix(S) for S in states),
        radius=radius,
        conditions=sp.true,
        method="float",
        certificate=certificate,
        **readouts,
    )


def _dense_solver(I_A: np.ndarray):
    from scipy.linalg import lu_factor, lu_solve

    lu = lu_factor(I_A)

    def solve(rhs: np.ndarray) -> np.ndarray:
        n = rhs.shape[0]
        return lu_solve(lu, rhs.reshape(-1)).reshape(n, n)

    return solve


def _operator(fn, n: int):
    from scipy.sparse.linalg import LinearOperator

    return LinearOperator(
        (n * n, n * n), matvec=lambda v: fn(np.asarray(v).reshape(n, n)).reshape(-1)
    )


def _arnoldi(op, n: int) -> float:
    from scipy.sparse.linalg import eigs

    values = eigs(
        op, k=1, which="LM", v0=np.eye(n).reshape(-1), tol=1e-10, return_eigenvectors=False
    )
    return float(np.max(np.abs(values)))


def _gmres_solver(cycle_linear, n: int):
    from scipy.sparse.linalg import gmres

    op = _operator(lambda S: S - cycle_linear(S), n)

    def solve(rhs: np.ndarray) -> np.ndarray:
        x, info = gmres(op, rhs.reshape(-1), rtol=1e-13, atol=0.0, restart=60, maxiter=200)
        if info != 0:
            raise ValueError(f"periodic_state: GMRES did not converge ({info}).")
        return x.reshape(n, n)

    return solve


def _certify_float(maps, forcings, steps, states) -> Certificate:
    r"""Each phase stepped n_k times in float64 from Σ_k must land on Σ_{k+1} (cyclically),
    entry by entry relative to :math:`|\Sigma_{k+1}| + |M||S||M|^\top + |B||Q||B|^\top`
    accumulated over the steps (≤ ``FLOAT_RTOL``); every Σ_k positive semidefinite."""
    P = len(maps)
    worst = 0.0
    for k, (T, t, f) in enumerate(zip(maps, steps, forcings)):
        S = states[k]
        terms = np.zeros_like(S)
        aM, aB = np.abs(T.M), np.abs(T.B)
        for _ in range(t):
            Q = T.noise(T.K @ S @ T.K.T)
            terms = terms + aM @ np.abs(S) @ aM.T + aB @ np.abs(Q) @ aB.T
            S = T.apply(S) + f
        want = states[(k + 1) % P]
        R = S - want
        floor = 1e-300 + 1e-15 * np.abs(want).max()
        size = float(np.max(np.abs(R) / (np.abs(want) + terms + floor)))
        worst = max(worst, size)
        if not np.isfinite(size) or size > FLOAT_RTOL:
            raise InternalError(
                f"periodic_state: phase {k} leaves a relative residual {size:.2e} (tolerance "
                f"{FLOAT_RTOL:g}) in {PERIODIC_EQUATION}; nothing was returned."
            )
        X = states[k]
        lowest = float(np.linalg.eigvalsh((X + X.T) / 2).min())
        if lowest < -FLOAT_RTOL * max(np.abs(X).max(), 1e-300):
            raise InternalError(
                f"periodic_state: Σ_{k} is not positive semidefinite (eigenvalue {lowest:.3g}); "
                "nothing was returned."
            )
    return Certificate(PERIODIC_EQUATION, "float", (), worst, (f"{P} phase(s), cyclic",))


# ---------------------------------------------------------------------------------------------
# finite schedules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRun:
    """The moments of a finite run of a schedule: ``phases[k]`` the
    :class:`~symsgd.Transient` at the end of phase k of the last cycle (``steps`` the steps
    done so far, ``rate`` ρ(T_k) of that phase's map), ``final`` the last of them."""

    schedule: Schedule
    cycles: int
    phases: tuple[Transient, ...]
    method: str

    @property
    def final(self) -> Transient:
        """The moments at the end of the run."""
        return self.phases[-1]


def run_schedule(
    schedule: Schedule,
    landscape: Landscape,
    noise: Noise,
    *,
    theta0,
    cycles: int = 1,
) -> ScheduleRun:
    r"""The exact mean and second moment after running ``schedule`` ``cycles`` times from rest
    at θ₀ (deviation from the minimum): the affine maps :math:`\mathcal T_k` of
    :func:`symsgd.transient` on (m, s, 1), multiplied in order,
    :math:`v_\text{end} = (\mathcal T_{P-1}^{n_{P-1}}\cdots\mathcal T_0^{n_0})^{\text{cycles}}
    v_0`, powers by repeated squaring — in :math:`\mathbb Q` for rational inputs, float64 for
    floats; symbolic parameters for a scalar state.  Returns the moments at the end of every
    phase of the last cycle (:class:`ScheduleRun`).

    >>> import sympy as sp, symsgd as ss
    >>> R = sp.Rational
    >>> decay = Schedule([ss.SGD(R(1, 2)), ss.SGD(R(1, 4))], steps=[1, 2])
    >>> run = run_schedule(decay, ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[2])
    >>> [p.second_moment[0, 0] for p in run.phases]  # (1/2)²·4 + 1/4; twice S ↦ 9S/16 + 1/16
    [5/4, 505/1024]
    """
    _check(schedule, landscape, noise, "run_schedule")
    if isinstance(cycles, bool) or not isinstance(cycles, (int, np.integer)) or cycles < 1:
        raise ValueError(f"run_schedule: cycles must be an integer ≥ 1; got {cycles!r}.")
    if (
        isinstance(landscape, LinearRegression)
        and sp.sympify(schedule.optimizers[0].weight_decay) != 0
    ):
        raise NotImplementedError(
            "run_schedule: LinearRegression with weight decay (the loss and noise gain terms "
            "in the mean) is not supported yet."
        )
    recs = [build_recursion(opt, landscape, noise) for opt in schedule.optimizers]
    _same_readout(recs)
    kind = _kind(schedule, landscape, noise, recs)
    n, d = recs[0].n, landscape.dim
    z0 = _start(schedule.optimizers[0], theta0, d)
    start_floats = any(e.has(sp.Float) for e in z0)
    if (z0.free_symbols or kind == "symbolic") and (start_floats or kind == "float"):
        raise ValueError(
            "run_schedule: symbolic parameters (or a symbolic theta0) need exact numbers beside "
            "them (sp.Rational), not floats."
        )
    if z0.free_symbols:
        kind = "symbolic"
    elif start_floats:
        kind = "float"
    if kind == "symbolic" and n != 1:
        raise NotImplementedError(
            f"run_schedule: symbolic parameters need a one-dimensional state (scalar SGD); "
            f"this state has n = {n}. Give numbers."
        )
    index = pairs(n)
    S0 = z0 * z0.T
    v0 = sp.Matrix([*z0, *[S0[i, j] for i, j in index], 1])
    affines = [_affine(rec) for rec in recs]
    vectors = _run(affines, schedule.steps, cycles, v0, kind)
    Theta = sp.Matrix(recs[0].theta_map)
    wd = schedule.optimizers[0].weight_decay
    test = getattr(landscape, "test_loss", None)
    done = (cycles - 1) * schedule.period
    phases = []
    for v, rec, t in zip(vectors, recs, schedule.steps):
        done += t
        m = sp.Matrix(v[:n])
        S = sp.Matrix(from_halfvec(n, list(v[n : n + len(index)])))
        mean = Theta * m
        second = Theta * S * Theta.T
        cov = second - mean * mean.T
        if kind == "symbolic":
            mean, second, cov = (x.applyfunc(sp.cancel) for x in (mean, second, cov))
            rate = sp.Abs(operator_matrix(rec)[0, 0])
        else:
            rate = spectral_radius(rec)
        phases.append(
            Transient(
                steps=done,
                mean=sp.ImmutableMatrix(mean),
                cov=sp.ImmutableMatrix(cov),
                second_moment=sp.ImmutableMatrix(second),
                state_mean=sp.ImmutableMatrix(m),
                state_second_moment=sp.ImmutableMatrix(S),
                loss=landscape.loss(second, wd),
                test_loss=None if test is None else test(second, wd),
                rate=rate,
            )
        )
    return ScheduleRun(schedule=schedule, cycles=cycles, phases=tuple(phases), method=kind)


def _run(affines, steps, cycles: int, v0: sp.Matrix, kind: str) -> list:
    """The (m, s, 1) vectors at the end of each phase of the last cycle."""
    if kind == "exact":
        mats = [_to_flint(A) ** t for A, t in zip(affines, steps)]
        cycle = None
        for P in mats:
            cycle = P if cycle is None else P * cycle
        v = _to_flint(v0)
        if cycles > 1:
            v = (cycle ** (cycles - 1)) * v
        out = []
        for P in mats:
            v = P * v
            out.append(_from_flint(v))
        return out
    if kind == "float":
        mats = [
            np.linalg.matrix_power(np.array(A.evalf(), dtype=float), t)
            for A, t in zip(affines, steps)
        ]
        cycle = np.eye(mats[0].shape[0])
        for P in mats:
            cycle = P @ cycle
        v = np.array(v0.evalf(), dtype=float).reshape(-1)
        v = np.linalg.matrix_power(cycle, cycles - 1) @ v
        out = []
        for P in mats:
            v = P @ v
            out.append(sp.Matrix(v))
        return out
    *field, v = _field_matrices([*affines, v0])  # rational functions of the parameters
    mats = [A**t for A, t in zip(field, steps)]
    cycle = DomainMatrix.eye(mats[0].shape[0], v.domain)
    for P in mats:
        cycle = P * cycle
    if cycles > 1:
        v = cycle ** (cycles - 1) * v
    out = []
    for P in mats:
        v = P * v
        out.append(v.to_Matrix())
    return out
