r"""Training variants: randomised :math:`\epsilon`, non-robust-only updates, noise augmentation
and the L-infinity / L1 threat models.

A variant is described by :class:`TrainingOptions`. Its *static* part (the attack kind, the
distribution kind of :math:`\epsilon`, the non-robust-only flag, the number of quadrature nodes)
selects code paths and is hashed into the jit cache; its *traced* part (the range or the values
and weights of :math:`\epsilon`, the noise level) is a pytree of arrays, so a sweep over it does
not recompile (:func:`split_options` / :func:`join_options`).

The per-example pieces are written once here and used by both descriptions:

* :func:`eps_nodes` -- the distribution of the per-example radius :math:`\epsilon` as nodes and
  weights: the Monte Carlo *draws* from it (:func:`draw_eps`), the ODE *sums* over it;
* :func:`nonrobust_gate` -- the indicator :math:`\Theta(\epsilon - \tau x)` of the clean field;
* :func:`perturb_input` -- the perturbation of the N-dimensional input (MC);
  its effect on the field is :func:`jaxadv.attack.l2_attack_field` for ``'l2'`` and a variance
  shift :math:`v_\tau\to v_\tau+s^2` for ``'noise'`` (ODE);
* :func:`field_moments` -- the Gaussian averages :math:`\langle g\,\delta\rangle_\tau`,
  :math:`\langle g\,\delta^2\rangle_\tau` (with the gate :math:`g`) that the ODE of
  :func:`jaxadv.ode.drift` needs.

The theory is in ``docs/theory.md (section 11)``.

Attack kinds (``attack=``):

=========  =====================================================  ====================
kind       perturbation of :math:`\xi` (label :math:`\tau`)          ODE in :math:`(R,b)`
=========  =====================================================  ====================
``l2``     :math:`-\tau\epsilon w`                                  yes
``noise``  :math:`+s\,n`, :math:`n\sim\mathcal N(0,I_N)`              yes (:math:`v_\tau\to v_\tau+s^2`)
``linf``   :math:`-\tau\epsilon\,\operatorname{sign}(w)`             no (needs :math:`\|w\|_1`)
``l1``     :math:`-\tau\epsilon\,\operatorname{sign}(w_{i^*})e_{i^*}`, :math:`i^*=\arg\max|w_i|`  no (needs :math:`\|w\|_\infty`)
=========  =====================================================  ====================
"""
from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from . import threefry
from .attack import l2_attack, l2_attack_field
from .data import cluster_table, field_mean
from .losses import force, get_loss
from .params import ModelParams, check_value

__all__ = [
    "ATTACKS", "EPS_DISTRIBUTIONS", "TrainingOptions", "VariantSpec", "VariantParams", "validate_options",
    "split_options", "join_options", "requires_full_state", "check_ode_supported", "eps_nodes", "draw_eps",
    "nonrobust_gate", "linf_attack", "l1_attack", "perturb_input", "perturb_example", "noise_std_for_norm",
    "truncated_gauss_mean", "field_moments",
]

ATTACKS = ("l2", "noise", "linf", "l1")
EPS_DISTRIBUTIONS = ("fixed", "uniform", "discrete")


class TrainingOptions(NamedTuple):
    r"""How each training example is perturbed and whether it is used.

    Static fields (select code; hashed by ``jit``):
        attack: ``'l2'`` (default: :math:`\tilde\xi=\xi-\tau\epsilon w`), ``'noise'``
            (:math:`\tilde\xi=\xi+s\,n`, :math:`n\sim\mathcal N(0,I_N)`), ``'linf'`` or ``'l1'``
            (worst case of a linear student in that ball, Monte Carlo only).
        eps_dist: ``'fixed'`` (:math:`\epsilon=` ``params.eps``, default), ``'uniform'``
            (:math:`\epsilon\sim U[\epsilon_\min,\epsilon_\max]` per example) or ``'discrete'``
            (:math:`\epsilon=\epsilon_k` with probability :math:`\pi_k`).
        nonrobust_only: update only on examples that are not :math:`\epsilon`-robust,
            :math:`\tau x<\epsilon` for the clean field :math:`x=w\cdot\xi-b` (skip the others).
        n_eps_nodes: Gauss--Legendre nodes of the ODE's average over a uniform :math:`\epsilon`.

    Traced fields (floats / arrays; a sweep over them does not recompile):
        eps_min, eps_max: range of the uniform distribution.
        eps_values, eps_weights: support :math:`\epsilon_k` and weights :math:`\pi_k` of the discrete
            distribution (same length; weights are normalised).
        noise_std: per-component standard deviation :math:`s` of the augmentation noise;
            :math:`E\|s n\|^2 = s^2 N`, i.e. RMS norm :math:`s\sqrt N`
            (see :func:`noise_std_for_norm`).

    ``TrainingOptions()`` reproduces the default (L2 adversarial training at ``params.eps``)
    bit for bit.
    """

    attack: str = "l2"
    eps_dist: str = "fixed"
    nonrobust_only: bool = False
    eps_min: float = 0.0
    eps_max: float = 0.0
    eps_values: Tuple[float, ...] = ()
    eps_weights: Tuple[float, ...] = ()
    noise_std: float = 0.0
    n_eps_nodes: int = 16


