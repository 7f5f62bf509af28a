r"""Noise geometry: where the gradient noise points, and where SGD escapes.

**Alignment** (M. Wang & L. Wu, *The noise geometry of SGD*, arXiv 2310.00692).  At a point θ
let :math:`\Sigma_1(\theta) = \operatorname{Cov}_i[\nabla\ell_i(\theta)]` be the covariance of
*one* per-sample gradient (i uniform over the data, or a fresh sample), :math:`G(\theta) =
\mathbb E[J_i^\top J_i]` the Gauss–Newton matrix (:math:`J_i` the Jacobian of the output of a
squared loss :math:`\ell_i = \tfrac12 r_i^2`) and :math:`L(\theta)` the loss.  Then

.. math:: \mu(\theta) = \frac{\operatorname{Tr}(\Sigma_1G)}{2L\,\|G\|_F^2}, \qquad
          g(\theta; v) = \frac{v^\top\Sigma_1v}{2L\,v^\top Gv} .

* :func:`alignment` — both at a given θ: exact for linear regression (Gaussian population by
  Isserlis' theorem, or a finite data set), float64 for an :class:`~symsgd.EmpiricalLoss`
  (per-sample gradients from the compiled model; G from the output's Jacobian, see there).
* :func:`population_alignment` — the Gaussian population symbolically:
  :math:`\Sigma_1 = Auu^\top A + (u^\top Au + \sigma^2)A` (u = θ − θ*), hence
  :math:`g = 1 + (v^\top Au)^2/((u^\top Au + \sigma^2)v^\top Av)\in[1, 1 + u^\top Au/(u^\top
  Au+\sigma^2)]` and :math:`\mu = 1 + u^\top A^3u/((u^\top Au + \sigma^2)\operatorname{Tr}A^2)
  \in[1, 1 + \lambda_{\max}(A)^2/\operatorname{Tr}A^2]` (derived there, not assumed).
* :func:`alignment_range` — the exact inf and sup over every θ: numerator and denominator are
  quadratic forms of :math:`w = (\theta, 1)` (:func:`alignment_forms`), so the extremes are the
  extreme generalised eigenvalues of the pencil (P, Q) on the range of Q, attained iff the
  eigenspace reaches :math:`w_{d+1}\ne 0` (else approached as :math:`|\theta|\to\infty`).
* :func:`stationary_alignment` — the **ratio of means**
  :math:`\mathbb E\operatorname{Tr}(\Sigma_1G)/(\mathbb E[2L]\,\|G\|_F^2)` over the stationary
  law of θ, exact from the stationary covariance (both means are affine in
  :math:`\mathbb E[ww^\top]`).  The mean of ratios :math:`\mathbb E\mu(\theta)` is not a function
  of the covariance; :func:`alignment_samples` evaluates μ at simulated iterates.  For a
  two-layer network (``model.near(θₑ)`` of an :class:`~symsgd.EmpiricalLoss`) the same ratio of
  means over the stationary law of the *linearised* dynamics (linearised per-sample gradients,
  the loss to second order, G the Gauss–Newton matrix at θₑ), numerically.

**The stability edge** (:func:`stability_edge`, :func:`edge_table`): for online SGD on
Gaussian regression the exact mean-square edge is the root of the secular equation
:math:`\sum_k \lambda a_k/(2S - \lambda a_k(S+1)) = 1` — for many directions
:math:`\lambda\approx 2S/\operatorname{Tr}A`, a *trace* condition — against the Wu–Wang–Su
necessary condition :math:`\|H\|_F\le\sqrt{S/\mu}/\lambda` (a Frobenius one), whose ratio to the
exact edge grows like :math:`\sqrt d`.

**Escape directions, three different objects** (:func:`escape_directions`):

* *mean square* — the Perron eigenvector P of the second-moment map T (:mod:`symsgd.moments`):
  :math:`\mathbb E[u_tu_t^\top]\propto\rho(T)^tP`; its energy fractions on the Hessian
  eigenvectors;
* *typical trajectories* — the top Lyapunov exponent (:func:`symsgd.lyapunov_exponent`) and the
  law of the direction :math:`v_t = u_t/|u_t|` of the projective chain (Monte Carlo);
* *gradient descent* — the Hessian directions with :math:`|1-\lambda h| > 1`.

Mean-square blow-up is not escape: with no noise at the minimiser (label variance 0) and ρ(T) ≥
1 but a negative Lyapunov exponent, :math:`\mathbb E|u_t|^2` grows like :math:`\rho^t` while
almost every trajectory converges (:func:`simulate_escape` counts the chains that leave a ball;
for a scalar state, by Doob's maximal inequality for the martingale :math:`|u_t|^\kappa` with
:math:`\mathbb E|A|^\kappa = 1`, at most a fraction :math:`(r_0/R)^\kappa` ever leaves the ball
of radius R). :func:`simulate_growth` runs the real minibatch maps on a population of
directions resampled by their squared growth: the resampled population follows the
:math:`|u_t|^2`-weighted law, whose :math:`\mathbb E[vv^\top]` is the Perron vector — the
mean-square growth is carried by atypical trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import sympy as sp
from scipy import optimize

from .landscapes import LinearRegression, _floats
from .models import EmpiricalLoss, LocalLandscape
from .moments import NumericMap

__all__ = [
    "Alignment",
    "AlignmentRange",
    "EdgeRow",
    "EscapeDirections",
    "EscapeSimulation",
    "GrowthSimulation",
    "PopulationAlignment",
    "alignment",
    "alignment_forms",
    "alignment_from_gradients",
    "alignment_range",
    "alignment_samples",
    "edge_table",
    "escape_directions",
    "frobenius_bound",
    "population_alignment",
    "simulate_escape",
    "simulate_growth",
    "stability_edge",
    "stationary_alignment",
]

#: relative tolerance of the certificates (generalised-eigenvalue residuals, attained values)
TOLERANCE = 1e-8


# ---------------------------------------------------------------------------------------------
# alignment at a point
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    r"""Wang & Wu's alignment at one θ: ``sigma1`` :math:`\Sigma_1` (per-sample gradient
    covariance), ``gauss_newton`` G and ``loss`` L, as float64.

    ``mu`` is :math:`\operatorname{Tr}(\Sigma_1G)/(2L\|G\|_F^2)`; :meth:`directional` is
    :math:`g(v) = v^\top\Sigma_1v/(2Lv^\top Gv)`; :meth:`directional_range` its extremes over v
    (generalised eigenvalues of :math:`(\Sigma_1, G)` divided by 2L, on the range of G).
    """

    sigma1: np.ndarray
    gauss_newton: np.ndarray
    loss: float

    @property
    def mu(self) -> float:
        G = self.gauss_newton
        return float(np.trace(self.sigma1 @ G) / (2 * self.loss * np.sum(G * G)))

    def directional(self, v) -> float:
        v = np.asarray(v, float).reshape(-1)
        return float(v @ self.sigma1 @ v / (2 * self.loss * (v @ self.gauss_newton @ v)))

    def directional_range(self) -> tuple[float, float]:
        """``(min, max)`` of :meth:`directional` over the directions v with vᵀGv > 0."""
        low, high = _pencil(self.sigma1, self.gauss_newton)[:2]
        return low / (2 * self.loss), high / (2 * self.loss)


def alignment_from_gradients(gradients, gauss_newton, loss: float) -> Alignment:
    r"""The alignment from the N per-sample gradients at θ (rows of ``gradients``, i uniform):
    :math:`\Sigma_1 = \frac1N\sum_i g_ig_i^\top - \bar g\bar g^\top` (the population covariance
    of the data set, divisor N), with the given G and L.

    >>> a = alignment_from_gradients([[1.0], [-1.0]], [[1.0]], 0.5)
    >>> a.sigma1, a.mu
    (array([[1.]]), 1.0)
    """
    g = np.atleast_2d(np.asarray(gradients, float))
    G = np.atleast_2d(np.asarray(gauss_newton, float))
    if g.shape[1] != G.shape[0] or G.shape[0] != G.shape[1]:
        raise ValueError(
            f"alignment: gradients have {g.shape[1]} coordinates but G has shape {G.shape}."
        )
    if not loss > 0:
        raise ValueError(f"alignment: the loss must be > 0 (μ divides by 2L); got {loss!r}.")
    mean = g.mean(axis=0)
    sigma1 = g.T @ g / g.shape[0] - np.outer(mean, mean)
    return Alignment((sigma1 + sigma1.T) / 2, (G + G.T) / 2, float(loss))


def _residual_expr(model: EmpiricalLoss) -> sp.Expr | None:
    """r with loss = r²/2, read off the expression (None when it is not written so)."""
    twice = sp.factor(2 * model.loss_expr)
    if isinstance(twice, sp.Pow) and twice.exp == 2:
        return twice.base
    if isinstance(twice, sp.Mul):
        numbers = [f for f in twice.args if f.is_number]
        rest = [f for f in twice.args if not f.is_number]
        if len(rest) == 1 and isinstance(rest[0], sp.Pow) and rest[0].exp == 2:
            c = sp.Mul(*numbers)
            if c.is_positive:
                return sp.sqrt(c) * rest[0].base
    return None


def _model_alignment(model: EmpiricalLoss, theta, output, gauss_newton) -> Alignment:
    th = model._check_theta(theta)
    grads = _model_gradients(model, th)
    G = _model_gauss_newton(model, th, output, gauss_newton, grads)
    return alignment_from_gradients(grads, G, model.value(th))


def _model_gradients(model: EmpiricalLoss, th: np.ndarray) -> np.ndarray:
    """(N, d) per-sample gradients of the compiled model at θ."""
    X = model.data_array()
    N = X.shape[0]
    args = [*th, *(X[:, j] for j in range(X.shape[1]))]
    parts = model.compiled().gradient(*args)
    return np.stack([np.broadcast_to(np.asarray(p, float), (N,)) for p in parts], axis=1)


def _model_gauss_newton(model: EmpiricalLoss, th, output, gauss_newton, grads) -> np.ndarray:
    r"""G at θ: ``gauss_newton(θ)`` when given, else :math:`rac1N\sum_iJ_i^	op J_i` from the
        output expression, with :math:`
    abla\ell_i = r_iJ_i`, :math:`\ell_i = 	frac12r_i^2`
        certified at θ."""
    if gauss_newton is not None:
        return np.asarray(gauss_newton(th), float)
    X = model.data_array()
    N = X.shape[0]
    args = [*th, *(X[:, j] for j in range(X.shape[1]))]
    r = _residual_expr(model) if output is None else sp.sympify(output)
    if r is None:
        raise ValueError(
            "alignment: the Gauss–Newton matrix needs the model output: the loss is not "
            "written as ½·r² — pass output=f (the output or residual expression of the squared "
            "loss) or gauss_newton=callable(θ) -> G."
        )
    jac = sp.lambdify([*model.params, *model.inputs], [sp.diff(r, p) for p in model.params])
    J = np.stack([np.broadcast_to(np.asarray(j, float), (N,)) for j in jac(*args)], axis=1)
    # certify ℓ_i = ½ r_i² with ∇ℓ_i = r_i J_i: r_i from the gradient, then ½ r_i² = ℓ_i
    norms = np.einsum("ni,ni->n", J, J)
    r_i = np.einsum("ni,ni->n", grads, J) / np.where(norms > 0, norms, 1.0)
    losses = np.broadcast_to(np.asarray(model.compiled().loss(*args), float), (N,))
    scale = max(1.0, float(np.max(np.abs(losses))))
    if np.max(np.abs(0.5 * r_i**2 - losses)) > 1e-8 * scale or np.max(
        np.abs(grads - r_i[:, None] * J)
    ) > 1e-8 * max(1.0, float(np.max(np.abs(grads)))):
        raise ValueError(
            "alignment: the loss is not ½·(output − label)² for the given output (∇ℓ_i ≠ r_i J_i "
            "at θ); pass the output of the squared loss, or gauss_newton=callable(θ) -> G."
        )
    return J.T @ J / N


def alignment(landscape, theta, *, output=None, gauss_newton: Callable | None = None):
    r"""Wang & Wu's alignment (:class:`Alignment`) at θ.

    * :class:`~symsgd.LinearRegression` in Gaussian form (numeric A, σ²): the population,
      exactly — :math:`\Sigma_1` from Isserlis' theorem at u = θ − θ*
      (:meth:`~symsgd.LinearRegression.gradient_covariance` with second moment
      :math:`uu^\top`), G = A, :math:`L = (u^\top Au + \sigma^2)/2`;
    * :meth:`LinearRegression.from_data <symsgd.LinearRegression.from_data>`: the data set
      (:math:`\nabla\ell_i = x_i(x_i^\top\theta - y_i)`, :math:`G = X^\top X/N`);
    * :class:`~symsgd.EmpiricalLoss` (e.g. :func:`symsgd.models.two_layer_tanh`): the
      per-sample gradients of the compiled model at θ and the loss there; G is ``gauss_newton(θ)``
      when given, else :math:`\frac1N\sum_iJ_i^\top J_i` with :math:`J_i = \nabla_\theta r` of the
      ``output`` expression r (default: read from a loss written as :math:`\tfrac12r^2`); the
      identity :math:`\nabla\ell_i = r_iJ_i`, :math:`\ell_i = \tfrac12r_i^2` is checked at θ.

    >>> import symsgd as ss
    >>> land = ss.LinearRegression([[2, 0], [0, 1]], label_variance=1)
    >>> round(alignment(land, [0, 0]).mu, 12)  # at the minimum Σ₁ = σ²A: μ = 1
    1.0
    >>> round(alignment(land, [10, 0]).directional([1, 0]), 6)  # 1 + 200/201
    1.995025
    """
    if isinstance(landscape, EmpiricalLoss):
        return _model_alignment(landscape, theta, output, gauss_newton)
    if not isinstance(landscape, LinearRegression) or landscape.eigenmode:
        raise TypeError(
            f"alignment: needs a LinearRegression (explicit A or from_data) or an EmpiricalLoss; "
            f"got {landscape!r}."
        )
    d = landscape.dim
    th = np.asarray(theta, float).reshape(-1)
    reduction = getattr(landscape, "reduction", None)
    if reduction is not None and th.size == reduction.dim:  # θ in the original coordinates
        th = np.asarray(_floats(reduction.coordinates(theta)), float).reshape(-1)
    if th.size != d:
        more = "" if reduction is None else f" (coordinates c = Uᵀθ) or {reduction.dim} (θ)"
        raise ValueError(f"alignment: θ must have {d} entries{more}; got {th.size}.")
    if landscape.data is not None:
        X, Y = (_floats(m) for m in landscape.data)
        r = X @ th - Y.reshape(-1)
        return alignment_from_gradients(
            X * r[:, None], X.T @ X / len(r), float(r @ r) / (2 * len(r))
        )
    u = th - _floats(landscape.theta_star).reshape(-1)
    U = sp.Matrix(u.tolist())
    sigma1 = _floats(landscape.gradient_covariance(U * U.T))
    A = _floats(landscape.A)
    return Alignment(sigma1, A, 0.5 * float(u @ A @ u + float(landscape.label_variance)))


# ---------------------------------------------------------------------------------------------
# the Gaussian population, symbolically
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PopulationAlignment:
    r"""The alignment of online Gaussian regression as sympy expressions of the displacement
    ``u`` (symbols :math:`u_1\dots u_d`) and a direction ``v``.

    ``excess`` :math:`= \Sigma_1 - 2LG`, shown to be :math:`(Au)(Au)^\top` (rank one, PSD);
    ``directional_bounds`` the extremes of g over v at fixed u (1, and
    :math:`1 + u^\top Au/(u^\top Au+\sigma^2)` at v = u: the generalised Rayleigh quotient of
    the rank-one excess against A); ``mu_bounds`` the inf and sup of μ over u (1 at u = 0, and
    :math:`1 + \lambda_{\max}^2/\operatorname{Tr}A^2` approached along the top eigenvector as
    |u| → ∞ when σ² > 0); for a symbolic non-diagonal A of size ≥ 3 the extreme eigenvalues
    appear as the symbols ``lambda_min``/``lambda_max``.
    """

    u: sp.Matrix
    v: sp.Matrix
    sigma1: sp.Matrix
    loss: sp.Expr
    excess: sp.Matrix
    mu: sp.Expr
    directional: sp.Expr
    directional_bounds: tuple
    mu_bounds: tuple


def population_alignment(landscape: LinearRegression) -> PopulationAlignment:
    r"""Derive the alignment of a Gaussian :class:`~symsgd.LinearRegression` (A explicit,
    possibly symbolic; σ² the label variance).

    :math:`\Sigma_1` is the library's Isserlis covariance at second moment :math:`uu^\top`;
    :math:`L = \tfrac12(u^\top Au + \sigma^2)`, G = A.  The excess :math:`R = \Sigma_1 - 2LA`
    is checked to equal :math:`Auu^\top A` (``ValueError`` otherwise), so

    * :math:`g(v) - 1 = (v^\top Au)^2/(2L\,v^\top Av)\ge 0`, at most
      :math:`(Au)^\top A^{-1}(Au)/2L = u^\top Au/(u^\top Au + \sigma^2)` (Cauchy–Schwarz in the
      A inner product; the top generalised eigenvalue of the rank-one pencil (R, A));
    * :math:`\mu - 1 = \operatorname{Tr}(RA)/(2L\operatorname{Tr}A^2) = u^\top A^3u/((u^\top
      Au+\sigma^2)\operatorname{Tr}A^2)`, between 0 and
      :math:`\sup_u u^\top A^3u/u^\top Au = \lambda_{\max}(A)^2` over :math:`\operatorname{Tr}
      A^2`.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> p = population_alignment(ss.LinearRegression(a * sp.eye(3), label_variance=1))
    >>> p.mu_bounds  # isotropic: μ ∈ [1, 1 + 1/d)
    (1, 4/3)
    """
    if not isinstance(landscape, LinearRegression) or landscape.data is not None:
        raise TypeError(
            f"population_alignment: needs a Gaussian LinearRegression(A, label_variance=σ²); "
            f"got {landscape!r}."
        )
    if landscape.eigenmode:
        raise ValueError(
            "population_alignment: needs an explicit A (the eigen-mode form has no directions)."
        )
    d = landscape.dim
    u = sp.Matrix(sp.symbols(f"u_1:{d + 1}", real=True))
    v = sp.Matrix(sp.symbols(f"v_1:{d + 1}", real=True))
    A = sp.Matrix(landscape.A)
    sigma2 = landscape.label_variance
    sigma1 = sp.Matrix(landscape.gradient_covariance(u * u.T)).applyfunc(sp.expand)
    two_L = sp.expand((u.T * A * u)[0, 0] + sigma2)
    excess = (sigma1 - two_L * A).applyfunc(sp.expand)
    Au = A * u
    if not (excess - Au * Au.T).applyfunc(sp.expand).is_zero_matrix:  # pragma: no cover
        raise ValueError("population_alignment: Σ₁ − 2LA is not (Au)(Au)ᵀ; Isserlis disagrees.")
    trA2 = sp.expand((A * A).trace())
    mu = sp.cancel((sigma1 * A).trace() / (two_L * trA2))
    g = sp.cancel((v.T * sigma1 * v)[0, 0] / (two_L * (v.T * A * v)[0, 0]))
    uAu = sp.expand((u.T * A * u)[0, 0])
    directional_bounds = (sp.Integer(1), sp.cancel(1 + uAu / (uAu + sigma2)))
    if A.is_diagonal() or not A.free_symbols or d <= 2:
        eig = list(A.eigenvals())
    else:  # a symbolic non-diagonal A of size ≥ 3: name its extreme eigenvalues
        eig = list(sp.symbols("lambda_min lambda_max", positive=True))
    top = eig[0] ** 2 if len(eig) == 1 else sp.Max(*[e**2 for e in eig])
    low = sp.Integer(1)
    if sigma2 == 0:  # no label noise: μ − 1 = uᵀA³u / (uᵀAu TrA²) ≥ λ_min² / TrA²
        low = 1 + (eig[0] ** 2 if len(eig) == 1 else sp.Min(*[e**2 for e in eig])) / trA2
    mu_bounds = (sp.simplify(low), sp.simplify(1 + top / trA2))
    return PopulationAlignment(
        u, v, sigma1, two_L / 2, excess, mu, g, directional_bounds, mu_bounds
    )


# ---------------------------------------------------------------------------------------------
# the exact range over θ: a generalised eigenvalue problem
# ---------------------------------------------------------------------------------------------


def alignment_forms(
    landscape, direction=None, *, output=None, gauss_newton: Callable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""``(P, Q)``: the alignment at θ is :math:`w^\top Pw/w^\top Qw` with :math:`w = (\theta,
    1)` — μ when ``direction`` is None, else g(v).

    * data (``LinearRegression.from_data`` or a pair ``(X, y)``, any rank): with
      :math:`\tilde a_i = (x_i, -y_i)` the residual is :math:`r_i = \tilde a_i^\top w`, so
      :math:`P = \frac1N\sum_ik_i\tilde a_i\tilde a_i^\top - \frac1{N^2}\tilde A^\top X\hat G
      X^\top\tilde A` (:math:`k_i = x_i^\top\hat Gx_i`) and :math:`Q = \frac1N\tilde A^\top\tilde
      A\,\|\hat G\|_F^2` for μ; :math:`P = \frac1N\tilde A^\top\operatorname{diag}(z^2)\tilde A -
      \frac1{N^2}\tilde A^\top zz^\top\tilde A` (:math:`z = Xv`) and :math:`Q = \frac1N\tilde
      A^\top\tilde A\,v^\top\hat Gv` for g(v);
    * Gaussian population, in :math:`w_u = (u, 1)`, u = θ − θ*: :math:`P =
      \operatorname{diag}(A^3 + \operatorname{Tr}(A^2)A,\ \sigma^2\operatorname{Tr}A^2)`,
      :math:`Q = \operatorname{Tr}(A^2)\operatorname{diag}(A, \sigma^2)` for μ; for g(v)
      :math:`P = \operatorname{diag}(Avv^\top A + (v^\top Av)A,\ \sigma^2v^\top Av)`,
      :math:`Q = v^\top Av\operatorname{diag}(A, \sigma^2)`; then moved to w;
    * the local problem of an :class:`~symsgd.EmpiricalLoss` at a minimum θₑ
      (``model.near(θₑ)``, e.g. :func:`symsgd.models.two_layer_tanh`): the **linearised**
      per-sample gradients :math:`g_i + H_iu = A_i\tilde u` (u = θ − θₑ, :math:`\tilde u = (u,
      1)`, :math:`A_i = [H_i\ g_i]`, :math:`H_i` the full per-sample Hessians) and the loss to
      second order, :math:`2L = 2L_* + 2\bar g^\top u + u^\top Hu`; G is the Gauss–Newton
      matrix **at θₑ** (``output``/``gauss_newton`` as in :func:`alignment`; G ≠ H when
      :math:`L_* > 0`: :math:`H = G + \frac1N\sum_ir_i\nabla^2r_i`).  In ũ:
      :math:`P = \frac1N\sum_iA_i^\top GA_i - \bar A^\top G\bar A`,
      :math:`Q = \|G\|_F^2\begin{pmatrix}H&\bar g\\\bar g^\top&2L_*\end{pmatrix}` for μ
      (:math:`vv^\top` and :math:`v^\top Gv` in place of G and :math:`\|G\|_F^2` for g(v));
      then moved to w.
    """
    if isinstance(landscape, LocalLandscape):
        return _local_forms(landscape, direction, output, gauss_newton)
    X, Y, A, sigma2, star = _linear_pieces(landscape, "alignment_forms")
    d = X.shape[1] if X is not None else A.shape[0]
    v = None if direction is None else np.asarray(direction, float).reshape(-1)
    if v is not None and v.size != d:
        raise ValueError(f"alignment_forms: the direction must have {d} entries; got {v.size}.")
    if X is not None:
        N = X.shape[0]
        At = np.c_[X, -Y]
        G = X.T @ X / N
        if v is None:
            k = np.einsum("ni,ij,nj->n", X, G, X)
            AX = At.T @ X  # (d+1) × d: never the N × N matrix X G Xᵀ
            P = (At.T * k) @ At / N - AX @ G @ AX.T / N**2
            Q = At.T @ At / N * float(np.sum(G * G))
        else:
            z = X @ v
            P = (At.T * z**2) @ At / N - np.outer(At.T @ z, At.T @ z) / N**2
            Q = At.T @ At / N * float(v @ G @ v)
        return (P + P.T) / 2, (Q + Q.T) / 2
    return _population_forms(A, sigma2, star, v)


