"""OBS storage through the real esdk-obs-python client against a moto S3 server."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud import moto_server
from orchestrator.backends.modelarts.errors import MissingBucket
from orchestrator.backends.modelarts.rest import Retry
from orchestrator.backends.modelarts.storage import ObsStorage

PART = 100 * 1024        # OBS' smallest part: big files below are multipart uploads


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


def storage(url: str, state: Path, **kw) -> ObsStorage:
    kw.setdefault("create_bucket", True)
    return ObsStorage(url, "AK", "SK", state, path_style=True, signature="v2", part_size=PART,
                      retry=Retry(2, 0.01), **kw)


def tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "big.bin").write_bytes(os.urandom(3 * PART + 123))
    (root / "c.txt").write_text("gamma")
    return root


def test_put_skips_unchanged_files_verifies_and_reports_progress(s3, tmp_path):
    src = tree(tmp_path / "src")
    obs = storage(s3, tmp_path / "state")
    seen, sent = [], []
    stats = obs.put(src, "obs://b-put/run/data/", progress=lambda d, t, k: seen.append((d, t, k)),
                    byte_progress=lambda done, total, s: sent.append((done, total)))
    assert (stats.files, stats.skipped, stats.bytes) == (3, 0, 3 * PART + 123 + 10)
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)] and seen[-1][2] == "run/data/sub/big.bin"
    assert sent and sent[-1][0] == sent[-1][1], "byte progress reaches the total"

    reads = []
    original = obs.client.getObjectMetadata
    obs.client.getObjectMetadata = lambda *a, **k: reads.append(a) or original(*a, **k)
    again = obs.put(src, "obs://b-put/run/data/")
    assert (again.files, again.skipped) == (0, 3) and reads == [], "the manifest answers without a request per file"

    (src / "a.txt").write_text("ALPHA")             # same size, new content
    changed = obs.put(src, "obs://b-put/run/data/")
    assert (changed.files, changed.skipped) == (1, 2)

    fresh = storage(s3, tmp_path / "other-machine")  # no manifest: the sha256 metadata decides
    assert fresh.put(src, "obs://b-put/run/data/").skipped == 3

    out = tmp_path / "out"
    got = obs.get("obs://b-put/run/data/", out)
    assert got.files == 3 and (out / "sub" / "big.bin").read_bytes() == (src / "sub" / "big.bin").read_bytes()
    assert obs.get("obs://b-put/run/data/", out).skipped == 3
    single = obs.get("obs://b-put/run/data/a.txt", tmp_path / "one.txt")
    assert single.files == 1 and (tmp_path / "one.txt").read_text() == "ALPHA"


def test_listing_pages_and_delete_in_batches(s3, tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(7):
        (src / f"f{i}.txt").write_text(str(i))
    obs = storage(s3, tmp_path / "state", page_size=2)   # 4 pages for 7 keys
    obs.put(src, "obs://b-list/p/261123-120000-beef/data/")
    listed = obs.list("obs://b-list/p/")
    assert listed == [f"obs://b-list/p/261123-120000-beef/data/f{i}.txt" for i in range(7)]
    assert obs.exists("obs://b-list/p/261123-120000-beef/data/f3.txt") and obs.exists("obs://b-list/p")
    assert not obs.exists("obs://b-list/p/261123-120000-beef/data/f3") and not obs.exists("obs://b-list/q/")
    assert obs.folders("b-list") == ["p/"] and obs.folders("b-list", "p/") == ["p/261123-120000-beef/"]
    assert obs.delete("obs://b-list/p/261123-120000-beef/") == 7
    assert obs.delete("obs://b-list/p/261123-120000-beef/") == 0 and obs.list("obs://b-list/") == []
    assert obs.delete("obs://never-created-bucket/x/") == 0


def test_missing_bucket_is_an_actionable_error(s3, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    obs = storage(s3, tmp_path / "state", create_bucket=False)
    with pytest.raises(MissingBucket) as err:
        obs.put(tmp_path / "f.txt", "obs://no-such-bucket-here/x/")
    assert "does not exist" in str(err.value) and "bucket:" in str(err.value)
    assert not obs.exists("obs://no-such-bucket-here/x/")


CRASH = """
import os, signal, sys
from pathlib import Path
from orchestrator.backends.modelarts.storage import ObsStorage
obs = ObsStorage(sys.argv[1], "AK", "SK", Path(sys.argv[2]), path_style=True, signature="v2",
                 part_size=102400, create_bucket=True)
def die(done, total, seconds):
    if done >= 2 * 102400:
        os.kill(os.getpid(), signal.SIGKILL)     # a crash in the middle of the upload
obs.put(sys.argv[3], "obs://b-resume/big.bin", byte_progress=die)
"""


def test_an_interrupted_upload_resumes_from_its_checkpoint(s3, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * PART))
    crashed = subprocess.run([sys.executable, "-c", CRASH, s3, str(tmp_path / "state"), str(big)],
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    assert list((tmp_path / "state").rglob("*.upload_record")), "the crash left a checkpoint"
    sent = []
    stats = storage(s3, tmp_path / "state").put(big, "obs://b-resume/big.bin",
                                                byte_progress=lambda done, total, s: sent.append(done))
    assert stats.files == 1 and sent[0] >= PART, "parts recorded before the crash are not sent again"
    assert not list((tmp_path / "state").rglob("*.upload_record"))
    storage(s3, tmp_path / "state").get("obs://b-resume/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
