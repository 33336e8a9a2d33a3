"""Resumable Monte Carlo runs: the pure driver of :mod:`jaxadv.mc.driver` with checkpoint files
and a progress bar.

The checkpoint holds the replicas' states (without the padding rows of the device split, so a
run resumes on any device count), the observables so far, the next save interval and a
fingerprint of everything that determines the result (:attr:`jaxadv.mc.driver.Plan.identity`);
a checkpoint with another fingerprint is ignored. Steps are keyed by their index, so a resumed
run gives the same bits as an uninterrupted one.

:func:`run_resumable` is the one loop, for a :class:`jaxadv.mc.driver.Plan` of any sampler whose
observables are a pytree (one ``obs_i`` array per leaf in the file, then one per array of the plan's
:class:`jaxadv.mc.driver.SaveMeasure`); :func:`simulate_resumable` (the single-layer model),
:func:`simulate_committee_resumable` (the committee) and :func:`simulate_pair_resumable` (the
surrogate--target pair) are its users.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..distributed import agree, broadcast, is_multiprocess, is_primary
from ..mc import driver
from ..sharding import shard_batch, to_host
from .errors import Interrupted
from .io import npz_problem, write_npz
from .progress import Progress

if TYPE_CHECKING:
    from ..committee import CommitteeParams, CommitteeSpec, Mixture
    from ..committee.montecarlo import CommitteeMCResult
    from ..mc.pair import PairMC
    from ..model.pair import PairParams, PairSpec
    from ..model.params import ModelParams

__all__ = [
    "simulate_resumable",
    "simulate_committee_resumable",
    "simulate_pair_resumable",
    "run_resumable",
    "fingerprint",
    "finished_checkpoints",
    "Interrupted",
]


@contextlib.contextmanager
def finished_checkpoints() -> Iterator[list[str]]:
    """The checkpoints of a command's finished Monte Carlo runs, kept until the command has written every file.

    The command runs each Monte Carlo with ``remove_checkpoint=False`` and appends its checkpoint's path to the
    yielded list once the run has ended. Then:

    * an interrupt (``KeyboardInterrupt``) after one has finished becomes :class:`Interrupted` naming the last,
      with all its save intervals saved, so the CLI says the rerun resumes (an :class:`Interrupted` from a run
      in flight passes as it is);
    * any other error leaves the checkpoints for the rerun, which reads the finished runs back;
    * the end of the block (every file written) removes them, on process 0.
    """
    finished: list[str] = []
    try:
        yield finished
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted) or not finished:
            raise
        with np.load(finished[-1]) as z:  # a finished run's checkpoint holds all its save intervals
            k = int(z["k"])
        raise Interrupted(finished[-1], k, k) from None
    for path in finished if is_primary() else ():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def fingerprint(plan: driver.Plan) -> str:
    """A short hash of the plan's identity."""
    return hashlib.sha256(json.dumps(plan.identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def simulate_resumable(
    key: jax.Array | int,
    params: ModelParams,
    *,
    checkpoint: str | None = None,
    checkpoint_every: float = 60.0,
    progress: bool = False,
    stats: dict[str, Any] | None = None,
    label: str = "monte carlo",
    remove_checkpoint: bool = True,
    **kwargs: Any,
) -> driver.MCResult:
    r""":func:`jaxadv.simulate` with a checkpoint file and a progress bar.

    Args:
        key, params, \*\*kwargs: as :func:`jaxadv.simulate`.
        checkpoint: path of a checkpoint file; the run saves its state there every
            ``checkpoint_every`` seconds and resumes from it when it exists and matches all
            arguments. It is removed at the end (``remove_checkpoint``; ``False``: it keeps the finished
            run, as :func:`run_resumable`).
        progress: print a progress bar to stderr, labelled ``label``.
        stats: a dict that receives ``resumed_from`` (save intervals found in the checkpoint) and
            ``steps_this_session`` (steps computed by this call, for a true rate).

    The first checkpoint is written after the first save interval, then every
    ``checkpoint_every`` seconds; on ``KeyboardInterrupt`` the completed intervals are saved
    and :class:`Interrupted` (a ``KeyboardInterrupt``) says what was saved.
    """
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    if "rule_params" in kwargs:
        kwargs["rule_params_"] = kwargs.pop("rule_params")
    plan = driver.plan_simulation(key, params, **kwargs)
    obs = run_resumable(
        plan,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        progress=progress,
        stats=stats,
        label=label,
        remove_checkpoint=remove_checkpoint,
    )
    return driver.result(plan, np.stack(obs))


def simulate_committee_resumable(
    key: jax.Array,
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    *,
    checkpoint: str | None = None,
    checkpoint_every: float = 60.0,
    progress: bool = False,
    stats: dict[str, Any] | None = None,
    label: str = "monte carlo",
    remove_checkpoint: bool = True,
    **kwargs: Any,
) -> CommitteeMCResult:
    """:func:`jaxadv.committee.montecarlo.simulate_committee` with a checkpoint file and a progress bar
    labelled ``label`` (arguments as there and as :func:`simulate_resumable`); the same bits as the plain
    run, on any device count and across interruptions (``remove_checkpoint``: as :func:`run_resumable`). Returns
    a :class:`jaxadv.committee.montecarlo.CommitteeMCResult`."""
    from ..committee import montecarlo as cmc

    plan = cmc.plan_committee(key, mixture, params, spec, **kwargs)
    obs = run_resumable(
        plan,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        progress=progress,
        stats=stats,
        label=label,
        remove_checkpoint=remove_checkpoint,
    )
    return cmc.committee_result(plan, obs)


def simulate_pair_resumable(
    key: jax.Array | int,
    pp: PairParams,
    spec: PairSpec | None = None,
    *,
    checkpoint: str | None = None,
    checkpoint_every: float = 60.0,
    progress: bool = False,
    stats: dict | None = None,
    label: str = "monte carlo",
    remove_checkpoint: bool = True,
    **kwargs: Any,
) -> PairMC:
    """:func:`jaxadv.mc.pair.simulate_pair` with a checkpoint file and a progress bar labelled ``label``
    (arguments as there and as :func:`run_resumable`): the plan of :func:`jaxadv.mc.pair.plan_pair` with its
    transfer measurement kept in the checkpoint; the same bits as the plain run, on any device count and
    across interruptions. Returns a :class:`jaxadv.mc.pair.PairMC`."""
    from ..mc import pair as mcp

    plan = mcp.plan_pair(key, pp, mcp.PairSpec() if spec is None else spec, **kwargs)
    states, obs = run_resumable(
        plan,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        progress=progress,
        stats=stats,
        label=label,
        remove_checkpoint=remove_checkpoint,
        with_states=True,
    )
    return mcp.pair_result(plan, obs, states)


def run_resumable(
    plan: driver.Plan,
    *,
    checkpoint: str | None = None,
    checkpoint_every: float = 60.0,
    progress: bool = False,
    stats: dict[str, Any] | None = None,
    label: str = "monte carlo",
    remove_checkpoint: bool = True,
    with_states: bool = False,
) -> Any:
    """Run every save interval of ``plan`` (any sampler) with a checkpoint file, a progress bar and
    interrupt handling: the loop of :func:`jaxadv.mc.driver.run_plan`, resumable.

    Args:
        plan: a :class:`jaxadv.mc.driver.Plan` (:func:`jaxadv.mc.driver.plan_simulation`,
            :func:`jaxadv.committee.montecarlo.plan_committee`, :func:`jaxadv.mc.pair.plan_pair`); its
            ``identity`` is the checkpoint's fingerprint. The arrays of its
            :class:`jaxadv.mc.driver.SaveMeasure` are kept in the checkpoint like the observables.
        checkpoint, checkpoint_every, progress, stats: as :func:`simulate_resumable`.
        label: the progress bar's label.
        remove_checkpoint: remove the checkpoint when the run ends (default). ``False`` writes the finished
            run into it instead (all ``n_save`` intervals), so that a later call with the same plan returns
            the observables without computing; the caller removes the file (a command that runs several
            plans keeps the finished ones while a later one may still be interrupted).
        with_states: return ``(states, observables)``, the final states as well (as
            :func:`jaxadv.mc.driver.run_plan`).

    Returns:
        the observables, one array per leaf of the sampler's observables (``jax.tree.leaves`` order),
        then one per array of the plan's :class:`jaxadv.mc.driver.SaveMeasure`, shape
        ``(replicas, n_save + 1, ...)``.
    """
    fp = fingerprint(plan)
    states, o = driver.start_states(plan)
    obs = driver.allocate_observables(plan, driver.observables_on_host(o, plan.replicas))
    start_k = 0
    loaded = _load_checkpoint(checkpoint, fp, states, obs) if checkpoint else None
    if loaded is not None:
        states, obs, start_k = loaded
    else:
        driver.record(plan, obs, 0, None, states)  # the plan's measurement at save point 0, if any

    bar = Progress(plan.n_save, label, enabled=progress and is_primary(), initial=start_k)
    last_ck = time.monotonic()
    k_done = k_saved = start_k
    pending = None  # (interval, observables, states) dispatched but not yet recorded on the host
    try:
        for k in range(start_k, plan.n_save):
            # the old states are donated to the interval: an interrupt between the donation and the
            # assignment would leave no live states to save, so it waits for the assignment; keep the new
            # ones before waiting for the interval, so an interrupt while waiting still holds live states
            with _interrupts_deferred():
                states, o = driver.dispatch(plan, states, k)
                pending = (k, o, states)
            driver.record(plan, obs, k + 1, o, states)
            pending, k_done = None, k + 1
            bar.update(k + 1)
            # the first checkpoint after the first save interval (by steps), then every checkpoint_every s;
            # with several processes the gather inside the save is a collective: process 0 decides for all
            due = k == start_k or time.monotonic() - last_ck > checkpoint_every
            if checkpoint and k + 1 < plan.n_save and agree(due):
                _save_checkpoint(checkpoint, fp, states, obs, k + 1)
                last_ck, k_saved = time.monotonic(), k + 1
    except KeyboardInterrupt:
        # SIGINT (or SIGTERM, which the CLI turns into it): keep every completed save interval
        bar.close()
        if pending is not None:  # finish the interval in flight: its states are already the new ones
            k, o, st = pending
            driver.record(plan, obs, k + 1, o, st)
            k_done = k + 1
        if checkpoint and k_done > k_saved and not is_multiprocess() and not _deleted(states):
            _save_checkpoint(checkpoint, fp, states, obs, k_done)
            k_saved = k_done
        saved = checkpoint if checkpoint and k_saved > 0 and os.path.exists(checkpoint) else None
        raise Interrupted(saved, k_saved, plan.n_save) from None
    bar.close()
    if checkpoint and not remove_checkpoint:
        if k_saved < plan.n_save:
            _save_checkpoint(checkpoint, fp, states, obs, plan.n_save)
    elif checkpoint and is_primary() and os.path.exists(checkpoint):
        os.remove(checkpoint)
    if stats is not None:
        stats["resumed_from"] = start_k
        stats["steps_this_session"] = (plan.n_save - start_k) * plan.steps
    if with_states:
        return jax.tree.map(lambda x: x[: plan.replicas], states), obs
    return obs


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the body runs and raise :class:`KeyboardInterrupt` after it if one
    came; a second signal raises at once (the body may be a long compilation). Off the main thread (where
    Python delivers no signals) the body runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum, frame):
        if got:
            raise KeyboardInterrupt
        got.append(signum)

    old = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        raise KeyboardInterrupt


def _deleted(states) -> bool:
    """Whether any array of ``states`` was donated away (an interrupt inside a dispatch)."""
    return any(isinstance(x, jax.Array) and x.is_deleted() for x in jax.tree.leaves(states))


def _load_checkpoint(path, fp, states, obs):
    """``(states, obs, k)`` from the checkpoint at ``path`` if it matches fingerprint ``fp``, else ``None``
    (``obs``: the list of observable arrays, :func:`run_resumable`). With several processes process 0
    reads the file and sends its contents to all (no shared file system needed)."""
    treedef = jax.tree.structure(states)
    replicas = obs[0].shape[0]
    found, ck_obs, k, leaves = False, obs, 0, None
    if is_primary() and os.path.exists(path):
        try:  # a damaged file raises while it is read (the CLI refuses it earlier, in claim_output)
            with np.load(path) as ck:
                if str(ck["fingerprint"]) == fp:
                    found, k = True, int(ck["k"])
                    # one array per observable; files of earlier versions hold them stacked in "obs"
                    ck_obs = list(ck["obs"]) if "obs" in ck.files else [ck[f"obs_{i}"] for i in range(len(obs))]
                    ck_obs = [x.copy() for x in ck_obs]
                    leaves = [ck[f"state_{i}"] for i in range(treedef.num_leaves)]  # type: ignore[attr-defined]
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as e:
            why = npz_problem(path) or f"{type(e).__name__}: {e}"
            raise ValueError(f"the checkpoint {path!r} cannot be read: {why}; remove it to start again") from None
    if is_multiprocess():
        if not agree(found):
            return None
        if leaves is None:  # the other processes: buffers of the right shapes to receive into
            leaves = [np.zeros((replicas,) + x.shape[1:], x.dtype) for x in jax.tree.leaves(states)]
        ck_obs, k_sent, leaves = broadcast((ck_obs, np.asarray(k, np.int64), leaves))
        k = int(k_sent)
    elif not found:
        return None
    assert leaves is not None  # read on process 0, received on the others
    states = shard_batch(jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves]))
    return states, list(ck_obs), k


def _save_checkpoint(path, fp, states, obs, k):
    """Write the state without the padding rows of :func:`jaxadv.sharding.shard_batch`, so a run can
    resume on any device count (loading pads again); ``obs`` is the list of observable arrays, one row a
    replica."""
    replicas = obs[0].shape[0]
    leaves = {f"state_{i}": to_host(x)[:replicas] for i, x in enumerate(jax.tree.leaves(states))}
    write_npz(path, fingerprint=fp, k=k, **{f"obs_{i}": x for i, x in enumerate(obs)}, **leaves)
