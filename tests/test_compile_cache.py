"""The CLI's persistent compilation cache: where it lives, how it is turned off, and that a run fills it."""

import os
import subprocess
import sys

from jaxadv.app.compile_cache import cache_dir


def test_cache_dir_follows_the_environment(tmp_path):
    assert cache_dir({"JAXADV_CACHE_DIR": str(tmp_path)}) == str(tmp_path)
    for off in ("off", "", "OFF", "none"):
        assert cache_dir({"JAXADV_CACHE_DIR": off}) is None
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == os.path.join(str(tmp_path), "jaxadv", "xla")
    assert cache_dir({}).endswith(os.path.join(".cache", "jaxadv", "xla"))


def _run(tmp_path, cache, out):
    env = {**os.environ, "JAXADV_CACHE_DIR": cache}
    cmd = [sys.executable, "-m", "jaxadv", "run", "scenario1", "--no-mc", "--quiet", "--out", str(tmp_path / out)]
    cmd += ["--set", "alpha_max=2", "--set", "n_save=2"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_a_run_fills_the_cache_and_off_leaves_nothing(tmp_path):
    cache = tmp_path / "cache"
    r = _run(tmp_path, str(cache), "a")
    assert r.returncode == 0, r.stderr
    first = sorted(os.listdir(cache))
    assert first, "the run compiled programs but wrote none to the cache"
    r = _run(tmp_path, str(cache), "b")  # the same configuration: read back, nothing new compiled
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(cache)) == first
    r = _run(tmp_path, "off", "c")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(cache)) == first
