r"""Simulation of general models: the linearised local problem and the real nonlinear dynamics.

**The order of the departure (derived here, checked below).**  Near a minimum θ* write
:math:`\delta = \theta - \theta_*` and expand the minibatch gradient to third order,
:math:`\hat g(\theta) = \hat g_B + \hat H_B\delta + \tfrac12\hat T_B[\delta, \delta] +
\tfrac16\hat Q_B[\delta, \delta, \delta]`, with mean :math:`\mathbb E\hat g_B = 0`.  The
linearised dynamics (the first two terms) has :math:`\Sigma_\text{lin} = O(\lambda)` and third
moments :math:`O(\lambda^2)` (the noise is skewed at O(1) and summed over a relaxation time
:math:`1/\lambda` with weights :math:`\lambda^3`).  For SGD :math:`\delta' = \delta -
\lambda\hat g(\theta)`:

* the stationary mean solves :math:`\mathbb E\hat g(\theta) = 0`:
  :math:`Hm + \tfrac12T{:}\Sigma + O(\lambda^2) = 0`, so
  :math:`m = -\tfrac12H^{-1}T{:}\Sigma_\text{lin} + O(\lambda^2)` — first order in λ, with that
  coefficient;
* the second moment obeys :math:`0 = -\lambda(H\Sigma + \Sigma H) + \lambda^2\,\mathbb E\hat g\hat
  g^\top - \lambda\,\mathbb E[\delta\,(\tfrac12\hat T[\delta,\delta])^\top + \text{h.c.}] + \dots`;
  the new terms are λ times third moments (:math:`O(\lambda^2)`, the mean shift included) or
  fourth moments (:math:`O(\lambda^2)`), i.e. :math:`O(\lambda^3)` against the :math:`O(\lambda^2)`
  of the linear terms: :math:`\Sigma_\text{nl} - \Sigma_\text{lin} = O(\lambda^2)`, a *relative*
  departure of order λ (log-log slope 1).

The departures are measured with common random numbers: the linearised and nonlinear runs with the
same seed draw the same minibatches, and their per-chain difference has a small spread.
"""

import numpy as np
import pytest
import sympy as sp

import symsgd as ss
from symsgd import models
from symsgd.sampling import prepare

# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


def _tanh_model(N: int = 16):
    rng = np.random.default_rng(0)
    x = 2 * rng.normal(size=N)
    y = 1.5 * np.tanh(0.5 * x) + 0.3 * rng.normal(size=N)
    model = models.two_layer_tanh(np.c_[x, y])
    return model, model.minimum(start=[0.5, 1.5])


def _logistic_model(N: int = 24):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, 2))
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ [1.0, -0.5]))).astype(int)
    model = models.logistic_regression(X.tolist(), y.tolist(), l2=sp.Rational(1, 10))
    return model, model.minimum(start=[0.0, 0.0])


def _double_well(N: int = 16):
    rng = np.random.default_rng(1)
    x = 1 + 0.5 * rng.random(N)
    y = x + 0.5 * rng.normal(size=N)
    model = models.double_well(np.c_[x, y])
    return model, model.minimum(start=[1.0])


@pytest.fixture(scope="module")
def tanh():
    model, star = _tanh_model()
    return model, star, model.near(star)


@pytest.fixture(scope="module")
def logistic():
    model, star = _logistic_model()
    return model, star, model.near(star)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over chains of the per-chain difference b − a."""
    diff = b - a
    return diff.mean(axis=0), diff.std(axis=0, ddof=1) / np.sqrt(diff.shape[0])


def _third_derivatives(model, star) -> np.ndarray:
    r""":math:`T_{abc} = \partial^3 L/\partial\theta_a\partial\theta_b\partial\theta_c` at θ*
    (sympy, independently of the library's compiled functions)."""
    d = model.dim
    theta = [float(v) for v in star]
    data = np.array(model.data, dtype=float)
    T = np.zeros((d, d, d))
    for a in range(d):
        for b in range(d):
            for c in range(d):
                expr = sp.diff(model.loss_expr, model.params[a], model.params[b], model.params[c])
                f = sp.lambdify([*model.params, *model.inputs], expr, modules="numpy")
                values = f(*theta, *data.T)
                T[a, b, c] = np.mean(np.broadcast_to(values, (data.shape[0],)))
    return T


def _slope(lrs, values, stderrs) -> tuple[float, float]:
    """Weighted least-squares slope of log value against log λ and its standard error."""
    x = np.log(np.asarray(lrs))
    y = np.log(np.asarray(values))
    w = (np.asarray(values) / np.asarray(stderrs)) ** 2  # 1 / var(log value)
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - np.sum(w * y) / np.sum(w))) / sxx
    return float(slope), float(1 / np.sqrt(sxx))


