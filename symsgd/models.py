r"""General models: a per-sample loss and a data set, its minima and their local problems.

A model is a per-sample loss :math:`\ell(\theta; x)` written as a sympy expression, with
parameters θ, inputs x and a data set of N rows :math:`x_1, …, x_N`; the training loss is the mean
:math:`L(\theta) = \frac1N\sum_i \ell(\theta; x_i)`.  Gradients and Hessians are *derived* with
sympy (never finite-differenced) and compiled once with common-subexpression elimination.

Near a minimum θ* the minibatch gradient is, to first order in :math:`\delta = \theta - \theta_*`,

.. math:: \hat g_B(\theta) = \frac1S\sum_{i} n_i\,\bigl(g_i + H_i\,\delta\bigr),
          \qquad g_i = \nabla\ell(\theta_*; x_i),\quad H_i = \nabla^2\ell(\theta_*; x_i),

(:math:`n_i` the batch counts of the sampling design, :math:`\sum_i g_i = 0` at a minimum): the
per-sample terms :math:`X_i\delta - c_i` with :math:`X_i = H_i`, :math:`c_i = -g_i` that
:class:`~symsgd.MinibatchNoise` turns into the exact multiplicative noise of the linearised
dynamics — exactly as it does for :meth:`LinearRegression.from_data
<symsgd.LinearRegression.from_data>`, whose per-sample terms are the special case
:math:`H_i = x_ix_i^\top`.  :meth:`EmpiricalLoss.near` builds that local problem
(:class:`LocalLandscape`) for :func:`symsgd.stationary`; :func:`symsgd.simulate` runs the real
optimizer on the real, nonlinear loss.

>>> import sympy as sp, symsgd as ss
>>> w, x, y = sp.symbols("w x y")
>>> model = ss.EmpiricalLoss((w * x - y) ** 2 / 2, params=[w], inputs=[x, y],
...                          data=[[1, 1], [2, 3]])
>>> model.minimum(start=[0])  # exact data and a rational minimiser: found exactly
Matrix([[7/5]])
>>> model.near([sp.Rational(7, 5)]).hessian
Matrix([[5/2]])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from ._util import _entry
from .landscapes import SampledLandscape, _floats

__all__ = [
    "EXAMPLES",
    "EmpiricalLoss",
    "LocalLandscape",
    "NoiseApproximations",
    "double_well",
    "example",
    "logistic_regression",
    "shifted_double_well",
    "two_layer_linear",
    "two_layer_tanh",
]

#: digits of a minimum refined by :meth:`EmpiricalLoss.minimum`
DIGITS = 30
#: functions whose derivative does not exist everywhere: refused in a per-sample loss
NON_DIFFERENTIABLE = (
    sp.Abs,
    sp.Max,
    sp.Min,
    sp.sign,
    sp.Heaviside,
    sp.Piecewise,
    sp.floor,
    sp.ceiling,
    sp.frac,
)


def _symbols(value, name: str) -> tuple[sp.Symbol, ...]:
    items = [value] if isinstance(value, sp.Symbol) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(
            f"EmpiricalLoss: {name} must be a list of sympy Symbols, e.g. sp.symbols('w1 w2'); "
            f"got {value!r}."
        )
    out = tuple(items)
    bad = [s for s in out if not isinstance(s, sp.Symbol)]
    if bad:
        raise TypeError(f"EmpiricalLoss: {name} must hold sympy Symbols; got {bad[0]!r}.")
    if len(set(out)) != len(out):
        raise ValueError(f"EmpiricalLoss: {name} lists a symbol twice: {list(map(str, out))}.")
    return out


def _data_rows(data, k: int) -> list[list[sp.Expr]]:
    """The data set as N rows of k sympy entries (an N-vector is N rows when k = 1)."""
    if isinstance(data, np.ndarray):
        rows = data.tolist()
    elif isinstance(data, sp.MatrixBase):
        rows = data.tolist()
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rows = [list(r) if isinstance(r, (Sequence, np.ndarray)) else r for r in data]
    else:
        raise TypeError(
            f"EmpiricalLoss: data must be a table with one row per sample (a list of rows, a "
            f"numpy array or a sympy Matrix); got {type(data).__name__}."
        )
    if not rows:
        raise ValueError("EmpiricalLoss: data is empty; give at least one sample.")
    if all(not isinstance(r, list) for r in rows) and k == 1:
        rows = [[r] for r in rows]
    lengths = sorted({len(r) if isinstance(r, list) else 1 for r in rows})
    if lengths != [k] or any(not isinstance(r, list) for r in rows):
        raise ValueError(
            f"EmpiricalLoss: every row of data must hold one value per input ({k} inputs); "
            f"got rows of length {lengths}."
        )
    return [[_entry(e, "data", "EmpiricalLoss: ") for e in r] for r in rows]


@dataclass(frozen=True)
class _Compiled:
    """Numpy functions of (θ_1, …, θ_d, x_1, …, x_k) that broadcast over samples and chains."""

    loss: Callable
    gradient: Callable
    hessian: Callable


def _broadcast(values: list, shape: tuple) -> np.ndarray:
    return np.stack([np.broadcast_to(np.asarray(v, dtype=float), shape) for v in values])


class EmpiricalLoss:
    r"""The training loss :math:`L(\theta) = \frac1N\sum_{i=1}^N\ell(\theta; x_i)` of a
    per-sample loss ``loss`` (a sympy expression in ``params`` and ``inputs``) on ``data`` (one
    row per sample, one column per input).

    Exact data (integers, rationals, sympy numbers or a few symbols) stays exact; float data is
    float64.  The gradient :math:`\nabla\ell` and Hessian :math:`\nabla^2\ell` are derived by sympy
    and compiled once (numpy, with common-subexpression elimination) for the numeric search
    (:meth:`minimum`) and the simulator; :meth:`near` evaluates them exactly or to
    :data:`DIGITS` digits (mpmath).

    Raises ``TypeError``/``ValueError`` naming the argument for a loss that is not a scalar
    expression, one that uses a symbol that is neither a parameter nor an input, a
    non-differentiable function (``Abs``, ``Max``, ``Piecewise``, …), or data of the wrong shape.

    >>> import sympy as sp, symsgd as ss
    >>> w1, w2, x, y = sp.symbols("w1 w2 x y")
    >>> model = ss.EmpiricalLoss((w2 * sp.tanh(w1 * x) - y) ** 2 / 2, params=[w1, w2],
    ...                          inputs=[x, y], data=[[1, 1], [-1, -1], [2, 1]])
    >>> model.dim, model.dataset_size
    (2, 3)
    >>> model.gradient_expr[1]
    (w2*tanh(w1*x) - y)*tanh(w1*x)
    """

    def __init__(self, loss, params, inputs, data):
        try:
            expr = sp.sympify(loss, strict=True)
        except (sp.SympifyError, TypeError):
            raise TypeError(
                f"EmpiricalLoss: loss must be a sympy expression of the parameters and inputs; "
                f"got {type(loss).__name__}."
            ) from None
        if not isinstance(expr, sp.Expr) or isinstance(expr, (sp.MatrixBase, sp.MatrixExpr)):
            raise TypeError(
                f"EmpiricalLoss: loss must be a scalar sympy expression (one per-sample loss); "
                f"got {type(expr).__name__}."
            )
        self.params = _symbols(params, "params")
        self.inputs = _symbols(inputs, "inputs")
        if not self.params:
            raise ValueError("EmpiricalLoss: params is empty; name the parameters to train.")
        both = set(self.params) & set(self.inputs)
        if both:
            raise ValueError(
                f"EmpiricalLoss: {', '.join(sorted(map(str, both)))} is both a parameter and an "
                f"input; each symbol is one or the other."
            )
        stray = expr.free_symbols - set(self.params) - set(self.inputs)
        if stray:
            raise ValueError(
                f"EmpiricalLoss: the loss uses {', '.join(sorted(map(str, stray)))}, which is "
                f"neither a parameter nor an input; substitute a value or list it in params "
                f"or inputs."
            )
        bad = sorted({type(f).__name__ for f in expr.atoms(*NON_DIFFERENTIABLE)})
        if bad:
            raise ValueError(
                f"EmpiricalLoss: the loss uses {', '.join(bad)}, which is not differentiable "
                f"everywhere; the local theory needs a twice-differentiable per-sample loss "
                f"(use a smooth surrogate, e.g. sqrt(u**2 + eps) for |u|)."
            )
        self.loss_expr = expr
        self.data = tuple(tuple(r) for r in _data_rows(data, len(self.inputs)))
        self.gradient_expr = tuple(sp.diff(expr, p) for p in self.params)
        self.hessian_expr = tuple(
            tuple(sp.diff(g, q) for q in self.params) for g in self.gradient_expr
        )
        entries = [e for r in self.data for e in r]
        #: True when some data entry is a symbol (no numeric search then)
        self.symbolic = any(e.free_symbols for e in entries)
        #: True when every data entry is an exact number (integer, rational, algebraic)
        self.exact = not self.symbolic and not any(e.has(sp.Float) for e in entries)
        self._compiled: _Compiled | None = None
        self._array: np.ndarray | None = None
        self._gamma = 0.0  # the weight decay of the current minimum() search

    # -- sizes and numeric evaluation ---------------------------------------------------------

    @property
    def dim(self) -> int:
        """The number of parameters d."""
        return len(self.params)

    @property
    def dataset_size(self) -> int:
        """The number of samples N."""
        return len(self.data)

    def __repr__(self) -> str:
        return (
            f"EmpiricalLoss({sp.sstr(self.loss_expr)}, params={list(self.params)}, "
            f"inputs={list(self.inputs)}, N={self.dataset_size})"
        )

    def compiled(self) -> _Compiled:
        """The loss, gradient and Hessian as numpy functions of ``(*θ, *x)`` (compiled once)."""
        if self._compiled is None:
            args = [*self.params, *self.inputs]
            d = self.dim
            flat_h = [self.hessian_expr[i][j] for i in range(d) for j in range(d)]
            f = sp.lambdify(args, self.loss_expr, modules="numpy", cse=True)
            g = sp.lambdify(args, list(self.gradient_expr), modules="numpy", cse=True)
            h = sp.lambdify(args, flat_h, modules="numpy", cse=True)
            self._compiled = _Compiled(f, g, h)
        return self._compiled

    def data_array(self) -> np.ndarray:
        """The data set in float64, shape (N, k) (``ValueError`` for symbolic data)."""
        if self._array is None:
            if self.symbolic:
                raise ValueError(
                    "EmpiricalLoss: the data hold symbols, so there is no numeric data set; "
                    "substitute values, or use near(theta) at a known stationary point."
                )
            self._array = np.array([[float(e) for e in r] for r in self.data], dtype=float)
        return self._array

    def _numeric_args(self, theta: np.ndarray) -> list:
        X = self.data_array()
        return [*(float(t) for t in theta), *(X[:, j] for j in range(X.shape[1]))]

    def value(self, theta) -> float:
        r"""The training loss :math:`L(\theta)` in float64."""
        theta = self._check_theta(theta)
        N = self.dataset_size
        return float(np.mean(np.broadcast_to(self.compiled().loss(*self._numeric_args(theta)), N)))

    def gradient(self, theta) -> np.ndarray:
        r"""The full-batch gradient :math:`\nabla L(\theta)` in float64 (length d)."""
        theta = self._check_theta(theta)
        rows = self.compiled().gradient(*self._numeric_args(theta))
        return _broadcast(rows, (self.dataset_size,)).mean(axis=1)

    def hessian(self, theta) -> np.ndarray:
        r"""The Hessian :math:`\nabla^2L(\theta)` in float64 (d × d)."""
        theta = self._check_theta(theta)
        d = self.dim
        rows = self.compiled().hessian(*self._numeric_args(theta))
        return _broadcast(rows, (self.dataset_size,)).mean(axis=1).reshape(d, d)

    def _check_theta(self, theta) -> np.ndarray:
        values = np.asarray(
            theta.tolist() if isinstance(theta, sp.MatrixBase) else theta, dtype=object
        ).reshape(-1)
        if values.size != self.dim:
            raise ValueError(
                f"EmpiricalLoss: θ must have {self.dim} entries (one per parameter "
                f"{', '.join(map(str, self.params))}); got {values.size}."
            )
        try:
            out = np.array([float(v) for v in values], dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"EmpiricalLoss: θ must be numeric; got {list(values)}.") from None
        if not np.all(np.isfinite(out)):
            raise ValueError(f"EmpiricalLoss: θ must be finite; got {out.tolist()}.")
        return out

    # -- the minimum ----------------------------------------------------------------------------

    def minimum(
        self, start, *, weight_decay=0, digits: int = DIGITS, max_norm: float = 1e6
    ) -> sp.ImmutableMatrix:
        r"""A local minimum of the training loss near ``start`` — of
        :math:`L(\theta) + \tfrac{\gamma}2|\theta|^2` with ``weight_decay=γ`` (a number).

        A numeric search (scipy's trust-region Newton method with the derived gradient and
        Hessian) followed by Newton's method in mpmath at ``digits + 10`` digits (the
        pseudo-inverse step on a singular Hessian, which converges to the nearest point of a
        manifold of minima).  With exact data a coordinate that is a rational number to within
        the precision is tried exactly: the minimiser is returned exactly when the exact
        gradient vanishes there.  Otherwise the result holds ``sp.Float`` entries with
        ``digits`` digits.

        Raises ``ValueError`` when the search finds no stationary point (the loss keeps
        decreasing as |θ| grows, as in logistic regression on separable data: add an L2 term),
        or the point it finds is a saddle or a maximum (naming the direction of negative
        curvature).

        >>> import sympy as sp, symsgd as ss
        >>> w, x = sp.symbols("w x")
        >>> ss.EmpiricalLoss(sp.cosh(w - x), [w], [x], [0, 1]).minimum(start=[3])[0]
        1/2
        >>> ss.EmpiricalLoss(sp.cosh(w) - x * w, [w], [x], [1]).minimum(start=[3])[0]  # asinh(1)
        0.881373587019543025232609324980
        """
        from scipy.optimize import minimize

        gamma = _decay(weight_decay)
        theta0 = self._check_theta(start)
        self._gamma = float(gamma)
        self.data_array()  # symbolic data: a clear error
        result = minimize(
            self._objective,
            theta0,
            jac=self._objective_gradient,
            hess=self._objective_hessian,
            method="trust-exact",
            options={"gtol": 1e-10, "maxiter": 500},
        )
        x = np.asarray(result.x, dtype=float)
        finite = bool(np.all(np.isfinite(x)))
        hess = self._objective_hessian(x) if finite else np.full((self.dim, self.dim), np.inf)
        scale = 1.0 + float(np.max(np.abs(hess))) * (1.0 + float(np.max(np.abs(x))))
        g = float(np.max(np.abs(self._objective_gradient(x)))) if finite else np.inf
        if not np.all(np.isfinite(x)) or np.max(np.abs(x)) > max_norm or g > 1e-6 * scale:
            raise ValueError(
                f"minimum(): the search from start={theta0.tolist()} found no minimum (it "
                f"stopped at |θ| = {float(np.max(np.abs(x))):.3g} with |∇L| = {g:.3g}: "
                f"{result.message}). The loss may keep decreasing as |θ| grows (e.g. logistic "
                f"regression on separable data: add an L2 term to the loss), or try another "
                f"start."
            )
        if g <= 1e-6 * scale:  # a converged minimiser: the Newton step there is negligible
            step = np.linalg.lstsq(hess, self._objective_gradient(x), rcond=1e-10)[0]
            if float(np.max(np.abs(step))) > 1e-6 * (1.0 + float(np.max(np.abs(x)))):
                g = np.inf
        if g > 1e-6 * scale:
            raise ValueError(
                f"minimum(): the search from start={theta0.tolist()} found no minimum: at "
                f"|θ| = {float(np.max(np.abs(x))):.3g} the gradient is small but the loss is "
                f"still falling (a Newton step there is not small). The loss may keep "
                f"decreasing as |θ| grows (e.g. logistic regression on separable data: add an "
                f"L2 term to the loss), or try another start."
            )
        theta = self._refine(x, digits, gamma)
        moved = max(abs(float(t) - v) for t, v in zip(theta, x))
        if not moved <= 1e-6 * (1.0 + float(np.max(np.abs(x)))):
            raise ValueError(
                f"minimum(): the search from start={theta0.tolist()} found no minimum: refining "
                f"the point {x.tolist()} moved it by {moved:.3g} (the loss has no isolated "
                f"minimum there; e.g. logistic regression on separable data: add an L2 term)."
            )
        exact = self._exact_candidate(theta, digits, gamma) if self.exact else None
        point = (
            exact if exact is not None else sp.ImmutableMatrix([sp.Float(t, digits) for t in theta])
        )
        self._check_minimum(point, "minimum()", gamma)
        return point

    def _objective(self, theta) -> float:
        return self.value(theta) + 0.5 * self._gamma * float(np.dot(theta, theta))

    def _objective_gradient(self, theta) -> np.ndarray:
        return self.gradient(theta) + self._gamma * np.asarray(theta, dtype=float)

    def _objective_hessian(self, theta) -> np.ndarray:
        return self.hessian(theta) + self._gamma * np.eye(self.dim)

    def _mp_functions(self):
        args = [*self.params, *self.inputs]
        d = self.dim
        g = sp.lambdify(args, list(self.gradient_expr), modules="mpmath")
        h = sp.lambdify(
            args, [self.hessian_expr[i][j] for i in range(d) for j in range(d)], modules="mpmath"
        )
        return g, h

    def _mp_data(self) -> list[list]:
        return [
            [
                mpmath.mpf(sp.Rational(e))
                if e.is_Rational
                else mpmath.mpf(str(sp.N(e, mpmath.mp.dps + 5)))
                for e in r
            ]
            for r in self.data
        ]

    def _mp_terms(self, theta: list, g, h, rows) -> tuple[mpmath.matrix, mpmath.matrix]:
        d, N = self.dim, len(rows)
        grad = mpmath.matrix(d, 1)
        hess = mpmath.matrix(d, d)
        for r in rows:
            gi = g(*theta, *r)
            hi = h(*theta, *r)
            for a in range(d):
                grad[a] += gi[a]
                for b in range(d):
                    hess[a, b] += hi[a * d + b]
        return grad / N, hess / N

    def _refine(self, x: np.ndarray, digits: int, gamma=0) -> list:
        """Newton's method in mpmath from the float64 minimiser ``x`` (pseudo-inverse steps),
        for the loss plus ``gamma``/2·|θ|²."""
        with mpmath.workdps(digits + 10):
            g, h = self._mp_functions()
            rows = self._mp_data()
            theta = [mpmath.mpf(float(t)) for t in x]
            tol = mpmath.mpf(10) ** (-(digits + 5))
            decay = mpmath.mpf(sp.Rational(gamma).p) / sp.Rational(gamma).q
            for _ in range(60):
                grad, hess = self._mp_terms(theta, g, h, rows)
                for a in range(self.dim):
                    grad[a] += decay * theta[a]
                    hess[a, a] += decay
                if mpmath.norm(grad) < tol * (1 + mpmath.norm(hess)):
                    break
                step = _pinv_solve(hess, grad)
                theta = [t - s for t, s in zip(theta, step)]
            return [mpmath.mpf(t) for t in theta]

    def _exact_candidate(self, theta: list, digits: int, gamma=0) -> sp.ImmutableMatrix | None:
        """An exact point within 10^-(digits-5) of ``theta`` whose exact gradient is 0: each
        coordinate recognised as a rational number of small height, or else as an algebraic
        number (``nsimplify``: quadratic surds and the like)."""
        tolerance = sp.Float(10) ** -(digits - 5)
        for rational in (True, False):
            point = []
            for t in theta:
                value = sp.Float(mpmath.nstr(t, digits + 10), digits + 10)
                guess = sp.nsimplify(value, tolerance=tolerance, rational=rational)
                if guess.has(sp.Float) or (guess.is_Rational and guess.q > 10**8):
                    break
                point.append(guess)
            else:
                grad = [v + gamma * p for v, p in zip(self._exact_gradient(point), point)]
                if all(sp.simplify(v) == 0 for v in grad):
                    return sp.ImmutableMatrix(point)
        return None

    def _exact_gradient(self, point: Sequence) -> list[sp.Expr]:
        subs = dict(zip(self.params, point))
        total = [sp.S.Zero] * self.dim
        for r in self.data:
            at = {**subs, **dict(zip(self.inputs, r))}
            for a, ga in enumerate(self.gradient_expr):
                total[a] += ga.subs(at)
        return [sp.nsimplify(v) if v.has(sp.Float) else sp.radsimp(v) for v in total]

    def _check_minimum(self, point: sp.MatrixBase, where: str, gamma=0) -> None:
        """A ``ValueError`` when the Hessian (plus ``gamma``·I) at ``point`` has a negative
        eigenvalue."""
        H = self.hessian(np.array([float(v) for v in point])) + float(gamma) * np.eye(self.dim)
        _refuse_saddle(H, point, where)

    # -- the local problem ----------------------------------------------------------------------

    def near(self, theta, *, weight_decay=0, digits: int = DIGITS) -> LocalLandscape:
        r"""The local problem at the minimum ``theta``: per-sample Hessians :math:`H_i` and
        gradients :math:`g_i` at θ* (see the module docstring), as a landscape for
        :func:`symsgd.stationary` (and its :meth:`~LocalLandscape.noise_approximations`).

        Exact data and an exact θ give exact terms when they are algebraic numbers; otherwise
        (a transcendental function such as tanh at θ*, a Float θ*, float data) the terms are
        evaluated with mpmath to ``digits`` digits (float64 for float data).  θ must be a
        stationary point (mean gradient zero to the precision) and not a saddle: a
        ``ValueError`` says otherwise.  A singular Hessian (flat directions of a manifold of
        minima) is allowed here and reported in :attr:`LocalLandscape.flat_directions`;
        :func:`symsgd.stationary` then needs weight decay (it raises naming them otherwise).

        ``weight_decay=γ₀``: θ is a minimum of :math:`L + \tfrac{\gamma_0}2|\theta|^2`
        (:meth:`minimum` with the same ``weight_decay``) — the expansion point for an optimizer
        with weight decay γ₀.  On a manifold of minima this is the one that matters: weight
        decay moves the real iterates along the manifold to its minimum-norm point, so the
        linearised law at any other point of the manifold does not describe them.
        """
        gamma = _decay(weight_decay)
        point = _point(theta, self.dim)
        subs_theta = dict(zip(self.params, point))
        exact_point = not any(v.has(sp.Float) for v in point)
        if (self.exact or self.symbolic) and exact_point:
            Hs, gs = [], []
            for r in self.data:
                at = {**subs_theta, **dict(zip(self.inputs, r))}
                gs.append(sp.ImmutableMatrix([sp.radsimp(e.subs(at)) for e in self.gradient_expr]))
                Hs.append(
                    sp.ImmutableMatrix(
                        [[sp.radsimp(e.subs(at)) for e in row] for row in self.hessian_expr]
                    )
                )
            values = [e for m in (*Hs, *gs) for e in m]
            if self.symbolic or all(e.is_algebraic for e in values if e.is_number):
                loss = (
                    sum(
                        (
                            self.loss_expr.subs({**subs_theta, **dict(zip(self.inputs, r))})
                            for r in self.data
                        ),
                        sp.S.Zero,
                    )
                    / self.dataset_size
                )
                return LocalLandscape(
                    self,
                    sp.ImmutableMatrix(point),
                    Hs,
                    gs,
                    sp.radsimp(loss),
                    "exact",
                    weight_decay=gamma,
                )
        if not self.exact and not self.symbolic:
            return self._float_near(point, gamma)
        return self._mp_near(point, digits, gamma)

    def _float_near(self, point, gamma=0) -> LocalLandscape:
        theta = np.array([float(v) for v in point])
        c = self.compiled()
        args = self._numeric_args(theta)
        N, d = self.dataset_size, self.dim
        gs = _broadcast(c.gradient(*args), (N,)).T
        Hs = _broadcast(c.hessian(*args), (N,)).T.reshape(N, d, d)
        loss = float(np.mean(np.broadcast_to(c.loss(*args), (N,))))
        return LocalLandscape.from_arrays(self, point, Hs, gs, loss, "float64", weight_decay=gamma)

    def _mp_near(self, point, digits: int, gamma=0) -> LocalLandscape:
        d = self.dim
        with mpmath.workdps(digits + 5):
            g, h = self._mp_functions()
            f = sp.lambdify([*self.params, *self.inputs], self.loss_expr, modules="mpmath")
            rows = self._mp_data()
            theta = [mpmath.mpf(str(sp.N(v, digits + 5))) for v in point]
            Hs, gs, total = [], [], mpmath.mpf(0)
            for r in rows:
                gi, hi = g(*theta, *r), h(*theta, *r)
                total += f(*theta, *r)
                gs.append(sp.ImmutableMatrix([_float(gi[a], digits) for a in range(d)]))
                Hs.append(
                    sp.ImmutableMatrix(
                        [[_float(hi[a * d + b], digits) for b in range(d)] for a in range(d)]
                    )
                )
            loss = _float(total / len(rows), digits)
        star = sp.ImmutableMatrix([sp.Float(str(sp.N(v, digits + 5)), digits) for v in point])
        return LocalLandscape(
            self, star, Hs, gs, loss, f"mpmath ({digits} digits)", weight_decay=gamma
        )


def _decay(value) -> sp.Expr:
    """A weight decay γ ≥ 0 given as a number (exact when given exactly)."""
    gamma = _entry(value, "weight_decay", "EmpiricalLoss: ")
    if gamma.free_symbols or not gamma.is_number or bool(gamma < 0):
        raise ValueError(
            f"EmpiricalLoss: weight_decay must be a number ≥ 0 (the minimum is found "
            f"numerically); got {gamma}."
        )
    return sp.nsimplify(gamma) if gamma.is_Float else gamma


def _float(value, digits: int) -> sp.Float:
    return sp.Float(mpmath.nstr(value, digits + 5, strip_zeros=False), digits)


def _pinv_solve(hess: mpmath.matrix, grad: mpmath.matrix) -> list:
    """The minimum-norm least-squares solution of ``hess · s = grad`` (eigen-decomposition;
    eigenvalues below the working precision count as zero)."""
    w, V = mpmath.eigsy(hess)
    d = hess.rows
    top = max(abs(w[i]) for i in range(d))
    cut = top * mpmath.mpf(10) ** (-(mpmath.mp.dps // 2))
    step = [mpmath.mpf(0)] * d
    for k in range(d):
        if abs(w[k]) <= cut:
            continue
        coef = sum(V[a, k] * grad[a] for a in range(d)) / w[k]
        for a in range(d):
            step[a] += coef * V[a, k]
    return step


def _point(theta, d: int) -> list[sp.Expr]:
    if isinstance(theta, sp.MatrixBase):
        values = list(theta)
    elif isinstance(theta, (Sequence, np.ndarray)) and not isinstance(theta, (str, bytes)):
        values = list(np.asarray(theta, dtype=object).reshape(-1))
    elif isinstance(theta, (numbers.Number, sp.Expr)) and d == 1:
        values = [theta]
    else:
        raise TypeError(f"near(): θ must be a list of {d} numbers; got {theta!r}.")
    if len(values) != d:
        raise ValueError(f"near(): θ must have {d} entries (one per parameter); got {len(values)}.")
    return [_entry(v, "theta", "near(): ") for v in values]


@dataclass(frozen=True, init=False)
class LocalLandscape(SampledLandscape):
    r"""The local problem of an :class:`EmpiricalLoss` at a minimum θ* (:meth:`EmpiricalLoss.near`).

    The Hessian is :math:`H = \frac1N\sum_iH_i`; the per-sample gradients are
    :math:`g_i + H_i\delta` (:meth:`sample_terms`), so :class:`~symsgd.MinibatchNoise` derives
    the exact noise of the linearised dynamics with the real sampling design.  The training loss
    of the linearised problem is :math:`L_* + \tfrac12(\delta + b)^\top H(\delta + b)` with
    :math:`L_* = L(\theta_*)` (``minimum_loss``) and :math:`b` the weight-decay offset.

    ``flat_directions`` is an orthonormal basis (columns) of the null space of H: a manifold of
    minima.  Along it no stationary law exists without weight decay, and
    :func:`symsgd.stationary` raises naming the directions.
    """

    theta_star: sp.ImmutableMatrix = None
    minimum_loss: sp.Expr = sp.S.Zero
    #: how the per-sample terms were evaluated: "exact", "mpmath (30 digits)" or "float64"
    precision: str = "exact"
    flat_directions: tuple = ()
    #: the weight decay γ₀ of the loss whose minimum θ_e is (0: a minimum of the loss itself)
    expansion_weight_decay: sp.Expr = sp.S.Zero
    model: EmpiricalLoss | None = field(default=None, compare=False, repr=False)
    _terms: tuple = field(default=(), repr=False)
    _arrays: tuple | None = field(default=None, compare=False, repr=False)

    def __init__(
        self, model, theta_star, Hs, gs, minimum_loss, precision, _arrays=None, weight_decay=0
    ):
        N = len(Hs)
        H = sp.ImmutableMatrix(sum((sp.Matrix(h) for h in Hs), sp.zeros(*Hs[0].shape)) / N)
        if precision == "exact":
            H = H.applyfunc(sp.radsimp)
        object.__setattr__(self, "hessian", H)
        object.__setattr__(self, "eigenmode", False)
        object.__setattr__(self, "mode_names", {})
        object.__setattr__(self, "theta_star", sp.ImmutableMatrix(theta_star))
        object.__setattr__(self, "minimum_loss", minimum_loss)
        object.__setattr__(self, "precision", precision)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "_terms", tuple(zip(Hs, gs)))
        object.__setattr__(self, "_arrays", _arrays)
        object.__setattr__(self, "flat_directions", _null_space(H, precision))
        object.__setattr__(self, "expansion_weight_decay", sp.sympify(weight_decay))
        _check_stationary(self)

    @classmethod
    def from_arrays(
        cls, model, point, Hs: np.ndarray, gs: np.ndarray, loss: float, precision, weight_decay=0
    ):
        """A local problem from float64 arrays ``Hs`` (N, d, d) and ``gs`` (N, d)."""
        Hs = (Hs + np.swapaxes(Hs, 1, 2)) / 2
        sH = [sp.ImmutableMatrix(h) for h in Hs]
        sg = [sp.ImmutableMatrix(g) for g in gs]
        star = sp.ImmutableMatrix([sp.Float(float(v)) for v in point])
        return cls(
            model, star, sH, sg, sp.Float(loss), precision, (Hs, gs), weight_decay=weight_decay
        )

    @property
    def dataset_size(self) -> int:
        return len(self._terms)

    def sample_terms(self, weight_decay=0) -> list[tuple[sp.Matrix, sp.Matrix]]:
        r"""Per-sample gradients :math:`X_i\delta - c_i` at :math:`\theta = \theta_\gamma +
        \delta`: :math:`X_i = H_i` and :math:`c_i = -(g_i + H_ib)`, b the weight-decay offset."""
        b = self.offset(weight_decay)
        zero = b.is_zero_matrix
        return [
            (sp.Matrix(H), -sp.Matrix(g) if zero else -(sp.Matrix(g) + sp.Matrix(H) * b))
            for H, g in self._terms
        ]

    def numeric_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-sample Hessians (N, d, d) and gradients (N, d) at θ_e in float64."""
        if self._arrays is None:
            Hs = np.array([_floats(H) for H, _ in self._terms])
            gs = np.array([_floats(g).reshape(-1) for _, g in self._terms])
            object.__setattr__(self, "_arrays", (Hs, gs))
        Hs, gs = self._arrays
        return Hs.copy(), gs.copy()

    def numeric_sample_terms(self, weight_decay=0) -> tuple[np.ndarray, np.ndarray]:
        Hs, gs = self.numeric_terms()
        b = self.numeric_offset(weight_decay)
        return Hs, -(gs + Hs @ b)

    @property
    def mean_gradient(self) -> sp.ImmutableMatrix:
        r""":math:`\bar g = \frac1N\sum_ig_i = -\gamma_0\theta_e`: zero at a minimum of the
        loss, :math:`-\gamma_0\theta_e` at a minimum of the weight-decayed loss
        (:meth:`EmpiricalLoss.near` with ``weight_decay=γ₀``; the residual of the search, below
        its tolerance, is not carried)."""
        return sp.ImmutableMatrix(-self.expansion_weight_decay * sp.Matrix(self.theta_star))

    def offset(self, weight_decay=0) -> sp.Matrix:
        r""":math:`b = \theta_\gamma - \theta_e` for the optimizer's weight decay γ: the fixed
        point of the linearised gradient :math:`\bar g + H(\theta - \theta_e) + \gamma\theta`,
        :math:`b = -(\gamma - \gamma_0)(H + \gamma I)^{-1}\theta_e` — zero when the optimizer's
        weight decay is the expansion point's own."""
        gamma = sp.sympify(weight_decay)
        excess = gamma - self.expansion_weight_decay
        if excess == 0 or sp.Matrix(self.theta_star).is_zero_matrix:
            return sp.zeros(self.dim, 1)
        shifted = sp.Matrix(self.hessian) + gamma * sp.eye(self.dim)
        return (-excess * shifted.LUsolve(sp.Matrix(self.theta_star))).applyfunc(sp.cancel)

    def numeric_offset(self, weight_decay=0) -> np.ndarray:
        """:meth:`offset` in float64."""
        gamma = float(sp.sympify(weight_decay))
        excess = gamma - float(self.expansion_weight_decay)
        star = _floats(self.theta_star).reshape(-1)
        if excess == 0 or not np.any(star):
            return np.zeros(self.dim)
        shifted = _floats(self.hessian) + gamma * np.eye(self.dim)
        return -excess * np.linalg.solve(shifted, star)

    def loss(self, cov: sp.MatrixBase, weight_decay=0) -> sp.Expr:
        r"""Expected training loss of the linearised problem (without the weight-decay
        penalty): :math:`L_* + \bar g^\top b + \tfrac12\operatorname{Tr}(H(\Sigma +
        bb^\top))` (:math:`\bar g = 0` at a minimum)."""
        b = self.offset(weight_decay)
        H = sp.Matrix(self.hessian)
        linear = (sp.Matrix(self.mean_gradient).T * b)[0, 0]
        return (
            self.minimum_loss
            + linear
            + sp.Rational(1, 2) * (H * (sp.Matrix(cov) + b * b.T)).trace()
        )

    def numeric_loss(self, cov, weight_decay=0) -> float:
        H = _floats(self.hessian)
        b = self.numeric_offset(weight_decay)
        gbar = self.numeric_terms()[1].mean(axis=0)
        quadratic = 0.5 * float(np.einsum("ij,ji->", H, cov) + b @ H @ b)
        return float(self.minimum_loss) + float(gbar @ b) + quadratic

    def test_loss(self, cov, weight_decay=0):
        """None: a finite data set has no population loss."""
        return None

    def numeric_test_loss(self, cov, weight_decay=0):
        return None

    def noise_approximations(self) -> NoiseApproximations:
        r"""The exact per-sample gradient covariance at θ* beside its two approximations of
        Ziyin et al. (2022): :math:`C_1 = \frac1N\sum_i g_ig_i^\top` (the mean gradient is
        zero at a minimum) against :math:`2L_*H` (the per-sample noise near a minimum of a
        squared loss with label noise) and the best multiple :math:`cH` of the Hessian
        (:math:`c = \operatorname{Tr}(C_1H)/\operatorname{Tr}(H^2)`, the least-squares fit)."""
        N = self.dataset_size
        C1 = (
            sum(
                (sp.Matrix(g) * sp.Matrix(g).T for _, g in self._terms),
                sp.zeros(self.dim, self.dim),
            )
            / N
        )
        return NoiseApproximations.of(C1, sp.Matrix(self.hessian), self.minimum_loss)

    def __repr__(self) -> str:
        star = ", ".join(sp.sstr(sp.N(v, 6)) for v in self.theta_star)
        return f"LocalLandscape(θ* = [{star}], N={self.dataset_size}, {self.precision})"


