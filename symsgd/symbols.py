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

from dataclasses import dataclass

import sympy as sp

__all__ = [
    "ALIASES",
    "GREEK_CHARS",
    "GREEK_LETTERS",
    "GREEK_WORDS",
    "LATEX_GREEK",
    "REGISTRY",
    "LibrarySymbol",
    "batch_size",
    "beta1",
    "beta2",
    "canonical_name",
    "dataset_size",
    "eps",
    "label_noise",
    "lookup",
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


@dataclass(frozen=True)
class LibrarySymbol:
    """Everything the library says about one of its symbols, in one place: parsing, printing,
    ``lambdify`` keywords, value checks and stability advice all read it from :data:`REGISTRY`.
    """

    symbol: sp.Symbol
    #: the Python attribute name (``ss.lr``), also accepted as a keyword argument
    alias: str
    #: what it is, for messages ("the learning rate")
    description: str
    #: the LaTeX command it prints as
    latex: str
    #: values of a decay or momentum lie in [0, 1) for a stationary law to exist
    unit_interval: bool = False
    #: an optimizer hyperparameter: printed right after the learning rate in a product
    #: (``\lambda \mu h``)
    hyperparameter: bool = False
    #: further names a hand formula may use for it (``eta`` for the learning rate, ``B`` for
    #: the batch size); the name and the alias are always accepted
    spellings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The symbol's own name (``str(symbol)``), how it prints in plain text."""
        return str(self.symbol)

    def label(self) -> str:
        """``"lambda (alias lr)"``: the name, and the alias when it differs."""
        return self.name if self.alias == self.name else f"{self.name} (alias {self.alias})"


#: every library symbol, in the order they are documented
REGISTRY: tuple[LibrarySymbol, ...] = (
    LibrarySymbol(lr, "lr", "the learning rate", r"\lambda", spellings=("eta", "learning_rate")),
    LibrarySymbol(
        momentum,
        "momentum",
        "the momentum",
        r"\mu",
        unit_interval=True,
        hyperparameter=True,
        spellings=("beta",),
    ),
    LibrarySymbol(batch_size, "batch_size", "the batch size", "S", spellings=("B",)),
    LibrarySymbol(dataset_size, "dataset_size", "the data-set size", "N"),
    LibrarySymbol(weight_decay, "weight_decay", "the weight decay", r"\gamma", hyperparameter=True),
    LibrarySymbol(
        beta1,
        "beta1",
        "Adam's first-moment decay",
        r"\beta_1",
        unit_interval=True,
        hyperparameter=True,
    ),
    LibrarySymbol(
        beta2,
        "beta2",
        "Adam's second-moment decay",
        r"\beta_2",
        unit_interval=True,
        hyperparameter=True,
    ),
    LibrarySymbol(eps, "eps", "Adam's epsilon", r"\epsilon", hyperparameter=True),
    LibrarySymbol(label_noise, "label_noise", "the label-noise standard deviation", r"\sigma"),
)

_BY_KEY: dict = {}
for _entry in REGISTRY:
    _BY_KEY.update({_entry.symbol: _entry, _entry.name: _entry, _entry.alias: _entry})


def lookup(key) -> LibrarySymbol | None:
    """The registry entry of a library symbol, given the symbol, its name or its alias; None
    for anything else (a user symbol of the same name but other assumptions is not it).

    >>> lookup("lr").description, lookup(momentum).alias
    ('the learning rate', 'momentum')
    >>> lookup(sp.Symbol("lambda")) is None  # no assumptions: not the library's λ
    True
    """
    if isinstance(key, sp.Basic):
        return _BY_KEY.get(key)
    return _BY_KEY.get(str(key))


#: Python alias -> library symbol.
ALIASES: dict[str, sp.Symbol] = {e.alias: e.symbol for e in REGISTRY}


def canonical_name(name: str) -> str:
    """Map a Python alias (``"lr"``) to the symbol's own name (``"lambda"``); other names pass."""
    symbol = ALIASES.get(name)
    return str(symbol) if symbol is not None else name


# --------------------------------------------------------------------------------------------
# Greek letters: how formulas spell them (read by symsgd.parsing, printed by symsgd.latex)
# --------------------------------------------------------------------------------------------

#: the lower-case Greek letters by name, in alphabetical order (as sympy and LaTeX spell them)
GREEK_LETTERS: tuple[str, ...] = tuple(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega".split()
)
#: the upper-case Greek letters that differ from Latin ones (LaTeX has a command for each)
_GREEK_CAPITALS = tuple("Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split())
#: LaTeX's variant forms
_GREEK_VARIANTS = ("varepsilon", "vartheta", "varphi", "varrho", "varsigma")

#: Unicode Greek character -> its name (``"λ"`` -> ``"lambda"``, ``"Σ"`` -> ``"Sigma"``)
GREEK_CHARS: dict[str, str] = {
    **dict(zip("αβγδεζηθικλμνξοπρστυφχψω", GREEK_LETTERS, strict=True)),
    # variant glyphs (µ is the micro sign)
    **{"ϵ": "epsilon", "ϑ": "theta", "ϕ": "phi", "ϱ": "rho", "ς": "sigma", "µ": "mu"},
    **dict(zip("ΓΔΘΛΞΠΣΥΦΨΩ", _GREEK_CAPITALS, strict=True)),
}
#: the LaTeX commands of Greek letters, without the backslash (there is no ``\omicron``)
LATEX_GREEK: frozenset[str] = frozenset(
    {n for n in GREEK_LETTERS if n != "omicron"} | set(_GREEK_CAPITALS) | set(_GREEK_VARIANTS)
)
#: every word that names a Greek letter: the names, capitalised, and LaTeX's variants
GREEK_WORDS: frozenset[str] = frozenset(
    set(GREEK_LETTERS) | {n.capitalize() for n in GREEK_LETTERS} | set(_GREEK_VARIANTS)
)
