r"""The readout base of every derived stationary law: :class:`Result`.

A result holds the solver's :class:`~symsgd.lyapunov.Solution` (the exact covariance of the
state, its denominator, the strategy and the certificate) and the parameter ``values``
substituted so far, and reads everything else off them:

* ``cov``         :math:`\operatorname{Var}\theta` (a sympy expression for 1-D and eigen-mode
  problems, else a Matrix);
* ``loss``, ``test_loss``  the expected (training / fresh-sample) loss at stationarity;
* ``conditions``  where the stationary law exists (a sympy boolean), at the ``values``;
* ``subs``, ``simplify``   new results (``dataclasses.replace``: results are frozen);
* ``series``      the Taylor series in the learning rate (or any symbol);
* ``latex``, ``_repr_latex_``, ``lambdify``, ``free_symbols``.

Concrete results: :class:`~symsgd.Stationary` (discrete time) and
:class:`~symsgd.ContinuousTime` (the SDE prediction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import sympy as sp

from ._util import substitute, symbols_in
from .domain import check_values
from .exact import canonical
from .latex import command, layout, render, structured_latex
from .lyapunov import Solution
from .numeric import NumericFunction, lambdify_result, resolve_values

__all__ = ["Result", "congruence"]


def _scalar(m: sp.MatrixBase):
    return m[0, 0] if m.shape == (1, 1) else sp.ImmutableMatrix(m)


def _matrix(value) -> sp.Matrix:
    return value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])


def congruence(T: sp.MatrixBase, S: sp.MatrixBase) -> sp.Matrix:
    """``T S Tᵀ``; when ``T`` merely selects coordinates (rows of the identity) the entries are
    picked out instead of multiplied, which keeps large symbolic entries untouched.

    >>> congruence(sp.Matrix([[0, 1]]), sp.Matrix([[1, 2], [2, 3]]))
    Matrix([[3]])
    """
    T = sp.Matrix(T)
    picks = []
    for i in range(T.rows):
        nonzero = [j for j in range(T.cols) if T[i, j] != 0]
        if len(nonzero) != 1 or T[i, nonzero[0]] != 1:
            return T * sp.Matrix(S) * T.T
        picks.append(nonzero[0])
    return sp.Matrix(S).extract(picks, picks)


#: left-hand side printed by ``latex(what=...)`` (and the readouts ``lambdify`` knows)
LATEX_LHS = {
    "cov": r"\Sigma",
    "velocity_cov": r"\operatorname{Var}[v]",
    "cross_cov": r"\operatorname{Cov}(\theta, v)",
    "noise_cov": r"\bar C",
    "loss": r"\mathbb{E}[L]",
    "test_loss": r"\mathbb{E}[L_{\text{test}}]",
}


def check_readout(name, context: str) -> None:
    """Refuse a readout name that is not one of :data:`LATEX_LHS`."""
    if not isinstance(name, str) or name not in LATEX_LHS:
        raise ValueError(f"{context}: what must be one of {sorted(LATEX_LHS)}; got {name!r}.")


def recursion_of(result, context: str):
    """The :class:`~symsgd.LinearRecursion` a result was derived from (``TypeError`` naming
    ``context`` for anything else, e.g. a :class:`~symsgd.ContinuousTime` prediction)."""
    recursion = getattr(result, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"{context} needs a result of ss.stationary(...), which carries its recursion; "
            f"got {type(result).__name__}."
        )
    return recursion


@dataclass(frozen=True, eq=False, kw_only=True)
class Result:
    """A derived stationary law: the solver's exact :class:`~symsgd.lyapunov.Solution` and the
    parameter ``values`` substituted so far; readouts ``cov``, ``loss``, ``test_loss``,
    ``conditions``, manipulation ``subs``/``simplify``/``series`` and presentation
    ``latex``/``lambdify``.

    Results are frozen: :meth:`subs` returns a new one (``dataclasses.replace``).  Equality is
    identity.  Concrete results say what Σ is (``_cov``), where it exists
    (``_raw_conditions``) and how values are checked (``_check``).
    """

    #: the solver's answer for the (discrete or continuous) stationary equation
    solution: Solution
    #: substituted parameters (symbol -> value)
    values: dict = field(default_factory=dict)

    # -- what the solver produced -----------------------------------------------------------
    @property
    def method(self) -> str:
        """The solver strategy that produced the answer (:mod:`symsgd.lyapunov`)."""
        return self.solution.method

    @property
    def certificate(self):
        """What was checked before this result was returned
        (:class:`symsgd.certify.Certificate`)."""
        return self.solution.certificate

    @property
    def form(self):
        """The structured characteristic-algebra form (:class:`symsgd.cayley.StructuredForm`)
        of a result too large to expand (e.g. fully symbolic SGD with d ≥ 4), else None."""
        return self.solution.form

    @property
    def structured(self) -> bool:
        """True when the entries are kept in the structured characteristic-algebra form
        (readouts are then assembled without expanding into one cancelled fraction)."""
        return self.form is not None

    @property
    def _state_cov(self) -> sp.ImmutableMatrix:
        """The exact second moment of the solved state, before :attr:`values`."""
        return self.solution.state_cov

    @cached_property
    def _cov(self) -> sp.ImmutableMatrix:
        """Var θ before :attr:`values` (the state is θ unless a subclass says otherwise)."""
        return self._state_cov

    # -- hooks of the concrete results (which also give ``landscape``) -----------------------
    @property
    def _lr(self):
        """The optimizer's learning rate."""
        return None

    def _closure(self) -> dict:
        """Substitutions closing a self-consistent coupling (none unless a subclass has one)."""
        return {}

    def _raw_conditions(self) -> sp.Basic:
        """The conditions before the substituted :attr:`values` are applied."""
        raise NotImplementedError

    def _check(self, values: dict, context: str) -> None:
        raise NotImplementedError

    def _weight_decay(self):
        return 0

    def _noise_matrix(self):
        """The additive noise covariance C of the problem, if it has one (for LaTeX names)."""
        return None

    def _state_name(self) -> str:
        return r"\Sigma"

    def _constraints(self) -> tuple:
        """Domain relations of the problem's parameters (:mod:`symsgd.domain`)."""
        return ()

    def _radius(self):
        """A numeric stability check for lambdify when :attr:`conditions` are incomplete."""
        return None

    def mode_names(self) -> dict:
        """Eigenvalue symbol -> printed matrix name (eigen-mode results; else empty)."""
        return {}

    # -- readouts ---------------------------------------------------------------------------
    @property
    def cov(self):
        """Stationary Var θ (a sympy expression for 1-D and eigen-mode problems, else Matrix)."""
        return _scalar(self._apply(self._cov))

    @property
    def loss(self) -> sp.Expr:
        r"""Expected (training) loss at stationarity; for a quadratic
        :math:`\tfrac12\operatorname{Tr}(H\operatorname{Var}\theta)` (per mode for eigen-mode
        problems with additive noise)."""
        return self._apply(self._canonical(self.landscape.loss(self._cov, self._weight_decay())))

    @property
    def test_loss(self) -> sp.Expr | None:
        """Expected loss on a fresh sample, where the landscape defines one (else None)."""
        method = getattr(self.landscape, "test_loss", None)
        value = None if method is None else method(self._cov, self._weight_decay())
        return None if value is None else self._apply(self._canonical(value))

    @property
    def conditions(self) -> sp.Basic:
        """Where the stationary law exists, at the substituted :attr:`values` (a sympy boolean;
        ``True`` once every value is fixed inside the stable region)."""
        return self._apply(self._raw_conditions())

    def stability_edge(self, symbol: sp.Symbol) -> sp.Expr:
        r"""The largest value of ``symbol`` (e.g. ``ss.lr``) up to which the stationary law exists
        when it is raised from 0⁺, as a function of the other parameters: the smallest positive
        root, over the :attr:`conditions`, of each margin (``rhs − lhs`` of ``lhs < rhs``) that
        decreases through zero; ``oo`` when no condition bounds it.

        A margin linear in ``symbol`` gives its root; a quadratic one whose discriminant is
        negative under the symbols' assumptions never vanishes and bounds nothing.  Other
        margins raise ``NotImplementedError`` naming the condition (numbers for the other
        parameters, via :meth:`subs`, make every margin a univariate polynomial, whose roots are
        isolated exactly).

        >>> import sympy as sp, symsgd as ss
        >>> h, c = sp.symbols("h c", positive=True)
        >>> ss.stationary(ss.Nesterov(ss.lr, ss.momentum), ss.Quadratic(h),
        ...               ss.AdditiveNoise(c)).stability_edge(ss.lr)
        2*(mu + 1)/(h*(2*mu + 1))
        """
        if not isinstance(symbol, sp.Symbol):
            raise TypeError(f"stability_edge(symbol) takes a sympy Symbol; got {symbol!r}.")
        conditions = self.conditions
        if conditions is sp.false:
            raise ValueError("stability_edge(): no value gives a stationary law here.")
        roots = []
        unit = _unit_bounds(conditions)
        for cond in sp.And.make_args(conditions):
            if cond is sp.true or symbol not in cond.free_symbols:
                continue
            if isinstance(cond, sp.Ne):  # f ≠ 0: the law fails at the roots of f
                root = _first_root(sp.expand(cond.lhs - cond.rhs), symbol, cond)
                if root is not None:
                    roots.append(root)
                continue
            if not isinstance(cond, sp.core.relational.Relational) or cond.rel_op not in (
                "<",
                "<=",
                ">",
                ">=",
            ):
                raise NotImplementedError(f"stability_edge(): cannot read the condition {cond}.")
            root = _edge_of(sp.expand(cond.gts - cond.lts), symbol, cond, unit)  # margin > 0
            if root is not None:
                roots.append(root)
        if not roots:
            return sp.oo
        return sp.factor(roots[0]) if len(roots) == 1 else sp.Min(*roots)

    def eigenvalue_range(self) -> sp.Interval:
        r"""For an eigen-mode result (a commuting problem): the open interval of the mode's
        eigenvalue in which the stationary law exists — *every* eigenvalue of the matrix the
        mode stands for (``H``, or ``A`` for regression) must lie in it.  The conditions of a
        commuting problem are conditions per mode, so this is their exact content
        (:meth:`stability_edge` of the eigenvalue symbol).  With minibatch noise the modes also
        couple through a trace condition, which is not a range: ``NotImplementedError`` says so.

        >>> import sympy as sp, symsgd as ss
        >>> h, c = sp.symbols("h c", positive=True)
        >>> ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic.commuting(h),
        ...               ss.AdditiveNoise(c)).eigenvalue_range()
        Interval.open(0, 2*(mu + 1)/lambda)
        """
        names = getattr(self.landscape, "mode_names", {}) if self.landscape is not None else {}
        if not getattr(self.landscape, "eigenmode", False) or not names:
            raise ValueError(
                "eigenvalue_range() is for eigen-mode results (Quadratic.commuting, "
                "LinearRegression.commuting); use stability_edge(symbol) for explicit matrices."
            )
        from .modes import ModeTrace

        if self.conditions.has(ModeTrace):
            raise NotImplementedError(
                "eigenvalue_range(): the modes are coupled through a trace condition (minibatch "
                "noise), which bounds the spectrum as a whole, not each eigenvalue; read "
                "result.conditions."
            )
        mode = next(iter(names))
        return sp.Interval.open(0, sp.simplify(self.stability_edge(mode)))

    @property
    def free_symbols(self) -> set:
        """The symbols left in :attr:`cov`."""
        return symbols_in(_matrix(self.cov))

    def _canonical(self, value):
        return value if self.structured else canonical(value)

    def _apply(self, value):
        closure = self._closure()
        if closure:
            value = value.subs(closure)
            if isinstance(value, sp.MatrixBase):
                value = value.applyfunc(canonical)
            elif isinstance(value, sp.Expr):
                value = canonical(value)
        if not self.values:
            return value
        if all(isinstance(k, sp.Symbol) for k in self.values):
            # a plain replacement of symbols: rebuilding the expression once (each shared
            # subexpression once) is much faster than subs() on the ~10⁴-term entries of fully
            # symbolic matrix results
            return substitute(value, self.values)
        return value.subs(self.values)

    def _outputs(self) -> dict:
        return {"cov": self.cov, "loss": self.loss}

    def _all_symbols(self) -> set:
        return symbols_in(self._cov) | self._raw_conditions().free_symbols

    # -- manipulation -----------------------------------------------------------------------
    def subs(self, values: Mapping | None = None, **kwargs):
        """Substitute parameter values (symbols, names or aliases as keys).

        Raises :class:`~symsgd.UnstableError` if the values violate :attr:`conditions`.
        """
        values = dict(values or {})
        values.update(kwargs)
        resolved = resolve_values(values, self._all_symbols())
        check_values(resolved, "subs()", self._constraints())
        resolved = {
            k: sp.nsimplify(v) if isinstance(v, float) and v == int(v) else sp.sympify(v)
            for k, v in resolved.items()
        }
        merged = {**self.values, **resolved}
        self._check(merged, "subs()")
        return self._with_values(merged)

    def _with_values(self, values: dict):
        return replace(self, values=values)

    def simplify(self):
        """Entries factored (they are already cancelled; this only changes their form).
        Structured results are returned unchanged: factoring would expand them."""
        if self.structured:
            return self
        factored = self.solution.state_cov.applyfunc(sp.factor)
        return replace(self, solution=replace(self.solution, state_cov=factored))

    def _series_symbol(self, symbol) -> sp.Symbol:
        """The expansion variable of :meth:`series`: a symbol, or a name / alias of one of the
        result's symbols (``"lr"`` and ``"lambda"`` mean the learning rate)."""
        if symbol is None:
            return self._lr_symbol()
        if isinstance(symbol, str):
            from .symbols import ALIASES

            if symbol in ("lr", str(self._lr_symbol())) or ALIASES.get(symbol) == self._lr_symbol():
                return self._lr_symbol()
            return next(iter(resolve_values({symbol: 0}, self._all_symbols())))
        if not isinstance(symbol, sp.Symbol):
            raise TypeError(f"series(symbol): expected a sympy Symbol or its name; got {symbol!r}.")
        return symbol

    def _lr_symbol(self) -> sp.Symbol:
        """The learning-rate symbol of the problem: the optimizer's own when it is a symbol
        (``series()`` and ``latex(lr=...)`` act on it), else the library's ``lr``."""
        from .symbols import lr

        own = self._lr
        return own if isinstance(own, sp.Symbol) else lr

    def _library_lr(self, value):
        """``value`` with the optimizer's own learning-rate symbol written as the library's
        (so the printers' ``lr=`` notation applies to it)."""
        from .symbols import lr

        own = self._lr_symbol()
        return value if own == lr or value is None else value.xreplace({own: lr})

    def _theta_map(self):
        """Θ with θ = Θz for the structured form's state (None: the state is θ)."""
        return None

    def series(self, symbol: sp.Symbol | None = None, n: int = 3):
        """Taylor series of ``cov`` in ``symbol`` (default: the learning rate) about 0, up to
        and excluding order ``n``."""
        symbol = self._series_symbol(symbol)
        if isinstance(n, bool) or not isinstance(n, (int, sp.Integer)) or int(n) < 1:
            raise ValueError(f"series(n=...): n must be an integer ≥ 1 (the order); got {n!r}.")
        n = int(n)
        if symbol in self.values:  # already fixed: the series is the value itself
            return self.cov
        if self.structured:
            theta = self._theta_map()
            out = self.form.series(symbol, n)
            if theta is not None:
                out = congruence(theta, out)
            return _scalar(self._apply(out))
        cov = _matrix(self.cov)
        out = cov.applyfunc(lambda e: sp.series(e, symbol, 0, n).removeO())
        return _scalar(out)

    # -- presentation -----------------------------------------------------------------------
    def latex(
        self,
        *,
        env: str | None = None,
        lr: str | None = None,
        batch: str | None = None,
        what: str = "cov",
    ) -> str:
        r"""LaTeX of ``cov`` (or ``what=`` any readout: ``"velocity_cov"``, ``"cross_cov"``,
        ``"noise_cov"``, ``"loss"``, ``"test_loss"``): matrix-function form for eigen-mode
        results, a common-denominator block for explicit matrices.  ``lr="\\eta"`` and
        ``batch="B"`` change notation; ``env="align"`` wraps it in an align environment."""
        for name, value in (("lr", lr), ("batch", batch), ("env", env)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"latex({name}=...) takes a string (e.g. r'\\eta'); got {value!r}.")
        lhs = LATEX_LHS.get(what)
        if lhs is None:
            raise ValueError(f"latex(what=...) must be one of {sorted(LATEX_LHS)}; got {what!r}.")
        if self.structured:
            return self._structured_latex(what, env, lr)
        value = getattr(self, what, None)
        if value is None:
            raise ValueError(f"this result has no {what!r}.")
        names = self.mode_names() if what not in ("loss", "test_loss") else {}
        if lr:
            value = self._library_lr(value)
        try:
            return render(lhs, value, names=names, env=env, lr_name=lr, batch_name=batch)
        except (sp.PolynomialError, sp.PolificationFailed, sp.GeneratorsNeeded):
            return render(lhs, value, env=env, lr_name=lr, batch_name=batch)

    @property
    def denominator(self) -> sp.Expr:
        """Common denominator of the exact solution (factored): it vanishes on the boundary
        of the stability region."""
        return self._apply(self.solution.denominator)

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle \\Sigma = {self.latex()}$"

    def _structured_latex(self, what: str, env: str | None, lr_name: str | None) -> str:
        """The characteristic-algebra formula of a structured result (``what="cov"`` only)."""
        if what != "cov":
            raise ValueError(
                f"latex(what={what!r}) is not available for this structured result (its entries "
                f"have ~10⁶ terms when expanded); latex() prints the cov formula, and "
                f"lambdify()/subs() evaluate {what!r}."
            )
        form = self.form
        from .cayley import StructuredForm
        from .lyapunov import TraceSplitForm

        if isinstance(form, TraceSplitForm):
            return self._trace_split_latex(form, env, lr_name)
        if not isinstance(form, StructuredForm):
            kind = getattr(
                form,
                "description",
                "fully symbolic momentum with d ≥ 3, solved in the characteristic algebra of H",
            )
            raise ValueError(
                f"latex() is not available for this structured result ({kind}); fix some "
                "parameters with .subs(...) first, or evaluate with .lambdify()."
            )
        K_name = "H" if form.K == sp.ImmutableMatrix(self.landscape.hessian) else "K"
        C = self._noise_matrix()
        F_name = "C" if C is not None and form.F == sp.ImmutableMatrix(C) else "F"
        lhs = self._state_name()
        names = {self._lr_symbol(): command(lr_name)} if lr_name else {}
        body, where = structured_latex(form, K_name, F_name, names, self.values)
        return layout(lhs, body, where, env)

    def _trace_split_latex(self, form, env: str | None, lr_name: str | None) -> str:
        r""":math:`\Sigma` of a trace-split result with the closed trace kept as one symbol:
        each entry :math:`U + \kappa V` (:class:`symsgd.lyapunov.TraceSplitForm`), and
        :math:`\kappa = \operatorname{Tr}(A\Sigma)` defined below it."""
        kappa = sp.Symbol("kappa")
        state = sp.zeros(form.n, form.n)
        for rows, U, V in form.blocks:
            for i, a in enumerate(rows):
                for j, b in enumerate(rows):
                    state[a, b] = U[i, j] + kappa * V[i, j]
        cov = congruence(self._theta_map(), state).applyfunc(
            lambda e: canonical(self._apply(e)) if e != 0 else e
        )
        names = {self._lr_symbol(): command(lr_name)} if lr_name else {}
        trace = canonical(self._apply(form.kappa))
        body = sp.latex(cov, symbol_names=names)
        where = rf"\kappa = \operatorname{{Tr}}(A\Sigma) = {sp.latex(trace, symbol_names=names)}"
        return layout(self._state_name(), body, where, env)

    def lambdify(
        self, what: str | tuple = "cov", backend: str = "numpy", unstable: str = "raise"
    ) -> NumericFunction:
        """A fast vectorised numeric function of the free symbols, with keyword arguments by
        symbol name or alias: ``f = r.lambdify(); f(lr=0.1, h=1.0, c=0.5)``.

        ``what`` is one readout name or a tuple of them (the function then returns a dict).
        Points violating :attr:`conditions` raise :class:`~symsgd.UnstableError`, or give NaN
        with ``unstable="nan"``.
        """
        names = (what,) if isinstance(what, str) else tuple(what)
        outputs = {}
        for name in names:
            check_readout(name, "lambdify(what=...)")
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"this result has no {name!r}.")
            outputs[name] = value
        return lambdify_result(
            outputs, self.conditions, backend, unstable, self._constraints(), self._radius()
        )