# ---------------------------------------------------------------------------------------------
# 1. the linearised local problem: exact theory against the simulated linearised dynamics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["tanh", "logistic"])
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("optimizer", ["sgd", "heavy-ball"])
def test_linearised_crosscheck(which, replacement, optimizer, request):
    _model, _star, local = request.getfixturevalue(which)
    if optimizer == "sgd":
        opt, params = ss.SGD(ss.lr), {ss.lr: 0.8}
    else:
        opt, params = ss.HeavyBall(ss.lr, ss.momentum), {ss.lr: 0.5, ss.momentum: 0.5}
    noise = ss.MinibatchNoise(3, replacement=replacement)
    result = ss.stationary(opt, local, noise)
    report = ss.crosscheck(result, params, rel_se=0.01, seed=1)
    assert report.passed, str(report)
    assert [row.name for row in report.table][-1] == "loss"  # L* + ½Tr(HΣ) is compared


def test_linearised_crosscheck_detects_a_wrong_covariance(tanh):
    """The check can fail: the linearised law with the wrong sampling design (with instead of
    without replacement, batches of 12 of the 16 samples) is flagged against the real design."""
    _model, _star, local = tanh
    wrong = ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(12, replacement=True))
    report = ss.crosscheck(
        wrong,
        {ss.lr: 0.8},
        problem=(ss.SGD(ss.lr), local, ss.MinibatchNoise(12, replacement=False)),
    )
    assert report.verdict == "failed", str(report)


