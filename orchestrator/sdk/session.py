"""``Session``: the notebook SDK's handle on one backend, one ledger run and its resources
(the counterpart of ``modelarts.session.Session``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .. import factory
from ..errors import StepFailed, UserError
from ..notes import local_notes
from ..plan import new_run_id
from ..reconcile import teardown_run
from ..signals import signals_deferred
from ..spec import PipelineSpec
from ..tracking import Tracker
from . import checks
from .obs import Obs


class Session:
    """Where SDK calls run: a backend profile of ``config.json`` and a run in its ledger.

    ``Session(profile=None, config=None)`` reads ``config`` (default: ``$ORCHESTRATOR_CONFIG``,
    else ``config.json`` in the current folder, else built-in defaults) and uses ``profile``
    (default: the file's ``default_profile``, normally ``local``). Credentials never go
    through the constructor: a cloud profile names the environment variables holding them.

    Every resource the SDK creates (uploaded objects, training jobs, models, services,
    temporary folders) is written to the ledger under this session's ``run_id`` *before*
    it is created. ``cleanup()`` deletes them all (idempotent; what fails stays recorded
    for ``python -m orchestrator cleanup``); ``close()`` also ends the run. As a context
    manager the session cleans up on exit, on errors and on Ctrl-C. Resources a notebook
    forgot are removed by ``python -m orchestrator cleanup`` once its kernel has exited
    (``--run RUN_ID`` removes them at once). Wrong arguments raise ``ArgumentError``
    naming the argument; backend failures raise ``BackendError`` or ``StepFailed``.
    """

    def __init__(self, profile: str | None = None, config: str | Path | None = None, *, name: str = "notebook",
                 **credentials):
        if credentials:
            raise checks.fail(", ".join(sorted(credentials)), "the Session takes no credentials",
                              hint="put a profile in config.json; a modelarts profile names the environment "
                                   "variables that hold the access keys (ak_env, sk_env)")
        self.name = checks.name(name, "name")
        self.config, config_dir = factory.config_and_dir(Path(config) if config is not None else None)
        self.config = factory.resolve_tracking(self.config, config_dir)   # MLflow of each finished job
        self.profile, _ = self.config.profile(profile)
        self.backend = factory.make_backend(self.config, config_dir, self.profile)
        self.ledger = factory.ledger_for(self.backend)
        self.run_id = new_run_id()
        self.run_dir = self.ledger.path.parent / "runs" / self.run_id
        self.poll_interval = self.config.poll_interval
        self.obs = Obs(self)
        self.tracker = Tracker(self.ledger, self.run_id, self.run_dir)
        self._names: set[tuple[str, str]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"Session(profile={self.profile!r}, backend={self.backend.name!r}, run_id={self.run_id!r})"

    @property
    def storage(self):
        return self.backend.storage

    def default_bucket(self) -> str:
        """The bucket notebooks use when they name none: on the local backend the pipelines'
        default (``orchestrator-demo``); on ModelArts ``modelarts-<region>-<project id[:8]>``
        (our naming; the cloud SDK's own is not documented). Nothing is created."""
        _, prof = self.config.profile(self.profile)
        if prof.backend == "local":
            return PipelineSpec.model_fields["bucket"].default
        return f"modelarts-{prof.region}-{prof.project_id[:8]}".lower()

    # data (the classic calls; session.obs has the newer ones)
    def upload_data(self, bucket_path: str, path) -> str | list[str]:
        """Upload a local file (to ``bucket_path + name``) or folder (to ``bucket_path +
        folder name + /``), or a list of them; returns the OBS URI(s). Unchanged files are
        skipped. The uploaded objects belong to this session and are deleted with it."""
        if isinstance(path, (list, tuple)):
            return [self.upload_data(bucket_path, p) for p in path]
        local = checks.local_path(path, "path")
        if local.is_dir():
            return self.obs.upload_dir(str(local), bucket_path, arg="bucket_path")
        return self.obs.upload_file(str(local), bucket_path, arg="bucket_path")

    def download_data(self, bucket_path: str, path: str) -> str:
        """Download an object to the local file ``path``, or a folder (a path ending with
        '/' or naming a prefix) into the local folder ``path``; returns ``path``."""
        uri = checks.checked_uri(self.storage, bucket_path, "bucket_path")
        if not self.storage.exists(uri):
            raise checks.fail("bucket_path", f"nothing at {uri}")
        stats = self.storage.get(uri, str(path))
        self.say(f"Downloaded {uri} to {path} ({stats.files} files, {stats.skipped} unchanged)")
        return str(path)

    # what this session made, and removing it
    def resources(self) -> list[dict]:
        """This session's ledger rows, in creation order."""
        if not self.tracker.started:
            return []
        return [{"kind": r.kind, "name": r.name, "state": r.state, "id": r.ref_id}
                for r in self.ledger.resources(self.run_id)]

    def cleanup(self) -> int:
        """Delete everything this session created that is still there, newest first; returns
        how many resources were deleted. Raises ``StepFailed`` listing what could not be
        deleted (it stays in the ledger for ``orchestrator cleanup``)."""
        if not self.tracker.started:
            return 0
        deleted, failed = teardown_run(self.backend, self.ledger, self.run_id, self.say)
        if failed:
            raise StepFailed("cleanup", "; ".join(failed) + " (run `python -m orchestrator cleanup` to retry)")
        return len(deleted)

    def close(self, status: str = "succeeded") -> None:
        """``cleanup()`` and end the ledger run; the session cannot be used afterwards."""
        if self._closed:
            return
        try:
            self.cleanup()
        except StepFailed:
            status = "failed"
            raise
        finally:
            self._closed = True
            if self.tracker.started:
                self.ledger.finish_run(self.run_id, status)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "succeeded" if exc is None else ("failed" if isinstance(exc, Exception) else "interrupted")
        with signals_deferred():   # cleanup must finish: Ctrl-C waits until it has
            self.close(status)
        return False

    # bookkeeping for the SDK classes
    def check_open(self) -> None:
        if self._closed:
            raise UserError("this Session is closed", hint="create a new Session()")

    def unique_name(self, kind: str, value: str, arg: str) -> str:
        """``value`` checked and made unique across runs: ``<value>-<run id>``."""
        checks.name(value, arg)
        if (kind, value) in self._names:
            raise checks.fail(arg, f"{value!r} is already used by a {kind} of this session",
                              hint="choose another name")
        self._names.add((kind, value))
        return f"{value}-{self.run_id}"

    @contextmanager
    def track(self, kind: str, name: str, detail: dict | None = None, once: bool = False):
        """Record a resource in the ledger before the body creates it (see ``Tracker.track``);
        the session's run starts with its first resource."""
        self.check_open()
        self.tracker.start(self.name, Path.cwd(), self.backend.name, self.profile)
        with self.tracker.track(kind, name, detail, once=once) as made:
            yield made

    def recorded(self, kind: str, ref_id: str):
        """The ledger row of a resource: this session's (in any state), else a live row of
        any run that names it; None when the ledger does not know it."""
        rid = self.tracker.rids.get((kind, ref_id))
        if rid is not None:
            return self.ledger.resource(rid)
        return next((r for r in self.ledger.live_resources() if r.kind == kind and ref_id in (r.ref_id, r.name)),
                    None)

    def forget(self, kind: str, ref_id: str) -> None:
        """Mark a resource deleted in the ledger (after the backend deleted it)."""
        row = self.recorded(kind, ref_id)
        if row is not None and row.state != "deleted":
            self.ledger.deleted(row.rid)

    def temp_dir(self) -> Path:
        """This session's temporary folder (recorded; removed by cleanup)."""
        path = self.ledger.path.parent / "tmp" / self.run_id
        with self.track("temp_dir", str(path), once=True) as made:
            path.mkdir(parents=True, exist_ok=True)
            made.created(str(path))
        return path

    def flavour(self, value, arg: str, what: str) -> str:
        checks.flavour(value, arg, self.config.flavors)
        if self.backend.name == "local":
            for note in local_notes(self.config, value, what):
                self.say("note: " + note)
        return value

    def say(self, message: str) -> None:
        """Progress for the notebook: one line on stdout."""
        print(message, flush=True)

