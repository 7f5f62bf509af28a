r"""Applications of the exact moment maps: budgets, samplers, weight decay, implicit penalties.

Four questions a user asks of the exact theory, each answered by an exact computation and a
simulator of the real optimizer to check it against.

**The best learning rate for a budget of T steps** (:func:`budget_curve`, :func:`optimal_lr`).
Started at rest at θ₀, the mean and raw second moment of the state after T steps are the
T-th power of the affine map :math:`v\mapsto A(\lambda)v` on :math:`v = (m, s, 1)` of
:func:`symsgd.transient`; the expected (test) loss is a linear functional :math:`w^\top v`, so

.. math:: L_T(\lambda) = w^\top A(\lambda)^T v_0, \qquad
          L_T'(\lambda) = w^\top \sum_{k=0}^{T-1} A^{T-1-k} A'(\lambda) A^{k} v_0 ,

both evaluated by one forward pass :math:`v_{k+1} = Av_k`, :math:`g_{k+1} = Ag_k + A'v_k`
(:math:`A' = dA/d\lambda` differentiated symbolically).  :math:`L_T` is a polynomial in λ, and
the minimiser over an interval is found by scanning a grid, bracketing the best grid point and
solving :math:`L_T'(\lambda) = 0` there (Brent's method); for rational problems the bracket is
certified by the exact sign change of :math:`L_T'` at two rational points (the forward pass in
:math:`\mathbb Q`).  :func:`simulate_transient` runs the real optimizer for exactly T steps
from θ₀ on real noise (minibatches) and measures the same loss with its standard error.

**Exact one-dimensional minimisation** (:func:`exact_minimum`).  A rational objective f(x) on
an interval: the critical points are the real roots of the numerator of f′ (isolated exactly,
``sympy.real_roots``); the minimum is the smallest value among them, and it *exists* only when
no endpoint limit lies below it (otherwise the infimum is approached at the boundary).

**Posterior sampling** (:func:`posterior_lr`).  With stationary covariance Σ(λ) and a target
Gaussian covariance Σ₀ (e.g. the posterior :math:`\sigma^2(NH)^{-1}` of linear regression),
the learning rate minimising

.. math:: \mathrm{KL}(\lambda) = \tfrac12\bigl[\operatorname{Tr}(\Sigma_0^{-1}\Sigma) - d
          - \ln\det(\Sigma_0^{-1}\Sigma)\bigr],
          \qquad \mathrm{KL}'(\lambda) = \tfrac12\operatorname{Tr}\bigl[(\Sigma_0^{-1} -
          \Sigma^{-1})\Sigma'\bigr] ,

whose derivative is rational in λ; in one dimension it vanishes exactly where Σ(λ) = Σ₀.

**Optimal weight decay** (:func:`optimal_weight_decay`): :func:`exact_minimum` of the stationary
test loss over the interval of weight decays containing a reference value on which the
stationary law exists (:func:`stable_interval`, from the result's exact conditions).

**Implicit weight decay of discrete time** (:func:`implicit_weight_decay`): the weight decay
:math:`\gamma_{\rm eff}(\lambda)` for which the *continuous-time* stationary covariance equals the
discrete-time one at γ = 0, :math:`\Sigma_{\rm c}(\lambda, \gamma_{\rm eff}) = \Sigma_{\rm d}
(\lambda, 0)`, order by order in λ from the two series (and exactly for a scalar state).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ._transient import _affine, _derive_mode_form, _start
from ._util import field_symbols, replace_fields
from .landscapes import Landscape, LinearRegression
from .modes import close_trace, expand_traces, mode_trace
from .moments import from_halfvec, pairs
from .noise import MinibatchNoise, Noise
from .numeric import resolve_values
from .optimizers import Optimizer
from .recursion import build_recursion
from .sampling import _loss_model, _minimiser, prepare
from .symbols import weight_decay as WD

__all__ = [
    "BudgetCurve",
    "ExactMinimum",
    "ImplicitWeightDecay",
    "ModeGeneratingFunction",
    "OptimalLR",
    "PosteriorLR",
    "TransientSimulation",
    "budget_curve",
    "exact_minimum",
    "implicit_weight_decay",
    "optimal_lr",
    "optimal_weight_decay",
    "posterior_lr",
    "simulate_schedule",
    "simulate_transient",
    "stable_interval",
    "transient_generating_function",
]


# ---------------------------------------------------------------------------------------------
# the loss after T steps as a function of the learning rate
# ---------------------------------------------------------------------------------------------


def _loss_functional(rec, landscape: Landscape, wd, what: str | None) -> tuple[list, object, str]:
    """Coefficients w_k of the half-vector entries and the constant of the (test) loss as a
    function of the state's raw second moment (the loss does not depend on the mean here)."""
    n = rec.n
    index = pairs(n)
    s = sp.symbols(f"s0:{len(index)}")
    S = from_halfvec(n, list(s))
    Theta = sp.Matrix(rec.theta_map)
    second = Theta * sp.Matrix(S) * Theta.T
    if what is None:
        what = "test_loss" if getattr(landscape, "test_loss", None) is not None else "loss"
        if what == "test_loss" and landscape.test_loss(second, wd) is None:
            what = "loss"
    if what == "test_loss":
        method = getattr(landscape, "test_loss", None)
        value = None if method is None else method(second, wd)
        if value is None:
            raise ValueError(
                f"what='test_loss': {landscape!r} has no fresh-sample loss; use what='loss' "
                "(the training loss)."
            )
    elif what == "loss":
        value = landscape.loss(second, wd)
    else:
        raise ValueError(f"what must be 'test_loss' or 'loss'; got {what!r}.")
    value = sp.expand(value)
    coeffs = [sp.diff(value, x) for x in s]
    const = value.subs(dict.fromkeys(s, 0))
    if any(c.free_symbols for c in [*coeffs, const]) or sp.Poly(value, *s).total_degree() > 1:
        raise ValueError("the loss must be a numeric linear function of the second moment.")
    return coeffs, const, what


