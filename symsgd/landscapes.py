"""Loss landscapes near a minimum.

A landscape knows its Hessian ``H`` (the curvature the optimizer feels) and, for the
expected-loss readouts, how to turn the stationary covariance of the deviation ``θ − θ*``
into an expected loss.

Three forms of ``H`` are supported:

* a scalar (symbol or number): a one-dimensional problem;
* an explicit ``sympy.Matrix`` (numeric or symbolic entries);
* commuting eigen-modes (:meth:`Quadratic.commuting`): ``H``, the noise covariance ``C`` and the
  preconditioner share eigenvectors, each mode is solved as a scalar problem in the mode's
  eigenvalues, and the answer is read as a matrix function of ``H`` and ``C``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ._util import as_matrix, check_symmetric

__all__ = ["Landscape", "Quadratic"]


@dataclass(frozen=True)
class Landscape:
    """Abstract base: a loss with Hessian ``hessian`` (``dim × dim``) at its minimum."""

    hessian: sp.ImmutableMatrix
    #: True for eigen-mode problems: ``hessian`` is the 1×1 matrix of one mode's eigenvalue.
    modes: bool = False
    #: for eigen-mode problems: eigenvalue symbol -> name of the matrix it stands for.
    mode_names: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def dim(self) -> int:
        """Number of parameters (1 for scalar and eigen-mode problems)."""
        return self.hessian.rows

    def loss(self, cov: sp.MatrixBase) -> sp.Expr:
        r"""Expected loss :math:`\mathbb E[L(\theta)] = \tfrac12 \operatorname{Tr}(H\Sigma)`."""
        return sp.Rational(1, 2) * (self.hessian * cov).trace()

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, init=False)
class Quadratic(Landscape):
    r"""The quadratic loss :math:`L(\theta) = \tfrac12 \theta^\top H \theta`.

    Parameters
    ----------
    H:
        A scalar (sympy symbol or number) or a symmetric square matrix (``sympy.Matrix``, nested
        lists or a numpy array).

    Examples
    --------
    >>> import sympy as sp
    >>> import symsgd as ss
    >>> h = sp.Symbol("h", positive=True)
    >>> ss.Quadratic(h).dim
    1
    >>> ss.Quadratic(sp.Matrix([[2, 1], [1, 2]])).dim
    2
    >>> ss.Quadratic.commuting().modes
    True
    """

    def __init__(self, H, *, _modes: bool = False, _names: dict | None = None):
        matrix = as_matrix(H, "H")
        check_symmetric(matrix, "H")
        object.__setattr__(self, "hessian", matrix)
        object.__setattr__(self, "modes", _modes)
        object.__setattr__(self, "mode_names", dict(_names or {}))

    @classmethod
    def commuting(cls, h: sp.Symbol | None = None) -> Quadratic:
        r"""An eigen-mode problem: ``H`` commutes with the noise covariance and preconditioner.

        The problem is solved for one mode with Hessian eigenvalue ``h`` (default: a positive
        symbol ``h``); noise and preconditioner scalars are that mode's eigenvalues of ``C``
        and ``P``.  Results print as matrix functions, e.g.
        :math:`\lambda [H(2I - \lambda H)]^{-1} C`.
        """
        h = sp.Symbol("h", positive=True) if h is None else h
        if not isinstance(h, sp.Symbol):
            raise ValueError(
                f"Quadratic.commuting(h) needs a sympy Symbol for the eigenvalue; got {h!r}."
            )
        return cls(h, _modes=True, _names={h: "H"})

    @classmethod
    def diagonal(cls, d: int, name: str = "h") -> Quadratic:
        """An explicit diagonal Hessian ``diag(h_1, …, h_d)`` with positive symbolic entries."""
        if int(d) != d or d < 1:
            raise ValueError(f"Quadratic.diagonal(d) needs a positive integer d; got {d!r}.")
        hs = sp.symbols(f"{name}_1:{int(d) + 1}", positive=True)
        return cls(sp.diag(*hs))

    @classmethod
    def symbolic(cls, d: int, name: str = "h") -> Quadratic:
        """A fully symbolic symmetric ``d × d`` Hessian with entries ``h_ij`` (i ≤ j)."""
        return cls(symmetric_matrix(d, name))

    def __repr__(self) -> str:
        if self.modes:
            return f"Quadratic.commuting({self.hessian[0, 0]})"
        if self.dim == 1:
            return f"Quadratic({self.hessian[0, 0]})"
        return f"Quadratic({sp.sstr(sp.Matrix(self.hessian))})"


def symmetric_matrix(d: int, name: str, diagonal_positive: bool = True) -> sp.ImmutableMatrix:
    """A symmetric ``d × d`` matrix of symbols ``{name}_{ij}`` (i ≤ j), diagonal ones positive."""
    if int(d) != d or d < 1:
        raise ValueError(f"the dimension must be a positive integer; got {d!r}.")
    d = int(d)
    m = sp.zeros(d, d)
    for i in range(d):
        for j in range(i, d):
            pos = diagonal_positive and i == j
            s = sp.Symbol(f"{name}_{i + 1}{j + 1}", positive=True) if pos else sp.Symbol(
                f"{name}_{i + 1}{j + 1}", real=True
            )
            m[i, j] = m[j, i] = s
    return sp.ImmutableMatrix(m)
