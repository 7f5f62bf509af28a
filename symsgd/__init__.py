"""symsgd: derive exact stationary fluctuations of SGD and its variants near a minimum.

>>> import sympy as sp, symsgd as ss
>>> h, c = sp.symbols("h c", positive=True)
>>> ss.stationary(ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(h), ss.AdditiveNoise(c)).cov
c*lambda*(mu + 1)/(h*(1 - mu)*(-h*lambda + 2*mu + 2))
"""

from ._crosscheck import CrossCheck, assert_crosscheck, crosscheck
from ._result import Result
from ._simulate import BurnInWarning, Simulation, simulate
from ._stationary import ContinuousTime, Stationary, stationary
from ._sweep import Sweep, sweep
from ._transient import Transient, transient
from ._verify import Verdict, parse_formula, verify
from .adaptive import AdamFixedPoint, adam_self_consistency_equations, adam_self_consistent
from .applications import (
    budget_curve,
    exact_minimum,
    implicit_weight_decay,
    optimal_lr,
    optimal_weight_decay,
    posterior_lr,
    simulate_schedule,
    simulate_transient,
    stable_interval,
)
from .budget import DerivationTimeout
from .errors import InternalError, UnstableError
from .escape import (
    Escapes,
    Exponent,
    FirstPassage,
    StationaryDensity,
    arrhenius_exponent,
    exact_noise_exponent,
    exponents,
    first_passage,
    fit_exponent,
    mori_exponent,
    mori_rate,
    simulate_first_passage,
    stationary_density,
    ziyin_exponent,
)
from .gaussianity import (
    LangevinComparison,
    NoiseLawAtFixedTheta,
    PooledNoiseLaw,
    langevin,
    noise_law,
    pooled_noise,
)
from .geometry import (
    alignment,
    alignment_range,
    edge_table,
    escape_directions,
    population_alignment,
    simulate_escape,
    simulate_growth,
    stationary_alignment,
)
from .landscapes import Landscape, LinearRegression, Quadratic
from .models import EmpiricalLoss, LocalLandscape
from .noise import AdditiveNoise, MinibatchNoise, Noise
from .optimizers import (
    QHM,
    SGD,
    Adam,
    Averaged,
    DampedNewton,
    HeavyBall,
    NaturalGradient,
    Nesterov,
    Optimizer,
    Preconditioned,
)
from .recursion import LinearRecursion, build_recursion
from .schedules import PeriodicState, Schedule, ScheduleRun, periodic_state, run_schedule
from .symbols import (
    batch_size,
    beta1,
    beta2,
    dataset_size,
    eps,
    label_noise,
    lr,
    momentum,
    weight_decay,
)
from .tails import (
    FourthMoments,
    LyapunovExponent,
    StationaryMoments,
    TailIndex,
    lyapunov_exponent,
    moment_conditions,
    stationary_fourth_moments,
    stationary_moments,
    symbolic_moments,
    tail_index,
)

__version__ = "0.1.0"

__all__ = [
    "QHM",
    "SGD",
    "Adam",
    "AdamFixedPoint",
    "AdditiveNoise",
    "Averaged",
    "BurnInWarning",
    "ContinuousTime",
    "CrossCheck",
    "DampedNewton",
    "DerivationTimeout",
    "EmpiricalLoss",
    "Escapes",
    "Exponent",
    "FirstPassage",
    "FourthMoments",
    "HeavyBall",
    "InternalError",
    "Landscape",
    "LangevinComparison",
    "LinearRecursion",
    "LinearRegression",
    "LocalLandscape",
    "LyapunovExponent",
    "MinibatchNoise",
    "NaturalGradient",
    "Nesterov",
    "Noise",
    "NoiseLawAtFixedTheta",
    "Optimizer",
    "PeriodicState",
    "PooledNoiseLaw",
    "Preconditioned",
    "Quadratic",
    "Result",
    "Schedule",
    "ScheduleRun",
    "Simulation",
    "Stationary",
    "StationaryDensity",
    "StationaryMoments",
    "Sweep",
    "TailIndex",
    "Transient",
    "UnstableError",
    "Verdict",
    "adam_self_consistency_equations",
    "adam_self_consistent",
    "alignment",
    "alignment_range",
    "arrhenius_exponent",
    "assert_crosscheck",
    "batch_size",
    "beta1",
    "beta2",
    "budget_curve",
    "build_recursion",
    "crosscheck",
    "dataset_size",
    "edge_table",
    "eps",
    "escape_directions",
    "exact_minimum",
    "exact_noise_exponent",
    "exponents",
    "first_passage",
    "fit_exponent",
    "implicit_weight_decay",
    "label_noise",
    "langevin",
    "lr",
    "lyapunov_exponent",
    "moment_conditions",
    "momentum",
    "mori_exponent",
    "mori_rate",
    "noise_law",
    "optimal_lr",
    "optimal_weight_decay",
    "parse_formula",
    "periodic_state",
    "pooled_noise",
    "population_alignment",
    "posterior_lr",
    "run_schedule",
    "simulate",
    "simulate_escape",
    "simulate_first_passage",
    "simulate_growth",
    "simulate_schedule",
    "simulate_transient",
    "stable_interval",
    "stationary",
    "stationary_alignment",
    "stationary_density",
    "stationary_fourth_moments",
    "stationary_moments",
    "sweep",
    "symbolic_moments",
    "tail_index",
    "transient",
    "verify",
    "weight_decay",
    "ziyin_exponent",
]
