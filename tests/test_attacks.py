"""jaxadv.attacks against closed forms: linear and logistic models, exact projections, uniform
sampling in balls, vmap against a loop, targeted success, and the model's own closed-form attacks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv import attacks as A
from jaxadv.model.losses import QUADRATIC
from jaxadv.model.perturbations import l1_attack, l2_attack, linf_attack
from jaxadv.model.student import Student, example_loss

NORMS = [1, 2, np.inf]


def _linear(w, b=0.0):
    """Margin loss of a linear model, to be increased: L = -tau (w.x - b)."""
    return lambda x, tau: -tau * (jnp.dot(w, x) - b)


def _logistic(w, b=0.0):
    return lambda x, tau: jax.nn.softplus(-tau * (jnp.dot(w, x) - b))


def _closed_form(w, tau, eps, norm):
    """Worst case of a linear model in the norm ball: -tau eps times the dual direction."""
    w = np.asarray(w)
    if norm == np.inf:
        return -tau * eps * np.sign(w)
    if norm == 2:
        return -tau * eps * w / np.linalg.norm(w)
    i = np.argmax(np.abs(w))
    d = np.zeros_like(w)
    d[i] = -tau * eps * np.sign(w[i])
    return d


def _pnorm(d, norm):
    return float(np.linalg.norm(np.ravel(d), ord=norm))


@pytest.fixture
def w():
    return jnp.asarray(np.random.default_rng(0).normal(size=12))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("model", [_linear, _logistic])
def test_fgm_and_one_step_pgd_are_the_linear_closed_form(w, norm, model):
    x = jnp.asarray(np.random.default_rng(1).normal(size=12))
    loss = model(w, 0.3)
    one_step = jax.jit(
        lambda x, tau: A.pgd(
            loss, x, tau, jax.random.key(0), eps=0.7, step=0.7, n_steps=1, norm=norm, random_start=False
        )
    )
    for tau in (1.0, -1.0):
        expected = np.asarray(x) + _closed_form(w, tau, 0.7, norm)
        np.testing.assert_allclose(A.fgm(loss, x, tau, eps=0.7, norm=norm), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(one_step(x, tau), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_cannot_beat_the_linear_closed_form(w, norm):
    x = jnp.asarray(np.random.default_rng(1).normal(size=12))
    loss = _linear(w, 0.3)
    best = float(loss(x + _closed_form(w, 1.0, 0.7, norm), 1.0))
    many = A.pgd(loss, x, 1.0, jax.random.key(0), eps=0.7, step=0.1, n_steps=40, norm=norm, n_restarts=2)
    assert best - 1e-3 <= float(loss(many, 1.0)) <= best + 1e-9


def test_l1_ties_split_the_budget():
    w = jnp.array([1.0, -3.0, 3.0, 0.5])
    d = A.fgm(_linear(w), jnp.zeros(4), 1.0, eps=2.0, norm=1)
    np.testing.assert_allclose(d, [0.0, 1.0, -1.0, 0.0])


@pytest.mark.parametrize("norm", [1, 2])
def test_zero_gradient_is_a_zero_step(norm):
    x = jnp.ones(5)
    out = A.fgm(lambda x, y: 0.0 * jnp.sum(x), x, 1.0, eps=1.0, norm=norm)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("tau", [1.0, -1.0])
def test_model_closed_form_attacks_equal_fgm(tau):
    """The single-layer model's attacks (L2, L-inf, L1) are FGM on its own loss."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=20)
    w = jnp.asarray(w / np.linalg.norm(w))
    student = Student(w=w, b=jnp.asarray(0.2))
    xi = jnp.asarray(rng.normal(size=20))
    loss = lambda x, t: example_loss(student, x, t, QUADRATIC)
    eps = 0.8
    np.testing.assert_allclose(A.fgm(loss, xi, tau, eps=eps, norm=2), l2_attack(xi, tau, w, eps), atol=1e-12)
    np.testing.assert_allclose(A.fgm(loss, xi, tau, eps=eps, norm=2), xi - tau * eps * w, atol=1e-12)
    np.testing.assert_allclose(A.fgm(loss, xi, tau, eps=eps, norm="inf"), linf_attack(xi, tau, w, eps), atol=1e-12)
    np.testing.assert_allclose(A.fgm(loss, xi, tau, eps=eps, norm=1), l1_attack(xi, tau, w, eps), atol=1e-12)