@dataclass(frozen=True, eq=False)
class BudgetCurve:
    r"""The exact expected loss after ``steps`` steps from θ₀ as a function of the learning rate
    (see the module): :meth:`loss`, :meth:`slope` (float64 forward pass) and
    :meth:`exact_slope` (in ℚ, for rational problems)."""

    steps: int
    symbol: sp.Symbol
    matrix: sp.Matrix  # A(λ) on (m, s, 1)
    start: sp.Matrix  # v₀
    weights: sp.Matrix  # w (a row)
    what: str
    _numeric: Callable = field(repr=False)
    _numeric_slope: Callable = field(repr=False)

    @property
    def rational(self) -> bool:
        """Every entry of A, v₀ and w rational (the exact slope is available)."""
        entries = [*self.matrix.subs(self.symbol, 0), *self.start, *self.weights]
        coeffs = [c for e in self.matrix for c in sp.Poly(e, self.symbol).coeffs()]
        return all(sp.sympify(e).is_Rational for e in entries + coeffs)

    def _pass(self, x: float) -> tuple[float, float]:
        A = np.asarray(self._numeric(x), dtype=float)
        dA = np.asarray(self._numeric_slope(x), dtype=float)
        v = np.array(self.start, dtype=float).reshape(-1)
        g = np.zeros_like(v)
        for _ in range(self.steps):
            g = A @ g + dA @ v
            v = A @ v
        w = np.array(self.weights, dtype=float).reshape(-1)
        return float(w @ v), float(w @ g)

    def loss(self, x: float) -> float:
        """:math:`L_T(\\lambda)` at λ = ``x`` (float64)."""
        return self._pass(float(x))[0]

    def slope(self, x: float) -> float:
        """:math:`L_T'(\\lambda)` at λ = ``x`` (float64)."""
        return self._pass(float(x))[1]

    def exact(self, x) -> tuple[sp.Rational, sp.Rational]:
        r"""``(L_T(x), L_T'(x))`` exactly for a rational ``x`` (python-flint, rational problems
        only)."""
        import flint

        if not self.rational:
            raise ValueError("exact(): the problem has non-rational entries.")
        x = sp.Rational(x)

        def to_flint(m):
            return flint.fmpq_mat(m.rows, m.cols, [flint.fmpq(int(e.p), int(e.q)) for e in m])

        A = to_flint(self.matrix.subs(self.symbol, x))
        dA = to_flint(self.matrix.diff(self.symbol).subs(self.symbol, x))
        v = to_flint(self.start)
        g = flint.fmpq_mat(v.nrows(), 1)
        for _ in range(self.steps):
            g = A * g + dA * v
            v = A * v
        w = to_flint(self.weights)
        val, der = (w * v)[0, 0], (w * g)[0, 0]
        return sp.Rational(int(val.p), int(val.q)), sp.Rational(int(der.p), int(der.q))

    def edge(self, hi: float = 1e3) -> float:
        """The constant-rate mean-square edge: the smallest λ > 0 with ρ(T(λ)) = 1 (the
        second-moment block of A), by bisection on the float spectral radius; ``inf`` when
        ρ < 1 up to ``hi``."""
        k = self._mean_size
        rows = slice(k, self.matrix.rows - 1)

        def radius(x):
            T = np.asarray(self._numeric(x), dtype=float)[rows, rows]
            return float(np.max(np.abs(np.linalg.eigvals(T))))

        lo, top = 0.0, None
        x = 1e-3
        while x <= hi:
            if radius(x) >= 1:
                top = x
                break
            lo, x = x, 2 * x
        if top is None:
            return math.inf
        for _ in range(80):
            mid = (lo + top) / 2
            lo, top = (mid, top) if radius(mid) < 1 else (lo, mid)
        return lo

    @property
    def _mean_size(self) -> int:
        n = self.matrix.rows - 1  # n + p
        k = 0
        while k * (k + 1) // 2 + k != n:
            k += 1
        return k


