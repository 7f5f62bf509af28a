r"""Where a stationary law exists: derived stability conditions.

The stationary second moment exists (and is the limit from any start) iff the spectral radius
of the second-moment map :math:`T(\Sigma) = M\Sigma M^\top + B\mathcal L(K\Sigma K^\top)B^\top` is
below one.  For additive noise :math:`\rho(T) = \rho(M)^2`, so the condition is Schur stability of
``M``; with state-dependent noise it is Schur stability of ``T`` itself.

Schur stability of a monic characteristic polynomial ``p(z)`` of degree n is turned into explicit
polynomial inequalities by the bilinear map :math:`z = (1+w)/(1-w)`:
:math:`q(w) = (1-w)^n p\bigl(\tfrac{1+w}{1-w}\bigr)` is Hurwitz stable iff ``p`` is Schur stable,
and for ``q`` the Liénard–Chipart criterion needs every coefficient positive and the Hurwitz
minors :math:`\Delta_{n-1}, \Delta_{n-3}, \dots` positive.  Each inequality is factored and
factors that are positive under the symbols' assumptions are dropped.
"""

from __future__ import annotations

import math
from functools import cache

import sympy as sp

from .errors import UnstableError
from .exact import factor_list
from .moments import operator_matrix, spectral_radius
from .recursion import LinearRecursion, build_recursion
from .symbols import lookup

__all__ = [
    "advice",
    "as_number",
    "check_stable",
    "conditions_from",
    "explain",
    "hurwitz_conditions",
    "invariant_hurwitz",
    "name_condition",
    "parameter_label",
    "schur_conditions",
    "spectral_radius",
    "stability_conditions",
]

#: largest characteristic-polynomial degree for which symbolic conditions are derived
MAX_SYMBOLIC_DEGREE = 6
#: blocks of at least this size take their conditions from universal ones in the coefficients
#: of the shifted characteristic polynomial (:func:`_invariant_schur`)
INVARIANT_DEGREE = 4


def characteristic_polynomial(recursion: LinearRecursion, z: sp.Symbol) -> sp.Expr:
    """The polynomial in ``z`` whose Schur stability is the existence condition."""
    if recursion.noise.depends_on_state():
        T = operator_matrix(recursion)
    else:
        T = sp.Matrix(recursion.M)
    return _charpoly(T, z)


def _charpoly(T: sp.Matrix, z: sp.Symbol) -> sp.Expr:
    coeffs = T.charpoly().all_coeffs()
    n = len(coeffs) - 1
    return sp.Add(*[sp.expand(c) * z ** (n - k) for k, c in enumerate(coeffs)])


def schur_conditions(p: sp.Expr, z: sp.Symbol) -> list[sp.Expr]:
    """Polynomials that must all be positive for the monic ``p(z)`` to have every root in the
    open unit disc (bilinear transform + Liénard–Chipart).

    >>> z, a = sp.symbols("z a", real=True)
    >>> schur_conditions(z - a, z)
    [a + 1, 1 - a]
    """
    poly = sp.Poly(p, z)
    n = poly.degree()
    if n < 1:
        return []
    w = sp.Dummy("w")
    q = sp.Poly(
        sp.expand(sum(c * (1 + w) ** k * (1 - w) ** (n - k) for (k,), c in poly.terms())), w
    )
    # Liénard–Chipart: the coefficients implied by the others are dropped (minimal=True)
    return hurwitz_conditions([q.coeff_monomial(w**k) for k in range(n, -1, -1)], minimal=True)


def hurwitz_conditions(a: list, minimal: bool = False) -> list[sp.Expr]:
    """Polynomials that must all be positive for ``a[0] w^n + … + a[n]`` to have every root in
    the open left half-plane: the Liénard–Chipart criterion (Gantmacher, *Theory of Matrices*
    II, ch. XV §13) — with a[0] > 0, the coefficients a[n], a[n-2], a[n-4], … and the Hurwitz
    minors Δ_{n-1}, Δ_{n-3}, … (Δ_1 = a[1]) positive.  The other coefficients a[n-1], a[n-3], …
    are *implied* (a Hurwitz polynomial with a[0] > 0 has every coefficient positive), so with
    ``minimal=True`` they are not listed: e.g. for n = 3, Δ_2 = a_1a_2 − a_0a_3 > 0 with
    a_0, a_1, a_3 > 0 forces a_2 > 0.  (The default lists every coefficient: a condition
    simplified by the symbols' sign assumptions then still guards points outside them.)

    >>> w, b, c = sp.symbols("w b c", real=True)
    >>> hurwitz_conditions([1, b, c])
    [1, b, c]
    """
    n = len(a) - 1
    # a[0] (the theorem's hypothesis), a[k] with n − k even, and Δ_1 = a[1] when n is even
    conds = [
        sp.expand(c)
        for k, c in enumerate(a)
        if not minimal or k == 0 or (n - k) % 2 == 0 or (k == 1 and n % 2 == 0)
    ]

    def coef(k):
        return a[k] if 0 <= k <= n else sp.Integer(0)

    for m in range(n - 1, 1, -2):
        Hm = sp.Matrix(m, m, lambda i, j: coef(2 * (j + 1) - (i + 1)))
        conds.append(sp.expand(Hm.det(method="berkowitz")))
    out = []
    for c in conds:
        if c not in out:
            out.append(c)
    return out


