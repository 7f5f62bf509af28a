"""The library's symbols, with the assumptions the theory needs.

Every public symbol has a *name* (``str(symbol)``, which is also how it prints in LaTeX) and a
Python *alias* (the attribute name here).  Numeric functions produced by
:meth:`symsgd.Stationary.lambdify` accept either as a keyword argument::

    >>> import symsgd as ss
    >>> ss.lr, ss.momentum, ss.batch_size
    (lambda, mu, S)
    >>> ss.lr.is_positive
    True
"""

from __future__ import annotations

import sympy as sp

__all__ = [
    "ALIASES",
    "batch_size",
    "beta1",
    "beta2",
    "canonical_name",
    "dataset_size",
    "eps",
    "label_noise",
    "lr",
    "momentum",
    "weight_decay",
]

#: learning rate λ > 0
lr = sp.Symbol("lambda", positive=True)
#: heavy-ball / Nesterov momentum μ ≥ 0 (stationarity further needs μ < 1)
momentum = sp.Symbol("mu", nonnegative=True)
#: minibatch size S ≥ 1
batch_size = sp.Symbol("S", positive=True, integer=True)
#: data-set size N ≥ 1
dataset_size = sp.Symbol("N", positive=True, integer=True)
#: L2 weight decay γ ≥ 0 (adds γθ to every gradient)
weight_decay = sp.Symbol("gamma", nonnegative=True)
#: Adam's first-moment decay β₁ ∈ [0, 1)
beta1 = sp.Symbol("beta_1", nonnegative=True)
#: Adam's second-moment decay β₂ ∈ [0, 1)
beta2 = sp.Symbol("beta_2", nonnegative=True)
#: Adam's ε > 0
eps = sp.Symbol("epsilon", positive=True)
#: standard deviation σ of the label noise; its variance σ² = ``label_noise**2`` is what
#: ``LinearRegression(A, label_variance=...)`` takes
label_noise = sp.Symbol("sigma", positive=True)

#: Python alias -> library symbol.
ALIASES: dict[str, sp.Symbol] = {
    "lr": lr,
    "momentum": momentum,
    "batch_size": batch_size,
    "dataset_size": dataset_size,
    "weight_decay": weight_decay,
    "beta1": beta1,
    "beta2": beta2,
    "eps": eps,
    "label_noise": label_noise,
}


def canonical_name(name: str) -> str:
    """Map a Python alias (``"lr"``) to the symbol's own name (``"lambda"``); other names pass."""
    symbol = ALIASES.get(name)
    return str(symbol) if symbol is not None else name
