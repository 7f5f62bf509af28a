r"""Exact transient moments: the mean and second moment after t steps from a given start.

For the linear recursion :math:`z_{t+1} = Mz_t + B\xi_t` of :func:`symsgd.build_recursion`
(:math:`\mathbb E[\xi_t\mid z_t] = 0`, ξ_t independent of the past given z_t) the mean and the
*raw* second moment :math:`S_t = \mathbb E[z_tz_t^\top]` obey

.. math:: m_{t+1} = Mm_t, \qquad
          S_{t+1} = MS_tM^\top + B\,\mathbb E[\operatorname{Cov}(\xi_t\mid z_t)]\,B^\top ,

because the cross terms :math:`\mathbb E[z_t\xi_t^\top] = 0`.  The noise covariance is affine in
the evaluation point's raw second moment :math:`KS_tK^\top` (that is ``recursion.noise_cov``)
*and*, for minibatch noise on a finite data set, in its mean: with per-sample gradients
:math:`a_i(\delta) = X_i\delta - c_i` and batch-count covariance
:math:`\operatorname{Cov}(n_i, n_j) = \alpha\delta_{ij} + \beta`,

.. math:: \mathbb E_\delta\operatorname{Cov}[g\mid\delta] = Q(\mathbb E[\delta\delta^\top])
          - \tfrac1{S^2}\Bigl[\alpha\textstyle\sum_i (X_imc_i^\top + c_im^\top X_i)
          + \beta\,(\bar Xm\bar c^\top + \bar cm^\top\bar X)\Bigr],

:math:`m = \mathbb E\delta`, :math:`\bar X = \sum_i X_i`, :math:`\bar c = \sum_i c_i` — the
stationary law has m = 0, a transient does not.  On the half-vector s of S (:func:`pairs`) the
pair (m, s) follows one affine map

.. math:: \begin{pmatrix} m\\ s\\ 1\end{pmatrix}_{t+1} =
          \begin{pmatrix} M & 0 & 0\\ C & T & f\\ 0 & 0 & 1\end{pmatrix}
          \begin{pmatrix} m\\ s\\ 1\end{pmatrix}_t ,

T the matrix of the second-moment map (:func:`symsgd.moments.operator_matrix`), f the forcing
:math:`BQ_0B^\top` and C the mean term above; its t-th power is taken by repeated squaring —
exactly in :math:`\mathbb Q` (python-flint) for rational inputs, in float64 for float inputs.

For a one-dimensional state (scalar SGD) the map is solved in closed form for a symbolic t:
with ρ = T, :math:`s^* = f/(1-\rho)` and :math:`m_t = M^tm_0`,

.. math:: s_t = s^* + \kappa M^t + \rho^t(s_0 - s^* - \kappa), \qquad
          \kappa = \frac{C m_0}{M - \rho}

(κ = 0 without a mean term; :math:`s_t = s^* + \rho^t(s_0-s^*) + Cm_0\,t\rho^{t-1}` when
M = ρ).  The relaxation ``rate`` is the spectral radius of T (the mean relaxes at ρ(M), and
ρ(M)² ≤ ρ(T)).

**Minibatch noise in an eigenbasis.**  For online Gaussian regression with a diagonal
:math:`A = \operatorname{diag}(a_1, \dots, a_d)` the Isserlis noise
:math:`(A\Sigma A + \operatorname{Tr}(A\Sigma)A + \sigma^2A)/S` splits the map by modes: the
p = k(k+1)/2 entries :math:`x_i` of mode i's own k×k block (k state blocks: 1 for SGD, 2 with
momentum) and the k² entries of each pair's cross block :math:`C_{ij}` obey

.. math:: x_i' = T(a_i)x_i + u(a_i)\kappa + f(a_i), \qquad
          \kappa = \textstyle\sum_j w(a_j)^\top x_j, \qquad
          \operatorname{vec}C_{ij}' = P(a_i, a_j)\operatorname{vec}C_{ij} ,

κ the trace Tr(AΣ_x) at the gradient point — a rank-one coupling of the modes.  The pieces
T, u, w, f, P are read off the library's own recursion of a symbolic three-mode problem and
certified against it (:func:`_derive_mode_form`); a step costs O(d p²), the cross blocks are
one k²×k² power each per distinct pair of eigenvalues, instead of the
:math:`(kd(kd+1)/2)^2` dense map.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ._util import map_fields
from .landscapes import Landscape, LinearRegression
from .moments import from_halfvec, halfvec_system, operator_matrix, pairs, spectral_radius
from .noise import AdditiveNoise, MinibatchNoise, Noise, sampling_design
from .optimizers import Optimizer
from .recursion import LinearRecursion, build_recursion

__all__ = ["Transient", "transient"]


@dataclass(frozen=True)
class Transient:
    r"""The moments after ``steps`` steps from θ₀ (deviations from the minimum).

    ``mean`` is :math:`\mathbb E\theta_t`, ``second_moment`` :math:`\mathbb E[\theta_t\theta_t^\top]
    = \Theta S_t\Theta^\top`, ``cov`` :math:`\operatorname{Var}\theta_t` (second moment minus
    mean meanᵀ), ``state_mean`` / ``state_second_moment`` the same for the whole state z_t;
    ``loss`` the expected training loss at t, ``test_loss`` the expected fresh-sample loss (None
    where the landscape has none); ``rate`` ρ(T); ``losses`` the float training loss at every
    t = 0..steps when asked (``curve=True``), else None."""

    steps: object
    mean: sp.Matrix
    cov: sp.Matrix
    second_moment: sp.Matrix
    state_mean: sp.Matrix
    state_second_moment: sp.Matrix
    loss: object
    test_loss: object
    rate: object
    losses: tuple | None = None


def _check_steps(steps) -> tuple[object, bool]:
    """``(steps, symbolic)``; a negative or non-integer value is refused naming ``steps``."""
    if isinstance(steps, sp.Symbol):
        if not (steps.is_integer and steps.is_nonnegative):
            raise ValueError(
                f"steps: a symbolic number of steps must be declared integer and nonnegative "
                f"(sp.Symbol('t', integer=True, nonnegative=True)); got {steps!r}."
            )
        return steps, True
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer, sp.Integer)):
        raise TypeError(f"steps must be an integer ≥ 0 or an integer sp.Symbol; got {steps!r}.")
    if int(steps) < 0:
        raise ValueError(f"steps must be ≥ 0; got {steps}.")
    return int(steps), False


def _theta_values(theta0) -> list:
    """θ₀ as a list of entries (a matrix, array, sequence or one scalar)."""
    if isinstance(theta0, (sp.MatrixBase, np.ndarray)):
        return list(sp.Matrix(theta0))
    if isinstance(theta0, Sequence) and not isinstance(theta0, str):
        return list(theta0)
    return [theta0]


def _start(optimizer: Optimizer, theta0, d: int) -> sp.Matrix:
    """The state at rest at θ₀ (``optimizer.initial_state``) as one column."""
    values = _theta_values(theta0)
    if len(values) != d:
        raise ValueError(
            f"theta0 must have length {d} (the landscape's dimension); got {len(values)}."
        )
    theta = sp.Matrix([sp.nsimplify(v) if isinstance(v, str) else sp.sympify(v) for v in values])
    blocks = optimizer.initial_state(theta)
    return sp.Matrix.vstack(*[sp.Matrix(b) for b in blocks])


def _mean_noise(rec: LinearRecursion, mx: sp.Matrix) -> sp.Matrix:
    r"""The part of :math:`\mathbb E\operatorname{Cov}(\xi\mid z)` linear in the evaluation
    point's mean ``mx`` (zero for additive noise and for Gaussian inputs without weight decay)."""
    noise, land = rec.noise, rec.landscape
    d = land.dim
    if isinstance(noise, AdditiveNoise):
        return sp.zeros(d, d)
    if not isinstance(noise, MinibatchNoise):
        raise NotImplementedError(
            f"transient: the mean dependence of {type(noise).__name__} is not known; only "
            "AdditiveNoise and MinibatchNoise are supported."
        )
    N = noise.resolved_dataset_size(land)
    if N is sp.oo:
        return sp.zeros(d, d)  # b = 0: the Isserlis form is quadratic in δ
    alpha, beta = sampling_design(noise.batch_size, N, noise.replacement)
    terms = land.sample_terms(rec.optimizer.weight_decay)
    X_sum = sum((X for X, _ in terms), sp.zeros(d, d))
    c_sum = sum((c for _, c in terms), sp.zeros(d, 1))
    own = sum((X * mx * c.T + c * mx.T * X for X, c in terms), sp.zeros(d, d))
    both = X_sum * mx * c_sum.T + c_sum * mx.T * X_sum
    return -(alpha * own + beta * both) / noise.batch_size**2