def budget_curve(
    optimizer_factory: Callable[[sp.Symbol], Optimizer],
    landscape: Landscape,
    noise: Noise,
    *,
    theta0,
    steps: int,
    what: str | None = None,
) -> BudgetCurve:
    r"""The exact expected ``what`` (``"test_loss"`` or ``"loss"``; default the test loss
    where the landscape has one, else the training loss) after ``steps`` steps
    started at rest at θ₀ (a deviation from the minimum), as a function of the learning rate:
    ``optimizer_factory(λ)`` builds the optimizer at a learning-rate symbol; every other
    parameter must be a number.  See the module for the forward pass.

    >>> import sympy as sp, symsgd as ss
    >>> curve = budget_curve(ss.SGD, ss.Quadratic(1), ss.AdditiveNoise(1), theta0=[2], steps=2)
    >>> curve.exact(sp.Rational(1, 2))  # ½E θ₂² = ½[4(1 − λ)⁴ + λ²((1 − λ)² + 1)] and d/dλ
    (9/32, -1/2)
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer ≥ 0; got {steps!r}.")
    x = sp.Symbol("lambda_budget", positive=True)
    opt = optimizer_factory(x)
    if not isinstance(opt, Optimizer):
        raise TypeError(f"optimizer_factory must return a symsgd optimizer; got {opt!r}.")
    if landscape.eigenmode:
        raise NotImplementedError("budget_curve: eigen-mode problems are not supported.")
    wd = sp.sympify(opt.weight_decay)
    if isinstance(landscape, LinearRegression) and wd != 0:
        raise NotImplementedError(
            "budget_curve: LinearRegression with weight decay is not supported (ss.transient "
            "is not)."
        )
    rec = build_recursion(opt, landscape, noise)
    A = _affine(rec).applyfunc(sp.expand)
    z0 = _start(opt, theta0, landscape.dim)
    index = pairs(rec.n)
    S0 = z0 * z0.T
    v0 = sp.Matrix([*z0, *[S0[i, j] for i, j in index], 1])
    free = (A.free_symbols | v0.free_symbols) - {x}
    if free:
        raise ValueError(
            f"budget_curve: every parameter but the learning rate must be a number; free: "
            f"{', '.join(sorted(map(str, free)))}."
        )
    coeffs, const, what = _loss_functional(rec, landscape, wd, what)
    w = sp.Matrix([[*([0] * rec.n), *coeffs, const]])
    if x not in A.free_symbols:
        raise ValueError("optimizer_factory(λ) must use its argument as the learning rate.")
    f = sp.lambdify(x, A, "numpy")
    df = sp.lambdify(x, A.diff(x), "numpy")
    return BudgetCurve(int(steps), x, A, v0, w, what, f, df)


@dataclass(frozen=True)
class OptimalLR:
    """The learning rate minimising the expected loss after ``steps`` steps (:func:`optimal_lr`):
    ``lr`` and ``loss`` (floats), ``slope`` L′ there, ``bracket`` (a, b) around ``lr``,
    ``certified`` True when L′(a) < 0 < L′(b) was checked exactly in ℚ, ``boundary`` True when
    the minimum over ``bounds`` is at an end (no interior critical point), ``bounds`` the
    interval searched and ``curve`` the :class:`BudgetCurve`."""

    lr: float
    loss: float
    slope: float
    bracket: tuple
    certified: bool
    boundary: bool
    bounds: tuple
    curve: BudgetCurve = field(repr=False)


def optimal_lr(
    optimizer_factory: Callable[[sp.Symbol], Optimizer],
    landscape: Landscape,
    noise: Noise,
    *,
    theta0,
    steps: int,
    bounds: tuple | None = None,
    what: str | None = None,
    grid: int = 96,
    xtol: float = 1e-12,
    certify: bool = True,
) -> OptimalLR:
    r"""The learning rate minimising the exact expected ``what`` after ``steps`` steps from θ₀
    (see the module): the exact curve :math:`L_T(\lambda)` (:func:`budget_curve`) on a grid of
    ``grid`` points over ``bounds`` (default: (0, the constant-rate mean-square edge)), then the
    root of :math:`L_T'` in the bracket of the best grid point (Brent, to ``xtol``), certified
    by the exact sign change of :math:`L_T'` at rational ends for rational problems
    (``certify=False`` skips it: its rationals grow in bit size with T).  The grid scan makes
    the minimum global up to the grid's resolution: :math:`L_T` is a polynomial of degree up to
    2T in λ and may have several local minima.

    >>> import symsgd as ss
    >>> best = optimal_lr(ss.SGD, ss.Quadratic(1), ss.AdditiveNoise(0), theta0=[1], steps=3)
    >>> round(best.lr, 9), best.certified  # noiseless: one step of λ = 1/h is exact
    (1.0, True)
    """
    from scipy.optimize import brentq

    curve = budget_curve(optimizer_factory, landscape, noise, theta0=theta0, steps=steps, what=what)
    if bounds is None:
        lo, hi = 0.0, curve.edge()
        if not math.isfinite(hi):
            raise ValueError("optimal_lr: the map is stable for every λ; give bounds=(lo, hi).")
    else:
        lo, hi = (float(b) for b in bounds)
        if not 0 <= lo < hi or not math.isfinite(hi):
            raise ValueError(f"bounds must satisfy 0 ≤ lo < hi < ∞; got {bounds!r}.")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 3:
        raise ValueError(f"grid must be an integer ≥ 3; got {grid!r}.")
    xs = np.linspace(lo, hi, grid + 1)[1:]  # λ = lo is excluded when it is 0 (no motion)
    if lo > 0:
        xs = np.linspace(lo, hi, grid)
    values = np.array([curve.loss(x) for x in xs])
    if not np.all(np.isfinite(values)):
        raise ValueError("optimal_lr: the loss overflows on the grid; narrow the bounds.")
    k = int(np.argmin(values))
    a = xs[k - 1] if k > 0 else lo
    b = xs[k + 1] if k + 1 < len(xs) else hi
    sa, sb = curve.slope(a), curve.slope(b)
    boundary = False
    if sa < 0 < sb:
        x = brentq(curve.slope, a, b, xtol=xtol, rtol=4 * np.finfo(float).eps)
    elif k + 1 == len(xs) and curve.slope(hi) <= 0:
        x, boundary = hi, True
    elif k == 0 and lo > 0 and curve.slope(lo) >= 0:
        x, boundary = lo, True
    else:
        raise ValueError(
            "optimal_lr: the best grid point has no sign change of L′ around it; raise grid."
        )
    certified = False
    bracket: tuple = (a, b)
    if certify and not boundary and curve.rational:
        width = max(1e-9, 1e3 * xtol)
        ra = sp.Rational(x - width).limit_denominator(10**12)
        rb = sp.Rational(x + width).limit_denominator(10**12)
        if curve.exact(ra)[1] < 0 < curve.exact(rb)[1]:
            certified, bracket = True, (ra, rb)
    value, slope = curve._pass(x)
    return OptimalLR(float(x), value, slope, bracket, certified, boundary, (lo, hi), curve)


# ---------------------------------------------------------------------------------------------
# the learning curve of an eigen-mode problem with minibatch noise: a generating function
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModeGeneratingFunction:
    r"""Generating functions :math:`F(z) = \sum_{t\ge0} F_t z^t` of one eigen-mode's moments
    after t steps (:func:`transient_generating_function`), in the mode eigenvalue ``mode`` and
    :class:`~symsgd.modes.ModeTrace` terms over all modes: ``second_moment``
    (:math:`\mathbb E\theta_t^2` of the mode), ``mean`` (:math:`\mathbb E\theta_t`), ``kappa``
    (the trace :math:`\kappa_t = \operatorname{Tr}(A\,\mathbb E[x_tx_t^\top])` at the gradient
    point), ``loss`` (the expected loss :math:`\tfrac12(\operatorname{Tr}(A\Sigma_t) + \sigma^2)`
    of the online form, training = test); ``certificate`` says how it was checked.
    :meth:`coefficients` and :meth:`at` read the values at given t for a concrete spectrum."""

    z: sp.Symbol
    mode: sp.Symbol
    second_moment: sp.Expr
    mean: sp.Expr
    kappa: sp.Expr
    loss: sp.Expr
    certificate: str

    def coefficients(self, what: str, eigenvalues, count: int, values: dict | None = None):
        r"""The first ``count`` coefficients :math:`F_0, \dots, F_{count-1}` of ``what``
        (``"loss"``, ``"kappa"``, ``"second_moment"`` or ``"mean"``; the last two a list with
        one curve per eigenvalue) for the spectrum ``eigenvalues`` (traces expanded,
        :func:`symsgd.modes.expand_traces`) and parameter ``values``: the rational function
        :math:`N(z)/D(z)` expanded by :math:`D_0F_t = N_t - \sum_{j\ge1} D_jF_{t-j}`."""
        if what not in ("loss", "kappa", "second_moment", "mean"):
            raise ValueError(
                f"what must be 'loss', 'kappa', 'second_moment' or 'mean'; got {what!r}."
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an integer ≥ 0; got {count!r}.")
        eig = [sp.sympify(e) for e in eigenvalues]
        if not eig:
            raise ValueError("eigenvalues: give at least one eigenvalue.")
        subs = {sp.sympify(k): sp.sympify(v) for k, v in (values or {}).items()}
        expr = expand_traces(getattr(self, what), eig).xreplace(subs)
        if what in ("loss", "kappa"):
            return _series(expr, self.z, count)
        return [_series(expr.xreplace({self.mode: a}), self.z, count) for a in eig]

    def at(self, steps: int, eigenvalues, values: dict | None = None) -> dict:
        """The moments after ``steps`` steps for the spectrum ``eigenvalues``: a dict with
        ``loss``, ``kappa`` and the per-mode lists ``second_moment`` and ``mean``."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an integer ≥ 0; got {steps!r}.")
        out = {}
        for what in ("loss", "kappa", "second_moment", "mean"):
            series = self.coefficients(what, eigenvalues, steps + 1, values)
            out[what] = series[-1] if what in ("loss", "kappa") else [s[-1] for s in series]
        return out


