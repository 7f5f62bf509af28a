r"""Publication-ready LaTeX of results.

Three shapes of result, three layouts:

* **scalar** results print as one fraction, numerator over a factored denominator, every factor
  oriented to be positive near the origin of the stable region (``2 - \lambda h``, never
  ``- \lambda h + 2``) and every sum written as a polynomial in the learning rate with factored
  coefficients, lowest order first:

  .. math:: \frac{\lambda c (1 + \mu)}{h (1 - \mu) \left(2 (1 + \mu) - \lambda h\right)}

* **eigen-mode** results (``Quadratic.commuting``) print as matrix functions of ``H``, ``C`` (and
  ``P``, ``F``, ``C^{1/2}``): a factor that involves a mode eigenvalue becomes a matrix, a
  constant term becomes a multiple of ``I``; because everything commutes the order is free, so the
  inverse comes first and ``C`` last:

  .. math:: \lambda \left[H (2 I - \lambda H)\right]^{-1} C

* **explicit matrices** whose entries share a large denominator print as
  :math:`\frac{g}{D}\begin{pmatrix}\dots\end{pmatrix}` followed by a "where D = …" line (``g``
  the common factor of the numerators); other matrices print entrywise.

Notation options: ``lr_name="\\eta"`` (learning-rate symbol), ``batch_name="B"`` (batch size),
and ``env`` (``"align"``, ``"align*"``, ``"equation"``, ``"equation*"``).

>>> import sympy as sp
>>> from symsgd.symbols import lr, momentum as mu
>>> h, c = sp.symbols("h c", positive=True)
>>> scalar_latex(c * lr / (h * (2 - lr * h)))
'\\frac{\\lambda c}{h \\left(2 - \\lambda h\\right)}'
>>> scalar_latex(c * lr * (mu + 1) / (h * (1 - mu) * (2 * mu + 2 - lr * h)), lr_name="\\eta")
'\\frac{\\eta c \\left(1 + \\mu\\right)}{h \\left(1 - \\mu\\right) \\left(2 \\left(1 + \\mu\\right) - \\eta h\\right)}'
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .exact import desqrt, oriented_factor_list, reference_point
from .symbols import batch_size, beta1, beta2, eps, lr, momentum, weight_decay

__all__ = [
    "ENVIRONMENTS",
    "latex_expr",
    "matrix_function_latex",
    "matrix_latex",
    "render",
    "scalar_latex",
]

#: the LaTeX environments :func:`render` can wrap a result in (``None``: a bare formula)
ENVIRONMENTS = ("align", "align*", "equation", "equation*")

# hyperparameters print right after the learning rate inside a product ("λ μ h")
_HYPER = (momentum, beta1, beta2, eps, weight_decay)
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu "
    "xi pi rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma "
    "Upsilon Phi Psi Omega".split()
)
_GREEK_CHARS = dict(zip("αβγδεζηθικλμνξπρστυφχψω", (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau "
    "upsilon phi chi psi omega").split()))
# sums with more terms than this are printed as they are, without factoring their coefficients
_MAX_FACTOR_TERMS = 400
# an entrywise matrix longer than this prints in the "where D = ..." form instead
_MAX_ENTRYWISE = 1500


def _command(name: str) -> str:
    r"""``"eta"``/``"η"`` -> ``"\eta"``; anything else (``"\eta"``, ``"B"``) is used verbatim."""
    name = name.strip()
    if name in _GREEK_CHARS:
        return "\\" + _GREEK_CHARS[name]
    if name in _GREEK:
        return "\\" + name
    return name


def _notation(lr_name: str | None, batch_name: str | None) -> dict:
    names = {}
    if lr_name:
        names[lr] = _command(lr_name)
    if batch_name:
        names[batch_size] = _command(batch_name)
    return names


def latex_expr(expr, lr_name: str | None = None, batch_name: str | None = None) -> str:
    r"""``sympy.latex`` with the notation options applied (no reordering).

    >>> from symsgd.symbols import lr
    >>> latex_expr(2 * lr, lr_name="\\eta")
    '2 \\eta'
    """
    return sp.latex(expr, symbol_names=_notation(lr_name, batch_name))


def _paren(text: str) -> str:
    return rf"\left({text}\right)"


def _join(terms: list[tuple[bool, str]]) -> str:
    """``[(negative, body), ...]`` -> ``"a - b + c"``."""
    out = ""
    for k, (negative, body) in enumerate(terms):
        if k == 0:
            out = f"- {body}" if negative else body
        else:
            out += f" - {body}" if negative else f" + {body}"
    return out


def _positive_first(terms: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    """Move the first positive term to the front (``1 - μ`` rather than ``- μ + 1``)."""
    if terms and terms[0][0]:
        for k, (negative, _) in enumerate(terms):
            if not negative:
                return [terms[k], *terms[:k], *terms[k + 1 :]]
    return terms


class _Printer:
    """Renders polynomials and rational functions in the layout the module docstring describes.

    ``modes`` maps eigenvalue symbols to matrix names (``{h: "H", c: "C"}``); a printer without
    modes prints plain scalars.  :meth:`prepare` replaces ``sqrt(x)`` by a fresh symbol (exact
    polynomial arithmetic, see :func:`symsgd.exact.desqrt`); it prints back as ``\sqrt{x}`` (or
    ``X^{1/2}`` when ``x`` is a mode).
    """

    def __init__(self, modes: Mapping | None = None, lr_name: str | None = None,
                 batch_name: str | None = None):
        self.symbol_names = _notation(lr_name, batch_name)
        # symbol -> (matrix name, power of the matrix that one power of the symbol stands for)
        self.modes: dict = {s: (n, sp.Integer(1)) for s, n in (modes or {}).items()}
        self.roots: dict = {}  # fresh symbol r -> x, where r stands for sqrt(x)

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, objects: list) -> list:
        objects, back = desqrt([sp.sympify(o) for o in objects])
        for r, root in back.items():
            self.roots[r] = root.base
            if root.base in self.modes:
                self.modes[r] = (self.modes[root.base][0], sp.Rational(1, 2))
        return objects

    # -- atoms -------------------------------------------------------------------------------
    def _sort_key(self, s: sp.Symbol):
        base = self.roots.get(s, s)
        group = 0 if base == lr else 1 if base in _HYPER else 2
        return (group, sp.default_sort_key(base))

    def _latex(self, expr) -> str:
        return sp.latex(expr, symbol_names=self.symbol_names)

    def power(self, s: sp.Symbol, e: int) -> str:
        """A scalar symbol to a positive integer power."""
        if s in self.roots:
            return self._latex(self.roots[s] ** sp.Rational(e, 2))
        return self._latex(s**e)

    def matrix_power(self, s: sp.Symbol, e: int) -> str:
        name, unit = self.modes[s]
        total = unit * e
        if total == 1:
            return name
        exponent = str(total) if total.is_Integer else f"{total.p}/{total.q}"
        return f"{name}^{{{exponent}}}"

    def has_modes(self, expr) -> bool:
        return any(s in self.modes for s in expr.free_symbols)

    # -- products ----------------------------------------------------------------------------
    def product(self, coeff, factors, lr_power: int = 0, matrix: bool = False,
                bare: bool = False) -> str:
        r"""``coeff · λ^lr_power · Π f^e``, ``coeff`` a positive rational, in print order:
        number, learning rate, other scalar symbols, scalar sums, matrices, matrix sums, ``C``;
        in a matrix context a product with no matrix factor ends in ``I``.  ``bare``: a lone
        sum is printed without parentheses (for a numerator or denominator)."""
        coeff = sp.Rational(coeff)
        symbols: dict = {}
        sums: list = []
        for f, e in factors:
            if f.is_Symbol:
                symbols[f] = symbols.get(f, 0) + e
            elif f.is_Pow and f.base.is_Symbol and f.exp.is_Integer and f.exp > 0:
                symbols[f.base] = symbols.get(f.base, 0) + e * int(f.exp)
            elif f.is_Number:
                coeff *= f**e
            else:
                sums.append((f, e))
        if lr_power:
            symbols[lr] = symbols.get(lr, 0) + lr_power
        scalars = sorted((s for s in symbols if s not in self.modes), key=self._sort_key)
        mats = sorted((s for s in symbols if s in self.modes), key=self._matrix_key)
        scalar_sums = [(f, e) for f, e in sums if not self.has_modes(f)]
        matrix_sums = [(f, e) for f, e in sums if self.has_modes(f)]
        if bare and coeff == 1 and not symbols and len(sums) == 1 and sums[0][1] == 1:
            return self.sum(sums[0][0], matrix)
        parts = []
        if coeff != 1:
            parts.append(self._latex(coeff))
        parts += [self.power(s, symbols[s]) for s in scalars]
        parts += [self._sum_factor(f, e, matrix=False) for f, e in _by_size(scalar_sums)]
        if matrix:
            noise = [s for s in mats if self.modes[s][0] == "C"]
            parts += [self.matrix_power(s, symbols[s]) for s in mats if s not in noise]
            parts += [self._sum_factor(f, e, matrix=True) for f, e in _by_size(matrix_sums)]
            parts += [self.matrix_power(s, symbols[s]) for s in noise]
            if not mats and not matrix_sums:
                parts.append("I")
        if not parts:
            return "1"
        return " ".join(parts)

    def _matrix_key(self, s):
        name = self.modes[s][0]
        return (name == "C", name)

    def _sum_factor(self, f, e: int, matrix: bool) -> str:
        body = _paren(self.sum(f, matrix))
        return body if e == 1 else f"{body}^{{{e}}}"

    def factored(self, expr, lr_power: int = 0, matrix: bool = False) -> tuple[bool, str]:
        """``(negative, body)`` of a polynomial printed as a product of oriented factors."""
        const, factors = _factor(expr)
        return bool(const < 0), self.product(abs(const), factors, lr_power, matrix)

    # -- sums --------------------------------------------------------------------------------
    def sum(self, f, matrix: bool = False) -> str:
        """A polynomial as a sum: by powers of the learning rate, lowest first, coefficients
        factored; without the learning rate, by monomials (scalar) or by matrix monomials."""
        return _join(self.sum_terms(sp.expand(f), matrix))

    def sum_terms(self, f, matrix: bool) -> list[tuple[bool, str]]:
        if lr in f.free_symbols and f.is_Add:
            coeffs = sp.Poly(f, lr).all_coeffs()[::-1]
            terms = []
            for k, c in enumerate(coeffs):
                if c == 0:
                    continue
                if k == 0 and _irreducible_sum(c):
                    terms += self.sum_terms(c, matrix)
                else:
                    terms.append(self.factored(c, k, matrix))
            return _positive_first(terms)
        if matrix:
            return self._matrix_terms(f)
        return self._plain_terms(f)

    def _plain_terms(self, f) -> list[tuple[bool, str]]:
        args = sorted(sp.Add.make_args(f), key=_term_key)
        terms = []
        for term in args:
            coeff, rest = term.as_coeff_Mul()
            powers = [(b, int(e)) for b, e in rest.as_powers_dict().items() if b != 1]
            terms.append((bool(coeff < 0), self.product(abs(coeff), powers)))
        return _positive_first(terms)

    def _matrix_terms(self, f) -> list[tuple[bool, str]]:
        """A sum without the learning rate, grouped by matrix monomials: ``(1 - μ) I + H``."""
        gens = sorted((s for s in f.free_symbols if s in self.modes), key=sp.default_sort_key)
        if not gens:
            return [self.factored(f, matrix=True)]
        groups = sp.Poly(f, *gens).terms()
        constant = dict(groups).get((0,) * len(gens), sp.Integer(0))
        has_number = any(t.is_Number for t in sp.Add.make_args(sp.expand(constant)))
        groups = sorted(groups, key=lambda t: (sum(t[0]), t[0]), reverse=not has_number)
        terms = []
        for monom, coeff in groups:
            const, factors = _factor(coeff)
            factors = factors + [(g, e) for g, e in zip(gens, monom) if e]
            terms.append((bool(const < 0), self.product(abs(const), factors, matrix=True)))
        return _positive_first(terms)

    def polynomial(self, p, matrix: bool = False) -> str:
        """A polynomial: an inline sum when it does not factor, else a product."""
        p = sp.expand(p)
        if _irreducible_sum(p):
            const, _ = _factor(p)
            terms = self.sum_terms(p, matrix)
            if const < 0:
                terms = _positive_first([(not neg, body) for neg, body in terms])
            return _join(terms)
        negative, body = self.factored(p, matrix=matrix)
        return f"- {body}" if negative else body

    # -- rational functions ------------------------------------------------------------------
    def fraction(self, const, num_factors, den_factors) -> str:
        r"""``const · Π num / Π den`` as ``\frac{…}{…}`` (or a product when nothing divides)."""
        const = sp.Rational(const)
        sign = "- " if const < 0 else ""
        const = abs(const)
        if const.q == 1 and not den_factors:
            return sign + self.product(const.p, num_factors)
        num = self.product(const.p, num_factors, bare=True)
        den = self.product(const.q, den_factors, bare=True)
        return sign + rf"\frac{{{num}}}{{{den}}}"


def _factor(expr) -> tuple[sp.Rational, list]:
    """Oriented factorisation (sign positive near the origin of the stable region)."""
    expr = sp.sympify(expr)
    if expr.is_Number:
        return expr, []
    if expr.is_Add and len(expr.args) > _MAX_FACTOR_TERMS:
        return _orient(expr)
    return oriented_factor_list(expr)


def _orient(expr) -> tuple[sp.Rational, list]:
    if expr.subs(reference_point(expr.free_symbols)).is_negative:
        return sp.Integer(-1), [(sp.expand(-expr), 1)]
    return sp.Integer(1), [(expr, 1)]


def _irreducible_sum(expr) -> bool:
    """Whether ``expr`` is a sum that does not factor (up to a sign)."""
    expr = sp.sympify(expr)
    if not expr.is_Add:
        return False
    const, factors = _factor(expr)
    return abs(const) == 1 and len(factors) == 1 and factors[0][1] == 1


def _term_key(term):
    degree = sum(int(e) for b, e in term.as_powers_dict().items() if b.is_Symbol)
    return (degree, sp.default_sort_key(term.as_coeff_Mul()[1]))


def _by_size(factors: list) -> list:
    return sorted(factors, key=lambda fe: (len(sp.Add.make_args(sp.expand(fe[0]))),
                                           sp.default_sort_key(fe[0])))


def _split(expr):
    """``(const, num_factors, den_factors)`` of a rational function, factors oriented."""
    num, den = sp.fraction(sp.cancel(sp.together(expr)))
    cn, fn = _factor(num)
    cd, fd = _factor(den)
    return sp.Rational(cn) / sp.Rational(cd), fn, fd


def _rational(expr) -> bool:
    try:
        num, den = sp.fraction(sp.together(expr))
        for part in (num, den):
            poly = sp.Poly(part)
            if not (poly.domain.is_ZZ or poly.domain.is_QQ):
                return False
            if not all(g.is_Symbol for g in poly.gens):
                return False
        return True
    except (sp.PolynomialError, sp.PolificationFailed, sp.GeneratorsNeeded):
        return False


# ---------------------------------------------------------------------------------------------
# public renderers
# ---------------------------------------------------------------------------------------------


def scalar_latex(expr, lr_name: str | None = None, batch_name: str | None = None) -> str:
    r"""A scalar rational function as ``\frac{numerator}{factored denominator}``.

    Factors are oriented positive near the origin of the stable region (small λ), sums are
    polynomials in λ with factored coefficients, lowest order first.  Expressions that are not
    rational in their symbols (and in square roots of symbols) fall back to ``sympy.latex``.
    The output parses back with :func:`symsgd.verify.parse_formula`.

    >>> import sympy as sp
    >>> from symsgd.symbols import lr, batch_size as S, label_noise as sigma
    >>> a = sp.Symbol("a", positive=True)
    >>> scalar_latex(lr * sigma**2 / (-S*a*lr + 2*S - 2*a*lr), batch_name="B")
    '\\frac{\\lambda \\sigma^{2}}{2 B - \\lambda a \\left(2 + B\\right)}'
    """
    printer = _Printer(lr_name=lr_name, batch_name=batch_name)
    (work,) = printer.prepare([expr])
    if work.is_number:
        return printer._latex(sp.nsimplify(expr) if work.is_Rational else expr)
    if not _rational(work):
        return latex_expr(expr, lr_name, batch_name)
    const, num, den = _split(work)
    return printer.fraction(const, num, den)


def matrix_function_latex(expr: sp.Expr, names: dict, lr_name=None, batch_name=None) -> str:
    r"""Render a scalar rational function of mode eigenvalues as a matrix function.

    ``names`` maps eigenvalue symbols to matrix names, e.g. ``{h: "H", c: "C"}``; a square root
    of a mode eigenvalue becomes ``C^{1/2}``.  Scalar factors form a prefactor, a denominator
    that involves modes becomes ``[…]^{-1}`` (or ``H^{-k}``), and ``C`` comes last.

    >>> h, c, l = sp.symbols("h c lambda", positive=True)
    >>> matrix_function_latex(l * c / (h * (2 - l * h)), {h: "H", c: "C"})
    '\\lambda \\left[H \\left(2 I - \\lambda H\\right)\\right]^{-1} C'
    """
    if expr == 0:
        return "0"
    printer = _Printer(names, lr_name, batch_name)
    (work,) = printer.prepare([expr])
    if not _rational(work):
        raise sp.PolynomialError(f"not a rational function of the modes: {expr}")
    const, num, den = _split(work)
    scalar_num = [(f, e) for f, e in num if not printer.has_modes(f)]
    scalar_den = [(f, e) for f, e in den if not printer.has_modes(f)]
    mat_num = [(f, e) for f, e in num if printer.has_modes(f)]
    mat_den = [(f, e) for f, e in den if printer.has_modes(f)]

    out = []
    if const != 1 or scalar_num or scalar_den:
        prefactor = printer.fraction(const, scalar_num, scalar_den)
        if prefactor == "- 1":
            prefactor = "-"
        if prefactor != "1":
            out.append(prefactor)
    if mat_den:
        if all(f.is_Symbol for f, _ in mat_den):
            out.extend(_inverse_power(printer, f, e) for f, e in _order_matrices(printer, mat_den))
        else:
            inner = printer.product(1, mat_den, matrix=True)
            out.append(rf"\left[{inner}\right]^{{-1}}")
    if mat_num:
        out.append(printer.product(1, mat_num, matrix=True))
    return " ".join(out) if out else "1"


def _order_matrices(printer: _Printer, factors: list) -> list:
    return sorted(factors, key=lambda fe: printer._matrix_key(fe[0]))


def _inverse_power(printer: _Printer, s, e: int) -> str:
    name, unit = printer.modes[s]
    total = unit * e
    exponent = str(total) if total.is_Integer else f"{total.p}/{total.q}"
    return f"{name}^{{-{exponent}}}"


def matrix_latex(matrix: sp.MatrixBase, lr_name: str | None = None,
                 batch_name: str | None = None) -> tuple[str, str | None]:
    r"""An explicit matrix: ``(body, where)``.

    When the non-zero entries share one non-monomial denominator ``D`` (and there are several of
    them), or the entrywise form would be very long, the body is
    :math:`\frac{g}{D}\begin{pmatrix}\dots\end{pmatrix}` with ``g`` the common factor of the
    numerators, and ``where`` is ``"D = …"``; otherwise the body is the matrix of
    :func:`scalar_latex` entries and ``where`` is ``None``.

    >>> import sympy as sp
    >>> x, y = sp.symbols("x y", positive=True)
    >>> matrix_latex(sp.Matrix([[x / (1 + x * y), 0], [0, y / (1 + x * y)]]))
    ('\\frac{1}{D} \\begin{pmatrix} x & 0 \\\\ 0 & y \\end{pmatrix}', 'D = 1 + x y')
    """
    opts = {"lr_name": lr_name, "batch_name": batch_name}
    matrix = sp.Matrix(matrix)
    printer = _Printer(**opts)
    entries = printer.prepare(list(matrix))
    if not all(_rational(e) or e.is_number for e in entries):
        return latex_expr(matrix, **opts), None
    fractions = [sp.fraction(sp.cancel(sp.together(e))) for e in entries]
    dens = [d for n, d in fractions if n != 0]
    common = sp.Integer(1)
    for d in dens:
        common = sp.lcm(common, d)
    shared = bool(dens) and all(sp.cancel(common / d).is_number for d in dens)
    monomial = common.is_number or not any(f.is_Add for f in sp.Mul.make_args(sp.factor(common)))

    def entrywise() -> str:
        rows = []
        for i in range(matrix.rows):
            cells = [scalar_latex(matrix[i, j], **opts) for j in range(matrix.cols)]
            rows.append(" & ".join(cells))
        return r"\begin{pmatrix} " + r" \\ ".join(rows) + r" \end{pmatrix}"

    if monomial or (shared and len(dens) == 1):
        return entrywise(), None
    if not shared:
        body = entrywise()
        if len(body) <= _MAX_ENTRYWISE:
            return body, None
    numerators = [sp.expand(sp.cancel(e * common)) for e in entries]
    g = sp.Integer(0)
    for n in numerators:
        g = sp.gcd(g, n)
    g_const, g_factors = _factor(g)
    g = abs(g_const) * sp.Mul(*[f**e for f, e in g_factors])
    cells = [printer.polynomial(sp.cancel(n / g)) if n != 0 else "0" for n in numerators]
    rows = [" & ".join(cells[i * matrix.cols : (i + 1) * matrix.cols]) for i in range(matrix.rows)]
    d_const, d_factors = _factor(common)
    const = sp.Rational(abs(g_const)) / abs(d_const)
    num = printer.product(const.p, g_factors)
    den = "D" if const.q == 1 else f"{const.q} D"
    sign = "- " if d_const < 0 else ""
    body = (rf"{sign}\frac{{{num}}}{{{den}}} \begin{{pmatrix}} " + r" \\ ".join(rows)
            + r" \end{pmatrix}")
    return body, f"D = {printer.product(1, d_factors)}"


def render(lhs: str, expr, *, names: dict | None = None, denominator=None, env: str | None = None,
           lr_name: str | None = None, batch_name: str | None = None) -> str:
    r"""LaTeX of ``lhs = expr`` for a scalar, an eigen-mode result (``names``) or a matrix.

    ``env=None`` gives the bare right-hand side (followed by ``, \quad \text{where } D = …``
    for the common-denominator layout); ``env="align"`` (or ``"align*"``) gives
    ``lhs &= …`` with the "where" definition on its own line; ``env="equation"`` (or
    ``"equation*"``) one line.  ``denominator`` is accepted for compatibility: the common
    denominator is recomputed from the entries.

    >>> import sympy as sp
    >>> from symsgd.symbols import lr
    >>> h, c = sp.symbols("h c", positive=True)
    >>> print(render(r"\Sigma", lr * c / (h * (2 - lr * h)), names={h: "H", c: "C"}, env="align"))
    \begin{align}
    \Sigma &= \lambda \left[H \left(2 I - \lambda H\right)\right]^{-1} C
    \end{align}
    """
    del denominator
    if env is not None and env not in ENVIRONMENTS:
        raise ValueError(
            f"env must be None or one of {', '.join(map(repr, ENVIRONMENTS))}; got {env!r}."
        )
    opts = {"lr_name": lr_name, "batch_name": batch_name}
    where = None
    if isinstance(expr, sp.MatrixBase) and expr.shape == (1, 1):
        expr = expr[0, 0]
    if isinstance(expr, sp.MatrixBase):
        body, where = matrix_latex(expr, **opts)
    elif names:
        body = matrix_function_latex(expr, names, **opts)
    else:
        body = scalar_latex(expr, **opts)
    if env is None:
        return body if where is None else rf"{body}, \quad \text{{where }} {where}"
    if env.startswith("equation"):
        line = rf"{lhs} = {body}"
        if where is not None:
            line += rf", \quad \text{{where }} {where}"
        return f"\\begin{{{env}}}\n{line}\n\\end{{{env}}}"
    lines = [rf"{lhs} &= {body}"]
    if where is not None:
        lines.append(rf"\text{{where }} {where.replace(' = ', ' &= ', 1)}")
    return f"\\begin{{{env}}}\n" + " \\\\\n".join(lines) + f"\n\\end{{{env}}}"