def _affine(rec: LinearRecursion) -> sp.Matrix:
    """The (n + p + 1)-square matrix of the affine map on (m, s, 1)."""
    n = rec.n
    index = pairs(n)
    p = len(index)
    T = operator_matrix(rec)
    _, f = halfvec_system(rec)
    M, B, K = (sp.Matrix(m) for m in (rec.M, rec.B, rec.K))
    C = sp.zeros(p, n)
    for k in range(n):
        unit = sp.zeros(n, 1)
        unit[k] = 1
        F = B * _mean_noise(rec, K * unit) * B.T
        for r, (i, j) in enumerate(index):
            C[r, k] = sp.expand(F[i, j])
    A = sp.zeros(n + p + 1, n + p + 1)
    A[:n, :n] = M
    A[n : n + p, :n] = C
    A[n : n + p, n : n + p] = T
    A[n : n + p, n + p] = f
    A[n + p, n + p] = 1
    return A


def _power_apply(A: sp.Matrix, v: sp.Matrix, t: int) -> tuple[sp.Matrix, str]:
    """``A^t v`` by repeated squaring: in Q (flint) for rationals, float64 for floats, sympy
    otherwise (exact algebraic numbers)."""
    entries = list(A) + list(v)
    if all(e.is_Rational for e in entries):
        import flint

        def to_flint(m):
            return flint.fmpq_mat(m.rows, m.cols, [flint.fmpq(int(e.p), int(e.q)) for e in m])

        P, out = to_flint(A), to_flint(v)
        while t:
            if t & 1:
                out = P * out
            t >>= 1
            if t:
                P = P * P
        rows = [[sp.Rational(int(out[i, 0].p), int(out[i, 0].q))] for i in range(out.nrows())]
        return sp.Matrix(rows), "exact"
    if any(e.has(sp.Float) for e in entries):
        a = np.array(A.evalf(), dtype=float)
        x = np.array(v.evalf(), dtype=float)
        return sp.Matrix(np.linalg.matrix_power(a, t) @ x), "float"
    out = sp.Matrix(v)
    P = sp.Matrix(A)
    while t:
        if t & 1:
            out = (P * out).applyfunc(sp.expand)
        t >>= 1
        if t:
            P = (P * P).applyfunc(sp.expand)
    return out, "exact"