def _series(expr: sp.Expr, z: sp.Symbol, count: int) -> list:
    r"""The first ``count`` Taylor coefficients at z = 0 of the rational function ``expr``,
    read in the field K(z) (K = ℚ or ℚ(parameters)): :math:`N/D` with
    :math:`D_0F_t = N_t - \sum_{j\ge1} D_jF_{t-j}`."""
    from sympy.polys.fields import field

    params = sorted(expr.free_symbols - {z}, key=str)
    domain = sp.QQ.frac_field(*params) if params else sp.QQ
    K, _ = field([z], domain)
    value = K.from_expr(expr)

    def coefficients(poly) -> list:
        out = [domain.zero] * (poly.degree() + 1 if poly else 0)
        for (power,), c in poly.terms():
            out[power] = c
        return out

    N, D = coefficients(value.numer), coefficients(value.denom)
    if not D or D[0] == domain.zero:
        raise ValueError("the generating function has a pole at z = 0.")
    out: list = []
    for t in range(count):
        acc = N[t] if t < len(N) else domain.zero
        for j in range(1, min(t, len(D) - 1) + 1):
            acc -= D[j] * out[t - j]
        out.append(acc / D[0])
    return [domain.to_sympy(c) for c in out]


def transient_generating_function(
    optimizer: Optimizer, landscape: Landscape, noise: Noise, *, theta0, z: sp.Symbol | None = None
) -> ModeGeneratingFunction:
    r"""The exact learning curve of an eigen-mode problem with minibatch noise, as generating
    functions in z with traces over the modes.

    For online regression in the eigenbasis (``LinearRegression.commuting(a, σ²)``) with
    ``MinibatchNoise(S)`` every mode's own second-moment block :math:`x_t` (p = k(k+1)/2
    entries of the k state blocks) obeys :math:`x_{t+1} = T(a)x_t + u(a)\kappa_t + f(a)` with
    the trace :math:`\kappa_t = \operatorname{Tr}[w(A)^\top x_t(A)]` (the reduced map of
    :func:`symsgd.transient`, derived from the library's recursion).  With
    :math:`X(z) = \sum_t x_tz^t`,

    .. math:: X(z) = (I - zT)^{-1}\Bigl[x_0 + z\,u\,\kappa(z) + \frac{z f}{1-z}\Bigr], \qquad
              \kappa(z) = \operatorname{Tr}[w^\top X(z)]

    is affine in κ(z); summing over modes closes it by one linear equation
    (:func:`symsgd.modes.close_trace`):
    :math:`\kappa(z) = \operatorname{Tr}U_z(A) / (1 - \operatorname{Tr}V_z(A))`.
    θ₀ is the mode's component at the start (a number, a symbol, or a function of the mode
    eigenvalue).  Certificate: for the spectrum (1, 2, 1/2) at a rational point of the other
    parameters the series of the per-mode second moments and the loss equal the iterated dense
    affine map of the explicit three-mode problem for t = 0..m−1, where m exceeds the degree
    of the numerator of their difference (both are rational in z: the map's
    :math:`w^\top(I - zA)^{-1}v_0` has denominator degree ≤ its size), so the two series are
    equal there for every t.

    >>> import sympy as sp, symsgd as ss
    >>> a = sp.Symbol("a", positive=True)
    >>> gf = transient_generating_function(
    ...     ss.SGD(sp.Rational(1, 4)), ss.LinearRegression.commuting(a, label_variance=1),
    ...     ss.MinibatchNoise(2), theta0=1)
    >>> gf.coefficients("loss", [1, 2], 3)  # E L_t for the spectrum (1, 2), t = 0, 1, 2
    [2, 95/64, 151/128]
    """

    if not (
        isinstance(landscape, LinearRegression)
        and landscape.eigenmode
        and landscape.data is None
        and isinstance(noise, MinibatchNoise)
    ):
        raise ValueError(
            "transient_generating_function needs an eigen-mode online regression "
            "(LinearRegression.commuting(a, label_variance=σ²)) with MinibatchNoise(S); got "
            f"{landscape!r} with {noise!r}."
        )
    if noise.resolved_dataset_size(landscape) is not sp.oo:  # pragma: no cover - commuting
        raise ValueError("transient_generating_function: the online form needs N = oo.")
    if sp.sympify(optimizer.weight_decay) != 0:
        raise NotImplementedError(
            "transient_generating_function: weight decay offsets the minimum along every mode "
            "at once (the modes' cross moments then enter); not supported."
        )
    if optimizer.preconditioner(landscape, noise) is not None:
        raise NotImplementedError(
            "transient_generating_function: a preconditioner is not supported (SGD and "
            "momentum methods are)."
        )
    (mode,) = list(landscape.mode_names)
    z = sp.Symbol("z") if z is None else z
    if not isinstance(z, sp.Symbol) or z in field_symbols(optimizer) | {mode}:
        raise ValueError(f"z must be a fresh sympy Symbol; got {z!r}.")
    sigma2 = landscape.label_variance
    form = _derive_mode_form(
        optimizer, sigma2, MinibatchNoise(noise.batch_size, sp.oo, noise.replacement)
    )
    if form is None:
        raise NotImplementedError(
            f"transient_generating_function: the recursion of {type(optimizer).__name__} "
            "does not split by modes."
        )
    at_mode = {form.a: mode}
    T, u, w, f, Mm, Theta = (
        m.xreplace(at_mode)
        for m in (form.local, form.gain, form.weight, form.forcing, form.mean, form.readout)
    )
    theta = sp.sympify(theta0[0] if isinstance(theta0, (list, tuple)) else theta0)
    k = form.k
    r = sp.Matrix.vstack(*[sp.Matrix(b) for b in optimizer.initial_state(sp.Matrix([1]))])
    z0 = r * theta
    own = pairs(k)
    x0 = sp.Matrix([z0[i] * z0[j] for i, j in own])
    placeholder = sp.Dummy("kappa_z")
    # X = adj(I − zT)·[(1−z)x₀ + z(1−z)uκ + zf] / (det(I − zT)(1 − z)): polynomial algebra
    resolvent = sp.eye(len(own)) - z * T
    adjugate = resolvent.adjugate().applyfunc(sp.expand)
    den = sp.expand(resolvent.det() * (1 - z))
    rhs = ((1 - z) * x0 + z * (1 - z) * u * placeholder + z * f).applyfunc(sp.expand)
    X = (adjugate * rhs).applyfunc(lambda e: sp.expand(e) / den)
    density = sp.expand((w.T * adjugate * rhs)[0, 0]) / den
    kappa, _slope = close_trace(density, placeholder, mode)
    ell = [Theta[0, i] * Theta[0, j] * (1 if i == j else 2) for i, j in own]
    second_aff = sp.expand(sum((c * x * den for c, x in zip(ell, X)), sp.S.Zero)) / den
    second = second_aff.xreplace({placeholder: kappa})
    step = sp.eye(k) - z * Mm
    mean = sp.expand((Theta * step.adjugate() * z0)[0, 0]) / sp.expand(step.det())
    intercept = second_aff.xreplace({placeholder: 0})
    slope = sp.diff(second_aff, placeholder)
    trace = (mode_trace(mode * intercept, mode) if intercept != 0 else 0) + (
        mode_trace(mode * slope, mode) * kappa if slope != 0 else 0
    )
    loss = trace / 2 + sigma2 / (2 * (1 - z))
    gf = ModeGeneratingFunction(z, mode, second, mean, kappa, loss, "")
    certificate = _certify_generating_function(gf, optimizer, landscape, noise, theta)
    return ModeGeneratingFunction(z, mode, second, mean, kappa, loss, certificate)


