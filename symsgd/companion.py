r"""Optimizers whose state-space blocks are polynomials in H: the stationary law of the d×d
blocks, solved in the characteristic algebra of H.

Momentum methods near a minimum of :math:`\tfrac12\theta^\top H\theta` with additive noise
(heavy ball, Nesterov, QHM, ...) have a k·d-dimensional state :math:`z = (z_0, \dots, z_{k-1})`
whose recursion is built blockwise from polynomials in the one symmetric matrix H:

.. math:: z_i' = \sum_j m_{ij}(H)\, z_j + b_i(H)\,\xi, \qquad \operatorname{Cov}\xi = Q_0 .

(Heavy ball, state :math:`(\theta_t, \theta_{t-1})`: :math:`m_{00} = 1 + \mu - \lambda x`,
:math:`m_{01} = -\mu`, :math:`m_{10} = 1`, :math:`b_0 = -\lambda`.)  These polynomials are read
off the optimizer's own recursion on the scalar landscape ``Quadratic(x)`` and accepted only
when they reproduce the d-dimensional recursion's ``M`` and ``B`` exactly
(:func:`polynomial_blocks`).

Write :math:`\varphi(x^a y^b) = H^a Q_0 H^b` (x is H acting on the left, y on the right; H is
symmetric).  The blocks :math:`\Sigma_{ij} = \mathbb E z_i z_j^\top` of the stationary second
moment are :math:`\Sigma_{ij} = \varphi(s_{ij})` where the k² rational functions
:math:`s_{ij}(x, y)` solve the *scalar-pair* system

.. math:: s_{ij} - \sum_{k,l} m_{ik}(x)\, m_{jl}(y)\, s_{kl} = b_i(x)\, b_j(y)

over :math:`\mathbb Q(\text{params})(x, y)` — a k²×k² elimination in the optimizer's parameters
and two variables only.  With the common denominator :math:`D(x, y)` (symmetric in x, y) and
numerators :math:`N_{ij}`: :math:`\Sigma_{ij} = \varphi(N_{ij}\,D^{-1})`.  For heavy ball,
:math:`D = \lambda\mu(x^2 + y^2) - \lambda(1 + \mu^2)xy + (1 - \mu)^2(1 + \mu)(x + y)` and
:math:`N_{00} = \lambda(1 - \mu^2)`: the θ-block X solves the one d×d two-sided equation
:math:`D(H, H)[X] = \lambda(1-\mu^2) Q_0`, and
:math:`\mathbb E\theta_t\theta_{t-1}^\top = (AX - \mu XA)/(1 - \mu^2)`, :math:`A = (1+\mu)I -
\lambda H`.

The inverse of D is taken in the tensor square of :math:`A = \mathbb Z[c, \text{params}][x]/(p)`,
:math:`p(x) = \det(xI - H) = x^d + \sum_a c_a x^a` (Cayley–Hamilton makes φ well defined on it,
as in :mod:`symsgd.cayley`): solve :math:`D\,g = \Delta` in :math:`\operatorname{Sym}^2 A` by
fraction-free elimination on d(d+1)/2 unknowns over :math:`\mathbb Z[c_0, \dots, c_{d-1},
\text{params}]`, then reduce :math:`N_{ij}\,g = \sum_{a,b<d} w_{ij,ab}\,x^a y^b` so that

.. math:: \Sigma_{ij} = \frac{1}{\Delta(c, \text{params})}\sum_{a,b<d} w_{ij,ab}(c,
   \text{params})\, H^a Q_0 H^b ,

with :math:`\Delta = \prod_{i\le j} D(k_i, k_j)` over the eigenvalues of H (up to factors the
numerators share, which are cancelled).  Everything but the final composition
:math:`c = c(H)` is *universal* in the characteristic coefficients: the problem's own symbols
(six h's and six c's for d = 3) never enter an elimination.  The answer is written out expanded
and canonical while the composed denominator is small (:data:`symsgd.cayley.EXPAND_LIMIT`), else
in the structured form (:class:`CompanionForm`): numerators kept as
:math:`\sum w_{ab}(c(H))\,(H^aQ_0H^b)_{pq}` over the factored denominator.

:class:`symsgd.lyapunov.CompanionSolver` is the solver strategy; like every strategy its answer is
certified against the full k·d-dimensional stationary equation before it is returned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sympy as sp

from .cayley import EXPAND_LIMIT, charpoly_coefficients
from .errors import InternalError
from .exact import FlintRing, FlintSolution, bareiss_solve, cancelled, flint_factor, reference_point
from .moments import from_halfvec
from .recursion import LinearRecursion, build_recursion

try:
    import flint
except ImportError:  # pragma: no cover - python-flint is a hard dependency
    flint = None

__all__ = [
    "CompanionForm",
    "CompanionSolution",
    "PolynomialBlocks",
    "polynomial_blocks",
    "solve_companion",
]

#: largest composed factor of the denominator that is factored further (structured form)
_FACTOR_LIMIT = 3_000


@dataclass(frozen=True)
class PolynomialBlocks:
    r"""The k×k block polynomials :math:`m_{ij}(x)` of ``M`` and :math:`b_i(x)` of ``B`` of a
    recursion whose blocks are polynomials in H (``x`` is the dummy variable standing for H)."""

    k: int
    x: sp.Symbol
    m: tuple  # k rows of k sympy polynomials in x
    b: tuple  # k sympy polynomials in x
    params: tuple  # the symbols of the polynomials' coefficients


def _poly_at(poly: sp.Expr, x: sp.Symbol, H: sp.Matrix) -> sp.Matrix:
    """``poly(H)`` (Horner; ``poly`` a polynomial in ``x``)."""
    coeffs = sp.Poly(poly, x).all_coeffs()
    out = sp.zeros(H.rows, H.rows)
    for a in coeffs:
        out = out * H + a * sp.eye(H.rows)
    return out


def polynomial_blocks(recursion: LinearRecursion) -> PolynomialBlocks | None:
    r"""The block polynomials of ``recursion`` when it is a k-block (k ≥ 2) recursion on a
    symmetric Hessian H with additive noise and :math:`M_{ij} = m_{ij}(H)`, :math:`B_i =
    b_i(H)` exactly; else None.

    The polynomials are read off the same optimizer on the scalar landscape ``Quadratic(x)``;
    the d-dimensional ``M`` and ``B`` must equal them evaluated at H (so a preconditioner, or
    anything else that is not a polynomial in H, is refused, never approximated).

    >>> import symsgd as ss
    >>> from symsgd.recursion import build_recursion
    >>> r = build_recursion(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic.symbolic(2),
    ...                     ss.AdditiveNoise(sp.eye(2)))
    >>> blocks = polynomial_blocks(r)
    >>> blocks.k, blocks.m[0][0].subs(blocks.x, sp.Symbol("x")), blocks.b
    (2, -lambda*x + mu + 1, (-lambda, 0))
    """
    from .landscapes import Quadratic
    from .noise import AdditiveNoise

    if recursion.arrays is not None or recursion.noise is None:
        return None
    land, opt = recursion.landscape, recursion.optimizer
    if recursion.noise.depends_on_state() or getattr(land, "eigenmode", True):
        return None
    H = getattr(land, "hessian", None)
    if H is None or type(land) is not Quadratic:
        return None
    d, n = land.dim, recursion.n
    k = opt.blocks
    if d < 2 or k < 2 or n != k * d or sp.Matrix(H) != sp.Matrix(H).T:
        return None
    x = sp.Dummy("x")
    try:  # a probe: an optimizer that cannot run on a scalar landscape is not for this solver
        scalar = build_recursion(opt, Quadratic(x), AdditiveNoise(1))
    except (TypeError, ValueError, RuntimeError, NotImplementedError):
        return None
    if scalar.n != k or scalar.B.shape != (k, 1):
        return None
    m = [[sp.expand(scalar.M[i, j]) for j in range(k)] for i in range(k)]
    b = [sp.expand(scalar.B[i, 0]) for i in range(k)]
    flat = [e for row in m for e in row] + b
    for e in flat:
        if not e.is_polynomial(x):
            return None
    H = sp.Matrix(H)
    M, B = sp.Matrix(recursion.M), sp.Matrix(recursion.B)
    for i in range(k):
        for j in range(k):
            block = M[i * d : (i + 1) * d, j * d : (j + 1) * d]
            if (block - _poly_at(m[i][j], x, H)).applyfunc(sp.expand) != sp.zeros(d, d):
                return None
        block = B[i * d : (i + 1) * d, :]
        if (block - _poly_at(b[i], x, H)).applyfunc(sp.expand) != sp.zeros(d, d):
            return None
    params = set().union(*(e.free_symbols for e in flat)) - {x}
    Q0 = recursion.noise_cov(sp.zeros(d, d))
    for e in [*H, *Q0]:
        e = sp.expand(e)
        if not e.is_polynomial() or any(
            not (c.is_Rational) for c in sp.Poly(e, *e.free_symbols or [x]).coeffs()
        ):
            return None
    return PolynomialBlocks(k, x, tuple(map(tuple, m)), tuple(b), tuple(sorted(params, key=str)))


# -- the scalar-pair system -------------------------------------------------------------------
def _pair_system(blocks: PolynomialBlocks, scale: int):
    r"""``(ring, nums, D)``: the solution :math:`s_{ij} = N_{ij}/D` of the k² system in the ring
    ``(*params, x, y)`` (``nums[i][j]``), with x standing for ``scale·H`` (H = x/scale)."""
    x, y = blocks.x, sp.Dummy("y")
    k = blocks.k
    ring = FlintRing((*blocks.params, x, y))

    def at(e, var):
        return sp.expand(e.xreplace({x: var / scale}))

    mx = [[at(e, x) for e in row] for row in blocks.m]
    my = [[at(e, y) for e in row] for row in blocks.m]
    bx, by = [at(e, x) for e in blocks.b], [at(e, y) for e in blocks.b]
    index = [(i, j) for i in range(k) for j in range(k)]
    rows = []
    for i, j in index:
        row = []
        for kk, ll in index:
            e = (1 if (kk, ll) == (i, j) else 0) - mx[i][kk] * my[j][ll]
            row.append(sp.expand(e))
        row.append(sp.expand(bx[i] * by[j]))
        polys = [ring.from_poly(sp.Poly(e, *ring.gens, domain=sp.QQ)) for e in row]
        lcm = 1
        for _, den in polys:
            lcm = lcm * den // _gcd(lcm, den)
        rows.append([p * (lcm // den) for p, den in polys])
    nums, dens = bareiss_solve(rows, ring.one)
    D = ring.one
    for q in dens:
        D = D * (q / D.gcd(q))
    N = [p * (D / q) for p, q in zip(nums, dens)]
    return ring, [[N[i * k + j] for j in range(k)] for i in range(k)], D


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return abs(a)


def _swap_xy(p, nparams: int, ctx):
    """``p(params, y, x)``."""
    return ctx.from_dict(
        {(*m[:nparams], m[nparams + 1], m[nparams]): c for m, c in p.to_dict().items()}
    )


# -- the characteristic algebra ---------------------------------------------------------------
class _Algebra:
    r""":math:`A \otimes A`, :math:`A = \mathbb Z[c, \text{params}][x]/(p)` with
    :math:`p = x^d + \sum_a c_a x^a`; elements are dicts ``(a, b) -> fmpz_mpoly`` (a, b < d)."""

    def __init__(self, d: int, nparams: int):
        self.d, self.nparams = d, nparams
        names = (*(f"c{a}" for a in range(d)), *(f"p{i}" for i in range(nparams)))
        self.ctx = flint.fmpz_mpoly_ctx.get(names, "lex")
        gens = self.ctx.gens()
        self.c, self.params = gens[:d], gens[d:]
        self.zero = self.ctx.from_dict({})
        self.one = self.ctx.from_dict({(0,) * len(names): 1})
        self._table = [[self.one if a == j else self.zero for a in range(d)] for j in range(d)]

    def reduce(self, j: int) -> list:
        """Coefficients of :math:`x^j \\bmod p` on :math:`1, x, \\dots, x^{d-1}`."""
        d = self.d
        while len(self._table) <= j:
            prev = self._table[-1]
            top = prev[d - 1]
            new = [self.zero, *prev[: d - 1]]
            if not top.is_zero():
                new = [new[a] - self.c[a] * top for a in range(d)]
            self._table.append(new)
        return self._table[j]

    def from_pair(self, p, nparams: int) -> dict:
        """The element of :math:`A\\otimes A` of a polynomial in ``(params, x, y)``."""
        out: dict = {}
        for monom, coeff in p.to_dict().items():
            ex, ey = monom[nparams], monom[nparams + 1]
            value = self.ctx.from_dict({(0,) * self.d + tuple(monom[:nparams]): int(coeff)})
            rx, ry = self.reduce(ex), self.reduce(ey)
            for a, ra in enumerate(rx):
                if ra.is_zero():
                    continue
                for b, rb in enumerate(ry):
                    if not rb.is_zero():
                        out[a, b] = out.get((a, b), self.zero) + value * ra * rb
        return out

    def times(self, u: dict, v: dict) -> dict:
        """The product of two elements."""
        out: dict = {}
        for (a, b), p in u.items():
            if p.is_zero():
                continue
            for (e, f), q in v.items():
                if q.is_zero():
                    continue
                pq = p * q
                for i, ri in enumerate(self.reduce(a + e)):
                    if ri.is_zero():
                        continue
                    for j, rj in enumerate(self.reduce(b + f)):
                        if not rj.is_zero():
                            out[i, j] = out.get((i, j), self.zero) + pq * ri * rj
        return out

    def inverse_symmetric(self, D: dict) -> tuple[dict, object]:
        r"""``(g, Δ)`` with :math:`D g = Δ` in :math:`\operatorname{Sym}^2 A` (D symmetric):
        fraction-free elimination on the d(d+1)/2 coefficients of g."""
        d = self.d
        basis = [(a, b) for a in range(d) for b in range(a, d)]
        index = {pair: r for r, pair in enumerate(basis)}
        N = len(basis)
        rows = [[self.zero] * (N + 1) for _ in range(N)]
        for col, (a, b) in enumerate(basis):
            e = {(a, b): self.one}
            if a != b:
                e[b, a] = self.one
            for (i, j), value in self.times(D, e).items():
                if i <= j and not value.is_zero():
                    rows[index[i, j]][col] += value
        rows[0][N] = self.one
        nums, dens = bareiss_solve(rows, self.one)
        delta = self.one
        for q in dens:
            delta = delta * (q / delta.gcd(q))
        g: dict = {}
        for (a, b), p, q in zip(basis, nums, dens):
            value = p * (delta / q)
            g[a, b] = value
            if a != b:
                g[b, a] = value
        return g, delta


# -- the solution -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CompanionForm:
    r"""The structured companion solution :math:`\Sigma_{ij} = \frac{\text{scale}}{\Delta}
    \sum_{a,b<d} w_{ij,ab}\,H^aQ_0H^b` (Δ and w universal polynomials in the characteristic
    coefficients c of H and the optimizer's parameters), kept for readouts that must not
    expand it."""

    H: sp.ImmutableMatrix
    Q0: sp.ImmutableMatrix
    c: tuple  # det(xI - scale_H·H) = x^d + sum c_a x^a, in the problem's symbols
    params: tuple
    #: the state second moment as (numerators, denominator) of python-flint polynomials
    #: in ``ring`` (built on demand by :meth:`series`)
    solution: CompanionSolution

    def series(self, symbol: sp.Symbol, n: int) -> sp.Matrix:
        r"""Taylor series of the state second moment in ``symbol`` (an optimizer parameter, e.g.
        the learning rate, that H and the noise do not contain) about 0, up to and excluding
        order ``n``.  The universal :math:`w/\Delta = \sum_k q_k\,\text{symbol}^k` is divided
        out in the characteristic coefficients (with :math:`\Delta = \sum_k d_k
        \text{symbol}^k`: :math:`q_k d_0^{k+1} = w_k d_0^k - \sum_{j\ge1} d_j\,(q_{k-j}
        d_0^{k-j+1})\,d_0^{j-1}`, each cancelled), then composed with c = c(H)."""
        return self.solution.series(symbol, n)


class CompanionSolution:
    """The companion solution of one recursion (see the module docstring): built from
    :func:`polynomial_blocks`; :meth:`solve` gives the state second moment."""

    def __init__(self, recursion: LinearRecursion, blocks: PolynomialBlocks):
        if flint is None:  # pragma: no cover
            raise ValueError("python-flint is not installed")
        self.recursion, self.blocks = recursion, blocks
        land = recursion.landscape
        d, k = land.dim, blocks.k
        self.d, self.k = d, k
        H = sp.Matrix(land.hessian)
        Q0 = sp.Matrix(recursion.noise_cov(sp.zeros(d, d)))
        # integer matrices: H = H'/h_scale, Q0 = Q0'/q_scale
        h_scale = _denominator_lcm(H)
        q_scale = _denominator_lcm(Q0)
        self.H, self.Q0 = sp.ImmutableMatrix(H), sp.ImmutableMatrix(Q0)
        self.q_scale = q_scale
        Hi = (H * h_scale).applyfunc(sp.expand)
        Qi = (Q0 * q_scale).applyfunc(sp.expand)
        entries = [*Hi, *Qi, *blocks.params]
        gens = set().union(*(sp.sympify(e).free_symbols for e in entries))
        if any(not isinstance(g, sp.Symbol) for g in gens):
            raise InternalError("companion: entries must be polynomials in symbols")
        ordered = tuple(sorted(gens, key=str)) or (sp.Dummy("one"),)
        self.ring = ring = FlintRing(ordered)
        self.gens = ordered

        def to_ring(e):
            p, den = ring.from_poly(sp.Poly(e, *ordered, domain=sp.ZZ))
            if den != 1:  # pragma: no cover - integer by construction
                raise ValueError("companion: not an integer polynomial")
            return p

        self.Hf = [[to_ring(Hi[i, j]) for j in range(d)] for i in range(d)]
        self.Qf = [[to_ring(Qi[i, j]) for j in range(d)] for i in range(d)]
        self.params_f = [to_ring(p) for p in blocks.params]
        # the scalar-pair system and the algebra
        pair_ring, N, D = _pair_system(blocks, h_scale)
        nparams = len(blocks.params)
        if _swap_xy(D, nparams, pair_ring.ctx) != D:
            raise InternalError(
                "companion: the denominator of the scalar-pair system is not symmetric in "
                "(x, y); refusing to continue."
            )
        alg = self.algebra = _Algebra(d, nparams)
        g, delta = alg.inverse_symmetric(alg.from_pair(D, nparams))
        if delta.is_zero():
            raise ValueError(
                "the stationary equation is singular: the recursion has no unique stationary "
                "second moment for generic parameters (a marginally stable mode?)."
            )
        # W_ij = N_ij g for the upper blocks i <= j
        W = {}
        for i in range(k):
            for j in range(i, k):
                W[i, j] = alg.times(alg.from_pair(N[i][j], nparams), g)
        # cancel what every numerator shares with Δ (parameter factors such as 1 - μ)
        common = delta
        for w in W.values():
            for p in w.values():
                if not p.is_zero():
                    common = common.gcd(p)
        if not common.is_constant():
            delta = delta / common
            W = {key: {ab: p / common for ab, p in w.items()} for key, w in W.items()}
        if delta.leading_coefficient() < 0:
            delta = -delta
            W = {key: {ab: -p for ab, p in w.items()} for key, w in W.items()}
        self.delta, self.W = delta, W
        self.c = charpoly_coefficients(self.Hf, ring.one)

    # -- composition ----------------------------------------------------------------------
    def _compose(self, p, ctx=None, values=None):
        values = values or [*self.c, *self.params_f]
        return p.compose(*values, ctx=ctx or self.ring.ctx)

    def _products(self, Hf, Qf, one) -> dict:
        """:math:`H^aQ_0H^b` for a, b < d (entries in any polynomial ring)."""
        d, zero = self.d, one - one
        powers = [[[one if i == j else zero for j in range(d)] for i in range(d)]]
        for _ in range(1, d):
            powers.append(_matmul(powers[-1], Hf, zero))
        out = {}
        for a in range(d):
            left = _matmul(powers[a], Qf, zero)
            for b in range(d):
                out[a, b] = _matmul(left, powers[b], zero)  # H symmetric: (H^b)ᵀ = H^b
        return out

    def _state_entries(self):
        """``(I, J, i, j, p, q)`` for the upper triangle of the state (row-major)."""
        d, n = self.d, self.d * self.k
        for I in range(n):
            for J in range(I, n):
                yield I, J, I // d, J // d, I % d, J % d

    def fits(self, cap: int = EXPAND_LIMIT) -> bool:
        """True if the composed denominator has at most ``cap`` terms."""
        return len(self._compose(self.delta)) <= cap

    def expanded(self) -> tuple[sp.ImmutableMatrix, sp.Expr]:
        """The state second moment, every entry cancelled and canonical, and the factored
        common denominator."""
        zero = self.ring.zero
        delta = self._compose(self.delta) * self.q_scale
        P = self._products(self.Hf, self.Qf, self.ring.one)
        Wc = {key: {ab: self._compose(p) for ab, p in w.items()} for key, w in self.W.items()}
        nums, dens = [], []
        for _, _, i, j, p, q in self._state_entries():
            w = Wc[i, j]
            num = sum((w[ab] * P[ab][p][q] for ab in w if not w[ab].is_zero()), zero)
            num, den = cancelled(num, delta, self.ring.one)
            nums.append(num)
            dens.append(den)
        entries, denominator = FlintSolution(nums, dens, self.ring).canonical()
        return from_halfvec(self.d * self.k, entries), denominator

    def structured(self) -> tuple[sp.ImmutableMatrix, sp.Expr] | None:
        """The state second moment with numerators kept as sums of universal coefficients
        times entries of :math:`H^aQ_0H^b`, over the factored denominator; None when a
        numerator shares a factor with the denominator on a random line (the form would not
        be cancelled: use :meth:`expanded`)."""
        if not self._coprime_on_line():
            return None
        conv = self.ring.to_sympy
        d = self.d
        from_universal = self._from_universal()
        denominator, sign = self._factored_denominator(from_universal)
        P = self._products(self.Hf, self.Qf, self.ring.one)
        Ps = {ab: [[conv(e) for e in row] for row in M] for ab, M in P.items()}
        Ws = {key: {ab: from_universal(p) for ab, p in w.items()} for key, w in self.W.items()}
        scale = sp.Rational(sign, self.q_scale)
        n = d * self.k
        S = sp.zeros(n, n)
        for I, J, i, j, p, q in self._state_entries():
            terms = [coeff * Ps[ab][p][q] for ab, coeff in Ws[i, j].items() if coeff != 0]
            terms = [t for t in terms if t != 0]
            if terms:
                S[I, J] = S[J, I] = scale * sp.Add(*terms) / denominator
        return sp.ImmutableMatrix(S), denominator * self.q_scale

    def _factored_denominator(self, from_universal) -> tuple[sp.Expr, int]:
        """Δ as a product of factors oriented positive at the reference point, and the sign
        that orientation moved out."""
        content, factors = flint_factor(self.delta)
        sign = 1 if content > 0 else -1
        out = [(sp.Integer(abs(int(content))), 1)]
        point = reference_point(set(self.gens))
        for f, e in factors:
            composed = self._compose(f)
            if len(composed) <= _FACTOR_LIMIT:
                kc, parts = flint_factor(composed)
                sign *= (1 if kc > 0 else -1) ** e
                out.append((sp.Integer(abs(int(kc))), e))
                pieces = [(self.ring.to_sympy(p), int(m) * e) for p, m in parts]
            else:
                pieces = [(from_universal(f), e)]
            for expr, m in pieces:
                if expr.xreplace(point).is_negative:
                    expr = -expr
                    sign *= (-1) ** m
                out.append((expr, m))
        return sp.Mul(*[b**m for b, m in out]), sign

    def _on_line(self, seed: int) -> tuple[list, object]:
        """Numerators and denominator restricted to a random line (univariate, exact)."""
        rng = random.Random(seed)
        line_ctx = flint.fmpz_mpoly_ctx.get(("t",), "lex")
        (t,) = line_ctx.gens()
        point = [rng.randint(-(10**6), 10**6) + rng.randint(1, 10**6) * t for _ in self.gens]

        def on_line(p):
            return p.compose(*point, ctx=line_ctx)

        one = on_line(self.ring.one)
        H = [[on_line(e) for e in row] for row in self.Hf]
        Q = [[on_line(e) for e in row] for row in self.Qf]
        values = [on_line(e) for e in (*self.c, *self.params_f)]
        delta = self._compose(self.delta, line_ctx, values)
        W = {
            key: {ab: self._compose(p, line_ctx, values) for ab, p in w.items()}
            for key, w in self.W.items()
        }
        P = self._products(H, Q, one)
        nums = []
        for _, _, i, j, p, q in self._state_entries():
            nums.append(sum((w * P[ab][p][q] for ab, w in W[i, j].items()), one - one))
        return nums, delta

    def _coprime_on_line(self, lines: int = 2) -> bool:
        """Every numerator coprime to Δ on ``lines`` random lines (see
        :meth:`symsgd.cayley.SteinSolution._coprime_on_line`)."""
        for seed in range(lines):
            nums, den = self._on_line(seed)
            if den.is_zero():
                return False
            for num in nums:
                if not num.is_zero() and not num.gcd(den).is_constant():
                    return False
        return True

    def solve(self, form: str = "auto") -> tuple[sp.ImmutableMatrix, sp.Expr, object]:
        """``(state second moment, denominator, CompanionForm or None)``: expanded while the
        composed denominator has at most :data:`~symsgd.cayley.EXPAND_LIMIT` terms
        (``form="auto"``), else structured."""
        if form not in ("auto", "expanded", "structured"):
            raise ValueError(f"form must be 'auto', 'expanded' or 'structured'; got {form!r}.")
        if form == "structured" or (form == "auto" and not self.fits()):
            out = self.structured()
            if out is not None:
                S, den = out
                companion = CompanionForm(
                    self.H,
                    self.Q0,
                    tuple(self.ring.to_sympy(c) for c in self.c),
                    self.blocks.params,
                    self,
                )
                return S, den, companion
            if form == "structured":
                raise ValueError(
                    "form='structured' is not available here: a numerator shares a factor with "
                    "the denominator for these matrices; use form='expanded'."
                )
        S, den = self.expanded()
        return S, den, None

    # -- series ---------------------------------------------------------------------------
    def _from_universal(self):
        """Universal polynomial -> sympy expression in the problem's symbols (c = c(H))."""
        d = self.d
        cs = [sp.Dummy(f"c{a}") for a in range(d)]
        ps = [sp.Dummy(f"p{i}") for i in range(len(self.blocks.params))]
        universal_ring = FlintRing((*cs, *ps))
        to_problem = {cs[a]: self.ring.to_sympy(self.c[a]) for a in range(d)}
        to_problem.update(dict(zip(ps, self.blocks.params)))
        return lambda p: universal_ring.to_sympy(p).xreplace(to_problem)

    def series(self, symbol: sp.Symbol, n: int) -> sp.Matrix:
        """See :meth:`CompanionForm.series`."""
        size = self.d * self.k
        if n < 1:
            return sp.zeros(size, size)
        inside = set(self.H.free_symbols) | set(self.Q0.free_symbols)
        if symbol not in self.blocks.params or symbol in inside:
            raise ValueError(
                f"series() in {symbol} of a structured companion result needs {symbol} to be "
                f"an optimizer parameter that H and the noise do not contain."
            )
        v = self.d + self.blocks.params.index(symbol)
        one = self.algebra.one
        dcoef = _coefficients(self.delta, v, n)
        d0 = dcoef[0]
        if d0.is_zero():
            raise ValueError(f"series(): the answer has a pole at {symbol} = 0.")
        from_universal = self._from_universal()
        conv = self.ring.to_sympy
        P = self._products(self.Hf, self.Qf, self.ring.one)
        Ps = {ab: [[conv(e) for e in row] for row in M] for ab, M in P.items()}
        # per block and basis product: sum_k q_k symbol^k with q_k d0^{k+1} universal
        coefficient: dict = {}
        for key, w in self.W.items():
            for ab, p in w.items():
                if p.is_zero():
                    continue
                wcoef = _coefficients(p, v, n)
                accs: list = []
                total = sp.Integer(0)
                for kk in range(n):
                    acc = wcoef[kk] * d0**kk
                    for jj in range(1, kk + 1):
                        if not dcoef[jj].is_zero():
                            acc = acc - dcoef[jj] * accs[kk - jj] * d0 ** (jj - 1)
                    accs.append(acc)
                    if not acc.is_zero():
                        top, bottom = cancelled(acc, d0 ** (kk + 1), one)
                        total += from_universal(top) / from_universal(bottom) * symbol**kk
                coefficient[key, ab] = total
        out = sp.zeros(size, size)
        scale = sp.Rational(1, self.q_scale)
        for I, J, i, j, p, q in self._state_entries():
            terms = [
                value * Ps[ab][p][q]
                for (key, ab), value in coefficient.items()
                if key == (i, j) and value != 0 and Ps[ab][p][q] != 0
            ]
            out[I, J] = out[J, I] = scale * sp.Add(*terms)
        return out


def _coefficients(p, v: int, n: int) -> list:
    """The coefficients of ``p`` in its variable ``v`` up to degree n - 1 (free of it)."""
    ctx = p.context()
    groups: dict = {}
    for monom, coeff in p.to_dict().items():
        e = monom[v]
        if e < n:
            rest = tuple(0 if i == v else m for i, m in enumerate(monom))
            groups.setdefault(e, {})[rest] = int(coeff)
    return [ctx.from_dict(groups.get(e, {})) for e in range(n)]


def _matmul(X: list[list], Y: list[list], zero) -> list[list]:
    n, m, p = len(X), len(Y), len(Y[0])
    return [[sum((X[i][k] * Y[k][j] for k in range(m)), zero) for j in range(p)] for i in range(n)]


def _denominator_lcm(A: sp.MatrixBase) -> int:
    """The lcm of the integer denominators of the (polynomial) entries of ``A``."""
    out = 1
    for e in A:
        e = sp.expand(e)
        if e == 0:
            continue
        for term in sp.Add.make_args(e):
            coeff, _ = term.as_coeff_Mul()
            if not coeff.is_Rational:
                raise InternalError(f"companion: a coefficient {coeff} is not rational")
            q = int(coeff.q)
            out = out * q // _gcd(out, q)
    return out


def solve_companion(
    recursion: LinearRecursion, form: str = "auto"
) -> tuple[sp.ImmutableMatrix, sp.Expr, CompanionForm | None]:
    r"""Solve the stationary equation of a recursion whose blocks are polynomials in H with
    additive noise (see the module docstring): ``(state second moment, denominator, form)``,
    ``form`` the :class:`CompanionForm` of a structured answer (None when expanded).  Raises
    ``ValueError`` when the blocks are not polynomials in H.  (Not certified here: the solver
    driver :func:`symsgd.lyapunov.solve` certifies it.)

    >>> import symsgd as ss
    >>> from symsgd.recursion import build_recursion
    >>> h1, h2, c = sp.symbols("h1 h2 c", positive=True)
    >>> H = sp.Matrix([[h1, 1], [1, h2]])
    >>> r = build_recursion(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(H),
    ...                     ss.AdditiveNoise(c * sp.eye(2)))
    >>> S, den, form = solve_companion(r)
    >>> X, Y = S[:2, :2], S[:2, 2:]
    >>> A = (1 + ss.momentum) * sp.eye(2) - ss.lr * H
    >>> (Y - (A * X - ss.momentum * X * A) / (1 - ss.momentum**2)).applyfunc(sp.cancel)
    Matrix([
    [0, 0],
    [0, 0]])
    """
    blocks = polynomial_blocks(recursion)
    if blocks is None:
        raise ValueError(
            "solve_companion(): the recursion's blocks are not polynomials in H with additive "
            "noise."
        )
    return CompanionSolution(recursion, blocks).solve(form)
