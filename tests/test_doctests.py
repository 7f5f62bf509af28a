"""Every docstring example in the package runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import symsgd

MODULES = sorted(m.name for m in pkgutil.iter_modules(symsgd.__path__, "symsgd."))


@pytest.mark.parametrize("name", ["symsgd", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failures, _tried = doctest.testmod(module, optionflags=flags, verbose=False)
    assert failures == 0
