r"""Stein and Lyapunov equations solved in the tensor square of a characteristic algebra.

With :math:`M = I - sK` (``s`` the scalar content of :math:`I - M`, e.g. the learning rate of
SGD, where :math:`K = H`), the stationary equation :math:`X - MXM^\top = F` reads

.. math:: \mathcal L_s(X) \equiv KX + XK^\top - s\,KXK^\top = F/s ,

and ``s = 0`` is the continuous-time Lyapunov equation :math:`KX + XK^\top = F`.

Let :math:`p(x) = \det(xI - K) = x^n + \sum_{a<n} c_a x^a` and :math:`A = \mathbb Z[c, s][x]/(p)`.
The map :math:`\varphi(x^\alpha y^\beta) = K^\alpha F K^{\top\beta}` is well defined on
:math:`A \otimes A` (Cayley–Hamilton: :math:`p(K) = p(K^\top) = 0`) and turns multiplication by
:math:`u = x + y - sxy` into :math:`\mathcal L_s`.  So if :math:`u\,g = 1` in the symmetric
square :math:`\operatorname{Sym}^2 A` then :math:`X = \varphi(g)` solves the equation:

.. math:: X = \frac{1}{D(c, s)} \sum_{\alpha \le \beta} g_{\alpha\beta}(c, s)\,
   \bigl(K^\alpha F K^{\top\beta} + K^\beta F K^{\top\alpha}\bigr)\quad(\alpha<\beta;
   \text{ one term for } \alpha=\beta),

with :math:`D = \det(u \text{ on } \operatorname{Sym}^2 A) = \prod_{i \le j}(k_i + k_j - s k_i k_j)`
over the eigenvalues of K.  The coefficients :math:`g_{\alpha\beta}` and :math:`D` are
*universal*: polynomials in the n + 1 symbols (c, s) alone, derived once per n by fraction-free
elimination on an n(n+1)/2 system (:func:`universal`) and cached.  A concrete problem then costs
a characteristic polynomial, a polynomial composition and matrix products — no elimination over
the problem's own symbols, whose size is what makes the half-vectorised system explode.

Two output forms (:func:`solve_stein`):

``expanded``
    every entry one cancelled polynomial fraction (the same canonical form the elimination
    solver gives), for problems whose expanded answer is small;
``structured``
    numerator :math:`\sum g_{\alpha\beta}(c, s)(K^\alpha F K^{\top\beta} + \dots)` kept in terms
    of the characteristic coefficients and matrix powers, over the factored :math:`D`.  This is
    exact and cancelled up to an integer constant (checked on random lines, see
    :meth:`SteinSolution._coprime_on_line`) and keeps
    ``subs`` and ``lambdify`` fast when the expanded answer has millions of terms (fully
    symbolic SGD with d = 4: 1.3·10⁶ terms per entry).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sympy as sp

from .exact import (
    FlintRing,
    FlintSolution,
    bareiss_solve,
    cancelled,
    factor_list,
    flint_factor,
    reference_point,
)
from .moments import from_halfvec

try:
    import flint
except ImportError:  # pragma: no cover - python-flint is a hard dependency
    flint = None

__all__ = [
    "CACHE_FORMAT",
    "EXPAND_LIMIT",
    "PERSIST_FROM",
    "NotApplicable",
    "SteinSolution",
    "StructuredForm",
    "cache_dir",
    "cache_file",
    "check_universal",
    "derive_universal",
    "read_cached_universal",
    "shifted_characteristic",
    "solve_stein",
    "universal",
    "write_cached_universal",
]

#: largest number of terms of the composed denominator for which the expanded form is built
EXPAND_LIMIT = 20_000
#: largest composed factor of D that is factored further and printed expanded
_FACTOR_LIMIT = 3_000


class NotApplicable(Exception):
    """The matrices are not integer polynomials in their symbols (use the elimination solver)."""


@dataclass(frozen=True)
class Universal:
    """The universal inverse of :math:`u = x + y - sxy` on :math:`\\operatorname{Sym}^2 A`."""

    n: int
    ctx: object  # fmpz_mpoly context in c_0, ..., c_{n-1}, s
    basis: tuple[tuple[int, int], ...]  # (α, β), α ≤ β
    g: tuple  # numerators g_{αβ}, aligned with basis
    D: object  # common denominator


@dataclass(frozen=True)
class StructuredForm:
    r"""The structured solution :math:`X = \frac{\text{scale}}{D}\sum_{\alpha\le\beta}
    g_{\alpha\beta}\,(K^\alpha F K^{\top\beta} + \dots)`, kept for display."""

    universal: Universal
    c: tuple  # coefficients c_a of det(xI - K), in the problem's symbols
    s: sp.Expr
    scale: sp.Expr  # f / s
    K: sp.ImmutableMatrix
    F: sp.ImmutableMatrix

    def invariant_denominator(self, e: list, poly) -> tuple[sp.Expr, list]:
        """``(constant, [(factor, power)])`` of D in the invariants ``e`` (``poly`` maps a
        universal polynomial to them), each factor positive for a positive-definite K with
        small ``s``: oriented at the invariants of diag(1, ..., n)."""
        n = self.universal.n
        const, factors = factor_list(poly(self.universal.D))
        x = sp.Symbol("x")
        roots = sp.Poly(sp.prod([x - k for k in range(1, n + 1)]), x).all_coeffs()
        at = {e[k - 1]: (-1) ** k * roots[k] for k in range(1, n + 1)}
        rest = set().union(*(f.free_symbols for f, _ in factors)) - set(e)
        at.update(reference_point(rest))
        oriented = []
        for f, m in factors:
            if f.xreplace(at) < 0:
                f, const = sp.expand(-f), const * (-1) ** m
            oriented.append((f, m))
        return const, oriented

    def products(self) -> list[sp.Matrix]:
        r"""The symmetrised :math:`K^\alpha F K^{\top\beta}` of the basis (sympy: sums of
        products of expanded matrix powers, F and expanded matrix powers, left unexpanded;
        the powers are expanded in python-flint and zero factors are skipped, so no sympy
        matrix product meets ``0 * (huge sum)``)."""
        n = self.K.rows
        powers = _sympy_powers(self.K, n)
        F = [[self.F[i, j] for j in range(n)] for i in range(n)]
        left: dict = {}
        out = []
        for a, b in self.universal.basis:
            if a not in left:
                left[a] = _sparse_matmul(powers[a], F)
            P = _sparse_matmul(left[a], powers[b], transpose=True)
            if a != b:
                P = [[P[i][j] + P[j][i] for j in range(n)] for i in range(n)]
            out.append(sp.Matrix(P))
        return out

    def series(self, symbol: sp.Symbol, n: int) -> sp.Matrix:
        r"""Taylor series of the solution in ``symbol`` about 0 up to and excluding order
        ``n``, when ``symbol`` is ``s`` itself and K, F and the characteristic coefficients do
        not depend on it (e.g. the learning rate of SGD).  The coefficients of
        :math:`g_{\alpha\beta}/D` in ``s`` are universal: with :math:`D = \sum_k d_k s^k`,
        :math:`q_k d_0^{k+1} = g_k d_0^{k} - \sum_{j\ge1} d_j\, (q_{k-j} d_0^{k-j+1})\,
        d_0^{j-1}`; :math:`d_0 = \prod_{i\le j}(k_i + k_j)` is the continuous-time
        denominator."""
        depends = set().union(*(sp.sympify(e).free_symbols for e in self.c))
        depends |= self.K.free_symbols | self.F.free_symbols
        rate = sp.cancel(self.s / symbol)  # s = rate * symbol, or s free of the symbol
        linear = symbol not in rate.free_symbols and self.s != 0
        if symbol in depends or not (linear or symbol not in self.s.free_symbols):
            raise ValueError(
                f"series() in {symbol} of a structured result needs K, F and the "
                f"characteristic coefficients free of {symbol} and s = {self.s} linear in it or "
                f"free of it."
            )
        if n < 1:
            return sp.zeros(*self.K.shape)
        uni = self.universal
        c = sp.symbols(f"c0:{uni.n}")
        s = sp.Symbol("s")
        conv = FlintRing((*c, s)).to_sympy
        values = dict(zip(c, self.c))
        if not linear:  # g/D does not depend on the symbol: only the prefactor is expanded
            D = conv(uni.D).xreplace({**values, s: self.s})
            fixed = sum(
                (
                    (conv(g).xreplace({**values, s: self.s}) / D) * P
                    for g, P in zip(uni.g, self.products())
                ),
                sp.zeros(*self.K.shape),
            )
            return fixed * sp.series(self.scale, symbol, 0, n).removeO()
        D = sp.Poly(conv(uni.D), s)
        d = [D.coeff_monomial(s**k) for k in range(n + 1)]
        d0 = d[0]
        scale = sp.Poly(sp.series(self.scale, symbol, 0, n).removeO(), symbol)
        scale_terms = {m[0]: coeff for m, coeff in scale.terms() if m[0] < n}
        order = n - min(scale_terms, default=n)  # orders of g/D needed
        per_order = [sp.zeros(*self.K.shape) for _ in range(order)]
        for g, P in zip(uni.g, self.products()):
            G = sp.Poly(conv(g), s)
            gk = [G.coeff_monomial(s**k) for k in range(n + 1)]
            nums: list = []  # nums[k] = q_k d0^{k+1}
            for k in range(order):
                acc = gk[k] * d0**k - sum(
                    d[j] * nums[k - j] * d0 ** (j - 1) for j in range(1, k + 1)
                )
                nums.append(sp.expand(acc))
                term = nums[k].xreplace(values) / d0.xreplace(values) ** (k + 1)
                per_order[k] += (term * rate**k) * P
        out = sp.zeros(*self.K.shape)
        for j, a in scale_terms.items():
            for k in range(min(order, n - j)):
                out += (a * symbol ** (j + k)) * per_order[k]
        return out


def _sparse_matmul(X: list[list], Y: list[list], transpose: bool = False) -> list[list]:
    """``X Y`` (``X Yᵀ`` with ``transpose``) of sympy entries as lists, each entry one
    ``Add`` of the nonzero products."""
    n, m = len(X), len(X[0])
    p = len(Y) if transpose else len(Y[0])
    out = []
    for i in range(n):
        row = []
        for j in range(p):
            terms = []
            for k in range(m):
                x, y = X[i][k], (Y[j][k] if transpose else Y[k][j])
                if x != 0 and y != 0:
                    terms.append(x * y)
            row.append(sp.Add(*terms))
        out.append(row)
    return out


def _sympy_powers(K: sp.MatrixBase, n: int) -> list[list[list]]:
    r""":math:`K^0, \dots, K^{n-1}` as lists of expanded sympy entries (multiplied in
    python-flint when the entries are integer polynomials, else by sympy)."""
    entries = [sp.expand(e) for e in K]
    ring = None
    if any(sp.sympify(e).free_symbols for e in entries):
        ring, polys = FlintRing.of(entries)
        if any(not p.domain.is_ZZ for p in polys):
            ring = None
    if ring is None:
        powers = [sp.eye(n)]
        for _ in range(1, n):
            powers.append((powers[-1] * K).applyfunc(sp.expand))
        return [[[P[i, j] for j in range(n)] for i in range(n)] for P in powers]
    flat = [ring.from_poly(p)[0] for p in polys]
    Kf = [flat[i * n : (i + 1) * n] for i in range(n)]
    zero = ring.zero
    current = [[ring.one if i == j else zero for j in range(n)] for i in range(n)]
    out = []
    for k in range(n):
        if k:
            current = _matmul(current, Kf, zero)
        out.append([[ring.to_sympy(e) for e in row] for row in current])
    return out


def _reduction_table(n: int, c: list, one, zero) -> list[list]:
    """``table[k][a]``: coefficient of x^a in x^k mod p(x), for k ≤ n."""
    table = [[one if a == k else zero for a in range(n)] for k in range(n)]
    prev = table[-1]
    new = [zero] * n
    for a in range(n):  # x^n = -sum_a c_a x^a
        new[a] = -c[a] * prev[n - 1]
    table.append(new)
    return table


#: version of the on-disk format of :func:`universal`'s cache (a file of another version is
#: ignored and rewritten)
CACHE_FORMAT = 1
#: the universal polynomials of dimensions from this one on are kept on disk (below it,
#: deriving them takes milliseconds: n = 5 in 5 ms, n = 6 in 25 ms, n = 8 in 2 s)
PERSIST_FROM = 6


def _universal_system(n: int) -> tuple:
    """``(ctx, one, basis, rows)``: multiplication by u on Sym²A as an N×(N+1) system with
    right-hand side 1 = x⁰y⁰ (N = n(n+1)/2)."""
    names = (*(f"c{a}" for a in range(n)), "s")
    ctx = flint.fmpz_mpoly_ctx.get(names, "lex")
    *c, s = ctx.gens()
    zero, one = ctx.from_dict({}), ctx.from_dict({(0,) * (n + 1): 1})
    table = _reduction_table(n, c, one, zero)
    basis = [(a, b) for a in range(n) for b in range(a, n)]
    index = {pair: k for k, pair in enumerate(basis)}

    def times_u(a: int, b: int) -> dict:
        out: dict = {}
        for da, db, coef in ((1, 0, one), (0, 1, one), (1, 1, -s)):
            for i, ri in enumerate(table[a + da]):
                if ri.is_zero():
                    continue
                for j, rj in enumerate(table[b + db]):
                    if not rj.is_zero():
                        out[i, j] = out.get((i, j), zero) + coef * ri * rj
        return out

    N = len(basis)
    rows = [[zero] * (N + 1) for _ in range(N)]
    for col, (a, b) in enumerate(basis):
        image = times_u(a, b)
        if a != b:
            for key, value in times_u(b, a).items():
                image[key] = image.get(key, zero) + value
        for (i, j), value in image.items():
            if i <= j:  # the image is symmetric: read it on the basis
                rows[index[i, j]][col] += value
    rows[0][N] = one  # g * u = 1 = x^0 y^0
    return ctx, one, tuple(basis), rows


def _pair_product_at_roots(n: int) -> tuple[list[int], int]:
    r"""The point ``(c, s)`` of the roots 1..n at s = 0 and the value there of
    :math:`\prod_{i\le j}(k_i + k_j)`."""
    x = flint.fmpz_poly([1])
    for k in range(1, n + 1):
        x = x * flint.fmpz_poly([-k, 1])
    value = 1
    for i in range(1, n + 1):
        for j in range(i, n + 1):
            value *= i + j
    return [int(x[a]) for a in range(n)] + [0], value


def derive_universal(n: int) -> Universal:
    r"""Derive the universal inverse of dimension ``n`` (fraction-free elimination on the
    n(n+1)/2 system; no cache).  :func:`universal` is the cached entry point."""
    if n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    ctx, one, basis, rows = _universal_system(n)
    nums, dens = bareiss_solve(rows, one)
    D = one
    for q in dens:
        D = D * (q / D.gcd(q))
    g = [p * (D / q) for p, q in zip(nums, dens)]
    # fix the sign so that D is the product itself: at the roots 1..n and s = 0 it must be
    # prod_{i<=j} (i + j) > 0
    at, _ = _pair_product_at_roots(n)
    if int(D(*at)) < 0:
        D, g = -D, [-p for p in g]
    return Universal(n, ctx, basis, tuple(g), D)


def check_universal(uni: Universal) -> bool:
    r"""True if ``uni`` is the universal inverse of its dimension: :math:`u\,g = D` holds
    exactly in :math:`\operatorname{Sym}^2 A` (so :math:`g/D` is the inverse of u, whatever
    produced it) and D is :math:`\prod_{i\le j}(k_i + k_j - sk_ik_j)` itself, not a multiple:
    equal to it at the roots 1..n with s = 0 and at two further integer root sets with
    integer s (a multiple of D by a nonconstant factor, or by an integer other than 1, would
    have to take the value 1 at all three points).

    >>> check_universal(universal(3))
    True
    """
    n = uni.n
    _, one, basis, rows = _universal_system(n)
    if tuple(uni.basis) != basis or len(uni.g) != len(basis) or uni.D.is_zero():
        return False
    N = len(basis)
    for r, row in enumerate(rows):
        lhs = sum((row[k] * uni.g[k] for k in range(N) if not row[k].is_zero()), one - one)
        if lhs != (uni.D if r == 0 else one - one):
            return False
    rng = random.Random(n)
    points = [[k for k in range(1, n + 1)] + [0]]
    points += [[rng.randint(-50, 50) for _ in range(n)] + [rng.randint(-50, 50)] for _ in (0, 1)]
    for *roots, s in points:
        poly = flint.fmpz_poly([1])
        for k in roots:
            poly = poly * flint.fmpz_poly([-k, 1])
        value = 1
        for i in range(n):
            for j in range(i, n):
                value *= roots[i] + roots[j] - s * roots[i] * roots[j]
        if int(uni.D(*[int(poly[a]) for a in range(n)], s)) != value:
            return False
    return True


def cache_dir() -> Path:
    """The directory of the on-disk cache: ``$SYMSGD_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/symsgd``, else ``~/.cache/symsgd``.

    >>> override = os.environ.get("SYMSGD_CACHE_DIR")
    >>> cache_dir() == (Path(override).expanduser() if override else cache_dir().parent / "symsgd")
    True
    """
    override = os.environ.get("SYMSGD_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symsgd"


def cache_file(n: int) -> Path:
    """The file that keeps the universal polynomials of dimension ``n``."""
    return cache_dir() / f"universal-{n}.v{CACHE_FORMAT}.json"


def _poly_text(p) -> str:
    """The stable text form of an ``fmpz_mpoly``: python-flint's own (terms in the context's
    lex order, ``coefficient*c0^k*...``), which ``flint.fmpz_mpoly(text, ctx)`` reads back."""
    return str(p)


def _payload(uni: Universal) -> dict:
    return {
        "format": CACHE_FORMAT,
        "n": uni.n,
        "variables": [*(f"c{a}" for a in range(uni.n)), "s"],
        "basis": [list(pair) for pair in uni.basis],
        "D": _poly_text(uni.D),
        "g": [_poly_text(p) for p in uni.g],
    }


def _checksum(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_cached_universal(uni: Universal) -> bool:
    """Store ``uni`` in :func:`cache_file` atomically (a temporary file in the same directory,
    renamed over the target) with its format version and SHA-256 checksum; False (and nothing
    written) when the directory cannot be created or written."""
    payload = _payload(uni)
    document = {"payload": payload, "sha256": _checksum(payload)}
    target = cache_file(uni.n)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, sort_keys=True, separators=(",", ":"))
        os.replace(tmp, target)
        return True
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return False


def read_cached_universal(n: int) -> Universal | None:
    """The universal polynomials of dimension ``n`` from :func:`cache_file`, or None when
    there is no file or it is not trusted: unreadable, another format version or
    dimension, a checksum mismatch, or polynomials that fail :func:`check_universal`."""
    try:
        document = json.loads(cache_file(n).read_text())
        payload = document["payload"]
        if payload["format"] != CACHE_FORMAT or payload["n"] != n:
            return None
        if document["sha256"] != _checksum(payload):
            return None
        names = (*(f"c{a}" for a in range(n)), "s")
        if payload["variables"] != list(names):
            return None
        ctx = flint.fmpz_mpoly_ctx.get(names, "lex")

        def poly(text):
            if not isinstance(text, str):
                raise TypeError("a polynomial is stored as text")
            return flint.fmpz_mpoly(text, ctx)

        basis = tuple((int(a), int(b)) for a, b in payload["basis"])
        uni = Universal(n, ctx, basis, tuple(poly(t) for t in payload["g"]), poly(payload["D"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return uni if check_universal(uni) else None


@cache
def universal(n: int) -> Universal:
    r"""Solve :math:`(x + y - sxy)\,g = 1` in :math:`\operatorname{Sym}^2(\mathbb Z[c,s][x]/(p))`.

    Returns the numerators :math:`g_{\alpha\beta}` (basis :math:`x^\alpha y^\beta + x^\beta
    y^\alpha`, or :math:`x^\alpha y^\alpha`) over the common denominator
    :math:`D = \prod_{i\le j}(k_i + k_j - s k_i k_j)`, as polynomials in the coefficients
    :math:`c_0, \dots, c_{n-1}` of the monic :math:`p` and in ``s``.

    Kept once per process; from :data:`PERSIST_FROM` on also on disk (:func:`cache_file`):
    a cached file is used only when its checksum and format match and the polynomials pass
    :func:`check_universal`, else they are derived again and the file rewritten.

    >>> u = universal(1)
    >>> u.D, u.g   # n = 1: p = x + c0, k = -c0, so D = 2k - s k^2
    (-c0^2*s - 2*c0, (1,))
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    if n < PERSIST_FROM:
        return derive_universal(n)
    uni = read_cached_universal(n)
    if uni is None:
        uni = derive_universal(n)
        write_cached_universal(uni)
    return uni


