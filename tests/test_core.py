"""Exact derivations: defining-equation residuals, independent numeric oracles, published closed
forms (as references only), limits, conditions and errors."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symsgd as ss
from symsgd.catalogue import CATALOGUE, a, c, ema, h, nu, p
from symsgd.landscapes import symmetric_matrix
from symsgd.moments import spectral_radius
from tests.oracles import additive_cov, gaussian_minibatch_cov

lam, mu = ss.lr, ss.momentum


def residual(result: ss.Stationary) -> sp.Matrix:
    """Σ_z − MΣ_zMᵀ − B Q(KΣ_zKᵀ) Bᵀ for the result's own recursion, cancelled."""
    r = result.recursion
    S = sp.Matrix(result.state_cov)
    Q = r.noise_cov(sp.Matrix(r.K) * S * sp.Matrix(r.K).T)
    R = S - r.M * S * r.M.T - r.B * Q * r.B.T
    return R.applyfunc(lambda e: sp.cancel(sp.together(e)))


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda c_: c_.name)
def test_residual_of_defining_equation_is_zero(case):
    result = case.derive()
    assert residual(result) == sp.zeros(*result.state_cov.shape)


def _oracle(case, values):
    """Var θ at ``values`` from the hand-typed state-space oracle."""
    name = case.name.replace("-weight-decay", "").replace("-minibatch", "")
    lr_ = float(values[lam])
    kw = {}
    if name in ("heavy-ball", "nesterov", "qhm"):
        kw["mu"] = float(values[mu])
    if name == "qhm":
        kw["nu"] = float(values[nu])
    if name.startswith("ema-"):
        kw["ema"] = float(values[ema])
    if name == "adam":
        kw["beta1"] = float(values[ss.beta1])
        kw["P"] = np.array([[1 / (np.sqrt(float(values[c])) + float(values[ss.eps]))]])
    if name == "preconditioned":
        kw["P"] = np.array([[float(values[p])]])
    if name == "damped-newton":
        kw["P"] = np.array([[1 / float(values[h])]])
    if name == "natural-gradient":
        kw["P"] = np.array([[1 / float(values[c])]])
    if ss.weight_decay in values:
        kw["wd"] = float(values[ss.weight_decay])
    if "minibatch" in case.name:
        A = np.array([[float(values[a])]])
        s2 = float(values[ss.label_noise]) ** 2
        return gaussian_minibatch_cov(name, A, s2, float(values[ss.batch_size]), lr_, **kw)
    H = np.array([[float(values[h])]])
    C = np.array([[float(values[c])]])
    return additive_cov(name, H, C, lr_, **kw)


def _random_stable_point(case, result, rng):
    """A random parameter point (around the catalogue one) inside the derived conditions."""
    for _ in range(1000):
        values = {}
        for s, v in case.params.items():
            if s == ss.batch_size:
                values[s] = int(rng.integers(1, 9))
            elif s in (mu, ss.beta1):
                values[s] = float(rng.uniform(0.0, 0.95))
            else:
                values[s] = float(v * rng.uniform(0.3, 2.0))
        if bool(result.conditions.subs(values)):
            return values
    raise AssertionError("no stable point found")


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda c_: c_.name)
def test_matches_independent_numeric_solution(case, rng):
    result = case.derive()
    f = result.lambdify()
    for _ in range(5):
        values = _random_stable_point(case, result, rng)
        got = f(**{str(k): v for k, v in values.items()})
        want = _oracle(case, values)[0, 0]
        assert np.isclose(got, want, rtol=1e-9), (values, got, want)


