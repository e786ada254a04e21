"""The custom image's build context against ModelArts' custom-image specifications, and its
boot programs run as real processes with the paths, environment and port the image
promises (container paths mapped under tmp_path: there is no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from orchestrator.errors import UserError
from orchestrator.image import dockerfile, layout
from orchestrator.image.context import build_context
from orchestrator.image.local import HostImage

from cloud import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "predictor"


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "context"
    build_context(path)
    return path


def test_dockerfile_meets_the_custom_image_specification(context):
    image = dockerfile.read(context / "Dockerfile")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image.base)        # a pinned tag, never latest
    assert image.user == layout.USER and image.workdir == layout.HOME
    assert image.expose == [8080] and image.env["SERVE_PORT"] == "8080" and image.env["SERVE_HOST"] == "0.0.0.0"
    assert image.stopsignal == "SIGTERM"
    assert image.env["HOME"] == "/home/ma-user" and image.env["MODEL_DIR"] == "/home/mind/model"
    useradd = next(shlex.split(part) for run in image.runs for part in run.split("&&") if "useradd" in part)
    assert useradd[useradd.index("-u") + 1] == "1000" and useradd[useradd.index("-g") + 1] == "100"
    assert useradd[-1] == "ma-user" and useradd[useradd.index("-d") + 1] == "/home/ma-user"
    for src, _ in image.copies:                                                  # every COPY source is in the context
        assert (context / src).exists(), src
    host = HostImage(context, context.parent / "root")
    assert host.default_command[1] == str(context / "boot" / "run_serve.sh")
    assert os.access(host.default_command[1], os.X_OK) and os.access(host.path(layout.TRAIN_BOOT), os.X_OK)
    paths = host.env()["PYTHONPATH"].split(":")                                 # the runtime and its shims
    assert any((Path(p) / "orchestrator" / "image" / "serve.py").is_file() for p in paths)
    assert any((Path(p) / "mms" / "model_service").is_dir() and (Path(p) / "moxing").is_dir() for p in paths)


def test_requirements_are_pinned_and_match_the_project(context):
    cpu = (context / "requirements.txt").read_text().split()
    gpu = (context / "requirements-cu112.txt").read_text().split()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.+-]*", line) for line in cpu + gpu)
    pins = dict(line.lower().split("==") for line in cpu)
    assert pins["mxnet"] == "1.9.1" and tuple(map(int, pins["numpy"].split(".")[:2])) < (1, 24)
    assert tuple(map(int, pins["opencv-python-headless"].split(".")[:2])) < (4, 12)
    assert {"fastapi", "httptools", "uvloop", "psutil", "pillow"} <= set(pins)
    assert "mxnet-cu112==1.9.1" in gpu and not any(line.startswith("mxnet==") for line in gpu)
    cuda = dockerfile.read(context / "Dockerfile.cu112")
    assert cuda.base.startswith("nvidia/cuda:11.2") and "requirements-cu112.txt" in [s for s, _ in cuda.copies]
    assert (cuda.user, cuda.expose, cuda.cmd) == (layout.USER, [8080], dockerfile.read(context / "Dockerfile").cmd)


def test_build_context_never_overwrites_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a build context"):
        build_context(tmp_path / "mine")
    with pytest.raises(UserError, match="is a file, not a folder"):
        build_context(tmp_path / "mine" / "notes.txt")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    build_context(tmp_path / "ctx", base="python:3.11.7-slim-bookworm")
    (tmp_path / "ctx" / "app" / "stale.txt").write_text("old")
    build_context(tmp_path / "ctx")                                              # its own context: rewritten whole
    assert not (tmp_path / "ctx" / "app" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx", "mine"]         # no temporary folder left


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            resp = requests.get(url + layout.HEALTH_URL, timeout=2)
            if resp.status_code == 200:
                return resp.json()
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError("the serving boot never became healthy")


def test_serving_boot_serves_the_mounted_model_and_drains_on_sigterm(context, tmp_path):
    host = HostImage(context, tmp_path / "root")
    mount = host.path(layout.MODEL_DIR)
    shutil.copytree(FIXTURES / "echo", mount)
    config = json.loads((mount / "config.json").read_text())
    (mount / "config.json").write_text(json.dumps({**config, "model_type": "Image", "health": layout.health_config()}))
    port = free_port()
    host.make_home()
    proc = subprocess.Popen(host.default_command, env=host.env(SERVE_HOST="127.0.0.1", SERVE_PORT=str(port)),
                            cwd=host.path(layout.HOME), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        assert _wait_health(url, proc) == {"health": "true"}
        answer = requests.post(url + "/", json={"hello": 1}, timeout=30).json()
        assert answer["data"] == {"hello": 1} and answer["token_visible"] is False
        started = tmp_path / "started"
        slow: dict = {}
        thread = threading.Thread(target=lambda: slow.update(resp=requests.post(
            url + "/", json={"sleep": 1.5, "touch": str(started)}, timeout=30)))
        thread.start()
        while not started.exists():
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)                      # the pid is the predictor's: the boot exec'd it
        thread.join(30)
        assert slow["resp"].status_code == 200                # the in-flight request finished
        assert proc.wait(30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(url + layout.HEALTH_URL, timeout=2)
        assert "serving" in proc.stdout.read()                 # logs on standard output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serving_boot_refuses_a_package_the_image_cannot_serve(context, tmp_path):
    host = HostImage(context, tmp_path / "root")
    mount = host.path(layout.MODEL_DIR)
    shutil.copytree(FIXTURES / "echo", mount)
    config = json.loads((mount / "config.json").read_text())
    config["apis"][0]["url"] = "/predict"
    (mount / "config.json").write_text(json.dumps(config))
    host.make_home()
    result = subprocess.run(host.default_command, env=host.env(SERVE_PORT=str(free_port())),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "serves the model at '/' only" in result.stdout


TRAIN_SCRIPT = '''
import argparse, json, os, sys, time
import moxing as mox                          # the image's runtime shims are importable
from mms.model_service.mxnet_model_service import MXNetBaseService
p = argparse.ArgumentParser()
p.add_argument("--data_url"); p.add_argument("--train_url"); p.add_argument("--exit", type=int, default=0)
p.add_argument("--sleep", type=float, default=0)
args, _ = p.parse_known_args()
seen = {"cwd": os.getcwd(), "argv": sys.argv[1:], "job_dir": os.environ.get("MA_JOB_DIR"),
        "data": sorted(os.listdir(args.data_url)), "before": sorted(os.listdir(args.train_url))}
with open(os.path.join(args.train_url, "seen.json"), "w") as fh:
    json.dump(seen, fh)
print("training", flush=True)
time.sleep(args.sleep)
sys.exit(args.exit)
'''


def _train(host: HostImage, store: Path, *args: str, wait: bool = True):
    env = host.env(ORCHESTRATOR_OBS_ROOT=str(store))
    cmd = host.command(layout.train_command("mini/train.py")) + list(args)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc if not wait else (proc.wait(60), proc.stdout.read())


def test_training_boot_fetches_code_runs_the_boot_file_and_uploads_outputs(context, tmp_path):
    host = HostImage(context, tmp_path / "root")
    store = tmp_path / "store"
    bucket = store / "obs" / "bkt"
    (bucket / "code" / "mini").mkdir(parents=True)
    (bucket / "code" / "mini" / "train.py").write_text(TRAIN_SCRIPT)
    (bucket / "data").mkdir()
    (bucket / "data" / "x.rec").write_bytes(b"records")
    (bucket / "weights.params").write_bytes(b"pretrained")
    (bucket / "out").mkdir()
    (bucket / "out" / "ckpt-0001.params").write_bytes(b"earlier")     # an earlier attempt's checkpoint
    host.make_home()
    urls = ["--data_url=obs://bkt/data/", "--train_url=obs://bkt/out/", "--lr=0.1",
            "--pretrained=obs://bkt/weights.params"]
    code, log = _train(host, store, *urls)
    assert code == 2 and "boot file" in log and "not found" in log          # no code folder, no --code-url

    cmd_args = ["--code-url", "obs://bkt/code/mini/"]
    env = host.env(ORCHESTRATOR_OBS_ROOT=str(store))
    boot = host.command(layout.train_command("mini/train.py"))
    result = subprocess.run(boot[:2] + cmd_args + boot[2:] + urls, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    seen = json.loads((bucket / "out" / "seen.json").read_text())
    home = host.path(layout.HOME)
    assert seen["cwd"] == str(home) and seen["job_dir"] == str(host.path(layout.JOB_DIR))
    assert seen["argv"] == [f"--data_url={home}/modelarts/inputs/data_url_0/",
                            f"--train_url={home}/modelarts/outputs/train_url_0/", "--lr=0.1",
                            f"--pretrained={home}/modelarts/inputs/pretrained_0/weights.params"]
    assert seen["data"] == ["x.rec"] and seen["before"] == ["ckpt-0001.params"]

    code, log = _train(host, store, *urls, "--exit=3")                  # the code folder is there now
    assert code == 3 and "exited with code 3" in log
    (bucket / "out" / "seen.json").unlink()
    proc = _train(host, store, *urls, "--sleep=30", wait=False)
    while proc.stdout.readline() not in ("training\n", ""):
        pass
    proc.send_signal(signal.SIGTERM)                                     # passed on; outputs still uploaded
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert (bucket / "out" / "seen.json").is_file()


def test_dockerfile_reader_and_emulator_image_list_name_what_is_wrong(tmp_path):
    image = dockerfile.parse('FROM base:1\nWORKDIR /app\nCOPY --chown=1:1 a/ b/ ./\nENV A=1 \\\n  B="$A x"\n'
                             'CMD python -m x\n')
    assert image.copies == [("a/", "/app"), ("b/", "/app")] and image.env == {"A": "1", "B": "1 x"}
    assert image.cmd == ["/bin/sh", "-c", "python -m x"]
    with pytest.raises(ValueError, match="line 2: CMD is not valid JSON"):
        dockerfile.parse('FROM x:1\nCMD ["a", \n')
    with pytest.raises(ValueError, match="line 1: the Dockerfile ends inside a continued instruction"):
        dockerfile.parse("RUN a \\\n")
    from orchestrator.emulator.images import parse
    with pytest.raises(ValueError, match="write SWR_URL=CONTEXT_DIR"):
        parse(["swr.x.com/org/name"])
    with pytest.raises(ValueError, match="has no Dockerfile"):
        parse([f"swr.x.com/org/name:1={tmp_path}"])


BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}    # in python:3.11-slim-bookworm already


def test_the_image_installs_every_system_library_the_pinned_wheels_link(context):
    """ldd of every shared object of the pinned packages: what their wheels do not bundle must
    come from a Debian package the Dockerfile installs (or the slim base has), else `import
    mxnet` fails in the image. This machine runs the base's Debian, so dpkg names the package."""
    if shutil.which("dpkg") is None or shutil.which("ldd") is None:
        pytest.skip("needs dpkg and ldd (Debian), as in the image's base")
    from importlib import metadata
    installed = {tok for run in dockerfile.read(context / "Dockerfile").runs if "apt-get install" in run
                 for tok in shlex.split(run.split("apt-get install", 1)[1].split("&&")[0]) if not tok.startswith("-")}
    objects = [str(dist.locate_file(f)) for line in (context / "requirements.txt").read_text().split()
               for dist in [metadata.distribution(line.split("==")[0])] for f in dist.files or [] if ".so" in f.name]
    needed: dict[str, str] = {}
    user = ""
    for row in subprocess.run(["ldd", *objects], capture_output=True, text=True).stdout.splitlines():
        if not row.startswith(("\t", " ")):
            user = Path(row.rstrip(":")).name          # ldd of several files: a header per file
        for lib in re.findall(r"=> (/\S+)", row):
            if "site-packages" not in lib:
                needed.setdefault(lib, user)
    owners = {}
    for lib, user in needed.items():
        found = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if found.returncode != 0:
            found = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        assert found.returncode == 0, f"{lib} (needed by {user}) belongs to no Debian package"
        owners[found.stdout.split(":")[0]] = user
    assert owners.get("libgomp1") == "libmxnet.so", "libmxnet.so links OpenMP: the check must see it"
    missing = {pkg: user for pkg, user in owners.items() if pkg not in installed | BASE_PACKAGES}
    assert not missing, f"the Dockerfile does not install {missing}"