def conditions_from(polys: list[sp.Expr]) -> sp.Basic:
    """The sympy boolean "every polynomial in ``polys`` is positive", simplified."""
    return sp.And(*[_positive_form(c) for c in polys])


def _positive_form(expr: sp.Expr) -> sp.Basic:
    """``expr > 0`` simplified: known-positive factors dropped, terms split across the sign."""
    num, den = sp.fraction(sp.together(expr))
    constant, factors = factor_list(num)
    sign = 1 if constant > 0 else -1
    for f, e in factor_list(den)[1]:
        factors.append((f, e))
    keep, nonzero = [], []
    for f, e in factors:
        known = _sign_on_positive_axis(f)  # 0: a root in (0, ∞), so no constant sign
        if known is None and _positive_quadratic(f):
            known = 1
        if known is None:
            known = 1 if f.is_positive else (-1 if f.is_negative else 0)
        if known > 0:
            continue
        if known < 0:
            sign *= (-1) ** e
            continue
        if e % 2 == 0:
            nonzero.append(sp.Ne(f, 0))
            continue
        keep.append(f)
    if not keep:
        return sp.And(*nonzero) if sign > 0 else sp.false
    body = sign * sp.Mul(*keep)
    body = sp.expand(body) if len(keep) == 1 else body
    # a polynomial in one positive symbol that changes sign there cannot be decided by sympy's
    # assumptions (which would try, by numeric root refinement: slow for the 300-digit
    # coefficients of float-data problems), so its relation is built unevaluated
    evaluate = _sign_on_positive_axis(body) != 0
    if body.is_Add:
        pos = sp.Add(*[t for t in body.args if not t.could_extract_minus_sign()])
        neg = -sp.Add(*[t for t in body.args if t.could_extract_minus_sign()])
        rel = (
            sp.StrictLessThan(neg, pos, evaluate=evaluate)
            if neg != 0
            else sp.StrictGreaterThan(pos, 0, evaluate=evaluate)
        )
    else:
        rel = sp.StrictGreaterThan(body, 0, evaluate=evaluate)
    return sp.And(rel, *nonzero)


def _positive_coefficients(p: sp.Expr) -> bool:
    """True when ``p`` is a nonzero polynomial in positive symbols whose expanded coefficients
    are all positive (so p > 0 wherever the symbols are)."""
    symbols = sorted(p.free_symbols, key=str)
    if not symbols or not all(x.is_positive for x in symbols):
        return bool(p.is_Number and p > 0)
    try:
        poly = sp.Poly(p, *symbols, domain="QQ")
    except (sp.PolynomialError, sp.CoercionFailed):
        return False
    coefficients = poly.coeffs()
    return bool(coefficients) and all(c > 0 for c in coefficients)


def _positive_quadratic(f: sp.Expr) -> bool:
    r"""True when ``f`` is, in one of its symbols x, a quadratic :math:`Ax^2 + Bx + C` with
    :math:`A > 0` and discriminant :math:`B^2 - 4AC < 0` for all values of the other (positive)
    symbols — proved by :math:`A` and :math:`4AC - B^2` having only positive coefficients — so
    :math:`f > 0` everywhere: a stability margin implied by nothing, always satisfied (e.g.
    :math:`(S+2)a^2\lambda^2 - 2Sa\lambda + 2S` for online minibatch SGD)."""
    for x in sorted(f.free_symbols, key=str):
        try:
            poly = sp.Poly(f, x)
        except sp.PolynomialError:
            continue
        if poly.degree() != 2:
            continue
        A, B, C = poly.all_coeffs()
        if _positive_coefficients(sp.expand(A)) and _positive_coefficients(
            sp.expand(4 * A * C - B**2)
        ):
            return True
    return False


