r"""Training perturbations (attacks) of the prototype model, each a record with up to three faces.

For the linear pre-activation :math:`x = w\cdot\xi - b` with :math:`\|w\|_2 = 1` and label
:math:`\tau`, an attack of radius :math:`\epsilon` replaces the example by :math:`\tilde\xi`.
An :class:`Attack` carries

* a **Monte Carlo face** ``perturb(key, xi, tau, w, eps, rp) -> xi_adv`` on the N-dimensional
  input (``rp`` the rule's parameter dict; ``key`` is used only when ``random``);
* an optional **ODE face** ``field(tau, eps, rp) -> (shift, extra_var)``: the attacked field is
  :math:`\tilde x = x + \text{shift} + \sqrt{\text{extra\_var}}\,n` with :math:`n\sim\mathcal N(0,1)`
  independent of :math:`x`, and :math:`\|\tilde\xi\|^2/N\to v_\tau + \text{extra\_var}`;
* an optional **reduced face** ``along_w(tau, eps, rp) -> a``: the attack is
  :math:`\tilde\xi = \xi + a\,w`, which the exact O(1) sampler of :mod:`jaxadv.mc.reduced` represents.

What the ODE, the reduced sampler and the threat evaluation accept follows from which faces
exist. A new attack is one record here, added to :data:`ATTACKS`.

=========  ===========================================================  ===============================================
name       :math:`\tilde\xi`                                            faces
=========  ===========================================================  ===============================================
``l2``     :math:`\xi-\tau\epsilon w`                                   MC, ODE (shift :math:`-\tau\epsilon`), reduced
``noise``  :math:`\xi+s\,n`, :math:`n\sim\mathcal N(0,I_N)`             MC, ODE (variance :math:`+s^2`)
``linf``   :math:`\xi-\tau\epsilon\operatorname{sign}(w)`               MC (the field moves by :math:`\epsilon\|w\|_1`)
``l1``     :math:`\xi-\tau\epsilon\operatorname{sign}(w_{i^*})e_{i^*}`  MC (the field moves by
                                                                        :math:`\epsilon\|w\|_\infty`)
=========  ===========================================================  ===============================================

The worst cases in the L2, L-infinity and L1 balls follow from Hölder's inequality
(``docs/theory.md``, section 11); :mod:`jaxadv.analysis.threat` evaluates robust errors under
each ``threat`` (the dual norm of :math:`w` that the attack's field shift is proportional to).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import threefry
from ..typing import Real
from .params import Param

__all__ = [
    "Attack",
    "L2",
    "NOISE",
    "LINF",
    "L1",
    "ATTACKS",
    "get_attack",
    "l2_attack",
    "l2_attack_field",
    "linf_attack",
    "l1_attack",
    "noise_std_for_norm",
    "gradient_attack",
]


class Attack(NamedTuple):
    """A training perturbation (see the module docstring for the faces).

    Attributes:
        name: registry name (``attack=`` in configurations).
        perturb: Monte Carlo face ``perturb(key, xi, tau, w, eps, rp) -> xi_adv``.
        field: ODE face ``field(tau, eps, rp) -> (shift, extra_var)`` or ``None``.
        along_w: reduced-sampler face ``along_w(tau, eps, rp) -> a`` (:math:`\\tilde\\xi=\\xi+a w`) or ``None``.
        random: ``perturb`` draws random numbers (needs a key).
        uses_eps: the perturbation depends on :math:`\\epsilon` (a random eps law is pointless otherwise).
        params: the :class:`jaxadv.model.params.Param` s it reads from the rule's parameter dict.
        threat: the dual norm of :math:`w` its worst-case field shift is proportional to, as the name
            of an observable of :class:`jaxadv.mc.MCResult` (``None``: 1, the L2 case).
        no_ode: why there is no ODE face (for the error message).
    """

    name: str
    perturb: Callable
    field: Callable | None = None
    along_w: Callable | None = None
    random: bool = False
    uses_eps: bool = True
    params: tuple[Param, ...] = ()
    threat: str | None = None
    no_ode: str = ""


# --- L2: the worst case of the talk ---------------------------------------------------------


def l2_attack(xi: jax.Array, tau: Real, w: jax.Array, eps: Real) -> jax.Array:
    r"""Worst-case L2 perturbation :math:`\tilde\xi = \xi - \tau\epsilon w` (``w`` of unit norm)."""
    return xi - tau * eps * w


def l2_attack_field(x: jax.Array, tau: Real, eps: Real) -> jax.Array:
    r"""The same attack seen through the pre-activation: :math:`\tilde x = x - \tau\epsilon`."""
    return x - tau * eps


L2 = Attack(
    name="l2",
    perturb=lambda key, xi, tau, w, eps, rp: l2_attack(xi, tau, w, eps),
    field=lambda tau, eps, rp: (-tau * eps, jnp.zeros_like(tau * eps)),
    along_w=lambda tau, eps, rp: -tau * eps,
)


# --- Gaussian noise augmentation --------------------------------------------------------------


def noise_std_for_norm(noise_norm: float | jax.Array, N: int) -> float | jax.Array:
    r"""Per-component std :math:`s=\epsilon_\text{noise}/\sqrt N` of noise with RMS L2 norm
    :math:`\sqrt{E\|s n\|^2}=\epsilon_\text{noise}` (:math:`E\|sn\| = \epsilon_\text{noise}(1-\frac1{4N}+\dots)`)."""
    return noise_norm / math.sqrt(N)


NOISE = Attack(
    name="noise",
    perturb=lambda key, xi, tau, w, eps, rp: xi + rp["noise_std"] * threefry.normal(key, xi.shape, xi.dtype),
    field=lambda tau, eps, rp: (jnp.zeros_like(tau * eps), rp["noise_std"] ** 2 + jnp.zeros_like(tau * eps)),
    random=True,
    uses_eps=False,
    params=(Param("noise_std", 0.0, lambda x: x >= 0, "must be >= 0"),),
)


# --- the worst cases of a linear student in the L-infinity and L1 balls ------------------------


def linf_attack(xi: jax.Array, tau: Real, w: jax.Array, eps: Real) -> jax.Array:
    r"""Worst case in the L-infinity ball of radius :math:`\epsilon` for a linear student:
    :math:`\tilde\xi = \xi - \tau\epsilon\operatorname{sign}(w)`; the field moves by
    :math:`-\tau\epsilon\|w\|_1`, the largest decrease of :math:`\tau x` in the ball."""
    return xi - tau * eps * jnp.sign(w)


def l1_attack(xi: jax.Array, tau: Real, w: jax.Array, eps: Real) -> jax.Array:
    r"""Worst case in the L1 ball: all the budget on :math:`i^*=\arg\max_i|w_i|`,
    :math:`\tilde\xi = \xi - \tau\epsilon\operatorname{sign}(w_{i^*})e_{i^*}`; the field moves by
    :math:`-\tau\epsilon\|w\|_\infty`."""
    i = jnp.argmax(jnp.abs(w))
    return xi.at[i].add(-tau * eps * jnp.sign(w[i]))


LINF = Attack(
    name="linf",
    perturb=lambda key, xi, tau, w, eps, rp: linf_attack(xi, tau, w, eps),
    threat="norm1",
    no_ode="the field moves by eps*||w||_1, which depends on the full weight vector",
)
L1 = Attack(
    name="l1",
    perturb=lambda key, xi, tau, w, eps, rp: l1_attack(xi, tau, w, eps),
    threat="norm_inf",
    no_ode="the field moves by eps*||w||_inf, which depends on the full weight vector",
)

ATTACKS = {a.name: a for a in (L2, NOISE, LINF, L1)}


@functools.cache
def gradient_attack(norm: float | str = 2, box: tuple[float, float] | None = None) -> Attack:
    r"""A Monte-Carlo-only attack record that runs :func:`jaxadv.attacks.fgm` on the margin
    :math:`-\tau\,w\cdot\xi` in the ``norm`` ball, clipped into ``box`` (e.g. ``(0, 1)`` for pixels).

    Without a box it equals the closed-form worst case (``l2``, ``linf``, ``l1``); with a box the
    step leaves out the components that would push a coordinate out of it. It lets a training rule
    attack inputs with a valid range, such as images (:func:`jaxadv.analysis.mnist.adversarial_sgd`).
    Equal arguments give the same record (cached), so ``jit`` compiles a rule once.
    """
    from .. import attacks

    norm = attacks.canonical_norm(norm)
    box = None if box is None else (float(box[0]), float(box[1]))

    def perturb(
        key: jax.Array | None,
        xi: jax.Array,
        tau: float | jax.Array,
        w: jax.Array,
        eps: float | jax.Array,
        rp: dict[str, jax.Array],
    ) -> jax.Array:
        return attacks.fgm(lambda x, t: -t * jnp.dot(w, x), xi, tau, eps=eps, norm=norm, box=box)

    return Attack(
        name=f"fgm_{norm}" + ("" if box is None else f"_box{box[0]:g}_{box[1]:g}"),
        perturb=perturb,
        no_ode="the box makes the field shift depend on the whole input",
    )


def get_attack(name_or_attack: str | Attack) -> Attack:
    """Look an attack up by name (or pass an :class:`Attack` through)."""
    if isinstance(name_or_attack, Attack):
        return name_or_attack
    try:
        return ATTACKS[name_or_attack]
    except (KeyError, TypeError):
        raise ValueError(f"attack={name_or_attack!r} is not one of {list(ATTACKS)}") from None
