"""Stopping a run cleanly: Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step
boundary, where it saves a checkpoint; a second signal aborts at once without saving."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


class StopRequest:
    """A flag the training loop reads at every step (and all ranks agree on through all_reduce)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    @contextlib.contextmanager
    def on_signals(self, on_message: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
        """While inside: the first SIGINT/SIGTERM sets the flag, the next raises KeyboardInterrupt.

        Python lets only the main thread install handlers, so elsewhere (or with enabled=False)
        the signals keep their current handlers and only set() stops the run.
        """
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            on_message("interrupted: finishing this step, then saving a checkpoint "
                       "(interrupt again to abort without saving)")

        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def ignore_sigint(_worker_id: int) -> None:
    """DataLoader worker_init_fn: workers leave Ctrl-C to the main process, which saves a
    checkpoint and then stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
