r"""The ``symsgd`` command: derive, verify and cross-check stationary covariances.

::

    symsgd derive OPTIMIZER [--noise additive|minibatch] [--dim D] [--weight-decay]
                            [--latex] [--json] [--lr-symbol S] [--batch-symbol S] [--env ENV]
    symsgd verify FORMULA --against OPTIMIZER [--noise ...] [--dim D] [--what cov|loss]
    symsgd check [--cases a,b] [--plot FILE.png] [--seed N] [--rel-se R]
    symsgd list

``OPTIMIZER`` is one of sgd, heavy-ball, nesterov, preconditioned, damped-newton,
natural-gradient, adam — or any catalogue case name (``symsgd list``), e.g.
``sgd-weight-decay``.  The problems are built by :func:`symsgd.catalogue.build`:

* ``--dim 1`` (default): the catalogue's eigen-mode problem ``Quadratic.commuting(h)`` with
  ``AdditiveNoise(c)``, printed as a matrix function of ``H`` and ``C``; with
  ``--noise minibatch`` online linear regression ``LinearRegression(a, σ²)`` with
  ``MinibatchNoise(S)``;
* ``--dim D > 1``: the explicit diagonal ``Quadratic.diagonal(D)`` with
  ``AdditiveNoise(diag(c_1, …, c_D))`` (preconditioner ``diag(p_1, …, p_D)``), or
  ``LinearRegression(diag(a_1, …, a_D), σ²)`` with minibatch noise (an explicit-matrix
  problem with state-dependent noise, capped at ``D = 3``).

Exit codes: 0 success (``verify``: equal; ``check``: every cross-check passed), 1 a negative
answer (``verify``: not equal; ``check``: a cross-check failed, or was inconclusive because the
simulation was too small for a verdict), 2 bad input (a one-line message on stderr naming the
option, never a traceback).

``derive --json`` writes ``cov``, ``conditions`` and ``loss`` with names ``sympy.sympify`` reads
back (``lambda`` → ``lr``, ``S`` → ``batch_size``, ``N`` → ``dataset_size``, ``gamma`` →
``weight_decay``) and a ``symbols`` table from each printed name to the library symbol's name and
assumptions (see :func:`describe`).

>>> main(["verify", "lr*c/(h*(2 - lr*h))", "--against", "sgd"])
equal: the hand formula agrees with the derived result (exact cancellation)
0
"""

from __future__ import annotations

import argparse
import json
import keyword
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import sympy as sp

from .catalogue import CATALOGUE, MAX_MINIBATCH_DIM, NOISES, OPTIMIZERS, Case, build
from .errors import UnstableError
from .latex import ENVIRONMENTS
from .noise import MinibatchNoise
from .symbols import lookup

__all__ = [
    "build_parser",
    "describe",
    "main",
    "plot_checks",
    "printed_names",
    "run_check",
    "show",
    "symbol_table",
]

#: text output shortens longer conditions / losses (``--json`` prints them whole)
_MAX_TEXT = 1500


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``symsgd derive: error: …``) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class InputError(ValueError):
    """Bad command-line input (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# derive
# ---------------------------------------------------------------------------------------------


def _readable(name: str) -> bool:
    """True when ``sympy.sympify(name)`` is the plain symbol ``name`` (not a Python keyword
    such as ``lambda``, nor a sympy object such as ``S``, ``N``, ``gamma`` or ``beta``)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        return False
    try:
        parsed = sp.sympify(name)
    except (sp.SympifyError, SyntaxError, TypeError, ValueError, AttributeError):
        return False
    return isinstance(parsed, sp.Symbol) and parsed.name == name


def printed_names(symbols) -> dict:
    """``{symbol: printed name}``: a name ``sympy.sympify`` reads back as a plain symbol — the
    symbol's own name when it can, else the library alias (``lambda`` → ``lr``, ``S`` →
    ``batch_size``, ``gamma`` → ``weight_decay``), else the name with ``_`` appended until it
    can.  Distinct symbols get distinct names.

    >>> import symsgd as ss
    >>> printed_names([ss.lr, ss.batch_size, sp.Symbol("c")])
    {S: 'batch_size', c: 'c', lambda: 'lr'}
    """
    out: dict = {}
    ordered = sorted(set(symbols), key=lambda x: (lookup(x) is None, x.name))
    taken = {x.name for x in ordered if _readable(x.name)}
    for symbol in ordered:
        name = symbol.name
        if not _readable(name):
            entry = lookup(symbol)
            alias = entry.alias if entry is not None else None
            name = alias if alias is not None and alias not in taken else name + "_"
            while not _readable(name) or name in taken:
                name += "_"
            taken.add(name)
        out[symbol] = name
    return dict(sorted(out.items(), key=lambda kv: kv[0].name))  # by the library name


