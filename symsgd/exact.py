r"""Exact linear algebra over polynomial rings: fraction-free elimination.

:func:`solve_den` solves a square linear system ``A x = b`` whose entries are rational functions
of symbols and returns ``(xnum, xden)`` with the invariant ``A * xnum == xden * b`` (checked
before returning), every ``xnum[i] / xden[i]`` cancelled to lowest terms.

The fast path clears each row of its denominators and runs Bareiss' fraction-free Gauss–Jordan
elimination over python-flint's multivariate integer polynomials (``fmpz_mpoly``): every
division is exact, every intermediate entry is a minor of the augmented matrix, and nothing
ever needs ``simplify``.  The fallback is sympy's ``DomainMatrix.solve_den`` over the same
polynomial ring.
"""

from __future__ import annotations

import sympy as sp
from sympy.polys.matrices import DomainMatrix

from .budget import stage
from .errors import InternalError

try:  # python-flint is a hard dependency, but keep the fallback honest and testable
    import flint
except ImportError:  # pragma: no cover - exercised only without python-flint
    flint = None

__all__ = [
    "FlintRing",
    "FlintSolution",
    "canonical",
    "factor_list",
    "flint_factor",
    "flint_fraction",
    "oriented_factor_list",
    "solve_canonical",
    "solve_den",
]


class _NotPolynomial(Exception):
    pass


def _ring(exprs: list[sp.Expr]):
    """Numerators/denominators of ``exprs`` as sympy Polys over ZZ with common generators."""
    fractions = [sp.fraction(sp.together(e)) for e in exprs]
    flat = [part for pair in fractions for part in pair]
    try:
        polys, info = sp.parallel_poly_from_expr(flat)
        gens = info["gens"]
    except sp.PolificationFailed:  # no generators at all: a purely numeric system
        if not all(part.is_Rational for part in flat):
            raise _NotPolynomial(flat) from None
        gens = (sp.Dummy("one"),)
        polys = [sp.Poly(part, *gens) for part in flat]
    for g in gens:
        if g.is_number or not (g.is_Symbol or g.is_Pow or g.is_Function):
            raise _NotPolynomial(g)
    out = []
    for p in polys:
        if not (p.domain.is_ZZ or p.domain.is_QQ):
            raise _NotPolynomial(p.domain)
        out.append(p)
    return out, gens


def solve_den(A: sp.Matrix, b: sp.Matrix, *, method: str = "auto") -> tuple[list, list]:
    """Solve ``A x = b`` exactly; return ``(numerators, denominators)`` as sympy expressions.

    ``method`` is ``"flint"`` (Bareiss over ``fmpz_mpoly``), ``"domainmatrix"`` (sympy's
    ``DomainMatrix.solve_den``) or ``"auto"`` (flint when available and the entries are
    polynomial after clearing denominators).

    >>> x, y = sp.symbols("x y")
    >>> num, den = solve_den(sp.Matrix([[x, 1], [0, y]]), sp.Matrix([1, 1]))
    >>> [sp.cancel(n / d) for n, d in zip(num, den)]
    [(y - 1)/(x*y), 1/y]
    """
    _check_system(A, b, method)
    if method in ("auto", "flint") and flint is not None:
        try:
            solution = _solve_flint(A, b)
        except _NotPolynomial:
            if method == "flint":
                raise _not_polynomial_error() from None
        else:
            conv = solution.ring.to_sympy
            return [conv(p) for p in solution.nums], [conv(q) for q in solution.dens]
    return _solve_domainmatrix(A, b)


