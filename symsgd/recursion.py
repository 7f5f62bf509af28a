r"""The linear stochastic recursion an optimizer becomes near a minimum.

.. math:: z_{t+1} = M z_t + B \xi_t, \qquad
          \operatorname{Cov}\xi_t = Q_0 + \mathcal L(K \Sigma_z K^\top),

where :math:`x_t = K z_t` is the point where the gradient is evaluated (θ for SGD, the
look-ahead point for Nesterov) and :math:`\Sigma_z = \mathbb E[z z^\top]`.  The reported
parameters are :math:`\theta_t = \Theta z_t` (``theta_map``, the optimizer's
:meth:`~symsgd.optimizers.Optimizer.readout`: block 0 of the state, or e.g. the running average of
:class:`~symsgd.optimizers.Averaged`).  The stationary
second moment solves

.. math:: \Sigma_z = M \Sigma_z M^\top + B\,(Q_0 + \mathcal L(K\Sigma_z K^\top))\,B^\top .

:func:`build_recursion` is the one place that knows how optimizer, landscape and noise combine:
it runs the optimizer's own :meth:`~symsgd.optimizers.Optimizer.step` on symbolic vectors with
the gradient oracle :math:`g(x) = Hx + \xi` and reads off ``M``, ``B``, ``K`` and :math:`\Theta` as
Jacobians.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .landscapes import Landscape
from .noise import Noise
from .optimizers import Optimizer

__all__ = ["LinearRecursion", "build_recursion", "numeric_recursion"]


class LinearRecursion:
    """``z' = M z + B ξ`` with ``Cov ξ = noise.covariance(landscape, K Σ Kᵀ)``.

    ``M``, ``B``, ``K`` and ``theta_map`` (θ = theta_map · z, the optimizer's readout) are sympy
    matrices.  A recursion read numerically (:func:`numeric_recursion`) holds them as float64
    ``arrays`` ``(M, B, K, Θ)`` and builds the sympy matrices only when asked for them (an
    n×n sympy matrix of floats costs far more than the numeric solve at n = 200)."""

    _NAMES = ("M", "B", "K", "theta_map")

    def __init__(
        self,
        M=None,
        B=None,
        K=None,
        theta_map=None,
        optimizer: Optimizer | None = None,
        landscape: Landscape | None = None,
        noise: Noise | None = None,
        *,
        arrays: tuple | None = None,
    ):
        given = (M, B, K, theta_map)
        if arrays is None and any(m is None for m in given):
            raise TypeError("LinearRecursion needs M, B, K and theta_map (or arrays=).")
        self._matrices = dict(zip(self._NAMES, given))
        #: float64 ``(M, B, K, Θ)`` of a numerically read recursion, else None
        self.arrays = arrays
        self.optimizer = optimizer
        self.landscape = landscape
        self.noise = noise

    def _matrix(self, name: str) -> sp.ImmutableMatrix:
        m = self._matrices[name]
        if m is None:
            m = sp.ImmutableMatrix(self.arrays[self._NAMES.index(name)])
            self._matrices[name] = m
        return m

    M = property(lambda self: self._matrix("M"), doc="State matrix.")
    B = property(lambda self: self._matrix("B"), doc="Noise input matrix.")
    K = property(lambda self: self._matrix("K"), doc="Gradient-evaluation map x = Kz.")
    theta_map = property(lambda self: self._matrix("theta_map"), doc="θ = theta_map · z.")

    def __repr__(self) -> str:
        kind = "numeric " if self.arrays is not None else ""
        return (
            f"LinearRecursion({kind}{type(self.optimizer).__name__}, {self.landscape!r}, "
            f"{self.noise!r}; n = {self.n})"
        )

    @property
    def n(self) -> int:
        """State dimension."""
        return self.arrays[0].shape[0] if self.arrays is not None else self.M.rows

    def noise_cov(self, second_moment: sp.MatrixBase) -> sp.Matrix:
        r"""Gradient-noise covariance :math:`Q(\Sigma_x)` at an evaluation point whose deviation
        from the minimum has second moment ``second_moment``."""
        return self.noise.covariance(
            self.landscape, second_moment, weight_decay=self.optimizer.weight_decay
        )

    def forcing(self) -> sp.Matrix:
        r"""The constant part :math:`B Q_0 B^\top`."""
        d = self.landscape.dim
        B = sp.Matrix(self.B)  # one matrix type: the sparse-aware product, not the entrywise
        return B * sp.Matrix(self.noise_cov(sp.zeros(d, d))) * B.T

    def second_moment_map(self, sigma: sp.MatrixBase) -> sp.Matrix:
        r"""The linear part of the second-moment map,
        :math:`T(\Sigma) = M\Sigma M^\top + B\mathcal L(K\Sigma K^\top)B^\top`."""
        out = self.M * sigma * self.M.T
        if self.noise.depends_on_state():
            d = self.landscape.dim
            Q = self.noise_cov(self.K * sigma * self.K.T)
            Q0 = self.noise_cov(sp.zeros(d, d))
            out = out + self.B * (Q - Q0) * self.B.T
        return out

    def mode_names(self) -> dict:
        names = dict(self.landscape.mode_names)
        names.update(self.noise.mode_names(self.landscape))
        return names


def build_recursion(optimizer: Optimizer, landscape: Landscape, noise: Noise) -> LinearRecursion:
    """Derive the :class:`LinearRecursion` of ``optimizer`` on ``landscape`` with ``noise``.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = build_recursion(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> r.M, r.B
    (Matrix([[-h*lambda + 1]]), Matrix([[-lambda]]))
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a symsgd optimizer (e.g. ss.SGD(lr)); got {optimizer!r}"
        )
    if not isinstance(landscape, Landscape):
        raise TypeError(f"landscape must be e.g. ss.Quadratic(h); got {landscape!r}")
    if not isinstance(noise, Noise):
        raise TypeError(f"noise must be e.g. ss.AdditiveNoise(c); got {noise!r}")
    d = landscape.dim
    noise.covariance(landscape, sp.zeros(d, d), weight_decay=optimizer.weight_decay)  # validates
    blocks = [sp.Matrix(sp.symbols(f"_z{b}_0:{d}", cls=sp.Dummy)) for b in range(optimizer.blocks)]
    xi = sp.Matrix(sp.symbols(f"_xi0:{d}", cls=sp.Dummy))
    H = sp.Matrix(landscape.hessian)
    P = optimizer.preconditioner(landscape, noise)
    if P is not None:
        P = _at_minimum(sp.Matrix(P), landscape, optimizer.weight_decay)

    def precondition(v):
        return v if P is None else P * v

    points: list[sp.Matrix] = []

    def grad(x):
        points.append(x)
        return H * x + xi

    new = optimizer.step(tuple(blocks), grad, precondition)
    if len(points) != 1:
        raise RuntimeError(
            f"{type(optimizer).__name__}.step must evaluate the gradient exactly once per step; "
            f"it did {len(points)} times."
        )
    z = sp.Matrix.vstack(*blocks)
    z_new = sp.Matrix.vstack(*[sp.Matrix(b) for b in new]).applyfunc(sp.expand)
    name = type(optimizer).__name__
    M, B = _linear_coefficients(z_new, [list(z), list(xi)], f"{name}.step")
    (K,) = _linear_coefficients(
        sp.Matrix(points[0]).applyfunc(sp.expand), [list(z)], f"{name}.step"
    )
    theta_map = _readout_map(optimizer, blocks, z)

    def freeze(m):
        return sp.ImmutableMatrix(m.applyfunc(sp.cancel))

    return LinearRecursion(
        M=freeze(M),
        B=freeze(B),
        K=freeze(K),
        theta_map=freeze(theta_map),
        optimizer=optimizer,
        landscape=landscape,
        noise=noise,
    )


def _linear_coefficients(exprs: sp.Matrix, groups: list[list], what: str) -> list[sp.Matrix]:
    r"""The coefficient matrices of the expanded ``exprs`` in each group of variables
    (``exprs = Σ_g C_g v_g``), read term by term — O(number of terms), where a Jacobian is
    O(rows × variables) derivatives.  Raises ``RuntimeError`` unless every term is one
    variable (to the first power) times a coefficient free of all variables: that is linearity.
    """
    where = {v: (g, k) for g, group in enumerate(groups) for k, v in enumerate(group)}
    out = [sp.zeros(exprs.rows, len(group)) for group in groups]
    for i, e in enumerate(exprs):
        for term in sp.Add.make_args(e):
            if term == 0:
                continue
            found = [f for f in sp.Mul.make_args(term) if f in where]
            if len(found) != 1:
                raise RuntimeError(f"{what} is not linear in the state.")
            coefficient = term / found[0]
            if coefficient.free_symbols & where.keys():
                raise RuntimeError(f"{what} is not linear in the state.")
            g, k = where[found[0]]
            out[g][i, k] += coefficient
    return out


def _readout_map(optimizer: Optimizer, blocks: list, z: sp.Matrix) -> sp.Matrix:
    r"""The map :math:`\Theta` with :math:`\theta = \Theta z`, read off the optimizer's
    :meth:`~symsgd.optimizers.Optimizer.readout` as a Jacobian; it must be linear and give back
    the point at rest (``readout(initial_state(x)) == x``)."""
    name = type(optimizer).__name__
    d = blocks[0].rows
    theta = sp.Matrix(optimizer.readout(tuple(blocks))).applyfunc(sp.expand)
    if theta.shape != (d, 1):
        raise RuntimeError(
            f"{name}.readout must return one d-vector (d = {d}); got shape {theta.shape}."
        )
    (Theta,) = _linear_coefficients(theta, [list(z)], f"{name}.readout")
    x = sp.Matrix(sp.symbols(f"_x0:{d}", cls=sp.Dummy))
    rest = optimizer.initial_state(x)
    back = sp.Matrix(optimizer.readout(tuple(sp.Matrix(b) for b in rest))) - x
    if len(rest) != len(blocks) or any(e != 0 for e in back.applyfunc(sp.expand)):
        raise RuntimeError(
            f"{name}: readout(initial_state(x)) must be x (the state at rest at x reports x)."
        )
    return Theta


def _at_minimum(P: sp.Matrix, landscape: Landscape, weight_decay) -> sp.Matrix:
    r"""A preconditioner built from the noise at the minimum (natural gradient's Fisher, Adam's
    second moment) is a fixed matrix: in an eigen-mode problem its cross-mode trace placeholder
    :math:`\kappa = \operatorname{Tr}(A\,\mathbb E[uu^\top])` takes its value at
    :math:`\Sigma = 0`, i.e. :math:`\operatorname{Tr}(A bb^\top)` (zero without weight decay)."""
    from .landscapes import COUPLING
    from .modes import mode_trace

    if COUPLING not in P.free_symbols:
        return P
    density = sp.cancel(landscape.coupling_density(sp.zeros(1, 1), weight_decay))
    (mode,) = list(landscape.mode_names)
    kappa0 = sp.Integer(0) if density == 0 else mode_trace(density, mode)
    return P.xreplace({COUPLING: kappa0})


def numeric_recursion(optimizer: Optimizer, landscape: Landscape, noise: Noise) -> LinearRecursion:
    r"""The :class:`LinearRecursion` of an all-numeric problem, read in float64 without any
    symbolic algebra: the optimizer's own :meth:`~symsgd.optimizers.Optimizer.step` (with its
    scalar fields as floats, as the simulator runs it) is applied once to a batch of n + d
    probe columns — the unit states with ξ = 0 (columns of ``M``) and the zero state with ξ a
    unit vector (columns of ``B``) — and the point where it evaluates the gradient gives
    ``K``.  The step is then checked to be linear (a random state and noise must give
    :math:`Mz + B\xi`), and the readout to give back the point at rest.

    >>> import symsgd as ss
    >>> r = numeric_recursion(ss.HeavyBall(0.1, 0.5), ss.Quadratic(2), ss.AdditiveNoise(1))
    >>> r.arrays[0]  # [[1 − λh + μ, −μ], [1, 0]]
    array([[ 1.3, -0.5],
           [ 1. ,  0. ]])
    """
    from ._util import float_fields
    from .landscapes import _floats as _float_array

    name = type(optimizer).__name__
    d, blocks = landscape.dim, optimizer.blocks
    n = d * blocks
    H = _float_array(landscape.hessian)
    P = optimizer.numeric_preconditioner(landscape, noise)
    stepper = float_fields(optimizer)

    def run(Z: np.ndarray, XI: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points: list[np.ndarray] = []

        def grad(x):
            points.append(x)
            return H @ x + XI

        state = tuple(Z[b * d : (b + 1) * d] for b in range(blocks))
        new = stepper.step(state, grad, (lambda v: v) if P is None else (lambda v: P @ v))
        if len(points) != 1:
            raise RuntimeError(
                f"{name}.step must evaluate the gradient exactly once per step; it did "
                f"{len(points)} times."
            )
        return np.vstack([np.asarray(b, dtype=float) for b in new]), np.asarray(points[0])

    probes = n + d
    Z = np.zeros((n, probes))
    Z[:, :n] = np.eye(n)
    XI = np.zeros((d, probes))
    XI[:, n:] = np.eye(d)
    out, x = run(Z, XI)
    M, B, K = out[:, :n], out[:, n:], x[:, :n]
    theta = optimizer.readout(tuple(Z[b * d : (b + 1) * d, :n] for b in range(blocks)))
    Theta = np.asarray(theta, dtype=float)
    # linearity: a random state and noise must give Mz + Bξ (and x = Kz)
    rng = np.random.default_rng(0)
    z, xi = rng.standard_normal((n, 1)), rng.standard_normal((d, 1))
    got, x1 = run(z, xi)
    scale = 1 + np.abs(M).sum() + np.abs(B).sum()
    if (
        np.abs(got - M @ z - B @ xi).max() > 1e-9 * scale
        or np.abs(x1 - K @ z).max() > 1e-9 * scale
        or np.abs(x[:, n:]).max() > 0
    ):
        raise RuntimeError(f"{name}.step is not linear in the state.")
    if Theta.shape != (d, n):
        raise RuntimeError(f"{name}.readout must return one d-vector (d = {d}).")
    rest = optimizer.initial_state(np.eye(d))
    back = np.asarray(optimizer.readout(tuple(np.asarray(b, float) for b in rest)), dtype=float)
    if len(rest) != blocks or np.abs(back - np.eye(d)).max() > 1e-12:
        raise RuntimeError(
            f"{name}: readout(initial_state(x)) must be x (the state at rest at x reports x)."
        )
    return LinearRecursion(
        optimizer=optimizer, landscape=landscape, noise=noise, arrays=(M, B, K, Theta)
    )
