"""Command line: ``jaxadv run PRESET_OR_TOML [--set KEY=VALUE ...] [--out DIR] [--no-mc]``,
``jaxadv compare-defences [PRESET_OR_TOML] [--set KEY=VALUE ...] [--out DIR] [--no-mc]``,
``jaxadv verify PRESET_OR_TOML [--N-list ...]`` (see :mod:`jaxadv.app.verify`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .arguments import Parser, add_config_arguments

__all__ = ["main"]


def _parser():
    """The argument parser; it imports nothing heavy (no JAX), so ``--help`` is instant."""
    p = Parser(
        prog="jaxadv",
        description="Adversarial training in the prototype model: Monte Carlo simulations and large-N ODEs.",
    )
    from ..distributed import add_arguments as add_distributed_arguments

    add_distributed_arguments(p)  # jaxadv --coordinator HOST:PORT --num-processes P --process-id I COMMAND ...
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, student, what, example in (
        ("run", None, "ODE and Monte Carlo of any student (unit, committee, pair)", "--set alpha_max=1000"),
        (
            "committee",
            "committee",
            "`jaxadv run` of a committee (presets committee, xor)",
            "--set K=2 --set v=0.5,-0.5",
        ),
        (
            "transfer",
            "pair",
            "`jaxadv run` of a surrogate/target pair (presets transfer, blackbox)",
            "--set eps_t=0,0.5",
        ),
    ):
        r = sub.add_parser(name, help=what)
        add_config_arguments(
            r, "preset (see `jaxadv presets`) or .toml file", "results/<name>", example, "ODE only (no Monte Carlo)"
        )
        r.set_defaults(student=student)
    sub.add_parser("presets", help="list every student's presets, one line each, and every key")
    d = sub.add_parser("compare-defences", help="clean vs robust error of five defences (ODE and Monte Carlo)")
    add_config_arguments(
        d,
        "base preset or .toml (default: scenario2)",
        "results/defences",
        "--set N=500",
        "ODE only",
        config_default="scenario2",
    )
    s = sub.add_parser(
        "sweep",
        help="ODE (and MC) over a parameter grid, resumable; writes heat maps",
        description="Sweep TOML format: see the README (section 'Sweeps') or "
        "`python3 -c 'import jaxadv.app.sweep as s; help(s)'`.",
    )
    s.add_argument(
        "config",
        help="sweep TOML file ([base], [grid], alpha_max, n_save, chunk, ode, mc, ...; "
        'a [base] with preset = "xor"/"committee" or model = "committee" sweeps a committee)',
    )
    s.add_argument("--out", default=None, help="output directory (default: results/<name>)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--no-plots", action="store_true", help="write no figures")
    s.set_defaults(func=_sweep_command)
    from .verify import add_verify_parser

    add_verify_parser(sub)
    from .mnist import add_parser as add_mnist_parser

    add_mnist_parser(sub)
    from .certified import add_parser as add_certified_parser

    add_certified_parser(sub)
    from .optimise import add_parser as add_optimise_parser

    add_optimise_parser(sub)
    return p


def _sweep_command(args) -> int:
    """``jaxadv sweep``: a committee sweep (``[base]`` with a committee ``preset`` or ``model = "committee"``)
    goes to :mod:`jaxadv.app.committee_sweep`, any other to :mod:`jaxadv.app.sweep`."""
    from .committee_sweep import committee_sweep_command, is_committee_sweep
    from .io import read_toml
    from .sweep import sweep_command

    if is_committee_sweep(read_toml(args.config, "sweep file")):
        return committee_sweep_command(args)
    return sweep_command(args)


def _use_all_cores() -> None:
    """One XLA CPU device per core (:func:`jaxadv.app.cores.use_all_cores`), before JAX starts."""
    from .cores import use_all_cores

    use_all_cores(x64=False, strict=False)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``jaxadv`` command (``argv``: its arguments; ``None``: ``sys.argv``, the console script).

    Returns the exit status: 0, 2 (bad input), 3 (a run failed, or in a multi-process run another
    process stopped) or 130 (interrupted by Ctrl-C or SIGTERM). As the console script (``argv is None``)
    an interrupted process ends with :func:`os._exit` once its message is printed and its checkpoint
    saved: the interpreter's exit would wait for computations still queued on the devices (one stuck
    in XLA would keep the process alive for ever); and a signal that Python cannot deliver within
    :data:`STOP_GRACE_S` seconds (the main thread inside one long computation) ends it all the same
    (:func:`_stop_when_stuck`)."""
    if argv is None:
        _stop_when_stuck()
    code = _main(argv)
    if argv is None and code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


