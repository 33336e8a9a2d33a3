r"""The Monte Carlo's random generators as data: how a step turns its key into the example's numbers.

A :class:`Generator` is a record of two draw faces, ``uniform(key, shape, dtype)`` and
``normal(key, shape, dtype)``, with which the full sampler draws its examples
(:func:`jaxadv.model.data.sample_example`: the label's uniform and the N normals) and its initial
weights. Keys are the same for every generator: replica keys ``split(key, replicas)`` and per-step
keys ``fold_in(replica_key, step)`` (:mod:`jaxadv.threefry`), so results do not depend on how a run
is chunked, resumed or sharded, whichever generator draws.

=========  ===================================================================================
``jax``    :mod:`jaxadv.threefry`: the numbers of ``jax.random.uniform`` / ``jax.random.normal``,
           bit for bit (one cipher block per word, inverse-erf normals). The default.
``fast``   :mod:`jaxadv.fast_random`: both words of every threefry2x32 block, Box--Muller normals;
           the same distribution (exact up to float rounding, ``docs/theory.md`` §8.1), other
           numbers, about half the cost of a draw.
=========  ===================================================================================

The rule's own random numbers (a random eps law, the noise attack) keep ``jax.random``'s bits
under either generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from . import fast_random, threefry

__all__ = ["Generator", "JAX", "FAST", "GENERATORS", "get_generator"]


class Generator(NamedTuple):
    """A random generator of the Monte Carlo (static; hashable for ``jit``).

    Attributes:
        name: its configuration name (``generator=NAME``).
        uniform: ``uniform(key, shape, dtype, minval=0, maxval=1)``, uniform on ``[minval, maxval)``.
        normal: ``normal(key, shape, dtype)``, standard normals.
        description: one line for messages and documentation.
    """

    name: str
    uniform: Callable
    normal: Callable
    description: str


JAX = Generator(
    "jax",
    threefry.uniform,
    threefry.normal,
    "jax.random's numbers bit for bit (threefry2x32, one block per word, inverse-erf normals)",
)
FAST = Generator(
    "fast",
    fast_random.uniform,
    fast_random.normal,
    "both words of every threefry2x32 block, Box-Muller normals (same law, other numbers)",
)

GENERATORS = {g.name: g for g in (JAX, FAST)}
"""Generators by name."""


def get_generator(generator: str | Generator) -> Generator:
    """The :class:`Generator` named ``generator`` (or the record itself); ``ValueError`` otherwise.

    Example:
        >>> from jaxadv.generators import get_generator
        >>> get_generator("fast").name
        'fast'
        >>> get_generator("xor")
        Traceback (most recent call last):
        ...
        ValueError: generator='xor' is not one of ['fast', 'jax']
    """
    if isinstance(generator, Generator):
        return generator
    if isinstance(generator, str) and generator in GENERATORS:
        return GENERATORS[generator]
    raise ValueError(f"generator={generator!r} is not one of {sorted(GENERATORS)}")
