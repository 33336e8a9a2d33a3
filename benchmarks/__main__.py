"""Run the benchmarks: ``python -m benchmarks [--quick] [--only NAME ...] [--device gpu] [--out DIR]``.

Discovery: every module ``benchmarks/<name>.py`` whose name does not start with ``_`` and that
exposes ``main(quick: bool) -> dict`` is a benchmark (helpers such as ``common`` and
``summary`` have no ``main(quick)`` and are skipped). Each returned dict is written to
``<out>/<name>_<device>.json``. ``<out>`` is a scratch folder (``$TMPDIR/jaxadv-benchmarks``)
unless ``--out DIR`` or ``--commit`` is given; only ``--commit`` (full sizes) writes the committed
``benchmarks/results/`` and regenerates the results table in ``benchmarks/README.md``
(unless ``--no-summary``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pkgutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_BENCHMARKS = {"common", "summary", "peers"}
GPU_BUDGET_S = 480  # --gpu: the whole suite must fit 8 minutes of a borrowed accelerator


def _no_gpu():
    """``None`` when JAX's default device is a GPU, else why not (JAX_PLATFORMS is set to cuda already)."""
    try:
        import jax

        platform = jax.devices()[0].platform
    except Exception as e:  # noqa: BLE001 - jax raises RuntimeError (or others) when the backend is missing
        detail = (str(e).splitlines() or [""])[0][:200]
        return f"no GPU visible to JAX ({type(e).__name__}{': ' + detail if detail else ''})"
    return None if platform in ("gpu", "cuda", "rocm") else f"JAX's default device is {platform!r}, not a GPU"


def discover():
    """Names of the benchmark modules, sorted."""
    names = []
    for m in pkgutil.iter_modules([HERE]):
        if m.name.startswith("_") or m.name in NOT_BENCHMARKS or m.ispkg:
            continue
        names.append(m.name)
    return sorted(names)


def load(name):
    mod = importlib.import_module(f"benchmarks.{name}")
    main = getattr(mod, "main", None)
    if main is None or not callable(main) or "quick" not in inspect.signature(main).parameters:
        return None
    return main


def run(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the whole suite in a few minutes on 2 CPU cores")
    ap.add_argument("--tiny", action="store_true", help="test sizes (benchmarks that support it only)")
    ap.add_argument(
        "--only", action="append", default=None, metavar="NAME", help="run only this benchmark (repeatable)"
    )
    ap.add_argument("--device", default=None, help="cpu or gpu; the results file is named after the device JAX used")
    ap.add_argument(
        "--out",
        default=None,
        help="results folder (default: a scratch folder, "
        "$TMPDIR/jaxadv-benchmarks; the committed results only with --commit)",
    )
    ap.add_argument("--commit", action="store_true", help="write benchmarks/results/ and regenerate the README table")
    ap.add_argument(
        "--host-devices",
        type=int,
        default=os.cpu_count(),
        help="XLA host devices, for benchmarks that shard replicas over cores (default: one per core; 1 turns it off)",
    )
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--no-summary", action="store_true", help="do not regenerate the README table")
    ap.add_argument(
        "--gpu",
        action="store_true",
        help=f"the whole suite on one accelerator within {GPU_BUDGET_S // 60} minutes (quick sizes, one "
        "device, results/<name>_gpu.json); exits 2 when JAX sees no GPU",
    )
    a = ap.parse_args(argv)

    from benchmarks.common import call_main, select_device, set_out_dir, write_result

    if a.gpu:
        if a.tiny:
            ap.error("--gpu runs the quick sizes; drop --tiny")
        a.device, a.host_devices, a.quick = "gpu", 1, True
    if a.commit and a.tiny:
        ap.error("--commit writes the committed results: not at the --tiny test size")
    if a.commit and a.out:
        ap.error("--commit and --out: choose one")
    out = set_out_dir(a.out, a.commit)
    select_device(a.device, a.host_devices)
    if a.gpu:
        problem = _no_gpu()
        if problem:
            print(f"python -m benchmarks --gpu: {problem}", file=sys.stderr)
            return 2
    t_start = time.perf_counter()
    names = discover()
    if a.list:
        print("\n".join(names))
        return 0
    if a.only:
        unknown = sorted(set(a.only) - set(names))
        if unknown:
            ap.error(f"--only {unknown}: not among the benchmarks {names}")
        names = [n for n in names if n in a.only]

    failed = []
    for name in names:
        main = load(name)
        if main is None:
            continue
        if a.tiny and "tiny" not in inspect.signature(main).parameters:
            print(f"[{name}] skipped (no tiny size)")
            continue
        print(f"[{name}] running{' (quick)' if a.quick else ''}{' (tiny)' if a.tiny else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            result = call_main(main, a.quick, a.tiny)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        result.setdefault("meta", {})["wall_s"] = time.perf_counter() - t0
        path = write_result(name, result)
        print(f"[{name}] {time.perf_counter() - t0:.1f} s -> {path}", flush=True)

    if a.gpu:
        total = time.perf_counter() - t_start
        print(
            f"--gpu: whole suite in {total:.0f} s (budget {GPU_BUDGET_S} s)"
            + ("" if total <= GPU_BUDGET_S else ": OVER BUDGET, drop sizes before the next GPU run"),
            flush=True,
        )
    if a.commit and not a.no_summary:
        from benchmarks import summary

        summary.main_cli([])
    if not a.commit:
        print(f"results in {out} (the committed benchmarks/results/ are written only with --commit)")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
