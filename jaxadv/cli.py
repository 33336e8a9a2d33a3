"""Command line: ``jaxadv run PRESET_OR_TOML [--set KEY=VALUE ...] [--out DIR] [--no-mc]``,
``jaxadv verify PRESET_OR_TOML [--N-list ...]`` (see :mod:`jaxadv.verify`)."""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(prog="jaxadv", description="Adversarial training in the prototype model: "
                                "Monte Carlo simulations and large-N ODEs.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the ODE and the Monte Carlo for a preset or TOML file")
    r.add_argument("config", help="preset (scenario1, scenario2) or path to a .toml file")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key (repeatable), e.g. --set alpha_max=1000")
    r.add_argument("--out", default=None, help="output directory (default: results/<name>)")
    r.add_argument("--no-mc", action="store_true", help="skip the Monte Carlo (ODE only)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("presets", help="list the presets and their keys")
    from .verify import add_verify_parser
    add_verify_parser(sub)
    return p


def main(argv=None) -> int:
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

    # The ODE is integrated in float64 (Gaussian averages to 1e-9); the Monte Carlo picks
    # its dtype explicitly (float32 unless x64=true).
    jax.config.update("jax_enable_x64", True)
    from .config import PRESETS, config_dict, load_config
    from .run import run

    if args.command == "verify":
        return args.func(args)
    if args.command == "presets":
        for name, cfg in PRESETS.items():
            print(name, {k: v for k, v in config_dict(cfg).items() if k != "name"})
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