def _bisect_l1(v, eps):
    """Independent reference: theta with sum(max(|v| - theta, 0)) = eps by bisection."""
    a = np.abs(v)
    if a.sum() <= eps:
        return v
    lo, hi = 0.0, a.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(a - mid, 0).sum() > eps else (lo, mid)
    return np.sign(v) * np.maximum(a - lo, 0)


def test_l1_projection_is_exact():
    rng = np.random.default_rng(4)
    proj = jax.jit(lambda v, eps: A.project(v, eps, 1))
    for _ in range(20):
        v = rng.normal(size=(3, 5)) * rng.uniform(0.1, 3)
        eps = rng.uniform(0.05, 4)
        p = np.asarray(proj(jnp.asarray(v), eps))
        np.testing.assert_allclose(p, _bisect_l1(v.ravel(), eps).reshape(v.shape), atol=1e-10)
        assert np.abs(p).sum() <= eps + 1e-10
    # not a rescale: small coordinates are set to zero
    p = A.project(jnp.array([3.0, 1.0, 0.1]), 1.0, 1)
    np.testing.assert_allclose(p, [1.0, 0.0, 0.0])
    # no nearer point of the ball among random candidates
    v = rng.normal(size=4) * 2
    p = np.asarray(A.project(jnp.asarray(v), 1.0, 1))
    keys = jax.random.split(jax.random.key(5), 2000)
    cands = np.asarray(jax.vmap(lambda k: A.random_in_ball(k, (4,), 1.0, 1, jnp.float64))(keys))
    assert np.linalg.norm(v - p) <= np.min(np.linalg.norm(v - cands, axis=1)) + 1e-12


@pytest.mark.parametrize("norm", NORMS)
def test_projection_l2_linf(norm):
    v = jnp.array([3.0, -4.0, 0.5])
    p = np.asarray(A.project(v, 1.0, norm))
    assert _pnorm(p, norm) <= 1.0 + 1e-12
    np.testing.assert_allclose(A.project(v, 100.0, norm), v)  # inside: unchanged
    if norm == 2:
        np.testing.assert_allclose(p, np.asarray(v) / np.linalg.norm(v))
    if norm == np.inf:
        np.testing.assert_allclose(p, [1.0, -1.0, 0.5])


@pytest.mark.parametrize("norm", NORMS)
def test_random_in_ball_is_uniform(norm):
    """P(|delta|_p <= s) = (s/eps)^d, checked at several s within 4 binomial standard errors."""
    d, eps, n = 3, 0.5, 20000
    keys = jax.random.split(jax.random.key(7), n)
    pts = np.asarray(jax.vmap(lambda k: A.random_in_ball(k, (d,), eps, norm, jnp.float64))(keys))
    r = np.linalg.norm(pts, ord=norm, axis=1)
    assert r.max() <= eps * (1 + 1e-12)
    for s in (0.3, 0.5, 0.7, 0.9):
        p = s**d
        assert abs(np.mean(r <= s * eps) - p) < 4 * math.sqrt(p * (1 - p) / n)
    # symmetric: the mean of every coordinate is 0
    assert np.all(np.abs(pts.mean(axis=0)) < 4 * pts.std(axis=0) / math.sqrt(n))


def test_l2_radius_goes_as_u_to_the_one_over_d():
    d, n = 50, 4000
    keys = jax.random.split(jax.random.key(8), n)
    r = np.linalg.norm(np.asarray(jax.vmap(lambda k: A.random_in_ball(k, (d,), 1.0, 2, jnp.float64))(keys)), axis=1)
    # E r = d/(d+1) (a radius ~ U would give 1/2)
    assert abs(r.mean() - d / (d + 1)) < 4 * r.std() / math.sqrt(n)


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_stays_in_ball_and_box(norm):
    rng = np.random.default_rng(9)
    W = jnp.asarray(rng.normal(size=(3, 16)))
    loss = lambda x, y: -jax.nn.log_softmax(W @ jnp.tanh(3 * x))[y]
    X = jnp.asarray(rng.uniform(size=(8, 16)))
    Y = jnp.asarray(rng.integers(0, 3, size=8))
    eps = 0.6
    keys = jax.random.split(jax.random.key(1), 8)
    both = jax.jit(
        lambda X, Y, keys: (
            jax.vmap(
                lambda x, y, k: A.pgd(
                    loss, x, y, k, eps=eps, step=0.2, n_steps=7, norm=norm, n_restarts=2, box=(0.0, 1.0)
                )
            )(X, Y, keys),
            jax.vmap(lambda x, y: A.fgm(loss, x, y, eps=eps, norm=norm, box=(0.0, 1.0)))(X, Y),
        )
    )
    X = np.asarray(X)
    for adv in map(np.asarray, both(X, Y, keys)):
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert np.all(np.linalg.norm(adv - X, ord=norm, axis=1) <= eps * (1 + 1e-12))


