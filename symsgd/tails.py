r"""Heavy tails of the stationary law: is its fourth moment finite?

With minibatch noise the update is a *random* linear map, :math:`z_{t+1} = A_t z_t + b_t` with
:math:`A_t = M + B(\hat H_t - H)K` (:math:`\hat H_t` the minibatch Hessian).  Second moments are
finite iff :math:`\rho(\mathbb E[A\otimes A]) < 1` (the library's stability conditions); fourth
moments iff

.. math:: \rho_4 = \rho\bigl(\mathbb E[A\otimes A\otimes A\otimes A]\bigr) < 1 .

Between the two edges the stationary law has power-law tails (Mori, Ziyin, Liu & Ueda, 2022):
its variance exists and symsgd's formulas hold, but a simulated variance then has no valid
standard error — the sample variance converges slower than :math:`1/\sqrt n` and is usually
*below* the truth.  :func:`fourth_moment_radius` estimates :math:`\rho_4` by sampling the
optimizer's real minibatch Hessians; :func:`symsgd.crosscheck` warns when it is ≥ 1.
Additive noise has :math:`A_t = M` and every moment finite.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_STATE_DIM", "SAMPLES", "fourth_moment_radius"]

#: Monte Carlo draws of the random update per state dimension n (the operator has n⁴ rows);
#: no estimate beyond n = 3
SAMPLES = {1: 200_000, 2: 100_000, 3: 20_000}
MAX_STATE_DIM = max(SAMPLES)


def _sampled_hessians(problem, samples: int, seed: int) -> np.ndarray:
    """``(samples, d, d)`` minibatch Hessians drawn by the simulator's own gradient oracle: the
    oracle is affine in θ, so with identical random draws ``g(e_j) − g(0)`` is column j."""
    d = problem.dim
    columns = []
    base = None
    for j in range(d + 1):
        grad = problem.oracle.make(np.random.default_rng(seed), samples)
        theta = np.zeros((d, samples))
        if j < d:
            theta[j] = 1.0
        g = grad(theta)
        if j == d:
            base = g
        else:
            columns.append(g)
    return np.stack([c - base for c in columns], axis=-1).transpose(1, 0, 2)


def fourth_moment_radius(problem, samples: int | None = None, seed: int = 0) -> float | None:
    r"""Monte Carlo estimate of :math:`\rho(\mathbb E[A^{\otimes 4}])` for a prepared numeric
    problem (:func:`symsgd.sampling.prepare`); ``None`` when the noise is additive (every moment
    is finite) or the state has more than :data:`MAX_STATE_DIM` dimensions.  ``samples``
    defaults to :data:`SAMPLES`; the estimate's own error is a few per cent there.

    >>> import sympy as sp, symsgd as ss
    >>> from symsgd.sampling import prepare
    >>> a = sp.Symbol("a", positive=True)
    >>> p = prepare(ss.SGD(ss.lr), ss.LinearRegression(a, label_noise=1),
    ...             ss.MinibatchNoise(ss.batch_size), {ss.lr: 0.8, a: 1, ss.batch_size: 2})
    >>> 2.9 < fourth_moment_radius(p) < 3.2  # exact: E(1 − 0.4u)⁴ = 3.02 for u ~ χ²₂
    True
    """
    if not problem.noise.depends_on_state():
        return None
    M, B, K = problem.state_space
    n = M.shape[0]
    if n > MAX_STATE_DIM:
        return None
    samples = SAMPLES[n] if samples is None else int(samples)
    H = problem.hessian
    total = np.zeros((n**4, n**4))
    chunk = max(1, 2_000_000 // n**8)
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        Hs = _sampled_hessians(problem, m, seed + start)
        A = M + np.einsum("ij,kjl,lm->kim", B, Hs - H, K)
        A2 = np.einsum("kij,kab->kiajb", A, A).reshape(m, n * n, n * n)
        A4 = np.einsum("kij,kab->kiajb", A2, A2).reshape(m, n**4, n**4)
        total += A4.sum(axis=0)
    return float(np.max(np.abs(np.linalg.eigvals(total / samples))))