def solve_canonical(A: sp.Matrix, b: sp.Matrix, *, method: str = "auto") -> tuple[list, sp.Expr]:
    """Solve ``A x = b`` exactly and return ``(entries, denominator)``: every entry cancelled to
    lowest terms with a factored numerator over factors of the common denominator, each factor
    oriented positive at :func:`reference_point`; ``denominator`` is the factored common
    denominator (the lcm of the entries' denominators).

    All polynomial arithmetic (elimination, gcds, lcm, factorisation) happens in python-flint;
    only the final factors are converted to sympy.

    >>> x = sp.Symbol("x", positive=True)
    >>> solve_canonical(sp.Matrix([[2 - x]]), sp.Matrix([x]))
    ([x/(2 - x)], 2 - x)
    """
    _check_system(A, b, method)
    if method in ("auto", "flint") and flint is not None:
        try:
            solution = _solve_flint(A, b)
        except _NotPolynomial:
            if method == "flint":
                raise _not_polynomial_error() from None
        else:
            return solution.canonical()
    nums, dens = _solve_domainmatrix(A, b)
    common = sp.Integer(1)
    for q in dens:
        common = sp.lcm(common, q)
    sign, factors = oriented_factor_list(common)
    entries = [canonical(p / q) if p != 0 else sp.Integer(0) for p, q in zip(nums, dens)]
    return entries, sign * sp.Mul(*[f**e for f, e in factors])


def _check_system(A, b, method):
    n = A.rows
    if A.shape != (n, n) or b.shape != (n, 1):
        raise ValueError(f"solve_den needs a square system; got A {A.shape}, b {b.shape}.")
    if method not in ("auto", "flint", "domainmatrix"):
        raise ValueError(f"method must be 'auto', 'flint' or 'domainmatrix'; got {method!r}.")


def _not_polynomial_error():
    return ValueError(
        "the system's entries are not rational functions with integer coefficients; "
        "use method='domainmatrix'."
    )


def _solve_domainmatrix(A: sp.Matrix, b: sp.Matrix) -> tuple[list, list]:
    n = A.rows
    dm = DomainMatrix.from_Matrix(sp.Matrix.hstack(A, b))
    dm = dm if dm.domain.is_Field else dm.to_field()
    K = dm.domain
    xnum, xden = dm[:, :n].solve_den(dm[:, n:])
    den = K.to_sympy(xden)
    nums, dens = [], []
    for i in range(n):
        p, q = sp.fraction(sp.cancel(K.to_sympy(xnum.to_list()[i][0]) / den))
        nums.append(p)
        dens.append(q)
    return nums, dens


