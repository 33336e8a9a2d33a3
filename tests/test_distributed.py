"""jaxadv.distributed on one process: argument checks, no-ops, the command-line options
(the two-process run itself: tests/test_multiprocess.py)."""

import argparse

import numpy as np
import pytest

from jaxadv import distributed
from jaxadv.distributed import _needs_gloo


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(coordinator="127.0.0.1:1234"), "go together"),
        (dict(coordinator="127.0.0.1", num_processes=2, process_id=0), "HOST:PORT"),
        (dict(coordinator="127.0.0.1:99999", num_processes=2, process_id=0), "HOST:PORT"),
        (dict(coordinator="h:1234", num_processes=0, process_id=0), "num_processes=0"),
        (dict(coordinator="h:1234", num_processes=2, process_id=2), "process_id=2"),
    ],
)
def test_initialize_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.initialize(**{"coordinator": None, "num_processes": None, "process_id": None, **kwargs})


def test_gloo_only_before_0_5_1():
    assert _needs_gloo("0.4.35") and _needs_gloo("0.5.0")
    assert not _needs_gloo("0.5.1") and not _needs_gloo("0.10.2") and not _needs_gloo("1.0.0rc1")


def test_one_process_is_primary_and_broadcast_is_identity():
    assert distributed.is_primary() and not distributed.is_multiprocess()
    tree = {"a": np.arange(3.0), "k": 4}
    assert distributed.broadcast(tree) is tree
    assert distributed.agree(True) is True and distributed.agree(False) is False


def test_bits_round_trip_keeps_negative_zero_and_nan():
    x = np.array([-0.0, np.nan, 1.5], np.float32)
    back = distributed._bits(x).view(np.float32)
    assert np.array_equal(back.view(np.uint32), x.view(np.uint32))


def test_command_line_options():
    p = argparse.ArgumentParser()
    distributed.add_arguments(p)
    args = p.parse_args(["--coordinator", "h:1", "--num-processes", "2", "--process-id", "1"])
    assert (args.coordinator, args.num_processes, args.process_id, args.distributed) == ("h:1", 2, 1, False)
    assert distributed.initialize_from_args(p.parse_args([])) is False
    with pytest.raises(ValueError, match="exclude each other"):
        distributed.initialize_from_args(p.parse_args(["--distributed", "--coordinator", "h:1"]))
    with pytest.raises(ValueError, match="go together"):
        distributed.initialize_from_args(p.parse_args(["--num-processes", "2"]))


def test_cli_accepts_the_options_before_the_command():
    from jaxadv.app.cli import _parser

    args = _parser().parse_args(
        ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "0", "run", "scenario1"]
    )
    assert args.command == "run" and args.num_processes == 2
