r"""Adam's self-consistent preconditioner: the second moment that Adam's own fluctuations produce.

Near a minimum Adam is linear once its second-moment estimate is frozen (see
:class:`~symsgd.optimizers.Adam`): with :math:`P(v) = \operatorname{diag}(1/(\sqrt{v_i}+\epsilon))`
and gradient :math:`g = Gx + \xi` (:math:`G = H + \gamma I`, x the deviation of the evaluation
point from the minimum, :math:`\operatorname{Cov}\xi = Q(\Sigma_x)`), the frozen recursion has a
stationary second moment :math:`\Sigma(v)`.  As β₂ → 1, Adam's :math:`v_t` averages :math:`g_t^2`
over ever more steps of that stationary law, so :math:`v` must reproduce itself:

.. math:: v = F(v), \qquad F(v) = \operatorname{diag}\,\mathbb E[g g^\top]
          = \operatorname{diag}\bigl(G\,\Sigma_x(v)\,G^\top + Q(\Sigma_x(v))\bigr),

with :math:`\Sigma_x(v) = K\Sigma_z(v)K^\top` the evaluation point's block of the frozen
recursion's stationary state second moment.  Every piece comes from the library: the recursion
from :func:`~symsgd.recursion.build_recursion`, :math:`Q` from the noise model, :math:`G` from the
optimizer's own :meth:`~symsgd.optimizers.Optimizer.gradient`, and the returned
:class:`symsgd.Stationary` from :func:`symsgd.stationary`.

* :func:`adam_self_consistent` solves :math:`v = F(v)` numerically (numeric parameters) and
  returns an :class:`AdamFixedPoint`;
* :func:`adam_self_consistency_equations` returns the equations :math:`v_i = F_i(v)` symbolically.

Compared with the frozen default :math:`v = \operatorname{diag}Q(0)`, the self-consistent
:math:`v` is larger by :math:`\operatorname{diag}(G\Sigma_xG^\top + \mathcal L(\Sigma_x))`, so the
preconditioner and the stationary variance are smaller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from ._stationary import Stationary, stationary
from ._util import field_symbols, replace_fields, symbols_in
from .domain import check_values, problem_constraints
from .errors import InternalError, UnstableError
from .exact import canonical
from .landscapes import Landscape, LinearRegression
from .moments import NumericMap, noise_operator
from .noise import AdditiveNoise, Noise
from .numeric import resolve_values
from .optimizers import Adam
from .recursion import build_recursion
from .stability import as_number
from .symbols import eps as _eps
from .symbols import lookup

__all__ = [
    "AdamFixedPoint",
    "adam_self_consistency_equations",
    "adam_self_consistent",
    "gradient_second_moment",
]


def _with_alias(symbol) -> str:
    """``"lambda (or lr)"`` for a library symbol (by name), else the symbol's name."""
    entry = lookup(str(symbol))
    return f"{symbol} (or {entry.alias})" if entry and entry.alias != str(symbol) else str(symbol)


@dataclass(frozen=True)
class AdamFixedPoint:
    """The self-consistent stationary law of Adam (see :func:`adam_self_consistent`).

    ``v`` is the per-coordinate gradient second moment (numpy array of shape ``(d,)``),
    ``optimizer`` the frozen :class:`~symsgd.Adam` with that ``v`` and the parameters substituted,
    ``result`` its exact :class:`~symsgd.Stationary` law, ``iterations`` the number of accepted
    fixed-point steps and ``residual`` :math:`\\max_i |F_i(v) - v_i| / v_i`, recomputed from
    ``result`` (independently of the iteration).
    """

    v: np.ndarray
    result: Stationary
    iterations: int
    residual: float
    optimizer: Adam

    @property
    def certificate(self) -> str:
        """What was checked: the stationary law at the fixed point carries its own certificate
        (``result.certificate``), and the fixed-point equation was re-evaluated from it."""
        return (
            f"{self.result.certificate}; fixed point v = diag(GΣGᵀ + Q(Σ)) re-evaluated from "
            f"that law: relative residual {self.residual:.2g}"
        )

    @property
    def preconditioner(self) -> np.ndarray:
        r"""The diagonal of :math:`P = \operatorname{diag}(1/(\sqrt v + \epsilon))`."""
        return 1.0 / (np.sqrt(self.v) + float(self.optimizer.eps))

    def __repr__(self) -> str:
        return (
            f"AdamFixedPoint(v={np.array2string(self.v, precision=6)}, "
            f"iterations={self.iterations}, residual={self.residual:.2g})"
        )