def _sign_on_positive_axis(f: sp.Expr) -> int | None:
    """For a polynomial ``f`` in one positive symbol s: ±1 when it has that sign for every
    s > 0, 0 when it has a root in (0, ∞) (so no constant sign), decided exactly by real-root
    counting; None when ``f`` is not such a polynomial."""
    symbols = f.free_symbols
    if len(symbols) != 1:
        return None
    (s,) = symbols
    if not s.is_positive:
        return None
    try:
        poly = sp.Poly(f, s, domain="QQ")
    except (sp.PolynomialError, sp.CoercionFailed):
        return None
    if poly.is_zero:
        return None
    inside = poly.count_roots(0, None) - (1 if poly.eval(0) == 0 else 0)
    if inside > 0:
        return 0
    probe = sp.Integer(1)  # not a root: there is none in (0, ∞)
    return 1 if poly.eval(probe) > 0 else -1


def diagonal_blocks(T: sp.Matrix) -> list[sp.Matrix]:
    """The diagonal blocks of ``T`` in block-triangular form (strongly connected components of
    its sparsity graph): the eigenvalues of ``T`` are those of the blocks together.

    >>> a, b = sp.symbols("a b")
    >>> diagonal_blocks(sp.Matrix([[a, 1], [0, b]]))
    [Matrix([[b]]), Matrix([[a]])]
    """
    return [T.extract(idx, idx) for idx in T.strongly_connected_components()]


def stability_conditions(recursion: LinearRecursion) -> tuple[sp.Basic, bool]:
    """``(conditions, complete)``: a sympy boolean, and whether it is the full criterion.

    The map whose spectral radius must be below one (``M`` for additive noise, the
    second-moment map ``T`` otherwise) is split into the diagonal blocks of its block-triangular
    form, so a diagonal d-dimensional problem costs d scalar criteria.  A block whose
    characteristic polynomial has symbolic degree above :data:`MAX_SYMBOLIC_DEGREE` is not
    turned into inequalities: ``complete`` is then False, the conditions hold only the
    blocks that were, and numeric parameters are checked through the spectral radius itself
    (:func:`check_stable`).  When a symbolic ``T`` has more than :data:`MAX_SYMBOLIC_DEGREE`
    rows (its minors grow too fast to be useful), Schur stability of the mean recursion ``M``
    — necessary for the second moments to stay bounded — stands in for it.
    """
    z = sp.Dummy("z")
    M = sp.Matrix(recursion.M)
    state_dependent = recursion.noise.depends_on_state()
    symbolic_mean = bool(M.free_symbols or recursion.B.free_symbols)
    n = recursion.n
    if not state_dependent:
        T = M
    elif symbolic_mean and n * (n + 1) // 2 > MAX_SYMBOLIC_DEGREE:
        T = None  # too large to treat symbolically (see below)
    else:
        T = operator_matrix(recursion)
    if T is not None and not T.free_symbols:
        # a numeric map: decide by the spectral radius itself (Hurwitz minors of a float
        # characteristic polynomial cancel catastrophically and can reject a stable recursion)
        return (sp.true if spectral_radius(recursion, {}) < 1 else sp.false), True

    def schur(T: sp.Matrix) -> tuple[list[sp.Basic], bool]:
        relations, complete = [], True
        for block in diagonal_blocks(T):
            if block.rows > MAX_SYMBOLIC_DEGREE and block.free_symbols:
                complete = False
                continue
            found = _invariant_schur(block) if block.rows >= INVARIANT_DEGREE else None
            if found is None:
                polys = schur_conditions(_charpoly(block, z), z)
                found = [_positive_form(p) for p in polys]
            relations.extend(r for r in found if r not in relations)
        return relations, complete

    if not state_dependent:
        relations, complete = schur(M)
        return sp.And(*relations), complete
    if T is None:
        relations, complete = [], False
    else:
        relations, complete = schur(T)
    if not complete:  # mean-square stability implies Schur stability of the mean recursion
        relations.extend(r for r in schur(M)[0] if r not in relations)
    return sp.And(*relations), complete


