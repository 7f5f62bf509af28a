"""Exceptions raised by symsgd."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["InternalError", "UnstableError"]

#: characters of the full list of stability conditions an error message shows (fully symbolic
#: problems with d ≥ 3 have conditions of 10⁵ characters: the message then counts them)
MAX_SHOWN = 2000

#: the advice of an instability caused by a flat direction (a singular Hessian plus weight decay),
#: where no learning rate helps
FLAT_ADVICE = (
    "The Hessian is singular here: nothing pulls the iterates back along a flat direction, "
    "whatever the learning rate, so the moments there never forget the start (and any noise "
    "entering there accumulates without bound). Give every direction positive curvature (or "
    "add weight decay)."
)


class UnstableError(ValueError):
    """The parameters admit no stationary law: the recursion's second moments diverge.

    The message names the stability condition that fails and the offending values.
    ``condition`` holds the violated sympy inequality (or ``None`` when only the numeric
    spectral radius could be checked), ``values`` the parameter values that were given and
    ``rho`` the spectral radius of the second-moment map there (``None`` when not computed).
    Build one with :meth:`at`, which words every instability the same way.
    """

    def __init__(self, message: str, condition=None, values=None, rho: float | None = None):
        super().__init__(message)
        self.condition = condition
        self.values = values
        self.rho = rho
        self._parts: dict | None = None  # the arguments of :meth:`at`, for :meth:`with_condition`

    @classmethod
    def at(
        cls,
        context: str,
        values: Mapping | None = None,
        *,
        subject: str | None = None,
        rho: float | None = None,
        condition=None,
        conditions=None,
        reason: str | None = None,
        advice: str | None = None,
    ) -> UnstableError:
        r"""The error for ``context`` (the entry point, e.g. ``"simulate()"``) at ``values``.

        The message reads ``"{context}: no stationary law[ for {subject}]: {why}[ at {values}].
        {advice}"``, where *why* is ``reason`` and/or the failing ``condition`` (after the full
        ``conditions`` when those say more), else the spectral radius ``rho`` of the
        second-moment map; a ``rho`` that is not the main reason is added in parentheses.
        ``advice`` defaults to lowering the learning rate (``""``: none).

        >>> import sympy as sp
        >>> lam, h = sp.symbols("lambda h", positive=True)
        >>> err = UnstableError.at("simulate()", {lam: 3.0, h: 1}, rho=4.0,
        ...                        condition=sp.StrictLessThan(h * lam, 2))
        >>> str(err)
        'simulate(): no stationary law: the condition h*lambda < 2 fails at lambda = 3, h = 1 (spectral radius of the second-moment map ρ = 4 ≥ 1). Lower the learning rate.'
        >>> err.rho, err.condition
        (4.0, h*lambda < 2)
        >>> str(UnstableError.at("stationary()", rho=9.0))
        'stationary(): no stationary law: the spectral radius of the second-moment map is ρ = 9 ≥ 1, so the second moments grow without bound; to bring ρ below 1, lower the learning rate.'
        """  # noqa: E501
        head = f"{context}: no stationary law" + (f" for {subject}" if subject else "")
        at = f" at {_values(values)}" if values else ""
        parts = dict(
            context=context,
            values=values,
            subject=subject,
            rho=rho,
            condition=condition,
            conditions=conditions,
            reason=reason,
            advice=advice,
        )
        radius = None if rho is None else f"ρ = {rho:.6g}{'' if rho < 1 else ' ≥ 1'}"
        why = None
        if condition is not None:
            text = _pretty(condition)
            if len(text) > MAX_SHOWN:
                text = f"{text[:300]} … ({len(text)} characters in all: error.condition)"
            why = f"the condition {text} fails{at}"
            if conditions is not None and _pretty(conditions) != _pretty(condition):
                shown = _pretty(conditions)
                if len(shown) > MAX_SHOWN:  # fully symbolic d ≥ 3: 10⁵ characters
                    count = len(_conjuncts(conditions))
                    shown = f"{count} conditions (result.conditions has them all)"
                why = f"stability needs {shown}; {why}"
        if reason:
            why = f"{reason}{at}" if why is None else f"{reason}: {why}"
        if why is None and radius is not None:
            why = f"the spectral radius of the second-moment map is {radius}{at}"
            if not rho < 1 and advice is None:
                why += ", so the second moments grow without bound"
                advice = "to bring ρ below 1, lower the learning rate."
                return cls._made(f"{head}: {why}; {advice}", parts)
        elif radius is not None:
            why += f" (spectral radius of the second-moment map {radius})"
        if why is None:
            why = f"the recursion is unstable{at}"
        advice = "Lower the learning rate." if advice is None else advice
        message = f"{head}: {why}." + (f" {advice}" if advice else "")
        return cls._made(message, parts)

    @classmethod
    def _made(cls, message: str, parts: dict) -> UnstableError:
        error = cls(message, parts["condition"], parts["values"], parts["rho"])
        error._parts = parts
        return error

    def with_condition(self, condition, conditions=None, advice: str | None = None):
        """The same error worded with the failing ``condition`` of the stability
        ``conditions`` (and ``advice`` for it, when given): for the caller that holds the
        symbolic conditions, when the error was raised from numbers alone (ρ ≥ 1).

        >>> import sympy as sp
        >>> lam = sp.Symbol("lambda", positive=True)
        >>> err = UnstableError.at("simulate()", {lam: 3.0}, rho=4.0, advice="")
        >>> str(err.with_condition(lam < 2, advice="Lower lambda."))
        'simulate(): no stationary law: the condition lambda < 2 fails at lambda = 3 (spectral radius of the second-moment map ρ = 4 ≥ 1). Lower lambda.'
        """  # noqa: E501
        parts = dict(self._parts or {"context": str(self), "values": self.values, "rho": self.rho})
        parts.update(condition=condition, conditions=conditions)
        if advice is not None:
            parts["advice"] = advice
        return type(self).at(**parts)


def _values(values: Mapping) -> str:
    return ", ".join(f"{k} = {_number(v)}" for k, v in values.items())


def _number(v) -> str:
    if isinstance(v, float) or type(v).__name__ in ("float64", "float32"):
        return f"{float(v):.6g}"
    if hasattr(v, "shape") and hasattr(v, "tolist") and not hasattr(v, "free_symbols"):
        import numpy as np

        return np.array2string(np.asarray(v), precision=6, separator=", ")
    import sympy as sp

    return sp.sstr(v)


def _conjuncts(cond) -> tuple:
    import sympy as sp

    return sp.And.make_args(cond)


def _pretty(cond) -> str:
    """A sympy condition as text; a conjunction as ``"a and b"``."""
    import sympy as sp

    if cond in (sp.true, sp.false) or not isinstance(cond, sp.Basic):
        return str(cond)
    return " and ".join(sp.sstr(c) for c in sp.And.make_args(cond))


class InternalError(RuntimeError):
    """symsgd caught itself producing an answer that fails its own check (a certificate or an
    internal invariant).  Nothing wrong was returned; please report the problem with the input
    that triggered it."""
