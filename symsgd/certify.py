r"""Certificates: every derived stationary law is checked against its defining equation.

A solver strategy produces a candidate :math:`\Sigma(p)`, a matrix of rational functions of the
problem's parameters :math:`p`.  It is the stationary law exactly when the residual

.. math:: R(p) = \Sigma - M\Sigma M^\top - B\,Q(K\Sigma K^\top)\,B^\top

vanishes identically.  :func:`certify` evaluates :math:`R` **exactly** (rational arithmetic in
python-flint) at random rational points of the parameters.  A non-zero rational function of
total degree :math:`\delta` vanishes at a random point drawn from :math:`m` values per
coordinate with probability at most :math:`\delta/m` (Schwartz–Zippel), so two points with
:math:`m \approx 10^{12}` values turn every wrong formula into a failed certificate in practice.
Points are drawn inside the stability ``conditions`` when they are known, and always respect the
symbols' assumptions (positive symbols get squares of rationals, so square roots of parameters
stay rational).  All-numeric float problems are checked by their float residual relative to the
size of the terms.

A failed certificate raises :class:`~symsgd.InternalError`; the solver driver
(:func:`symsgd.lyapunov.solve`) then tries the next strategy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .errors import InternalError

try:
    import flint
except ImportError:  # pragma: no cover
    flint = None

__all__ = ["Certificate", "certify", "evaluate_exact"]

#: the stationary equation every :class:`~symsgd.Stationary` is certified against
STATIONARY_EQUATION = "Σ − MΣMᵀ − B Q(KΣKᵀ) Bᵀ = 0"
#: relative float tolerance of the residual of all-numeric float solutions
FLOAT_RTOL = 1e-9


@dataclass(frozen=True)
class Certificate:
    """What was checked before a result was returned.

    ``equation`` is the defining equation; ``how`` one of ``"exact"`` (rational residual zero
    at ``points``), ``"float"`` (float residual ≤ ``FLOAT_RTOL`` relative), ``"explicit"``
    (an eigen-mode result reassembled on an explicit diagonal instance and checked exactly);
    ``points`` the parameter points used; ``max_residual`` the largest residual entry seen
    (0 for exact checks that passed).
    """

    equation: str
    how: str
    points: tuple = ()
    max_residual: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        drawn = [p for p in self.points if p]
        where = f" at {len(drawn)} random rational point(s)" if drawn else ""
        kind = {
            "exact": "exact rational residual = 0",
            "float": f"float residual {self.max_residual:.2e} (relative, ≤ {FLOAT_RTOL:g})",
            "explicit": "exact rational residual = 0 on an explicit diagonal instance",
        }.get(self.how, self.how)
        extra = "".join(f"; {n}" for n in self.notes)
        return f"certified: {self.equation}: {kind}{where}{extra}"


class _NotExact(Exception):
    pass


def evaluate_exact(expr: sp.Basic, point: dict, memo: dict | None = None):
    """The exact value (``flint.fmpq``) of the rational expression ``expr`` at ``point``
    (symbol -> ``fmpq``), visiting each shared subexpression once.

    Square roots must come out rational (the certificate draws squares for positive
    symbols).  Raises ``ZeroDivisionError`` at a pole.

    >>> x, y = sp.symbols("x y")
    >>> evaluate_exact((x + y) ** 2 / x + sp.sqrt(y), {x: flint.fmpq(1, 2), y: flint.fmpq(4)})
    169/2
    """
    memo = {} if memo is None else memo

    def walk(node):
        done = memo.get(node)
        if done is not None:
            return done
        if node.is_Symbol:
            if node not in point:
                raise _NotExact(f"no value for {node}")
            out = point[node]
        elif node.is_Rational:
            out = flint.fmpq(int(node.p), int(node.q))
        elif node.is_Add:
            out = flint.fmpq(0)
            for a in node.args:
                out += walk(a)
        elif node.is_Mul:
            out = flint.fmpq(1)
            for a in node.args:
                out *= walk(a)
        elif node.is_Pow and node.exp.is_Integer:
            base, k = walk(node.base), int(node.exp)
            if k < 0:
                if base == 0:
                    raise ZeroDivisionError(str(node))
                out = (1 / base) ** (-k)
            else:
                out = base**k
        elif node.is_Pow and node.exp.is_Rational and node.exp.q == 2:
            base = walk(node.base)
            if base < 0:
                raise _NotExact("square root of a negative number")
            try:
                root = base.sqrt()
            except Exception:  # python-flint: DomainError, not a square
                raise _NotExact(f"{node} is irrational at this point") from None
            out = root ** int(node.exp.p) if node.exp.p > 0 else (1 / root) ** int(-node.exp.p)
        else:
            raise _NotExact(f"cannot evaluate {type(node).__name__} exactly")
        memo[node] = out
        return out

    return walk(sp.sympify(expr))


def _draw(symbol: sp.Symbol, rng: random.Random, scale: int):
    """A random rational value respecting ``symbol``'s assumptions."""
    from .symbols import lr

    if symbol.is_integer:
        return flint.fmpq(rng.randint(2, 40))
    num, den = rng.randint(1, scale), rng.randint(1, scale)
    if symbol == lr:
        value = flint.fmpq(num, den * rng.randint(20, 200))  # small: inside most stable regions
        return value
    if symbol.is_nonnegative or symbol.is_positive:
        return flint.fmpq(num, den) ** 2  # a square: √symbol stays rational
    sign = rng.choice((-1, 1))
    return flint.fmpq(sign * num, den)


