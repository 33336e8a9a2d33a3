"""The README's Python example runs as written, from an empty folder, through a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_example() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_example_is_the_documented_one():
    code = _python_example()
    assert code.startswith("import jaxadv\n\njaxadv.use_all_cores()")
    assert 'run(cfg, "results/scenario2"' in code and 'jaxadv.load("results/scenario2")' in code


@pytest.mark.slow
def test_readme_python_example_runs_verbatim_in_an_empty_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    r = subprocess.run(
        [sys.executable, "-c", _python_example()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith(("consistent", "not testable", "inconsistent")), lines[0]
    assert "(2, 6)" in lines and lines[-1].startswith("['config', 'mc',")
    assert (tmp_path / "results" / "scenario2" / "ode.csv").is_file()
