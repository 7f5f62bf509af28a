r"""Theory, its continuous-time limit and simulation over a grid of one parameter: :func:`sweep`.

Each point of the grid is prepared (:func:`symsgd.sampling.prepare`) before any simulation runs;
points without a stationary law become NaN, with the failing stability condition of the result
as their message.  Simulations run in local processes or on a ``dask.distributed`` cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ._crosscheck import QUANTITIES, _figure, _named, _problem_of
from ._simulate import Simulation, check_run_options, check_seed, run
from .errors import UnstableError
from .numeric import resolve_values
from .sampling import check_pieces, prepare
from .stability import as_number

__all__ = ["Sweep", "sweep"]


@dataclass(frozen=True)
class Sweep:
    """Theory, continuous-time prediction and simulation of one readout over a parameter grid.

    Arrays have shape ``(len(values),) + shape`` with ``shape = ()`` for scalar readouts and
    ``(d, d)`` for matrices.  Points where no stationary law exists are NaN (``messages`` says
    why); ``continuous`` is None when the readout has no continuous-time counterpart.
    """

    param: sp.Symbol
    what: str
    values: np.ndarray
    theory: np.ndarray
    continuous: np.ndarray | None
    estimate: np.ndarray
    stderr: np.ndarray
    grid: np.ndarray
    theory_grid: np.ndarray
    continuous_grid: np.ndarray | None
    messages: tuple[str | None, ...] = field(repr=False, default=())

    def plot(self, ax=None):
        """A matplotlib Figure: theory curve, continuous-time curve (dashed) and simulation
        points with ±2 s.e. bars, one colour per matrix entry."""
        if ax is None:
            fig, ax = _figure(figsize=(6, 4))
        else:
            fig = ax.figure
        entries = (
            [()]
            if self.theory.ndim == 1
            else [
                (i, j) for i in range(self.theory.shape[1]) for j in range(i, self.theory.shape[1])
            ]
        )
        for k, entry in enumerate(entries):
            color = f"C{k % 10}"
            label = self.what + ("" if not entry else f"[{entry[0]},{entry[1]}]")
            index = (slice(None), *entry)
            ax.plot(self.grid, self.theory_grid[index], color=color, label=f"{label} exact")
            if self.continuous_grid is not None:
                ax.plot(
                    self.grid,
                    self.continuous_grid[index],
                    color=color,
                    ls="--",
                    label=f"{label} continuous time",
                )
            ax.errorbar(
                self.values,
                self.estimate[index],
                yerr=2 * self.stderr[index],
                fmt="o",
                color=color,
                capsize=3,
                label=f"{label} simulation",
            )
        ax.set_xlabel(str(self.param))
        ax.set_ylabel(self.what)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


def _simulate_point(task):
    """One sweep point (module level so that process pools and dask can pickle it)."""
    pieces, params, kwargs, what = task
    try:
        sim = run(prepare(*pieces, params), **kwargs)
    except UnstableError as exc:
        return None, None, str(exc)
    return _readout(sim, what)


def _run_point(problem, kwargs: dict, seed, what: str) -> tuple:
    """One sweep point already prepared (in this process)."""
    try:
        sim = run(problem, **kwargs, seed=seed)
    except UnstableError as exc:  # the simulation diverged
        return None, None, str(exc)
    return _readout(sim, what)


def _readout(sim: Simulation, what: str) -> tuple:
    if what == "loss":
        return np.array(sim.loss), np.array(sim.loss_stderr), None
    return getattr(sim, what), getattr(sim, what + "_stderr"), None


def _evaluate(function, names: dict, param_name: str, points: np.ndarray) -> np.ndarray:
    r"""``function`` on the grid ``points`` of the swept parameter, shape ``(len(points),) +
    shape``.  Only the parameters ``function`` depends on are passed; a function that does not
    depend on the swept parameter (a continuous-time prediction free of the batch size, say) is
    constant along the grid and broadcast over it."""
    kwargs = {k: v for k, v in names.items() if k in function.names}
    if param_name not in function.names:
        value = np.asarray(function(**kwargs), dtype=float)
        return np.broadcast_to(value, (points.size, *value.shape)).copy()
    kwargs[param_name] = points
    return np.asarray(function(**kwargs), dtype=float)


def _grid_values(values) -> np.ndarray:
    """The swept values as a finite, non-empty 1-D float array (else ``ValueError``)."""
    try:
        points = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"values must be a non-empty 1-D sequence of numbers; got {values!r}."
        ) from None
    if points.ndim != 1 or points.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence of numbers.")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"values must be finite numbers; got {values!r}.")
    return points


def _check_sizes(chains, steps, burn_in, rel_se, workers, grid, seed) -> None:
    check_run_options(chains, steps, burn_in, rel_se, workers)
    if workers is None:
        raise ValueError("workers must be an integer ≥ 1; got None.")
    check_seed(seed)
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an integer ≥ 2; got {grid!r}.")


def _theory_functions(result, what: str, given: set):
    """``(exact, continuous)`` numeric functions of readout ``what`` (``continuous`` None when
    the readout has no continuous-time counterpart); raises ``ValueError`` if they depend on a
    parameter that has no value."""
    if getattr(result, what, None) is None:
        raise ValueError(f"this result has no {what!r}; sweep one of its readouts instead.")
    exact = result.lambdify(what, unstable="nan")
    continuous = None
    if what != "velocity_cov":
        try:
            continuous = result.continuous_time().lambdify(what, unstable="nan")
        except (ValueError, NotImplementedError, AttributeError):
            continuous = None
    for function, label in ((exact, "theory"), (continuous, "continuous-time prediction")):
        missing = sorted(set(() if function is None else function.names) - given)
        if missing:
            raise ValueError(
                f"the {label} of {what} depends on {', '.join(missing)}; pass values for them "
                f"in fixed_params."
            )
    return exact, continuous


def sweep(
    result,
    param,
    values: Sequence[float],
    fixed_params: Mapping | None = None,
    *,
    what: str = "cov",
    problem=None,
    chains: int | None = None,
    steps: int | None = None,
    burn_in: int | None = None,
    seed: int = 0,
    rel_se: float = 0.01,
    workers: int = 2,
    client=None,
    grid: int = 200,
) -> Sweep:
    r"""Theory (``result.lambdify``), its continuous-time prediction
    (``result.continuous_time()``) and simulations of readout ``what`` at each of ``values`` of
    ``param`` (symbol, name or alias), the other parameters fixed at ``fixed_params`` (a value
    given there for ``param`` itself is ignored).  The curves are drawn on ``grid`` points
    (the integers in range, at most ``grid`` of them, for an integer parameter such as the
    batch size).  A curve that does not depend on ``param``
    — e.g. the continuous-time prediction when ``param`` is the batch size and the learning
    rate scales with it — is constant over the grid.

    Every input is checked before any simulation starts: ``param`` and the keys of
    ``fixed_params`` must be parameters of the problem, every parameter the theory or the
    simulation needs must have a value, and each point is prepared (points without a stationary
    law become NaN, with a message).  Simulations then run in ``workers`` local processes
    (``concurrent.futures``; 1 = in this process), or on a ``dask.distributed`` cluster when
    ``client=`` is given.  Point k uses the k-th child of ``numpy.random.SeedSequence(seed)``,
    so results do not depend on where it ran.

    >>> import sympy as sp, symsgd as ss
    >>> h, c = sp.symbols("h c", positive=True)
    >>> r = ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))
    >>> s = sweep(r, "lr", [0.5, 1.0], {h: 1.0, c: 1.0}, chains=1000, steps=100, workers=1)
    >>> s.theory  # λc / (h(2 − λh))
    array([0.33333333, 1.        ])
    >>> s.continuous  # λc / (2h)
    array([0.25, 0.5 ])
    """
    # -- validate everything before the first simulation ----------------------------------
    if what not in QUANTITIES:
        raise ValueError(f"what must be one of {QUANTITIES}; got {what!r}.")
    _check_sizes(chains, steps, burn_in, rel_se, workers, grid, seed)
    pieces = _problem_of(result, problem)
    check_pieces(*pieces, fixed_params, "fixed_params")
    points = _grid_values(values)
    symbols = set()
    for piece in pieces:
        symbols |= {
            s
            for value in vars(piece).values()
            if isinstance(value, sp.Basic)
            for s in value.free_symbols
        }
    symbols |= result._all_symbols() if hasattr(result, "_all_symbols") else set()
    (symbol,) = resolve_values({param: 0}, symbols)
    preset = dict(getattr(result, "values", {}))
    if symbol in preset:
        raise ValueError(
            f"the result already has {symbol} = {preset[symbol]} substituted, so its theory "
            f"cannot vary with {symbol}; sweep the result before subs()."
        )
    fixed = resolve_values(dict(fixed_params or {}), symbols)
    fixed.pop(symbol, None)
    fixed = {**preset, **fixed}
    names = {str(k): float(as_number(k, v, "fixed_params: ")) for k, v in fixed.items()}
    exact, continuous = _theory_functions(result, what, set(names) | {str(symbol)})
    shape = _theory_shape(result, what)
    messages: list[str | None] = [None] * points.size
    problems = {}
    for k, v in enumerate(points):
        try:
            problems[k] = prepare(*pieces, {**fixed, symbol: float(v)})
        except UnstableError as exc:  # ρ ≥ 1: the result's conditions say which one fails
            messages[k] = str(_named(exc, result, problem))
    if what == "loss" and any(p.loss_model is None for p in problems.values()):
        raise ValueError(f"{pieces[1]!r} has no numeric loss to simulate; sweep cov instead.")

    # -- simulate ---------------------------------------------------------------------------
    kwargs = {
        "chains": chains,
        "steps": steps,
        "burn_in": burn_in,
        "rel_se": rel_se,
        "workers": 1,
        "progress": False,
    }
    children = np.random.SeedSequence(seed).spawn(points.size)
    if client is None and (workers <= 1 or len(problems) <= 1):
        outcomes = {
            k: _run_point(problem, kwargs, children[k], what) for k, problem in problems.items()
        }
    else:
        tasks = [
            (pieces, {**fixed, symbol: float(points[k])}, {**kwargs, "seed": children[k]}, what)
            for k in problems
        ]
        outcomes = dict(zip(problems, _map(tasks, workers, client)))

    estimate = np.full((points.size, *shape), np.nan)
    stderr = np.full((points.size, *shape), np.nan)
    for k, (est, se, message) in outcomes.items():
        if est is not None:
            estimate[k] = np.reshape(est, shape)
            stderr[k] = np.reshape(se, shape)
        messages[k] = message
    fine = _fine_grid(symbol, points, grid)

    def curve(readout, at):
        return None if readout is None else _evaluate(readout, names, str(symbol), at)

    return Sweep(
        param=symbol,
        what=what,
        values=points,
        theory=curve(exact, points),
        continuous=curve(continuous, points),
        estimate=estimate,
        stderr=stderr,
        grid=fine,
        theory_grid=curve(exact, fine),
        continuous_grid=curve(continuous, fine),
        messages=tuple(messages),
    )


def _fine_grid(symbol, points: np.ndarray, grid: int) -> np.ndarray:
    """``grid`` points spanning ``points`` for the curves; for an integer parameter (a batch
    size) the integers in that range (at most ``grid`` of them, evenly spread), since the
    theory is not defined between them."""
    low, high = points.min(), points.max()
    if not symbol.is_integer:
        return np.linspace(low, high, grid)
    return np.unique(np.round(np.linspace(math.ceil(low), math.floor(high), grid)))


def _theory_shape(result, what: str) -> tuple:
    value = getattr(result, what)
    return tuple(value.shape) if isinstance(value, sp.MatrixBase) else ()


def _map(tasks: list, workers: int, client) -> list:
    if client is not None:
        futures = client.map(_simulate_point, tasks, pure=False)
        return client.gather(futures)
    if workers <= 1 or len(tasks) == 1:
        return [_simulate_point(task) for task in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        return list(pool.map(_simulate_point, tasks))
