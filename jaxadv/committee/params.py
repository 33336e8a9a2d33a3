r"""Parameters of the two-layer committee model: data mixture, learning rule, static spec.

Student (``K`` hidden units, :math:`g=\operatorname{erf}`):

.. math::
    \sigma(\xi) = \sum_{k=1}^{K} v_k\, g(w_k\cdot\xi - b_k),\qquad w_k\in\mathbb R^N .

Data: a Gaussian mixture in :math:`N` dimensions. Cluster :math:`c=1..M` has prior :math:`p_c`,
label :math:`\tau_c\in\{+1,-1\}`, per-component variance :math:`v_c` and centre
:math:`\mu_c=\sum_{j=1}^{D} a_{cj}B_j` over :math:`D` orthonormal directions :math:`B_j`.

Three records, split by how ``jit`` sees them (``docs/STYLE``: static vs swept):

* :class:`Mixture` -- the data (arrays, traced; ``M`` and ``D`` are their shapes);
* :class:`CommitteeParams` -- floats a user sweeps (learning rates, attack radius, hinge margin; traced);
* :class:`CommitteeSpec` -- shapes and control flow (``K``, attack kind, loss...; static, hashable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import DTypeLike

from ..model.losses import LOSSES, get_loss
from ..schedule import schedule_values
from .attacks import COMMITTEE_ATTACKS, committee_attack

__all__ = [
    "Mixture",
    "CommitteeParams",
    "CommitteeSpec",
    "two_cluster",
    "xor",
    "mixture_from_vectors",
    "validate_mixture",
    "validate_params",
    "validate_spec",
    "rule_params",
    "default_second_layer",
    "check_second_layer",
    "ATTACKS",
    "COMMITTEE_LOSSES",
    "from_dicts",
]

#: the committee's training attacks, by name (the records: :data:`jaxadv.committee.attacks.COMMITTEE_ATTACKS`)
ATTACKS = tuple(COMMITTEE_ATTACKS)
#: the committee's losses, by name: every :class:`jaxadv.model.losses.Loss` record (:data:`~jaxadv.model.losses.LOSSES`)
COMMITTEE_LOSSES = tuple(LOSSES)


class Mixture(NamedTuple):
    r"""Gaussian mixture :math:`P(\xi)=\sum_c p_c\,\mathcal N(\xi\mid \sum_j a_{cj}B_j,\ v_c I_N)`.

    Attributes:
        centres: :math:`a_{cj}`, shape ``(M, D)``: centre of cluster ``c`` along direction ``B_j``.
        variances: :math:`v_c>0`, shape ``(M,)``.
        priors: :math:`p_c>0`, shape ``(M,)``, summing to 1.
        labels: :math:`\tau_c\in\{+1,-1\}`, shape ``(M,)`` (floats).
    """

    centres: jax.Array
    variances: jax.Array
    priors: jax.Array
    labels: jax.Array

    @property
    def n_clusters(self) -> int:
        return int(np.shape(self.centres)[0])

    @property
    def n_directions(self) -> int:
        return int(np.shape(self.centres)[1])


class CommitteeParams(NamedTuple):
    r"""Swept floats of the learning rule (scalars; traced, so a grid over them is a ``vmap``).

    Attributes:
        eta_w: :math:`\eta_w>0`, first-layer rate (step :math:`\eta_w/N`).
        eta_b: :math:`\eta_b\ge0`, bias rate (step :math:`\eta_b/N`; 0 keeps the biases fixed).
        eta_v: :math:`\eta_v\ge0`, second-layer rate (step :math:`\eta_v/N`; used when
            ``CommitteeSpec.train_v``).
        eps: :math:`\epsilon\ge0`, L2 radius of the training attack.
        hinge_margin: :math:`c\ge0`, the margin of the hinge loss :math:`\max(0, c-\tau\sigma)` (read by
            ``loss="hinge"`` only; the losses' rule parameters, :func:`rule_params`).
    """

    eta_w: float | jax.Array = 0.5
    eta_b: float | jax.Array = 0.0
    eta_v: float | jax.Array = 0.0
    eps: float | jax.Array = 0.5
    hinge_margin: float | jax.Array = 0.0


def rule_params(params: CommitteeParams) -> dict[str, Any]:
    """The rule's parameter dict ``{name: value}`` that the loss and attack records read (``rp``; the hinge
    reads ``rp["hinge_margin"]``), as for the unit (:func:`jaxadv.model.rule.rule_params`)."""
    return params._asdict()


class CommitteeSpec(NamedTuple):
    r"""Static choices (hashable; a change recompiles).

    Attributes:
        K: number of hidden units, ``>= 1``.
        train_v: train the second layer :math:`v` with rate :math:`\eta_v/N`.
        normalise: renormalise every :math:`w_k` to unit length after each step.
        attack: ``"fgm"`` (one normalised gradient step of length :math:`\epsilon`), ``"pgd"``
            (``pgd_steps`` normalised steps of length ``pgd_step``, projected on the ball),
            ``"worst"`` (the loss maximised over the ball) or ``"none"``: a name of the records
            :data:`jaxadv.committee.attacks.COMMITTEE_ATTACKS` (resolved by
            :func:`~jaxadv.committee.attacks.committee_attack`).
        pgd_steps: :math:`T\ge1`.
        pgd_step: step length :math:`s>0` of PGD.
        pgd_random_start: PGD starts from a uniform point of the ball (in field space: a component
            of norm :math:`\epsilon` orthogonal to every :math:`w_k`, the large-N limit).
        loss: a name of :data:`jaxadv.model.losses.LOSSES`, acting on the output :math:`\sigma`:
            ``"quadratic"`` :math:`(\sigma-\tau)^2/2`, ``"logistic"`` :math:`\log(1+e^{-2\tau\sigma})`,
            ``"cross_entropy"`` :math:`-\log\Phi(\sqrt2\,\tau\sigma)`, ``"hinge"`` :math:`\max(0, c-\tau\sigma)`
            (:math:`c` = ``CommitteeParams.hinge_margin``); the margin losses act on the student's score, which
            for the committee is its output (:mod:`jaxadv.model.losses`).
        lipschitz: ``None`` (off) or :math:`L_\max>0`: after each step the first layer is rescaled so
            that the bound :math:`L=\frac{2}{\sqrt\pi}\sum_k|v_k|\,\|w_k\|\le L_\max`
            (:mod:`jaxadv.committee.lipschitz`); needs ``normalise=False``.
    """

    K: int = 2
    train_v: bool = False
    normalise: bool = True
    attack: str = "fgm"
    pgd_steps: int = 5
    pgd_step: float = 0.25
    pgd_random_start: bool = False
    loss: str = "quadratic"
    lipschitz: float | None = None


def _fail(name: str, value: Any, rule: str) -> NoReturn:
    raise ValueError(f"{name}={value!r} {rule}")


def _finite(name: str, arr: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(arr, dtype=float)
    if not np.all(np.isfinite(arr)):
        _fail(name, arr.tolist(), "must be finite")
    return arr


def validate_mixture(mixture: Mixture, atol: float = 1e-9) -> Mixture:
    """Check shapes and ranges of a :class:`Mixture`; return it with float arrays.

    Raises:
        ValueError: naming the offending field and echoing its value.
    """
    a = _finite("centres", mixture.centres)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        _fail("centres", a.tolist(), f"must have shape (M, D) with M, D >= 1, got {a.shape}")
    M = a.shape[0]
    out = [a]
    for name in ("variances", "priors", "labels"):
        x = _finite(name, getattr(mixture, name))
        if x.shape != (M,):
            _fail(name, x.tolist(), f"must have shape ({M},) (one per cluster), got {x.shape}")
        out.append(x)
    _, var, pri, lab = out
    if np.any(var <= 0):
        _fail("variances", var.tolist(), "must all be > 0")
    if np.any(pri <= 0):
        _fail("priors", pri.tolist(), "must all be > 0")
    if abs(pri.sum() - 1.0) > atol:
        _fail("priors", pri.tolist(), f"must sum to 1 (sum {pri.sum()!r})")
    if np.any((lab != 1.0) & (lab != -1.0)):
        _fail("labels", lab.tolist(), "must all be +1 or -1")
    return Mixture(*(jnp.asarray(x) for x in out))


def two_cluster(prior: float = 0.5, rho: float = 2.0, v1: float = 1.0, v2: float = 1.0) -> Mixture:
    r"""The prototype model: clusters :math:`\pm\frac{\rho}{2}B` (labels :math:`\pm1`), variances
    ``v1``, ``v2``, prior ``prior`` of the first (``D = 1``)."""
    if not 0.0 < prior < 1.0:
        _fail("prior", prior, "must lie in the open interval (0, 1)")
    if not (math.isfinite(rho) and rho >= 0.0):
        _fail("rho", rho, "must be finite and >= 0")
    # raw values in, arrays out: validate_mixture returns the Mixture of arrays
    return validate_mixture(
        Mixture(centres=[[rho / 2], [-rho / 2]], variances=[v1, v2], priors=[prior, 1 - prior], labels=[1.0, -1.0])  # type: ignore[arg-type]
    )


def xor(rho: float = 3.0, v: float = 1.0) -> Mixture:
    r"""XOR preset (``D = 2``): :math:`\pm\frac{\rho}{2}B_1` labelled :math:`+1`,
    :math:`\pm\frac{\rho}{2}B_2` labelled :math:`-1`, equal priors 1/4, variance ``v``.

    Every linear classifier is at chance; the +1 clusters sit where :math:`|x_1|` is large."""
    if not (math.isfinite(rho) and rho >= 0.0):
        _fail("rho", rho, "must be finite and >= 0")
    h = rho / 2
    # raw values in, arrays out: validate_mixture returns the Mixture of arrays
    return validate_mixture(
        Mixture(
            centres=[[h, 0.0], [-h, 0.0], [0.0, h], [0.0, -h]],  # type: ignore[arg-type]
            variances=[v] * 4,  # type: ignore[arg-type]
            priors=[0.25] * 4,  # type: ignore[arg-type]
            labels=[1.0, 1.0, -1.0, -1.0],  # type: ignore[arg-type]
        )
    )


def mixture_from_vectors(
    centres: npt.ArrayLike,
    directions: npt.ArrayLike,
    variances: npt.ArrayLike,
    priors: npt.ArrayLike,
    labels: npt.ArrayLike,
    atol: float = 1e-8,
) -> Mixture:
    r"""A :class:`Mixture` from N-dimensional centres (``(M, N)``) and directions ``(D, N)``.

    The directions must be orthonormal and every centre must lie in their span
    (:math:`\mu_c=\sum_j a_{cj}B_j`); otherwise ``ValueError`` naming ``directions`` or ``centres``."""
    mu = _finite("centres", centres)
    B = _finite("directions", directions)
    if B.ndim != 2 or mu.ndim != 2 or B.shape[1] != mu.shape[1]:
        _fail("directions", B.shape, f"must have shape (D, N) matching centres of shape {mu.shape}")
    if np.max(np.abs(B @ B.T - np.eye(B.shape[0]))) > atol:
        _fail("directions", B.tolist(), "must be orthonormal")
    a = mu @ B.T
    resid = np.max(np.abs(mu - a @ B)) if mu.size else 0.0
    if resid > atol:
        _fail("centres", mu.tolist(), f"must lie in the span of the directions (residual {resid:.3g})")
    # raw values in, arrays out: validate_mixture returns the Mixture of arrays
    return validate_mixture(Mixture(a, variances, priors, labels))  # type: ignore[arg-type]


def validate_params(params: CommitteeParams) -> CommitteeParams:
    """Check every field (scalars or arrays); ``ValueError`` naming the first bad one."""
    rules = {
        "eta_w": (lambda x: x > 0, "must be > 0"),
        "eta_b": (lambda x: x >= 0, "must be >= 0"),
        "eta_v": (lambda x: x >= 0, "must be >= 0"),
        "eps": (lambda x: x >= 0, "must be >= 0"),
        "hinge_margin": (lambda x: x >= 0, "must be >= 0"),
    }
    for name, (ok, rule) in rules.items():
        for x in _finite(name, schedule_values(getattr(params, name))):  # a schedule: its knot values
            if not ok(x):
                _fail(name, float(x), rule)
    return params


def validate_spec(spec: CommitteeSpec) -> CommitteeSpec:
    """Check a :class:`CommitteeSpec`; ``ValueError`` naming the first bad field."""
    if not isinstance(spec.K, (int, np.integer)) or isinstance(spec.K, bool) or spec.K < 1:
        _fail("K", spec.K, "must be an integer >= 1")
    committee_attack(spec.attack)  # the one lookup of the name: ValueError naming attack and its value
    if not isinstance(spec.loss, str):
        _fail("loss", spec.loss, f"must be a name, one of {COMMITTEE_LOSSES}")
    get_loss(spec.loss)  # ValueError naming loss and its value
    if not isinstance(spec.pgd_steps, (int, np.integer)) or spec.pgd_steps < 1:
        _fail("pgd_steps", spec.pgd_steps, "must be an integer >= 1")
    if not (math.isfinite(spec.pgd_step) and spec.pgd_step > 0):
        _fail("pgd_step", spec.pgd_step, "must be finite and > 0")
    if spec.lipschitz is not None:
        L = spec.lipschitz
        if (
            isinstance(L, bool)
            or not isinstance(L, (int, float, np.integer, np.floating))
            or not (math.isfinite(L) and L > 0)
        ):
            _fail("lipschitz", L, "must be None (off) or a finite number > 0 (the bound L_max)")
        if spec.normalise:
            _fail(
                "lipschitz",
                L,
                "needs normalise=False (with |w_k| = 1 the bound depends on v alone and "
                "rescaling W would undo the normalisation)",
            )
    return spec


def default_second_layer(K: int, dtype: DTypeLike = float) -> jax.Array:
    """:math:`v_k = 1/K` (the default fixed second layer), shape ``(K,)``."""
    return jnp.full((K,), 1.0 / K, dtype)


def check_second_layer(v: npt.ArrayLike, K: int, name: str = "v0") -> np.ndarray:
    """``v`` as a float array of shape ``(K,)``, or ``ValueError`` naming ``name``."""
    arr = _finite(name, v)
    if arr.shape != (K,):
        _fail(name, arr.tolist(), f"must have shape ({K},) (one weight per hidden unit), got {arr.shape}")
    return arr


def from_dicts(
    mixture: Mixture | dict[str, Any], params: dict[str, Any] | None = None, spec: dict[str, Any] | None = None
) -> tuple[Mixture, CommitteeParams, CommitteeSpec]:
    """``(Mixture, CommitteeParams, CommitteeSpec)`` from plain values, for configuration files.

    ``mixture``: a :class:`Mixture`, or a dict with ``preset`` ``"xor"`` (keys ``rho``, ``v``) or
    ``"two_cluster"`` (``prior``, ``rho``, ``v1``, ``v2``), or with the fields ``centres``,
    ``variances``, ``priors``, ``labels``. Unknown keys raise ``ValueError`` naming them; every value is
    validated as in the constructors.

    Example:
        >>> m, p, s = from_dicts({"preset": "xor", "rho": 3.0}, {"eps": 0.3}, {"K": 2, "attack": "pgd"})
        >>> s.K, float(p.eps)
        (2, 0.3)
    """
    params, spec = dict(params or {}), dict(spec or {})
    if not isinstance(mixture, Mixture):
        m = dict(mixture)
        preset = m.pop("preset", None)
        makers: dict[str, Callable[..., Mixture]] = {"xor": xor, "two_cluster": two_cluster}
        if preset is None:
            fields = set(Mixture._fields)
            if set(m) != fields:
                _fail("mixture", sorted(m), f"must have the keys {sorted(fields)} or a 'preset'")
            mixture = validate_mixture(Mixture(**m))
        elif preset in makers:
            try:
                mixture = makers[preset](**m)
            except TypeError:
                _fail("mixture", sorted(m), f"has keys that preset {preset!r} does not take")
        else:
            _fail("preset", preset, f"must be one of {sorted(makers)}")
    for name, rec, keys in (("params", params, CommitteeParams._fields), ("spec", spec, CommitteeSpec._fields)):
        unknown = sorted(set(rec) - set(keys))
        if unknown:
            _fail(name, unknown, f"has unknown keys (allowed: {list(keys)})")
    p = validate_params(CommitteeParams(**params))
    s = validate_spec(CommitteeSpec(**spec))
    return mixture, p, s
