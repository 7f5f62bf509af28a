r"""Theory against simulation at one parameter point: :func:`crosscheck` (grids: :mod:`._sweep`).

:func:`crosscheck` simulates the problem a result was derived from (:func:`symsgd.simulate`
runs the optimizer's real update with real noise) and compares every entry of the theory — the
upper triangle of ``cov`` and ``velocity_cov``, and ``loss`` — with the estimate:

.. math:: z = \frac{\text{theory} - \text{estimate}}{\text{stderr}}, \qquad
          p = 2\,P(|t_{\text{chains}-1}| > |z|).

The verdict controls the probability of *any* false alarm (the family-wise error rate) at
``level`` with Holm's step-down procedure: sort the m p-values, flag the k-th smallest while
:math:`p_{(k)} \le \text{level}/(m-k+1)`.  The verdict "some entry differs" is the same as
Bonferroni's (:math:`\min p \le \text{level}/m`); Holm only flags more of the entries once one is
flagged.  Both hold under any dependence between entries — and the entries are strongly correlated
(the loss is a linear function of ``cov``), so the real false-alarm rate lies between
``level/m`` and ``level``.

**A check cannot pass vacuously.**  A test that flags nothing proves nothing when the
simulation is too small to see a difference, so the verdict has three states
(:attr:`CrossCheck.verdict`): ``"failed"`` (some entry is flagged), ``"passed"`` and
``"inconclusive"``.  It is ``inconclusive`` (and :attr:`CrossCheck.passed` is False) when

* fewer than :data:`~symsgd.statistics.MIN_CHAINS` = 30 independent chains ran: the standard errors
  come from the spread of the per-chain averages, and with fewer chains their t statistics rest on a
  normality of those averages that nothing guarantees (and 2 chains give one degree of freedom: a z
  of 24 is then not significant at level 0.01); a flagged entry is then not trusted either;
* otherwise nothing is flagged but the run holds fewer than
  :data:`~symsgd.statistics.MIN_EFFECTIVE_SAMPLES` = 800 effective samples :math:`n_\text{eff} =
  \text{chains}\cdot\text{steps}\,(1-\rho)/(1+\rho)` (ρ the spectral radius of the second-moment
  map; :math:`(1+\rho)/(1-\rho)` is the integrated autocorrelation time of a second moment), i.e. a
  predicted relative standard error :math:`\sqrt{2/n_\text{eff}}` of the second moments above 5 %,
  or the *measured* relative standard error of a diagonal entry of ``cov`` exceeds
  :data:`~symsgd.statistics.MAX_RELATIVE_STDERR` = 10 % (heavy tails, slow modes): a formula off by
  20 % could then pass.

The report says which and recommends ``chains``/``steps``.  The defaults (``rel_se = 0.003``:
:math:`n_\text{eff} \approx 2.2\cdot 10^5`) are far above the minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ._simulate import Simulation, check_run_options, check_seed, run
from ._util import substitute
from .errors import UnstableError
from .landscapes import LinearRegression, Quadratic
from .noise import AdditiveNoise, MinibatchNoise
from .sampling import check_pieces, nonlinear, prepare
from .stability import name_condition
from .statistics import holm, sufficiency
from .tails import fourth_moment_radius

__all__ = [
    "CrossCheck",
    "Row",
    "assert_crosscheck",
    "crosscheck",
]

QUANTITIES = ("cov", "velocity_cov", "loss")
VERDICTS = ("passed", "failed", "inconclusive")


@dataclass(frozen=True)
class Row:
    """One compared entry: ``entry`` is ``(i, j)`` for matrices and ``()`` for the loss."""

    quantity: str
    entry: tuple
    theory: float
    estimate: float
    stderr: float
    z: float
    p: float
    flagged: bool

    @property
    def name(self) -> str:
        if not self.entry:
            return self.quantity
        return f"{self.quantity}[{','.join(map(str, self.entry))}]"


@dataclass(frozen=True)
class CrossCheck:
    """The outcome of :func:`crosscheck`; ``print(report)`` shows the table, ``bool(report)`` is
    :attr:`passed`.

    :attr:`verdict` is ``"passed"``, ``"failed"`` or ``"inconclusive"`` (the simulation was too
    small for a verdict; :attr:`reason` says why and what to run instead); :attr:`passed` is
    True only for ``"passed"``.
    """

    passed: bool
    table: list[Row]
    level: float
    simulation: Simulation
    problem: str
    method: str = "holm"
    notes: tuple[str, ...] = field(default=())
    #: estimated spectral radius of the fourth-moment map (None: additive noise or too large);
    #: ≥ 1 means power-law tails, and then the standard errors (so the verdict) are not valid
    fourth_moment_radius: float | None = None
    #: "passed", "failed" or "inconclusive" (default: from ``passed``)
    verdict: str = ""
    #: why the verdict is inconclusive, with the recommended chains/steps (None otherwise)
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.verdict:
            object.__setattr__(self, "verdict", "passed" if self.passed else "failed")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}.")
        if self.passed != (self.verdict == "passed"):
            raise ValueError(f"passed={self.passed} contradicts verdict={self.verdict!r}.")

    @property
    def reliable(self) -> bool:
        """False when the stationary law appears to have an infinite fourth moment."""
        rho4 = self.fourth_moment_radius
        return rho4 is None or rho4 < 1

    def __bool__(self) -> bool:
        return self.passed

    @property
    def z(self) -> np.ndarray:
        return np.array([row.z for row in self.table])

    @property
    def threshold(self) -> float:
        """The smallest p-value Holm/Bonferroni tolerates: ``level / m``."""
        return self.level / max(1, len(self.table))

    def __str__(self) -> str:
        sim = self.simulation
        verdict = self.verdict.upper()
        shown = ", ".join(f"{k} = {_num(v)}" for k, v in sorted(sim.params.items(), key=str))
        lines = [
            f"crosscheck {verdict}: {self.problem}",
            f"  at {shown}",
            f"  simulation: {sim.chains} chains × {sim.steps} steps after {sim.burn_in} burn-in "
            f"steps (ρ = {sim.spectral_radius:.4g}), seed {_seed(sim.seed)}",
            f"  {'quantity':<18}{'theory':>14}{'estimate':>14}{'stderr':>11}{'z':>9}{'p':>11}",
        ]
        for row in self.table:
            mark = " *" if row.flagged else ""
            lines.append(
                f"  {row.name:<18}{row.theory:>14.7g}{row.estimate:>14.7g}"
                f"{row.stderr:>11.3g}{row.z:>9.2f}{row.p:>11.3g}{mark}"
            )
        m = len(self.table)
        smallest = min((row.p for row in self.table), default=1.0)
        if self.verdict == "inconclusive":
            lines.append(f"  verdict: inconclusive: {self.reason}")
        elif self.passed:
            lines.append(
                f"  verdict: no entry differs at family-wise level {self.level:g} "
                f"(Holm over {m} entries: smallest p = {smallest:.3g} > "
                f"{self.threshold:.3g})"
            )
        else:
            flagged = ", ".join(row.name for row in self.table if row.flagged)
            lines.append(
                f"  verdict: {flagged} differ{'s' if flagged.count(',') == 0 else ''} "
                f"from the simulation at family-wise level {self.level:g} (Holm over "
                f"{m} entries; * = flagged)"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        shown = "FAILED" if self.verdict == "failed" else self.verdict
        return f"<CrossCheck {shown}: {self.problem}>"

    def plot(self):
        """A matplotlib Figure: relative deviation of each entry with ±2 s.e. bars, and the
        z-scores against the family-wise critical value (no display needed)."""
        from scipy.special import stdtrit

        fig, (left, right) = _figure(ncols=2, figsize=(10, 3.6))
        names = [row.name for row in self.table]
        x = np.arange(len(names))
        scale = np.array([abs(row.theory) if row.theory else 1.0 for row in self.table])
        dev = np.array([row.estimate - row.theory for row in self.table]) / scale
        err = 2 * np.array([row.stderr for row in self.table]) / scale
        left.errorbar(x, dev, yerr=err, fmt="o", capsize=3)
        left.axhline(0.0, color="k", lw=0.8)
        left.set_ylabel("(estimate − theory) / |theory|")
        left.set_title("simulation vs theory (±2 s.e.)")
        df = max(1, self.simulation.chains - 1)
        crit = float(stdtrit(df, 1 - self.threshold / 2))
        colors = ["C3" if row.flagged else "C0" for row in self.table]
        right.bar(x, self.z, color=colors)
        for y in (crit, -crit):
            right.axhline(y, color="C3", ls="--", lw=0.8)
        right.set_ylabel("z = (theory − estimate) / s.e.")
        shown = "FAILED" if self.verdict == "failed" else self.verdict
        right.set_title(f"{shown} at level {self.level:g}")
        for ax in (left, right):
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        fig.suptitle(self.problem, fontsize=9)
        fig.tight_layout()
        return fig


def _num(value) -> str:
    value = sp.sympify(value)
    return f"{float(value):.10g}" if value.is_Float else sp.sstr(value)


def _seed(seed) -> str:
    return str(seed) if isinstance(seed, (int, np.integer)) else f"entropy {seed.entropy}"


def _figure(**kwargs):
    """A Figure not managed by pyplot, so it works without a display (any backend)."""
    from matplotlib.figure import Figure

    ncols = kwargs.pop("ncols", 1)
    fig = Figure(**kwargs)
    axes = fig.subplots(1, ncols)
    return fig, axes


# ---------------------------------------------------------------------------------------------
# crosscheck
# ---------------------------------------------------------------------------------------------


def _problem_of(result, problem):
    """(optimizer, landscape, noise) of ``problem`` (a triple or anything with a recursion),
    defaulting to the result's own recursion."""
    source = result if problem is None else problem
    if isinstance(source, tuple) and len(source) == 3:
        return source
    recursion = getattr(source, "recursion", None)
    if recursion is None:
        raise TypeError(
            f"crosscheck needs to know which problem to simulate; {type(source).__name__} does not "
            f"carry one. Pass problem=stationary_result or problem=(optimizer, landscape, noise)."
        )
    return recursion.optimizer, recursion.landscape, recursion.noise