def _to_sympy(point: dict) -> dict:
    return {s: sp.Rational(int(v.p), int(v.q)) for s, v in point.items()}


def _inside(conditions: sp.Basic | None, point: dict) -> bool:
    if conditions is None or conditions is sp.true:
        return True
    try:
        return bool(conditions.xreplace(_to_sympy(point)) == sp.true)
    except (TypeError, ValueError):
        return False


def certify(
    residual: Callable[[sp.Matrix, dict], sp.Matrix],
    solution: sp.MatrixBase,
    symbols: Sequence[sp.Symbol],
    *,
    equation: str = STATIONARY_EQUATION,
    conditions: sp.Basic | None = None,
    points: int = 2,
    seed: int = 0,
) -> Certificate:
    r"""Check that ``solution`` solves ``residual(X, point) = 0`` and return the
    :class:`Certificate`; raise :class:`~symsgd.InternalError` when it does not.

    ``residual(X, point)`` receives the solution evaluated at ``point`` (a matrix of sympy
    Rationals, or floats for float problems) and the point itself (symbol -> Rational) and
    returns the residual matrix, which may still contain the point's symbols.  ``symbols`` are
    the parameters to draw (everything free in the solution and the equation).

    >>> x = sp.Symbol("x", positive=True)
    >>> sol = sp.Matrix([[1 / (2 - x)]])           # solves (2 - x) X = 1
    >>> print(certify(lambda X, p: (2 - x) * X - sp.eye(1), sol, [x], equation="(2-x)X = 1"))
    certified: (2-x)X = 1: exact rational residual = 0 at 2 random rational point(s)
    """
    symbols = sorted(set(symbols), key=sp.default_sort_key)
    solution = sp.Matrix(solution)
    if not symbols and any(e.has(sp.Float) for e in solution):
        return _certify_float(residual, solution, equation)
    rng = random.Random(seed)
    checked: list[dict] = []
    tries = 0
    while len(checked) < max(points, 1 if not symbols else points):
        tries += 1
        if tries > 400:
            raise InternalError(
                f"certificate: could not find {points} points where the solution is defined "
                f"({len(checked)} found); the result was not returned."
            )
        point = {s: _draw(s, rng, 10**6) for s in symbols}
        if tries <= 100 and not _inside(conditions, point):
            continue
        memo: dict = {}
        try:
            values = [evaluate_exact(e, point, memo) for e in solution]
        except ZeroDivisionError:
            continue
        except _NotExact:
            return _certify_float(residual, solution, equation, _to_sympy(point))
        exact_point = _to_sympy(point)
        X = sp.Matrix(
            solution.rows, solution.cols, [sp.Rational(int(v.p), int(v.q)) for v in values]
        )
        try:
            R = residual(X, exact_point)
            bad = [e for e in R if sp.nsimplify(e.xreplace(exact_point)) != 0]
        except ZeroDivisionError:
            continue
        if bad:
            raise InternalError(
                f"certificate failed: the candidate does not solve {equation} at "
                f"{_show(exact_point)} (residual entry {bad[0]}); it was not returned."
            )
        checked.append(exact_point)
        if not symbols:
            break
    return Certificate(equation, "exact", tuple(checked))


def _certify_float(residual, solution, equation, point=None) -> Certificate:
    point = point or {}
    X = np.array(sp.Matrix(solution).xreplace(point).evalf(), dtype=float)
    R = residual(sp.Matrix(X.tolist()), point)
    R = np.array(sp.Matrix(R).xreplace(point).evalf(), dtype=float)
    scale = max(np.abs(X).max(), 1e-300)
    size = float(np.abs(R).max() / scale)
    if not np.isfinite(size) or size > FLOAT_RTOL:
        raise InternalError(
            f"certificate failed: the float candidate leaves a relative residual {size:.2e} "
            f"in {equation} (tolerance {FLOAT_RTOL:g}); it was not returned."
        )
    return Certificate(equation, "float", (point,) if point else (), size)


def _show(point: dict) -> str:
    return "{" + ", ".join(f"{k} = {v}" for k, v in point.items()) + "}"


def stationary_residual(recursion) -> Callable[[sp.Matrix, dict], sp.Matrix]:
    """``R(Σ) = Σ − MΣMᵀ − B Q(KΣKᵀ) Bᵀ`` for a numeric Σ, with M, B, K and the noise
    evaluated at the point first (so no symbolic matrix products are formed)."""

    def residual(X: sp.Matrix, point: dict) -> sp.Matrix:
        M = sp.Matrix(recursion.M).xreplace(point)
        B = sp.Matrix(recursion.B).xreplace(point)
        K = sp.Matrix(recursion.K).xreplace(point)
        Q = sp.Matrix(recursion.noise_cov(K * X * K.T)).xreplace(point)
        return X - M * X * M.T - B * Q * B.T

    return residual