class FlintRing:
    """python-flint's integer polynomials ``fmpz_mpoly`` in the generators ``gens`` (sympy
    symbols, or powers and function applications sympy's ``Poly`` treats as generators), with
    the one conversion each way between sympy and python-flint.

    * :meth:`from_poly`: a sympy ``Poly`` over ZZ or QQ in ``gens`` -> ``(fmpz_mpoly, integer
      denominator)``;
    * :meth:`to_sympy`: an ``fmpz_mpoly`` (of any context with as many variables) -> a sympy
      expression, fast: each term is built with ``Mul._from_args`` from its coefficient and
      powers in sympy's canonical factor order (ranked once per generator power), and the terms
      are joined with ``Add._from_args`` (constant term first, as sympy's ``Add`` expects).  This
      skips the flattening/sorting that makes ``Poly.as_expr`` slow on polynomials with
      thousands of terms; the expression is mathematically identical (``expand`` restores
      sympy's own order).

    >>> x, y = sp.symbols("x y")
    >>> ring = FlintRing([x, y])
    >>> p, den = ring.from_poly(sp.Poly(x**2 / 2 - 3 * y, x, y))
    >>> den, ring.to_sympy(p * p)
    (2, x**4 - 12*x**2*y + 36*y**2)
    """

    def __init__(self, gens):
        from functools import cmp_to_key

        self.gens = tuple(gens)
        names = tuple(f"x{i}" for i in range(len(self.gens))) or ("x0",)
        #: the ``fmpz_mpoly_ctx`` (lex order; one variable ``x0`` when there are no generators)
        self.ctx = flint.fmpz_mpoly_ctx.get(names, "lex")
        self.nvars = len(names)
        self.one = self.ctx.from_dict({(0,) * self.nvars: 1})
        self.zero = self.ctx.from_dict({})
        self._key = cmp_to_key(sp.Basic.compare)
        self._powers: dict = {}
        self._rank: dict = {}

    @classmethod
    def of(cls, exprs: list) -> tuple[FlintRing, list[sp.Poly]]:
        """The ring of the generators sympy finds in ``exprs`` and their ``Poly`` s (raises
        ``sympy.PolificationFailed`` when there are none)."""
        polys, info = sp.parallel_poly_from_expr(list(exprs))
        return cls(info["gens"]), polys

    def from_poly(self, p: sp.Poly) -> tuple:
        """``(integer polynomial, integer denominator)`` of a ZZ- or QQ-polynomial in (a
        prefix of) :attr:`gens`."""
        den = 1
        if p.domain.is_QQ:
            den, p = p.clear_denoms(convert=True)
        data = {}
        for monom, coeff in p.terms():
            monom = tuple(monom) if monom else (0,) * self.nvars
            data[monom + (0,) * (self.nvars - len(monom))] = int(coeff)
        return self.ctx.from_dict(data), int(den)

    def _power(self, g, k):
        power = self._powers.get((g, k))
        if power is None:
            power = self._powers[(g, k)] = g if k == 1 else sp.Pow(g, k)
            ordered = sorted(self._powers.values(), key=self._key)
            self._rank = {p: i for i, p in enumerate(ordered)}
        return power

    def to_sympy(self, p) -> sp.Expr:
        """The sympy expression of the ``fmpz_mpoly`` ``p`` (its variables read as
        :attr:`gens`, in order)."""
        from sympy.core.add import Add
        from sympy.core.mul import Mul

        data = p.to_dict()
        if not data:
            return sp.Integer(0)
        if not self.gens:
            return sp.Integer(int(sum(int(c) for c in data.values())))
        terms, constant = [], None
        for monom, coeff in data.items():
            factors = [self._power(g, k) for g, k in zip(self.gens, monom) if k]
            c = sp.Integer(int(coeff))
            if not factors:
                constant = c
                continue
            if len(factors) > 1:
                factors.sort(key=self._rank.__getitem__)
            if c == 1:
                term = factors[0] if len(factors) == 1 else Mul._from_args(tuple(factors))
            else:
                term = Mul._from_args((c, *factors))
            terms.append(term)
        if constant is not None:
            terms.insert(0, constant)
        if len(terms) == 1:
            return terms[0]
        if len(terms) < 16:
            return sp.Add(*terms)
        return Add._from_args(tuple(terms))

    __call__ = to_sympy


class FlintSolution:
    """``x_i = nums[i] / dens[i]`` with polynomials of a :class:`FlintRing` (each pair
    coprime); :meth:`canonical` writes them out in sympy."""

    def __init__(self, nums, dens, ring: FlintRing):
        self.nums, self.dens, self.ring = nums, dens, ring
        self.gens = ring.gens

    def _factors(self, p):
        return flint_factor(p)

    def canonical(self) -> tuple[list, sp.Expr]:
        """``(entries, common denominator)``: every entry cancelled, its numerator and
        denominator factored with signs oriented at :func:`reference_point`."""
        conv = self.ring.to_sympy
        one = self.ring.one if self.gens else None
        common = one
        for q in self.dens:
            common = common * (q / common.gcd(q))
        content, factors = self._factors(common)
        point = reference_point(self.gens)
        oriented = []
        for f, e in factors:
            expr = conv(f)
            if expr.subs(point).is_negative:
                f, expr = -f, conv(-f)
                content *= (-1) ** e
            oriented.append((f, e, expr))
        entries = []
        for p, q in zip(self.nums, self.dens):
            if p.is_zero():
                entries.append(sp.Integer(0))
                continue
            rest = q
            den_expr = []
            for f, e, expr in oriented:
                k = 0
                while k < e and not rest.is_constant():
                    quotient, remainder = divmod(rest, f)
                    if not remainder.is_zero():
                        break
                    rest, k = quotient, k + 1
                if k:
                    den_expr.append(expr**k)
            # what is left of the denominator must be a constant (possibly with a sign): q
            # divides the common denominator, whose complete factorisation we divided out
            if not rest.is_constant():
                raise InternalError(
                    "canonical(): a denominator did not divide into the factors of the common "
                    "denominator; refusing to return a result that may be wrong."
                )
            scale = int(rest.leading_coefficient())
            n_content, n_factors = self._factors(p)
            numerator = sp.Rational(n_content, scale) * sp.Mul(
                *[conv(f) ** e for f, e in n_factors]
            )
            entries.append(numerator / sp.Mul(*den_expr) if den_expr else numerator)
        denominator = sp.Integer(abs(content)) * sp.Mul(*[expr**e for _, e, expr in oriented])
        return entries, denominator