@pytest.mark.parametrize("norm", NORMS)
def test_eps_zero_is_the_identity(norm):
    x = jnp.asarray(np.random.default_rng(2).uniform(size=6))
    loss = lambda x, y: jnp.sum(jnp.sin(5 * x)) * y
    np.testing.assert_array_equal(A.fgm(loss, x, 1.0, eps=0.0, norm=norm), x)
    np.testing.assert_array_equal(A.fgm(loss, x, 1.0, eps=0.0, norm=norm, box=(0.0, 1.0)), x)
    pgd = jax.jit(
        lambda k: A.pgd(loss, x, 1.0, k, eps=0.0, step=0.1, n_steps=3, norm=norm, n_restarts=2, box=(0.0, 1.0))
    )
    np.testing.assert_array_equal(pgd(jax.random.key(0)), x)
    np.testing.assert_array_equal(A.project(x, 0.0, norm), jnp.zeros_like(x))
    np.testing.assert_array_equal(A.random_in_ball(jax.random.key(0), (6,), 0.0, norm), jnp.zeros(6))


def _mlp():
    rng = np.random.default_rng(11)
    W1, W2 = jnp.asarray(rng.normal(size=(16, 10)) / 3), jnp.asarray(rng.normal(size=(3, 16)) / 4)
    logits = lambda x: W2 @ jnp.tanh(W1 @ x)
    return logits, (lambda x, y: -jax.nn.log_softmax(logits(x))[y]), rng


@pytest.mark.parametrize("norm", NORMS)
def test_clean_le_fgm_le_pgd_on_a_nonlinear_model(norm):
    logits, loss, rng = _mlp()
    X = jnp.asarray(rng.normal(size=(32, 10)))
    Y = jnp.asarray(rng.integers(0, 3, size=32))
    eps = {1: 2.0, 2: 1.0, np.inf: 0.3}[norm]
    L = jax.vmap(loss)
    keys = jax.random.split(jax.random.key(3), 32)

    @jax.jit
    def losses(X, Y, keys):
        fg = jax.vmap(lambda x, y: A.fgm(loss, x, y, eps=eps, norm=norm))(X, Y)
        # BIM with first step = eps reproduces FGM first, so it is never worse
        bim = jax.vmap(lambda x, y: A.bim(loss, x, y, eps=eps, step=eps, n_steps=10, norm=norm))(X, Y)
        pg = jax.vmap(lambda x, y, k: A.pgd(loss, x, y, k, eps=eps, step=eps / 4, n_steps=20, norm=norm, n_restarts=3))(
            X, Y, keys
        )
        return L(X, Y), L(fg, Y), L(bim, Y), L(pg, Y)

    clean, lf, lb, lp = (np.asarray(z) for z in losses(X, Y, keys))
    assert np.all(lf >= clean - 1e-12)
    assert np.all(lb >= lf - 1e-12)
    assert lp.mean() > lf.mean() and np.mean(lp >= lf - 1e-9) >= 0.9


