"""Shared fixtures: independent oracles that do not use symsgd's own linearisation."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)
