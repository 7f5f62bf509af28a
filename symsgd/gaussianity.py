r"""How Gaussian is the minibatch gradient?  Two different distributions, two different answers.

**At a fixed θ** (:func:`noise_law`, :class:`NoiseLawAtFixedTheta`) the minibatch gradient
:math:`\hat g(\theta) = \frac1S\sum_{i\in\text{batch}}\nabla\ell_i(\theta)` is an average of S
draws, so by the central limit theorem it is *Gaussian as S → ∞*; this module gives its exact
law at every S: exact cumulants, the exact cdf, the exact Kolmogorov distance to the
moment-matched normal and the Berry–Esseen bound.  The distance falls like :math:`1/S` at the
minimum (with label noise the law is symmetric there, so the skewness vanishes) and like
:math:`1/\sqrt S` away from it.

**Pooled over the stationary law of θ** (:func:`pooled_noise`, :class:`PooledNoiseLaw`): the
noise an experiment records along an SGD run, :math:`\xi_t = \hat g_t(\theta_t) - \nabla
L(\theta_t)` with :math:`\theta_t` drawn from the stationary law.  It is a *scale mixture* over
θ, and its tail index equals the iterates' (Breiman's lemma), so it is *heavy-tailed* whenever
the iterates are — at every batch size.  "Gaussian by the CLT" and "heavy-tailed" are both
true, of these two different distributions.  Exact and symbolic for scalar online SGD; for
d > 1, finite data sets (with or without replacement) and heavy-ball momentum
(:func:`pooled_noise_moments`, :class:`PooledNoiseMoments`) the exact second moment, the exact
fourth moment where the stationary fourth moments exist, the kurtosis of any projection
:math:`u^\top\xi`, and the iterates' tail index, in float64.

:func:`langevin` compares heavy-ball momentum with its Langevin (underdamped SDE) picture.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import sympy as sp
from scipy import integrate, optimize, special

from ._continuous import LangevinComparison, langevin
from .landscapes import LinearRegression, SampledLandscape
from .noise import MinibatchNoise

__all__ = [
    "BERRY_ESSEEN_CONSTANT",
    "MAX_ENUMERATION",
    "LangevinComparison",
    "NoiseLawAtFixedTheta",
    "PooledNoiseLaw",
    "PooledNoiseMoments",
    "finite_population_cumulants",
    "langevin",
    "noise_law",
    "pooled_noise",
    "pooled_noise_moments",
]

#: the constant of the i.i.d. Berry–Esseen bound :math:`\sup_x|F_S - \Phi| \le
#: C\rho/(\sigma^3\sqrt S)` (Shevtsova 2011: C ≤ 0.4748)
BERRY_ESSEEN_CONSTANT = 0.4748
#: a finite data set whose distinct minibatches are at most this many has its cdf enumerated
MAX_ENUMERATION = 200_000
#: absolute error asked of the quadratures of the exact cdf
CDF_TOLERANCE = 1e-11

FIXED_THETA_SCOPE = (
    "fixed θ (conditional on θ): the law of one minibatch gradient at a given point; "
    "Gaussian as S → ∞ by the CLT"
)
POOLED_SCOPE = (
    "pooled over the stationary law of θ (what a recorded SGD run shows): a scale mixture over "
    "θ whose tail index equals the iterates' (Breiman) — heavy-tailed at every batch size "
    "whenever the iterates are"
)


# ---------------------------------------------------------------------------------------------
# finite populations: exact cumulants of the sampling design
# ---------------------------------------------------------------------------------------------


def _set_partitions(items: list) -> list[list[list]]:
    """All set partitions of ``items``."""
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for part in _set_partitions(rest):
        out.append([[first], *part])
        for k in range(len(part)):
            out.append([*part[:k], [first, *part[k]], *part[k + 1 :]])
    return out


def _falling(x, k: int):
    out = sp.S.One
    for j in range(k):
        out *= x - j
    return out


def _cumulants_from_moments(moments: list) -> list:
    """Raw moments m_1..m_n -> cumulants κ_1..κ_n (:math:`\\kappa_n = m_n -
    \\sum_{k<n}\\binom{n-1}{k-1}\\kappa_km_{n-k}`)."""
    kappa: list = []
    for n in range(1, len(moments) + 1):
        value = moments[n - 1]
        for k in range(1, n):
            value -= math.comb(n - 1, k - 1) * kappa[k - 1] * moments[n - k - 1]
        kappa.append(sp.expand(value))
    return kappa


def finite_population_cumulants(
    values: Sequence, batch_size, replacement: bool, order: int = 4
) -> list[sp.Expr]:
    r"""Exact cumulants :math:`\kappa_1, …, \kappa_{\text{order}}` of the mean
    :math:`\bar v_B = \frac1S\sum_in_iv_i` of a minibatch of size S drawn from the finite
    population ``values`` :math:`v_1, …, v_N` (exact sympy arithmetic; S may be a symbol).

    *With replacement* the S draws are i.i.d. uniform over the population, so
    :math:`\kappa_n(\bar v_B) = k_n/S^{n-1}` with :math:`k_n` the cumulants of the uniform law
    on the values.

    *Without replacement* the batch counts :math:`n_i\in\{0,1\}` are exchangeable with
    :math:`\mathbb E[n_{i_1}\cdots n_{i_m}] = (S)_m/(N)_m` for m *distinct* indices
    (falling factorials).  Writing :math:`w_i = v_i - \bar v` and :math:`T = \sum_in_iw_i`,
    expanding :math:`T^r` and grouping the r index slots by which of them coincide (a set
    partition π of the slots into m blocks of sizes :math:`b_1…b_m`):

    .. math:: \mathbb E T^r = \sum_\pi \frac{(S)_m}{(N)_m}\,D(b_1, …, b_m),\qquad
              D(b) = \sum_{i_1,…,i_m\ \text{distinct}}\prod_j w_{i_j}^{b_j}
              = \sum_{\sigma}\prod_{C\in\sigma}(-1)^{|C|-1}(|C|-1)!\;p_{\sum_{j\in C}b_j},

    the last step Möbius inversion on the partitions σ of the m blocks
    (:math:`p_k = \sum_iw_i^k`).  The cumulants of T follow from its moments, and
    :math:`\kappa_n(\bar v_B) = \kappa_n(T)/S^n` for n ≥ 2, :math:`\kappa_1 = \bar v`.
    The second cumulant is the familiar :math:`\frac{N-S}{N-1}\frac{k_2}S`; the higher ones are
    not that factor times the i.i.d. ones (at S = N every cumulant beyond the first vanishes).

    >>> finite_population_cumulants([0, 0, 3], 2, replacement=False)
    [1, 1/2, -1/4, -3/8]
    >>> finite_population_cumulants([0, 0, 3], 2, replacement=True)
    [1, 1, 1/2, -3/4]
    """
    if not (isinstance(order, int) and order >= 1):
        raise ValueError(
            f"finite_population_cumulants: order must be an integer ≥ 1; got {order!r}."
        )
    v = [sp.nsimplify(x) if isinstance(x, int) else sp.sympify(x) for x in values]
    N = len(v)
    if N == 0:
        raise ValueError("finite_population_cumulants: the population is empty.")
    S = sp.sympify(batch_size)
    mean = sp.Add(*v) / N
    w = [x - mean for x in v]
    p = {k: sp.expand(sp.Add(*[x**k for x in w])) for k in range(1, order + 1)}
    if replacement:
        central = [sp.S.Zero] + [p[k] / N for k in range(2, order + 1)]
        kappa = _cumulants_from_moments(central)
        return [sp.simplify(mean)] + [
            sp.factor(kappa[n - 1] / S ** (n - 1)) for n in range(2, order + 1)
        ]
    if S.is_number and S > N:
        raise ValueError(f"without replacement the batch (S = {S}) cannot exceed N = {N}.")

    def distinct(blocks: tuple) -> sp.Expr:
        total = sp.S.Zero
        for sigma in _set_partitions(list(range(len(blocks)))):
            term = sp.S.One
            for C in sigma:
                term *= (-1) ** (len(C) - 1) * math.factorial(len(C) - 1)
                term *= p[sum(blocks[j] for j in C)]
            total += term
        return total

    moments = []
    for r in range(1, order + 1):
        total = sp.S.Zero
        for pi in _set_partitions(list(range(r))):
            m = len(pi)
            if m > N:  # more distinct indices than samples: no such term
                continue
            total += _falling(S, m) / _falling(N, m) * distinct(tuple(len(B) for B in pi))
        moments.append(sp.factor(total))
    kappa = _cumulants_from_moments(moments)
    return [sp.simplify(mean)] + [sp.factor(kappa[n - 1] / S**n) for n in range(2, order + 1)]


# ---------------------------------------------------------------------------------------------
# the law at a fixed θ
# ---------------------------------------------------------------------------------------------


def _edgeworth(z: np.ndarray, g1: float, g2: float) -> np.ndarray:
    """Second-order Edgeworth cdf of a standardised law with skewness g1, excess kurtosis g2."""
    phi = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    he2, he3, he5 = z * z - 1, z**3 - 3 * z, z**5 - 10 * z**3 + 15 * z
    return special.ndtr(z) - phi * (g1 / 6 * he2 + g2 / 24 * he3 + g1 * g1 / 72 * he5)


def _abs_third_gauss(a: float, k: float) -> float:
    r""":math:`\mathbb E|aZ^2 + k|^3`, Z ~ N(0, 1), in closed form (truncated Gaussian moments
    :math:`\int_{-r}^rz^{2m}\varphi = (2m-1)I_{2m-2} - 2r^{2m-1}\varphi(r)`)."""
    if a < 0:
        a, k = -a, -k
    coeffs = (k**3, 3 * a * k * k, 3 * a * a * k, a**3)  # of z^0, z^2, z^4, z^6
    full = sum(c * _double_factorial(2 * m - 1) for m, c in enumerate(coeffs))
    if a == 0 or k >= 0:
        return abs(full)
    r = math.sqrt(-k / a)
    phi = math.exp(-r * r / 2) / math.sqrt(2 * math.pi)
    inner = [math.erf(r / math.sqrt(2))]
    for m in range(1, 4):
        inner.append((2 * m - 1) * inner[-1] - 2 * r ** (2 * m - 1) * phi)
    negative = sum(c * inner[m] for m, c in enumerate(coeffs))
    return full - 2 * negative


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


@dataclass(frozen=True, eq=False)
class NoiseLawAtFixedTheta:
    r"""The exact law of one projected minibatch gradient :math:`u^\top\hat g(\theta)` **at a
    fixed θ** (see :func:`noise_law`; the *pooled* law along a run is :func:`pooled_noise`).

    ``cumulants`` are exact sympy expressions :math:`\kappa_1 … \kappa_4` (κ₁ the mean
    :math:`u^\top\nabla L(\theta)`); ``design`` is ``"gaussian"``, ``"with replacement"`` or
    ``"without replacement"``; ``weights`` the two eigenvalues :math:`(q_+, q_-)` of the
    Gaussian form (else None); ``values`` the per-sample projections :math:`u^\top\nabla\ell_i`
    of a data set (else None).  Numeric methods (:meth:`cdf`, :meth:`kolmogorov`,
    :meth:`berry_esseen`) need every parameter to be a number.
    """

    cumulants: tuple
    design: str
    batch_size: sp.Expr
    weights: tuple | None = None
    values: tuple | None = None
    scope: str = FIXED_THETA_SCOPE

    # -- exact moments ----------------------------------------------------------------------
    @property
    def mean(self) -> sp.Expr:
        return self.cumulants[0]

    @property
    def variance(self) -> sp.Expr:
        return self.cumulants[1]

    @property
    def skewness(self) -> sp.Expr:
        r""":math:`\kappa_3/\kappa_2^{3/2}`."""
        return sp.simplify(self.cumulants[2] / self.cumulants[1] ** sp.Rational(3, 2))

    @property
    def excess_kurtosis(self) -> sp.Expr:
        r""":math:`\kappa_4/\kappa_2^2` (0 for a Gaussian)."""
        return sp.simplify(self.cumulants[3] / self.cumulants[1] ** 2)

    def cumulant(self, n: int) -> sp.Expr:
        r"""The exact n-th cumulant (any n ≥ 1)."""
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"cumulant(n): n must be an integer ≥ 1; got {n!r}.")
        if n <= len(self.cumulants):
            return self.cumulants[n - 1]
        S = self.batch_size
        if self.weights is not None:
            return _gaussian_cumulant(self.weights, S, n)
        return finite_population_cumulants(
            self.values, S, self.design == "with replacement", order=n
        )[n - 1]

    # -- numbers ----------------------------------------------------------------------------
    @cached_property
    def _floats(self) -> tuple[float, float, float, float]:
        try:
            out = tuple(float(k) for k in self.cumulants[:4])
        except TypeError:
            names = sorted(
                map(str, set().union(*(sp.sympify(k).free_symbols for k in self.cumulants)))
            )
            raise ValueError(
                f"this numeric readout needs a value for every parameter; the law still holds "
                f"{', '.join(names)} (substitute numbers in the landscape, the noise or at=)."
            ) from None
        if not out[1] > 0:
            raise ValueError(
                "the minibatch gradient has zero variance at this θ (no label noise at the "
                "minimum, or a single possible batch): its law is a point mass, with no normal "
                "approximation to compare."
            )
        return out

    @property
    def _S(self) -> int:
        S = self.batch_size
        if not (S.is_Integer and S >= 1):
            raise ValueError(f"this numeric readout needs a numeric batch size; got S = {S}.")
        return int(S)

    @cached_property
    def _atoms(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(sorted batch means, probabilities) of a small finite design, else None."""
        if self.values is None:
            return None
        v = np.array([float(x) for x in self.values])
        N, S = len(v), self._S
        if self.design == "with replacement":
            count = math.comb(N + S - 1, S)
            if count > MAX_ENUMERATION:
                return None
            means, probs = [], []
            log_total = S * math.log(N)
            for batch in itertools.combinations_with_replacement(range(N), S):
                counts = np.bincount(batch, minlength=N)
                log_w = math.lgamma(S + 1) - sum(math.lgamma(c + 1) for c in counts if c)
                means.append(v[list(batch)].mean())
                probs.append(math.exp(log_w - log_total))
        else:
            count = math.comb(N, S)
            if count > MAX_ENUMERATION:
                return None
            means = [v[list(b)].mean() for b in itertools.combinations(range(N), S)]
            probs = [1.0 / count] * count
        order = np.argsort(means, kind="stable")
        return np.asarray(means)[order], np.asarray(probs)[order]

    @property
    def cdf_method(self) -> str:
        """How :meth:`cdf` is computed."""
        if self.weights is not None:
            return "exact (generalised chi-square: one quadrature over a χ²_S density)"
        if self._atoms is not None:
            return "exact (every minibatch enumerated)"
        return (
            "approximate: second-order Edgeworth expansion from the exact cumulants (too many "
            f"minibatches to enumerate, > {MAX_ENUMERATION}; it ignores the discreteness of "
            "the law, whose jumps are of order its largest atom)"
        )

    def cdf(self, x) -> float | np.ndarray:
        r""":math:`P(u^\top\hat g \le x)` (see :attr:`cdf_method`).

        Gaussian inputs: :math:`u^\top\hat g = (q_+G_+ + q_-G_-)/S` with independent
        :math:`G_\pm\sim\chi^2_S`, so :math:`P(\cdot\le x) = \mathbb
        E_{G_-}\bigl[F_{\chi^2_S}((Sx - q_-G_-)/q_+)\bigr]`, one adaptive quadrature."""
        scalar = np.ndim(x) == 0
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        k1, k2, k3, k4 = self._floats
        if self.weights is not None:
            out = self._gaussian_cdf(xs)
        elif self._atoms is not None:
            means, probs = self._atoms
            cum = np.cumsum(probs)
            idx = np.searchsorted(means, xs, side="right")
            out = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)
            out = np.minimum(out, 1.0)
        else:
            z = (xs - k1) / math.sqrt(k2)
            out = _edgeworth(z, k3 / k2**1.5, k4 / k2**2)
        return float(out[0]) if scalar else out

    def _gaussian_cdf(self, xs: np.ndarray) -> np.ndarray:
        r"""The exact cdf of :math:`(q_+G_+ + q_-G_-)/S` at every entry of ``xs``, by one
        vector-valued adaptive quadrature (:func:`scipy.integrate.quad_vec`, absolute error
        :data:`CDF_TOLERANCE`):

        * S = 1: polar coordinates :math:`(Z_1, Z_2) = R(\cos\phi, \sin\phi)`,
          :math:`R^2\sim\chi^2_2` (exponential), :math:`Y = R^2c(\phi)`,
          :math:`c = q_+\cos^2\phi + q_-\sin^2\phi`, so :math:`P(Y\le x) = \frac2\pi
          \int_0^{\pi/2}P(R^2c(\phi)\le x)\,d\phi` with a smooth integrand;
        * S ≥ 2: :math:`P = \mathbb E_{G_-}[F_{\chi^2_S}((Sx - q_-G_-)/q_+)]` with
          :math:`G_- = s^2`, whose density in s, :math:`\propto s^{S-1}e^{-s^2/2}`, is smooth.
        """
        qp, qm = (float(q) for q in self.weights)
        S = self._S
        xs = np.asarray(xs, dtype=float)
        if qm == 0:
            return special.chdtr(S, np.maximum(S * xs / qp, 0.0))
        if qp == 0:
            return special.chdtrc(S, np.maximum(S * xs / qm, 0.0))
        if S == 1:

            def polar(phi):
                c = qp * math.cos(phi) ** 2 + qm * math.sin(phi) ** 2
                if c == 0:
                    return (xs >= 0).astype(float)
                r = xs / c
                if c > 0:
                    return np.where(r > 0, -np.expm1(-np.maximum(r, 0) / 2), 0.0)
                return np.where(r > 0, np.exp(-np.maximum(r, 0) / 2), 1.0)

            edge = math.atan(math.sqrt(qp / -qm))  # c(φ) = 0
            value, err = integrate.quad_vec(
                polar,
                0,
                math.pi / 2,
                points=[edge],
                epsabs=CDF_TOLERANCE,
                epsrel=0,
                norm="max",
                limit=2000,
            )
            value = value * 2 / math.pi
            err = err * 2 / math.pi
        else:
            b = -qm
            lo = math.sqrt(max(0.0, S - 60 * math.sqrt(2 * S) - 60))
            hi = math.sqrt(S + 60 * math.sqrt(2 * S) + 60)
            log_norm = special.gammaln(S / 2) + (S / 2) * math.log(2) - math.log(2)
            # the inner cdf vanishes below s₀(x) = √(−Sx/b) with a kink there: map [s₀, hi]
            # onto [0, 1] for every x, so that each kink sits at an end point
            s0 = np.clip(np.sqrt(np.maximum(-S * xs / b, 0.0)), lo, hi)
            width = hi - s0

            def integrand(tau):
                s = s0 + width * tau
                density = np.exp((S - 1) * np.log(np.maximum(s, 1e-300)) - s * s / 2 - log_norm)
                inner = special.chdtr(S, np.maximum((S * xs + b * s * s) / qp, 0.0))
                return width * density * inner

            value, err = integrate.quad_vec(
                integrand, 0.0, 1.0, epsabs=CDF_TOLERANCE, epsrel=0, norm="max", limit=2000
            )
        if not err < 1e-9:
            raise ArithmeticError(
                f"noise_law: the cdf quadrature did not converge (error {err:.2g})."
            )
        return np.clip(value, 0.0, 1.0)

    def kolmogorov(self) -> float:
        r"""The Kolmogorov distance :math:`\sup_x|F(x) - \Phi((x-\kappa_1)/\sqrt{\kappa_2})|` to
        the moment-matched normal (exact for the Gaussian form and for an enumerated design: the
        sup over the atoms, both sides of each jump; otherwise from the Edgeworth cdf).

        Why the two rates: for a law with a density the Edgeworth expansion gives
        :math:`F - \Phi = -\varphi(z)[\tfrac{\gamma_1}6He_2(z) + \tfrac{\gamma_2}{24}He_3(z)] +
        O(S^{-3/2})` with :math:`\gamma_1\propto S^{-1/2}`, :math:`\gamma_2\propto S^{-1}`.  Away
        from the minimum :math:`\gamma_1\ne0` and the distance is
        :math:`|\gamma_1|/(6\sqrt{2\pi}) + O(1/S)`; at the minimum with label noise
        :math:`q_- = -q_+`, the law is symmetric, every odd cumulant vanishes and the distance is
        :math:`O(\gamma_2) = O(1/S)`."""
        k1, k2, _k3, _k4 = self._floats
        sd = math.sqrt(k2)
        if self._atoms is not None and self.weights is None:
            means, probs = self._atoms
            cum = np.cumsum(probs)
            below = cum - probs
            Phi = special.ndtr((means - k1) / sd)
            return float(max(np.max(np.abs(cum - Phi)), np.max(np.abs(below - Phi))))

        def gap(z: float) -> float:
            return float(self.cdf(k1 + sd * z)) - float(special.ndtr(z))

        grid = np.linspace(-8, 8, 321)
        values = self.cdf(k1 + sd * grid) - special.ndtr(grid)
        best = float(np.max(np.abs(values)))
        for i in np.argsort(-np.abs(values))[:4]:
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            sign = 1.0 if values[i] >= 0 else -1.0
            found = optimize.minimize_scalar(
                lambda z, s=sign: -s * gap(z),
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-7},
            )
            best = max(best, abs(float(found.fun)))
        return best

    def third_absolute_moment(self) -> float | None:
        r""":math:`\rho = \mathbb E|X - \mathbb EX|^3` of *one* draw X (one sample's projected
        gradient): closed-form Gaussian moments integrated over the second χ² factor, or the
        finite sum over the data set; None without replacement (the draws are dependent)."""
        _ = self._floats  # refuses symbols and a point mass
        if self.weights is not None:
            qp, qm = (float(q) for q in self.weights)

            def outer(z):
                return _abs_third_gauss(qp, qm * (z * z - 1) - qp) * math.exp(-z * z / 2)

            value, _err = integrate.quad(outer, -12, 12, limit=400, points=[-1, 0, 1])
            return value / math.sqrt(2 * math.pi)
        if self.design == "with replacement":
            v = np.array([float(x) for x in self.values])
            return float(np.mean(np.abs(v - v.mean()) ** 3))
        return None

    def berry_esseen(self) -> float | None:
        r"""The Berry–Esseen bound :math:`C\rho/(\sigma_1^3\sqrt S)` on :meth:`kolmogorov`
        (:data:`BERRY_ESSEEN_CONSTANT`, i.i.d. draws: Gaussian inputs or sampling with
        replacement; σ₁² = S κ₂ the one-draw variance).  None without replacement: no bound
        with a proven explicit constant is used here."""
        rho = self.third_absolute_moment()
        if rho is None:
            return None
        S = self._S
        sigma1 = math.sqrt(self._floats[1] * S)
        return BERRY_ESSEEN_CONSTANT * rho / (sigma1**3 * math.sqrt(S))

    def __repr__(self) -> str:
        return (
            f"NoiseLawAtFixedTheta(design={self.design!r}, S={self.batch_size}, "
            f"mean={self.mean}, variance={self.variance})"
        )


