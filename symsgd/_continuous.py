r"""The continuous-time (SDE) prediction of a stationary law: :class:`ContinuousTime`.

With drift :math:`A = P(H + \gamma I)` and the optimizer's effective learning rate
:math:`\lambda_{\rm eff}` (λ for SGD, λ/(1−μ) for momentum), the stationary covariance of
:math:`d\theta = -A\theta\,dt + \sqrt{\lambda_{\rm eff}}\,P\,Q(\Sigma)^{1/2}dW` solves

.. math:: A\Sigma + \Sigma A^\top - \lambda_{\rm eff}P(Q(\Sigma) - Q_0)P^\top
          = \lambda_{\rm eff}PQ_0P^\top ,

a :class:`~symsgd.lyapunov.StationaryEquation` solved and certified by the same solver
dispatch as discrete time (:func:`symsgd.lyapunov.solve`).  It exists where the eigenvalues of
:math:`A` (of the whole operator, for state-dependent noise) lie in the right half-plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp

from ._result import Result
from .errors import UnstableError
from .exact import canonical
from .landscapes import Landscape
from .lyapunov import StationaryEquation, solve
from .stability import INVARIANT_DEGREE, conditions_from, hurwitz_conditions, invariant_hurwitz

__all__ = ["ContinuousTime", "LangevinComparison", "langevin"]

#: the equation every continuous-time result is certified against
CONTINUOUS_EQUATION = "AΣ + ΣAᵀ − λ_eff P(Q(Σ) − Q₀)Pᵀ = λ_eff P Q₀ Pᵀ (continuous time)"


@dataclass(frozen=True, eq=False, kw_only=True)
class ContinuousTime(Result):
    """The continuous-time (SDE) prediction of :meth:`Stationary.continuous_time
    <symsgd.Stationary.continuous_time>` (see the module docstring).

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> sde = r.continuous_time()
    >>> sde.cov, sde.conditions
    (c*lambda/(2*h), True)
    """

    landscape: Landscape
    #: where the SDE has a stationary law, before the substituted values (see ``conditions``)
    region: sp.Basic
    #: eigenvalue symbol -> printed matrix name (eigen-mode problems)
    names: dict = field(default_factory=dict)
    #: the additive noise covariance C (for LaTeX names), or None
    noise_matrix: sp.MatrixBase | None = None
    #: the optimizer's learning rate
    lr: sp.Expr | None = None

    @property
    def _lr(self):
        return self.lr

    def _noise_matrix(self):
        return self.noise_matrix

    def _raw_conditions(self) -> sp.Basic:
        return self.region

    def mode_names(self) -> dict:
        return dict(self.names)

    @classmethod
    def of(cls, result) -> ContinuousTime:
        """The SDE prediction for the problem of the :class:`~symsgd.Stationary` ``result``
        (at its substituted values)."""
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

        def coupling(S):
            return rate * P * (noise.covariance(land, S, weight_decay=gamma) - Q0) * P.T

        state_dependent = noise.depends_on_state()
        equation = StationaryEquation.continuous(
            A,
            rate * P * Q0 * P.T,
            coupling if state_dependent else None,
            text=CONTINUOUS_EQUATION,
        )
        relations = None
        if state_dependent:  # the whole operator −F must be Hurwitz
            coeffs = (-equation.system[0]).charpoly().all_coeffs()
        else:
            if d >= INVARIANT_DEGREE and A.free_symbols:
                relations = invariant_hurwitz(A)
            coeffs = None if relations is not None else (-A).charpoly().all_coeffs()
        if relations is not None:
            region = sp.And(*relations)
        else:  # eigenvalues of A (or of the operator) in the right half-plane
            region = conditions_from(hurwitz_conditions(coeffs))
        solution = solve(equation, conditions=region)
        if solution.form is None:
            solution = replace(solution, state_cov=solution.state_cov.applyfunc(canonical))
        return cls(
            solution=solution,
            values=dict(result.values),
            landscape=land,
            region=region,
            names=result.mode_names(),
            noise_matrix=getattr(noise, "C", None),
            lr=opt.lr,
        )

    def __repr__(self) -> str:
        return f"ContinuousTime(cov={self.cov})"

    def _check(self, values, context):
        for cond in sp.And.make_args(self.region):
            if cond.subs(values) == sp.false:
                shown = {k: v for k, v in values.items() if k in cond.free_symbols}
                raise UnstableError.at(context, shown, subject="the SDE", condition=cond, advice="")


# ---------------------------------------------------------------------------------------------
# heavy-ball momentum against its Langevin picture
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LangevinComparison:
    r"""Heavy-ball momentum against its Langevin picture (:func:`langevin`): time step
    :math:`\sqrt\lambda`, friction :math:`(1-\mu)/\sqrt\lambda`, temperature
    :math:`T = \lambda c/(2(1-\mu))`.  ``*_langevin`` are the Langevin (Gibbs) values,
    ``*_exact`` the discrete-time ones, ``*_ratio`` exact / Langevin (the correlation has no
    ratio: it is 0 in the Langevin picture)."""

    step: sp.Expr
    friction: sp.Expr
    temperature: sp.Expr
    var_theta_langevin: sp.Expr
    var_v_langevin: sp.Expr
    correlation_langevin: sp.Expr
    var_theta_exact: sp.Expr
    var_v_exact: sp.Expr
    correlation_exact: sp.Expr

    @property
    def var_theta_ratio(self) -> sp.Expr:
        return sp.factor(sp.cancel(self.var_theta_exact / self.var_theta_langevin))

    @property
    def var_v_ratio(self) -> sp.Expr:
        return sp.factor(sp.cancel(self.var_v_exact / self.var_v_langevin))


def langevin(result) -> LangevinComparison:
    r"""Heavy-ball momentum (:class:`~symsgd.HeavyBall`, one parameter or one eigen-mode) against
    its Langevin picture.

    Derivation.  With :math:`v_t = \theta_t - \theta_{t-1}` the update is
    :math:`v_{t+1} = \mu v_t - \lambda g(\theta_t)`, :math:`\theta_{t+1} = \theta_t + v_{t+1}`.
    Put :math:`p = v/\sqrt\lambda` and :math:`dt = \sqrt\lambda`:
    :math:`\theta_{t+1} - \theta_t = p_{t+1}dt` and :math:`p_{t+1} - p_t = -\frac{1-\mu}
    {\sqrt\lambda}p_t\,dt - \nabla L\,dt - \sqrt\lambda\,\xi_t` — underdamped Langevin with
    friction :math:`\gamma_f = (1-\mu)/\sqrt\lambda` and noise of variance :math:`\lambda c`
    per step, i.e. diffusion :math:`D = \lambda c/dt = \sqrt\lambda c` per unit time.
    Fluctuation–dissipation :math:`D = 2\gamma_fT` gives :math:`T = \lambda c/(2(1-\mu))`.  The
    Gibbs law :math:`\propto e^{-(hθ^2 + p^2)/(2T)}` has :math:`\operatorname{Var}\theta = T/h`,
    :math:`\operatorname{Var}v = \lambda\operatorname{Var}p = \lambda T` and θ, v uncorrelated.

    In discrete time θ and v are correlated: stationarity gives
    :math:`\operatorname{Var}v_t = 2\operatorname{Var}\theta - 2\mathbb E\theta_t\theta_{t-1}`,
    so :math:`\operatorname{Cov}(\theta_t, v_t) = \operatorname{Var}\theta - \mathbb
    E\theta_t\theta_{t-1} = \tfrac12\operatorname{Var}v > 0` and the correlation is
    :math:`\tfrac12\sqrt{\operatorname{Var}v/\operatorname{Var}\theta}\approx\tfrac12
    \sqrt{2\lambda h/(1+\mu)}` for small λ (it is the midpoint
    :math:`(\theta_t+\theta_{t-1})/2` that is uncorrelated with v).

    The Langevin picture is the limit λ → 0 *with the friction* :math:`(1-\mu)/\sqrt\lambda`
    *held fixed* (so μ → 1): there every ratio tends to 1 and the correlation to 0.  At fixed
    μ < 1, :math:`\operatorname{Var}\theta` still agrees as λ → 0, but the velocity does not:
    :math:`v' = \mu v - \lambda\xi + O(\lambda v)` gives :math:`\operatorname{Var}v\to
    \lambda^2c/(1-\mu^2)`, a ratio :math:`2/(1+\mu)` to the Langevin :math:`\lambda T`.
    c is the stationary gradient-noise variance (``result.noise_cov``:
    C for additive noise, :math:`Q(\Sigma)` for minibatch noise); h includes the weight decay.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> cmp = ss.langevin(r)
    >>> cmp.temperature, cmp.var_theta_ratio
    (c*lambda/(2 - 2*mu), -2*(mu + 1)/(h*lambda - 2*mu - 2))
    >>> cmp.correlation_langevin, sp.simplify(cmp.correlation_exact**2 * 4 * cmp.var_theta_exact
    ...                                       / cmp.var_v_exact)
    (0, 1)
    """
    from .optimizers import HeavyBall

    recursion = getattr(result, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"langevin() needs a result of ss.stationary(...); got {type(result).__name__}."
        )
    opt, land = recursion.optimizer, recursion.landscape
    if type(opt) is not HeavyBall:
        raise TypeError(
            f"langevin() compares heavy-ball momentum with its Langevin picture; got "
            f"{type(opt).__name__}."
        )
    if land.dim != 1:
        raise NotImplementedError(
            "langevin() covers one parameter or one eigen-mode (Quadratic.commuting, ...); with "
            f"d = {land.dim} the Langevin law of non-commuting H and C is not a Gibbs law."
        )
    values = dict(getattr(result, "values", {}))
    lam = sp.sympify(opt.lr).xreplace(values)
    mu = sp.sympify(opt.momentum).xreplace(values)
    h = (sp.Matrix(land.hessian)[0, 0] + opt.weight_decay).xreplace(values)
    c = sp.sympify(result.noise_cov)
    var_theta = sp.sympify(result.cov)
    var_v = sp.sympify(result.velocity_cov)
    cross = sp.sympify(result.cross_cov)
    T = lam * c / (2 * (1 - mu))
    return LangevinComparison(
        step=sp.sqrt(lam),
        friction=(1 - mu) / sp.sqrt(lam),
        temperature=T,
        var_theta_langevin=T / h,
        var_v_langevin=lam * T,
        correlation_langevin=sp.S.Zero,
        var_theta_exact=var_theta,
        var_v_exact=var_v,
        correlation_exact=sp.simplify(cross / sp.sqrt(var_theta * var_v)),
    )
