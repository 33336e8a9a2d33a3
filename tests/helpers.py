"""Shared test helpers: rule arguments, NumPy references, the k-standard-error check and a simulated Ctrl-C."""

import numpy as np

from jaxadv import training_rule

K_SE = 4.0
"""Default allowance of the Monte Carlo tests, in standard errors (fixed seeds)."""


def rule_kwargs(attack="l2", eps_dist="fixed", nonrobust_only=False, loss="quadratic", n_eps_nodes=16, **values):
    """``{"rule": ..., "rule_params": ...}`` for :func:`jaxadv.simulate` / :func:`jaxadv.solve_ode`,
    from the configuration's key names."""
    rule = training_rule(attack, eps_dist, nonrobust_only=nonrobust_only, loss=loss, n_eps_nodes=n_eps_nodes)
    return {"rule": rule, "rule_params": values}


def assert_within_k_se(measured, sem, expected, k=K_SE, what=""):
    """``|measured - expected| <= k * sem`` elementwise, with the worst deviation in the message."""
    measured, sem, expected = (np.asarray(x, float) for x in (measured, sem, expected))
    dev = np.abs(measured - expected) / np.where(sem > 0, sem, np.inf)
    assert np.all(dev <= k), f"{what}: worst deviation {np.nanmax(dev):.2f} standard errors > {k}"
    return float(np.nanmax(dev))


def interrupting(real, at: int):
    """``real`` wrapped to raise ``KeyboardInterrupt`` (as a Ctrl-C would) at its call number ``at`` (0-based)
    and to call ``real`` otherwise. ``wrapped.args`` holds the positional arguments of every call, the interrupted
    one included."""

    def wrapped(*a, **k):
        wrapped.args.append(a)
        if len(wrapped.args) - 1 == at:
            raise KeyboardInterrupt
        return real(*a, **k)

    wrapped.args = []
    return wrapped


def assert_every_file_registered(folder):
    """Every file a command wrote into ``folder`` is one ``--overwrite`` knows to remove
    (:data:`jaxadv.app.outputs.RESULT_FILES`, :data:`~jaxadv.app.outputs.RESULT_PATTERNS`)."""
    import fnmatch
    import os

    from jaxadv.app.outputs import LOCK_NAME, OWNER_NAME, RESULT_FILES, RESULT_PATTERNS

    stray = [
        f
        for f in os.listdir(folder)
        if f not in RESULT_FILES + (LOCK_NAME, OWNER_NAME) and not any(fnmatch.fnmatch(f, p) for p in RESULT_PATTERNS)
    ]
    assert not stray, f"files --overwrite would leave behind: {stray}"


def default_sigint() -> None:
    """``preexec_fn`` of a child the test signals: SIGINT's default disposition. A process started in the
    background of a non-interactive shell (``pytest ... &`` in a script) ignores SIGINT, its children inherit
    that, and Python then installs no handler: a SIGINT sent by the test would be ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