def _named(error: UnstableError, result, problem=None) -> UnstableError:
    """``error`` worded with the failing one of the stability conditions of ``result`` (or of
    ``problem`` when that is a result), which the caller already holds."""
    for source in (problem, result):
        conditions = getattr(source, "conditions", None)
        if isinstance(conditions, sp.Basic):
            return name_condition(error, conditions)
    return error


def _theory(result, quantity: str, values: dict, eigenvalues) -> np.ndarray | None:
    """The theory's ``quantity`` at ``values`` as a float array (1×1 for scalars)."""
    from .modes import ModeTrace, expand_traces

    value = getattr(result, quantity, None)
    if value is None:
        return None
    if eigenvalues is not None:
        known = result._all_symbols()
        # on_modes gives the loss as the total over the modes
        value = result.subs({k: v for k, v in values.items() if k in known}).on_modes(
            eigenvalues, quantity
        )
    else:
        value = substitute(value, values)
        if value.has(ModeTrace):  # one mode simulated alone: the spectrum is that eigenvalue
            mode = next(iter(result.landscape.mode_names))
            value = expand_traces(value, [values[mode]])
    matrix = sp.Matrix(value if isinstance(value, sp.MatrixBase) else [[value]])
    if matrix.free_symbols:
        raise ValueError(
            f"the theory's {quantity} still depends on "
            f"{', '.join(sorted(map(str, matrix.free_symbols)))}; pass values for "
            f"them."
        )
    return np.array(matrix.evalf(), dtype=float)


