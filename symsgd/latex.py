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
>>> print(scalar_latex(lr * (mu + 1) / (2 * mu + 2 - lr * h), lr_name="eta"))
\frac{\eta \left(1 + \mu\right)}{2 \left(1 + \mu\right) - \eta h}
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .exact import (
    FlintRing,
    canonical,
    desqrt,
    oriented_factor_list,
    reference_point,
)
from .modes import ModeTrace
from .symbols import GREEK_CHARS, LATEX_GREEK, batch_size, lookup, lr

__all__ = [
    "ENVIRONMENTS",
    "command",
    "latex_expr",
    "layout",
    "matrix_function_latex",
    "matrix_latex",
    "render",
    "scalar_latex",
    "structured_latex",
]

#: the LaTeX environments :func:`render` can wrap a result in (``None``: a bare formula)
ENVIRONMENTS = ("align", "align*", "equation", "equation*")

# sums with more terms than this are printed as they are, without factoring their coefficients
_MAX_FACTOR_TERMS = 400
# sums with more terms than this print straight from their monomials, grouped by powers of the
# learning rate (no factoring: fast for the huge entries of fully symbolic d >= 3 results)
_MAX_COLLECT_TERMS = 120
# an entrywise matrix longer than this prints in the "where D = ..." form instead
_MAX_ENTRYWISE = 1500


def command(name: str) -> str:
    r"""``"eta"``/``"η"`` -> ``"\eta"`` (the Greek letters of :mod:`symsgd.symbols`); anything
    else (``"\eta"``, ``"B"``) is used verbatim.

    >>> command("η"), command("Sigma"), command("B")
    ('\\eta', '\\Sigma', 'B')
    """
    name = name.strip()
    word = GREEK_CHARS.get(name, name)
    return "\\" + word if word in LATEX_GREEK else name


def _notation(lr_name: str | None, batch_name: str | None) -> dict:
    names = {}
    if lr_name:
        names[lr] = command(lr_name)
    if batch_name:
        names[batch_size] = command(batch_name)
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


