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
factors that are positive under the symbols' assumptions are dropped.  Finally a margin that
another one implies on the parameters' declared domains is dropped when :func:`implies` proves
it exactly (factoring over ℚ and Bernstein coefficients; never by sampling): minibatch heavy
ball keeps only its mean-square edge and μ < 1.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

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
    "drop_implied",
    "explain",
    "hurwitz_conditions",
    "implies",
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
    — necessary for the second moments to stay bounded — stands in for it.  Margins proved
    implied by another kept one are dropped (:func:`drop_implied`).
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
        return sp.And(*drop_implied(relations)), complete
    if T is None:
        relations, complete = [], False
    else:
        relations, complete = schur(T)
    if not complete:  # mean-square stability implies Schur stability of the mean recursion
        relations.extend(r for r in schur(M)[0] if r not in relations)
    return sp.And(*drop_implied(relations)), complete


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


# --- implied conditions: exact proofs that one margin follows from another ----------------------

#: polynomial margins with more terms than this are not examined (the proof would cost more than
#: the condition it removes)
IMPLIED_MAX_TERMS = 120
#: sub-boxes a Bernstein sign proof may visit before it gives up (and the condition is kept)
BERNSTEIN_MAX_BOXES = 256
#: subdivision depth after which a sub-box with coefficients ≥ 0 counts as "≥ 0" (not "> 0")
BERNSTEIN_MAX_DEPTH = 12


@lru_cache(maxsize=1024)
def _margin(cond: sp.Basic) -> sp.Expr | None:
    """``g`` with ``cond`` ⇔ ``g > 0``, for a strict relation between small polynomials with
    rational coefficients; None otherwise (never examined: the relation is kept)."""
    if not isinstance(cond, sp.StrictLessThan | sp.StrictGreaterThan):
        return None
    raw = cond.gts - cond.lts
    for count, node in enumerate(sp.preorder_traversal(raw)):
        if count > 40 * IMPLIED_MAX_TERMS or node.is_Float:
            return None  # a large (e.g. factored) or float margin: not worth or not exact
    symbols = sorted(raw.free_symbols, key=str)
    if not symbols or not raw.is_polynomial(*symbols):
        return None
    g = sp.expand(raw)
    if not g.free_symbols or len(sp.Add.make_args(g)) > IMPLIED_MAX_TERMS:
        return None
    domain = sp.Poly(g, *sorted(g.free_symbols, key=str)).domain
    return g if domain.is_ZZ or domain.is_QQ else None


def _box_kind(symbol: sp.Symbol) -> str | None:
    """The declared domain of ``symbol`` as one of ``"unit"`` ([0, 1): a library momentum or
    decay, 0 ≤ by assumption and < 1 by the registry), ``"pos"`` ((0, ∞)), ``"nonneg"``
    ([0, ∞)); None when nothing bounds it below."""
    entry = lookup(symbol)
    if entry is not None and entry.symbol == symbol and entry.unit_interval:
        return "unit" if symbol.is_nonnegative else None
    if symbol.is_positive:
        return "pos"
    if symbol.is_nonnegative:
        return "nonneg"
    return None


def _bernstein(coeffs, degrees: tuple[int, ...]):
    """Bernstein coefficients on [0, 1]^m of the polynomial with power coefficients ``coeffs``
    (a dict monomial exponent tuple → Fraction), as a numpy object array."""
    from fractions import Fraction

    import numpy as np

    arr = np.empty(tuple(d + 1 for d in degrees), dtype=object)
    arr.fill(Fraction(0))
    for monom, c in coeffs.items():
        arr[monom] = c
    for axis, n in enumerate(degrees):
        basis = np.empty((n + 1, n + 1), dtype=object)
        for j in range(n + 1):
            for k in range(n + 1):
                basis[j, k] = Fraction(math.comb(j, k), math.comb(n, k)) if k <= j else Fraction(0)
        arr = np.moveaxis(np.tensordot(basis, arr, axes=([1], [axis])), 0, axis)
    return arr