def _certify_generating_function(gf, optimizer, landscape, noise, theta) -> str:
    """The series against the iterated dense affine map of the explicit problem with spectrum
    (1, 2, 1/2) at a rational point (see :func:`transient_generating_function`); raises
    ``InternalError`` on any difference."""
    from .errors import InternalError

    spectrum = [sp.Integer(1), sp.Integer(2), sp.Rational(1, 2)]
    free = (
        field_symbols(optimizer)
        | sp.sympify(landscape.label_variance).free_symbols
        | sp.sympify(noise.batch_size).free_symbols
        | theta.free_symbols
    ) - {gf.mode}
    point = {}
    for i, s in enumerate(sorted(free, key=str)):
        point[s] = sp.Rational(1, 3 + 2 * i)
    if noise.batch_size in free:
        point[noise.batch_size] = sp.Integer(3)
    opt = replace_fields(optimizer, point)
    land = LinearRegression(
        sp.diag(*spectrum), label_variance=sp.sympify(landscape.label_variance).xreplace(point)
    )
    batch = sp.sympify(noise.batch_size).xreplace(point)
    rec = build_recursion(opt, land, MinibatchNoise(batch, sp.oo, noise.replacement))
    A = _affine(rec)
    theta0 = [theta.xreplace(point).xreplace({gf.mode: a}) for a in spectrum]
    z0 = _start(opt, theta0, len(spectrum))
    n = rec.n
    index = pairs(n)
    S0 = z0 * z0.T
    v = sp.Matrix([*z0, *[S0[i, j] for i, j in index], 1])
    Theta = sp.Matrix(rec.theta_map)
    curves = {"second_moment": [], "loss": []}
    series = {
        "second_moment": [
            expand_traces(gf.second_moment, spectrum).xreplace(point).xreplace({gf.mode: a})
            for a in spectrum
        ],
        "loss": [expand_traces(gf.loss, spectrum).xreplace(point)],
    }
    size = A.rows
    count = 0
    for exprs in series.values():
        for e in exprs:
            num, den = sp.fraction(sp.cancel(sp.together(e)))
            degree = max(sp.degree(num, gf.z) + size, size - 1 + sp.degree(den, gf.z))
            count = max(count, int(degree) + 1)
    for _ in range(count):
        S = Theta * sp.Matrix(from_halfvec(n, list(v[n : n + len(index)]))) * Theta.T
        curves["second_moment"].append([S[i, i] for i in range(len(spectrum))])
        curves["loss"].append(land.loss(S))
        v = A * v
    for what, exprs in series.items():
        got = [_series(e, gf.z, count) for e in exprs]
        for t in range(count):
            want = curves[what][t] if what == "second_moment" else [curves[what][t]]
            if any(sp.cancel(g[t] - w_) != 0 for g, w_ in zip(got, want)):
                raise InternalError(
                    f"transient_generating_function: the series of {what} differs from the "
                    f"iterated map at t = {t}; it was not returned."
                )
    shown = ", ".join(f"{k} = {v}" for k, v in point.items()) or "no free parameters"
    return (
        f"series = iterated dense map of the 3-mode problem, spectrum (1, 2, 1/2), {shown}, "
        f"for t = 0..{count - 1} (beyond the degree bound: equal for every t there)"
    )


# ---------------------------------------------------------------------------------------------
# simulation of a finite run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransientSimulation:
    r"""Chains of the real optimizer run for exactly ``steps`` steps from θ₀
    (:func:`simulate_transient`): ``theta`` the deviations from the minimum at the end (d ×
    chains), ``mean``/``mean_stderr``, ``second_moment``/``second_moment_stderr`` of
    :math:`\mathbb E\delta\delta^\top`, ``losses`` each chain's expected loss
    :math:`\tfrac12\delta^\top H\delta + \text{const}` given its θ (for the Gaussian
    regression form this is the fresh-sample test loss), ``loss``/``loss_stderr`` their mean and
    standard error."""

    theta: np.ndarray
    mean: np.ndarray
    mean_stderr: np.ndarray
    second_moment: np.ndarray
    second_moment_stderr: np.ndarray
    losses: np.ndarray
    loss: float
    loss_stderr: float
    steps: int
    chains: int
    seed: int


def _prepared(optimizer: Optimizer, landscape: Landscape, noise: Noise, params: dict) -> tuple:
    r"""``(problem, stepper, centre, loss_model)``: :func:`prepare` without the stability
    requirement.  A *negative* weight decay γ (which :func:`prepare` refuses as outside the
    usual domain) is applied by the stepper itself — the optimizer's own ``gradient`` adds
    γθ — on the problem prepared at γ = 0, with the minimiser
    :math:`\theta_\gamma = (H + \gamma I)^{-1}H\theta_*` and the loss measured from it."""
    pieces = field_symbols(landscape) | field_symbols(noise)
    values = resolve_values(dict(params), field_symbols(optimizer) | pieces)
    gamma = sp.sympify(optimizer.weight_decay).subs({k: sp.sympify(v) for k, v in values.items()})
    if not (gamma.is_number and bool(gamma < 0)):
        problem = prepare(optimizer, landscape, noise, params, require_stable=False)
        if problem.loss_model is None:
            raise ValueError(f"simulate_transient: no loss model for {landscape!r}.")
        return problem, problem.stepper, problem.theta_min[:, None], problem.loss_model
    base = copy.copy(optimizer)
    object.__setattr__(base, "weight_decay", sp.S.Zero)
    keep = field_symbols(base) | pieces
    problem = prepare(
        base, landscape, noise, {k: v for k, v in values.items() if k in keep}, require_stable=False
    )
    stepper = copy.copy(problem.stepper)
    object.__setattr__(stepper, "weight_decay", float(gamma))
    land = replace_fields(landscape, problem.values)
    theta_min = _minimiser(land, gamma)
    loss_model = _loss_model(land, theta_min)
    if loss_model is None:
        raise ValueError(f"simulate_transient: no loss model for {landscape!r}.")
    centre = np.array(sp.Matrix(theta_min).evalf(), dtype=float).reshape(-1, 1)
    return problem, stepper, centre, loss_model


