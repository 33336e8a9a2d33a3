"""Benchmark: the cost of a protocol's gradient against its forward solve, and ``jaxadv optimise scenario1``.

Two measurements (issue "optimal protocols", its Done-when):

* the unit's ODE to alpha = 1000 (RK4, dt = 0.05: 20000 steps) under an eps schedule on 11 knots: the
  objective ``J(v)`` (forward) and ``jax.value_and_grad(J)`` (reverse mode through the solve, each step under
  ``jax.checkpoint``), compiled apart, medians of interleaved repeats, and their ratio;
* the command a user types, ``jaxadv optimise scenario1`` with its defaults (4 starts of 11 knots, the best
  constant and the ramp, the Monte Carlo confirmation of N = 1000, 128 replicas), as one subprocess: its wall
  time, compilation included (a fresh process, the persistent compilation cache off).

    python benchmarks/control.py [--repeats 5] [--no-command]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import ratio, time_interleaved, time_once, write_result  # noqa: E402


def main(quick: bool = False) -> dict:
    """Entry point of ``python -m benchmarks``: the measurement as a dict (the runner writes it)."""
    return cli(["--alpha-max", "100", "--repeats", "3", "--no-command"] if quick else [], write=False)


def cli(argv=None, write: bool = True) -> dict:
    with jax.enable_x64(True):
        return _cli(argv, write)


def _cli(argv, write):
    from jaxadv import ModelParams
    from jaxadv.control import Controls, Problem, make_objective, objective_of, plan_steps

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha-max", type=float, default=1000.0)
    ap.add_argument("--dt", type=float, default=0.05)
    ap.add_argument("--knots", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-command", action="store_true", help="skip the jaxadv optimise scenario1 run")
    a = ap.parse_args(argv)
    T = a.alpha_max
    knots = tuple(np.linspace(0.0, T, a.knots))
    pb = Problem(
        ModelParams(prior=0.7, eta_w=0.04, eta_b=0.2, eps=1.0),
        plan_steps(T, 1, a.dt),
        make_objective({"clean": 0.5, "robust": 0.5}, eps_test=0.5),
        Controls(("eps",), knots, (0.0,), (2.0,), budget=0.5),
    )
    v = jnp.asarray(np.linspace(0.0, 1.0, a.knots)[None])
    forward = jax.jit(lambda x: objective_of(pb, x))
    both = jax.jit(jax.value_and_grad(lambda x: objective_of(pb, x)))
    compile_s = {"forward": time_once(lambda: forward(v))[0], "value_and_grad": time_once(lambda: both(v))[0]}
    timed = time_interleaved({"forward": lambda: forward(v), "value_and_grad": lambda: both(v)}, a.repeats)
    result = {
        "what": f"unit ODE to alpha={T:g} (RK4 dt={a.dt}, {int(round(T / a.dt))} steps), eps schedule on {a.knots} "
        "knots: the objective and its gradient by reverse mode",
        "compile_s": compile_s,
        "timings": timed,
        "gradient_over_forward": ratio(timed["value_and_grad"], timed["forward"]),
    }
    print(
        f"forward {timed['forward']['median_s']:.3f} s, value and gradient "
        f"{timed['value_and_grad']['median_s']:.3f} s: {result['gradient_over_forward']['median']:.2f}x",
        flush=True,
    )
    if not a.no_command:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "JAXADV_CACHE_DIR": "off"}
            cmd = [sys.executable, "-m", "jaxadv", "optimise", "scenario1", "--quiet", "--out", os.path.join(tmp, "o")]
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
        result["optimise_scenario1"] = {"command": "jaxadv optimise scenario1", "wall_s": wall}
        print(f"jaxadv optimise scenario1: {wall:.1f} s", flush=True)
    result["headline"] = {
        f"forward solve to alpha = {T:g}, s (median)": timed["forward"]["median_s"],
        "value and gradient, s (median)": timed["value_and_grad"]["median_s"],
        "gradient / forward": result["gradient_over_forward"]["median"],
    }
    if "optimise_scenario1" in result:
        result["headline"]["jaxadv optimise scenario1, s (wall, compilation included)"] = wall
    result["meta"] = {"size": "quick" if a.alpha_max < 1000 else "full"}
    if write:
        print("wrote", write_result("control", result))
    return result


if __name__ == "__main__":
    cli()
