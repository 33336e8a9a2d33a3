r"""Students as records: the single erf unit, the K-unit committee and the surrogate/target pair.

A training rule is data (:mod:`jaxadv.model.rule`: loss, attack, eps law, gate, each a record of faces); a
student is data too. A :class:`StudentRecord` says, for one replica,

* what its state is (``state``: a pytree type; the Monte Carlo's per-replica state),
* its pre-activations and output on an example (``fields``, ``output``: the local fields
  :math:`x_k = w_k\cdot\xi - b_k` of its units and what it predicts),
* its normalisation (``normalise``: the projection applied after every update),
* which order parameters it has (``observe``: the order parameters of one replica against the data
  directions; ``order_parameters``: their column names in the output tables),

and it has the two faces every engine reads:

* the **Monte Carlo face**, ``compute``'s ``simulate`` calls: the student builds driver
  :class:`~jaxadv.mc.driver.Plan`\ s (its ``(init, step)`` sampler on the one driver) and hands them to a
  ``simulate(plan, name, label)`` function it is given; the application layer runs them with checkpoints,
  resumption, progress, the device split and multi-process runs
  (:func:`jaxadv.app.checkpoint.run_resumable`), so every student gets them alike;
* the **ODE face**: its order-parameter ODE on the one solve (:func:`jaxadv.ode.solve.solve_grid`).

``compute(problem, simulate, log) -> Outcome`` composes the two faces into the tables, arrays and verdict of a
run; ``resolve(values) -> problem`` turns a configuration's values (one key table for every student,
:mod:`jaxadv.app.config`) into the validated records it runs. The application's one command
(:func:`jaxadv.app.run.run_student`) is configuration -> ``resolve`` -> ``compute`` -> files and figures ->
verdict for every student: a student is a record, not a module of the application.

What ``loss = "logistic"`` means, for every student: the softplus of the margin of the student's *score*
(:attr:`jaxadv.model.losses.Loss.acts_on`): the unit's pre-activation :math:`x=w\cdot\xi-b`, the committee's
output :math:`\sigma=\sum_k v_k\operatorname{erf}(x_k)`; the pair's two students are units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = ["StudentRecord", "Outcome", "STUDENTS", "get_student"]


class Outcome(NamedTuple):
    """What a student's ``compute`` returns; the application writes it (nothing here touches a file).

    Attributes:
        tables: ``{file name: {column: 1-d array}}``, each written as CSV (``ode.csv``, ``mc.csv``, ...).
        arrays: ``{file name: {name: array}}``, each written as ``.npz`` (``mc_replicas.npz``).
        info: what ``config.json`` holds beside the configuration (resolved values, deviations, verdict
            fields, ``timings_s``).
        verdict: the :class:`jaxadv.analysis.verdict.Verdict` of the Monte Carlo against the ODE, or ``None``
            (no Monte Carlo, or no ODE).
        figures: what the student's figures are drawn from (its tables and verdict; read by
            :data:`jaxadv.app.plots.STUDENT_FIGURES`).
        failed: why the run is not usable (``"all 64 replicas diverged"``), or ``None``: the files are
            written, then the command fails with it.
    """

    tables: dict[str, dict[str, Any]]
    arrays: dict[str, dict[str, Any]]
    info: dict[str, Any]
    verdict: Any = None
    figures: Any = None
    failed: str | None = None


class StudentRecord(NamedTuple):
    """A student as data (module docstring).

    Attributes:
        name: ``"unit"``, ``"committee"`` or ``"pair"`` (the configuration key ``student``).
        description: one line.
        command: its command, an alias of ``jaxadv run`` (``run``, ``committee``, ``transfer``).
        state: the pytree type of one replica's state.
        fields: ``fields(state, xi) -> (units,)``: the pre-activations :math:`w_k\\cdot\\xi - b_k`.
        output: ``output(state, xi)``: what the student predicts (the unit's erf, the committee's sum, the
            pair's two erfs).
        normalise: ``normalise(state, static) -> state``: the projection after each update (``static``: the
            student's static record, ``None`` for the unit and the pair).
        observe: ``observe(state, B) -> NamedTuple``: the order parameters of one replica (``B``: the data
            directions, shape ``(N,)`` or ``(D, N)``).
        units: ``units(values) -> int``: hidden units per replica of a configuration (memory estimates).
        resolve: ``resolve(values) -> problem``: the validated records of a configuration's values
            (``ValueError`` naming a key and its value).
        compute: ``compute(problem, simulate, log) -> Outcome``. ``simulate(plan, name, label) -> (observables,
            stats)`` runs a driver plan (``name``: its checkpoint's file name; ``label``: its progress bar's;
            ``stats``: ``resumed_from`` and ``steps_this_session``); ``None``: no Monte Carlo. ``log`` takes a
            line of text.
        order_parameters: ``order_parameters(problem) -> tuple[str, ...]``: the order parameters' columns.
    """

    name: str
    description: str
    command: str
    state: type
    fields: Callable[..., Any]
    output: Callable[..., Any]
    normalise: Callable[..., Any]
    observe: Callable[..., Any]
    units: Callable[[Mapping[str, Any]], int]
    resolve: Callable[[Any], Any]
    compute: Callable[..., Outcome]
    order_parameters: Callable[[Any], tuple[str, ...]]


STUDENT_NAMES = ("unit", "committee", "pair")


def get_student(name: str) -> StudentRecord:
    """The record of the student ``name`` (one of ``unit``, ``committee``, ``pair``)."""
    if name not in STUDENT_NAMES:
        raise ValueError(f"student={name!r} is not one of {list(STUDENT_NAMES)}")
    import importlib

    return importlib.import_module(f".{name}", __name__).STUDENT


class _Registry(Mapping[str, StudentRecord]):
    """``STUDENTS[name]``: each record, imported on first use (importing this package imports no JAX)."""

    def __getitem__(self, name: str) -> StudentRecord:
        if name not in STUDENT_NAMES:
            raise KeyError(name)
        return get_student(name)

    def __iter__(self):
        return iter(STUDENT_NAMES)

    def __len__(self) -> int:
        return len(STUDENT_NAMES)


STUDENTS: Mapping[str, StudentRecord] = _Registry()
"""Every student's record by name."""