def _gaussian_cumulant(weights: tuple, S, n: int) -> sp.Expr:
    qp, qm = weights
    return sp.simplify(2 ** (n - 1) * sp.factorial(n - 1) * (qp**n + qm**n) / S ** (n - 1))


def _vector(value, d: int, name: str) -> sp.Matrix:
    if isinstance(value, sp.MatrixBase):
        entries = list(value)
    elif isinstance(value, (list, tuple, np.ndarray)):
        entries = list(np.asarray(value, dtype=object).reshape(-1))
    else:
        entries = [value]
    if len(entries) != d:
        raise ValueError(
            f"noise_law: {name} must have {d} entries (the dimension); got {len(entries)}."
        )
    out = []
    for e in entries:
        try:
            s = sp.nsimplify(e) if isinstance(e, int) else sp.sympify(e)
        except (sp.SympifyError, TypeError):
            raise TypeError(
                f"noise_law: {name} entries must be numbers or sympy expressions; got {e!r}."
            ) from None
        if s.is_real is False or s.has(sp.nan, sp.oo, -sp.oo, sp.zoo):
            raise ValueError(f"noise_law: {name} entries must be finite and real; got {e!r}.")
        out.append(s)
    return sp.Matrix(out)


def noise_law(landscape, noise, at, direction=None) -> NoiseLawAtFixedTheta:
    r"""The exact law of the projected minibatch gradient :math:`u^\top\hat g(\theta)` **at the
    fixed point** θ = ``at`` (absolute parameters), u = ``direction`` (default 1 for one
    parameter).  This is the *conditional* law given θ — Gaussian as S → ∞ by the CLT; the law
    pooled along a run is :func:`pooled_noise`, a different distribution.

    **Gaussian inputs** (``LinearRegression(A, label_variance=σ²)``, fresh samples): one sample
    gives :math:`u^\top x(x^\top\delta - \epsilon)`, δ = θ − θ*.  With
    :math:`w = (x, \epsilon)\sim N(0, \Omega)`, :math:`\Omega = \operatorname{diag}(A, \sigma^2)`,
    this is the quadratic form :math:`w^\top Kw`, :math:`K = \tfrac12(ab^\top + ba^\top)`,
    :math:`a = (u, 0)`, :math:`b = (\delta, -1)`; with :math:`w = \Omega^{1/2}z` it is
    :math:`z^\top Qz`, :math:`Q = \Omega^{1/2}K\Omega^{1/2}`.  Its moment-generating function is
    :math:`\det(I - 2tQ)^{-1/2}`, so :math:`\log\mathbb Ee^{tz^\top Qz} = \tfrac12\sum_n
    (2t)^n\operatorname{Tr}(Q^n)/n` and the cumulants are :math:`2^{n-1}(n-1)!\operatorname{Tr}
    (Q^n)`; the mean of S i.i.d. copies divides the n-th cumulant by :math:`S^{n-1}`:

    .. math:: \kappa_n = 2^{n-1}(n-1)!\,\operatorname{Tr}(Q^n)/S^{n-1},
              \qquad \operatorname{Tr}(Q^n) = \operatorname{Tr}((K\Omega)^n) = q_+^n + q_-^n.

    K has rank 2, and the nonzero eigenvalues of :math:`K\Omega` are
    :math:`q_\pm = \tfrac12\bigl(u^\top A\delta \pm \sqrt{u^\top Au\,(\delta^\top A\delta +
    \sigma^2)}\bigr)`, so :math:`u^\top\hat g = (q_+G_+ + q_-G_-)/S` with independent
    :math:`G_\pm\sim\chi^2_S` (a generalised chi-square; exact cdf by one quadrature).  At the
    minimum (δ = 0) :math:`q_- = -q_+`: the law is symmetric and every odd cumulant vanishes.

    **A finite data set** (``LinearRegression.from_data`` or ``EmpiricalLoss(...).near(θ*)``;
    for the latter the per-sample gradients are the local, linearised ones
    :math:`X_i\delta - c_i`): the law of the batch mean of the N per-sample projections under
    the sampling design — exact cumulants from :func:`finite_population_cumulants`, the exact
    cdf by enumerating the minibatches (at most :data:`MAX_ENUMERATION`), else an Edgeworth
    approximation (see :attr:`NoiseLawAtFixedTheta.cdf_method`).

    >>> import sympy as sp, symsgd as ss
    >>> law = noise_law(ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(4), at=0)
    >>> law.cumulants, law.skewness, law.excess_kurtosis  # symmetric at the minimum
    ((0, 1/4, 0, 3/32), 0, 3/2)
    >>> away = noise_law(ss.LinearRegression(1, label_variance=1), ss.MinibatchNoise(4), at=1)
    >>> away.cumulants, away.weights
    ((1, 3/4, 7/8, 51/32), (1/2 + sqrt(2)/2, 1/2 - sqrt(2)/2))
    >>> round(law.kolmogorov(), 5), round(away.kolmogorov(), 5)  # 1/S and 1/√S regimes
    (0.03331, 0.09028)
    """
    if not isinstance(landscape, SampledLandscape):
        raise TypeError(
            "noise_law needs a landscape with per-sample gradients: LinearRegression(A, "
            "label_variance=σ²), LinearRegression.from_data(X, y) or EmpiricalLoss(...).near(θ*); "
            f"got {type(landscape).__name__}."
        )
    if not isinstance(noise, MinibatchNoise):
        raise TypeError(
            f"noise_law needs MinibatchNoise(batch_size, ...); got {type(noise).__name__}."
        )
    if landscape.eigenmode:
        raise ValueError(
            "noise_law needs an explicit landscape, not an eigen-mode one (the law of one mode's "
            "gradient depends on all the others); pass LinearRegression(sp.diag(...), ...)."
        )
    N = noise.resolved_dataset_size(landscape)
    d = landscape.dim
    theta = _vector(at, d, "at")
    if direction is None:
        if d != 1:
            raise ValueError(
                f"noise_law: give direction= (a vector with {d} entries) for a {d}-parameter "
                "problem: the law is that of the projection u·ĝ."
            )
        u = sp.Matrix([1])
    else:
        u = _vector(direction, d, "direction")
        if all(e == 0 for e in u):
            raise ValueError("noise_law: direction must be a nonzero vector.")
    S = noise.batch_size
    delta = theta - sp.Matrix(landscape.theta_star)
    if N is sp.oo:
        A = sp.Matrix(landscape.A)
        s2 = landscape.label_variance
        uAd = (u.T * A * delta)[0, 0]
        uAu = (u.T * A * u)[0, 0]
        dAd = (delta.T * A * delta)[0, 0]
        root = sp.sqrt(uAu * (dAd + s2))
        weights = (sp.simplify((uAd + root) / 2), sp.simplify((uAd - root) / 2))
        cumulants = tuple(_gaussian_cumulant(weights, S, n) for n in range(1, 5))
        return NoiseLawAtFixedTheta(cumulants, "gaussian", S, weights=weights)
    terms = landscape.sample_terms(0)
    values = tuple(sp.expand((u.T * (sp.Matrix(X) * delta - sp.Matrix(c)))[0, 0]) for X, c in terms)
    cumulants = tuple(finite_population_cumulants(values, S, noise.replacement, order=4))
    design = "with replacement" if noise.replacement else "without replacement"
    return NoiseLawAtFixedTheta(cumulants, design, S, values=values)