def _null_space(H: sp.ImmutableMatrix, precision: str) -> tuple:
    """Orthonormal basis of the (numerical) null space of H, as float64 columns for inexact
    problems and exact sympy columns for exact ones."""
    if H.free_symbols:
        return ()
    if precision == "exact":
        basis = sp.GramSchmidt(sp.Matrix(H).nullspace(), True) if H.rows else []
        return tuple(sp.ImmutableMatrix(v.applyfunc(sp.radsimp)) for v in basis)
    if precision == "float64":
        w, V = np.linalg.eigh(_floats(H))
        scale = max(1.0, float(np.max(np.abs(w))))
        return tuple(
            sp.ImmutableMatrix(V[:, k]) for k in range(len(w)) if abs(w[k]) <= 1e-9 * scale
        )
    with mpmath.workdps(DIGITS):  # the terms carry DIGITS digits: decide at that precision
        w, V = mpmath.eigsy(
            mpmath.matrix([[mpmath.mpf(str(e)) for e in row] for row in H.tolist()])
        )
        scale = max(1, max(abs(v) for v in w))
        cut = scale * mpmath.mpf(10) ** (-(DIGITS // 2))
        return tuple(
            sp.ImmutableMatrix([sp.Float(mpmath.nstr(V[a, k], 20), 20) for a in range(H.rows)])
            for k in range(H.rows)
            if abs(w[k]) <= cut
        )


def _check_stationary(local: LocalLandscape) -> None:
    """θ* must be a stationary point (mean gradient 0) and not a saddle."""
    N, d = local.dataset_size, local.dim
    gamma = local.expansion_weight_decay
    # the gradient of the (weight-decayed) loss: ḡ + γ₀θ_e
    mean = sum((sp.Matrix(g) for _, g in local._terms), sp.zeros(d, 1)) / N
    mean = mean + gamma * sp.Matrix(local.theta_star)
    H = local.hessian + gamma * sp.eye(d)
    if local.precision == "exact":
        if local.model is not None and local.model.symbolic:
            nonzero = [sp.simplify(v) for v in mean if sp.simplify(v) != 0]
        else:
            # radsimp settles most algebraic zeros; simplify the rest (nested surds)
            nonzero = [v for v in mean if sp.radsimp(v) != 0 and sp.simplify(v) != 0]
        if nonzero:
            raise ValueError(
                f"near(): θ = {list(local.theta_star)} is not a stationary point: the mean "
                f"gradient there is {[sp.sstr(v) for v in mean]}. Use model.minimum(start=θ) "
                f"(with the same weight_decay)."
            )
        if H.free_symbols:
            return
    grad = np.array([float(v) for v in mean])
    Hf = _floats(H)
    scale = 1.0 + float(np.max(np.abs(Hf))) * (
        1.0 + float(np.max(np.abs(_floats(local.theta_star))))
    )
    tol = 1e-8 if local.precision == "float64" else 1e-18
    if float(np.max(np.abs(grad))) > tol * scale:
        raise ValueError(
            f"near(): θ = {[float(v) for v in local.theta_star]} is not a stationary point: the "
            f"mean gradient there is {grad.tolist()}. Use model.minimum(start=θ) to find the "
            f"minimum first."
        )
    _refuse_saddle(Hf, local.theta_star, "near()")


def _refuse_saddle(H: np.ndarray, point, where: str) -> None:
    """A ``ValueError`` naming the direction of negative curvature when the (float64) Hessian
    ``H`` at ``point`` has a negative eigenvalue: a saddle or a maximum, not a minimum."""
    w, V = np.linalg.eigh((H + H.T) / 2)
    if w[0] < -1e-9 * max(1.0, float(np.max(np.abs(w)))):
        direction = ", ".join(f"{v:.3g}" for v in V[:, 0])
        raise ValueError(
            f"{where}: θ = {[float(v) for v in point]} is a saddle point or a maximum, not a "
            f"minimum: the Hessian has the eigenvalue {w[0]:.6g} < 0 along ({direction}). "
            f"SGD leaves it along that direction; start the search elsewhere "
            f"(model.minimum(start=…))."
        )


@dataclass(frozen=True)
class NoiseApproximations:
    r"""The per-sample gradient covariance :math:`C_1` at a minimum and two approximations:
    ``loss_hessian`` :math:`= 2L_*H` and ``proportional`` :math:`= cH` (least squares).
    ``errors`` maps each name to its relative Frobenius error
    :math:`\|C_\text{approx} - C_1\|_F / \|C_1\|_F` (float)."""

    exact: sp.ImmutableMatrix
    loss_hessian: sp.ImmutableMatrix
    proportional: sp.ImmutableMatrix
    scale: sp.Expr
    errors: dict

    @classmethod
    def of(cls, C1: sp.Matrix, H: sp.Matrix, minimum_loss: sp.Expr) -> NoiseApproximations:
        HH = (H * H).trace()
        scale = (C1 * H).trace() / HH if HH != 0 else sp.S.Zero
        approx = {"loss_hessian": 2 * minimum_loss * H, "proportional": scale * H}
        norm = float(sp.sqrt((C1 * C1).trace()).evalf()) if not C1.free_symbols else None
        errors = {}
        for name, M in approx.items():
            if norm:
                D = M - C1
                errors[name] = float(sp.sqrt((D * D).trace()).evalf()) / norm
        return cls(
            exact=sp.ImmutableMatrix(C1),
            loss_hessian=sp.ImmutableMatrix(approx["loss_hessian"]),
            proportional=sp.ImmutableMatrix(approx["proportional"]),
            scale=scale,
            errors=errors,
        )

    def noise(self, name: str, batch_size):
        """The additive noise model :math:`C/S` of one of the approximations (``"exact"``,
        ``"loss_hessian"`` or ``"proportional"``) for minibatches of size S drawn with
        replacement."""
        from .noise import AdditiveNoise

        if name not in ("exact", "loss_hessian", "proportional"):
            raise ValueError(
                f"noise(): name must be 'exact', 'loss_hessian' or 'proportional'; got {name!r}."
            )
        return AdditiveNoise(getattr(self, name) / sp.sympify(batch_size))


# ---------------------------------------------------------------------------------------------
# models to start from
# ---------------------------------------------------------------------------------------------


def logistic_regression(X, y, l2=0) -> EmpiricalLoss:
    r"""Logistic regression: :math:`\ell = \log(1 + e^{z}) - yz + \tfrac{l_2}2|w|^2`,
    :math:`z = w^\top x`, labels :math:`y\in\{0, 1\}`; rows of ``X`` are the inputs.  On
    separable data the loss has no minimum unless ``l2 > 0``.

    >>> m = logistic_regression([[1], [2], [-1]], [1, 0, 0])
    >>> m.params, m.inputs
    ((w_1,), (x_1, y))
    """
    table = np.asarray(X, dtype=object)
    rows = _data_rows(X, table.shape[1] if table.ndim == 2 else 1)
    d = len(rows[0])
    w = sp.symbols(f"w_1:{d + 1}")
    x = sp.symbols(f"x_1:{d + 1}")
    label = sp.Symbol("y")
    labels = [sp.sympify(v) for v in (y.tolist() if isinstance(y, np.ndarray) else y)]
    if len(labels) != len(rows) or any(v not in (0, 1) for v in labels):
        raise ValueError(
            f"logistic_regression: y must hold one label 0 or 1 per row of X ({len(rows)}); "
            f"got {labels}."
        )
    z = sum(wi * xi for wi, xi in zip(w, x))
    loss = sp.log(1 + sp.exp(z)) - label * z + sp.sympify(l2) / 2 * sum(wi**2 for wi in w)
    return EmpiricalLoss(loss, w, [*x, label], [[*r, v] for r, v in zip(rows, labels)])


def two_layer_tanh(data, width: int = 1) -> EmpiricalLoss:
    r"""A two-layer tanh network with one input and ``width`` hidden units,
    :math:`f = \sum_j b_j\tanh(a_jx)`, on the squared loss :math:`\ell = \tfrac12(f - y)^2`;
    ``data`` rows are ``(x, y)``.  Parameters ``a_1, b_1, a_2, b_2, …``.

    >>> two_layer_tanh([[1, 1], [2, 1]]).params
    (a_1, b_1)
    """
    a = sp.symbols(f"a_1:{width + 1}")
    b = sp.symbols(f"b_1:{width + 1}")
    x, y = sp.symbols("x y")
    f = sum(bj * sp.tanh(aj * x) for aj, bj in zip(a, b))
    params = [p for pair in zip(a, b) for p in pair]
    return EmpiricalLoss((f - y) ** 2 / 2, params, [x, y], data)


def two_layer_linear(data, width: int = 1) -> EmpiricalLoss:
    r"""A two-layer *linear* network :math:`f = \sum_j b_ja_j\,x` on the squared loss: its
    minima form the manifold :math:`\sum_j a_jb_j = w_\text{LS}` (the least-squares slope), so
    the Hessian at a minimum is singular (:attr:`LocalLandscape.flat_directions`).

    >>> m = two_layer_linear([[1, 1], [2, 3]])
    >>> local = m.near(m.minimum(start=[1, 1]))
    >>> len(local.flat_directions)
    1
    """
    a = sp.symbols(f"a_1:{width + 1}")
    b = sp.symbols(f"b_1:{width + 1}")
    x, y = sp.symbols("x y")
    f = sum(aj * bj for aj, bj in zip(a, b)) * x
    params = [p for pair in zip(a, b) for p in pair]
    return EmpiricalLoss((f - y) ** 2 / 2, params, [x, y], data)


def double_well(data, dims: int = 1) -> EmpiricalLoss:
    r"""A symmetric double well from a regression-type loss, :math:`\ell = \tfrac12(xw_1^2 -
    y)^2` (plus :math:`\tfrac12x^2w_2^2` for ``dims=2``): minima at
    :math:`w_1^2 = \overline{xy}/\overline{x^2}`, a barrier at :math:`w_1 = 0` of height
    :math:`\Delta L = \overline{xy}^2/(2\overline{x^2})`, while label noise (the spread of y
    about :math:`xw^2`) sets the loss :math:`L_*` at the minima.  ``data`` rows are ``(x, y)``.

    >>> m = double_well([[1, 1], [1, 3]])
    >>> m.minimum(start=[1])
    Matrix([[sqrt(2)]])
    """
    if dims not in (1, 2):
        raise ValueError(f"double_well: dims must be 1 or 2; got {dims!r}.")
    w = sp.symbols(f"w_1:{dims + 1}")
    x, y = sp.symbols("x y")
    loss = (x * w[0] ** 2 - y) ** 2 / 2
    if dims == 2:
        loss += (x * w[1]) ** 2 / 2
    return EmpiricalLoss(loss, w, [x, y], data)


def shifted_double_well(spread: float, *, shift: float = 0.3, depth: float = 1.0, quantiles=16):
    r"""A symmetric one-parameter double well whose label noise sets :math:`L_*` at a fixed
    barrier height: the per-sample loss :math:`\ell = \tfrac12\bigl((w - x)^2 - y\bigr)^2` on
    the full factorial design :math:`x = \pm u` (``shift``), :math:`y = \bar y + s z_j`
    (``spread`` s; :math:`z_j` the ``quantiles`` normalised normal quantiles, mean 0 and mean
    square 1), :math:`\bar y = m + 3u^2` (m = ``depth``), N = 2·quantiles rows.

    **Derivation.** The residual is :math:`r = (w^2 - k) - 2xw - sz` with :math:`k = m + 2u^2`;
    x and z have mean zero and are uncorrelated over the design, so

    .. math:: L(w) = \tfrac12\bigl[(w^2 - k)^2 + 4u^2w^2 + s^2\bigr]
              = \tfrac12\bigl[w^4 - 2m\,w^2 + k^2 + s^2\bigr]:

    minima at :math:`w_*^2 = m`, the barrier top at w = 0, the barrier
    :math:`\Delta L = m^2/2` for every spread, and :math:`L_* = 2mu^2 + 2u^4 + s^2/2`.
    The Hessian at the minima is :math:`H_* = 4m`, the Gauss–Newton matrix
    :math:`G_* = \overline{(\partial_w r)^2} = 4(m + u^2)`: they differ
    (:math:`H = G + \overline{r\,\partial_w^2r}` and :math:`\bar r = -2u^2` there).

    Why the shift: with a shared feature (u = 0, the model ``models.double_well`` with
    x ≡ 1) every per-sample gradient :math:`2w(w^2 - y_i)` vanishes at the barrier top, so the
    gradient noise does too and no diffusion crosses it; with u > 0 the per-sample
    gradients :math:`2x(y - x^2)` at w = 0 disagree.

    >>> m = shifted_double_well(0.5)
    >>> star = m.minimum(start=[1.0])
    >>> round(float(star[0]), 12), round(m.value([0.0]) - m.value(star), 12)
    (1.0, 0.5)
    >>> round(m.value(star), 12)  # 2·0.09 + 2·0.0081 + 0.125
    0.3212
    """
    from scipy.stats import norm

    for name, value in (("spread", spread), ("shift", shift), ("depth", depth)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"shifted_double_well: {name} must be a number ≥ 0; got {value!r}.")
    if not depth > 0:
        raise ValueError("shifted_double_well: depth must be > 0 (the minima are at ±√depth).")
    if not (isinstance(quantiles, int) and quantiles >= 2):
        raise ValueError(
            f"shifted_double_well: quantiles must be an integer ≥ 2; got {quantiles!r}."
        )
    z = norm.ppf((np.arange(quantiles) + 0.5) / quantiles)
    z = z / math.sqrt(float(np.mean(z * z)))
    ybar = depth + 3 * shift * shift
    rows = [[sign * shift, ybar + spread * v] for sign in (1.0, -1.0) for v in z]
    w, x, y = sp.symbols("w x y")
    return EmpiricalLoss(((w - x) ** 2 - y) ** 2 / 2, [w], [x, y], rows)


#: built-in examples: name -> (description, factory of the model, start of the minimum search)
EXAMPLES: dict[str, tuple[str, Callable[[], EmpiricalLoss], list]] = {}


def _example_data(seed: int, N: int, curve: Callable, noise: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    return np.c_[x, curve(x) + noise * rng.normal(size=N)]


def _logistic_example() -> EmpiricalLoss:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 2))
    p = 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0]))))
    return logistic_regression(X, (rng.random(64) < p).astype(int).tolist())


