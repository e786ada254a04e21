"""The ``moxing`` shim (orchestrator/runtime/moxing): obs:// paths on the local store's disk."""

import importlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.backends.base import JobSpec
from orchestrator.backends.local.backend import LocalBackend
from orchestrator.backends.local.storage import LocalObjectStore

RUNTIME = Path(__file__).resolve().parents[1] / "orchestrator" / "runtime"
RUN = "261123-120000-moxe"


@pytest.fixture
def mox(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_OBS_ROOT", str(tmp_path / "root"))
    monkeypatch.syspath_prepend(str(RUNTIME))
    for name in [m for m in sys.modules if m == "moxing" or m.startswith("moxing.")]:
        del sys.modules[name]
    return importlib.import_module("moxing")


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "root")


def test_shim_does_not_import_orchestrator_and_both_import_styles_work(tmp_path):
    script = textwrap.dedent("""
        import sys
        import moxing as mox
        import moxing.mxnet as mox2
        assert mox2.file is mox.file
        mox.file.write('obs://bkt/a/b.txt', 'hi')
        assert mox2.file.read('s3://bkt/a/b.txt') == 'hi'
        assert mox.file.shift('os', 'mox') is None
        print(sorted(m for m in sys.modules if m.split('.')[0] == 'orchestrator'))
    """)
    env = {**os.environ, "PYTHONPATH": str(RUNTIME), "ORCHESTRATOR_OBS_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "obs" / "bkt" / "a" / "b.txt").read_text() == "hi"


def test_unset_root_is_a_clear_error(tmp_path):
    script = ("import moxing as mox\n"
              "try:\n    mox.file.exists('obs://bkt/x')\n"
              "except mox.ObsRootNotSetError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_OBS_ROOT"}
    env["PYTHONPATH"] = str(RUNTIME)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ORCHESTRATOR_OBS_ROOT" in out.stdout


def test_round_trips_local_and_obs(mox, tmp_path):
    f = mox.file
    local = tmp_path / "in.bin"
    local.write_bytes(b"\x00\x01payload")
    f.copy(str(local), "obs://bkt/dir/in.bin")
    assert f.read("obs://bkt/dir/in.bin", binary=True) == b"\x00\x01payload"
    f.copy("obs://bkt/dir/in.bin", "s3://bkt/other/copy.bin")
    f.copy("s3://bkt/other/copy.bin", str(tmp_path / "back" / "out.bin"))
    assert (tmp_path / "back" / "out.bin").read_bytes() == b"\x00\x01payload"
    f.write("obs://bkt/t.txt", "héllo")
    assert f.read("obs://bkt/t.txt") == "héllo"
    f.append("obs://bkt/t.txt", "!")
    assert f.read("obs://bkt/t.txt") == "héllo!"
    f.rename("obs://bkt/t.txt", "obs://bkt/moved/t.txt")
    assert not f.exists("obs://bkt/t.txt") and f.read("obs://bkt/moved/t.txt") == "héllo!"
    assert f.glob("obs://bkt/*/*.bin") == ["obs://bkt/dir/in.bin", "obs://bkt/other/copy.bin"]


def test_copy_parallel_list_exists_remove(mox, tmp_path):
    f = mox.file
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    (src / "sub" / "deep" / "c.txt").write_text("c")
    f.copy_parallel(str(src), "obs://bkt/data/")
    assert f.list_directory("obs://bkt/data") == ["a.txt", "sub"]
    assert f.list_directory("obs://bkt/data/", recursive=True) == \
        ["a.txt", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.txt"]
    assert f.is_directory("obs://bkt/data/sub") and not f.is_directory("obs://bkt/data/a.txt")
    f.copy_parallel("obs://bkt/data", "obs://bkt/copy")          # obs -> obs
    f.copy_parallel("obs://bkt/copy", str(tmp_path / "dst"))     # obs -> local
    assert (tmp_path / "dst" / "sub" / "deep" / "c.txt").read_text() == "c"
    assert f.exists("obs://bkt/copy/sub/b.txt")
    f.remove("obs://bkt/copy/sub/b.txt")
    assert not f.exists("obs://bkt/copy/sub/b.txt")
    with pytest.raises(IsADirectoryError):
        f.remove("obs://bkt/copy")
    f.remove("obs://bkt/copy", recursive=True)
    assert not f.exists("obs://bkt/copy")
    f.make_dirs("obs://bkt/empty/x")
    assert f.is_directory("obs://bkt/empty/x") and f.list_directory("obs://bkt/empty/x") == []


def test_file_writes_land_atomically_on_close(mox, tmp_path):
    f = mox.file
    target = tmp_path / "root" / "obs" / "bkt" / "model.params"
    f.write("obs://bkt/model.params", b"old", binary=True)
    with f.File("obs://bkt/model.params", "wb") as fh:
        fh.write(b"new-")
        assert target.read_bytes() == b"old", "nothing visible before close"
        assert any(p.name.startswith(".tmp-") for p in target.parent.iterdir())
        assert f.list_directory("obs://bkt") == ["model.params"], "temp files are not listed"
        fh.write(b"content")
    assert target.read_bytes() == b"new-content"
    with pytest.raises(RuntimeError):
        with f.File("obs://bkt/model.params", "wb") as fh:
            fh.write(b"half")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"new-content", "a failed write leaves the old object"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.params"], "temp file cleaned up"
    with f.File("obs://bkt/log.txt", "w") as fh:
        fh.write("line1\n")
    with f.File("obs://bkt/log.txt", "a") as fh:
        fh.write("line2\n")
    with f.File("obs://bkt/log.txt") as fh:
        assert list(fh) == ["line1\n", "line2\n"]


@pytest.mark.parametrize("uri", ["obs://bkt/../escape.txt", "obs://bkt/a/../../x", "obs://bkt//abs",
                                 "obs://bkt/a\\b", "obs://BAD_bucket/x", "obs://bkt/.tmp-x/y"])
def test_escaping_keys_are_refused(mox, tmp_path, uri):
    with pytest.raises(mox.MoxPathError):
        mox.file.write(uri, "x")
    assert not (tmp_path / "root" / "escape.txt").exists()
    assert not (tmp_path / "root" / "x").exists()


def test_copy_parallel_refuses_local_names_that_make_bad_keys(mox, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a\\b.txt").write_text("x")
    with pytest.raises(mox.MoxPathError):
        mox.file.copy_parallel(str(src), "obs://bkt/data/")
    assert not mox.file.exists("obs://bkt/data")


def test_interoperates_with_the_local_object_store(mox, store, tmp_path):
    f = mox.file
    src = tmp_path / "up.txt"
    src.write_text("from store")
    store.put(str(src), "obs://bkt/in/up.txt")
    assert f.read("obs://bkt/in/up.txt") == "from store"
    f.write("obs://bkt/out/res.txt", "from mox")
    assert store.list("obs://bkt/out/") == ["obs://bkt/out/res.txt"]
    store.get("obs://bkt/out/res.txt", str(tmp_path / "res.txt"))
    assert (tmp_path / "res.txt").read_text() == "from mox"
    # Overwrites of objects the manifest knows, same size, in quick succession: the store
    # must notice each (size + mtime check) and serve the new content, never a stale hash.
    for i in range(20):
        src.write_text(f"store {i:04d}")
        store.put(str(src), "obs://bkt/in/up.txt")
        f.write("obs://bkt/in/up.txt", f"moxin {i:04d}")
        store.get("obs://bkt/in/up.txt", str(tmp_path / "got.txt"))
        assert (tmp_path / "got.txt").read_text() == f"moxin {i:04d}"
        assert store.info("obs://bkt/in/up.txt")[0] == 10


def test_modelarts_style_training_script_runs_as_a_local_job(tmp_path):
    backend = LocalBackend(tmp_path / "root")
    data = tmp_path / "data"
    (data / "imgs").mkdir(parents=True)
    (data / "train.rec").write_bytes(b"r" * 100)
    (data / "imgs" / "0.jpg").write_bytes(b"j" * 7)
    backend.storage.put(str(data), "obs://b-in/x/data/")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(textwrap.dedent("""
        import argparse, json, os
        import moxing as mox

        parser = argparse.ArgumentParser()
        parser.add_argument('--data_url', required=True)
        parser.add_argument('--train_url', required=True)
        args, _ = parser.parse_known_args()
        cache = os.path.join(os.getcwd(), 'cache', 'data')
        mox.file.copy_parallel(args.data_url, cache)
        files = mox.file.list_directory(args.data_url, recursive=True)
        size = sum(os.path.getsize(os.path.join(cache, n)) for n in files if os.path.isfile(os.path.join(cache, n)))
        mox.file.write(os.path.join(args.train_url, 'result.txt'),
                       json.dumps({'files': files, 'bytes': size, 'data_url': args.data_url}))
        print('trained')
    """))
    spec = JobSpec(name=f"t-{RUN}-train", run_id=RUN, code_dir=str(code), boot_file="train.py",
                   data_url="obs://b-in/x/data/", train_url="obs://b-in/x/output/",
                   hyperparameters=(("data_url", "obs://b-in/x/data/"), ("train_url", "obs://b-in/x/output/")))
    ref = backend.submit_job(spec)
    deadline = time.time() + 60
    while not (state := backend.job_status(ref)).terminal and time.time() < deadline:
        time.sleep(0.1)
    assert state.phase == "Completed", (state.reason, backend.job_logs(ref)[0])
    assert backend.storage.list("obs://b-in/x/output/") == ["obs://b-in/x/output/result.txt"]
    backend.storage.get("obs://b-in/x/output/result.txt", str(tmp_path / "result.txt"))
    result = json.loads((tmp_path / "result.txt").read_text())
    assert result == {"files": ["imgs", "imgs/0.jpg", "train.rec"], "bytes": 107,
                      "data_url": "obs://b-in/x/data/"}


def test_overwrite_within_one_clock_tick_still_changes_the_mtime(mox, store, tmp_path):
    # Simulate a coarse clock: the store's object carries an mtime at or after "now".
    src = tmp_path / "s.txt"
    src.write_text("store 0001")
    store.put(str(src), "obs://bkt/k")
    path = tmp_path / "root" / "obs" / "bkt" / "k"
    future = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(future, future))
    store.info("obs://bkt/k")                     # the manifest now holds that mtime
    mox.file.write("obs://bkt/k", "moxin 0001")   # same size
    assert path.stat().st_mtime_ns > future
    store.get("obs://bkt/k", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "moxin 0001"
