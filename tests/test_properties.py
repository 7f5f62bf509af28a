r"""Property tests: ``stationary()`` against an independent Kronecker-solve oracle.

Random problems over optimizer (SGD, heavy ball, Nesterov, preconditioned SGD with a random SPD
``P``, damped Newton, SGD with weight decay) × noise (additive ``C``; minibatches of online
Gaussian regression; minibatches of a finite data set with and without replacement) × entry kind
(decimal floats with a symbolic learning rate; exact rationals; partly symbolic) × d = 1..3.

The oracle (:mod:`tests.oracle_kron`) never calls symsgd: it probes update rules written here for
the state matrices, builds the noise covariance from its own derivation (checked below by Monte
Carlo and by enumerating every minibatch), finds the stability edge in λ from the spectral radius
of the second-moment map, and solves the stationary equation by one dense Kronecker solve.  The
library is asked at λ = a random fraction (0.05..0.9) of that edge, must not refuse it, and must
agree to 1e-8 relative to the largest entry; a λ beyond the edge (where the oracle's spectral
radius is > 1) must be refused with :class:`~symsgd.UnstableError`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import symsgd as ss
from tests import oracle_kron as ok

RTOL = 1e-8

OPTIMIZERS = ("sgd", "heavyball", "nesterov", "preconditioned", "newton", "sgd_wd")
KINDS = ("decimal", "rational", "partial")


def settings_for(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- random numbers of each entry kind ----------------------------------------------------------


def quantize(x: float, kind: str):
    """A decimal float with 3 digits, or a rational with a small denominator."""
    if kind == "decimal":
        return round(float(x), 3)
    return sp.Rational(Fraction(float(x)).limit_denominator(12))


def quantize_matrix(X: np.ndarray, kind: str) -> list[list]:
    rows, cols = X.shape
    out = [[None] * cols for _ in range(rows)]
    for i in range(rows):
        for j in range(cols):
            if X.shape[0] == X.shape[1] and j < i:
                out[i][j] = out[j][i]
            else:
                out[i][j] = quantize(X[i, j], kind)
    return out


def as_float(entries) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in entries])


def random_spd(rng: np.random.Generator, d: int, low: float, high: float, kind: str):
    """A symmetric positive-definite matrix with eigenvalues in about [low, high], quantized."""
    for _ in range(100):
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        eig = np.exp(rng.uniform(np.log(low), np.log(high), size=d))
        entries = quantize_matrix(Q @ np.diag(eig) @ Q.T, kind)
        if np.linalg.eigvalsh(as_float(entries)).min() > low / 4:
            return entries
    raise AssertionError("no SPD matrix drawn")  # pragma: no cover


# -- a problem ---------------------------------------------------------------------------------


@dataclass
class Problem:
    """Values (python floats for decimals, sympy Rationals otherwise) and how to present them."""

    d: int
    optimizer: str
    noise: str
    kind: str
    H: list | None = None  # Quadratic H, or the input covariance A of online regression
    C: list | None = None
    sigma2: object = None
    S: int = 1
    X: list | None = None
    y: list | None = None
    replacement: bool = True
    mu: object = 0
    gamma: object = 0
    P: list | None = None
    theta_star: list | None = None
    #: entries replaced by symbols: (role, index) -> symbol
    symbols: dict = field(default_factory=dict)
    #: numeric learning rate for all-numeric problems (None: symbolic ss.lr)
    lr: object = None

    # -- the library's view ------------------------------------------------------------------
    def _sym(self, role, index, value):
        return self.symbols.get((role, index), value)

    def _matrix(self, role, entries):
        if not any(key[0] == role for key in self.symbols):
            return entries if self.kind == "decimal" else sp.Matrix(entries)
        d = len(entries)
        return sp.Matrix(d, d, lambda i, j: self._sym(role, (min(i, j), max(i, j)), entries[i][j]))

    def library(self):
        lr = ss.lr if self.lr is None else self.lr
        mu = self._sym("mu", None, self.mu)
        gamma = self._sym("gamma", None, self.gamma)
        opt = {
            "sgd": lambda: ss.SGD(lr),
            "sgd_wd": lambda: ss.SGD(lr, weight_decay=gamma),
            "heavyball": lambda: ss.HeavyBall(lr, mu),
            "nesterov": lambda: ss.Nesterov(lr, mu),
            "preconditioned": lambda: ss.Preconditioned(lr, P=self._matrix("P", self.P)),
            "newton": lambda: ss.DampedNewton(lr),
        }[self.optimizer]()
        H = self._matrix("H", self.H) if self.H is not None else None
        if self.noise == "additive":
            return opt, ss.Quadratic(H), ss.AdditiveNoise(self._matrix("C", self.C))
        if self.noise == "online":
            sigma2 = self._sym("sigma2", None, self.sigma2)
            land = ss.LinearRegression(H, sigma2, self.theta_star)  # σ², θ*
            return opt, land, ss.MinibatchNoise(self._sym("S", None, self.S))
        y = [self._sym("y", i, v) for i, v in enumerate(self.y)]
        X = self.X if self.kind == "decimal" else sp.Matrix(self.X)
        land = ss.LinearRegression.from_data(X, y)
        noise = ss.MinibatchNoise(self.S, dataset_size=len(self.y), replacement=self.replacement)
        return opt, land, noise

    def values(self) -> dict:
        """Values of the symbols (by name)."""
        out = {}
        for (role, index), s in self.symbols.items():
            if role in ("H", "C", "P"):
                i, j = index
                out[s.name] = getattr(self, role)[i][j]
            elif role == "y":
                out[s.name] = self.y[index]
            else:
                out[s.name] = {"mu": self.mu, "gamma": self.gamma, "sigma2": self.sigma2}.get(
                    role, self.S
                )
        return out

    # -- the oracle's view -------------------------------------------------------------------
    def _noise_model(self):
        """(H, G = H + γI, Q0, L) of the oracle (independent of λ; computed once)."""
        cached = self.__dict__.get("_cached_noise")
        if cached is not None:
            return cached
        d, gamma = self.d, float(self.gamma)
        if self.noise == "finite":
            X, y = as_float(self.X), np.array([float(v) for v in self.y])
            Q0, L, _, H = ok.finite_data_noise(X, y, gamma, self.S, self.replacement)
        else:
            H = as_float(self.H)
            if self.noise == "additive":
                Q0, L = ok.additive_noise(as_float(self.C))
            else:
                star = np.zeros(d) if self.theta_star is None else np.array(self.theta_star, float)
                b = -gamma * np.linalg.solve(H + gamma * np.eye(d), star)
                Q0, L = ok.online_regression_noise(H, float(self.sigma2), self.S, b)
        self.__dict__["_cached_noise"] = out = (H, H + gamma * np.eye(d), Q0, L)
        return out

    def oracle(self, lr: float, solve: bool = True):
        """(Σ_θ or None if unstable or not asked for, spectral radius of the second-moment map)
        at ``lr``."""
        d = self.d
        mu = float(self.mu)
        _, G, Q0, L = self._noise_model()
        P = {
            "preconditioned": as_float(self.P) if self.P is not None else None,
            "newton": np.linalg.inv(G),
        }.get(self.optimizer, np.eye(d))
        rule = {
            "heavyball": lambda: ok.heavy_ball_rule(lr, mu, P),
            "nesterov": lambda: ok.nesterov_rule(lr, mu, P),
        }.get(self.optimizer, lambda: ok.sgd_rule(lr, P))()
        M, B, K = ok.state_space(rule, G)
        rho = ok.spectral_radius(M, B, K, L)
        if rho >= 1 or not solve:
            return None, rho
        Sz = ok.stationary_state(M, B, K, Q0, L)
        return Sz[:d, :d], rho

    def edge(self) -> float:
        """The oracle's stability edge in λ."""
        _, G, _, _ = self._noise_model()
        P = as_float(self.P) if self.optimizer == "preconditioned" else np.eye(self.d)
        if self.optimizer == "newton":
            P = np.linalg.inv(G)
        top = max(np.linalg.eigvals(P @ G).real)
        upper = 2 * (1 + float(self.mu)) / top * 1.01  # beyond it even the mean diverges
        return ok.stability_edge(lambda lr: self.oracle(lr, solve=False)[1], upper)

    def __repr__(self) -> str:
        shown = {
            k: v
            for k, v in vars(self).items()
            if v is not None and not k.startswith("_") and not (k in ("mu", "gamma") and v == 0)
        }
        return "Problem(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


