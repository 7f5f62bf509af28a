r"""Heavy tails of the stationary law: tail index, Lyapunov exponent and exact higher moments.

With minibatch noise the update is a *random* affine map, :math:`z_{t+1} = A_t z_t + b_t` with
:math:`A_t = M + B(\hat H_t - H)K` (:math:`\hat H_t` the minibatch Hessian) and
:math:`b_t = B(\hat g_t(\theta_\gamma) - \mathbb E\hat g)` the gradient noise at the
minimiser, drawn from the same minibatch.  Second moments are finite iff
:math:`\rho(\mathbb E[A\otimes A]) < 1` (the library's stability conditions); moments of order
2k iff :math:`\rho_{2k} = \rho(\mathbb E[A^{\otimes 2k}]) < 1`; and a stationary law exists iff
the top Lyapunov exponent :math:`\gamma = \lim\frac1t\log\|A_t\cdots A_1\|` is negative — also
beyond the mean-square edge, where the law has infinite variance.  The law has power-law tails
:math:`P(|z| > t)\sim c\,t^{-\alpha}` (Kesten–Goldie; Mori, Ziyin, Liu & Ueda 2022): moments
of order < α are finite, those of order ≥ α infinite; between the second- and fourth-moment
edges symsgd's covariances hold but a simulated variance has no valid standard error.

* :func:`tail_index` — α exactly for a scalar state (the root of the Kesten equation
  :math:`\mathbb E|A|^\alpha = 1`: mpmath quadrature against the χ² law of
  :math:`\hat h = \frac aS\chi^2_S` for online Gaussian data, a finite sum with exact
  multinomial/subset weights for a data set) and for rotation-invariant problems
  (:math:`\mathbb E\|Ae_1\|^\alpha = 1`), else a bracket (2k, 2k+2] from the exact even-moment
  radii.  For small λ, :math:`\alpha\,\lambda a/S \to c^* = x^*/2 \approx 1.7956` with
  :math:`x^*(\ln x^* - 1) = 1` (Laplace's method: the dominant minibatches have
  :math:`\lambda\hat h\approx 1 + 2c`).
* :func:`lyapunov_exponent` — exact (:math:`\mathbb E\log|A|`) where α is, else Monte Carlo of
  the projective chain with a standard error.
* :func:`moment_radius` / :func:`fourth_moment` — :math:`\rho_{2k}` **exactly**: Isserlis'
  theorem for Gaussian data (any dimension; the χ² moments when d = 1), sums of i.i.d. draws
  for a data set sampled with replacement, every minibatch when there are at most
  :data:`MAX_BATCHES`; :func:`fourth_moment` falls back on **Monte Carlo** over the
  optimizer's real minibatch Hessians (jackknife standard error over :data:`GROUPS` groups)
  only for large data sets sampled without replacement.
* :func:`moment_conditions` — the symbolic condition :math:`\mathbb E(p + q\hat h)^{2k} < 1`
  for a one-dimensional state (:func:`sgd_fourth_moment` and :func:`sgd_fourth_moment_edge`
  are its SGD, order-4 case).
* :func:`stationary_moments` (scalar: the moment recursion in rational arithmetic) and
  :func:`stationary_fourth_moments` (small states: the linear system on 4-tensors of the
  homogeneous state (z, 1)) — exact stationary fourth moments and kurtosis.

:func:`symsgd.crosscheck` warns when :math:`\rho_4 \ge 1`.  Additive noise has
:math:`A_t = M` and every moment finite.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import mpmath as mp
import numpy as np
import sympy as sp

from .moments import _radius

__all__ = [
    "GROUPS",
    "MAX_BATCHES",
    "MAX_EVEN_ORDER",
    "MAX_OPERATOR_ROWS",
    "MAX_STATE_DIM",
    "SAMPLES",
    "FourthMoment",
    "FourthMoments",
    "HomogeneousUpdate",
    "LyapunovExponent",
    "StationaryMoments",
    "TailIndex",
    "chi2_moments",
    "fourth_moment",
    "fourth_moment_radius",
    "homogeneous_update",
    "lyapunov_exponent",
    "moment_conditions",
    "moment_radius",
    "scalar_affine_maps",
    "sgd_fourth_moment",
    "sgd_fourth_moment_edge",
    "stationary_fourth_moments",
    "stationary_moments",
    "symbolic_moments",
    "tail_index",
]

#: Monte Carlo draws of the random update per state dimension n (the operator has n⁴ rows);
#: no estimate beyond n = 3
SAMPLES = {1: 200_000, 2: 100_000, 3: 20_000}
MAX_STATE_DIM = max(SAMPLES)
#: groups of draws for the jackknife standard error of a Monte Carlo estimate
GROUPS = 20
#: a finite data set with at most this many distinct minibatches is enumerated exactly
MAX_BATCHES = 20_000
#: exact moment operators E[A^{⊗2k}] with at most this many rows (n^{2k}) are built
MAX_OPERATOR_ROWS = 729
#: the even moments tried for a tail-index bracket (beyond: the bracket is open above)
MAX_EVEN_ORDER = 64
#: mpmath working precision (digits) of the Kesten quadratures and root
DPS = 20
#: relative error the quadratures must reach, and the certified residual of the Kesten root
QUAD_TOLERANCE = 1e-15
ROOT_TOLERANCE = 1e-12
#: the Kesten root is iterated until its bracket is this narrow (or |log E|A|^α| < it)
ALPHA_TOLERANCE = 1e-13


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
# exact moments of the random update: Isserlis, sums of i.i.d. samples, enumerated batches
# ---------------------------------------------------------------------------------------------
#
# An order-j "slot tensor" holds E[X^{⊗j}] for a random matrix X as an array with axes
# (r₁, c₁, r₂, c₂, …, r_j, c_j); its Kronecker (matrix) form has rows (r₁…r_j), columns (c₁…c_j).


def _as_matrix(T: np.ndarray, j: int) -> np.ndarray:
    """Kronecker matrix form of an order-``j`` slot tensor."""
    if j == 0:
        return np.array([[float(T)]])
    rows = T.shape[0::2]
    cols = T.shape[1::2]
    order = list(range(0, 2 * j, 2)) + list(range(1, 2 * j, 2))
    return T.transpose(order).reshape(math.prod(rows), math.prod(cols))


def _mix(first: list, second: list, order: int) -> np.ndarray:
    r""":math:`\mathbb E[(X+Y)^{\otimes j}]` (j = ``order``) for independent X, Y from their slot
    tensors ``first[i]`` = :math:`\mathbb E[X^{\otimes i}]`, ``second[i]`` likewise: the sum over
    the slots J holding X of the outer product, its slots moved into place."""
    total = None
    for size in range(order + 1):
        for J in itertools.combinations(range(order), size):
            rest = [s for s in range(order) if s not in J]
            outer = np.multiply.outer(first[size], second[order - size])
            where = np.argsort(list(J) + rest)  # the block holding each slot position
            term = outer.transpose([a for b in where for a in (2 * b, 2 * b + 1)])
            total = term if total is None else total + term
    return total


def _gaussian_moment(L: np.ndarray, order: int) -> np.ndarray:
    r""":math:`\mathbb E[x^{\otimes\text{order}}]` for :math:`x = Lz`, :math:`z\sim N(0, I)`, by
    Isserlis' theorem: a product of standard normal coordinates has expectation
    :math:`\prod_c (n_c-1)!!` (:math:`n_c` the multiplicity of coordinate c, all even) — the
    number of its pairings — then L applied along every axis."""
    d = L.shape[0]
    if order == 0:
        return np.array(1.0)
    idx = np.indices((d,) * order).reshape(order, -1)
    value = np.ones(idx.shape[1])
    for c in range(d):
        count = (idx == c).sum(axis=0)
        pairings = np.array(
            [_double_factorial(n - 1) if n % 2 == 0 else 0 for n in range(order + 1)]
        )
        value *= pairings[count]
    T = value.reshape((d,) * order)
    for axis in range(order):
        T = np.moveaxis(np.tensordot(L, T, axes=([1], [axis])), 0, axis)
    return T


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def _empirical_moment(X: np.ndarray, order: int) -> np.ndarray:
    r""":math:`\frac1N\sum_i x_i^{\otimes\text{order}}` over the rows of X."""
    N, d = X.shape
    T = np.ones(N)
    for _ in range(order):
        T = T[..., None] * X.reshape((N,) + (1,) * (T.ndim - 1) + (d,))
    return T.mean(axis=0)


def _sum_of_samples(single: list, S: int, order: int) -> list:
    r"""Slot tensors of :math:`\hat H = \frac1S\sum_{i\le S} X_i` (X_i i.i.d. with the slot
    tensors ``single``), orders 0 … ``order``: sums of independent blocks combined with
    :func:`_mix`, the block sizes doubling (⌈log₂ S⌉ squarings)."""
    total, power, remaining = None, single, S
    while True:
        if remaining & 1:
            total = power if total is None else [_mix(total, power, j) for j in range(order + 1)]
        remaining >>= 1
        if not remaining:
            break
        power = [_mix(power, power, j) for j in range(order + 1)]
    return [total[j] / S**j for j in range(order + 1)]


def _sandwich(T: np.ndarray, j: int, B: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Slot tensor of (B X K)^{⊗j} from that of X^{⊗j}."""
    for s in range(j):
        T = np.moveaxis(np.tensordot(B, T, axes=([1], [2 * s])), 0, 2 * s)
        T = np.moveaxis(np.tensordot(T, K, axes=([2 * s + 1], [0])), -1, 2 * s + 1)
    return T


