r"""Attacks on any JAX model: FGM/FGSM, BIM and PGD under the L1, L2 and L-infinity threat models.

Every function acts on **one** example ``x`` (any shape) and a user-supplied scalar loss
``loss_fn(x, y)`` (a cross-entropy, a margin, a logit: nothing is hard-wired); batches are a
``jax.vmap``, and everything is ``jit``-able (``loss_fn``, ``norm``, ``n_steps``,
``n_restarts``, ``random_start``, ``targeted`` and ``box``'s presence are static, the radii are
traced).

**Threat model.** The attacker may add :math:`\delta` with :math:`\|\delta\|_p\le\epsilon`,
:math:`p\in\{1,2,\infty\}`, and (optionally) must stay in the box :math:`[lo, hi]`.

**FGM** (fast gradient method; FGSM is :math:`p=\infty`). To first order,
:math:`L(x+\delta)\approx L(x)+g\cdot\delta` with :math:`g=\nabla_xL(x,y)`, and by Hölder
:math:`\max_{\|\delta\|_p\le\epsilon} g\cdot\delta=\epsilon\|g\|_{p^*}`, :math:`1/p+1/p^*=1`,
attained at the steepest-ascent direction

.. math::
    \delta_\infty = \epsilon\,\operatorname{sign}(g),\qquad
    \delta_2 = \epsilon\,\frac{g}{\|g\|_2},\qquad
    \delta_1 = \epsilon\,\frac{\operatorname{sign}(g_i)\,[\,|g_i|=\|g\|_\infty]}{\#\{j:|g_j|=\|g\|_\infty\}},

(the L1 step puts the whole budget on the coordinate(s) of largest :math:`|g_i|`, split
equally between ties); a zero gradient gives a zero step. For a linear model
:math:`L=-\tau(w\cdot x-b)` the first-order expansion is exact, so FGM *is* the worst case:
:math:`-\tau\epsilon\operatorname{sign}(w)`, :math:`-\tau\epsilon w/\|w\|_2` and
:math:`-\tau\epsilon\operatorname{sign}(w_{i^*})e_{i^*}` (:func:`jaxadv.model.perturbations.linf_attack`,
:func:`jaxadv.model.perturbations.l2_attack`, :func:`jaxadv.model.perturbations.l1_attack`).

**PGD** (projected gradient descent; BIM is PGD without random start). From
:math:`\delta^{(0)}` (0, or uniform in the ball), repeat :math:`T` times

.. math::
    \delta^{(t+1)} = \operatorname{clip}_{[lo,hi]}\!\big(x + P_\epsilon(\delta^{(t)}
        \pm \operatorname{step}(g^{(t)}, \alpha))\big) - x,

with the normalised step of the FGM above at radius :math:`\alpha` (``step``), :math:`+` for
an untargeted attack (ascend the loss) and :math:`-` for a targeted one (descend the loss
towards the goal label). :math:`P_\epsilon` is the exact Euclidean projection onto the
:math:`\epsilon`-ball (:func:`project`); clipping into the box afterwards only shrinks every
:math:`|\delta_i|` when :math:`x` is in the box, so :math:`\|\delta\|_p\le\epsilon` still holds.
With a box, gradient components pointing out of it at a face are set to zero before the step
(their move would be clipped away; for L1 this lets the budget reach other coordinates). The
iterate with the highest loss (lowest for targeted) along the path is kept, and over
``n_restarts`` random starts the worst one per example.

**Projection.** L-infinity: :math:`\operatorname{clip}(\delta,-\epsilon,\epsilon)`; L2:
:math:`\delta\min(1,\epsilon/\|\delta\|_2)`; L1 (exact, not a rescale; Duchi et al. 2008):
:math:`P(\delta)_i=\operatorname{sign}(\delta_i)\max(|\delta_i|-\theta,0)` with
:math:`\theta=\big(\sum_{j\le k}u_j-\epsilon\big)/k`, :math:`u` the sorted :math:`|\delta|`
(descending) and :math:`k=\max\{j: u_j>(\sum_{i\le j}u_i-\epsilon)/j\}`.

**Uniform random start** in the ball (:func:`random_in_ball`): the cube for L-infinity; for L2 a
uniform direction :math:`z/\|z\|` (:math:`z\sim\mathcal N(0,I_d)`) times the radius
:math:`\epsilon U^{1/d}`; for L1 :math:`\epsilon\,s_i e_i/\sum_{j=0}^{d}e_j` with
:math:`e_j\sim\operatorname{Exp}(1)` and random signs :math:`s_i` (the first :math:`d` of
:math:`d+1` Dirichlet(1, ..., 1) weights are uniform on the corner simplex). In all three
:math:`P(\|\delta\|_p\le s)=(s/\epsilon)^d`.

**Targeted attacks.** With ``targeted=True`` PGD *minimises* ``loss_fn(x, y)`` where ``y`` is the
goal label (e.g. the cross-entropy towards the goal). The talk's objective
:math:`\max_\delta\,\sigma(x+\delta)_{\tau_\text{goal}}-\sigma(x+\delta)_\tau` is the
untargeted ascent of :func:`goal_margin` (``y = (tau, goal)``).

References: Goodfellow et al. (2015) *Explaining and harnessing adversarial examples*;
Kurakin et al. (2017) *Adversarial examples in the physical world* (BIM); Madry et al. (2018)
*Towards deep learning models resistant to adversarial attacks* (PGD); Duchi et al. (2008)
*Efficient projections onto the l1-ball for learning in high dimensions*. Theory:
``docs/theory.md`` (section "Attacks on any model and the MNIST experiment").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special
from jax.typing import DTypeLike

from . import threefry
from .typing import Norm
from .validation import check_value

__all__ = [
    "NORMS",
    "canonical_norm",
    "dual_norm_value",
    "steepest_step",
    "fgm",
    "fgsm",
    "project",
    "random_in_ball",
    "pgd",
    "bim",
    "goal_margin",
]

NORMS = (1, 2, "inf")

Box = tuple[float | jax.Array, float | jax.Array]
"""``(lo, hi)``: the valid range of every input coordinate (the bounds may be traced)."""


def canonical_norm(norm: Norm) -> int | str:
    """``1``, ``2`` or ``"inf"`` for ``norm`` in {1, 2, inf} (``np.inf``, ``float("inf")``, ``"inf"``,
    ``"linf"``, ``"l2"``, ``"l1"`` accepted); ``ValueError`` naming ``norm`` otherwise."""
    if isinstance(norm, str):
        key = norm.strip().lower()
        table: dict[str, int | str] = {
            "inf": "inf",
            "linf": "inf",
            "l_inf": "inf",
            "infinity": "inf",
            "1": 1,
            "l1": 1,
            "2": 2,
            "l2": 2,
        }
        if key in table:
            return table[key]
    elif not isinstance(norm, bool):
        try:
            f = float(norm)
        except (TypeError, ValueError):
            f = None
        if f is not None:
            if math.isinf(f) and f > 0:
                return "inf"
            if f in (1.0, 2.0):
                return int(f)
    raise ValueError(f"norm={norm!r} must be 1, 2 or inf (np.inf, float('inf') or 'inf')")


def _check(name, value, ok, rule):
    """Eager validation of a float that may be traced (traced values are not checked)."""
    if isinstance(value, jax.core.Tracer):
        return
    check_value(name, value, ok, rule)


def _check_int(name, value, low):
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _check_box(box):
    if box is None:
        return None
    try:
        lo, hi = box
    except (TypeError, ValueError):
        raise ValueError(f"box={box!r} must be None or a pair (lo, hi)") from None
    if not isinstance(lo, jax.core.Tracer) and not isinstance(hi, jax.core.Tracer) and not float(lo) < float(hi):
        raise ValueError(f"box={box!r} must have lo < hi")
    return lo, hi


def dual_norm_value(g: jax.Array, norm: Norm) -> jax.Array:
    r""":math:`\|g\|_{p^*}`, the dual norm of the threat ``norm`` (:math:`p^*=1,2,\infty` for
    :math:`p=\infty,2,1`): the first-order gain :math:`\max_{\|\delta\|_p\le1}g\cdot\delta`."""
    norm = canonical_norm(norm)
    a = jnp.abs(g)
    if norm == "inf":
        return jnp.sum(a)
    if norm == 2:
        return jnp.sqrt(jnp.sum(a * a))
    return jnp.max(a)


def steepest_step(g: jax.Array, eps: float | jax.Array, norm: Norm) -> jax.Array:
    r"""The steepest-ascent step :math:`\arg\max_{\|\delta\|_p\le\epsilon}g\cdot\delta` for the gradient ``g``.

    .. math::
        \infty:\ \epsilon\operatorname{sign}(g);\qquad 2:\ \epsilon g/\|g\|_2;\qquad
        1:\ \epsilon\operatorname{sign}(g)\,\mathbb 1[|g|=\|g\|_\infty]/\#\text{ties}.

    A zero gradient gives a zero step (no NaN). Same shape and dtype as ``g``.
    """
    norm = canonical_norm(norm)
    if norm == "inf":
        return eps * jnp.sign(g)
    if norm == 2:
        n2 = jnp.sum(g * g)
        safe = jnp.where(n2 > 0, n2, 1.0)
        return jnp.where(n2 > 0, eps * g / jnp.sqrt(safe), jnp.zeros_like(g))
    a = jnp.abs(g)
    top = (a == jnp.max(a)) & (a > 0)
    count = jnp.maximum(jnp.sum(top), 1)
    return eps * jnp.sign(g) * top / count.astype(g.dtype)


def _free_gradient(x_now, g, box):
    """``g`` with the components that point out of the box at a face of it set to 0 (their move
    would be clipped away; the step's budget goes to the coordinates that can move)."""
    if box is None:
        return g
    lo, hi = box
    blocked = ((x_now <= lo) & (g < 0)) | ((x_now >= hi) & (g > 0))
    return jnp.where(blocked, jnp.zeros_like(g), g)


def _clip_box(x, delta, box):
    if box is None:
        return delta
    lo, hi = box
    return jnp.clip(x + delta, lo, hi) - x


def fgm(
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    x: jax.Array,
    y: Any,
    *,
    eps: float | jax.Array,
    norm: Norm,
    box: Box | None = None,
) -> jax.Array:
    r"""Fast gradient method:
    :math:`\tilde x = \operatorname{clip}_{[lo,hi]}\big(x + \operatorname{step}(\nabla_x L(x,y), \epsilon)\big)`.

    One normalised gradient step of size :math:`\epsilon` in the threat model's norm
    (:func:`steepest_step`); ``norm=inf`` is FGSM, :math:`x+\epsilon\operatorname{sign}(\nabla_xL)`.
    With a box, gradient components that point out of it at a face (pixels at 0 pushed down, at 1
    pushed up) are left out of the step: for L-infinity this changes nothing, for L2 and L1 the
    budget goes to the coordinates that can move (the steepest step of the box-constrained problem).

    Args:
        loss_fn: ``loss_fn(x, y) -> scalar`` to be increased (differentiable in ``x``).
        x: one clean input, any shape.
        y: its label (anything ``loss_fn`` accepts).
        eps: :math:`\epsilon\ge0`, radius of the ball.
        norm: 1, 2 or inf.
        box: ``None`` or ``(lo, hi)``: the adversarial input is clipped into it.

    Returns:
        The adversarial input, shape and dtype of ``x``. ``eps=0`` returns ``x`` unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxadv.attacks import fgm
        >>> w, x = jnp.array([0.6, -0.8]), jnp.array([0.5, 0.5])
        >>> loss = lambda x, y: -y * jnp.dot(w, x)          # margin of a linear model
        >>> fgm(loss, x, 1.0, eps=0.1, norm="inf").tolist()  # = x - 0.1 * sign(w)
        [0.4, 0.6]
    """
    norm = canonical_norm(norm)
    _check("eps", eps, lambda v: v >= 0, "must be >= 0")
    box = _check_box(box)
    g = _free_gradient(x, jax.grad(loss_fn)(x, y), box)
    delta = steepest_step(g, jnp.asarray(eps, x.dtype), norm).astype(x.dtype)
    return x + _clip_box(x, delta, box)


def fgsm(
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    x: jax.Array,
    y: Any,
    *,
    eps: float | jax.Array,
    box: Box | None = None,
) -> jax.Array:
    r"""FGSM: :func:`fgm` with ``norm=inf``, :math:`x+\epsilon\operatorname{sign}(\nabla_xL(x,y))`."""
    return fgm(loss_fn, x, y, eps=eps, norm="inf", box=box)


def _project_l1(delta, eps):
    v = delta.ravel()
    a = jnp.abs(v)
    u = jnp.sort(a)[::-1]
    css = jnp.cumsum(u)
    j = jnp.arange(1, v.size + 1, dtype=a.dtype)
    k = jnp.sum(u - (css - eps) / j > 0)  # the condition holds exactly for j = 1..k
    k_safe = jnp.maximum(k, 1)
    theta = (css[k_safe - 1] - eps) / k_safe.astype(a.dtype)
    proj = jnp.sign(v) * jnp.maximum(a - theta, 0)
    return jnp.where(jnp.sum(a) <= eps, v, proj).reshape(delta.shape)


def project(delta: jax.Array, eps: float | jax.Array, norm: Norm) -> jax.Array:
    r"""Euclidean projection of ``delta`` onto the ball :math:`\{\|\delta\|_p\le\epsilon\}` (exact).

    .. math::
        \infty:\ \operatorname{clip}(\delta,-\epsilon,\epsilon);\qquad
        2:\ \delta\min\!\big(1,\epsilon/\|\delta\|_2\big);\qquad
        1:\ \operatorname{sign}(\delta)\max(|\delta|-\theta,0)

    with the L1 threshold :math:`\theta` of Duchi et al. (2008) (sort-based, :math:`O(d\log d)`;
    :math:`\theta=0` when :math:`\|\delta\|_1\le\epsilon`). Any shape; ``eps=0`` gives zeros.
    """
    norm = canonical_norm(norm)
    _check("eps", eps, lambda v: v >= 0, "must be >= 0")
    eps = jnp.asarray(eps, delta.dtype)
    if norm == "inf":
        return jnp.clip(delta, -eps, eps)
    if norm == 2:
        n = jnp.sqrt(jnp.sum(delta * delta))
        scale = jnp.where(n > eps, eps / jnp.where(n > 0, n, 1.0), 1.0)
        return delta * scale
    return _project_l1(delta, eps)


def random_in_ball(
    key: jax.Array, shape: tuple[int, ...], eps: float | jax.Array, norm: Norm, dtype: DTypeLike = jnp.float32
) -> jax.Array:
    r"""A point drawn uniformly from the ball :math:`\{\delta\in\mathbb R^{d}: \|\delta\|_p\le\epsilon\}`,
    :math:`d=\prod` ``shape``.

    L-infinity: :math:`U[-\epsilon,\epsilon]^d`. L2: :math:`\epsilon U^{1/d} z/\|z\|`,
    :math:`z\sim\mathcal N(0,I_d)` (the radius goes as :math:`U^{1/d}`, not :math:`U`). L1:
    :math:`\epsilon\,s_ie_i/\sum_{j=0}^de_j`, :math:`e_j\sim\operatorname{Exp}(1)`, :math:`s_i=\pm1`.
    In each case :math:`P(\|\delta\|_p\le s)=(s/\epsilon)^d`.
    """
    norm = canonical_norm(norm)
    _check("eps", eps, lambda v: v >= 0, "must be >= 0")
    shape = tuple(shape)
    d = math.prod(shape)
    eps = jnp.asarray(eps, dtype)
    # one draw of uniforms on (-1, 1) (one threefry call, unrolled by jaxadv.threefry and bit for bit
    # jax.random.uniform: cheap to compile inside vmaps and loops)
    n = {"inf": d, 2: d + 1, 1: 2 * d + 1}[norm]
    v = threefry.uniform(key, (n,), dtype, jnp.nextafter(jnp.asarray(-1.0, dtype), jnp.asarray(0.0, dtype)), 1.0)
    if norm == "inf":
        return (eps * v).reshape(shape)
    if norm == 2:
        z = math.sqrt(2.0) * jax.scipy.special.erfinv(v[:d])  # standard normals, as jax.random.normal
        r = ((v[d] + 1) / 2) ** (1.0 / d)
        return (eps * r * z / jnp.sqrt(jnp.sum(z * z))).reshape(shape)
    e = -jnp.log1p(-(v[: d + 1] + 1) / 2)  # Exp(1) from uniforms on (0, 1)
    signs = jnp.where(v[d + 1 :] >= 0, 1.0, -1.0).astype(dtype)
    return (eps * signs * e[:d] / jnp.sum(e)).reshape(shape)


def pgd(
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    x: jax.Array,
    y: Any,
    key: jax.Array,
    *,
    eps: float | jax.Array,
    step: float | jax.Array,
    n_steps: int,
    norm: Norm,
    random_start: bool = True,
    n_restarts: int = 1,
    targeted: bool = False,
    box: Box | None = None,
) -> jax.Array:
    r"""Projected gradient ascent (descent if ``targeted``) on ``loss_fn`` in the :math:`\epsilon`-ball around ``x``.

    .. math::
        \delta^{(t+1)} = \operatorname{clip}_{[lo,hi]}\big(x+P_\epsilon(\delta^{(t)} \pm
        \operatorname{step}(\nabla_xL(x+\delta^{(t)},y),\alpha))\big)-x,\qquad t=0..T-1,

    :math:`P_\epsilon` = :func:`project`, step = :func:`steepest_step` at radius
    :math:`\alpha` (``step``), :math:`T` = ``n_steps``. :math:`\delta^{(0)}` is 0 (BIM) or uniform in
    the ball (``random_start``, :func:`random_in_ball`). Of the iterates
    :math:`\delta^{(0..T)}` the one with the highest loss (targeted: lowest) is returned, and
    over ``n_restarts`` independent starts (keys ``jax.random.split(key, n_restarts)``; one start
    uses ``key`` itself) the worst per example. With ``random_start=False``,
    ``n_steps=1`` and ``step=eps`` this is :func:`fgm` (or better, when the clean point is worse).

    Args:
        loss_fn: ``loss_fn(x, y) -> scalar``. Untargeted: the loss to increase for the true
            label ``y``. Targeted: the loss *towards the goal label* ``y``, to decrease.
        x: one clean input (any shape), inside ``box`` if one is given.
        y: label (true label, or the goal label when ``targeted``).
        key: PRNG key (random starts; unused otherwise).
        eps: radius :math:`\epsilon\ge0` of the ball.
        step: :math:`\alpha>0`, size of each normalised step (measured in the norm).
        n_steps: :math:`T\ge1` (static).
        norm: 1, 2 or inf (static).
        random_start: start uniformly in the ball (static).
        n_restarts: number of starts :math:`\ge1` (static).
        targeted: minimise instead of maximise (static).
        box: ``None`` or ``(lo, hi)`` valid inputs.

    Returns:
        The adversarial input :math:`x+\delta`, shape of ``x``, with :math:`\|\delta\|_p\le\epsilon`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxadv.attacks import pgd
        >>> w = jnp.array([0.6, -0.8])
        >>> loss = lambda x, y: jax.nn.softplus(-y * jnp.dot(w, x))   # logistic loss of a linear model
        >>> X, Y = jnp.full((3, 2), 0.5), jnp.array([1.0, -1.0, 1.0])
        >>> attack = jax.jit(jax.vmap(lambda x, y, k: pgd(loss, x, y, k, eps=0.1, step=0.025,
        ...                  n_steps=10, norm="inf", box=(0.0, 1.0))))
        >>> attack(X, Y, jax.random.split(jax.random.key(0), 3)).shape
        (3, 2)
    """
    norm = canonical_norm(norm)
    _check("eps", eps, lambda v: v >= 0, "must be >= 0")
    _check("step", step, lambda v: v > 0, "must be > 0")
    n_steps = _check_int("n_steps", n_steps, 1)
    n_restarts = _check_int("n_restarts", n_restarts, 1)
    box = _check_box(box)
    sign = -1.0 if targeted else 1.0
    dtype = x.dtype
    eps = jnp.asarray(eps, dtype)
    alpha = jnp.asarray(step, dtype)
    objective = jax.value_and_grad(lambda d: sign * loss_fn(x + d, y))

    def one_start(k):
        d0 = random_in_ball(k, x.shape, eps, norm, dtype) if random_start else jnp.zeros_like(x)
        d0 = _clip_box(x, d0, box)

        def body(_, carry):
            d, best_d, best_f = carry
            f, g = objective(d)
            g = _free_gradient(x + d, g, box)
            better = f > best_f
            best_d = jnp.where(better, d, best_d)
            best_f = jnp.where(better, f, best_f)
            d = project(d + steepest_step(g, alpha, norm).astype(dtype), eps, norm)
            return _clip_box(x, d, box), best_d, best_f

        d, best_d, best_f = jax.lax.fori_loop(0, n_steps, body, (d0, d0, jnp.asarray(-jnp.inf, dtype)))
        f = objective(d)[0]
        better = f > best_f
        return jnp.where(better, d, best_d), jnp.where(better, f, best_f)

    if n_restarts == 1:
        return x + one_start(key)[0]
    deltas, values = jax.vmap(one_start)(threefry.split(key, n_restarts))  # = jax.random.split, bit for bit
    return x + deltas[jnp.argmax(values)]


def bim(
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    x: jax.Array,
    y: Any,
    *,
    eps: float | jax.Array,
    step: float | jax.Array,
    n_steps: int,
    norm: Norm = "inf",
    targeted: bool = False,
    box: Box | None = None,
) -> jax.Array:
    r"""Basic iterative method: :func:`pgd` from :math:`\delta^{(0)}=0` (no key needed)."""
    return pgd(
        loss_fn,
        x,
        y,
        jax.random.key(0),
        eps=eps,
        step=step,
        n_steps=n_steps,
        norm=norm,
        random_start=False,
        n_restarts=1,
        targeted=targeted,
        box=box,
    )


def goal_margin(scores_fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""The talk's targeted objective as a loss to *increase*:
    :math:`L(x,(\tau,\tau_\text{goal}))=\sigma(x)_{\tau_\text{goal}}-\sigma(x)_\tau`.

    Args:
        scores_fn: ``scores_fn(x) -> (K,)`` class scores (probabilities or logits).

    Returns:
        ``loss_fn(x, labels)`` with ``labels = jnp.array([tau, goal])`` (integer class indices),
        for :func:`fgm` / :func:`pgd` with ``targeted=False``.
    """

    def loss_fn(x: jax.Array, labels: jax.Array) -> jax.Array:
        s = scores_fn(x)
        return s[labels[1]] - s[labels[0]]

    return loss_fn