def _local_forms(local, direction, output, gauss_newton) -> tuple[np.ndarray, np.ndarray]:
    """The (P, Q) of :func:`alignment_forms` for a :class:`~symsgd.models.LocalLandscape`."""
    model = local.model
    if not isinstance(model, EmpiricalLoss):
        raise TypeError(
            "alignment_forms: a local problem needs its EmpiricalLoss (model.near(θ*)) for the "
            "Gauss–Newton matrix."
        )
    Hs, gs = local.numeric_terms()
    N, d = gs.shape
    star = _floats(local.theta_star).reshape(-1)
    G = _model_gauss_newton(
        model, star, output, gauss_newton, _model_gradients(model, model._check_theta(star))
    )
    A = np.concatenate([Hs, gs[:, :, None]], axis=2)  # (N, d, d+1): g_i + H_i u = A_i ũ
    Abar = A.mean(axis=0)
    if direction is None:
        P = np.einsum("nia,ij,njb->ab", A, G, A) / N - Abar.T @ G @ Abar
        scale = float(np.sum(G * G))
    else:
        v = np.asarray(direction, float).reshape(-1)
        if v.size != d:
            raise ValueError(f"alignment_forms: the direction must have {d} entries; got {v.size}.")
        z = np.einsum("i,nia->na", v, A)
        P = z.T @ z / N - np.outer(z.mean(axis=0), z.mean(axis=0))
        scale = float(v @ G @ v)
    Q = np.zeros((d + 1, d + 1))
    Q[:d, :d] = Hs.mean(axis=0)
    Q[:d, d] = Q[d, :d] = gs.mean(axis=0)
    Q[d, d] = 2 * float(local.minimum_loss)
    Q *= scale
    T = np.eye(d + 1)  # ũ = T w
    T[:d, d] = -star
    P, Q = T.T @ P @ T, T.T @ Q @ T
    return (P + P.T) / 2, (Q + Q.T) / 2


