"""Errors the CLI turns into one clear message and an exit code, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad pipeline file, missing folder, unknown run).

    The CLI prints ``str(error)`` and exits with code 2. ``where`` names the place
    (``pipeline.yaml:12 train.hyperparameters.lr``) and ``hint`` what to do.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message, self.where, self.hint = message, where, hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class StepFailed(Exception):
    """A pipeline step failed for a reason outside the user's file (job crashed, service
    did not start). Carries the step name; the CLI exits with code 1 after teardown."""

    exit_code = 1

    def __init__(self, step: str, reason: str, *, log: str | None = None):
        self.step, self.reason, self.log = step, reason, log
        super().__init__(f"step '{step}' failed: {reason}")


class Interrupted(BaseException):
    """Raised in the main thread on SIGTERM so teardown runs as it does for Ctrl-C; the CLI
    exits with code 130 (as for Ctrl-C)."""

    exit_code = 130
