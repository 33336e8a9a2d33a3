"""Regenerate the results table of ``benchmarks/README.md`` from the JSON files in ``results/``.

The table lies between the markers ``<!-- results:start -->`` and ``<!-- results:end -->`` and
is never edited by hand: ``python -m benchmarks.summary`` rewrites it (``--check`` exits 1 when
it is out of date). Devices without results files (e.g. ``gpu``) get a line saying so.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")
RESULTS = os.path.join(HERE, "results")
START, END = "<!-- results:start -->", "<!-- results:end -->"
DEVICES = ("cpu", "gpu")


def _f(x, fmt="{:.2f}"):
    return "n/a" if x is None else fmt.format(x)


def _spread(r):
    return f"{r['median']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"


def load_results(folder=RESULTS):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            d = json.load(f)
        out[(d.get("name"), d.get("meta", {}).get("device"))] = d
    return out


def table_mc(d):
    m = d["meta"]
    lines = [
        f"**Monte Carlo throughput** ({m['device']}, {m.get('device_kind', '')}, {m['cpu_count']} cores, "
        f"{m['dtype']}, {m.get('impl')}, JAX {m['jax_version']}, size `{m['size']}`, "
        f"median of {m['repeats']} interleaved repeats, load average at start {_f(m.get('load_average', [None])[0])}). "
        "ns per replica x step x dimension; ratios are median [worst, best] over the repeats.",
        "",
        "CPU-time ratios use the process CPU time of each call (all threads).",
        "",
        "`floor` draws the bits with `jaxadv.threefry` (unrolled cipher); `jax.random floor` draws the "
        "same bits with `jax.random`.",
        "",
        "PyTorch (CPU, batched, `torch.no_grad`; timed with one intra-op thread and with its default, one per core, "
        "the faster of the two at each size is the peer: `torch_best` in the JSON) "
        "and numba (`@njit` loop, one thread) "
        "are the same algorithm "
        "(`benchmarks/peers.py`), timed in the same interleaved repeats; "
        + (
            "; ".join(d["peers_skipped"].values()) + "."
            if d.get("peers_skipped")
            else ""
            if "peers" in d
            else "n/a: not measured in this file."
        ),
        "",
        "`steps`: steps a timed call of jaxadv's kernels and floors makes (a call ends by reading the "
        "observables, as a run does once a save interval); the peers' cost is per step, so they make `peer "
        "steps` a call and their times are scaled per step. `call ms`: one call of the kernel that makes no "
        "step (the observables of every replica).",
        "",
        "| replicas | N | steps | peer steps | call ms | jaxadv ns | floor ns | jax.random floor ns | NumPy ns "
        "| PyTorch ns | numba ns | jaxadv / floor | NumPy / jaxadv | PyTorch / jaxadv | numba / jaxadv "
        "| jaxadv / floor (CPU time) | NumPy / jaxadv (CPU time) | compile s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in d["rows"]:
        peer_ns = " | ".join(f"{r[p]['ns_per_elem']:.2f}" if p in r else "n/a" for p in ("torch", "numba"))
        peer_ratio = " | ".join(
            _spread(r[f"{p}_over_jaxadv"]) if f"{p}_over_jaxadv" in r else "n/a" for p in ("torch", "numba")
        )
        lines.append(
            f"| {r['replicas']} | {r['N']} | {r['steps']} | {r.get('peer_steps', r['steps'])} | "
            f"{_f(r.get('call_overhead_ms'))} | {r['jaxadv']['ns_per_elem']:.2f} | "
            f"{r['floor']['ns_per_elem']:.2f} | {r['floor_jax_random']['ns_per_elem']:.2f} | "
            f"{r['numpy']['ns_per_elem']:.2f} | {peer_ns} | "
            f"{_spread(r['jaxadv_over_floor'])} | {_spread(r['numpy_over_jaxadv'])} | {peer_ratio} | "
            f"{r['cpu_time_ratios']['jaxadv_over_floor']:.2f} | "
            f"{r['cpu_time_ratios']['numpy_over_jaxadv']:.2f} | "
            f"{_f(r['jaxadv'].get('first_call_s'))} |"
        )
    sh = [r for r in d["rows"] if "sharded" in r]
    if sh:
        lines += [
            "",
            f"Replicas sharded over {sh[0]['sharded']['devices']} XLA host devices "
            "(`jaxadv.sharding.shard_batch`, one device per core), same run:",
            "",
            "| replicas | N | jaxadv ns | floor ns | jaxadv / floor | NumPy / jaxadv | PyTorch / jaxadv "
            "| numba / jaxadv | speed-up over one device |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sh:
            peer_ratio = " | ".join(
                _spread(r["sharded"][f"{p}_over_jaxadv"]) if f"{p}_over_jaxadv" in r["sharded"] else "n/a"
                for p in ("torch", "numba")
            )
            lines.append(
                f"| {r['replicas']} | {r['N']} | {r['jaxadv_sharded']['ns_per_elem']:.2f} | "
                f"{r['floor_sharded']['ns_per_elem']:.2f} | {_spread(r['sharded']['jaxadv_over_floor'])} | "
                f"{_spread(r['sharded']['numpy_over_jaxadv'])} | {peer_ratio} | "
                f"{_spread(r['sharded']['speedup_over_one_device'])} |"
            )
    fast = [r for r in d["rows"] if "fast" in r]
    if fast:
        lines += [
            "",
            'The fast generator (`generator="fast"`: both words of every threefry block, Box-Muller '
            "normals; same law, other numbers) and its own floor, same run:",
            "",
            "| replicas | N | jaxadv ns | fast ns | fast floor ns | jaxadv / fast | fast / fast floor | "
            "floor / fast floor | jaxadv / fast (CPU time) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fast:
            lines.append(
                f"| {r['replicas']} | {r['N']} | {r['jaxadv']['ns_per_elem']:.2f} | "
                f"{r['fast']['ns_per_elem']:.2f} | {r['floor_fast']['ns_per_elem']:.2f} | "
                f"{_spread(r['jaxadv_over_fast'])} | {_spread(r['fast_over_floor_fast'])} | "
                f"{_spread(r['floor_over_floor_fast'])} | "
                f"{r['cpu_time_ratios_fast']['jaxadv_over_fast']:.2f} |"
            )
    h = d["headline"]
    lines += [
        "",
        f"Median over sizes: jaxadv / floor = {h['jaxadv_over_floor_median']:.2f} (target <= "
        f"{h['target_jaxadv_over_floor']}), NumPy / jaxadv = {h['numpy_over_jaxadv_median']:.2f} "
        f"(target >= {h['target_numpy_over_jaxadv']})."
        + (
            f" Sharded: jaxadv / floor = {h['sharded_jaxadv_over_floor_median']:.2f}, NumPy / jaxadv = "
            f"{h['sharded_numpy_over_jaxadv_median']:.2f}, speed-up over one device "
            f"{h['sharded_speedup_over_one_device_median']:.2f}."
            if h.get("sharded_jaxadv_over_floor_median")
            else ""
        ),
    ]
    if d.get("peers"):
        lines += [
            "",
            "Peers / jaxadv, worst size (one device; sharded): "
            + ", ".join(
                f"{k} {v['over_jaxadv_worst']:.2f}"
                + (f"; {v['over_jaxadv_sharded_worst']:.2f}" if v.get("over_jaxadv_sharded_worst") is not None else "")
                for k, v in d["peers"].items()
            )
            + " (target: > 1 for every peer, >= 3 for NumPy).",
        ]
    if d.get("prng"):
        lines += [
            "",
            "PRNG implementations (`jax.random.key(seed, impl=...)`; only threefry2x32 takes the unrolled "
            "path, the others draw through `jax.random`):",
            "",
            "| impl | replicas | N | jaxadv ns | jax.random floor ns |",
            "|---|---:|---:|---:|---:|",
        ]
        for p in d["prng"]:
            lines.append(
                f"| {p['impl']} | {p['replicas']} | {p['N']} | {p['jaxadv_ns_per_elem']:.2f} | "
                f"{p['floor_jax_random_ns_per_elem']:.2f} |"
            )
    return lines


def table_ode(d):
    m, peer, h = d["meta"], d["peer"], d["headline"]
    lines = [
        f"**ODE throughput against solve_ivp** ({m['device']}, {m['dtype']}, "
        f"{m['points']} points = {m['grid'][0]} eps x "
        f"{m['grid'][1]} prior, alpha = {m['alpha_max']:g}, size `{m['size']}`, grid split over "
        f"{h.get('devices', 1)} device(s)). Error: largest |end point - reference|; for jaxadv over the "
        f"whole grid against its adaptive RK4 at rtol {m.get('fine_reference_rtol', 0):g} (itself within "
        f"{m.get('fine_reference_err', float('nan')):.1e} of solve_ivp {m['reference']['method']} at rtol "
        f"{m['reference']['rtol']:g} on the peer's {m['peer_points']} points), for the peer on those points "
        "against the DOP853 reference.",
        "",
        "| jaxadv RK4 | s (whole grid) | ms per point | evaluations per point (median / max) | error |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, r in d["jaxadv"].items():
        lines.append(
            f"| {k} | {r['median_s']:.3f} | {r['per_point_s'] * 1e3:.3f} | "
            f"{r['evals_per_point_median']:.0f} / {r['evals_per_point_max']} | {r['max_abs_err_end']:.1e} |"
        )
    lines += [
        "",
        f"Peer: {peer['what']}, timed on {peer['points_timed']} points and extrapolated linearly (atol = 1e-3 rtol).",
        "",
        "| solve_ivp | ms per point | extrapolated s (whole grid) | rhs evaluations | error |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, r in peer["configs"].items():
        lines.append(
            f"| {k} | {r['per_point_s'] * 1e3:.1f} | {r['extrapolated_full_grid_s']:.1f} | "
            f"{r['nfev_median']:.0f} | {r['max_abs_err_end']:.1e} |"
        )
    if h.get("speedup") is not None:
        one = (
            f" On one device: {h['one_device_s']:.3f} s, speed-up {h['speedup_one_device']:.0f}x "
            f"(splitting the grid gains {h['sharding_gain']:.2f}x)."
            if h.get("one_device_s")
            else ""
        )
        lines += [
            "",
            f"Fastest within {h['tolerance_on_result']:g} of the reference: jaxadv `{h['jaxadv_best']}` "
            f"{h['jaxadv_best_s']:.3f} s (error {h['jaxadv_best_err']:.1e}) against solve_ivp "
            f"`{h['peer_best']}` {h['peer_best_extrapolated_s']:.1f} s (error {h['peer_best_err']:.1e}): "
            f"**speed-up {h['speedup']:.0f}x** [worst repeat {h['speedup_low']:.0f}x] (target >= "
            f"{h['target']:g})." + one,
        ]
    return lines


def table_scaling(d):
    m = d["meta"]
    lines = [
        f"**Scaling** ({m['device']}, size `{m['size']}`; figure `{d.get('figure')}`).",
        "",
        "| sweep | replicas | N / points | jaxadv s | floor s | jaxadv ns/elem |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in d["mc_vs_N"]:
        lines.append(
            f"| MC vs N | {r['replicas']} | {r['N']} | {r['jaxadv_s']:.4f} | {r['floor_s']:.4f} "
            f"| {r['jaxadv_ns_per_elem']:.2f} |"
        )
    for r in d["mc_vs_replicas"]:
        lines.append(
            f"| MC vs replicas | {r['replicas']} | {r['N']} | {r['jaxadv_s']:.4f} | {r['floor_s']:.4f} "
            f"| {r['jaxadv_ns_per_elem']:.2f} |"
        )
    for r in d["ode_vs_grid"]:
        lines.append(f"| ODE vs grid | | {r['points']} | {r['median_s']:.4f} | | |")
    if d.get("memory"):
        lines += [
            "",
            "| memory: replicas | N | state MB | peak RSS MB | peak - baseline MB | / state |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in d["memory"]:
            lines.append(
                f"| {r['replicas']} | {r['N']} | {r['state_bytes'] / 1e6:.1f} | {r['peak_rss_bytes'] / 1e6:.0f} | "
                f"{r['peak_over_baseline_bytes'] / 1e6:.0f} | {r['over_state']:.1f} |"
            )
    return lines


def table_generic(d):
    m = d.get("meta", {})
    lines = [f"**{d.get('name')}** ({m.get('device')}, size `{m.get('size', '?')}`)."]
    h = d.get("headline")
    if isinstance(h, dict):
        lines += ["", "| figure | value |", "|---|---:|"]
        for k, v in h.items():
            lines.append(f"| {k} | {_f(v, '{:.3g}') if isinstance(v, (int, float)) else v} |")
    return lines


def table_reduced(d):
    lines = [
        f"**Reduced vs full sampler** ({d['device']}, {d['dtype']}, {d['loss']} loss; "
        "repeats interleave the two samplers; speed-up = median of per-repeat ratios).",
        "",
        "The floor is the reduced kernel's loop drawing the same random numbers and nothing else.",
        "",
        "| N | replicas | reduced ns / replica-step | floor ns / replica-step | reduced / floor "
        "| full ns / replica-step | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    per = {(r["sampler"], r["N"]): r for r in d["rows"]}
    over = d.get("reduced_over_floor", {})
    for N in sorted({r["N"] for r in d["rows"]}):
        red, full, fl = per[("reduced", N)], per[("full", N)], per.get(("reduced_floor", N))
        lines.append(
            f"| {N} | {red['replicas']} | {red['ns_per_replica_step']:.1f} | "
            f"{_f(fl and fl['ns_per_replica_step'], '{:.1f}')} | {_f(over.get(str(N)))} | "
            f"{full['ns_per_replica_step']:.1f} | {d['speedup_full_over_reduced'][str(N)]:.0f}x |"
        )
    lines += [
        "",
        f"Reduced cost at the largest N over the smallest: "
        f"{d['reduced_cost_ratio_largest_over_smallest_N']:.2f} (1 = flat in N).",
    ]
    return lines


def table_ode_grid(d):
    err = d["max_abs_error_vs_dt_over_20"]
    return [
        f"**ODE grid through `jaxadv sweep`** ({d['device']}, {d['device_count']} device(s), {d['dtype']}): "
        f"{d['grid'][0]} x "
        f"{d['grid'][1]} ({' x '.join(d['axes'])}) trajectories to alpha = {d['alpha_max']:g} with RK4 dt = "
        f"{d['dt']:g} ({d['rk4_steps']} steps) through `jaxadv.app.sweep`: **{d['run_s_median']:.2f} s** "
        f"(median of {d['repeats']}; compile {d['compile_s']:.2f} s). Largest deviation from dt/20: "
        f"R {err['R']:.1e}, b {err['b']:.1e}."
    ]


def table_committee_ode(d):
    m = d["meta"]
    lines = [
        f"**Committee ODE at a tolerance** ({m['device']}, {m.get('cpu_count')} cores, {m['dtype']}, "
        f"size `{m['size']}`, "
        f"load average at start {_f((m.get('load_average') or [None])[0])}): one XOR trajectory to alpha = "
        f"{m['alpha_max']:g} at tol {m['tolerance']:g} (`solve_committee_ode` defaults) against SciPy's DOP853 on an "
        "independent NumPy right-hand side on the same quadrature rule; both within the tolerance of a converged "
        "reference. Median of interleaved repeats; ratio [worst, best] over the repeats; `first call` is jaxadv's "
        "rule choice, compilation and integration(s), apart.",
        "",
        "| K | rule (nodes an axis) | jaxadv s | evaluations | error | peer | peer s | evaluations | error | "
        "speed-up | speed-up (CPU time) | first call s |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in d["cases"].items():
        j, best = c["jaxadv"], c["peer_best"]
        p = c["peer"][best]
        n = c["rule"]["panels"] * c["rule"]["order"]
        lines.append(
            f"| {name[2:]} | {c['rule']['panels']}x{c['rule']['order']} on [-{c['rule']['width']:g}, "
            f"{c['rule']['width']:g}] ({n}) | {j['median_s']:.3f} | {j['n_evals']} | {j['err']:.1e} | {best} | "
            f"{p['median_s']:.3f} | {p['nfev']} | {p['err']:.1e} | {_spread(c['speedup'])} | "
            f"{c['speedup_cpu']:.2f} | {j['first_call_s']:.1f} |"
        )
    return lines


RENDER = {
    "committee_ode": table_committee_ode,
    "mc_throughput": table_mc,
    "ode_throughput": table_ode,
    "scaling": table_scaling,
    "reduced_vs_full": table_reduced,
    "ode_grid": table_ode_grid,
}


def render(results) -> str:
    lines = [
        START,
        "",
        "_Generated by `python -m benchmarks.summary` from `benchmarks/results/*.json`; do not edit._",
        "",
    ]
    for dev in DEVICES:
        lines.append(f"### {dev.upper()}")
        lines.append("")
        names = sorted(n for (n, dv) in results if dv == dev)
        if not names:
            lines += [
                f"{dev.upper()} figures are not yet measured (no `results/*_{dev}.json`; run "
                f"`python -m benchmarks --device {dev}` on a machine that has one).",
                "",
            ]
            continue
        for n in names:
            d = results[(n, dev)]
            try:
                lines += RENDER.get(n, table_generic)(d)
            except (KeyError, TypeError) as e:
                lines += [f"**{n}**: results file not understood ({e!r})."]
            lines.append("")
    lines.append(END)
    return "\n".join(lines)


def update(readme=README, folder=RESULTS) -> tuple[str, str]:
    with open(readme) as f:
        text = f.read()
    if START not in text or END not in text:
        raise ValueError(f"{readme} lacks the markers {START} / {END}")
    a, b = text.index(START), text.index(END) + len(END)
    return text, text[:a] + render(load_results(folder)) + text[b:]


def main_cli(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README table is out of date")
    a = ap.parse_args(argv)
    old, new = update()
    if a.check:
        return int(old != new)
    if old != new:
        with open(README, "w") as f:
            f.write(new)
    print(f"updated {README}" if old != new else f"{README} up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