def _power(body: str, exponent) -> str:
    r"""``{body}^{e}``: the braces keep a juxtaposed name from reading as a function call
    (``a {\left(1 + S\right)}^{2}``, not ``a \left(1 + S\right)^{2}`` = ``(a(1 + S))^2``)."""
    return f"{{{body}}}^{{{exponent}}}"


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
    r"""Renders polynomials and rational functions in the layout the module docstring describes.

    ``modes`` maps eigenvalue symbols to matrix names (``{h: "H", c: "C"}``); a printer without
    modes prints plain scalars.  :meth:`prepare` replaces ``sqrt(x)`` by a fresh symbol (exact
    polynomial arithmetic, see :func:`symsgd.exact.desqrt`); it prints back as ``\sqrt{x}`` (or
    ``X^{1/2}`` when ``x`` is a mode).
    """

    def __init__(
        self,
        modes: Mapping | None = None,
        lr_name: str | None = None,
        batch_name: str | None = None,
    ):
        self.symbol_names = _notation(lr_name, batch_name)
        # symbol -> (matrix name, power of the matrix that one power of the symbol stands for)
        self.modes: dict = {s: (n, sp.Integer(1)) for s, n in (modes or {}).items()}
        self.roots: dict = {}  # fresh symbol r -> x, where r stands for sqrt(x)
        self.opaque: dict = {}  # fresh symbol -> the function application it stands for
        self.lr_name, self.batch_name = lr_name, batch_name
        self._powers: dict = {}

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, objects: list) -> list:
        """Rewrite ``objects`` for printing: function applications free of modes (``Tr[…]``,
        ``exp(…)``) become opaque symbols, square roots of symbols become symbols."""
        objects = [sp.sympify(o) for o in objects]
        calls = set()
        for o in objects:
            calls |= {f for f in o.atoms(sp.Function) if not f.free_symbols & set(self.modes)}
        if calls:
            mapping = {}
            for k, f in enumerate(sorted(calls, key=sp.default_sort_key)):
                mapping[f] = sp.Dummy(f"opaque{k}", positive=True)
                self.opaque[mapping[f]] = f
            objects = [o.xreplace(mapping) for o in objects]
        objects, back = desqrt(objects)
        for r, root in back.items():
            self.roots[r] = root.base
            if root.base in self.modes:
                self.modes[r] = (self.modes[root.base][0], sp.Rational(1, 2))
        return objects

    # -- atoms -------------------------------------------------------------------------------
    def _sort_key(self, s: sp.Symbol):
        base = self.roots.get(s, s)
        # hyperparameters print right after the learning rate inside a product ("λ μ h")
        entry = lookup(base) if isinstance(base, sp.Symbol) else None
        group = 0 if base == lr else 1 if entry is not None and entry.hyperparameter else 2
        return (group, sp.default_sort_key(base))

    def _latex(self, expr) -> str:
        return sp.latex(expr, symbol_names=self.symbol_names)

    def power(self, s: sp.Symbol, e: int) -> str:
        """A scalar symbol to a positive integer power."""
        key = (s, e)
        if key not in self._powers:
            self._powers[key] = self._power_latex(s, e)
        return self._powers[key]

    def _power_latex(self, s: sp.Symbol, e: int) -> str:
        if s in self.opaque:
            tex = self._call(self.opaque[s])
            return tex if e == 1 else _power(tex, e)
        if s in self.roots:
            return self._latex(self.roots[s] ** sp.Rational(e, 2))
        return self._latex(s**e)

    def _call(self, f) -> str:
        if isinstance(f, ModeTrace):  # Tr f(A), printed with this printer's notation
            body = f.args[0]
            (x,) = body.variables
            inner = matrix_function_latex(
                canonical(body.expr), {x: f.matrix_name}, self.lr_name, self.batch_name
            )
            return rf"\operatorname{{Tr}}\left[{inner}\right]"
        return self._latex(f)

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
    def product(
        self, coeff, factors, lr_power: int = 0, matrix: bool = False, bare: bool = False
    ) -> str:
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
        scalars = sorted(
            (s for s in symbols if s not in self.modes and s not in self.opaque), key=self._sort_key
        )
        calls = sorted((s for s in symbols if s in self.opaque), key=sp.default_sort_key)
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
        parts += [self.power(s, symbols[s]) for s in calls]
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
        return body if e == 1 else _power(body, e)

    def factored(self, expr, lr_power: int = 0, matrix: bool = False) -> tuple[bool, str]:
        """``(negative, body)`` of a polynomial printed as a product of oriented factors."""
        const, factors = _factor(expr)
        return bool(const < 0), self.product(abs(const), factors, lr_power, matrix)

    # -- sums --------------------------------------------------------------------------------
    def sum(self, f, matrix: bool = False) -> str:
        """A polynomial as a sum: by powers of the learning rate, lowest first, coefficients
        factored; without the learning rate, by monomials (scalar) or by matrix monomials."""
        return _join(self.sum_terms(_expanded(f), matrix))

    def sum_terms(self, f, matrix: bool) -> list[tuple[bool, str]]:
        if f.is_Add and len(f.args) > _MAX_COLLECT_TERMS and not self.has_modes(f):
            return self._large_terms(f)
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

    def _large_terms(self, f) -> list[tuple[bool, str]]:
        """A long polynomial straight from its monomials: ``a + λ (b + …) + λ² (…)``."""
        gens = sorted(f.free_symbols - {lr}, key=self._sort_key)
        poly = sp.Poly(f, lr, *gens, expand=False)
        groups: dict = {}
        for monom, coeff in poly.terms():
            groups.setdefault(monom[0], []).append((monom[1:], coeff))
        out = []
        for k in sorted(groups):
            terms = sorted(groups[k], key=lambda t: (sum(t[0]), [-e for e in t[0]]))
            rendered = [
                (bool(coeff < 0), self.product(abs(coeff), [(g, e) for g, e in zip(gens, m) if e]))
                for m, coeff in terms
            ]
            if k == 0:
                out += rendered
                continue
            negative = all(neg for neg, _ in rendered)
            if negative:
                rendered = [(False, body) for _, body in rendered]
            inner = _join(_positive_first(rendered))
            head = self.power(lr, k)
            out.append((negative, head if inner == "1" else f"{head} {_paren(inner)}"))
        return _positive_first(out)

    def _plain_terms(self, f) -> list[tuple[bool, str]]:
        """Terms by total degree (numbers first), then lexicographically in print order."""
        gens = sorted(f.free_symbols, key=self._sort_key)
        if not gens:
            return [(bool(f < 0), self._latex(abs(f)))]
        terms = sorted(sp.Poly(f, *gens).terms(), key=lambda t: (sum(t[0]), [-e for e in t[0]]))
        out = []
        for monom, coeff in terms:
            powers = [(g, e) for g, e in zip(gens, monom) if e]
            out.append((bool(coeff < 0), self.product(abs(coeff), powers)))
        return _positive_first(out)

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
            return self.sum(p, matrix)
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
    """A long expanded sum, its sign chosen positive at the reference point (not factored)."""
    point = {s: float(v) for s, v in reference_point(expr.free_symbols).items()}
    value = 0.0
    for term in expr.args:
        coeff, rest = term.as_coeff_Mul()
        x = float(coeff)
        for base, e in rest.as_powers_dict().items():
            x *= point[base] ** float(e) if base in point else 1.0
        value += x
    if value < 0:
        return sp.Integer(-1), [(sp.Add(*[-term for term in expr.args]), 1)]
    return sp.Integer(1), [(expr, 1)]