def _population_forms(A, sigma2: float, star, v=None) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian population's (P, Q) of :func:`alignment_forms` in w = (θ, 1)."""
    d = A.shape[0]
    P, Q = np.zeros((d + 1, d + 1)), np.zeros((d + 1, d + 1))
    if v is None:
        t = float(np.sum(A * A))
        P[:d, :d], P[d, d] = A @ A @ A + t * A, sigma2 * t
        Q[:d, :d], Q[d, d] = t * A, t * sigma2
    else:
        Av, vAv = A @ v, float(v @ A @ v)
        P[:d, :d], P[d, d] = np.outer(Av, Av) + vAv * A, sigma2 * vAv
        Q[:d, :d], Q[d, d] = vAv * A, vAv * sigma2
    T = np.eye(d + 1)  # w_u = T w, u = θ − θ*
    T[:d, d] = -star
    return T.T @ P @ T, T.T @ Q @ T


def _linear_pieces(landscape, context: str):
    """``(X, Y, A, σ², θ*)`` in float64: data (X, Y) or the Gaussian population (A, σ², θ*)."""
    if isinstance(landscape, tuple) and len(landscape) == 2:
        X = np.asarray(landscape[0], float)
        Y = np.asarray(landscape[1], float).reshape(-1)
        if X.ndim != 2 or X.shape[0] != Y.size:
            raise ValueError(f"{context}: (X, y) needs X of shape (N, d) and N labels.")
        return X, Y, None, None, None
    if not isinstance(landscape, LinearRegression) or landscape.eigenmode:
        raise TypeError(
            f"{context}: needs a numeric LinearRegression (explicit A, or from_data) or a pair "
            f"(X, y); got {landscape!r}."
        )
    if landscape.data is not None:
        X, Y = (_floats(m) for m in landscape.data)
        return X, Y.reshape(-1), None, None, None
    A = _floats(landscape.A)
    star = _floats(landscape.theta_star).reshape(-1)
    return None, None, A, float(landscape.label_variance), star


