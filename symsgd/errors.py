"""Exceptions raised by symsgd."""

from __future__ import annotations

__all__ = ["InternalError", "UnstableError"]


class UnstableError(ValueError):
    """The parameters admit no stationary law: the recursion's second moments diverge.

    The message names the stability condition that fails and the offending values.
    ``condition`` holds the violated sympy inequality (or ``None`` when only the numeric
    spectral radius could be checked) and ``values`` the parameter values that were given.
    """

    def __init__(self, message: str, condition=None, values=None):
        super().__init__(message)
        self.condition = condition
        self.values = values


class InternalError(RuntimeError):
    """symsgd caught itself producing an answer that fails its own check (a certificate or an
    internal invariant).  Nothing wrong was returned; please report the problem with the input
    that triggered it."""
