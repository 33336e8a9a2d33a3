"""``jaxadv run``: one command for every student, configuration -> plan -> run -> files and figures -> verdict.

:func:`run_student` takes a configuration (:func:`jaxadv.app.config.load_any`) and its student's record
(:data:`jaxadv.students.STUDENTS`): the record resolves the configuration into its model records and
computes its ODE and Monte Carlo (:attr:`jaxadv.students.StudentRecord.compute`); this module gives it the
Monte Carlo runner (the one driver with checkpoints, resumption, progress and the device split,
:func:`jaxadv.app.checkpoint.run_resumable`) and writes what it returns, each file atomically:

* its tables (``ode.csv``, ``mc.csv``, ``robustness.csv`` or ``eps.csv``) and arrays (``mc_replicas.npz``);
* ``config.json``: the resolved configuration, versions, timings, the verdict
  (:func:`jaxadv.analysis.verdict.honest_verdict`) and its deviations in standard errors; strict JSON,
  ``null`` for a missing number; written before the figures and again after them;
* its figures (:data:`jaxadv.app.figures.STUDENT_FIGURES`), each with a deviation panel against the curve its
  verdict uses.

A finished Monte Carlo keeps its checkpoint until every file is written
(:func:`jaxadv.app.checkpoint.finished_checkpoints`): an interrupt during the ODE, the tables or the figures
names it, and the rerun reads it back instead of simulating again. ``compare-defences`` is
:func:`run_defences`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..students import get_student
from .checkpoint import finished_checkpoints, run_resumable
from .config import RunConfig, config_dict
from .errors import RunFailed
from .io import write_csv, write_figure, write_json, write_npz
from .plots import plot_defences

if TYPE_CHECKING:
    from ..analysis.defences import DefenceResult

__all__ = ["run", "run_student", "run_defences", "RunFailed"]


def run_student(
    cfg: Any,
    out_dir: str,
    student: str = "unit",
    *,
    mc: bool = True,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run a configuration of ``student`` (``"unit"``: a :class:`jaxadv.app.config.RunConfig`; ``"committee"``,
    ``"pair"``: their resolved dicts) and write every file (module docstring); ``mc``: run the Monte Carlo.

    Returns:
        The dictionary written to ``config.json``.

    Raises:
        RunFailed: after writing the files, when the run is not usable (every replica diverged).
    """
    record = get_student(student)
    problem = record.resolve(cfg)
    os.makedirs(out_dir, exist_ok=True)
    t_start = time.perf_counter()
    with finished_checkpoints() as finished:

        def simulate(plan: Any, name: str, label: str) -> tuple[Any, dict[str, Any]]:
            path, stats = os.path.join(out_dir, name), dict[str, Any]()
            obs = run_resumable(
                plan, checkpoint=path, progress=progress, stats=stats, label=label, remove_checkpoint=False
            )
            finished.append(path)
            return obs, stats

        out = record.compute(problem, simulate if mc else None, log)
        for name, cols in out.tables.items():
            write_csv(os.path.join(out_dir, name), cols)
        for name, arrays in out.arrays.items():
            write_npz(os.path.join(out_dir, name), **arrays)
        info = out.info
        write_json(os.path.join(out_dir, "config.json"), info)  # before the figures too: a failure there keeps it
        t = time.perf_counter()
        from .figures import STUDENT_FIGURES

        figures = STUDENT_FIGURES[record.name](out.figures)
        for name, fig in figures.items():
            write_figure(os.path.join(out_dir, f"{name}.png"), fig)
        timings = info.setdefault("timings_s", {})
        if figures:
            timings["plots_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        write_json(os.path.join(out_dir, "config.json"), info)
    if out.failed:
        raise RunFailed(f"{out.failed}; results written to {out_dir} are not usable")
    return info


def run(cfg: RunConfig, out_dir: str, progress: bool = True, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """``jaxadv run`` of the unit: :func:`run_student` with ``cfg.mc``.

    Returns:
        The dictionary written to ``config.json``.
    """
    return run_student(cfg, out_dir, "unit", mc=cfg.mc, progress=progress, log=log)


def run_defences(
    cfg: RunConfig, out_dir: str, mc: bool = True, log: Callable[[str], Any] = print, progress: bool = True
) -> list[DefenceResult]:
    """``jaxadv compare-defences``: :func:`compare_defences` for the parameters, sizes and seed of
    a :class:`jaxadv.app.config.RunConfig`; writes ``defences.csv``, ``defences.png`` and ``config.json``.
    With ``progress`` a line per defence (time taken, time left) goes to ``log``. Raises :class:`RunFailed`
    after writing them when every defence's replicas diverged (the command exits 3, as ``run`` does)."""
    from ..analysis.defences import DEFENCES, compare_defences, defences_table
    from ..model.rule import DEFAULT_RULE, describe_rule

    extra = None
    if cfg.rule._replace(loss=DEFAULT_RULE.loss) != DEFAULT_RULE:
        # the config's own rule (e.g. a new attack or eps law) joins the comparison as a sixth row
        own = cfg.rule
        extra = {f"{own.attack.name}/{own.eps_law.name}/{own.gate.name}": (cfg.rule, cfg.rule_params)}
        log(f"compare-defences: adding the configured rule ({describe_rule(own)}) as a defence")
    os.makedirs(out_dir, exist_ok=True)
    eps_test = cfg.eps_test_value
    kwargs = dict(
        N=cfg.N,
        alpha_max=cfg.alpha_max,
        replicas=cfg.replicas,
        n_save=cfg.n_save,
        eps_test=eps_test,
        dt=cfg.dt,
        mc=mc,
        loss=cfg.loss,
        dtype=jnp.float64 if cfg.x64 else jnp.float32,
        R0=cfg.R0,
        b0=cfg.b0,
    )
    # one defence at a time (each with the same key, so the results are those of one call), to report progress
    jobs = [dict(defences=(name,)) for name in DEFENCES] + [
        dict(defences=(), extra={k: v}) for k, v in (extra or {}).items()
    ]
    res, t0 = [], time.perf_counter()
    for i, job in enumerate(jobs):
        res += compare_defences(jax.random.key(cfg.seed, impl=cfg.prng), cfg.params, **kwargs, **job)
        if progress:
            spent = time.perf_counter() - t0
            log(
                f"[{i + 1}/{len(jobs)}] {res[-1].name}: done, {spent:.0f}s elapsed, "
                f"about {spent / (i + 1) * (len(jobs) - i - 1):.0f}s left"
            )
    cols = {"defence": np.array([r.name for r in res])}
    cols.update(defences_table(res))
    write_csv(os.path.join(out_dir, "defences.csv"), cols)
    info = {"config": config_dict(cfg), "eps_test": eps_test, "defences": [r._asdict() for r in res]}
    write_json(os.path.join(out_dir, "config.json"), info)  # before the figure: a failure there keeps it
    plot_defences(
        res,
        os.path.join(out_dir, "defences.png"),
        title=f"{cfg.name}: p={cfg.prior:g}, eps={cfg.eps:g}, N={cfg.N}, alpha={cfg.alpha_max:g}",
        eps_test=eps_test,
    )
    for r in res:
        log(
            f"{r.name:>15}: clean {r.ode_clean:.4f} (MC {r.mc_clean:.4f}±{r.mc_clean_sem:.4f})  robust "
            f"{r.ode_robust:.4f} (MC {r.mc_robust:.4f}±{r.mc_robust_sem:.4f})"
            + (
                f"  {r.verdict}"
                + (f": {r.reason}" if r.reason else "")
                + (
                    f" ({r.deviation_sem:.2f} SE from ODE + O(1/N))"
                    if np.isfinite(r.deviation_sem)
                    else f" (raw {r.raw_deviation_sem:.2f} SE from the bare ODE)"
                    if np.isfinite(r.raw_deviation_sem)
                    else ""
                )
                if r.verdict
                else ""
            )
        )
    if mc and res and not any(np.isfinite(r.mc_clean) for r in res):  # no defence kept a finite replica
        raise RunFailed(f"every defence's replicas diverged; results written to {out_dir} are not usable")
    return res