def _halves(arr, axis: int):
    """De Casteljau subdivision of Bernstein coefficients at the midpoint of ``axis``."""
    import numpy as np

    b = list(np.moveaxis(arr, axis, 0))
    n = len(b) - 1
    left, right = [b[0]], [b[n]]
    for _ in range(n):
        b = [(b[i] + b[i + 1]) / 2 for i in range(len(b) - 1)]
        left.append(b[0])
        right.append(b[-1])
    right.reverse()
    return np.moveaxis(np.array(left), 0, axis), np.moveaxis(np.array(right), 0, axis)


def _bernstein_sign(p: sp.Poly, open_low: list[bool]) -> tuple[int, bool] | None:
    """``(sign, strict)``: ``sign·p ≥ 0`` on the box whose axis k is (0, 1) when
    ``open_low[k]`` else [0, 1) (``> 0`` there when ``strict``); None when unproved.

    Proof by Bernstein coefficients with subdivision: on a sub-box every Bernstein basis
    polynomial is > 0 in the interior, so coefficients all ≥ 0 give p ≥ 0, and p > 0 on the
    part of the sub-box inside the domain when, besides, each of its closed faces (every
    combination of a closed lower/upper side per axis; the sides at t = 1, and at t = 0 of
    open axes, are not in the domain) keeps a positive coefficient.  A negative corner value
    (the polynomial's value there) refutes the sign."""
    from fractions import Fraction

    import numpy as np

    if p.is_zero:
        return None
    degrees = p.degree_list()
    coeffs = {m: Fraction(int(c.p), int(c.q)) for m, c in p.terms()}
    start = _bernstein(coeffs, degrees)
    m = len(degrees)

    def faces(lo: tuple, hi: tuple):
        """Index slices of the closed faces (and the interior) of a sub-box."""
        options = []
        for k in range(m):
            opts = [slice(None)]
            if not (lo[k] == 0 and open_low[k]):
                opts.append(0)
            if hi[k] != 1:
                opts.append(degrees[k])
            options.append(opts)
        return [tuple(c) for c in _product(options)]

    for sign in (1, -1):
        root = (start * sign, (Fraction(0),) * m, (Fraction(1),) * m, 0)
        stack, visited, strict, ok = [root], 0, True, True
        while stack:
            arr, lo, hi, depth = stack.pop()
            visited += 1
            corners = [
                arr[tuple(0 if i == 0 else n for i, n in zip(idx, degrees))]
                for idx in np.ndindex(*(2,) * m)
            ]
            if any(c < 0 for c in corners) or visited > BERNSTEIN_MAX_BOXES:
                ok = False
                break
            nonneg = all(c >= 0 for c in arr.flat)
            if nonneg and all(any(c > 0 for c in np.ravel(arr[f])) for f in faces(lo, hi)):
                continue
            if nonneg and depth >= BERNSTEIN_MAX_DEPTH:
                strict = False  # p ≥ 0 here, its zeros not excluded
                continue
            axis = depth % m
            mid = (lo[axis] + hi[axis]) / 2
            left, right = _halves(arr, axis)
            stack.append((left, lo, (*hi[:axis], mid, *hi[axis + 1 :]), depth + 1))
            stack.append((right, (*lo[:axis], mid, *lo[axis + 1 :]), hi, depth + 1))
        if ok:
            return sign, strict
    return None


def _product(options):
    import itertools

    return itertools.product(*options)


