"""`mms.log.get_logger` as MMS legacy offered it to custom services.

Contract: ``get_logger(name=None, level=logging.INFO)`` returns a standard
``logging.Logger`` under the ``mms`` hierarchy that writes one line per record to stdout.
The handler is attached once, to the ``mms`` parent logger, so repeated calls (every
service module calls this at import) never duplicate lines.
"""

from __future__ import annotations

import logging
import sys

_ROOT = "mms"
_FORMAT = "%(asctime)s [%(levelname)s] %(process)d %(name)s: %(message)s"


def _configure_root() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        # The predictor front owns the root logger; don't print service lines twice.
        root.propagate = False
    return root


def get_logger(name: str | None = None, level: int | None = None, **_ignored) -> logging.Logger:
    """Return the logger ``mms`` or ``mms.<name>``; extra MMS-era keyword arguments
    (``filename``, ``filemode``) are accepted and ignored: logs always go to stdout."""
    root = _configure_root()
    logger = root if not name or name == _ROOT else root.getChild(name)
    if level is not None:
        logger.setLevel(level)
    return logger