@cache
def _universal_schur(n: int) -> tuple[tuple, sp.Symbol, list]:
    r"""Schur conditions of :math:`p_M(z) = \det(zI - I + sK)` for a generic K, as factored
    polynomials in the coefficients ``c`` of :math:`\det(xI - K)` and ``s``:
    :math:`p_M(z) = (-1)^n\bigl[(1-z)^n + \sum_a c_a s^{n-a}(1-z)^a\bigr]`."""
    c = tuple(sp.Dummy(f"c{a}") for a in range(n))
    s, z = sp.Dummy("s"), sp.Dummy("z")
    p = (-1) ** n * ((1 - z) ** n + sum(c[a] * s ** (n - a) * (1 - z) ** a for a in range(n)))
    return c, s, [factor_list(q) for q in schur_conditions(sp.expand(p), z)]


@cache
def _universal_hurwitz(n: int) -> tuple[tuple, list]:
    r"""Hurwitz conditions of :math:`\det(zI + K) = z^n + \sum_a (-1)^{n-a} c_a z^a` (all
    eigenvalues of K in the right half-plane) for a generic K, factored in its coefficients."""
    c = tuple(sp.Dummy(f"c{a}") for a in range(n))
    coeffs = [sp.Integer(1)] + [(-1) ** k * c[n - k] for k in range(1, n + 1)]
    return c, [factor_list(q) for q in hurwitz_conditions(coeffs)]


def invariant_hurwitz(A: sp.Matrix) -> list[sp.Basic] | None:
    """Every eigenvalue of the symbolic ``A`` in the open right half-plane, from universal
    Hurwitz conditions in the coefficients of its characteristic polynomial (compact where the
    expanded minors are huge).  None unless the entries are integer polynomials whose common
    content is known positive."""
    from .cayley import NotApplicable, shifted_characteristic

    try:
        coeffs, content = shifted_characteristic(A, continuous=True)
    except NotApplicable:
        return None
    if not (content.is_positive or content == 1):
        return None
    c, conditions = _universal_hurwitz(A.rows)
    return _relations(conditions, dict(zip(c, coeffs)))


def _relations(conditions: list, values: dict) -> list[sp.Basic]:
    """``[(constant, [(factor, power)])]`` (each product > 0) with ``values`` substituted into
    the factors: known-positive factors dropped, even powers turned into ``≠ 0``."""
    relations = []
    for constant, factors in conditions:
        sign, keep, nonzero = (1 if constant > 0 else -1), [], []
        for f, e in factors:
            value = f.xreplace(values)
            if value.is_positive:
                continue
            if value.is_negative:
                sign *= (-1) ** e
            elif e % 2 == 0:
                nonzero.append(sp.Ne(value, 0))
            else:
                keep.append(value)
        if not keep:
            relations.append(sp.And(*nonzero) if sign > 0 else sp.false)
            continue
        body = sp.Mul(*keep)
        rel = sp.StrictGreaterThan(body, 0) if sign > 0 else sp.StrictLessThan(body, 0)
        relations.append(sp.And(rel, *nonzero))
    return relations


def _invariant_schur(block: sp.Matrix) -> list[sp.Basic] | None:
    """Schur stability of ``block`` from universal conditions in the coefficients of its
    shifted characteristic polynomial (:func:`symsgd.cayley.shifted_characteristic`): compact
    where expanding the Hurwitz minors of a symbolic block is slow and huge.  None when the
    entries are not integer polynomials."""
    from .cayley import NotApplicable, shifted_characteristic

    try:
        coeffs, s_value = shifted_characteristic(block)
    except NotApplicable:
        return None
    c, s, conditions = _universal_schur(block.rows)
    return _relations(conditions, {**dict(zip(c, coeffs)), s: s_value})


def _fmt(values: dict) -> str:
    return ", ".join(f"{k} = {sp.sstr(v)}" for k, v in values.items())


def check_stable(
    recursion: LinearRecursion,
    conditions: sp.Basic,
    values: dict,
    context: str = "stationary()",
) -> None:
    """Raise :class:`UnstableError` when ``values`` violate ``conditions`` (or, once every
    symbol has a value, when the numeric spectral radius is ≥ 1)."""
    name = f"{type(recursion.optimizer).__name__} on {type(recursion.landscape).__name__}"
    exact = _exact_point(values)
    for cond in sp.And.make_args(conditions) if conditions is not sp.false else ():
        got = _decide(cond, exact) if exact is not None else None
        if got is None:
            got = cond.subs(values)
        if got == sp.false:
            shown = {k: v for k, v in values.items() if k in cond.free_symbols}
            raise UnstableError.at(
                context,
                shown,
                subject=name,
                condition=cond,
                conditions=conditions,
                advice=advice(cond, values),
            )
    free = (recursion.M.free_symbols | recursion.B.free_symbols) - set(values)
    if recursion.noise.depends_on_state():
        free |= operator_matrix(recursion).free_symbols - set(values)
    if not free:
        rho = spectral_radius(recursion, values)
        if not rho < 1:
            raise UnstableError.at(context, values, subject=name, rho=rho)