def _definite(expr: sp.Expr, kinds: dict) -> tuple[int, bool] | None:
    """``(sign, strict)`` with ``sign·expr ≥ 0`` (``> 0`` when ``strict``) wherever every symbol
    lies in its domain ``kinds[s]`` (``"unit"`` [0, 1), ``"open"`` (0, 1), ``"pos"`` (0, ∞),
    ``"nonneg"`` [0, ∞)); None when not proved.  Exact: unbounded symbols are mapped to
    [0, 1) by v = u/(1 − u) (times (1 − u)^deg > 0), the polynomial is factored over ℚ, the
    factors u and 1 − u take their sign from the domain, and every other factor must be
    sign-definite on the closed box (:func:`_bernstein_sign`) or appear to an even power."""
    expr = sp.expand(expr)
    if expr.is_Number:
        return (0, False) if expr == 0 else (1 if expr > 0 else -1, True)
    if not expr.free_symbols <= set(kinds):
        return None
    box = {}
    for v in sorted(expr.free_symbols, key=str):
        kind = kinds[v]
        if kind in ("pos", "nonneg"):
            u = sp.Dummy("u")
            expr, _ = _compose(expr, v, u, 1 - u)
            box[u] = kind == "pos"  # u = 0 excluded?
        else:
            box[v] = kind == "open"
    constant, factors = factor_list(expr)
    sign, strict = (1 if constant > 0 else -1), True
    for f, e in factors:
        gens = sorted(f.free_symbols, key=str)
        linear = len(gens) == 1 and sp.degree(f, gens[0]) == 1
        alpha, beta = sp.Poly(f, gens[0]).all_coeffs() if linear else (None, None)
        if linear and beta == 0:  # ∝ v: > 0 inside, 0 where the domain includes v = 0
            fs, fstrict = (1 if alpha > 0 else -1), box[gens[0]]
        elif linear and alpha + beta == 0:  # ∝ v − 1: v < 1 throughout
            fs, fstrict = (-1 if alpha > 0 else 1), True
        else:
            found = _bernstein_sign(sp.Poly(f, *gens, domain="QQ"), [box[g] for g in gens])
            if found is None:
                if e % 2:
                    return None
                found = (1, False)
            fs, fstrict = found
        if e % 2 == 0:
            fs = 1
        sign *= fs
        strict = strict and fstrict
    return sign, strict


def _merge_products(polys: list[sp.Expr], kinds: dict) -> tuple[list[sp.Expr], dict]:
    """Positive symbols that appear only as a product p·q (a curvature times the learning rate)
    replaced by one positive symbol, so that the box of the proof is lower-dimensional."""
    kinds = dict(kinds)
    merged = True
    while merged:
        merged = False
        positive = sorted((s for s, k in kinds.items() if k == "pos"), key=str)
        for i, p in enumerate(positive):
            for q in positive[i + 1 :]:
                x = sp.Dummy(f"{p}{q}", positive=True)
                new = [sp.expand(e.xreplace({p: x / q})) for e in polys]
                if all(q not in e.free_symbols for e in new) and any(
                    x in e.free_symbols for e in new
                ):
                    polys = new
                    del kinds[p], kinds[q]
                    kinds[x] = "pos"
                    merged = True
                    break
            if merged:
                break
    return polys, kinds


def _region(A: sp.Expr, kinds: dict) -> tuple[sp.Symbol, sp.Expr, sp.Expr] | bool | None:
    """The part of the domain where ``A > 0``: True (everywhere), or ``(x, c1, c0)`` meaning
    ``0 < x < −c0/c1`` with ``c1`` of one strict sign (one factor of A, affine in x, carries the
    sign change); None when not described this way (or A > 0 nowhere)."""
    constant, factors = factor_list(A)
    sign, unknown = (1 if constant > 0 else -1), []
    for f, e in factors:
        known = _definite(f, kinds)
        if known is not None and known[0] != 0:
            sign *= known[0] ** e
        elif e % 2 == 0:
            continue
        else:
            unknown.append(f)
    if not unknown:
        return True if sign > 0 else None
    if len(unknown) > 1:
        return None
    (f,) = unknown
    for x in sorted(f.free_symbols, key=str):
        if kinds[x] not in ("pos", "nonneg") or sp.degree(f, x) != 1:
            continue
        c1, c0 = sp.Poly(f, x).all_coeffs()
        rest = {s: k for s, k in kinds.items() if s != x}
        slope = _definite(c1, rest)
        if slope is None or not slope[1]:
            continue
        if slope[0] * sign < 0:  # sign·f > 0 ⇔ x < −c0/c1
            return x, sign * c1, sign * c0
    return None