def _irreducible_sum(expr) -> bool:
    """Whether ``expr`` is a sum that does not factor (up to a sign)."""
    expr = sp.sympify(expr)
    if not expr.is_Add:
        return False
    const, factors = _factor(expr)
    return abs(const) == 1 and len(factors) == 1 and factors[0][1] == 1


def _by_size(factors: list) -> list:
    return sorted(
        factors,
        key=lambda fe: (len(sp.Add.make_args(sp.expand(fe[0]))), sp.default_sort_key(fe[0])),
    )


def _small(expr, limit: int = 200) -> bool:
    """Whether the sums in ``expr`` have at most ``limit`` terms in all (stops early)."""
    count, stack = 0, [expr]
    while stack:
        node = stack.pop()
        if node.is_Add:
            count += len(node.args)
            if count > limit:
                return False
        stack.extend(a for a in node.args if not a.is_Atom)
    return True


def _factor_product(expr) -> tuple[sp.Rational, dict]:
    """``(const, {factor: power})`` of a product of polynomials, factoring each part on its own
    (cheap for results that are already factored, as the solver's are)."""
    const, factors = sp.Integer(1), {}
    for part in sp.Mul.make_args(expr):
        base, exp = part.as_base_exp()
        if base.is_Number:
            const *= part
            continue
        c, fl = _factor(_expanded(base)) if exp.is_Integer and exp > 0 else (1, [(part, 1)])
        const *= sp.sympify(c) ** exp
        for f, e in fl:
            factors[f] = factors.get(f, 0) + e * (int(exp) if exp.is_Integer else 1)
    return const, factors


def _expanded(expr):
    """``expr`` expanded (without the cost of ``expand`` when it already is a flat sum)."""
    if expr.is_Add and not any(
        (a.is_Mul and any(x.is_Add for x in a.args)) or (a.is_Pow and a.base.is_Add)
        for a in expr.args
    ):
        return expr
    return sp.expand(expr)


def _split(expr):
    """``(const, num_factors, den_factors)`` of a rational function, factors oriented.

    Small expressions are cancelled first; large ones are taken as they are (the solver's
    results are already cancelled and factored)."""
    if expr.is_Add:
        expr = sp.together(expr)
    if _small(expr):
        expr = sp.cancel(expr)
    num, den = sp.fraction(expr)
    cn, fn = _factor_product(num)
    cd, fd = _factor_product(den)
    return sp.Rational(cn) / sp.Rational(cd), list(fn.items()), list(fd.items())


def _rational(expr) -> bool:
    """Whether ``expr`` is a rational function of its symbols with rational coefficients
    (one pass over the distinct subexpressions)."""
    seen, stack = set(), [sp.sympify(expr)]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.is_Symbol or node.is_Rational:
            continue
        if node.is_Add or node.is_Mul:
            stack.extend(node.args)
        elif node.is_Pow and node.exp.is_Integer:
            stack.append(node.base)
        else:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# public renderers
# ---------------------------------------------------------------------------------------------