def _assumptions(symbol) -> dict:
    declared = getattr(symbol, "_assumptions_orig", None)
    if declared is None:  # pragma: no cover - older sympy
        declared = {
            k: v
            for k, v in symbol.assumptions0.items()
            if k in ("positive", "nonnegative", "negative", "nonpositive", "integer", "real")
        }
    return {k: bool(v) for k, v in sorted(declared.items())}


def symbol_table(names: dict) -> dict:
    """``{printed name: {"symbol": library name, "assumptions": {...}}}`` for ``--json``:
    ``sympy.Symbol(entry["symbol"], **entry["assumptions"])`` is the library's symbol."""
    return {
        printed: {"symbol": symbol.name, "assumptions": _assumptions(symbol)}
        for symbol, printed in names.items()
    }


def _str(value: Any, names: dict | None = None) -> str:
    if names:
        renamed = {s: sp.Symbol(n, **_assumptions(s)) for s, n in names.items() if n != s.name}
        if renamed:
            value = value.xreplace(renamed)
    if isinstance(value, sp.MatrixBase):  # one line, as sympify reads it
        return f"Matrix({sp.sstr(value.tolist())})"
    return sp.sstr(value)


def describe(
    item: Case,
    result=None,
    *,
    lr_name: str | None = None,
    batch_name: str | None = None,
    env: str | None = None,
) -> dict:
    """The derivation of ``item`` as a dict of strings (what ``derive --json`` prints).

    Keys: ``case``, ``optimizer``, ``description``, ``problem``, ``noise`` (``"additive"`` or
    ``"minibatch"``), ``dim``, ``modes`` (eigen-mode problem), ``method``, ``cov``,
    ``conditions``, ``conditions_complete`` (False when ``conditions`` are only necessary: numeric
    parameters are then checked by the spectral radius), ``loss``, ``latex``, ``latex_loss``
    (strings), ``symbols`` and ``seconds``.

    ``cov``, ``conditions`` and ``loss`` are written with names ``sympy.sympify`` reads back
    (:func:`printed_names`: ``lambda`` is a Python keyword, ``S``, ``N`` and ``gamma`` are sympy
    objects, so they print as ``lr``, ``batch_size``, ``dataset_size``, ``weight_decay``);
    ``symbols`` maps every printed name to the library symbol's name and assumptions
    (:func:`symbol_table`), so ``sympify(info["cov"], locals={k: Symbol(v["symbol"],
    **v["assumptions"]) for k, v in info["symbols"].items()})`` is the library's expression.
    Matrices print on one line as ``Matrix([[…], […]])``.

    >>> from symsgd.catalogue import case
    >>> sorted(describe(case("sgd")))[:4]
    ['case', 'conditions', 'conditions_complete', 'cov']
    """
    start = time.perf_counter()
    result = item.derive() if result is None else result
    opts = {"lr": lr_name, "batch": batch_name, "env": env}
    symbols = set()
    for value in (result.cov, result.conditions, result.loss):
        if isinstance(value, sp.Basic) or isinstance(value, sp.MatrixBase):
            symbols |= value.free_symbols
    names = printed_names(symbols)
    out = {
        "case": item.name,
        "optimizer": type(item.optimizer).__name__,
        "description": item.description,
        "problem": f"{type(item.optimizer).__name__} on {item.landscape!r} with {item.noise!r}",
        "noise": "minibatch" if isinstance(item.noise, MinibatchNoise) else "additive",
        "dim": item.landscape.dim,
        "modes": bool(item.landscape.eigenmode),
        "method": result.method,
        "cov": _str(result.cov, names),
        "conditions": _str(result.conditions, names),
        "conditions_complete": bool(result.conditions_complete),
        "loss": _str(result.loss, names),
        "latex": result.latex(**opts),
        "latex_loss": result.latex(what="loss", **opts),
        "symbols": symbol_table(names),
    }
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