# -- drawing problems --------------------------------------------------------------------------

_SYMBOL_ROLES = {
    # entry that may become a symbol in the partly symbolic kind -> noises it applies to
    "H_diag": ("additive", "online"),
    "H_off": ("additive", "online"),
    "C_diag": ("additive",),
    "sigma2": ("online",),
    "S": ("online",),
    "y": ("finite",),
    "mu": ("any",),
    "gamma": ("any",),
}


def build(
    seed: int,
    d: int,
    optimizer: str,
    noise: str,
    kind: str,
    replacement: bool = True,
    roles: tuple = (),
) -> Problem:
    rng = np.random.default_rng(seed)
    q = lambda x: quantize(x, kind)  # noqa: E731
    kind_values = "decimal" if kind == "decimal" else "rational"
    p = Problem(d=d, optimizer=optimizer, noise=noise, kind=kind_values)
    if noise == "finite":
        N = int(rng.integers(d + 1, 6))
        for _ in range(100):
            X = [[q(v) for v in row] for row in rng.normal(size=(N, d))]
            if np.linalg.eigvalsh(as_float(X).T @ as_float(X) / N).min() > 0.1:
                break
        p.X, p.y = X, [q(v) for v in rng.normal(size=N)]
        p.replacement = replacement
        p.S = int(rng.integers(1, min(3, N) + 1))
    else:
        p.H = random_spd(rng, d, 0.2, 4.0, kind_values)
        if noise == "additive":
            p.C = random_spd(rng, d, 0.1, 3.0, kind_values)
        else:
            p.sigma2 = q(rng.uniform(0.1, 2.0))
            p.S = int(rng.choice([1, 2, 3, 5]))
    if optimizer in ("heavyball", "nesterov"):
        p.mu = q(rng.uniform(0.05, 0.9))
    if optimizer == "sgd_wd":
        p.gamma = q(rng.uniform(0.05, 0.6))
        if noise == "online":
            p.theta_star = [q(v) for v in rng.normal(size=d)]
    if optimizer == "preconditioned":
        p.P = random_spd(rng, d, 0.3, 2.0, kind_values)
    for role in roles:
        if role == "H_diag":
            p.symbols[("H", (0, 0))] = sp.Symbol("h_0", positive=True)
        elif role == "H_off":
            p.symbols[("H", (0, 1))] = sp.Symbol("h_01", real=True)
        elif role == "C_diag":
            k = d - 1
            p.symbols[("C", (k, k))] = sp.Symbol("c_k", positive=True)
        elif role == "sigma2":
            p.symbols[("sigma2", None)] = sp.Symbol("s_2", positive=True)
        elif role == "S":
            p.symbols[("S", None)] = ss.batch_size
        elif role == "y":
            p.symbols[("y", 0)] = sp.Symbol("y_0", real=True)
        elif role == "mu":
            p.symbols[("mu", None)] = ss.momentum
        elif role == "gamma":
            p.symbols[("gamma", None)] = ss.weight_decay
    return p