def test_local_oracle_is_the_linearisation(tanh):
    """The linearised oracle: with the whole data set as the batch it is H(θ − θ*) exactly; one
    sample at a time its mean over all N samples is the same."""
    model, star, local = tanh
    full = prepare(ss.SGD(ss.lr), local, ss.MinibatchNoise(16, replacement=False), {"lr": 0.1})
    theta = np.array([float(v) for v in star])[:, None] + np.array([[0.1, -0.2], [0.3, 0.05]])
    g = full.oracle.make(np.random.default_rng(0), 2)(theta)
    H = np.array(local.hessian, dtype=float)
    expected = H @ (theta - np.array([float(v) for v in star])[:, None])
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-13)
    nonlinear = ss.sampling.nonlinear(full).oracle.make(np.random.default_rng(0), 2)(theta)
    exact = np.stack([model.gradient(theta[:, c]) for c in range(2)], axis=1)
    np.testing.assert_allclose(nonlinear, exact, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# 2. the real nonlinear dynamics
# ---------------------------------------------------------------------------------------------


def test_quadratic_model_nonlinear_equals_linearised_chain_by_chain():
    """A per-sample loss that is exactly quadratic: the nonlinear dynamics *is* the linearised
    one, and the same seed draws the same minibatches (common random numbers), so every
    chain's averages agree to rounding — for SGD and heavy-ball, with and without replacement."""
    w1, w2, x1, x2, y = sp.symbols("w1 w2 x1 x2 y")
    rng = np.random.default_rng(3)
    data = np.c_[rng.normal(size=(12, 2)), rng.normal(size=12)]
    model = ss.EmpiricalLoss((w1 * x1 + w2 * x2 - y) ** 2 / 2, [w1, w2], [x1, x2, y], data)
    star = model.minimum(start=[0, 0])
    local = model.near(star)
    for opt, params in (
        (ss.SGD(ss.lr), {"lr": 0.3}),
        (ss.HeavyBall(ss.lr, ss.momentum), {"lr": 0.2, "momentum": 0.5}),
    ):
        for replacement in (True, False):
            noise = ss.MinibatchNoise(4, replacement=replacement)
            kw = dict(chains=300, steps=200, burn_in=50, seed=7, per_chain=True)
            a = ss.simulate(opt, local, noise, params, **kw)
            b = ss.simulate(opt, model, noise, params, theta0=star, **kw)
            assert b.dynamics == "nonlinear" and a.dynamics == "linearised"
            assert b.loss is None and a.loss is not None
            scale = np.max(np.abs(a.per_chain.cov))
            np.testing.assert_allclose(b.per_chain.cov, a.per_chain.cov, atol=1e-9 * scale)
            np.testing.assert_allclose(b.per_chain.mean, a.per_chain.mean, atol=1e-9)


def test_full_batch_gradient_descent_stays_at_the_minimum(tanh):
    """With the whole data set as the batch there is no noise: the real dynamics started at the
    minimum stays there (to rounding), a check of the nonlinear gradients at θ*."""
    model, star, _local = tanh
    sim = ss.simulate(
        ss.SGD(ss.lr),
        model,
        ss.MinibatchNoise(16, replacement=False),
        {"lr": 0.5},
        theta0=star,
        chains=4,
        steps=50,
    )
    assert np.max(np.abs(sim.cov)) < 1e-20


@pytest.mark.parametrize("optimizer", ["sgd", "heavy-ball"])
def test_nonlinear_crosscheck_passes_at_small_learning_rate(tanh, optimizer):
    _model, _star, local = tanh
    if optimizer == "sgd":
        opt, params = ss.SGD(ss.lr), {ss.lr: 0.01}
    else:
        opt, params = ss.HeavyBall(ss.lr, ss.momentum), {ss.lr: 0.005, ss.momentum: 0.5}
    result = ss.stationary(opt, local, ss.MinibatchNoise(4))
    # velocity_cov departs at the same relative order λ but its standard error is ~100 times
    # smaller (fresh noise every step): at λ = 0.01 its O(λ) departure is resolved (the next
    # test), so the covariance is compared here
    report = ss.crosscheck(
        result, params, dynamics="nonlinear", quantities=("cov",), chains=400, steps=20000, seed=2
    )
    assert report.passed, str(report)
    assert "nonlinear" in report.problem


def test_nonlinear_crosscheck_notes_the_loss_and_sees_the_velocity_departure(tanh):
    _model, _star, local = tanh
    result = ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(4))
    report = ss.crosscheck(result, {ss.lr: 0.05}, dynamics="nonlinear", rel_se=0.01, seed=2)
    assert [row.quantity for row in report.table].count("loss") == 0
    assert any("does not measure the loss" in note for note in report.notes)
    assert report.verdict == "failed", str(report)
    flagged = {row.quantity for row in report.table if row.flagged}
    assert "velocity_cov" in flagged, str(report)


def test_nonlinear_crosscheck_fails_at_large_learning_rate(tanh):
    """The real dynamics departs from the linearised law as λ grows: the check sees it."""
    _model, _star, local = tanh
    result = ss.stationary(ss.SGD(ss.lr), local, ss.MinibatchNoise(4))
    report = ss.crosscheck(result, {ss.lr: 0.5}, dynamics="nonlinear", rel_se=0.01, seed=2)
    assert report.verdict == "failed", str(report)


def test_preconditioned_optimizer_uses_the_local_preconditioner(tanh):
    """DampedNewton on the real model: its preconditioner is the inverse Hessian of the local
    problem, so the linearised and nonlinear runs agree at small λ (the effective learning rate
    along the flat direction is λ/h_min ≈ 20λ here)."""
    _model, _star, local = tanh
    result = ss.stationary(ss.DampedNewton(ss.lr), local, ss.MinibatchNoise(4))
    report = ss.crosscheck(
        result,
        {ss.lr: 0.001},
        dynamics="nonlinear",
        quantities=("cov",),
        chains=400,
        steps=8000,
        seed=4,
    )
    assert report.passed, str(report)


# ---------------------------------------------------------------------------------------------
# 3. the order of the departure (see the module docstring)
# ---------------------------------------------------------------------------------------------


