"""The command line's shared argument definitions: the help formatter that shows defaults, and the
arguments of every command that runs one configuration. Importable without JAX (``--help``)."""

from __future__ import annotations

import argparse

__all__ = ["Parser", "add_config_arguments"]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (None and False defaults are not shown)."""

    def _get_help_string(self, action):
        h = action.help or ""
        if (
            "%(default)" in h
            or "default" in h
            or action.default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
        ):
            return h
        return h + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose options' help ends with their defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def add_config_arguments(
    parser,
    config_help: str,
    out_default: str,
    set_example: str,
    no_mc_help: str,
    quiet_help: str = "no progress lines",
    config_default=None,
) -> None:
    """The arguments every command that runs one configuration shares: the config (a preset or a TOML
    file), ``--set``, ``--out``, ``--no-mc``, ``--quiet`` and ``--overwrite``."""
    if config_default is None:
        parser.add_argument("config", help=config_help)
    else:
        parser.add_argument("config", nargs="?", default=config_default, help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a key (repeatable), e.g. {set_example}",
    )
    parser.add_argument("--out", default=None, help=f"output directory (default: {out_default})")
    parser.add_argument("--no-mc", action="store_true", help=no_mc_help)
    parser.add_argument("--quiet", action="store_true", help=quiet_help)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace another run's results in --out (its files are removed first)"
    )