def charpoly_coefficients(K: list[list], one) -> list:
    """Coefficients ``c_0..c_{n-1}`` of the monic :math:`\\det(xI - K)` (Faddeev–LeVerrier;
    every division by an integer is exact because the coefficients are integer polynomials)."""
    n = len(K)
    zero = one - one
    coeffs = [one]  # coefficient of x^n, x^{n-1}, ...
    Mk = [[one if i == j else zero for j in range(n)] for i in range(n)]
    for k in range(1, n + 1):
        if k > 1:
            for i in range(n):
                Mk[i][i] = Mk[i][i] + coeffs[-1]
        KM = _matmul(K, Mk, zero)
        coeffs.append(-sum((KM[i][i] for i in range(n)), zero) / k)
        Mk = KM
    return [coeffs[n - a] for a in range(n)]


def _matmul(X: list[list], Y: list[list], zero) -> list[list]:
    n, m, p = len(X), len(Y), len(Y[0])
    return [[sum((X[i][k] * Y[k][j] for k in range(m)), zero) for j in range(p)] for i in range(n)]


def _content(entries: list, one):
    """gcd of the nonzero entries (``one`` if there are none)."""
    content = None
    for e in entries:
        if not e.is_zero():
            content = e if content is None else content.gcd(e)
    if content is None or content.is_constant():
        return one
    return content


