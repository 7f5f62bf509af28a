"""The built-in catalogue: one registry of problems that drives the demo, the CLI, the tests and
the benchmarks.

Each :class:`Case` names an optimizer, a landscape, a noise model and a stable numeric parameter
point (for numeric checks and simulations).

>>> [case.name for case in CATALOGUE][:3]
['sgd', 'heavy-ball', 'nesterov']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .landscapes import Landscape, LinearRegression, Quadratic
from .noise import AdditiveNoise, MinibatchNoise, Noise
from .optimizers import (
    SGD,
    Adam,
    DampedNewton,
    HeavyBall,
    NaturalGradient,
    Nesterov,
    Optimizer,
    Preconditioned,
)
from .symbols import batch_size, beta1, eps, label_noise, lr, momentum, weight_decay

__all__ = ["CATALOGUE", "Case", "case"]

h = sp.Symbol("h", positive=True)
c = sp.Symbol("c", positive=True)
a = sp.Symbol("a", positive=True)
p = sp.Symbol("p", positive=True)


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
)


def case(name: str) -> Case:
    """The catalogue case called ``name``."""
    for c_ in CATALOGUE:
        if c_.name == name:
            return c_
    raise ValueError(f"no catalogue case {name!r}; known: {', '.join(c.name for c in CATALOGUE)}.")
