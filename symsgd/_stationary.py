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

from collections.abc import Mapping

import sympy as sp

from ._util import field_atoms, replace_fields, substitute, symbols_in
from .certify import certify, certify_modes, probe_symbols
from .domain import check_values, problem_constraints
from .exact import canonical
from .landscapes import Landscape
from .latex import command, layout, render
from .lyapunov import solve, solve_symmetric
from .noise import Noise
from .numeric import NumericFunction, lambdify_result, resolve_values
from .optimizers import NaturalGradient, Optimizer, Preconditioned
from .recursion import LinearRecursion, build_recursion
from .stability import (
    INVARIANT_DEGREE,
    check_stable,
    conditions_from,
    hurwitz_conditions,
    invariant_hurwitz,
    stability_conditions,
)

__all__ = ["ContinuousTime", "Stationary", "stationary"]


def _scalar(m: sp.MatrixBase):
    return m[0, 0] if m.shape == (1, 1) else sp.ImmutableMatrix(m)


def _matrix(value) -> sp.Matrix:
    return value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])


class _Result:
    """Shared presentation: ``cov``, ``loss``, ``subs``, ``series``, ``latex``, ``lambdify``."""

    _cov: sp.ImmutableMatrix
    conditions: sp.Basic
    landscape: Landscape
    values: dict

    # -- readouts -------------------------------------------------------------------------
    @property
    def cov(self):
        """Stationary Var θ (a sympy expression for 1-D and eigen-mode problems, else Matrix)."""
        return _scalar(self._apply(self._cov))

    @property
    def loss(self) -> sp.Expr:
        r"""Expected (training) loss at stationarity; for a quadratic
        :math:`\tfrac12\operatorname{Tr}(H\operatorname{Var}\theta)` (per mode for eigen-mode
        problems with additive noise)."""
        return self._apply(self._canonical(self.landscape.loss(self._cov, self._weight_decay())))

    @property
    def test_loss(self) -> sp.Expr | None:
        """Expected loss on a fresh sample, where the landscape defines one (else None)."""
        method = getattr(self.landscape, "test_loss", None)
        value = None if method is None else method(self._cov, self._weight_decay())
        return None if value is None else self._apply(self._canonical(value))

    def _weight_decay(self):
        return 0

    #: the structured characteristic-algebra form (:class:`symsgd.cayley.StructuredForm`) of
    #: a result too large to expand (e.g. fully symbolic SGD with d ≥ 4), else None
    form = None

    @property
    def structured(self) -> bool:
        """True when the entries are kept in the structured characteristic-algebra form
        (readouts are then assembled without expanding into one cancelled fraction)."""
        return self.form is not None

    def _noise_matrix(self):
        """The additive noise covariance C of the problem, if it has one (for LaTeX names)."""
        return None

    def _state_name(self) -> str:
        return r"\Sigma"

    def _canonical(self, value):
        return value if self.structured else canonical(value)

    @property
    def free_symbols(self) -> set:
        return symbols_in(_matrix(self.cov))

    def _apply(self, value):
        closure = getattr(self, "closure", None)
        if closure:
            value = value.subs(closure)
            if isinstance(value, sp.MatrixBase):
                value = value.applyfunc(canonical)
            elif isinstance(value, sp.Expr):
                value = canonical(value)
        if not self.values:
            return value
        if all(isinstance(k, sp.Symbol) for k in self.values):
            # a plain replacement of symbols: rebuilding the expression once (each shared
            # subexpression once) is much faster than subs() on the ~10⁴-term entries of fully
            # symbolic matrix results
            return substitute(value, self.values)
        return value.subs(self.values)

    def _outputs(self) -> dict:
        return {"cov": self.cov, "loss": self.loss}

    def mode_names(self) -> dict:
        return {}

    #: the optimizer's learning rate (set by the concrete result)
    _lr = None

    def _series_symbol(self, symbol) -> sp.Symbol:
        """The expansion variable of :meth:`series`: a symbol, or a name / alias of one of the
        result's symbols (``"lr"`` and ``"lambda"`` mean the learning rate)."""
        if symbol is None:
            return self._lr_symbol()
        if isinstance(symbol, str):
            from .symbols import ALIASES

            if symbol in ("lr", str(self._lr_symbol())) or ALIASES.get(symbol) == self._lr_symbol():
                return self._lr_symbol()
            return next(iter(resolve_values({symbol: 0}, self._all_symbols())))
        if not isinstance(symbol, sp.Symbol):
            raise TypeError(f"series(symbol): expected a sympy Symbol or its name; got {symbol!r}.")
        return symbol

    def _lr_symbol(self) -> sp.Symbol:
        """The learning-rate symbol of the problem: the optimizer's own when it is a symbol
        (``series()`` and ``latex(lr=...)`` act on it), else the library's ``lr``."""
        from .symbols import lr

        own = self._lr
        return own if isinstance(own, sp.Symbol) else lr

    def _library_lr(self, value):
        """``value`` with the optimizer's own learning-rate symbol written as the library's
        (so the printers' ``lr=`` notation applies to it)."""
        from .symbols import lr

        own = self._lr_symbol()
        return value if own == lr or value is None else value.xreplace({own: lr})

    # -- manipulation ---------------------------------------------------------------------
    def subs(self, values: Mapping | None = None, **kwargs):
        """Substitute parameter values (symbols, names or aliases as keys).

        Raises :class:`~symsgd.UnstableError` if the values violate :attr:`conditions`.
        """
        values = dict(values or {})
        values.update(kwargs)
        resolved = resolve_values(values, self._all_symbols())
        check_values(resolved, "subs()", self._constraints())
        resolved = {
            k: sp.nsimplify(v) if isinstance(v, float) and v == int(v) else sp.sympify(v)
            for k, v in resolved.items()
        }
        merged = {**self.values, **resolved}
        self._check(merged, "subs()")
        return self._with_values(merged)

    def _all_symbols(self) -> set:
        return symbols_in(self._cov) | self._raw_conditions().free_symbols

    def _raw_conditions(self) -> sp.Basic:
        """The conditions before the substituted :attr:`values` are applied."""
        raise NotImplementedError

    @property
    def conditions(self) -> sp.Basic:
        """Where the stationary law exists, at the substituted :attr:`values` (a sympy boolean;
        ``True`` once every value is fixed inside the stable region)."""
        return self._apply(self._raw_conditions())

    def _check(self, values: dict, context: str) -> None:
        raise NotImplementedError

    def _with_values(self, values: dict):
        raise NotImplementedError

    def series(self, symbol: sp.Symbol | None = None, n: int = 3):
        """Taylor series of ``cov`` in ``symbol`` (default: the learning rate) about 0, up to
        and excluding order ``n``."""
        symbol = self._series_symbol(symbol)
        if isinstance(n, bool) or not isinstance(n, (int, sp.Integer)) or int(n) < 1:
            raise ValueError(f"series(n=...): n must be an integer ≥ 1 (the order); got {n!r}.")
        n = int(n)
        if symbol in self.values:  # already fixed: the series is the value itself
            return self.cov
        if self.structured:
            theta = getattr(getattr(self, "recursion", None), "theta_map", None)
            out = self.form.series(symbol, n)
            if theta is not None:
                out = congruence(theta, out)
            return _scalar(self._apply(out))
        cov = _matrix(self.cov)
        out = cov.applyfunc(lambda e: sp.series(e, symbol, 0, n).removeO())
        return _scalar(out)

    # -- presentation ---------------------------------------------------------------------
    def latex(
        self,
        *,
        env: str | None = None,
        lr: str | None = None,
        batch: str | None = None,
        what: str = "cov",
    ) -> str:
        r"""LaTeX of ``cov`` (or ``what=`` any readout: ``"velocity_cov"``, ``"cross_cov"``,
        ``"noise_cov"``, ``"loss"``, ``"test_loss"``): matrix-function form for eigen-mode
        results, a common-denominator block for explicit matrices.  ``lr="\\eta"`` and
        ``batch="B"`` change notation; ``env="align"`` wraps it in an align environment."""
        for name, value in (("lr", lr), ("batch", batch), ("env", env)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"latex({name}=...) takes a string (e.g. r'\\eta'); got {value!r}.")
        lhs = _LATEX_LHS.get(what)
        if lhs is None:
            raise ValueError(f"latex(what=...) must be one of {sorted(_LATEX_LHS)}; got {what!r}.")
        if self.structured:
            return self._structured_latex(what, env, lr)
        value = getattr(self, what, None)
        if value is None:
            raise ValueError(f"this result has no {what!r}.")
        names = self.mode_names() if what not in ("loss", "test_loss") else {}
        denominator = getattr(self, "denominator", None) if what == "cov" else None
        if lr:
            value, denominator = self._library_lr(value), self._library_lr(denominator)
        try:
            return render(
                lhs,
                value,
                names=names,
                denominator=denominator,
                env=env,
                lr_name=lr,
                batch_name=batch,
            )
        except (sp.PolynomialError, sp.PolificationFailed, sp.GeneratorsNeeded):
            return render(
                lhs, value, denominator=denominator, env=env, lr_name=lr, batch_name=batch
            )

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle \\Sigma = {self.latex()}$"

    def _structured_latex(self, what: str, env: str | None, lr_name: str | None) -> str:
        """The characteristic-algebra formula of a structured result (``what="cov"`` only)."""
        if what != "cov":
            raise ValueError(
                f"latex(what={what!r}) is not available for this structured result (its entries "
                f"have ~10⁶ terms when expanded); latex() prints the cov formula, and "
                f"lambdify()/subs() evaluate {what!r}."
            )
        form = self.form
        K_name = "H" if form.K == sp.ImmutableMatrix(self.landscape.hessian) else "K"
        C = self._noise_matrix()
        F_name = "C" if C is not None and form.F == sp.ImmutableMatrix(C) else "F"
        lhs = self._state_name()
        names = {self._lr_symbol(): command(lr_name)} if lr_name else {}
        body, where = form.latex(K_name, F_name, names, self.values)
        return layout(lhs, body, where, env)

    def lambdify(
        self, what: str | tuple = "cov", backend: str = "numpy", unstable: str = "raise"
    ) -> NumericFunction:
        """A fast vectorised numeric function of the free symbols, with keyword arguments by
        symbol name or alias: ``f = r.lambdify(); f(lr=0.1, h=1.0, c=0.5)``.

        ``what`` is one readout name or a tuple of them (the function then returns a dict).
        Points violating :attr:`conditions` raise :class:`~symsgd.UnstableError`, or give NaN
        with ``unstable="nan"``.
        """
        names = (what,) if isinstance(what, str) else tuple(what)
        outputs = {}
        for name in names:
            _check_readout(name, "lambdify(what=...)")
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"this result has no {name!r}.")
            outputs[name] = value
        return lambdify_result(
            outputs, self.conditions, backend, unstable, self._constraints(), self._radius()
        )

    def _constraints(self) -> tuple:
        """Domain relations of the problem's parameters (:mod:`symsgd.domain`)."""
        return ()

    def _radius(self):
        """A numeric stability check for lambdify when :attr:`conditions` are incomplete."""
        return None