def test_published_sgd_and_heavy_ball_closed_forms():
    """REFERENCES.md 1 and 2, scalar and commuting forms (references, not sources)."""
    sgd = ss.stationary(ss.SGD(lam), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
    assert sp.cancel(sgd.cov - lam * c / (h * (2 - lam * h))) == 0
    hb = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sp.cancel(hb.cov - lam / (1 - mu) * c / (h * (2 - lam * h / (1 + mu)))) == 0
    assert sp.cancel(sgd.continuous_time().cov - lam * c / (2 * h)) == 0


def test_published_online_regression_closed_form():
    """REFERENCES.md 3 for an explicit 2×2 input covariance (numeric A, symbolic λ, S, σ)."""
    A = sp.Matrix([[2, 1], [1, 3]]) / 2
    S, s = ss.batch_size, ss.label_noise
    result = ss.stationary(
        ss.SGD(lam), ss.LinearRegression(A, label_variance=s**2), ss.MinibatchNoise(S)
    )
    G = 2 * sp.eye(2) - lam * (1 + 1 / S) * A
    Ginv = G.inv()
    kappa = (A * Ginv).trace()
    reference = lam * s**2 / (S - lam * kappa) * Ginv
    diff = (result.cov - reference).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(2, 2)


def test_small_learning_rate_limit_is_continuous_time():
    for case in CATALOGUE:
        result = case.derive()
        ratio = sp.limit(result.cov / result.continuous_time().cov, lam, 0)
        assert sp.cancel(ratio) == 1, case.name


def test_series_leading_term():
    sgd = ss.stationary(ss.SGD(lam), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sp.expand(sgd.series(n=3) - (lam * c / (2 * h) + lam**2 * c / 4)) == 0


def test_velocity_and_cross_covariances_agree_with_the_state():
    """velocity_cov is derived from θ_{t+1} − θ_t; for momentum the state holds θ_{t−1} too,
    so VΣ_zVᵀ is a second, independent route."""
    hb = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    S = hb.state_cov
    via_state = S[0, 0] - 2 * S[0, 1] + S[1, 1]
    assert sp.cancel(hb.velocity_cov - via_state) == 0
    assert sp.cancel(hb.cross_cov - (S[0, 0] - S[0, 1])) == 0
    # SGD: v = θ_{t+1} − θ_t, E v² = 2(Var θ − Cov(θ_{t+1}, θ_t))
    sgd = ss.stationary(ss.SGD(lam), ss.Quadratic(h), ss.AdditiveNoise(c))
    assert sp.cancel(sgd.velocity_cov - 2 * (sgd.cov - sgd.autocov(1))) == 0


def test_autocov_symbolic_lag():
    sgd = ss.stationary(ss.SGD(lam), ss.Quadratic(h), ss.AdditiveNoise(c))
    k = sp.Symbol("k", integer=True, nonnegative=True)
    assert sp.simplify(sgd.autocov(k) - (1 - lam * h) ** k * sgd.cov) == 0
    hb = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    values = {lam: sp.Rational(1, 3), mu: sp.Rational(1, 2), h: 1, c: 1}
    M = np.array([[1.5 - 1 / 3, -0.5], [1, 0]])
    S = np.array(hb.state_cov.subs(values), dtype=float)
    assert np.isclose(float(hb.autocov(3).subs(values)), (np.linalg.matrix_power(M, 3) @ S)[0, 0])


def test_conditions_agree_with_numeric_spectral_radius(rng):
    for case in CATALOGUE:
        result = case.derive()
        for _ in range(30):
            values = {}
            for s, v in case.params.items():
                if s == ss.batch_size:
                    values[s] = int(rng.integers(1, 5))
                elif s in (mu, ss.beta1):
                    values[s] = float(rng.uniform(0, 0.99))
                else:
                    values[s] = float(v * rng.uniform(0.2, 5.0))
            rho = spectral_radius(result.recursion, values)
            if abs(rho - 1) < 1e-6:
                continue
            assert bool(result.conditions.subs(values)) == (rho < 1), (case.name, values, rho)


def test_minibatch_stability_is_stricter_than_additive():
    """1-D online regression, S = 1: the learning-rate limit is 2/(3a), well below 2/a."""
    result = ss.stationary(
        ss.SGD(lam), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise(1)
    )
    edge = sp.solve(sp.Eq(result.denominator, 0), lam)
    assert sp.Rational(2, 3) / a in edge
    with pytest.raises(ss.UnstableError, match="lambda"):
        result.subs(lr=0.9, a=1)


def test_unstable_parameters_raise_with_the_condition():
    result = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    with pytest.raises(ss.UnstableError) as err:
        result.subs(lr=2.3, momentum=0.1, h=1)
    assert "h*lambda < 2*mu + 2" in str(err.value)
    f = result.lambdify()
    with pytest.raises(ss.UnstableError):
        f(lr=[0.1, 5.0], momentum=0.5, h=1.0, c=1.0)
    g = result.lambdify(unstable="nan")
    out = g(lr=[0.1, 5.0], momentum=0.5, h=1.0, c=1.0)
    assert np.isfinite(out[0]) and np.isnan(out[1])
    with pytest.raises(ss.UnstableError, match="spectral radius"):
        ss.stationary(
            ss.SGD(0.7), ss.Quadratic(sp.Matrix([[2, 1], [1, 2]])), ss.AdditiveNoise(sp.eye(2))
        )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ss.Quadratic(sp.Matrix([[1, 2], [0, 1]])), "symmetric"),
        (lambda: ss.Quadratic(sp.Matrix([[1, 2, 3], [2, 1, 0]])), "square"),
        (lambda: ss.AdditiveNoise(sp.Matrix([[1, 0], [0, -1]])), "positive semi-definite"),
        (lambda: ss.stationary(ss.SGD(lam), ss.Quadratic(sp.eye(2)), ss.AdditiveNoise(c)), "shape"),
        (
            lambda: ss.stationary(
                ss.DampedNewton(lam), ss.Quadratic(sp.zeros(2, 2)), ss.AdditiveNoise(sp.eye(2))
            ),
            "singular",
        ),
        (lambda: ss.HeavyBall(lam, 1), "momentum"),
        (lambda: ss.SGD(-1), "lr must be positive"),
        (lambda: ss.MinibatchNoise(0), "batch_size"),
        (
            lambda: ss.stationary(ss.SGD(lam), ss.Quadratic(h), ss.MinibatchNoise()),
            "per-sample gradients",
        ),
        (lambda: ss.LinearRegression(a, label_variance=-1), "variance"),
    ],
)
def test_bad_input_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_lambdify_keywords_aliases_and_unknown_names():
    result = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    f = result.lambdify()
    by_alias = f(lr=0.1, momentum=0.9, h=1.0, c=0.5)
    by_name = f(**{"lambda": 0.1, "mu": 0.9, "h": 1.0, "c": 0.5})
    assert by_alias == by_name
    grid = f(lr=np.linspace(0.01, 0.1, 7)[:, None], momentum=np.array([0.0, 0.5]), h=1.0, c=1.0)
    assert grid.shape == (7, 2)
    with pytest.raises(ValueError, match="unknown parameter"):
        f(lr=0.1, momentum=0.9, h=1.0, c=0.5, q=1)
    with pytest.raises(TypeError, match="missing"):
        f(lr=0.1)
    mp = result.lambdify(backend="mpmath")
    assert abs(float(mp(lr=0.1, momentum=0.9, h=1, c=0.5)) - float(by_alias)) < 1e-12
    both = result.lambdify(("cov", "loss"))(lr=0.1, momentum=0.9, h=1.0, c=0.5)
    assert np.isclose(both["loss"], 0.5 * both["cov"])