def _scalar_closed_form(A: sp.Matrix, v: sp.Matrix, t) -> sp.Matrix:
    """(m_t, s_t, 1) for a 1-d state: the affine map solved in closed form (see the module)."""
    M, C, rho, f = A[0, 0], A[1, 0], A[1, 1], A[1, 2]
    m0, s0 = v[0], v[1]
    if sp.cancel(1 - rho) == 0:
        raise ValueError("transient: the second-moment map has ρ = 1 (no fixed point).")
    star = sp.cancel(f / (1 - rho))
    if C * m0 == 0:
        s = star + rho**t * (s0 - star)
    elif sp.cancel(M - rho) == 0:
        s = star + rho**t * (s0 - star) + C * m0 * t * rho ** (t - 1)
    else:
        kappa = sp.cancel(C * m0 / (M - rho))
        s = star + kappa * M**t + rho**t * (s0 - star - kappa)
    return sp.Matrix([M**t * m0, s, 1])


def _spectral_closed_form(A: sp.Matrix, v0: sp.Matrix, t: sp.Symbol, n: int, p: int):
    r"""``(v_t, roots of T)``: the affine map solved for a symbolic t where its characteristic
    polynomial χ splits over ℚ(parameters) into distinct factors of degree ≤ 2.

    With simple roots ρ_k of χ (degree N = A.rows), :math:`A^t = \sum_k \rho_k^tP_k`,
    :math:`P_k = q_k(A)`, :math:`q_k(x) = \chi(x)/((x-\rho_k)\chi'(\rho_k))`, so every
    component is :math:`y_t = \sum_k c_k\rho_k^t` with
    :math:`c_k = \sum_{m<N} y_m h_m(\rho_k)/\chi'(\rho_k)`, :math:`\chi(x)/(x-\rho) =
    \sum_m h_m(\rho)x^m`, from the exact iterates :math:`y_0..y_{N-1}`.  For a quadratic factor
    q the coefficient is reduced modulo q to :math:`\alpha + \beta\rho` (rational α, β), so
    only the roots themselves hold square roots.  Certificate (exact, rational): every term
    :math:`\rho_k^t` satisfies the order-N recurrence χ(E)y = 0 that the iterates satisfy
    (Cayley–Hamilton), so agreement at t = 0..N−1 — checked through symmetric functions of
    each factor's roots — proves agreement for every t.  Valid where the roots stay distinct
    (the discriminants and root differences nonzero)."""
    from .errors import InternalError

    x, rho = sp.Dummy("x"), sp.Dummy("rho")
    N = A.rows
    free = bool(A.free_symbols | v0.free_symbols)
    if N > (12 if free else 40):
        raise NotImplementedError(
            f"transient: a symbolic number of steps needs the characteristic polynomial of the "
            f"affine map, here of size {N} (limit {12 if free else 40} "
            f"{'with symbolic parameters' if free else 'with numbers'}); a one-dimensional "
            "state or a small one (momentum or d = 2 with additive noise) is covered. Give an "
            "integer steps."
        )
    chi = A.charpoly(x)
    x = chi.gen
    chi = sp.Poly(chi.as_expr(), x)
    _, factors = chi.factor_list()
    total = sum(f.degree() * e for f, e in factors)
    bad = [f for f, e in factors if f.degree() > 2 or e > 1]
    if bad or total != N:
        worst = max((f.degree() for f, _ in factors), default=0)
        raise NotImplementedError(
            "transient: a symbolic number of steps needs the characteristic polynomial of the "
            "affine (mean, second moment) map to split into distinct factors of degree ≤ 2 "
            "(a one-dimensional state; momentum or d = 2 with additive noise); here it has "
            + (
                f"a factor of degree {worst}"
                if worst > 2
                else "a repeated factor (repeated eigenvalues)"
            )
            + ". Give an integer steps."
        )
    # all algebra in K[ρ], K = ℚ(parameters): exact field arithmetic, no expression cancel
    params = sorted((A.free_symbols | v0.free_symbols) - {x}, key=str)
    K = sp.QQ.frac_field(*params) if params else sp.QQ
    iterates = [v0]
    for _ in range(N - 1):
        iterates.append(A * iterates[-1])
    rows = n + p
    y = [[K.from_sympy(sp.cancel(iterates[m][i])) for m in range(N)] for i in range(rows)]
    chi_K = sp.Poly(chi.as_expr().subs(x, rho), rho, domain=K)
    a = _low_first(chi_K)  # a_0..a_N in K
    h = [sp.Poly([a[j] for j in range(N, m, -1)], rho, domain=K) for m in range(N)]
    dchi = chi_K.diff(rho)
    out = [sp.S.Zero] * rows
    checks = [[K.zero] * N for _ in range(rows)]
    for f, _ in factors:
        q = sp.Poly(f.as_expr().subs(x, rho), rho, domain=K)
        inv = dchi.rem(q).invert(q)  # χ'(ρ) ≠ 0 at a simple root
        if q.degree() == 1:
            c0, c1 = _low_first(q)
            roots = [K.to_sympy(-c0 / c1)]
        else:
            c0, b1, a2 = (K.to_sympy(v) for v in _low_first(q))
            disc = sp.factor(b1**2 - 4 * a2 * c0)
            roots = [(-b1 + sgn * sp.sqrt(disc)) / (2 * a2) for sgn in (1, -1)]
        sub, lead = _low_first(q)[-2:]
        for i in range(rows):
            P = sum((h[m].mul_ground(y[i][m]) for m in range(N)), sp.Poly(0, rho, domain=K))
            c = (P * inv).rem(q)  # c_k = α + βρ_k (mod the factor)
            alpha, beta = (
                c.coeff_monomial(1),
                (c.coeff_monomial(rho) if q.degree() == 2 else K.zero),
            )
            shown = K.to_sympy(alpha) + K.to_sympy(beta) * rho
            for r in roots:
                out[i] += (
                    sp.factor(shown.subs(rho, r)) * r**t
                    if q.degree() == 1
                    else ((sp.factor(K.to_sympy(alpha)) + sp.factor(K.to_sympy(beta)) * r) * r**t)
                )
            power = sp.Poly(1, rho, domain=K)
            for m in range(N):  # Σ over the factor's roots of c(ρ)ρ^m, from c·ρ^m mod q
                g0, g1 = ([*_low_first((c * power).rem(q)), K.zero, K.zero])[:2]
                if q.degree() == 1:
                    checks[i][m] += g0
                else:
                    checks[i][m] += 2 * g0 - g1 * sub / lead
                power = (power * sp.Poly(rho, rho, domain=K)).rem(chi_K)
    for i in range(rows):
        for m in range(N):
            if checks[i][m] != y[i][m]:
                raise InternalError(
                    f"transient: the closed form disagrees with the iterated map at t = {m}; "
                    "it was not returned."
                )
    T_chi = sp.Matrix(A[n : n + p, n : n + p]).charpoly(x)
    T_roots = sp.roots(T_chi, multiple=True)
    return sp.Matrix([*out, 1]), T_roots


