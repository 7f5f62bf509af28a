r"""Certificates: every derived stationary law is checked against its defining equation.

A solver strategy produces a candidate :math:`\Sigma(p)`, a matrix of rational functions of the
problem's parameters :math:`p`.  It is the stationary law exactly when the residual

.. math:: R(p) = \Sigma - M\Sigma M^\top - B\,Q(K\Sigma K^\top)\,B^\top

vanishes identically.  :func:`certify` evaluates :math:`R` **exactly** (rational arithmetic in
python-flint) at random rational points of the parameters.  A non-zero rational function of
total degree :math:`\delta` vanishes at a random point drawn from :math:`m` values per
coordinate with probability at most :math:`\delta/m` (Schwartz–Zippel); the points here draw
every coordinate from :math:`m \ge 10^4` values, independently, so a wrong formula of degree
δ = 20 survives two points with probability at most 4·10⁻⁶.  Points are drawn inside the
stability ``conditions`` when they are known, and always respect the symbols' assumptions
(nonnegative symbols get squares of integers, so square roots of parameters stay rational;
μ and β in (0, 1); the learning rate 1/(q·m²)).  Answers with irrational constants (√2) are
checked at 60 digits; all-numeric float problems by their float residual relative to the size
of the terms.

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
from .symbols import lookup

try:
    import flint
except ImportError:  # pragma: no cover
    flint = None

__all__ = ["Certificate", "certify", "certify_float_state", "evaluate_exact"]

#: the stationary equation every :class:`~symsgd.Stationary` is certified against
STATIONARY_EQUATION = "Σ − MΣMᵀ − B Q(KΣKᵀ) Bᵀ = 0"
#: relative float tolerance of the residual of all-numeric float solutions
FLOAT_RTOL = 1e-9


@dataclass(frozen=True)
class Certificate:
    """What was checked before a result was returned.

    ``equation`` is the defining equation; ``how`` one of ``"exact"`` (residual exactly zero
    at ``points``: rationals, or algebraic numbers proved zero), ``"float"`` (float residual ≤
    ``FLOAT_RTOL`` relative, entry by entry), ``"100-digit"`` (an algebraic residual sympy could
    not decide, ≤ ``HIGH_RTOL`` at 100 digits), ``"explicit"`` (an eigen-mode result
    reassembled on an explicit diagonal instance and checked exactly);
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
            "exact": "exact residual = 0",
            "float": f"float residual {self.max_residual:.2e} (relative, ≤ {FLOAT_RTOL:g})",
            f"{HIGH_DIGITS}-digit": (
                f"{HIGH_DIGITS}-digit residual {self.max_residual:.2e} (relative, ≤ "
                f"{HIGH_RTOL:g}; the answer holds irrational constants)"
            ),
            "explicit": "exact residual = 0 on an explicit diagonal instance",
        }.get(self.how, self.how)
        extra = "".join(f"; {n}" for n in self.notes)
        return f"certified: {self.equation}: {kind}{where}{extra}"


class _NotExact(Exception):
    pass


class _ForeignSymbol(Exception):
    """The candidate holds a symbol the equation does not: it cannot be its solution."""


def evaluate_exact(expr: sp.Basic, point: dict, memo: dict | None = None):
    """The exact value (``flint.fmpq``) of the rational expression ``expr`` at ``point``
    (symbol -> ``fmpq``), visiting each shared subexpression once.

    Square roots must come out rational (the certificate draws squares for positive
    symbols).  Raises ``ZeroDivisionError`` at a pole.

    >>> x, y = sp.symbols("x y")
    >>> evaluate_exact((x + y) ** 2 / x + sp.sqrt(y), {x: flint.fmpq(1, 2), y: flint.fmpq(4)})
    85/2
    """
    return evaluate_many([expr], [point], memo)[0][0]