def test_matrix_results_lambdify_and_broadcast():
    d = 2
    result = ss.stationary(
        ss.SGD(lam), ss.Quadratic.symbolic(d), ss.AdditiveNoise(symmetric_matrix(d, "c"))
    )
    f = result.lambdify()
    values = {"h_11": 2.0, "h_12": 0.3, "h_22": 1.0, "c_11": 1.0, "c_12": 0.2, "c_22": 0.5}
    out = f(lr=np.array([0.1, 0.2, 0.3]), **values)
    assert out.shape == (3, 2, 2)
    H = np.array([[2.0, 0.3], [0.3, 1.0]])
    C = np.array([[1.0, 0.2], [0.2, 0.5]])
    for k, lr_ in enumerate([0.1, 0.2, 0.3]):
        assert np.allclose(out[k], additive_cov("sgd", H, C, lr_), rtol=1e-10)


def test_subs_keeps_exactness_and_names():
    result = ss.stationary(ss.SGD(lam), ss.Quadratic(h), ss.AdditiveNoise(c))
    half = result.subs(lr=sp.Rational(1, 2), h=1)
    assert half.cov == c / 3
    assert half.values[lam] == sp.Rational(1, 2)


def test_subs_applies_to_conditions_and_fixes_them_once_every_value_is_given():
    result = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    partial = result.subs(momentum=sp.Rational(1, 2))
    assert mu not in partial.conditions.free_symbols
    # the remaining condition is λh < 3 and nothing else
    assert partial.conditions.subs({lam: sp.Rational(29, 10), h: 1}) == sp.true
    assert partial.conditions.subs({lam: sp.Rational(31, 10), h: 1}) == sp.false
    assert result.subs(lr=1, momentum=sp.Rational(1, 2), h=1).conditions == sp.true


def test_unstable_error_advice_is_derived_from_the_violated_condition():
    sgd = ss.stationary(ss.SGD(lam), ss.LinearRegression(a, label_variance=1), ss.MinibatchNoise())
    with pytest.raises(ss.UnstableError, match="raise the batch size S") as info:
        sgd.subs(lr=1, a=1, batch_size=1)
    assert "Lower the learning rate" in str(info.value)
    hb = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic(h), ss.AdditiveNoise(c))
    with pytest.raises(ss.UnstableError, match="raise the momentum mu"):
        hb.subs(lr=3, momentum=sp.Rational(1, 10), h=1)
    # plain SGD: nothing about momentum or batch size
    plain = ss.stationary(ss.SGD(lam), ss.Quadratic(h), ss.AdditiveNoise(c))
    with pytest.raises(ss.UnstableError) as info:
        plain.subs(lr=3, h=1)
    assert "momentum" not in str(info.value) and "batch" not in str(info.value)


