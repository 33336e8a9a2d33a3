r"""An honest Monte-Carlo-versus-ODE verdict: the ODE plus the theory's O(1/N) corrections.

At finite N the replica mean of an order parameter differs from the large-N ODE by
:math:`O(1/N)`. :func:`jaxadv.solve_fluctuations` predicts that difference: the mean shift
:math:`\mu` of :math:`y = (R, b)` and the covariance :math:`C` across replicas. An error measure
:math:`f(R, b)` (the test error, the robust error) then has the mean (``docs/theory.md``, 9.x)

.. math::
    \langle f\rangle = f(y) + \nabla f(y)\cdot\mu + \tfrac12\,\mathrm{tr}\,\big(\nabla^2 f(y)\,C\big)
    + O(N^{-2}),

a second-order Taylor expansion of :math:`f` around the ODE point. :func:`honest_verdict`
compares the Monte Carlo means with these corrected predictions in standard errors, with no
ad-hoc allowance. The standard error has a floor, :math:`4\,\epsilon_\text{dtype}\max(1, |x|)`
(the round-off of the Monte Carlo's float type), so that differences at round-off level are not
millions of standard errors. The verdict is *not testable* where the theory does not apply:

* a training rule other than the default (L2 attack, fixed eps, no gate): no fluctuation theory;
* N too small for the expansion: the predicted spread of R, :math:`\sqrt{C_{RR}}`, exceeds
  :data:`MAX_SPREAD_R` or the shift of R exceeds it (the expansion is in powers of that spread);
* a quantity whose replicas do not spread (a frozen student): its standard error is at the
  round-off floor and the theory predicts no spread; it is reported, not tested.

A student without an O(1/N) theory (the committee) is judged against the bare ODE with the
threshold as its allowance (``theory=False, bare_allowance=True``, ``quantities`` its own columns):
within it, "consistent"; beyond it, "not testable", because the O(1/N) shift it would need is not
derived (``docs/theory.md`` section 12), with the raw deviation beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
from jax.typing import DTypeLike

if TYPE_CHECKING:
    from ..model.losses import Loss
    from ..model.params import ModelParams
    from ..model.rule import TrainingRule
    from ..ode.fluctuations import FluctuationResult

__all__ = [
    "Verdict",
    "honest_verdict",
    "theory_applies",
    "corrected_predictions",
    "sem_floor",
    "deviation_z",
    "MAX_SPREAD_R",
    "THRESHOLD",
    "QUANTITIES",
]

#: largest predicted spread (and shift) of R for which the O(1/N) expansion is trusted
MAX_SPREAD_R = 0.1
#: a deviation larger than this many standard errors is inconsistent
THRESHOLD = 4.0
QUANTITIES = ("R", "b", "test_error", "robust_error")


class Verdict(NamedTuple):
    """The one verdict of a run.

    Attributes:
        status: ``"consistent"``, ``"INCONSISTENT"``, ``"not testable"`` or ``"undetermined"``.
        text: the one-line verdict to print.
        z_max, quantity, alpha: the largest deviation from the corrected prediction in standard
            errors, its quantity and save point (``None`` when not computed).
        raw_z_max, raw_quantity, raw_alpha: the same against the bare ODE (for reference).
        reason: why the verdict is not testable or undetermined (``""`` otherwise).
        untested: quantities reported but not tested (no spread).
        corrected: ``{quantity: array}`` the corrected predictions (empty without theory).
        fluctuations: the :class:`jaxadv.ode.fluctuations.FluctuationResult` the corrections came from
            (``None`` without theory), for further corrected quantities (the robustness curve).
    """

    status: str
    text: str
    z_max: float | None
    quantity: str | None
    alpha: float | None
    raw_z_max: float | None
    raw_quantity: str | None
    raw_alpha: float | None
    reason: str
    untested: tuple
    corrected: dict
    fluctuations: Any = None

    def as_dict(self) -> dict:
        """JSON-ready summary (``None`` for missing numbers)."""
        d = self._asdict()
        d.pop("corrected")
        d.pop("fluctuations")
        d["untested"] = list(self.untested)
        return d


def sem_floor(values: npt.ArrayLike, dtype: DTypeLike) -> np.ndarray:
    """Round-off floor of a standard error: ``4 eps(dtype) max(1, |values|)``."""
    return 4.0 * float(np.finfo(np.dtype(dtype)).eps) * np.maximum(1.0, np.abs(np.asarray(values, float)))


def deviation_z(mean: npt.ArrayLike, sem: npt.ArrayLike, pred: npt.ArrayLike, dtype: DTypeLike) -> np.ndarray:
    r"""The deviation of a Monte Carlo mean from a prediction in standard errors, the one every verdict and sweep
    uses: :math:`z = |\bar X - X_\mathrm{pred}| / \sqrt{\mathrm{SE}^2 + f^2}` with :math:`f` the round-off floor
    :func:`sem_floor` of the Monte Carlo's ``dtype`` (a replica set that does not spread, a frozen student, is
    judged against its round-off); 0 where the two are equal."""
    dev = np.abs(np.asarray(mean, float) - np.asarray(pred, float))
    s = np.sqrt(np.asarray(sem, float) ** 2 + sem_floor(pred, dtype) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dev == 0, 0.0, dev / s)


def _worst(zs: dict, alpha: np.ndarray, names: Sequence[str]) -> tuple[float | None, str | None, float | None]:
    worst: tuple[float | None, str | None, float | None] = (None, None, None)
    for name in names:
        z = np.asarray(zs[name])[1:]
        idx = np.flatnonzero(np.isfinite(z))
        if idx.size:
            i = idx[np.argmax(z[idx])]
            if worst[0] is None or z[i] > worst[0]:
                worst = (float(z[i]), name, float(alpha[i + 1]))
    return worst


def corrected_predictions(
    ode_cols: dict[str, np.ndarray], fl: FluctuationResult, params: ModelParams, eps_test: float
) -> dict[str, np.ndarray]:
    r"""The ODE plus the O(1/N) corrections: ``R + mu_R``, ``b + mu_b`` and, for the error measures,
    :math:`f + \nabla f\cdot\mu + \frac12\mathrm{tr}(\nabla^2 f\,C)` at every save point.

    Args:
        ode_cols: :func:`jaxadv.analysis.compare.ode_table` columns.
        fl: :class:`jaxadv.ode.fluctuations.FluctuationResult` at the same save points.
        params: scalar :class:`jaxadv.ModelParams`; eps_test: radius of the robust error.
    """
    import jax.numpy as jnp

    from ..model.params import ModelParams
    from ..schedule import cast

    p = ModelParams(*(cast(x, jnp.float64) for x in params))
    corr = _corrections(
        jnp.asarray(fl.mean, jnp.float64),
        jnp.asarray(fl.shift, jnp.float64),
        jnp.asarray(fl.cov, jnp.float64),
        p,
        jnp.asarray(eps_test, jnp.float64),
    )
    out = {
        "R": np.asarray(ode_cols["R"], float) + np.asarray(fl.shift)[:, 0],
        "b": np.asarray(ode_cols["b"], float) + np.asarray(fl.shift)[:, 1],
    }
    for name, c in zip(("test_error", "robust_error"), corr, strict=True):
        out[name] = np.asarray(ode_cols[name], float) + np.asarray(c)
    return out


def _corrections(y, mu, C, params, eps_test):
    """``grad f . mu + tr(H C) / 2`` of the test and robust errors at each row of ``y`` (jitted once)."""
    global _CORRECTIONS_JIT
    if _CORRECTIONS_JIT is None:
        import jax
        import jax.numpy as jnp

        from .measures import robust_error, test_error

        def one(fn, yy, m, c):
            g, H = jax.grad(fn)(yy), jax.hessian(fn)(yy)
            return jnp.sum(g * m) + 0.5 * jnp.sum(H * c)

        def both(y, mu, C, params, eps_test):
            te = lambda v: test_error(v[0], v[1], params)
            re = lambda v: robust_error(v[0], v[1], eps_test, params)
            return (
                jax.vmap(lambda a, m, c: one(te, a, m, c))(y, mu, C),
                jax.vmap(lambda a, m, c: one(re, a, m, c))(y, mu, C),
            )

        _CORRECTIONS_JIT = jax.jit(both)
    return _CORRECTIONS_JIT(y, mu, C, params, eps_test)


_CORRECTIONS_JIT: Callable[..., Any] | None = None


def _evenly_spaced(alpha) -> bool:
    alpha = np.asarray(alpha, float)
    return alpha.size < 3 or bool(np.allclose(np.diff(alpha), alpha[1] - alpha[0], rtol=1e-9, atol=0.0))


def theory_applies(rule: TrainingRule | None = None, alpha: npt.ArrayLike | None = None) -> tuple[bool, str]:
    """Whether the O(1/N) theory covers a run: ``(True, "")`` or ``(False, why)``.

    It covers the default rule (the L2 attack at a fixed eps, no gate; any loss) on equally
    spaced save points."""
    from ..model.rule import DEFAULT_RULE

    if rule is not None and rule.loss.params:
        return False, (
            f"theory unavailable here (the O(1/N) theory has no form for loss={rule.loss.name!r}: its "
            "force is a step, which the theory's quadrature does not resolve)"
        )
    if rule is not None and rule._replace(loss=DEFAULT_RULE.loss) != DEFAULT_RULE:
        return False, (
            "theory unavailable here (the O(1/N) theory covers the L2 attack with a fixed eps and "
            "no gate, on equally spaced saves)"
        )
    if alpha is not None and not _evenly_spaced(alpha):
        return False, (
            "theory unavailable here (the O(1/N) theory covers the L2 attack with a fixed eps and "
            "no gate, on equally spaced saves)"
        )
    return True, ""


def honest_verdict(
    mc_cols: dict[str, np.ndarray],
    ode_cols: dict[str, np.ndarray],
    *,
    params: ModelParams | None,
    N: int,
    eps_test: float,
    n_save: int | None = None,
    dt: float | None = None,
    mc_dtype: DTypeLike = np.float32,
    R0: float | None = None,
    b0: float = 0.0,
    loss: str | Loss = "quadratic",
    rule: TrainingRule | None = None,
    theory: bool | None = None,
    why_no_theory: str = "",
    threshold: float = THRESHOLD,
    quantities: Sequence[str] = QUANTITIES,
    bare_allowance: bool = False,
) -> Verdict:
    """Judge the Monte Carlo against the ODE plus the O(1/N) theory (see the module docstring).

    This is the verdict ``jaxadv run`` prints and writes to ``config.json``; called with the
    same tables and parameters it returns the same text.

    Args:
        mc_cols: :func:`jaxadv.analysis.compare.mc_summary`; ode_cols: :func:`~jaxadv.analysis.compare.ode_table`.
        params, N, R0, b0, loss: as the run (``R0=None``: a uniform initial w).
        eps_test: radius of the robust error.
        n_save: the number of save intervals (default: read from ``mc_cols["alpha"]``, whose last point is
            the final time).
        dt: the RK4 step of the fluctuation theory (default :data:`jaxadv.defaults.DT`).
        mc_dtype: float type of the Monte Carlo (sets the floor of the standard error; float32,
            the default of :func:`jaxadv.simulate` and of the CLI).
        rule: the run's :class:`~jaxadv.model.rule.TrainingRule` (``None``: the default rule).
        theory: ``None`` decides from ``rule`` and the save points (:func:`theory_applies`);
            ``False`` forces "not testable" with ``why_no_theory`` as the reason.
        quantities: the columns compared (``{q}_mean``, ``{q}_sem`` in ``mc_cols``, ``q`` in ``ode_cols``).
        bare_allowance: without the theory, call a raw deviation within ``threshold`` "consistent"
            (with the reason beside it) instead of "not testable" (module docstring).

    Example:
        >>> import jax
        >>> from jaxadv import ModelParams, simulate, solve_ode, mc_summary, ode_table, honest_verdict
        >>> p = ModelParams(prior=0.7, eps=1.0)
        >>> ode = ode_table(solve_ode(p, 2.0, 2), p, 1.0)
        >>> mc = mc_summary(simulate(0, p, N=200, alpha_max=2.0, n_save=2, replicas=16), p, 1.0)
        >>> honest_verdict(mc, ode, params=p, N=200, eps_test=1.0).status
        'consistent'
    """
    from ..defaults import DT

    alpha = np.asarray(mc_cols["alpha"], float)
    n_save = alpha.size - 1 if n_save is None else n_save
    dt = DT if dt is None else dt
    if theory is None:
        theory, why_no_theory = theory_applies(rule, alpha)
    n_fin = np.asarray(mc_cols.get("n_finite", []))  # absent: every replica counted finite
    n_rep = int(n_fin[0]) if n_fin.size else 0
    n_div = n_rep - int(n_fin[-1]) if n_fin.size else 0
    div = f"; {n_div} of {n_rep} replicas diverged" if n_div else ""
    quantities = tuple(quantities)
    raw_z = {q: deviation_z(mc_cols[f"{q}_mean"], mc_cols[f"{q}_sem"], ode_cols[q], mc_dtype) for q in quantities}
    raw = _worst(raw_z, alpha, quantities)
    raw_txt = (
        f"raw deviation from the bare ODE {raw[0]:.2f} standard errors ({raw[1]} at alpha={raw[2]:g})"
        if raw[0] is not None
        else "raw deviation: none computable"
    )

    fl = None  # the fluctuation result, once computed (below)

    def make(
        status: str,
        text: str,
        worst: tuple[float | None, str | None, float | None] = (None, None, None),
        reason: str = "",
        untested: Sequence[str] = (),
        corrected: dict[str, Any] | None = None,
    ) -> Verdict:
        fl_used = fl if corrected else None
        return Verdict(status, text + div, *worst, *raw, reason, tuple(untested), corrected or {}, fl_used)

    if n_fin.size and int(n_fin[-1]) < 2:
        why = f"all {n_rep} replicas diverged" if int(n_fin[-1]) == 0 else "fewer than 2 finite replicas"
        div = "" if int(n_fin[-1]) == 0 else div  # said once
        return make("undetermined", f"undetermined: no standard error ({why})", reason=why)
    if not theory:
        if bare_allowance and raw[0] is not None and raw[0] <= threshold:
            text = (
                f"consistent: largest deviation from the bare ODE {raw[0]:.2f} standard errors ({raw[1]} at "
                f"alpha={raw[2]:g}; allowance {threshold:g}, {why_no_theory})"
            )
            return make("consistent", text, raw, reason=why_no_theory)
        if bare_allowance and raw[0] is not None:
            why = f"{why_no_theory}; beyond the allowance of {threshold:g} standard errors"
            return make("not testable", f"not testable: {why}; {raw_txt}", reason=why)
        return make("not testable", f"not testable: {why_no_theory}; {raw_txt}", reason=why_no_theory)

    from ..ode.fluctuations import solve_fluctuations

    if params is None:
        raise ValueError("params=None: the O(1/N) theory needs the run's ModelParams (or theory=False)")
    fl = solve_fluctuations(params, N, float(alpha[-1]), int(n_save), dt=dt, R0=R0, b0=b0, loss=loss)
    spread = float(np.nanmax(np.asarray(fl.std)[:, 0]))
    shift = float(np.nanmax(np.abs(np.asarray(fl.shift)[:, 0])))
    if not (np.isfinite(spread) and np.isfinite(shift)):
        why = "the fluctuation theory is not finite here"
        return make("not testable", f"not testable: {why}; {raw_txt}", reason=why)
    if spread > MAX_SPREAD_R or shift > MAX_SPREAD_R:
        why = (
            f"N={N} is too small for the O(1/N) expansion (predicted spread of R {spread:.3g}, "
            f"shift {shift:.3g}; the expansion needs both <= {MAX_SPREAD_R:g})"
        )
        return make("not testable", f"not testable: {why}; {raw_txt}", reason=why)
    pred = corrected_predictions(ode_cols, fl, params, eps_test)
    zs, tested, untested = {}, [], []
    for q in quantities:
        sem = np.asarray(mc_cols[f"{q}_sem"], float)[1:]
        floor = sem_floor(np.asarray(pred[q])[1:], mc_dtype)
        if not np.any(np.nan_to_num(sem, nan=0.0) > floor):
            untested.append(q)  # no spread: at round-off level everywhere
            continue
        zs[q] = deviation_z(mc_cols[f"{q}_mean"], mc_cols[f"{q}_sem"], pred[q], mc_dtype)
        tested.append(q)
    note = f"; not tested (replicas do not spread): {', '.join(untested)}" if untested else ""
    if not tested:
        why = "the replicas do not spread (a frozen student): no standard error to test against"
        return make("not testable", f"not testable: {why}; {raw_txt}", reason=why, untested=untested, corrected=pred)
    worst = _worst(zs, alpha, tested)
    if worst[0] is None:
        return make(
            "undetermined",
            f"undetermined: no finite standard error; {raw_txt}",
            reason="no finite standard error",
            untested=untested,
            corrected=pred,
        )
    ok = worst[0] <= threshold
    text = (
        f"{'consistent' if ok else 'INCONSISTENT'}: largest deviation from the ODE + O(1/N) theory "
        f"{worst[0]:.2f} standard errors ({worst[1]} at alpha={worst[2]:g}; allowance {threshold:g}); "
        f"{raw_txt}{note}"
    )
    return make("consistent" if ok else "INCONSISTENT", text, worst, untested=untested, corrected=pred)
