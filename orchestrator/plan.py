"""A frozen, ordered plan built from a validated spec: every name, path and note decided
before anything runs, so ``plan`` can show exactly what ``run`` will do (no side effects)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from jobs.data.image_folder import FolderError, list_classes, split_items

from . import jobargs
from .backends.base import JobSpec, ModelSpec, ServiceConfig, ServiceSpec
from .errors import UserError
from .notes import backend_notes
from .optimize import OptimizePlan
from .stepkeys import step_keys
from .yamlsource import line_of, load_with_lines
from .predictions import IMAGE_EXTS
from .spec import ConfigSpec, FaceGenerateSpec, GenerateSpec, PipelineSpec, TeardownSection

REPO_ROOT = Path(__file__).resolve().parent.parent
TASK_DEFAULTS = {
    "classification": {"code_dir": "jobs/image_classification", "inference_code": "inference/image_classification",
                       "model_algorithm": "image_classification"},
    "face": {"code_dir": "jobs/face_recognition", "inference_code": "inference/face_recognition",
             "model_algorithm": "face_recognition"},
}
# Modules a project job imports from elsewhere in the repository (see jobs/face_recognition/
# shared.py): shipped next to its boot file, since ModelArts gets only the code folder.
SHARED_FILES = {
    "jobs/face_recognition": ("jobs/data/face_rec_reader.py", "jobs/data/face_bin.py",
                              "jobs/image_classification/storage.py", "jobs/image_classification/job_common.py",
                              "jobs/image_classification/job_args.py"),
}
STEPS = ("prepare", "upload", "train", "import_model", "deploy", "predict", "teardown")


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

    @property
    def images_dir(self) -> Path:
        return self.source_dir if self.mode == "pack" else self.work_dir / "images"

    @property
    def packed_dir(self) -> Path:
        return self.source_dir if self.mode in ("prepared", "raw") else self.work_dir / "packed"


@dataclass(frozen=True)
class PredictPlan:
    images: str                        # "holdout" or an absolute path (scored by sub-folder names)
    limit: int | None
    min_accuracy: float | None
    max_error_rate: float = 0.0


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    details: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    run_id: str
    pipeline: str
    spec_path: Path
    profile: str
    backend: str
    root: Path
    run_dir: Path
    data: DataPlan
    job: JobSpec
    model: ModelSpec
    service: ServiceSpec
    predict: PredictPlan
    teardown: TeardownSection
    notes: tuple[str, ...]
    steps: tuple[Step, ...]
    keys: tuple[tuple[str, str], ...] = ()    # (step, key): see stepkeys.py
    model_code: Path | None = None            # model.inference_code: model/ is assembled from it at import
    optimize: OptimizePlan = OptimizePlan()   # model.optimize: what the import step converts

    def key(self, step: str) -> str:
        return dict(self.keys).get(step, "")

    @property
    def steps_keyed(self) -> frozenset[str]:
        return frozenset(step for step, _ in self.keys)

    @property
    def output_uri(self) -> str:
        return self.job.train_url

    def to_dict(self) -> dict:
        out = asdict(self)
        return _jsonable(out)


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%y%m%d-%H%M%S", time.localtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


def build_plan(spec: PipelineSpec, config: ConfigSpec, *, spec_path: Path, config_dir: Path,
               profile: str | None = None, run_id: str | None = None, strict: bool = False) -> Plan:
    """Decide names, paths and emulation notes. Raises ``UserError`` for what cannot run,
    and with ``strict`` for settings this profile would only emulate or ignore."""
    profile_name, prof = config.profile(profile or spec.profile)
    run_id = run_id or new_run_id()
    base = spec_path.resolve().parent
    root = (config_dir / os.path.expanduser(prof.root)).resolve()
    prefix = f"obs://{spec.bucket}/{spec.name}/{run_id}"

    data = _data_plan(spec, base, spec_path, work_dir=root / "tmp" / run_id, data_uri=f"{prefix}/data/")
    if spec.predict.images == "holdout" and data.mode == "raw":
        raise UserError(f"data.source {data.source_dir} is uploaded as it is (raw data), so no images are held out "
                        "for the predict step", where=_where(spec_path, "predict.images"),
                        hint="point predict.images at a folder (or file) of test images")
    if spec.predict.images == "holdout" and data.mode == "prepared":
        raise UserError(f"data.source {data.source_dir} holds packed RecordIO files, so no images are held out "
                        "for the predict step", where=_where(spec_path, "predict.images"),
                        hint="point predict.images at a folder of test images (one sub-folder per class)")
    if spec.predict.images == "holdout" and spec.data.test_ratio == 0:
        raise UserError("predict.images is 'holdout' but data.test_ratio is 0, so nothing is held out",
                        where=_where(spec_path, "data.test_ratio"),
                        hint="set data.test_ratio (e.g. 0.1) or point predict.images at a folder")
    predict_images = spec.predict.images
    if predict_images != "holdout":
        predict_images = str(_existing_path(base, predict_images, "predict.images", spec_path))
        if data.mode == "prepared":
            _check_label_names(data, Path(predict_images), spec_path)

    defaults = TASK_DEFAULTS[spec.data.task]          # what a face pipeline runs unless told otherwise
    train_dir = spec.train.code_dir if "code_dir" in spec.train.model_fields_set else defaults["code_dir"]
    own_job = "code_dir" not in spec.train.model_fields_set or _resolve(base, train_dir, REPO_ROOT) == (
        REPO_ROOT / defaults["code_dir"]).resolve()
    inference_code = (spec.train.inference_code if "inference_code" in spec.train.model_fields_set
                      else defaults["inference_code"] if own_job else None)   # never merged into a user's code
    algorithm = (spec.model.model_algorithm if "model_algorithm" in spec.model.model_fields_set
                 else defaults["model_algorithm"])
    code_dir = _existing_dir(base, train_dir, "train.code_dir", spec_path, fallback=REPO_ROOT)
    if not (code_dir / spec.train.boot_file).is_file():
        raise UserError(f"train.boot_file '{spec.train.boot_file}' is not in {code_dir}",
                        where=_where(spec_path, "train.boot_file"))
    args_note = jobargs.check(code_dir, spec.train.hyperparameters, lambda key: _where(spec_path, key))
    include = tuple(str(REPO_ROOT / f) for job, files in SHARED_FILES.items()
                    if code_dir == (REPO_ROOT / job).resolve() for f in files)
    if inference_code:
        include += (str(_existing_dir(base, inference_code, "train.inference_code", spec_path,
                                      fallback=REPO_ROOT)),)
    job = JobSpec(
        name=f"{spec.name}-{run_id}-train", run_id=run_id, code_dir=str(code_dir), boot_file=spec.train.boot_file,
        data_url=data.data_uri, train_url=f"{prefix}/output/",
        hyperparameters=tuple((k, _arg(v)) for k, v in spec.train.hyperparameters.items()),
        flavor=spec.train.flavor, instance_count=spec.train.instance_count,
        envs=tuple(spec.train.envs.items()), max_runtime_s=spec.train.max_runtime,
        include_dirs=include, image=_image(spec.train.image, prof))
    model_name = spec.model.name or spec.name
    model_code = (_existing_dir(base, spec.model.inference_code, "model.inference_code", spec_path)
                  if spec.model.inference_code else None)
    model = ModelSpec(name=f"{model_name}-{run_id}", version=spec.model.version, run_id=run_id,
                      source_location=f"{prefix}/model-package/" if model_code else job.train_url,
                      model_algorithm=algorithm, runtime=spec.model.runtime, image=_image(spec.model.image, prof))
    service = ServiceSpec(
        name=f"{spec.service.name or spec.name}-{run_id}-svc", run_id=run_id, deploy_timeout_s=spec.service.deploy_timeout,
        ttl_s=spec.service.ttl,
        configs=(ServiceConfig(model_id="<imported model>", flavor=spec.service.flavor,
                               instance_count=spec.service.instance_count, envs=tuple(spec.service.envs.items())),))
    if prof.backend == "modelarts" and spec.service.ttl and spec.service.ttl > 7 * 86400:
        raise UserError(f"service.ttl {spec.service.ttl / 86400:.1f} days is longer than ModelArts' auto-stop allows "
                        "(1 minute to 7 days)", where=_where(spec_path, "service.ttl"), hint="use at most 7d")
    info, emulated = backend_notes(spec, config, prof, job, model)
    if strict and emulated:
        raise UserError(f"--strict: profile '{profile_name}' would not run this pipeline as written:\n  - "
                        + "\n  - ".join(emulated), where=str(spec_path),
                        hint="use a profile that runs it for real, change the settings named, or drop --strict")
    notes = tuple(info + ([args_note] if args_note else []) + emulated)
    predict = PredictPlan(predict_images, spec.predict.limit, spec.predict.min_accuracy,
                          spec.predict.max_error_rate)
    run_dir = root / "runs" / run_id
    m = spec.model
    optimize = OptimizePlan(m.optimize, m.calibration, m.calibration_images, m.min_top1_agreement,
                            m.max_verification_drop)
    plan_args = dict(run_id=run_id, pipeline=spec.name, spec_path=spec_path.resolve(), profile=profile_name,
                     backend=prof.backend, root=root, run_dir=run_dir, data=data, job=job, model=model,
                     service=service, predict=predict, teardown=spec.teardown, notes=notes, model_code=model_code,
                     optimize=optimize)
    skipped: list[str] = []
    keys = step_keys(data, REPO_ROOT / "jobs" / "data", job, model, service, predict, model_code, skipped)
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        plan_args["notes"] = notes + (f"train.code_dir: {len(skipped)} entr{'y is' if len(skipped) == 1 else 'ies are'} "
                                      f"not a regular file (symlink, pipe, device) and not read: {shown}",)
    return Plan(**plan_args, steps=_steps(spec, data, job, model, service, predict, model_code, optimize),
                keys=tuple(keys.items()))


def _image(chosen: str | None, prof) -> str:
    """The pipeline's image, else the profile's (modelarts profiles only)."""
    return chosen or getattr(prof, "image", None) or ""


def _data_plan(spec: PipelineSpec, base: Path, spec_path: Path, work_dir: Path, data_uri: str) -> DataPlan:
    d = spec.data
    source_dir, mode = None, "generate"
    if d.source != "generated":
        source_dir = _existing_dir(base, d.source, "data.source", spec_path)
        mode = _data_mode(d.format, source_dir, spec_path)
    elif d.format not in ("auto", "images"):
        raise UserError(f"data.format '{d.format}' needs a data.source folder", where=_where(spec_path, "data.format"),
                        hint="set data.source to your data folder, or drop data.format")
    generate = (d.faces if d.task == "face" else d.generate) if mode == "generate" else None
    val_ratio = 0.0 if d.task == "face" else d.val_ratio    # the face packer has no validation split
    split = _split_summary(source_dir, d.task, val_ratio, d.test_ratio, spec_path) if mode == "pack" else None
    return DataPlan(task=d.task, mode=mode, generate=generate, source_dir=source_dir, work_dir=work_dir,
                    data_uri=data_uri, val_ratio=d.val_ratio, test_ratio=d.test_ratio, resize=d.resize,
                    quality=d.quality, workers=d.workers, split=split,
                    labels=_labels(d.labels, source_dir, base, spec_path))


def _split_summary(folder: Path, task: str, val_ratio: float, test_ratio: float, spec_path: Path) -> str:
    """What packing takes from the user's folder, counted exactly as the packer splits it."""
    one, kind = ("identity", "identities") if task == "face" else ("class", "classes")
    try:
        names, items = list_classes(str(folder))
    except FolderError as exc:
        raise UserError(f"data.source: {exc}", where=_where(spec_path, "data.source"),
                        hint=f"point data.source at a folder with one sub-folder of images per {one}") from None
    empty = sorted(set(names) - {names[label] for _, label in items})
    if empty:
        raise UserError(f"data.source: {len(empty)} of the {len(names)} {one} folders in {folder} hold no "
                        f"images: {', '.join(empty[:5])}" + (" ..." if len(empty) > 5 else ""),
                        where=_where(spec_path, "data.source"),
                        hint=f"remove the empty folders (each sub-folder becomes a {one}) or add images "
                             "(.jpg .jpeg .png .bmp)")
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
        raise UserError(f"data.format is recordio but {source} holds no .rec file", where=_where(spec_path, "data.format"),
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
        path = _existing_path(base, value, "data.labels", spec_path)
        value = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif value is None and source is not None and (source / "labels.txt").is_file():
        value = [line.strip() for line in (source / "labels.txt").read_text().splitlines() if line.strip()]
    return tuple(value) if value else None


def _check_label_names(data: DataPlan, images: Path, spec_path: Path) -> None:
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
                        where=_where(spec_path, "data.labels"),
                        hint="set data.labels to the class names in label order (a list, or a file with one name "
                             "per line, as im2rec.py's .lst numbered them: sorted folder names)")