def roles_for(problem_noise: str, optimizer: str, d: int) -> list[str]:
    out = []
    for role, noises in _SYMBOL_ROLES.items():
        if "any" not in noises and problem_noise not in noises:
            continue
        if role == "H_off" and d < 2:
            continue
        if role == "mu" and optimizer not in ("heavyball", "nesterov"):
            continue
        if role == "gamma" and optimizer != "sgd_wd":
            continue
        out.append(role)
    return out


@st.composite
def problems(draw, noise: str, dims=(1, 2, 3), kinds=KINDS, optimizers=OPTIMIZERS):
    d = draw(st.sampled_from(dims))
    optimizer = draw(st.sampled_from(optimizers))
    kind = draw(st.sampled_from(kinds))
    replacement = draw(st.booleans()) if noise == "finite" else True
    roles: tuple = ()
    if kind == "partial":
        options = roles_for(noise, optimizer, d)
        roles = (draw(st.sampled_from(options)),)
    seed = draw(st.integers(0, 2**32 - 1))
    return build(seed, d, optimizer, noise, kind, replacement, roles)


fractions_of_edge = st.floats(0.05, 0.9)


# -- the check ---------------------------------------------------------------------------------


def as_array(value) -> np.ndarray:
    m = value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])
    return np.array(m.evalf(30), dtype=float)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got = np.asarray(got, dtype=float).reshape(want.shape)
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= RTOL * max(scale, 1e-300), (
        f"{what}: max error {err:.3g} relative to largest entry {scale:.3g}\n"
        f"library:\n{got}\noracle:\n{want}"
    )


