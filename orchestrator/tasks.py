"""What a task is (``data.task`` of pipeline.yaml), in one descriptor per task: the project's
job and inference folders, the model algorithm, the files shipped with the job's code, and
the data tools that prepare its data. A new task is one descriptor here plus one job folder.

Pure data and small functions: nothing runs here. ``plan.py`` reads the descriptors to
decide a run, ``pipeline.py`` runs the tools the plan lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / "jobs" / "data"        # the data tools (python -m jobs.data.<tool>)
COMMON = ("jobs/__init__.py", "jobs/common")    # jobs.common: what every project job imports


@dataclass(frozen=True)
class DataTool:
    """One data tool run of the prepare step: ``python -m <module> <args>`` in REPO_ROOT."""
    title: str
    module: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    name: str
    job_dir: str                     # the project's training code, relative to REPO_ROOT
    inference_dir: str               # its customize_service.py and config.json
    model_algorithm: str
    shipped: tuple[str, ...]         # files and folders of REPO_ROOT the job imports, shipped at the
                                     # same relative path inside its code folder (ModelArts gets only that)
    generate_section: str            # the data.<section> of pipeline.yaml that sets the generator
    tools: Callable                  # (DataPlan) -> tuple[DataTool, ...]: the prepare step's commands
    describe: Callable               # (DataPlan) -> tuple[str, ...]: what the prepare step does, for `plan`


# The functions below see a data plan (plan.DataPlan) whose mode is "generate" or "pack":
# existing .rec/.idx files ("prepared") are uploaded as they are, with no tool.
def _classification_tools(data) -> tuple[DataTool, ...]:
    g, tools = data.generate, ()
    if g:
        tools += (DataTool("generate", "jobs.data.generate_classification", (
            str(data.images_dir), "--classes", str(g.classes), "--images-per-class", str(g.images_per_class),
            "--seed", str(g.seed), "--min-size", str(g.min_size), "--max-size", str(g.max_size))),)
    return tools + (DataTool("im2rec", "jobs.data.im2rec", (
        str(data.images_dir), str(data.packed_dir), "--val-ratio", str(data.val_ratio), "--test-ratio",
        str(data.test_ratio), "--resize", str(data.resize), "--quality", str(data.quality),
        "--workers", str(data.workers))),)


def _classification_describe(data) -> tuple[str, ...]:
    g = data.generate
    source = (f"generate {g.classes} classes x {g.images_per_class} images (seed {g.seed})" if g
              else f"use image folder {data.split}")
    return source, (f"pack RecordIO (val {data.val_ratio:.0%}, held out {data.test_ratio:.0%}, "
                    f"shorter edge {data.resize or 'kept'}) in {data.work_dir}")


def _face_tools(data) -> tuple[DataTool, ...]:
    g = data.generate
    if g:                            # the generator packs too (train identities + pairs .bin)
        return (DataTool("generate", "jobs.data.generate_faces", (
            "--out", str(data.work_dir), "--identities", str(g.identities), "--images-per-identity",
            str(g.images_per_identity), "--verify-identities", str(g.verify_identities), "--pairs", str(g.pairs),
            "--test-ratio", str(data.test_ratio), "--seed", str(g.seed))),)
    return (DataTool("face_rec", "jobs.data.face_rec", (
        "--src", str(data.images_dir), "--out", str(data.packed_dir), "--test-ratio", str(data.test_ratio),
        "--workers", str(data.workers))),)


def _face_describe(data) -> tuple[str, ...]:
    g = data.generate
    source = (f"generate {g.identities} identities x {g.images_per_identity} faces, {g.pairs} verification pairs "
              f"of {g.verify_identities} other identities (seed {g.seed})" if g else f"use face folder {data.split}")
    return source, f"pack face RecordIO (held out {data.test_ratio:.0%}) in {data.work_dir}"


TASKS = {
    "classification": Task(
        name="classification", job_dir="jobs/image_classification", inference_dir="inference/image_classification",
        model_algorithm="image_classification", shipped=COMMON, generate_section="generate",
        tools=_classification_tools, describe=_classification_describe),
    "face": Task(
        name="face", job_dir="jobs/face_recognition", inference_dir="inference/face_recognition",
        model_algorithm="face_recognition", generate_section="faces",
        shipped=COMMON + ("jobs/data/__init__.py", "jobs/data/face_rec_reader.py", "jobs/data/face_bin.py"),
        tools=_face_tools, describe=_face_describe),
}


def shipped_with(code_dir: Path) -> tuple[tuple[str, str], ...]:
    """(local path, path inside the code folder) of what ships with ``code_dir``: the
    project's shared job modules when it is a project job's folder, else nothing."""
    for task in TASKS.values():
        if code_dir.resolve() == (REPO_ROOT / task.job_dir).resolve():
            return tuple((str(REPO_ROOT / path), path) for path in task.shipped)
    return ()