def _explicit_modes(optimizer, landscape, noise, eigenvalues):
    """The explicit diagonal problem whose modes are ``eigenvalues`` (mode-coupled regression)."""
    eigs = [sp.sympify(e) for e in eigenvalues]
    d = len(eigs)
    if not landscape.eigenmode:
        raise ValueError(
            "eigenvalues= is for eigen-mode results (…commuting()); this landscape is explicit."
        )
    if isinstance(landscape, LinearRegression):
        if not sp.Matrix(landscape.theta_star).is_zero_matrix:
            raise NotImplementedError(
                "eigenvalues= needs theta_star = 0 (a per-mode θ* would need one value per mode)."
            )
        land = LinearRegression(sp.diag(*eigs), landscape.label_noise)
    elif isinstance(landscape, Quadratic):
        land = Quadratic(sp.diag(*eigs))
    else:  # pragma: no cover - only two landscape kinds exist
        raise NotImplementedError(f"eigenvalues= for {landscape!r}")
    if isinstance(noise, AdditiveNoise):
        noise = AdditiveNoise(noise.C[0, 0] * sp.eye(d))
    elif not isinstance(noise, MinibatchNoise):  # pragma: no cover
        raise NotImplementedError(f"eigenvalues= with {noise!r}")
    matrix_fields = [n for n in ("P", "fisher", "v") if getattr(optimizer, n, None) is not None]
    if matrix_fields:
        raise NotImplementedError(
            f"eigenvalues= with {type(optimizer).__name__} ({', '.join(matrix_fields)} per mode) "
            f"is not supported; crosscheck one mode at a time instead."
        )
    return optimizer, land, noise