def gradient_second_moment(result: Stationary) -> sp.Matrix:
    r"""The stationary gradient second moment :math:`\mathbb E[g g^\top] = G\Sigma_xG^\top +
    Q(\Sigma_x)`, with :math:`\Sigma_x = K\Sigma_zK^\top` at the gradient's evaluation point and
    :math:`G` the mean gradient map (:math:`H + \gamma I`).

    The mean of the deviation is zero at stationarity, so the first term is the squared mean
    gradient and the second the noise around it.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> sp.factor(gradient_second_moment(r)[0, 0])
    -2*c/(h*lambda - 2)
    """
    rec = result.recursion
    K = sp.Matrix(rec.K)
    at_point = K * sp.Matrix(result.state_cov) * K.T
    G = _gradient_map(rec.optimizer, rec.landscape).xreplace(result.values)
    return G * at_point * G.T + rec.noise_cov(at_point).xreplace(result.values)


def _gradient_map(optimizer, landscape: Landscape) -> sp.Matrix:
    """G with E[g | x] = G x: the optimizer's own gradient rule applied to the loss gradient."""
    H = sp.Matrix(landscape.hessian)
    return sp.Matrix(optimizer.gradient(lambda x: H * x, sp.eye(landscape.dim)))


def _check_problem(optimizer, landscape, noise, what: str) -> None:
    if not isinstance(optimizer, Adam):
        raise TypeError(f"{what} is for ss.Adam(...); got {optimizer!r}.")
    if not isinstance(landscape, Landscape) or not isinstance(noise, Noise):
        raise TypeError(
            f"{what} needs a landscape (e.g. ss.Quadratic(h)) and a noise model "
            f"(e.g. ss.AdditiveNoise(c)); got {landscape!r} and {noise!r}."
        )
    if landscape.eigenmode:
        raise ValueError(
            f"{what} needs an explicit landscape: Adam's v is per coordinate, while an eigen-mode "
            f"problem ({landscape!r}) is per eigen-direction. Use ss.Quadratic(h) for one "
            f"coordinate or ss.Quadratic(sp.diag(...)) for several."
        )


# ---------------------------------------------------------------------------------------------
# the symbolic equations
# ---------------------------------------------------------------------------------------------


def adam_self_consistency_equations(
    optimizer: Adam, landscape: Landscape, noise: Noise, *, name: str = "v"
) -> list[sp.Eq]:
    r"""The self-consistency equations :math:`v_i = F_i(v)` of Adam's second moment, symbolically.

    :math:`F(v) = \operatorname{diag}(G\Sigma_x(v)G^\top + Q(\Sigma_x(v)))` with
    :math:`\Sigma(v)` the exact stationary law of the frozen-preconditioner Adam with
    ``v = (v_1, …, v_d)`` (fresh positive symbols named ``{name}_i``); see the module docstring.
    Each right-hand side is cancelled to one fraction.  Scalar and diagonal problems with additive
    noise are fast (eigen-mode solver); other explicit matrices go through the exact symbolic
    solver and slow down quickly with d.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> (eq,) = adam_self_consistency_equations(ss.Adam(ss.lr, 0, eps=0), ss.Quadratic(h),
    ...                                         ss.AdditiveNoise(c))
    >>> eq  # β₁ = 0, ε = 0: Σ = cλP/(h(2 − λPh)) with P = 1/√v, and v = c + h²Σ
    Eq(v_1, 2*c*sqrt(v_1)/(-h*lambda + 2*sqrt(v_1)))
    >>> sp.nsolve((eq.lhs - eq.rhs).subs({h: 1, c: 1, ss.lr: 1}), eq.lhs, 1.5)
    1.64038820320221
    """
    _check_problem(optimizer, landscape, noise, "adam_self_consistency_equations()")
    d = landscape.dim
    vs = sp.symbols(f"{name}_1:{d + 1}", positive=True)
    taken = {str(s) for s in optimizer.symbols()} | {
        str(s) for s in build_recursion(optimizer, landscape, noise).forcing().free_symbols
    }
    clash = sorted({str(v) for v in vs} & taken)
    if clash:
        raise ValueError(
            f"the problem already uses the symbol name(s) {', '.join(clash)}; pass another "
            f"name= for the second-moment unknowns."
        )
    frozen = replace(optimizer, v=tuple(vs))
    moment = gradient_second_moment(stationary(frozen, landscape, noise))
    return [sp.Eq(v, canonical(moment[i, i]), evaluate=False) for i, v in enumerate(vs)]


