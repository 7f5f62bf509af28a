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

__all__ = ["ContinuousTime"]

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
