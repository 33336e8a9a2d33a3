"""Protected output folders: one run at a time per folder, no silent mixing of two runs' files.

:func:`claim_output` is called by the commands before any computation. It

* checks the path: an existing file, a path under a file or a folder that cannot be written is a
  ``ValueError`` naming the path (the CLI prints it on one line);
* takes a lock, ``DIR/.jaxadv.lock`` (created with ``O_EXCL``; it names the holder's pid, host
  and command). A second run into the same folder is refused with the holder in the message; a
  lock left by a process that no longer runs on this host is stale and taken over;
* protects earlier results: ``DIR/.jaxadv-run.json`` records the configuration of the run that
  owns the folder. The same configuration may write again (a rerun resumes its checkpoint);
  another configuration, or result files without an owner, are refused unless ``overwrite``,
  which first removes the known result files of any command so that no stale file survives;
* refuses to resume from a Monte Carlo checkpoint that cannot be read back (truncated, empty, a
  failed CRC): one line naming the file, before anything is computed or written; ``overwrite``
  discards that file alone.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
import time
from typing import Literal

from .io import atomic_write_bytes, npz_problem, write_exclusive

__all__ = ["OutputLock", "claim_output", "RESULT_FILES", "RESULT_PATTERNS", "LOCK_NAME", "OWNER_NAME"]

LOCK_NAME = ".jaxadv.lock"
OWNER_NAME = ".jaxadv-run.json"
#: every file a command that takes ``--overwrite`` writes into its folder (``run`` of every student,
#: ``committee``, ``transfer``, ``certified``, ``verify``, ``compare-defences``): ``overwrite`` removes
#: them whichever command wrote them (``test_outputs`` runs each command and checks the list)
RESULT_FILES = (
    "ode.csv",
    "mc.csv",
    "mc_replicas.npz",
    "robustness.csv",
    "config.json",
    "order_parameters.png",
    "errors.png",
    "robustness.png",
    "mc_checkpoint.npz",
    "defences.csv",
    "defences.png",
    "units.png",
    "eps.csv",
    "transfer.png",
    "certified_ode.csv",
    "certified_mc.csv",
    "certified.png",
    "verify.csv",
    "verify.png",
    "schedule.csv",
    "schedule.toml",
    "protocols.csv",
    "starts.csv",
    "confirm.csv",
    "optimise.png",
)
#: result files named by a pattern (one Monte Carlo checkpoint per target radius of ``jaxadv transfer``)
RESULT_PATTERNS = ("mc_checkpoint_*.npz",)


class OutputLock:
    """The lock of one output folder; release it with :meth:`release` (or use it as a context manager).
    ``path=None``: the lock of a process other than process 0 of a multi-process run, which holds none."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def release(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.release()
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_folder(out_dir: str) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir!r} is an existing file, not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise ValueError(f"--out {out_dir!r} lies under a file, not a folder") from None
    except PermissionError:
        raise ValueError(f"--out {out_dir!r} cannot be created: permission denied") from None
    except OSError as e:
        raise ValueError(f"--out {out_dir!r} cannot be created: {e.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out_dir!r} is not writable")


def _take_lock(out_dir: str, command: str) -> OutputLock:
    path = os.path.join(out_dir, LOCK_NAME)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for _ in range(3):
        try:
            write_exclusive(path, json.dumps(me).encode())
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, ValueError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if isinstance(pid, int) and host == me["host"] and not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # stale: its process is gone
                continue
            if not holder:
                # being written at this instant, or unreadable: treat as held
                holder = {"pid": "?", "host": "?", "command": "?", "started": "?"}
            raise ValueError(
                f"--out {out_dir!r} is in use by another run (pid {holder.get('pid')} on "
                f"{holder.get('host')}, {holder.get('command')!s}, started {holder.get('started')}); "
                f"wait for it to finish or choose another --out (a stale lock: remove "
                f"{path!r})"
            ) from None
        except PermissionError:
            raise ValueError(f"--out {out_dir!r} is not writable") from None
        return OutputLock(path)
    raise ValueError(f"--out {out_dir!r}: could not take the lock {path!r}")