def test_on_modes_loss_is_the_total_over_the_modes():
    values = {lam: sp.Rational(1, 10), ss.batch_size: 2}
    coupled = ss.stationary(
        ss.SGD(lam), ss.LinearRegression.commuting(a, label_variance=1), ss.MinibatchNoise()
    )
    explicit = ss.stationary(
        ss.SGD(lam), ss.LinearRegression(sp.diag(1, 2), label_variance=1), ss.MinibatchNoise()
    )
    assert coupled.subs(values).on_modes([1, 2], "loss") == explicit.subs(values).loss
    additive = ss.stationary(ss.SGD(lam), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
    explicit = ss.stationary(
        ss.SGD(lam), ss.Quadratic(sp.diag(1, 2)), ss.AdditiveNoise(sp.diag(c, c))
    )
    got = additive.subs({lam: sp.Rational(1, 10)}).on_modes([1, 2], "loss")
    assert sp.cancel(got - explicit.subs({lam: sp.Rational(1, 10)}).loss) == 0


def test_canonical_keeps_a_rational_constant_out_of_a_lone_factor():
    from symsgd.exact import canonical

    expr = (sp.Rational(29, 2) - sp.Rational(797, 80) * lam) / (40 - 59 * lam)
    out = canonical(expr)
    assert sp.cancel(out - expr) == 0
    num, den = sp.fraction(out)
    assert num == 1160 - 797 * lam and den == 80 * (40 - 59 * lam)


@pytest.mark.parametrize("what", ["cov", "velocity_cov", "cross_cov", "noise_cov", "loss"])
def test_latex_of_every_readout_of_an_eigen_mode_result(what):
    result = ss.stationary(ss.HeavyBall(lam, mu), ss.Quadratic.commuting(h), ss.AdditiveNoise(c))
    text = result.latex(what=what)
    if what == "loss":  # a per-mode scalar
        assert "h" in text and "H" not in text
    else:  # matrix functions of H and C
        assert "C" in text and " h" not in text
    with pytest.raises(ValueError, match="must be one of"):
        result.latex(what="covariance")


def test_conditions_of_a_diagonal_problem_come_block_by_block_at_any_dimension():
    d = 8
    land = ss.Quadratic.diagonal(d)
    cs = sp.symbols(f"c_1:{d + 1}", positive=True)
    result = ss.stationary(ss.SGD(lam), land, ss.AdditiveNoise(sp.diag(*cs)))
    assert result.conditions_complete
    hs = [land.hessian[k, k] for k in range(d)]
    assert result.conditions == sp.And(*[sp.StrictLessThan(lam * hk, 2) for hk in hs])


def test_too_large_mean_square_criterion_falls_back_to_the_mean_recursion():
    A = sp.diag(*sp.symbols("a_1:3", positive=True))
    result = ss.stationary(
        ss.HeavyBall(lam, mu), ss.LinearRegression(A, label_variance=1), ss.MinibatchNoise()
    )
    assert not result.conditions_complete
    # necessary: Schur stability of the mean recursion, mode by mode
    assert result.conditions.subs({mu: 0, lam: 1, A[0, 0]: 1, A[1, 1]: 3}) == sp.false
    # and the numeric check still uses the full spectral radius of the second-moment map
    with pytest.raises(ss.UnstableError, match="spectral radius"):
        result.subs(lr=sp.Rational(19, 10), momentum=0, a_1=1, a_2=1, batch_size=1)


def test_numeric_problems_are_decided_by_the_spectral_radius():
    """Float problems with a large state: Hurwitz minors of a float characteristic polynomial
    would cancel catastrophically; the spectral radius decides instead."""
    rng = np.random.default_rng(5)
    R = rng.normal(size=(5, 5))
    H = R @ R.T / 5 + np.eye(5)
    C = np.eye(5) + 0.1 * np.ones((5, 5))
    top = float(np.max(np.linalg.eigvalsh(H)))
    lr_, mu_ = 0.9 * 2 * 1.9 / top, 0.9  # close to the edge λh < 2(1 + μ)
    result = ss.stationary(
        ss.HeavyBall(lr_, mu_), ss.Quadratic(sp.Matrix(H)), ss.AdditiveNoise(sp.Matrix(C))
    )
    assert result.conditions == sp.true
    want = additive_cov("heavy-ball", H, C, lr_, mu=mu_)
    assert np.allclose(np.array(result.cov, dtype=float), want, rtol=1e-8)
    with pytest.raises(ss.UnstableError, match="spectral radius"):
        ss.stationary(
            ss.HeavyBall(1.05 * 2 * 1.9 / top, mu_),
            ss.Quadratic(sp.Matrix(H)),
            ss.AdditiveNoise(sp.Matrix(C)),
        )


def test_floats_among_symbols_are_read_as_their_decimals():
    result = ss.stationary(ss.SGD(lam, weight_decay=0.3), ss.Quadratic(h), ss.AdditiveNoise(c))
    exact = ss.stationary(
        ss.SGD(lam, weight_decay=sp.Rational(3, 10)), ss.Quadratic(h), ss.AdditiveNoise(c)
    )
    assert sp.cancel(result.cov - exact.cov) == 0
    assert not result.cov.atoms(sp.Float)