def _compose(expr: sp.Expr, v: sp.Symbol, num: sp.Expr, den: sp.Expr) -> tuple[sp.Expr, int]:
    """``(den^d · expr|_{v = num/den}, d)`` with d the degree of ``expr`` in ``v``: a polynomial
    again (Poly arithmetic over ℚ; the caller accounts for the sign of den^d)."""
    gens = sorted((expr.free_symbols | num.free_symbols | den.free_symbols) - {v}, key=str)
    full = sp.Poly(expr, v, *gens, domain="QQ")
    d = full.degree(v)
    N, D = sp.Poly(num, *gens, domain="QQ"), sp.Poly(den, *gens, domain="QQ")
    by_power: dict[int, dict] = {}
    for monom, c in full.terms():
        by_power.setdefault(monom[0], {})[monom[1:]] = c
    total = sp.Poly(0, *gens, domain="QQ")
    for k, terms in by_power.items():
        total += sp.Poly.from_dict(terms, *gens, domain="QQ") * N**k * D ** (d - k)
    return total.as_expr(), d


@lru_cache(maxsize=1024)
def _margin_poly(g: sp.Expr) -> sp.Poly:
    return sp.Poly(g, *sorted(g.free_symbols, key=str), domain="QQ")


def _affine_parts(g: sp.Expr, s: sp.Symbol) -> tuple[sp.Expr, sp.Expr] | None:
    """``(A, B)`` with ``g = s·A + B``; None when ``g`` is not affine in ``s``."""
    poly = _margin_poly(g)
    gens = list(poly.gens)
    if s not in gens:
        return sp.Integer(0), g
    i = gens.index(s)
    if poly.degree(s) > 1:
        return None
    rest = gens[:i] + gens[i + 1 :]
    parts: tuple[dict, dict] = ({}, {})
    for monom, c in poly.terms():
        parts[1 - monom[i]][monom[:i] + monom[i + 1 :]] = c
    if not rest:
        return tuple(sp.Rational(p.get((), 0)) for p in parts)
    zero = {(0,) * len(rest): 0}
    return tuple(sp.Poly.from_dict(p or zero, *rest, domain="QQ").as_expr() for p in parts)


