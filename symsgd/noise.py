"""Gradient-noise models.

A noise model knows one thing: the covariance of the gradient noise at the point where the
gradient is evaluated, as an *affine* function of that point's second-moment matrix
:math:`\\Sigma_x = \\mathbb E[x x^\\top]` (x the deviation from the minimum):

.. math:: Q(\\Sigma_x) = Q_0 + \\mathcal L(\\Sigma_x).

Additive noise has :math:`\\mathcal L = 0`; minibatch noise does not (multiplicative noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ._util import as_matrix, check_psd, check_symmetric
from .landscapes import Landscape

__all__ = ["AdditiveNoise", "Noise"]


class Noise:
    """Abstract base of noise models."""

    def depends_on_state(self) -> bool:
        """True if the noise covariance depends on the parameters (multiplicative noise)."""
        raise NotImplementedError

    def covariance(self, landscape: Landscape, second_moment: sp.MatrixBase) -> sp.Matrix:
        r"""The gradient-noise covariance :math:`Q(\Sigma_x)` at a point with second moment
        :math:`\Sigma_x` (affine in :math:`\Sigma_x`)."""
        raise NotImplementedError

    def fisher(self, landscape: Landscape) -> sp.Matrix:
        """The per-sample gradient covariance at the minimum (used by natural gradient)."""
        return self.covariance(landscape, sp.zeros(landscape.dim, landscape.dim))

    def mode_names(self, landscape: Landscape) -> dict:
        """Eigenvalue symbol -> matrix name, for eigen-mode problems."""
        return {}


@dataclass(frozen=True, init=False)
class AdditiveNoise(Noise):
    r"""Gradient noise of constant covariance ``C``: :math:`g = H\theta + \xi`,
    :math:`\operatorname{Cov}\xi = C`.

    ``C`` is a scalar (also the eigenvalue of ``C`` in eigen-mode problems) or a symmetric
    positive semi-definite matrix.

    >>> import sympy as sp, symsgd as ss
    >>> ss.AdditiveNoise(sp.Symbol("c", positive=True)).depends_on_state()
    False
    """

    C: sp.ImmutableMatrix

    def __init__(self, C):
        matrix = as_matrix(C, "C")
        check_symmetric(matrix, "C")
        check_psd(matrix, "C")
        object.__setattr__(self, "C", matrix)

    def depends_on_state(self) -> bool:
        return False

    def covariance(self, landscape: Landscape, second_moment: sp.MatrixBase) -> sp.Matrix:
        if self.C.shape != landscape.hessian.shape:
            what = "a scalar (the mode's eigenvalue of C)" if landscape.modes else (
                f"a {landscape.dim}×{landscape.dim} matrix"
            )
            raise ValueError(
                f"AdditiveNoise: C has shape {self.C.shape} but the landscape has dimension "
                f"{landscape.dim}; pass {what}."
            )
        return sp.Matrix(self.C)

    def mode_names(self, landscape: Landscape) -> dict:
        c = self.C[0, 0]
        return {c: "C"} if landscape.modes and isinstance(c, sp.Symbol) else {}

    def __repr__(self) -> str:
        if self.C.rows == 1:
            return f"AdditiveNoise({self.C[0, 0]})"
        return f"AdditiveNoise({sp.sstr(sp.Matrix(self.C))})"
