"""The exceptions the command line turns into exit statuses, importable without JAX (so that
``jaxadv --help`` imports neither JAX nor matplotlib)."""

from __future__ import annotations

from ..validation import RunFailed

__all__ = ["Interrupted", "RunFailed"]


class Interrupted(KeyboardInterrupt):
    """A Monte Carlo run was interrupted; ``checkpoint`` is the file it saved (``None``: nothing was
    saved), holding ``done`` of ``total`` save intervals (the CLI exits 130)."""

    def __init__(self, checkpoint: str | None, done: int, total: int) -> None:
        super().__init__(checkpoint)
        self.checkpoint, self.done, self.total = checkpoint, done, total