def _exact_point(values: dict) -> dict | None:
    """``values`` as exact rationals (python-flint) when every value is a rational number."""
    import flint

    point = {}
    for k, v in values.items():
        v = sp.sympify(v)
        if not v.is_Rational:
            return None
        point[k] = flint.fmpq(int(v.p), int(v.q))
    return point


def _decide(cond: sp.Basic, point: dict) -> sp.Basic | None:
    """``sp.true``/``sp.false`` for a relation ``lhs < rhs`` (``<=``, ``>``, ``>=``, ``≠``) whose
    symbols all have exact rational values in ``point``, decided by evaluating its margin
    exactly (one walk of the expression DAG — sympy's ``subs`` on a condition of 10⁵
    characters costs tens of seconds); None when it cannot be decided this way."""
    from .certify import _ForeignSymbol, _NotExact, evaluate_exact

    if not isinstance(cond, sp.core.relational.Relational) or not cond.free_symbols <= set(point):
        return None
    try:
        margin = evaluate_exact(cond.lhs - cond.rhs, point)
    except (_NotExact, _ForeignSymbol, ZeroDivisionError):  # traces, irrationals, poles: subs
        return None
    op = cond.rel_op
    holds = {
        "<": margin < 0,
        "<=": margin <= 0,
        ">": margin > 0,
        ">=": margin >= 0,
        "!=": margin != 0,
        "==": margin == 0,
    }.get(op)
    if holds is None:
        return None
    return sp.true if holds else sp.false


def advice(cond: sp.Basic, values: dict) -> str:
    """What to change so that the violated ``cond`` holds again, derived from the sign of the
    derivative of its margin at ``values`` (raise or lower each parameter it involves).

    >>> lam, h = sp.symbols("lambda h", positive=True)
    >>> advice(sp.StrictLessThan(h * lam, 2), {lam: 3, h: 1})
    'Lower the learning rate lambda (or lower h).'
    """
    if cond == sp.false:
        return (
            "No value of the learning rate satisfies it: check the inputs' signs and domains "
            "(a negative curvature or variance, a momentum ≥ 1) rather than the step size."
        )
    if not isinstance(cond, sp.core.relational.Relational):
        return "Lower the learning rate."
    margin = cond.gts - cond.lts
    moves = []
    for s in sorted(cond.free_symbols & set(values), key=str):
        try:
            slope = float(sp.diff(margin, s).xreplace(values))
        except (TypeError, ValueError):
            continue
        if slope != 0:
            entry = lookup(str(s))  # by name: a user's own "lambda" is still the learning rate
            name = f"{entry.description} {s}" if entry else str(s)
            moves.append((entry is None or entry.alias != "lr", f"{_move(slope)} {name}"))
    if not moves:
        return "Lower the learning rate."
    moves.sort(key=lambda m: m[0])  # the learning rate first
    first, *rest = (text for _, text in moves)
    tail = f" (or {' or '.join(rest)})" if rest else ""
    return f"{first[0].upper()}{first[1:]}{tail}."


def _move(slope: float) -> str:
    return "raise" if slope > 0 else "lower"


def name_condition(error: UnstableError, conditions) -> UnstableError:
    """``error`` (raised from numbers: ρ ≥ 1 at ``error.values``) worded with the first of the
    stability ``conditions`` that fails there, and :func:`advice` for it; ``error`` itself when
    none of them decides (the conditions hold, or need values that were not given).  For the
    caller that holds the symbolic result, so that the simulator need not derive it.

    >>> import symsgd as ss
    >>> h = sp.Symbol("h", positive=True)
    >>> err = UnstableError.at("simulate()", {ss.lr: 3.0, h: 1.0}, rho=4.0)
    >>> print(name_condition(err, sp.StrictLessThan(h * ss.lr, 2)))
    simulate(): no stationary law: the condition h*lambda < 2 fails at lambda = 3, h = 1 (spectral radius of the second-moment map ρ = 4 ≥ 1). Lower the learning rate lambda (or lower h).
    """  # noqa: E501
    values = error.values or {}
    if conditions is None or conditions is sp.true or not values:
        return error
    args = sp.And.make_args(conditions) if conditions is not sp.false else (sp.false,)
    for cond in args:
        if cond.xreplace(values) == sp.false:
            if not isinstance(cond, sp.core.relational.Relational):
                return error.with_condition(cond, conditions)  # keep the numeric advice
            return error.with_condition(cond, conditions, advice(cond, values))
    return error