class SteinSolution:
    r"""The solution of :math:`X - MXM^\top = F` in the characteristic-algebra form.

    Holds every piece as python-flint polynomials; :meth:`expanded` and :meth:`structured`
    produce sympy output.
    """

    def __init__(self, M: sp.MatrixBase, F: sp.MatrixBase, continuous: bool = False):
        if flint is None:  # pragma: no cover
            raise NotApplicable("python-flint is not installed")
        n = M.rows
        K0 = M if continuous else sp.eye(n) - M
        entries = [sp.expand(e) for e in list(K0) + list(F)]
        try:
            ring, polys = FlintRing.of(entries)
        except sp.PolificationFailed:
            raise NotApplicable("no symbols") from None
        if any(not p.domain.is_ZZ for p in polys) or any(
            not (g.is_Symbol or g.is_Pow or g.is_Function) for g in ring.gens
        ):
            raise NotApplicable("not integer polynomials")
        self.ring = ring
        self.n, self.gens, self.ctx, self.one = n, ring.gens, ring.ctx, ring.one
        flat = [ring.from_poly(p)[0] for p in polys]
        K = [flat[i * n : (i + 1) * n] for i in range(n)]
        F = [flat[n * n + i * n : n * n + (i + 1) * n] for i in range(n)]
        # discrete: M = I - a K' and F = f F', so L_a(X) = (f/a) F'
        # continuous (s = 0): A = a K', so K'X + XK'^T = (f/a) F'
        a = _content([e for row in K for e in row], self.one)
        f = _content([e for row in F for e in row], self.one)
        common = a.gcd(f)
        self.s = self.one - self.one if continuous else a
        self.ratio = (f / common, a / common)  # f/a cancelled
        self.K = [[e / a for e in row] for row in K]
        self.F = [[e / f for e in row] for row in F]
        self.universal = universal(n)
        self.c = charpoly_coefficients(self.K, self.one)
        #: fmpz_mpoly -> sympy in the problem's generators
        self.converter = ring.to_sympy

    # -- the universal polynomials at this problem's coefficients ---------------------------
    def _compose(self, p):
        return p.compose(*self.c, self.s, ctx=self.ctx)

    def _compose_within(self, p, cap: int):
        """``p(c(K), s)``, or None as soon as a partial result has more than ``cap`` terms
        (so deciding that an answer is too big to expand never builds it)."""
        values = [*self.c, self.s]
        powers: dict = {}
        total = self.one - self.one
        for monomial, coeff in p.terms():
            term = self.one * int(coeff)
            for var, k in enumerate(monomial):
                if not k:
                    continue
                power = self._power_within(powers, values[var], var, k, cap)
                if power is None:
                    return None
                term = term * power
                if len(term) > cap:
                    return None
            total = total + term
        return total if len(total) <= cap else None

    @staticmethod
    def _power_within(powers: dict, value, var: int, k: int, cap: int):
        """``value**k`` built by repeated multiplication (memoised in ``powers``), or None as
        soon as a power on the way has more than ``cap`` terms (fully symbolic d = 5: c_0**6
        has 4·10⁶ terms, c_0**3 already more than the cap)."""
        if (var, k) in powers:
            return powers[var, k]
        known = [e for (v, e) in powers if v == var]
        if any(powers[var, e] is None for e in known if e < k):
            return None  # a lower power is already over the cap
        j = max((e for e in known if e < k), default=0)
        power = powers[var, j] if j else None
        while j < k:
            power = value if power is None else power * value
            j += 1
            if len(power) > cap:
                powers[var, j] = None
                return None
            powers[var, j] = power
        return power

    def fits(self, cap: int = EXPAND_LIMIT) -> bool:
        """True if the composed denominator D(c(K), s) has at most ``cap`` terms (the expanded
        answer is then small enough to build)."""
        return self._compose_within(self.universal.D, cap) is not None

    def _products(self, K: list[list], F: list[list], one) -> list[list[list]]:
        """:math:`K^\alpha F K^{\top\beta}` symmetrised, for the universal basis (entries in
        any polynomial ring: the problem's or a line's)."""
        n, zero = self.n, one - one
        powers = [[[one if i == j else zero for j in range(n)] for i in range(n)]]
        for _ in range(1, n):
            powers.append(_matmul(powers[-1], K, zero))
        out = []
        for a, b in self.universal.basis:
            left = _matmul(powers[a], F, zero)
            P = _matmul(left, [list(r) for r in zip(*powers[b])], zero)
            if a != b:
                P = [[P[i][j] + P[j][i] for j in range(n)] for i in range(n)]
            out.append(P)
        return out

    # -- expanded output --------------------------------------------------------------------
    def expanded(self) -> tuple[list, sp.Expr]:
        """Upper-triangular entries (row-major), each cancelled and canonical, and the factored
        common denominator — exactly the form :func:`symsgd.exact.solve_canonical` returns."""
        zero = self.one - self.one
        D = self._compose(self.universal.D)
        g = [self._compose(p) for p in self.universal.g]
        products = self._products(self.K, self.F, self.one)
        fnum, sden = self.ratio
        nums, dens = [], []
        for i in range(self.n):
            for j in range(i, self.n):
                num = fnum * sum((gk * P[i][j] for gk, P in zip(g, products)), zero)
                num, den = cancelled(num, sden * D, self.one)
                nums.append(num)
                dens.append(den)
        return FlintSolution(nums, dens, self.ring).canonical()

    # -- structured output ------------------------------------------------------------------
    def solve(
        self, form: str = "auto"
    ) -> tuple[sp.ImmutableMatrix, sp.Expr, StructuredForm | None]:
        """``(X, denominator, structured form or None)``: the structured form when ``form`` asks
        for it (or, for ``"auto"``, when the expanded entries would be too large), else the
        expanded canonical entries.  ``ValueError`` for a singular equation."""
        if self.singular():
            raise ValueError(
                "the stationary equation is singular: the recursion has no unique stationary "
                "second moment for generic parameters (a marginally stable mode?)."
            )
        if form == "structured" or (form == "auto" and not self.fits()):
            out = self.structured()
            if out is not None:
                return out
            if form == "structured":
                raise ValueError(
                    "form='structured' is not available here: a numerator shares a factor with "
                    "the characteristic denominator for these matrices; use form='expanded'."
                )
        entries, denominator = self.expanded()
        return from_halfvec(self.n, entries), denominator, None

    def structured(self) -> tuple[sp.ImmutableMatrix, sp.Expr, StructuredForm] | None:
        """The symmetric solution in the characteristic-algebra form and its factored
        denominator (see the module docstring); None when a numerator shares a factor with
        the denominator (the form would not be cancelled: use :meth:`expanded`)."""
        conv = self.converter
        n, uni = self.n, self.universal
        cs = [sp.Dummy(f"c{a}") for a in range(n)]
        s_dummy = sp.Dummy("s")
        to_problem = {cs[a]: conv(self.c[a]) for a in range(n)}
        to_problem[s_dummy] = conv(self.s)
        ugens = (*cs, s_dummy)

        universal_ring = FlintRing(ugens)

        def from_universal(p) -> sp.Expr:
            return universal_ring.to_sympy(p).xreplace(to_problem)

        denominator, sign = self._factored_denominator(from_universal)
        if not self._coprime_on_line():
            return None
        fnum, sden = self.ratio
        form = StructuredForm(
            uni,
            tuple(to_problem[ci] for ci in cs),
            to_problem[s_dummy],
            conv(fnum) / conv(sden),
            sp.ImmutableMatrix(n, n, [conv(e) for row in self.K for e in row]),
            sp.ImmutableMatrix(n, n, [conv(e) for row in self.F for e in row]),
        )
        scale = sign * form.scale
        terms: dict = {(i, j): [] for i in range(n) for j in range(i, n)}
        for p, P in zip(uni.g, form.products()):
            coeff = from_universal(p)
            if coeff == 0:
                continue
            for (i, j), acc in terms.items():
                if P[i, j] != 0:
                    acc.append(coeff * P[i, j])
        X = sp.zeros(n, n)
        for (i, j), acc in terms.items():
            if acc:
                X[i, j] = X[j, i] = scale * sp.Add(*acc) / denominator
        return sp.ImmutableMatrix(X), denominator * conv(sden), form

    def _factored_denominator(self, from_universal) -> tuple[sp.Expr, int]:
        """``D`` as a product of oriented factors (positive at the reference point) and the
        sign that orientation moved out."""
        content, factors = flint_factor(self.universal.D)
        sign = 1 if content > 0 else -1
        out = [(sp.Integer(abs(int(content))), 1)]
        point = reference_point(set(self.gens))
        for f, e in factors:
            e = int(e)
            composed = self._compose_within(f, _FACTOR_LIMIT)
            if composed is not None:
                k, parts = flint_factor(composed)
                sign *= (1 if k > 0 else -1) ** e
                out.append((sp.Integer(abs(int(k))), e))
                pieces = [(self.converter(p), int(m) * e) for p, m in parts]
            else:
                pieces = [(from_universal(f), e)]
            for expr, m in pieces:
                if expr.xreplace(point).is_negative:
                    expr = -expr
                    sign *= (-1) ** m
                out.append((expr, m))
        return sp.Mul(*[b**m for b, m in out]), sign

    def _on_line(self, seed: int):
        """``(numerators, denominator)`` of the solution restricted to a random line
        :math:`x = a + b t` (univariate, exact; slopes drawn from a wide range so that no
        polynomial of the problem is constant there by accident)."""
        rng = random.Random(seed)
        line_ctx = flint.fmpz_mpoly_ctx.get(("t",), "lex")
        (t,) = line_ctx.gens()
        point = [rng.randint(-(10**6), 10**6) + rng.randint(1, 10**6) * t for _ in self.gens]

        def on_line(p):
            return p.compose(*point, ctx=line_ctx)

        one = on_line(self.one)
        zero = one - one
        K = [[on_line(e) for e in row] for row in self.K]
        F = [[on_line(e) for e in row] for row in self.F]
        c, s = [on_line(e) for e in self.c], on_line(self.s)
        D = self.universal.D.compose(*c, s, ctx=line_ctx)
        g = [p.compose(*c, s, ctx=line_ctx) for p in self.universal.g]
        products = self._products(K, F, one)
        fnum = on_line(self.ratio[0])
        nums = [
            fnum * sum((gk * P[i][j] for gk, P in zip(g, products)), zero)
            for i in range(self.n)
            for j in range(i, self.n)
        ]
        return nums, D * on_line(self.ratio[1])

    def singular(self) -> bool:
        """True if D vanishes identically (no unique solution for generic parameters): D is
        zero on a random line."""
        return self._on_line(0)[1].is_zero()

    def _coprime_on_line(self, lines: int = 2) -> bool:
        r"""True if every numerator is coprime to :math:`D\cdot s` up to an integer constant:
        the univariate gcds are constants on each of ``lines`` random lines.  A common factor
        of positive degree restricts to one of positive degree unless its leading form
        vanishes in the line's direction, which random directions avoid (and a second line
        guards against); an accidental common root only makes this answer False, which sends
        the caller to the expanded form."""
        for seed in range(lines):
            nums, den = self._on_line(seed)
            for num in nums:
                if not num.is_zero() and not num.gcd(den).is_constant():
                    return False
        return True