def _power(P: np.ndarray, j: int) -> np.ndarray:
    T = np.array(1.0)
    for _ in range(j):
        T = np.multiply.outer(T, P)
    return T


def _hessian_moments(problem, order: int):
    """``(slot tensors of the minibatch Hessian, method)`` exactly, or None."""
    from .sampling import _Data, _Online

    oracle = problem.oracle
    S = int(oracle.batch)
    if isinstance(oracle, _Online):
        single = [_gaussian_moment(oracle.LA, 2 * j) for j in range(order + 1)]
        method = "exact-chi2" if problem.dim == 1 else "exact-isserlis"
        return _sum_of_samples(single, S, order), method
    if isinstance(oracle, _Data) and oracle.replacement:
        single = [_empirical_moment(oracle.X, 2 * j) for j in range(order + 1)]
        return _sum_of_samples(single, S, order), "exact-samples"
    return None


def _moment_operator(problem, order: int):
    r"""``(E[A^{⊗order}] as a matrix, method, batches)`` exactly — enumerated minibatches when
    there are at most :data:`MAX_BATCHES`, else Isserlis (Gaussian data) or sums of i.i.d.
    draws (a data set sampled with replacement) — or None when no exact route exists or the
    operator would have more than :data:`MAX_OPERATOR_ROWS` rows."""
    from .sampling import _Data

    M, B, K = problem.state_space
    n = M.shape[0]
    if n**order > MAX_OPERATOR_ROWS:
        return None
    oracle = problem.oracle
    if isinstance(oracle, _Data):
        enumerated = _batches(oracle.X.shape[0], int(oracle.batch), oracle.replacement)
        if enumerated is not None:
            return (
                _enumerated_operator(problem, enumerated, order),
                "exact-batches",
                len(enumerated[0]),
            )
    found = _hessian_moments(problem, order)
    if found is None:
        return None
    hessian, method = found
    D = [_sandwich(hessian[j], j, B, K) for j in range(order + 1)]
    P = M - B @ problem.hessian @ K  # A = P + B Ĥ K
    Ps = [_power(P, j) for j in range(order + 1)]
    return _as_matrix(_mix(D, Ps, order), order), method, 0


def _kron_power(A: np.ndarray, order: int) -> np.ndarray:
    """``(m, n^order, n^order)`` Kronecker powers of the ``(m, n, n)`` stack ``A``."""
    m, n, _ = A.shape
    out = np.ones((m, 1, 1))
    for _ in range(order):
        out = np.einsum("kij,kab->kiajb", out, A).reshape(m, out.shape[1] * n, out.shape[2] * n)
    return out


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
            weights.append(Fraction(w, N**S))
        return batches, weights
    count = math.comb(N, S)
    if count > MAX_BATCHES:
        return None
    batches = list(itertools.combinations(range(N), S))
    return batches, [Fraction(1, count)] * count


def _batch_maps(problem, enumerated) -> np.ndarray:
    """``(m, n, n)`` stack of A = M + B(Ĥ_batch − H)K over the enumerated batches."""
    M, B, K = problem.state_space
    X = problem.oracle.X
    S = int(problem.oracle.batch)
    outer = np.einsum("ni,nj->nij", X, X)
    Hs = outer[np.array(enumerated[0])].sum(axis=1) / S
    return M + np.einsum("ij,kjl,lm->kim", B, Hs - problem.hessian, K)