def _pencil(P: np.ndarray, Q: np.ndarray):
    r"""Extreme generalised eigenvalues of (P, Q) on the range of Q (Q ⪰ 0; P must vanish on
    Q's null space, else the ratio is unbounded): ``(low, high, V_low, V_high, null)`` with the
    eigenspaces as columns of the full space and an orthonormal basis of null(Q)."""
    q, W = np.linalg.eigh((Q + Q.T) / 2)
    scale = max(float(np.max(np.abs(q))), 1e-300)
    keep = q > 1e-11 * scale
    if not np.any(keep):
        raise ValueError("alignment: the denominator vanishes identically (zero loss everywhere).")
    R, null = W[:, keep], W[:, ~keep]
    Pn = float(np.max(np.abs(P @ null))) if null.size else 0.0
    if Pn > 1e-9 * max(1.0, float(np.max(np.abs(P)))):
        raise ValueError(
            "alignment: the numerator does not vanish where the loss does: the ratio is unbounded."
        )
    Pr, Qr = R.T @ P @ R, R.T @ Q @ R
    lam, V = sla.eigh((Pr + Pr.T) / 2, (Qr + Qr.T) / 2)
    residual = np.max(np.abs(Pr @ V - (Qr @ V) * lam)) if lam.size else 0.0
    if not residual <= TOLERANCE * max(1.0, float(np.max(np.abs(Pr))), float(np.max(lam))):
        raise ArithmeticError(f"alignment: generalised eigenvalue residual {residual:.3g}.")
    tol = 1e-9 * max(1.0, float(np.max(np.abs(lam))))
    return (
        float(lam[0]),
        float(lam[-1]),
        R @ V[:, np.abs(lam - lam[0]) <= tol],
        R @ V[:, np.abs(lam - lam[-1]) <= tol],
        null,
    )


