r"""The second-moment map of a linear recursion — the one home of the idea.

For :math:`z_{t+1} = M z_t + B\xi_t` with :math:`\operatorname{Cov}\xi_t = Q_0 +
\mathcal L(K\Sigma_z K^\top)` the second moment evolves by the affine map

.. math:: \Sigma_z \mapsto T(\Sigma_z) + BQ_0B^\top, \qquad
          T(\Sigma) = M\Sigma M^\top + B\,\mathcal L(K\Sigma K^\top)\,B^\top .

Everything about it lives here, once:

* **symbolic** — :func:`halfvec_operator_system` / :func:`halfvec_system`, the stationary
  equation :math:`\Sigma - T(\Sigma) = BQ_0B^\top` on the n(n+1)/2 upper-triangular entries of a
  symmetric Σ, and :func:`operator_matrix`, the matrix of T there (stability conditions, exact
  solvers);
* **numeric** — :class:`NumericMap`, the float64 map built once from a recursion at given
  parameter values: its :meth:`~NumericMap.radius` (a stationary law exists iff ρ(T) < 1; for
  additive noise :math:`\rho(T) = \rho(M)^2`) and its stationary solution
  :meth:`~NumericMap.solve`.  The simulator, the stability checks, the numeric solver, Adam's
  fixed point and the tail estimates all use it.

>>> import sympy as sp, symsgd as ss
>>> h, c = sp.symbols("h c", positive=True)
>>> rec = ss.build_recursion(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
>>> T = NumericMap.from_recursion(rec, {ss.lr: 0.5, h: 1, c: 1})
>>> T.radius()  # (1 - λh)²
0.25
>>> T.solve()  # λ²c / (1 - (1 - λh)²)
array([[0.33333333]])
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

__all__ = [
    "NumericMap",
    "from_halfvec",
    "halfvec_operator_system",
    "halfvec_system",
    "noise_operator",
    "operator_matrix",
    "pairs",
    "spectral_radius",
]


def pairs(n: int) -> list[tuple[int, int]]:
    """The upper-triangular index pairs (i ≤ j), row-major: the coordinates of a half-vector."""
    return [(i, j) for i in range(n) for j in range(i, n)]


def _unit(n: int, i: int, j: int) -> sp.Matrix:
    E = sp.zeros(n, n)
    E[i, j] = E[j, i] = 1
    return E


def from_halfvec(n: int, values: list) -> sp.ImmutableMatrix:
    """The symmetric n×n matrix whose upper triangle (row-major) is ``values``."""
    S = sp.zeros(n, n)
    for (i, j), v in zip(pairs(n), values):
        S[i, j] = S[j, i] = v
    return sp.ImmutableMatrix(S)


def halfvec_operator_system(
    operator: Callable[[sp.Matrix], sp.Matrix], forcing: sp.MatrixBase, n: int
) -> tuple[sp.Matrix, sp.Matrix]:
    r"""The system ``A s = b`` equivalent to :math:`F(\Sigma) = G` for symmetric Σ, where ``F`` is
    linear and maps symmetric matrices to symmetric matrices.

    ``s`` holds the upper-triangular entries of Σ (row-major, :func:`pairs`); column k of ``A``
    is the half-vectorisation of :math:`F(E_k)` for the symmetric unit matrix :math:`E_k`.

    >>> A, b = halfvec_operator_system(lambda S: 2 * S, sp.eye(2), 2)
    >>> A, b.T
    (Matrix([
    [2, 0, 0],
    [0, 2, 0],
    [0, 0, 2]]), Matrix([[1, 0, 1]]))
    """
    index = pairs(n)
    columns = []
    for i, j in index:
        F = operator(_unit(n, i, j))
        columns.append([sp.expand(F[p, q]) for p, q in index])
    A = sp.Matrix(len(index), len(index), lambda r, c: columns[c][r])
    b = sp.Matrix([sp.expand(forcing[p, q]) for p, q in index])
    return A, b


_HALFVEC: dict[int, tuple] = {}


def halfvec_system(recursion) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
    r"""The half-vectorised stationary equation :math:`\Sigma - T(\Sigma) = BQ_0B^\top`.

    Built once per recursion object (the stability conditions, the solvers and the certificate
    of one derivation share it) and returned immutable."""
    key = id(recursion)
    hit = _HALFVEC.get(key)
    if hit is not None and hit[0]() is recursion:
        return hit[1]
    A, b = halfvec_operator_system(
        lambda E: E - recursion.second_moment_map(E), recursion.forcing(), recursion.n
    )
    out = (sp.ImmutableMatrix(A), sp.ImmutableMatrix(b))
    _HALFVEC[key] = (weakref.ref(recursion, lambda _: _HALFVEC.pop(key, None)), out)
    return out


def operator_matrix(recursion) -> sp.Matrix:
    """The matrix of T on the half-vectorised symmetric matrices (the basis of :func:`pairs`)."""
    A, _ = halfvec_system(recursion)
    return sp.eye(A.rows) - A


def _array(m) -> np.ndarray:
    return np.array(sp.Matrix(m).evalf(), dtype=float)


def _numeric(m, values: Mapping) -> np.ndarray:
    m = sp.Matrix(m).xreplace(values)
    if m.free_symbols:
        missing = ", ".join(sorted(map(str, m.free_symbols)))
        raise ValueError(f"the second-moment map needs a value for {missing}.")
    return _array(m)


def noise_operator(
    recursion, values: Mapping | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    r"""``(Q0, L)`` in float64 for the recursion's noise at ``values``: the constant part
    :math:`Q_0 = Q(0)` and the matrix of its linear part,
    :math:`\operatorname{vec}(Q(S) - Q_0) = L\operatorname{vec}S` for symmetric S (row-major),
    probed at the d(d+1)/2 symmetric unit matrices (``L`` is ``None`` for additive noise).
    ``Q0`` is ``None`` when it still holds symbols (the map's radius does not need it)."""
    values = dict(values or {})
    d = recursion.landscape.dim
    Q0_symbolic = sp.Matrix(recursion.noise_cov(sp.zeros(d, d))).xreplace(values)
    Q0 = None if Q0_symbolic.free_symbols else _array(Q0_symbolic)
    if not recursion.noise.depends_on_state():
        return Q0, None
    L = np.zeros((d * d, d * d))
    for i, j in pairs(d):
        change = sp.Matrix(recursion.noise_cov(_unit(d, i, j))).xreplace(values) - Q0_symbolic
        column = _numeric(change.applyfunc(sp.expand), {}).reshape(-1)
        if i == j:
            L[:, i * d + i] = column
        else:  # L acts on the symmetric part: e_i e_jᵀ ↦ L(E_ij)/2
            L[:, i * d + j] = L[:, j * d + i] = column / 2
    return Q0, L


def _radius(T: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(T)))) if T.size else 0.0


