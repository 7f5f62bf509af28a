r"""Heavy tails of the stationary law: is its fourth moment finite?

With minibatch noise the update is a *random* linear map, :math:`z_{t+1} = A_t z_t + b_t` with
:math:`A_t = M + B(\hat H_t - H)K` (:math:`\hat H_t` the minibatch Hessian).  Second moments are
finite iff :math:`\rho(\mathbb E[A\otimes A]) < 1` (the library's stability conditions); fourth
moments iff

.. math:: \rho_4 = \rho\bigl(\mathbb E[A\otimes A\otimes A\otimes A]\bigr) < 1 .

Between the two edges the stationary law has power-law tails (Mori, Ziyin, Liu & Ueda, 2022):
its variance exists and symsgd's formulas hold, but a simulated variance then has no valid
standard error — the sample variance converges slower than :math:`1/\sqrt n` and is usually
*below* the truth.  :func:`fourth_moment` computes :math:`\rho_4`:

* **exactly** for online Gaussian regression with one parameter: :math:`\hat H_t - H = u` is a
  scalar with :math:`\hat H = \frac aS\chi^2_S`, so :math:`A_t = M + uD` (:math:`D = BK`) and
  :math:`\mathbb E[A^{\otimes 4}] = \sum_{k=0}^4 \mathbb E[u^k]\,T_k` with :math:`T_k` the sum
  of the Kronecker products holding :math:`D` in k of the four slots — the moments of
  :math:`u` come from the moment-generating function of :math:`\chi^2_S`
  (:func:`chi2_moments`);
* **exactly** for a finite data set when the distinct minibatches are few (at most
  :data:`MAX_BATCHES`): the expectation is the weighted sum over every batch (multinomial
  weights with replacement, uniform over S-subsets without);
* otherwise by **Monte Carlo** over the optimizer's real minibatch Hessians, with a jackknife
  standard error over :data:`GROUPS` groups of draws.

:func:`sgd_fourth_moment` and :func:`sgd_fourth_moment_edge` give the scalar SGD map
:math:`\mathbb E[(1-\lambda(\hat h+\gamma))^4]` and its edge symbolically.
:func:`symsgd.crosscheck` warns when :math:`\rho_4 \ge 1`.  Additive noise has
:math:`A_t = M` and every moment finite.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .moments import _radius

__all__ = [
    "GROUPS",
    "MAX_BATCHES",
    "MAX_STATE_DIM",
    "SAMPLES",
    "FourthMoment",
    "chi2_moments",
    "fourth_moment",
    "fourth_moment_radius",
    "sgd_fourth_moment",
    "sgd_fourth_moment_edge",
]

#: Monte Carlo draws of the random update per state dimension n (the operator has n⁴ rows);
#: no estimate beyond n = 3
SAMPLES = {1: 200_000, 2: 100_000, 3: 20_000}
MAX_STATE_DIM = max(SAMPLES)
#: groups of draws for the jackknife standard error of a Monte Carlo estimate
GROUPS = 20
#: a finite data set with at most this many distinct minibatches is enumerated exactly
MAX_BATCHES = 20_000


@dataclass(frozen=True)
class FourthMoment:
    r""":math:`\rho_4 = \rho(\mathbb E[A^{\otimes 4}])` and how it was obtained.

    ``method`` is ``"exact-chi2"`` (online Gaussian, one parameter), ``"exact-batches"``
    (every minibatch of a finite data set enumerated) or ``"monte-carlo"``; ``stderr`` is 0 for
    the exact methods (floating-point rounding only) and the jackknife standard error of the
    Monte Carlo estimate; ``samples`` the number of draws or batches averaged.
    """

    radius: float
    stderr: float
    method: str
    samples: int

    @property
    def exact(self) -> bool:
        return self.method != "monte-carlo"

    def __repr__(self) -> str:
        se = "" if self.exact else f" ± {self.stderr:.2g}"
        return f"FourthMoment(radius={self.radius:.6g}{se}, method={self.method!r})"


# ---------------------------------------------------------------------------------------------
# the scalar map, symbolically
# ---------------------------------------------------------------------------------------------


def chi2_moments(dof, k_max: int) -> list:
    r"""Raw moments :math:`\mathbb E[u^k]`, k = 0 … ``k_max``, of :math:`u\sim\chi^2_{\rm dof}`,
    the derivatives at 0 of its moment-generating function :math:`(1-2t)^{-\mathrm{dof}/2}`
    (``dof`` a number or a symbol).

    >>> chi2_moments(2, 4)  # χ²₂/2 is Exp(1), whose k-th moment is k!: 2^k k!
    [1, 2, 8, 48, 384]
    """
    t = sp.Dummy("t")
    mgf = (1 - 2 * t) ** (-sp.sympify(dof) / 2)
    out, derivative = [], mgf
    for _ in range(int(k_max) + 1):
        out.append(sp.factor(derivative.subs(t, 0)))
        derivative = sp.diff(derivative, t)
    return out


def sgd_fourth_moment(lr=None, a=None, batch_size=None, weight_decay=0) -> sp.Expr:
    r"""The fourth-moment map of scalar online SGD,
    :math:`\mathbb E[(1 - \lambda(\hat h + \gamma))^4]` with :math:`\hat h = \frac aS\chi^2_S`
    the minibatch Hessian of S fresh inputs :math:`x_i\sim N(0, a)`: expanded by the binomial
    theorem in the moments of :func:`chi2_moments`.  The stationary law has a finite fourth
    moment iff it is < 1.  Defaults: the library's λ and S, a positive symbol ``a``.

    >>> import symsgd as ss
    >>> sp.expand(sgd_fourth_moment(ss.lr, 1, 2))
    24*lambda**4 - 24*lambda**3 + 12*lambda**2 - 4*lambda + 1
    """
    from .symbols import batch_size as _S
    from .symbols import lr as _lr

    lam = _lr if lr is None else sp.sympify(lr)
    a = sp.Symbol("a", positive=True) if a is None else sp.sympify(a)
    S = _S if batch_size is None else sp.sympify(batch_size)
    gamma = sp.sympify(weight_decay)
    raw = chi2_moments(S, 4)  # E[(χ²_S)^k]
    # E[(ĥ + γ)^k] = Σ_j C(k, j) (a/S)^j E[(χ²)^j] γ^(k−j)
    shifted = [
        sum(sp.binomial(k, j) * (a / S) ** j * raw[j] * gamma ** (k - j) for j in range(k + 1))
        for k in range(5)
    ]
    return sp.expand(sum(sp.binomial(4, k) * (-lam) ** k * shifted[k] for k in range(5)))


def sgd_fourth_moment_edge(a, batch_size, weight_decay=0) -> sp.Expr:
    r"""The learning rate beyond which scalar online SGD (``a``, S, γ numbers) has an infinite
    stationary fourth moment: the smallest positive root of
    :math:`\mathbb E[(1-\lambda(\hat h+\gamma))^4] = 1` (:func:`sgd_fourth_moment`), exact (a
    root of a cubic).

    >>> edge = sgd_fourth_moment_edge(1, 2)  # the real root of 6λ³ − 6λ² + 3λ − 1
    >>> round(float(edge), 6)
    0.626538
    """
    values = {"a": a, "batch_size": batch_size, "weight_decay": weight_decay}
    for name, value in values.items():
        number = sp.sympify(value)
        if not number.is_number or not number.is_real or number.is_negative:
            raise ValueError(
                f"sgd_fourth_moment_edge: {name} must be a real number ≥ 0; got {value!r}."
            )
    S = sp.sympify(batch_size)
    if not (S.is_Integer and S >= 1):
        raise ValueError(f"sgd_fourth_moment_edge: batch_size must be an integer ≥ 1; got {S}.")
    if not sp.sympify(a) > 0:
        raise ValueError(f"sgd_fourth_moment_edge: a must be > 0; got {a!r}.")
    lam = sp.Dummy("lambda", positive=True)
    excess = sp.cancel((sgd_fourth_moment(lam, a, S, weight_decay) - 1) / lam)  # λ = 0 is a root
    roots = [r for r in sp.Poly(excess, lam).real_roots() if r > 0]
    return min(roots, key=float)


# ---------------------------------------------------------------------------------------------
# the radius for a prepared numeric problem
# ---------------------------------------------------------------------------------------------


def _fourth_power(A: np.ndarray) -> np.ndarray:
    """``(m, n⁴, n⁴)`` Kronecker fourth powers of the ``(m, n, n)`` stack ``A``."""
    m, n, _ = A.shape
    A2 = np.einsum("kij,kab->kiajb", A, A).reshape(m, n * n, n * n)
    return np.einsum("kij,kab->kiajb", A2, A2).reshape(m, n**4, n**4)


def _exact_online_scalar(problem) -> FourthMoment:
    r""":math:`\mathbb E[(M + uD)^{\otimes4}] = \sum_k \mathbb E[u^k] T_k`, u = ĥ − a."""
    M, B, K = problem.state_space
    oracle = problem.oracle
    a = float(oracle.LA[0, 0]) ** 2
    S = int(oracle.batch)
    raw = [float(m) for m in chi2_moments(S, 4)]
    h_moments = [(a / S) ** k * raw[k] for k in range(5)]  # E[ĥ^k]
    u_moments = [
        sum(math.comb(k, j) * h_moments[j] * (-a) ** (k - j) for j in range(k + 1))
        for k in range(5)
    ]
    D = B @ K
    factors = [M, D]  # coefficients of u⁰, u¹ of A = M + uD
    power = factors
    for _ in range(3):  # the u-polynomial coefficients of A^{⊗(j+1)}
        nxt = [np.zeros((power[0].shape[0] * M.shape[0],) * 2) for _ in range(len(power) + 1)]
        for i, P in enumerate(power):
            for j, F in enumerate(factors):
                nxt[i + j] += np.kron(P, F)
        power = nxt
    total = sum(u_moments[k] * power[k] for k in range(5))
    return FourthMoment(_radius(total), 0.0, "exact-chi2", 0)


def _batches(N: int, S: int, replacement: bool):
    """``(index tuples, probabilities)`` of every distinct minibatch, or None if too many."""
    if replacement:
        count = math.comb(N + S - 1, S)
        if count > MAX_BATCHES:
            return None
        batches = list(itertools.combinations_with_replacement(range(N), S))
        weights = []
        for batch in batches:  # multinomial: S! / Π c_i! · N^(−S)
            w = math.factorial(S)
            for _, group in itertools.groupby(batch):
                w //= math.factorial(len(list(group)))
            weights.append(w / N**S)
        return batches, np.array(weights)
    count = math.comb(N, S)
    if count > MAX_BATCHES:
        return None
    batches = list(itertools.combinations(range(N), S))
    return batches, np.full(len(batches), 1.0 / count)


def _exact_data(problem, enumerated) -> FourthMoment:
    M, B, K = problem.state_space
    n = M.shape[0]
    X = problem.oracle.X
    S = int(problem.oracle.batch)
    batches, weights = enumerated
    outer = np.einsum("ni,nj->nij", X, X)  # x_i x_iᵀ
    total = np.zeros((n**4, n**4))
    chunk = max(1, 2_000_000 // n**8)
    for start in range(0, len(batches), chunk):
        idx = np.array(batches[start : start + chunk])  # (m, S)
        Hs = outer[idx].sum(axis=1) / S
        A = M + np.einsum("ij,kjl,lm->kim", B, Hs - problem.hessian, K)
        total += np.einsum("k,kij->ij", weights[start : start + chunk], _fourth_power(A))
    return FourthMoment(_radius(total), 0.0, "exact-batches", len(batches))


def _sampled_hessians(problem, samples: int, seed: int) -> np.ndarray:
    """``(samples, d, d)`` minibatch Hessians drawn by the simulator's own gradient oracle: the
    oracle is affine in θ, so with identical random draws ``g(e_j) − g(0)`` is column j."""
    d = problem.dim
    columns = []
    base = None
    for j in range(d + 1):
        grad = problem.oracle.make(np.random.default_rng(seed), samples)
        theta = np.zeros((d, samples))
        if j < d:
            theta[j] = 1.0
        g = grad(theta)
        if j == d:
            base = g
        else:
            columns.append(g)
    return np.stack([c - base for c in columns], axis=-1).transpose(1, 0, 2)


def _monte_carlo(problem, samples: int, seed: int) -> FourthMoment:
    r"""Sample mean of :math:`A^{\otimes4}` over ``samples`` draws in :data:`GROUPS` groups; the
    standard error is the jackknife over the groups (leave one group out)."""
    M, B, K = problem.state_space
    n = M.shape[0]
    H = problem.hessian
    chunk = max(1, 2_000_000 // n**8)
    bounds = np.linspace(0, samples, GROUPS + 1).astype(int)
    sums, counts = [], []
    for g in range(GROUPS):
        total = np.zeros((n**4, n**4))
        for start in range(bounds[g], bounds[g + 1], chunk):
            m = min(chunk, bounds[g + 1] - start)
            Hs = _sampled_hessians(problem, m, seed + start)
            A = M + np.einsum("ij,kjl,lm->kim", B, Hs - H, K)
            total += _fourth_power(A).sum(axis=0)
        sums.append(total)
        counts.append(bounds[g + 1] - bounds[g])
    grand = sum(sums)
    radius = _radius(grand / samples)
    leave_out = np.array([_radius((grand - s) / (samples - c)) for s, c in zip(sums, counts)])
    stderr = math.sqrt((GROUPS - 1) / GROUPS * float(np.sum((leave_out - leave_out.mean()) ** 2)))
    return FourthMoment(radius, stderr, "monte-carlo", samples)


def fourth_moment(
    problem, samples: int | None = None, seed: int = 0, *, method: str = "auto"
) -> FourthMoment | None:
    r""":math:`\rho_4 = \rho(\mathbb E[A^{\otimes 4}])` for a prepared numeric problem
    (:func:`symsgd.sampling.prepare`), exactly where the module docstring says it can be, else
    by Monte Carlo with a jackknife standard error.

    ``method``: ``"auto"`` (exact when possible), ``"exact"`` (``ValueError`` if not possible)
    or ``"monte-carlo"``.  ``samples`` (default :data:`SAMPLES`) and ``seed`` set the Monte
    Carlo draws.  Returns ``None`` when the noise is additive (every moment is finite) or the
    state has more than :data:`MAX_STATE_DIM` dimensions.

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.sampling import prepare
    >>> a = sp.Symbol("a", positive=True)
    >>> p = prepare(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...             ss.MinibatchNoise(ss.batch_size), {ss.lr: 0.8, a: 1, ss.batch_size: 2})
    >>> fourth_moment(p)  # E(1 − 0.4u)⁴ = 3.0224 for u ~ χ²₂
    FourthMoment(radius=3.0224, method='exact-chi2')
    """
    if method not in ("auto", "exact", "monte-carlo"):
        raise ValueError(
            f"fourth_moment: method must be 'auto', 'exact' or 'monte-carlo'; got {method!r}."
        )
    if not problem.noise.depends_on_state():
        return None
    M, _B, _K = problem.state_space
    n = M.shape[0]
    if n > MAX_STATE_DIM:
        return None
    from .sampling import _Data, _Online

    oracle = problem.oracle
    if method != "monte-carlo":
        if isinstance(oracle, _Online) and problem.dim == 1:
            return _exact_online_scalar(problem)
        if isinstance(oracle, _Data):
            enumerated = _batches(oracle.X.shape[0], int(oracle.batch), oracle.replacement)
            if enumerated is not None:
                return _exact_data(problem, enumerated)
        if method == "exact":
            raise ValueError(
                "fourth_moment(method='exact') covers online Gaussian regression with one "
                f"parameter and finite data sets with at most {MAX_BATCHES} distinct minibatches; "
                "use method='monte-carlo' (or 'auto') for this problem."
            )
    samples = SAMPLES[n] if samples is None else int(samples)
    if samples < 2 * GROUPS:
        raise ValueError(
            f"fourth_moment: samples must be ≥ {2 * GROUPS} (two per jackknife group); "
            f"got {samples}."
        )
    return _monte_carlo(problem, samples, seed)


def fourth_moment_radius(problem, samples: int | None = None, seed: int = 0) -> float | None:
    r""":math:`\rho_4` as a number (see :func:`fourth_moment`, which also gives its standard
    error and method): exact where possible, else a Monte Carlo estimate whose own error is a
    few per cent at the default ``samples``.

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.sampling import prepare
    >>> a = sp.Symbol("a", positive=True)
    >>> p = prepare(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...             ss.MinibatchNoise(ss.batch_size), {ss.lr: 0.8, a: 1, ss.batch_size: 2})
    >>> round(fourth_moment_radius(p), 10)
    3.0224
    """
    result = fourth_moment(problem, samples, seed)
    return None if result is None else result.radius