def _attain(E: np.ndarray, null: np.ndarray) -> np.ndarray | None:
    """w = (θ, 1) in span(E) + null(Q) with a nonzero E part, or None (not attained)."""
    last = E[-1]
    if np.max(np.abs(last)) > 1e-9:
        w = E @ last
        return w / w[-1]
    if null.size and np.max(np.abs(null[-1])) > 1e-9:
        n = null @ null[-1]
        w = E[:, 0] + (1 - E[-1, 0]) / n[-1] * n
        return w / w[-1]
    return None


@dataclass(frozen=True)
class AlignmentRange:
    r"""The exact inf (``low``) and sup (``high``) of an alignment over every θ, with the θ
    attaining them (``argmin``/``argmax``; None when only approached as :math:`|\theta|\to\infty`).
    ``P``, ``Q`` are the quadratic forms of :func:`alignment_forms`."""

    low: float
    high: float
    argmin: np.ndarray | None
    argmax: np.ndarray | None
    P: np.ndarray
    Q: np.ndarray

    def at(self, theta) -> float:
        """The alignment at θ from the quadratic forms."""
        w = np.append(np.asarray(theta, float).reshape(-1), 1.0)
        return float(w @ self.P @ w / (w @ self.Q @ w))

    def contains(self, value: float, rtol: float = 1e-9) -> bool:
        slack = rtol * max(1.0, abs(self.high))
        return self.low - slack <= value <= self.high + slack


def alignment_range(landscape, direction=None) -> AlignmentRange:
    r"""The exact inf and sup over all θ of μ (or of g(v) for a fixed ``direction``) for linear
    regression — a data set (``LinearRegression.from_data`` or ``(X, y)``, singular
    :math:`X^\top X` allowed) or the Gaussian population.

    The alignment is :math:`w^\top Pw/w^\top Qw`, :math:`w = (\theta, 1)`
    (:func:`alignment_forms`), homogeneous of degree 0 in w; Q ⪰ 0 (a loss) and P vanishes
    on null(Q) (zero loss forces zero noise), so the extremes over w ≠ 0 modulo null(Q) are the
    extreme generalised eigenvalues of (P, Q) on the range of Q.  They are attained at a θ iff
    the eigenspace plus null(Q) holds a vector with :math:`w_{d+1}\ne0`; otherwise they are
    limits as :math:`|\theta|\to\infty`.  Certified: the eigen-residual, and the ratio at each
    returned θ equals the eigenvalue.

    >>> import numpy as np
    >>> r = alignment_range((np.array([[1.0], [2.0], [-1.0]]), np.array([1.0, 0.0, 2.0])))
    >>> bool(r.low < r.high), r.argmax is not None
    (True, True)
    """
    P, Q = alignment_forms(landscape, direction)
    low, high, E_low, E_high, null = _pencil(P, Q)
    found = []
    for value, E in ((low, E_low), (high, E_high)):
        w = _attain(E, null)
        if w is not None:
            got = float(w @ P @ w / (w @ Q @ w))
            if not abs(got - value) <= 1e-7 * max(1.0, abs(value)):
                raise ArithmeticError(
                    f"alignment_range: the ratio at the optimiser is {got!r}, not {value!r}."
                )
        found.append(None if w is None else w[:-1])
    return AlignmentRange(low, high, found[0], found[1], P, Q)


def alignment_samples(landscape, thetas, direction=None) -> np.ndarray:
    """The alignment (μ, or g(v)) of a linear regression at each column of ``thetas`` (d × n),
    from :func:`alignment_forms`: the per-iterate values whose mean is the mean of ratios."""
    P, Q = alignment_forms(landscape, direction)
    th = np.asarray(thetas, float)
    W = np.vstack([th, np.ones((1, th.shape[1]))])
    return np.einsum("in,ij,jn->n", W, P, W) / np.einsum("in,ij,jn->n", W, Q, W)


def _numeric_result(result, params, context: str, require_stable: bool = True):
    """``(problem, numeric landscape)`` of ``result`` at ``params``."""
    from ._util import replace_fields
    from .tails import _random_map

    problem = _random_map(result, params, context)
    if require_stable and not problem.rho < 1:
        raise problem.instability(problem.rho)
    land = replace_fields(problem.landscape, problem.values)
    return problem, land