def _prepare_details(data: DataPlan) -> tuple[str, ...]:
    if data.mode == "prepared":
        return (f"use the RecordIO files in {data.source_dir} as they are",)
    if data.mode == "raw":
        return (f"upload {data.source_dir} as it is (raw data: no packing, no held-out images)",)
    g = data.generate
    if data.task == "face":
        source = (f"generate {g.identities} identities x {g.images_per_identity} faces, {g.pairs} verification pairs "
                  f"of {g.verify_identities} other identities (seed {g.seed})" if g else f"use face folder {data.split}")
        return source, f"pack face RecordIO (held out {data.test_ratio:.0%}) in {data.work_dir}"
    source = (f"generate {g.classes} classes x {g.images_per_class} images (seed {g.seed})" if g
              else f"use image folder {data.split}")
    return source, (f"pack RecordIO (val {data.val_ratio:.0%}, held out {data.test_ratio:.0%}, "
                    f"shorter edge {data.resize or 'kept'}) in {data.work_dir}")


def _steps(spec, data: DataPlan, job: JobSpec, model: ModelSpec, service: ServiceSpec, predict: PredictPlan,
           model_code: Path | None = None, optimize: OptimizePlan = OptimizePlan()):
    hp = " ".join(f"--{k}={v}" for k, v in job.hyperparameters) or "(script defaults)"
    cfg = service.configs[0]
    return (
        Step("prepare", "Prepare data", _prepare_details(data)),
        Step("upload", "Upload data", (f"to {data.data_uri}",)),
        Step("train", "Train", (f"job {job.name}: {Path(job.code_dir).name}/{job.boot_file} {hp}"
                                + (f" in image {job.image}" if job.image else ""),
                                f"flavour {job.flavor} x {job.instance_count}, max runtime {job.max_runtime_s:.0f}s",
                                f"outputs to {job.train_url}")),
        Step("import_model", "Import model", (f"model {model.name} {model.version} from {model.source_location}model/"
                                              + (f" as model_type Image, served by {model.image}" if model.image
                                                 else "")
                                              + (f" (the training output's symbol and latest params + {model_code})"
                                                 if model_code else ""),
                                              f"runtime {model.runtime or 'from config.json (python2.7 when unset)'}",
                                              optimize.describe())),
        Step("deploy", "Deploy", (f"service {service.name}: flavour {cfg.flavor} x {cfg.instance_count}"
                                  + (f", stops itself after {service.ttl_s:.0f}s (ttl)" if service.ttl_s else ""),)),
        Step("predict", "Predict", (("held-out test images" if predict.images == "holdout" else
                                     f"images under {predict.images} (scored when their sub-folder is a class name)")
                                    + (f", at most {predict.limit}" if predict.limit else "")
                                    + (f", fail below {predict.min_accuracy:.0%} accuracy" if predict.min_accuracy else ""),)),
        Step("teardown", "Tear down", (f"when: {spec.teardown.when}; deletes service, model, job, "
                                       f"objects under obs://{spec.bucket}/{spec.name}/<run>/ and temporary folders",)),
    )