def evaluate_many(exprs: Sequence[sp.Basic], points: Sequence[dict], memo: dict | None = None):
    """``[[value of expr at point for point in points] for expr in exprs]`` exactly, in one
    walk of the expressions' DAG (the walk, not the arithmetic, is what costs)."""
    memo = {} if memo is None else memo
    k = len(points)
    Add, Mul, Pow, Symbol = sp.Add, sp.Mul, sp.Pow, sp.Symbol
    fmpq = flint.fmpq

    def walk(node):
        # keyed by identity: sympy's Python-level __hash__ would cost more than the
        # arithmetic, and shared subexpressions are shared objects
        done = memo.get(id(node))
        if done is not None:
            return done[1]
        cls = type(node)
        if cls is Add:
            out = list(walk(node.args[0]))
            for a in node.args[1:]:
                v = walk(a)
                out = [x + y for x, y in zip(out, v)]
        elif cls is Mul:
            out = list(walk(node.args[0]))
            for a in node.args[1:]:
                v = walk(a)
                out = [x * y for x, y in zip(out, v)]
        elif cls is Pow and node.exp.is_Integer:
            base, e = walk(node.base), int(node.exp)
            if e < 0:
                if any(b == 0 for b in base):
                    raise ZeroDivisionError(str(node))
                out = [(1 / b) ** (-e) for b in base]
            else:
                out = [b**e for b in base]
        elif node.is_Rational:
            out = [fmpq(int(node.p), int(node.q))] * k
        elif isinstance(node, Symbol):
            if node not in points[0]:
                raise _ForeignSymbol(node)
            out = [p[node] for p in points]
        elif cls is Pow and node.exp.is_Rational and node.exp.q == 2:
            out = []
            for b in walk(node.base):
                if b < 0:
                    raise _NotExact("square root of a negative number")
                try:
                    root = b.sqrt()
                except Exception:  # python-flint: DomainError, not a square
                    raise _NotExact(f"{node} is irrational at this point") from None
                e = int(node.exp.p)
                out.append(root**e if e > 0 else (1 / root) ** (-e))
        else:
            raise _NotExact(f"cannot evaluate {type(node).__name__} exactly")
        memo[id(node)] = (node, out)  # the node is kept alive so its id stays unique
        return out

    return [walk(sp.sympify(e)) for e in exprs]


#: library symbols that live in [0, 1) (stationarity needs μ < 1, β < 1)


def _draw(symbol: sp.Symbol, rng: random.Random, scale: int):
    """A random value respecting ``symbol``'s assumptions: integers (squares for nonnegative
    symbols, so that square roots of parameters stay rational), fractions in (0, 1) for the
    momentum and Adam's decays; the learning rate is set by :func:`_draw_point`."""
    if symbol.is_integer:
        return flint.fmpq(rng.randint(2, scale))
    entry = lookup(symbol)
    if entry is not None and entry.unit_interval:
        return flint.fmpq(rng.randint(1, scale - 1), scale) ** 2
    value = rng.randint(1, scale)
    if symbol.is_nonnegative or symbol.is_positive:
        return flint.fmpq(value) ** 2
    return flint.fmpq(rng.choice((-1, 1)) * value)