def stationary_alignment(
    result,
    params: Mapping | None = None,
    direction=None,
    *,
    output=None,
    gauss_newton: Callable | None = None,
) -> float:
    r"""The alignment over the stationary law of θ as a **ratio of means**:
    :math:`\mathbb E[v^\top\Sigma_1(\theta)v]/\mathbb E[2L(\theta)v^\top Gv]` (μ: trace form), exact
    for linear regression: numerator and denominator are :math:`\operatorname{Tr}(PW)` and
    :math:`\operatorname{Tr}(QW)` (:func:`alignment_forms`) with :math:`W = \mathbb E[ww^\top] =
    \begin{pmatrix}\Sigma + mm^\top & m\\ m^\top & 1\end{pmatrix}`, Σ the stationary Var θ (the
    second-moment map's solution) and m the minimiser.  It is *not* the mean of ratios
    :math:`\mathbb E\mu(\theta)` (that needs the law of θ, not just its covariance:
    :func:`alignment_samples` at simulated iterates).

    **A nonlinear model** (``result`` of :func:`symsgd.stationary` on ``model.near(θₑ)`` of an
    :class:`~symsgd.EmpiricalLoss`, e.g. a two-layer network): the same ratio of means over
    the stationary law of the **linearised dynamics** around the minimum θₑ (numeric:
    float64), with the forms of :func:`alignment_forms` — the linearised per-sample gradients
    :math:`g_i + H_i(\theta - \theta_e)` in :math:`\Sigma_1`, the loss to second order, and
    G the Gauss–Newton matrix :math:`\frac1N\sum_i\nabla r_i\nabla r_i^\top` at θₑ (not the
    Hessian, which differs from it when :math:`L_* > 0`); ``output``/``gauss_newton`` as in
    :func:`alignment`.  As λ → 0 it tends to the pointwise μ(θₑ) = :func:`alignment` at the
    minimum; the real network's iterates differ from the linearised law by O(λ) relative
    corrections (measured in the tests at two λ).

    >>> import sympy as sp, symsgd as ss
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(1, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> round(stationary_alignment(r, {ss.lr: 0.2}), 12)  # 1 + E u²/(E u² + σ²), E u² = 1/7
    1.125
    >>> model = ss.models.two_layer_tanh([[-2, -1.8], [-1, -1.2], [0.5, 1.2], [1, 1.4], [2, 2.1]])
    >>> star = model.minimum(start=[1, 2])
    >>> local = ss.stationary(ss.SGD(ss.lr), model.near(star), ss.MinibatchNoise(2))
    >>> round(stationary_alignment(local, {ss.lr: 0.1}), 4), round(alignment(model, star).mu, 4)
    (0.9063, 0.9272)
    """
    problem, land = _numeric_result(result, params, "stationary_alignment()")
    recursion = result.recursion
    state = NumericMap.from_recursion(recursion, problem.values).solve()
    Theta = problem.theta_map
    Sigma = Theta @ state @ Theta.T
    m = problem.theta_min
    d = m.size
    W = np.empty((d + 1, d + 1))
    W[:d, :d] = Sigma + np.outer(m, m)
    W[:d, d] = W[d, :d] = m
    W[d, d] = 1.0
    P, Q = alignment_forms(land, direction, output=output, gauss_newton=gauss_newton)
    return float(np.sum(P * W) / np.sum(Q * W))


# ---------------------------------------------------------------------------------------------
# the mean-square edge against the Frobenius bound
# ---------------------------------------------------------------------------------------------


def stability_edge(eigenvalues: Sequence[float], batch_size: int) -> float:
    r"""The exact mean-square edge :math:`\lambda_c` of SGD on online Gaussian regression with
    input covariance of the given eigenvalues :math:`a_k` and batch S.

    Derivation: the map :math:`T(\Sigma) = (I-\lambda A)\Sigma(I-\lambda A) +
    \frac{\lambda^2}S(A\Sigma A + \operatorname{Tr}(A\Sigma)A)` keeps Σ diagonal in A's
    eigenbasis, :math:`s_k' = ((1-\lambda a_k)^2 + \lambda^2a_k^2/S)s_k +
    \frac{\lambda^2}Sa_k\sum_ja_js_j` (its Perron vector is there: T is a positive map and
    off-diagonal entries only contract); an eigenvector with eigenvalue 1 exists iff
    :math:`\sum_k\lambda a_k/(2S - \lambda a_k(S+1)) = 1` — increasing in λ, solved by Brent's
    method.  Certified: the library's :class:`~symsgd.moments.NumericMap` radius crosses 1 there.

    >>> round(stability_edge([1.0] * 4, 2), 12)  # isotropic: 2S / (a(S + d + 1))
    0.571428571429
    """
    a = np.asarray(eigenvalues, float)
    S = int(batch_size)
    if a.ndim != 1 or not np.all(a > 0) or S < 1:
        raise ValueError("stability_edge: eigenvalues must be > 0 and batch_size ≥ 1.")
    cap = 2 * S / ((S + 1) * a.max())  # each mode alone: λa < 2S/(S+1)

    def secular(lam):
        return float(np.sum(lam * a / (2 * S - lam * a * (S + 1)))) - 1

    edge = optimize.brentq(secular, 1e-15 * cap, cap * (1 - 1e-15), xtol=1e-15, rtol=1e-14)
    radius = _isotropic_radius if np.all(a == a[0]) else _diagonal_radius
    lo, hi = radius(edge * (1 - 1e-6), a, S), radius(edge * (1 + 1e-6), a, S)
    if not lo < 1 < hi:
        raise ArithmeticError(f"stability_edge: ρ(T) = {lo}, {hi} around the root {edge}.")
    return float(edge)


def _sgd_map(lam: float, a: np.ndarray, S: int) -> NumericMap:
    r"""The second-moment map of SGD(λ) on online regression with A = diag(a), batch S: the
    minibatch noise's linear part :math:`(A\Sigma A + \operatorname{Tr}(A\Sigma)A)/S`
    (:meth:`symsgd.MinibatchNoise.numeric_covariance`, written here on arrays: no d×d sympy
    matrix for d in the hundreds)."""
    d = a.size

    def linear(Sigma):
        return (a[:, None] * Sigma * a[None, :] + float(a @ np.diagonal(Sigma)) * np.diag(a)) / S

    return NumericMap(
        np.eye(d) - lam * np.diag(a), -lam * np.eye(d), np.eye(d), np.zeros((d, d)), None, linear
    )


def _diagonal_radius(lam: float, a: np.ndarray, S: int) -> float:
    return _sgd_map(lam, a, S).radius()


def _isotropic_radius(lam: float, a: np.ndarray, S: int) -> float:
    """ρ(T) on isotropic Σ = I (T maps it to a multiple of I, the Perron vector by symmetry),
    read from the library's map: T(I) = ρ I."""
    if a.size <= 12:
        return _diagonal_radius(lam, a, S)
    return float(_sgd_map(lam, a, S).apply(np.eye(a.size))[0, 0])


