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

from dataclasses import dataclass

import sympy as sp

from .landscapes import Landscape
from .noise import Noise
from .optimizers import Optimizer

__all__ = ["LinearRecursion", "build_recursion"]


@dataclass(frozen=True)
class LinearRecursion:
    """``z' = M z + B ξ`` with ``Cov ξ = noise.covariance(landscape, K Σ Kᵀ)``."""

    M: sp.ImmutableMatrix
    B: sp.ImmutableMatrix
    K: sp.ImmutableMatrix
    #: θ = theta_map · z (the optimizer's readout)
    theta_map: sp.ImmutableMatrix
    optimizer: Optimizer
    landscape: Landscape
    noise: Noise

    @property
    def n(self) -> int:
        """State dimension."""
        return self.M.rows

    def noise_cov(self, second_moment: sp.MatrixBase) -> sp.Matrix:
        r"""Gradient-noise covariance :math:`Q(\Sigma_x)` at an evaluation point whose deviation
        from the minimum has second moment ``second_moment``."""
        return self.noise.covariance(
            self.landscape, second_moment, weight_decay=self.optimizer.weight_decay
        )

    def forcing(self) -> sp.Matrix:
        r"""The constant part :math:`B Q_0 B^\top`."""
        d = self.landscape.dim
        return self.B * self.noise_cov(sp.zeros(d, d)) * self.B.T

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
    M = z_new.jacobian(z)
    B = z_new.jacobian(xi)
    K = sp.Matrix(points[0]).applyfunc(sp.expand).jacobian(z)
    residual = (z_new - M * z - B * xi).applyfunc(sp.expand)
    if any(e != 0 for e in residual):
        raise RuntimeError(f"{type(optimizer).__name__}.step is not linear in the state.")
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
    Theta = theta.jacobian(z)
    if any(e != 0 for e in (theta - Theta * z).applyfunc(sp.expand)):
        raise RuntimeError(f"{name}.readout is not linear in the state.")
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