def spectral_radius(recursion, values: Mapping | None = None) -> float:
    """ρ(T) of ``recursion`` at ``values`` (ρ(M)² for additive noise): a stationary law exists
    iff it is below one.  Numeric pieces go through :class:`NumericMap`; when ``M``, ``B`` or the
    noise keep symbols that cancel in T (a damped-Newton step λH⁻¹ on a symbolic H), the
    symbolic matrix of T is evaluated instead.  ``ValueError`` names symbols left without value.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> rec = ss.build_recursion(ss.DampedNewton(ss.lr), ss.Quadratic(a), ss.AdditiveNoise(1))
    >>> spectral_radius(rec, {ss.lr: sp.Rational(1, 2)})  # (1 - λ)², whatever a is
    0.25
    """
    values = dict(values or {})
    try:
        return NumericMap.from_recursion(recursion, values).radius()
    except ValueError:
        pass
    state_dependent = recursion.noise.depends_on_state()
    T = operator_matrix(recursion) if state_dependent else sp.Matrix(recursion.M)
    T = T.xreplace(values).applyfunc(sp.cancel)
    if T.free_symbols:
        missing = ", ".join(sorted(map(str, T.free_symbols)))
        raise ValueError(f"the second-moment map needs a value for {missing}.")
    rho = _radius(_array(T))
    return rho if state_dependent else rho**2


