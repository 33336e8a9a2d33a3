"""Read a result directory back: every CSV as ``{column: NumPy array}``, without pandas.

Each command writes CSVs with a header row (``ode.csv``, ``mc.csv``, ``robustness.csv``,
``defences.csv``, ``sweep.csv``, ``verify.csv``) and a ``config.json``; :func:`load` reads them
all. Numeric columns become float arrays (integers stay exact in float64 up to 2**53), other
columns (``defence``, ``sampler``) arrays of strings, ``True``/``False`` booleans.
"""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np

__all__ = ["load", "read_table"]


def _column(values: list[str]) -> np.ndarray:
    if all(v in ("True", "False") for v in values) and values:
        return np.array([v == "True" for v in values])
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)


def read_table(path: str) -> dict:
    """One CSV with a header row as ``{column: array}`` (floats, booleans or strings)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"path={path!r} is an empty CSV (no header row)")
    names, body = rows[0], rows[1:]
    return {n: _column([r[i] for r in body]) for i, n in enumerate(names)}


def load(directory: str, frames: bool = False) -> dict:
    """Every table of a result directory of ``jaxadv run``/``sweep``/``verify``/``compare-defences``.

    Args:
        directory: the ``--out`` directory.
        frames: return :class:`pandas.DataFrame` objects instead of dicts (needs pandas).

    Returns:
        ``{stem: table}``, e.g. ``{"ode": {"alpha": ..., "R": ...}, "mc": {...}, ...}``, and
        ``"config"``: the parsed ``config.json`` when present.

    Raises:
        ValueError: ``directory`` holds no CSV file, or ``frames=True`` without pandas.

    Example:
        >>> import jaxadv, tempfile
        >>> from jaxadv.app.io import write_csv
        >>> d = tempfile.mkdtemp(); write_csv(d + "/ode.csv", {"alpha": [0.0, 1.0], "R": [0.0, 0.5]})
        >>> jaxadv.load(d)["ode"]["R"]
        array([0. , 0.5])
    """
    if not os.path.isdir(directory):
        raise ValueError(f"directory={directory!r} is not a directory")
    paths = sorted(glob.glob(os.path.join(directory, "*.csv")))
    if not paths:
        raise ValueError(f"directory={directory!r} holds no .csv file")
    out = {os.path.splitext(os.path.basename(p))[0]: read_table(p) for p in paths}
    if frames:
        try:
            import pandas as pd
        except ImportError:
            raise ValueError("frames=True needs pandas (pip install pandas)") from None
        out = {k: pd.DataFrame(v) for k, v in out.items()}
    cfg = os.path.join(directory, "config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            out["config"] = json.load(f)
    return out
