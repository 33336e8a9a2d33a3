r"""Robust error under the L2, L-infinity and L1 threat models.

For a fixed linear student (:math:`\|w\|_2=1`, bias :math:`b`) the smallest decrease of the
margin :math:`\tau x` that a perturbation :math:`\|\Delta\|_q\le\epsilon` can achieve is, by
Hölder's inequality (with equality at the worst case of :mod:`jaxadv.variants`),

.. math::
    \min_{\|\Delta\|_q\le\epsilon}\tau\,w\cdot(\xi+\Delta) = \tau w\cdot\xi - \epsilon\|w\|_{q^*},
    \qquad \tfrac1q+\tfrac1{q^*}=1,

so the robust error is the L2 one (:func:`jaxadv.measures.robust_error`) at the radius
:math:`\epsilon\|w\|_{q^*}`:

.. math::
    S_q = p\,\Phi\Big(\frac{\epsilon\|w\|_{q^*} + b-\rho R/2}{\sqrt{v_1}}\Big)
        + (1-p)\,\Phi\Big(\frac{\epsilon\|w\|_{q^*} - b-\rho R/2}{\sqrt{v_2}}\Big).

:math:`\|w\|_{q^*}` is 1 for L2, :math:`\|w\|_1\in[1,\sqrt N]` for L-infinity and
:math:`\|w\|_\infty\in[1/\sqrt N, 1]` for L1; the Monte Carlo records both at save points
(:class:`jaxadv.montecarlo.MCResult`). Comparable radii therefore scale with N: an L-infinity
radius :math:`\epsilon_\infty\sim\epsilon_2/\sqrt N` for a dense :math:`w`
(``docs/theory.md (section 11)``).
"""
from __future__ import annotations

import numpy as np

from .measures import robust_error
from .params import ModelParams

__all__ = ["THREATS", "dual_norm", "robust_error_threat", "mc_threat_summary", "run_threat"]

THREATS = ("l2", "linf", "l1")


def dual_norm(threat: str, norm1=None, norm_inf=None):
    r""":math:`\|w\|_{q^*}` of a unit-L2 student for the threat ``'l2'`` (1), ``'linf'``
    (``norm1`` :math:`=\|w\|_1`) or ``'l1'`` (``norm_inf`` :math:`=\|w\|_\infty`)."""
    if threat == "l2":
        return 1.0
    if threat == "linf":
        if norm1 is None:
            raise ValueError("threat='linf' needs norm1 = ||w||_1")
        return norm1
    if threat == "l1":
        if norm_inf is None:
            raise ValueError("threat='l1' needs norm_inf = ||w||_inf")
        return norm_inf
    raise ValueError(f"threat={threat!r} is not one of {list(THREATS)}")


def robust_error_threat(R, b, eps_test, params: ModelParams, threat: str = "l2", norm1=None, norm_inf=None):
    r""":math:`S_q(R,b,\epsilon)`, the robust error under the threat ``threat`` (broadcasts)."""
    return robust_error(R, b, eps_test * dual_norm(threat, norm1, norm_inf), params)


def mc_threat_summary(mc, params: ModelParams, eps_test: dict):
    """Mean and sem over replicas of the robust error under each threat at every save point.

    Args:
        mc: :class:`jaxadv.montecarlo.MCResult` (with ``norm1``/``norm_inf``).
        eps_test: ``{threat: radius}``, e.g. ``{"l2": 1.0, "linf": 0.05, "l1": 1.0}``.

    Returns:
        ``{f"robust_error_{threat}_mean": (P,), f"robust_error_{threat}_sem": (P,)}``.
    """
    from .compare import mean_sem

    R, b = mc.R.astype(np.float64), mc.b.astype(np.float64)
    out = {}
    for threat, eps in eps_test.items():
        S = np.asarray(robust_error_threat(R, b, eps, params, threat, mc.norm1, mc.norm_inf), np.float64)
        out[f"robust_error_{threat}_mean"], out[f"robust_error_{threat}_sem"] = mean_sem(S, mc.finite)
    return out


def run_threat(cfg, out_dir: str, progress: bool = True, log=print) -> dict:
    """``jaxadv run`` for the Monte-Carlo-only threat models (``attack="linf"`` or ``"l1"``).

    There is no ODE; the files written are ``mc.csv`` (``alpha``, mean and sem of ``R``, ``b``,
    ``norm1``, ``norm_inf``, the test error and the robust error under each of the three threat
    models at radius ``eps_test``), ``mc_replicas.npz`` and ``config.json``.
    """
    import os
    import time

    import jax
    import jax.numpy as jnp

    from .compare import mean_sem
    from .config import config_dict
    from .io import write_csv, write_json, write_npz
    from .measures import test_error
    from .montecarlo import simulate

    if not cfg.mc:
        raise ValueError(f"attack={cfg.attack!r} has no ODE; mc=false leaves nothing to run")
    params, eps_test = cfg.params, cfg.eps_test_value
    dtype = jnp.float64 if cfg.x64 else jnp.float32
    t = time.perf_counter()
    mc = simulate(jax.random.key(cfg.seed, impl=cfg.prng), params, N=cfg.N, alpha_max=cfg.alpha_max,
                  n_save=cfg.n_save, replicas=cfg.replicas, loss=cfg.loss, dtype=dtype, R0=cfg.R0, b0=cfg.b0,
                  progress=progress, checkpoint=os.path.join(out_dir, "mc_checkpoint.npz"), options=cfg.options,
                  B=cfg.B)
    elapsed = time.perf_counter() - t
    cols = {"alpha": mc.alpha}
    R, b = mc.R.astype(np.float64), mc.b.astype(np.float64)
    for name, x in (("R", R), ("b", b), ("norm1", mc.norm1), ("norm_inf", mc.norm_inf),
                    ("test_error", np.asarray(test_error(R, b, params)))):
        cols[f"{name}_mean"], cols[f"{name}_sem"] = mean_sem(np.asarray(x, np.float64), mc.finite)
    cols.update(mc_threat_summary(mc, params, {q: eps_test for q in THREATS}))
    write_csv(os.path.join(out_dir, "mc.csv"), cols)
    write_npz(os.path.join(out_dir, "mc_replicas.npz"), alpha=mc.alpha, R=mc.R, b=mc.b, norm=mc.norm,
              norm1=mc.norm1, norm_inf=mc.norm_inf, finite=mc.finite)
    log(f"monte carlo ({cfg.attack} attack, B={cfg.B}, no ODE): {cfg.replicas} replicas at N={cfg.N} in "
        f"{elapsed:.1f}s; at alpha={mc.alpha[-1]:g}: " + ", ".join(
            f"S_{q}({eps_test:g})={cols[f'robust_error_{q}_mean'][-1]:.4f}" for q in THREATS))
    info = {"config": config_dict(cfg), "resolved": {"eps_test": eps_test, "ode": None},
            "timings_s": {"mc_s": elapsed}, "seed": cfg.seed,
            "replicas_diverged": int(mc.finite[:, 0].sum() - mc.finite[:, -1].sum())}
    write_json(os.path.join(out_dir, "config.json"), info)
    return info
