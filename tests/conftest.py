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