EXAMPLES.update(
    {
        "logistic-regression": (
            "logistic regression, 2 features, N = 64 (not separable: a unique minimum)",
            _logistic_example,
            [0.0, 0.0],
        ),
        "two-layer-tanh": (
            "b·tanh(a·x) on y = 0.8 tanh(2x) + 0.1 ε, N = 256",
            lambda: two_layer_tanh(_example_data(0, 256, lambda x: 0.8 * np.tanh(2 * x), 0.1)),
            [0.5, 0.5],
        ),
        "two-layer-linear": (
            "b·a·x on y = 0.7 x + 0.3 ε, N = 64: a manifold of minima a·b = const",
            lambda: two_layer_linear(_example_data(1, 64, lambda x: 0.7 * x, 0.3)),
            [1.0, 1.0],
        ),
        "double-well": (
            "½(x w² − y)² with x ≡ 1, y = 1 + 0.5 ε, N = 64: minima at ±√ȳ, barrier at 0",
            lambda: double_well(
                np.c_[np.ones(64), 1 + 0.5 * np.random.default_rng(2).normal(size=64)]
            ),
            [1.0],
        ),
    }
)


def example(name: str) -> tuple[EmpiricalLoss, sp.ImmutableMatrix]:
    """A built-in model (:data:`EXAMPLES`) and its minimum from the listed start.

    >>> model, star = example("double-well")
    >>> model.dim, float(star[0]) > 0
    (1, True)
    """
    if name not in EXAMPLES:
        raise ValueError(f"example(): unknown model {name!r}; choose one of {sorted(EXAMPLES)}.")
    _, factory, start = EXAMPLES[name]
    model = factory()
    return model, model.minimum(start=start)