def _low_first(poly: sp.Poly) -> list:
    """The coefficients of a univariate ``poly`` as domain elements, constant term first."""
    return list(poly.rep.to_list())[::-1]


def _certify_closed_form(A: sp.Matrix, v0: sp.Matrix, v: sp.Matrix, t: sp.Symbol) -> None:
    """Both the closed form and the iterated map are sums of at most three geometric terms
    (1, Mᵗ, ρᵗ or tρᵗ), so their difference satisfies a linear recurrence of order ≤ 6: equal
    at t = 0..6, equal for every t.  Checked exactly; ``InternalError`` otherwise (nothing
    wrong is returned)."""
    from .errors import InternalError

    exact = v0
    for k in range(7):
        gap = (v.subs(t, k) - exact).applyfunc(sp.cancel)
        if not gap.is_zero_matrix:
            raise InternalError(
                f"transient: the closed form disagrees with the iterated map at t = {k}; "
                "it was not returned."
            )
        exact = A * exact
    return None


def transient(
    optimizer: Optimizer,
    landscape: Landscape,
    noise: Noise,
    *,
    theta0,
    steps,
    curve: bool = False,
) -> Transient:
    r"""The exact mean and second moment after ``steps`` steps started at rest at θ₀
    (deviation from the minimum; momentum blocks from ``optimizer.initial_state``).

    Numeric parameters and an integer ``steps``: the affine map on (mean, half-vectorised raw
    second moment) raised to the power t by repeated squaring — exact rationals for rational
    inputs, floats for float inputs.  A one-dimensional state (scalar SGD) also takes symbolic
    parameters and a symbolic ``steps`` (an integer, nonnegative ``sp.Symbol``), solved in
    closed form :math:`s_t = s^* + \rho^t(s_0 - s^*)` (plus a mean term for minibatch noise on
    finite data), certified against the iterated map at t = 0..6 (which determines it).  A
    larger state takes a symbolic ``steps`` where the characteristic polynomial of the affine
    map splits over ℚ(parameters) into distinct factors of degree ≤ 2 (heavy ball or Nesterov
    with additive noise, SGD on a 2-d quadratic): :math:`\sum_k c_k\rho_k^t`, certified by the
    order-N recurrence (:func:`_spectral_closed_form`); otherwise (e.g. minibatch momentum, an
    irreducible cubic) a clear ``NotImplementedError``.
    ``curve=True`` adds the float training loss at every t = 0..steps.  An eigen-mode problem
    with additive noise (``Quadratic.commuting``) is followed mode by mode: the answer is that of
    one mode, in its eigenvalues (θ₀ the mode's component).  Online regression with a numeric
    *diagonal* A and minibatch noise (``LinearRegression(sp.diag(a1, …, ad), σ²)``) takes the
    per-mode path of the module (the modes' own blocks coupled by the trace Tr(AΣ), each pair's
    cross block alone): the same exact answer at O(d) per step, d in the hundreds.

    >>> import sympy as sp, symsgd as ss
    >>> half = sp.Rational(1, 2)
    >>> r = ss.transient(ss.SGD(half), ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[2], steps=2)
    >>> r.second_moment, r.rate  # (1/4)²·4 + (1/4 + 1)/4 ;  ρ = (1 − λh)²
    (Matrix([[9/16]]), 0.25)
    >>> t = sp.Symbol("t", integer=True, nonnegative=True)
    >>> ss.transient(ss.SGD(half), ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[2],
    ...              steps=t).second_moment[0, 0]
    1/3 + 11/(3*4**t)
    """
    steps, symbolic = _check_steps(steps)
    if landscape.eigenmode:
        if noise.depends_on_state():
            raise NotImplementedError(
                "transient: minibatch noise couples the eigen-modes through a trace that changes "
                "with t, so a mode cannot be followed alone; use an explicit diagonal matrix, "
                "e.g. LinearRegression(sp.diag(a1, a2), label_variance=σ²), or the generating "
                "function in z with traces over the modes "
                "(symsgd.applications.transient_generating_function)."
            )
        landscape = landscape.one_mode()  # additive noise: each mode is its own 1-D problem
    problem = None if symbolic else _mode_problem(optimizer, landscape, noise, theta0, steps)
    if problem is not None:  # diagonal online regression, minibatch noise: O(d) per step
        return _mode_transient(problem, optimizer, landscape, theta0, steps, curve)
    rec = build_recursion(optimizer, landscape, noise)
    if isinstance(landscape, LinearRegression) and sp.sympify(optimizer.weight_decay) != 0:
        raise NotImplementedError(
            "transient: LinearRegression with weight decay (the loss and noise gain terms in "
            "the mean) is not supported yet."
        )
    d, n = landscape.dim, rec.n
    z0 = _start(optimizer, theta0, d)
    index = pairs(n)
    S0 = z0 * z0.T
    v0 = sp.Matrix([*z0, *[S0[i, j] for i, j in index], 1])
    A = _affine(rec)
    free = A.free_symbols | v0.free_symbols
    kind = "exact"
    if n == 1 and (symbolic or free):
        v = _scalar_closed_form(A, v0, steps)
        v = v.applyfunc(lambda e: sp.powsimp(sp.expand(e)))
        if symbolic:
            _certify_closed_form(A, v0, v, steps)
    elif symbolic:
        v, rate_roots = _spectral_closed_form(A, v0, steps, n, len(index))
    elif free:
        raise NotImplementedError(
            f"transient: symbolic parameters with an integer number of steps need a "
            f"one-dimensional state (scalar SGD), or a symbolic steps; this state has n = {n}. "
            f"Give numbers (free: {', '.join(sorted(map(str, free)))}) or an integer "
            "sp.Symbol for steps."
        )
    else:
        v, kind = _power_apply(A, v0, steps)
    m = sp.Matrix(v[:n])
    S = from_halfvec(n, list(v[n : n + len(index)]))
    Theta = sp.Matrix(rec.theta_map)
    mean = Theta * m
    second = Theta * sp.Matrix(S) * Theta.T
    cov = second - mean * mean.T
    if kind == "exact":
        # (the n > 1 closed form holds square roots: cancel would only cost time)
        cov = cov.applyfunc(sp.cancel) if free and n == 1 else cov
    wd = optimizer.weight_decay
    loss = landscape.loss(second, wd)
    test_loss = getattr(landscape, "test_loss", None)
    test_loss = test_loss(second, wd) if test_loss is not None else None
    if free and n == 1:
        rate = sp.Abs(A[n, n])
    elif free:
        rate = sp.Max(*[sp.Abs(r) for r in rate_roots])
    else:
        rate = spectral_radius(rec)
    losses = _curve(A, v0, n, Theta, landscape, wd, steps) if curve else None
    return Transient(
        steps=steps,
        mean=sp.ImmutableMatrix(mean),
        cov=sp.ImmutableMatrix(cov),
        second_moment=sp.ImmutableMatrix(second),
        state_mean=sp.ImmutableMatrix(m),
        state_second_moment=sp.ImmutableMatrix(S),
        loss=loss,
        test_loss=test_loss,
        rate=rate,
        losses=losses,
    )


