"""Signals during a run: SIGTERM becomes ``Interrupted`` (so teardown runs, as for Ctrl-C),
and teardown itself ignores SIGINT/SIGTERM until it has finished."""

from __future__ import annotations

import signal
import threading

from .errors import Interrupted


def raise_interrupted(signum, frame):
    raise Interrupted(f"received signal {signum}")


class signals_deferred:
    """Teardown must finish: SIGINT/SIGTERM are ignored until it has (main thread only).
    A Python handler that does nothing, not ``SIG_IGN``, so processes started meanwhile
    do not inherit an ignored signal. The run already ends, so nothing is re-raised."""

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, lambda s, f: None)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