def shifted_characteristic(
    M: sp.MatrixBase, continuous: bool = False
) -> tuple[list[sp.Expr], sp.Expr]:
    r"""``(c, s)`` with :math:`M = I - sK`, ``s`` the content of :math:`I - M`, and
    :math:`\det(xI - K) = x^n + \sum_a c_a x^a` (``c[a]`` expanded).  Raises
    :class:`NotApplicable` unless the entries are integer polynomials.  ``continuous=True``
    reads ``M`` as :math:`sK` itself (no shift by the identity).

    >>> h, lam = sp.symbols("h lambda", positive=True)
    >>> a, b = sp.symbols("a b")
    >>> shifted_characteristic(sp.Matrix([[1 - lam * a, -lam * b], [-lam * b, 1 - lam * a]]))
    ([a**2 - b**2, -2*a], lambda)
    """
    solution = SteinSolution(M, sp.zeros(M.rows, M.rows), continuous)
    conv = solution.converter
    return [conv(c) for c in solution.c], conv(solution.ratio[1])


def solve_stein(
    M: sp.MatrixBase, F: sp.MatrixBase, form: str = "auto", continuous: bool = False
) -> tuple[sp.ImmutableMatrix, sp.Expr, StructuredForm | None]:
    r"""Solve :math:`X = MXM^\top + F` for symmetric X by the characteristic-algebra formula
    (``continuous=True``: the Lyapunov equation :math:`MX + XM^\top = F`).

    ``form`` is ``"expanded"``, ``"structured"`` or ``"auto"`` (expanded while the composed
    denominator has at most :data:`EXPAND_LIMIT` terms).  Returns ``(X, denominator, form)``
    with ``form`` the :class:`StructuredForm` (None for the expanded form).
    Raises :class:`NotApplicable` when the entries are not integer polynomials.

    >>> h, c, lam = sp.symbols("h c lambda", positive=True)
    >>> X, den, _ = solve_stein(sp.Matrix([[1 - lam * h]]), sp.Matrix([[lam**2 * c]]))
    >>> X[0, 0], den
    (c*lambda/(h*(-h*lambda + 2)), h*(-h*lambda + 2))
    >>> H = sp.Matrix([[h, 1], [1, 2]])
    >>> C = sp.Matrix([[c, 1], [1, 2]])
    >>> X, den, form = solve_stein(sp.eye(2) - lam * H, lam**2 * C, "structured")
    >>> form.universal.n, form.s
    (2, lambda)
    """
    if form not in ("auto", "expanded", "structured"):
        raise ValueError(f"form must be 'auto', 'expanded' or 'structured'; got {form!r}.")
    return SteinSolution(M, F, continuous).solve(form)