def _enumerated_operator(problem, enumerated, order: int) -> np.ndarray:
    A = _batch_maps(problem, enumerated)
    weights = np.array([float(w) for w in enumerated[1]])
    n = A.shape[1]
    total = np.zeros((n**order, n**order))
    chunk = max(1, 2_000_000 // n ** (2 * order))
    for start in range(0, len(weights), chunk):
        total += np.einsum(
            "k,kij->ij",
            weights[start : start + chunk],
            _kron_power(A[start : start + chunk], order),
        )
    return total


def moment_radius(problem, order: int) -> tuple[float, str] | None:
    r"""``(ρ(E[A^{⊗order}]), method)`` for a prepared problem (``order`` even ≥ 2), exactly:
    the stationary law has a finite moment of that order iff the radius is < 1.  ``None`` for
    additive noise (every moment finite) or when no exact route exists (a data set sampled
    without replacement with more than :data:`MAX_BATCHES` batches, or an operator with more
    than :data:`MAX_OPERATOR_ROWS` rows).

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.sampling import prepare
    >>> p = prepare(ss.SGD(0.2), ss.LinearRegression(sp.diag(1, 2), label_variance=1),
    ...             ss.MinibatchNoise(2), {})
    >>> r, method = moment_radius(p, 2)
    >>> method, abs(r - p.rho) < 1e-12  # the second-moment map's radius
    ('exact-isserlis', True)
    """
    if not (isinstance(order, int) and order >= 2 and order % 2 == 0):
        raise ValueError(f"moment_radius: order must be an even integer ≥ 2; got {order!r}.")
    if not problem.noise.depends_on_state():
        return None
    found = _moment_operator(problem, order)
    if found is None:
        return None
    operator, method, _ = found
    return _radius(operator), method


# ---------------------------------------------------------------------------------------------
# the fourth-moment radius of a prepared problem
# ---------------------------------------------------------------------------------------------


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
            total += _kron_power(A, 4).sum(axis=0)
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
    if method != "monte-carlo":
        found = _moment_operator(problem, 4)
        if found is not None:
            operator, name, count = found
            return FourthMoment(_radius(operator), 0.0, name, count)
        if method == "exact":
            raise ValueError(
                "fourth_moment(method='exact') covers online Gaussian regression (Isserlis), "
                "data sets sampled with replacement and data sets with at most "
                f"{MAX_BATCHES} distinct minibatches; use method='monte-carlo' (or 'auto') "
                "for this problem."
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


# ---------------------------------------------------------------------------------------------
# the random affine map of a result at numeric values
# ---------------------------------------------------------------------------------------------


def _random_map(result, params, context: str):
    """The numeric random update :math:`z' = Az + b` of ``result`` at ``params``: the
    prepared problem without requiring ρ < 1 (the tail index and the Lyapunov exponent are
    defined beyond the mean-square edge)."""
    from .sampling import prepare_result

    return prepare_result(result, params, context, require_stable=False)


def _degenerate(rmap) -> bool:
    """True when the gradient noise vanishes at the minimiser (b ≡ 0): the stationary law is
    the point mass there."""
    from .sampling import _Data, _Online

    oracle = rmap.oracle
    if isinstance(oracle, _Online):
        return oracle.sigma == 0 and bool(np.all(oracle.star == rmap.theta_min))
    if isinstance(oracle, _Data):
        residual = oracle.X @ rmap.theta_min - oracle.Y
        scale = max(1.0, float(np.max(np.abs(oracle.Y))))
        return bool(np.max(np.abs(residual)) <= 1e-12 * scale)
    return False


# ---------------------------------------------------------------------------------------------
# one-dimensional laws of the growth factor: scalar states and rotation-invariant problems
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GrowthLaw:
    r"""The law of the one-step growth factor G, whose products are the norms of the iterates.

    * ``"chi2"``: a scalar state, :math:`G = |p + \kappa U|`, :math:`U\sim\chi^2_S`;
    * ``"isotropic"``: :math:`G = \|Ae_1\|`, :math:`G^2 = (p+\kappa U)^2 + \kappa^2 UV`,
      :math:`V\sim\chi^2_{d-1}` independent of U;
    * ``"finite"``: a scalar state over enumerated batches, G = |A_b| with weights.
    """

    kind: str
    p: float = 0.0
    kappa: float = 0.0
    S: int = 1
    d: int = 1
    factors: tuple = ()
    weights: tuple = ()

    @property
    def method(self) -> str:
        return {
            "chi2": "exact-chi2 (mpmath quadrature against the χ² density)",
            "isotropic": "exact-isotropic (rotation invariance: i.i.d. factors |A e₁|; "
            "mpmath quadrature with the χ² law in closed form)",
            "finite": "exact-batches (finite sum over every minibatch)",
        }[self.kind]

    def even_moment(self, k: int) -> Fraction:
        """:math:`\\mathbb E[G^{2k}]` exactly (rational arithmetic on the float inputs)."""
        if self.kind == "finite":
            return sum(
                (w * Fraction(f) ** (2 * k) for f, w in zip(self.factors, self.weights)),
                Fraction(0),
            )
        p, kappa = Fraction(self.p), Fraction(self.kappa)

        def chi2(j: int, dof: int) -> int:
            return math.prod(dof + 2 * i for i in range(j))

        def shifted(power: int, extra: int) -> Fraction:  # E[(p + κU)^power U^extra]
            return sum(
                (
                    math.comb(power, j) * p ** (power - j) * kappa**j * chi2(j + extra, self.S)
                    for j in range(power + 1)
                ),
                Fraction(0),
            )

        if self.kind == "chi2":
            return shifted(2 * k, 0)
        return sum(
            (
                math.comb(k, i) * kappa ** (2 * i) * chi2(i, self.d - 1) * shifted(2 * (k - i), i)
                for i in range(k + 1)
            ),
            Fraction(0),
        )

    @property
    def bounded(self) -> bool:
        """Every factor ≤ 1 (then all moments are finite)."""
        return self.kind == "finite" and max(abs(f) for f in self.factors) <= 1

    # -- mpmath expectations ---------------------------------------------------------------
    def _chi2(self, fn, alpha=0):
        r""":math:`\mathbb E f(U)`, U ~ χ²_S, by tanh-sinh quadrature in :math:`v = \sqrt u`
        (density :math:`\propto v^{S-1}e^{-v^2/2}`, smooth at 0 for every S), split at the
        zero of p + κu and near the peak of :math:`u^{\alpha+S/2-1}e^{-u/2}`."""
        half = mp.mpf(self.S) / 2
        norm = 2 / (2**half * mp.gamma(half))
        zero = mp.mpf(-self.p) / self.kappa if self.kappa != 0 else mp.mpf(-1)
        # the peak of |p + κu|^α u^(S/2−1) e^(−u/2) lies near 2(α + S/2) past the zero, with
        # a width of about 2√(α + S/2)
        peak = 2 * (mp.mpf(alpha) + half) + max(zero, 0)
        width = 2 * mp.sqrt(mp.mpf(alpha) + half) + 1
        points = {mp.mpf(0)} | {
            mp.sqrt(peak + j * width) for j in (-6, -3, 0, 3, 6) if peak + j * width > max(zero, 0)
        }
        if zero > 0:
            points.add(mp.sqrt(zero))
        points = [*sorted(points), mp.inf]
        value, error = mp.quad(
            lambda v: fn(v * v) * norm * v ** (self.S - 1) * mp.exp(-v * v / 2),
            points,
            error=True,
        )
        if not error <= QUAD_TOLERANCE * max(1, abs(value)):
            raise ArithmeticError(
                f"tail quadrature did not converge (estimated error {mp.nstr(error, 3)} on "
                f"{mp.nstr(value, 10)}): refusing to return an inexact tail index."
            )
        return value

    def moment(self, alpha) -> mp.mpf:
        r""":math:`\mathbb E[G^\alpha]`."""
        alpha = mp.mpf(alpha)
        if self.kind == "finite":
            return mp.fsum(
                mp.mpf(w.numerator) / w.denominator * abs(mp.mpf(f)) ** alpha
                for f, w in zip(self.factors, self.weights)
                if f != 0
            )
        p, kappa = mp.mpf(self.p), mp.mpf(self.kappa)
        if self.kind == "chi2":
            return self._chi2(lambda u: abs(p + kappa * u) ** alpha, alpha)
        m, beta = mp.mpf(self.d - 1) / 2, alpha / 2

        def inner(u):  # E[(s + tV)^β], V ~ χ²_{d−1} = 2·Gamma(m): Tricomi's U
            s, t = (p + kappa * u) ** 2, kappa**2 * u
            if s == 0:
                return (2 * t) ** beta * mp.gamma(m + beta) / mp.gamma(m)
            return s ** (beta + m) * (2 * t) ** (-m) * mp.hyperu(m, m + beta + 1, s / (2 * t))

        return self._chi2(inner, alpha)

    def log_moment(self) -> mp.mpf:
        r""":math:`\mathbb E\log G` (−∞ when G = 0 has positive probability)."""
        if self.kind == "finite":
            if any(f == 0 for f in self.factors):
                return mp.ninf
            return mp.fsum(
                mp.mpf(w.numerator) / w.denominator * mp.log(abs(mp.mpf(f)))
                for f, w in zip(self.factors, self.weights)
            )
        p, kappa = mp.mpf(self.p), mp.mpf(self.kappa)
        if self.kind == "chi2":
            return self._chi2(lambda u: mp.log(abs(p + kappa * u)))
        m = mp.mpf(self.d - 1) / 2

        def inner(u):  # ½ E log(s + tV) = ½[log 2t + ∂_β E(z + Y)^β at β = 0], Y ~ Gamma(m)
            s, t = (p + kappa * u) ** 2, kappa**2 * u
            z = s / (2 * t)

            def power(beta):
                return z ** (beta + m) * mp.hyperu(m, m + beta + 1, z)

            return (mp.log(2 * t) + mp.diff(power, 0)) / 2

        return self._chi2(inner)


def _growth_law(rmap) -> _GrowthLaw | None:
    """The one-dimensional law when the problem has one (see :class:`_GrowthLaw`), else None."""
    from .sampling import _Data, _Online

    M, B, K = rmap.state_space
    n = M.shape[0]
    oracle = rmap.oracle
    H = rmap.hessian
    if isinstance(oracle, _Online):
        S = int(oracle.batch)
        A = oracle.LA @ oracle.LA.T
        if n == 1:
            q = float((B @ K)[0, 0])
            p = float(M[0, 0]) - q * float(H[0, 0])
            return _GrowthLaw("chi2", p=p, kappa=q * float(A[0, 0]) / S, S=S, d=1)
        d = rmap.dim
        I = np.eye(n)

        def scalar(X):  # X = x·I (to rounding), else None
            x = float(X[0, 0])
            if X.shape != (n, n) or not np.allclose(X, x * I, rtol=0, atol=1e-13 * abs(x)):
                return None
            return x

        m, b, k, a = scalar(M), scalar(B), scalar(K), scalar(A)
        if n == d and None not in (m, b, k, a) and scalar(H) is not None:
            a = float(H[0, 0])
            return _GrowthLaw("isotropic", p=m - b * k * a, kappa=b * k * a / S, S=S, d=d)
        return None
    if isinstance(oracle, _Data) and n == 1:
        enumerated = _batches(oracle.X.shape[0], int(oracle.batch), oracle.replacement)
        if enumerated is None:
            return None
        factors = tuple(float(f) for f in _batch_maps(rmap, enumerated)[:, 0, 0])
        return _GrowthLaw("finite", factors=factors, weights=tuple(enumerated[1]))
    return None


def _illinois(f, lo, hi, tol) -> mp.mpf:
    """The root of f in [lo, hi] (f(lo) < 0 < f(hi)) by the Illinois false-position method."""
    flo, fhi = f(lo), f(hi)
    side = 0
    for _ in range(200):
        x = (lo * fhi - hi * flo) / (fhi - flo)
        fx = f(x)
        if fx == 0 or hi - lo < tol:
            return x
        if fx < 0:
            lo, flo = x, fx
            if side == -1:
                fhi /= 2
            side = -1
        else:
            hi, fhi = x, fx
            if side == 1:
                flo /= 2
            side = 1
        if abs(fx) < tol:
            return x
    raise ArithmeticError("tail_index: the Kesten root did not converge in 200 steps.")


# ---------------------------------------------------------------------------------------------
# public: tail index, Lyapunov exponent, moment conditions, stationary moments
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailIndex:
    r"""The tail index α of the stationary law: :math:`E|z|^\beta < \infty` iff β < α.

    ``alpha`` is exact (``inf``: every moment is finite) or ``None`` when only bracketed;
    ``bracket = (lo, hi)`` holds α (``lo < α ≤ hi``) from the exact even-moment radii
    :math:`\rho(\mathbb E[A^{\otimes 2k}])` (for an exact α it is the pair of even integers
    around it, a check of the root); ``method`` says how α was obtained.
    """

    alpha: float | None
    bracket: tuple[float, float]
    method: str

    @property
    def exact(self) -> bool:
        return self.alpha is not None

    def __repr__(self) -> str:
        shown = "None" if self.alpha is None else f"{self.alpha:.10g}"
        return f"TailIndex(alpha={shown}, bracket={self.bracket}, method={self.method!r})"


@dataclass(frozen=True)
class LyapunovExponent:
    r"""The top Lyapunov exponent :math:`\gamma = \lim_t \frac1t\log\|A_t\cdots A_1\|` of the
    random update; a stationary law exists iff γ < 0.  ``stderr`` is 0 for the exact methods
    and the standard error over independent chains of the Monte Carlo estimate."""

    value: float
    stderr: float
    method: str

    @property
    def exact(self) -> bool:
        return self.method != "monte-carlo"

    @property
    def stationary(self) -> bool | None:
        """Whether a stationary law exists: ``value < 0``; for a Monte Carlo estimate None
        when the value is within four standard errors of 0."""
        if self.exact:
            return self.value < 0
        if abs(self.value) < 4 * self.stderr:
            return None
        return self.value < 0

    def __repr__(self) -> str:
        se = "" if self.exact else f" ± {self.stderr:.2g}"
        return f"LyapunovExponent(value={self.value:.10g}{se}, method={self.method!r})"


def _no_law(rmap, context: str, gamma: float):
    from .errors import UnstableError

    return UnstableError.at(
        context,
        dict(sorted(rmap.values.items(), key=str)),
        subject=rmap.describe(),
        reason=f"the top Lyapunov exponent of the random update is {gamma:.6g} ≥ 0, so the "
        "iterates leave every bounded set",
    )


def lyapunov_exponent(
    result,
    params: Mapping | None = None,
    *,
    chains: int = 1000,
    steps: int = 2000,
    burn_in: int = 100,
    seed: int = 0,
) -> LyapunovExponent:
    r"""The top Lyapunov exponent γ of the random update :math:`A_t = M + B(\hat H_t - H)K` of
    ``result`` (from :func:`symsgd.stationary`) at ``params``; a stationary law exists iff
    γ < 0 (it may exist beyond the mean-square edge, with infinite variance).

    * **exact** for a scalar state: :math:`\gamma = \mathbb E\log|A|`, by mpmath quadrature
      against the χ² density (online Gaussian data) or a finite sum over every minibatch;
    * **exact** for rotation-invariant problems (SGD on isotropic online Gaussian regression,
      A = aI): given the past, :math:`A_t v` has the law of :math:`\|Ae_1\|` for every unit
      v, so the norms are products of i.i.d. factors and :math:`\gamma = \mathbb
      E\log\|Ae_1\|`;
    * additive noise: :math:`\gamma = \log\rho(M)`;
    * otherwise **Monte Carlo** of the projective chain :math:`v_{t+1} = A_tv_t/\|A_tv_t\|`
      (``chains`` independent chains of ``steps`` steps after ``burn_in``; minibatch Hessians
      from the simulator's own oracle): the mean of :math:`\log\|A_tv_t\|` with the standard
      error over chains.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> g = lyapunov_exponent(r, {ss.lr: 1.2, a: 1})  # beyond the edge λa = 2/3: α < 2
    >>> g.stationary, round(g.value, 6)
    (True, -0.358657)
    """
    rmap = _random_map(result, params, "lyapunov_exponent()")
    M, B, K = rmap.state_space
    if not rmap.noise.depends_on_state():
        radius = _radius(M)
        value = math.log(radius) if radius > 0 else -math.inf
        return LyapunovExponent(value, 0.0, "exact-additive (log ρ(M))")
    law = _growth_law(rmap)
    if law is not None:
        with mp.workdps(DPS):
            value = law.log_moment()
        return LyapunovExponent(float(value), 0.0, law.method)
    for name, value in (("chains", chains), ("steps", steps)):
        if not (isinstance(value, int) and value >= 2):
            raise ValueError(f"lyapunov_exponent: {name} must be an integer ≥ 2; got {value!r}.")
    if not (isinstance(burn_in, int) and burn_in >= 0):
        raise ValueError(f"lyapunov_exponent: burn_in must be an integer ≥ 0; got {burn_in!r}.")
    n = M.shape[0]
    seeds = np.random.SeedSequence(seed).generate_state(burn_in + steps)
    v = np.random.default_rng(seeds[0]).standard_normal((chains, n))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    logs = np.zeros(chains)
    for t in range(burn_in + steps):
        Hs = _sampled_hessians(rmap, chains, int(seeds[t]))
        A = M + np.einsum("ij,kjl,lm->kim", B, Hs - rmap.hessian, K)
        w = np.einsum("kij,kj->ki", A, v)
        norm = np.linalg.norm(w, axis=1)
        if t >= burn_in:
            with np.errstate(divide="ignore"):
                logs += np.log(norm)
        v = w / np.where(norm > 0, norm, 1.0)[:, None]
    per_chain = logs / steps
    if not np.all(np.isfinite(per_chain)):
        return LyapunovExponent(-math.inf, 0.0, "monte-carlo")
    stderr = float(per_chain.std(ddof=1) / math.sqrt(chains))
    return LyapunovExponent(float(per_chain.mean()), stderr, "monte-carlo")


def tail_index(result, params: Mapping | None = None) -> TailIndex:
    r"""The tail index α of the stationary law of ``result`` (from :func:`symsgd.stationary`)
    at ``params``: :math:`P(|z| > t) \sim c\,t^{-\alpha}` (Kesten–Goldie), so the moments of
    order β < α are finite and those of order ≥ α infinite.

    * **exact** for a scalar state: the positive root of the **Kesten equation**
      :math:`\mathbb E|A|^\alpha = 1` (:math:`\log\mathbb E|A|^\alpha` is convex in α, 0 at
      α = 0 with slope the Lyapunov exponent < 0, so the root is unique), with
      :math:`A = p + \kappa\chi^2_S` for online Gaussian data (mpmath quadrature against the
      χ² density) or a finite sum over every minibatch with its exact multinomial/subset
      weight; a data set whose every factor has :math:`|A| \le 1` has no power law (α = ∞);
    * **exact** for rotation-invariant problems (isotropic online regression, SGD): the root
      of :math:`\mathbb E\|Ae_1\|^\alpha = 1` (the norms are products of i.i.d. factors, see
      :func:`lyapunov_exponent`);
    * otherwise a **bracket** (2k, 2k + 2] from the exact even-moment radii
      :math:`\rho(\mathbb E[A^{\otimes 2k}])` (Isserlis for Gaussian data, batch enumeration
      or sums of i.i.d. draws for a data set), ``alpha=None``.

    Additive noise, and minibatch noise that vanishes at the minimiser (no label noise),
    give α = ∞.  :class:`~symsgd.UnstableError` when the Lyapunov exponent is ≥ 0 (no
    stationary law).  The exact root is certified: it lies in the even-moment bracket from
    exact rational moments and solves the Kesten equation to :data:`ROOT_TOLERANCE`.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(ss.batch_size))
    >>> t = tail_index(r, {ss.lr: 1, a: 1, ss.batch_size: 2})  # the mean-square edge 2S/(S+2)
    >>> round(t.alpha, 9), t.bracket
    (2.0, (0, 2))
    """
    rmap = _random_map(result, params, "tail_index()")
    if not rmap.noise.depends_on_state():
        return TailIndex(math.inf, (math.inf, math.inf), "additive noise: every moment is finite")
    law = _growth_law(rmap)
    if law is None:
        return _bracket_only(rmap)
    with mp.workdps(DPS):
        gamma = law.log_moment()
        if not gamma < 0:
            raise _no_law(rmap, "tail_index()", float(gamma))
        if _degenerate(rmap):
            return TailIndex(
                math.inf,
                (math.inf, math.inf),
                "no gradient noise at the minimiser: the stationary law is a point mass",
            )
        if law.bounded:
            return TailIndex(
                math.inf, (math.inf, math.inf), f"{law.method}: every factor |A| ≤ 1, no power law"
            )
        k = 1
        while k <= MAX_EVEN_ORDER // 2 and law.even_moment(k) < 1:
            k += 1
        if k <= MAX_EVEN_ORDER // 2:
            lo, hi = 2 * k - 2, 2 * k
            if law.even_moment(k) == 1:  # exactly at an even moment edge
                return TailIndex(float(hi), (lo, hi), law.method)
            upper = mp.mpf(hi)
        else:
            lo, hi = MAX_EVEN_ORDER, math.inf
            upper = mp.mpf(2 * MAX_EVEN_ORDER)
            while law.moment(upper) <= 1:
                upper *= 2

        def f(alpha):
            return mp.log(law.moment(alpha))

        lower = mp.mpf(lo)
        if lo == 0:  # f(0) = 0 with slope γ < 0: step in until f < 0, starting from the
            # root of the parabola through f(0) = 0, f'(0) = γ and f(upper)
            if mp.isinf(gamma):  # A = 0 with positive probability
                guess = upper / 2
            else:
                guess = -gamma * upper**2 / (f(upper) - gamma * upper)
            lower = min(guess * mp.mpf("0.9"), upper / 2)
            while not f(lower) < 0:
                lower /= 2
            if lower < guess * mp.mpf("1.1") < upper and f(guess * mp.mpf("1.1")) > 0:
                upper = guess * mp.mpf("1.1")
        root = _illinois(f, lower, upper, mp.mpf(ALPHA_TOLERANCE))
        residual = abs(f(root))
        if not (lo <= root <= hi and residual < ROOT_TOLERANCE):
            raise ArithmeticError(
                f"tail_index: the Kesten root {mp.nstr(root, 12)} fails its certificate "
                f"(bracket ({lo}, {hi}], residual {mp.nstr(residual, 3)})."
            )
        return TailIndex(float(root), (lo, hi), law.method)


def _bracket_only(rmap) -> TailIndex:
    """(2k, 2k+2] from the exact even-moment radii, as far as they can be computed."""
    lo = 0
    method = ""
    for order in range(2, MAX_EVEN_ORDER + 1, 2):
        found = moment_radius(rmap, order)
        if found is None:
            reason = "no exact moment operator beyond this order"
            return TailIndex(None, (lo, math.inf), f"even-moment bracket ({method}; {reason})")
        radius, method = found
        if radius >= 1:
            note = "" if order > 2 else "; a stationary law exists iff lyapunov_exponent < 0"
            return TailIndex(None, (lo, order), f"even-moment bracket ({method}{note})")
        lo = order
    return TailIndex(None, (lo, math.inf), f"even-moment bracket ({method})")


def _online_scalar(result, order, name: str, otherwise: str):
    """The recursion of ``result`` when it is a one-dimensional state (one parameter or one
    eigen-mode) with online ``MinibatchNoise`` on ``LinearRegression`` and ``order`` is an even
    integer ≥ 2; clear errors (naming ``name`` and what to use ``otherwise``) else."""
    from ._result import recursion_of
    from .landscapes import LinearRegression
    from .noise import MinibatchNoise

    if not (isinstance(order, int) and order >= 2 and order % 2 == 0):
        raise ValueError(f"{name}: order must be an even integer ≥ 2; got {order!r}.")
    recursion = recursion_of(result, f"{name}()")
    land, noise = recursion.landscape, recursion.noise
    if not (
        recursion.M.shape == (1, 1)
        and isinstance(land, LinearRegression)
        and land.data is None
        and isinstance(noise, MinibatchNoise)
    ):
        raise NotImplementedError(
            f"{name}() covers a one-dimensional state (one parameter or one eigen-mode) with "
            f"online MinibatchNoise on LinearRegression; {otherwise}."
        )
    return recursion


def moment_conditions(result, order: int) -> sp.Relational:
    r"""The condition :math:`\mathbb E[(p + q\hat h)^{\text{order}}] < 1` for a finite
    stationary moment of even ``order`` of a one-dimensional state (a scalar problem, or one
    eigen-mode taken alone) under online Gaussian minibatch noise: the update is
    :math:`A = M + BK(\hat h - h)` with :math:`\hat h = \frac aS\chi^2_S`, expanded by the
    binomial theorem in the χ² moments (:func:`chi2_moments`); symbolic in every parameter.
    For order 2 it is the library's mean-square condition, for order 4 :func:`sgd_fourth_moment`.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(ss.batch_size))
    >>> moment_conditions(r, 2)
    a**2*lambda**2 - 2*a*lambda + 1 + 2*a**2*lambda**2/S < 1
    """
    recursion = _online_scalar(
        result,
        order,
        "moment_conditions",
        "use tail_index(result, params), whose bracket comes from the even-moment radii",
    )
    land, noise = recursion.landscape, recursion.noise
    M, B, K = recursion.M[0, 0], recursion.B[0, 0], recursion.K[0, 0]
    a = sp.Matrix(land.A)[0, 0]
    S = noise.batch_size
    q = B * K
    p = M - q * a
    raw = chi2_moments(S, order)
    value = sum(
        sp.binomial(order, j) * p ** (order - j) * q**j * (a / S) ** j * raw[j]
        for j in range(order + 1)
    )
    value = sp.expand(value)
    values = getattr(result, "values", {})
    if values:
        value = value.xreplace(values)
    return sp.StrictLessThan(value, 1)


def _online_joint_moments(p, q, bs, *, beta, a, s2, S, order: int, zero) -> dict:
    r""":math:`\mathbb E[A^jb^k]` (j + k ≤ ``order``) for scalar online regression, with
    :math:`A = p + q\hat h`, :math:`b = b_s(\beta\hat h - \beta a - \sigma\sqrt{\hat h/S}\,\zeta)`,
    :math:`\hat h = \frac aS\chi^2_S`, ζ ~ N(0, 1) independent: expand in ζ (odd powers vanish,
    :math:`\mathbb E\zeta^{2m} = (2m-1)!!`) and in ĥ (χ² moments).  Works in any ring
    (``zero``: Fractions for numbers, sympy for symbols)."""
    hat = [
        (a / S) ** r * math.prod((S + 2 * i for i in range(r)), start=1)
        for r in range(2 * order + 1)
    ]

    def mul(x: list, y: list) -> list:
        out = [zero] * (len(x) + len(y) - 1)
        for i, xi in enumerate(x):
            for j, yj in enumerate(y):
                out[i + j] += xi * yj
        return out

    def pw(x: list, e: int) -> list:
        out = [zero + 1]
        for _ in range(e):
            out = mul(out, x)
        return out

    joint = {}
    for j in range(order + 1):
        for k in range(order + 1 - j):
            total = zero
            for ell in range(0, k + 1, 2):  # odd powers of ζ vanish
                poly = [zero] * (ell // 2) + mul(pw([p, q], j), pw([-beta * a, beta], k - ell))
                weight = math.comb(k, ell) * (s2 / S) ** (ell // 2) * _double_factorial(ell - 1)
                total += weight * sum((c * hat[r] for r, c in enumerate(poly)), zero)
            joint[j, k] = bs**k * total
    return joint


def _moment_recursion(joint: dict, order: int, one, zero, *, check: bool) -> list:
    r""":math:`\mathbb E\delta^r(1 - \mathbb EA^r) = \sum_{i<r}\binom ri\mathbb E[A^ib^{r-i}]
    \mathbb E\delta^i`, r = 0 … ``order`` (``check``: refuse :math:`\mathbb EA^r \ge 1`, r even)."""
    moments = [one]
    for r in range(1, order + 1):
        growth = joint[r, 0]
        if check and r % 2 == 0 and growth >= 1:
            raise ValueError(
                f"stationary_moments(): the stationary moment of order {r} is infinite here "
                f"(E[A^{r}] = {float(growth):.6g} ≥ 1); lower the order or the learning rate."
            )
        forcing = sum((math.comb(r, i) * joint[i, r - i] * moments[i] for i in range(r)), zero)
        moments.append(forcing / (1 - growth))
    return moments


def symbolic_moments(result, order: int = 4) -> tuple:
    r"""Closed forms of the stationary raw moments :math:`\mathbb E\delta^r`, r = 1 …
    ``order``, of scalar online regression (a one-dimensional state with online
    :class:`~symsgd.MinibatchNoise` on :class:`~symsgd.LinearRegression`), symbolic in every
    parameter: the moment recursion of :func:`stationary_moments` with the χ² joint moments
    of (A, b) in sympy.  Valid where :func:`moment_conditions` of each even order holds; the
    kurtosis is ``m[3] / m[1]**2``.  The rational functions come unsimplified (a multivariate
    ``cancel`` of the fourth moment with every parameter symbolic takes minutes): simplify after
    substituting the parameters you do not need symbolic.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(ss.batch_size))
    >>> m = symbolic_moments(r)
    >>> sp.simplify(m[1] - r.cov)
    0
    >>> sp.factor((m[3] / m[1] ** 2).subs({ss.batch_size: 1, a: 1}))  # kurtosis, S = 1, λa = λ
    3*(3*lambda - 2)*(21*lambda**2 - 6*lambda + 2)/(105*lambda**3 - 60*lambda**2 + 18*lambda - 4)
    """
    from .sampling import _label_variance, _minimiser

    recursion = _online_scalar(
        result, order, "symbolic_moments", "use stationary_moments(result, params) for data sets"
    )
    land, noise = recursion.landscape, recursion.noise
    M, B, K = recursion.M[0, 0], recursion.B[0, 0], recursion.K[0, 0]
    a = sp.Matrix(land.A)[0, 0]
    q = B * K
    star = sp.Matrix(land.theta_star)[0, 0]
    beta = _minimiser(land, recursion.optimizer.weight_decay)[0, 0] - star
    sigma2 = sp.sympify(_label_variance(land))
    zero = sp.Integer(0)
    joint = _online_joint_moments(
        M - q * a, q, B, beta=beta, a=a, s2=sigma2, S=noise.batch_size, order=order, zero=zero
    )
    joint = {key: sp.expand(value) for key, value in joint.items()}
    moments = _moment_recursion(joint, order, sp.Integer(1), zero, check=False)
    out = tuple(moments[1:])
    values = getattr(result, "values", {})
    return tuple(m.xreplace(values) for m in out) if values else out


@dataclass(frozen=True)
class StationaryMoments:
    r"""Raw moments :math:`\mathbb E[\delta^r]`, r = 1 … order, of the stationary deviation δ
    from the minimiser of a scalar problem, and its kurtosis
    :math:`\mathbb E\delta^4/(\mathbb E\delta^2)^2` (3 for a Gaussian law)."""

    moments: tuple[float, ...]
    method: str

    @property
    def variance(self) -> float:
        return self.moments[1] - self.moments[0] ** 2

    @property
    def kurtosis(self) -> float:
        if len(self.moments) < 4:
            raise ValueError("StationaryMoments.kurtosis needs order ≥ 4.")
        m1, m2, m3, m4 = (Fraction(m) for m in self.moments[:4])
        central4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        return float(central4 / (m2 - m1**2) ** 2)


def stationary_moments(result, params: Mapping | None = None, order: int = 4) -> StationaryMoments:
    r"""Exact stationary moments of a scalar problem from the moment recursion of
    :math:`\delta' = A\delta + b` (A and b drawn together from the same minibatch):

    .. math:: \mathbb E\delta^r\,(1 - \mathbb E A^r)
              = \sum_{i<r}\binom ri\,\mathbb E[A^ib^{r-i}]\,\mathbb E\delta^i,

    with :math:`b = B(\hat g(\theta_\gamma) - \mathbb E\hat g(\theta_\gamma))` the gradient
    noise at the minimiser.  Online Gaussian data: :math:`\hat g = \beta\hat h -
    \sigma\sqrt{\hat h/S}\,\zeta` (β = θ_γ − θ*, ζ ~ N(0,1) independent of ĥ), so the joint
    moments are χ² moments; a data set: a finite sum over every minibatch; additive noise:
    A = M and Gaussian b.  Rational arithmetic on the float inputs.  ``ValueError`` when
    :math:`\mathbb E A^{\text{order}} \ge 1` (that moment is infinite).

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, label_variance=1),
    ...                   ss.MinibatchNoise(1))
    >>> m = stationary_moments(r, {ss.lr: 0.1, a: 1})
    >>> round(m.variance, 12), round(float(r.cov.subs({ss.lr: 0.1, a: 1})), 12)
    (0.058823529412, 0.058823529412)
    >>> round(m.kurtosis, 6)
    3.046753
    """
    from .sampling import _Additive, _Data, _Online

    if not (isinstance(order, int) and order >= 2):
        raise ValueError(f"stationary_moments: order must be an integer ≥ 2; got {order!r}.")
    rmap = _random_map(result, params, "stationary_moments()")
    M, B, K = rmap.state_space
    if M.shape != (1, 1):
        raise NotImplementedError(
            f"stationary_moments() covers a one-dimensional state; this one has {M.shape[0]}."
        )
    m, bs, q = Fraction(float(M[0, 0])), Fraction(float(B[0, 0])), Fraction(float((B @ K)[0, 0]))
    h = Fraction(float(rmap.hessian[0, 0]))
    p = m - q * h
    oracle = rmap.oracle
    joint: dict = {}
    if isinstance(oracle, _Additive):
        c = bs * Fraction(float(oracle.L[0, 0]))
        for j in range(order + 1):
            for k in range(order + 1 - j):
                gauss = _double_factorial(k - 1) if k % 2 == 0 else 0
                joint[j, k] = m**j * c**k * gauss
        method = "exact-additive"
    elif isinstance(oracle, _Online):
        joint = _online_joint_moments(
            p,
            q,
            bs,
            beta=Fraction(float(rmap.theta_min[0] - oracle.star[0])),
            a=Fraction(float(oracle.LA[0, 0])) ** 2,
            s2=Fraction(float(oracle.sigma)) ** 2,
            S=int(oracle.batch),
            order=order,
            zero=Fraction(0),
        )
        method = "exact-chi2"
    elif isinstance(oracle, _Data):
        pairs = scalar_affine_maps(rmap, "stationary_moments()")
        for j in range(order + 1):
            for k in range(order + 1 - j):
                joint[j, k] = sum((w * A**j * b**k for A, b, w in pairs), Fraction(0))
        method = "exact-batches"
    else:  # pragma: no cover - the oracles are exhaustive
        raise NotImplementedError(f"stationary_moments() for {type(oracle).__name__}")
    moments = _moment_recursion(joint, order, Fraction(1), Fraction(0), check=True)
    return StationaryMoments(tuple(float(v) for v in moments[1:]), method)


def scalar_affine_maps(rmap, context: str) -> list[tuple[Fraction, Fraction, Fraction]]:
    r"""The exact random update :math:`\delta' = A_b\delta + c_b` of a one-dimensional state on
    a finite data set (a prepared problem whose oracle samples ``LinearRegression.from_data``)
    as a list of ``(A_b, c_b, p_b)`` over every distinct minibatch b (rational arithmetic on the
    float inputs): :math:`A_b = p + q\hat h_b` with :math:`\hat h_b` the batch mean of
    :math:`x_i^2`, :math:`c_b = B(\hat g_b - \bar g)` the batch's gradient noise at the
    minimiser θ_γ (:math:`g_i = x_i(x_i\theta_\gamma - y_i)`), and :math:`p_b` its exact
    multinomial (with replacement) or uniform-subset (without) probability.
    ``NotImplementedError`` (naming ``context``) for other problems or more than
    :data:`MAX_BATCHES` minibatches.

    >>> import symsgd as ss
    >>> from symsgd.sampling import prepare
    >>> land = ss.LinearRegression.from_data([[1.0], [2.0]], [1.0, 0.0])
    >>> p = prepare(ss.SGD(0.25), land, ss.MinibatchNoise(1), {})
    >>> [(float(A), float(c), float(w)) for A, c, w in scalar_affine_maps(p, "example")]
    [(0.75, 0.2, 0.5), (0.0, -0.2, 0.5)]
    """
    from .sampling import _Data

    M, B, K = rmap.state_space
    oracle = rmap.oracle
    if M.shape != (1, 1) or not isinstance(oracle, _Data):
        raise NotImplementedError(
            f"{context}: the finite affine mixture needs a one-dimensional state on a finite "
            f"data set (LinearRegression.from_data with one column); got {rmap.describe()}."
        )
    enumerated = _batches(oracle.X.shape[0], int(oracle.batch), oracle.replacement)
    if enumerated is None:
        raise NotImplementedError(f"{context}: more than {MAX_BATCHES} distinct minibatches.")
    bs, q = Fraction(float(B[0, 0])), Fraction(float((B @ K)[0, 0]))
    p = Fraction(float(M[0, 0])) - q * Fraction(float(rmap.hessian[0, 0]))
    x = [Fraction(float(v)) for v in oracle.X[:, 0]]
    y = [Fraction(float(v)) for v in oracle.Y]
    theta = Fraction(float(rmap.theta_min[0]))
    S = int(oracle.batch)
    grads = [xi * (xi * theta - yi) for xi, yi in zip(x, y)]
    mean = sum(grads, Fraction(0)) / len(grads)
    pairs = []
    for batch, w in zip(*enumerated):
        hb = sum((x[i] ** 2 for i in batch), Fraction(0)) / S
        gb = sum((grads[i] for i in batch), Fraction(0)) / S
        pairs.append((p + q * hb, bs * (gb - mean), w))
    return pairs


@dataclass(frozen=True)
class HomogeneousUpdate:
    r"""Linear regression's random update through one random matrix: the homogeneous state
    :math:`\tilde z = (z, 1)` moves by :math:`\tilde z' = (P + \hat B\,\hat W R)\,\tilde z`,

    .. math:: P = \begin{pmatrix} M - BHK & -B\,\mathbb E\hat g\\ 0 & 1\end{pmatrix},\quad
              \hat B = \begin{pmatrix}B&0\\0&0\end{pmatrix},\quad
              \hat W = \frac1S\sum_{i\in\text{batch}} w_iw_i^\top,

    with :math:`w_i = (x_i, \epsilon_i)\sim N(0, \Omega)`, :math:`\Omega =
    \operatorname{diag}(A, 1)` and :math:`R = \begin{pmatrix}K & \theta_\gamma - \theta_*\\ 0 &
    -\sigma\end{pmatrix}` online (label noise σε), or :math:`w_i = (x_i, y_i)`,
    :math:`\Omega = \frac1N\sum_iw_iw_i^\top` and :math:`R = \begin{pmatrix}K & \theta_\gamma
    \\ 0 & -1\end{pmatrix}` for a data set, so that the minibatch Hessian and the gradient
    noise at the minimiser come from the same inputs (the per-sample gradient is
    :math:`[I\;0]\,w_iw_i^\top R\tilde z`).  ``samples``: the rows :math:`w_i` of a data set
    (None online).  The exact fourth-order law of :math:`\hat W`: ``tensors`` (its slot
    tensors of orders 0 … 4: Isserlis, or sums of i.i.d. draws) or ``batches`` (every
    minibatch's :math:`\hat W` and probability); both None when not asked for or when no exact
    route exists.  ``method`` names the route ("exact-isserlis", "exact-samples",
    "exact-batches", or None)."""

    P: np.ndarray
    Bh: np.ndarray
    R: np.ndarray
    Omega: np.ndarray
    samples: np.ndarray | None
    tensors: list | None
    batches: tuple | None
    method: str | None

    def expected_power4(self, left, right, shift, W: np.ndarray | None = None) -> np.ndarray:
        r""":math:`\mathbb E[(\text{shift} + \text{left}\,\hat W\,\text{right})^{\otimes4}]`
        as a Kronecker matrix (square factors), or, given a 4-tensor W over the columns, the
        4-tensor :math:`\mathbb E[(\cdot)^{\otimes4}]\cdot W` (contracted without forming the
        matrix)."""
        if self.batches is not None:
            stack, weights = self.batches
            A = shift + np.einsum("ij,kjl,lm->kim", left, stack, right)
            if W is None:
                return np.einsum("k,kij->ij", weights, _kron_power(A, 4))
            out = np.einsum("kia,abcd->kibcd", A, W)
            out = np.einsum("kjb,kibcd->kijcd", A, out)
            out = np.einsum("klc,kijcd->kijld", A, out)
            return np.einsum("k,kmd,kijld->ijlm", weights, A, out)
        if self.tensors is None:
            raise NotImplementedError("no exact fourth-order law of the minibatch matrix here.")
        D = [_sandwich(self.tensors[j], j, left, right) for j in range(5)]
        T = _mix(D, [_power(shift, j) for j in range(5)], 4)
        return _as_matrix(T, 4) if W is None else np.einsum("iajbkcld,abcd->ijkl", T, W)

    def stationary_fourth(self, context: str) -> np.ndarray:
        r""":math:`\mathbb E[\tilde z^{\otimes4}]` (every stationary moment of order ≤ 4, odd
        ones included; the last index is the constant 1): the solution of :math:`W =
        \mathbb E[\tilde A^{\otimes4}]\,W` with :math:`W_{\star\star\star\star} = 1`, its
        residual checked (``ArithmeticError`` naming ``context``).  The caller ensures
        ρ(E[A^{⊗4}]) < 1."""
        T = self.expected_power4(self.Bh, self.R, self.P)
        n1 = self.P.shape[0]
        size = n1**4
        last = size - 1  # the index (n, n, n, n): the constant 1
        system = np.eye(size) - T
        system[last] = 0.0
        system[last, last] = 1.0
        rhs = np.zeros(size)
        rhs[last] = 1.0
        moments = np.linalg.solve(system, rhs)
        residual = np.max(np.abs(T @ moments - moments))
        if not residual <= 1e-9 * max(1.0, float(np.max(np.abs(moments)))):
            raise ArithmeticError(f"{context}: the 4-tensor solve has residual {residual:.3g}.")
        return moments.reshape((n1,) * 4)


def homogeneous_update(rmap, context: str, fourth: bool = True) -> HomogeneousUpdate:
    r"""The :class:`HomogeneousUpdate` of a prepared linear-regression problem (online Gaussian
    inputs or a finite data set); with ``fourth`` the exact fourth-order law of :math:`\hat W`
    (every minibatch when there are at most :data:`MAX_BATCHES`, else Isserlis or sums of
    i.i.d. draws, as for :func:`moment_radius`).  ``NotImplementedError`` (naming ``context``)
    for other problems.

    >>> import symsgd as ss
    >>> from symsgd.sampling import prepare
    >>> land = ss.LinearRegression.from_data([[1.0], [2.0]], [1.0, 0.0])
    >>> u = homogeneous_update(prepare(ss.SGD(0.25), land, ss.MinibatchNoise(1), {}), "example")
    >>> u.method, u.batches[0].shape  # two minibatches, Ŵ = w_bw_bᵀ with w_b = (x_b, y_b)
    ('exact-batches', (2, 2, 2))
    >>> W = u.stationary_fourth("example")  # E[(δ, 1)^⊗4]; E δ² = E c²/(1 − E A²)
    >>> round(float(W[0, 0, 1, 1]), 6), round(float(W[0, 1, 1, 1]), 12)
    (0.055652, 0.0)
    """
    from .sampling import _Data, _Online

    M, B, K = rmap.state_space
    n, d = M.shape[0], rmap.dim
    oracle = rmap.oracle
    S = int(oracle.batch)
    tensors = batches = samples = None
    if isinstance(oracle, _Online):
        beta, c = rmap.theta_min - oracle.star, -float(oracle.sigma)
        mean_gradient = rmap.hessian @ beta
        L = np.zeros((d + 1, d + 1))
        L[:d, :d] = oracle.LA
        L[d, d] = 1.0
        Omega = L @ L.T
        if fourth:
            tensors = _sum_of_samples([_gaussian_moment(L, 2 * j) for j in range(5)], S, 4)
        method = "exact-isserlis"
    elif isinstance(oracle, _Data):
        beta, c = rmap.theta_min, -1.0
        samples = np.column_stack([oracle.X, oracle.Y])
        N = samples.shape[0]
        mean_gradient = oracle.X.T @ (oracle.X @ rmap.theta_min - oracle.Y) / N
        Omega = samples.T @ samples / N
        enumerated = _batches(N, S, oracle.replacement) if fourth else None
        method = None
        if enumerated is not None:
            idx = np.array(enumerated[0])
            stack = np.einsum("kbi,kbj->kij", samples[idx], samples[idx]) / S
            batches = (stack, np.array([float(w) for w in enumerated[1]]))
            method = "exact-batches"
        elif fourth and oracle.replacement:
            single = [_empirical_moment(samples, 2 * j) for j in range(5)]
            tensors = _sum_of_samples(single, S, 4)
            method = "exact-samples"
    else:
        raise NotImplementedError(
            f"{context} covers MinibatchNoise on LinearRegression: online Gaussian inputs (any "
            "A, label noise, batch S) or a finite data set (from_data, with or without "
            f"replacement); got {rmap.describe()}."
        )
    P = np.zeros((n + 1, n + 1))
    P[:n, :n] = M - B @ rmap.hessian @ K
    P[:n, n] = -B @ mean_gradient
    P[n, n] = 1.0
    Bh = np.zeros((n + 1, d + 1))
    Bh[:n, :d] = B
    R = np.zeros((d + 1, n + 1))
    R[:d, :n] = K
    R[:d, n] = beta
    R[d, n] = c
    return HomogeneousUpdate(P, Bh, R, Omega, samples, tensors, batches, method)


@dataclass(frozen=True)
class FourthMoments:
    r"""Exact stationary second and fourth moments of the deviation δ = θ − θ_γ (mean 0):
    ``cov`` = E[δδᵀ] (d×d) and ``fourth`` = E[δ^{⊗4}] (d×d×d×d); ``kurtosis[i]`` =
    :math:`\mathbb E\delta_i^4/(\mathbb E\delta_i^2)^2`.  ``homogeneous`` =
    :math:`\mathbb E[(z, 1)^{\otimes4}]` in the state coordinates z (the last index the
    constant 1): every stationary moment of the state of order ≤ 4, odd ones included."""

    cov: np.ndarray
    fourth: np.ndarray
    method: str
    homogeneous: np.ndarray

    @property
    def kurtosis(self) -> np.ndarray:
        d = self.cov.shape[0]
        diagonal = np.array([self.fourth[i, i, i, i] for i in range(d)])
        return diagonal / np.diagonal(self.cov) ** 2


def stationary_fourth_moments(result, params: Mapping | None = None) -> FourthMoments:
    r"""Exact stationary fourth moments of a small state (:math:`(n+1)^4` ≤
    :data:`MAX_OPERATOR_ROWS`) from the linear system on 4-tensors of the homogeneous state
    :math:`\tilde z = (z, 1)`, which moves by :math:`\tilde A = P + \hat B\hat WR` (the
    minibatch Hessian and the gradient noise at the minimiser from the same inputs: see
    :class:`HomogeneousUpdate`): :math:`W = \mathbb E[\tilde z^{\otimes 4}]` solves
    :math:`W = \mathbb E[\tilde A^{\otimes 4}]\,W` with :math:`W_{\star\star\star\star} = 1`
    (returned as ``homogeneous``); :math:`\mathbb E[\tilde A^{\otimes 4}]` is exact
    (Isserlis, sums of i.i.d. draws or every minibatch, as for :func:`moment_radius`).
    ``ValueError`` when the fourth moment is infinite (ρ₄ ≥ 1).

    >>> import sympy as sp, symsgd as ss
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(sp.diag(1, 2), label_variance=1),
    ...                   ss.MinibatchNoise(2))
    >>> m = stationary_fourth_moments(r, {ss.lr: 0.2})
    >>> bool(np.allclose(m.cov, np.array(r.cov.subs(ss.lr, 0.2), dtype=float)))
    True
    >>> np.round(m.kurtosis, 4)
    array([3.2158, 4.0641])
    """
    rmap = _random_map(result, params, "stationary_fourth_moments()")
    if not rmap.noise.depends_on_state():
        raise NotImplementedError(
            "stationary_fourth_moments(): with additive noise the stationary law is Gaussian "
            "(E δ^{⊗4} by Isserlis from result.cov)."
        )
    n = rmap.state_space[0].shape[0]
    if (n + 1) ** 4 > MAX_OPERATOR_ROWS:
        raise NotImplementedError(
            f"stationary_fourth_moments(): the state has {n} dimensions; the 4-tensor system "
            f"has more than {MAX_OPERATOR_ROWS} rows."
        )
    radius = moment_radius(rmap, 4)
    if radius is None:
        raise NotImplementedError(
            f"stationary_fourth_moments(): no exact moment operator (more than {MAX_BATCHES} "
            "minibatches sampled without replacement)."
        )
    if not radius[0] < 1:
        raise ValueError(
            f"stationary_fourth_moments(): the stationary fourth moment is infinite here "
            f"(ρ(E[A^{{⊗4}}]) = {radius[0]:.6g} ≥ 1); lower the learning rate."
        )
    update = homogeneous_update(rmap, "stationary_fourth_moments()")
    moments = update.stationary_fourth("stationary_fourth_moments()")
    Theta = rmap.theta_map
    fourth = moments[:n, :n, :n, :n]
    for axis in range(4):
        fourth = np.moveaxis(np.tensordot(Theta, fourth, axes=([1], [axis])), 0, axis)
    second = Theta @ moments[:n, :n, n, n] @ Theta.T
    return FourthMoments(second, fourth, update.method, moments)
