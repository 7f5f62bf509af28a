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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

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


def _start(optimizer: Optimizer, theta0, d: int) -> sp.Matrix:
    """The state at rest at θ₀ (``optimizer.initial_state``) as one column."""
    if isinstance(theta0, (sp.MatrixBase, np.ndarray)):
        values = list(sp.Matrix(theta0))
    elif isinstance(theta0, Sequence) and not isinstance(theta0, str):
        values = list(theta0)
    else:
        values = [theta0]
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
    finite data), certified against the iterated map at t = 0..6 (which determines it).
    ``curve=True`` adds the float training loss at every t = 0..steps.  An eigen-mode problem
    with additive noise (``Quadratic.commuting``) is followed mode by mode: the answer is that of
    one mode, in its eigenvalues (θ₀ the mode's component).

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
                "e.g. LinearRegression(sp.diag(a1, a2), label_variance=σ²)."
            )
        landscape = landscape.one_mode()  # additive noise: each mode is its own 1-D problem
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
    elif symbolic or free:
        raise NotImplementedError(
            f"transient: a symbolic number of steps or symbolic parameters need a "
            f"one-dimensional state (scalar SGD); this state has n = {n}. Give numbers "
            f"(free: {', '.join(sorted(map(str, free))) or 'none'}) and an integer steps."
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
        cov = cov.applyfunc(sp.cancel) if free else cov
    wd = optimizer.weight_decay
    loss = landscape.loss(second, wd)
    test_loss = getattr(landscape, "test_loss", None)
    test_loss = test_loss(second, wd) if test_loss is not None else None
    if free:
        rate = sp.Abs(A[n, n])
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