def _where(spec_path: Path, key: str) -> str:
    """``file:line`` of ``key`` (read again only when there is an error to report)."""
    try:
        _, lines = load_with_lines(spec_path)
    except UserError:
        return str(spec_path)
    line = line_of(lines, tuple(key.split(".")))   # a defaulted key points at its section
    return f"{spec_path}:{line}" if line else str(spec_path)


def _existing_dir(base: Path, value: str, key: str, spec_path: Path, fallback: Path | None = None) -> Path:
    return _existing_path(base, value, key, spec_path, fallback, folder=True)


def _existing_path(base: Path, value: str, key: str, spec_path: Path, fallback: Path | None = None,
                   folder: bool = False) -> Path:
    path = _resolve(base, value, fallback)
    if not (path.is_dir() if folder else path.exists()):
        what = "folder " if folder else ""
        raise UserError(f"{key}: {what}'{value}' does not exist (looked in {path})", where=_where(spec_path, key),
                        hint="fix the path; relative paths are read from the pipeline file's folder")
    return path


def _resolve(base: Path, value: str, fallback: Path | None) -> Path:
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return path
    if (base / path).exists() or fallback is None:
        return (base / path).resolve()
    return (fallback / path).resolve()   # the project's own jobs, for pipelines kept elsewhere


def _arg(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value
