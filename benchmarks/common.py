"""Shared helpers of the benchmark scripts: timing, metadata and the results files.

Every benchmark follows the same protocol (see ``benchmarks/README.md``):

* the first call of a jitted function is timed apart as *compile time* (it includes tracing
  and XLA compilation, plus one execution);
* every later call is followed by ``jax.block_until_ready``;
* contenders measured in the same run are timed *interleaved* (one repeat of each in turn), so
  that a burst of load from another process hits all of them alike;
* figures are medians of the repeats, with min and max kept as the spread;
* the process CPU time (all threads, ``time.process_time``) of each call is kept too
  (``cpu_median_s``): on a shared machine it is less sensitive to other processes' load than
  the wall clock, and it shows how many cores a contender keeps busy.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable

import numpy as np

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: where results go unless ``--commit`` (the committed ``RESULTS_DIR``) or ``--out`` is given
SCRATCH_DIR = os.path.join(tempfile.gettempdir(), "jaxadv-benchmarks")
_OUT_DIR = None


def set_out_dir(out: str | None = None, commit: bool = False) -> str:
    """Choose the results folder of this process: ``out``, else ``RESULTS_DIR`` with ``commit``,
    else ``SCRATCH_DIR`` (so a quick run never overwrites the committed results)."""
    global _OUT_DIR
    _OUT_DIR = out or (RESULTS_DIR if commit else SCRATCH_DIR)
    return _OUT_DIR


def out_dir() -> str:
    """The results folder chosen by :func:`set_out_dir` (``SCRATCH_DIR`` by default), created."""
    d = _OUT_DIR or SCRATCH_DIR
    os.makedirs(d, exist_ok=True)
    return d


def device_label() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: the platform of JAX's default device."""
    import jax

    p = jax.devices()[0].platform
    return {"cuda": "gpu", "rocm": "gpu"}.get(p, p)


def metadata() -> dict:
    """Device, software versions and host facts written next to every figure."""
    import jax

    d = jax.devices()[0]
    return {
        "device": device_label(),
        "device_kind": getattr(d, "device_kind", str(d)),
        "n_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "x64_enabled": bool(jax.config.jax_enable_x64),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def block(x):
    """``jax.block_until_ready`` that also accepts NumPy results."""
    import jax

    return jax.block_until_ready(x)


def time_once(fn: Callable) -> tuple:
    """Wall-clock and process CPU seconds (all threads) of one blocked call."""
    c0, t0 = time.process_time(), time.perf_counter()
    block(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def summarize(times) -> dict:
    """Median, min, max and count of a list of seconds."""
    t = np.asarray(times, dtype=float)
    return {"median_s": float(np.median(t)), "min_s": float(t.min()), "max_s": float(t.max()), "repeats": int(t.size)}


def time_interleaved(contenders: dict[str, Callable], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Time several zero-argument callables, one repeat of each in turn.

    The first ``warmup`` calls of each are timed apart (``first_call_s``: compile plus one run
    for a jitted function) and left out of the statistics. Each repeat runs the contenders in its own
    order (a permutation drawn from a fixed seed, so runs are reproducible): a call that follows a long
    call of another library (a NumPy or PyTorch loop, whose threads and caches it inherits) can be
    slower by milliseconds, and a fixed order would charge that to the same contender every time.
    """
    first = {name: [time_once(fn)[0] for _ in range(warmup)] for name, fn in contenders.items()}
    times = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    names = list(contenders)
    order = np.random.default_rng(0)
    for _ in range(repeats):
        for i in order.permutation(len(names)):
            name = names[i]
            fn = contenders[name]
            wall, c = time_once(fn)
            times[name].append(wall)
            cpu[name].append(c)
    out = {}
    for name in contenders:
        out[name] = summarize(times[name])
        out[name]["first_call_s"] = float(first[name][0]) if first[name] else None
        out[name]["cpu_median_s"] = float(np.median(cpu[name]))
    return out


def ratio(a: dict, b: dict) -> dict:
    """Ratio of medians ``a/b`` with a pessimistic/optimistic spread (max/min and min/max)."""
    return {"median": a["median_s"] / b["median_s"], "low": a["min_s"] / b["max_s"], "high": a["max_s"] / b["min_s"]}


def write_result(name: str, result: dict, out_dir: str | None = None) -> str:
    """Write ``result`` (with metadata filled in) to ``<out_dir>/<name>_<device>.json``."""
    out_dir = out_dir or globals()["out_dir"]()
    os.makedirs(out_dir, exist_ok=True)
    meta = metadata()
    meta.update(result.get("meta", {}))
    result = {"name": name, "meta": meta, **{k: v for k, v in result.items() if k not in ("name", "meta")}}
    path = os.path.join(out_dir, f"{name}_{meta['device']}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False, default=_jsonable)
        f.write("\n")
    return path


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def select_device(device: str | None, host_devices: int | None = None) -> None:
    """Before JAX initialises: ask for ``device`` (``cpu`` or ``gpu``) and, with ``host_devices``
    > 1, split the CPU into that many XLA host devices
    (``--xla_force_host_platform_device_count``), so that replicas can be sharded over cores.
    The default device stays the first one: unsharded computations are unchanged."""
    if device:
        os.environ["JAX_PLATFORMS"] = {"gpu": "cuda", "cpu": "cpu"}.get(device, device)
    flags = os.environ.get("XLA_FLAGS", "")
    if host_devices and host_devices > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={host_devices}".strip()


def call_main(main: Callable, quick: bool, tiny: bool = False) -> dict:
    """Call a benchmark's ``main(quick)``, passing ``tiny=True`` only to those that accept it."""
    import inspect

    if tiny:
        if "tiny" not in inspect.signature(main).parameters:
            raise ValueError("this benchmark has no tiny size")
        return main(quick=True, tiny=True)
    return main(quick)


def cli(name: str, main: Callable) -> None:
    """Command line of one benchmark script: ``--quick``, ``--tiny``, ``--out DIR``, ``--device``."""
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a minute at most on 2 CPU cores)")
    ap.add_argument("--tiny", action="store_true", help="test size (seconds), for the smoke test")
    ap.add_argument("--out", default=None, help=f"results folder (default {SCRATCH_DIR})")
    ap.add_argument("--commit", action="store_true", help=f"write the committed results, {RESULTS_DIR}")
    ap.add_argument("--device", default=None, help="cpu or gpu (default: JAX's default device)")
    ap.add_argument(
        "--host-devices",
        type=int,
        default=os.cpu_count(),
        help="XLA host devices (default: one per core; 1 turns sharding off)",
    )
    a = ap.parse_args()
    set_out_dir(a.out, a.commit)
    select_device(a.device, a.host_devices)
    t0 = time.perf_counter()
    result = call_main(main, a.quick, a.tiny)
    result.setdefault("meta", {})["wall_s"] = time.perf_counter() - t0
    print(write_result(name, result))