def _flint_fractions(entries: list[sp.Expr]) -> tuple[list, FlintRing]:
    """Numerator and denominator polynomials of ``entries`` in one :class:`FlintRing`."""
    polys, gens = _ring(entries)
    ring = FlintRing(gens)
    fractions = []
    for k in range(0, len(polys), 2):
        num, c1 = ring.from_poly(polys[k])
        den, c2 = ring.from_poly(polys[k + 1])
        fractions.append((num * c2, den * c1))
    return fractions, ring


def _solve_flint(A: sp.Matrix, b: sp.Matrix) -> FlintSolution:
    n = A.rows
    fractions, ring = _flint_fractions(list(A) + list(b))
    ctx, one = ring.ctx, ring.one
    rows = []
    for i in range(n):
        fracs = [fractions[i * n + j] for j in range(n)] + [fractions[n * n + i]]
        lcm = one
        for _, den in fracs:
            lcm = lcm * (den / lcm.gcd(den))
        row = [num * (lcm / den) for num, den in fracs]
        # remove the row's content (e.g. the factor λ every entry of I − M⊗M carries for SGD):
        # it would otherwise multiply into every minor of the elimination
        content = zero = ctx.from_dict({})
        for e in row:
            if not e.is_zero():
                content = e if content.is_zero() else content.gcd(e)
        if content != zero and content.total_degree() > 0:
            row = [e / content for e in row]
        rows.append(row)
    nums, dens = bareiss_solve(rows, one)
    return FlintSolution(nums, dens, ring)


def flint_factor(p) -> tuple[int, list[tuple[object, int]]]:
    """``(content, [(factor, multiplicity), ...])`` of an ``fmpz_mpoly`` ``p``: its complete
    factorisation over the integers, with ``content * prod(f**e) == p`` checked before returning.

    python-flint's ``factor()`` raises ``OverflowError`` when it sorts factors with coefficients
    above a machine word; the factorisation is then redone by ``fmpz_poly`` (one variable) or
    sympy's ``factor_list`` (several), never by treating ``p`` as irreducible.

    >>> ctx = flint.fmpz_mpoly_ctx.get(("x", "y"), "lex")
    >>> x, y = ctx.gens()
    >>> content, factors = flint_factor(2 * x**2 - 2 * y**2)
    >>> content, sorted(str(f) for f, e in factors)
    (2, ['x + y', 'x - y'])
    """
    try:
        content, factors = p.factor()
        content, factors = int(content), [(f, int(e)) for f, e in factors]
    except OverflowError:
        content, factors = _factor_fallback(p)
    product = p.context().from_dict({(0,) * p.context().nvars(): content})
    for f, e in factors:
        product = product * f**e
    if product != p:
        raise InternalError("flint_factor(): the factors do not multiply back to the polynomial.")
    return content, factors