def _check_level(level) -> None:
    try:
        fine = not isinstance(level, bool) and 0 < float(level) < 1
    except (TypeError, ValueError):
        fine = False
    if not fine:
        raise ValueError(f"level must be a number in (0, 1); got {level!r}.")


def _eigenvalues(eigenvalues) -> list:
    """``eigenvalues=`` as a non-empty list of finite positive numbers (else ``ValueError``)."""
    if isinstance(eigenvalues, (str, bytes)) or not hasattr(eigenvalues, "__iter__"):
        raise ValueError(
            f"eigenvalues must be a non-empty sequence of positive numbers; got {eigenvalues!r}."
        )
    out = []
    for e in eigenvalues:
        try:
            value = sp.sympify(e)
            z = complex(value)
        except (sp.SympifyError, TypeError, ValueError):
            z = complex(math.nan)
        if not (math.isfinite(z.real) and z.imag == 0 and z.real > 0):
            raise ValueError(
                f"eigenvalues must be finite positive numbers (the modes' curvatures); got {e!r}."
            )
        out.append(value)
    if not out:
        raise ValueError("eigenvalues must be a non-empty sequence of positive numbers.")
    return out


def _compare(theory: dict, sim: Simulation, level: float) -> list[Row]:
    from scipy.special import stdtr  # Student t CDF (scipy.stats is slow to import)

    df = sim.chains - 1
    raw = []
    for quantity, value in theory.items():
        if quantity == "loss":
            entries = [((), float(value[0, 0]), sim.loss, sim.loss_stderr)]
        else:
            est, se = getattr(sim, quantity), getattr(sim, quantity + "_stderr")
            d = est.shape[0]
            if value.shape != est.shape:
                raise ValueError(
                    f"theory {quantity} has shape {value.shape}; the simulation {est.shape}."
                )
            entries = [
                ((i, j), float(value[i, j]), float(est[i, j]), float(se[i, j]))
                for i in range(d)
                for j in range(i, d)
            ]
        for entry, th, est_v, se_v in entries:
            diff = th - est_v
            if se_v > 0:
                z = diff / se_v
            else:
                z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
            p = float(2 * stdtr(df, -abs(z)))
            raw.append((quantity, entry, th, est_v, se_v, z, p))
    flags = holm([r[-1] for r in raw], level)
    return [Row(*r, flagged=f) for r, f in zip(raw, flags)]