# ---------------------------------------------------------------------------------------------
# the numeric fixed point
# ---------------------------------------------------------------------------------------------


class _Unstable(Exception):
    """The frozen recursion has no stationary law at this v (internal)."""

    def __init__(self, rho: float):
        self.rho = rho


_EPS_AT_LEAST_0 = sp.Symbol("epsilon", nonnegative=True)


def _check_domain(optimizer: Adam, landscape: Landscape, noise: Noise, values: dict, what: str):
    """Refuse parameter values outside the problem's domain before any solve, naming the
    parameter: values contradicting a symbol's assumptions (λ ≤ 0, a negative variance symbol,
    NaN/inf/complex), hyper-parameters out of range once substituted (0 ≤ β₁ < 1, ε ≥ 0,
    γ ≥ 0) and negative curvature or variance (H, C, σ² with an eigenvalue < 0)."""
    # the library's ε is declared positive, but ε = 0 is Adam without epsilon (allowed: ε ≥ 0)
    relaxed = {(_EPS_AT_LEAST_0 if k == _eps else k): x for k, x in values.items()}
    check_values(relaxed, what, problem_constraints(noise, landscape))

    def given(expr) -> str:
        used = sorted(symbols_in(expr) & set(values), key=str)
        return ", ".join(f"{s} = {values[s]}" for s in used)

    fields = {
        name: sp.sympify(getattr(optimizer, name)).xreplace(values)
        for name in ("lr", "weight_decay", "beta1", "eps")
    }
    need = {
        "lr": ("> 0 (the learning rate)", lambda x: x > 0),
        "weight_decay": ("≥ 0", lambda x: x >= 0),
        "beta1": ("in [0, 1) (Adam's first-moment decay β₁)", lambda x: 0 <= x < 1),
        "eps": ("≥ 0", lambda x: x >= 0),
    }
    for name, value in fields.items():
        if value.free_symbols or not value.is_number:
            continue  # a missing value: reported with the others below
        rule, holds = need[name]
        if not holds(float(value)):
            source = getattr(optimizer, name)
            at = f" (from {given(source)})" if symbols_in(source) else ""
            raise ValueError(f"{what}: {name} must be {rule}; got {value}{at}.")

    pieces = [("the curvature H", landscape.hessian)]
    if isinstance(noise, AdditiveNoise):
        pieces.append(("the noise covariance C", noise.C))
    if isinstance(landscape, LinearRegression):
        pieces.append(("the label-noise variance", sp.Matrix([[landscape.label_variance]])))
    for role, matrix in pieces:
        if not symbols_in(matrix) & set(values):
            continue  # numeric: checked when the landscape or noise was built
        numeric = sp.Matrix(matrix).xreplace(values)
        if numeric.free_symbols:
            continue
        low = float(np.linalg.eigvalsh(np.array(numeric.evalf(), dtype=float)).min())
        scale = max(1.0, float(np.max(np.abs(np.array(numeric.evalf(), dtype=float)))))
        if low < -1e-12 * scale:
            kind = "≥ 0" if numeric.rows == 1 else "positive semi-definite"
            shown = sp.sstr(numeric.tolist() if numeric.rows > 1 else numeric[0, 0])
            raise ValueError(
                f"{what}: {role} must be {kind} (no negative curvature or variance); at "
                f"{given(matrix)} it is {shown}"
                f"{'' if numeric.rows == 1 else f' with smallest eigenvalue {low:.6g}'}."
            )