# ---------------------------------------------------------------------------------------------
# the law pooled over the stationary law of θ
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PooledNoiseLaw:
    r"""The gradient noise :math:`\xi = \hat g(\theta) - \nabla L(\theta)` **pooled over the
    stationary law of θ** (:func:`pooled_noise`) — not the law at a fixed θ
    (:class:`NoiseLawAtFixedTheta`).

    ``second_moment`` :math:`\mathbb E\xi^2`, ``fourth_moment`` :math:`\mathbb E\xi^4` and
    ``kurtosis`` :math:`\mathbb E\xi^4/(\mathbb E\xi^2)^2` are exact (sympy);
    ``theta_moments`` the exact stationary raw moments :math:`\mathbb E u^r`, r = 1…4, of
    u = θ − θ*; ``conditional_second``/``conditional_fourth`` the fixed-θ moments as
    polynomials in the symbol ``u``; ``kurtosis_at_minimum`` the fixed-θ kurtosis at the
    minimiser, for contrast; ``tail_index`` the iterates' tail index α (a
    :class:`symsgd.tails.TailIndex`, or None when parameters are left symbolic), which is
    also the pooled noise's (Breiman); ``heavy_tailed`` is True when α < ∞.
    """

    second_moment: sp.Expr
    fourth_moment: sp.Expr
    kurtosis: sp.Expr
    theta_moments: tuple
    conditional_second: sp.Expr
    conditional_fourth: sp.Expr
    kurtosis_at_minimum: sp.Expr
    tail_index: object | None
    scope: str = POOLED_SCOPE
    breiman: str = field(
        default=(
            "ξ = (ĥ − a)·u − η with the minibatch (ĥ, η) independent of u ~ stationary law: a "
            "product of u with a factor having every moment finite, so P(|ξ| > t) ~ "
            "E|ĥ − a|^α·P(|u| > t) (Breiman's lemma): the pooled noise has the iterates' tail "
            "index α, while at any fixed θ every moment of ξ is finite."
        )
    )

    @property
    def heavy_tailed(self) -> bool | None:
        if self.tail_index is None or self.tail_index.alpha is None:
            return None
        return bool(math.isfinite(self.tail_index.alpha))

    def __repr__(self) -> str:
        alpha = None if self.tail_index is None else self.tail_index.alpha
        return (
            f"PooledNoiseLaw(second_moment={self.second_moment}, kurtosis={self.kurtosis}, "
            f"tail_index={alpha}; pooled over the stationary law of θ)"
        )


