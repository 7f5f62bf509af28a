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
    "DENSE_MAX_STATE",
    "NumericMap",
    "TraceCoupling",
    "TraceSplit",
    "block_rows",
    "coupled_groups",
    "from_halfvec",
    "halfvec_operator_system",
    "halfvec_system",
    "noise_operator",
    "operator_matrix",
    "pairs",
    "spectral_radius",
    "stein_solve",
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


def stein_solve(M: np.ndarray, F: np.ndarray) -> tuple[np.ndarray | None, bool]:
    r"""``(X, stable)``: the solution of :math:`X = MXM^\top + F` and whether ρ(M) < 1, from one
    real Schur form.  As scipy's ``solve_discrete_lyapunov`` does for n ≥ 10, the bilinear map
    :math:`b = (M^\top - I)(M^\top + I)^{-1}` turns the Stein equation into the Lyapunov
    equation :math:`b^\top X + Xb = -2(M+I)^{-1}F(M^\top+I)^{-1}`, solved by Bartels–Stewart
    (Schur form + LAPACK ``trsyl``).  An eigenvalue λ of M maps to μ = (λ − 1)/(λ + 1), and
    |λ| < 1 iff Re μ < 0: the real parts are the diagonal of the standardised real Schur form,
    so stability costs nothing beyond the solve.  ``X`` is None when M has the eigenvalue −1.

    >>> X, stable = stein_solve(np.array([[0.5]]), np.array([[1.0]]))
    >>> X, stable  # 1 / (1 − 0.25)
    (array([[1.33333333]]), True)
    """
    from scipy.linalg import LinAlgError, get_lapack_funcs, inv, schur, solve_discrete_lyapunov

    n = M.shape[0]
    if n < 10:  # scipy's direct method, and the plain eigenvalues
        if not _radius(M) < 1:  # (an eigenvalue on the unit circle makes the system singular)
            return None, False
        return solve_discrete_lyapunov(M, F), True
    eye = np.eye(n)
    try:
        right = inv(M.T + eye)
        left = inv(M + eye)
    except LinAlgError:  # the eigenvalue −1: on the unit circle
        return None, False
    b = (M.T - eye) @ right
    c = 2 * left @ F @ right
    r, u = schur(b.T, output="real")
    stable = bool(np.all(np.diagonal(r) < 0))
    f = u.T @ (-c) @ u
    trsyl = get_lapack_funcs("trsyl", (r, f))
    y, scale, info = trsyl(r, r, f, tranb="T")
    if info < 0:  # pragma: no cover - LAPACK argument error
        raise ValueError(f"trsyl failed (argument {-info}).")
    return u @ (y * scale) @ u.T, stable


@dataclass(frozen=True)
class TraceCoupling:
    r"""A linear noise part that is local up to one trace:
    :math:`\mathcal L(\Sigma) = s\,F\Sigma F^\top + \operatorname{Tr}(W\Sigma)\,D`
    (``F``, ``W``, ``D`` sympy matrices or float64 arrays, ``s`` = ``scale`` a scalar).

    Online Gaussian regression's minibatch noise has this form
    (:meth:`symsgd.noise.MinibatchNoise.trace_coupling`): with F, W and D block-diagonal on
    the same blocks, a block-diagonal Σ gives a block-diagonal :math:`\mathcal L(\Sigma)`
    whose blocks see the others only through the scalar :math:`\operatorname{Tr}(W\Sigma)`,
    so the stationary equation splits into one small equation per block plus one scalar
    equation for the trace.  Calling it applies it.

    >>> L = TraceCoupling(np.eye(2), 0.5, np.eye(2), np.eye(2))
    >>> L(np.diag([1.0, 3.0]))  # ½Σ + Tr(Σ)·I
    array([[4.5, 0. ],
           [0. , 5.5]])
    """

    F: object
    scale: object
    W: object
    D: object

    def __call__(self, sigma):
        if isinstance(self.F, np.ndarray) or isinstance(sigma, np.ndarray):
            F, W, D = (np.asarray(m, dtype=float) for m in (self.F, self.W, self.D))
            sigma = np.asarray(sigma, dtype=float)
            return float(self.scale) * (F @ sigma @ F.T) + np.trace(W @ sigma) * D
        F, W, D = (sp.Matrix(m) for m in (self.F, self.W, self.D))
        sigma = sp.Matrix(sigma)
        return self.scale * F * sigma * F.T + (W * sigma).trace() * D

    def block(self, coords: list[int]) -> TraceCoupling:
        """The pieces restricted to the coordinates ``coords`` (one block)."""

        def cut(m):
            if isinstance(m, np.ndarray):
                return m[np.ix_(coords, coords)]
            return sp.Matrix(m).extract(coords, coords)

        return TraceCoupling(cut(self.F), self.scale, cut(self.W), cut(self.D))