def crosscheck(
    result,
    params: Mapping | None = None,
    *,
    problem=None,
    eigenvalues: Sequence | None = None,
    quantities: Sequence[str] = QUANTITIES,
    chains: int | None = None,
    steps: int | None = None,
    burn_in: int | None = None,
    seed: int | np.random.SeedSequence | None = 0,
    rel_se: float = 0.003,
    level: float = 0.01,
    workers: int | None = None,
    progress: bool | None = None,
    dynamics: str = "linearised",
) -> CrossCheck:
    r"""Simulate the problem ``result`` was derived from at ``params`` (merged with
    ``result.values``) and compare every entry of ``quantities`` (see the module docstring).

    ``problem`` overrides what is simulated: a :class:`~symsgd.Stationary` or an ``(optimizer,
    landscape, noise)`` triple — needed for a :class:`~symsgd.ContinuousTime` prediction, which
    carries no recursion.  For eigen-mode results whose modes couple through a trace
    (minibatch noise on ``LinearRegression.commuting``), ``eigenvalues=[a_1, …]`` simulates the
    explicit diagonal problem and compares with ``result.on_modes(eigenvalues)``; without it
    the mode is simulated alone (a one-mode spectrum).  Quantities the theory or the landscape
    does not define are skipped with a note.  ``chains``, ``steps``, ``burn_in``, ``seed``,
    ``rel_se``, ``workers`` and ``progress`` go to :func:`symsgd.simulate`.

    ``dynamics="nonlinear"`` (for a result derived on the local problem ``model.near(θ*)`` of an
    :class:`~symsgd.EmpiricalLoss`, with :class:`~symsgd.MinibatchNoise`) simulates the *real*
    nonlinear model started at θ* instead of its linearisation
    (:func:`symsgd.sampling.nonlinear`) and compares it with the linearised theory.  The two
    differ at order λ relative to the covariance (the cubic terms of the loss; the mean shifts
    by O(λ)), so the check passes only at learning rates where that departure is below the
    standard errors; the loss is not compared (the nonlinear run does not measure it).
    ``velocity_cov`` (:math:`\lambda^2` times the gradient noise, which the mean shift changes at
    the same relative order λ) is measured far more precisely than ``cov``, so it is the first
    to fail as λ grows: ``quantities=("cov",)`` checks the covariance alone.  The
    default ``"linearised"`` simulates the problem the theory is exact for.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> report = crosscheck(r, {"lr": 0.5, h: 1.0, c: 1.0}, chains=2000, steps=200)
    >>> report.passed, [row.name for row in report.table]
    (True, ['cov[0,0]', 'velocity_cov[0,0]', 'loss'])
    """
    _check_level(level)
    if dynamics not in ("linearised", "nonlinear"):
        raise ValueError(f"dynamics must be 'linearised' or 'nonlinear'; got {dynamics!r}.")
    if isinstance(quantities, str):
        quantities = (quantities,)
    unknown = set(quantities) - set(QUANTITIES)
    if unknown or not quantities:
        raise ValueError(
            f"quantities must be a non-empty sequence of {QUANTITIES}; got {quantities!r}."
        )
    check_run_options(chains, steps, burn_in, rel_se, workers)
    check_seed(seed)
    if eigenvalues is not None:
        eigenvalues = _eigenvalues(eigenvalues)
    pieces = _problem_of(result, problem)
    check_pieces(*pieces, params)
    given = {**getattr(result, "values", {}), **dict(params or {})}
    if eigenvalues is not None:
        pieces = _explicit_modes(*pieces, eigenvalues)
        mode = next(iter(result.landscape.mode_names))
        given = {k: v for k, v in given.items() if str(k) != str(mode)}
    try:
        prepared = prepare(*pieces, given)
    except UnstableError as exc:  # ρ ≥ 1: the result's own conditions say which one fails
        raise _named(exc, result, problem) from None
    simulated = nonlinear(prepared) if dynamics == "nonlinear" else prepared
    values = dict(prepared.values)
    notes = []
    theory = {}
    for quantity in quantities:
        value = _theory(result, quantity, values, eigenvalues)
        if value is None:
            notes.append(f"the theory has no {quantity}; not compared.")
            continue
        theory[quantity] = value
    sim = run(
        simulated,
        chains=chains,
        steps=steps,
        burn_in=burn_in,
        seed=seed,
        rel_se=rel_se,
        workers=workers,
        progress=progress,
    )
    if "loss" in theory and sim.loss is None:
        del theory["loss"]
        if dynamics == "nonlinear":
            notes.append("the nonlinear simulation does not measure the loss; not compared.")
        else:
            notes.append(f"{pieces[1]!r} has no numeric loss; loss not compared.")
    table = _compare(theory, sim, level)
    rho4 = fourth_moment_radius(prepared)
    if rho4 is not None and rho4 >= 1:
        notes.append(
            f"the stationary law appears to have an infinite fourth moment (ρ₄ ≈ {rho4:.3g} ≥ 1: "
            "power-law tails), so simulated second moments converge slowly, their standard "
            "errors are not valid and this verdict is not reliable. Check the formula at a "
            "smaller learning rate or a larger batch."
        )
    reason = sufficiency(sim, table)
    if reason is not None:
        verdict = "inconclusive"
    else:
        verdict = "failed" if any(row.flagged for row in table) else "passed"
    return CrossCheck(
        passed=verdict == "passed",
        verdict=verdict,
        reason=reason,
        table=table,
        level=level,
        simulation=sim,
        problem=simulated.describe(),
        notes=tuple(notes),
        fourth_moment_radius=rho4,
    )


def assert_crosscheck(result, params: Mapping | None = None, **kwargs) -> CrossCheck:
    """:func:`crosscheck` for tests: returns the report, or raises ``AssertionError`` whose
    message is the report's table.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> bool(assert_crosscheck(r, {"lr": 0.5, h: 1.0, c: 1.0}, chains=2000, steps=200))
    True
    """
    report = crosscheck(result, params, **kwargs)
    if not report.passed:
        raise AssertionError("\n" + str(report))
    return report