def test_departure_is_first_order_in_the_learning_rate():
    r"""Double well (1-D, a cubic and a quartic term): with common random numbers at λ =
    0.0125, 0.025, 0.05 the relative covariance departure :math:`(\Sigma_\text{nl} -
    \Sigma_\text{lin})/\Sigma_\text{lin}` has log-log slope 1 (within 3 standard errors plus 0.1
    for the next order; measured 1.04 ± 0.04), and the mean shift :math:`m` matches its derived
    leading term :math:`-\tfrac12T\Sigma_\text{lin}/H` with a relative error that is itself
    first order: extrapolated to λ = 0 the ratio is 1."""
    model, star = _double_well()
    local = model.near(star)
    noise = ss.MinibatchNoise(2)
    result = ss.stationary(ss.SGD(ss.lr), local, noise)
    H = float(local.hessian[0, 0])
    T = _third_derivatives(model, star)[0, 0, 0]
    lrs = [0.0125, 0.025, 0.05]
    rel, rel_se, ratio, ratio_se = [], [], [], []
    for lr in lrs:
        kw = dict(chains=3000, steps=int(100 / lr), seed=11, per_chain=True)
        a = ss.simulate(ss.SGD(ss.lr), local, noise, {ss.lr: lr}, **kw)
        b = ss.simulate(ss.SGD(ss.lr), model, noise, {ss.lr: lr}, theta0=star, **kw)
        sigma = float(result.cov.subs(ss.lr, lr))
        d, se = _paired(a.per_chain.cov[:, 0, 0], b.per_chain.cov[:, 0, 0])
        rel.append(d / sigma)
        rel_se.append(se / sigma)
        m, m_se = _paired(a.per_chain.mean[:, 0], b.per_chain.mean[:, 0])
        predicted = -0.5 * T * sigma / H
        ratio.append(m / predicted)
        ratio_se.append(m_se / abs(predicted))
    assert all(r > 5 * s for r, s in zip(rel, rel_se)), (rel, rel_se)  # resolved at every λ
    slope, slope_se = _slope(lrs, rel, rel_se)
    assert abs(slope - 1) < 3 * slope_se + 0.1, (slope, slope_se, rel)
    # the mean: m/λ tends to its derived coefficient (m = c₁λ + c₂λ², so the ratio to the
    # leading term is 1 + kλ; its log-log slope, 1.10 here, carries the c₂ term)
    # ratio = 1 + kλ: the weighted linear fit's intercept is 1
    w = 1 / np.asarray(ratio_se) ** 2
    X = np.c_[np.ones(3), lrs]
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    intercept = (cov @ X.T @ (w * np.asarray(ratio)))[0]
    assert abs(intercept - 1) < 3 * np.sqrt(cov[0, 0]) + 0.02, (intercept, ratio)


