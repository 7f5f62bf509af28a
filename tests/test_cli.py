"""Tests of the ``symsgd`` command: the real entry point in a subprocess for exit codes and
streams, in-process ``main([...])`` for the many problem combinations."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import sympy as sp

import symsgd as ss
import symsgd.cli as cli_module
from symsgd import verify
from symsgd.catalogue import CATALOGUE, MAX_MINIBATCH_DIM, OPTIMIZERS, build, case
from symsgd.cli import main, run_check


def symsgd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symsgd.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("symsgd"), lines
    for word in words:
        assert word in lines[0], lines


# --------------------------------------------------------------------------------------------
# through the real entry point
# --------------------------------------------------------------------------------------------


def test_derive_prints_cov_conditions_loss_and_latex():
    proc = symsgd("derive", "heavy-ball", "--latex")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("heavy-ball:")
    fields = {line.split()[0] for line in lines[1:]}
    assert {"problem", "cov", "conditions", "loss", "latex"} <= fields
    latex = next(line for line in lines if line.strip().startswith("latex "))
    assert r"{\left[H \left(2 \left(1 + \mu\right) I - \lambda H\right)\right]}^{-1} C" in latex


def test_derive_json_is_an_object_of_strings_that_verify():
    proc = symsgd("derive", "nesterov", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("optimizer", "cov", "latex", "conditions", "loss"):
        assert isinstance(info[key], str), key
    assert info["optimizer"] == "Nesterov" and info["case"] == "nesterov"
    result = case("nesterov").derive()
    assert verify(info["cov"], result)
    assert verify(info["loss"], SimpleNamespace(cov=result.loss, conditions=result.conditions))
    assert _read_back(info, "conditions") == result.conditions


def test_verify_exit_codes():
    right = symsgd("verify", r"\frac{\eta c}{h(2-\eta h)}", "--against", "sgd")
    assert right.returncode == 0, right.stderr
    assert right.stdout.startswith("equal")
    wrong = symsgd("verify", "lr*c/(2*h)", "--against", "sgd")  # the continuous-time answer
    assert wrong.returncode == 1, wrong.stderr
    assert wrong.stdout.startswith("NOT equal")


def test_verify_refuses_code(tmp_path):
    target = tmp_path / "x"
    proc = symsgd("verify", f"__import__('os').system('touch {target}')", "--against", "sgd")
    assert_one_line_error(proc, "could not parse")
    assert not target.exists()


def test_unknown_optimizer_is_one_line_on_stderr():
    assert_one_line_error(symsgd("derive", "rmsprop"), "unknown optimizer 'rmsprop'", "sgd")
    assert_one_line_error(symsgd("verify", "x", "--against", "rmsprop"), "unknown optimizer")


def test_usage_errors_are_one_line_on_stderr(capsys):
    assert_one_line_error(symsgd("derive"), "OPTIMIZER")  # argparse's own error, via the shell
    bad = [
        (["derive", "sgd", "--noise", "pink"], "--noise"),
        (["frobnicate"], "invalid choice"),
        (["derive", "sgd", "--dim", "0"], "positive integer"),
        (
            ["derive", "sgd", "--noise", "minibatch", "--dim", str(MAX_MINIBATCH_DIM + 1)],
            f"capped at {MAX_MINIBATCH_DIM}",
        ),
        (["check", "--plot", "figure.txt"], ".png"),
    ]
    for argv, words in bad:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "" and "Traceback" not in captured.err
        assert len(captured.err.strip().splitlines()) == 1 and words in captured.err, captured


def test_check_two_cases_with_a_plot(tmp_path):
    figure = tmp_path / "check.png"
    proc = symsgd("check", "--cases", "sgd,heavy-ball", "--plot", str(figure), "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["case", "theory", "cov"]
    rows = [line for line in lines if line.split()[:1] in (["sgd"], ["heavy-ball"])]
    assert len(rows) == 2 and all(" ok " in row for row in rows)
    assert "2/2 cross-checks passed" in proc.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# in process
# --------------------------------------------------------------------------------------------


# Adam's explicit problems spend 5-20 s deriving their stability conditions: not here
COMBINATIONS = [
    (name, options)
    for options in ([], ["--dim", "2"], ["--noise", "minibatch"], ["--weight-decay"])
    for name in OPTIMIZERS
    if not (name == "adam" and ("--dim" in options or "minibatch" in options))
]


@pytest.mark.parametrize(
    ("name", "options"), COMBINATIONS, ids=[" ".join([n, *o]) for n, o in COMBINATIONS]
)
def test_every_optimizer_derives(name, options, capsys):
    assert main(["derive", name, "--json", *options]) == 0
    info = json.loads(capsys.readouterr().out)
    noise = "minibatch" if "minibatch" in options else "additive"
    item = build(
        name, noise, dim=2 if "--dim" in options else 1, weight_decay="--weight-decay" in options
    )
    assert info["case"] == item.name
    assert info["cov"] and info["latex"] and info["conditions"]


def test_catalogue_names_are_accepted(capsys):
    for item in CATALOGUE:
        assert main(["derive", item.name]) == 0
        assert capsys.readouterr().out.startswith(f"{item.name}:")
    assert main(["derive", "sgd-minibatch", "--dim", "2"]) == 2
    assert "catalogue case" in capsys.readouterr().err


def test_problems_match_the_catalogue():
    assert build("sgd") is case("sgd")
    assert build("heavy-ball", "minibatch") is case("heavy-ball-minibatch")
    assert build("sgd", weight_decay=True) is case("sgd-weight-decay")
    built = build("preconditioned", dim=3)
    assert built.optimizer.P == sp.diag(*sp.symbols("p_1:4", positive=True))
    assert built.params == {}
    assert built.landscape == ss.Quadratic.diagonal(3)
    decayed = build("nesterov", "minibatch", 2, weight_decay=True)
    assert decayed.name == "nesterov-minibatch-weight-decay-d2"
    assert decayed.optimizer.weight_decay == ss.weight_decay
    assert isinstance(decayed.noise, ss.MinibatchNoise)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("sgd", "pink"), {}, r"unknown noise 'pink'; choose one of additive, minibatch"),
        (("sgd", "additive", 0), {}, r"--dim must be a positive integer; got 0"),
        (("sgd", "additive", 1.5), {}, r"--dim must be a positive integer; got 1.5"),
        (("rmsprop",), {}, r"unknown optimizer 'rmsprop'; choose one of sgd, heavy-ball"),
        (("sgd-minibatch", "minibatch"), {}, r"catalogue case with its own noise"),
        (("sgd-minibatch",), {"weight_decay": True}, r"catalogue case with its own noise"),
        (("sgd", "minibatch", MAX_MINIBATCH_DIM + 1), {}, r"capped at 3 for minibatch noise"),
        (("sgd", "additive", 9), {}, r"--dim is capped at 8; got 9"),
    ],
)
def test_build_refuses_bad_input_with_a_message_naming_what_is_allowed(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(*args, **kwargs)


def test_derive_latex_notation_and_environment(capsys):
    assert (
        main(
            [
                "derive",
                "sgd-minibatch",
                "--latex",
                "--lr-symbol",
                "eta",
                "--batch-symbol",
                "B",
                "--env",
                "align",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert r"\Sigma &= \frac{\eta \sigma^{2}}{2 B - \eta a \left(2 + B\right)}" in out
    assert r"\begin{align}" in out and r"\end{align}" in out


def test_explicit_minibatch_problem_prints_a_where_block(capsys):
    assert main(["derive", "sgd", "--noise", "minibatch", "--dim", "2", "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\frac{\lambda \sigma^{2}}{D} \begin{pmatrix}" in out
    assert r"\text{where } D = " in out


def test_verify_other_readouts(capsys):
    assert main(["verify", "lr c/(2(2 - lr h))", "--against", "sgd", "--what", "loss"]) == 0
    assert main(["verify", "lr c/(2(2 - lr h))", "--against", "sgd"]) == 1
    assert main(["verify", r"\frac{", "--against", "sgd"]) == 2
    assert "could not parse" in capsys.readouterr().err


def test_check_fails_when_a_crosscheck_fails(capsys):
    """Exit code 1 and the failing report printed (a stand-in crosscheck that always fails)."""
    real = ss.crosscheck

    def failing(result, params, **kwargs):
        report = real(result, params, **kwargs)
        return SimpleNamespace(
            passed=False,
            table=report.table,
            simulation=report.simulation,
            threshold=report.threshold,
            __str__=lambda: "stand-in failure",
        )

    assert run_check([case("sgd")], seed=0, crosscheck=failing) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0/1 cross-checks passed; failed: sgd" in out


def test_check_rejects_unknown_cases(capsys):
    assert main(["check", "--cases", "sgd,nope"]) == 2
    assert "--cases: unknown case(s) 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# --json reads back with sympy.sympify
# --------------------------------------------------------------------------------------------


def _read_back(info: dict, key: str):
    """``info[key]`` parsed by plain ``sympy.sympify`` (no locals), then its printed names
    mapped to the library symbols through ``info["symbols"]``."""
    parsed = sp.sympify(info[key])
    table = {
        sp.Symbol(printed): sp.Symbol(entry["symbol"], **entry["assumptions"])
        for printed, entry in info["symbols"].items()
    }
    assert {str(s) for s in parsed.free_symbols} <= set(info["symbols"]), key
    return parsed.xreplace(table)


def _same(parsed, expected) -> bool:
    """Equal by cancelling the difference (entrywise for matrices; relation by relation, with
    the same direction and strictness, for conditions)."""
    if isinstance(expected, sp.MatrixBase):
        return parsed.shape == expected.shape and all(
            sp.cancel(x - y) == 0 for x, y in zip(parsed, expected)
        )
    if isinstance(expected, sp.logic.boolalg.Boolean) and not isinstance(expected, sp.Expr):
        mine, theirs = sp.And.make_args(parsed), sp.And.make_args(expected)
        key = str  # the printed order is not guaranteed: pair the relations by margin
        margins = sorted(((type(r).__name__, sp.cancel(r.gts - r.lts)) for r in mine), key=key)
        wanted = sorted(((type(r).__name__, sp.cancel(r.gts - r.lts)) for r in theirs), key=key)
        return len(margins) == len(wanted) and all(
            a[0] == b[0] and sp.cancel(a[1] - b[1]) == 0 for a, b in zip(margins, wanted)
        )
    return sp.cancel(parsed - expected) == 0


JSON_PROBLEMS = [(c.name, "additive", 1, False) for c in CATALOGUE] + [
    ("sgd", "additive", 2, False),
    ("preconditioned", "additive", 2, False),
    ("sgd", "minibatch", 2, False),
    ("heavy-ball", "minibatch", 1, True),  # gamma and S: both sympy names
]


@pytest.mark.parametrize(
    ("name", "noise", "dim", "decay"),
    JSON_PROBLEMS,
    ids=[f"{n}-{z}-d{d}{'-decay' if w else ''}" for n, z, d, w in JSON_PROBLEMS],
)
def test_json_expressions_sympify_back_to_the_library_result(name, noise, dim, decay, capsys):
    argv = ["derive", name, "--json"] + (["--noise", noise] if noise != "additive" else [])
    argv += (["--dim", str(dim)] if dim > 1 else []) + (["--weight-decay"] if decay else [])
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    result = build(name, noise, dim, weight_decay=decay).derive()
    for key, expected in (
        ("cov", result.cov),
        ("loss", result.loss),
        ("conditions", result.conditions),
    ):
        assert _same(_read_back(info, key), expected), (key, info[key])
    # every printed name is itself read by sympify as a plain symbol of that name
    for printed in info["symbols"]:
        assert sp.sympify(printed) == sp.Symbol(printed)


def test_json_renames_only_names_sympify_cannot_read(capsys):
    assert main(["derive", "heavy-ball", "--noise", "minibatch", "--weight-decay", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    renamed = {k: v["symbol"] for k, v in info["symbols"].items() if k != v["symbol"]}
    assert renamed == {"lr": "lambda", "batch_size": "S", "weight_decay": "gamma"}
    assert info["symbols"]["batch_size"]["assumptions"] == {"integer": True, "positive": True}
    with pytest.raises(sp.SympifyError):  # why: the library's own names do not sympify
        sp.sympify("c*lambda")


def test_printed_names_avoid_collisions():
    from symsgd.cli import printed_names

    lam, S = ss.lr, ss.batch_size
    user_lr = sp.Symbol("lr")  # a user symbol already called lr
    names = printed_names([lam, user_lr, S, sp.Symbol("gamma"), sp.Symbol("N")])
    assert len(set(names.values())) == 5
    assert names[user_lr] == "lr" and names[lam] != "lr"
    for printed in names.values():
        assert sp.sympify(printed) == sp.Symbol(printed)


# --------------------------------------------------------------------------------------------
# bad option values: one line naming the option, exit code 2
# --------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    (["check", "--seed", "-1"], "--seed"),
    (["check", "--seed", "x"], "--seed"),
    (["check", "--rel-se", "0"], "--rel-se"),
    (["check", "--rel-se", "1.5"], "--rel-se"),
    (["check", "--rel-se", "nan"], "--rel-se"),
    (["check", "--rel-se", "fast"], "--rel-se"),
    (["check", "--cases", ","], "--cases"),
    (["check", "--plot", "no/such/folder/figure.png"], "--plot"),
    (["derive", "sgd", "--dim", "2.5"], "--dim"),
    (["derive", "sgd", "--dim", "-3"], "--dim"),
    (["derive", "sgd", "--env", "eqnarray"], "--env"),
    (["derive", "sgd", "--lr-symbol", "{eta"], "--lr-symbol"),
    (["derive", "sgd", "--lr-symbol", ""], "--lr-symbol"),
    (["derive", "sgd", "--batch-symbol", "B $x$"], "--batch-symbol"),
    (["verify", "x", "--against", "sgd", "--what", "mean"], "--what"),
    (["verify", "x"], "--against"),
]


@pytest.mark.parametrize(("argv", "option"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_values_are_one_line_naming_the_option(argv, option, capsys, monkeypatch):
    monkeypatch.setattr(cli_module, "run_check", _no_check)
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symsgd") and option in lines[0], captured


def _no_check(*args, **kwargs):
    raise AssertionError("bad options must be refused before any check runs")


def test_bad_option_value_through_the_real_entry_point():
    assert_one_line_error(symsgd("check", "--rel-se", "-0.1"), "--rel-se", "(0, 1)")


def test_good_latex_symbols_are_accepted(capsys):
    assert main(["derive", "sgd", "--latex", "--lr-symbol", r"\tilde{\eta}_0"]) == 0
    assert r"\tilde{\eta}_0" in capsys.readouterr().out


def test_check_too_small_is_inconclusive_not_ok(capsys):
    """A simulation below the stated minimum is neither ok nor FAIL, and the exit code is 1."""
    assert run_check([case("sgd")], seed=0, chains=2, steps=10) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("sgd "))
    assert "inconclusive" in row and " ok " not in row
    assert "0/1 cross-checks passed; inconclusive (simulation too small): sgd" in out
    assert "at least 30 chains" in out


def test_list(capsys):
    assert main(["list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(CATALOGUE)


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "derive" in capsys.readouterr().out