def _check_readout(name, context: str) -> None:
    if not isinstance(name, str) or name not in _LATEX_LHS:
        raise ValueError(f"{context}: what must be one of {sorted(_LATEX_LHS)}; got {name!r}.")


def congruence(T: sp.MatrixBase, S: sp.MatrixBase) -> sp.Matrix:
    """``T S Tᵀ``; when ``T`` merely selects coordinates (rows of the identity) the entries are
    picked out instead of multiplied, which keeps large symbolic entries untouched."""
    T = sp.Matrix(T)
    picks = []
    for i in range(T.rows):
        nonzero = [j for j in range(T.cols) if T[i, j] != 0]
        if len(nonzero) != 1 or T[i, nonzero[0]] != 1:
            return T * sp.Matrix(S) * T.T
        picks.append(nonzero[0])
    return sp.Matrix(S).extract(picks, picks)


#: left-hand side printed by ``latex(what=...)``
_LATEX_LHS = {
    "cov": r"\Sigma",
    "velocity_cov": r"\operatorname{Var}[v]",
    "cross_cov": r"\operatorname{Cov}(\theta, v)",
    "noise_cov": r"\bar C",
    "loss": r"\mathbb{E}[L]",
    "test_loss": r"\mathbb{E}[L_{\text{test}}]",
}