def test_restarts_keep_the_worst():
    logits, loss, rng = _mlp()
    x, y = jnp.asarray(rng.normal(size=10)), 1
    key = jax.random.key(4)
    kw = dict(eps=0.5, step=0.1, n_steps=5, norm=2)
    best = jax.jit(lambda k: A.pgd(loss, x, y, k, n_restarts=4, **kw))(key)
    one = jax.jit(lambda k: A.pgd(loss, x, y, k, n_restarts=1, **kw))
    singles = [one(k) for k in jax.random.split(key, 4)]
    assert float(loss(best, y)) == pytest.approx(max(float(loss(s, y)) for s in singles), abs=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_vmap_equals_a_loop(norm):
    logits, loss, rng = _mlp()
    X = jnp.asarray(rng.normal(size=(5, 10)))
    Y = jnp.asarray(rng.integers(0, 3, size=5))
    keys = jax.random.split(jax.random.key(6), 5)
    attack = lambda x, y, k: A.pgd(loss, x, y, k, eps=0.4, step=0.1, n_steps=4, norm=norm)
    fgm = lambda x, y, k: A.fgm(loss, x, y, eps=0.4, norm=norm)

    @jax.jit
    def both(X, Y, keys):  # vmap, and a sequential loop (lax.map) over the same examples
        return [(jax.vmap(f)(X, Y, keys), jax.lax.map(lambda a, f=f: f(*a), (X, Y, keys))) for f in (attack, fgm)]

    for batched, looped in both(X, Y, keys):
        np.testing.assert_allclose(batched, looped, rtol=1e-10, atol=1e-12)


def test_eps_grid_is_a_vmap_not_a_recompile():
    logits, loss, rng = _mlp()
    x = jnp.asarray(rng.normal(size=10))
    f = jax.jit(jax.vmap(lambda e: A.pgd(loss, x, 0, jax.random.key(0), eps=e, step=0.1, n_steps=3, norm="inf")))
    out = f(jnp.array([0.0, 0.1, 0.2]))
    np.testing.assert_allclose(out[0], x)
    assert np.all(np.max(np.abs(np.asarray(out) - np.asarray(x)), axis=1) <= np.array([0.0, 0.1, 0.2]) + 1e-12)


def test_targeted_attacks_reach_the_goal():
    rng = np.random.default_rng(12)
    W = jnp.asarray(rng.normal(size=(3, 8)))
    logits = lambda x: W @ x
    X = jnp.asarray(rng.normal(size=(40, 8)))
    Y = jnp.argmax(jax.vmap(logits)(X), axis=1)
    goal = (Y + 1) % 3
    ce = lambda x, g: -jax.nn.log_softmax(logits(x))[g]  # loss towards the goal label, minimised
    keys = jax.random.split(jax.random.key(0), 40)
    adv = jax.jit(jax.vmap(lambda x, g, k: A.pgd(ce, x, g, k, eps=3.0, step=0.3, n_steps=30, norm=2, targeted=True)))(
        X, goal, keys
    )
    assert np.mean(np.asarray(jnp.argmax(jax.vmap(logits)(adv), axis=1)) == np.asarray(goal)) >= 0.95
    # the talk's slide: maximise sigma_goal - sigma_tau (untargeted ascent of goal_margin)
    margin = A.goal_margin(lambda x: jax.nn.softmax(logits(x)))
    labels = jnp.stack([Y, goal], axis=1)
    adv2 = jax.jit(jax.vmap(lambda x, lab, k: A.pgd(margin, x, lab, k, eps=3.0, step=0.3, n_steps=30, norm=2)))(
        X, labels, keys
    )
    assert np.mean(np.asarray(jnp.argmax(jax.vmap(logits)(adv2), axis=1)) == np.asarray(goal)) >= 0.95
    # and the untouched examples are classified as Y: the attack did the work
    assert np.all(np.asarray(Y) != np.asarray(goal))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eps=-1.0), r"eps=-1\.0 must be >= 0"),
        (dict(step=0.0), r"step=0\.0 must be > 0"),
        (dict(n_steps=0), r"n_steps=0 must be an integer >= 1"),
        (dict(norm=3), r"norm=3 must be 1, 2 or inf"),
        (dict(norm="l7"), r"norm='l7' must be 1, 2 or inf"),
        (dict(n_restarts=0), r"n_restarts=0 must be an integer >= 1"),
        (dict(box=(1.0, 0.0)), r"box=\(1\.0, 0\.0\) must have lo < hi"),
    ],
)
def test_errors_name_the_parameter(kwargs, match):
    args = dict(eps=0.1, step=0.1, n_steps=2, norm="inf")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        A.pgd(lambda x, y: jnp.sum(x), jnp.zeros(3), 0, jax.random.key(0), **args)


def test_norm_spellings():
    for n in (np.inf, float("inf"), "inf", "Linf"):
        assert A.canonical_norm(n) == "inf"
    assert A.canonical_norm(2) == 2 and A.canonical_norm(2.0) == 2 and A.canonical_norm("l1") == 1
    with pytest.raises(ValueError, match="eps=-0.5"):
        A.fgm(lambda x, y: jnp.sum(x), jnp.zeros(3), 0, eps=-0.5, norm=2)
    with pytest.raises(ValueError, match="norm=True"):
        A.project(jnp.zeros(3), 1.0, True)