def _draw_point(symbols: list, rng: random.Random, scale: int = 10**4) -> dict:
    """A random point; the learning rate is ``1/(q·m²)``, m the largest other value, so that λ
    times any product of two parameters is at most ``1/q`` (the point tends to lie inside the
    stability region) and the arithmetic keeps one denominator."""
    from .symbols import lr

    point = {s: _draw(s, rng, scale) for s in symbols if s != lr}
    if lr in symbols:
        largest = max([abs(v) for v in point.values()] + [flint.fmpq(1)])
        point[lr] = 1 / (flint.fmpq(rng.randint(scale // 10, scale)) * largest.ceil() ** 2)
    return point


def _to_sympy(point: dict) -> dict:
    return {s: sp.Rational(int(v.p), int(v.q)) for s, v in point.items()}


def _inside_test(conditions: sp.Basic | None, symbols: list):
    """A fast float test of ``conditions`` at a drawn point (None: no test). Only where the
    points are drawn depends on it; the certificate itself is exact wherever they lie."""
    if conditions is None or conditions in (sp.true, sp.false):
        return None
    parts = [c for c in sp.And.make_args(conditions) if c.free_symbols <= set(symbols)]
    if not parts:
        return None
    try:
        f = sp.lambdify(symbols, sp.And(*parts), modules="math")
    except Exception:  # an unprintable condition only loses the preference
        return None

    def inside(point: dict) -> bool:
        try:
            return bool(f(*[float(point[s]) for s in symbols]))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return False

    return inside


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
    certified: (2-x)X = 1: exact residual = 0 at 2 random rational point(s)
    """
    symbols = sorted(set(symbols), key=sp.default_sort_key)
    solution = sp.Matrix(solution)
    if not symbols and any(e.has(sp.Float) for e in solution):
        return _certify_float(residual, solution, equation)
    rng = random.Random(seed)
    wanted = max(points, 1) if symbols else 1
    inside = _inside_test(conditions, symbols)
    for attempt in range(40):
        drawn = []
        for _ in range(30 * wanted):  # inside the conditions when possible
            point = _draw_point(symbols, rng)
            if attempt > 0 or inside is None or inside(point):
                drawn.append(point)
                if len(drawn) == wanted:
                    break
        while len(drawn) < wanted:
            drawn.append(_draw_point(symbols, rng))
        try:
            columns = evaluate_many(list(solution), drawn)
        except ZeroDivisionError:  # a pole of the candidate: draw again
            continue
        except _NotExact:
            return _certify_algebraic(residual, solution, equation, drawn)
        except _ForeignSymbol as exc:
            raise InternalError(
                f"certificate failed: the candidate depends on {exc.args[0]}, which the "
                f"equation {equation} does not contain; it was not returned."
            ) from None
        checked = []
        try:
            for i, point in enumerate(drawn):
                exact_point = _to_sympy(point)
                X = sp.Matrix(
                    solution.rows,
                    solution.cols,
                    [sp.Rational(int(v[i].p), int(v[i].q)) for v in columns],
                )
                R = residual(X, exact_point)
                bad = [e for e in R if not _is_zero(e.xreplace(exact_point))]
                if bad:
                    raise InternalError(
                        f"certificate failed: the candidate does not solve {equation} at "
                        f"{_show(exact_point)} (residual entry {bad[0]}); it was not returned."
                    )
                checked.append(exact_point)
        except ZeroDivisionError:  # a pole of the equation's coefficients
            continue
        break
    else:
        raise InternalError(
            f"certificate: could not find {wanted} points where the solution is defined; "
            f"the result was not returned."
        )
    return Certificate(equation, "exact", tuple(checked))


#: digits and relative tolerance of the numeric fallback for residuals sympy cannot decide
HIGH_DIGITS, HIGH_RTOL = 100, 1e-80


def _certify_algebraic(residual, solution, equation, drawn) -> Certificate:
    """Exact check of answers with irrational constants (√2 from Adam's √v): the residual at
    each rational point is an algebraic number, proved zero by sympy (``expand``/``equals``).
    Only when sympy cannot decide is it evaluated at ``HIGH_DIGITS`` digits, to ``HIGH_RTOL``
    relative to the size of the solution (said in the certificate)."""
    checked, numeric = [], 0.0
    for point in drawn:
        exact_point = _to_sympy(point)
        X = sp.Matrix(solution).xreplace(exact_point)
        if any(e.has(sp.zoo, sp.nan) for e in X):
            continue
        R = sp.Matrix(residual(X, exact_point)).xreplace(exact_point)
        verdict = _quadratic_field_zero(list(R))
        if verdict is True:
            checked.append(exact_point)
            continue
        if verdict is False:
            raise InternalError(
                f"certificate failed: the candidate does not solve {equation} at "
                f"{_show(exact_point)} (a residual entry is a non-zero element of "
                f"Q(√p₁, √p₂, …)); it was not returned."
            )
        scale = max([abs(sp.N(e, 30)) for e in X] + [sp.Float(1e-300)])
        for e in R:
            value = sp.expand(e)
            if value == 0 or value.equals(0) is True:
                continue
            size = abs(sp.N(value, HIGH_DIGITS)) / scale
            if value.equals(0) is False or size > HIGH_RTOL:
                raise InternalError(
                    f"certificate failed: the candidate does not solve {equation} at "
                    f"{_show(exact_point)} (residual entry {sp.N(value, 6)}); it was not returned."
                )
            numeric = max(numeric, float(size))
        checked.append(exact_point)
    if not checked:
        raise InternalError("certificate: the candidate is undefined at every point drawn.")
    how = "exact" if numeric == 0 else f"{HIGH_DIGITS}-digit"
    return Certificate(equation, how, tuple(checked), numeric)


def _radical(q: sp.Rational, roots: dict) -> sp.Expr:
    """√q as (rational)·∏ s_p over the primes p of its square-free part (s_p stands for √p)."""
    n = int(q.p) * int(q.q)  # √(a/b) = √(ab)/b
    out = sp.Rational(1, int(q.q))
    for prime, power in sp.factorint(n).items():
        out *= sp.Integer(prime) ** (power // 2)
        if power % 2:
            out *= roots.setdefault(prime, sp.Dummy(f"sqrt{prime}"))
    return out


def _quadratic_field_zero(entries: list) -> bool | None:
    r"""Decide exactly whether expressions whose only irrational constants are square roots of
    positive rationals (Adam's :math:`\sqrt{v_i}`) vanish: each :math:`\sqrt q` becomes a
    rational multiple of a product of symbols :math:`s_p = \sqrt p` over distinct primes, each
    entry one fraction whose numerator is reduced modulo :math:`s_p^2 - p`.  The square roots of
    distinct square-free integers are linearly independent over Q, so the reduced numerator is
    zero iff the number is.  True / False; None when another irrational constant occurs, or a
    denominator vanishes (the caller then decides).

    >>> r2, r3 = sp.sqrt(2), sp.sqrt(3)
    >>> _quadratic_field_zero([sp.sqrt(6) - r2 * r3, 1 / (r2 + 1) - r2 + 1])
    True
    >>> _quadratic_field_zero([sp.sqrt(8) - 2 * sp.sqrt(3)])
    False
    """
    roots: dict = {}
    swap: dict = {}
    for e in entries:
        if e.free_symbols or e.has(sp.Float, sp.NumberSymbol, sp.zoo, sp.nan):
            return None
        for atom in e.atoms(sp.Pow):
            base, exp = atom.as_base_exp()
            if base.is_Rational and base > 0 and exp.is_Rational and exp.q == 2:
                swap[atom] = _radical(base, roots) ** int(exp.p)
            elif not exp.is_Integer:  # a cube root, √(negative), …: not decided here
                return None
    symbols = list(roots.values())
    if not symbols:
        return None
    relations = [s_p**2 - prime for prime, s_p in roots.items()]
    for e in entries:
        numerator, denominator = sp.fraction(sp.together(e.xreplace(swap)))
        if _reduced(denominator, relations, symbols) == 0:
            return None  # a pole at this point: not decided here
        if _reduced(numerator, relations, symbols) != 0:
            return False
    return True


def _reduced(poly: sp.Expr, relations: list, symbols: list) -> sp.Expr:
    """``poly`` reduced modulo ``s_p² − p`` (a Gröbner basis: coprime leading terms)."""
    _, remainder = sp.reduced(sp.expand(poly), relations, *symbols, domain=sp.QQ)
    return remainder


def _certify_float(residual, solution, equation) -> Certificate:
    """The residual of an all-numeric float answer in float64, entry by entry relative to the
    size of the terms that make it up (so small entries are checked as strictly as large
    ones), and the state second moment positive semidefinite."""
    X = np.array(sp.Matrix(solution).evalf(), dtype=float)
    out = residual(sp.Matrix(X.tolist()), {})
    R, terms = out if isinstance(out, tuple) else (out, None)
    R = np.array(sp.Matrix(R).evalf(), dtype=float)
    size_terms = np.abs(X) if terms is None else np.array(sp.Matrix(terms).evalf(), dtype=float)
    return _float_verdict(X, R, size_terms, equation)


def _float_verdict(X: np.ndarray, R: np.ndarray, size_terms: np.ndarray, equation: str):
    floor = 1e-300 + 1e-15 * np.abs(X).max()
    size = float(np.max(np.abs(R) / (size_terms + floor)))
    problem = None
    if not np.isfinite(size) or size > FLOAT_RTOL:
        problem = f"leaves a relative residual {size:.2e} (tolerance {FLOAT_RTOL:g})"
    elif X.shape[0] == X.shape[1] and np.allclose(X, X.T):
        slack = FLOAT_RTOL * max(np.abs(X).max(), 1e-300)
        try:  # X + slack·I positive definite: Cholesky, ~10× cheaper than the eigenvalues
            np.linalg.cholesky(X + slack * np.eye(X.shape[0]))
        except np.linalg.LinAlgError:
            lowest = float(np.linalg.eigvalsh(X).min())
            if lowest < -slack:
                problem = f"is not positive semidefinite (eigenvalue {lowest:.3g})"
    if problem:
        raise InternalError(
            f"certificate failed: the float candidate {problem} in {equation}; it was not returned."
        )
    return Certificate(equation, "float", (), size)


def certify_float_state(T, state: np.ndarray, equation: str = STATIONARY_EQUATION) -> Certificate:
    r"""Certify a float64 stationary state second moment against the numeric second-moment map
    ``T`` (:class:`symsgd.moments.NumericMap`) without any sympy: the residual
    :math:`\Sigma - M\Sigma M^\top - BQ(K\Sigma K^\top)B^\top`, entry by entry relative to
    :math:`|\Sigma| + |M||\Sigma||M|^\top + |B||Q||B|^\top` (≤ ``FLOAT_RTOL``), and Σ
    positive semidefinite.  Raises :class:`~symsgd.InternalError` otherwise.

    >>> import numpy as np
    >>> from symsgd.moments import NumericMap
    >>> T = NumericMap(np.array([[0.5]]), np.array([[1.0]]), np.array([[1.0]]), np.eye(1))
    >>> certify_float_state(T, np.array([[4 / 3]])).how
    'float'
    """
    X = np.asarray(state, dtype=float)
    M, B, K = (np.asarray(m, dtype=float) for m in (T.M, T.B, T.K))
    Q = T.noise(K @ X @ K.T)
    R = X - M @ X @ M.T - B @ Q @ B.T
    aM, aB = np.abs(M), np.abs(B)
    terms = np.abs(X) + aM @ np.abs(X) @ aM.T + aB @ np.abs(Q) @ aB.T
    return _float_verdict(X, R, terms, equation)


def _is_zero(value: sp.Expr) -> bool:
    """Exactly zero (rationals compared as they are: no rounding, however small)."""
    if value.is_Rational:
        return value == 0
    return sp.simplify(value) == 0  # radicals of the equation's constants (e.g. √2)


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
        R = X - M * X * M.T - B * Q * B.T
        if not any(e.has(sp.Float) for e in X):
            return R
        # float answers: the entrywise size of the terms, |X| + |M||X||M|ᵀ + |B||Q||B|ᵀ
        a = sp.Matrix.applyfunc
        terms = (
            a(X, abs) + a(M, abs) * a(X, abs) * a(M, abs).T + a(B, abs) * a(Q, abs) * a(B, abs).T
        )
        return R, terms

    return residual


def certify_stationary(
    recursion,
    state_cov: sp.MatrixBase,
    conditions=None,
    seed: int = 0,
    equation: str = STATIONARY_EQUATION,
) -> Certificate:
    """:func:`certify` the candidate ``state_cov`` of ``recursion`` against its stationary
    equation."""
    # a solution's symbols are the equation's (a foreign one fails the certificate)
    symbols = (
        recursion.M.free_symbols
        | recursion.B.free_symbols
        | recursion.K.free_symbols
        | recursion.forcing().free_symbols
        | _noise_symbols(recursion)
    )
    return certify(
        stationary_residual(recursion),
        state_cov,
        symbols,
        equation=equation,
        conditions=conditions,
        seed=seed,
    )


def probe_symbols(operator: Callable[[sp.Matrix], sp.Matrix], n: int) -> set:
    """Symbols of a linear matrix operator, read off its value at a generic numeric matrix."""
    probe = sp.Matrix(n, n, lambda i, j: sp.Integer(1 + i + j))
    return set(sp.Matrix(operator(probe)).free_symbols)


def _noise_symbols(recursion) -> set:
    """Symbols of the state-dependent part of the noise (e.g. S, σ, κ)."""
    if not recursion.noise.depends_on_state():
        return set()
    return probe_symbols(recursion.noise_cov, recursion.K.rows)


def certify_modes(result, seed: int = 0) -> Certificate:
    r"""Certify a trace-coupled eigen-mode result (minibatch noise on a commuting problem) on
    an explicit instance: three modes with random rational eigenvalues, the explicit diagonal
    problem built from the same optimizer, noise and parameters, and the eigen-mode answer —
    its cross-mode trace closed and expanded over the three eigenvalues — reassembled into the
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
    eigen: list = []
    while len(eigen) < 3:  # three modes: identities of two eigenvalues (e₃ = 0) do not pass
        value = _draw(mode, rng, 10**3)
        if value not in eigen:
            eigen.append(value)
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
    n1, d = per_mode.rows, len(eigen)
    S = sp.zeros(n1 * d, n1 * d)
    for k, value in enumerate(eigen):
        block = per_mode.xreplace({mode: value})
        for a in range(n1):
            for b in range(n1):
                S[a * d + k, b * d + k] = block[a, b]
    cert = certify_stationary(
        ex_rec,
        S,
        seed=seed,
        equation=STATIONARY_EQUATION + " (explicit diagonal instance, d = 3)",
    )
    how = "explicit" if cert.how == "exact" else cert.how
    note = f"mode eigenvalues {', '.join(map(str, eigen))}"
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
