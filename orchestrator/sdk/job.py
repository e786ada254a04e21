"""``TrainingJob``: what ``Estimator.fit`` returns; follows a job with progress lines."""

from __future__ import annotations

import re
import time

from ..backends.base import JobRef, JobState
from ..errors import StepFailed
from ..files import tail
from ..tracking import FollowTimeout, JobFollower

# The classic (v1) API reports a job's status as a number; these are its codes.
V1_STATUS = {"Creating": 1, "Pending": 7, "Running": 8, "Completed": 10, "Failed": 11, "Terminated": 12}
EPOCH = re.compile(r"Epoch\[(\d+)\]")


class TrainingJob:
    """A submitted training job (``job_id``, ``version_id``, ``job_name``).

    ``wait()`` blocks until it ends, printing each status change and one line per epoch
    (every log line with ``logs=True``); a failed or terminated job raises ``StepFailed``
    with the end of its log. Ctrl-C stops the waiting, not the job. ``stop()`` and
    ``delete()`` are idempotent. The full log is kept in the session's run folder
    (``python -m orchestrator logs RUN_ID``) and, with ``log_url``, copied there at the end.
    When the job has ended, ``report_path`` is its ``report.html`` (curves from its
    metrics.json) in ``<run folder>/jobs/<job name>/``, and with config.json's ``tracking``
    section the job is logged to MLflow (``tracking`` then says where).
    """

    version_id = 1

    def __init__(self, session, ref: JobRef, job_name: str, output_path: str, log_url: str | None, spec=None):
        self.session, self.ref, self.spec = session, ref, spec
        self.job_id, self.job_name = ref.id, job_name
        self.output_path, self.log_url = output_path, log_url
        self.log_file = session.run_dir / "logs" / f"{ref.name}.log"
        self.follower = JobFollower(session.backend, ref, self.log_file, session.poll_interval)
        self.state: JobState | None = None
        self._epoch, self._phase = None, None
        self._submitted = time.time()
        self.report_path = self.tracking = None

    def __repr__(self) -> str:
        return f"TrainingJob(job_name={self.job_name!r}, job_id={self.job_id!r}, status={self._phase!r})"

    def status(self) -> str:
        """The current phase: Creating, Pending, Running, Completed, Failed or Terminated."""
        return self.session.backend.job_status(self.ref).phase

    @property
    def progress(self):
        """Training progress read from the log so far (``progress.TrainingProgress``)."""
        return self.follower.progress

    def wait(self, logs: bool = False, timeout: float | None = None) -> "TrainingJob":
        say = self.session.say

        def on_state(state: JobState) -> None:
            if state.phase != self._phase:
                self._phase = state.phase
                if not state.terminal:
                    say(f"Training job {self.job_name}: {state.phase}" + (f" ({state.reason})" if state.reason else ""))

        def on_line(line: str) -> None:
            if logs:
                say(line)
            self._feed(line)

        try:
            state = self.follower.follow(on_line, on_state=on_state, timeout_s=timeout)
        except FollowTimeout:
            raise StepFailed("fit", f"training job {self.job_name} did not finish within {timeout:.0f}s; "
                                    "it keeps running (wait() again, or stop it)") from None
        except KeyboardInterrupt:
            say(f"Stopped waiting; training job {self.job_name} keeps running "
                "(wait() follows it again, estimator.stop_job_version() stops it)")
            raise
        self._report_epoch()
        self.state = state
        self._save_log()
        self._publish(state)
        took = time.time() - self._submitted
        if state.phase != "Completed":
            last = tail(self.log_file, 8)
            raise StepFailed("fit", f"training job {self.job_name} {state.phase.lower()}: {state.reason}"
                             + (f"\n--- last log lines ---\n{last}" if last else ""), log=str(self.log_file))
        say(f"Training job {self.job_name}: Completed in {took:.1f}s; outputs in {self.output_path}")
        return self

    def get_job_info(self) -> dict:
        state = self.state or self.session.backend.job_status(self.ref)
        return {"job_id": self.job_id, "job_name": self.job_name, "version_id": self.version_id,
                "status": V1_STATUS.get(state.phase, 0), "phase": state.phase, "reason": state.reason,
                "train_url": self.output_path, "log_url": self.log_url, "metrics": dict(self.progress.metrics)}

    def get_job_log(self) -> str:
        """The job's whole log so far."""
        lines, _ = self.session.backend.job_logs(self.ref, 0)
        return "\n".join(lines)

    def stop(self) -> None:
        self.session.backend.stop_job(self.ref)
        self.session.say(f"Training job {self.job_name} stopped")

    def delete(self) -> None:
        self.session.backend.delete_job(self.ref)
        self.session.forget("job", self.job_id)
        self.session.say(f"Training job {self.job_name} deleted")

    # one progress line per epoch, printed when the next epoch starts (its metrics are all in)
    def _feed(self, line: str) -> None:
        m = EPOCH.search(line)
        if m and self._epoch is not None and int(m.group(1)) > self._epoch:
            self._report_epoch()
        if m:
            self._epoch = int(m.group(1))

    def _report_epoch(self) -> None:
        if self._epoch is None:
            return
        p = self.progress
        total = f"/{p.num_epochs}" if p.num_epochs else ""
        metrics = "  ".join(f"{k}={v:.4g}" for k, v in sorted(p.metrics.items(), key=lambda kv: kv[0][0] != "T"))
        speed = f"  ({p.speed:.0f} samples/s)" if p.speed else ""
        self.session.say(f"  epoch {self._epoch + 1}{total}: {metrics}{speed}")
        self._epoch = None

    def _publish(self, state: JobState) -> None:
        """report.html of the job and, when config.json asks, its MLflow run (never raises)."""
        if self.spec is None or self.report_path is not None:
            return
        from ..results import jobfolder, publish
        folder = jobfolder.write(self.session.run_dir / "jobs" / self.ref.name, session=self.session,
                                 job_name=self.job_name, spec=self.spec, state=state, started_at=self._submitted,
                                 ended_at=time.time(), log_file=self.log_file)
        self.tracking = publish(folder, self.session.config.tracking, self.session.say)
        self.report_path = folder / "report.html"
        if self.tracking:
            self.session.say(f"MLflow: run {self.tracking['run_id']} in {self.tracking['tracking_uri']}")

    def _save_log(self) -> None:
        if not self.log_url or not self.log_file.exists():
            return
        uri = f"{self.log_url}{self.ref.name}-worker-0.log"
        with self.session.track("object_prefix", uri, once=True) as made:
            self.session.storage.put(str(self.log_file), uri)
            made.created(uri)