def check(problem: Problem, frac: float, beyond: float = 0.3, lr: float | None = None) -> None:
    """Compare the library with the oracle at λ = ``frac`` × the oracle's stability edge (or at
    ``lr``), and check that λ = (1 + ``beyond``) × edge is refused when the oracle finds it
    unstable."""
    edge = problem.edge()
    lr = frac * edge if lr is None else lr
    want, rho = problem.oracle(lr)
    assert want is not None and rho < 1
    values = problem.values()
    floats = {k: float(v) for k, v in values.items()}
    if problem.kind == "rational" and not problem.symbols and frac < 0.5:
        # all-numeric: the learning rate is a rational number inside the stable region
        problem.lr = sp.Rational(Fraction(lr).limit_denominator(10**6))
        want, _ = problem.oracle(float(problem.lr))
        result = ss.stationary(*problem.library())
        assert_close(as_array(result.cov), want, f"cov of {problem!r}")
        bad = sp.Rational(Fraction(edge * (1 + beyond)).limit_denominator(10**6))
        if problem.oracle(float(bad), solve=False)[1] > 1:
            problem.lr = bad
            with pytest.raises(ss.UnstableError):
                ss.stationary(*problem.library())
        return
    result = ss.stationary(*problem.library())
    _, _, Q0, L = problem._noise_model()
    if not (Q0.any() or L.any()):  # e.g. the whole data set as the batch: no noise, Σ = 0
        assert not problem.symbols
        assert_close(as_array(result.cov), want, f"noiseless {problem!r}")
        return
    f = result.lambdify()
    got = f(**{"lr": lr}, **floats)
    assert_close(got, want, f"lambdify() at lr={lr!r}, {floats} of {problem!r}")
    if problem.d <= 2 and problem.kind != "decimal" and frac < 0.3:
        exact = {k: sp.Rational(v) for k, v in values.items()}
        rational_lr = sp.Rational(Fraction(lr).limit_denominator(10**6))
        want_r, _ = problem.oracle(float(rational_lr))
        got_r = as_array(result.subs({"lr": rational_lr, **exact}).cov)
        assert_close(got_r, want_r, f"subs() at lr={rational_lr}, {exact} of {problem!r}")
    bad = edge * (1 + beyond)
    if problem.oracle(bad, solve=False)[1] > 1:
        with pytest.raises(ss.UnstableError):
            f(**{"lr": bad}, **floats)


# -- the oracle checks itself ------------------------------------------------------------------


