r"""Comparison of defences on the same data: clean and robust error at :math:`\alpha_\max`.

Five training rules, all at the same radius :math:`\epsilon` (``eps``) and from the same
initial condition, data model and learning rates:

==================  ========================================================================
``none``            standard training (:math:`\epsilon=0`)
``noise``           random-noise augmentation, :math:`\tilde\xi=\xi+s\,n` with RMS norm
                    :math:`s\sqrt N=\epsilon` (:math:`s=\epsilon/\sqrt N`)
``adversarial``     L2 adversarial training at :math:`\epsilon`
``random_eps``      L2 adversarial training at :math:`\epsilon\sim U[0, 2\epsilon]` per example
``nonrobust_only``  L2 adversarial training, updating only on examples that are not
                    :math:`\epsilon`-robust
==================  ========================================================================

The robust error is the L2 one at ``eps_test`` (default :math:`\epsilon`). The ODE gives each
rule's large-N curve; the Monte Carlo gives mean and standard error over replicas.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import numpy as np

from .compare import mean_sem
from .measures import robust_error, test_error
from .montecarlo import save_schedule, simulate
from .ode import solve_ode
from .params import ModelParams
from .variants import TrainingOptions, noise_std_for_norm

__all__ = ["DEFENCES", "defence_setup", "DefenceResult", "compare_defences", "plot_defences", "defences_table",
           "run_defences"]

DEFENCES = ("none", "noise", "adversarial", "random_eps", "nonrobust_only")


def defence_setup(name: str, params: ModelParams, N: int):
    """``(params, options)`` of the defence ``name`` at radius ``params.eps`` in dimension ``N``."""
    eps = params.eps
    if name == "none":
        return params._replace(eps=0.0), None
    if name == "noise":
        return params, TrainingOptions(attack="noise", noise_std=noise_std_for_norm(float(eps), N))
    if name == "adversarial":
        return params, None
    if name == "random_eps":
        return params, TrainingOptions(eps_dist="uniform", eps_min=0.0, eps_max=2.0 * float(eps))
    if name == "nonrobust_only":
        return params, TrainingOptions(nonrobust_only=True)
    raise ValueError(f"defence={name!r} is not one of {list(DEFENCES)}")


class DefenceResult(NamedTuple):
    """Errors of one defence at :math:`\\alpha_\\max` (MC fields are NaN when the MC was skipped)."""

    name: str
    ode_clean: float
    ode_robust: float
    mc_clean: float
    mc_clean_sem: float
    mc_robust: float
    mc_robust_sem: float
    ode_R: float
    ode_b: float
    mc_R: float
    mc_R_sem: float
    mc_b: float
    mc_b_sem: float


def compare_defences(key, params: ModelParams, *, N: int, alpha_max: float, replicas: int = 32,
                     n_save: int = 10, eps_test: Optional[float] = None, dt: float = 0.05, mc: bool = True,
                     defences=DEFENCES, loss="quadratic", dtype=None, R0=None, b0: float = 0.0):
    r"""Train every defence with the ODE and (``mc=True``) the Monte Carlo; errors at :math:`\alpha_\max`.

    All Monte Carlo runs use the same ``key``, hence the same initial students and the same
    stream of clean examples.

    Returns:
        list of :class:`DefenceResult`, one per defence, in the order of ``defences``.

    Example:
        >>> import jax
        >>> from jaxadv import ModelParams
        >>> from jaxadv.defences import compare_defences
        >>> res = compare_defences(jax.random.key(0), ModelParams(prior=0.7), N=100, alpha_max=1.0, mc=False)
        >>> [r.name for r in res][:2]
        ['none', 'noise']
    """
    import jax.numpy as jnp

    eps_test = float(params.eps) if eps_test is None else float(eps_test)
    dtype = jnp.float32 if dtype is None else dtype
    _, alpha = save_schedule(N, alpha_max, n_save)
    out = []
    for name in defences:
        p, opts = defence_setup(name, params, N)
        ode = solve_ode(p, float(alpha[-1]), n_save, dt=dt, R0=0.0 if R0 is None else R0, b0=b0, loss=loss,
                        options=opts)
        R, b = float(ode.R[-1]), float(ode.b[-1])
        row = dict(name=name, ode_clean=float(test_error(R, b, params)),
                   ode_robust=float(robust_error(R, b, eps_test, params)), ode_R=R, ode_b=b)
        nan = float("nan")
        row.update(mc_clean=nan, mc_clean_sem=nan, mc_robust=nan, mc_robust_sem=nan, mc_R=nan, mc_R_sem=nan,
                   mc_b=nan, mc_b_sem=nan)
        if mc:
            res = simulate(key, p, N=N, alpha_max=alpha_max, n_save=n_save, replicas=replicas, loss=loss,
                           dtype=dtype, R0=R0, b0=b0, options=opts)
            Rm, bm, fin = res.R[:, -1:].astype(np.float64), res.b[:, -1:].astype(np.float64), res.finite[:, -1:]
            for label, x in (("clean", np.asarray(test_error(Rm, bm, params))),
                             ("robust", np.asarray(robust_error(Rm, bm, eps_test, params))), ("R", Rm), ("b", bm)):
                m, s = mean_sem(x, fin)
                row[f"mc_{label}"], row[f"mc_{label}_sem"] = float(m[0]), float(s[0])
        out.append(DefenceResult(**row))
    return out


def defences_table(results) -> dict:
    """Columns (for :func:`jaxadv.io.write_csv`) of a :func:`compare_defences` result."""
    return {f: np.array([getattr(r, f) for r in results]) for f in DefenceResult._fields if f != "name"}


def plot_defences(results, path: Optional[str] = None, title: str = "", eps_test: Optional[float] = None):
    """Clean error (x) against robust error (y) at :math:`\\alpha_\\max`: ODE as open markers joined
    to the MC points (filled, with error bars). Returns the figure; saves it when ``path`` is given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        ax.plot(r.ode_clean, r.ode_robust, "o", mfc="none", mec=c, ms=11, mew=1.5)
        if np.isfinite(r.mc_clean):
            ax.errorbar(r.mc_clean, r.mc_robust, xerr=r.mc_clean_sem, yerr=r.mc_robust_sem, fmt="o", color=c,
                        ms=5, capsize=2)
        ax.annotate(r.name, (r.ode_clean, r.ode_robust), textcoords="offset points", xytext=(8, 4), color=c)
    ax.plot([], [], "ko", mfc="none", label="ODE")
    ax.plot([], [], "ko", ms=5, label="Monte Carlo (mean ± sem)")
    ax.set_xlabel("clean error at α_max")
    ax.set_ylabel("robust error" + (f" (L2, ε_test={eps_test:g})" if eps_test is not None else ""))
    ax.set_title(title or "defences")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def run_defences(cfg, out_dir: str, mc: bool = True, log=print):
    """``jaxadv compare-defences``: :func:`compare_defences` for the parameters, sizes and seed of
    a :class:`jaxadv.config.RunConfig`; writes ``defences.csv``, ``defences.png`` and ``config.json``."""
    import os

    import jax.numpy as jnp

    from .config import config_dict
    from .io import write_csv, write_json

    if cfg.options is not None:
        raise ValueError("compare-defences sets the training variant of each defence itself; remove the "
                         f"variant keys (attack={cfg.attack!r}, eps_dist={cfg.eps_dist!r}, "
                         f"nonrobust_only={cfg.nonrobust_only!r})")
    os.makedirs(out_dir, exist_ok=True)
    eps_test = cfg.eps_test_value
    res = compare_defences(jax.random.key(cfg.seed, impl=cfg.prng), cfg.params, N=cfg.N, alpha_max=cfg.alpha_max,
                           replicas=cfg.replicas, n_save=cfg.n_save, eps_test=eps_test, dt=cfg.dt, mc=mc,
                           loss=cfg.loss, dtype=jnp.float64 if cfg.x64 else jnp.float32, R0=cfg.R0, b0=cfg.b0)
    cols = {"defence": np.array([r.name for r in res])}
    cols.update(defences_table(res))
    write_csv(os.path.join(out_dir, "defences.csv"), cols)
    plot_defences(res, os.path.join(out_dir, "defences.png"),
                  title=f"{cfg.name}: p={cfg.prior:g}, eps={cfg.eps:g}, N={cfg.N}, alpha={cfg.alpha_max:g}",
                  eps_test=eps_test)
    for r in res:
        log(f"{r.name:>15}: clean {r.ode_clean:.4f} (MC {r.mc_clean:.4f}±{r.mc_clean_sem:.4f})  robust "
            f"{r.ode_robust:.4f} (MC {r.mc_robust:.4f}±{r.mc_robust_sem:.4f})")
    write_json(os.path.join(out_dir, "config.json"), {"config": config_dict(cfg), "eps_test": eps_test,
                                                      "defences": [r._asdict() for r in res]})
    return res