@lru_cache(maxsize=4096)
def implies(edge: sp.Basic, candidate: sp.Basic) -> frozenset | None:
    r"""Prove exactly that the strict polynomial condition ``edge`` implies ``candidate`` on the
    symbols' declared domains; the library momenta and decays (those with ``unit_interval`` in
    :data:`symsgd.symbols.REGISTRY`) are taken in [0, 1).  Returns the set of such symbols
    whose bound < 1 the proof used (so a caller that drops ``candidate`` states them), or None
    when no proof was found (nothing is claimed then).

    Method: write the margins ``g > 0`` as :math:`g_e = sA_e + B_e`, :math:`g_c = sA_c + B_c`,
    affine in one real symbol s.  If :math:`B_e \le 0` on the domain, :math:`g_e > 0` forces
    :math:`A_e > 0` and :math:`s > s_e = -B_e/A_e`; then :math:`g_c > 0` for every such s when
    :math:`A_c > 0` and :math:`g_c(s_e)A_e = B_cA_e - A_cB_e \ge 0` (or ≥ and >) on the region
    :math:`A_e > 0`.  That region is the domain, or :math:`0 < x < \varphi` for a factor of
    :math:`A_e` affine in a positive x (substituted x = φt, t ∈ (0, 1)).  Each sign claim is
    proved by :func:`_definite` (factoring over ℚ, Bernstein coefficients with subdivision).

    >>> x, s = sp.symbols("x s", positive=True)
    >>> implies(sp.StrictLessThan(2 + x, s), sp.StrictLessThan(1, s)) == frozenset()
    True
    >>> implies(sp.StrictLessThan(1, s), sp.StrictLessThan(2 + x, s)) is None
    True
    """
    ge, gc = _margin(edge), _margin(candidate)
    if ge is None or gc is None:
        return None
    if len(ge.args) > IMPLIED_MAX_TERMS or len(gc.args) > IMPLIED_MAX_TERMS:
        return None
    if not gc.free_symbols <= ge.free_symbols:  # the edge must constrain what the candidate does
        return None
    symbols = ge.free_symbols | gc.free_symbols
    kinds = {v: _box_kind(v) for v in symbols}
    for s in sorted(symbols, key=str):
        rest = {v: k for v, k in kinds.items() if v != s}
        if not s.is_real or any(k is None for k in rest.values()):
            continue
        parts = _affine_parts(ge, s), _affine_parts(gc, s)
        if parts[0] is None or parts[1] is None or parts[0][0] == 0:
            continue
        (Ae, Be), (Ac, Bc) = parts
        (Ae, Be, Ac, Bc), box = _merge_products([Ae, Be, Ac, Bc], rest)
        used = frozenset(v for v in symbols - {s} if kinds[v] == "unit")
        base = _definite(Be, box)
        if base is None or base[0] > 0:  # B_e ≤ 0 needed (B_e ≡ 0 gives sign 0: fine)
            continue
        region = _region(Ae, box)
        if region is None:
            continue
        gens = sorted(box, key=str)
        P = {k: sp.Poly(e, *gens, domain="QQ") for k, e in (("Ae", Ae), ("Be", Be), ("Ac", Ac))}
        C = (sp.Poly(Bc, *gens, domain="QQ") * P["Ae"] - P["Ac"] * P["Be"]).as_expr()
        if region is True:
            claims = [(Ac, box, 1), (C, box, 1)]
        else:
            x, c1, c0 = region
            t = sp.Dummy("t")
            inner = {
                **{v: k for v, k in box.items() if v != x},
                t: "open" if box[x] == "pos" else "unit",
            }
            slope = _definite(c1, {v: k for v, k in box.items() if v != x})[0]
            claims = []
            for P in (Ac, C):
                Q, d = _compose(P, x, -c0 * t, c1) if x in P.free_symbols else (P, 0)
                claims.append((Q, inner, slope**d))
        (qa, ka, sa), (qc, kc, sc) = claims
        da, dc = _definite(qa, ka), _definite(qc, kc)
        if da is None or dc is None:
            continue
        da_sign, dc_sign = da[0] * sa, dc[0] * sc
        if da_sign >= 0 and dc_sign >= 0 and ((da_sign > 0 and da[1]) or (dc_sign > 0 and dc[1])):
            return used
    return None


def drop_implied(relations: list[sp.Basic]) -> list[sp.Basic]:
    """``relations`` without those proved (by :func:`implies`) to follow from another kept one;
    a momentum's bound ``μ < 1`` that a proof used is appended, so the kept list implies the
    dropped conditions at every point, not only inside the declared domain.

    >>> x, s = sp.symbols("x s", positive=True)
    >>> drop_implied([sp.StrictLessThan(1, s), sp.StrictLessThan(2 + x, s)])
    [x + 2 < s]
    """
    kept, bounds = list(relations), []
    size = {r: len(m.args) if (m := _margin(r)) is not None else None for r in relations}
    if sum(v is not None for v in size.values()) < 2:
        return kept
    # the largest margins are the likeliest implied, the smallest the likeliest edge (the
    # mean-square edge of a momentum method is its simplest margin): tried first
    order = sorted((r for r in relations if size[r] is not None), key=lambda r: size[r])
    for candidate in reversed(order):
        for edge in order:
            if edge == candidate or edge not in kept:
                continue
            used = implies(edge, candidate)
            if used is not None:
                kept.remove(candidate)
                bounds.extend(b for b in sorted(used, key=str) if b not in bounds)
                break
    for b in bounds:
        bound = sp.StrictLessThan(b, 1)
        if bound not in kept:
            kept.append(bound)
    return kept