def test_oracle_online_noise_matches_monte_carlo():
    """(AUA + Tr(AU)A + σ²A)/S against sampled per-sample gradients, within 5 standard errors."""
    rng = np.random.default_rng(11)
    d, n = 3, 400_000
    R = rng.normal(size=(d, d))
    A = R @ R.T / d + 0.3 * np.eye(d)
    R = rng.normal(size=(d, d))
    U = R @ R.T / d
    sigma2 = 0.7
    x = rng.multivariate_normal(np.zeros(d), A, size=n)
    u = rng.multivariate_normal(np.zeros(d), U, size=n)
    eps = rng.normal(size=n) * np.sqrt(sigma2)
    g = x * ((x * u).sum(1) - eps)[:, None] - u @ A  # per-sample gradient minus its mean
    outer = g[:, :, None] * g[:, None, :]
    empirical, se = outer.mean(0), outer.std(0) / np.sqrt(n)
    # offset form: the oracle's Q0 with b and Σ = 0 must equal the Σ-part with U = bbᵀ + Σ
    Q0, L = ok.online_regression_noise(A, sigma2, 1, np.zeros(d))
    formula = Q0 + (L @ U.reshape(-1)).reshape(d, d)
    assert np.abs((empirical - formula) / se).max() < 5
    w = rng.normal(size=d)
    Qb, _ = ok.online_regression_noise(A, sigma2, 2, w)
    Qs = ok.online_regression_noise(A, sigma2, 2, np.zeros(d))
    assert np.allclose(Qb, Qs[0] + (Qs[1] @ np.outer(w, w).reshape(-1)).reshape(d, d))


@pytest.mark.parametrize("replacement", [True, False])
def test_oracle_sampling_design_matches_enumeration(replacement):
    """Cov(n_i, n_j) and the whole minibatch noise against listing every batch."""
    rng = np.random.default_rng(5)
    for N in range(1, 6):
        for S in range(1, (4 if replacement else N) + 1):
            if S > N and not replacement:
                continue
            W = ok.count_covariance_by_enumeration(S, N, replacement)
            assert np.allclose(ok.count_covariance(S, N, replacement), W, atol=1e-13)
    # the noise of every batch, averaged, against the design formula
    N, d, S, gamma = 5, 2, 2, 0.3
    X, y = rng.normal(size=(N, d)), rng.normal(size=N)
    Sigma = np.array([[0.5, 0.1], [0.1, 0.3]])
    Q0, L, theta_g, H = ok.finite_data_noise(X, y, gamma, S, replacement)
    batches = (
        list(itertools.product(range(N), repeat=S))
        if replacement
        else list(itertools.combinations(range(N), S))
    )
    full = lambda idx: sum(np.outer(X[i], X[i]) for i in idx) / len(idx)  # noqa: E731
    shift = lambda idx: sum(X[i] * (y[i] - X[i] @ theta_g) for i in idx) / len(idx)  # noqa: E731
    want = np.zeros((d, d))
    for batch in batches:
        D = full(batch) - full(range(N))
        e = shift(batch) - shift(range(N))
        want += D @ Sigma @ D.T + np.outer(e, e)
    want /= len(batches)
    assert np.allclose(Q0 + (L @ Sigma.reshape(-1)).reshape(d, d), want, atol=1e-13)
    # θ_γ is the weight-decayed minimiser: the full gradient vanishes there
    assert np.allclose(H @ theta_g - X.T @ y / N + gamma * theta_g, 0)


def test_oracle_state_space_against_simulation():
    """The probed Nesterov recursion reproduces a direct run of the update rule."""
    rng = np.random.default_rng(3)
    d, lr, mu = 2, 0.2, 0.6
    G = np.array([[1.5, 0.3], [0.3, 0.7]])
    rule = ok.nesterov_rule(lr, mu, np.eye(d))
    M, B, K = ok.state_space(rule, G)
    z = rng.normal(size=2 * d)
    xi = rng.normal(size=d)
    theta, prev = z[:d], z[d:]
    y = theta + mu * (theta - prev)
    step = np.concatenate([y - lr * (G @ y + xi), theta])
    assert np.allclose(M @ z + B @ xi, step)
    assert np.allclose(K @ z, y)