def test_two_layer_mean_shift_matches_its_leading_order(tanh):
    r"""Two-layer tanh network (d = 2): the measured mean shift of the real dynamics divided by
    :math:`-\tfrac12H^{-1}T{:}\Sigma_\text{lin}` tends to 1 linearly in λ, and the relative
    departure of Tr Σ shrinks with λ at slope 1 (looser: the slow mode makes it noisier)."""
    model, star, local = tanh
    noise = ss.MinibatchNoise(2)
    result = ss.stationary(ss.SGD(ss.lr), local, noise)
    H = np.array(local.hessian, dtype=float)
    T = _third_derivatives(model, star)
    lrs = [0.025, 0.05, 0.1]
    ratios, ratio_se, rel, rel_se = [], [], [], []
    for lr in lrs:
        kw = dict(chains=600, steps=int(100 / lr), seed=5, per_chain=True)
        a = ss.simulate(ss.SGD(ss.lr), local, noise, {ss.lr: lr}, **kw)
        b = ss.simulate(ss.SGD(ss.lr), model, noise, {ss.lr: lr}, theta0=star, **kw)
        sigma = np.array(result.cov.subs(ss.lr, lr), dtype=float)
        predicted = -0.5 * np.linalg.solve(H, np.einsum("abc,bc->a", T, sigma))
        m, m_se = _paired(a.per_chain.mean, b.per_chain.mean)
        ratios.append(m / predicted)
        ratio_se.append(m_se / np.abs(predicted))
        tr_a = np.trace(a.per_chain.cov, axis1=1, axis2=2)
        tr_b = np.trace(b.per_chain.cov, axis1=1, axis2=2)
        d, se = _paired(tr_a, tr_b)
        rel.append(d / np.trace(sigma))
        rel_se.append(se / np.trace(sigma))
    ratios, ratio_se = np.array(ratios), np.array(ratio_se)
    X = np.c_[np.ones(3), lrs]
    for k in range(2):
        w = 1 / ratio_se[:, k] ** 2
        cov = np.linalg.inv(X.T @ (w[:, None] * X))
        intercept = (cov @ X.T @ (w * ratios[:, k]))[0]
        assert abs(intercept - 1) < 3 * np.sqrt(cov[0, 0]) + 0.02, (k, intercept, ratios)
    assert all(r > 3 * s for r, s in zip(rel, rel_se)), (rel, rel_se)
    slope, slope_se = _slope(lrs, rel, rel_se)
    assert abs(slope - 1) < 3 * slope_se + 0.2, (slope, slope_se, rel)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_bad_nonlinear_requests(tanh):
    model, star, local = tanh
    opt, noise = ss.SGD(ss.lr), ss.MinibatchNoise(4)
    with pytest.raises(ValueError, match=r"theta0=model\.minimum"):
        ss.simulate(opt, model, noise, {"lr": 0.1})
    with pytest.raises(ValueError, match="not a stationary point"):
        ss.simulate(opt, model, noise, {"lr": 0.1}, theta0=[0.3, 0.3])
    with pytest.raises(ValueError, match="Drop theta0"):
        ss.simulate(opt, local, noise, {"lr": 0.1}, theta0=star)
    with pytest.raises(ValueError, match="MinibatchNoise"):
        ss.simulate(opt, model, ss.AdditiveNoise(sp.eye(2)), {"lr": 0.1}, theta0=star)
    h = sp.Symbol("h", positive=True)
    quad = ss.stationary(opt, ss.Quadratic(h), ss.AdditiveNoise(1))
    with pytest.raises(ValueError, match="local problem of an EmpiricalLoss"):
        ss.crosscheck(quad, {"lr": 0.1, h: 1}, dynamics="nonlinear")
    with pytest.raises(ValueError, match="dynamics must be"):
        ss.crosscheck(quad, {"lr": 0.1, h: 1}, dynamics="real")
    with pytest.raises(ValueError, match="per_chain"):
        ss.simulate(opt, local, noise, {"lr": 0.1}, per_chain="yes")


# ---------------------------------------------------------------------------------------------
# every listed loss: the linearised law is the small-λ limit of the real dynamics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, gamma, replacement",
    [("logistic-regression", 0, True), ("double-well", 0, False), ("two-layer-linear", 0.2, True)],
)
def test_every_listed_loss_passes_the_nonlinear_crosscheck_at_small_lr(name, gamma, replacement):
    """The exact law of the linearised dynamics against the real optimizer on the real loss
    (Holm over the entries of cov, level 0.01).  The two-layer linear network has a manifold of
    minima: with weight decay γ its iterates settle at the minimum of L + γ|θ|²/2 (the
    balanced point of the manifold, shrunk), so the local problem is expanded there."""
    model, _ = models.example(name)
    start = models.EXAMPLES[name][2]
    star = model.minimum(start=start, weight_decay=gamma)
    local = model.near(star, weight_decay=gamma)
    noise = ss.MinibatchNoise(4, replacement=replacement)
    opt = ss.SGD(ss.lr, weight_decay=ss.weight_decay) if gamma else ss.SGD(ss.lr)
    params = {ss.lr: 0.02, ss.weight_decay: gamma} if gamma else {ss.lr: 0.02}
    result = ss.stationary(opt, local, noise)
    report = ss.crosscheck(
        result, params, dynamics="nonlinear", quantities=("cov",), chains=400, steps=8000, seed=5
    )
    assert report.passed, str(report)
