r"""The stationary law of an optimizer near a minimum: :func:`stationary` and its result.

For the recursion :math:`z_{t+1} = M z_t + B\xi_t` (see :mod:`symsgd.recursion`) the stationary
state second moment :math:`\Sigma_z` solves
:math:`\Sigma_z = M\Sigma_z M^\top + B(Q_0 + \mathcal L(K\Sigma_zK^\top))B^\top`, and every readout
follows from it exactly (:math:`\Theta` selects θ from the state, :math:`Q = Q(K\Sigma_zK^\top)`):

* ``cov``            :math:`\operatorname{Var}\theta = \Theta\Sigma_z\Theta^\top`
* ``velocity_cov``   :math:`\operatorname{Var}v`, :math:`v_{t+1} = \theta_{t+1}-\theta_t`:
  :math:`\Theta(M-I)\Sigma_z(M-I)^\top\Theta^\top + \Theta B Q B^\top\Theta^\top`
* ``cross_cov``      :math:`\operatorname{Cov}(\theta_t, v_t) =
  \Theta M\Sigma_z(M-I)^\top\Theta^\top + \Theta BQB^\top\Theta^\top`
* ``autocov(k)``     :math:`\mathbb E[\theta_{t+k}\theta_t^\top] = \Theta M^k\Sigma_z\Theta^\top`
* ``loss``           :math:`\mathbb E L = \tfrac12\operatorname{Tr}(H\,\operatorname{Var}\theta)`
* ``noise_cov``      the stationary gradient-noise covariance :math:`Q(K\Sigma_zK^\top)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import sympy as sp

from ._continuous import ContinuousTime, langevin
from ._result import Result, _scalar, check_readout, congruence
from ._util import field_atoms, field_symbols, numbers_only, replace_fields, symbols_in
from .budget import progress_policy, time_limit
from .certify import certify_modes
from .domain import check_values, problem_constraints
from .errors import FLAT_ADVICE, UnstableError
from .exact import canonical
from .landscapes import COUPLING, Landscape
from .lyapunov import Solution, numeric_solution, solve
from .modes import close_trace
from .moments import NumericMap
from .noise import Noise
from .optimizers import Optimizer
from .recursion import LinearRecursion, build_recursion, numeric_recursion
from .stability import check_stable, stability_conditions

__all__ = ["ContinuousTime", "Stationary", "stationary"]


@dataclass(frozen=True, eq=False, kw_only=True)
class Stationary(Result):
    """The exact stationary law of a linear stochastic recursion (see the module docstring).

    Attributes: ``recursion``, ``state_cov``, ``conditions`` (sympy boolean, derived),
    ``conditions_complete``, ``denominator`` (the stability polynomial of the exact solution,
    factored), ``method`` (the solver strategy used), ``values`` (substituted parameters),
    ``certificate``, ``closure``; readouts in :class:`~symsgd._result.Result` and below.
    """

    recursion: LinearRecursion
    #: ``(conditions, complete)`` when already derived (else derived on first access)
    stability: tuple | None = None
    #: substitutions that close a self-consistent coupling (eigen-mode minibatch problems:
    #: κ = Tr(A E[uuᵀ]) -> its closed form in traces of matrix functions of A)
    closure: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        r = self.recursion
        return (
            f"Stationary({type(r.optimizer).__name__}, {r.landscape!r}, {r.noise!r}; "
            f"method={self.method!r})"
        )

    @property
    def landscape(self) -> Landscape:
        return self.recursion.landscape

    @property
    def _lr(self):
        return self.recursion.optimizer.lr

    def _closure(self) -> dict:
        return self.closure

    @cached_property
    def _cov(self) -> sp.ImmutableMatrix:
        if self._numeric:
            return sp.ImmutableMatrix(self._float_cov)
        return sp.ImmutableMatrix(congruence(self.recursion.theta_map, self._state_cov))

    # -- the numeric fast path (float64 state, sympy only for what a readout returns) ---------
    @property
    def _numeric(self) -> bool:
        return self.solution.array is not None

    @cached_property
    def _state_cov(self) -> sp.ImmutableMatrix:
        if self.solution.state_cov is None:
            return sp.ImmutableMatrix(self.solution.array)
        return self.solution.state_cov

    @cached_property
    def _map(self) -> NumericMap:
        return NumericMap.from_recursion(self.recursion)

    @cached_property
    def _float_cov(self) -> np.ndarray:
        Th = self.recursion.arrays[3]
        return Th @ self.solution.array @ Th.T

    def _float_readout(self, what: str, k: int = 0):
        """A readout of a numeric result in float64, converted to sympy once at the end."""
        T, (M, B, K, Th) = self._map, self.recursion.arrays
        S = self.solution.array
        Q = T.noise(K @ S @ K.T)
        if what == "noise_cov":
            return _scalar(sp.ImmutableMatrix(Q))
        noise = Th @ B @ Q @ B.T @ Th.T
        D = M - np.eye(len(M))
        if what == "velocity_cov":
            out = Th @ D @ S @ D.T @ Th.T + noise
        elif what == "cross_cov":
            out = Th @ M @ S @ D.T @ Th.T + noise
        else:  # autocov(k)
            out = Th @ np.linalg.matrix_power(M, k) @ S @ Th.T
        return _scalar(sp.ImmutableMatrix(out))

    @property
    def loss(self) -> sp.Expr:
        if not self._numeric:
            return super().loss
        return sp.Float(self.landscape.numeric_loss(self._float_cov, self._weight_decay()))

    @property
    def test_loss(self) -> sp.Expr | None:
        if not self._numeric:
            return super().test_loss
        method = getattr(self.landscape, "numeric_test_loss", None)
        if method is None:
            return super().test_loss
        value = method(self._float_cov, self._weight_decay())
        return None if value is None else sp.Float(value)

    def _theta_map(self):
        return self.recursion.theta_map

    # -- readouts -------------------------------------------------------------------------
    @cached_property
    def _stability(self) -> tuple:
        """``(conditions, complete)``: derived on first access (spectral radius of the
        second-moment map < 1 as explicit polynomial inequalities) unless already known."""
        return (
            self.stability if self.stability is not None else stability_conditions(self.recursion)
        )

    def _known_stability(self) -> tuple | None:
        return self.__dict__.get("_stability", self.stability)

    def _raw_conditions(self) -> sp.Basic:
        """Where the stationary law exists, before the substituted values."""
        return self._stability[0]

    @property
    def conditions_complete(self) -> bool:
        """False when :attr:`conditions` only states Schur stability of the mean recursion
        (the full criterion was too large); numeric checks then use the spectral radius."""
        return self._stability[1]

    @property
    def state_cov(self) -> sp.ImmutableMatrix:
        """Second moment of the whole state z (e.g. (θ_t, θ_{t-1}) for momentum)."""
        return self._apply(self._state_cov)

    def _noise(self, sigma) -> sp.Matrix:
        r = self.recursion
        return r.noise_cov(congruence(r.K, sigma))

    @property
    def noise_cov(self):
        """Stationary gradient-noise covariance Q(KΣKᵀ) at the gradient evaluation point."""
        if self._numeric:
            return self._float_readout("noise_cov")
        return _scalar(self._apply(self._noise(self._state_cov).applyfunc(self._canonical)))

    def _velocity_parts(self):
        r = self.recursion
        Th, M, B = sp.Matrix(r.theta_map), sp.Matrix(r.M), sp.Matrix(r.B)
        S = sp.Matrix(self._state_cov)
        noise = congruence(Th * B, self._noise(S))
        D = M - sp.eye(r.n)
        return Th, M, D, S, noise

    @property
    def velocity_cov(self):
        """Var v with v_t = θ_t − θ_{t−1} (any optimizer; for momentum methods the state's own
        velocity)."""
        if self._numeric:
            return self._float_readout("velocity_cov")
        Th, _M, D, S, noise = self._velocity_parts()
        out = (Th * D * S * D.T * Th.T + noise).applyfunc(self._canonical)
        return _scalar(self._apply(out))

    @property
    def cross_cov(self):
        """Cov(θ_t, v_t) = E[θ_t v_tᵀ]."""
        if self._numeric:
            return self._float_readout("cross_cov")
        Th, M, D, S, noise = self._velocity_parts()
        out = (Th * M * S * D.T * Th.T + noise).applyfunc(self._canonical)
        return _scalar(self._apply(out))

    def autocov(self, k):
        r"""Two-time correlation :math:`\mathbb E[\theta_{t+k}\theta_t^\top] = \Theta M^k
        \Sigma_z\Theta^\top` (integer ``k ≥ 0``; a symbol when ``M`` is 1×1)."""
        r = self.recursion
        try:
            k = sp.sympify(k, strict=True)
        except (sp.SympifyError, TypeError):
            raise ValueError(
                f"autocov(k): k must be an integer ≥ 0 or a symbol; got {k!r}."
            ) from None
        if k.is_number and (not k.is_integer or k < 0):
            raise ValueError(f"autocov(k) needs an integer k ≥ 0; got {k}.")
        if self._numeric and k.is_number:
            return self._float_readout("autocov", int(k))
        M = sp.Matrix(r.M)
        if k.is_number:
            Mk = M ** int(k)
        elif M.shape == (1, 1):
            Mk = sp.Matrix([[M[0, 0] ** k]])
        else:
            try:
                Mk = M**k
            except Exception as exc:
                raise ValueError(
                    f"autocov(k) with symbolic k needs M**k in closed form, which sympy could "
                    f"not produce for this {M.rows}×{M.rows} M ({exc}); pass an integer k."
                ) from None
        Th = sp.Matrix(r.theta_map)
        out = (Th * Mk * sp.Matrix(self._state_cov) * Th.T).applyfunc(self._canonical)
        return _scalar(self._apply(out))

    def _weight_decay(self):
        return self.recursion.optimizer.weight_decay

    def on_modes(self, eigenvalues, what: str = "cov") -> sp.Matrix | sp.Expr:
        """For an eigen-mode result: the explicit diagonal matrix (in the eigenbasis) for the
        given eigenvalues of the mode matrix, with every mode trace summed over them.

        For the scalar readouts ``"loss"`` and ``"test_loss"`` the answer is the total over the
        modes (a per-mode additive-noise loss is summed; a trace-coupled one already is the
        total).

        >>> import sympy as sp, symsgd as ss
        >>> h, c = sp.symbols("h c", positive=True)
        >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
        >>> r.subs(lr=sp.Rational(1, 2), c=1).on_modes([1, 2])
        Matrix([
        [1/3,   0],
        [  0, 1/4]])
        """
        from .modes import expand_traces

        if not self.landscape.eigenmode:
            raise ValueError("on_modes() is for eigen-mode results (Quadratic.commuting, ...).")
        (mode,) = [s for s, name in self.landscape.mode_names.items()]
        check_readout(what, "on_modes(what=...)")
        if isinstance(eigenvalues, (str, bytes)):
            raise TypeError(f"on_modes(eigenvalues): a list of numbers; got {eigenvalues!r}.")
        eigenvalues = list(eigenvalues)
        if not eigenvalues:
            raise ValueError("on_modes(eigenvalues): give at least one eigenvalue.")
        for e in eigenvalues:
            if isinstance(e, (str, bytes)) or (
                isinstance(e, sp.Basic) and e.free_symbols and e != mode
            ):
                raise TypeError(f"on_modes(): each eigenvalue must be a number; got {e!r}.")
            check_values({mode: sp.sympify(e)}, f"on_modes(): the eigenvalue {mode}")
        conditions = expand_traces(self.conditions, eigenvalues)
        for e in eigenvalues:
            holds = conditions.subs(mode, sp.sympify(e))
            if holds == sp.false:
                raise UnstableError.at(
                    "on_modes()",
                    {mode: e},
                    subject=f"the eigenvalues {list(eigenvalues)}",
                    condition=self.conditions,
                )
        value = expand_traces(getattr(self, what), eigenvalues)
        per_mode = [canonical(value.subs(mode, sp.sympify(e))) for e in eigenvalues]
        if what in ("loss", "test_loss"):
            return per_mode[0] if mode not in value.free_symbols else canonical(sp.Add(*per_mode))
        return sp.diag(*per_mode)

    def mode_names(self) -> dict:
        r = self.recursion
        if not r.landscape.eigenmode:
            return {}
        return {**r.mode_names(), **r.optimizer.mode_names()}

    # -- derived problems -----------------------------------------------------------------
    def langevin(self):
        r"""Heavy-ball momentum against its Langevin picture (step √λ, friction (1−μ)/√λ,
        temperature λc/(2(1−μ))): the ratios of Var θ, Var v and the θ–v correlation
        (:func:`symsgd.langevin`)."""
        return langevin(self)

    def continuous_time(self) -> ContinuousTime:
        r"""The SDE prediction for the same problem.

        With drift :math:`A = P(H + \gamma I)` and the optimizer's effective learning rate
        :math:`\lambda_{\rm eff}` (λ for SGD, λ/(1−μ) for momentum), the stationary covariance of
        :math:`d\theta = -A\theta\,dt + \sqrt{\lambda_{\rm eff}}\,P\,Q(\Sigma)^{1/2}dW` solves
        :math:`A\Sigma + \Sigma A^\top = \lambda_{\rm eff}\, P\,Q(\Sigma)\,P^\top`.
        """
        return ContinuousTime.of(self)

    # -- protocol for Result ----------------------------------------------------------------
    def _constraints(self) -> tuple:
        r = self.recursion
        return tuple(problem_constraints(r.noise, r.landscape))

    def _radius(self):
        if self.conditions_complete is not False:
            return None
        from .moments import spectral_radius

        fixed = dict(self.values)

        def radius(point: dict) -> float:
            return spectral_radius(self.recursion, {**fixed, **point})

        return radius

    def _check(self, values, context):
        if self._numeric:  # every entry a number: stability was decided before solving
            return
        check_stable(self.recursion, self._raw_conditions(), values, context)

    def _with_values(self, values):
        return replace(self, values=values, stability=self._known_stability())

    def simplify(self) -> Stationary:
        """Entries factored (they are already cancelled; this only changes their form).
        Structured results are returned unchanged: factoring would expand them."""
        if self._numeric:
            return self
        out = super().simplify()
        return out if out is self else replace(out, stability=self._known_stability())

    def _noise_matrix(self):
        return getattr(self.recursion.noise, "C", None)

    def _state_name(self) -> str:
        r = self.recursion
        return r"\Sigma" if r.n == r.landscape.dim else r"\Sigma_z"

    def _all_symbols(self):
        if self._numeric:
            return set()
        r = self.recursion
        return (
            super()._all_symbols() | r.M.free_symbols | r.B.free_symbols | r.forcing().free_symbols
        )


def stationary(
    optimizer: Optimizer,
    landscape: Landscape,
    noise: Noise,
    *,
    method: str = "auto",
    timeout: float | None = None,
    progress: bool | None = None,
) -> Stationary:
    r"""Derive the exact stationary law of ``optimizer`` on ``landscape`` with ``noise``.

    Solves :math:`\Sigma_z = M\Sigma_zM^\top + B(Q_0 + \mathcal L(K\Sigma_zK^\top))B^\top` for the
    recursion :func:`~symsgd.recursion.build_recursion` derives, with the solver strategy
    ``method`` (``"auto"``: the first of eigen-mode, numeric, exact that applies), and derives
    the existence conditions.  Numeric parameters outside them raise
    :class:`~symsgd.UnstableError`.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> r.cov
    c*lambda/(h*(-h*lambda + 2))
    >>> r.conditions
    h*lambda < 2

    Floats among symbols are read as the decimals they print as (``0.3`` → 3/10), so the exact
    solver works over the rationals; all-numeric problems keep their floats.

    Before it is returned the answer is certified against the equation above
    (:mod:`symsgd.certify`; ``result.certificate`` says how): exactly at random rational points,
    or on an explicit diagonal instance for trace-coupled eigen-mode problems.  A strategy whose
    answer fails is skipped; if none passes, :class:`~symsgd.InternalError` is raised.

    >>> r.certificate.how, len(r.certificate.points)
    ('exact', 2)

    ``timeout`` (seconds; None: no limit) interrupts a derivation that runs longer with
    :class:`~symsgd.DerivationTimeout` (a ``TimeoutError`` naming the problem and what to do
    instead); it works in the main thread only (elsewhere it warns and does not limit, see
    :func:`symsgd.budget.time_limit`).  ``progress`` (None: automatic — on a terminal, once a
    long stage such as the exact elimination has run a few seconds; True/False: always/never)
    shows a progress bar for the long stages (:func:`symsgd.budget.stage`).
    """
    dim = getattr(landscape, "dim", "?")
    what = (
        f"stationary() of {type(optimizer).__name__} on a {dim}-dimensional "
        f"{type(landscape).__name__} with {type(noise).__name__}"
    )
    with time_limit(timeout, what), progress_policy(progress):
        return _derive(optimizer, landscape, noise, method)


def _derive(optimizer: Optimizer, landscape: Landscape, noise: Noise, method: str) -> Stationary:
    """:func:`stationary` without its time limit."""
    for name, value, kind, example in (
        ("optimizer", optimizer, Optimizer, "ss.SGD(ss.lr)"),
        ("landscape", landscape, Landscape, "ss.Quadratic(h)"),
        ("noise", noise, Noise, "ss.AdditiveNoise(c)"),
    ):
        if not isinstance(value, kind):
            raise TypeError(f"stationary(): {name} must be e.g. {example}; got {value!r}.")
    _refuse_unsupported(optimizer, landscape, noise)
    fast = _numeric_stationary(optimizer, landscape, noise, method)
    if fast is not None:
        return fast
    _refuse_name_clashes(optimizer, landscape, noise)
    _refuse_negative_curvature(optimizer, landscape)
    recursion = build_recursion(optimizer, landscape, noise)
    pieces = (optimizer, landscape, noise)
    floats = set().union(*(field_atoms(p, sp.Float) for p in pieces))
    if floats and (recursion.M.free_symbols or recursion.forcing().free_symbols):
        decimals = {f: sp.Rational(repr(float(f))) for f in floats}
        recursion = build_recursion(*(replace_fields(p, decimals) for p in pieces))
    conditions = complete = None
    numeric = not (recursion.M.free_symbols or recursion.forcing().free_symbols)
    if numeric or recursion.n <= 2:  # cheap, and numeric problems must be checked first
        conditions, complete = stability_conditions(recursion)
        if conditions == sp.false:
            subject = f"{type(optimizer).__name__} on {landscape!r}"
            if numeric:
                from .moments import spectral_radius

                rho = spectral_radius(recursion, {})
                advice = _flat_advice(optimizer, landscape)
                raise UnstableError.at("stationary()", subject=subject, rho=rho, advice=advice)
            raise UnstableError.at(
                "stationary()",
                subject=subject,
                reason="the stability conditions can never hold",
                advice=_flat_advice(optimizer, landscape) or "",
            )
        check_stable(recursion, conditions, {}, "stationary()")
    solution = solve(recursion, method, conditions)
    stability = None if conditions is None else (conditions, complete)
    if COUPLING in symbols_in(solution.state_cov):
        return _close_mode_trace(recursion, solution)
    return Stationary(solution=solution, recursion=recursion, stability=stability)


#: largest state dimension n of an all-numeric problem with exact (rational) entries that is
#: solved exactly (the n(n+1)/2 rational elimination, ≲ 1 s), for additive and for
#: state-dependent noise; beyond it the float path answers, and ``result.method`` says so
EXACT_MAX_STATE = {"additive": 8, "state-dependent": 6}


def _numeric_stationary(
    optimizer: Optimizer, landscape: Landscape, noise: Noise, method: str
) -> Stationary | None:
    """The numeric fast path: every field a number and (floats among them, or n above
    :data:`EXACT_MAX_STATE`) — the recursion read in float64, stability decided by the spectral
    radius, the stationary law solved in O(n³) and certified by its float residual, with no
    symbolic algebra (:func:`symsgd.recursion.numeric_recursion`,
    :class:`symsgd.moments.NumericMap`, :func:`symsgd.lyapunov.numeric_solution`).  None when
    the problem is not for it (the exact path then answers)."""
    if method not in ("auto", "numeric") or landscape.eigenmode:
        return None
    # fields that do not enter the recursion (Adam's β₂) must not make a problem look symbolic
    numbers, floats = numbers_only(optimizer.in_recursion(), landscape, noise)
    if not numbers:
        return None
    n = optimizer.blocks * landscape.dim
    kind = "state-dependent" if noise.depends_on_state() else "additive"
    if not floats and n <= EXACT_MAX_STATE[kind]:
        return None
    name = (
        "numeric-float"
        if floats
        else f"numeric-float (exact inputs, n = {n}: exact elimination skipped)"
    )
    try:
        recursion = numeric_recursion(optimizer, landscape, noise)
    except TypeError:  # a user optimizer whose step only runs on sympy values: read it there
        return None
    T = NumericMap.from_recursion(recursion)
    if not T.stable():  # (a negative curvature makes it unstable: say so first)
        _refuse_negative_curvature(optimizer, landscape)
        d = landscape.dim
        shown = repr(landscape) if d <= 3 else f"a {d}×{d} {type(landscape).__name__}"
        subject = f"{type(optimizer).__name__} on {shown}"
        advice = _flat_advice(optimizer, landscape)
        raise UnstableError.at("stationary()", subject=subject, rho=T.radius(), advice=advice)
    solution = numeric_solution(T, name)
    return Stationary(solution=solution, recursion=recursion, stability=(sp.true, True))


def _refuse_name_clashes(*pieces) -> None:
    """Refuse a user symbol that shares its name with a library symbol (or another user
    symbol) but is a different symbol: printed formulas, LaTeX and keyword arguments would
    silently merge them (``\\gamma + \\gamma``)."""
    from .symbols import ALIASES

    library = {str(s): s for s in ALIASES.values()}
    library[str(COUPLING)] = COUPLING
    seen: dict = {}
    for piece in pieces:
        for symbol in sorted(field_symbols(piece), key=str):
            name = str(symbol)
            own = library.get(name)
            if own is not None and own != symbol:
                alias = next((a for a, s in ALIASES.items() if s == own), None)
                use = f"ss.{alias}" if alias else "another name"
                raise ValueError(
                    f"stationary(): the symbol {name!r} in {type(piece).__name__} is not the "
                    f"library's {name!r} ({'internal cross-mode trace' if own == COUPLING else use}"
                    f", {_assumptions(own)}) but has its name, so results would mix the two. "
                    f"Use {use} itself, or rename your symbol (e.g. {name + '_0'!r})."
                )
            other = seen.setdefault(name, symbol)
            if other != symbol:
                raise ValueError(
                    f"stationary(): two different symbols are both named {name!r} "
                    f"({_assumptions(other)} vs {_assumptions(symbol)}); rename one."
                )


def _assumptions(symbol: sp.Symbol) -> str:
    kept = [k for k in ("positive", "nonnegative", "integer", "real") if symbol.assumptions0.get(k)]
    return "assumptions: " + (", ".join(kept) if kept else "none")


def _curvatures(optimizer: Optimizer, landscape: Landscape) -> np.ndarray | None:
    """The eigenvalues of a numeric Hessian plus weight decay (None when symbolic)."""
    gamma = sp.sympify(optimizer.weight_decay)
    if gamma.free_symbols or landscape.eigenmode:
        return None
    from .landscapes import _floats

    try:
        H = _floats(landscape.hessian)
    except ValueError:  # symbols: nothing to check
        return None
    return np.linalg.eigvalsh(H + float(gamma) * np.eye(landscape.dim))


def _flat_advice(optimizer: Optimizer, landscape: Landscape) -> str | None:
    """:data:`~symsgd.errors.FLAT_ADVICE` when the numeric Hessian plus weight decay is
    singular (lowering the learning rate cannot help); None otherwise (the default advice)."""
    eig = _curvatures(optimizer, landscape)
    if eig is None or not eig.size:
        return None
    return FLAT_ADVICE if eig.min() <= 1e-12 * max(1.0, float(np.abs(eig).max())) else None


def _refuse_negative_curvature(optimizer: Optimizer, landscape: Landscape) -> None:
    """A numeric Hessian (plus weight decay) with a negative eigenvalue has no minimum, so no
    stationary law at any learning rate: say so instead of advising a smaller step."""
    eig = _curvatures(optimizer, landscape)
    if eig is None or not eig.size:
        return
    lowest = float(eig.min())
    if lowest < 0:
        raise ValueError(
            f"stationary(): the Hessian H (plus weight decay) has a negative curvature "
            f"(eigenvalue {lowest:.6g}): the loss has no minimum there and no learning rate "
            f"gives a stationary law. Check the sign of H."
        )


def _refuse_unsupported(optimizer: Optimizer, landscape: Landscape, noise: Noise) -> None:
    """Refuse problems whose answer is not of the form asked for (rather than return a wrong
    one)."""
    reduction = getattr(landscape, "reduction", None)  # a rank-deficient data set's row space
    if reduction is not None:
        reduction.check_optimizer(optimizer)
    gamma = sp.sympify(getattr(optimizer, "weight_decay", 0))
    flat = getattr(landscape, "flat_directions", ())
    own = sp.sympify(getattr(landscape, "expansion_weight_decay", 0))
    if flat and (gamma == 0 or gamma != own):
        shown = "; ".join(
            "(" + ", ".join(sp.sstr(sp.N(v, 4) if v.is_Float else v) for v in d) + ")" for d in flat
        )
        how = (
            "Weight decay γ makes the minimum isolated, but it also moves the iterates along "
            "the manifold to its minimum-norm point, so expand there: "
            "θ_γ = model.minimum(start, weight_decay=γ); local = model.near(θ_γ, "
            "weight_decay=γ); then stationary(SGD(lr, weight_decay=γ), local, noise) with the "
            "same number γ."
        )
        if gamma == 0:
            raise ValueError(
                f"stationary(): the Hessian at this minimum is singular — it lies on a manifold "
                f"of minima, flat along {shown}. Along a flat direction the noise accumulates "
                f"without bound, so the linearised dynamics has no stationary law. {how}"
            )
        raise ValueError(
            f"stationary(): the Hessian is singular along {shown} (a manifold of minima) and "
            f"the optimizer's weight decay {gamma} is not the one this local problem was "
            f"expanded for ({own}): the linearised law would describe a point the real "
            f"iterates leave. {how}"
        )
    if not (getattr(landscape, "eigenmode", False) and noise.depends_on_state()):
        return
    star = getattr(landscape, "theta_star", None)
    if gamma != 0 and star is not None and not sp.Matrix(star).is_zero_matrix:
        raise ValueError(
            f"stationary(): minibatch noise with weight_decay={gamma} and theta_star={star[0]} "
            f"has no eigen-mode form: the weight-decayed minimum is offset along every mode "
            f"at once, and the noise then correlates different modes (Var θ is not diagonal in "
            f"the eigenbasis). Use an explicit matrix, e.g. "
            f"LinearRegression(sp.diag(a1, a2, ...), label_variance, theta_star=[...]), or "
            f"set theta_star=0 or weight_decay=0."
        )


def _close_mode_trace(recursion: LinearRecursion, solution: Solution) -> Stationary:
    """The eigen-mode result with its cross-mode trace closed (:func:`symsgd.modes.close_trace`)
    and certified on an explicit instance (:func:`symsgd.certify.certify_modes`)."""
    land = recursion.landscape
    (mode,) = list(land.mode_names)
    # the trace couples the modes through the noise, i.e. at the gradient-evaluation point
    # x = Kz (θ for SGD, the look-ahead point for Nesterov), not through θ itself
    at_gradient = congruence(recursion.K, solution.state_cov)
    density = land.coupling_density(at_gradient, recursion.optimizer.weight_decay)
    kappa, t_slope = close_trace(density, COUPLING, mode)
    mode_conditions, complete = stability_conditions(recursion)
    conditions = sp.And(mode_conditions, sp.StrictLessThan(t_slope, 1))
    result = Stationary(
        solution=replace(solution, denominator=solution.denominator * (1 - t_slope)),
        recursion=recursion,
        stability=(conditions, complete),
        closure={COUPLING: kappa},
    )
    certificate = certify_modes(result)
    return replace(result, solution=replace(result.solution, certificate=certificate))
