r"""Optimizers as value objects that state their update rule once.

Each optimizer is a frozen dataclass whose fields are sympy symbols or numbers.  Its
:meth:`Optimizer.step` is written with ``+``, ``-``, scalar ``*`` and the callables it is given, so
the *same* code runs on

* sympy column vectors, with the gradient oracle :math:`g(x) = Hx + \xi` — this is how the
  state-space matrices of :class:`symsgd.LinearRecursion` are derived (no matrix is typed in);
* numpy arrays of shape ``(d, chains)`` with a real stochastic gradient — this is how
  :func:`symsgd.simulate` runs the real optimizer.

Every gradient includes the L2 term ``weight_decay · θ`` (coupled weight decay).

Conventions (state blocks in brackets):

* ``SGD``:        [θ]            θ' = θ − λ P g(θ)
* ``HeavyBall``:  [θ, θ₋]        θ' = θ − λ P g(θ) + μ(θ − θ₋)
* ``Nesterov``:   [θ, θ₋]        y = θ + μ(θ − θ₋),  θ' = y − λ P g(y)
* ``Adam``:       [θ, m]         m' = β₁ m + (1 − β₁) g(θ),  θ' = θ − λ P m'
  with the frozen diagonal preconditioner P = diag(1/(√v + ε)) of the near-minimum
  approximation (see :class:`Adam`).
* ``QHM``:        [θ, m]         m' = β m + (1 − β) g(θ),  θ' = θ − λ P((1 − ν) g(θ) + ν m')
* ``Averaged``:   [inner…, θ̄]    the inner optimizer's step, then θ̄' = β θ̄ + (1 − β) θ';
  it reports θ̄ (its :meth:`~Optimizer.readout`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import sympy as sp

from ._util import as_matrix, as_scalar, check_psd, check_symmetric, field_symbols
from .landscapes import Landscape
from .noise import Noise
from .symbols import beta1 as _beta1
from .symbols import beta2 as _beta2
from .symbols import eps as _eps
from .symbols import lr as _lr
from .symbols import momentum as _momentum

__all__ = [
    "QHM",
    "SGD",
    "Adam",
    "Averaged",
    "DampedNewton",
    "HeavyBall",
    "NaturalGradient",
    "Nesterov",
    "Optimizer",
    "Preconditioned",
]

Vector = Any  # a sympy column Matrix or a numpy array of shape (d, chains)
Gradient = Callable[[Vector], Vector]
Apply = Callable[[Vector], Vector]


def _identity(v: Vector) -> Vector:
    return v


@dataclass(frozen=True)
class Optimizer:
    """Abstract base.  Subclasses set ``blocks`` and implement :meth:`step`; one whose state
    does not hold θ in block 0 also overrides :meth:`readout` (and :meth:`initial_state`)."""

    lr: Any = _lr
    weight_decay: Any = field(default=0, kw_only=True)

    #: number of d-dimensional blocks in the state vector
    blocks: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay"):
            value = self._scalar(name)
            if value.is_negative or (name == "lr" and value.is_zero):
                need = "positive" if name == "lr" else "non-negative"
                raise ValueError(f"{type(self).__name__}: {name} must be {need}; got {value}.")

    def _scalar(self, name: str) -> sp.Expr:
        """Field ``name`` as a finite real sympy scalar (stored back); NaN, ±inf, complex
        numbers, strings and other types raise an error naming the field."""
        value = as_scalar(getattr(self, name), name, f"{type(self).__name__}: ")
        object.__setattr__(self, name, value)
        return value

    def in_recursion(self) -> Optimizer:
        """This optimizer with the fields that do not enter its linear recursion set to 0
        (Adam's β₂): what a check that every value is a number should look at.

        >>> import symsgd as ss
        >>> ss.Adam(0.1, beta1=0.9, eps=1e-8).in_recursion().beta2
        0
        """
        return self

    # -- the one rule -----------------------------------------------------------------------
    def step(self, state: Sequence[Vector], grad: Gradient, precondition: Apply) -> tuple:
        """One update: the new state blocks from the old ones, a gradient oracle and ``P·``."""
        raise NotImplementedError

    def gradient(self, grad: Gradient, x: Vector) -> Vector:
        """The gradient the optimizer uses at ``x``: the loss gradient plus ``weight_decay·x``."""
        g = grad(x)
        return g + self.weight_decay * x if self.weight_decay != 0 else g

    def readout(self, state: Sequence[Vector]) -> Vector:
        r"""The reported parameters :math:`\theta` as a linear function of the state blocks
        (block 0 by default; the running average for :class:`Averaged`).

        Like :meth:`step` it runs on sympy vectors — :func:`~symsgd.recursion.build_recursion`
        reads the map :math:`\Theta` with :math:`\theta = \Theta z` off it as a Jacobian, and
        every readout of a result (``cov``, ``velocity_cov``, ``loss``, ...) is of
        :math:`\Theta z` — and on numpy arrays, where :func:`symsgd.simulate` measures it.  At
        rest it gives back the point: ``readout(initial_state(x)) == x``.

        >>> import sympy as sp, symsgd as ss
        >>> x, y = sp.symbols("x y")
        >>> ss.HeavyBall(ss.lr, ss.momentum).readout((x, y))
        x
        """
        return state[0]

    # -- capabilities -----------------------------------------------------------------------
    def initial_state(self, theta: Vector) -> tuple:
        """State blocks at rest at ``theta`` (momentum blocks start at zero velocity)."""
        return (theta,)

    def preconditioner(self, landscape: Landscape, noise: Noise) -> sp.Matrix | None:
        """The preconditioner P (``None`` for the identity)."""
        return None

    def numeric_preconditioner(self, landscape: Landscape, noise: Noise):
        """P as a float64 array for an all-numeric problem (``None`` for the identity): by
        default :meth:`preconditioner` read in floats; an optimizer that can form P in numpy
        directly overrides this (the float path then never builds a sympy matrix)."""
        from .landscapes import _floats

        P = self.preconditioner(landscape, noise)
        return None if P is None else _floats(P)

    def continuous_lr(self) -> sp.Expr:
        """The effective learning rate of the optimizer's small-λ SDE (λ for SGD)."""
        return self.lr

    def mode_names(self) -> dict:
        """Eigenvalue symbol -> printed matrix name of the matrices the optimizer holds, for
        eigen-mode problems (``{P: "P"}`` for a preconditioner given as a symbol); ``{}`` when
        it holds none.

        >>> import sympy as sp, symsgd as ss
        >>> p = sp.Symbol("p", positive=True)
        >>> ss.Preconditioned(ss.lr, p).mode_names(), ss.SGD(ss.lr).mode_names()
        ({p: 'P'}, {})
        """
        return {}

    def symbols(self) -> set:
        """Free symbols of the optimizer's fields (tuples of them and wrapped optimizers too)."""
        return field_symbols(self)


@dataclass(frozen=True)
class SGD(Optimizer):
    r"""Stochastic gradient descent :math:`\theta_{t+1} = \theta_t - \lambda g_t`.

    >>> import symsgd as ss
    >>> ss.SGD(ss.lr)
    SGD(lr=lambda, weight_decay=0)
    """

    def step(self, state, grad, precondition):
        (theta,) = state
        return (theta - self.lr * precondition(self.gradient(grad, theta)),)


@dataclass(frozen=True)
class _Momentum(Optimizer):
    momentum: Any = _momentum

    blocks: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit_interval(self, "momentum", "μ")

    def initial_state(self, theta):
        return (theta, theta)

    def continuous_lr(self):
        return self.lr / (1 - self.momentum)


@dataclass(frozen=True)
class HeavyBall(_Momentum):
    r"""Polyak heavy-ball momentum
    :math:`\theta_{t+1} = \theta_t - \lambda g(\theta_t) + \mu(\theta_t - \theta_{t-1})`.

    >>> import symsgd as ss
    >>> ss.HeavyBall(ss.lr, ss.momentum).blocks
    2
    """

    def step(self, state, grad, precondition):
        theta, previous = state
        g = precondition(self.gradient(grad, theta))
        return (theta - self.lr * g + self.momentum * (theta - previous), theta)


@dataclass(frozen=True)
class Nesterov(_Momentum):
    r"""Nesterov momentum: the gradient is taken at the look-ahead point
    :math:`y_t = \theta_t + \mu(\theta_t - \theta_{t-1})`, then
    :math:`\theta_{t+1} = y_t - \lambda g(y_t)`.

    >>> import symsgd as ss
    >>> ss.Nesterov(ss.lr, ss.momentum).blocks
    2
    """

    def step(self, state, grad, precondition):
        theta, previous = state
        look_ahead = theta + self.momentum * (theta - previous)
        return (look_ahead - self.lr * precondition(self.gradient(grad, look_ahead)), theta)


def _matrix_or_mode(P, landscape: Landscape, name: str) -> sp.Matrix:
    matrix = as_matrix(P, name)
    if matrix.shape != landscape.hessian.shape:
        raise ValueError(
            f"{name} has shape {matrix.shape} but the landscape has dimension {landscape.dim}."
        )
    return sp.Matrix(matrix)


def _inverse(matrix: sp.Matrix, what: str) -> sp.Matrix:
    det = sp.factor(matrix.det())
    if det == 0:
        raise ValueError(
            f"{what} is singular (determinant 0) and has no inverse; "
            f"use Preconditioned(lr, P) with an invertible P or add weight decay."
        )
    if matrix.rows == 1:
        return sp.Matrix([[sp.cancel(1 / matrix[0, 0])]])
    return matrix.inv(method="LU").applyfunc(sp.cancel)


@dataclass(frozen=True)
class Preconditioned(SGD):
    r"""Preconditioned SGD :math:`\theta_{t+1} = \theta_t - \lambda P g_t` with a fixed
    symmetric positive-definite ``P`` (scalar = its eigenvalue in eigen-mode problems).

    >>> import sympy as sp, symsgd as ss
    >>> ss.Preconditioned(ss.lr, sp.Symbol("p", positive=True)).P
    p
    """

    P: Any = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        matrix = as_matrix(self.P, "P")
        check_symmetric(matrix, "P")
        check_psd(matrix, "P", strict=True)
        object.__setattr__(self, "P", matrix if matrix.rows > 1 else matrix[0, 0])

    def preconditioner(self, landscape, noise):
        return _matrix_or_mode(self.P, landscape, "P")

    def mode_names(self):
        return {self.P: "P"} if isinstance(self.P, sp.Symbol) else {}


@dataclass(frozen=True)
class DampedNewton(SGD):
    r"""Damped Newton :math:`\theta_{t+1} = \theta_t - \lambda (H + \gamma I)^{-1} g_t`: the
    preconditioner is the inverse Hessian of the (weight-decayed) loss.

    >>> import symsgd as ss
    >>> ss.DampedNewton(ss.lr).lr
    lambda
    """

    def preconditioner(self, landscape, noise):
        curvature = sp.Matrix(landscape.hessian) + self.weight_decay * sp.eye(landscape.dim)
        return _inverse(curvature, "DampedNewton needs (H + weight_decay·I)⁻¹, but that matrix")


@dataclass(frozen=True)
class NaturalGradient(SGD):
    r"""Natural-gradient descent :math:`\theta_{t+1} = \theta_t - \lambda F^{-1} g_t`.

    ``F`` is the Fisher information.  **Convention:** by default ``F`` is the *per-sample
    gradient covariance at the minimum*, :math:`C_1 = \operatorname{Cov}[\nabla\ell_i(\theta_*)]`
    for one sample i (:meth:`~symsgd.noise.Noise.fisher`), the same for every noise model and
    landscape:

    * additive noise: ``C``;
    * online Gaussian regression: :math:`\sigma^2 A` (plus the weight-decay offset terms);
    * a finite data set: the covariance of :math:`\nabla\ell_i` over the N samples (divisor N).

    It does not depend on the batch size S or on sampling with/without replacement: those are
    choices of the optimizer's noise, while the Fisher is a property of the model and the data.
    (The minibatch noise itself, :math:`Q(0) = \frac{N-S}{N-1}C_1/S` without replacement, would
    change with S and vanish at S = N.)  Why this rather than the model's Fisher
    :math:`\mathbb E_{y\sim p_\theta}[\nabla\log p\,\nabla\log p^\top]`: it is defined for
    every landscape and noise model (a quadratic with additive noise has no likelihood), and
    where the loss is the negative log-likelihood of a well-specified model it *is* the Fisher
    (online: at the minimum the data's gradient covariance equals the model's — e.g. squared
    loss with unit label variance, :math:`C_1 = A = F`; finite data: the empirical Fisher).
    Pass ``fisher=`` for another matrix (the Hessian, or :math:`A/\sigma^2` for the Gaussian
    likelihood with label variance σ²).

    >>> import symsgd as ss
    >>> ss.NaturalGradient(ss.lr).fisher is None
    True
    """

    fisher: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fisher is None:
            return
        matrix = as_matrix(self.fisher, "fisher")
        check_symmetric(matrix, "fisher")
        check_psd(matrix, "fisher")  # a singular F is refused where F⁻¹ is formed
        object.__setattr__(self, "fisher", matrix if matrix.rows > 1 else matrix[0, 0])

    def mode_names(self):
        return {self.fisher: "F"} if isinstance(self.fisher, sp.Symbol) else {}

    def preconditioner(self, landscape, noise):
        r""":math:`F^{-1}`.  A problem whose every value is a number and some a float gets
        :math:`F` and its inverse in float64 (:meth:`~symsgd.noise.Noise.numeric_fisher`,
        ``numpy.linalg.inv``; O(d³) instead of sympy's elimination over floats): its answer is
        then certified by its float residual like any float problem."""
        fast = _float_inverse_fisher(self, landscape, noise)
        if fast is not None:
            d = len(fast)
            return sp.ImmutableMatrix(d, d, [sp.Float(x) for x in fast.ravel().tolist()])
        F = (
            noise.fisher(landscape, self.weight_decay)
            if self.fisher is None
            else _matrix_or_mode(self.fisher, landscape, "fisher")
        )
        return _inverse(sp.Matrix(F), "NaturalGradient needs F⁻¹, but the Fisher F")

    def numeric_preconditioner(self, landscape, noise):
        """:math:`F^{-1}` in float64 without a sympy matrix on float problems."""
        fast = _float_inverse_fisher(self, landscape, noise)
        return fast if fast is not None else super().numeric_preconditioner(landscape, noise)


@dataclass(frozen=True)
class Adam(Optimizer):
    r"""Adam near a minimum, in its fixed-preconditioner approximation.

    Near a minimum Adam's second-moment estimate :math:`v` changes slowly (β₂ → 1), so the update
    is linear with the frozen diagonal preconditioner :math:`P = \operatorname{diag}(1/(\sqrt{v}+
    \epsilon))` and β₁ momentum on the gradient (bias correction is irrelevant at stationarity):

    .. math:: m_{t+1} = \beta_1 m_t + (1-\beta_1) g_t, \qquad
              \theta_{t+1} = \theta_t - \lambda P m_{t+1}.

    ``v`` is the stationary per-coordinate gradient second moment.  Two forms:

    * *frozen* (default): ``v`` is given (scalar or vector); when ``v=None`` it is the gradient
      second moment *at the minimum*, :math:`v = \operatorname{diag}(Q(0))` (for additive noise
      ``diag C``).
    * *self-consistent*: :func:`symsgd.adam_self_consistent` solves
      :math:`v = \operatorname{diag}\,\mathbb E[g g^\top]
      = \operatorname{diag}(H\Sigma H + Q(\Sigma))`
      together with the stationary Σ for numeric parameters.

    β₂ only sets how frozen ``v`` is and does not enter the linear theory.

    >>> import symsgd as ss
    >>> ss.Adam(ss.lr).blocks
    2
    """

    beta1: Any = _beta1
    beta2: Any = _beta2
    eps: Any = _eps
    v: Any = None

    blocks: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit_interval(self, "beta1", "β₁")
        b2, eps = (self._scalar(name) for name in ("beta2", "eps"))
        if isinstance(self.v, (list, tuple, sp.MatrixBase)) or (
            hasattr(self.v, "ndim") and getattr(self.v, "ndim", 0) > 0
        ):
            entries = list(self.v.tolist() if hasattr(self.v, "tolist") else self.v)
            v = tuple(as_scalar(x, "v", "Adam: ") for x in _flatten(entries))
            object.__setattr__(self, "v", v)
        elif self.v is not None:
            object.__setattr__(self, "v", self._scalar("v"))
        if b2.is_negative or (b2 - 1).is_nonnegative:
            raise ValueError(
                f"Adam: beta2 must satisfy 0 ≤ β₂ < 1 (the decay of the second-moment "
                f"average); got β₂ = {b2}."
            )
        if eps.is_negative:
            raise ValueError(
                f"Adam: eps must be ≥ 0 (it is added to √v in the denominator); got eps = {eps}."
            )

    def initial_state(self, theta):
        return (theta, 0 * theta)

    def step(self, state, grad, precondition):
        theta, m = state
        m_new = self.beta1 * m + (1 - self.beta1) * self.gradient(grad, theta)
        return (theta - self.lr * precondition(m_new), m_new)

    def in_recursion(self) -> Optimizer:
        """β₂ only sets how frozen v is: it does not enter the linear theory (set to 0)."""
        return replace(self, beta2=0)

    def second_moment(self, landscape: Landscape, noise: Noise) -> list:
        """The per-coordinate ``v`` of the frozen preconditioner."""
        d = landscape.dim
        if self.v is None:
            q0 = noise.covariance(landscape, sp.zeros(d, d), weight_decay=self.weight_decay)
            return [q0[i, i] for i in range(d)]
        v = self.v
        if isinstance(v, (list, tuple)) or isinstance(v, sp.MatrixBase):
            values = list(v)
        else:
            values = [v] * d
        if len(values) != d:
            raise ValueError(f"Adam: v has {len(values)} entries; the landscape has {d}.")
        return [sp.sympify(x) for x in values]

    def preconditioner(self, landscape, noise):
        r""":math:`P = \operatorname{diag}(1/(\sqrt{v_i}+\epsilon))`.

        Exact where that is cheap: rational entries when every :math:`\sqrt{v_i}` is rational,
        symbolic ones when the problem has free symbols.  A problem whose every parameter is a
        number but some :math:`\sqrt{v_i}` is irrational gets float entries (correctly rounded
        from a 30-digit evaluation): eliminating over :math:`\mathbb Q(\sqrt{v_1}, \dots)` is
        orders of magnitude slower (minutes at d = 2), so such a problem is solved — and its
        result certified — in floating point, like any problem with float entries.
        """
        v = self.second_moment(landscape, noise)
        for i, x in enumerate(v, start=1):
            if x.is_negative or x.is_real is False:
                raise ValueError(
                    f"Adam: the second moment v_{i} = {x} must be real and ≥ 0 (it is a mean "
                    f"of squared gradients); pass a non-negative v."
                )
            if (sp.sqrt(x) + self.eps).is_zero:
                source = "v" if self.v is not None else "the gradient noise at the minimum"
                raise ValueError(
                    f"Adam: v_{i} = 0 (from {source}) with eps = 0 makes the preconditioner "
                    f"1/(√v + ε) infinite in coordinate {i}; give Adam an eps > 0 or a positive "
                    f"v."
                )
        entries = [1 / (sp.sqrt(x) + self.eps) for x in v]
        if _irrational_numbers(entries) and _all_numeric(self, landscape, noise):
            entries = [sp.Float(e.evalf(30), 17) if not e.is_Rational else e for e in entries]
        return sp.diag(*entries)


def _unit_interval(owner: Optimizer, name: str, label: str, closed: bool = False) -> sp.Expr:
    """Field ``name`` as a scalar in [0, 1) (or [0, 1] if ``closed``), else a ``ValueError``."""
    value = owner._scalar(name)
    high = (value - 1).is_positive if closed else (value - 1).is_nonnegative
    if value.is_negative or high:
        interval = "0 ≤ {0} ≤ 1" if closed else "0 ≤ {0} < 1"
        raise ValueError(
            f"{type(owner).__name__}: {name} must satisfy {interval.format(label)}; got "
            f"{label} = {value}."
        )
    return value


@dataclass(frozen=True)
class QHM(Optimizer):
    r"""Quasi-hyperbolic momentum (Ma & Yarats 2019): an exponential moving average ``m`` of the
    gradients, and a step along a ν-weighted mix of the plain gradient and that average,

    .. math:: m_{t+1} = \beta m_t + (1-\beta) g_t, \qquad
              \theta_{t+1} = \theta_t - \lambda P\bigl[(1-\nu) g_t + \nu m_{t+1}\bigr],

    with β = ``momentum`` ∈ [0, 1) and ν = ``nu`` ∈ [0, 1] (no default: pass a number or a
    symbol).  ν = 0 or β = 0 is SGD; ν = 1 is heavy-ball momentum μ = β with the damped
    learning rate λ(1 − β).  Its small-λ SDE has the learning rate λ for every β and ν (the
    moving average has unit gain).

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.optimizers import QHM
    >>> QHM(ss.lr, ss.momentum, sp.Rational(7, 10)).blocks
    2
    """

    momentum: Any = _momentum
    nu: Any = None

    blocks: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit_interval(self, "momentum", "β")
        if self.nu is None:
            raise TypeError(
                "QHM needs nu (ν ∈ [0, 1], the weight of the momentum buffer in the step), "
                "e.g. QHM(lr, momentum, sp.Rational(7, 10)) or a sympy symbol."
            )
        _unit_interval(self, "nu", "ν", closed=True)

    def initial_state(self, theta):
        return (theta, 0 * theta)

    def step(self, state, grad, precondition):
        theta, m = state
        g = self.gradient(grad, theta)
        m_new = self.momentum * m + (1 - self.momentum) * g
        return (theta - self.lr * precondition((1 - self.nu) * g + self.nu * m_new), m_new)


@dataclass(frozen=True)
class Averaged(Optimizer):
    r"""The exponential moving average of the iterates of any ``inner`` optimizer (the optax
    ``ema`` of the parameters, Polyak–Ruppert-style averaging with a constant window):

    .. math:: \bar\theta_{t+1} = \beta\,\bar\theta_t + (1-\beta)\,\theta_{t+1},

    with β = ``decay`` ∈ [0, 1) and :math:`\theta_{t+1}` the inner optimizer's readout after its
    own step.  The state is the inner state followed by :math:`\bar\theta` (which starts at
    rest at θ), and the optimizer *reports* :math:`\bar\theta` (:meth:`readout`): ``cov``,
    ``velocity_cov`` and ``loss`` of the result are those of the average.

    What the inner optimizer decides, it keeps: ``lr``, ``weight_decay`` (read-only copies of
    the inner's; to change them, wrap a changed inner optimizer), the preconditioner and
    :meth:`mode_names`.  :meth:`continuous_lr` is the inner's: at fixed β the average spans
    O(1/(1 − β)) steps while the iterate decorrelates over O(1/λ), so to leading order in λ the
    SDE prediction for :math:`\bar\theta` is the one for θ.

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.optimizers import Averaged
    >>> beta = sp.Symbol("beta", nonnegative=True)
    >>> Averaged(ss.SGD(ss.lr), beta)
    Averaged(inner=SGD(lr=lambda, weight_decay=0), decay=beta)
    """

    lr: Any = field(init=False, default=None, repr=False, compare=False)
    inner: Optimizer = None  # type: ignore[assignment]
    decay: Any = None
    weight_decay: Any = field(init=False, default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Optimizer):
            raise TypeError(
                f"Averaged(inner, decay): inner must be a symsgd optimizer (e.g. ss.SGD(lr)); "
                f"got {self.inner!r}."
            )
        if self.decay is None:
            raise TypeError(
                "Averaged(inner, decay) needs the decay β ∈ [0, 1) of the moving average, "
                "e.g. Averaged(SGD(lr), sp.Rational(9, 10)) or a sympy symbol."
            )
        _unit_interval(self, "decay", "β")
        object.__setattr__(self, "lr", self.inner.lr)
        object.__setattr__(self, "weight_decay", self.inner.weight_decay)

    @property
    def blocks(self) -> int:  # type: ignore[override]
        return self.inner.blocks + 1

    def initial_state(self, theta):
        return (*self.inner.initial_state(theta), theta)

    def step(self, state, grad, precondition):
        *inner, average = state
        new = tuple(self.inner.step(tuple(inner), grad, precondition))
        theta = self.inner.readout(new)
        return (*new, self.decay * average + (1 - self.decay) * theta)

    def in_recursion(self) -> Optimizer:
        return replace(self, inner=self.inner.in_recursion())

    def readout(self, state):
        return state[-1]

    def preconditioner(self, landscape, noise):
        return self.inner.preconditioner(landscape, noise)

    def continuous_lr(self):
        return self.inner.continuous_lr()

    def mode_names(self):
        return self.inner.mode_names()


def _flatten(entries: list) -> list:
    """Entries of a vector given flat or as a column/row (nested one level)."""
    out = []
    for x in entries:
        out.extend(x if isinstance(x, (list, tuple)) else [x])
    return out


def _float_problem(optimizer: Optimizer, landscape: Landscape, noise: Noise) -> bool:
    """Every value of the three objects a number and some of them a float (an explicit
    landscape): the problem is solved in float64, so its preconditioner may be built there."""
    from ._util import numbers_only

    if getattr(landscape, "eigenmode", False):
        return False
    numbers, floats = numbers_only(optimizer.in_recursion(), landscape, noise)
    return numbers and floats


def _float_inverse_fisher(optimizer, landscape: Landscape, noise: Noise):
    """:math:`F^{-1}` of a float problem as a symmetric float64 array (None when the problem
    is not one)."""
    if not _float_problem(optimizer, landscape, noise):
        return None
    import numpy as np

    from .landscapes import _floats

    if optimizer.fisher is None:
        F = noise.numeric_fisher(landscape, optimizer.weight_decay)
    else:
        F = _floats(_matrix_or_mode(optimizer.fisher, landscape, "fisher"))
    F = (F + F.T) / 2
    scale = float(np.abs(F).max()) if F.size else 0.0
    if scale == 0 or float(np.linalg.eigvalsh(F).min()) <= 1e-13 * scale:
        raise ValueError(
            "NaturalGradient needs F⁻¹, but the Fisher F is singular (determinant 0, to float "
            "precision) and has no inverse; use Preconditioned(lr, P) with an invertible P or "
            "add weight decay."
        )
    P = np.linalg.inv(F)
    return (P + P.T) / 2


def _irrational_numbers(entries: list) -> bool:
    """True if some entry is a number that is not rational (e.g. 1/√2)."""
    return any(
        (not e.free_symbols) and e.is_number and not e.is_Rational and not e.is_Float
        for e in entries
    )


def _all_numeric(optimizer: Optimizer, landscape: Landscape, noise: Noise) -> bool:
    """True if no field of the three value objects that enters the recursion holds a free
    symbol."""
    unused = sp.sympify(getattr(optimizer, "beta2", 0)).free_symbols  # β₂ does not enter
    return not ((optimizer.symbols() - unused) | field_symbols(landscape) | field_symbols(noise))