def frobenius_bound(eigenvalues: Sequence[float], batch_size: int, mu: float = 1.0) -> float:
    r"""The largest λ allowed by the Wu–Wang–Su necessary condition
    :math:`\|H\|_F\le\sqrt{S/\mu}/\lambda`: :math:`\sqrt{S/\mu}/\|H\|_F` (H = A here).

    >>> frobenius_bound([1.0] * 4, 2)  # √2 / 2
    0.7071067811865476
    """
    a = np.asarray(eigenvalues, float)
    return float(math.sqrt(int(batch_size) / mu) / np.linalg.norm(a))


@dataclass(frozen=True)
class EdgeRow:
    r"""One dimension of :func:`edge_table`: the exact edge, the Frobenius bound (μ at the
    minimum), their ratio, and the exact edge in the two normalisations —
    ``trace_ratio`` :math:`= \lambda_c\operatorname{Tr}H/(2S)` (→ 1: a trace condition) and
    ``frobenius_ratio`` :math:`= \lambda_c\|H\|_F\sqrt{\mu/S}` (→ 0)."""

    d: int
    exact: float
    bound: float
    mu: float
    trace_ratio: float
    frobenius_ratio: float

    @property
    def looseness(self) -> float:
        return self.bound / self.exact


def edge_table(
    dims: Sequence[int], batch_size: int, spectrum: Callable[[int], Sequence[float]] | None = None
) -> list[EdgeRow]:
    r"""The exact edge (:func:`stability_edge`) against the Wu–Wang–Su bound
    (:func:`frobenius_bound`, with Wang & Wu's μ at the minimum with label noise, which is 1:
    :math:`\Sigma_1 = \sigma^2A`) as d grows; ``spectrum(d)`` gives A's eigenvalues
    (default isotropic, :math:`a_k = 1`, where :math:`\lambda_c = 2S/(S+d+1)` and the bound is
    :math:`\sqrt{S/d}`).

    >>> rows = edge_table([1, 100], 4)
    >>> [round(r.trace_ratio, 3) for r in rows], [round(r.frobenius_ratio, 3) for r in rows]
    ([0.167, 0.952], [0.667, 0.381])
    """
    rows = []
    for d in dims:
        a = np.asarray(np.ones(d) if spectrum is None else spectrum(d), float)
        P, Q = _population_forms(np.diag(a), 1.0, np.zeros(d))  # μ at θ = θ*: w = (0, 1)
        mu = float(P[d, d] / Q[d, d])
        exact = stability_edge(a, batch_size)
        bound = frobenius_bound(a, batch_size, mu)
        S = int(batch_size)
        fro = float(np.linalg.norm(a))
        rows.append(
            EdgeRow(
                int(d),
                exact,
                bound,
                mu,
                float(exact * a.sum() / (2 * S)),
                exact * fro * math.sqrt(mu / S),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# escape directions
# ---------------------------------------------------------------------------------------------


def _energy(vectors_outer: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Fractions :math:`e_k^\\top Pe_k/\\operatorname{Tr}P` of a PSD matrix on the basis."""
    e = np.einsum("ik,ij,jk->k", basis, vectors_outer, basis)
    return e / e.sum()


def _random_maps(problem, chains: int, seed: int) -> np.ndarray:
    """``(chains, n, n)`` draws of :math:`A_t = M + B(\\hat H - H)K` from the simulator's own
    minibatch oracle (real minibatches)."""
    from .tails import _sampled_hessians

    M, B, K = problem.state_space
    Hs = _sampled_hessians(problem, chains, seed)
    return M + np.einsum("ij,kjl,lm->kim", B, Hs - problem.hessian, K)


@dataclass(frozen=True)
class EscapeDirections:
    r"""Three escape directions as energy fractions on the Hessian eigenvectors
    (``eigenvalues`` ascending, ``basis`` their columns):

    * ``mean_square`` — the Perron eigenvector of the second-moment map (``rho`` its eigenvalue,
      ρ ≥ 1: the second moments grow);
    * ``typical`` — :math:`\mathbb E[(e_k^\top v)^2]` under the projective chain
      :math:`v_{t+1} = A_tv_t/|A_tv_t|` (Monte Carlo, ``typical_stderr``), with ``lyapunov``
      from :func:`symsgd.lyapunov_exponent` (same ``chains``/``steps``/``seed`` when it is a
      Monte Carlo estimate; γ < 0: almost every trajectory converges);
    * ``gd`` — the growth factors :math:`|1-\lambda h_k|` of gradient descent (``gd_factors``);
      ``gd`` puts the energy on the fastest-growing direction when it grows (> 1), else zeros
      (the eigen-factors of the mean map M on the Hessian eigenvectors: SGD's M = I − λH).
    """

    eigenvalues: np.ndarray
    basis: np.ndarray
    mean_square: np.ndarray
    rho: float
    typical: np.ndarray
    typical_stderr: np.ndarray
    lyapunov: object
    gd_factors: np.ndarray
    gd: np.ndarray


def escape_directions(
    result,
    params: Mapping | None = None,
    *,
    chains: int = 500,
    steps: int = 400,
    burn_in: int = 100,
    seed: int = 0,
) -> EscapeDirections:
    r"""Mean-square, typical and GD escape directions of SGD (:class:`EscapeDirections`) for
    ``result`` (:func:`symsgd.stationary`, state = θ) at ``params`` (ρ ≥ 1 allowed).

    >>> import sympy as sp, symsgd as ss
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(sp.diag(1, sp.Rational(1, 4)),
    ...                   label_variance=0), ss.MinibatchNoise(2))
    >>> e = escape_directions(r, {ss.lr: 1.2}, chains=100, steps=100)
    >>> e.rho > 1, e.lyapunov.value < 0, e.gd.tolist()  # |1 − 1.2h| < 1 for both h
    (True, True, [0.0, 0.0])
    """
    from .tails import lyapunov_exponent

    problem, _land = _numeric_result(result, params, "escape_directions()", require_stable=False)
    M = problem.state_space[0]
    n = M.shape[0]
    if problem.theta_map is not None and problem.theta_map.shape != (n, n):
        raise ValueError("escape_directions: needs an optimizer whose state is θ (e.g. SGD).")
    h, E = np.linalg.eigh(problem.hessian)
    rmap = NumericMap.from_recursion(result.recursion, problem.values)
    w, V = np.linalg.eig(rmap.matrix())
    top = int(np.argmax(np.abs(w)))
    P = V[:, top].real.reshape(n, n)
    P = (P + P.T) / 2
    P = P if np.trace(P) > 0 else -P
    mean_square = _energy(P, E)
    lyap = lyapunov_exponent(result, params, chains=chains, steps=steps, burn_in=burn_in, seed=seed)
    seeds = np.random.SeedSequence(seed).generate_state(burn_in + steps + 1)
    v = np.random.default_rng(seeds[-1]).standard_normal((chains, n))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    acc = np.zeros((chains, n))
    for t in range(burn_in + steps):
        x = np.einsum("kij,kj->ki", _random_maps(problem, chains, int(seeds[t])), v)
        norm = np.linalg.norm(x, axis=1)
        v = x / np.where(norm > 0, norm, 1.0)[:, None]
        if t >= burn_in:
            acc += (v @ E) ** 2
    per_chain = acc / steps
    typical = per_chain.mean(axis=0)
    stderr = per_chain.std(axis=0, ddof=1) / math.sqrt(chains)
    factors = np.abs(np.einsum("ik,ij,jk->k", E, M, E))  # |1 − λh_k| for SGD
    gd = np.zeros(n)
    if factors.max() > 1:
        gd[int(np.argmax(factors))] = 1.0
    return EscapeDirections(
        h, E, mean_square, float(np.abs(w[top])), typical, stderr, lyap, factors, gd
    )


@dataclass(frozen=True)
class EscapeSimulation:
    r"""Chains of the real optimizer started at distance ``r0`` from the minimiser:
    ``left`` the fraction that ever left the ball of radius ``radius`` within ``steps`` (with
    its binomial ``stderr``), ``converged`` the fraction ending within ``tol·r0``."""

    left: float
    stderr: float
    converged: float
    chains: int
    steps: int
    radius: float
    r0: float


def simulate_escape(
    result,
    params: Mapping | None = None,
    *,
    radius: float = 1e3,
    r0: float = 1.0,
    steps: int = 2000,
    chains: int = 2000,
    tol: float = 1e-6,
    seed: int = 0,
) -> EscapeSimulation:
    r"""Run the optimizer's own ``step`` with its real minibatch oracle
    (:func:`symsgd.sampling.prepare`, ρ ≥ 1 allowed) from :math:`\theta_\gamma + r_0v` (v uniform
    on the sphere), and count the chains whose distance to the minimiser ever exceeds
    ``radius`` (they are frozen there).  With no gradient noise at the minimiser a chain that
    stays converges iff the Lyapunov exponent is negative, whatever ρ.

    >>> import sympy as sp, symsgd as ss
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(1, label_variance=0),
    ...                   ss.MinibatchNoise(1))
    >>> s = simulate_escape(r, {ss.lr: 1.0}, steps=300, chains=200)  # ρ = 2, γ = −0.417
    >>> s.left < 0.05, s.converged > 0.9
    (True, True)
    """
    problem, _ = _numeric_result(result, params, "simulate_escape()", require_stable=False)
    d = problem.dim
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    start = rng.standard_normal((d, chains))
    start *= r0 / np.linalg.norm(start, axis=0)
    centre = problem.theta_min[:, None]
    state = problem.stepper.initial_state(centre + start)
    grad = problem.oracle.make(rng, chains)
    precondition = problem.precondition()
    step, readout = problem.stepper.step, problem.stepper.readout
    left = np.zeros(chains, bool)
    with np.errstate(all="ignore"):
        for _ in range(steps):
            state = step(state, grad, precondition)
            dist = np.linalg.norm(readout(state) - centre, axis=0)
            out = ~np.isfinite(dist) | (dist > radius)
            left |= out
            if out.any():  # freeze escaped chains at the centre's edge (keeps numbers finite)
                state = tuple(np.where(out[None, :], centre, s) for s in state)
    final = np.linalg.norm(readout(state) - centre, axis=0)
    frac = float(left.mean())
    return EscapeSimulation(
        frac,
        math.sqrt(max(frac * (1 - frac), 1.0 / chains) / chains),
        float(np.mean(~left & (final < tol * r0))),
        chains,
        steps,
        float(radius),
        float(r0),
    )


@dataclass(frozen=True)
class GrowthSimulation:
    r"""Population dynamics of the real random maps: ``fractions`` the energy fractions of
    :math:`\mathbb E[u_tu_t^\top]/\mathbb E|u_t|^2` on the Hessian eigenvectors and
    ``log_rho`` the growth rate of :math:`\mathbb E|u_t|^2` per step, each with the standard
    error over ``replicas`` independent populations."""

    fractions: np.ndarray
    fractions_stderr: np.ndarray
    log_rho: float
    log_rho_stderr: float
    replicas: int


def simulate_growth(
    result,
    params: Mapping | None = None,
    *,
    particles: int = 2000,
    replicas: int = 10,
    steps: int = 300,
    burn_in: int = 50,
    seed: int = 0,
) -> GrowthSimulation:
    r"""The mean-square growth direction by simulation, over long horizons: a population of
    directions :math:`v` is moved by draws of the real minibatch map
    :math:`A_t = M + B(\hat H_t - H)K` (the simulator's oracle) and *resampled* with
    probabilities :math:`\propto|A_tv|^2`.  The resampled population follows the
    Feynman–Kac law :math:`f\mapsto\mathbb E[|u_t|^2f(v_t)]/\mathbb E|u_t|^2`, so its mean of
    :math:`vv^\top` estimates :math:`\mathbb E[u_tu_t^\top]/\mathbb E|u_t|^2` → the Perron vector
    of the second-moment map and the log of the mean weight estimates log ρ — without the
    variance explosion of averaging :math:`u_tu_t^\top` over plain chains (whose mean is carried
    by rare trajectories).  ρ is estimated by the time average of the mean weights (the
    Feynman–Kac mean of :math:`|A v|^2`), not of their logs (no Jensen bias).  The particle
    approximation has a bias of order 1/``particles`` (measured ≈ 2/particles on the energy
    fractions of the test problem) besides the reported standard errors.
    """
    problem, _ = _numeric_result(result, params, "simulate_growth()", require_stable=False)
    n = problem.state_space[0].shape[0]
    E = np.linalg.eigh(problem.hessian)[1]
    fr, logs = [], []
    for s in np.random.SeedSequence(seed).spawn(replicas):
        rng = np.random.default_rng(s)
        v = rng.standard_normal((particles, n))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        acc, log_w = np.zeros(n), 0.0  # log_w: the sum of mean weights
        for t in range(burn_in + steps):
            x = np.einsum(
                "kij,kj->ki", _random_maps(problem, particles, int(rng.integers(2**31))), v
            )
            weight = np.einsum("ki,ki->k", x, x)
            mean_w = weight.mean()
            v = x / np.sqrt(np.where(weight > 0, weight, 1.0))[:, None]
            if t >= burn_in:
                log_w += mean_w
                acc += weight @ (v @ E) ** 2 / weight.sum()
            v = v[rng.choice(particles, particles, p=weight / weight.sum())]
        fr.append(acc / steps)
        logs.append(math.log(log_w / steps))
    fr, logs = np.array(fr), np.array(logs)
    return GrowthSimulation(
        fr.mean(axis=0),
        fr.std(axis=0, ddof=1) / math.sqrt(replicas),
        float(logs.mean()),
        float(logs.std(ddof=1) / math.sqrt(replicas)),
        replicas,
    )