def _smallest_positive_root(poly: sp.Poly) -> sp.Expr | None:
    """The smallest positive real root of a univariate polynomial, isolated exactly."""
    positive = [r for r in poly.real_roots() if r.is_positive]
    return min(positive, key=lambda r: float(r)) if positive else None


def _first_root(f: sp.Expr, x: sp.Symbol, cond) -> sp.Expr | None:
    """The smallest positive root of ``f`` in x (None if there is none)."""
    poly = sp.Poly(f, x)
    if poly.degree() == 1:
        c1, c0 = poly.all_coeffs()
        root = sp.factor(-c0 / c1)
        if root.is_positive:
            return root
        if root.is_nonpositive:
            return None
    elif not poly.free_symbols - {x}:
        return _smallest_positive_root(poly)
    raise NotImplementedError(
        f"stability_edge(): cannot locate the roots of the condition {cond} in {x}; "
        f"substitute numbers for the other parameters first (result.subs(...))."
    )


def _unit_bounds(conditions) -> dict:
    """The nonnegative symbols that the conjunction itself bounds by ``s < 1`` (e.g. μ < 1
    kept beside margins proven under it), each with the substitution s = w/(1 + w), w ≥ 0,
    that maps [0, 1) onto [0, ∞) so that sympy's sign assumptions can see the bound."""
    out = {}
    for cond in sp.And.make_args(conditions):
        if (
            isinstance(cond, sp.StrictLessThan)
            and isinstance(cond.lhs, sp.Symbol)
            and cond.rhs == 1
            and cond.lhs.is_nonnegative
        ):
            w = sp.Dummy(f"w_{cond.lhs}", nonnegative=True)
            out[cond.lhs] = w / (1 + w)
    return out