def simulate_transient(
    optimizer: Optimizer,
    landscape: Landscape,
    noise: Noise,
    *,
    theta0,
    steps: int,
    params: dict | None = None,
    chains: int = 10_000,
    seed: int = 0,
    block: int = 20_000,
) -> TransientSimulation:
    r"""Run ``chains`` independent chains of the optimizer's own ``step`` for exactly ``steps``
    steps from rest at θ_min + θ₀, with the real stochastic-gradient oracle of
    :func:`symsgd.sampling.prepare` (fresh Gaussian minibatches, rows of a data set, or
    additive Gaussian noise), and measure the moments and loss of the deviation at the end.

    Chains run in blocks of at most ``block`` with one generator ``numpy.random.default_rng(
    seed)``; the random numbers drawn do not depend on θ or on the parameters, so two runs
    with the same ``seed``, ``chains`` and ``block`` share their noise (common random numbers:
    compare ``losses`` chain by chain).  The run may be beyond the stability edge (a finite
    horizon has finite moments).

    >>> import symsgd as ss
    >>> sim = simulate_transient(ss.SGD(0.5), ss.Quadratic(1), ss.AdditiveNoise(0),
    ...                          theta0=[2], steps=1, chains=4)
    >>> sim.mean, sim.loss  # noiseless: θ = 2·(1 − 1/2), loss ½θ²
    (array([1.]), 0.5)
    """
    for name, value, low in (("steps", steps, 0), ("chains", chains, 2), ("block", block, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}; got {value!r}.")
    problem, stepper, centre, loss_model = _prepared(optimizer, landscape, noise, params or {})
    d = problem.dim
    start = np.asarray(sp.Matrix(list(theta0) if np.ndim(theta0) else [theta0]), dtype=float)
    start = start.reshape(-1)
    if start.shape != (d,):
        raise ValueError(f"theta0 must have length {d}; got {start.size}.")
    rng = np.random.default_rng(seed)
    step, readout = stepper.step, stepper.readout
    precondition = problem.precondition()
    out = []
    done = 0
    with np.errstate(all="ignore"):
        while done < chains:
            n = min(block, chains - done)
            grad = problem.oracle.make(rng, n)
            state = stepper.initial_state(np.repeat(centre + start[:, None], n, axis=1))
            for _ in range(steps):
                state = step(state, grad, precondition)
            out.append(np.asarray(readout(state), dtype=float) - centre)
            done += n
    theta = np.concatenate(out, axis=1)
    if not np.all(np.isfinite(theta)):
        raise OverflowError("simulate_transient: the iterates overflowed.")
    i, j = np.triu_indices(d)
    prods = theta[i] * theta[j]
    losses = loss_model.per_chain(theta, prods, (i, j))
    root = math.sqrt(chains)
    second = np.zeros((d, d))
    second_se = np.zeros((d, d))
    for k, (a, b) in enumerate(zip(i, j)):
        second[a, b] = second[b, a] = prods[k].mean()
        second_se[a, b] = second_se[b, a] = prods[k].std(ddof=1) / root
    return TransientSimulation(
        theta=theta,
        mean=theta.mean(axis=1),
        mean_stderr=theta.std(axis=1, ddof=1) / root,
        second_moment=second,
        second_moment_stderr=second_se,
        losses=losses,
        loss=float(losses.mean()),
        loss_stderr=float(losses.std(ddof=1) / root),
        steps=int(steps),
        chains=int(chains),
        seed=seed,
    )


def simulate_schedule(
    schedule,
    landscape: Landscape,
    noise: Noise,
    *,
    cycles: int,
    chains: int = 10_000,
    seed: int = 0,
    params: dict | None = None,
) -> list[np.ndarray]:
    r"""Run ``chains`` chains of a :class:`symsgd.Schedule` — each phase's optimizer with its
    own ``step``, on the real noise oracle of :func:`symsgd.sampling.prepare` — from rest at
    the minimum for ``cycles`` periods, then record the deviation θ − θ_min at the start of each
    phase of one more period: a list of P arrays of shape (d, chains), the samples of the
    periodic law ``periodic_state(...).covs[k]`` describes.

    >>> import sympy as sp, symsgd as ss
    >>> cycle = ss.Schedule.cyclical(ss.SGD, [sp.Rational(5, 2), sp.Rational(1, 2)])
    >>> x = simulate_schedule(cycle, ss.Quadratic(1), ss.AdditiveNoise(1), cycles=20,
    ...                       chains=40000, seed=1)
    >>> [round(float((v**2).mean()), 1) for v in x]  # periodic_state: 29/7 and 109/7
    [4.1, 15.6]
    """
    for name, value, low in (("cycles", cycles, 0), ("chains", chains, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}; got {value!r}.")
    first = schedule.optimizers[0]
    problem, _, centre, _ = _prepared(first, landscape, noise, params or {})
    grad = problem.oracle.make(np.random.default_rng(seed), chains)
    precondition = problem.precondition()
    steppers = []
    for opt in schedule.optimizers:
        steppers.append(_prepared(opt, landscape, noise, params or {})[1])
    state = steppers[0].initial_state(np.repeat(centre, chains, axis=1))
    samples: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for cycle in range(cycles + 1):
            for stepper, t in zip(steppers, schedule.steps):
                if cycle == cycles:
                    samples.append(np.asarray(stepper.readout(state), dtype=float) - centre)
                for _ in range(t):
                    state = stepper.step(state, grad, precondition)
    if not all(np.all(np.isfinite(x)) for x in samples):
        raise OverflowError("simulate_schedule: the iterates overflowed.")
    return samples


# ---------------------------------------------------------------------------------------------
# exact one-dimensional minimisation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactMinimum:
    """The minimum of a rational function on an open interval (:func:`exact_minimum`):
    ``point`` (exact: a rational, a closed form or a ``CRootOf``) and ``value`` (exact), their
    floats ``x`` and ``fx``; ``exists`` False when an endpoint limit is at or below every
    interior critical value (then ``point`` is the best interior critical point, or None);
    ``critical`` every interior critical point; ``interval`` the interval."""

    point: sp.Expr | None
    value: sp.Expr | None
    exists: bool
    critical: tuple
    interval: tuple

    @property
    def x(self) -> float | None:
        return None if self.point is None else float(self.point)

    @property
    def fx(self) -> float | None:
        return None if self.value is None else float(self.value)


def _limit(f: sp.Expr, x: sp.Symbol, at, side: str) -> sp.Expr:
    return sp.limit(f, x, at, side)


def exact_minimum(f: sp.Expr, x: sp.Symbol, interval: tuple = (-sp.oo, sp.oo)) -> ExactMinimum:
    r"""The minimum of the rational function ``f`` of ``x`` (numeric coefficients) on the open
    ``interval``: the real roots of the numerator of f′ inside it, isolated exactly, the
    smallest value of f among them, compared with the one-sided limits of f at both ends.

    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> m = exact_minimum((x**2 - 2)**2 + x, x)
    >>> m.exists, round(m.x, 6)  # the smallest root of f′ = 4x³ − 8x + 1
    (True, -1.472998)
    >>> exact_minimum(1 / x, x, (0, 1)).exists  # inf at the right end, never attained
    False
    """
    f = sp.cancel(sp.sympify(f))
    if f.free_symbols - {x}:
        raise ValueError(
            f"exact_minimum: f must depend on {x} only; free: "
            f"{', '.join(sorted(map(str, f.free_symbols - {x})))}."
        )
    lo, hi = (sp.sympify(e) for e in interval)
    if not (lo < hi) == sp.true:
        raise ValueError(f"exact_minimum: the interval must have lo < hi; got {interval!r}.")
    num = sp.numer(sp.together(sp.diff(f, x)))
    critical = []
    if num != 0:
        for r in sp.Poly(num, x).real_roots():
            if (lo < r) == sp.true and (r < hi) == sp.true:
                critical.append(r)
    best, value = None, None
    for r in critical:
        v = f.subs(x, r)
        v = sp.nsimplify(v) if v.is_Float else v
        if value is None or float(v) < float(value):
            best, value = r, sp.simplify(v) if not v.is_Rational else v
    ends = [_limit(f, x, lo, "+"), _limit(f, x, hi, "-")]
    exists = value is not None and all(
        e is sp.oo or (e.is_real and float(e) > float(value)) for e in ends
    )
    return ExactMinimum(best, value, exists, tuple(critical), (lo, hi))


def stable_interval(result, symbol: sp.Symbol, at=0) -> tuple:
    r"""The largest open interval containing ``at`` on which ``result.conditions`` hold, in
    ``symbol`` (every other parameter a number): the real roots of the conditions' margins cut
    the line; each piece is tested at an interior rational point.

    >>> import sympy as sp, symsgd as ss
    >>> g = sp.Symbol("g", real=True)  # ss.weight_decay is declared nonnegative
    >>> r = ss.stationary(ss.SGD(sp.Rational(1, 2), weight_decay=g), ss.Quadratic(1),
    ...                   ss.AdditiveNoise(1))
    >>> stable_interval(r, g)  # 0 < (1 + g)/2 < 2
    (-1, 3)
    """
    conditions = result.conditions
    if conditions is sp.true:
        return (-sp.oo, sp.oo)
    if conditions.free_symbols - {symbol}:
        raise ValueError(
            f"stable_interval: the conditions must depend on {symbol} only; got {conditions}."
        )
    at = sp.sympify(at)
    if conditions.subs(symbol, at) is not sp.true:
        raise ValueError(f"stable_interval: no stationary law at {symbol} = {at}.")
    cuts = set()
    for cond in sp.And.make_args(conditions):
        margin = sp.numer(sp.together(cond.gts - cond.lts))
        if symbol in margin.free_symbols:
            cuts.update(sp.Poly(margin, symbol).real_roots())
    below = sorted((c for c in cuts if (c < at) == sp.true), key=float)
    above = sorted((c for c in cuts if (c > at) == sp.true), key=float)
    lo = below[-1] if below else -sp.oo
    hi = above[0] if above else sp.oo
    if symbol.is_nonnegative and (lo < 0) == sp.true:
        lo = sp.S.Zero  # the symbol's own domain
    # the cut points next to ``at`` bound the piece containing it; pieces further out may be
    # stable again but are not connected to ``at``
    return (lo, hi)


def optimal_weight_decay(
    result, symbol: sp.Symbol = WD, what: str = "test_loss", at=0
) -> ExactMinimum:
    r"""The weight decay minimising the stationary ``what`` (``"test_loss"`` or ``"loss"``) of
    ``result`` (a :func:`symsgd.stationary` result whose only symbol is ``symbol``), exactly
    (:func:`exact_minimum`) on the :func:`stable_interval` containing ``at``.  It may be
    negative; ``exists`` is False when the loss decreases towards the edge of the interval.

    >>> import sympy as sp, symsgd as ss
    >>> g = sp.Symbol("g", real=True)  # a weight decay of either sign
    >>> r = ss.stationary(ss.SGD(sp.Rational(3, 2), weight_decay=g),
    ...                   ss.LinearRegression(1, 1, [sp.Rational(1, 2)]), ss.MinibatchNoise(32))
    >>> m = optimal_weight_decay(r, g)
    >>> m.exists, round(m.x, 6)  # negative: λa = 3/2 > 1
    (True, -0.127067)
    """
    value = getattr(result, what, None) if what in ("test_loss", "loss") else None
    if value is None:
        raise ValueError(f"optimal_weight_decay: the result has no {what!r}.")
    if value.free_symbols - {symbol}:
        raise ValueError(
            f"optimal_weight_decay: substitute numbers for "
            f"{', '.join(sorted(map(str, value.free_symbols - {symbol})))} first."
        )
    return exact_minimum(value, symbol, stable_interval(result, symbol, at))


# ---------------------------------------------------------------------------------------------
# posterior sampling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PosteriorLR:
    """The learning rate whose stationary law is closest to a target Gaussian
    (:func:`posterior_lr`): ``lr`` exact, ``kl`` the divergence there (float), ``cov`` Σ(λ*),
    ``edge`` the end of the stable range searched, ``exact_match`` True when Σ(λ*) equals the
    target exactly."""

    lr: sp.Expr
    kl: float
    cov: sp.Matrix
    edge: sp.Expr
    exact_match: bool


def posterior_lr(result, target, symbol: sp.Symbol | None = None) -> PosteriorLR:
    r"""The learning rate λ* minimising :math:`\mathrm{KL}(N(0,\Sigma(\lambda))\,\|\,N(0,
    \Sigma_0))` for the stationary covariance Σ(λ) of ``result`` and the target covariance
    ``target`` (see the module): the real roots of the numerator of the rational KL′ in
    (0, edge), edge = ``result.stability_edge(λ)``.  A scalar problem may keep other symbols:
    then Σ(λ) = Σ₀ is solved in closed form and the root in (0, edge) kept.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> posterior_lr(r, 1 / h).lr  # λc/(h(2 − λh)) = 1/h
    2/(c + h)
    """
    x = result._lr_symbol() if symbol is None else symbol
    cov = (
        sp.Matrix(result.cov) if isinstance(result.cov, sp.MatrixBase) else sp.Matrix([result.cov])
    )
    T = sp.Matrix(target) if isinstance(target, (sp.MatrixBase, list)) else sp.Matrix([target])
    if T.shape != cov.shape:
        raise ValueError(f"target must be {cov.shape[0]}×{cov.shape[0]}; got {T.shape}.")
    edge = result.stability_edge(x)
    if cov.shape == (1, 1):
        sol = [
            s
            for s in sp.solve(sp.numer(sp.together(cov[0, 0] - T[0, 0])), x)
            if sp.simplify(s).is_positive is not False
        ]
        inside = [s for s in sol if _below(s, edge)]
        if len(inside) != 1:
            raise ValueError(f"posterior_lr: expected one root in (0, edge); got {sol}.")
        s = sp.factor(inside[0])
        if sp.cancel(cov[0, 0].subs(x, s) - T[0, 0]) != 0:
            from .errors import InternalError

            raise InternalError("posterior_lr: the root does not solve Σ(λ) = Σ₀.")
        return PosteriorLR(s, 0.0, sp.Matrix([T[0, 0]]), edge, True)
    if (cov.free_symbols | T.free_symbols) - {x}:
        raise ValueError("posterior_lr: a matrix problem needs numbers for every symbol but λ.")
    Tinv = T.inv()
    dcov = cov.diff(x)
    kl_slope = sp.cancel(((Tinv - cov.inv()) * dcov).trace() / 2)
    candidates = [
        r
        for r in sp.Poly(sp.numer(sp.together(kl_slope)), x).real_roots()
        if r.is_positive and _below(r, edge)
    ]

    def kl(v):
        S = np.array(cov.subs(x, v).evalf(30), dtype=float)
        Ti = np.array(Tinv.evalf(30), dtype=float)
        P = Ti @ S
        return 0.5 * (np.trace(P) - len(P) - math.log(np.linalg.det(P)))

    if not candidates:
        raise ValueError("posterior_lr: KL has no critical point in (0, edge).")
    best = min(candidates, key=kl)
    match = sp.simplify(cov.subs(x, best) - T).is_zero_matrix is True
    return PosteriorLR(best, kl(best), cov.subs(x, best), edge, bool(match))


def _below(value, edge) -> bool:
    if edge is sp.oo:
        return True
    diff = sp.simplify(edge - value)
    if diff.is_positive:
        return True
    if diff.free_symbols:
        return diff.is_positive is not False
    return float(diff) > 0


# ---------------------------------------------------------------------------------------------
# the implicit weight decay of discrete time
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImplicitWeightDecay:
    r"""The effective weight decay of discrete-time SGD (:func:`implicit_weight_decay`):
    ``series`` :math:`\sum_{k<n} g_k\lambda^k` (a sympy expression in λ), ``coefficients``
    (g₀ = 0, g₁, …), ``exact`` the exact solution γ_eff(λ) of Σ_c(λ, γ) = Σ_d(λ, 0) for a
    scalar state (None if sympy finds no unique solution vanishing at λ = 0)."""

    series: sp.Expr
    coefficients: tuple
    exact: sp.Expr | None


def implicit_weight_decay(
    result, gamma: sp.Symbol = WD, n: int = 3, symbol: sp.Symbol | None = None
) -> ImplicitWeightDecay:
    r"""The weight decay :math:`\gamma_{\rm eff}(\lambda)` at which the continuous-time
    stationary covariance (``result.continuous_time()``) equals the discrete-time one at
    γ = 0: ``result`` is a :func:`symsgd.stationary` result with the weight decay ``gamma``
    left symbolic and a scalar covariance.  Writing :math:`\Sigma_d(\lambda) = \sum_k
    d_k\lambda^k` (``result.series``) and :math:`\Sigma_c(\lambda,\gamma)`, the coefficients of
    :math:`\gamma_{\rm eff} = \sum_{k\ge1} g_k\lambda^k` follow order by order from
    :math:`\Sigma_c(\lambda, \gamma_{\rm eff}(\lambda)) = \Sigma_d(\lambda, 0) + O(\lambda^{n+1})`
    (each order is linear in the newest coefficient, with the factor
    :math:`\partial_\gamma c_1(0) \ne 0`); ``n`` is the number of coefficients g₁..g_n.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr, weight_decay=ss.weight_decay), ss.Quadratic(h),
    ...                   ss.AdditiveNoise(c))
    >>> implicit_weight_decay(r, n=2).series  # exactly −λh²/2: h + γ_eff = h(1 − λh/2)
    -h**2*lambda/2
    """
    x = result._lr_symbol() if symbol is None else symbol
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer ≥ 1; got {n!r}.")
    cov_d = result.cov
    if isinstance(cov_d, sp.MatrixBase):
        if cov_d.shape != (1, 1):
            raise NotImplementedError(
                "implicit_weight_decay: a scalar γ cannot match a matrix covariance; use a "
                "scalar or eigen-mode problem."
            )
        cov_d = cov_d[0, 0]
    if gamma not in sp.sympify(cov_d).free_symbols:
        raise ValueError(f"implicit_weight_decay: the result must keep {gamma} symbolic.")
    cov_c = result.continuous_time().cov
    cov_c = cov_c[0, 0] if isinstance(cov_c, sp.MatrixBase) else cov_c
    disc = sp.series(sp.sympify(cov_d).subs(gamma, 0), x, 0, n + 2).removeO()
    gs = sp.symbols(f"g1:{n + 1}")
    trial = sum(g * x ** (k + 1) for k, g in enumerate(gs))
    cont = sp.series(sp.sympify(cov_c).subs(gamma, trial), x, 0, n + 2).removeO()
    gap = sp.expand(cont - disc)
    if sp.cancel(sp.together(gap.coeff(x, 1))) != 0:
        raise ValueError("implicit_weight_decay: the leading orders differ (not the same law).")
    solved: dict = {}
    for k in range(n):
        eq = sp.cancel(sp.together(gap.coeff(x, k + 2).subs(solved)))
        sol = sp.solve(eq, gs[k])
        if len(sol) != 1:
            raise ValueError(f"implicit_weight_decay: order {k + 1} is not determined ({eq}).")
        solved[gs[k]] = sp.factor(sol[0])
    coeffs = (sp.S.Zero, *[solved[g] for g in gs])
    series = sp.expand(sum(c * x**k for k, c in enumerate(coeffs)))
    exact = None
    try:
        roots = sp.solve(sp.numer(sp.together(cov_c - sp.sympify(cov_d).subs(gamma, 0))), gamma)
    except NotImplementedError:
        roots = []
    vanish = [sp.factor(r) for r in roots if sp.simplify(r.subs(x, 0)) == 0]
    if len(vanish) == 1:
        exact = vanish[0]
    return ImplicitWeightDecay(series, coeffs, exact)