def _curve(A, v0, n, Theta, landscape, wd, steps) -> tuple:
    """The float training loss at t = 0..steps by iterating the float map."""
    if not isinstance(steps, int) or A.free_symbols or v0.free_symbols:
        raise ValueError("curve=True needs numeric parameters and an integer steps.")
    a = np.array(A.evalf(), dtype=float)
    v = np.array(v0.evalf(), dtype=float).reshape(-1)
    th = np.array(Theta.evalf(), dtype=float)
    out = []
    for t in range(steps + 1):
        if t:
            v = a @ v
        S = np.zeros((n, n))
        for k, (i, j) in enumerate(pairs(n)):
            S[i, j] = S[j, i] = v[n + k]
        out.append(float(landscape.numeric_loss(th @ S @ th.T, wd)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# minibatch noise in an eigenbasis: the reduced (per-mode + trace) map
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _ModeForm:
    r"""The second-moment map of online Gaussian regression with a diagonal A, read mode by
    mode (see :func:`_derive_mode_form`): the mean map ``mean(a)`` (k×k), the mode's own
    half-vectorised map without its share of the trace ``local(a)`` (p×p, p = k(k+1)/2), the
    trace's gain ``gain(a)`` and weight ``weight(a)`` (κ = Σ_modes weight(a)ᵀx), the forcing
    ``forcing(a)``, the map ``cross(a, b)`` of a pair of modes' cross block (k²×k², row-major)
    and the readout row ``readout(a)`` (θ_i = readout(a_i) z_i)."""

    k: int
    a: sp.Symbol
    b: sp.Symbol
    mean: sp.Matrix
    local: sp.Matrix
    gain: sp.Matrix
    weight: sp.Matrix
    forcing: sp.Matrix
    cross: sp.Matrix
    readout: sp.Matrix


_MODE_A, _MODE_B = sp.symbols("_mode_a _mode_b", positive=True)


@functools.lru_cache(maxsize=32)
def _derive_mode_form(optimizer: Optimizer, sigma2: sp.Expr, noise: MinibatchNoise):
    r"""The reduced map of ``optimizer`` on online regression ``LinearRegression(diag(a_1, a_2,
    a_3), σ²)`` with minibatch noise, read off the library's own three-mode recursion and
    certified against it.

    With A diagonal the state splits into modes (coordinate c·d + i of the stacked blocks
    belongs to mode i).  The Isserlis noise :math:`(A\Sigma A + \operatorname{Tr}(A\Sigma)A +
    \sigma^2A)/S` couples a mode's own block :math:`x_i` (its p = k(k+1)/2 half-vector entries)
    to the others only through the trace κ = Tr(AΣ_x) at the gradient point, and a cross block
    :math:`C_{ij}` (i ≠ j) to nothing else:

    .. math:: x_i' = T(a_i)x_i + u(a_i)\,\kappa + f(a_i), \quad
              \kappa = \textstyle\sum_j w(a_j)^\top x_j, \qquad
              \operatorname{vec}C_{ij}' = P(a_i, a_j)\operatorname{vec}C_{ij} .

    w is the coupling density of the landscape (:meth:`~symsgd.LinearRegression.
    coupling_density`) at the gradient point x = Kz, u the coefficient of mode 2's block in mode
    1's (a rank-one block, checked), T the own block minus u wᵀ.  Certificate: the three-mode
    map, forcing, mean map and readout rebuilt from the form equal the recursion's exactly
    (symbolically in a_1, a_2, a_3 and the parameters); the map of d modes is a sum over
    pairs and single modes of the same terms.  Returns None when the recursion does not split
    by modes (then the dense map is used)."""
    modes = sp.symbols("_mode_1:4", positive=True)
    d = len(modes)
    land = LinearRegression(sp.diag(*modes), label_variance=sigma2)
    rec = build_recursion(optimizer, land, noise)
    n = rec.n
    if n % d:
        return None
    k = n // d
    index = {pq: r for r, pq in enumerate(pairs(n))}

    def at(p: int, q: int) -> int:
        return index[(min(p, q), max(p, q))]

    def own(i: int) -> list[int]:
        return [at(r * d + i, c * d + i) for r, c in pairs(k)]

    def both(i: int, j: int) -> list[int]:
        return [at(r * d + i, c * d + j) for r in range(k) for c in range(k)]

    def block(i: int) -> list[int]:
        return [c * d + i for c in range(k)]

    T = operator_matrix(rec)
    _, f = halfvec_system(rec)
    M, K, Theta = (sp.Matrix(m) for m in (rec.M, rec.K, rec.theta_map))
    to_a = {modes[0]: _MODE_A}
    s = sp.symbols(f"_s0:{len(pairs(k))}")
    Krow = K.extract([0], block(0))
    density = sp.expand(
        LinearRegression(modes[0], label_variance=sigma2).coupling_density(
            Krow * from_halfvec(k, list(s)) * Krow.T
        )
    )
    weight = sp.Matrix([sp.diff(density, x) for x in s])
    if sp.expand(density - (weight.T * sp.Matrix(s))[0, 0]) != 0:
        return None
    G = T.extract(own(0), own(1))
    w2 = weight.xreplace({modes[0]: modes[1]})
    column = next((c for c in range(len(s)) if w2[c] != 0), None)
    if column is None:
        return None
    gain = (G[:, column] / w2[column]).applyfunc(sp.cancel)
    local = T.extract(own(0), own(0)) - gain * weight.T
    form = _ModeForm(
        k=k,
        a=_MODE_A,
        b=_MODE_B,
        mean=M.extract(block(0), block(0)).xreplace(to_a),
        local=local.applyfunc(sp.expand).xreplace(to_a),
        gain=gain.xreplace(to_a),
        weight=weight.xreplace(to_a),
        forcing=f.extract(own(0), [0]).xreplace(to_a),
        cross=T.extract(both(0, 1), both(0, 1)).xreplace({modes[0]: _MODE_A, modes[1]: _MODE_B}),
        readout=Theta.extract([0], block(0)).xreplace(to_a),
    )
    if any(e.has(*modes) for m in _form_parts(form) for e in m):
        return None  # an entry of mode 1 depends on another mode: no split
    # certificate: the three-mode recursion rebuilt from the form
    T_want, f_want = sp.zeros(*T.shape), sp.zeros(*f.shape)
    M_want, Theta_want = sp.zeros(n, n), sp.zeros(d, n)
    for i, ai in enumerate(modes):
        at_i = {_MODE_A: ai}
        rows = own(i)
        for j, aj in enumerate(modes):
            part = form.gain.xreplace(at_i) * form.weight.xreplace({_MODE_A: aj}).T
            if i == j:
                part += form.local.xreplace(at_i)
            for r, row in enumerate(rows):
                for c, col in enumerate(own(j)):
                    T_want[row, col] = part[r, c]
            if i < j:
                P = form.cross.xreplace({_MODE_A: ai, _MODE_B: aj})
                for r, row in enumerate(both(i, j)):
                    for c, col in enumerate(both(i, j)):
                        T_want[row, col] = P[r, c]
        for r, row in enumerate(rows):
            f_want[row, 0] = form.forcing[r].xreplace(at_i)
        for r, p in enumerate(block(i)):
            Theta_want[i, p] = form.readout[0, r].xreplace(at_i)
            for c, q in enumerate(block(i)):
                M_want[p, q] = form.mean[r, c].xreplace(at_i)
    for got, want in ((T, T_want), (f, f_want), (M, M_want), (Theta, Theta_want)):
        if not (got - want).applyfunc(sp.expand).is_zero_matrix:
            return None
    return form


def _form_parts(form: _ModeForm) -> tuple:
    return (form.mean, form.local, form.gain, form.weight, form.forcing, form.readout)


def _numbers(values: list) -> str | None:
    """``"exact"`` when every value is rational, ``"float"`` when all are numbers and one is a
    float, else None (symbols or exact irrationals: not for the reduced path)."""
    values = [sp.sympify(v) for v in values]
    if all(v.is_Rational for v in values):
        return "exact"
    if all(v.is_number for v in values) and any(v.has(sp.Float) for v in values):
        if all(not v.free_symbols and v.is_real for v in values):
            return "float"
    return None


def _convert(values, kind: str) -> np.ndarray:
    """Numbers as an array: python-flint rationals (object dtype) or float64."""
    if kind == "float":
        return np.array([float(v) for v in values], dtype=float)
    import flint

    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        v = sp.Rational(v)
        out[i] = flint.fmpq(int(v.p), int(v.q))
    return out


def _evaluate(expr: sp.Expr, symbols: tuple, arrays: tuple, kind: str) -> np.ndarray:
    """The polynomial ``expr`` in ``symbols`` at the value arrays (elementwise)."""
    poly = sp.Poly(expr, *symbols)
    out = arrays[0] * 0
    for monomial, coeff in poly.terms():
        term = _convert([coeff], kind)[0]
        for x, e in zip(arrays, monomial):
            if e:
                term = term * x**e
        out = out + term
    return out


def _apply(P: list, v: list) -> list:
    return [sum(P[r][c] * v[c] for c in range(len(v))) for r in range(len(P))]


def _batched_power_apply(P: list, v: list, t: int) -> list:
    """``P^t v`` for a batch of q×q matrices (nested lists of arrays, one entry per problem) by
    repeated squaring, elementwise over the batch."""
    q = len(v)
    if v[0].dtype == float:  # float64: numpy's batched matrix power
        stack = np.moveaxis(np.array(P, dtype=float), -1, 0)  # batch × q × q
        out = np.linalg.matrix_power(stack, t) @ np.array(v, dtype=float).T[:, :, None]
        return list(out[:, :, 0].T)
    # exact: integers over common denominators (python-flint fmpz skips the gcd of every
    # rational product — 20× faster), one division at the end
    import flint

    den = functools.reduce(_lcm, (x.q for row in P for e in row for x in e), flint.fmpz(1))
    den_v = functools.reduce(_lcm, (x.q for e in v for x in e), flint.fmpz(1))
    P = [[_integers(e * den) for e in row] for row in P]
    v = [_integers(e * den_v) for e in v]
    scale = flint.fmpq(1, den_v) / flint.fmpq(den) ** t
    while t:
        if t & 1:
            v = _apply(P, v)
        t >>= 1
        if t:
            P = [[sum(P[r][s] * P[s][c] for s in range(q)) for c in range(q)] for r in range(q)]
    return [np.array([flint.fmpq(x) * scale for x in e], dtype=object) for e in v]


def _lcm(x, y):
    return x * y // x.gcd(y)


def _integers(arr: np.ndarray) -> np.ndarray:
    """An object array of integral fmpq as fmpz."""
    return np.array([x.p for x in arr], dtype=object)


def _mode_problem(optimizer: Optimizer, landscape: Landscape, noise: Noise, theta0, steps):
    """``(form, values, kind)`` when the reduced path applies (online regression with a
    numeric diagonal A, minibatch noise, no preconditioner or weight decay, numeric parameters,
    an integer ``steps``), else None."""
    if not (
        isinstance(optimizer, Optimizer)
        and isinstance(landscape, LinearRegression)
        and isinstance(noise, MinibatchNoise)
        and landscape.data is None
        and not landscape.eigenmode
        and landscape.dim >= 2
        and isinstance(steps, int)
    ):
        return None
    A = sp.Matrix(landscape.A)
    if any(A[i, j] != 0 for i in range(A.rows) for j in range(A.cols) if i != j):
        return None
    if noise.resolved_dataset_size(landscape) is not sp.oo:
        return None
    if sp.sympify(optimizer.weight_decay) != 0:
        return None
    if optimizer.preconditioner(landscape, noise) is not None:
        return None
    numbers = [
        *A.diagonal(),
        landscape.label_variance,
        noise.batch_size,
        *_field_values(optimizer),
        *_theta_values(theta0),
    ]
    kind = _numbers(numbers)
    if kind is None:
        return None
    values: dict = {}

    def symbolize(v):
        if isinstance(v, sp.MatrixBase) or not (v.is_number and v.is_positive):
            return v
        s = sp.Symbol(f"_mode_p{len(values)}", positive=True)
        values[s] = v
        return s

    twin = map_fields(optimizer, symbolize)
    sigma2 = symbolize(sp.sympify(landscape.label_variance))
    S = symbolize(sp.sympify(noise.batch_size))
    form = _derive_mode_form(twin, sigma2, MinibatchNoise(S, sp.oo, noise.replacement))
    if form is None:
        return None
    pieces = [*_form_parts(form), form.cross]
    if not all(e.xreplace(values).is_polynomial(form.a, form.b) for m in pieces for e in m):
        return None
    return form, values, kind


def _field_values(obj) -> list:
    """The scalar sympy values an optimizer holds (its fields and nested optimizers')."""
    out = []
    map_fields(obj, lambda v: out.append(v) or v)
    return [v for v in out if not isinstance(v, sp.MatrixBase)]


def _mode_transient(problem, optimizer, landscape, theta0, steps: int, curve: bool) -> Transient:
    r"""The reduced path (:func:`_derive_mode_form`): O(d) per step for the modes' own blocks
    and the trace, :math:`P(a_i, a_j)^t` by repeated squaring for each pair's cross block
    (only pairs whose start is nonzero), batched over modes and pairs — exact in ℚ
    (python-flint) or in float64."""
    form, values, kind = problem
    d = landscape.dim
    k = form.k
    own_pairs = pairs(k)
    a = _convert(list(sp.Matrix(landscape.A).diagonal()), kind)
    z0 = _start(optimizer, theta0, d)
    zc = [_convert([z0[c * d + i] for i in range(d)], kind) for c in range(k)]

    def entries(m, symbols=(form.a,), arrays=(a,)):
        return [
            [
                _evaluate(sp.expand(m[r, c].xreplace(values)), symbols, arrays, kind)
                for c in range(m.cols)
            ]
            for r in range(m.rows)
        ]

    Mm, local = entries(form.mean), entries(form.local)
    gain, weight, force = (
        [row[0] for row in entries(m)] for m in (form.gain, form.weight, form.forcing)
    )
    readout = entries(form.readout)[0]
    # θ_iθ_iᵀ = Σ ℓ_r x_r over the mode's half-vector (off-diagonal pairs counted twice)
    ell = [readout[r] * readout[c] * (1 if r == c else 2) for r, c in own_pairs]
    sigma2 = _convert([landscape.label_variance], kind)[0]
    x = [zc[r] * zc[c] for r, c in own_pairs]
    losses = []

    def loss_of(x):
        return (sum((a * sum(l * v for l, v in zip(ell, x))).tolist(), 0 * sigma2) + sigma2) / 2

    for step in range(steps + 1):
        if curve:
            losses.append(float(loss_of(x)))
        if step == steps:
            break
        kappa = sum(sum((w * v).tolist(), 0 * sigma2) for w, v in zip(weight, x))
        x = [s + g * kappa + f for s, g, f in zip(_apply(local, x), gain, force)]
    mean = _batched_power_apply(Mm, zc, steps)
    # cross blocks: z_i = θ0_i r at rest, so C_ij(t) = θ0_i θ0_j P(a_i, a_j)^t vec(r rᵀ), one
    # power per distinct ordered pair of eigenvalues among the modes that start away from 0
    theta = _convert(_theta_values(theta0), kind)
    r_vec = _convert(list(sp.Matrix.vstack(*optimizer.initial_state(sp.Matrix([1])))), kind)
    if any(np.any(zc[c] != theta * r_vec[c]) for c in range(k)):  # pragma: no cover - linear
        raise RuntimeError("transient: the state at rest is not θ₀ times a fixed vector.")
    live = [i for i in range(d) if theta[i] != 0]
    keys = {}
    for n_, i in enumerate(live):
        for j in live[n_ + 1 :]:
            keys.setdefault((a[i], a[j]), []).append((i, j))
    cross = {}
    if keys:
        distinct = list(keys)
        ai = np.array([u for u, _ in distinct], dtype=a.dtype)
        aj = np.array([v for _, v in distinct], dtype=a.dtype)
        P = entries(form.cross, (form.a, form.b), (ai, aj))
        v = [ai * 0 + r_vec[r] * r_vec[c] for r in range(k) for c in range(k)]
        out = _batched_power_apply(P, v, steps)
        for m_, key in enumerate(distinct):
            for i, j in keys[key]:
                scale = theta[i] * theta[j]
                cross[(i, j)] = [scale * out[q][m_] for q in range(k * k)]
    # assemble (state, then θ)
    zero = a[0] * 0
    n = k * d
    S = np.empty((n, n), dtype=object if kind == "exact" else float)
    S[...] = zero
    for i in range(d):
        for r_, (r, c) in enumerate(own_pairs):
            S[r * d + i, c * d + i] = S[c * d + i, r * d + i] = x[r_][i]
    for (i, j), block in cross.items():
        for r in range(k):
            for c in range(k):
                S[r * d + i, c * d + j] = S[c * d + j, r * d + i] = block[r * k + c]
    m = np.array([mean[c][i] for c in range(k) for i in range(d)], dtype=S.dtype)
    theta_mean = np.array(
        [sum(readout[c][i] * mean[c][i] for c in range(k)) for i in range(d)], dtype=S.dtype
    )
    second = np.empty((d, d), dtype=S.dtype)
    for i in range(d):
        for j in range(i, d):
            value = sum(
                readout[r][i] * readout[c][j] * S[r * d + i, c * d + j]
                for r in range(k)
                for c in range(k)
            )
            second[i, j] = second[j, i] = value
    loss = loss_of(x)
    to_sympy = _to_sympy(kind)
    second_m = to_sympy(second)
    mean_m = to_sympy(theta_mean.reshape(d, 1))
    cov = to_sympy(second - np.outer(theta_mean, theta_mean))
    loss_s = to_sympy(np.array([[loss]]))[0, 0]
    return Transient(
        steps=steps,
        mean=mean_m,
        cov=cov,
        second_moment=second_m,
        state_mean=to_sympy(m.reshape(n, 1)),
        state_second_moment=to_sympy(S),
        loss=loss_s,
        test_loss=loss_s,
        rate=_mode_rate(form, values, landscape),
        losses=tuple(losses) if curve else None,
    )


def _to_sympy(kind: str):
    """Array → immutable sympy matrix through a DomainMatrix over QQ or RR (building it from
    sympy numbers costs ~20 µs an entry; n = 400 has 160 000)."""
    from sympy.polys.matrices import DomainMatrix

    domain = sp.RR if kind == "float" else sp.QQ

    def element(v):
        if kind == "float":
            return domain(float(v))
        return v if isinstance(v, domain.dtype) else domain(int(v.p), int(v.q))

    def convert(arr):
        rows = [[element(v) for v in row] for row in arr.tolist()]
        return DomainMatrix(rows, arr.shape, domain).to_Matrix().as_immutable()

    return convert


def _mode_rate(form: _ModeForm, values: dict, landscape: Landscape) -> float:
    r"""ρ of the second-moment map in float64 from the reduced form: the largest of ρ of the
    modes' coupled map :math:`\operatorname{blockdiag}T(a_i) + u w^\top` (dp × dp) and of the
    pair maps :math:`P(a_i, a_j)` over distinct eigenvalue pairs."""
    a = np.array([float(v) for v in sp.Matrix(landscape.A).diagonal()])

    def floats(m, symbols=(form.a,), arrays=(a,)):
        return np.array(
            [
                [
                    _evaluate(sp.expand(e.xreplace(values)), symbols, arrays, "float")
                    for e in m.row(r)
                ]
                for r in range(m.rows)
            ]
        )  # rows × cols × batch

    local, gain, weight = floats(form.local), floats(form.gain)[:, 0], floats(form.weight)[:, 0]
    d, p = a.size, local.shape[0]
    D = np.zeros((d * p, d * p))
    for i in range(d):
        D[i * p : (i + 1) * p, i * p : (i + 1) * p] = local[:, :, i]
    D += np.outer(gain.T.reshape(-1), weight.T.reshape(-1))
    rate = float(np.abs(np.linalg.eigvals(D)).max())
    u = np.unique(a)
    I, J = np.triu_indices(u.size)
    P = floats(form.cross, (form.a, form.b), (u[I], u[J]))
    return max(rate, float(np.abs(np.linalg.eigvals(np.moveaxis(P, -1, 0))).max()))
