"""Signals during a run: SIGTERM becomes ``Interrupted`` (so teardown runs, as for Ctrl-C),
and teardown itself holds SIGINT/SIGTERM until it has finished."""

from __future__ import annotations

import signal
import threading

from .errors import Interrupted


def raise_interrupted(signum, frame):
    raise Interrupted(f"received signal {signum}")


class signals_deferred:
    """Teardown must finish: hold SIGINT/SIGTERM until it has (main thread only)."""

    def __enter__(self):
        self.caught, self.saved = [], {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, lambda s, f: self.caught.append(s))
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
