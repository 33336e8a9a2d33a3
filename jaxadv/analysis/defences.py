r"""Comparison of defences on the same data: clean and robust error at :math:`\alpha_\max`.

Five training rules, all at the same radius :math:`\epsilon` (``eps``) and from the same
initial condition, data model and learning rates:

==================  ========================================================================
``none``            standard training (:math:`\epsilon=0`)
``noise``           random-noise augmentation, :math:`\tilde\xi=\xi+s\,n` with RMS norm
                    :math:`s\sqrt N=\epsilon` (:math:`s=\epsilon/\sqrt N`)
``adversarial``     L2 adversarial training at :math:`\epsilon`
``random_eps``      L2 adversarial training at :math:`\epsilon\sim U[0, 2\epsilon]` per example
``nonrobust_only``  L2 adversarial training, updating only on examples that are not
                    :math:`\epsilon`-robust
==================  ========================================================================

The robust error is the L2 one at ``eps_test`` (default :math:`\epsilon`). The ODE gives each
rule's large-N curve; the Monte Carlo gives mean and standard error over replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.typing import DTypeLike

from ..defaults import DT, N_SAVE, REPLICAS
from ..mc.driver import save_schedule, simulate
from ..model.losses import Loss, get_loss
from ..model.params import ModelParams
from ..model.perturbations import noise_std_for_norm
from ..model.rule import TrainingRule, training_rule
from ..ode.solve import STATUS_NAMES, STATUS_OK, solve_ode
from .compare import mc_summary, ode_table
from .measures import robust_error, test_error
from .stats import mean_sem
from .verdict import honest_verdict

__all__ = ["DEFENCES", "defence_setup", "DefenceResult", "compare_defences", "defences_table"]


def _float_or_nan(z: float | None) -> float:
    return float("nan") if z is None else float(z)


def _defence(
    rule_kwargs: dict[str, Any] | None = None,
    eps_zero: bool = False,
    values: Callable[[float, int], dict[str, Any]] = lambda eps, N: {},
) -> dict[str, Any]:
    return {"rule": training_rule(**(rule_kwargs or {})), "eps_zero": eps_zero, "values": values}


DEFENCES = {
    "none": _defence(eps_zero=True),
    "noise": _defence({"attack": "noise"}, values=lambda eps, N: {"noise_std": noise_std_for_norm(float(eps), N)}),
    "adversarial": _defence(),
    "random_eps": _defence(
        {"eps_dist": "uniform"}, values=lambda eps, N: {"eps_min": 0.0, "eps_max": 2.0 * float(eps)}
    ),
    "nonrobust_only": _defence({"gate": "nonrobust"}),
}
"""Each defence as data: its training rule, whether it trains at eps = 0, and its rule parameters
as a function of the radius eps and the dimension N."""


def defence_setup(
    name: str, params: ModelParams, N: int, loss: str | Loss = "quadratic"
) -> tuple[ModelParams, TrainingRule, dict[str, Any]]:
    """``(params, rule, rule_params)`` of the defence ``name`` at radius ``params.eps`` in dimension ``N``."""
    if name not in DEFENCES:
        raise ValueError(f"defence={name!r} is not one of {list(DEFENCES)}")
    d = DEFENCES[name]
    rule = d["rule"]._replace(loss=get_loss(loss))
    return (params._replace(eps=0.0) if d["eps_zero"] else params), rule, d["values"](params.eps, N)


class DefenceResult(NamedTuple):
    """Errors of one defence at :math:`\\alpha_\\max` (MC fields are NaN when the MC was skipped).

    ``verdict`` is the status of :func:`jaxadv.analysis.verdict.honest_verdict` over the whole
    trajectory (``consistent``, ``INCONSISTENT``, ``not testable``, ``undetermined``; empty without
    the Monte Carlo), ``deviation_sem`` its largest deviation from the ODE + O(1/N) theory (NaN when
    not testable) and ``raw_deviation_sem`` the largest from the bare ODE, in standard errors;
    ``reason`` says why the O(1/N) theory did not apply or the verdict is undetermined (empty otherwise)."""

    name: str
    ode_clean: float
    ode_robust: float
    mc_clean: float
    mc_clean_sem: float
    mc_robust: float
    mc_robust_sem: float
    ode_R: float
    ode_b: float
    mc_R: float
    mc_R_sem: float
    mc_b: float
    mc_b_sem: float
    verdict: str = ""
    deviation_sem: float = float("nan")
    raw_deviation_sem: float = float("nan")
    reason: str = ""


def compare_defences(
    key: jax.Array,
    params: ModelParams,
    *,
    N: int,
    alpha_max: float,
    replicas: int = REPLICAS,
    n_save: int = N_SAVE,
    eps_test: float | None = None,
    dt: float = DT,
    mc: bool = True,
    defences: Sequence[str] = tuple(DEFENCES),
    loss: str | Loss = "quadratic",
    dtype: DTypeLike | None = None,
    R0: float | None = None,
    b0: float = 0.0,
    extra: dict[str, tuple[TrainingRule, dict[str, Any]]] | None = None,
) -> list[DefenceResult]:
    r"""Train every defence with the ODE and (``mc=True``) the Monte Carlo; errors at :math:`\alpha_\max`.

    All Monte Carlo runs use the same ``key``, hence the same initial students and the same
    stream of clean examples.

    Args:
        extra: further defences ``{name: (rule, rule_params)}`` (any :class:`jaxadv.TrainingRule`,
            e.g. one built from a new record), trained at ``params.eps`` after the built-in ones;
            the ODE is skipped (NaN) for a rule without an ODE face.

    Returns:
        list of :class:`DefenceResult`, one per defence, in the order of ``defences`` then ``extra``.

    Example:
        >>> import jax
        >>> from jaxadv import ModelParams
        >>> from jaxadv.analysis.defences import compare_defences
        >>> res = compare_defences(jax.random.key(0), ModelParams(prior=0.7), N=100, alpha_max=1.0, mc=False)
        >>> [r.name for r in res][:2]
        ['none', 'noise']
    """
    import jax.numpy as jnp

    eps_test = float(params.eps) if eps_test is None else float(eps_test)
    dtype = jnp.float32 if dtype is None else dtype
    _, alpha = save_schedule(N, alpha_max, n_save)
    out = []
    setups = [(name, *defence_setup(name, params, N, loss)) for name in defences]
    setups += [(name, params, rule, dict(values)) for name, (rule, values) in (extra or {}).items()]
    for name, p, rule, values in setups:
        ode = None
        if rule.attack.field is not None:
            ode = solve_ode(
                p, float(alpha[-1]), n_save, dt=dt, R0=0.0 if R0 is None else R0, b0=b0, rule=rule, rule_params=values
            )
            status = int(np.max(np.asarray(ode.status)))
            if status != STATUS_OK:  # as `jaxadv run`: an untrustworthy ODE is refused, not compared with
                raise ValueError(
                    f"ode of the defence {name!r}: {STATUS_NAMES[status]}: the fixed step dt={dt:g} is unstable for "
                    f"eta_w={p.eta_w:g}, eta_b={p.eta_b:g} (eps={p.eps:g}, rho={p.rho:g}, v1={p.v1:g}, v2={p.v2:g}) "
                    "and the adaptive step could not integrate it; lower the learning rates or alpha_max"
                )
            R, b = float(ode.R[-1]), float(ode.b[-1])
        else:
            R = b = float("nan")
        row: dict[str, Any] = dict(
            name=name,
            ode_clean=float(test_error(R, b, params)),
            ode_robust=float(robust_error(R, b, eps_test, params)),
            ode_R=R,
            ode_b=b,
        )
        nan = float("nan")
        row.update(
            mc_clean=nan,
            mc_clean_sem=nan,
            mc_robust=nan,
            mc_robust_sem=nan,
            mc_R=nan,
            mc_R_sem=nan,
            mc_b=nan,
            mc_b_sem=nan,
        )
        if mc:
            res = simulate(
                key,
                p,
                N=N,
                alpha_max=alpha_max,
                n_save=n_save,
                replicas=replicas,
                rule=rule,
                rule_params=values,
                dtype=dtype,
                R0=R0,
                b0=b0,
            )
            Rm, bm, fin = res.R[:, -1:].astype(np.float64), res.b[:, -1:].astype(np.float64), res.finite[:, -1:]
            for label, x in (
                ("clean", np.asarray(test_error(Rm, bm, params))),
                ("robust", np.asarray(robust_error(Rm, bm, eps_test, params))),
                ("R", Rm),
                ("b", bm),
            ):
                m, s = mean_sem(x, fin)
                row[f"mc_{label}"], row[f"mc_{label}_sem"] = float(m[0]), float(s[0])
            if ode is None:
                row["verdict"] = "not testable"
                why = rule.attack.no_ode or "it has no field face"
                row["reason"] = f"no ODE for the attack {rule.attack.name!r}: {why}"
            else:
                v = honest_verdict(
                    mc_summary(res, params, eps_test),
                    ode_table(ode, params, eps_test),
                    params=p,
                    N=N,
                    eps_test=eps_test,
                    dt=dt,
                    mc_dtype=dtype,
                    R0=R0,
                    b0=b0,
                    loss=loss,
                    rule=rule,
                )
                row.update(
                    verdict=v.status,
                    deviation_sem=_float_or_nan(v.z_max),
                    raw_deviation_sem=_float_or_nan(v.raw_z_max),
                    reason=v.reason,
                )
        out.append(DefenceResult(**row))
    return out


def defences_table(results: Sequence[DefenceResult]) -> dict[str, np.ndarray]:
    """Columns (for :func:`jaxadv.app.io.write_csv`) of a :func:`compare_defences` result."""
    return {f: np.array([getattr(r, f) for r in results]) for f in DefenceResult._fields if f != "name"}
