"""Command line: ``jaxadv run PRESET_OR_TOML [--set KEY=VALUE ...] [--out DIR] [--no-mc]``,
``jaxadv compare-defences [PRESET_OR_TOML] [--set KEY=VALUE ...] [--out DIR] [--no-mc]``,
``jaxadv verify PRESET_OR_TOML [--N-list ...]`` (see :mod:`jaxadv.app.verify`)."""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(prog="jaxadv", description="Adversarial training in the prototype model: "
                                "Monte Carlo simulations and large-N ODEs.")
    from ..distributed import add_arguments as add_distributed_arguments

    add_distributed_arguments(p)  # jaxadv --coordinator HOST:PORT --num-processes P --process-id I COMMAND ...
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the ODE and the Monte Carlo for a preset or TOML file")
    r.add_argument("config", help="preset (scenario1, scenario2) or path to a .toml file")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key (repeatable), e.g. --set alpha_max=1000")
    r.add_argument("--out", default=None, help="output directory (default: results/<name>)")
    r.add_argument("--no-mc", action="store_true", help="skip the Monte Carlo (ODE only)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("presets", help="list the presets and their keys")
    d = sub.add_parser("compare-defences", help="clean vs robust error of five defences (ODE and Monte Carlo)")
    d.add_argument("config", nargs="?", default="scenario2", help="base preset or .toml (default scenario2)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the base config (repeatable)")
    d.add_argument("--out", default=None, help="output directory (default: results/defences)")
    d.add_argument("--no-mc", action="store_true", help="ODE only")
    from .sweep import add_sweep_parser

    add_sweep_parser(sub)
    from .verify import add_verify_parser
    add_verify_parser(sub)
    from .mnist import add_parser as add_mnist_parser

    add_mnist_parser(sub)
    return p


def _use_all_cores() -> None:
    """One XLA CPU device per core, so the sharded Monte Carlo uses every core.

    XLA reads ``XLA_FLAGS`` when the backend starts (at the first computation, not at
    ``import jax``), so this works from here. Results are bit-identical to one device.
    ``JAXADV_HOST_DEVICES=N`` chooses the count (1 turns it off); an existing
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` is left alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    n = os.environ.get("JAXADV_HOST_DEVICES") or str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                     else (os.cpu_count() or 1))
    if n.isdigit() and int(n) > 1:
        os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={int(n)}").strip()


def main(argv=None) -> int:
    _use_all_cores()
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"jaxadv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxadv: interrupted; rerun the same command to resume the Monte Carlo", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    import jax

    from ..distributed import initialize_from_args

    initialize_from_args(args)  # several processes: before any computation
    # Every command integrates ODEs in float64 (Gaussian averages to 1e-9); the Monte Carlo
    # picks its dtype explicitly (float32 unless x64=true).
    jax.config.update("jax_enable_x64", True)
    if hasattr(args, "func"):
        return args.func(args)
    from .config import PRESETS, config_dict, load_config
    from .run import run

    if args.command == "presets":
        for name, cfg in PRESETS.items():
            print(name, {k: v for k, v in config_dict(cfg).items() if k != "name"})
        return 0
    if args.command == "compare-defences":
        from .run import run_defences

        cfg = load_config(args.config, args.overrides)
        out = args.out or os.path.join("results", "defences")
        print(f"jaxadv compare-defences {cfg.name} -> {out}")
        run_defences(cfg, out, mc=cfg.mc and not args.no_mc)
        print(f"wrote {out}")
        return 0
    cfg = load_config(args.config, args.overrides)
    if args.no_mc:
        from dataclasses import replace

        cfg = replace(cfg, mc=False)
    out = args.out or os.path.join("results", cfg.name)
    print(f"jaxadv run {cfg.name} -> {out}")
    run(cfg, out, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