def _result_files(out_dir: str) -> list:
    """The names of the result files present in ``out_dir`` (:data:`RESULT_FILES`, :data:`RESULT_PATTERNS`)."""
    present = [n for n in RESULT_FILES if os.path.exists(os.path.join(out_dir, n))]
    for pattern in RESULT_PATTERNS:
        present += sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(out_dir), pattern)))
    return present


def claim_output(out_dir: str, identity: dict, *, overwrite: bool = False, command: str = "run") -> OutputLock:
    """Check, lock and claim ``out_dir`` for a run whose configuration is ``identity`` (a JSON-able dict).

    With several processes (:mod:`jaxadv.distributed`, one ``--out`` for all, as on one host or a shared
    file system) process 0 alone claims the folder, as it alone writes; the others wait for its decision
    (go on, or the same refusal on every process).

    Returns:
        The :class:`OutputLock`; release it when the run ends.

    Raises:
        ValueError: the path is a file, lies under a file or is not writable; another run holds
            the folder; the folder holds another run's results and ``overwrite`` is false.
    """
    from ..distributed import is_multiprocess, is_primary

    if not is_multiprocess():
        return _claim(out_dir, identity, overwrite, command)
    lock, refusal = OutputLock(None), ""
    if is_primary():
        try:
            lock = _claim(out_dir, identity, overwrite, command)
        except ValueError as e:
            refusal = str(e) or "refused"
    refusal = _from_process_0(refusal)
    if refusal:
        lock.release()
        raise ValueError(refusal if is_primary() else f"{refusal} (the decision of process 0)")
    return lock


#: the longest refusal sent from process 0 to the others (bytes; a longer one is cut)
_MESSAGE_BYTES = 2048


def _from_process_0(text: str) -> str:
    """Process 0's ``text`` on every process."""
    import numpy as np

    from ..distributed import broadcast

    raw = text.encode()[:_MESSAGE_BYTES].ljust(_MESSAGE_BYTES, b"\0")
    sent = broadcast(np.frombuffer(raw, np.uint8).copy())
    return bytes(np.asarray(sent, np.uint8)).rstrip(b"\0").decode(errors="replace")


def _claim(out_dir: str, identity: dict, overwrite: bool, command: str) -> OutputLock:
    out_dir = os.fspath(out_dir)
    _check_folder(out_dir)
    lock = _take_lock(out_dir, command)
    try:
        ident = json.loads(json.dumps({"command": command, **identity}, sort_keys=True, default=str))
        owner_path = os.path.join(out_dir, OWNER_NAME)
        owner = None
        if os.path.exists(owner_path):
            try:
                with open(owner_path) as f:
                    owner = json.load(f)
            except (OSError, ValueError):
                owner = {"unreadable": True}
        present = _result_files(out_dir)
        same = owner == ident
        if not same and (owner is not None or present):
            if not overwrite:
                what = (
                    f"the results of another run ({owner.get('command', '?')} "
                    f"{owner.get('config', {}).get('name', '?')})"
                    if owner and "unreadable" not in owner
                    else f"result files of an unknown run ({', '.join(present[:3])}"
                    f"{', ...' if len(present) > 3 else ''})"
                )
                raise ValueError(
                    f"--out {out_dir!r} holds {what} with another configuration; "
                    "pass --overwrite to replace them or choose another --out"
                )
            for n in RESULT_FILES + tuple(_result_files(out_dir)):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(out_dir, n))
        elif same:  # a rerun resumes: its checkpoints must read back
            for name in present:
                path = os.path.join(out_dir, name)
                if name.startswith("mc_checkpoint") and (problem := npz_problem(path)):
                    if overwrite:
                        os.remove(path)  # discarded: its Monte Carlo starts again
                        continue
                    raise ValueError(
                        f"the checkpoint {path!r} cannot be read: {problem}; pass --overwrite to discard it "
                        "and start its Monte Carlo again, or put an intact copy in its place"
                    )
        atomic_write_bytes(owner_path, (json.dumps(ident, sort_keys=True, indent=1) + "\n").encode())
    except BaseException:
        lock.release()
        raise
    return lock
