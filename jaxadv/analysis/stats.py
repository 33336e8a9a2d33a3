r"""Means and standard errors over Monte Carlo replicas: the one helper every command and student uses.

Replicas are axis 0. A replica that diverged (a non-finite value) is left out, never averaged; the
standard error is the sample standard deviation over :math:`\sqrt n`, :math:`n` the replicas kept.
NumPy only, so the command line can use it before JAX is imported.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["mean_sem", "finite_replicas"]


def mean_sem(values: npt.ArrayLike, finite: npt.ArrayLike | None = None) -> tuple[Any, Any]:
    r"""Mean and standard error over axis 0 of ``values`` (replicas first): the one helper of every
    command and student.

    .. math:: \bar x = \frac1n\sum_{r\in F} x_r, \qquad
              \mathrm{SE} = \sqrt{\frac{1}{n(n-1)}\sum_{r\in F}(x_r-\bar x)^2}, \qquad n = |F|,

    over the finite replicas ``F``: where ``finite`` is given (a mask broadcastable to ``values``),
    the entries it marks; otherwise every replica whose values are all finite (a replica with one
    non-finite entry is left out whole, as a diverged run is). The standard error is NaN for fewer
    than two replicas. Computed in float64.

    Example:
        >>> import numpy as np
        >>> mean, sem = mean_sem(np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]]))
        >>> mean.tolist(), sem.tolist()
        ([3.0, 4.0], [2.0, 2.0])
    """
    values = np.asarray(values, np.float64)
    if finite is None:
        finite = finite_replicas(values).reshape((-1,) + (1,) * (values.ndim - 1))
    values = np.where(finite, values, np.nan)
    n = np.sum(np.broadcast_to(finite, values.shape), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no finite replica is NaN
        mean = np.nanmean(values, axis=0) if len(values) else np.full(values.shape[1:], np.nan)
        sd = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.full(values.shape[1:], np.nan)
        return mean, sd / np.sqrt(n)


def finite_replicas(values: npt.ArrayLike) -> np.ndarray:
    """The replicas (axis 0) whose values are all finite: a boolean array of length ``len(values)``."""
    values = np.asarray(values)
    return np.all(np.isfinite(values.reshape(len(values), int(np.prod(values.shape[1:])))), axis=1)
