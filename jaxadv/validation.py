"""Validation of scalar arguments: an error that names the parameter and echoes its value.

Every layer checks its inputs with :func:`check_value`, so it sits below them all (the model's
parameter rules, the generic attacks of :mod:`jaxadv.attacks`, the commands' configuration).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_value", "RunFailed"]


class RunFailed(RuntimeError):
    """A run finished but its result is not trustworthy (every replica diverged): the command line exits 3."""


def check_value(name: str, value: Any, ok: Callable[[float], Any], rule: str) -> None:
    """Raise ``ValueError`` naming ``name`` and ``value`` unless ``value`` is finite and ``ok``.

    Example:
        >>> check_value("eps", -1.0, lambda x: x >= 0, "must be >= 0")
        Traceback (most recent call last):
        ...
        ValueError: eps=-1.0 must be >= 0
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{name}={x!r} must be finite")
    if not ok(x):
        raise ValueError(f"{name}={x!r} {rule}")