def show(info: dict, *, latex: bool = False, out: TextIO | None = None) -> None:
    """Print a :func:`describe` dict as text."""
    out = sys.stdout if out is None else out
    print(f"{info['case']}: {info['description']}", file=out)
    rows = [
        ("problem", info["problem"]),
        ("cov", info["cov"]),
        ("conditions", info["conditions"]),
        ("loss", info["loss"]),
    ]
    if not info.get("conditions_complete", True):
        rows[2] = (
            "conditions",
            f"{info['conditions']}  [necessary only: numeric values are checked by the "
            "spectral radius of the second-moment map]",
        )
    renamed = [
        f"{printed} = {entry['symbol']}"
        for printed, entry in info.get("symbols", {}).items()
        if printed != entry["symbol"]
    ]
    if renamed:
        rows.append(("symbols", ", ".join(renamed)))
    if latex:
        rows += [("latex", info["latex"]), ("latex loss", info["latex_loss"])]
    for key, value in rows:
        if len(value) > _MAX_TEXT and key in ("conditions", "loss"):
            value = f"{value[:_MAX_TEXT]} … ({len(value)} characters; `--json` prints all)"
        value = value.replace("\n", "\n" + " " * 13)
        print(f"  {key:<10} {value}", file=out)


def _derive(args) -> int:
    item = build(args.optimizer, args.noise, args.dim, weight_decay=args.weight_decay)
    info = describe(item, lr_name=args.lr_symbol, batch_name=args.batch_symbol, env=args.env)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        show(info, latex=args.latex)
    return 0


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------


def _verify(args) -> int:
    from ._verify import verify

    item = build(args.against, args.noise, args.dim, weight_decay=args.weight_decay)
    result = item.derive()
    target = (
        result
        if args.what == "cov"
        else SimpleNamespace(cov=getattr(result, args.what), conditions=result.conditions)
    )
    try:
        verdict = verify(args.formula, target)
    except (TypeError, ImportError) as exc:
        raise InputError(str(exc)) from None
    print(verdict)
    return 0 if verdict else 1


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------


def _select(names: str | None) -> list[Case]:
    if not names:
        return list(CATALOGUE)
    known = {c.name: c for c in CATALOGUE}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise InputError(
            f"--cases: unknown case(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            "catalogue: "
            f"{', '.join(known)}."
        )
    return [known[n] for n in wanted]


def _fmt(x: float) -> str:
    return f"{x:.5g}"


def run_check(
    cases: Sequence[Case],
    *,
    seed: int = 0,
    plot: str | None = None,
    out: TextIO | None = None,
    crosscheck: Callable | None = None,
    **simulation: Any,
) -> int:
    r"""Derive every case, cross-check it against a simulation of the real optimizer at the
    case's parameter point (:func:`symsgd.crosscheck`, every entry of ``cov``,
    ``velocity_cov`` and ``loss``, family-wise level 0.01), print one line per case and
    optionally write a figure (:func:`plot_checks`); return 0 if every check passed, else 1
    (a check failed, or was inconclusive because the simulation was too small for a verdict).

    The line shows the ``cov`` entry with the largest :math:`|z|`,
    :math:`z = (\text{theory} - \text{estimate}) / \text{s.e.}`; the verdict covers all
    entries.  ``simulation`` options (``rel_se``, ``chains``, ``steps``, ``level``) go to
    ``crosscheck``; every case uses the same ``seed``, so a case checked alone reproduces its
    line of the full run.  ``crosscheck`` replaces :func:`symsgd.crosscheck` (same signature,
    e.g. a stricter or a stand-in check).

    >>> import io
    >>> from symsgd.catalogue import case
    >>> run_check([case("sgd")], out=io.StringIO())
    0
    """
    out = sys.stdout if out is None else out
    if crosscheck is None:
        from ._crosscheck import crosscheck
    simulation.setdefault("progress", False)
    header = f"{'case':<22} {'theory cov':>12} {'simulated cov ± s.e.':>24} {'z':>7}  verdict"
    print(header, file=out)
    print("-" * len(header), file=out)
    reports = []
    for item in cases:
        start = time.perf_counter()
        report = crosscheck(item.derive(), item.params, seed=seed, **simulation)
        rows = [r for r in report.table if r.quantity == "cov"] or list(report.table)
        worst = max(rows, key=lambda r: abs(r.z))
        verdict = _verdict(report)
        sim = f"{_fmt(worst.estimate)} ± {_fmt(worst.stderr)}"
        print(
            f"{item.name:<22} {_fmt(worst.theory):>12} {sim:>24} {worst.z:>7.2f}  {verdict:<4}"
            f"  ({time.perf_counter() - start:.1f} s)",
            file=out,
        )
        reports.append((item.name, report))
    failed = [name for name, report in reports if _verdict(report) == "FAIL"]
    unsure = [name for name, report in reports if _verdict(report) == "inconclusive"]
    passed = len(reports) - len(failed) - len(unsure)
    print(
        f"{passed}/{len(reports)} cross-checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; inconclusive (simulation too small): {', '.join(unsure)}" if unsure else ""),
        file=out,
    )
    for name, report in reports:
        if not report.passed:
            print(f"\n{name}:\n{report}", file=out)
    if plot:
        plot_checks(reports).savefig(plot, dpi=120)
        print(f"wrote {plot}", file=out)
    return 1 if failed or unsure else 0