def _factor_fallback(p) -> tuple[int, list[tuple[object, int]]]:
    ctx = p.context()
    nvars = ctx.nvars()
    used = [k for k in range(nvars) if p.degrees()[k] > 0]
    data = p.to_dict()
    if len(used) <= 1:
        (k,) = used or [0]
        coeffs = [0] * (max((m[k] for m in data), default=0) + 1)
        for m, c in data.items():
            coeffs[m[k]] = int(c)
        content, factors = flint.fmpz_poly(coeffs).factor()

        def lift(f):
            out = {}
            for j, c in enumerate(f.coeffs()):
                if int(c):
                    monom = [0] * nvars
                    monom[k] = j
                    out[tuple(monom)] = int(c)
            return ctx.from_dict(out)

        return int(content), [(lift(f), int(e)) for f, e in factors]
    gens = sp.symbols(f"_g0:{nvars}")
    poly = sp.Poly.from_dict({m: int(c) for m, c in data.items()}, *gens, domain=sp.ZZ)
    content, factors = poly.factor_list()
    return int(content), [
        (ctx.from_dict({m: int(c) for m, c in f.terms()}), int(e)) for f, e in factors
    ]


def bareiss_solve(rows: list[list], one) -> tuple[list, list]:
    """Solve the augmented system ``rows`` (n rows of n + 1 ``fmpz_mpoly``) exactly.

    Returns ``(nums, dens)`` with ``x_i = nums[i] / dens[i]`` cancelled and ``dens[i]`` of
    positive leading coefficient.  ``one`` is the ring's unit; ``rows`` is consumed.
    """
    n = len(rows)
    width = n + 1
    # Bareiss' fraction-free forward elimination: after step k every entry below row k is a
    # (k+1)-minor of the augmented matrix, so each division by the previous pivot is exact.
    prev = one
    bar = stage(n, "exact elimination", unit="pivot")
    for k in range(n):
        bar.update(1)
        pivot_row = min(
            (i for i in range(k, n) if not rows[i][k].is_zero()),
            key=lambda i: len(rows[i][k]),
            default=None,
        )
        if pivot_row is None:
            bar.close()
            raise ValueError(
                "the stationary equation is singular: the recursion has no unique stationary "
                "second moment for generic parameters (a marginally stable mode?)."
            )
        rows[k], rows[pivot_row] = rows[pivot_row], rows[k]
        pivot, row_k = rows[k][k], rows[k]
        for i in range(k + 1, n):
            a_ik, row_i = rows[i][k], rows[i]
            if a_ik.is_zero():
                rows[i] = row_i[: k + 1] + [(pivot * e) / prev for e in row_i[k + 1 :]]
            else:
                rows[i] = row_i[: k + 1] + [
                    (pivot * row_i[j] - a_ik * row_k[j]) / prev for j in range(k + 1, width)
                ]
        prev = pivot
    bar.close()
    det = rows[n - 1][n - 1]
    # fraction-free back substitution: X_i = det * x_i is a polynomial (an adjugate combination),
    # X_i = (det * b_i - sum_{j>i} a_ij X_j) / a_ii exactly.
    X = [None] * n
    for i in range(n - 1, -1, -1):
        acc = det * rows[i][n]
        for j in range(i + 1, n):
            if not rows[i][j].is_zero():
                acc = acc - rows[i][j] * X[j]
        X[i] = acc / rows[i][i]
    for i in range(n):
        rows[i][n], rows[i][i] = X[i], det

    pairs = [cancelled(rows[i][n], rows[i][i], one) for i in range(n)]
    return [p for p, _ in pairs], [q for _, q in pairs]


def cancelled(num, den, one) -> tuple:
    """``num / den`` (``fmpz_mpoly``) in lowest terms with a positive leading coefficient in
    the denominator; ``(0, one)`` for a zero numerator."""
    if num.is_zero():
        return num, one
    g = num.gcd(den)
    num, den = num / g, den / g
    if den.leading_coefficient() < 0:
        num, den = -num, -den
    return num, den