def coupled_groups(d: int, n: int, matrices) -> list[list[int]] | None:
    """The groups of the d coordinates that the matrices couple (union–find over their
    nonzero entries, indices read modulo d: a state of k blocks of d has coordinate i at rows
    ``a·d + i``); None when they form one group or n is not a multiple of d.  Only nonzero
    entries are visited (sympy ``todok``, numpy ``nonzero``).

    >>> coupled_groups(3, 3, [np.array([[1, 0, 0], [0, 1, 2], [0, 2, 1]])])
    [[0], [1, 2]]
    """
    if n % d or d < 2:
        return None
    parent = list(range(d))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for m in matrices:
        if isinstance(m, np.ndarray):
            entries = zip(*np.nonzero(m))
        else:
            entries = (key for key, v in sp.Matrix(m).todok().items() if v != 0)
        for i, j in entries:
            parent[find(int(i) % d)] = find(int(j) % d)
    groups: dict[int, list[int]] = {}
    for k in range(d):
        groups.setdefault(find(k), []).append(k)
    return list(groups.values()) if len(groups) > 1 else None


def block_rows(d: int, n: int, coords: list[int]) -> list[int]:
    """The state rows of coordinates ``coords`` in a state of n/d blocks of d."""
    return [a * d + k for a in range(n // d) for k in coords]


#: largest state dimension n whose state-dependent map is solved through the dense n²×n²
#: Kronecker matrix; beyond it the map is applied as an operator (O(n³ + N d²) per application)
DENSE_MAX_STATE = 12


@dataclass(frozen=True)
class NumericMap:
    r"""The second-moment map in float64: :math:`T(\Sigma) = M\Sigma M^\top +
    B\mathcal L(K\Sigma K^\top)B^\top` and the constant forcing :math:`BQ_0B^\top`.

    The noise's linear part is given either as the matrix ``L`` on row-major vec of a
    symmetric d×d matrix, :math:`\operatorname{vec}(Q(S) - Q_0) = L\operatorname{vec}S`, or as
    the numpy function ``linear`` (S ↦ Q(S) − Q0, :meth:`symsgd.noise.Noise.numeric_covariance`);
    both ``None`` for additive noise.

    Additive noise is solved by scipy's ``solve_discrete_lyapunov`` (O(n³)).  State-dependent
    noise with n ≤ :data:`DENSE_MAX_STATE` is solved through the dense Kronecker matrix of T;
    larger ones never form it: the stationary equation is solved by GMRES on
    :math:`\Sigma - \mathcal S^{-1}(B\mathcal L(K\Sigma K^\top)B^\top) = \mathcal S^{-1}(G)`
    (:math:`\mathcal S^{-1}` the Stein solve of the mean part), and stability is decided by
    the regular splitting of the positive map T: ρ(T) < 1 iff ρ(M) < 1 and
    :math:`\rho(\mathcal S^{-1}\circ B\mathcal L(K\cdot K^\top)B^\top) < 1` (Arnoldi).
    """

    M: np.ndarray
    B: np.ndarray
    K: np.ndarray
    #: None when the constant part still holds symbols (then only the radius is available)
    Q0: np.ndarray | None
    L: np.ndarray | None = None
    linear: Callable[[np.ndarray], np.ndarray] | None = None

    @classmethod
    def from_recursion(cls, recursion, values: Mapping | None = None) -> NumericMap:
        r"""Evaluate ``recursion`` (:class:`~symsgd.LinearRecursion`) at ``values`` (symbol →
        number) once: ``M``, ``B``, ``K`` and the noise, probed at the d(d+1)/2 symmetric unit
        matrices.  A recursion read numerically (:func:`symsgd.recursion.numeric_recursion`)
        takes its arrays and the noise's own numpy form, with no sympy at all.  Raises
        ``ValueError`` naming the symbols left without a value."""
        values = dict(values or {})
        if getattr(recursion, "arrays", None) is not None and not values:
            M, B, K, _ = recursion.arrays
            Q0, linear = recursion.noise.numeric_covariance(
                recursion.landscape, recursion.optimizer.weight_decay
            )
            return cls(M, B, K, Q0, None, linear)
        Q0, L = noise_operator(recursion, values)
        M, B, K = (_numeric(m, values) for m in (recursion.M, recursion.B, recursion.K))
        return cls(M, B, K, Q0, L)

    @property
    def n(self) -> int:
        """State dimension."""
        return self.M.shape[0]

    @property
    def state_dependent(self) -> bool:
        """True when the noise has a linear part (multiplicative noise)."""
        return self.L is not None or self.linear is not None

    def with_matrices(self, M: np.ndarray, B: np.ndarray) -> NumericMap:
        """The same noise with new ``M`` and ``B`` (a family of recursions, e.g. Adam's)."""
        return NumericMap(M, B, self.K, self.Q0, self.L, self.linear)

    def _noise_part(self, S: np.ndarray) -> np.ndarray:
        r""":math:`\mathcal L(S)` for a d×d array S (its symmetric part)."""
        S = (S + S.T) / 2
        if self.linear is not None:
            return self.linear(S)
        d = S.shape[0]
        return (self.L @ S.reshape(-1)).reshape(d, d)

    def _L_matrix(self) -> np.ndarray:
        if self.L is not None:
            return self.L
        d = self.K.shape[0]
        L = np.zeros((d * d, d * d))
        for i, j in pairs(d):
            E = np.zeros((d, d))
            E[i, j] = E[j, i] = 1
            column = self.linear(E).reshape(-1)
            if i == j:
                L[:, i * d + i] = column
            else:
                L[:, i * d + j] = L[:, j * d + i] = column / 2
        return L

    def apply(self, sigma: np.ndarray) -> np.ndarray:
        r""":math:`T(\Sigma)` for an n×n array (O(n³) plus one noise application)."""
        out = self.M @ sigma @ self.M.T
        if self.state_dependent:
            out = out + self.B @ self._noise_part(self.K @ sigma @ self.K.T) @ self.B.T
        return out

    def matrix(self) -> np.ndarray:
        r"""T on row-major vec Σ_z: :math:`M\otimes M + (B\otimes B)L(K\otimes K)` (built once
        per map; do not modify it)."""
        T = self.__dict__.get("_matrix")
        if T is None:
            T = np.kron(self.M, self.M)
            if self.state_dependent:
                T = T + np.kron(self.B, self.B) @ self._L_matrix() @ np.kron(self.K, self.K)
            object.__setattr__(self, "_matrix", T)
        return T

    def _dense(self) -> bool:
        return self.n <= DENSE_MAX_STATE

    def radius(self) -> float:
        """Spectral radius of T (ρ(M)² for additive noise): a stationary law exists iff < 1."""
        if not self.state_dependent:
            return _radius(self.M) ** 2
        split = self.split()
        if split is not None:
            return split.radius
        if self._dense():
            return _radius(self.matrix())
        return self._arnoldi(self._vec_operator(self.apply))

    def stable(self) -> bool:
        """ρ(T) < 1, decided without the n²×n² matrix for large n (regular splitting: ρ(M) < 1
        and ρ of the Stein-preconditioned noise part < 1).  For additive noise the Schur form
        of the solve decides it (:meth:`solve_stable`); a trace-coupled block-diagonal map by
        its blocks and the closing trace (:meth:`split`)."""
        if not self.state_dependent:
            return self.solve_stable()[1]
        split = self.split()
        if split is not None:
            return split.stable
        if self._dense():
            return self.radius() < 1
        if not _radius(self.M) < 1:
            return False
        return self._arnoldi(self._vec_operator(self._preconditioned)) < 1

    def forcing(self) -> np.ndarray:
        r""":math:`BQ_0B^\top`."""
        if self.Q0 is None:
            raise ValueError("the noise's constant part Q0 still holds symbols: give their values.")
        return self.B @ self.Q0 @ self.B.T

    def noise(self, sigma_x: np.ndarray) -> np.ndarray:
        r"""The gradient-noise covariance :math:`Q_0 + \mathcal L(\Sigma_x)`."""
        if self.Q0 is None:
            raise ValueError("the noise's constant part Q0 still holds symbols: give their values.")
        if not self.state_dependent:
            return self.Q0
        return self.Q0 + self._noise_part(np.asarray(sigma_x, dtype=float))

    def solve_stable(self) -> tuple[np.ndarray | None, bool]:
        """Additive noise: ``(Σ before refinement, ρ(M) < 1)`` from one Schur form
        (:func:`stein_solve`), computed once per map."""
        cache = self.__dict__.get("_additive")
        if cache is None:
            cache = stein_solve(self.M, self.forcing())
            object.__setattr__(self, "_additive", cache)
        return cache

    def _additive_state(self) -> np.ndarray:
        state, _ = self.solve_stable()
        return self._stein(self.forcing()) if state is None else state

    def _stein(self, F: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_discrete_lyapunov

        return solve_discrete_lyapunov(self.M, F)

    def _preconditioned(self, sigma: np.ndarray) -> np.ndarray:
        r""":math:`\mathcal S^{-1}(B\mathcal L(K\Sigma K^\top)B^\top)`."""
        return self._stein(self.B @ self._noise_part(self.K @ sigma @ self.K.T) @ self.B.T)

    def _vec_operator(self, fn):
        from scipy.sparse.linalg import LinearOperator

        n = self.n
        return LinearOperator(
            (n * n, n * n), matvec=lambda v: fn(np.asarray(v).reshape(n, n)).reshape(-1)
        )

    def _arnoldi(self, op) -> float:
        from scipy.sparse.linalg import ArpackNoConvergence, eigs

        n = self.n
        start = np.eye(n).reshape(-1)  # a positive map's Perron vector is PSD: start inside
        try:
            values = eigs(
                op,
                k=1,
                which="LM",
                v0=start,
                tol=1e-10,
                maxiter=50 * n * n,
                return_eigenvectors=False,
            )
        except ArpackNoConvergence:  # pragma: no cover - near-degenerate spectra
            if n * n > 4000:
                raise
            return _radius(self.matrix())
        return float(np.max(np.abs(values)))

    def split(self) -> TraceSplit | None:
        """The per-block form of a trace-coupled map (:class:`TraceSplit`; built once), or
        None when the noise is not a :class:`TraceCoupling` whose pieces, with ``M``, ``B``,
        ``K`` and ``Q0``, are block-diagonal on at least two blocks of at most
        :data:`DENSE_MAX_STATE` state rows."""
        if "_split" not in self.__dict__:
            object.__setattr__(self, "_split", TraceSplit.of(self))
        return self.__dict__["_split"]

    def solve(self) -> np.ndarray:
        r"""The stationary :math:`\Sigma_z = T(\Sigma_z) + BQ_0B^\top` (symmetrised).  The caller
        checks :meth:`radius` (or :meth:`stable`) first: the solution is meaningful only where
        ρ(T) < 1.  A trace-coupled block-diagonal map is solved per block
        (:class:`TraceSplit`)."""
        forcing = self.forcing()
        n = self.n
        split = self.split() if self.state_dependent else None
        if split is not None and split.stable:
            return split.state()
        if not self.state_dependent:
            state = self._additive_state()
            for _ in range(2):  # refine an ill-conditioned Stein solve (rarely needed)
                residual = forcing + self.M @ state @ self.M.T - state
                scale = np.abs(state).max() + np.abs(forcing).max() + 1e-300
                if np.abs(residual).max() <= 1e-13 * scale:
                    break
                state = state + self._stein(residual)
        elif self._dense():
            state = np.linalg.solve(np.eye(n * n) - self.matrix(), forcing.reshape(-1))
            state = state.reshape(n, n)
        else:
            from scipy.sparse.linalg import LinearOperator, gmres

            op = LinearOperator(
                (n * n, n * n),
                matvec=lambda v: v - self._preconditioned(np.asarray(v).reshape(n, n)).reshape(-1),
            )
            rhs = self._stein(forcing).reshape(-1)
            x, info = gmres(op, rhs, x0=rhs, rtol=1e-13, atol=0.0, restart=60, maxiter=200)
            if info != 0:
                raise ValueError(f"GMRES did not converge on the stationary equation ({info}).")
            state = x.reshape(n, n)
            for _ in range(2):  # iterative refinement: the certificate checks T itself
                residual = forcing + self.apply(state) - state
                state = state + _refine(self, residual)
        return (state + state.T) / 2


@dataclass(frozen=True)
class TraceSplit:
    r"""The stationary equation of a trace-coupled map (noise
    :math:`\mathcal L(X) = sFXF^\top + \operatorname{Tr}(WX)D`, :class:`TraceCoupling`) whose
    pieces are block-diagonal: on block b (state rows ``rows``, coordinates ``coords``) the
    local map :math:`T_b(X) = M_bXM_b^\top + sG_bXG_b^\top`, :math:`G_b = B_bF_bK_b`, and

    .. math:: (I - T_b)P_b = B_bQ_{0,b}B_b^\top, \qquad (I - T_b)R_b = B_bD_bB_b^\top,

    so :math:`\Sigma_b = P_b + \kappa R_b` with :math:`\kappa = \operatorname{Tr}(W K\Sigma
    K^\top) = \sum_b\tau_b + \kappa\sum_b v_b` (:math:`\tau_b = \operatorname{Tr}(W_bK_bP_b
    K_b^\top)`, :math:`v_b` the same of :math:`R_b`): :math:`\kappa = \sum\tau_b/(1 -
    \sum v_b)`.  Cross-block entries are zero (no forcing reaches them).

    Stability, by regular splitting of the positive map T restricted to block-diagonal
    matrices (an invariant subspace holding :math:`T^k(I)`, which decides ρ(T)): ρ(T) < 1
    iff every :math:`\rho(T_b) < 1` and :math:`\sum_b v_b < 1` (the rank-one coupling
    :math:`X \mapsto \operatorname{Tr}(WKXK^\top)BDB^\top` after
    :math:`(I - \oplus T_b)^{-1}` has the one eigenvalue :math:`\sum_b v_b`).  Cost: one
    :math:`m_b^2\times m_b^2` solve per block — linear in the number of blocks."""

    n: int
    #: ``(rows, coords, T_b, B_b Q0_b B_bᵀ, B_b D_b B_bᵀ, W_b-weight K_bᵀW_bK_b)`` per block
    blocks: tuple
    radii: tuple

    @classmethod
    def of(cls, T: NumericMap) -> TraceSplit | None:
        """The split of ``T``, or None when it does not split (see :meth:`NumericMap.split`)."""
        c = T.linear
        if not isinstance(c, TraceCoupling) or T.Q0 is None:
            return None
        d, n = T.K.shape[0], T.n
        groups = coupled_groups(
            d, n, (T.M, T.B, T.K, T.Q0, *(np.asarray(m) for m in (c.F, c.W, c.D)))
        )
        if groups is None:
            return None
        blocks, radii = [], []
        for coords in groups:
            rows = block_rows(d, n, coords)
            if len(rows) > DENSE_MAX_STATE:
                return None
            M = T.M[np.ix_(rows, rows)]
            B = T.B[np.ix_(rows, coords)]
            K = T.K[np.ix_(coords, rows)]
            part = c.block(coords)
            F, W, D = (np.asarray(m, dtype=float) for m in (part.F, part.W, part.D))
            G = B @ F @ K
            local = np.kron(M, M) + float(c.scale) * np.kron(G, G)
            weight = K.T @ W @ K  # Tr(W K X Kᵀ) = Tr(weight X)
            blocks.append(
                (rows, local, B @ T.Q0[np.ix_(coords, coords)] @ B.T, B @ D @ B.T, weight)
            )
            radii.append(_radius(local))
        return cls(n, tuple(blocks), tuple(radii))

    def _pieces(self) -> tuple:
        """``(P_b, R_b)`` per block and ``(Σ τ_b, Σ v_b)`` (built once; only where every
        ρ(T_b) < 1)."""
        if "_cache" not in self.__dict__:
            out, tau, v = [], 0.0, 0.0
            for rows, local, Q, D, weight in self.blocks:
                m = len(rows)
                rhs = np.stack([Q.reshape(-1), D.reshape(-1)], axis=1)
                X = np.linalg.solve(np.eye(m * m) - local, rhs)
                P, R = X[:, 0].reshape(m, m), X[:, 1].reshape(m, m)
                tau += float(np.sum(weight.T * P))
                v += float(np.sum(weight.T * R))
                out.append((P, R))
            object.__setattr__(self, "_cache", (out, tau, v))
        return self.__dict__["_cache"]

    @property
    def stable(self) -> bool:
        """ρ(T) < 1: every block's local map and the closing trace (see the class)."""
        if max(self.radii) >= 1:
            return False
        return self._pieces()[2] < 1

    @property
    def radius(self) -> float:
        r""":math:`\rho(T)` from the blocks: on the block-diagonal matrices T is
        :math:`\oplus_bT_b` plus the rank-one coupling, so an eigenvalue z beyond every
        :math:`\rho(T_b)` solves the secular equation
        :math:`g(z) = \sum_b\operatorname{Tr}(W_b(zI - T_b)^{-1}(B_bD_bB_b^\top)) = 1`; g is
        positive and decreasing there (each :math:`(zI - T_b)^{-1} = \sum_k T_b^k/z^{k+1}` is a
        positive map), so ρ(T) is its root when :math:`g(\max_b\rho(T_b)^+) > 1` and
        :math:`\max_b\rho(T_b)` otherwise (bisection to double precision)."""
        if "_radius" in self.__dict__:
            return self.__dict__["_radius"]

        def g(z: float) -> float:
            total = 0.0
            for rows, local, _, D, weight in self.blocks:
                m = len(rows)
                X = np.linalg.solve(z * np.eye(m * m) - local, D.reshape(-1)).reshape(m, m)
                total += float(np.sum(weight.T * X))
            return total

        lo = max(self.radii)
        start = lo * (1 + 1e-12) + 1e-300
        if not g(start) > 1:
            value = lo
        else:
            lo, hi = start, max(2 * start, 1.0)
            while g(hi) > 1:
                lo, hi = hi, 2 * hi
            for _ in range(200):
                mid = (lo + hi) / 2
                if mid in (lo, hi):
                    break
                lo, hi = (mid, hi) if g(mid) > 1 else (lo, mid)
            value = hi
        object.__setattr__(self, "_radius", value)
        return value

    @property
    def kappa(self) -> float:
        r"""The closed trace :math:`\kappa = \sum\tau_b / (1 - \sum v_b)`."""
        _, tau, v = self._pieces()
        return tau / (1 - v)

    def state(self) -> np.ndarray:
        """The stationary state second moment, assembled from the blocks (symmetrised)."""
        out = np.zeros((self.n, self.n))
        kappa = self.kappa
        for (rows, *_), (P, R) in zip(self.blocks, self._pieces()[0]):
            X = P + kappa * R
            out[np.ix_(rows, rows)] = (X + X.T) / 2
        return out


def _refine(T: NumericMap, residual: np.ndarray) -> np.ndarray:
    r"""One correction step for :math:`\Sigma - T(\Sigma) = G`: the Stein-preconditioned
    fixed point on the residual (converges where the splitting does)."""
    from scipy.sparse.linalg import LinearOperator, gmres

    n = T.n
    op = LinearOperator(
        (n * n, n * n),
        matvec=lambda v: v - T._preconditioned(np.asarray(v).reshape(n, n)).reshape(-1),
    )
    rhs = T._stein(residual).reshape(-1)
    x, _ = gmres(op, rhs, rtol=1e-13, atol=0.0, restart=60, maxiter=50)
    return x.reshape(n, n)