def _expect_chi2(poly: sp.Expr, h: sp.Symbol, a, S) -> sp.Expr:
    r"""Replace :math:`\hat h^m` by :math:`\mathbb E\hat h^m = (a/S)^m\prod_{i<m}(S+2i)`
    (:math:`\hat h = \frac aS\chi^2_S`)."""
    p = sp.Poly(sp.expand(poly), h)
    out = sp.S.Zero
    for (m,), c in p.terms():
        out += c * (a / S) ** m * sp.Mul(*[S + 2 * i for i in range(m)])
    return out


def _expect_joint(expr: sp.Expr, h, eta, a, S, s2) -> sp.Expr:
    r"""E over the minibatch of a polynomial in :math:`\hat h` and η, where given ĥ,
    :math:`\eta\sim N(0, \sigma^2\hat h/S)`."""
    p = sp.Poly(sp.expand(expr), eta)
    out = sp.S.Zero
    for (j,), c in p.terms():
        if j % 2:
            continue
        out += c * _double_factorial(j - 1) * (s2 * h / S) ** (j // 2)
    return _expect_chi2(out, h, a, S)


def pooled_noise(result, params: Mapping | None = None) -> PooledNoiseLaw | PooledNoiseMoments:
    r"""The gradient noise **pooled over the stationary law of θ**: the distribution an
    experiment records along a run, not the law at one θ (that is :func:`noise_law`).

    * SGD on one-parameter online Gaussian regression (``LinearRegression(a,
      label_variance=σ²)``, ``MinibatchNoise(S)``, weight decay γ allowed): a
      :class:`PooledNoiseLaw`, **symbolic** in every parameter left free (derived below);
    * every other case — d > 1 (any A, label noise, S, weight decay), a finite data set (with or
      without replacement), heavy-ball momentum — a :class:`PooledNoiseMoments` in float64 from
      :func:`pooled_noise_moments` (exact second moment, exact fourth moment where the
      stationary fourth moments exist, kurtosis of a projection, the iterates' tail index);
      ``NotImplementedError`` naming what is covered otherwise (additive noise, local problems
      of an EmpiricalLoss, eigen-mode landscapes).

    Derivation.  With u = θ − θ*, the minibatch curvature :math:`\hat h = \frac1S\sum x_i^2 =
    \frac aS\chi^2_S` and :math:`\eta = \frac1S\sum x_i\epsilon_i` (given ĥ,
    :math:`\eta\sim N(0,\sigma^2\hat h/S)`), the minibatch gradient is :math:`\hat h u - \eta`,
    the noise :math:`\xi = (\hat h - a)u - \eta` and the update

    .. math:: u' = Au + b,\qquad A = 1 - \lambda(\hat h + \gamma),\quad
              b = \lambda\eta - \lambda\gamma\theta_*,

    with (A, b) independent of u.  Taking expectations of :math:`u'^r` at stationarity,
    :math:`\mathbb Eu^r(1 - \mathbb EA^r) = \sum_{i<r}\binom ri\mathbb E[A^ib^{r-i}]\,\mathbb Eu^i`
    — the exact moments, r = 1…4 (finite iff :math:`\mathbb EA^r < 1` for even r).  The noise of
    the same step is independent of u too, so
    :math:`\mathbb E\xi^r = \sum_j\binom rj\mathbb E[(\hat h - a)^j(-\eta)^{r-j}]\,\mathbb Eu^j`.
    Joint moments of (ĥ, η) are χ² moments times Gaussian moments.

    ``params`` substitutes values (with :attr:`result.values`); with every parameter numeric
    the iterates' tail index (:func:`symsgd.tails.tail_index`) is attached — the pooled noise
    has the same one (Breiman; see :attr:`PooledNoiseLaw.breiman`).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(ss.batch_size))
    >>> p = pooled_noise(r, {ss.lr: sp.Rational(1, 10), a: 1, ss.batch_size: 4})
    >>> p.second_moment, p.theta_moments[1]  # E ξ² and the iterates' E u² = Var θ
    (19/74, 1/74)
    >>> p.kurtosis_at_minimum, round(float(p.kurtosis), 6)  # fixed θ* vs pooled over θ
    (9/2, 4.586226)
    >>> round(p.tail_index.alpha, 4), p.heavy_tailed  # a power law of the iterates' index
    (65.724, True)
    """
    from .optimizers import SGD

    recursion = getattr(result, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"pooled_noise() needs a result of ss.stationary(...); got {type(result).__name__}."
        )
    opt, land, nz = recursion.optimizer, recursion.landscape, recursion.noise
    if not (
        type(opt) is SGD
        and isinstance(land, LinearRegression)
        and land.data is None
        and not land.eigenmode
        and land.dim == 1
        and isinstance(nz, MinibatchNoise)
        and nz.resolved_dataset_size(land) is sp.oo
    ):
        return pooled_noise_moments(result, params)
    from ._util import field_symbols
    from .numeric import resolve_values

    symbols = field_symbols(opt) | field_symbols(land) | field_symbols(nz)
    given = {**dict(getattr(result, "values", {})), **dict(params or {})}
    values = {
        k: (sp.nsimplify(v) if isinstance(v, (int, float)) and v == int(v) else sp.sympify(v))
        for k, v in resolve_values(given, symbols).items()
    }
    lam = sp.sympify(opt.lr).xreplace(values)
    gamma = sp.sympify(opt.weight_decay).xreplace(values)
    a = sp.Matrix(land.A)[0, 0].xreplace(values)
    s2 = sp.sympify(land.label_variance).xreplace(values)
    star = sp.Matrix(land.theta_star)[0, 0].xreplace(values)
    S = sp.sympify(nz.batch_size).xreplace(values)
    h, eta, u = sp.symbols("hhat eta u", real=True)
    A = 1 - lam * (h + gamma)
    b = lam * eta - lam * gamma * star

    def joint(expr):
        return _expect_joint(expr, h, eta, a, S, s2)

    moments = [sp.S.One]
    for r in range(1, 5):
        growth = sp.factor(joint(A**r))
        if r % 2 == 0 and growth.is_number and growth >= 1:
            raise ValueError(
                f"pooled_noise(): the stationary moment E u^{r} is infinite here "
                f"(E[A^{r}] = {growth} ≥ 1): the iterates' tail index is ≤ {r}."
            )
        forcing = sum(math.comb(r, i) * joint(A**i * b ** (r - i)) * moments[i] for i in range(r))
        moments.append(sp.factor(sp.cancel(forcing / (1 - growth))))

    def pooled(r: int) -> sp.Expr:
        total = sum(
            math.comb(r, j) * joint((h - a) ** j * (-eta) ** (r - j)) * moments[j]
            for j in range(r + 1)
        )
        return sp.factor(sp.cancel(total))

    def conditional(r: int) -> sp.Expr:
        total = sum(
            math.comb(r, j) * joint((h - a) ** j * (-eta) ** (r - j)) * u**j for j in range(r + 1)
        )
        return sp.collect(sp.expand(total), u)

    second, fourth = pooled(2), pooled(4)
    c2, c4 = conditional(2), conditional(4)
    at_min = sp.factor(sp.cancel((c4 / c2**2).subs(u, 0))) if s2 != 0 else sp.nan
    tail = None
    if not (
        lam.free_symbols | a.free_symbols | s2.free_symbols | S.free_symbols | gamma.free_symbols
    ):
        from .tails import tail_index

        tail = tail_index(result, params)
    return PooledNoiseLaw(
        second_moment=second,
        fourth_moment=fourth,
        kurtosis=sp.factor(sp.cancel(fourth / second**2)),
        theta_moments=tuple(moments[1:]),
        conditional_second=c2,
        conditional_fourth=c4,
        kurtosis_at_minimum=at_min,
        tail_index=tail,
    )


# ---------------------------------------------------------------------------------------------
# the pooled law beyond scalar SGD: d > 1, finite data sets, momentum (numeric, exact)
# ---------------------------------------------------------------------------------------------

POOLED_BREIMAN_GENERAL = (
    "ξ = J(Ŵ − EŴ)R·(z, 1) with the minibatch matrix Ŵ independent of the stationary state z: "
    "a random linear image of a regularly varying vector by a factor with every moment finite, "
    "so ξ has the iterates' tail index α (multivariate Breiman), while at any fixed θ every "
    "moment of ξ is finite."
)


@dataclass(frozen=True, eq=False)
class PooledNoiseMoments:
    r"""The gradient noise :math:`\xi = \hat g_B(\theta) - \nabla L(\theta)` **pooled over the
    stationary law of θ** (:func:`pooled_noise_moments`) — not the law at a fixed θ
    (:class:`NoiseLawAtFixedTheta`, :func:`noise_law`).  Float64, exact up to rounding.

    ``second`` is :math:`\mathbb E[\xi\xi^\top]` (d×d); ``fourth`` is
    :math:`\mathbb E[\xi^{\otimes4}]` (d×d×d×d), or None with ``fourth_reason`` saying why
    (infinite: ρ₄ ≥ 1; or no exact moment operator); ``state_second`` the stationary
    :math:`\mathbb E[zz^\top]` of the optimizer's state deviation; :attr:`tail_index` the
    iterates' (:func:`symsgd.tails.tail_index`: exact or a bracket; computed on first use),
    which is also the pooled noise's (Breiman, see ``breiman``); ``method`` how the moments were
    obtained.

    :meth:`kurtosis` is that of a **projection** :math:`u^\top\xi`:
    :math:`\mathbb E(u^\top\xi)^4/(\mathbb E(u^\top\xi)^2)^2`; :attr:`kurtosis_per_coordinate`
    the same along each coordinate axis.
    """

    second: np.ndarray
    fourth: np.ndarray | None
    fourth_reason: str
    state_second: np.ndarray
    method: str
    #: computes the iterates' tail index on first use (:attr:`tail_index`)
    tail_index_of: Callable[[], object] = field(repr=False, default=lambda: None)
    scope: str = POOLED_SCOPE
    breiman: str = POOLED_BREIMAN_GENERAL

    @cached_property
    def tail_index(self):
        """The iterates' tail index (:func:`symsgd.tails.tail_index`, computed on first use) —
        also the pooled noise's (Breiman)."""
        return self.tail_index_of()

    @property
    def dim(self) -> int:
        return self.second.shape[0]

    def _direction(self, direction) -> np.ndarray:
        d = self.dim
        if direction is None:
            if d != 1:
                raise ValueError(
                    f"pooled noise: give direction= (a vector with {d} entries) for a "
                    f"{d}-parameter problem: the readout is of the projection u·ξ."
                )
            return np.ones(1)
        u = np.asarray(direction, dtype=float).reshape(-1)
        if u.size != d or not np.any(u):
            raise ValueError(f"pooled noise: direction must be a nonzero vector of {d} entries.")
        return u

    def second_moment(self, direction=None) -> float:
        r""":math:`\mathbb E(u^\top\xi)^2 = u^\top\mathbb E[\xi\xi^\top]u`."""
        u = self._direction(direction)
        return float(u @ self.second @ u)

    def fourth_moment(self, direction=None) -> float:
        r""":math:`\mathbb E(u^\top\xi)^4` (``ValueError`` when it is not available)."""
        u = self._direction(direction)
        if self.fourth is None:
            raise ValueError(f"pooled noise: no fourth moment here — {self.fourth_reason}")
        return float(np.einsum("ijkl,i,j,k,l->", self.fourth, u, u, u, u))

    def kurtosis(self, direction=None) -> float:
        r"""The kurtosis of the projection :math:`u^\top\xi` (3 for a Gaussian)."""
        return self.fourth_moment(direction) / self.second_moment(direction) ** 2

    @property
    def kurtosis_per_coordinate(self) -> np.ndarray:
        """The kurtosis of each coordinate ξ_i of the pooled noise."""
        return np.array([self.kurtosis(np.eye(self.dim)[i]) for i in range(self.dim)])

    @property
    def heavy_tailed(self) -> bool | None:
        if self.tail_index is None:
            return None
        alpha = self.tail_index.alpha
        if alpha is None:
            return bool(math.isfinite(self.tail_index.bracket[1]))
        return bool(math.isfinite(alpha))

    def __repr__(self) -> str:
        return (
            f"PooledNoiseMoments(d={self.dim}, E ξξᵀ diagonal={np.diagonal(self.second)}, "
            f"tail_index={self.tail_index}; pooled over the stationary law of θ)"
        )


def _noise_second_map(rmap, update) -> Callable[[np.ndarray], np.ndarray]:
    r""":math:`\mathcal C(M) = \mathbb E[(\hat W - \Omega)M(\hat W - \Omega)]` (M symmetric) for
    the minibatch matrix :math:`\hat W` of a :class:`symsgd.tails.HomogeneousUpdate`.
    Isserlis gives :math:`\mathbb E[ww^\top Mww^\top] = 2\Omega M\Omega +
    \operatorname{Tr}(\Omega M)\Omega`, so one Gaussian sample contributes
    :math:`\Omega M\Omega + \operatorname{Tr}(\Omega M)\Omega` and S i.i.d. ones 1/S of it; a
    data set contributes :math:`C_1(M) = \frac1N\sum_i(w_i^\top Mw_i)w_iw_i^\top -
    \Omega M\Omega` per draw, divided by S with replacement and multiplied by
    :math:`\frac{N-S}{(N-1)S}` without (the variance of a sample mean without replacement)."""
    oracle = rmap.oracle
    S = int(oracle.batch)
    Omega, W = update.Omega, update.samples
    if W is None:

        def second_map(Mx):
            return (Omega @ Mx @ Omega + np.trace(Omega @ Mx) * Omega) / S

        return second_map
    N = W.shape[0]
    factor = 1 / S if oracle.replacement else (N - S) / ((N - 1) * S)

    def second_map(Mx):
        quad = np.einsum("ni,ij,nj->n", W, Mx, W)
        return factor * ((W.T * quad) @ W / N - Omega @ Mx @ Omega)

    return second_map


_METHODS = {
    "exact-isserlis": "exact (Gaussian inputs: Isserlis)",
    "exact-batches": "exact (finite data set: every minibatch enumerated)",
    "exact-samples": "exact (finite data set: sums of i.i.d. draws)",
    None: "exact (finite data set: the sampling design's second moment)",
}


def pooled_noise_moments(result, params: Mapping | None = None) -> PooledNoiseMoments:
    r"""Exact moments of the gradient noise **pooled over the stationary law of θ**,
    :math:`\xi = \hat g_B(\theta) - \nabla L(\theta)` with θ stationary and the minibatch B
    independent of it, for any optimizer whose recursion the library derives (SGD, weight
    decay, heavy-ball momentum, …) on :class:`~symsgd.LinearRegression` with
    :class:`~symsgd.MinibatchNoise`: online Gaussian inputs (any A, label noise, batch S) or a
    finite data set (``from_data``; with or without replacement).  The law at a *fixed* θ is
    :func:`noise_law` — a different distribution.

    Derivation.  Every per-sample gradient is linear in the homogeneous state
    :math:`\tilde z = (z, 1)`: :math:`\nabla\ell_i = Jw_iw_i^\top R\tilde z` with
    :math:`w_i = (x_i, \epsilon_i)\sim N(0, \operatorname{diag}(A, 1))` online and
    :math:`R = \begin{pmatrix}K&\theta_\gamma - \theta_*\\0&-\sigma\end{pmatrix}`
    (:math:`w_i = (x_i, y_i)` and :math:`R = \begin{pmatrix}K&\theta_\gamma\\0&-1
    \end{pmatrix}` for a data set; K reads the gradient's point off the state; J = [I 0]),
    so :math:`\xi = J(\hat W - \Omega)R\tilde z` with :math:`\hat W = \frac1S\sum_{i\in B}
    w_iw_i^\top` the minibatch matrix, independent of :math:`\tilde z`.  Hence

    * :math:`\mathbb E[\xi\xi^\top] = J\,\mathcal C(R\,\mathbb E[\tilde z\tilde z^\top]R^\top)
      J^\top` — **linear in the stationary second moment** :math:`\mathbb E[\tilde z\tilde
      z^\top] = \operatorname{diag}(\Sigma_z, 1)` (E z = 0), with :math:`\mathcal C(M) =
      \mathbb E[(\hat W - \Omega)M(\hat W - \Omega)]` in closed form (Isserlis for Gaussian
      inputs; the sampling design for a data set).  For SGD this is
      :math:`(\Sigma - M\Sigma M^\top)/\lambda^2` (the Lyapunov identity, a test);
    * :math:`\mathbb E[\xi^{\otimes4}] = \mathbb E[(J(\hat W - \Omega)R)^{\otimes4}]\cdot
      \mathbb E[\tilde z^{\otimes4}]`, the second factor from the stationary 4-tensor
      equation of :math:`\tilde z' = \tilde A\tilde z` (odd moments included: they vanish only
      for a symmetric law), both expectations exact (Isserlis on the χ²-type sums, sums of
      i.i.d. draws, or every minibatch) — available when the state is small
      (:math:`(n+1)^4\le` :data:`symsgd.tails.MAX_OPERATOR_ROWS`) and ρ₄ < 1.

    The tail index is the iterates' (:func:`symsgd.tails.tail_index`).  A rank-deficient data
    set (``from_data`` on the row space, :class:`~symsgd.landscapes.RangeReduction` U) is
    solved in its coordinates :math:`c = U^\top\theta` and lifted exactly, :math:`\xi = U\xi_c`
    (every per-sample gradient lies in range(Xᵀ)); ``state_second`` stays in c.

    >>> import sympy as sp, symsgd as ss
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(sp.diag(1, 2), label_variance=1),
    ...                   ss.MinibatchNoise(2))
    >>> p = pooled_noise_moments(r, {ss.lr: 0.1})
    >>> np.round(p.second, 6)  # E ξξᵀ pooled over θ
    array([[0.561739, 0.      ],
           [0.      , 1.158261]])
    >>> [round(float(k), 4) for k in p.kurtosis_per_coordinate]  # at θ*: 3 + 6/S = 6
    [6.3994, 6.8696]
    >>> p.tail_index.bracket  # α > 8: heavy-tailed at every S, like the iterates
    (8, inf)
    """
    from ._result import recursion_of
    from .moments import NumericMap
    from .tails import (
        MAX_OPERATOR_ROWS,
        _random_map,
        homogeneous_update,
        moment_radius,
        tail_index,
    )

    recursion = recursion_of(result, "pooled_noise()")
    land, nz = recursion.landscape, recursion.noise
    if not (
        isinstance(land, LinearRegression) and not land.eigenmode and isinstance(nz, MinibatchNoise)
    ):
        raise NotImplementedError(
            "pooled_noise() covers MinibatchNoise on an explicit LinearRegression — online "
            "Gaussian inputs (any A, label noise, batch S, weight decay) or a finite data set "
            "(from_data, with or without replacement) — for any optimizer the library derives "
            f"(SGD, heavy ball, …); got {land!r} with {nz!r} (additive noise does not depend "
            "on θ: its pooled law is its own; EmpiricalLoss local problems are not covered)."
        )
    rmap = _random_map(result, params, "pooled_noise()")
    if not rmap.rho < 1:
        raise rmap.instability(rmap.rho)
    n = rmap.state_space[0].shape[0]
    Sigma = NumericMap.from_recursion(recursion, rmap.values).solve()
    Z2 = np.zeros((n + 1, n + 1))
    Z2[:n, :n] = Sigma
    Z2[n, n] = 1.0
    small = (n + 1) ** 4 <= MAX_OPERATOR_ROWS
    radius = moment_radius(rmap, 4) if small else None
    available = radius is not None and radius[0] < 1
    update = homogeneous_update(rmap, "pooled_noise_moments()", fourth=available)
    J = np.eye(rmap.dim, rmap.dim + 1)
    second = J @ _noise_second_map(rmap, update)(update.R @ Z2 @ update.R.T) @ J.T
    second = (second + second.T) / 2
    fourth, reason = None, ""
    if not small:
        reason = f"the 4-tensor system of a {n}-dimensional state has more than "
        reason += f"{MAX_OPERATOR_ROWS} rows"
    elif radius is None:
        reason = "no exact fourth-moment operator (too many minibatches without replacement)"
    elif not available:
        reason = f"infinite: ρ(E[A^⊗4]) = {radius[0]:.6g} ≥ 1 (the tail index is ≤ 4)"
    else:  # E[ξ^⊗4] = E[(J(Ŵ − Ω)R)^⊗4]·E[z̃^⊗4]: ξ's factor is independent of the state
        W4 = update.stationary_fourth("pooled_noise()")
        fourth = update.expected_power4(J, update.R, -J @ update.Omega @ update.R, W4)
    method = _METHODS[update.method]
    reduction = getattr(land, "reduction", None)
    if reduction is not None:  # every per-sample gradient lies in range(Xᵀ) = span U: ξ = Uξ_c
        U = np.array(reduction.basis.evalf(), dtype=float)
        second = U @ second @ U.T
        if fourth is not None:
            fourth = np.einsum("ai,bj,ck,dl,ijkl->abcd", U, U, U, U, fourth)
        method += "; rank-deficient data: computed on the row space range(Xᵀ), lifted by U"
    return PooledNoiseMoments(
        second=second,
        fourth=fourth,
        fourth_reason=reason,
        state_second=Sigma,
        method=method,
        tail_index_of=lambda: tail_index(result, params),
    )