def scalar_latex(expr, lr_name: str | None = None, batch_name: str | None = None) -> str:
    r"""A scalar rational function as ``\frac{numerator}{factored denominator}``.

    Factors are oriented positive near the origin of the stable region (small λ), sums are
    polynomials in λ with factored coefficients, lowest order first.  Expressions that are not
    rational in their symbols (and in square roots of symbols) fall back to ``sympy.latex``.
    The output parses back with :func:`symsgd.parse_formula`.

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
    '\\lambda {\\left[H \\left(2 I - \\lambda H\\right)\\right]}^{-1} C'
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
        elif len(mat_den) == 1:
            f, e = mat_den[0]
            out.append(_power(_paren(printer.sum(f, matrix=True)), -e))
        else:
            inner = printer.product(1, mat_den, matrix=True)
            out.append(_power(rf"\left[{inner}\right]", -1))
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


def matrix_latex(
    matrix: sp.MatrixBase, lr_name: str | None = None, batch_name: str | None = None
) -> tuple[str, str | None]:
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
    if not all(_rational(e) for e in entries):
        return latex_expr(matrix, **opts), None
    split: dict = {}
    for e in entries:  # symmetric matrices: each distinct entry once
        if e != 0 and e not in split:
            split[e] = _split(e)
    parts = [split.get(e) for e in entries]
    dens = [dict(p[2]) for p in parts if p is not None]
    common: dict = {}
    for d in dens:
        for f, e in d.items():
            common[f] = max(common.get(f, 0), e)
    shared = bool(dens) and all(d == common for d in dens)
    monomial = all(f.is_Symbol for f in common)

    def cells_of(render_one) -> str:
        rendered = {e: render_one(e) for e in split}
        cells = [rendered.get(e, "0") for e in entries]
        rows = [
            " & ".join(cells[i * matrix.cols : (i + 1) * matrix.cols]) for i in range(matrix.rows)
        ]
        return r"\begin{pmatrix} " + r" \\ ".join(rows) + r" \end{pmatrix}"

    def fraction(e) -> str:
        return printer.fraction(*split[e])

    if monomial or (shared and len(dens) == 1):
        return cells_of(fraction), None
    if not shared:
        body = cells_of(fraction)
        if len(body) <= _MAX_ENTRYWISE:
            return body, None
    # numerators over D = Π common factors: const · num · Π f^(E_f − e_f)
    numerators = {}
    for e, (const, num, den) in split.items():
        factors, den = dict(num), dict(den)
        for f, k in common.items():
            if k > den.get(f, 0):
                factors[f] = factors.get(f, 0) + k - den.get(f, 0)
        numerators[e] = (const, factors)
    values = list(numerators.values())
    shared_factors = {f: min(n[1].get(f, 0) for n in values) for f in values[0][1]}
    shared_factors = {f: k for f, k in shared_factors.items() if k > 0}
    g_const = sp.Rational(sp.igcd(*[n[0].p for n in values]), sp.ilcm(*[n[0].q for n in values]))

    def cell(e) -> str:
        const, factors = numerators[e]
        const = const / g_const
        factors = [(f, k - shared_factors.get(f, 0)) for f, k in factors.items()]
        factors = [(f, k) for f, k in factors if k]
        if abs(const) == 1 and len(factors) == 1 and factors[0][1] == 1 and factors[0][0].is_Add:
            terms = printer.sum_terms(_expanded(factors[0][0]), False)
            if const < 0:
                terms = _positive_first([(not neg, body) for neg, body in terms])
            return _join(terms)
        return printer.fraction(const, factors, [])

    matrix_body = cells_of(cell)
    num = printer.product(g_const.p, list(shared_factors.items()))
    den = "D" if g_const.q == 1 else f"{g_const.q} D"
    body = rf"\frac{{{num}}}{{{den}}} {matrix_body}"
    return body, f"D = {printer.product(1, list(common.items()), bare=True)}"


def structured_latex(
    form,
    K_name: str = "K",
    F_name: str = "F",
    names: dict | None = None,
    values: dict | None = None,
) -> tuple[str, str]:
    r"""``(body, where)`` of a :class:`symsgd.cayley.StructuredForm`: the formula in LaTeX
    and the definitions of :math:`D` and of the invariants :math:`e_k` of K,
    :math:`\det(xI - K) = \sum_k (-1)^k e_k x^{n-k}`
    (:math:`e_1 = \operatorname{tr} K`, :math:`e_n = \det K`), in which :math:`D` and the
    :math:`g_{\alpha\beta}` are written.  ``names`` maps sympy symbols to LaTeX;
    ``values`` are substituted parameters.

    >>> import sympy as sp
    >>> from symsgd.cayley import solve_stein
    >>> h, c, lam = sp.symbols("h c lambda", positive=True)
    >>> H, C = sp.Matrix([[h, 1], [1, 2]]), sp.Matrix([[c, 1], [1, 2]])
    >>> X, den, form = solve_stein(sp.eye(2) - lam * H, lam**2 * C, "structured")
    >>> print(structured_latex(form, "H", "C")[1])
    D = e_{2} \left(e_{1} - e_{2} \lambda\right) \left(- 2 e_{1} \lambda + e_{2} \lambda^{2}
    + 4\right),\quad \det(x I - H) = x^{2} - e_{1} x + e_{2}
    """
    uni, n = form.universal, form.universal.n
    e = [sp.Symbol(f"e_{k}", positive=True) for k in range(1, n + 1)]
    c = [(-1) ** (n - a) * e[n - a - 1] for a in range(n)]  # c_a = (-1)^{n-a} e_{n-a}
    names = dict(names or {})

    values = dict(values or {})

    def tex(expr) -> str:
        return sp.latex(expr.xreplace(values) if values else expr, symbol_names=names)

    s_dummy = sp.Dummy("s")
    to_sympy = FlintRing((*c, s_dummy)).to_sympy

    def poly(p) -> sp.Expr:
        return sp.expand(to_sympy(p).xreplace({s_dummy: form.s}))

    const, factors = form.invariant_denominator(e, poly)
    Kt = K_name if form.K == form.K.T else K_name + r"^{\top}"

    def power(name: str, k: int) -> str:
        if k == 0:
            return ""
        if k == 1:
            return name
        base = f"{{{name}}}" if "^" in name else name  # {K^{\top}}^{2}, not K^{\top}^{2}
        return f"{base}^{{{k}}}"

    coeffs = [poly(g) for g in uni.g]
    # the constant of D and the integer content of the g's go into the prefactor, with
    # the sign that makes it positive
    content = (
        sp.gcd_list([sp.Poly(g, *e, *g.free_symbols - set(e)).content() for g in coeffs if g != 0])
        if e
        else 1
    )
    prefactor = sp.factor(form.scale * content / const)
    if prefactor.could_extract_minus_sign():
        prefactor, content = -prefactor, -content
    terms = []
    for (a, b), coeff in zip(uni.basis, coeffs):
        coeff = sp.expand(coeff / content)
        if coeff == 0:
            continue
        word = power(K_name, a) + F_name + power(Kt, b)
        if a != b:
            word = rf"\left({word} + {power(K_name, b) + F_name + power(Kt, a)}\right)"
        text = tex(coeff)
        if coeff.is_Add:
            text = rf"\left({text}\right)"
        elif coeff in (1, -1):
            text = "" if coeff == 1 else "-"
        terms.append(f"{text} {word}".strip())
    body = " + ".join(terms).replace("+ -", "- ")
    D = sp.Mul(*[f**m for f, m in factors])
    top, bottom = sp.fraction(prefactor)
    bottom = "" if bottom == 1 else tex(bottom) + " "
    char = "".join(
        [f"x^{{{n}}}" if n > 1 else "x"]
        + [
            f" {'-' if k % 2 else '+'} e_{{{k}}}"
            + (f" x^{{{n - k}}}" if n - k > 1 else "")
            + (" x" if n - k == 1 else "")
            for k in range(1, n + 1)
        ]
    )
    where = rf"D = {tex(D)},\quad \det(x I - {K_name}) = {char}"
    for name, matrix in ((K_name, form.K), (F_name, form.F)):
        if name in ("K", "F"):  # not the problem's own H or C: say what it is
            where += rf",\quad {name} = {tex(matrix)}"
    return rf"\frac{{{tex(top)}}}{{{bottom}D}}\Bigl[{body}\Bigr]", where


def render(
    lhs: str,
    expr,
    *,
    names: dict | None = None,
    env: str | None = None,
    lr_name: str | None = None,
    batch_name: str | None = None,
) -> str:
    r"""LaTeX of ``lhs = expr`` for a scalar, an eigen-mode result (``names``) or a matrix.

    ``env=None`` gives the bare right-hand side (followed by ``, \quad \text{where } D = …``
    for the common-denominator layout); ``env="align"`` (or ``"align*"``) gives
    ``lhs &= …`` with the "where" definition on its own line; ``env="equation"`` (or
    ``"equation*"``) one line.  The common denominator of a matrix is found from its entries.

    >>> import sympy as sp
    >>> from symsgd.symbols import lr
    >>> h, c = sp.symbols("h c", positive=True)
    >>> print(render(r"\Sigma", lr * c / (h * (2 - lr * h)), names={h: "H", c: "C"}, env="align"))
    \begin{align}
    \Sigma &= \lambda {\left[H \left(2 I - \lambda H\right)\right]}^{-1} C
    \end{align}
    """
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
    return layout(lhs, body, where, env)


def layout(lhs: str, body: str, where: str | None = None, env: str | None = None) -> str:
    r"""``body`` (and its "where" definitions) bare (``env=None``) or as ``lhs = body`` in an
    ``equation``/``align`` environment (see :func:`render`).

    >>> print(layout(r"\Sigma", r"\frac{a}{D}", "D = 2", env="align*"))
    \begin{align*}
    \Sigma &= \frac{a}{D} \\
    \text{where } D &= 2
    \end{align*}
    """
    if env is not None and env not in ENVIRONMENTS:
        raise ValueError(
            f"env must be None or one of {', '.join(map(repr, ENVIRONMENTS))}; got {env!r}."
        )
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