def factor_list(expr: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Expr, int]]]:
    """``(constant, [(factor, power), ...])`` of a polynomial expression, by python-flint's
    multivariate factorisation when possible (sympy's ``factor_list`` otherwise)."""
    expr = sp.sympify(expr)
    if flint is None or expr.is_Number:
        return sp.factor_list(expr) if not expr.is_Number else (expr, [])
    try:
        (poly,), info = sp.parallel_poly_from_expr([expr])
    except sp.PolificationFailed:
        return sp.factor_list(expr)
    gens = info["gens"]
    if not (poly.domain.is_ZZ or poly.domain.is_QQ) or not gens:
        return sp.factor_list(expr)
    ring = FlintRing(gens)
    p, den = ring.from_poly(poly)
    content, factors = flint_factor(p)
    return sp.Integer(int(content)) / den, [(ring.to_sympy(f), int(e)) for f, e in factors]


def factor_flint_free(expr: sp.Expr) -> sp.Expr:
    """Factor a polynomial expression (python-flint when available, else sympy)."""
    constant, factors = factor_list(expr)
    return constant * sp.Mul(*[f**e for f, e in factors])


def reference_point(symbols) -> dict:
    """A deterministic point deep inside the usual stability region (λ tiny, μ = ½, ...),
    used only to orient the signs of factors for display."""
    from .symbols import lr

    point = {}
    for k, s in enumerate(sorted(symbols, key=str)):
        bump = sp.Rational(k + 1, 7 * (k + 13))
        if s == lr:
            point[s] = sp.Rational(1, 10**6)
        elif s.is_positive:
            point[s] = 1 + bump
        elif s.is_nonnegative:
            point[s] = sp.Rational(1, 2) + bump
        else:
            point[s] = sp.Rational(k + 1, 1000 * (k + 17))
    return point


def _at_reference(f: sp.Expr, point: dict) -> sp.Expr:
    """``f`` at the reference point; traces over eigen-modes are taken over one mode there."""
    value = f.subs(point)
    if value.has(sp.Lambda):
        value = value.replace(
            lambda e: e.is_Function and e.args and isinstance(e.args[0], sp.Lambda),
            lambda e: e.args[0](sp.Rational(8, 7)),
        ).subs(point)
    return value


def oriented_factor_list(expr: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Expr, int]]]:
    """:func:`factor_list` with every factor's sign chosen positive at :func:`reference_point`
    (so ``2 - λh`` rather than ``λh - 2``); the sign goes into the constant."""
    coeff, factors = factor_list(expr)
    point = reference_point(sp.sympify(expr).free_symbols)
    out = []
    for f, e in factors:
        if _at_reference(f, point).is_negative:
            f = sp.expand(-f)
            coeff *= (-1) ** e
        out.append((f, e))
    return coeff, out


def desqrt(objects: list) -> tuple[list, dict]:
    """Replace every ``sqrt(x)`` (x a symbol) by a fresh positive symbol ``r`` and ``x`` by
    ``r**2``, so expressions in ``x`` and ``sqrt(x)`` become polynomial; returns the rewritten
    objects and the substitution that maps back.

    An irrational constant ``sqrt(q)`` (q a positive rational) becomes a fresh symbol too: the
    rewritten linear system holds for every value of that symbol, so its solution, a rational
    function of it, is exact at ``sqrt(q)`` (the certificate checks the final answer)."""
    roots = set()
    for obj in objects:
        free = obj.free_symbols  # not the bound variables of mode traces (Lambda)
        roots |= {
            a
            for a in obj.atoms(sp.Pow)
            if a.exp == sp.S.Half
            and ((a.base.is_Symbol and a.base in free) or (a.base.is_Rational and a.base > 0))
        }
    if not roots:
        return list(objects), {}
    forward, back = {}, {}
    for root in sorted(roots, key=str):
        r = sp.Dummy(f"sqrt_{root.base}", positive=True)
        if root.base.is_Symbol:
            forward[root.base] = r**2
        else:
            forward[root] = r
        back[r] = root
    return [obj.subs(forward) for obj in objects], back