def _verdict(report) -> str:
    """``ok``, ``FAIL`` or ``inconclusive`` (a report without ``verdict`` is read from
    ``passed``)."""
    verdict = getattr(report, "verdict", None) or ("passed" if report.passed else "failed")
    return {"passed": "ok", "failed": "FAIL"}.get(verdict, "inconclusive")


def plot_checks(reports: Sequence[tuple[str, Any]]):
    """A matplotlib Figure of named cross-checks (no display needed): per case, the relative
    deviation (estimate − theory)/|theory| of every ``cov`` entry with ±2 s.e. bars, and the
    z-score of every compared entry against that case's family-wise critical value."""
    from matplotlib.figure import Figure
    from scipy.special import stdtrit

    n = len(reports)
    fig = Figure(figsize=(11, 0.42 * n + 1.9))
    left, right = fig.subplots(1, 2, sharey=True)
    markers = {"cov": "o", "velocity_cov": "s", "loss": "D"}
    for k, (_, report) in enumerate(reports):
        color = {"ok": "C0", "FAIL": "C3"}.get(_verdict(report), "C7")  # grey: inconclusive
        for row in report.table:
            if row.quantity == "cov":
                scale = abs(row.theory) or 1.0
                left.errorbar(
                    (row.estimate - row.theory) / scale,
                    k,
                    xerr=2 * row.stderr / scale,
                    fmt="o",
                    color=color,
                    capsize=3,
                )
            offset = {"cov": -0.2, "loss": 0.2}.get(row.quantity, 0.0)
            right.plot(row.z, k + offset, markers.get(row.quantity, "x"), color=color, mfc="none")
        df = max(1, report.simulation.chains - 1)
        crit = float(stdtrit(df, 1 - report.threshold / 2))
        for sign in (-1, 1):
            right.plot([sign * crit] * 2, [k - 0.4, k + 0.4], color="C3", lw=1)
    left.axvline(0.0, color="k", lw=0.8)
    left.set_xlabel("cov: (estimate − theory) / |theory|  (±2 s.e.)")
    left.set_yticks(range(n))
    left.set_yticklabels([name for name, _ in reports])
    left.invert_yaxis()
    right.axvline(0.0, color="k", lw=0.8)
    right.set_xlabel("z = (theory − estimate) / s.e.   (○ cov, □ velocity, ◇ loss; red: limit)")
    passed = sum(report.passed for _, report in reports)
    fig.suptitle(
        f"exact stationary theory vs simulation of the real optimizer: {passed}/{n} passed"
    )
    fig.tight_layout()
    return fig


def _check(args) -> int:
    cases = _select(args.cases)
    options = {k: v for k, v in (("rel_se", args.rel_se),) if v is not None}
    if args.plot and not args.plot.lower().endswith((".png", ".pdf", ".svg")):
        raise InputError(f"--plot needs a .png, .pdf or .svg file name; got {args.plot!r}.")
    if args.plot:
        folder = Path(args.plot).expanduser().resolve().parent
        if not folder.is_dir():
            raise InputError(f"--plot: the folder {str(folder)!r} does not exist.")
    return run_check(cases, seed=args.seed, plot=args.plot, **options)


