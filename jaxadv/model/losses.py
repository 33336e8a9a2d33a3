r"""Losses of the pre-activation: the pluggable piece of the learning rule.

A loss is a scalar function :math:`L(\tilde x, \tau)` of the (attacked) pre-activation
:math:`\tilde x` and the label :math:`\tau`, and of the rule's traced parameters where it
declares some (the hinge's margin). Everything else derives from it:

* the Monte Carlo differentiates it through :math:`\tilde x = w\cdot\tilde\xi - b`
  with ``jax.grad`` and feeds the gradient to optax;
* the ODE needs only the *force* :math:`\delta(\tilde x,\tau) = -\partial L/\partial\tilde x`
  (again ``jax.grad``), averaged over the Gaussian distribution of :math:`\tilde x`.

A loss may also carry closed forms of the two Gaussian moments the ODE needs,
:math:`\langle\delta\rangle` and :math:`\langle\delta^2\rangle`; they are optional and are
checked against the generic quadrature in the tests.

The default is the talk's quadratic loss of the erf student,
:math:`L = \tfrac12(\operatorname{erf}(\tilde x) - \tau)^2`.

=================  ===================================================================  =================
name               :math:`L(\tilde x,\tau)`                                              ODE moments
=================  ===================================================================  =================
``quadratic``      :math:`\tfrac12(\operatorname{erf}\tilde x-\tau)^2`                   closed form
``logistic``       :math:`\log(1+e^{-2\tau\tilde x})`                                   quadrature
``cross_entropy``  :math:`-\log\Phi(\sqrt2\,\tau\tilde x)`                               quadrature
``hinge``          :math:`\max(0,\ c-\tau\tilde x)`, :math:`c` = ``hinge_margin``         closed form
=================  ===================================================================  =================

**Every student, one meaning.** A loss acts either on the student's *score* or on its *output*
(:attr:`Loss.acts_on`): the margin losses (``logistic``, ``cross_entropy``, ``hinge``) act on the
score, the unit's pre-activation :math:`x` and the committee's output :math:`\sigma=\sum_kv_k\operatorname{erf}x_k`;
the quadratic loss acts on the output, the unit's :math:`\operatorname{erf}x` and the committee's
:math:`\sigma` (the committee has no output nonlinearity: its score is its output). The face
:attr:`Loss.student_value` is the loss as a function of that argument, :math:`\ell(z,\tau)`, which
every student calls on its own score or output (:func:`student_loss_value`; the unit's ``value`` is
:math:`\ell` of its :math:`x` or :math:`\operatorname{erf}x`, tested). So ``loss = "logistic"`` is
:math:`\log(1+e^{-2\tau x})` for the unit and :math:`\log(1+e^{-2\tau\sigma})` for the committee,
``"quadratic"`` is :math:`\tfrac12(\operatorname{erf}x-\tau)^2` and :math:`\tfrac12(\sigma-\tau)^2`, and
``"hinge"`` is :math:`\max(0,c-\tau x)` and :math:`\max(0,c-\tau\sigma)` (``docs/theory.md``, sections 3
and 12.15). For the committee ``cross_entropy`` is the probit margin loss
:math:`-\log\Phi(\sqrt2\,\tau\sigma)` (the unit's cross-entropy of :math:`P(\tau|x)=(1+\tau\operatorname{erf}x)/2`
is the same function of the score).

Gradient attacks that ascend the loss (the committee's FGM and PGD, its worst case) ascend
:attr:`Loss.ascent` where a loss has one: the hinge is the non-decreasing function
:math:`\max(0,\cdot)` of :math:`c-\tau z`, so it hands the attacks :math:`c-\tau z` itself. Where the
hinge is positive this changes nothing (same normalised gradient, same maximiser); where it is 0, the
attacks still move the example toward the margin, as the unit's L2 attack :math:`-\tau\epsilon w`
does, instead of stopping on a zero gradient (``docs/theory.md``, section 12.15).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from jax.typing import ArrayLike

from ..quadrature import gauss_legendre_mean, lift, nodes
from .params import Param

__all__ = [
    "Loss",
    "QUADRATIC",
    "LOGISTIC",
    "CROSS_ENTROPY",
    "HINGE",
    "LOSSES",
    "get_loss",
    "loss_value",
    "student_loss_value",
    "ascent_value",
    "force",
    "force_moments",
    "owens_t",
]


class Loss(NamedTuple):
    """A loss of the pre-activation.

    Attributes:
        name: registry name (used in configs and file headers).
        value: ``value(x, tau) -> L`` for scalar ``x``, ``tau`` (elementwise on arrays); a loss
            with ``params`` takes the rule's parameter dict too, ``value(x, tau, rp)``.
        moments: optional ``moments(m, v, tau) -> (<delta>, <delta^2>)`` (``moments(m, v, tau, rp)``
            with ``params``) for :math:`\\tilde x\\sim\\mathcal N(m, v)`, in closed form; ``None`` to
            use quadrature.
        params: the :class:`jaxadv.model.params.Param` s it reads from the rule's parameter dict
            (they become configuration keys and sweep axes, like an attack's).
        acts_on: ``"score"`` (a margin loss: the unit's :math:`x`, the committee's :math:`\\sigma`) or
            ``"output"`` (the unit's :math:`\\operatorname{erf}x`, the committee's :math:`\\sigma`); module docstring.
        student_value: ``student_value(z, tau) -> L`` (``student_value(z, tau, rp)`` with ``params``) of what the
            loss acts on, for every student; ``None``: ``value`` itself (a loss of the score).
        ascent: ``ascent(z, tau[, rp])``, the function of the same argument that gradient attacks ascend when it
            is not the loss itself (``None``); the hinge's :math:`c-\\tau z`.
    """

    name: str
    value: Callable
    moments: Callable | None = None
    params: tuple = ()
    acts_on: str = "score"
    student_value: Callable | None = None
    ascent: Callable | None = None


def loss_value(loss: Loss, x: ArrayLike, tau: ArrayLike, rp: dict | None = None) -> jax.Array:
    r""":math:`L(x,\tau)` of ``loss``, handing it the rule's parameters ``rp`` when it declares some."""
    return loss.value(x, tau, {} if rp is None else rp) if loss.params else loss.value(x, tau)


def _params_of(loss: Loss, rp: dict | None) -> dict:
    """``rp`` with the defaults of the loss's parameters where it lacks them."""
    return {**{p.name: p.default for p in loss.params}, **({} if rp is None else rp)}


def student_loss_value(loss: Loss, z: ArrayLike, tau: ArrayLike, rp: dict | None = None) -> jax.Array:
    r""":math:`\ell(z,\tau)` of ``loss`` at what it acts on (:attr:`Loss.acts_on`): the committee calls it on
    its output :math:`\sigma` for every loss; ``rp``: the rule's parameters, for a loss that has some (a
    parameter missing from it takes its default)."""
    f = loss.value if loss.student_value is None else loss.student_value
    return f(z, tau, _params_of(loss, rp)) if loss.params else f(z, tau)


def ascent_value(loss: Loss, z: ArrayLike, tau: ArrayLike, rp: dict | None = None) -> jax.Array:
    r"""The function of :math:`z` that gradient attacks ascend: :attr:`Loss.ascent` where the loss has one (the
    hinge's :math:`c-\tau z`), else :func:`student_loss_value`."""
    if loss.ascent is None:
        return student_loss_value(loss, z, tau, rp)
    return loss.ascent(z, tau, _params_of(loss, rp)) if loss.params else loss.ascent(z, tau)


def force(loss: Loss, x: ArrayLike, tau: ArrayLike, rp: dict | None = None) -> jax.Array:
    r"""The force :math:`\delta(x,\tau) = -\partial L(x,\tau)/\partial x`, elementwise (``rp``: the
    rule's parameters, for a loss that has some)."""
    g = jax.grad(lambda x_, t_: loss_value(loss, x_, t_, rp))
    fn = g
    for _ in range(jnp.ndim(x)):
        fn = jax.vmap(fn)
    x, tau = jnp.broadcast_arrays(x, tau)
    return -fn(x, tau)


def force_moments(
    loss: Loss, m: ArrayLike, v: ArrayLike, tau: ArrayLike, method: str = "auto", rp: dict | None = None
) -> tuple[jax.Array, jax.Array]:
    r"""Gaussian moments :math:`(\langle\delta\rangle, \langle\delta^2\rangle)` of the force for
    :math:`\tilde x\sim\mathcal N(m, v)`.

    Args:
        loss: the loss.
        m, v, tau: mean, variance of the attacked pre-activation and the label (equal shapes).
        method: ``"auto"`` (closed form when the loss has one, else ``"quadrature"``),
            ``"closed"`` or ``"quadrature"`` (composite Gauss--Legendre, see :mod:`jaxadv.ode.quadrature`).
        rp: the rule's parameters (for a loss that has some, e.g. the hinge's margin).
    """
    if method == "auto":
        method = "closed" if loss.moments is not None else "quadrature"
    if method == "closed":
        if loss.moments is None:
            raise ValueError(f"method='closed': the loss {loss.name!r} has no closed-form moments")
        return loss.moments(m, v, tau, {} if rp is None else rp) if loss.params else loss.moments(m, v, tau)
    if method != "quadrature":
        raise ValueError(f"method={method!r} must be 'auto', 'closed' or 'quadrature'")

    m, v, tau = jnp.broadcast_arrays(*(jnp.asarray(a) for a in (m, v, tau)))
    f1 = lambda x: force(loss, x, jnp.broadcast_to(tau[..., None], x.shape), rp)
    return gauss_legendre_mean(f1, m, v), gauss_legendre_mean(lambda x: f1(x) ** 2, m, v)


# --- the quadratic loss of the erf student -------------------------------------------------

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _quadratic_value(x: jax.Array, tau: float | jax.Array) -> jax.Array:
    return 0.5 * (erf(x) - tau) ** 2


def owens_t(h: ArrayLike, a: ArrayLike, n: int = 12) -> jax.Array:
    r"""Owen's T function by ``n``-point Gauss--Legendre on its defining integral,

    .. math::
        T(h, a) = \frac{1}{2\pi}\int_0^a \frac{e^{-h^2(1+x^2)/2}}{1+x^2}\,dx .

    For :math:`0 < a \le 1` (all this module needs) 12 nodes reach 4e-16 against
    ``scipy.special.owens_t`` for every ``h`` (tested)."""
    t, w = _legendre_nodes(n)
    dtype = jnp.result_type(h, a, float)
    h, a = (x[..., None] for x in jnp.broadcast_arrays(jnp.asarray(h, dtype), jnp.asarray(a, dtype)))
    x = a * (lift(jnp.asarray(t, dtype), a.ndim) + 1) / 2
    q = 1 + x * x
    return (
        jnp.sum(lift(jnp.asarray(w, dtype), a.ndim) * jnp.exp(-h * h * q / 2) / q, axis=-1) * a[..., 0] / (4 * math.pi)
    )


def _legendre_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    return nodes("legendre", n)


def _quadratic_moments(m: jax.Array, v: jax.Array, tau: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Closed forms for :math:`\delta = (\tau-\operatorname{erf}x)\tfrac{2}{\sqrt\pi}e^{-x^2}`,
    :math:`x\sim\mathcal N(m,v)`.

    .. math::
        \langle\delta\rangle = \tfrac{2}{\sqrt\pi}\,\frac{e^{-m^2/(1+2v)}}{\sqrt{1+2v}}
            \Big[\tau - \operatorname{erf}\frac{m}{\sqrt{(1+2v)(1+4v)}}\Big]

    .. math::
        \langle\delta^2\rangle = \tfrac{4}{\pi}\,\frac{e^{-2m^2/(1+4v)}}{\sqrt{1+4v}}
            \Big[2 - 2\tau\operatorname{erf}(k) - 8\,T\Big(\sqrt2\,k,\ \sqrt{\tfrac{1+4v}{1+8v}}\Big)\Big],
        \qquad k = \frac{m}{\sqrt{(1+4v)(1+6v)}},

    with :math:`T` Owen's T function (:func:`owens_t`); it comes from
    :math:`\langle\operatorname{erf}^2X\rangle = 1 - 8T(h, a)` for a Gaussian :math:`X`
    (derivation in ``docs/theory.md``, section 3).
    """
    a = 1 + 2 * v
    c = 1 + 4 * v
    d1 = _TWO_OVER_SQRT_PI * jnp.exp(-m * m / a) / jnp.sqrt(a) * (tau - erf(m / jnp.sqrt(a * c)))
    k = m / jnp.sqrt(c * (1 + 6 * v))
    t = owens_t(math.sqrt(2.0) * k, jnp.sqrt(c / (1 + 8 * v)))
    d2 = (4 / math.pi) * jnp.exp(-2 * m * m / c) / jnp.sqrt(c) * (2 - 2 * tau * erf(k) - 8 * t)
    return d1, d2


def _quadratic_output_value(z: jax.Array, tau: float | jax.Array) -> jax.Array:
    r"""The quadratic loss of the output :math:`z`, :math:`\tfrac12(z-\tau)^2` (the unit's
    :math:`z=\operatorname{erf}x`, the committee's :math:`z=\sigma`)."""
    return 0.5 * (z - tau) ** 2


QUADRATIC = Loss(
    "quadratic", _quadratic_value, _quadratic_moments, acts_on="output", student_value=_quadratic_output_value
)

LOSSES = {QUADRATIC.name: QUADRATIC}


# --- losses of the margin tau*x without closed forms (the ODE uses quadrature) -------------------


def _logistic_value(x: jax.Array, tau: float | jax.Array) -> jax.Array:
    r"""Logistic loss :math:`L = \log(1 + e^{-2\tau x})`, force :math:`\delta = 2\tau/(1+e^{2\tau x})`.

    It is the cross-entropy of the label under :math:`P(\tau\mid x) = (1+\tanh(\tau x))/2`,
    the tanh student at inverse temperature :math:`\beta=1`."""
    return jax.nn.softplus(-2.0 * tau * x)


def _cross_entropy_value(x: jax.Array, tau: float | jax.Array) -> jax.Array:
    r"""Cross-entropy of the erf student, :math:`P(\tau\mid x)=(1+\tau\operatorname{erf}x)/2=\Phi(\sqrt2\,\tau x)`:
    :math:`L=-\log\Phi(\sqrt2\,\tau x)`, force
    :math:`\delta=\sqrt2\,\tau\,\varphi(\sqrt2 x)/\Phi(\sqrt2\,\tau x)` (evaluated with ``log_ndtr``,
    stable for large :math:`-\tau x`, where :math:`\delta\approx -2x`)."""
    from jax.scipy.special import log_ndtr

    return -log_ndtr(math.sqrt(2.0) * tau * x)


LOGISTIC = Loss("logistic", _logistic_value)
CROSS_ENTROPY = Loss("cross_entropy", _cross_entropy_value)
LOSSES[LOGISTIC.name] = LOGISTIC
LOSSES[CROSS_ENTROPY.name] = CROSS_ENTROPY


# --- the hinge loss: training only on examples inside the margin --------------------------------


def _hinge_value(x: ArrayLike, tau: ArrayLike, rp: dict) -> jax.Array:
    r"""Hinge loss :math:`L=\max(0,\ c-\tau x)` with margin :math:`c` = ``rp["hinge_margin"]``;
    force :math:`\delta=\tau\,\mathbb 1[\tau x<c]` (``jax.grad`` takes the kink's derivative as 0)."""
    return jax.nn.relu(rp["hinge_margin"] - tau * x)


def _hinge_moments(m: ArrayLike, v: ArrayLike, tau: ArrayLike, rp: dict) -> tuple[jax.Array, jax.Array]:
    r"""Closed forms for :math:`\delta=\tau\,\mathbb 1[\tau x<c]`, :math:`x\sim\mathcal N(m, v)`, :math:`\tau=\pm1`:

    .. math::
        P = \Pr(\tau x < c) = \Phi\Big(\frac{c-\tau m}{\sqrt v}\Big),\qquad
        \langle\delta\rangle = \tau P,\qquad \langle\delta^2\rangle = P .

    The force is a step, so Gauss--Legendre quadrature would converge slowly; these are exact
    (``docs/theory.md``, section 3)."""
    from jax.scipy.special import ndtr

    P = ndtr((rp["hinge_margin"] - tau * m) / jnp.sqrt(v))
    return jnp.asarray(tau * P), P


def _hinge_ascent(z: ArrayLike, tau: ArrayLike, rp: dict) -> jax.Array:
    r""":math:`c-\tau z`: the hinge is :math:`\max(0,\cdot)` of it, so attacks ascend it (module docstring)."""
    return rp["hinge_margin"] - tau * z


HINGE = Loss(
    "hinge",
    _hinge_value,
    _hinge_moments,
    params=(Param("hinge_margin", 0.0, lambda x: x >= 0, "must be >= 0"),),
    ascent=_hinge_ascent,
)
LOSSES[HINGE.name] = HINGE


def get_loss(name_or_loss: str | Loss) -> Loss:
    """Look a loss up by name (or pass a :class:`Loss` through)."""
    if isinstance(name_or_loss, Loss):
        return name_or_loss
    try:
        return LOSSES[name_or_loss]
    except KeyError:
        raise ValueError(f"loss={name_or_loss!r} is not one of {sorted(LOSSES)}") from None
