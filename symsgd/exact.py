r"""Exact linear algebra over polynomial rings: fraction-free Gauss–Jordan elimination.

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

try:  # python-flint is a hard dependency, but keep the fallback honest and testable
    import flint
except ImportError:  # pragma: no cover - exercised only without python-flint
    flint = None

__all__ = ["solve_den"]


class _NotPolynomial(Exception):
    pass


def _ring(exprs: list[sp.Expr]):
    """Numerators/denominators of ``exprs`` as sympy Polys over ZZ with common generators."""
    fractions = [sp.fraction(sp.together(e)) for e in exprs]
    flat = [part for pair in fractions for part in pair]
    polys, info = sp.parallel_poly_from_expr(flat)
    gens = info["gens"]
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
    n = A.rows
    if A.shape != (n, n) or b.shape != (n, 1):
        raise ValueError(f"solve_den needs a square system; got A {A.shape}, b {b.shape}.")
    if method not in ("auto", "flint", "domainmatrix"):
        raise ValueError(f"method must be 'auto', 'flint' or 'domainmatrix'; got {method!r}.")
    if method in ("auto", "flint") and flint is not None:
        try:
            return _solve_flint(A, b)
        except _NotPolynomial:
            if method == "flint":
                raise ValueError(
                    "the system's entries are not rational functions with integer coefficients; "
                    "use method='domainmatrix'."
                ) from None
    return _solve_domainmatrix(A, b)


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


def _solve_flint(A: sp.Matrix, b: sp.Matrix) -> tuple[list, list]:
    n = A.rows
    entries = list(A) + list(b)
    polys, gens = _ring(entries)
    names = tuple(f"x{i}" for i in range(len(gens))) or ("x0",)
    ctx = flint.fmpz_mpoly_ctx.get(names, "lex")
    nvars = len(names)

    def to_flint(p: sp.Poly):
        data = {}
        for monom, coeff in p.terms():
            monom = tuple(monom) if monom else (0,) * nvars
            data[monom + (0,) * (nvars - len(monom))] = int(coeff)
        return ctx.from_dict(data)

    def rational(p: sp.Poly):
        """(integer polynomial, integer denominator) of a ZZ- or QQ-polynomial."""
        if p.domain.is_QQ:
            den, p = p.clear_denoms(convert=True)
            return to_flint(p), int(den)
        return to_flint(p), 1

    width = n + 1
    rows = []
    for i in range(n):
        fracs = []
        for j in range(width):
            k = 2 * (i * n + j) if j < n else 2 * (n * n + i)
            num, c1 = rational(polys[k])
            den, c2 = rational(polys[k + 1])
            fracs.append((num * c2, den * c1))
        lcm = ctx.from_dict({(0,) * nvars: 1})
        for _, den in fracs:
            g = lcm.gcd(den)
            lcm = lcm * (den / g)
        rows.append([num * (lcm / den) for num, den in fracs])

    prev = ctx.from_dict({(0,) * nvars: 1})
    for k in range(n):
        pivot_row = min(
            (i for i in range(k, n) if not rows[i][k].is_zero()),
            key=lambda i: len(rows[i][k]),
            default=None,
        )
        if pivot_row is None:
            raise ValueError(
                "the stationary equation is singular: the recursion has no unique stationary "
                "second moment for generic parameters (a marginally stable mode?)."
            )
        rows[k], rows[pivot_row] = rows[pivot_row], rows[k]
        pivot = rows[k][k]
        for i in range(n):
            if i == k:
                continue
            a_ik = rows[i][k]
            row_i, row_k = rows[i], rows[k]
            if a_ik.is_zero():
                rows[i] = [e if e.is_zero() else (pivot * e) / prev for e in row_i]
            else:
                rows[i] = [(pivot * row_i[j] - a_ik * row_k[j]) / prev for j in range(width)]
        prev = pivot

    nums, dens = [], []
    for i in range(n):
        num, den = rows[i][n], rows[i][i]
        if num.is_zero():
            nums.append(sp.Integer(0))
            dens.append(sp.Integer(1))
            continue
        g = num.gcd(den)
        num, den = num / g, den / g
        if den.leading_coefficient() < 0:
            num, den = -num, -den
        nums.append(_to_sympy(num, gens))
        dens.append(_to_sympy(den, gens))
    return nums, dens


def _to_sympy(p, gens) -> sp.Expr:
    data = p.to_dict()
    if not gens:
        return sp.Integer(int(data.get((0,), 0)))
    return sp.Poly.from_dict({k: int(v) for k, v in data.items()}, *gens).as_expr()


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
    names = tuple(f"x{i}" for i in range(len(gens)))
    ctx = flint.fmpz_mpoly_ctx.get(names, "lex")
    den = 1
    if poly.domain.is_QQ:
        den, poly = poly.clear_denoms(convert=True)
    content, factors = ctx.from_dict({tuple(m): int(c) for m, c in poly.terms()}).factor()
    return sp.Integer(int(content)) / den, [(_to_sympy(f, gens), int(e)) for f, e in factors]


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


def oriented_factor_list(expr: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Expr, int]]]:
    """:func:`factor_list` with every factor's sign chosen positive at :func:`reference_point`
    (so ``2 - λh`` rather than ``λh - 2``); the sign goes into the constant."""
    coeff, factors = factor_list(expr)
    point = reference_point(sp.sympify(expr).free_symbols)
    out = []
    for f, e in factors:
        if f.subs(point).is_negative:
            f = sp.expand(-f)
            coeff *= (-1) ** e
        out.append((f, e))
    return coeff, out


def desqrt(objects: list) -> tuple[list, dict]:
    """Replace every ``sqrt(x)`` (x a symbol) by a fresh positive symbol ``r`` and ``x`` by
    ``r**2``, so expressions in ``x`` and ``sqrt(x)`` become polynomial; returns the rewritten
    objects and the substitution that maps back."""
    roots = set()
    for obj in objects:
        roots |= {a for a in obj.atoms(sp.Pow) if a.exp == sp.S.Half and a.base.is_Symbol}
    if not roots:
        return list(objects), {}
    forward, back = {}, {}
    for root in sorted(roots, key=str):
        r = sp.Dummy(f"sqrt_{root.base}", positive=True)
        forward[root.base] = r**2
        back[r] = root
    return [obj.subs(forward) for obj in objects], back


def canonical(expr):
    """Cancelled numerator / denominator, both factored with oriented signs (entrywise for
    matrices).  Square roots of symbols are handled exactly (see :func:`desqrt`)."""
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(canonical)
    expr = sp.sympify(expr)
    if expr.is_number:
        return sp.nsimplify(expr) if expr.is_Rational else expr
    (work,), back = desqrt([expr])
    num, den = sp.fraction(sp.cancel(sp.together(work)))
    try:
        cn, fn = oriented_factor_list(num)
        cd, fd = oriented_factor_list(den)
    except (sp.PolificationFailed, sp.PolynomialError):
        return sp.cancel(expr)
    out = (cn / cd) * sp.Mul(*[f**e for f, e in fn]) / sp.Mul(*[f**e for f, e in fd])
    return out.subs(back)