class _FrozenFamily:
    r"""The frozen-preconditioner recursion as a numeric function of v, for the iteration.

    Built once: :func:`build_recursion` with symbolic ``v``, the parameters substituted, ``M(v)``
    and ``B(v)`` lambdified, the noise covariance probed at the symmetric unit matrices (it is
    affine in :math:`\Sigma_x` and does not depend on v).  Each evaluation then solves
    :math:`\Sigma_z = M\Sigma_zM^\top + B(Q_0 + \mathcal L(K\Sigma_zK^\top))B^\top` in float64.
    """

    def __init__(self, optimizer: Adam, landscape: Landscape, noise: Noise, values: dict):
        d = self.d = landscape.dim
        self.v_symbols = sp.symbols(f"_v1:{d + 1}", positive=True, cls=sp.Dummy)
        frozen = replace(optimizer, v=tuple(self.v_symbols))
        rec = build_recursion(frozen, landscape, noise)

        def num(m):
            return sp.Matrix(m).xreplace(values)

        M, B, K = num(rec.M), num(rec.B), num(rec.K)
        G = num(_gradient_map(frozen, landscape))
        entries = {(i, j): sp.Dummy(f"s{i}{j}") for i in range(d) for j in range(i, d)}
        probe = sp.Matrix(d, d, lambda i, j: entries[min(i, j), max(i, j)])
        noise_at = num(rec.noise_cov(probe))
        pieces = [M, B, K, G, noise_at]
        free = set().union(*[m.free_symbols for m in pieces]) - set(self.v_symbols)
        self.missing = free - probe.free_symbols
        if self.missing:
            return
        self._M = sp.lambdify([self.v_symbols], M, modules="numpy")
        self._B = sp.lambdify([self.v_symbols], B, modules="numpy")
        self.K = np.array(K.evalf(), dtype=float)
        self.G = np.array(G.evalf(), dtype=float)
        # the second-moment map of the family: its noise (Q0, L) is fixed, M and B move with v
        Q0, L = noise_operator(rec, values)
        self.map = NumericMap(np.zeros(M.shape), np.zeros(B.shape), self.K, Q0, L)
        self.Q0 = Q0
        self.eps = float(values.get(optimizer.eps, optimizer.eps))
        self.rho = float("nan")  # spectral radius at the last evaluation

    def matrices(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        args = [float(x) for x in v]
        return np.array(self._M(args), dtype=float), np.array(self._B(args), dtype=float)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """F(v); raises :class:`_Unstable` where the frozen recursion has no stationary law."""

        T = self.map.with_matrices(*self.matrices(v))
        rho = self.rho = T.radius()
        if not rho < 1:
            raise _Unstable(rho)
        state = T.solve()
        at_point = self.K @ state @ self.K.T
        noise = T.noise(at_point)
        return np.diagonal(self.G @ at_point @ self.G.T + noise).copy()


def _relative(F: np.ndarray, v: np.ndarray) -> float:
    scale = np.maximum(np.abs(F), np.abs(v))
    gap = np.abs(F - v)
    return float(np.max(np.where(scale > 0, gap / np.where(scale > 0, scale, 1.0), 0.0)))


def _fmt(v: np.ndarray) -> str:
    return np.array2string(np.asarray(v), precision=6, separator=", ")


def _start(family: _FrozenFamily, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stable starting point: ``v0``, raised by factors of 4 (smaller steps) until the frozen
    recursion is stable there."""
    v = v0.copy()
    last = None
    for _ in range(60):
        try:
            return v, family(v)
        except _Unstable as exc:
            last = exc.rho
            v = 4.0 * v
    raise UnstableError.at(
        "adam_self_consistent()",
        {"v": v / 4},
        subject="the frozen Adam recursion",
        rho=last,
        reason=(
            f"it is unstable for every v tried, from v = {_fmt(v0)} up to v = {_fmt(v / 4)}, "
            f"even with the preconditioner 1/(√v+ε) that small, so no self-consistent "
            f"stationary law exists"
        ),
        advice="Is the landscape a strict minimum (H + weight_decay·I positive definite)?",
    )


def _iterate(
    family: _FrozenFamily, v: np.ndarray, F: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, int]:
    r"""Damped fixed-point iteration :math:`v \leftarrow v + \alpha(F(v) - v)`.

    A step is accepted when the frozen recursion is stable at the trial point and the relative
    residual decreases; otherwise α is halved.  After each accepted step α is set from the secant
    slope :math:`s = -\langle\Delta F, \Delta v\rangle/|\Delta v|^2` of F along the step to
    :math:`1/(1+s)`, the damping that cancels a slope −s (F decreases in v: more v, smaller steps,
    smaller fluctuations).  Convex combinations keep v ≥ 0.
    """
    alpha = 1.0
    for iteration in range(max_iter + 1):
        residual = _relative(F, v)
        if residual <= tol:
            return v, iteration
        if iteration == max_iter:
            break
        if family.eps == 0 and np.any(F <= 0):
            (i, *_) = np.flatnonzero(F <= 0) + 1
            raise ValueError(
                f"adam_self_consistent(): no gradient reaches coordinate {i} at stationarity "
                f"(F_{i}(v) = 0), so v_{i} → 0 and with eps = 0 the preconditioner 1/√v diverges "
                f"there; give Adam an eps > 0."
            )
        unstable = None
        while True:
            trial = v + alpha * (F - v)
            try:
                F_trial = family(trial)
            except _Unstable as exc:
                unstable = exc.rho
            else:
                if _relative(F_trial, trial) < residual:
                    break
            alpha /= 2
            if alpha < 1e-12:
                if unstable is not None:
                    raise UnstableError.at(
                        "adam_self_consistent()",
                        {"v": v},
                        rho=unstable,
                        reason=(
                            f"every step from v = {_fmt(v)} towards F(v) = {_fmt(F)} makes the "
                            f"frozen Adam recursion unstable: the second moment the fluctuations "
                            f"produce is too small to keep the steps stable"
                        ),
                        advice="Lower the learning rate or raise eps.",
                    )
                family(v)  # records the spectral radius at v
                raise RuntimeError(
                    f"adam_self_consistent(): the iteration stalled at v = {_fmt(v)} with "
                    f"relative residual {residual:.3g} > tol = {tol:g}, the floating-point floor "
                    f"of this problem (the spectral radius of the frozen recursion's "
                    f"second-moment map there is {family.rho:.6g}; the closer to 1, the worse "
                    f"conditioned); pass a larger tol."
                )
        dv, dF = trial - v, F_trial - F
        slope = -float(dF @ dv) / float(dv @ dv) if np.any(dv) else 0.0
        alpha = min(1.0, 1.0 / (1.0 + slope)) if slope > 0 else 1.0
        v, F = trial, F_trial
    raise RuntimeError(
        f"adam_self_consistent(): no convergence in max_iter = {max_iter} steps; at v = "
        f"{_fmt(v)} the relative residual |F(v) − v|/v is {_relative(F, v):.3g} > tol = {tol:g}. "
        f"Raise max_iter or tol."
    )


def _stationary_at(
    v: np.ndarray, optimizer: Adam, landscape: Landscape, noise: Noise, values: dict
) -> tuple[Adam, Stationary]:
    """The library's stationary law of the frozen Adam at ``v`` (float64 entries; stability of
    the numeric problem is decided by the spectral radius of its second-moment map)."""
    pieces = [replace_fields(x, values) for x in (optimizer, landscape, noise)]
    frozen = replace(pieces[0], v=tuple(float(x) for x in v))
    return frozen, stationary(frozen, *pieces[1:], method="numeric")


def adam_self_consistent(
    optimizer: Adam,
    landscape: Landscape,
    noise: Noise,
    params: Mapping | None = None,
    *,
    tol: float = 1e-12,
    max_iter: int = 500,
    v0=None,
) -> AdamFixedPoint:
    r"""Solve :math:`v = \operatorname{diag}(G\Sigma_x(v)G^\top + Q(\Sigma_x(v)))` for Adam's
    stationary second moment, at numeric parameters.

    :math:`\Sigma(v)` is the stationary law of Adam with the frozen preconditioner
    :math:`P = \operatorname{diag}(1/(\sqrt v + \epsilon))`, :math:`G = H + \gamma I` and
    :math:`Q` the gradient-noise covariance (see the module docstring); this is the β₂ → 1 limit
    of real Adam, whose :math:`v_t` then averages :math:`g_t^2` over the stationary law.

    ``params`` maps every symbol the problem uses (keys: symbols, names or aliases such as
    ``"lr"``) to a number; β₂ needs none.  The iteration starts at ``v0`` (default: the frozen
    default :math:`\operatorname{diag}Q(0)`, zeros replaced by 1; raised until the frozen
    recursion is stable), steps :math:`v \leftarrow v + \alpha(F(v) - v)` with α set from the
    secant slope of F and halved whenever a trial point is unstable or does not lower the
    residual, and stops when :math:`\max_i |F_i(v) - v_i|/v_i \le` ``tol``.  Each evaluation of
    F is a float64 Lyapunov solve of the recursion built once with symbolic v; the returned
    ``result`` is then derived by :func:`symsgd.stationary` at the fixed point.

    Raises ``ValueError`` when parameters are missing, :class:`~symsgd.UnstableError` when no v
    gives a stable frozen recursion (e.g. H not positive definite) or the iteration can only
    continue through unstable points, and ``RuntimeError`` when it does not converge.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> fp = ss.adam_self_consistent(ss.Adam(ss.lr, ss.beta1, eps=0), ss.Quadratic(h),
    ...                              ss.AdditiveNoise(c), {"lr": 1, "beta1": 0, h: 1, c: 1})
    >>> fp.v.round(6)  # the root of v = 2√v/(2√v − 1): √v = (1 + √17)/4
    array([1.640388])
    >>> round(float(fp.result.cov), 6)  # Var θ; the frozen v = c = 1 would give 1
    0.640388
    """
    _check_problem(optimizer, landscape, noise, "adam_self_consistent()")
    if optimizer.v is not None:
        raise ValueError(
            f"adam_self_consistent() solves for v; pass Adam without v= (got v = {optimizer.v}), "
            f"and v0= for a starting guess."
        )
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"tol must be > 0 and max_iter ≥ 1; got tol={tol}, max_iter={max_iter}.")
    accepted = optimizer.symbols() | field_symbols(landscape) | field_symbols(noise)
    given = resolve_values(dict(params or {}), accepted)
    # the domain (with ε ≥ 0 allowed) is checked below, naming the problem's constraints too
    values = {
        k: as_number(k, x, "adam_self_consistent(): ", assumptions=False) for k, x in given.items()
    }
    _check_domain(optimizer, landscape, noise, values, "adam_self_consistent()")
    family = _FrozenFamily(optimizer, landscape, noise, values)
    if family.missing:
        shown = [_with_alias(s) for s in sorted(family.missing, key=str)]
        raise ValueError(
            f"adam_self_consistent() solves for numeric parameters; missing values for "
            f"{', '.join(shown)}. Pass them in params, keyed by symbol, name or alias."
        )
    d = landscape.dim
    if v0 is None:
        start = np.diagonal(family.Q0).copy()
        start[~(start > 0)] = 1.0
    else:
        start = np.broadcast_to(np.asarray(v0, dtype=float), (d,)).copy()
        if not np.all(start > 0):
            raise ValueError(f"v0 must be positive; got {v0!r}.")
    v, F = _start(family, start)
    v, iterations = _iterate(family, v, F, tol, max_iter)

    frozen, result = _stationary_at(v, optimizer, landscape, noise, values)
    moment = gradient_second_moment(result)
    F_lib = np.array([float(moment[i, i]) for i in range(d)])
    residual = _relative(F_lib, v)
    if residual > max(1e3 * tol, 1e-9):  # pragma: no cover - the two solves disagree
        raise InternalError(
            f"adam_self_consistent(): the fixed point v = {_fmt(v)} of the fast iteration leaves "
            f"a relative residual {residual:.3g} in the library's own stationary solve; please "
            f"report this."
        )
    return AdamFixedPoint(
        v=v, result=result, iterations=iterations, residual=residual, optimizer=frozen
    )
