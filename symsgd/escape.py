r"""First passage of SGD over a loss level: the exact discrete-time answer and four theories.

The question of Mori, Ziyin, Liu & Ueda (*Power-law escape rate of SGD*, ICML 2022): how many
steps does SGD started at a minimum take until its loss first reaches :math:`c\,L_*`?

**The exact chain.**  For a one-dimensional state (SGD on one parameter) the update is
:math:`\delta' = M\delta + B\,\xi(K\delta)`, with ξ the gradient noise at the evaluated point.
For online Gaussian regression (:math:`x\sim N(0,a)`, label noise σ², batch S) the noise given
the minibatch Hessian :math:`\hat h = \frac aS\chi^2_S` is
:math:`\xi = (\hat h - a)(u + b_0) - \nu`, :math:`\nu\mid\hat h\sim N(0, \sigma^2\hat h/S)`
(:math:`b_0` the minimiser minus the noiseless optimum, nonzero under weight decay), so the
transition kernel is a χ² mixture of Gaussians,

.. math:: P(\delta, dy) = \mathbb E_{\hat h}\,
   N\bigl(y;\ M\delta + B(\hat h - a)(K\delta + b_0),\ B^2\sigma^2\hat h/S\bigr)\,dy ,

and with additive noise :math:`\xi = \sqrt C\,z` a single Gaussian.

**Poisson equation.**  The mean number of steps :math:`m(\delta)` until :math:`L \ge cL_*` solves
:math:`(I - P)m = 1` on :math:`D = \{L < cL_*\}` (m = 0 outside).  :func:`first_passage` solves it
by finite volumes: D is cut into n cells, row i of :math:`P_D` holds the exact probabilities
:math:`P(x_i, \text{cell}_j)` from the cell centre :math:`x_i` (the kernel's CDF at the cell
edges: a Gauss–Legendre quadrature over the χ variable :math:`v = \sqrt{S\hat h/a}` on panels
graded towards v = 0, where the Gaussian collapses), and the answer on two grids (n and 2n + 1
cells) gives the error estimate.  :func:`stationary_density` uses the same kernel on a wide
interval; its variance is checked against the library's exact :func:`symsgd.stationary`.

**Finite data sets.**  On N samples the kernel is a finite mixture: minibatch b (every
distinct one enumerated with its exact probability :math:`p_b`,
:func:`symsgd.tails.scalar_affine_maps`) maps :math:`\delta\mapsto a_b\delta + c_b`, so
:math:`m(\delta) = 1 + \sum_bp_b\,[a_b\delta + c_b\in D]\,m(a_b\delta + c_b)`.  m is
bounded but jumps wherever an image crosses ∂D (and at all preimages of those points), so
:func:`first_passage` interpolates m linearly on a grid, keeps the exit indicator exact, and
averages over grid offsets (the O(h) errors of the jumps change sign with the offset); the
error is the spread over offsets and grids — an estimate, first order, not a bound.  When
every :math:`|a_b| < 1` (for SGD with S = 1: :math:`\lambda\max_ix_i^2 < 2`) the stationary
support is bounded (its hull is the fixed point of :math:`I\mapsto\operatorname{hull}
\bigcup_bf_b(I)`) and contains the minimiser, so levels beyond it are never reached
(``steps = inf``), and the mean passage time grows faster than any power of c as c approaches
the edge: no power law at all.  The stationary law of such a mixture is of pure type and may
be singular (its dimension is at most :math:`H(p)/|\gamma|`, entropy over Lyapunov
exponent): :func:`stationary_density` returns its distribution function, never a density.

**Rotation-invariant problems** (d > 1).  With :math:`H = hI` and isotropic additive noise
:math:`C = cI`, :math:`|\delta|^2` is a Markov chain whose kernel is an exactly scaled
noncentral :math:`\chi^2_d`; for SGD on isotropic online regression (A = aI, label noise σ²,
any batch size S) :math:`\delta' = \delta - \frac\lambda S\sum_ix_iv_i`,
:math:`v_i = x_i^\top\delta - \epsilon_i`: rotate δ = r e₁ and split each sample
:math:`x_i = (u_i, w_i)`.  The :math:`w_i` are independent of (u, ε), so given the batch's
e₁-components :math:`|\delta'_\perp|^2 = (\lambda^2a|v|^2/S^2)\chi^2_{d-1}`; and given v
the :math:`u_i` are Gaussian around a multiple of :math:`v_i`, so :math:`\delta'_1 = r +
(\alpha|v|^2 + \tau|v|z)/S` up to the signs and scales of :class:`_Radial`: the 2×2
Wishart statistics :math:`(\sum u_i^2, \sum u_i\epsilon_i, \sum\epsilon_i^2)` enter
only through :math:`|v|\sim s\chi_S` and one standard normal z.  The kernel of the radius
is the :math:`\chi^2_{d-1}` CDF inside a 2-D quadrature over (|v|, z) for every S (its
error, from the CDF's kink, is estimated by a second rule with half the nodes and added to
``error``).  :func:`first_passage` solves the Poisson equation on finite volumes in r, and
:func:`stationary_density` gives the invariant law of the radius from the same kernel (its
:math:`\mathbb E|\delta|^2` checked against the trace of :func:`symsgd.stationary`).

**Theories** (:func:`exponents`): the slope :math:`d\ln\mathbb E\tau/d\ln c` at large c

* **Kesten** (the real chain): α/2, α the tail index (:func:`symsgd.tails.tail_index`): the
  stationary law has :math:`P(|\delta| > x)\sim x^{-\alpha}` and L grows like δ²;
* **Mori et al.**: decoupled noise :math:`\Sigma \approx 2L h_*/S` in the SDE
  :math:`d\theta = -L'dt + \sqrt{\eta\Sigma}\,dW` gives :math:`p\propto L^{-\varphi}`,
  :math:`\varphi = 1 + S/(\eta h_*)`, and a 1-D level-crossing exponent
  :math:`\tfrac12 + S/(\eta h_*)` (:func:`mori_exponent`, derived here from the zero-flux
  condition, not transcribed);
* **exact-noise SDE**: the same SDE with the exact online noise
  :math:`\Sigma = (2L h + h^2\delta^2)/S`: :math:`\tfrac12 + S/(2\eta h)`;
* **Ziyin et al. (variance-matched)**: Mori's law :math:`p\propto L^{-\varphi}` with φ set so that
  its variance equals the exact discrete-time variance of :func:`symsgd.stationary` (the
  discrete-time fluctuation of Ziyin, Liu, Mori & Ueda, ICLR 2022, put into the power law).

With **additive** noise escape is Arrhenius with the *discrete* temperature:
:math:`d\ln\mathbb E\tau/d\Delta L\to 1/(h\,\mathrm{Var}\,\delta) = (2-\lambda h)/(\lambda c)`
(:func:`arrhenius_exponent`), against the SDE's :math:`2/(\lambda c)`.

**Which curvature.**  Every formula above is for linear regression, where the Hessian of
the loss and the Gauss–Newton matrix coincide (h = a).  For a squared per-sample loss
:math:`\ell = \tfrac12r^2`, :math:`H = G + \overline{r\,r''}`; the decoupling
:math:`\Sigma\approx 2LG/S` is a statement about the per-sample gradients :math:`r_ir_i'`, i.e.
about :math:`G = \overline{r'^2}`, which Mori et al. write as the Hessian :math:`h_*`; the
drift, the relaxation and the discrete temperature use the Hessian.

**A real barrier** (:func:`shifted_double_well`, :func:`escape_time`,
:func:`barrier_theories`).  A one-parameter symmetric double well whose label spread sets
:math:`L_*` at a fixed barrier ΔL (so it moves :math:`\Delta\log L` at fixed ΔL — the clean
test of a power law in L against Arrhenius in ΔL); at its minima H ≠ G.  The real optimizer's
mean escape time over the barrier top (real minibatches, real loss, censored estimator) is
compared with five SDEs on the real loss that differ only in the diffusion: Mori's
:math:`2\lambda L(w)h_*/S` with :math:`h_* = H_*` or :math:`G_*`, the exact per-sample
variance :math:`\lambda\mathrm{Var}_i\ell_i'(w)/S`, and constant noise at the SDE or the
discrete temperature of the minimum (:func:`sde_escape_time`: the quadrature of the 1-D
Poisson equation).  In a squared-loss double well the per-sample gradients agree near the
barrier top (the top is a critical point of the shared part of the model), so the true noise
collapses where Mori's decoupling keeps it ∝ L: the real escape is far slower, and far more
sensitive to the label noise, than the power law says (measured in
``tests/test_double_well.py`` and ``derivations/06_tails_and_escape.ipynb``).

Times are in **steps**; SDE time is :math:`t = \eta\cdot\text{steps}` (slopes in log c and in ΔL
are the same in both units).

:func:`simulate_first_passage` runs the *real* optimizer (its own ``step`` on real minibatches,
:func:`symsgd.sampling.prepare` / :func:`symsgd.sampling.nonlinear`) from the minimiser and records
every level's first passage in one run; censored chains enter an events/exposure estimator with a
delta-method standard error.  :func:`fit_exponent` fits the slope with its standard error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .errors import UnstableError
from .models import shifted_double_well
from .sampling import Problem, prepare, prepare_result

__all__ = [
    "DEFAULT_CELLS",
    "LEVEL",
    "MAX_STEPS",
    "BarrierTheories",
    "Escapes",
    "Exponent",
    "FirstPassage",
    "StationaryDensity",
    "arrhenius_exponent",
    "barrier_theories",
    "escape_time",
    "exact_noise_exponent",
    "exponents",
    "first_passage",
    "fit_exponent",
    "mori_exponent",
    "mori_rate",
    "sde_escape_time",
    "shifted_double_well",
    "simulate_first_passage",
    "stationary_density",
    "ziyin_exponent",
]

#: cells of the coarse finite-volume grid (the fine grid has 2n + 1)
DEFAULT_CELLS = 150
#: nodes of the coarse grid of a finite data set's Poisson equation (first order: finer)
MIXTURE_CELLS = 300
#: radial cells of a rotation-invariant problem's Poisson equation (coarse grid)
RADIAL_CELLS = 40
#: grid offsets (fractions of a cell) averaged by a finite data set's Poisson solve
OFFSETS = (0.125, 0.375, 0.625, 0.875)
#: Gauss–Legendre nodes per panel of the χ quadrature
PANEL_NODES = 8
#: width of the uniform χ panels, and the grading ratio of the panels towards v = 0
PANEL_WIDTH = 0.5
GRADING = 4.0
#: the χ quadrature drops the mass beyond this upper tail probability
CHI_TAIL = 1e-18
#: mean passage times beyond this are refused (I − P is then singular to double precision)
MAX_STEPS = 1e12
#: the stationary density is computed on ±(this many) standard deviations
STATIONARY_WIDTH = 24.0


# ---------------------------------------------------------------------------------------------
# the exact transition kernel of a scalar chain
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kernel:
    r"""δ' | δ, v ~ N(M δ + B(ĥ − a)(K δ + b0), s²ĥ) with ĥ = (a/S)v², v ~ χ_S (online), or
    N(M δ, s²) (additive: ``S = 0``)."""

    M: float
    B: float
    K: float
    a: float
    S: int
    b0: float
    s: float  # additive: sd of Bξ; online: |B|σ/√S (times √ĥ)
    loss: object  # _LossModel: L(δ) = ½H(δ + b)² + const

    @property
    def additive(self) -> bool:
        return self.S == 0

    def chi_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights of E f(v), v ~ χ_S (:func:`_chi_nodes`)."""
        return _chi_nodes(self.S)

    def cdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r""":math:`P(\delta' \le y_j \mid \delta = x_i)`, shape (len(x), len(y))."""
        from scipy.special import ndtr

        x, y = np.asarray(x, float), np.asarray(y, float)
        if self.additive:
            return ndtr((y[None, :] - self.M * x[:, None]) / self.s)
        v, w = self.chi_nodes()
        h = self.a / self.S * v * v
        sd = self.s * np.sqrt(h)  # (Q,)
        out = np.empty((x.size, y.size))
        for i, xi in enumerate(x):
            mu = self.M * xi + self.B * (h - self.a) * (self.K * xi + self.b0)  # (Q,)
            out[i] = w @ ndtr((y[None, :] - mu[:, None]) / sd[:, None])
        return out

    def matrix(self, edges: np.ndarray) -> np.ndarray:
        """Finite-volume transition probabilities between the cells (rows: from the centres)."""
        centres = (edges[1:] + edges[:-1]) / 2
        return np.diff(self.cdf(centres, edges), axis=1)

    def interval(self, excess: float) -> tuple[float, float]:
        """The deviations with L(δ) − L(0) < ``excess``: an interval (L is a parabola)."""
        H, b = float(self.loss.H[0, 0]), float(self.loss.b[0])
        if not H > 0:
            raise ValueError("first_passage: the loss needs a positive curvature at the minimum.")
        radius = math.sqrt(2 * excess / H + b * b)
        return -b - radius, -b + radius

    @property
    def minimum_loss(self) -> float:
        H, b = float(self.loss.H[0, 0]), float(self.loss.b[0])
        return 0.5 * H * b * b + float(self.loss.const)