#: seconds an interrupted console command waits for the computation in flight before it ends anyway
STOP_GRACE_S = 20.0


def _stop_when_stuck() -> None:
    """Make SIGINT and SIGTERM end the console command within :data:`STOP_GRACE_S` seconds, whatever it runs.

    Python runs a signal's handler between bytecodes only, so a signal that arrives during one long XLA
    computation (an ODE's scan, a Monte Carlo interval, a compilation) would wait for its end, for minutes or
    hours. The C-level handler writes every signal to a wakeup pipe at once; a thread reads it and, unless the
    process has ended :data:`STOP_GRACE_S` seconds later (the usual path: the handler saves the checkpoint and
    the command exits 130), prints one line and ends the process with status 130. A second signal (a second
    later: one sent to the process and its group arrives twice) ends it at once. Every file is written
    atomically and every finished Monte Carlo kept in its checkpoint, so an exit at any moment leaves the earlier
    files whole and the rerun resumes from the last checkpoint."""
    import select
    import signal
    import threading
    import time

    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: no signals to watch
        os.close(r)
        os.close(w)
        return
    stops = {int(signal.SIGINT), int(signal.SIGTERM)}

    def watch() -> None:
        count, first, deadline = 0, 0.0, None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if select.select([r], [], [], wait)[0]:
                n = sum(b in stops for b in os.read(r, 64))
                if n == 0:
                    continue
                if deadline is None:
                    first, deadline = time.monotonic(), time.monotonic() + STOP_GRACE_S
                    n -= 1  # (`timeout` and batch systems signal the process and its group: one signal, twice)
                count += n if time.monotonic() - first > 1.0 else 0
                if count < 1 and time.monotonic() < deadline:
                    continue
            why = (
                "a second signal" if count >= 1 else f"the computation in flight did not stop within {STOP_GRACE_S:g} s"
            )
            os.write(
                2,
                f"jaxadv: interrupted ({why}); the files and Monte Carlo checkpoints written so far are kept: rerun "
                "the same command to resume\n".encode(),
            )
            os._exit(130)

    threading.Thread(target=watch, daemon=True, name="jaxadv-stop").start()


