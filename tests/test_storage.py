"""The local object store: addressing, atomic writes, the sha256 manifest, deletes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.backends.base import TransferStats
from orchestrator.backends.local.storage import LocalObjectStore
from orchestrator.errors import UserError


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "root")


def make_tree(base: Path) -> Path:
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(3000), "sub/deep/c.txt": b"gamma" * 100}
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    return base


def all_files(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def test_file_round_trip(store: LocalObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "model.params"
    src.write_bytes(b"\x00\x01weights" * 1000)
    stats = store.put(src, "obs://my-bucket/models/model.params")
    assert stats == TransferStats(files=1, skipped=0, bytes=src.stat().st_size)
    assert store.path_for("obs://my-bucket/models/model.params") == tmp_path / "root/obs/my-bucket/models/model.params"
    assert store.exists("obs://my-bucket/models/model.params")
    assert store.exists("obs://my-bucket/models/") and store.exists("obs://my-bucket/models")
    assert not store.exists("obs://my-bucket/model")  # a folder, not a string prefix
    assert store.info("obs://my-bucket/models/model.params") == (
        src.stat().st_size, hashlib.sha256(src.read_bytes()).hexdigest())
    out = tmp_path / "back" / "m.params"
    assert store.get("obs://my-bucket/models/model.params", out).files == 1
    assert out.read_bytes() == src.read_bytes()
    assert store.get("obs://my-bucket/models/model.params", out) == TransferStats(files=0, skipped=1, bytes=0)
    # a file put to a prefix keeps its name
    store.put(src, "obs://my-bucket/other/")
    assert store.list("obs://my-bucket/other/") == ["obs://my-bucket/other/model.params"]
    assert store.buckets() == ["my-bucket"]


def test_folder_round_trip_with_progress(store: LocalObjectStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "data")
    seen: list[tuple[int, int, str]] = []
    stats = store.put(src, "obs://bkt/run1/data", progress=lambda *a: seen.append(a))
    assert (stats.files, stats.skipped) == (3, 0)
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert store.list("obs://bkt/run1/") == [
        "obs://bkt/run1/data/a.txt", "obs://bkt/run1/data/sub/b.bin", "obs://bkt/run1/data/sub/deep/c.txt"]
    assert store.list("obs://bkt/") == store.list("obs://bkt")
    out = tmp_path / "out"
    assert store.get("obs://bkt/run1/data/", out).files == 3
    assert all_files(out) == all_files(src)
    for rel in all_files(src):
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    (out / "a.txt").write_bytes(b"edited locally")
    assert store.get("obs://bkt/run1/data", out) == TransferStats(files=1, skipped=2, bytes=5)
    assert (out / "a.txt").read_bytes() == b"alpha"


def test_unchanged_files_skipped_changed_reuploaded(store: LocalObjectStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "data")
    store.put(src, "obs://bkt/d/")
    assert store.put(src, "obs://bkt/d/") == TransferStats(files=0, skipped=3, bytes=0)
    (src / "sub/b.bin").write_bytes(b"new content")
    assert store.put(src, "obs://bkt/d/") == TransferStats(files=1, skipped=2, bytes=11)
    assert store.path_for("obs://bkt/d/sub/b.bin").read_bytes() == b"new content"
    # the object vanished behind the manifest's back: uploaded again, not trusted
    store.path_for("obs://bkt/d/a.txt").unlink()
    assert store.put(src, "obs://bkt/d/").files == 1
    # edited in the store (same size): the manifest no longer matches, so not skipped
    store.path_for("obs://bkt/d/a.txt").write_bytes(b"ALPHA")
    os.utime(store.path_for("obs://bkt/d/a.txt"), (1, 1))
    assert store.put(src, "obs://bkt/d/").files == 1
    assert store.path_for("obs://bkt/d/a.txt").read_bytes() == b"alpha"
    with closing(sqlite3.connect(store.manifest_path)) as db:
        rows = db.execute("SELECT key, size FROM objects ORDER BY key").fetchall()
    assert rows == [("d/a.txt", 5), ("d/sub/b.bin", 11), ("d/sub/deep/c.txt", 500)]


def test_atomic_writes_leave_no_temp_files(store: LocalObjectStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "data")
    store.put(src, "obs://bkt/d/")
    store.get("obs://bkt/d/", tmp_path / "out")
    on_disk = [p.name for p in (tmp_path / "root").rglob("*")] + [p.name for p in (tmp_path / "out").rglob("*")]
    assert not [n for n in on_disk if n.startswith(".tmp-")]
    # a writer killed mid-copy leaves its temp file: never listed, swept by delete
    leftover = store.path_for("obs://bkt/d/sub/") / ".tmp-crashed123"
    leftover.write_bytes(b"half an obj")
    assert ".tmp-crashed123" not in " ".join(store.list("obs://bkt/"))
    assert len(store.list("obs://bkt/d/")) == 3
    assert store.delete("obs://bkt/d/") == 3
    assert not leftover.exists() and not store.path_for("obs://bkt/d/").exists()
    # an empty folder that holds only a crashed writer's leftovers does not "exist"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x")
    assert not store.exists("obs://bkt/d/") and store.list("obs://bkt/d/") == []
    with pytest.raises(UserError):
        store.put(tmp_path / "data/a.txt", "obs://bkt/d/.tmp-sneaky")


@pytest.mark.parametrize("uri", [
    "obs://b/../x", "obs://b//etc/passwd", "obs://b/a/../../x",
    "obs://bkt/../x", "obs://bkt//etc/passwd", "obs://bkt/a/../../x", "obs://bkt/a/./b",
    "obs://bkt/a\\..\\b", "obs://bkt/a\x00b", "obs://bkt/a//b",
])
def test_escaping_keys_refused(store: LocalObjectStore, tmp_path: Path, uri: str) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    for call in (lambda: store.put(src, uri), lambda: store.path_for(uri), lambda: store.delete(uri)):
        with pytest.raises(UserError) as err:
            call()
        assert repr(uri)[1:-1] in str(err.value) or uri in str(err.value)
    assert not (tmp_path / "x").exists() and not (tmp_path / "root/x").exists()


@pytest.mark.parametrize("uri", [
    "obs://ab/k", "obs://" + "a" * 64 + "/k", "obs://My-Bucket/k", "obs://bad_name/k", "obs://-abc/k",
    "obs://abc-/k", "obs://a..b/k", "obs://192.168.1.1/k", "obs:///k", "http://bkt/k", "bkt/k",
])
def test_bad_bucket_names_and_schemes_refused(store: LocalObjectStore, uri: str) -> None:
    with pytest.raises(UserError) as err:
        store.parse(uri)
    assert uri in str(err.value)


def test_parse_and_valid_buckets(store: LocalObjectStore) -> None:
    assert store.parse("obs://abc/x/y.txt") == ("abc", "x/y.txt")
    assert store.parse("obs://a.b-c/") == ("a.b-c", "")
    assert store.parse("obs://" + "a" * 63) == ("a" * 63, "")
    assert store.parse("s3://abc/x/") == ("abc", "x/")


def test_missing_local_path_and_missing_object(store: LocalObjectStore, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        store.put(tmp_path / "nope", "obs://bkt/x")
    with pytest.raises(UserError, match="obs://bkt/x"):
        store.get("obs://bkt/x", tmp_path / "y")
    with pytest.raises(UserError):
        store.info("obs://bkt/x")


def test_object_folder_name_clash_is_a_user_error(store: LocalObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    store.put(src, "obs://bkt/a")
    with pytest.raises(UserError, match="share a name"):
        store.put(src, "obs://bkt/a/b")


def test_delete_idempotent_counts_and_prunes(store: LocalObjectStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "data")
    store.put(src, "obs://bkt/r1/")
    store.put(src, "obs://bkt/r2/")
    assert store.delete("obs://bkt/r1/sub/deep/c.txt") == 1
    assert not store.path_for("obs://bkt/r1/sub/deep/").exists()  # empty parent pruned
    assert store.path_for("obs://bkt/r1/sub/").is_dir()
    assert store.delete("obs://bkt/r1/sub/deep/c.txt") == 0
    assert store.delete("obs://bkt/r1") == 2  # a folder named without the slash
    assert store.delete("obs://bkt/r1/") == 0
    assert store.delete("obs://nobucket/r1/") == 0
    assert store.list("obs://bkt/") == [f"obs://bkt/r2/{f}" for f in all_files(src)]
    assert store.delete("obs://bkt/") == 3
    assert store.list("obs://bkt/") == [] and store.buckets() == ["bkt"]
    with closing(sqlite3.connect(store.manifest_path)) as db:
        assert db.execute("SELECT COUNT(*) FROM objects").fetchone() == (0,)


def test_s3_is_a_synonym(store: LocalObjectStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "data")
    store.put(src, "s3://bkt/x/")
    assert store.path_for("s3://bkt/x/a.txt") == store.path_for("obs://bkt/x/a.txt")
    assert store.list("s3://bkt/x/sub/deep/") == ["s3://bkt/x/sub/deep/c.txt"]
    assert store.list("obs://bkt/x/sub/deep/") == ["obs://bkt/x/sub/deep/c.txt"]
    assert store.put(src, "obs://bkt/x/").skipped == 3
    assert store.delete("S3://bkt/x/") == 3


def _upload(root: str, src: str, uri: str, queue, barrier) -> None:
    barrier.wait(30)  # start together, so the writes really interleave
    stats = LocalObjectStore(Path(root)).put(Path(src), uri)
    queue.put((stats.files, stats.skipped))


def test_concurrent_puts_from_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    srcs = []
    for i in range(2):
        src = tmp_path / f"data{i}"
        for j in range(20):
            (src / f"d{j % 3}").mkdir(parents=True, exist_ok=True)
            (src / f"d{j % 3}" / f"f{j}.bin").write_bytes(f"{i}-{j}".encode() * 500)
        srcs.append(src)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    # one distinct prefix each, plus both writing the same content to one shared prefix
    jobs = [(srcs[0], "obs://bkt/p0/"), (srcs[1], "obs://bkt/p1/"), (srcs[0], "obs://bkt/shared/"),
            (srcs[0], "obs://bkt/shared/")]
    barrier = ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=_upload, args=(str(root), str(s), u, queue, barrier)) for s, u in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    results = [queue.get(timeout=5) for _ in procs]
    assert all(files + skipped == 20 for files, skipped in results)
    store = LocalObjectStore(root)
    assert len(store.list("obs://bkt/")) == 60
    for name, src in (("p0", srcs[0]), ("p1", srcs[1]), ("shared", srcs[0])):
        for rel in all_files(src):
            assert store.path_for(f"obs://bkt/{name}/{rel}").read_bytes() == (src / rel).read_bytes()
            assert store.info(f"obs://bkt/{name}/{rel}")[1] == hashlib.sha256((src / rel).read_bytes()).hexdigest()
    assert not [p for p in root.rglob(".tmp-*")]