def _sign_under(expr: sp.Expr, unit: dict) -> tuple[bool | None, bool | None]:
    """``(is_negative, is_nonnegative)`` of ``expr`` from the symbols' assumptions and the
    conjunction's own unit bounds (None: undecided)."""
    value = sp.factor(expr)
    if value.is_negative or value.is_nonnegative or not unit:
        return value.is_negative, value.is_nonnegative
    value = sp.factor(sp.together(expr.subs(unit)))
    return value.is_negative, value.is_nonnegative


def _edge_of(margin: sp.Expr, x: sp.Symbol, cond, unit: dict | None = None) -> sp.Expr | None:
    """The smallest positive x where ``margin`` (positive at x = 0⁺) reaches zero, or None;
    ``unit`` holds the conjunction's bounds s < 1 (:func:`_unit_bounds`)."""
    poly = sp.Poly(margin, x)
    coeffs = poly.all_coeffs()
    if poly.degree() == 1:
        c1, c0 = coeffs
        negative, nonnegative = _sign_under(c1, unit or {})
        if nonnegative:
            return None  # grows with x: never reached from x = 0⁺
        if negative:
            return sp.cancel(-c0 / c1)
    elif poly.degree() == 2:
        c2, c1, c0 = coeffs
        if sp.factor(c1**2 - 4 * c2 * c0).is_negative:
            return None  # no real root: the margin keeps its sign
    if not poly.free_symbols - {x}:
        return _smallest_positive_root(poly)
    raise NotImplementedError(
        f"stability_edge(): the condition {cond} is of degree {poly.degree()} in {x} with "
        f"symbolic coefficients; substitute numbers for the other parameters first "
        f"(result.subs(...))."
    )
