"""The built-in catalogue: one registry of problems that drives the demo, the CLI, the tests and
the benchmarks.

Each :class:`Case` names an optimizer, a landscape, a noise model and a stable numeric parameter
point (for numeric checks and simulations).  :func:`build` makes the variants the CLI derives
(another noise model, an explicit d-dimensional problem, weight decay) from the same entries.

>>> [case.name for case in CATALOGUE][:3]
['sgd', 'heavy-ball', 'nesterov']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp

from .landscapes import Landscape, LinearRegression, Quadratic
from .noise import AdditiveNoise, MinibatchNoise, Noise
from .optimizers import (
    QHM,
    SGD,
    Adam,
    Averaged,
    DampedNewton,
    HeavyBall,
    NaturalGradient,
    Nesterov,
    Optimizer,
    Preconditioned,
)
from .symbols import batch_size, beta1, eps, label_noise, lr, momentum, weight_decay

__all__ = [
    "CATALOGUE",
    "MAX_ADDITIVE_DIM",
    "MAX_MINIBATCH_DIM",
    "NOISES",
    "OPTIMIZERS",
    "Case",
    "build",
    "case",
]

h = sp.Symbol("h", positive=True)
c = sp.Symbol("c", positive=True)
a = sp.Symbol("a", positive=True)
p = sp.Symbol("p", positive=True)
#: QHM's weight ν of the momentum buffer in the step
nu = sp.Symbol("nu", nonnegative=True)
#: the decay β of an exponential moving average of the iterates
ema = sp.Symbol("beta", nonnegative=True)


@dataclass(frozen=True)
class Case:
    """One catalogue problem with a stable numeric parameter point."""

    name: str
    description: str
    optimizer: Optimizer
    landscape: Landscape
    noise: Noise
    params: dict = field(hash=False, compare=False)

    def derive(self, method: str = "auto"):
        from ._stationary import stationary

        return stationary(self.optimizer, self.landscape, self.noise, method=method)


CATALOGUE: tuple[Case, ...] = (
    Case(
        "sgd",
        "SGD, commuting H and C",
        SGD(lr),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.5, h: 1.5, c: 0.7},
    ),
    Case(
        "heavy-ball",
        "heavy-ball momentum",
        HeavyBall(lr, momentum),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.5, momentum: 0.6, h: 1.5, c: 0.7},
    ),
    Case(
        "nesterov",
        "Nesterov momentum",
        Nesterov(lr, momentum),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.4, momentum: 0.5, h: 1.5, c: 0.7},
    ),
    Case(
        "preconditioned",
        "fixed preconditioner P",
        Preconditioned(lr, p),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.5, p: 0.8, h: 1.5, c: 0.7},
    ),
    Case(
        "damped-newton",
        "damped Newton, P = H^-1",
        DampedNewton(lr),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.6, h: 1.5, c: 0.7},
    ),
    Case(
        "natural-gradient",
        "natural gradient, P = C^-1",
        NaturalGradient(lr),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.4, h: 1.5, c: 0.7},
    ),
    Case(
        "adam",
        "Adam, frozen preconditioner",
        Adam(lr, beta1, eps=eps),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.3, beta1: 0.5, eps: 0.1, h: 1.5, c: 0.7},
    ),
    Case(
        "sgd-weight-decay",
        "SGD with weight decay",
        SGD(lr, weight_decay=weight_decay),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.5, weight_decay: 0.2, h: 1.5, c: 0.7},
    ),
    Case(
        "sgd-minibatch",
        "SGD, online regression, minibatch noise",
        SGD(lr),
        LinearRegression(a, label_variance=label_noise**2),
        MinibatchNoise(batch_size),
        {lr: 0.3, a: 1.5, label_noise: 0.8, batch_size: 2},
    ),
    Case(
        "heavy-ball-minibatch",
        "heavy ball, online regression, minibatch noise",
        HeavyBall(lr, momentum),
        LinearRegression(a, label_variance=label_noise**2),
        MinibatchNoise(batch_size),
        {lr: 0.2, momentum: 0.5, a: 1.5, label_noise: 0.8, batch_size: 2},
    ),
    Case(
        "qhm",
        "quasi-hyperbolic momentum",
        QHM(lr, momentum, nu),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.5, momentum: 0.6, nu: 0.7, h: 1.5, c: 0.7},
    ),
    Case(
        "ema-sgd",
        "SGD, moving average of the iterates",
        Averaged(SGD(lr), ema),
        Quadratic.commuting(h),
        AdditiveNoise(c),
        {lr: 0.5, ema: 0.6, h: 1.5, c: 0.7},
    ),
)


def case(name: str) -> Case:
    """The catalogue case called ``name``."""
    for c_ in CATALOGUE:
        if c_.name == name:
            return c_
    raise ValueError(f"no catalogue case {name!r}; known: {', '.join(c.name for c in CATALOGUE)}.")


# --------------------------------------------------------------------------------------------
# variants: another noise model, an explicit d-dimensional problem, weight decay
# --------------------------------------------------------------------------------------------

#: the optimizer names :func:`build` accepts (besides catalogue case names): the catalogue
#: entries whose optimizer it varies
OPTIMIZERS = (
    "sgd",
    "heavy-ball",
    "nesterov",
    "preconditioned",
    "damped-newton",
    "natural-gradient",
    "adam",
)
#: the noise models :func:`build` accepts
NOISES = ("additive", "minibatch")
#: explicit-matrix minibatch problems grow quickly with the dimension
MAX_MINIBATCH_DIM = 3
#: eigen-mode problems are cheap at any dimension, but their conditions are not
MAX_ADDITIVE_DIM = 8


#: the weight-decay symbol γ (``build`` has a flag of the same name)
_GAMMA = weight_decay


def _known() -> str:
    return ", ".join([*OPTIMIZERS, *(c.name for c in CATALOGUE if c.name not in OPTIMIZERS)])


def build(name: str, noise: str = "additive", dim: int = 1, *, weight_decay: bool = False) -> Case:
    r"""The :class:`Case` for an optimizer ``name``, a ``noise`` model, a dimension and optional
    weight decay γ (what ``symsgd derive``/``verify`` derive).

    ``name`` is an optimizer name (:data:`OPTIMIZERS`) or a catalogue case name (that case,
    exactly).  For ``dim == 1`` the problem is the catalogue's eigen-mode problem
    ``Quadratic.commuting(h)`` with ``AdditiveNoise(c)``, or, with ``noise="minibatch"``,
    online linear regression ``LinearRegression(a, σ²)`` with ``MinibatchNoise(S)``; the
    catalogue entry itself whenever there is one.  For ``dim == D > 1`` it is explicit and
    diagonal: ``Quadratic.diagonal(D)`` with ``AdditiveNoise(diag(c_1, …, c_D))``
    (preconditioner ``diag(p_1, …, p_D)``), or ``LinearRegression(diag(a_1, …, a_D), σ²)``
    with minibatch noise (at most :data:`MAX_MINIBATCH_DIM`).  Built problems that are not
    catalogue entries carry no parameter point (``params == {}``).  Bad input raises a
    ``ValueError`` naming what is allowed.

    >>> build("heavy-ball", "minibatch") is case("heavy-ball-minibatch")
    True
    >>> build("sgd", dim=2).landscape
    Quadratic(Matrix([[h_1, 0], [0, h_2]]))
    >>> build("sgd", weight_decay=True).name
    'sgd-weight-decay'
    """
    decay = weight_decay
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}.")
    if int(dim) != dim or dim < 1:
        raise ValueError(f"--dim must be a positive integer; got {dim}.")
    names = {c.name for c in CATALOGUE}
    if name not in OPTIMIZERS and name not in names:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {_known()}.")
    if name not in OPTIMIZERS:  # a catalogue case name: exactly that problem
        if noise != "additive" or dim != 1 or decay:
            raise ValueError(
                f"{name!r} is a catalogue case with its own noise and dimension; drop "
                f"--noise/--dim/--weight-decay or name an optimizer ({', '.join(OPTIMIZERS)})."
            )
        return case(name)
    if noise == "minibatch" and dim > MAX_MINIBATCH_DIM:
        raise ValueError(
            f"--dim {dim} with minibatch noise is an explicit-matrix problem whose derivation "
            f"grows quickly; --dim is capped at {MAX_MINIBATCH_DIM} for minibatch noise."
        )
    if noise == "additive" and dim > MAX_ADDITIVE_DIM:
        raise ValueError(f"--dim is capped at {MAX_ADDITIVE_DIM}; got {dim}.")
    base = case(name)
    if dim == 1 and noise == "additive" and not decay:
        return base
    if dim == 1 and noise == "additive" and name + "-weight-decay" in names:
        return case(name + "-weight-decay")
    if dim == 1 and noise == "minibatch" and not decay and name + "-minibatch" in names:
        return case(name + "-minibatch")
    optimizer = base.optimizer
    if decay:
        optimizer = replace(optimizer, weight_decay=_GAMMA)
    if dim > 1 and isinstance(optimizer, Preconditioned):
        optimizer = replace(optimizer, P=sp.diag(*sp.symbols(f"p_1:{dim + 1}", positive=True)))
    if noise == "additive":
        if dim == 1:
            landscape, noise_model = base.landscape, base.noise
        else:
            landscape = Quadratic.diagonal(dim)
            noise_model = AdditiveNoise(sp.diag(*sp.symbols(f"c_1:{dim + 1}", positive=True)))
        what = "additive noise"
    else:
        A = a if dim == 1 else sp.diag(*sp.symbols(f"a_1:{dim + 1}", positive=True))
        landscape = LinearRegression(A, label_noise**2)  # the label-noise variance σ²
        noise_model = MinibatchNoise(batch_size)
        what = "online regression, minibatch noise"
    label = (
        name
        + ("-minibatch" if noise == "minibatch" else "")
        + ("-weight-decay" if decay else "")
        + (f"-d{dim}" if dim > 1 else "")
    )
    description = f"{type(optimizer).__name__}, {what}" + (", weight decay" if decay else "")
    if dim > 1:
        description += f", explicit diagonal d = {dim}"
    return Case(label, description, optimizer, landscape, noise_model, {})