def explain(error: UnstableError, optimizer, landscape, noise) -> UnstableError:
    """:func:`name_condition` with the stability conditions derived from the problem pieces
    (for a caller without a result; only on the error path, and only when the recursion still
    holds symbols: a numeric recursion's conditions say no more than ρ)."""
    recursion = build_recursion(optimizer, landscape, noise)
    if not (recursion.M.free_symbols | recursion.B.free_symbols | recursion.forcing().free_symbols):
        return error
    conditions, _complete = stability_conditions(recursion)
    return name_condition(error, conditions)


#: assumption -> the allowed range it states, checked in this order
_RANGES = (
    ("positive", "> 0"),
    ("nonnegative", "≥ 0"),
    ("negative", "< 0"),
    ("nonpositive", "≤ 0"),
)


def parameter_label(symbol) -> str:
    """``lr`` for the library's learning rate λ (its alias), else the symbol's name."""
    entry = lookup(symbol) if isinstance(symbol, sp.Symbol) else None
    return entry.alias if entry is not None else str(symbol)


def _allowed(symbol) -> tuple[str, str] | None:
    """``(allowed range, declared assumptions)`` of ``symbol``, e.g. ``("an integer ≥ 1",
    "positive and integer")``; None when the symbol states nothing beyond being a number."""
    if not isinstance(symbol, sp.Symbol):
        return None
    declared = getattr(symbol, "_assumptions_orig", None) or {}
    declared = [k for k, v in declared.items() if v]
    sign = next((text for name, text in _RANGES if getattr(symbol, f"is_{name}")), None)
    integer = bool(symbol.is_integer)
    if sign is None and not integer:
        return None
    if integer:
        low = {"> 0": "≥ 1", "< 0": "≤ -1"}.get(sign, sign)
        allowed = "an integer" + (f" {low}" if low else "")
    else:
        allowed = sign
    return allowed, " and ".join(declared) or "so"


def as_number(key, value, context: str = "", *, assumptions: bool = True) -> sp.Expr:
    r"""``value`` of the parameter ``key`` as a finite real sympy number (an ``Integer`` for a
    whole float), ``ValueError`` naming the parameter otherwise; with ``assumptions`` it must
    also satisfy those declared on the symbol ``key`` (the allowed range is named).
    ``context`` (``"sweep(): "``) prefixes the messages.  The one parser of parameter values
    for the simulator, its sweeps and Adam's self-consistent solve.

    >>> import symsgd as ss
    >>> as_number(ss.lr, 0.5), as_number(ss.batch_size, 2.0)
    (0.500000000000000, 2)
    >>> as_number(ss.lr, -0.1)
    Traceback (most recent call last):
    ...
    ValueError: lr must be > 0 (lambda is declared positive); got -0.1.
    """
    name = f"{context}parameter {parameter_label(key)}"
    try:
        number = sp.sympify(value)
    except (sp.SympifyError, TypeError, ValueError):
        number = None
    if not isinstance(number, sp.Expr) or number.free_symbols or not number.is_number:
        raise ValueError(f"{name} must be a number; got {value!r}.")
    try:
        z = complex(number)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number; got {value!r}.") from None
    if not (math.isfinite(z.real) and math.isfinite(z.imag)):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if z.imag != 0:
        raise ValueError(f"{name} must be a real number; got the complex {value!r}.")
    if number.is_Float and float(number).is_integer():
        number = sp.Integer(int(number))
    allowed = _allowed(key) if assumptions else None
    if allowed is not None:
        fine = all(
            getattr(number, f"is_{a}") is not False
            for a in ("integer", *(n for n, _ in _RANGES))
            if getattr(key, f"is_{a}")
        )
        if not fine:
            rng, declared = allowed
            raise ValueError(
                f"{context}{parameter_label(key)} must be {rng} ({key} is declared {declared}); "
                f"got {value!r}."
            )
    return number


def _pretty(cond: sp.Basic) -> str:
    if cond in (sp.true, sp.false):
        return str(cond)
    return " and ".join(sp.sstr(c) for c in sp.And.make_args(cond))