class VariantSpec(NamedTuple):
    """The static part of :class:`TrainingOptions` (hashable)."""

    attack: str
    eps_dist: str
    nonrobust_only: bool
    n_eps_nodes: int


class VariantParams(NamedTuple):
    """The traced part of :class:`TrainingOptions`: scalars ``eps_min``, ``eps_max``, ``noise_std``;
    ``eps_values`` and ``eps_weights`` of shape ``(K,)`` (``K=1`` placeholder when not discrete)."""

    eps_min: jax.Array
    eps_max: jax.Array
    eps_values: jax.Array
    eps_weights: jax.Array
    noise_std: jax.Array


def validate_options(options: TrainingOptions) -> TrainingOptions:
    """Check ``options`` eagerly; raise ``ValueError`` naming the field and its value."""
    if not isinstance(options, TrainingOptions):
        raise ValueError(f"options={options!r} must be a jaxadv.TrainingOptions")
    if options.attack not in ATTACKS:
        raise ValueError(f"attack={options.attack!r} is not one of {list(ATTACKS)}")
    if options.eps_dist not in EPS_DISTRIBUTIONS:
        raise ValueError(f"eps_dist={options.eps_dist!r} is not one of {list(EPS_DISTRIBUTIONS)}")
    if not isinstance(options.nonrobust_only, (bool, np.bool_)):
        raise ValueError(f"nonrobust_only={options.nonrobust_only!r} must be True or False")
    if int(options.n_eps_nodes) != options.n_eps_nodes or options.n_eps_nodes < 1:
        raise ValueError(f"n_eps_nodes={options.n_eps_nodes!r} must be an integer >= 1")
    check_value("noise_std", options.noise_std, lambda x: x >= 0, "must be >= 0")
    if options.eps_dist == "uniform":
        check_value("eps_min", options.eps_min, lambda x: x >= 0, "must be >= 0")
        check_value("eps_max", options.eps_max, lambda x: x >= float(options.eps_min),
                    f"must be >= eps_min={options.eps_min!r}")
    if options.eps_dist == "discrete":
        vals = np.atleast_1d(np.asarray(options.eps_values, dtype=float))
        wts = np.atleast_1d(np.asarray(options.eps_weights, dtype=float))
        if vals.size == 0:
            raise ValueError("eps_values=() must hold at least one value for eps_dist='discrete'")
        if wts.shape != vals.shape:
            raise ValueError(f"eps_weights={options.eps_weights!r} must have the length of "
                             f"eps_values={options.eps_values!r}")
        for v in vals:
            check_value("eps_values", float(v), lambda x: x >= 0, "must be >= 0")
        for v in wts:
            check_value("eps_weights", float(v), lambda x: x >= 0, "must be >= 0")
        if wts.sum() <= 0:
            raise ValueError(f"eps_weights={options.eps_weights!r} must have a positive sum")
    if options.attack == "noise" and options.eps_dist != "fixed" and not options.nonrobust_only:
        raise ValueError(f"eps_dist={options.eps_dist!r} has no effect with attack='noise' (the noise "
                         "level is noise_std); use eps_dist='fixed'")
    return options


