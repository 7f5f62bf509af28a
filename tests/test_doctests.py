"""Every docstring example in the package runs and prints what it shows (private modules too:
their examples are collected here rather than by importing them in other tests)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import symsgd

MODULES = sorted(m.name for m in pkgutil.iter_modules(symsgd.__path__, "symsgd."))

#: modules whose documentation is carried by runnable examples: they must keep some
WITH_EXAMPLES = {
    "symsgd",
    "symsgd._grammar",
    "symsgd._latex_reader",
    "symsgd._names",
    "symsgd._verify",
    "symsgd.catalogue",
    "symsgd.cli",
    "symsgd.exact",
    "symsgd.latex",
    "symsgd.numeric",
    "symsgd.parsing",
    "symsgd.schedules",
    "symsgd.models",
    "symsgd.symbols",
}


def test_every_module_with_examples_is_collected():
    assert WITH_EXAMPLES - {"symsgd"} <= set(MODULES)


@pytest.mark.parametrize("name", ["symsgd", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failures, tried = doctest.testmod(module, optionflags=flags, verbose=False)
    assert failures == 0
    if name in WITH_EXAMPLES:
        assert tried > 0, f"{name} lost its docstring examples"