@dataclass(frozen=True)
class NumericMap:
    r"""The second-moment map in float64: :math:`T(\Sigma) = M\Sigma M^\top +
    B\mathcal L(K\Sigma K^\top)B^\top` and the constant forcing :math:`BQ_0B^\top`.

    ``L`` is the matrix of the noise's linear part on row-major vec of a symmetric d×d matrix,
    :math:`\operatorname{vec}(Q(S) - Q_0) = L\operatorname{vec}S` (``None`` for additive noise).
    """

    M: np.ndarray
    B: np.ndarray
    K: np.ndarray
    #: None when the constant part still holds symbols (then only the radius is available)
    Q0: np.ndarray | None
    L: np.ndarray | None = None

    @classmethod
    def from_recursion(cls, recursion, values: Mapping | None = None) -> NumericMap:
        r"""Evaluate ``recursion`` (:class:`~symsgd.LinearRecursion`) at ``values`` (symbol →
        number) once: ``M``, ``B``, ``K`` and the noise, probed at the d(d+1)/2 symmetric unit
        matrices.  Raises ``ValueError`` naming the symbols left without a value."""
        values = dict(values or {})
        Q0, L = noise_operator(recursion, values)
        M, B, K = (_numeric(m, values) for m in (recursion.M, recursion.B, recursion.K))
        return cls(M, B, K, Q0, L)

    @property
    def n(self) -> int:
        """State dimension."""
        return self.M.shape[0]

    def with_matrices(self, M: np.ndarray, B: np.ndarray) -> NumericMap:
        """The same noise with new ``M`` and ``B`` (a family of recursions, e.g. Adam's)."""
        return NumericMap(M, B, self.K, self.Q0, self.L)

    def matrix(self) -> np.ndarray:
        r"""T on row-major vec Σ_z: :math:`M\otimes M + (B\otimes B)L(K\otimes K)`."""
        T = np.kron(self.M, self.M)
        if self.L is not None:
            T = T + np.kron(self.B, self.B) @ self.L @ np.kron(self.K, self.K)
        return T

    def radius(self) -> float:
        """Spectral radius of T (ρ(M)² for additive noise): a stationary law exists iff < 1."""
        if self.L is None:
            return _radius(self.M) ** 2
        return _radius(self.matrix())

    def forcing(self) -> np.ndarray:
        r""":math:`BQ_0B^\top`."""
        if self.Q0 is None:
            raise ValueError("the noise's constant part Q0 still holds symbols: give their values.")
        return self.B @ self.Q0 @ self.B.T

    def noise(self, sigma_x: np.ndarray) -> np.ndarray:
        r"""The gradient-noise covariance :math:`Q_0 + \mathcal L(\Sigma_x)`."""
        if self.Q0 is None:
            raise ValueError("the noise's constant part Q0 still holds symbols: give their values.")
        if self.L is None:
            return self.Q0
        d = self.Q0.shape[0]
        return self.Q0 + (self.L @ np.asarray(sigma_x).reshape(-1)).reshape(d, d)

    def solve(self) -> np.ndarray:
        r"""The stationary :math:`\Sigma_z = T(\Sigma_z) + BQ_0B^\top` (symmetrised).  The caller
        checks :meth:`radius` first: the solution is meaningful only where ρ(T) < 1."""
        forcing = self.forcing()
        if self.L is None:
            from scipy.linalg import solve_discrete_lyapunov

            state = solve_discrete_lyapunov(self.M, forcing)
        else:
            n = self.n
            state = np.linalg.solve(np.eye(n * n) - self.matrix(), forcing.reshape(-1))
            state = state.reshape(n, n)
        return (state + state.T) / 2