def _main(argv: Sequence[str] | None = None) -> int:
    import signal
    import warnings

    from .errors import Interrupted, RunFailed

    _use_all_cores()
    args = _parser().parse_args(argv)

    def _term(signum, frame):
        raise KeyboardInterrupt

    try:
        old_term = signal.signal(signal.SIGTERM, _term)  # a kill saves a checkpoint as Ctrl-C does
    except ValueError:  # not the main thread
        old_term = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what matters is in the status lines, not library warnings
            return _dispatch(args)
    except (ValueError, OSError) as e:
        print(f"jaxadv: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("jaxadv: error: out of memory; reduce N, replicas or the grid", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"jaxadv: error: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        if e.checkpoint:
            print(
                f"jaxadv: interrupted; {e.done} of {e.total} save intervals saved in {e.checkpoint}; rerun the "
                "same command to resume the Monte Carlo",
                file=sys.stderr,
            )
        else:
            print("jaxadv: interrupted before the first save interval; nothing saved", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("jaxadv: interrupted; nothing to resume", file=sys.stderr)
        return 130
    except RuntimeError as e:
        from ..distributed import is_multiprocess

        jax = sys.modules.get("jax")
        if jax is None or not isinstance(e, jax.errors.JaxRuntimeError) or not is_multiprocess():
            raise
        _peer_failed(e, console=argv is None)  # a runtime error of XLA in a multi-process run: ends the process
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _peer_failed(e: BaseException, console: bool) -> None:
    """End a process of a multi-process run whose shared step failed (a collective whose peer has gone, a
    coordination error) in one line, within seconds. The folder's lock is already released (the claim's
    context has exited) and the checkpoint holds every save interval saved before. The interpreter's exit
    would wait in JAX's shutdown barrier for the process that has gone (up to its heartbeat timeout, then
    abort), so the console script leaves with :func:`os._exit`; called from Python it raises ``RuntimeError``."""
    import jax

    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    message = (
        f"process {jax.process_index()} of {jax.process_count()} stopped: a step shared with the other "
        f"processes failed ({type(e).__name__}: {first}); another process of this run has probably ended. "
        "Rerun the same command on every process to resume from the last checkpoint in --out"
    )
    if not console:
        raise RuntimeError(message) from e
    print(f"jaxadv: error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(3)


def _dispatch(args) -> int:
    import jax

    from ..distributed import initialize_from_args

    initialize_from_args(args)  # several processes: before any computation
    # Every command integrates ODEs in float64 (Gaussian averages to 1e-9); the Monte Carlo
    # picks its dtype explicitly (float32 unless x64=true).
    jax.config.update("jax_enable_x64", True)
    from .compile_cache import enable as enable_compile_cache

    enable_compile_cache()  # a second run of a configuration reads its compiled programs back
    if hasattr(args, "func"):
        return args.func(args)
    from .config import load_config, presets_table

    if args.command == "presets":
        print(presets_table())
        return 0
    if args.command == "compare-defences":
        from .run import run_defences

        cfg = load_config(args.config, args.overrides)
        out = args.out or os.path.join("results", "defences")
        mc = cfg.mc and not args.no_mc
        with _claim(cfg, out, args, "compare-defences", mc):
            print(f"jaxadv compare-defences {cfg.name} -> {out}")
            run_defences(cfg, out, mc=mc, progress=not args.quiet, log=lambda m: print(m, flush=True))
        print(f"wrote {out}")
        return 0
    return _run_any(args)


def _run_any(args) -> int:
    """``jaxadv run`` (``committee`` and ``transfer``: the same for one student): configuration, the memory and
    step checks, the claimed folder, then :func:`jaxadv.app.run.run_student` (the same files whichever command
    ran it)."""
    import dataclasses

    from ..students import get_student
    from .config import config_dict, load_any
    from .outputs import claim_output

    name, cfg = load_any(args.config, args.overrides, args.student)
    student = get_student(name)
    values = config_dict(cfg) if name == "unit" else cfg
    mc = bool(values.get("mc", True)) and not args.no_mc
    if "mc" in values:  # recorded in config.json as run
        cfg = dataclasses.replace(cfg, mc=mc) if name == "unit" else {**cfg, "mc": mc}
    if mc:
        units = values["replicas"] * student.units(values)
        check_run(
            values["N"], units, values["n_save"], values["x64"], values["alpha_max"], values.get("sampler", "full")
        )
        if "n_test" in values:  # the pair's transfer measurement on fresh test examples
            from .resources import check_fits, table_memory_bytes

            rows = (values["replicas"] * values["n_test"], 2 * len(values["eps_grid"]) + 16, "replicas x n_test")
            check_fits(table_memory_bytes(*rows), f"n_test={values['n_test']}")
    log = print if name == "unit" else (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    out = args.out or os.path.join("results", values["name"])
    ident = {"config": {k: v for k, v in values.items() if k != "mc"}, "mc": mc}
    with claim_output(out, ident, overwrite=args.overwrite, command=student.command):
        log(f"jaxadv {student.command} {values['name']} -> {out}")
        from .run import run_student

        run_student(cfg, out, name, mc=mc, progress=not args.quiet, log=log)
    log(f"wrote {out}")
    return 0


def check_run(N: int, units: int, n_save: int, x64: bool, alpha_max: float, sampler: str = "full") -> None:
    """Before any computation of a Monte Carlo: refuse one that cannot fit in memory (``units``: replicas
    times the students' units) or whose steps overflow the step counter, with the estimate in the message."""
    from ..mc.driver import save_schedule
    from .resources import check_fits, run_memory_bytes

    check_fits(run_memory_bytes(N, units, n_save, 8 if x64 else 4, sampler), "the Monte Carlo")
    save_schedule(N, alpha_max, n_save)


def _claim(cfg, out, args, command, mc):
    """Before any computation: the memory estimate, then lock and claim the output folder
    (:func:`jaxadv.app.outputs.claim_output`)."""
    from .config import config_dict
    from .outputs import claim_output

    if mc:
        check_run(cfg.N, cfg.replicas, cfg.n_save, cfg.x64, cfg.alpha_max, cfg.sampler)
    ident = {k: v for k, v in config_dict(cfg).items() if k != "mc"}
    return claim_output(out, {"config": ident, "mc": bool(mc)}, overwrite=args.overwrite, command=command)


if __name__ == "__main__":
    sys.exit(main())
