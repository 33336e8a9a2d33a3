"""Atomic file output: every result file appears whole or not at all."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import tomllib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

StrPath = str | os.PathLike[str]
"""A file name: a string or a path object."""

__all__ = [
    "atomic_write_bytes",
    "write_exclusive",
    "write_csv",
    "write_json",
    "write_npz",
    "write_figure",
    "read_csv",
    "read_toml",
    "npz_problem",
]


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    With several processes (:mod:`jaxadv.distributed`) only process 0 writes; the others return."""
    from ..distributed import is_primary

    if not is_primary():
        return
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; a result file follows the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:  # e.g. a full disk: say which file was not written
            raise OSError(
                e.errno, f"{path!r} not written ({e.strerror or e}); an earlier version, if any, is unchanged"
            ) from e
        raise


def write_exclusive(path: StrPath, data: bytes) -> None:
    """Create ``path`` holding ``data`` only if it does not exist (``O_EXCL``: a lock file);
    ``FileExistsError`` otherwise."""
    fd = os.open(os.fspath(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_csv(path: StrPath, columns: dict[str, Any]) -> None:
    """Write equal-length columns ``{name: array}`` as CSV with a header row (full float precision)."""
    names = list(columns)
    arrays = [np.asarray(columns[n]).ravel() for n in names]
    lengths = {n: a.size for n, a in zip(names, arrays, strict=True)}
    if len(set(lengths.values())) > 1:  # zip would drop the tail of the longer columns silently
        raise ValueError(f"write_csv {os.fspath(path)!r}: columns of different lengths {lengths}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in zip(*arrays, strict=True):
        w.writerow(
            [
                repr(float(x)) if isinstance(x, (float, np.floating)) else x.item() if hasattr(x, "item") else x
                for x in row
            ]
        )
    atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: StrPath) -> dict[str, np.ndarray]:
    """Read a CSV written by :func:`write_csv` into ``{name: float array}``."""
    with open(path) as f:
        rows = list(csv.reader(f))
    names, data = rows[0], np.array(rows[1:], dtype=float).reshape(-1, len(rows[0]))
    return {n: data[:, i] for i, n in enumerate(names)}


def read_toml(path: StrPath, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; ``FileNotFoundError``/``ValueError`` name the file (``what`` says which kind)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a folder, not a file")
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{what} {path!r} is not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{what} {path!r} is not valid UTF-8 text: {e}") from None


def write_json(path: StrPath, obj: Any) -> None:
    """Write ``obj`` as strict JSON: NaN and infinities become ``null``."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=_jsonable, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def _finite(x: Any) -> Any:
    """``x`` with every non-finite float (also in NumPy scalars and arrays) replaced by ``None``."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_npz(path: StrPath, **arrays: Any) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def npz_problem(path: StrPath) -> str | None:
    """Why the ``.npz`` file at ``path`` cannot be read back, or ``None`` when it can.

    Every member's CRC-32 is checked (:meth:`zipfile.ZipFile.testzip`), so a truncated, empty or
    bit-flipped checkpoint or sweep chunk is found before a run relies on it; files are written
    atomically (:func:`write_npz`), so this is damage from outside (a copy cut short, a bad disk).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npz")
        >>> write_npz(path, a=np.arange(3))
        >>> npz_problem(path) is None
        True
        >>> _ = open(path, "r+b").truncate(40)
        >>> npz_problem(path)
        'not a complete .npz file (File is not a zip file)'
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        return f"not a complete .npz file ({e})"
    except OSError as e:
        return f"cannot be opened ({e.strerror or e})"
    return None if bad is None else f"{bad} is damaged (its CRC-32 does not match)"


def _jsonable(x: Any) -> Any:
    from ..schedule import describe, is_schedule

    if is_schedule(x):  # {"knots": [...], "values": [...]}
        return describe(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_figure(path: StrPath, fig: Figure, dpi: int = 120) -> None:
    """Render a :class:`matplotlib.figure.Figure` (format from the extension) and write it atomically.

    Rendering goes through the figure's own canvas (no pyplot, no backend switch)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, bbox_inches="tight", format=os.path.splitext(os.fspath(path))[1][1:] or "png")
    atomic_write_bytes(path, buf.getvalue())
