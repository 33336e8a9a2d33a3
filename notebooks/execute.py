"""Execute the notebooks and write them back with their outputs (what is committed).

    PYTHONPATH=. python3 notebooks/execute.py [--small] [NAME.ipynb ...]   # default: every notebook here

The committed outputs are at full size (``JAXADV_NOTEBOOK_SIZE=full``: the scenarios to where they
settle); ``--small`` runs the sizes the test suite uses.

Figures are displayed at 72 dpi; each notebook stays under the 500 kB that tests/test_view.py checks.
"""

import glob
import os
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))


def main(names):
    small = "--small" in names
    names = [n for n in names if n != "--small"]
    os.environ["JAXADV_NOTEBOOK_SIZE"] = "small" if small else "full"
    os.environ["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.pop("XLA_FLAGS", None)
    for name in names or sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "*.ipynb"))):
        t = time.time()
        path = os.path.join(HERE, name)
        nb = nbformat.read(path, as_version=4)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tempfile.mkdtemp()}}
        ).execute()
        for c in nb.cells:
            c.metadata.pop("execution", None)
        nbformat.write(nb, path)
        print(f"{name}: {time.time() - t:.0f}s, {os.path.getsize(path) // 1024} kB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