def _chi_nodes(
    S: int, per_panel: int = PANEL_NODES, width: float = PANEL_WIDTH, grading: float = GRADING
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E f(v), v ~ χ_S: Gauss–Legendre (``per_panel`` nodes) on panels
    of ``width`` beyond v = 1 and graded towards 0 (ratio ``grading``) below, up to the upper
    tail probability :data:`CHI_TAIL`."""
    from scipy.special import gammaln
    from scipy.stats import chi2

    top = math.sqrt(chi2.isf(CHI_TAIL, S))
    edges = [0.0, 1e-6]
    while edges[-1] * grading < 1:
        edges.append(edges[-1] * grading)
    edges.append(1.0)
    edges.extend(np.arange(1.0 + width, top + width, width).tolist())
    t, w = np.polynomial.legendre.leggauss(per_panel)
    lo, hi = np.array(edges[:-1])[:, None], np.array(edges[1:])[:, None]
    v = ((hi - lo) / 2 * t + (hi + lo) / 2).ravel()
    wv = ((hi - lo) / 2 * w).ravel()
    log_density = (S - 1) * np.log(v) - v * v / 2 - (S / 2 - 1) * math.log(2) - gammaln(S / 2)
    weights = wv * np.exp(log_density)
    return v, weights / weights.sum()


def _problem(result, params: Mapping | None, context: str) -> Problem:
    """The prepared problem of ``result`` at ``params``, *without* requiring bounded second
    moments (first passages are defined wherever a stationary law exists, also beyond the
    mean-square edge where α < 2: :func:`_require_law`); messages name ``context``."""
    return prepare_result(result, params, context, require_stable=False)


def _unstable(problem: Problem, context: str, reason: str, rho: float | None = None):
    return UnstableError.at(
        context,
        dict(sorted(problem.values.items(), key=str)),
        subject=problem.describe(),
        rho=rho,
        reason=reason,
    )


def _require_law(problem: Problem, result, params, context: str) -> None:
    r"""``UnstableError`` (worded for ``context``) unless the chain has a stationary law: ρ < 1
    (finite variance), or beyond the mean-square edge a negative top Lyapunov exponent
    (:func:`symsgd.tails.lyapunov_exponent`; the law then has tail index α < 2)."""
    if problem.rho < 1:
        return
    from .tails import lyapunov_exponent

    gamma = lyapunov_exponent(result, params)
    if gamma.stationary is not True:
        shown = f"{gamma.value:.6g}" + ("" if gamma.exact else f" ± {gamma.stderr:.2g}")
        raise _unstable(
            problem,
            context,
            f"the top Lyapunov exponent of the random update is {shown}, not below 0, so the "
            "iterates leave every bounded set",
            problem.rho,
        )


def _kernel(problem: Problem, context: str) -> _Kernel | _Mixture:
    from .sampling import _Additive, _Online

    M, B, K = (np.asarray(m, float) for m in problem.state_space)
    if M.shape[0] > 1 and M.shape[0] == problem.dim:
        radial = _radial_kernel(problem, context)
        if radial is not None:
            return radial
    if M.shape != (1, 1) or problem.dim != 1:
        raise NotImplementedError(
            f"{context} solves the Poisson equation of a one-dimensional state (SGD on one "
            f"parameter) or of a rotation-invariant problem (SGD on an isotropic quadratic with "
            f"isotropic additive noise, or on isotropic online regression); "
            f"{problem.describe()} has a state of dimension {M.shape[0]}."
        )
    if problem.loss_model is None:
        raise NotImplementedError(f"{context}: no training loss for {problem.describe()}.")
    m, b, k = float(M[0, 0]), float(B[0, 0]), float(K[0, 0])
    oracle = problem.oracle
    if isinstance(oracle, _Additive):
        s = abs(b) * float(oracle.L[0, 0])
        if not s > 0:
            raise ValueError(f"{context}: the additive noise vanishes; there is no escape.")
        return _Kernel(m, b, k, float(oracle.H[0, 0]), 0, 0.0, s, problem.loss_model)
    if isinstance(oracle, _Online):
        if not oracle.sigma > 0:
            raise ValueError(
                f"{context}: without label noise the minibatch noise vanishes at the minimum "
                "(L* = 0, a point-mass stationary law): there is no escape to c·L*."
            )
        a = float((oracle.LA @ oracle.LA.T)[0, 0])
        b0 = float(problem.theta_min[0] - oracle.star[0])
        S = int(oracle.batch)
        return _Kernel(m, b, k, a, S, b0, abs(b) * oracle.sigma / math.sqrt(S), problem.loss_model)
    from .sampling import _Data

    if isinstance(oracle, _Data):
        from .tails import scalar_affine_maps

        maps = scalar_affine_maps(problem, context)
        a, c, w = (np.array([float(t[i]) for t in maps]) for i in range(3))
        if not np.any(c != 0):
            raise ValueError(
                f"{context}: the data set is interpolated exactly (every label residual is 0), "
                "so the minibatch noise vanishes at the minimum (L* = 0, a point-mass "
                "stationary law): there is no escape to c·L*."
            )
        return _Mixture(a, c, w, problem.loss_model)
    raise NotImplementedError(
        f"{context} has the exact kernel of additive noise, of online Gaussian minibatches and "
        f"of a finite scalar data set; {problem.describe()} has none: use "
        "simulate_first_passage."
    )


#: Gauss–Legendre nodes of the radial online kernel: in the angle θ, and twice as many as per
#: χ panel (of width RADIAL_PANEL, graded towards 0 by RADIAL_GRADING)
RADIAL_NODES = 20
RADIAL_PANEL = 1.0
RADIAL_GRADING = 8.0


def _isotropic(X: np.ndarray) -> float | None:
    """x when X = x·I (to rounding), else None."""
    x = float(X[0, 0])
    if X.shape[0] != X.shape[1] or not np.allclose(
        X, x * np.eye(X.shape[0]), rtol=0, atol=1e-13 * max(abs(x), 1e-300)
    ):
        return None
    return x


def _radial_kernel(problem: Problem, context: str):
    """The radial kernel of a rotation-invariant problem (see :class:`_Radial`), or None."""
    from .sampling import _Additive, _Online

    M, B, K = (np.asarray(m, float) for m in problem.state_space)
    m, b, k = _isotropic(M), _isotropic(B), _isotropic(K)
    h = _isotropic(problem.hessian)
    loss = problem.loss_model
    if None in (m, b, k, h) or loss is None or np.any(loss.b) or loss.g is not None:
        return None
    d = problem.dim
    oracle = problem.oracle
    if isinstance(oracle, _Additive):
        c = _isotropic(oracle.L @ oracle.L.T)
        if c is None:
            return None
        if not c > 0:
            raise ValueError(f"{context}: the additive noise vanishes; there is no escape.")
        return _Radial(d, m, b * b * c, 0.0, 0.0, 0.0, 0, h, loss)
    if isinstance(oracle, _Online):
        a = _isotropic(oracle.LA @ oracle.LA.T)
        if a is None or np.any(problem.theta_min - oracle.star):
            return None
        if not oracle.sigma > 0:
            raise ValueError(
                f"{context}: without label noise the minibatch noise vanishes at the minimum "
                "(L* = 0, a point-mass stationary law): there is no escape to c·L*."
            )
        S = int(oracle.batch)
        return _Radial(d, m - b * k * a, b, b * k, a, float(oracle.sigma), S, h, loss)
    return None


@dataclass(frozen=True)
class _Radial:
    r"""The kernel of :math:`R = |\delta|^2` for a rotation-invariant problem in d dimensions.

    * additive (``S = 0``): :math:`\delta' = m\delta + \sqrt{s^2}z`, so
      :math:`|\delta'|^2/s^2` is noncentral :math:`\chi^2_d` with noncentrality
      :math:`m^2R/s^2` (``p`` = m, ``b`` = s²);
    * online (S ≥ 1): :math:`\delta' = p\delta + \frac1S\sum_ix_iv_i`,
      :math:`v_i = qx_i^\top\delta - b\epsilon_i`, x_i ~ N(0, aI), ε_i ~ N(0, σ²).  With
      δ = r e₁ and x_i = (u_i, w_i): the :math:`v_i = qru_i - b\epsilon_i` are iid
      :math:`N(0, s^2)`, :math:`s^2 = q^2r^2a + b^2\sigma^2`, and given v,
      :math:`u_i = \alpha v_i + \eta_i` (α = qra/s², :math:`\eta_i\sim N(0, \tau^2)`,
      :math:`\tau^2 = ab^2\sigma^2/s^2`), while the :math:`w_i` are independent of both.  So
      with :math:`V = |v|` (:math:`V/s\sim\chi_S`) and z ~ N(0, 1),
      :math:`\delta'_1 = rp + (\alpha V^2 + \tau Vz)/S` and
      :math:`\delta'_\perp = \frac1S\sum_iw_iv_i\sim N(0, aV^2/S^2\,I_{d-1})`:
      :math:`|\delta'|^2 = \delta_1'^2 + (aV^2/S^2)\chi^2_{d-1}`, the
      :math:`\chi^2_{d-1}` CDF in closed form inside a 2-D quadrature over (V, z) for every
      batch size S (generalised Gauss–Laguerre in :math:`V^2/2s^2\sim\Gamma(S/2)` times
      Gauss–Hermite in z) — the Wishart statistics :math:`(\sum u_i^2, \sum u_i\epsilon_i,
      \sum\epsilon_i^2)` enter only through :math:`(|v|^2, u^\top v)`."""

    d: int
    p: float
    b: float
    q: float
    a: float
    sigma: float
    S: int
    h: float  # the loss curvature: L = L* + h|δ|²/2
    loss: object
    nodes: int = RADIAL_NODES

    def quadrature(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Nodes and weights of the two rules: χ_S nodes of E f(V/s) (:func:`_chi_nodes`,
        ``nodes // 2`` per panel: the integrand depends on V, not V², so a rule in V) and
        Gauss–Legendre angles θ on [0, π/2] (``nodes``)."""
        chi, w_chi = _chi_nodes(self.S, self.nodes // 2, RADIAL_PANEL, RADIAL_GRADING)
        x, wx = np.polynomial.legendre.leggauss(self.nodes)
        return chi, w_chi, np.pi / 4 * (x + 1), np.pi / 4 * wx

    def second_moment(self) -> float:
        r""":math:`\mathbb E|\delta|^2` of the stationary law from the kernel's own moments:
        :math:`\mathbb E[|\delta'|^2\mid r] = r^2\rho + \text{const}` (online:
        :math:`\rho = (p + qa)^2 + q^2a^2(d + 1)/S`, const :math:`= b^2da\sigma^2/S`, from
        :math:`\mathbb E|(xx^\top - aI)\delta|^2 = (d + 1)a^2r^2`; additive: ρ = p², const
        = d s²), so :math:`\mathbb E|\delta|^2 = \text{const}/(1 - \rho)`; ``inf`` when
        ρ ≥ 1 (tail index α ≤ 2)."""
        if self.S == 0:
            rho, const = self.p**2, self.d * self.b
        else:
            a, S = self.a, self.S
            rho = (self.p + self.q * a) ** 2 + self.q**2 * a * a * (self.d + 1) / S
            const = self.b**2 * self.d * a * self.sigma**2 / S
        return const / (1 - rho) if rho < 1 else math.inf

    def cdf(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        r""":math:`P(|\delta'|^2 \le y_j \mid |\delta| = r_i)`, shape (len(r), len(y)).

        Online: given V, :math:`\delta'_1\sim N(A, B^2)` and
        :math:`|\delta'|^2 = \delta_1'^2 + CK`, K ~ :math:`\chi^2_{d-1}`, so
        :math:`P = \mathbb E_K[\Phi((\sqrt g - A)/B) - \Phi((-\sqrt g - A)/B)]`,
        g = y − CK ≥ 0; the substitution :math:`K = K_c\sin^2\theta`,
        :math:`K_c = \min(y/C, K_{\max})`, makes the integrand smooth in θ (the square-root
        edge at g = 0 and the χ² density's :math:`K^{k/2-1}` both absorbed), so both rules
        converge fast."""
        from scipy.special import chdtr, ndtr
        from scipy.stats import chi2, ncx2

        r, y = np.asarray(r, float), np.asarray(y, float)
        if self.S == 0:
            s2 = self.b
            nc = (self.p * r[:, None]) ** 2 / s2
            return np.where(
                nc > 0,
                ncx2.cdf(y[None, :] / s2, self.d, np.maximum(nc, 1e-300)),
                chdtr(self.d, y[None, :] / s2),
            )
        from scipy.special import gammaln

        chi, w_chi, theta, w_theta = self.quadrature()
        a, S, q, noise = self.a, self.S, self.q, (self.b * self.sigma) ** 2
        k = self.d - 1
        top = float(chi2.isf(CHI_TAIL, k))  # the χ²_{d−1} mass beyond is dropped
        sin2 = np.sin(theta) ** 2
        # K = K_c sin²θ: dF(K) = K_c^{k/2} · 2 sin^{k−1}θ cos θ e^{−K/2} dθ / (2^{k/2} Γ(k/2))
        angular = w_theta * 2 * np.sin(theta) ** (k - 1) * np.cos(theta)
        log_norm = -(k / 2) * math.log(2) - float(gammaln(k / 2))
        out = np.empty((r.size, y.size))
        for i, ri in enumerate(r):
            s2 = q * q * ri * ri * a + noise
            alpha, tau = q * ri * a / s2, math.sqrt(a * noise / s2)
            V = math.sqrt(s2) * chi  # (L,)
            A = (ri * self.p + alpha * V * V / S)[:, None, None]
            B = (tau * V / S)[:, None, None]
            C = a * V * V / (S * S)
            Kc = np.minimum(y[None, :] / C[:, None], top)  # (L, Y): g = y − CK ≥ 0 below
            K = Kc[:, :, None] * sin2  # (L, Y, M)
            root = np.sqrt(np.maximum(y[None, :, None] - C[:, None, None] * K, 0.0))
            with np.errstate(divide="ignore"):
                mass = np.exp((k / 2) * np.log(Kc) + log_norm)[:, :, None] * np.exp(-K / 2)
            inner = (ndtr((root - A) / B) - ndtr((-root - A) / B)) * mass  # P(|δ'₁| ≤ √g)
            out[i] = w_chi @ (inner @ angular)
        return out

    def matrix(self, edges: np.ndarray, start: bool = False) -> np.ndarray:
        """Transition probabilities between radial cells (rows: from the centres, or from
        r = 0 alone when ``start``)."""
        centres = np.array([0.0]) if start else (edges[1:] + edges[:-1]) / 2
        return np.diff(self.cdf(centres, edges**2), axis=1)

    @property
    def minimum_loss(self) -> float:
        return float(self.loss.const)

    def radius(self, excess: float) -> float:
        return math.sqrt(2 * excess / self.h)


def _chi2_cdf(k: int, x: np.ndarray) -> np.ndarray:
    """The χ²_k distribution function (closed forms for k ≤ 3: the hot loop)."""
    from scipy.special import chdtr, erf

    if k == 1:
        return erf(np.sqrt(x / 2))
    if k == 2:
        return -np.expm1(-x / 2)
    if k == 3:
        return erf(np.sqrt(x / 2)) - np.sqrt(2 * x / math.pi) * np.exp(-x / 2)
    return chdtr(k, x)


def _radial_passage(kernel: _Radial, radius: float, n: int) -> float:
    edges = np.linspace(0.0, radius, n + 1)
    P = kernel.matrix(edges)
    m = np.linalg.solve(np.eye(n) - P, np.ones(n))
    _checked_passage(m, P, "I − P is singular to double precision")
    return 1.0 + float(kernel.matrix(edges, start=True)[0] @ m)


@dataclass(frozen=True)
class _Mixture:
    r"""The exact kernel of SGD on a finite scalar data set: :math:`\delta' = a_b\delta + c_b`
    with probability :math:`p_b`, one affine map per distinct minibatch b
    (:func:`symsgd.tails.scalar_affine_maps`)."""

    a: np.ndarray
    c: np.ndarray
    p: np.ndarray
    loss: object

    interval = _Kernel.interval
    minimum_loss = _Kernel.minimum_loss

    def hull(self, context: str) -> tuple[float, float] | None:
        r"""The convex hull [u, v] of the attractor — the support of the stationary law, which
        the chain started at the minimiser (the stationary mean 0, inside it) never leaves —
        when every :math:`|a_b| < 1`; None otherwise (then the support is unbounded or not
        decided here).  [u, v] is the unique fixed point of
        :math:`I\mapsto\operatorname{hull}\bigcup_b f_b(I)` (a contraction with rate
        :math:`\max|a_b|`): solved by policy iteration (each round: the maps attaining the
        extremes, then their 2×2 linear system) and certified by the fixed-point residual."""
        a, c = self.a, self.c
        top = float(np.max(np.abs(a)))
        if not top < 1:
            return None
        R = float(np.max(np.abs(c))) / (1 - top)
        u, v = -R, R
        for _ in range(200):
            low, high = np.minimum(a * u + c, a * v + c), np.maximum(a * u + c, a * v + c)
            i, j = int(np.argmax(high)), int(np.argmin(low))
            # v = a_i·(v or u) + c_i, u = a_j·(u or v) + c_j
            system = np.eye(2)
            system[0, 0 if a[j] >= 0 else 1] -= a[j]
            system[1, 1 if a[i] >= 0 else 0] -= a[i]
            u_new, v_new = np.linalg.solve(system, [c[j], c[i]])
            if abs(u_new - u) <= 1e-15 * R and abs(v_new - v) <= 1e-15 * R:
                break
            u, v = float(u_new), float(v_new)
        images = np.concatenate([a * u + c, a * v + c])
        scale = max(R, 1e-300)
        if not (abs(images.max() - v) <= 1e-12 * scale and abs(images.min() - u) <= 1e-12 * scale):
            raise ArithmeticError(
                f"{context}: the hull of the attractor failed its fixed-point certificate "
                f"([{u:.6g}, {v:.6g}] maps to [{images.min():.6g}, {images.max():.6g}])."
            )
        return u, v

    def matrix(self, x: np.ndarray, lo: float, hi: float, *, closed: bool = False):
        r"""Sparse interpolation matrix on the equispaced nodes ``x``: row i holds
        :math:`\sum_b p_b\,[y_b\in D]\,\ell(y_b)` with :math:`y_b = a_bx_i + c_b` and ℓ the
        linear interpolation weights of the two nodes around :math:`y_b` (constant beyond the
        outermost nodes); D = (lo, hi), or [lo, hi] when ``closed``."""
        from scipy import sparse

        n, nb = x.size, self.a.size
        y = self.a[None, :] * x[:, None] + self.c[None, :]
        inside = (y >= lo) & (y <= hi) if closed else (y > lo) & (y < hi)
        h = (x[-1] - x[0]) / (n - 1)
        t = (y - x[0]) / h
        j = np.clip(np.floor(t).astype(np.int64), 0, n - 2)
        frac = np.clip(t - j, 0.0, 1.0)
        w = self.p[None, :] * inside
        rows = np.repeat(np.arange(x.size), nb)
        data = np.concatenate([(w * (1 - frac)).ravel(), (w * frac).ravel()])
        cols = np.concatenate([j.ravel(), j.ravel() + 1])
        return sparse.csr_matrix((data, (np.concatenate([rows, rows]), cols)), shape=(x.size, n))

    def dimension_bound(self) -> float:
        r""":math:`H(p)/|\gamma|`, the entropy of the minibatch law over the Lyapunov exponent
        :math:`\gamma = \sum_bp_b\log|a_b|`: an upper bound on the dimension of the stationary
        law (Nicol, Sidorov & Broomhead 2002, for IFS that contract on average)."""
        p = self.p[self.p > 0]
        entropy = float(-(p * np.log(p)).sum())
        with np.errstate(divide="ignore"):
            gamma = float(self.p @ np.log(np.abs(self.a)))
        return 0.0 if gamma == -math.inf else entropy / abs(gamma)


# ---------------------------------------------------------------------------------------------
# Poisson equation and stationary density
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstPassage:
    r"""Mean number of steps from the minimiser until :math:`L \ge L_* + \Delta L`
    (``barrier`` = ΔL; ``level`` = c when the barrier was given as :math:`(c-1)L_*`).
    ``steps`` is the Richardson extrapolation :math:`m_{2n+1} + (m_{2n+1} - m_n)/3` of the two
    grids (``cells``; the finite-volume error is O(h²)) and ``error`` the correction
    :math:`|m_{2n+1} - m_n|/3`."""

    steps: float
    error: float
    level: float | None
    barrier: float
    cells: tuple[int, int]
    #: why the value is what it is, when that needs saying (e.g. a level never reached)
    note: str = ""

    def time(self, lr: float) -> float:
        """SDE time :math:`t = \\eta\\cdot\\text{steps}`."""
        return lr * self.steps

    def __repr__(self) -> str:
        what = f"level={self.level:g}" if self.level is not None else f"barrier={self.barrier:g}"
        return f"FirstPassage({what}, steps={self.steps:.8g} ± {self.error:.2g})"


def _checked_passage(m: np.ndarray, P, what: str) -> float:
    """The largest mean passage time of a solved Poisson equation (I − P)m = 1, after its
    residual check; ``ArithmeticError`` when the solve lost the exit probabilities."""
    top = float(np.max(m)) if np.all(np.isfinite(m)) else math.inf
    residual = float(np.max(np.abs(m - P @ m - 1))) if math.isfinite(top) else math.inf
    if not residual < 1e-8 * max(1.0, top):
        raise ArithmeticError(f"first_passage: the Poisson solve has residual {residual:.3g}.")
    if not top < MAX_STEPS:
        raise ArithmeticError(
            f"first_passage: the mean passage time {top:.3g} steps exceeds {MAX_STEPS:g}: "
            f"{what}; lower the level."
        )
    return top


def _solve_passage(kernel: _Kernel, lo: float, hi: float, n: int) -> float:
    edges = np.linspace(lo, hi, n + 1)
    P = kernel.matrix(edges)
    m = np.linalg.solve(np.eye(n) - P, np.ones(n))
    _checked_passage(
        m, P, "the exit probabilities 1 − Σ_j P_ij are lost in double-precision rounding"
    )
    centres = (edges[1:] + edges[:-1]) / 2
    return float(np.interp(0.0, centres, m))


def first_passage(
    result,
    params: Mapping | None = None,
    level: float | None = None,
    *,
    barrier: float | None = None,
    cells: int | None = None,
) -> FirstPassage:
    r"""Mean number of steps of the real chain of ``result`` (from :func:`symsgd.stationary`,
    at ``params``) started at the minimiser until its loss first reaches :math:`c\,L_*`
    (``level=c`` > 1) or :math:`L_* + \Delta L` (``barrier=ΔL`` > 0; for additive noise, where
    :math:`L_* = 0`): the solution of the discrete-time Poisson equation :math:`(I - P)m = 1` on
    :math:`\{L < cL_*\}` with the exact transition kernel (see the module docstring), by finite
    volumes on ``cells`` and ``2·cells + 1`` cells, Richardson-extrapolated (the size of the
    correction is the ``error``).

    One-dimensional states only (SGD on one parameter), with additive noise, online Gaussian
    minibatch noise, or minibatches of a finite scalar data set
    (``LinearRegression.from_data`` with one column, with or without replacement: the kernel
    is the finite mixture of the minibatches' affine maps, solved on a grid with
    interpolation, first order, averaged over grid offsets; see the module docstring).  When
    every minibatch map contracts, the chain never leaves the hull of the stationary support:
    a level beyond it gives ``steps = inf`` with the reason in ``note``.  Rotation-invariant
    problems in d > 1 dimensions (an isotropic quadratic with isotropic additive noise, or
    isotropic online regression, any batch size) are solved on the radius.
    ``UnstableError`` without a stationary law.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> fp = first_passage(r, {ss.lr: 0.3, a: 1}, level=4)
    >>> round(fp.steps, 1), fp.error < 1e-3 * fp.steps
    (453.5, True)

    A finite data set whose every minibatch map contracts never reaches a high level:

    >>> data = ss.LinearRegression.from_data([[0.5], [1.0], [1.3]], [0.3, 1.2, 0.9])
    >>> rd = ss.stationary(ss.SGD(ss.lr), data, ss.MinibatchNoise(1))
    >>> first_passage(rd, {ss.lr: 0.6}, level=40).steps
    inf
    >>> fp = first_passage(rd, {ss.lr: 0.6}, level=1.5)
    >>> round(fp.steps, 2), bool(fp.error < 0.01 * fp.steps)
    (3.06, True)
    """
    problem = _problem(result, params, "first_passage()")
    kernel = _kernel(problem, "first_passage()")
    _require_law(problem, result, params, "first_passage()")
    excess = _excess(kernel, level, barrier, "first_passage()")
    if cells is not None and not (isinstance(cells, int) and cells >= 10):
        raise ValueError(f"first_passage: cells must be an integer ≥ 10; got {cells!r}.")
    if isinstance(kernel, _Radial):
        n = cells or RADIAL_CELLS
        radius = kernel.radius(excess)
        coarse = _radial_passage(kernel, radius, n)
        fine = _radial_passage(kernel, radius, 2 * n + 1)
        value = fine + (fine - coarse) / 3  # finite volumes in r: O(h²)
        error = abs(fine - coarse) / 3
        if kernel.S:  # the quadrature over (V, z) meets the χ² CDF's kink: compare two rules
            # (half the nodes: the rule converges unevenly, and closer rules can agree by chance)
            other = dataclasses.replace(kernel, nodes=RADIAL_NODES - 4)
            error += abs(fine - _radial_passage(other, radius, 2 * n + 1))
        return FirstPassage(value, error, level, excess, (n, 2 * n + 1))
    lo, hi = kernel.interval(excess)
    if isinstance(kernel, _Mixture):
        return _mixture_passage(kernel, lo, hi, level, excess, cells or MIXTURE_CELLS)
    cells = DEFAULT_CELLS if cells is None else cells
    if not (isinstance(cells, int) and cells >= 10):
        raise ValueError(f"first_passage: cells must be an integer ≥ 10; got {cells!r}.")
    n = cells | 1  # odd: the minimiser of a symmetric interval is a cell centre
    coarse = _solve_passage(kernel, lo, hi, n)
    fine = _solve_passage(kernel, lo, hi, 2 * n + 1)
    value = fine + (fine - coarse) / 3  # Richardson: the finite-volume error is O(h²)
    return FirstPassage(value, abs(fine - coarse) / 3, level, excess, (n, 2 * n + 1))


def _mixture_passage(
    kernel: _Mixture, lo: float, hi: float, level, excess: float, cells: int
) -> FirstPassage:
    r"""The Poisson equation :math:`m(\delta) = 1 + \sum_bp_b\,[f_b(\delta)\in D]\,
    m(f_b(\delta))` of a finite affine mixture, D = (lo, hi): on equispaced cell centres over
    D ∩ hull (the chain from the minimiser never leaves the hull of the stationary support),
    m linearly interpolated between them, the exit indicator exact.  m jumps wherever some
    :math:`f_b(\delta)` crosses ∂D (and at the preimages of those points), so the scheme is
    first order: ``steps`` is the fine-grid value and ``error`` the whole difference of the
    two grids (``cells`` and ``2·cells + 1``), not a Richardson correction."""
    hull = kernel.hull("first_passage()")
    a, b = lo, hi
    if hull is not None:
        u, v = hull
        if lo < u and v < hi:
            H, off = float(kernel.loss.H[0, 0]), float(kernel.loss.b[0])
            reach = max(0.5 * H * (u + off) ** 2, 0.5 * H * (v + off) ** 2) + float(
                kernel.loss.const
            )
            return FirstPassage(
                math.inf,
                0.0,
                level,
                excess,
                (0, 0),
                note=(
                    f"never reached: every minibatch map contracts (max |a_b| = "
                    f"{float(np.max(np.abs(kernel.a))):.6g} < 1), so the chain from the "
                    f"minimiser stays in the hull [{u:.6g}, {v:.6g}] of the stationary support, "
                    f"where L ≤ {reach:.6g} < {kernel.minimum_loss + excess:.6g}"
                ),
            )
        a, b = max(lo, u), min(hi, v)
    coarse = [_mixture_solve(kernel, lo, hi, a, b, cells, t) for t in OFFSETS]
    fine = [_mixture_solve(kernel, lo, hi, a, b, 2 * cells + 1, t) for t in OFFSETS]
    error = max(float(np.std(fine)), abs(float(np.mean(fine)) - float(np.mean(coarse))))
    return FirstPassage(float(np.mean(fine)), error, level, excess, (cells, 2 * cells + 1))


def _mixture_solve(
    kernel: _Mixture, lo: float, hi: float, a: float, b: float, n: int, offset: float
) -> float:
    """m(0) on the nodes :math:`a + (i + \text{offset} - \tfrac12)h`, i = 0 … n, h = (b − a)/n."""
    from scipy import sparse
    from scipy.sparse.linalg import splu

    h = (b - a) / n
    x = a + (np.arange(n + 1) + offset - 0.5) * h
    P = kernel.matrix(x, lo, hi)
    # the maps spread every row across the grid, so the LU fills in (~n²/3 entries) whatever
    # the ordering; the natural one is the fastest measured
    lu = splu((sparse.identity(n + 1, format="csc") - P).tocsc(), permc_spec="NATURAL")
    m = lu.solve(np.ones(n + 1))
    _checked_passage(m, P, "I − P is singular to double precision")
    y = kernel.c  # the images of the minimiser δ = 0, interpolated like the matrix does
    inside = (y > lo) & (y < hi)
    return 1.0 + float(kernel.p[inside] @ np.interp(y[inside], x, m))


def _excess(kernel: _Kernel, level, barrier, context: str) -> float:
    if (level is None) == (barrier is None):
        raise ValueError(f"{context}: give exactly one of level=c (L ≥ c·L*) or barrier=ΔL.")
    if barrier is not None:
        if not (isinstance(barrier, (int, float)) and math.isfinite(barrier) and barrier > 0):
            raise ValueError(f"{context}: barrier must be a positive number; got {barrier!r}.")
        return float(barrier)
    if not (isinstance(level, (int, float)) and math.isfinite(level) and level > 1):
        raise ValueError(f"{context}: level must be a number c > 1 (L ≥ c·L*); got {level!r}.")
    star = kernel.minimum_loss
    if not star > 0:
        raise ValueError(
            f"{context}: L* = {star:g} at the minimum, so c·L* is no barrier; give barrier=ΔL."
        )
    return (level - 1) * star


@dataclass(frozen=True)
class StationaryDensity:
    """The finite-volume stationary law: cell ``edges``, ``density`` per cell, and its
    ``variance`` (Richardson-extrapolated from the two grids, error O(h²)) with the size of
    the correction as ``error``.

    For a finite data set the law may be singular: ``density`` is then None, ``cdf`` holds
    the distribution function at the ``edges`` and ``note`` says why (see
    :func:`stationary_density`); ``note`` also states a power-law tail correction."""

    edges: np.ndarray
    density: np.ndarray | None
    mean: float
    variance: float
    error: float
    cdf: np.ndarray | None = None
    note: str = ""


def _invariant_vector(P: np.ndarray) -> np.ndarray:
    """The stationary vector of the grid chain P conditioned to stay (rows renormalised: the
    mass leaving the grid is accounted for separately), checked by its residual."""
    n = len(P)
    P = P / P.sum(axis=1, keepdims=True)
    system = P.T - np.eye(n)
    system[-1] = 1.0  # replace one (redundant) balance equation by the normalisation
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    residual = float(np.max(np.abs(pi @ P - pi)))
    if not (residual < 1e-12 and np.all(pi > -1e-12)):
        raise ArithmeticError(
            f"stationary_density: no stationary vector of the kernel (residual {residual:.3g})."
        )
    return pi


def _stationary(kernel: _Kernel, lo: float, hi: float, n: int):
    edges = np.linspace(lo, hi, n + 1)
    P = kernel.matrix(edges)
    pi = _invariant_vector(P)
    centres = (edges[1:] + edges[:-1]) / 2
    width = edges[1] - edges[0]
    mean = float(pi @ centres)
    second = float(pi @ (centres**2)) + width**2 / 12  # uniform within a cell
    return edges, pi / width, mean, second - mean**2, (centres, pi)


def stationary_density(
    result,
    params: Mapping | None = None,
    *,
    cells: int | None = None,
) -> StationaryDensity:
    r"""The stationary law of the real scalar chain of ``result`` at ``params`` from the exact
    kernel (the same finite volumes as :func:`first_passage`) on ±:data:`STATIONARY_WIDTH`
    standard deviations (the chain's second-moment fixed point; tests check the variance against
    :func:`symsgd.stationary`), on ``cells`` and ``2·cells + 1`` cells (default
    ``4·DEFAULT_CELLS``).

    For a **rotation-invariant** problem in d > 1 dimensions (the radial kernels of
    :func:`first_passage`) it is the law of the radius |δ| on [0, W] (W =
    :data:`STATIONARY_WIDTH` per-coordinate standard deviations, cells graded towards 0,
    default ``RADIAL_CELLS``): ``edges`` and ``density`` in r, ``mean`` = E|δ|, and
    ``variance`` = :math:`\mathbb E|\delta|^2 = \operatorname{tr}\operatorname{Cov}\delta`;
    ``note`` says so.

    Multiplicative noise gives the law a power-law tail :math:`P(|\delta| > t)\sim
    Ct^{-\alpha}` (α from :func:`symsgd.tails.tail_index`), and the part of the variance beyond
    the cut at ±W, :math:`\mathbb E[\delta^2; |\delta| > W]\propto W^{2-\alpha}`, decays
    slowly as α → 2 (≈ 30 % at α ≈ 2.3): it is estimated from the grid's mass in
    W/4 < |δ| ≤ W under the power law, added to ``variance`` and, as an estimate rather than a
    bound, to ``error``; ``note`` says so (also for a finite data set whose support is
    unbounded).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(2))
    >>> d = stationary_density(r, {ss.lr: 0.1, a: 1}, cells=300)
    >>> exact = 0.1 / (2 * 2 - 0.1 * 4)  # λσ²/(2S − λa(S + 2))
    >>> bool(abs(d.variance / exact - 1) < 1e-4)
    True

    Isotropic additive noise in three dimensions: E|δ|² is the trace of the covariance.

    >>> h, c = sp.symbols("h c", positive=True)
    >>> r3 = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h * sp.eye(3)),
    ...                    ss.AdditiveNoise(c * sp.eye(3)))
    >>> law = stationary_density(r3, {ss.lr: 0.5, h: 1, c: 1})
    >>> round(law.variance, 3), round(3 * 0.5 / (2 - 0.5), 3)  # d·λc/(h(2 − λh))
    (1.0, 1.0)
    """
    problem = _problem(result, params, "stationary_density()")
    kernel = _kernel(problem, "stationary_density()")
    if cells is None:
        cells = RADIAL_CELLS if isinstance(kernel, _Radial) else 4 * DEFAULT_CELLS
    if not (isinstance(cells, int) and cells >= 10):
        raise ValueError(f"stationary_density: cells must be an integer ≥ 10; got {cells!r}.")

    def alpha() -> float:  # the tail index (Kesten–Goldie), exact for a scalar state
        from .tails import tail_index

        t = tail_index(result, params)
        return float(t.bracket[0] if t.alpha is None else t.alpha)  # bracketed: the heavier

    if isinstance(kernel, _Mixture):
        return _mixture_density(problem, kernel, cells, alpha)
    if isinstance(kernel, _Radial):
        return _radial_density(problem, kernel, cells, alpha)
    sd = math.sqrt(_exact_variance(problem))
    half = STATIONARY_WIDTH * sd
    coarse = _stationary(kernel, -half, half, cells | 1)[3]
    edges, density, mean, fine, (x, pi) = _stationary(kernel, -half, half, 2 * (cells | 1) + 1)
    value = fine + (fine - coarse) / 3  # Richardson: the finite-volume error is O(h²)
    error = abs(fine - coarse) / 3
    note = ""
    if not kernel.additive:  # multiplicative noise: a power-law tail beyond the grid
        index = alpha()
        tail = _cut_tail(x, pi, half, index)
        value, error = value + tail, error + tail
        note = _cut_note("the online minibatch noise multiplies the state", index, tail)
    return StationaryDensity(edges, density, mean, value, error, note=note)


def _radial_density(
    problem: Problem, kernel: _Radial, cells: int, alpha: Callable[[], float]
) -> StationaryDensity:
    r"""The stationary law of the radius |δ| of a rotation-invariant chain: the invariant
    vector of the radial finite volumes (:meth:`_Radial.matrix`, rows renormalised: the chain
    conditioned to stay) on [0, W], W = :data:`STATIONARY_WIDTH` per-coordinate standard
    deviations (cells graded towards 0, :data:`RADIAL_GRADE`), on ``cells`` and
    ``2·cells + 1`` cells; ``variance`` is
    :math:`\mathbb E|\delta|^2 = \operatorname{tr}\operatorname{Cov}\delta` (the mean of δ
    is 0), Richardson-extrapolated, plus the power-law tail beyond W for online noise."""
    second = kernel.second_moment()
    if not math.isfinite(second):
        values = dict(sorted(problem.values.items(), key=str))
        shown = ", ".join(f"{k} = {float(v):.6g}" for k, v in values.items())
        raise UnstableError(
            f"stationary_density(): the stationary law of {problem.describe()} at {shown} has "
            "E|δ|² = ∞ (tail index α ≤ 2), and the grid is sized by its standard deviation; "
            "first_passage() still applies where the top Lyapunov exponent is negative.",
            values=values,
            rho=problem.rho,
        )
    W = STATIONARY_WIDTH * math.sqrt(second / kernel.d)
    solved = [_radial_invariant(kernel, W, n) for n in (cells, 2 * cells + 1)]
    (_, _, coarse), (edges, pi, fine) = solved
    value = fine + (fine - coarse) / 3  # Richardson: the finite-volume error is O(h²)
    error = abs(fine - coarse) / 3
    x = (edges[1:] + edges[:-1]) / 2
    note = (
        f"the law of the radius |δ| (d = {kernel.d}): edges and density in r, mean E|δ|, "
        "variance E|δ|² = tr Cov δ"
    )
    if kernel.S:  # multiplicative noise: a power-law tail beyond the grid
        index = alpha()
        tail = _cut_tail(x, pi, W, index)
        value, error = value + tail, error + tail
        note += "; " + _cut_note("the online minibatch noise multiplies the state", index, tail)
    return StationaryDensity(edges, pi / np.diff(edges), float(pi @ x), value, error, note=note)


#: the radial stationary grid is graded towards r = 0: r = W(e^{κt} − 1)/(e^κ − 1), t uniform
RADIAL_GRADE = 3.0


def _radial_invariant(kernel: _Radial, W: float, n: int):
    edges = W * np.expm1(RADIAL_GRADE * np.linspace(0.0, 1.0, n + 1)) / math.expm1(RADIAL_GRADE)
    P = kernel.matrix(edges)
    pi = _invariant_vector(P)
    lo, hi = edges[:-1], edges[1:]
    second = float(pi @ ((lo * lo + lo * hi + hi * hi) / 3))  # uniform within a cell
    return edges, pi, second


def _cut_tail(x: np.ndarray, pi: np.ndarray, W: float, alpha: float) -> float:
    r""":math:`\mathbb E[\delta^2;\,|\delta| > W]` of a law cut at ±W with a power-law tail
    :math:`P(|\delta| > t)\approx P(|\delta| > W)(W/t)^\alpha` (Kesten–Goldie; α > 2): the
    grid's outer three quarters hold :math:`P(W/4 < |\delta| \le W) = P(|\delta| > W)
    (4^\alpha - 1)`, and :math:`\int_W^\infty t^2\,dF = W^2 P(|\delta| > W)\,\alpha/
    (\alpha - 2)`.  (The band starts at W/4, not nearer the edge: the grid chain is conditioned
    to stay, which piles the escaping mass up near ±W.)  An estimate (the asymptote used from
    W/4 on), not a bound: callers add it to the value and to the error."""
    if math.isinf(alpha):  # every moment finite: no power-law tail
        return 0.0
    band = float(pi[np.abs(x) > W / 4].sum())
    return W * W * band / (4**alpha - 1) * alpha / (alpha - 2)


def _cut_note(why: str, alpha: float, tail: float) -> str:
    return (
        f"the support is unbounded ({why}) and the law is cut at ±{STATIONARY_WIDTH:g} standard "
        f"deviations: its power-law tail (α = {alpha:.4g}) beyond holds ≈ {tail:.2g} of the "
        "variance, added to it and to the error (an estimate from the grid's outer "
        "three quarters, not a bound)"
    )


def _mixture_density(
    problem: Problem, kernel: _Mixture, cells: int, alpha: Callable[[], float]
) -> StationaryDensity:
    r"""The stationary law of a finite affine mixture: the invariant vector of the chain whose
    every image :math:`a_bx_i + c_b` is split between its two neighbouring nodes (the linear
    interpolation weights: the mean is kept), on the hull of the support when every map
    contracts, else on ±:data:`STATIONARY_WIDTH` standard deviations (rows renormalised).
    Mass sits on the nodes, so ``cdf`` is exact at the cell edges up to the O(h) smearing."""
    hull = kernel.hull("stationary_density()")
    bounded = hull is not None
    if not bounded:
        half = STATIONARY_WIDTH * math.sqrt(_exact_variance(problem))
        hull = (-half, half)
    lo, hi = hull
    if not hi > lo:
        raise ValueError("stationary_density(): the stationary law is a point mass.")
    coarse = _mixture_invariant(kernel, lo, hi, cells)
    fine = _mixture_invariant(kernel, lo, hi, 2 * cells + 1)
    x, pi = fine
    mean = float(pi @ x)
    variances = [float(q @ (y - q @ y) ** 2) for y, q in (coarse, fine)]
    # splitting a point between two nodes adds ≤ h²/4 of variance per step: O(h²)
    value = variances[1] + (variances[1] - variances[0]) / 3
    dimension = kernel.dimension_bound()
    if dimension < 1:
        note = (
            f"singular: the dimension of the stationary law is at most H(p)/|γ| = "
            f"{dimension:.4g} < 1 (minibatch entropy over the Lyapunov exponent), so it has no "
            "density; use cdf"
        )
    else:
        note = (
            f"a finite mixture of affine maps has a law of pure type, absolutely continuous or "
            f"singular, and the dimension bound H(p)/|γ| = {dimension:.4g} ≥ 1 does not decide "
            "which: no density is returned; use cdf"
        )
    error = abs(variances[1] - variances[0]) / 3
    if not bounded:  # the power-law tail beyond the grid: P(|δ| > x) ≈ P(|δ| > W)(W/x)^α
        index = alpha()
        tail = _cut_tail(x, pi, hi, index)
        value, error = value + tail, error + tail
        why = f"max |a_b| = {float(np.max(np.abs(kernel.a))):.4g} > 1"
        note += "; " + _cut_note(why, index, tail)
    edges = np.linspace(lo, hi, x.size + 1)
    cdf = np.concatenate([[0.0], np.cumsum(pi)])
    return StationaryDensity(edges, None, mean, value, error, cdf=cdf, note=note)


def _mixture_invariant(kernel: _Mixture, lo: float, hi: float, n: int):
    from scipy import sparse
    from scipy.sparse.linalg import splu

    x = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    P = kernel.matrix(x, lo, hi, closed=True)
    mass = np.asarray(P.sum(axis=1)).ravel()
    P = sparse.diags(1 / mass) @ P  # the chain conditioned to stay (tail mass ~ 0)
    system = (P.T - sparse.identity(n)).tolil()
    system[n - 1, :] = np.ones(n)  # one (redundant) balance equation → the normalisation
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = splu(system.tocsc(), permc_spec="NATURAL").solve(rhs)
    residual = float(np.max(np.abs(P.T @ pi - pi)))
    if not (residual < 1e-12 and np.all(pi > -1e-12)):
        raise ArithmeticError(
            f"stationary_density: no stationary vector of the kernel (residual {residual:.3g})."
        )
    return x, pi


def _exact_variance(problem: Problem) -> float:
    r"""Stationary variance of the scalar chain from its own kernel (for the domain width):
    :math:`V = (B^2b_0^2\,2a^2/S + s^2a)/(1 - M^2 - q^2\,2a^2/S)`, q = BK (the mean is 0)."""
    kernel = _kernel(problem, "stationary_density()")
    if isinstance(kernel, _Mixture):  # V = E c² + E A² V (the mean is 0)
        A2 = float(kernel.p @ kernel.a**2)
        if A2 < 1:
            return float(kernel.p @ kernel.c**2) / (1 - A2)
    elif kernel.additive:
        return kernel.s**2 / (1 - kernel.M**2)
    else:
        a, S, m, q = kernel.a, kernel.S, kernel.M, kernel.B * kernel.K
        spread = 2 * a * a / S  # Var ĥ
        A2 = m * m + q * q * spread
    if not A2 < 1:
        values = dict(sorted(problem.values.items(), key=str))
        shown = ", ".join(f"{k} = {float(v):.6g}" for k, v in values.items())
        raise UnstableError(
            f"stationary_density(): the stationary law of {problem.describe()} at {shown} has "
            f"infinite variance (E A² = {A2:.6g} ≥ 1: tail index α ≤ 2), and the grid is sized "
            "by its standard deviation; first_passage() still applies where the top Lyapunov "
            "exponent is negative.",
            values=values,
            rho=problem.rho,
        )
    return (kernel.B**2 * kernel.b0**2 * spread + kernel.s**2 * a) / (1 - A2)


# ---------------------------------------------------------------------------------------------
# the real optimizer: first passages of every level in one run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Escapes:
    r"""First passages of the real optimizer, every level from one set of chains.

    For level k, chain i contributes its exposure :math:`e_{ik} = \min(\tau_{ik}, T)` and event
    :math:`d_{ik} = [\tau_{ik}\le T]`; ``steps[k]`` :math:`= \sum_i e_{ik}/\sum_i d_{ik}` (the
    sample mean when every chain escaped; with censoring the exact mean when the escape is
    memoryless after relaxation), ``cov`` the delta-method covariance of ``steps`` across the
    independent chains (levels share chains, so they are correlated), ``stderr`` its diagonal's
    square root, ``events`` the escapes per level."""

    levels: np.ndarray  # c (or ΔL when barriers were given)
    barriers: np.ndarray  # ΔL
    steps: np.ndarray
    stderr: np.ndarray
    cov: np.ndarray
    events: np.ndarray
    chains: int
    horizon: int


def simulate_first_passage(
    system,
    params: Mapping | None = None,
    *,
    levels: Sequence[float] | None = None,
    barriers: Sequence[float] | None = None,
    chains: int = 20_000,
    steps: int = 10_000,
    seed: int = 0,
    loss=None,
) -> Escapes:
    r"""Run the real optimizer of ``system`` — a result of :func:`symsgd.stationary` (with
    ``params``) or a prepared :class:`~symsgd.sampling.Problem` (e.g. the nonlinear dynamics of
    :func:`symsgd.sampling.nonlinear`) — from the minimiser for at most ``steps`` steps on
    ``chains`` chains, and record the first step with :math:`L \ge cL_*` for every ``levels`` c
    (or :math:`L \ge L_* + \Delta L` for ``barriers``) in the same run (see :class:`Escapes`).

    The loss is the problem's training loss (:math:`\frac12(\delta+b)^\top H(\delta+b) +
    \text{const}`, in any dimension); for a nonlinear problem pass ``loss`` (θ of shape
    (d, n) → n losses) and barriers.  Chains that
    passed every level are dropped from the run.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> e = simulate_first_passage(r, {ss.lr: 0.3, a: 1}, levels=[4], chains=2000, seed=1)
    >>> exact = first_passage(r, {ss.lr: 0.3, a: 1}, level=4).steps
    >>> bool(abs(e.steps[0] - exact) < 4 * e.stderr[0])
    True
    """
    if isinstance(system, Problem):
        problem = system
    else:
        problem = _problem(system, params, "simulate_first_passage()")
        _require_law(problem, system, params, "simulate_first_passage()")
    for name, value in (("chains", chains), ("steps", steps)):
        if not (isinstance(value, int) and value >= 2):
            raise ValueError(
                f"simulate_first_passage: {name} must be an integer ≥ 2; got {value!r}."
            )
    if loss is None:
        model = problem.loss_model
        if model is None:
            raise ValueError(
                f"simulate_first_passage: {problem.describe()} has no training loss; pass loss=."
            )
        loss = _training_loss(model, problem.theta_min)
    star = float(loss(problem.theta_min[:, None])[0])
    if (levels is None) == (barriers is None):
        raise ValueError("simulate_first_passage: give exactly one of levels= or barriers=.")
    if levels is not None:
        if not star > 0:
            raise ValueError(
                "simulate_first_passage: L* = 0, so c·L* is no barrier; use barriers=."
            )
        shown = np.asarray(levels, float)
        if not np.all(shown > 1):
            raise ValueError(f"simulate_first_passage: every level c must be > 1; got {levels!r}.")
        excess = (shown - 1) * star
    else:
        excess = shown = np.asarray(barriers, float)
        if not np.all(excess > 0):
            raise ValueError(f"simulate_first_passage: barriers must be > 0; got {barriers!r}.")
    thresholds = star + excess
    tau = _passages(problem, loss, thresholds, chains, steps, seed, "simulate_first_passage")
    return _censored(tau, shown, excess, steps, "simulate_first_passage")


def _training_loss(model, theta_min: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    r"""The problem's training loss as a function of θ of shape (d, n) (n losses): with
    δ = θ − θ_min, :math:`\tfrac12(\delta + b)^\top H(\delta + b) + \text{const}` plus
    :math:`\bar g^\top(\delta + b)` when the loss model has a gradient ḡ (see
    :class:`symsgd.sampling.Problem`'s ``loss_model``)."""
    H, b, const = (np.asarray(model.H, float), np.asarray(model.b, float), float(model.const))
    g = None if model.g is None else np.asarray(model.g, float)
    centre = (np.asarray(theta_min, float).ravel() - b)[:, None]

    def loss(theta: np.ndarray) -> np.ndarray:
        u = theta - centre  # δ + b, shape (d, n)
        out = 0.5 * np.einsum("in,ij,jn->n", u, H, u) + const
        return out if g is None else out + g @ u

    return loss


def _passages(
    problem: Problem, score, thresholds: np.ndarray, chains: int, steps: int, seed: int, context
) -> np.ndarray:
    """First steps with ``score(θ) ≥ threshold`` for every threshold (``steps + 1``:
    censored), shape (thresholds, chains), the real optimizer of ``problem`` started at its
    minimiser; chains past every threshold are dropped."""
    K = thresholds.size
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    tau = np.full((K, chains), steps + 1, dtype=np.int64)  # steps + 1: censored
    alive = np.arange(chains)
    state = problem.stepper.initial_state(np.repeat(problem.theta_min[:, None], chains, axis=1))
    grad = problem.oracle.make(rng, chains)
    precondition = problem.precondition()
    step, readout = problem.stepper.step, problem.stepper.readout
    top = thresholds.max()
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            state = step(state, grad, precondition)
            value = score(readout(state))
            if not np.all(np.isfinite(value)):
                raise UnstableError(f"{context}: the iterates diverged at step {t}.")
            crossed = value[None, :] >= thresholds[:, None]
            first = crossed & (tau[:, alive] > steps)
            if first.any():
                rows, cols = np.nonzero(first)
                tau[rows, alive[cols]] = t
            done = value >= top
            if done.any():  # every level passed: drop these chains
                keep = ~done
                alive = alive[keep]
                if alive.size == 0:
                    break
                state = _take(state, keep)
                grad = problem.oracle.make(rng, alive.size)
    return tau


def _censored(tau: np.ndarray, shown, excess, steps: int, context: str) -> Escapes:
    """The events/exposure estimator of :class:`Escapes` from first-passage steps ``tau``
    (``steps + 1`` = censored at the horizon ``steps``)."""
    chains = tau.shape[1]
    exposure = np.minimum(tau, steps).astype(float)
    events = (tau <= steps).astype(float)
    if np.any(events.sum(axis=1) == 0):
        raise ValueError(f"{context}: no chain escaped at some level; run longer (steps=).")
    mean_e, mean_d = exposure.mean(axis=1), events.mean(axis=1)
    estimate = mean_e / mean_d
    influence = (exposure - estimate[:, None] * events) / mean_d[:, None]  # (K, chains)
    cov = influence @ influence.T / chains**2
    return Escapes(
        levels=np.asarray(shown, float),
        barriers=np.asarray(excess, float),
        steps=estimate,
        stderr=np.sqrt(np.diag(cov)),
        cov=cov,
        events=events.sum(axis=1).astype(int),
        chains=chains,
        horizon=steps,
    )


def _take(state, keep: np.ndarray):
    """The optimizer state restricted to the chains ``keep`` (arrays of shape (d, n))."""
    if isinstance(state, np.ndarray):
        return state[..., keep] if state.ndim else state
    if isinstance(state, tuple):
        return tuple(_take(s, keep) for s in state)
    if isinstance(state, list):
        return [_take(s, keep) for s in state]
    if isinstance(state, dict):
        return {k: _take(v, keep) for k, v in state.items()}
    return state


@dataclass(frozen=True)
class Exponent:
    """A fitted slope of log E τ against log c (or against ΔL) with its standard error."""

    slope: float
    stderr: float
    intercept: float

    def z(self, theory: float) -> float:
        return (self.slope - theory) / self.stderr


def fit_exponent(
    escapes: Escapes | None = None,
    *,
    levels: Sequence[float] | None = None,
    steps: Sequence[float] | None = None,
    cov=None,
    low: float = -math.inf,
    high: float = math.inf,
    variable: str = "log",
) -> Exponent:
    r"""Least-squares slope of :math:`\ln\mathbb E\tau` against :math:`\ln c` (``variable="log"``)
    or against the barrier ΔL (``"linear"``: the Arrhenius slope) over the levels in
    [``low``, ``high``], from an :class:`Escapes` or from ``levels``, ``steps`` and their
    covariance ``cov``.  The standard error is exact for the least-squares weights w under the
    given covariance: :math:`\mathrm{se}^2 = w^\top\,\mathrm{Cov}(\ln\hat m)\,w`, with
    :math:`\mathrm{Cov}(\ln\hat m)_{kl} = \mathrm{Cov}_{kl}/(m_km_l)` (the levels of one run share
    chains).

    >>> cov = [[1, 0, 0], [0, 4, 0], [0, 0, 16]]
    >>> e = fit_exponent(levels=[2, 4, 8], steps=[10, 20, 40], cov=cov)
    >>> round(e.slope, 12), round(e.stderr, 4)
    (1.0, 0.102)
    """
    if escapes is not None:
        x = escapes.barriers if variable == "linear" else escapes.levels
        m, C = escapes.steps, escapes.cov
    else:
        x, m = np.asarray(levels, float), np.asarray(steps, float)
        C = np.zeros((x.size, x.size)) if cov is None else np.asarray(cov, float)
    if variable not in ("log", "linear"):
        raise ValueError(f"fit_exponent: variable must be 'log' or 'linear'; got {variable!r}.")
    sel = (x >= low) & (x <= high)
    if sel.sum() < 2:
        raise ValueError("fit_exponent: at least two levels are needed in [low, high].")
    x, m, C = x[sel], m[sel], C[np.ix_(sel, sel)]
    u = np.log(x) if variable == "log" else x
    y = np.log(m)
    w = (u - u.mean()) / np.sum((u - u.mean()) ** 2)
    slope = float(w @ y)
    logcov = C / np.outer(m, m)
    return Exponent(
        slope, float(math.sqrt(max(w @ logcov @ w, 0.0))), float(y.mean() - slope * u.mean())
    )


# ---------------------------------------------------------------------------------------------
# the theories, derived symbolically
# ---------------------------------------------------------------------------------------------

#: the level c of :func:`mori_rate`
LEVEL = sp.Symbol("c", positive=True)


def _scalar_pieces(result, context: str):
    """(lr, h, S, L*) of SGD on one-parameter online regression with minibatch noise, or
    (lr, h, None, C) with additive noise, from the result's recursion."""
    from .landscapes import LinearRegression, Quadratic
    from .noise import AdditiveNoise, MinibatchNoise

    recursion = getattr(result, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"{context} needs a result of ss.stationary(...); got {type(result).__name__}."
        )
    land, noise, opt = recursion.landscape, recursion.noise, recursion.optimizer
    if land.dim != 1 or recursion.M.shape != (1, 1):
        raise NotImplementedError(f"{context} covers one-parameter SGD; got {land!r}.")
    h = sp.Matrix(land.hessian)[0, 0]
    lr = opt.lr
    if isinstance(noise, MinibatchNoise) and isinstance(land, LinearRegression):
        if land.data is not None:
            raise NotImplementedError(f"{context} covers online regression (no finite data set).")
        from .sampling import _label_variance

        return lr, h, noise.batch_size, _label_variance(land) / 2
    if isinstance(noise, AdditiveNoise) and isinstance(land, (Quadratic, LinearRegression)):
        return lr, h, None, sp.Matrix(noise.C)[0, 0]
    raise NotImplementedError(f"{context}: no theory for {noise!r} on {land!r}.")


def _sde_exponent(drift: sp.Expr, diffusion: sp.Expr, x: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    r"""For :math:`dx = \mu\,dt + \sqrt{D}\,dW`: the stationary density
    :math:`p\propto D^{-1}\exp\int 2\mu/D` (zero flux) and the large-level slope of the mean
    first passage to :math:`|x| = b` in :math:`\ln b^2`: :math:`\mathbb E\tau =
    \int_0^b \frac{2}{Dp}\int_{-y}^{y}p` grows like :math:`\int^b y^{2k}dy\propto (b^2)^{k+1/2}`
    with :math:`2k = \lim y\,\partial_y\ln(1/(Dp))`."""
    log_p = -sp.log(diffusion) + sp.integrate(sp.cancel(2 * drift / diffusion), x)
    k = sp.limit(x * sp.diff(-sp.log(diffusion) - log_p, x) / 2, x, sp.oo)
    return sp.simplify(log_p), sp.simplify(k + sp.Rational(1, 2))


def mori_exponent(result) -> sp.Expr:
    r"""Mori et al.'s slope :math:`d\ln\mathbb E\tau/d\ln c`, derived: the SDE
    :math:`d\delta = -L'dt + \sqrt{\eta\Sigma}\,dW` with decoupled noise :math:`\Sigma = 2Lh_*/S`
    (L = L_* + hδ²/2, h the Hessian, which equals the Gauss–Newton matrix here) in time
    t = η·steps; its stationary law is :math:`L^{-(1 + S/(\eta h))}` and the slope
    :math:`\tfrac12 + S/(\eta h)`.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(ss.batch_size))
    >>> ss.verify("1/2 + S/(lambda*a)", mori_exponent(r)).equal
    True
    """
    lr, h, S, star = _scalar_pieces(result, "mori_exponent()")
    if S is None:
        raise ValueError(
            "mori_exponent() needs minibatch noise (additive noise: arrhenius_exponent)."
        )
    x = sp.Symbol("x", real=True)
    L = star + h * x**2 / 2
    return _sde_exponent(-sp.diff(L, x), lr * 2 * L * h / S, x)[1]


def mori_rate(result) -> sp.Expr:
    r"""Mori et al.'s escape rate to :math:`cL_*` up to a constant: :math:`c^{-(1/2 + S/(\eta h))}`
    in the symbol :data:`LEVEL` (c); the mean first passage is its inverse.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(2))
    >>> mori_rate(r)
    c**(-1/2 - 2/(a*lambda))
    """
    return LEVEL ** (-mori_exponent(result))


def exact_noise_exponent(result) -> sp.Expr:
    r"""The slope of the SDE with the *exact* online noise
    :math:`\Sigma = (2Lh + h^2\delta^2)/S` (decoupling drops the second term):
    :math:`\tfrac12 + S/(2\eta h)`, derived like :func:`mori_exponent`."""
    lr, h, S, star = _scalar_pieces(result, "exact_noise_exponent()")
    x = sp.Symbol("x", real=True)
    L = star + h * x**2 / 2
    return _sde_exponent(-sp.diff(L, x), lr * (2 * L * h + h**2 * x**2) / S, x)[1]


def ziyin_exponent(result) -> sp.Expr:
    r"""Mori's law :math:`p\propto L^{-\varphi}` with φ set by the *exact discrete-time*
    variance V of :func:`symsgd.stationary` (Ziyin et al.): for L = L_* + hδ²/2 the law's
    variance is :math:`(2L_*/h)/(2\varphi - 3)`, and the slope is :math:`\varphi - \tfrac12`."""
    _, h, _, star = _scalar_pieces(result, "ziyin_exponent()")
    phi = sp.Symbol("phi", positive=True)
    V = sp.Matrix(result.cov)[0, 0] if isinstance(result.cov, sp.MatrixBase) else result.cov
    (solution,) = sp.solve(sp.Eq((2 * star / h) / (2 * phi - 3), V), phi)
    return sp.simplify(solution - sp.Rational(1, 2))


def arrhenius_exponent(result) -> sp.Expr:
    r""":math:`d\ln\mathbb E\tau/d\Delta L` at large barriers for additive noise: the stationary
    law is Gaussian with the exact discrete variance V (:func:`symsgd.stationary`), so
    :math:`P(L - L_* > \Delta L)\propto e^{-\Delta L/(hV)}` and the slope is :math:`1/(hV)`
    (:math:`(2-\lambda h)/(\lambda c)` for SGD; the SDE's V = λc/(2h) gives 2/(λc)).

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> ss.verify("(2 - lambda*h)/(lambda*c)", arrhenius_exponent(r)).equal
    True
    """
    _, h, _, _ = _scalar_pieces(result, "arrhenius_exponent()")
    V = sp.Matrix(result.cov)[0, 0] if isinstance(result.cov, sp.MatrixBase) else result.cov
    return sp.simplify(1 / (h * V))


def exponents(result, params: Mapping | None = None) -> dict[str, float]:
    r"""The large-c slope of :math:`\ln\mathbb E\tau` vs :math:`\ln c` by four theories, at
    ``params``: ``"kesten"`` α/2 (the real chain, :func:`symsgd.tails.tail_index`), ``"mori"``
    (:func:`mori_exponent`), ``"exact-noise SDE"`` (:func:`exact_noise_exponent`) and
    ``"ziyin"`` (:func:`ziyin_exponent`).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> {k: round(v, 4) for k, v in exponents(r, {ss.lr: 0.5, a: 1}).items()}
    {'kesten': 1.452, 'mori': 2.5, 'exact-noise SDE': 1.5, 'ziyin': 1.5}
    """
    from .numeric import resolve_values
    from .tails import tail_index

    given = {**getattr(result, "values", {}), **dict(params or {})}
    out = {"kesten": tail_index(result, params).alpha / 2}
    for name, f in (
        ("mori", mori_exponent),
        ("exact-noise SDE", exact_noise_exponent),
        ("ziyin", ziyin_exponent),
    ):
        expr = f(result)
        values = resolve_values(given, expr.free_symbols)
        out[name] = float(expr.xreplace({k: sp.sympify(v) for k, v in values.items()}))
    return out


# ---------------------------------------------------------------------------------------------
# a real barrier: escape over the top of a double well
# ---------------------------------------------------------------------------------------------


def escape_time(
    model,
    optimizer,
    noise,
    params: Mapping,
    theta0,
    barrier,
    *,
    chains: int = 2000,
    steps: int = 100_000,
    seed: int = 0,
) -> Escapes:
    r"""Mean number of steps of the *real* optimizer on the *real* loss of ``model`` (an
    :class:`~symsgd.EmpiricalLoss`; its own minibatches of the data set, ``noise`` a
    :class:`~symsgd.MinibatchNoise`) started at the minimum ``theta0`` until it first crosses
    the barrier top ``barrier`` (θ_s): the first step with
    :math:`(\theta - \theta_s)\cdot(\theta_* - \theta_s) \le 0`, i.e. past the hyperplane
    through θ_s normal to the line from θ*.  ``chains`` chains run for at most ``steps``
    steps; censored chains enter the events/exposure estimator of :class:`Escapes` (the exact
    mean for memoryless escape after relaxation), with its delta-method standard error.
    ``levels`` is ``[1]`` (the fraction of the way to θ_s), ``barriers`` the loss barrier
    :math:`L(\theta_s) - L(\theta_*)`.

    The chains use :func:`symsgd.sampling.nonlinear` on the local problem at θ* (prepared
    without requiring ρ < 1: escape is defined whatever the local second moments do).

    >>> import symsgd as ss
    >>> m = shifted_double_well(1.5)
    >>> star = m.minimum(start=[1.0])
    >>> e = escape_time(m, ss.SGD(ss.lr), ss.MinibatchNoise(1), {"lr": 0.1}, star, [0.0],
    ...                 chains=500, steps=5000, seed=1)
    >>> bool(e.events[0] == 500), bool(40 < e.steps[0] < 80), round(float(e.barriers[0]), 9)
    (True, True, 0.5)
    """
    from .models import EmpiricalLoss
    from .sampling import nonlinear

    if not isinstance(model, EmpiricalLoss):
        raise TypeError(f"escape_time: model must be an ss.EmpiricalLoss; got {model!r}.")
    for name, value in (("chains", chains), ("steps", steps)):
        if not (isinstance(value, int) and value >= 2):
            raise ValueError(f"escape_time: {name} must be an integer ≥ 2; got {value!r}.")
    star, top = _point(theta0), _point(barrier)
    if star.shape != (model.dim,) or top.shape != (model.dim,):
        raise ValueError(
            f"escape_time: theta0 and barrier must have {model.dim} entries (one per parameter)."
        )
    normal = star - top
    if not float(normal @ normal) > 0:
        raise ValueError("escape_time: the barrier top coincides with the minimum.")
    local = model.near(theta0)
    try:
        problem = nonlinear(prepare(optimizer, local, noise, params, require_stable=False))
    except ValueError as exc:
        raise ValueError(str(exc).replace("simulate()", "escape_time()")) from None
    scale = float(normal @ normal)

    def score(theta: np.ndarray) -> np.ndarray:  # 0 at θ*, 1 on the hyperplane through θ_s
        return normal @ (star[:, None] - theta) / scale

    tau = _passages(problem, score, np.array([1.0]), chains, steps, seed, "escape_time")
    height = model.value(top) - model.value(star)
    return _censored(tau, [1.0], [height], steps, "escape_time")


def _point(theta) -> np.ndarray:
    """A parameter point (sympy Matrix, sequence or array) as a flat float array."""
    if isinstance(theta, sp.MatrixBase):
        theta = theta.tolist()
    return np.asarray(np.asarray(theta, dtype=object).ravel().tolist(), dtype=float)


def sde_escape_time(
    gradient, diffusion, start: float, top: float, lr: float, *, points: int = 4001
) -> FirstPassage:
    r"""Mean first passage, in **steps** (SDE time / ``lr``), of the one-dimensional diffusion
    :math:`dw = -L'(w)\,dt + \sqrt{D(w)}\,dW` from ``start`` (a minimum) to ``top`` (the
    barrier top), reflected far beyond the minimum; ``gradient`` (L') and ``diffusion`` (D)
    are vectorised functions of w.  With r the distance from the top towards the minimum,
    :math:`\Phi(r) = \int_0^r 2\,\partial_rL/D` and :math:`\psi = e^\Phi`, the mean time solves
    :math:`-\partial_rL\,T' + \tfrac D2T'' = -1`, T(0) = 0, T'(R) = 0:

    .. math:: \mathbb E\tau = \int_0^{r_0} dy \int_y^{R}\frac{2}{D(z)}\,
              e^{\Phi(y) - \Phi(z)}\,dz ,

    evaluated by the trapezoidal rule in log space on ``points`` and ``2·points − 1`` nodes
    per piece ([top, start] and [start, R], R where the speed measure :math:`(2/D)e^{-\Phi}`
    has fallen below :math:`e^{-35}` of its mass),
    Richardson-extrapolated (``error``: the correction).  A zero of D between the top and
    the minimum (where the drift pushes back), or at the top vanishing at least
    quadratically (a natural boundary: the plain double well), makes the top unreachable:
    ``steps = inf``.

    >>> fp = sde_escape_time(lambda w: w, lambda w: 0.5 + 0 * w, 0.0, 1.0, 0.1)  # OU, D = ½
    >>> round(fp.steps, 3), fp.error < 1e-6 * fp.steps
    (104.284, True)
    """
    if not (isinstance(points, int) and points >= 11):
        raise ValueError(f"sde_escape_time: points must be an integer ≥ 11; got {points!r}.")
    if not (math.isfinite(start) and math.isfinite(top) and start != top):
        raise ValueError("sde_escape_time: start and top must be distinct finite numbers.")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"sde_escape_time: lr must be > 0; got {lr!r}.")
    sign = 1.0 if start > top else -1.0
    r0 = abs(start - top)

    def fields(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = top + sign * r
        g = sign * np.asarray(gradient(w), float) * np.ones_like(r)
        D = np.asarray(diffusion(w), float) * np.ones_like(r)
        return g, D

    never = FirstPassage(math.inf, 0.0, None, math.nan, (points, 2 * points - 1))
    _, D_in = fields(np.linspace(0, r0, 201)[1:])
    if np.any(~(D_in > 0)):  # the drift pushes back where the noise vanishes
        return never
    _, D_top = fields(np.array([0.0, 1e-4 * r0, 1e-3 * r0]))
    if not D_top[0] > 0:
        if D_top[1] <= 0.011 * D_top[2]:  # D ∝ r² (or faster): a natural boundary
            return never
        raise ValueError(
            "sde_escape_time: the diffusion vanishes at the top slower than quadratically; "
            "whether the top is reached depends on the boundary behaviour there."
        )
    R = 2 * r0
    for _ in range(60):  # the far boundary: the speed measure (2/D)e^{−Φ} is negligible beyond
        r = np.linspace(r0, R, 4001)
        g, D = fields(r)
        if np.any(~(D > 0)) or not np.all(np.isfinite(g)):
            raise ValueError(
                "sde_escape_time: the diffusion must be positive (and the drift finite) beyond "
                f"the minimum; it fails before r = {R:g} from the top."
            )
        phi = np.concatenate([[0.0], np.cumsum(np.diff(r) * (g[1:] / D[1:] + g[:-1] / D[:-1]))])
        log_m = np.log(2 / D) - phi
        half = r >= (r0 + R) / 2
        if np.logaddexp.reduce(log_m[half]) < np.logaddexp.reduce(log_m) - 35:
            break
        R *= 2
    else:
        raise ValueError(
            "sde_escape_time: the loss does not confine the diffusion beyond the minimum (the "
            "speed measure (2/D)e^{−Φ} is not integrable)."
        )
    coarse = _sde_log_passage(fields, r0, R, points)
    fine = _sde_log_passage(fields, r0, R, 2 * points - 1)
    if not math.isfinite(fine):
        return never
    log_value = fine + (fine - coarse) / 3  # Richardson on the log: O(h²) either way
    if log_value > 700:
        return FirstPassage(math.inf, math.inf, None, math.nan, (points, 2 * points - 1))
    value = math.exp(log_value) / lr
    return FirstPassage(
        value, value * abs(fine - coarse) / 3, None, math.nan, (points, 2 * points - 1)
    )


def _sde_log_passage(fields, r0: float, R: float, n: int) -> float:
    """log ∫_0^{r0} dy ∫_y^R (2/D) e^{Φ(y) − Φ(z)} dz by trapezoids (in SDE time)."""
    r = np.concatenate([np.linspace(0, r0, n), np.linspace(r0, R, n)[1:]])
    g, D = fields(r)
    h = np.diff(r)
    phi = np.concatenate([[0.0], np.cumsum(h * (g[1:] / D[1:] + g[:-1] / D[:-1]))])
    with np.errstate(divide="ignore"):
        lf = np.log(2 / D) - phi
        seg = np.log(h / 2) + np.logaddexp(lf[1:], lf[:-1])
    tail = np.concatenate([np.logaddexp.accumulate(seg[::-1])[::-1], [-np.inf]])
    inner = phi + tail  # log T'(r)
    k = n  # nodes 0..n−1 cover [0, r0]
    outer = np.log(h[: k - 1] / 2) + np.logaddexp(inner[1:k], inner[: k - 1])
    return float(np.logaddexp.reduce(outer))


@dataclass(frozen=True)
class BarrierTheories:
    r"""Escape over a one-parameter barrier by five continuous theories (:func:`barrier_theories`):
    ``steps[name]`` the mean first passage in steps (:func:`sde_escape_time` of the SDE with the
    theory's diffusion D), with the quantities they use: ``hessian`` :math:`H_* = L''(w_*)`,
    ``gauss_newton`` :math:`G_* = \overline{(\partial_w r_i)^2}` (ℓ = ½r²), ``noise``
    :math:`C_* = \mathrm{Var}_i\,\ell_i'(w_*)` (one sample), ``variance`` the exact discrete
    stationary variance V of the linearised chain (:func:`symsgd.stationary`), ``temperature``
    :math:`T = H_*V` (discrete) and ``sde_temperature`` :math:`\lambda C_*/(2S)`."""

    minimum: float
    top: float
    minimum_loss: float
    barrier: float
    hessian: float
    gauss_newton: float
    noise: float
    variance: float
    temperature: float
    sde_temperature: float
    steps: dict


def _residual(model):
    """r with ℓ = ½r² (for the Gauss–Newton matrix), or ``NotImplementedError``."""
    twice = sp.factor(2 * model.loss_expr)
    if isinstance(twice, sp.Pow) and twice.exp == 2:
        return twice.base
    if isinstance(twice, sp.Mul):
        coeff, rest = twice.as_coeff_Mul()
        if isinstance(rest, sp.Pow) and rest.exp == 2 and coeff > 0:
            return sp.sqrt(coeff) * rest.base
    raise NotImplementedError(
        f"barrier_theories: the Gauss–Newton matrix needs a squared loss ½r²; got "
        f"{sp.sstr(model.loss_expr)}."
    )


def barrier_theories(model, theta_star, top, lr: float, batch_size: int) -> BarrierTheories:
    r"""The mean escape time of SGD (learning rate ``lr``, minibatches of ``batch_size`` drawn
    with replacement) from the minimum ``theta_star`` of the one-parameter ``model`` (an
    :class:`~symsgd.EmpiricalLoss` with a squared per-sample loss ½r²) over the barrier top
    ``top``, by five SDEs :math:`dw = -L'dt + \sqrt{D}\,dW` (t = λ·steps) on the *real* loss
    L, which differ only in D:

    * ``"mori (Hessian)"`` — Mori et al.'s decoupling :math:`D = 2\lambda L(w)H_*/S` with the
      Hessian, as they write it; stationary law :math:`L^{-1-S/(\lambda H_*)}`, escape
      :math:`\propto(L_s/L_*)^{S/(\lambda H_*) + 1/2}` (in 1-D);
    * ``"mori (Gauss–Newton)"`` — the same with :math:`G_*`, the matrix the decoupling
      :math:`\mathrm{Var}\,\ell_i' \approx 2L\,\overline{(r_i')^2}` is really about;
    * ``"exact-noise SDE"`` — :math:`D = \lambda\,\mathrm{Var}_i\ell_i'(w)/S` from the data at
      every w (it collapses near the top, where the per-sample slopes agree);
    * ``"arrhenius (SDE temperature)"`` — constant :math:`D = \lambda C_*/S`, the noise at the
      minimum: :math:`\ln\mathbb E\tau\approx\Delta L/T`, :math:`T = \lambda C_*/(2S)`;
    * ``"arrhenius (discrete temperature)"`` — constant :math:`D = 2H_*V` with V the exact
      discrete-time stationary variance: the same law with :math:`T = H_*V`, the temperature
      of the real chain at the minimum.

    Curvatures: the drift always uses the real loss (hence the Hessian at the minimum, and
    the negative Hessian at the top); the decoupled noise uses :math:`H_*` or :math:`G_*`;
    the discrete temperature uses :math:`H_*` (through V, which the library computes from the
    per-sample Hessians :math:`H_i`).  For squared losses :math:`H = G + \overline{r\,r''}`,
    so they coincide only where the mean curvature of the residual is orthogonal to it.

    >>> import symsgd as ss
    >>> m = shifted_double_well(1.0)
    >>> t = barrier_theories(m, m.minimum(start=[1.0]), 0.0, 0.1, 1)
    >>> round(t.hessian, 9), round(t.gauss_newton, 9), round(t.barrier, 9)
    (4.0, 4.36, 0.5)
    >>> {k: round(v) for k, v in t.steps.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'mori (Hessian)': 52, 'mori (Gauss–Newton)': 45, 'exact-noise SDE': 3813,
     'arrhenius (SDE temperature)': 75, 'arrhenius (discrete temperature)': 31}
    """
    from ._stationary import stationary
    from .models import EmpiricalLoss
    from .noise import MinibatchNoise
    from .optimizers import SGD

    if not isinstance(model, EmpiricalLoss) or model.dim != 1:
        raise NotImplementedError(
            f"barrier_theories covers one-parameter models (an ss.EmpiricalLoss with d = 1); "
            f"got {model!r}."
        )
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(
            f"barrier_theories: batch_size must be an integer ≥ 1; got {batch_size!r}."
        )
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"barrier_theories: lr must be a number > 0; got {lr!r}.")
    w_star, w_top = float(_point(theta_star)[0]), float(_point(top)[0])
    S = batch_size
    X = model.data_array()
    columns = [X[None, :, j] for j in range(X.shape[1])]
    compiled = model.compiled()
    r_prime = sp.lambdify(
        [*model.params, *model.inputs], sp.diff(_residual(model), model.params[0]), "numpy"
    )

    def per_sample(w: np.ndarray) -> np.ndarray:  # ℓ_i'(w), shape (len(w), N)
        return np.broadcast_to(
            np.asarray(compiled.gradient(w[:, None], *columns)[0], float), (w.size, X.shape[0])
        )

    def loss(w):
        w = np.atleast_1d(np.asarray(w, float))
        return np.broadcast_to(compiled.loss(w[:, None], *columns), (w.size, X.shape[0])).mean(1)

    def grad(w):
        return per_sample(np.atleast_1d(np.asarray(w, float))).mean(axis=1)

    def variance(w):
        return per_sample(np.atleast_1d(np.asarray(w, float))).var(axis=1)

    star_loss = float(loss(w_star)[0])
    H = float(model.hessian([w_star])[0, 0])
    G = float(
        np.mean(
            np.broadcast_to(r_prime(w_star, *(X[:, j] for j in range(X.shape[1]))), X.shape[0]) ** 2
        )
    )
    C = float(variance(w_star)[0])
    result = stationary(SGD(sp.nsimplify(lr)), model.near(theta_star), MinibatchNoise(S))
    cov = result.cov
    V = float(sp.Matrix(cov)[0, 0] if isinstance(cov, sp.MatrixBase) else cov)
    T = H * V
    diffusions = {
        "mori (Hessian)": lambda w: lr * 2 * loss(w) * H / S,
        "mori (Gauss–Newton)": lambda w: lr * 2 * loss(w) * G / S,
        "exact-noise SDE": lambda w: lr * variance(w) / S,
        "arrhenius (SDE temperature)": lambda w: lr * C / S + 0 * np.asarray(w, float),
        "arrhenius (discrete temperature)": lambda w: 2 * T + 0 * np.asarray(w, float),
    }
    steps = {
        name: sde_escape_time(grad, D, w_star, w_top, lr).steps for name, D in diffusions.items()
    }
    return BarrierTheories(
        minimum=w_star,
        top=w_top,
        minimum_loss=star_loss,
        barrier=float(loss(w_top)[0]) - star_loss,
        hessian=H,
        gauss_newton=G,
        noise=C,
        variance=V,
        temperature=T,
        sde_temperature=lr * C / (2 * S),
        steps=steps,
    )