class _Unsupported(Exception):
    pass


def flint_fraction(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
    """``(numerator, denominator)`` of a rational function of symbols with rational
    coefficients, cancelled to lowest terms (denominator with positive leading coefficient in
    python-flint's lex order), computed in ``fmpz_mpoly`` arithmetic over the expression's
    DAG (each shared subexpression once; sums by Henrici's gcd-of-denominators rule).  None
    when ``expr`` holds anything else (floats, functions, non-integer powers).

    >>> x, y = sp.symbols("x y")
    >>> flint_fraction(x / (x**2 - y**2) + 1 / (x + y))
    (2*x - y, x**2 - y**2)
    """
    if flint is None:  # pragma: no cover
        return None
    gens = sorted(expr.free_symbols, key=sp.default_sort_key)
    if not gens:
        return None
    ring = FlintRing(gens)
    index = {g: i for i, g in enumerate(gens)}
    one, zero, variables = ring.one, ring.zero, ring.ctx.gens()
    memo: dict = {}

    def reduce(n, d):
        if d.leading_coefficient() < 0:
            n, d = -n, -d
        return n, d

    def walk(node):
        done = memo.get(node)
        if done is not None:
            return done
        if node.is_Symbol:
            out = (variables[index[node]], one)
        elif node.is_Rational:
            out = reduce(one * int(node.p), one * int(node.q))
        elif node.is_Add:
            n, d = walk(node.args[0])
            for arg in node.args[1:]:
                n2, d2 = walk(arg)
                g = d.gcd(d2)
                n = n * (d2 / g) + n2 * (d / g)
                d = d * (d2 / g)
                h = n.gcd(g) if not n.is_zero() else g
                n, d = (n / h, d / h) if not n.is_zero() else (zero, one)
            out = reduce(n, d)
        elif node.is_Mul:
            n, d = one, one
            for arg in node.args:
                n2, d2 = walk(arg)
                g1, g2 = n.gcd(d2), n2.gcd(d)
                n, d = (n / g1) * (n2 / g2), (d / g2) * (d2 / g1)
            out = reduce(n, d)
        elif node.is_Pow and node.exp.is_Integer:
            n, d = walk(node.base)
            k = int(node.exp)
            if k < 0:
                if n.is_zero():
                    raise _Unsupported(node)
                n, d, k = d, n, -k
            out = reduce(n**k, d**k)
        else:
            raise _Unsupported(node)
        memo[node] = out
        return out

    try:
        n, d = walk(expr)
    except _Unsupported:
        return None
    return ring.to_sympy(n), ring.to_sympy(d)


def canonical(expr):
    """Cancelled numerator / denominator, both factored with oriented signs (entrywise for
    matrices).  Square roots of symbols are handled exactly (see :func:`desqrt`)."""
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(canonical)
    expr = sp.sympify(expr)
    if expr.is_number:
        return sp.nsimplify(expr) if expr.is_Rational else expr
    (work,), back = desqrt([expr])
    fraction = flint_fraction(work)
    num, den = fraction if fraction is not None else sp.fraction(sp.cancel(sp.together(work)))
    try:
        cn, fn = oriented_factor_list(num)
        cd, fd = oriented_factor_list(den)
    except (sp.PolificationFailed, sp.PolynomialError):
        return sp.cancel(expr)
    # one flat Mul: multiplying step by step would distribute the rational constant into a
    # lone polynomial factor (sympy turns ``c * (a + b)`` into ``c*a + c*b``)
    out = sp.Mul(cn / cd, *[f**e for f, e in fn], *[f ** (-e) for f, e in fd])
    return out.subs(back) if back else out