def _list(args) -> int:
    for c in CATALOGUE:
        print(f"{c.name:<22} {c.description}")
    return 0


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _integer_at_least(low: int, what: str):
    """An argparse type: an integer ≥ ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _integer_at_least(1, "a positive integer")
_seed = _integer_at_least(0, "an integer ≥ 0")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _symbol_name(text: str) -> str:
    r"""A LaTeX symbol: a name (``eta``, ``η``, ``B``) or LaTeX such as ``\eta`` or
    ``\tilde{\eta}_0`` — non-empty, at most 64 characters, balanced braces, none of
    ``$ % # & ~`` or whitespace (they would break the printed LaTeX)."""
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            break
    bad = set(text) & set("$%#&~") or any(ch.isspace() for ch in text)
    if not text or len(text) > 64 or depth != 0 or bad:
        raise argparse.ArgumentTypeError(
            f"expected a LaTeX symbol such as eta, \\eta or B (non-empty, balanced braces, no "
            f"spaces or $%#&~), got {text!r}"
        )
    return text


def _problem_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--noise",
        choices=NOISES,
        default="additive",
        help="additive: constant covariance C; minibatch: online linear regression "
        "with minibatch gradients (default: additive)",
    )
    p.add_argument(
        "--dim",
        type=_positive_int,
        default=1,
        help="1: eigen-mode / scalar problem from the catalogue; D > 1: explicit "
        f"diagonal D×D problem (minibatch: D ≤ {MAX_MINIBATCH_DIM})",
    )
    p.add_argument("--weight-decay", action="store_true", help="add L2 weight decay γ")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``symsgd`` command."""
    parser = _Parser(
        prog="symsgd",
        description="Exact stationary covariances of SGD-family optimizers near a minimum.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="{derive,verify,check,list}"
    )

    p = sub.add_parser(
        "derive",
        help="derive the stationary covariance of an optimizer",
        description="Derive and print Var θ, the stability conditions and the expected loss.",
    )
    p.add_argument(
        "optimizer",
        metavar="OPTIMIZER",
        help=f"one of {', '.join(OPTIMIZERS)}, or a catalogue case name",
    )
    _problem_options(p)
    p.add_argument("--latex", action="store_true", help="also print LaTeX")
    p.add_argument("--json", action="store_true", help="print a JSON object of strings")
    p.add_argument(
        "--lr-symbol",
        type=_symbol_name,
        default=None,
        metavar="SYMBOL",
        help=r"LaTeX learning-rate symbol (default \lambda; e.g. eta)",
    )
    p.add_argument(
        "--batch-symbol",
        type=_symbol_name,
        default=None,
        metavar="SYMBOL",
        help="LaTeX batch-size symbol (default S; e.g. B)",
    )
    p.add_argument(
        "--env",
        default=None,
        choices=ENVIRONMENTS,
        help="wrap the LaTeX in this environment",
    )
    p.set_defaults(func=_derive)

    p = sub.add_parser(
        "verify",
        help="check a hand-derived formula against a derivation",
        description="Exit 0 if FORMULA equals the derived result, 1 if not, "
        "2 if it cannot be read.",
    )
    p.add_argument(
        "formula",
        metavar="FORMULA",
        help="plain ('lr*c/(h*(2 - lr*h))') or LaTeX ('\\frac{\\eta c}{h(2-\\eta h)}')",
    )
    p.add_argument(
        "--against",
        required=True,
        metavar="OPTIMIZER",
        help=f"one of {', '.join(OPTIMIZERS)}, or a catalogue case name",
    )
    _problem_options(p)
    p.add_argument(
        "--what",
        choices=("cov", "loss", "velocity_cov"),
        default="cov",
        help="which readout to compare with (default: cov)",
    )
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "check",
        help="cross-check the catalogue against simulation",
        description="Derive each catalogue case and compare it with a simulation "
        "of the real optimizer; exit 1 if any check fails.",
    )
    p.add_argument(
        "--cases",
        default=None,
        metavar="A,B",
        help="comma-separated catalogue case names (default: all; see `symsgd list`)",
    )
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write a figure")
    p.add_argument("--seed", type=_seed, default=0, help="simulation seed ≥ 0 (default 0)")
    p.add_argument(
        "--rel-se",
        type=_fraction,
        default=None,
        metavar="R",
        help="target relative standard error of the simulation, in (0, 1)",
    )
    p.set_defaults(func=_check)

    p = sub.add_parser("list", help="list the catalogue", description="List the catalogue.")
    p.set_defaults(func=_list)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``symsgd`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except (InputError, UnstableError, ValueError) as exc:
        print(f"symsgd {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"symsgd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