class Stationary(_Result):
    """The exact stationary law of a linear stochastic recursion (see the module docstring).

    Attributes: ``recursion``, ``state_cov``, ``conditions`` (sympy boolean, derived),
    ``conditions_complete``, ``denominator`` (the stability polynomial of the exact solution,
    factored), ``method`` (the solver strategy used), ``values`` (substituted parameters).
    """

    def __init__(
        self,
        recursion: LinearRecursion,
        state_cov: sp.MatrixBase,
        conditions,
        complete: bool | None,
        denominator: sp.Expr,
        method: str,
        values: dict | None = None,
        closure: dict | None = None,
        form=None,
        certificate=None,
    ):
        self.recursion = recursion
        self._lr = recursion.optimizer.lr
        #: what was checked before this result was returned (:class:`symsgd.certify.Certificate`)
        self.certificate = certificate
        #: substitutions that close a self-consistent coupling (eigen-mode minibatch problems:
        #: κ = Tr(A E[uuᵀ]) -> its closed form in traces of matrix functions of A)
        self.closure = dict(closure or {})
        self._state_cov = sp.ImmutableMatrix(state_cov)
        self._conditions = (conditions, complete) if conditions is not None else None
        self._denominator = denominator
        self.method = method
        #: the structured characteristic-algebra form (:class:`symsgd.cayley.StructuredForm`)
        #: of a ``method="invariant-structured"`` result, else None
        self.form = form
        self.values = dict(values or {})
        self._cov = sp.ImmutableMatrix(congruence(recursion.theta_map, self._state_cov))
        self.landscape = recursion.landscape

    def __repr__(self) -> str:
        r = self.recursion
        return (
            f"Stationary({type(r.optimizer).__name__}, {r.landscape!r}, {r.noise!r}; "
            f"method={self.method!r})"
        )

    # -- readouts -------------------------------------------------------------------------
    def _raw_conditions(self) -> sp.Basic:
        """Where the stationary law exists (derived on first access: spectral radius of the
        second-moment map < 1 as explicit polynomial inequalities)."""
        if self._conditions is None:
            self._conditions = stability_conditions(self.recursion)
        return self._conditions[0]

    @property
    def conditions_complete(self) -> bool:
        """False when :attr:`conditions` only states Schur stability of the mean recursion
        (the full criterion was too large); numeric checks then use the spectral radius."""
        self._raw_conditions()  # derive on demand
        return self._conditions[1]

    @property
    def state_cov(self) -> sp.ImmutableMatrix:
        """Second moment of the whole state z (e.g. (θ_t, θ_{t-1}) for momentum)."""
        return self._apply(self._state_cov)

    @property
    def denominator(self) -> sp.Expr:
        """Common denominator of the exact solution (factored): it vanishes on the boundary
        of the stability region."""
        return self._apply(self._denominator)

    def _noise(self, sigma) -> sp.Matrix:
        r = self.recursion
        return r.noise_cov(congruence(r.K, sigma))

    @property
    def noise_cov(self):
        """Stationary gradient-noise covariance Q(KΣKᵀ) at the gradient evaluation point."""
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
        Th, _M, D, S, noise = self._velocity_parts()
        out = (Th * D * S * D.T * Th.T + noise).applyfunc(self._canonical)
        return _scalar(self._apply(out))

    @property
    def cross_cov(self):
        """Cov(θ_t, v_t) = E[θ_t v_tᵀ]."""
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
        _check_readout(what, "on_modes(what=...)")
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
                from .errors import UnstableError

                raise UnstableError(
                    f"no stationary law for the eigenvalues {list(eigenvalues)}: the conditions "
                    f"{sp.sstr(self.conditions)} fail at {mode} = {e}. Lower the "
                    f"learning rate.",
                    condition=self._raw_conditions(),
                    values={mode: e},
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
        names = r.mode_names()
        opt = r.optimizer
        if isinstance(opt, Preconditioned) and isinstance(opt.P, sp.Symbol):
            names[opt.P] = "P"
        if isinstance(opt, NaturalGradient) and isinstance(opt.fisher, sp.Symbol):
            names[opt.fisher] = "F"
        return names

    def _outputs(self) -> dict:
        out = {"cov": self.cov, "loss": self.loss}
        if self.recursion.velocity_map is not None:
            out["velocity_cov"] = self.velocity_cov
        return out

    # -- derived problems -----------------------------------------------------------------
    def continuous_time(self) -> ContinuousTime:
        r"""The SDE prediction for the same problem.

        With drift :math:`A = P(H + \gamma I)` and the optimizer's effective learning rate
        :math:`\lambda_{\rm eff}` (λ for SGD, λ/(1−μ) for momentum), the stationary covariance of
        :math:`d\theta = -A\theta\,dt + \sqrt{\lambda_{\rm eff}}\,P\,Q(\Sigma)^{1/2}dW` solves
        :math:`A\Sigma + \Sigma A^\top = \lambda_{\rm eff}\, P\,Q(\Sigma)\,P^\top`.
        """
        return ContinuousTime.of(self)

    # -- protocol for _Result --------------------------------------------------------------
    def _constraints(self) -> tuple:
        r = self.recursion
        return tuple(problem_constraints(r.noise, r.landscape))

    def _radius(self):
        if self.conditions_complete is not False:
            return None
        from .stability import spectral_radius

        fixed = dict(self.values)

        def radius(point: dict) -> float:
            return spectral_radius(self.recursion, {**fixed, **point})

        return radius

    def _check(self, values, context):
        check_stable(self.recursion, self._raw_conditions(), values, context)

    def _with_values(self, values):
        return Stationary(
            self.recursion,
            self._state_cov,
            *self._lazy_conditions(),
            self._denominator,
            self.method,
            values,
            self.closure,
            self.form,
            self.certificate,
        )

    def _noise_matrix(self):
        return getattr(self.recursion.noise, "C", None)

    def _state_name(self) -> str:
        r = self.recursion
        return r"\Sigma" if r.n == r.landscape.dim else r"\Sigma_z"

    def _lazy_conditions(self):
        return self._conditions if self._conditions is not None else (None, None)

    def _all_symbols(self):
        r = self.recursion
        return (
            super()._all_symbols()
            | r.M.free_symbols
            | r.B.free_symbols
            | self.recursion.forcing().free_symbols
        )

    def simplify(self) -> Stationary:
        """Entries factored (they are already cancelled; this only changes their form).
        Structured results are returned unchanged: factoring would expand them."""
        if self.structured:
            return self
        S = self._state_cov.applyfunc(sp.factor)
        return Stationary(
            self.recursion,
            S,
            *self._lazy_conditions(),
            self._denominator,
            self.method,
            self.values,
            self.closure,
            self.form,
            self.certificate,
        )


class ContinuousTime(_Result):
    """The continuous-time (SDE) prediction of :meth:`Stationary.continuous_time`."""

    def __init__(
        self,
        landscape,
        cov,
        conditions,
        names,
        values,
        denominator,
        form=None,
        noise_matrix=None,
        lr=None,
        certificate=None,
    ):
        #: what was checked before this result was returned (:class:`symsgd.certify.Certificate`)
        self.certificate = certificate
        self.landscape = landscape
        self._cov = sp.ImmutableMatrix(cov)
        self._cond = conditions
        self._names = names
        self.values = dict(values)
        self.denominator = denominator
        self.form = form
        self._noise_C = noise_matrix
        self._lr = lr

    def _noise_matrix(self):
        return self._noise_C

    def _raw_conditions(self) -> sp.Basic:
        return self._cond

    @classmethod
    def of(cls, result: Stationary) -> ContinuousTime:
        if result.closure:
            raise ValueError(
                "continuous_time(): the SDE prediction of an eigen-mode problem whose modes "
                "couple through a trace (minibatch noise) is not derived here; use an explicit "
                "matrix landscape, e.g. LinearRegression(sp.diag(a1, a2, a3), label_variance)."
            )
        r = result.recursion
        opt, land, noise = r.optimizer, r.landscape, r.noise
        d = land.dim
        P = opt.preconditioner(land, noise)
        P = sp.eye(d) if P is None else sp.Matrix(P)
        A = P * (sp.Matrix(land.hessian) + opt.weight_decay * sp.eye(d))
        rate = opt.continuous_lr()
        gamma = opt.weight_decay
        Q0 = noise.covariance(land, sp.zeros(d, d), weight_decay=gamma)

        def operator(S):
            out = A * S + S * A.T
            if noise.depends_on_state():
                out = out - rate * P * (noise.covariance(land, S, weight_decay=gamma) - Q0) * P.T
            return out

        G = rate * P * Q0 * P.T
        form = None
        if noise.depends_on_state() or d == 1 or not (A.free_symbols or G.free_symbols):
            cov, den = solve_symmetric(operator, G, d)
        else:  # A Σ + Σ Aᵀ = G: the characteristic-algebra formula with s = 0
            from .cayley import NotApplicable, solve_stein

            try:
                cov, den, form = solve_stein(A, G, continuous=True)
            except NotApplicable:
                cov, den = solve_symmetric(operator, G, d)
        if form is None:
            cov = cov.applyfunc(canonical)
        relations = None
        if noise.depends_on_state():
            from .lyapunov import halfvec_operator_system

            F, _ = halfvec_operator_system(operator, Q0, d)
            coeffs = (-F).charpoly().all_coeffs()
        else:
            if d >= INVARIANT_DEGREE and A.free_symbols:
                relations = invariant_hurwitz(A)
            coeffs = None if relations is not None else (-A).charpoly().all_coeffs()
        if relations is not None:
            conditions = sp.And(*relations)
        else:  # eigenvalues of A (or of the operator) in the right half-plane
            conditions = conditions_from(hurwitz_conditions(coeffs))
        C = getattr(noise, "C", None)
        certificate = certify(
            lambda X, point: sp.Matrix(operator(X)).xreplace(point) - G.xreplace(point),
            cov,
            symbols_in(cov) | A.free_symbols | G.free_symbols | probe_symbols(operator, d),
            equation="AΣ + ΣAᵀ − λ_eff P(Q(Σ) − Q₀)Pᵀ = λ_eff P Q₀ Pᵀ (continuous time)",
        )
        return cls(
            land,
            cov,
            conditions,
            result.mode_names(),
            result.values,
            den,
            form,
            C,
            opt.lr,
            certificate,
        )

    def __repr__(self) -> str:
        return f"ContinuousTime(cov={self.cov})"

    def mode_names(self) -> dict:
        return self._names

    def _check(self, values, context):
        for cond in sp.And.make_args(self._cond):
            if cond.subs(values) == sp.false:
                from .errors import UnstableError

                raise UnstableError(
                    f"{context}: the SDE has no stationary law where {sp.sstr(cond)} fails.",
                    condition=cond,
                    values=values,
                )

    def _with_values(self, values):
        return ContinuousTime(
            self.landscape,
            self._cov,
            self._cond,
            self._names,
            values,
            self.denominator,
            self.form,
            self._noise_C,
            self._lr,
            self.certificate,
        )


def stationary(
    optimizer: Optimizer, landscape: Landscape, noise: Noise, *, method: str = "auto"
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
    """
    for name, value, kind, example in (
        ("optimizer", optimizer, Optimizer, "ss.SGD(ss.lr)"),
        ("landscape", landscape, Landscape, "ss.Quadratic(h)"),
        ("noise", noise, Noise, "ss.AdditiveNoise(c)"),
    ):
        if not isinstance(value, kind):
            raise TypeError(f"stationary(): {name} must be e.g. {example}; got {value!r}.")
    _refuse_unsupported(optimizer, landscape, noise)
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
            why = "the stability conditions can never hold"
            if numeric:
                from .stability import spectral_radius

                rho = spectral_radius(recursion, {})
                why = (
                    f"the spectral radius of its second-moment map is {rho:.6g} ≥ 1, so the "
                    f"variance grows without bound; lower the learning rate"
                )
            raise _unstable(recursion, why)
        check_stable(recursion, conditions, {}, "stationary()")
    solution = solve(recursion, method, conditions)
    from .modes import COUPLING

    if COUPLING in symbols_in(solution.state_cov):
        return _close_mode_trace(recursion, solution)
    return Stationary(
        recursion,
        solution.state_cov,
        conditions,
        complete,
        solution.denominator,
        solution.method,
        form=solution.form,
        certificate=solution.certificate,
    )


def _refuse_name_clashes(*pieces) -> None:
    """Refuse a user symbol that shares its name with a library symbol (or another user
    symbol) but is a different symbol: printed formulas, LaTeX and keyword arguments would
    silently merge them (``\\gamma + \\gamma``)."""
    from ._util import field_symbols
    from .modes import COUPLING
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


def _refuse_negative_curvature(optimizer: Optimizer, landscape: Landscape) -> None:
    """A numeric Hessian (plus weight decay) with a negative eigenvalue has no minimum, so no
    stationary law at any learning rate: say so instead of advising a smaller step."""
    G = sp.Matrix(landscape.hessian) + sp.sympify(optimizer.weight_decay) * sp.eye(landscape.dim)
    if G.free_symbols or landscape.eigenmode:
        return
    import numpy as np

    lowest = float(np.linalg.eigvalsh(np.array(G.evalf(), dtype=float)).min())
    if lowest < 0:
        raise ValueError(
            f"stationary(): the Hessian H (plus weight decay) has a negative curvature "
            f"(eigenvalue {lowest:.6g}): the loss has no minimum there and no learning rate "
            f"gives a stationary law. Check the sign of H."
        )


def _refuse_unsupported(optimizer: Optimizer, landscape: Landscape, noise: Noise) -> None:
    """Refuse problems whose answer is not of the form asked for (rather than return a wrong
    one)."""
    if not (getattr(landscape, "eigenmode", False) and noise.depends_on_state()):
        return
    star = getattr(landscape, "theta_star", None)
    gamma = sp.sympify(getattr(optimizer, "weight_decay", 0))
    if gamma != 0 and star is not None and not sp.Matrix(star).is_zero_matrix:
        raise ValueError(
            f"stationary(): minibatch noise with weight_decay={gamma} and theta_star={star[0]} "
            f"has no eigen-mode form: the weight-decayed minimum is offset along every mode "
            f"at once, and the noise then correlates different modes (Var θ is not diagonal in "
            f"the eigenbasis). Use an explicit matrix, e.g. "
            f"LinearRegression(sp.diag(a1, a2, ...), label_variance, theta_star=[...]), or "
            f"set theta_star=0 or weight_decay=0."
        )


def _close_mode_trace(recursion: LinearRecursion, solution) -> Stationary:
    r"""Close the cross-mode coupling of an eigen-mode problem.

    One mode's solution is affine in :math:`\kappa = \operatorname{Tr}(A\,\mathbb E[uu^\top])`;
    summing the mode's share :math:`a(\Sigma(a,\kappa) + b^2) = u(a) + v(a)\kappa` over the modes
    gives :math:`\kappa = \operatorname{Tr}u(A) + \kappa\operatorname{Tr}v(A)`, so
    :math:`\kappa = \operatorname{Tr}u(A)/(1 - \operatorname{Tr}v(A))`, which exists iff
    :math:`\operatorname{Tr}v(A) < 1` (on top of every mode's own stability).
    """
    from .modes import COUPLING, mode_trace

    land = recursion.landscape
    (mode,) = list(land.mode_names)
    # the trace couples the modes through the noise, i.e. at the gradient-evaluation point
    # x = Kz (θ for SGD, the look-ahead point for Nesterov), not through θ itself
    at_gradient = congruence(recursion.K, solution.state_cov)
    density = sp.cancel(land.coupling_density(at_gradient, recursion.optimizer.weight_decay))
    if sp.cancel(sp.diff(density, COUPLING, 2)) != 0:  # pragma: no cover - linear theory
        raise RuntimeError("the mode coupling is not affine in the trace; cannot close it.")
    slope = sp.cancel(sp.diff(density, COUPLING))
    intercept = sp.cancel(density.subs(COUPLING, 0))
    t_slope = mode_trace(slope, mode)
    t_intercept = mode_trace(intercept, mode) if intercept != 0 else sp.Integer(0)
    kappa = t_intercept / (1 - t_slope)
    mode_conditions, complete = stability_conditions(recursion)
    conditions = sp.And(mode_conditions, sp.StrictLessThan(t_slope, 1))
    result = Stationary(
        recursion,
        solution.state_cov,
        conditions,
        complete,
        solution.denominator * (1 - t_slope),
        solution.method,
        closure={COUPLING: kappa},
    )
    result.certificate = certify_modes(result)
    return result


def _unstable(recursion, why):
    from .errors import UnstableError

    name = type(recursion.optimizer).__name__
    return UnstableError(f"stationary(): {name} on {recursion.landscape!r} is unstable: {why}.")
