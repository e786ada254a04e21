"""A safety net for failing tests: whatever processes a test started under its tmp_path
(predictors, job supervisors, workers) are stopped when it ends, so one failure cannot leave
servers running or ports held. Passing tests clean up after themselves and assert it."""

import psutil
import pytest


@pytest.fixture(autouse=True)
def _no_orphans(request):
    root = str(request.getfixturevalue("tmp_path")) if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if any(root in part for part in p.info["cmdline"] or [])]
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=10)


@pytest.fixture(autouse=True, scope="session")
def _user_home(tmp_path_factory):
    """Runs without a config.json use the user-level store ($ORCHESTRATOR_HOME, default
    ~/.orchestrator): point it into the test's temporary folders, never the real $HOME."""
    import os
    previous = os.environ.get("ORCHESTRATOR_HOME")
    os.environ["ORCHESTRATOR_HOME"] = str(tmp_path_factory.mktemp("orchestrator-home"))
    yield
    if previous is None:
        os.environ.pop("ORCHESTRATOR_HOME", None)
    else:
        os.environ["ORCHESTRATOR_HOME"] = previous
