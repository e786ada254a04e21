"""Hostile input and faults against the command line (issue 12): a live run is never
cleaned from under its owner, hostile pipeline files get one message and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from orchestrator.errors import UserError
from orchestrator.yamlsource import MAX_BYTES, load_with_lines
from pipelines import cli, fake_job, tiny_pipeline
from test_interruptions import job_worker, start_run, wait_for


@pytest.mark.slow
def test_cleanup_of_a_live_run_refuses_unless_forced_then_stops_it_first(tmp_path):
    job = fake_job(tmp_path, "print('training', flush=True); time.sleep(120)")
    path = tiny_pipeline(tmp_path, train={"code_dir": str(job), "hyperparameters": {}})
    proc = start_run(path, tmp_path)
    try:
        worker = wait_for(lambda: job_worker(tmp_path / "state"), 90, "the job to run")
        run_id = json.loads(cli("status", "--json", cwd=tmp_path).stdout)[0]["run_id"]
        refused = cli("cleanup", "--run", run_id, cwd=tmp_path)
        assert refused.returncode == 2 and "still running" in refused.stderr and "--force" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert proc.poll() is None and psutil.pid_exists(worker)        # nothing touched
        forced = cli("cleanup", "--run", run_id, "--force", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        report = json.loads(proc.communicate(timeout=60)[0])
        assert report["status"] == "interrupted" and report["steps"]["teardown"]["status"] == "succeeded"
        assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
        assert json.loads(cli("cleanup", "--dry-run", "--json", cwd=tmp_path).stdout) == []
    finally:
        proc.kill()
        cli("cleanup", cwd=tmp_path)


# -- hostile pipeline files -------------------------------------------------------------------

def alias_bomb(levels: int = 9) -> str:
    lines, prev = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for name in "bcdefghijk"[:levels - 1]:
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (alias_bomb(), "expands to more than"),
    "alias inside itself": ("a: &a [1, *a]\n", "refers to a value that contains it"),
    "mapping inside itself": ("a: &a {b: *a}\n", "refers to a value that contains it"),
    "900 levels of flow lists": ("a: " + "[" * 900 + "]" * 900 + "\n", "levels deep"),
    "100 levels of block mappings": ("".join(" " * i + f"k{i}:\n" for i in range(100)) + " " * 100 + "v: 1\n",
                                     "levels deep"),
    "5000-digit integer": ("a: " + "9" * 5000 + "\n", "cannot read the value"),
    "over the size limit": ("a: " + "x" * (MAX_BYTES + 10) + "\n", "at most"),
    "not UTF-8": (b"a: \xff\xfe\n", "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_one_user_error(tmp_path, name):
    content, expected = HOSTILE[name]
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as err:
        load_with_lines(path)
    assert expected in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_special_files_are_refused_without_reading_them(tmp_path, kind):
    path = tmp_path / "pipeline.yaml"
    if kind == "fifo":
        os.mkfifo(path)      # reading it would block forever: no writer ever comes
    elif kind == "folder":
        path.mkdir()
    else:
        path = Path("/dev/zero")   # reading it would never end
    with pytest.raises(UserError, match="not a regular file"):
        load_with_lines(path)


def test_validate_exits_2_with_one_line_for_a_hostile_file(tmp_path):
    (tmp_path / "pipeline.yaml").write_text(alias_bomb())
    result = cli("validate", "pipeline.yaml", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "expands to more than" in result.stderr


@pytest.mark.slow
def test_cleanup_stops_a_data_tool_the_killed_run_left_running(tmp_path):
    path = tiny_pipeline(tmp_path, data={"generate": {"classes": 3, "images_per_class": 4000, "seed": 1,
                                                      "min_size": 40, "max_size": 80}})
    env = {**os.environ, "ORCHESTRATOR_FAILPOINT": "prepare:tool"}   # SIGKILL while the generator runs
    killed = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path), "--json"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=120)
    assert killed.returncode == -9, killed.stderr
    state = tmp_path / "state"

    def tools():
        return [p for p in psutil.process_iter(["cmdline"]) if any(str(state) in c for c in p.info["cmdline"] or [])]

    try:
        assert tools(), "the generator outlives its orchestrator until cleanup"
        result = cli("cleanup", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert tools() == []
        assert not any((state / "tmp").iterdir())
        assert "cleaned" in cli("status", cwd=tmp_path).stdout
    finally:
        for proc in tools():
            proc.kill()


def test_validate_and_plan_read_regular_files_only_and_report_the_rest(tmp_path):
    code = fake_job(tmp_path, "print('hi')")
    (code / "gone.py").symlink_to(tmp_path / "missing.py")   # broken symlink: used to be a traceback
    (code / "zeros").symlink_to("/dev/zero")                 # would be read forever
    os.mkfifo(code / "pipe")                                 # would block forever
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code), "hyperparameters": {}})
    assert cli("validate", str(path), cwd=tmp_path, timeout=60).returncode == 0
    result = cli("plan", str(path), "--json", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    note = next(n for n in json.loads(result.stdout)["notes"] if "not a regular file" in n)
    assert "gone.py" in note and "zeros" in note and "pipe" in note


def test_job_code_staging_skips_what_is_not_a_file(tmp_path):
    from orchestrator.backends.staging import stage_code
    code = fake_job(tmp_path, "print('hi')")
    (code / "gone.py").symlink_to(tmp_path / "missing.py")
    os.mkfifo(code / "pipe")
    target = stage_code(code, [], tmp_path / "staged")
    assert sorted(p.name for p in target.iterdir()) == ["train.py"]


def one_class_folder(tmp_path: Path) -> Path:
    import cv2
    import numpy as np
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((20, 20, 3), 60 * i, np.uint8))
    return folder.parent


@pytest.mark.parametrize("case", ["one class", "infinite duration", "nan duration"])
def test_validate_refuses_what_cannot_work(tmp_path, case):
    sections = {"one class": {"data": {"source": str(one_class_folder(tmp_path)), "generate": None}},
                "infinite duration": {"train": {"max_runtime": float("inf")}},
                "nan duration": {"service": {"ttl": float("nan")}}}[case]   # YAML: .inf, .nan
    result = cli("validate", str(tiny_pipeline(tmp_path, **sections)), cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert ("found 1 folders" if case == "one class" else "at most a year") in result.stderr


def test_plan_warns_when_the_predictor_listens_beyond_loopback(tmp_path):
    path = tiny_pipeline(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["profiles"]["local"]["predictor_host"] = "0.0.0.0"
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = cli("plan", str(path), "--json", cwd=tmp_path, timeout=60, env={"PREDICTOR_AUTH_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    assert any("0.0.0.0" in n and "PREDICTOR_AUTH_TOKEN" in n for n in json.loads(result.stdout)["notes"])
