"""Bad input at every public entry point (issue 9, section 6).

The table ``TABLE`` lists one bad input per row: a callable, the exception type it must raise and
a regular expression the message must contain — in every row the *name of the offending
parameter* (``lr``, ``H``, ``batch_size``, ``chains``, ``--dim``, ...), so the user learns what to
fix.  Rows cover wrong types and shapes, asymmetric/indefinite/singular matrices, values outside
a symbol's domain (λ ≤ 0, negative variances, fractional or non-positive batch sizes, S > N
without replacement), NaN/inf/complex, user symbols named like library symbols, hostile and huge
formula strings for ``verify`` (each refused within a second) and the ``symsgd`` command (exit
code 2 with a one-line message, never a traceback).

The tests below the table check what a table cannot: ``unstable="nan"`` gives NaN (numpy and
mpmath), a simulation too small for a verdict is ``inconclusive`` (never passed), a short burn-in
warns, and numbers that do come back are never negative variances.  Problems are tiny: the whole
file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import subprocess
import sys
import time
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp

import symsgd as ss
from symsgd.cli import main as cli_main

h, c = sp.symbols("h c", positive=True)
a = sp.Symbol("a", positive=True)
q = sp.Symbol("q", real=True)
R = sp.Rational
I2 = [[1, 0], [0, 1]]
GOOD = {"lr": 0.5, h: 1.0, c: 1.0}


# -- small problems, derived once (each well under a second) --------------------------------
@functools.cache
def sgd():
    """SGD on a scalar quadratic with additive noise: Var θ = λc/(h(2 − λh))."""
    return ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c))


@functools.cache
def modes():
    """The same problem in eigen-mode form."""
    return ss.stationary(ss.SGD(ss.lr), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))


@functools.cache
def explicit():
    """An explicit 2×2 problem (numeric matrices, symbolic λ)."""
    return ss.stationary(ss.SGD(ss.lr), ss.Quadratic([[2, 1], [1, 2]]), ss.AdditiveNoise(I2))


@functools.cache
def data_landscape():
    return ss.LinearRegression.from_data([[1, 0], [0, 1], [1, 1]], [1, 2, 4])


@functools.cache
def without_replacement():
    """Finite data (N = 3), symbolic batch size S, sampled without replacement."""
    noise = ss.MinibatchNoise(ss.batch_size, dataset_size=3, replacement=False)
    return ss.stationary(ss.SGD(ss.lr), data_landscape(), noise)


@functools.cache
def real_curvature():
    """A curvature symbol that is only declared real: q ≤ 0 is a domain error, not λ's fault."""
    return ss.stationary(ss.SGD(ss.lr), ss.Quadratic(q), ss.AdditiveNoise(1))


def _pieces():
    return ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c)


def simulate(params=GOOD, pieces=None, **kwargs):
    kwargs.setdefault("chains", 64)
    kwargs.setdefault("steps", 20)
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("progress", False)
    return ss.simulate(*(pieces or _pieces()), params, **kwargs)


def sweep(result=None, param="lr", values=(0.1, 0.2), fixed=None, **kwargs):
    kwargs.setdefault("chains", 64)
    kwargs.setdefault("steps", 20)
    kwargs.setdefault("workers", 1)
    fixed = {h: 1.0, c: 1.0} if fixed is None else fixed
    return ss.sweep(result or sgd(), param, values, fixed, **kwargs)


def adam(params=None, **kwargs):
    optimizer = ss.Adam(ss.lr, ss.beta1, eps=0)
    params = {"lr": 1, "beta1": 0, h: 1, c: 1, **(params or {})}
    return ss.adam_self_consistent(
        optimizer, ss.Quadratic(h), ss.AdditiveNoise(c), params, **kwargs
    )


class CliError(Exception):
    """A non-zero exit of ``symsgd`` (its code and stderr are the message)."""


def cli(*argv: str):
    """``symsgd ARGV`` in this process; a non-zero exit raises :class:`CliError`."""

    def call():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(list(argv))
        if code != 0:
            raise CliError(f"exit {code}: {err.getvalue()}")
        return code

    return call


# A message that names the cause must not blame the learning rate.
NOT_LR_ADVICE = r"(?si)^(?!.*lower the learning rate)"

NEST = 5000
HUGE = 100_000

