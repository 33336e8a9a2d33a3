r"""The model's optimal eps schedule applied to on-line adversarial training on MNIST (3 vs 7).

1. **The model fitted to MNIST** (``docs/theory.md``, "The prototype model fitted to MNIST"): the prior and
   :math:`\rho = \|\mu_3 - \mu_7\|_2` from the training split; as field variances :math:`v_\pm` the measured
   variances :math:`\hat w^\top\Sigma_\pm\hat w` along the direction of a logistic regression trained on the
   same split (the isotropic per-pixel variances, 13 times smaller, make the model predict an almost perfect
   classifier). The learning rates and the loss are those of the MNIST run.
2. **The eps scale.** The training attack is the L2 FGM, whose radius moves the field
   :math:`\hat w\cdot\xi` by exactly :math:`\epsilon` in the model and on MNIST (the box :math:`[0,1]` aside): the
   model's :math:`\epsilon` is the pixel-space L2 radius, scale 1. The time scale is the model's:
   step :math:`\mu` of the MNIST run is :math:`\alpha = \mu / N` with :math:`N = 784`, so ``epochs`` passes over
   ``n`` images are :math:`\alpha_\max = \text{epochs}\cdot n / 784`.
3. **The schedule**: :func:`jaxadv.control.optimise.optimise` on the fitted model's ODE, with the budget the
   mean of eps (the constant it is compared with).
4. **On MNIST**: :func:`jaxadv.analysis.mnist.adversarial_sgd` with the schedule and with the constant, for
   each seed (the same key for both: the same initial weights and order of examples), then the clean error,
   the L2 FGM error at ``eps_test`` and the FGSM (L-inf) error at ``eps_inf`` on the test split; the
   differences are paired by seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ..analysis.compare import mean_sem
from ..analysis.mnist import (
    adversarial_sgd,
    attack_errors,
    estimate_model,
    load_mnist_pair,
    model_order_parameters,
    train_logistic,
)
from ..model.params import ModelParams
from ..model.rule import training_rule
from ..ode.solve import plan_steps
from ..schedule import Schedule
from .objective import make_objective
from .optimise import Controls, Problem, optimise
from .protocols import compare_protocols

__all__ = ["mnist_schedule"]

PIXELS = 784


def mnist_schedule(
    *,
    budget: float = 1.0,
    eps_test: float = 1.0,
    eps_inf: float = 0.1,
    eps_max: float = 3.0,
    knots: int = 6,
    epochs: int = 10,
    seeds: int = 5,
    eta_w: float = 1.0,
    eta_b: float = 1.0,
    loss: str = "logistic",
    objective: dict[str, float] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    starts: int = 4,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The experiment of the module docstring.

    Args:
        budget: the mean of eps over the run (the constant schedule's eps).
        eps_test: L2 radius of the robust error (objective and measurement); eps_inf: the FGSM radius measured.
        eps_max: the upper bound of eps's knot values; knots: equally spaced from 0 to the run's end.
        epochs, seeds: passes over the training split, and seeds (each one run of both schedules).
        eta_w, eta_b, loss: the on-line rule (MNIST and model alike).
        objective: the weights of :func:`jaxadv.control.objective.make_objective` (default the robust error).
        n_train, n_test: caps of the split (small runs and tests).
        starts: the optimiser's starts (:func:`jaxadv.control.optimise.optimise`).

    Returns:
        ``{"model": fitted parameters, "schedule": knots and values, "predicted": each protocol's model objective,
        "measured": {quantity: {"optimal": (mean, sem), "constant": (mean, sem), "gain": (mean, sem)}},
        "runs": per-seed rows}``; a gain is the constant's error minus the schedule's.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1")
    say = log or (lambda m: None)
    pair = load_mnist_pair(n_train=n_train, n_test=n_test)
    x, y = pair.x_train, pair.y_train
    est = estimate_model(x, y)
    lr = model_order_parameters(train_logistic(x, y), est)
    params = ModelParams(
        prior=est["prior"], rho=est["rho"], v1=lr["field_var1"], v2=lr["field_var2"], eta_w=eta_w, eta_b=eta_b
    )
    alpha_max = epochs * len(y) / PIXELS
    knot_list = tuple(float(a) for a in np.linspace(0.0, alpha_max, knots))
    problem = Problem(
        params._replace(eps=budget),
        plan_steps(alpha_max, 10, min(0.05, alpha_max / 10)),
        make_objective(objective or {"robust": 1.0}, eps_test=eps_test),
        Controls(("eps",), knot_list, (0.0,), (eps_max,), budget),
        training_rule(loss=loss),
    )
    result = optimise(problem, starts=starts, log=say)
    protocols = compare_protocols(problem, result, starts=min(starts, 2))
    values = result.values[0]
    say(f"model: schedule {np.round(values, 3).tolist()} on alpha {np.round(knot_list, 3).tolist()}")
    rows: dict[str, list[Any]] = {k: [] for k in ("seed", "protocol", "clean", "fgm_l2", "fgsm_linf")}
    radii_l2, radii_inf = [0.0, eps_test], [eps_inf]
    for seed in range(seeds):
        key = jax.random.key(seed)
        for name, eps in (("optimal", Schedule(knot_list, values)), ("constant", budget)):
            s = adversarial_sgd(key, x, y, eps, norm=2, loss=loss, eta_w=eta_w, eta_b=eta_b, epochs=epochs)
            e2 = attack_errors(jax.random.key(10_000 + seed), s, pair.x_test, pair.y_test, radii_l2, norm=2)
            einf = attack_errors(jax.random.key(20_000 + seed), s, pair.x_test, pair.y_test, radii_inf, norm="inf")
            for k, v in zip(rows, (seed, name, e2[0], e2[1], einf[0]), strict=True):
                rows[k].append(v)
        say(
            f"seed {seed}: "
            + ", ".join(f"{q} {rows[q][-2]:.3f}/{rows[q][-1]:.3f}" for q in ("clean", "fgm_l2", "fgsm_linf"))
        )
    measured: dict[str, dict[str, tuple[float, float]]] = {}
    proto = np.asarray(rows["protocol"])
    for q in ("clean", "fgm_l2", "fgsm_linf"):
        v = np.asarray(rows[q], float)
        opt, const = v[proto == "optimal"], v[proto == "constant"]
        measured[q] = {"optimal": mean_sem(opt), "constant": mean_sem(const), "gain": mean_sem(const - opt)}
    return {
        "model": {k: float(getattr(params, k)) for k in ("prior", "rho", "v1", "v2", "eta_w", "eta_b")},
        "alpha_max": alpha_max,
        "schedule": {"knots": list(knot_list), "values": values.tolist()},
        "predicted": {p.name: p.objective for p in protocols.values()},
        "measured": measured,
        "runs": rows,
        "n_train": len(y),
        "n_test": len(pair.y_test),
    }
