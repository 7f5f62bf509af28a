"""Shared fixtures: independent oracles that do not use symsgd's own linearisation."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


@pytest.fixture(autouse=True, scope="session")
def _symsgd_cache_dir(tmp_path_factory):
    """The on-disk cache of universal polynomials goes to a temporary directory: tests leave
    nothing in the user's cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SYMSGD_CACHE_DIR", str(tmp_path_factory.mktemp("symsgd-cache")))
    yield
    patch.undo()
