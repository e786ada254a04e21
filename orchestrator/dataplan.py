"""The data part of a plan: where the data comes from (generated, an image folder, packed
RecordIO, raw files), what the split takes, the class names, and the data tools the prepare
step runs (from the task's descriptor in ``tasks.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from jobs.data.image_folder import EXTENSIONS, FolderError, list_classes, split_items

from .errors import UserError
from .predictions import IMAGE_EXTS
from .spec import FaceGenerateSpec, GenerateSpec, PipelineSpec
from .specpaths import existing_dir, existing_path, where
from .tasks import TASKS, DataTool


@dataclass(frozen=True)
class DataPlan:
    task: str                          # classification | face
    mode: str                          # generate | pack (an image folder) | prepared (existing .rec files) | raw
    generate: GenerateSpec | FaceGenerateSpec | None
    source_dir: Path | None
    work_dir: Path                     # temporary: generated images and packed RecordIO
    data_uri: str                      # obs:// prefix the packed data is uploaded to
    val_ratio: float
    test_ratio: float
    resize: int
    quality: int
    workers: int
    split: str | None = None           # what the split takes from the user's folder (pack mode)
    labels: tuple[str, ...] | None = None   # class names by label index (data.labels or the source's labels.txt)
    tools: tuple[DataTool, ...] = ()   # what the prepare step runs (the task's data tools)

    @property
    def images_dir(self) -> Path:
        return self.source_dir if self.mode == "pack" else self.work_dir / "images"

    @property
    def packed_dir(self) -> Path:
        return self.source_dir if self.mode in ("prepared", "raw") else self.work_dir / "packed"


def data_plan(spec: PipelineSpec, base: Path, spec_path: Path, work_dir: Path, data_uri: str) -> DataPlan:
    d = spec.data
    source_dir, mode = None, "generate"
    if d.source != "generated":
        source_dir = existing_dir(base, d.source, "data.source", spec_path)
        mode = _data_mode(d.format, source_dir, spec_path)
    elif d.format not in ("auto", "images"):
        raise UserError(f"data.format '{d.format}' needs a data.source folder", where=where(spec_path, "data.format"),
                        hint="set data.source to your data folder, or drop data.format")
    task = TASKS[d.task]
    generate = getattr(d, task.generate_section) if mode == "generate" else None
    val_ratio = 0.0 if d.task == "face" else d.val_ratio    # the face packer has no validation split
    split = _split_summary(source_dir, d.task, val_ratio, d.test_ratio, spec_path) if mode == "pack" else None
    data = DataPlan(task=d.task, mode=mode, generate=generate, source_dir=source_dir, work_dir=work_dir,
                    data_uri=data_uri, val_ratio=d.val_ratio, test_ratio=d.test_ratio, resize=d.resize,
                    quality=d.quality, workers=d.workers, split=split,
                    labels=_labels(d.labels, source_dir, base, spec_path))
    return replace(data, tools=task.tools(data)) if mode in ("generate", "pack") else data   # else uploaded as is


def _split_summary(folder: Path, task: str, val_ratio: float, test_ratio: float, spec_path: Path) -> str:
    """What packing takes from the user's folder, counted exactly as the packer splits it."""
    one, kind = ("identity", "identities") if task == "face" else ("class", "classes")
    try:
        names, items = list_classes(str(folder))
    except FolderError as exc:
        raise UserError(f"data.source: {exc}", where=where(spec_path, "data.source"),
                        hint=f"point data.source at a folder with one sub-folder of images per {one}") from None
    empty = sorted(set(names) - {names[label] for _, label in items})
    if empty:
        raise UserError(f"data.source: {len(empty)} of the {len(names)} {one} folders in {folder} hold no "
                        f"images: {', '.join(empty[:5])}" + (" ..." if len(empty) > 5 else ""),
                        where=where(spec_path, "data.source"),
                        hint=f"remove the empty folders (each sub-folder becomes a {one}) or add images "
                             f"({' '.join(EXTENSIONS)})")
    counts = {s: len(v) for s, v in split_items(items, val_ratio, test_ratio, seed=0).items()}
    taken = [f"{counts['val']} ({val_ratio:.0%}, data.val_ratio) for validation"] if val_ratio else []
    taken += [f"{counts['test']} ({test_ratio:.0%}, data.test_ratio) held out for predict"] if test_ratio else []
    return (f"{folder}: {len(items)} images in {len(names)} {kind}; "
            + (f"the split takes {' and '.join(taken)}, " if taken else "")
            + f"{counts['train']} images train")


def _data_mode(fmt: str, source: Path, spec_path: Path) -> str:
    """prepared (.rec files), pack (one sub-folder of images per class) or raw (anything else, as it is)."""
    has_rec = any(source.glob("*.rec"))
    if fmt == "recordio" and not has_rec:
        raise UserError(f"data.format is recordio but {source} holds no .rec file", where=where(spec_path, "data.format"),
                        hint="point data.source at the folder of your .rec/.idx files, or use format: raw")
    if fmt == "raw":
        return "raw"
    if fmt == "recordio" or (fmt == "auto" and has_rec):
        return "prepared"
    classes = [p for p in source.iterdir() if p.is_dir() and any(
        f.suffix.lower() in IMAGE_EXTS for f in p.rglob("*"))]
    if classes or fmt == "images":
        return "pack"
    return "raw"


def _labels(value, source: Path | None, base: Path, spec_path: Path) -> tuple[str, ...] | None:
    if isinstance(value, str):
        path = existing_path(base, value, "data.labels", spec_path)
        value = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif value is None and source is not None and (source / "labels.txt").is_file():
        value = [line.strip() for line in (source / "labels.txt").read_text().splitlines() if line.strip()]
    return tuple(value) if value else None


def check_label_names(data: DataPlan, images: Path, spec_path: Path) -> None:
    """Packed RecordIO knows its classes by number only; class-folder names of the test images
    can be scored only when a labels list says which number each name is."""
    names = {p.name for p in images.iterdir() if p.is_dir()} if images.is_dir() else set()
    if not names or data.labels is None and all(n.isdigit() for n in names):
        return
    unknown = sorted(names - set(data.labels or ()))
    if data.labels is None or unknown:
        what = ("has no labels.txt, so its numeric labels cannot be matched with" if data.labels is None
                else f"labels do not name {', '.join(unknown[:5])}, so they cannot be matched with")
        raise UserError(f"data.source {data.source_dir} {what} the class folders of {images}",
                        where=where(spec_path, "data.labels"),
                        hint="set data.labels to the class names in label order (a list, or a file with one name "
                             "per line, as im2rec.py's .lst numbered them: sorted folder names)")


def prepare_details(data: DataPlan) -> tuple[str, ...]:
    if data.mode == "prepared":
        return (f"use the RecordIO files in {data.source_dir} as they are",)
    if data.mode == "raw":
        return (f"upload {data.source_dir} as it is (raw data: no packing, no held-out images)",)
    return TASKS[data.task].describe(data)
