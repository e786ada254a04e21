"""Keeping credentials out of what the orchestrator writes down (the ledger, reports)."""

from __future__ import annotations

import re
from typing import Any

# Key names that would put a secret in the ledger. Long words match anywhere in the
# name ("obs_secret_key", "AuthToken"); short ones only as a whole word ("sk", "OBS_AK"),
# so that "task" or "disk" pass.
_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "accesskey", "privatekey", "apikey")
_SECRET_TOKENS = {"ak", "sk", "pwd"}


def secret_key_name(name: str) -> bool:
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in squashed for w in _SECRET_WORDS) or bool(_SECRET_TOKENS.intersection(words))


def check_no_secrets(detail: Any, where: str = "detail") -> None:
    """ValueError for a secret-looking key anywhere in ``detail`` (nested dicts and lists too)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if not isinstance(key, str):
                raise ValueError(f"ledger {where} keys must be strings, got {key!r}")
            if secret_key_name(key):
                raise ValueError(f"ledger {where}.{key}: looks like a secret; secrets never reach the ledger")
            check_no_secrets(value, f"{where}.{key}")
    elif isinstance(detail, (list, tuple)):
        for i, value in enumerate(detail):
            check_no_secrets(value, f"{where}[{i}]")