# -- the properties ----------------------------------------------------------------------------

ISSUE9_H = [[0.572, 0.002, -0.516], [0.002, 2.084, -1.471], [-0.516, -1.471, 4.171]]
ISSUE9_C = [[5.02, -2.199, -0.025], [-2.199, 1.804, -0.751], [-0.025, -0.751, 0.718]]


def test_issue9_decimal_sgd_d3_regression():
    """The 3×3 decimal problem of issue 9 at λ = 0.15 (the library returned a wrong [0, 1])."""
    p = Problem(d=3, optimizer="sgd", noise="additive", kind="decimal", H=ISSUE9_H, C=ISSUE9_C)
    want, rho = p.oracle(0.15)
    assert rho < 1
    result = ss.stationary(*p.library())
    assert_close(result.lambdify()(lr=0.15), want, "issue 9 example")


@settings_for(16)
@given(seed=st.integers(0, 2**32 - 1), frac=fractions_of_edge)
@example(seed=-1, frac=0.5)
def test_decimal_d3_sgd_additive_symbolic_lr(seed, frac):
    """The family where issue 9's bug lived: SGD, 3×3 decimal H and C, symbolic λ."""
    if seed == -1:  # the issue's own example, at its λ = 0.15
        p = Problem(d=3, optimizer="sgd", noise="additive", kind="decimal", H=ISSUE9_H, C=ISSUE9_C)
        check(p, frac, lr=0.15)
    else:
        check(build(seed, 3, "sgd", "additive", "decimal"), frac)


@settings_for(210)
@given(problem=problems("additive", dims=(1, 2)), frac=fractions_of_edge)
def test_additive_noise(problem, frac):
    check(problem, frac)


@settings_for(12)
@given(problem=problems("additive", dims=(3,)), frac=fractions_of_edge)
def test_additive_noise_d3(problem, frac):
    check(problem, frac)


@settings_for(40)
@given(problem=problems("online", dims=(1, 2)), frac=fractions_of_edge)
def test_online_minibatch(problem, frac):
    check(problem, frac)


@settings_for(20)
@given(problem=problems("finite", dims=(1, 2)), frac=fractions_of_edge)
def test_finite_data_minibatch(problem, frac):
    check(problem, frac)


# d = 3 with minibatch noise: exact rationals only (decimal or partly symbolic d = 3 minibatch
# problems take 10-250 s each to derive)
@settings_for(3)
@given(problem=problems("online", dims=(3,), kinds=("rational",)), frac=fractions_of_edge)
def test_online_minibatch_d3(problem, frac):
    check(problem, frac)


@settings_for(3)
@given(problem=problems("finite", dims=(3,), kinds=("rational",)), frac=fractions_of_edge)
def test_finite_data_minibatch_d3(problem, frac):
    check(problem, frac)


if __name__ == "__main__":  # timing of each family, for choosing max_examples
    import sys

    noises = sys.argv[1].split(",") if len(sys.argv) > 1 else ("additive", "online", "finite")
    dims = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else (1, 2, 3)
    kinds = sys.argv[3].split(",") if len(sys.argv) > 3 else KINDS
    for noise in noises:
        for d in dims:
            for opt in OPTIMIZERS:
                for kind in kinds:
                    roles = tuple(roles_for(noise, opt, d)[:1]) if kind == "partial" else ()
                    p = build(1, d, opt, noise, kind, True, roles)
                    t = time.time()
                    try:
                        check(p, 0.3)
                        status = "ok"
                    except (AssertionError, pytest.fail.Exception) as e:
                        status = "FAIL " + str(e).splitlines()[0][:80]
                    except Exception as e:
                        status = f"ERR {type(e).__name__}: {str(e)[:80]}"
                    print(f"{noise:8} d={d} {opt:14} {kind:8} {time.time() - t:6.2f}s {status}")
