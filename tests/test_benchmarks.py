"""Smoke test of the benchmark tooling: a tiny run writes valid JSON with the expected keys.

Not a timed test: nothing is asserted about speed.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # 11 s: the benchmark runner's smoke tests run with the slow tests
def test_mc_throughput_tiny_writes_json(tmp_path):
    out = _run("--only", "mc_throughput", "--tiny", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    path = tmp_path / "mc_throughput_cpu.json"
    assert path.exists(), os.listdir(tmp_path)
    d = json.loads(path.read_text())
    assert d["name"] == "mc_throughput"
    for key in ("device", "dtype", "jax_version", "sizes", "wall_s", "size"):
        assert key in d["meta"], key
    assert d["meta"]["size"] == "tiny"
    row = d["rows"][0]
    for contender in ("jaxadv", "floor", "numpy"):
        for key in ("median_s", "min_s", "max_s", "repeats", "first_call_s", "ns_per_elem"):
            assert key in row[contender], (contender, key)
        assert row[contender]["median_s"] > 0
    assert {"median", "low", "high"} <= set(row["jaxadv_over_floor"])
    assert row["sanity"]["finite_jaxadv"] and row["sanity"]["finite_numpy"]
    assert {"jaxadv_over_floor_median", "numpy_over_jaxadv_median"} <= set(d["headline"])
    for peer in ("torch", "numba"):  # optional peers: measured, or skipped with the reason
        assert (peer in row and f"{peer}_over_jaxadv" in row) or "not installed" in d["peers_skipped"][peer]


def test_missing_peer_is_skipped_with_a_message(monkeypatch):
    import importlib.util

    sys.path.insert(0, ROOT)
    try:
        from benchmarks import peers
    finally:
        sys.path.remove(ROOT)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    missing = peers.available()
    assert "torch is not installed" in missing["torch"] and "jaxadv[bench]" in missing["torch"]


def test_runner_lists_benchmarks_and_rejects_unknown(tmp_path):
    out = _run("--list", tmp_path=tmp_path)
    names = out.stdout.split()
    assert {"mc_throughput", "ode_throughput", "scaling"} <= set(names)
    assert "summary" not in names and "common" not in names
    bad = _run("--only", "no_such_benchmark", tmp_path=tmp_path)
    assert bad.returncode != 0 and "no_such_benchmark" in bad.stderr


def test_summary_renders_gpu_placeholder(tmp_path):
    sys.path.insert(0, ROOT)
    try:
        from benchmarks import summary
    finally:
        sys.path.remove(ROOT)
    text = summary.render({})
    assert text.startswith(summary.START) and text.endswith(summary.END)
    assert "GPU figures are not yet measured" in text


@pytest.mark.slow  # the benchmark runner's smoke test in the default suite: mc_throughput
def test_ode_throughput_tiny_writes_json_and_renders(tmp_path):
    out = _run("--only", "ode_throughput", "--tiny", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads((tmp_path / "ode_throughput_cpu.json").read_text())
    assert d["meta"]["size"] == "tiny"
    for k, r in d["jaxadv"].items():
        assert r["median_s"] > 0 and r["evals_per_point_median"] > 0, k
        assert r["max_abs_err_end"] < 1e-3, (k, r["max_abs_err_end"])  # every configuration solves the ODE
    assert all(r["max_abs_err_end"] < 1e-3 for r in d["peer"]["configs"].values())
    sys.path.insert(0, ROOT)
    try:
        from benchmarks import summary
    finally:
        sys.path.remove(ROOT)
    text = "\n".join(summary.table_ode(d))
    assert "speed-up" in text and "rtol=1e-8" in text


def test_gpu_run_refuses_without_a_gpu(tmp_path):
    """``python -m benchmarks --gpu`` (the one-command accelerator run) stops at once, saying why, on a CPU."""
    env_run = _run("--gpu", tmp_path=tmp_path)
    assert env_run.returncode == 2, env_run.stderr[-2000:]
    assert "--gpu" in env_run.stderr and ("no GPU" in env_run.stderr or "not a GPU" in env_run.stderr)
    assert not list(tmp_path.iterdir())