def certify_stationary(
    recursion, state_cov: sp.MatrixBase, conditions=None, seed: int = 0
) -> Certificate:
    """:func:`certify` the candidate ``state_cov`` of ``recursion`` against its stationary
    equation."""
    from ._util import symbols_in

    symbols = (
        symbols_in(state_cov)
        | recursion.M.free_symbols
        | recursion.B.free_symbols
        | recursion.K.free_symbols
        | recursion.forcing().free_symbols
        | _noise_symbols(recursion)
    )
    return certify(
        stationary_residual(recursion), state_cov, symbols, conditions=conditions, seed=seed
    )


def _noise_symbols(recursion) -> set:
    """Symbols of the state-dependent part of the noise (e.g. S, σ, κ)."""
    if not recursion.noise.depends_on_state():
        return set()
    n = recursion.K.rows
    probe = sp.Matrix(n, n, lambda i, j: sp.Integer(1 + i + j))
    return set(sp.Matrix(recursion.noise_cov(probe)).free_symbols)


def certify_modes(result, seed: int = 0) -> Certificate:
    r"""Certify a trace-coupled eigen-mode result (minibatch noise on a commuting problem) on
    an explicit instance: two modes with random rational eigenvalues, the explicit diagonal
    problem built from the same optimizer, noise and parameters, and the eigen-mode answer —
    its cross-mode trace closed and expanded over the two eigenvalues — reassembled into the
    explicit state covariance (zero between modes) and checked exactly against the explicit
    stationary equation.  This checks what the per-mode certificate cannot: the closure of the
    trace and the claim that the modes do not mix.
    """
    from .modes import expand_traces
    from .recursion import build_recursion

    rec = result.recursion
    land = rec.landscape
    (mode,) = list(land.mode_names)
    rng = random.Random(seed)
    eigen = [_draw(mode, rng, 10**3) for _ in range(2)]
    while eigen[1] == eigen[0]:
        eigen[1] = _draw(mode, rng, 10**3)
    eigen = [sp.Rational(int(v.p), int(v.q)) for v in eigen]
    explicit = _explicit_problem(rec, eigen)
    if explicit is None:
        raise InternalError(
            f"certificate: no explicit diagonal instance of {land!r} with "
            f"{type(rec.optimizer).__name__} could be built to check the closed cross-mode "
            f"trace; the eigen-mode result was not returned. Use an explicit diagonal matrix."
        )
    ex_rec = build_recursion(*explicit)
    per_mode = sp.Matrix(result._state_cov).xreplace(result.closure)
    per_mode = expand_traces(per_mode, eigen)
    n1, d = per_mode.rows, 2
    S = sp.zeros(n1 * d, n1 * d)
    for k, value in enumerate(eigen):
        block = per_mode.xreplace({mode: value})
        for a in range(n1):
            for b in range(n1):
                S[a * d + k, b * d + k] = block[a, b]
    symbols = (
        set(S.free_symbols)
        | ex_rec.M.free_symbols
        | ex_rec.B.free_symbols
        | ex_rec.forcing().free_symbols
        | _noise_symbols(ex_rec)
    )
    cert = certify(
        stationary_residual(ex_rec),
        S,
        symbols,
        equation=STATIONARY_EQUATION + " (explicit diagonal instance, d = 2)",
        seed=seed,
    )
    how = "explicit" if cert.how == "exact" else cert.how
    note = f"mode eigenvalues {eigen[0]}, {eigen[1]}"
    return Certificate(cert.equation, how, cert.points, cert.max_residual, (note,))


def _explicit_problem(rec, eigen: list):
    """``(optimizer, landscape, noise)`` of the explicit diagonal problem whose eigen-modes
    are ``eigen``, or None when the pieces have no explicit counterpart here."""
    from ._util import replace_fields
    from .landscapes import LinearRegression

    land, noise, opt = rec.landscape, rec.noise, rec.optimizer
    (mode,) = list(land.mode_names)
    A = sp.ImmutableMatrix(sp.diag(*eigen))
    if not isinstance(land, LinearRegression) or land.data is not None:
        return None
    variance = getattr(land, "label_variance", None)
    if variance is None:
        variance = land.label_noise
    star = sp.Matrix(land.theta_star)
    star = None if star.is_zero_matrix else [star[0, 0]] * len(eigen)
    explicit_land = LinearRegression(A, variance, star)
    try:
        explicit_opt = replace_fields(opt, {mode: A})
    except (TypeError, ValueError, AttributeError):
        return None
    extra = set()
    for value in vars(explicit_opt).values():
        if isinstance(value, sp.Basic) and not isinstance(value, sp.MatrixBase):
            extra |= value.free_symbols
    if mode in extra:
        return None
    return explicit_opt, explicit_land, noise