def split_options(options: TrainingOptions, dtype=None):
    """``(VariantSpec, VariantParams)``: the static part and the traced part as arrays of ``dtype``."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    spec = VariantSpec(str(options.attack), str(options.eps_dist), bool(options.nonrobust_only),
                       int(options.n_eps_nodes))
    if options.eps_dist == "discrete":
        vals = jnp.atleast_1d(jnp.asarray(options.eps_values, dtype))
        wts = jnp.atleast_1d(jnp.asarray(options.eps_weights, dtype))
        wts = wts / jnp.sum(wts)
    else:
        vals, wts = jnp.zeros((1,), dtype), jnp.ones((1,), dtype)
    vp = VariantParams(jnp.asarray(options.eps_min, dtype), jnp.asarray(options.eps_max, dtype), vals, wts,
                       jnp.asarray(options.noise_std, dtype))
    return spec, vp


def join_options(spec: VariantSpec, vp: VariantParams) -> TrainingOptions:
    """Inverse of :func:`split_options` (numeric fields stay arrays, possibly traced)."""
    return TrainingOptions(attack=spec.attack, eps_dist=spec.eps_dist, nonrobust_only=spec.nonrobust_only,
                           eps_min=vp.eps_min, eps_max=vp.eps_max, eps_values=vp.eps_values,
                           eps_weights=vp.eps_weights, noise_std=vp.noise_std, n_eps_nodes=spec.n_eps_nodes)


def requires_full_state(options) -> bool:
    r"""``True`` when the dynamics does not close in :math:`(R, b)`: the L-infinity and L1 attacks
    move the field by :math:`\epsilon\|w\|_1` / :math:`\epsilon\|w\|_\infty`, which depend on the
    whole weight vector (and on the orientation of B). ODEs and reduced samplers must refuse
    these; only the N-dimensional Monte Carlo simulates them. ``None`` means the default."""
    return options is not None and options.attack in ("linf", "l1")


def reduced_check_arguments(options) -> dict:
    """The options of a run as keywords of :func:`jaxadv.reduced.check_reduced_supported`
    (``None``, the default, is L2 adversarial training at a fixed eps)."""
    o = TrainingOptions() if options is None else options
    return {"attack": o.attack, "eps_dist": o.eps_dist, "nonrobust_only": bool(o.nonrobust_only)}


def check_ode_supported(options) -> None:
    """Raise ``ValueError`` when the large-N ODE of :func:`jaxadv.ode.drift` has no closed form
    for ``options``."""
    if options is None:
        return
    if requires_full_state(options):
        dual = "||w||_1" if options.attack == "linf" else "||w||_inf"
        raise ValueError(f"attack={options.attack!r} has no ODE in (R, b): the field moves by eps*{dual}, "
                         "which depends on the full weight vector; use the Monte Carlo (jaxadv.simulate)")
    if options.attack == "noise" and options.nonrobust_only:
        raise ValueError("attack='noise' with nonrobust_only=True has no ODE here (the gate acts on the clean "
                         "field, the update on the noisy one); use the Monte Carlo")


def noise_std_for_norm(noise_norm, N: int):
    r"""Per-component std :math:`s=\epsilon_\text{noise}/\sqrt N` of noise with RMS L2 norm
    :math:`\sqrt{E\|s n\|^2}=\epsilon_\text{noise}` (:math:`E\|sn\| = \epsilon_\text{noise}(1-\frac1{4N}+\dots)`)."""
    return noise_norm / math.sqrt(N)


# --- the distribution of eps -----------------------------------------------------------------

def eps_nodes(params: ModelParams, options: TrainingOptions):
    r"""Nodes :math:`\epsilon_k` and weights :math:`\pi_k` (summing to 1), shape ``(K,)``, with
    :math:`E[f(\epsilon)] \approx \sum_k \pi_k f(\epsilon_k)`.

    ``'fixed'``: ``([params.eps], [1])``. ``'discrete'``: the support and the normalised weights
    (exact). ``'uniform'``: ``n_eps_nodes``-point Gauss--Legendre on :math:`[\epsilon_\min,\epsilon_\max]`
    (exact for polynomials of degree :math:`2K-1` in :math:`\epsilon`; the moments are smooth in
    :math:`\epsilon` except, with ``nonrobust_only``, through the smooth CDF of the gate).
    """
    if options.eps_dist == "fixed":
        e = jnp.asarray(params.eps)
        return e[None], jnp.ones((1,), e.dtype)
    if options.eps_dist == "discrete":
        w = jnp.asarray(options.eps_weights)
        return jnp.asarray(options.eps_values), w / jnp.sum(w)
    x, w = np.polynomial.legendre.leggauss(int(options.n_eps_nodes))
    lo, hi = jnp.asarray(options.eps_min), jnp.asarray(options.eps_max)
    return (lo + hi) / 2 + (hi - lo) / 2 * jnp.asarray(x, lo.dtype), jnp.asarray(w / 2, lo.dtype)


def draw_eps(key, params: ModelParams, options: TrainingOptions, dtype):
    """One per-example radius drawn from the distribution of :func:`eps_nodes` (exact, not the nodes)."""
    if options.eps_dist == "fixed":
        return jnp.asarray(params.eps, dtype)
    if options.eps_dist == "uniform":
        u = threefry.uniform(key, (), dtype)
        return (options.eps_min + (options.eps_max - options.eps_min) * u).astype(dtype)
    vals, wts = eps_nodes(params, options)
    # jax.random.choice(key, K, p=wts) written out, with its uniform from the fused threefry
    cum = jnp.cumsum(wts)
    k = jnp.searchsorted(cum, cum[-1] * (1 - threefry.uniform(key, (), cum.dtype)))
    return vals[k].astype(dtype)


def nonrobust_gate(x, tau, eps):
    r""":math:`g=\Theta(\epsilon-\tau x)`: 1 when the clean field ``x`` is not :math:`\epsilon`-robust
    (an L2 perturbation of norm :math:`\le\epsilon` can make :math:`\tau x\le 0`), else 0."""
    return (tau * x < eps).astype(jnp.result_type(x, float))


# --- perturbations of the input ----------------------------------------------------------------

def linf_attack(xi, tau, w, eps):
    r"""Worst case in the L-infinity ball of radius :math:`\epsilon` for a linear student:
    :math:`\tilde\xi = \xi - \tau\epsilon\operatorname{sign}(w)`; the field moves by
    :math:`-\tau\epsilon\|w\|_1`, the largest decrease of :math:`\tau x` in the ball."""
    return xi - tau * eps * jnp.sign(w)


def l1_attack(xi, tau, w, eps):
    r"""Worst case in the L1 ball: all the budget on :math:`i^*=\arg\max_i|w_i|`,
    :math:`\tilde\xi = \xi - \tau\epsilon\operatorname{sign}(w_{i^*})e_{i^*}`; the field moves by
    :math:`-\tau\epsilon\|w\|_\infty`."""
    i = jnp.argmax(jnp.abs(w))
    return xi.at[i].add(-tau * eps * jnp.sign(w[i]))


def perturb_input(key, xi, tau, w, eps, options: TrainingOptions):
    """The training perturbation of one input ``xi`` (shape ``(N,)``) for the attack kind of ``options``."""
    if options.attack == "l2":
        return l2_attack(xi, tau, w, eps)
    if options.attack == "linf":
        return linf_attack(xi, tau, w, eps)
    if options.attack == "l1":
        return l1_attack(xi, tau, w, eps)
    if options.attack == "noise":
        return xi + options.noise_std * threefry.normal(key, xi.shape, xi.dtype)
    raise ValueError(f"attack={options.attack!r} is not one of {list(ATTACKS)}")


def perturb_example(key, student, xi, tau, params: ModelParams, options: TrainingOptions):
    r"""The perturbed example and the gate of one training step.

    Returns:
        ``(xi_adv, gate)``: the perturbed input and :math:`g=\Theta(\epsilon-\tau(w\cdot\xi-b))`
        (``None`` unless ``nonrobust_only``). The radius :math:`\epsilon` is drawn per example
        (:func:`draw_eps`) with ``fold_in(key, 0)``; the noise uses ``fold_in(key, 1)``.
    """
    random = options.eps_dist != "fixed" or options.attack == "noise"
    if random and key is None:
        raise ValueError(f"key=None: attack={options.attack!r} with eps_dist={options.eps_dist!r} draws "
                         "random numbers; pass a PRNG key")
    k_eps, k_noise = (threefry.fold_in(key, 0), threefry.fold_in(key, 1)) if random else (None, None)
    eps = draw_eps(k_eps, params, options, xi.dtype)
    xi_adv = perturb_input(k_noise, xi, tau, student.w, eps, options)
    gate = None
    if options.nonrobust_only:
        gate = nonrobust_gate(jnp.dot(student.w, xi) - student.b, tau, eps) > 0
    return xi_adv, gate


# --- Gaussian averages for the ODE -------------------------------------------------------------

_HALF_CACHE: dict = {}


def _unit_panels(panels: int, order: int):
    key = (panels, order)
    if key not in _HALF_CACHE:
        x, w = np.polynomial.legendre.leggauss(order)
        edges = np.linspace(0.0, 1.0, panels + 1)
        lo, hi = edges[:-1, None], edges[1:, None]
        _HALF_CACHE[key] = (((lo + hi) / 2 + (hi - lo) / 2 * x).ravel(), ((hi - lo) / 2 * w).ravel())
    return _HALF_CACHE[key]


def truncated_gauss_mean(f, m, v, cut, side: str, panels: int = 32, order: int = 16, width: float = 9.0):
    r""":math:`\langle \Theta(\pm(c - x))\,f(x)\rangle_{x\sim\mathcal N(m,v)}`, the Gaussian average
    restricted to one side of the cut :math:`c`.

    In :math:`t=(x-m)/\sqrt v` the integral runs over :math:`[-T, t_c]` (``side='below'``) or
    :math:`[t_c, T]` (``side='above'``), :math:`t_c=\operatorname{clip}((c-m)/\sqrt v, -T, T)`;
    the interval is mapped onto fixed composite Gauss--Legendre panels, so a smooth ``f`` is
    integrated to high accuracy on each side of the jump (plain Gauss--Hermite would not see it).

    Args:
        f: vectorised integrand of x.
        m, v, cut: mean, variance and cut (equal shapes).
        side: ``'below'`` (:math:`x<c`) or ``'above'`` (:math:`x>c`).
    """
    if side not in ("below", "above"):
        raise ValueError(f"side={side!r} must be 'below' or 'above'")
    u, wu = _unit_panels(panels, order)
    dtype = jnp.result_type(m, v, cut, float)
    m, v, cut = (jnp.asarray(a, dtype)[..., None] for a in (m, v, cut))
    sd = jnp.sqrt(v)
    tc = jnp.clip((cut - m) / sd, -width, width)
    lo, hi = (jnp.full_like(tc, -width), tc) if side == "below" else (tc, jnp.full_like(tc, width))
    t = lo + (hi - lo) * jnp.asarray(u, dtype)
    wt = (hi - lo) * jnp.asarray(wu, dtype) * jnp.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return jnp.sum(wt * f(m + sd * t), axis=-1)


def field_moments(loss, R, b, params: ModelParams, options: TrainingOptions, method: str = "auto"):
    r"""Per-cluster averages for the ODE under a variant: ``(d1, d2, v_eff)`` of shape ``(2,)``.

    .. math::
        d_1^\tau = E_\epsilon\big\langle g\,\delta(\tilde x,\tau)\big\rangle,\quad
        d_2^\tau = E_\epsilon\big\langle g\,\delta(\tilde x,\tau)^2\big\rangle,\quad
        \tilde x\mid\tau \sim \mathcal N(\tau\tfrac{\rho}{2}R - b + \Delta_\tau,\ v^\text{eff}_\tau)

    with :math:`\Delta_\tau = -\tau\epsilon` and :math:`v^\text{eff}_\tau=v_\tau` for ``'l2'``;
    :math:`\Delta_\tau = 0`, :math:`v^\text{eff}_\tau = v_\tau + s^2` for ``'noise'``; the gate
    :math:`g=\Theta(\epsilon-\tau x)=\Theta(-\tau\tilde x)` for ``nonrobust_only`` (L2), else 1.
    :math:`v^\text{eff}_\tau` also replaces :math:`v_\tau` in the :math:`\eta_w^2` term of the ODE,
    since :math:`\|\tilde\xi\|^2/N\to v_\tau+s^2`.
    """
    from .losses import force_moments

    check_ode_supported(options)
    loss = get_loss(loss)
    tau, weight, var = cluster_table(params)
    mean = field_mean(R, b, tau, params)
    if options.attack == "noise":
        var = var + options.noise_std ** 2
        return (*force_moments(loss, mean, var, tau, method), var)
    eps_k, pi_k = eps_nodes(params, options)
    # shapes: clusters (2, 1) x eps nodes (1, K)
    m = l2_attack_field(mean[:, None], tau[:, None], eps_k[None, :])
    t2, v2 = jnp.broadcast_to(tau[:, None], m.shape), jnp.broadcast_to(var[:, None], m.shape)
    if options.nonrobust_only:
        # gate Theta(eps - tau x) = Theta(-tau x_adv): x_adv < 0 for tau=+1, x_adv > 0 for tau=-1
        f1 = lambda x, t=t2: force(loss, x, jnp.broadcast_to(t[..., None], x.shape))
        zero = jnp.zeros_like(m)

        def avg(g):
            # the gated side is tau * x_adv < 0: integrate y = tau * x_adv ~ N(tau m, v) below 0
            return truncated_gauss_mean(lambda y: g(t2[..., None] * y, t2), t2 * m, v2, zero, "below")

        d1 = avg(lambda x, t: f1(x, t))
        d2 = avg(lambda x, t: f1(x, t) ** 2)
    else:
        d1, d2 = force_moments(loss, m, v2, t2, method)
    return jnp.sum(pi_k * d1, axis=-1), jnp.sum(pi_k * d2, axis=-1), var