# fmt: off
TABLE = [
    # -- landscapes: types, shapes, symmetry, definiteness, NaN/inf/complex ---------------------
    pytest.param(lambda: ss.Quadratic([[1, 2, 3], [4, 5, 6]]), ValueError, r"\bH\b.*square",
                 id="Quadratic-nonsquare"),
    pytest.param(lambda: ss.Quadratic([[1, 2], [0, 1]]), ValueError, r"\bH\b.*symmetric",
                 id="Quadratic-asymmetric"),
    pytest.param(lambda: ss.Quadratic(np.ones((2, 2, 2))), ValueError, r"\bH\b",
                 id="Quadratic-3d-array"),
    pytest.param(lambda: ss.Quadratic(None), TypeError, r"\bH\b", id="Quadratic-None"),
    pytest.param(lambda: ss.Quadratic(float("nan")), ValueError, r"\bH\b.*(finite|NaN)",
                 id="Quadratic-nan"),
    pytest.param(lambda: ss.Quadratic(np.inf), ValueError, r"\bH\b.*finite", id="Quadratic-inf"),
    pytest.param(lambda: ss.Quadratic(1 + 2j), ValueError, r"\bH\b.*real", id="Quadratic-complex"),
    pytest.param(lambda: ss.Quadratic.commuting(2), ValueError, r"\bh\b.*Symbol",
                 id="Quadratic.commuting-number"),
    pytest.param(lambda: ss.Quadratic.diagonal(0), ValueError, r"\bd\b", id="Quadratic.diagonal-0"),
    pytest.param(lambda: ss.Quadratic.diagonal(1.5), ValueError, r"\bd\b",
                 id="Quadratic.diagonal-fraction"),
    pytest.param(lambda: ss.LinearRegression([[1, 0], [0, -2]], 1), ValueError,
                 r"\bA\b.*positive semi-definite", id="LinearRegression-indefinite"),
    pytest.param(lambda: ss.LinearRegression(a, label_variance=-1), ValueError,
                 r"label_variance.*≥ 0", id="LinearRegression-negative-variance"),
    pytest.param(lambda: ss.LinearRegression(a, label_variance=float("nan")), ValueError,
                 r"label_variance.*finite", id="LinearRegression-nan-variance"),
    pytest.param(lambda: ss.LinearRegression(a, label_variance=1j), ValueError,
                 r"label_variance.*real", id="LinearRegression-complex-variance"),
    pytest.param(lambda: ss.LinearRegression(a, label_variance=1, label_noise=1), TypeError,
                 r"label_variance", id="LinearRegression-variance-twice"),
    pytest.param(lambda: ss.LinearRegression(sp.diag(1, 2), 1, theta_star=[1, 2, 3]), ValueError,
                 r"theta_star", id="LinearRegression-theta_star-shape"),
    pytest.param(lambda: ss.LinearRegression.commuting(3, 1), ValueError, r"\ba\b.*Symbol",
                 id="LinearRegression.commuting-number"),
    pytest.param(lambda: ss.LinearRegression.from_data([[a, a], [2 * a, 2 * a]], [1, 2]),
                 ValueError, r"XᵀX is singular", id="from_data-singular"),
    pytest.param(lambda: ss.LinearRegression.from_data(I2, [1, 2, 3]), ValueError,
                 r"\by\b must have one entry per row", id="from_data-y-length"),
    pytest.param(lambda: ss.LinearRegression.from_data(np.array([[1, np.nan], [0, 1]]), [1, 2]),
                 ValueError, r"\bX\b.*(finite|NaN)", id="from_data-nan"),
    pytest.param(lambda: ss.LinearRegression.from_data([[1, 0], [0]], [1, 2]), ValueError,
                 r"\bX\b", id="from_data-ragged"),
    # -- noise models ----------------------------------------------------------------------------
    pytest.param(lambda: ss.AdditiveNoise(-1), ValueError, r"\bC\b.*positive semi-definite",
                 id="AdditiveNoise-negative"),
    pytest.param(lambda: ss.AdditiveNoise([[1, 2], [2, 1]]), ValueError,
                 r"\bC\b.*positive semi-definite", id="AdditiveNoise-indefinite"),
    pytest.param(lambda: ss.AdditiveNoise(np.array([[1.0, 0.5], [0.0, 1.0]])), ValueError,
                 r"\bC\b.*symmetric", id="AdditiveNoise-asymmetric"),
    pytest.param(lambda: ss.AdditiveNoise([[1, 2]]), ValueError, r"\bC\b.*square",
                 id="AdditiveNoise-nonsquare"),
    pytest.param(lambda: ss.AdditiveNoise(np.nan), ValueError, r"\bC\b.*(finite|NaN)",
                 id="AdditiveNoise-nan"),
    pytest.param(lambda: ss.AdditiveNoise(sp.I), ValueError, r"\bC\b.*real",
                 id="AdditiveNoise-complex"),
    pytest.param(lambda: ss.MinibatchNoise(0), ValueError, r"batch_size.*integer ≥ 1",
                 id="MinibatchNoise-zero"),
    pytest.param(lambda: ss.MinibatchNoise(2.5), ValueError, r"batch_size.*integer",
                 id="MinibatchNoise-fraction"),
    pytest.param(lambda: ss.MinibatchNoise(-3), ValueError, r"batch_size", id="MinibatchNoise-neg"),
    pytest.param(lambda: ss.MinibatchNoise(float("nan")), ValueError, r"batch_size",
                 id="MinibatchNoise-nan"),
    pytest.param(lambda: ss.MinibatchNoise("two"), (TypeError, ValueError), r"batch_size",
                 id="MinibatchNoise-string"),
    pytest.param(lambda: ss.MinibatchNoise(2, dataset_size=2.5), ValueError, r"dataset_size",
                 id="MinibatchNoise-N-fraction"),
    pytest.param(lambda: ss.MinibatchNoise(5, dataset_size=3, replacement=False), ValueError,
                 r"without replacement.*S = 5.*N = 3", id="MinibatchNoise-S>N"),
    # -- optimizers ------------------------------------------------------------------------------
    pytest.param(lambda: ss.SGD(-0.1), ValueError, r"\blr\b.*positive", id="SGD-lr-negative"),
    pytest.param(lambda: ss.SGD(0), ValueError, r"\blr\b.*positive", id="SGD-lr-zero"),
    pytest.param(lambda: ss.SGD(float("nan")), ValueError, r"\blr\b", id="SGD-lr-nan"),
    pytest.param(lambda: ss.SGD(float("inf")), ValueError, r"\blr\b", id="SGD-lr-inf"),
    pytest.param(lambda: ss.SGD(1j), ValueError, r"\blr\b", id="SGD-lr-complex"),
    pytest.param(lambda: ss.SGD(ss.lr, weight_decay=-1), ValueError, r"weight_decay",
                 id="SGD-weight_decay-negative"),
    pytest.param(lambda: ss.HeavyBall(ss.lr, 1), ValueError, r"momentum.*μ < 1",
                 id="HeavyBall-momentum-one"),
    pytest.param(lambda: ss.HeavyBall(ss.lr, -0.1), ValueError, r"momentum",
                 id="HeavyBall-momentum-negative"),
    pytest.param(lambda: ss.HeavyBall(ss.lr, float("nan")), ValueError, r"momentum",
                 id="HeavyBall-momentum-nan"),
    pytest.param(lambda: ss.Nesterov(ss.lr, 2), ValueError, r"momentum", id="Nesterov-momentum-2"),
    pytest.param(lambda: ss.Adam(ss.lr, 1), ValueError, r"beta1", id="Adam-beta1-one"),
    pytest.param(lambda: ss.Adam(ss.lr, 0.9, 2), ValueError, r"beta2", id="Adam-beta2-two"),
    pytest.param(lambda: ss.Adam(ss.lr, 0.9, eps=-1), ValueError, r"\beps\b",
                 id="Adam-eps-negative"),
    pytest.param(lambda: ss.Preconditioned(ss.lr, [[1, 0], [0, -1]]), ValueError,
                 r"\bP\b.*positive definite", id="Preconditioned-indefinite"),
    pytest.param(lambda: ss.Preconditioned(ss.lr, [[1, 1], [1, 1]]), ValueError,
                 r"\bP\b.*positive definite", id="Preconditioned-singular"),
    pytest.param(lambda: ss.Preconditioned(ss.lr, [[1, 1], [0, 1]]), ValueError,
                 r"\bP\b.*symmetric", id="Preconditioned-asymmetric"),
    pytest.param(lambda: ss.NaturalGradient(ss.lr, fisher=[[1, 0], [0, -1]]), ValueError,
                 r"fisher", id="NaturalGradient-fisher-indefinite"),
    # -- stationary() ----------------------------------------------------------------------------
    pytest.param(lambda: ss.stationary("sgd", ss.Quadratic(h), ss.AdditiveNoise(c)), TypeError,
                 r"optimizer", id="stationary-optimizer-type"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), h, ss.AdditiveNoise(c)), TypeError,
                 r"landscape", id="stationary-landscape-type"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), c), TypeError, r"noise",
                 id="stationary-noise-type"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c),
                                       method="magic"), ValueError, r"method",
                 id="stationary-method"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(I2), ss.AdditiveNoise(c)),
                 ValueError, r"\bC\b has shape", id="stationary-shape-mismatch"),
    pytest.param(lambda: ss.stationary(ss.Preconditioned(ss.lr, I2), ss.Quadratic(h),
                                       ss.AdditiveNoise(c)), ValueError, r"\bP\b has shape",
                 id="stationary-P-shape"),
    pytest.param(lambda: ss.stationary(ss.DampedNewton(ss.lr), ss.Quadratic([[1, 1], [1, 1]]),
                                       ss.AdditiveNoise(I2)), ValueError, r"singular",
                 id="stationary-DampedNewton-singular-H"),
    pytest.param(lambda: ss.stationary(ss.NaturalGradient(ss.lr, fisher=[[1, 1], [1, 1]]),
                                       ss.Quadratic(I2), ss.AdditiveNoise(I2)), ValueError,
                 r"Fisher F is singular", id="stationary-fisher-singular"),
    pytest.param(lambda: ss.stationary(ss.Adam(ss.lr, 0, eps=1, v=-1), ss.Quadratic(h),
                                       ss.AdditiveNoise(c)), ValueError, r"\bv_1\b.*≥ 0",
                 id="stationary-Adam-v-negative"),
    pytest.param(lambda: ss.stationary(ss.Adam(ss.lr, 0, eps=1, v=[1, 2, 3]), ss.Quadratic(I2),
                                       ss.AdditiveNoise(I2)), ValueError, r"\bv\b has 3 entries",
                 id="stationary-Adam-v-length"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.MinibatchNoise(2)),
                 ValueError, r"MinibatchNoise.*Quadratic", id="stationary-minibatch-on-quadratic"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), data_landscape(),
                                       ss.MinibatchNoise(2, dataset_size=7)), ValueError,
                 r"dataset_size=7", id="stationary-dataset_size-mismatch"),
    pytest.param(lambda: ss.stationary(ss.SGD(3), ss.Quadratic(1), ss.AdditiveNoise(1)),
                 ss.UnstableError, r"spectral radius.*lower the learning rate",
                 id="stationary-unstable-lr"),
    pytest.param(lambda: ss.stationary(ss.SGD(sp.Rational(1, 10)), ss.Quadratic(sp.diag(1, 0)),
                                       ss.AdditiveNoise(I2)), ss.UnstableError,
                 r"ρ = 1 ≥ 1\. The Hessian is singular.*whatever the learning rate",
                 id="stationary-singular-H-exact"),
    pytest.param(lambda: ss.stationary(ss.SGD(0.1), ss.Quadratic(np.diag([1.0, 0.0])),
                                       ss.AdditiveNoise(I2)), ss.UnstableError,
                 r"ρ = 1 ≥ 1\. The Hessian is singular", id="stationary-singular-H-float"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(sp.diag(1, 0)),
                                       ss.AdditiveNoise(I2)), ss.UnstableError,
                 r"can never hold\. The Hessian is singular", id="stationary-singular-H-symbolic"),
    pytest.param(lambda: ss.stationary(ss.SGD(R(1, 10)), ss.Quadratic(-1), ss.AdditiveNoise(1)),
                 ValueError, NOT_LR_ADVICE + r"(?=.*(\bH\b|curvature))",
                 id="stationary-negative-curvature-advice"),
    # user symbols that share a library symbol's name are refused, naming what to rename
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr, weight_decay=sp.Symbol("gamma")),
                                       ss.Quadratic(h), ss.AdditiveNoise(c)), ValueError,
                 r"'gamma'.*ss\.weight_decay", id="clash-gamma"),
    pytest.param(lambda: ss.stationary(ss.SGD(sp.Symbol("lambda")), ss.Quadratic(h),
                                       ss.AdditiveNoise(c)), ValueError, r"'lambda'.*ss\.lr",
                 id="clash-lambda"),
    pytest.param(lambda: ss.stationary(ss.HeavyBall(ss.lr, sp.Symbol("mu", positive=True)),
                                       ss.Quadratic(h), ss.AdditiveNoise(c)), ValueError,
                 r"'mu'.*ss\.momentum", id="clash-mu"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.LinearRegression(a, 1),
                                       ss.MinibatchNoise(sp.Symbol("S"))), ValueError,
                 r"'S'.*ss\.batch_size", id="clash-S"),
    pytest.param(lambda: ss.stationary(ss.Adam(ss.lr, sp.Symbol("beta_1"), eps=1, v=1),
                                       ss.Quadratic(h), ss.AdditiveNoise(c)), ValueError,
                 r"'beta_1'.*ss\.beta1", id="clash-beta_1"),
    pytest.param(lambda: ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h),
                                       ss.AdditiveNoise(sp.Symbol("h"))), ValueError,
                 r"two different symbols are both named 'h'", id="clash-two-h"),
    # -- Stationary.subs ---------------------------------------------------------------------------
    pytest.param(lambda: sgd().subs(lr=-0.1), ValueError, r"\blr\b.*> 0", id="subs-lr-negative"),
    pytest.param(lambda: sgd().subs(lr=0), ValueError, r"\blr\b.*> 0", id="subs-lr-zero"),
    pytest.param(lambda: sgd().subs(c=-1), ValueError, r"\bc\b.*> 0", id="subs-variance-negative"),
    pytest.param(lambda: sgd().subs(h=float("nan")), ValueError, r"\bh\b.*finite",
                 id="subs-nan"),
    pytest.param(lambda: sgd().subs(h=1j), ValueError, r"\bh\b.*real", id="subs-complex"),
    pytest.param(lambda: sgd().subs(zeta=1), ValueError, r"zeta", id="subs-unknown"),
    pytest.param(lambda: sgd().subs(lr=3, h=1), ss.UnstableError, r"lambda", id="subs-unstable"),
    pytest.param(lambda: without_replacement().subs(S=5), ValueError,
                 r"without replacement.*S <= 3.*S = 5", id="subs-S>N"),
    pytest.param(lambda: without_replacement().subs(S=2.5), ValueError,
                 r"\bS\b.*batch_size.*integer", id="subs-S-fraction"),
    # -- Stationary.lambdify, numpy backend ----------------------------------------------------
    pytest.param(lambda: sgd().lambdify()(lr=-0.1, h=1.0, c=1.0), ValueError, r"\blr\b.*> 0",
                 id="lambdify-lr-negative"),
    pytest.param(lambda: sgd().lambdify()(lr=np.array([0.1, -0.2]), h=1.0, c=1.0), ValueError,
                 r"\blr\b.*> 0.*-0\.2", id="lambdify-lr-array-entry-negative"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=1.0, c=-2.0), ValueError, r"\bc\b.*> 0",
                 id="lambdify-variance-negative"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=np.nan, c=1.0), ValueError,
                 r"\bh\b.*finite", id="lambdify-nan"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=1.0, c=np.inf), ValueError,
                 r"\bc\b.*finite", id="lambdify-inf"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=1.0, c=1 + 1j), ValueError, r"\bc\b.*real",
                 id="lambdify-complex"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=1.0, c="x"), TypeError, r"\bc\b",
                 id="lambdify-string"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=1.0), TypeError, r"missing values for c",
                 id="lambdify-missing"),
    pytest.param(lambda: sgd().lambdify()(lr=0.1, h=1.0, c=1.0, zeta=1), ValueError, r"zeta",
                 id="lambdify-unknown"),
    pytest.param(lambda: sgd().lambdify()(lr=3.0, h=1.0, c=1.0), ss.UnstableError,
                 r"h\*lambda < 2", id="lambdify-unstable"),
    pytest.param(lambda: sgd().lambdify(backend="jax"), ValueError, r"backend",
                 id="lambdify-backend"),
    pytest.param(lambda: sgd().lambdify(unstable="ignore"), ValueError, r"unstable",
                 id="lambdify-unstable-option"),
    pytest.param(lambda: sgd().lambdify(what="banana"), ValueError, r"what",
                 id="lambdify-what"),
    pytest.param(lambda: without_replacement().lambdify()(lr=0.1, S=5), ValueError,
                 r"without replacement.*S = 5", id="lambdify-S>N"),
    pytest.param(lambda: without_replacement().lambdify()(lr=0.1, S=1.5), ValueError,
                 r"\bS\b.*batch_size.*integer", id="lambdify-S-fraction"),
    pytest.param(lambda: without_replacement().lambdify()(lr=0.1, S=0), ValueError,
                 r"\bS\b.*batch_size.*> 0", id="lambdify-S-zero"),
    pytest.param(lambda: real_curvature().lambdify()(lr=0.1, q=-1.0), ValueError,
                 NOT_LR_ADVICE + r"(?=.*\bq\b)", id="lambdify-domain-advice"),
    # -- lambdify, mpmath backend --------------------------------------------------------------
    pytest.param(lambda: sgd().lambdify(backend="mpmath")(lr=-0.1, h=1.0, c=1.0), ValueError,
                 r"\blr\b.*> 0", id="mpmath-lr-negative"),
    pytest.param(lambda: sgd().lambdify(backend="mpmath")(lr=0.1, h=float("nan"), c=1.0),
                 ValueError, r"\bh\b.*finite", id="mpmath-nan"),
    pytest.param(lambda: sgd().lambdify(backend="mpmath")(lr=0.1, h=1.0, c=mpmath.mpc(1, 1)),
                 (TypeError, ValueError), r"\bc\b", id="mpmath-complex"),
    pytest.param(lambda: sgd().lambdify(backend="mpmath")(lr=3.0, h=1.0, c=1.0),
                 ss.UnstableError, r"h\*lambda < 2", id="mpmath-unstable"),
    pytest.param(lambda: without_replacement().lambdify(backend="mpmath")(lr=0.1, S=5),
                 ValueError, r"without replacement.*S = 5", id="mpmath-S>N"),
    # -- on_modes, latex, series, autocov -------------------------------------------------------
    pytest.param(lambda: modes().subs(lr=R(1, 2), c=1).on_modes([1, 0]), ValueError,
                 r"eigenvalue h.*> 0", id="on_modes-zero-mode"),
    pytest.param(lambda: modes().subs(lr=R(1, 2), c=1).on_modes([-1]), ValueError,
                 r"eigenvalue h.*> 0", id="on_modes-negative"),
    pytest.param(lambda: modes().subs(lr=R(1, 2), c=1).on_modes([float("nan")]), ValueError,
                 r"eigenvalue h.*finite", id="on_modes-nan"),
    pytest.param(lambda: modes().subs(lr=R(1, 2), c=1).on_modes([1, 5]), ss.UnstableError,
                 r"eigenvalues.*h = 5", id="on_modes-unstable"),
    pytest.param(lambda: modes().on_modes([]), ValueError, r"eigenvalue", id="on_modes-empty"),
    pytest.param(lambda: modes().subs(lr=R(1, 2), c=1).on_modes(["x"]), (TypeError, ValueError),
                 r"eigenvalue", id="on_modes-string"),
    pytest.param(lambda: modes().on_modes([1], what="banana"), ValueError, r"what",
                 id="on_modes-what"),
    pytest.param(lambda: explicit().on_modes([1]), ValueError, r"eigen-mode",
                 id="on_modes-explicit-result"),
    pytest.param(lambda: sgd().latex(what="banana"), ValueError, r"what", id="latex-what"),
    pytest.param(lambda: sgd().latex(env="bogus"), ValueError, r"\benv\b", id="latex-env"),
    pytest.param(lambda: sgd().latex(lr=3), TypeError, r"\blr\b", id="latex-lr-type"),
    pytest.param(lambda: sgd().series(n=-1), ValueError, r"\bn\b", id="series-n-negative"),
    pytest.param(lambda: sgd().series(n=1.5), ValueError, r"\bn\b", id="series-n-fraction"),
    pytest.param(lambda: sgd().autocov(-1), ValueError, r"autocov\(k\).*k ≥ 0",
                 id="autocov-negative"),
    pytest.param(lambda: sgd().autocov(0.5), ValueError, r"autocov\(k\).*integer",
                 id="autocov-fraction"),
    pytest.param(lambda: sgd().autocov("k k"), ValueError, r"autocov\(k\)", id="autocov-string"),
    # -- continuous_time -------------------------------------------------------------------------
    pytest.param(lambda: sgd().continuous_time().lambdify()(lr=-1.0, h=1.0, c=1.0), ValueError,
                 r"\blr\b.*> 0", id="continuous_time-lr-negative"),
    pytest.param(lambda: sgd().continuous_time().subs(h=-1), ValueError, r"\bh\b.*> 0",
                 id="continuous_time-subs-negative"),
    pytest.param(lambda: sgd().continuous_time().lambdify(backend="mpmath")(
                     lr=0.1, h=float("nan"), c=1.0), ValueError, r"\bh\b.*finite",
                 id="continuous_time-mpmath-nan"),
    pytest.param(lambda: sgd().continuous_time().latex(what="banana"), ValueError, r"what",
                 id="continuous_time-latex-what"),
    # -- simulate --------------------------------------------------------------------------------
    pytest.param(lambda: simulate({**GOOD, "lr": -0.5}), ValueError, r"\blr\b.*> 0",
                 id="simulate-lr-negative"),
    pytest.param(lambda: simulate({**GOOD, "lr": float("nan")}), ValueError, r"\blr\b.*finite",
                 id="simulate-nan"),
    pytest.param(lambda: simulate({**GOOD, c: 1j}), ValueError, r"\bc\b.*real",
                 id="simulate-complex"),
    pytest.param(lambda: simulate({**GOOD, c: -1}), ValueError, r"\bc\b.*> 0",
                 id="simulate-variance-negative"),
    pytest.param(lambda: simulate({"lr": 0.5, h: 1.0}), ValueError, r"missing c",
                 id="simulate-missing"),
    pytest.param(lambda: simulate({**GOOD, "zeta": 1}), ValueError, r"zeta",
                 id="simulate-unknown"),
    pytest.param(lambda: simulate([0.5, 1, 1]), TypeError, r"\bparams\b",
                 id="simulate-params-list"),
    pytest.param(lambda: simulate(pieces=("sgd", ss.Quadratic(h), ss.AdditiveNoise(c))),
                 TypeError, r"optimizer", id="simulate-optimizer-type"),
    pytest.param(lambda: simulate(chains=1), ValueError, r"chains.*≥ 2", id="simulate-chains-1"),
    pytest.param(lambda: simulate(chains=2.5), ValueError, r"chains", id="simulate-chains-frac"),
    pytest.param(lambda: simulate(steps=0), ValueError, r"steps.*≥ 1", id="simulate-steps-0"),
    pytest.param(lambda: simulate(burn_in=-1), ValueError, r"burn_in", id="simulate-burn_in"),
    pytest.param(lambda: simulate(chains=None, steps=None, rel_se=0), ValueError, r"rel_se",
                 id="simulate-rel_se"),
    pytest.param(lambda: simulate(workers=0), ValueError, r"workers", id="simulate-workers"),
    pytest.param(lambda: simulate(seed=-1), ValueError, r"seed", id="simulate-seed"),
    pytest.param(lambda: simulate({**GOOD, "lr": 3.0}), ss.UnstableError,
                 r"h\*lambda < 2.*lambda = 3", id="simulate-unstable"),
    pytest.param(lambda: simulate({"lr": 0.1, q: -1}, (ss.SGD(ss.lr), ss.Quadratic(q),
                                                          ss.AdditiveNoise(1))), ValueError,
                 NOT_LR_ADVICE + r"(?=.*\bq\b)(?=.*positive semi-definite)",
                 id="simulate-negative-curvature"),
    pytest.param(lambda: simulate({"lr": 0.1, "S": 5}, (ss.SGD(ss.lr), data_landscape(),
                 ss.MinibatchNoise(ss.batch_size, replacement=False))), ValueError,
                 r"batch_size.*N = 3.*S = 5", id="simulate-S>N"),
    pytest.param(lambda: simulate({"lr": 0.1, "S": 1.5}, (ss.SGD(ss.lr), data_landscape(),
                 ss.MinibatchNoise(ss.batch_size, replacement=False))), ValueError,
                 r"batch_size.*integer", id="simulate-S-fraction"),
    # -- crosscheck -------------------------------------------------------------------------------
    pytest.param(lambda: ss.crosscheck(sgd(), GOOD, level=0), ValueError, r"level",
                 id="crosscheck-level-0"),
    pytest.param(lambda: ss.crosscheck(sgd(), GOOD, level=1.5), ValueError, r"level",
                 id="crosscheck-level"),
    pytest.param(lambda: ss.crosscheck(sgd(), GOOD, quantities=("banana",)), ValueError,
                 r"quantities", id="crosscheck-quantities"),
    pytest.param(lambda: ss.crosscheck(sgd(), GOOD, chains=1), ValueError, r"chains",
                 id="crosscheck-chains"),
    pytest.param(lambda: ss.crosscheck(sgd(), [0.5, 1, 1]), TypeError, r"\bparams\b",
                 id="crosscheck-params-list"),
    pytest.param(lambda: ss.crosscheck(sgd(), {**GOOD, "lr": -1}), ValueError, r"\blr\b.*> 0",
                 id="crosscheck-lr-negative"),
    pytest.param(lambda: ss.crosscheck(modes(), {"lr": 0.5, c: 1}, eigenvalues=[1, -2]),
                 ValueError, r"eigenvalues.*-2", id="crosscheck-eigenvalue-negative"),
    pytest.param(lambda: ss.crosscheck(sgd(), GOOD, eigenvalues=[1, 2]), ValueError,
                 r"eigenvalues=", id="crosscheck-eigenvalues-explicit"),
    pytest.param(lambda: ss.crosscheck(sgd().continuous_time(), GOOD), TypeError, r"problem=",
                 id="crosscheck-no-problem"),
    pytest.param(lambda: ss.crosscheck(without_replacement(), {"lr": 0.1, "S": 5}), ValueError,
                 r"batch_size.*S = 5", id="crosscheck-S>N"),
    # -- sweep ----------------------------------------------------------------------------------
    pytest.param(lambda: sweep(what="banana"), ValueError, r"\bwhat\b", id="sweep-what"),
    pytest.param(lambda: sweep(param="zeta"), ValueError, r"zeta", id="sweep-param-unknown"),
    pytest.param(lambda: sweep(values=[]), ValueError, r"values", id="sweep-values-empty"),
    pytest.param(lambda: sweep(values=[0.1, np.nan]), ValueError, r"values.*finite",
                 id="sweep-values-nan"),
    pytest.param(lambda: sweep(values=[0.1, -0.2]), ValueError, r"\blr\b.*> 0",
                 id="sweep-values-negative"),
    pytest.param(lambda: sweep(fixed={h: -1, c: 1}), ValueError, r"\bh\b.*> 0",
                 id="sweep-fixed-negative"),
    pytest.param(lambda: sweep(fixed={h: float("nan"), c: 1}), ValueError, r"\bh\b.*finite",
                 id="sweep-fixed-nan"),
    pytest.param(lambda: sweep(fixed={h: 1}), ValueError, r"depends on c", id="sweep-missing"),
    pytest.param(lambda: sweep(fixed=[1, 1]), TypeError, r"fixed_params", id="sweep-fixed-list"),
    pytest.param(lambda: sweep(grid=1), ValueError, r"grid", id="sweep-grid"),
    pytest.param(lambda: sweep(without_replacement(), "S", [1, 1.5], {"lr": 0.1}), ValueError,
                 r"batch_size.*integer", id="sweep-S-fraction"),
    pytest.param(lambda: sweep(without_replacement(), "S", [1, 5], {"lr": 0.1}), ValueError,
                 r"batch_size.*S = 5", id="sweep-S>N"),
    pytest.param(lambda: sweep(sgd().subs(lr=R(1, 2))), ValueError, r"already has lambda",
                 id="sweep-preset"),
    # -- verify / parse_formula: malicious, huge and malformed strings (each < 1 s) -------------
    pytest.param(lambda: ss.verify("__import__('os')", sgd()), ValueError,
                 r"hand formula.*names starting with '_'", id="verify-import"),
    pytest.param(lambda: ss.verify("().__class__.__bases__[0]", sgd()), ValueError,
                 r"hand formula.*attribute access", id="verify-dunder"),
    pytest.param(lambda: ss.verify("eval('1')", sgd()), ValueError, r"hand formula.*strings",
                 id="verify-eval"),
    pytest.param(lambda: ss.verify("h; import os", sgd()), ValueError, r"hand formula",
                 id="verify-semicolon"),
    pytest.param(lambda: ss.verify("10^(10^10)", sgd()), ValueError, r"hand formula.*MAX_BITS",
                 id="verify-power-tower"),
    pytest.param(lambda: ss.verify("2^2^2^2^2^2^2", sgd()), ValueError, r"hand formula.*too large",
                 id="verify-power-tower-2"),
    pytest.param(lambda: ss.verify("h^(10^10)", sgd()), ValueError, r"hand formula.*MAX_EXPONENT",
                 id="verify-huge-exponent"),
    pytest.param(lambda: ss.verify("1e999999", sgd()), ValueError, r"hand formula.*too large",
                 id="verify-huge-number"),
    pytest.param(lambda: ss.verify("h+" * (HUGE // 2) + "h", sgd()), ValueError,
                 r"hand formula.*MAX_LENGTH", id="verify-1e5-characters"),
    pytest.param(lambda: ss.verify(r"\frac{h}{c}+" * (HUGE // 12), sgd()), ValueError,
                 r"hand formula.*MAX_LENGTH", id="verify-1e5-characters-latex"),
    pytest.param(lambda: ss.verify("(" * NEST + "h" + ")" * NEST, sgd()), ValueError,
                 r"hand formula.*MAX_DEPTH", id="verify-deep-parentheses"),
    pytest.param(lambda: ss.verify("{" * NEST + "h" + "}" * NEST, sgd()), ValueError,
                 r"hand formula.*MAX_DEPTH", id="verify-deep-braces"),
    pytest.param(lambda: ss.verify("-" * NEST + "h", sgd()), ValueError,
                 r"hand formula.*MAX_DEPTH", id="verify-deep-signs"),
    pytest.param(lambda: ss.verify("(h", sgd()), ValueError, r"hand formula.*'\)'",
                 id="verify-unbalanced"),
    pytest.param(lambda: ss.verify("", sgd()), ValueError, r"hand formula.*empty",
                 id="verify-empty"),
    pytest.param(lambda: ss.verify(None, sgd()), TypeError, r"\bhand\b", id="verify-hand-None"),
    pytest.param(lambda: ss.verify("h", "x"), TypeError, r"\bderived\b", id="verify-derived-str"),
    pytest.param(lambda: ss.verify("zeta*h", sgd()), ValueError, r"zeta",
                 id="verify-unknown-name"),
    pytest.param(lambda: ss.verify("h", sgd(), what="banana"), ValueError, r"\bwhat\b",
                 id="verify-what"),
    pytest.param(lambda: ss.verify("h", sgd(), order=0), ValueError, r"\border\b",
                 id="verify-order"),
    pytest.param(lambda: ss.verify("h", sgd(), {"h": (2, 1)}), ValueError, r"assumptions\[h\]",
                 id="verify-assumptions"),
    pytest.param(lambda: ss.verify("sqrt(lr h + 2 sqrt(lr h) + 1)", 1 + sp.sqrt(ss.lr * h),
                                   points=-1), ValueError, r"\bpoints\b", id="verify-points"),
    pytest.param(lambda: ss.verify("sqrt(lr h + 2 sqrt(lr h) + 1)", 1 + sp.sqrt(ss.lr * h),
                                   rtol=-1), ValueError, r"\brtol\b", id="verify-rtol"),
    pytest.param(lambda: ss.verify("sqrt(lr h + 2 sqrt(lr h) + 1)", 1 + sp.sqrt(ss.lr * h),
                                   digits=0), ValueError, r"\bdigits\b", id="verify-digits"),
    pytest.param(lambda: ss.verify("h", sgd(), timeout=-1), ValueError, r"\btimeout\b",
                 id="verify-timeout"),
    pytest.param(lambda: ss.verify("h", sgd(), timeout=float("inf")), ValueError,
                 r"\btimeout\b", id="verify-timeout-inf"),
    pytest.param(lambda: ss.verify("2*sqrt(lr*h + 1)", sp.sqrt(ss.lr * h + 1), digits=5),
                 ValueError, r"\bdigits\b", id="verify-digits-too-few"),
    pytest.param(lambda: ss.verify("h", sgd(), rtol=1), ValueError, r"\brtol\b",
                 id="verify-rtol-one"),
    pytest.param(lambda: ss.verify("h", sgd(), rtol=float("nan")), ValueError, r"\brtol\b",
                 id="verify-rtol-nan"),
    pytest.param(lambda: ss.verify("h", sgd(), points=2.5), TypeError, r"\bpoints\b",
                 id="verify-points-fraction"),
    pytest.param(lambda: ss.verify("h", sgd(), seed=[1]), TypeError, r"\bseed\b",
                 id="verify-seed-type"),
    pytest.param(lambda: ss.verify("h", sgd(), modes=3), TypeError, r"\bmodes\b",
                 id="verify-modes-type"),
    pytest.param(lambda: ss.verify("h", sgd(), assumptions=3), TypeError, r"\bassumptions\b",
                 id="verify-assumptions-type"),
    pytest.param(lambda: ss.verify("h", sgd(), assumptions={"h": (1,)}), ValueError,
                 r"assumptions\[h\]", id="verify-assumptions-range"),
    pytest.param(lambda: ss.parse_formula("__import__('os').system('echo hi')"), ValueError,
                 r"names starting with '_'", id="parse-import"),
    pytest.param(lambda: ss.parse_formula("10^(10^10)"), ValueError, r"MAX_BITS",
                 id="parse-power-tower"),
    pytest.param(lambda: ss.parse_formula("x" * HUGE), ValueError, r"MAX_LENGTH",
                 id="parse-1e5-characters"),
    pytest.param(lambda: ss.parse_formula("(" * NEST + "x" + ")" * NEST), ValueError,
                 r"MAX_DEPTH", id="parse-deep-parentheses"),
    pytest.param(lambda: ss.parse_formula(r"\input{/etc/passwd}"), ValueError,
                 r"unsupported LaTeX command \\input", id="parse-latex-input"),
    pytest.param(lambda: ss.parse_formula(b"x"), TypeError, r"\bhand\b|\btext\b",
                 id="parse-bytes"),
    pytest.param(lambda: ss.parse_formula("x", symbols=3), TypeError, r"\bsymbols\b",
                 id="parse-symbols-type"),
    pytest.param(lambda: ss.parse_formula("x", symbols="x"), TypeError, r"\bsymbols\b",
                 id="parse-symbols-string"),
    # -- adam_self_consistent ------------------------------------------------------------------
    pytest.param(lambda: ss.adam_self_consistent(ss.SGD(ss.lr), ss.Quadratic(h),
                                                 ss.AdditiveNoise(c), {}), TypeError,
                 r"ss\.Adam", id="adam-not-adam"),
    pytest.param(lambda: ss.adam_self_consistent(ss.Adam(ss.lr, 0, eps=0),
                                                 ss.Quadratic.commuting(h),
                                                 ss.AdditiveNoise(c), {}), ValueError,
                 r"explicit landscape", id="adam-eigen-mode"),
    pytest.param(lambda: ss.adam_self_consistent(ss.Adam(ss.lr, 0, eps=0, v=1), ss.Quadratic(h),
                                                 ss.AdditiveNoise(c), {}), ValueError,
                 r"without v=", id="adam-v-given"),
    pytest.param(lambda: adam(tol=0), ValueError, r"\btol\b",
                 id="adam-tol"),
    pytest.param(lambda: adam(max_iter=0), ValueError, r"max_iter", id="adam-max_iter"),
    pytest.param(lambda: adam(v0=-1), ValueError, r"\bv0\b", id="adam-v0-negative"),
    pytest.param(lambda: adam({"zeta": 1}), ValueError, r"zeta", id="adam-unknown"),
    pytest.param(lambda: adam({h: "x"}), ValueError, r"\bh\b.*number", id="adam-string"),
    pytest.param(lambda: adam({h: float("nan")}), ValueError, r"\bh\b.*finite", id="adam-nan"),
    pytest.param(lambda: adam({h: 1j}), ValueError, r"\bh\b.*real", id="adam-complex"),
    pytest.param(lambda: adam({"lr": -1}), ValueError, r"(\blr\b|lambda).*(> 0|positive)",
                 id="adam-lr-negative"),
    pytest.param(lambda: adam({c: -1}), ValueError, r"\bc\b.*(> 0|≥ 0|positive)",
                 id="adam-variance-negative"),
    pytest.param(lambda: adam({"beta1": 1}), ValueError, r"beta", id="adam-beta1-one"),
    # -- the symsgd command: exit 2 and one line naming the option -------------------------------
    pytest.param(cli("derive", "adagrad"), CliError, r"exit 2: .*unknown optimizer 'adagrad'",
                 id="cli-unknown-optimizer"),
    pytest.param(cli("derive", "sgd", "--dim", "0"), CliError, r"exit 2: .*--dim",
                 id="cli-dim-zero"),
    pytest.param(cli("derive", "sgd", "--dim", "1.5"), CliError, r"exit 2: .*--dim",
                 id="cli-dim-fraction"),
    pytest.param(cli("derive", "sgd", "--dim", "99"), CliError, r"exit 2: .*--dim",
                 id="cli-dim-huge"),
    pytest.param(cli("derive", "sgd", "--noise", "minibatch", "--dim", "5"), CliError,
                 r"exit 2: .*--dim", id="cli-minibatch-dim"),
    pytest.param(cli("derive", "sgd", "--noise", "pink"), CliError, r"exit 2: .*--noise",
                 id="cli-noise"),
    pytest.param(cli("derive", "sgd", "--lr-symbol", "$\\eta$"), CliError,
                 r"exit 2: .*--lr-symbol", id="cli-lr-symbol"),
    pytest.param(cli("derive", "sgd", "--env", "tabular"), CliError, r"exit 2: .*--env",
                 id="cli-env"),
    pytest.param(cli("verify", "__import__('os')", "--against", "sgd"), CliError,
                 r"exit 2: .*names starting with '_'", id="cli-verify-import"),
    pytest.param(cli("verify", "10^(10^10)", "--against", "sgd"), CliError,
                 r"exit 2: .*MAX_BITS", id="cli-verify-power-tower"),
    pytest.param(cli("verify", "(" * NEST + "h" + ")" * NEST, "--against", "sgd"), CliError,
                 r"exit 2: .*MAX_DEPTH", id="cli-verify-deep"),
    pytest.param(cli("verify", "h", "--against", "sgd", "--what", "banana"), CliError,
                 r"exit 2: .*--what", id="cli-verify-what"),
    pytest.param(cli("check", "--cases", "nope"), CliError, r"exit 2: .*--cases",
                 id="cli-check-cases"),
    pytest.param(cli("check", "--seed", "-1"), CliError, r"exit 2: .*--seed", id="cli-seed"),
    pytest.param(cli("check", "--rel-se", "nan"), CliError, r"exit 2: .*--rel-se",
                 id="cli-rel-se"),
    pytest.param(cli("check", "--plot", "out.txt"), CliError, r"exit 2: .*--plot",
                 id="cli-plot"),
]
# fmt: on

#: rows that read a hostile string: they must be refused quickly, not after a long parse
FAST_PREFIXES = ("verify-", "parse-", "cli-verify-")


@pytest.mark.parametrize(("call", "error", "pattern"), TABLE)
def test_bad_input(call, error, pattern, request):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the exception matters here
        with pytest.raises(error, match=pattern) as info:
            call()
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "Traceback" not in message
    if isinstance(info.value, CliError):
        assert message.count("\n") == 1, message  # one line on stderr
    if request.node.callspec.id.startswith(FAST_PREFIXES):
        assert elapsed < 1.0, f"refusing this input took {elapsed:.2f} s"


def test_table_is_large_and_covers_every_entry_point():
    ids = [p.id for p in TABLE]
    assert len(ids) == len(set(ids)) >= 60
    for prefix in (
        "Quadratic", "LinearRegression", "from_data", "AdditiveNoise", "MinibatchNoise", "SGD",
        "HeavyBall", "Adam-", "Preconditioned", "NaturalGradient", "stationary", "clash",
        "subs", "lambdify", "mpmath", "on_modes", "latex", "series", "autocov",
        "continuous_time", "simulate", "crosscheck", "sweep", "verify", "parse", "adam-", "cli",
    ):  # fmt: skip
        assert any(i.startswith(prefix) for i in ids), prefix


# -- what a table cannot say ------------------------------------------------------------------
def test_unstable_nan_gives_nan_not_a_number_numpy():
    f = sgd().lambdify(unstable="nan")
    out = f(lr=np.array([0.5, 3.0, 1.0]), h=1.0, c=1.0)
    assert np.isnan(out[1])  # λh = 3 > 2: no stationary law
    np.testing.assert_allclose(out[[0, 2]], [0.5 / 1.5, 1.0])  # λc/(h(2 − λh))
    assert np.isnan(f(lr=3.0, h=1.0, c=1.0))


def test_unstable_nan_gives_nan_not_a_number_mpmath():
    f = sgd().lambdify(backend="mpmath", unstable="nan")
    assert mpmath.isnan(f(lr=3.0, h=1.0, c=1.0))  # the formula there is -3, a "variance" < 0
    assert f(lr=0.5, h=1.0, c=1.0) == pytest.approx(1 / 3, rel=1e-14)
    # a matrix readout: every entry NaN
    g = explicit().lambdify(backend="mpmath", unstable="nan")
    assert all(mpmath.isnan(x) for row in g(lr=2.0) for x in row)  # λ·3 > 2


def test_unstable_nan_at_a_domain_error_too():
    f = real_curvature().lambdify(unstable="nan")
    assert np.isnan(f(lr=0.1, q=-1.0))  # negative curvature: NaN, never a negative variance
    g = real_curvature().lambdify(backend="mpmath", unstable="nan")
    assert mpmath.isnan(g(lr=0.1, q=-1.0))


def test_incomplete_conditions_still_refuse_unstable_points():
    """HeavyBall + minibatch (d = 2): the symbolic conditions are incomplete there; λ = 0.45,
    μ = 0.5 has second-moment spectral radius ≈ 1.109 and must not yield numbers."""
    r = ss.stationary(
        ss.HeavyBall(ss.lr, ss.momentum),
        ss.LinearRegression(sp.diag(1, R(1, 2)), label_variance=1),
        ss.MinibatchNoise(1),
    )
    with pytest.raises(ss.UnstableError, match=r"spectral radius"):
        r.lambdify()(lr=0.45, momentum=0.5)
    assert np.all(np.isnan(r.lambdify(unstable="nan")(lr=0.45, momentum=0.5)))
    out = r.lambdify(backend="mpmath", unstable="nan")(lr=0.45, momentum=0.5)
    assert all(mpmath.isnan(x) for row in out for x in row)
    stable = r.lambdify()(lr=0.1, momentum=0.5)
    assert np.all(np.linalg.eigvalsh(stable) > 0)


def test_batch_sizes_up_to_N_give_variances_and_beyond_N_raise():
    """Without replacement every S ≤ N gives a positive semi-definite covariance (zero at
    S = N: the full batch has no noise); S > N raises, for every entry point."""
    f = without_replacement().lambdify()
    covs = [f(lr=0.1, S=s) for s in (1, 2, 3)]
    for cov in covs:
        assert np.all(np.isfinite(cov))
        assert np.linalg.eigvalsh(cov).min() >= -1e-15
    np.testing.assert_allclose(covs[-1], 0, atol=1e-15)
    # the noise model takes N from the landscape when dataset_size is not given
    implicit = ss.stationary(
        ss.SGD(ss.lr), data_landscape(), ss.MinibatchNoise(ss.batch_size, replacement=False)
    )
    with pytest.raises(ValueError, match=r"without replacement.*S = 4"):
        implicit.lambdify()(lr=0.1, S=np.array([1, 4]))


def test_from_data_with_unrounded_floats_lambdifies():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(4, 2)), rng.normal(size=4)
    noise = ss.MinibatchNoise(ss.batch_size, replacement=False)
    r = ss.stationary(ss.SGD(ss.lr), ss.LinearRegression.from_data(X, y), noise)
    cov = r.lambdify()(lr=0.1, S=2)
    assert np.all(np.isfinite(cov)) and np.linalg.eigvalsh(cov).min() > 0
    with pytest.raises(ValueError, match=r"S = 5"):
        r.lambdify()(lr=0.1, S=5)


def test_two_chains_are_inconclusive_not_passed():
    report = ss.crosscheck(sgd(), GOOD, chains=2, steps=2000, seed=1)
    assert report.verdict == "inconclusive"
    assert not report.passed and not bool(report)
    assert "2 chains are too few" in report.reason
    assert "INCONCLUSIVE" in str(report)
    with pytest.raises(AssertionError, match="inconclusive"):
        ss.assert_crosscheck(sgd(), GOOD, chains=2, steps=2000, seed=1)


def test_a_wrong_formula_cannot_pass_a_tiny_simulation():
    """The continuous-time answer λc/(2h) is 25 % off at λ = 0.5; a run too short to see it
    must not say passed."""
    wrong = sgd().continuous_time()
    for chains, steps in ((2, 50), (40, 3)):
        report = ss.crosscheck(wrong, GOOD, problem=sgd(), chains=chains, steps=steps, seed=0)
        assert report.verdict in ("inconclusive", "failed"), (chains, steps)
        assert not report.passed
    report = ss.crosscheck(wrong, GOOD, problem=sgd(), chains=40, steps=3, seed=0)
    assert "effective samples" in (report.reason or "") or report.verdict == "failed"


def test_short_burn_in_warns_with_the_recommended_value():
    params = {"lr": 0.1, h: 1.0, c: 1.0}  # ρ = 0.81: τ = 1/(−ln ρ) ≈ 4.7 steps
    with pytest.warns(ss.BurnInWarning, match=r"burn_in=2 .*burn_in ≥ 24"):
        simulate(params, burn_in=2)


def test_series_by_name_means_the_learning_rate_or_is_refused():
    """``series("lambda")`` must not expand in a stray symbol named lambda (giving the
    unexpanded covariance back as if it were the series)."""
    expected = sgd().series()
    for name in ("lambda", "lr"):
        try:
            out = sgd().series(name)
        except ValueError as exc:
            assert "symbol" in str(exc)
        else:
            assert sp.simplify(out - expected) == 0, name


def test_cli_subprocess_one_line_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "symsgd.cli", "verify", "__import__('os')", "--against", "sgd"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("symsgd verify: error:") and "'_'" in lines[0]


def test_no_negative_variance_from_any_readout_at_stable_points():
    """At stable points every returned variance is ≥ 0 (numpy and mpmath agree); NaN only
    where asked for."""
    r = sgd()
    lr = np.linspace(0.05, 1.95, 7)
    cov = r.lambdify()(lr=lr, h=1.0, c=1.0)
    assert np.all(cov > 0) and np.all(np.isfinite(cov))
    f = r.lambdify(backend="mpmath")
    for x, y in zip(lr, cov):
        assert float(f(lr=float(x), h=1.0, c=1.0)) == pytest.approx(y, rel=1e-12)
    assert math.isfinite(float(r.lambdify("loss")(lr=1.0, h=1.0, c=1.0)))
