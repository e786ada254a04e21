"""What a pipeline is (``pipeline.yaml``) and where it runs (``config.json``), as pydantic models.

``load_pipeline(path)`` and ``load_config(path)`` validate a file and raise ``UserError``
naming the file, line and key path of the first problems, with a suggestion for
misspelt keys. Models are frozen; unknown keys are errors. Relative paths inside a
pipeline resolve against the pipeline file's folder (see ``plan.py``).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError
from .params import Resolved, resolve
from .tasks import TASKS
from .yamlsource import line_of, load_with_lines

MXNET_RUNTIMES = ("python2.7", "python3.6", "python3.7")   # ModelArts' MXNet model runtimes (model import)
NAME = r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$"
# An SWR image with an explicit tag: swr.<region>.myhuaweicloud.com/<organization>/<name>:<tag>
IMAGE = r"^[a-z0-9][a-z0-9.-]*(:\d+)?/[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
IMAGE_HELP = ("custom image in SWR (swr.<region>.myhuaweicloud.com/<organization>/<name>:<tag>) built with "
              "`python -m orchestrator image build-context`; on a modelarts profile ")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration; write e.g. 90s, 5m, 2h or 1d")
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]
    if not 0 < seconds < 366 * 86400:   # also refuses .inf and .nan (YAML floats)
        raise ValueError(f"a duration must be positive and at most a year, got {value!r}")
    return seconds


Duration = Annotated[float, Field(gt=0)]
Scalar = Union[bool, int, float, str]


class GenerateSpec(Strict):
    """A synthetic Caltech-style image folder, so the demo needs no download."""
    classes: int = Field(6, ge=2, le=10)
    images_per_class: int = Field(100, ge=10, le=5000)
    seed: int = 0
    min_size: int = Field(96, ge=32, le=1024)
    max_size: int = Field(256, ge=32, le=2048)


class FaceGenerateSpec(Strict):
    """Synthetic face-like identities at 112x112 for the face-recognition task."""
    identities: int = Field(20, ge=2, le=2000)
    images_per_identity: int = Field(30, ge=4, le=1000)
    verify_identities: int = Field(20, ge=2, le=2000, description="disjoint identities for the verification pairs")
    pairs: int = Field(600, ge=20, le=20000, description="verification pairs written to lfw.bin")
    seed: int = 0


TaskName = Literal[tuple(TASKS)]   # one descriptor per task in tasks.py


class DataSpec(Strict):
    task: TaskName = Field(
        "classification", description="'classification' packs im2rec RecordIO; 'face' packs insightface's face "
                                      "RecordIO (identity table, property) with a verification .bin")
    source: str = Field("generated", description="'generated'; a folder with one sub-folder of images per class "
                                                 "(or identity); or a folder of existing .rec/.idx files, uploaded as is; "
                                                 "or any folder with format: raw")
    format: Literal["auto", "images", "recordio", "raw"] = Field(
        "auto", description="what data.source holds: 'auto' detects class folders of images or .rec files and "
                            "uploads anything else as it is; 'raw' always uploads the folder as it is")
    labels: list[str] | str | None = Field(
        None, description="class names by label index for RecordIO packed without labels.txt (e.g. by MXNet's "
                          "im2rec.py): a list, or a file with one name per line")
    generate: GenerateSpec = GenerateSpec()
    faces: FaceGenerateSpec = FaceGenerateSpec()
    val_ratio: float = Field(0.2, ge=0.0, lt=0.9)
    test_ratio: float = Field(0.1, ge=0.0, lt=0.9, description="held out for the predict step")
    resize: int = Field(72, ge=0, le=2048, description="shorter edge when packing RecordIO; 0 keeps the size")
    quality: int = Field(90, ge=1, le=100)
    workers: int = Field(2, ge=1, le=64)
    cache: bool = Field(True, description="reuse prepared and uploaded data of an earlier run with the same key "
                                          "while it still exists (run --no-cache: never)")


class ChoicesSpec(Strict):
    choices: list[Scalar] = Field(min_length=1)


class RangeSpec(Strict):
    range: tuple[float, float] = Field(description="[low, high]; random search samples it, grid search takes "
                                                   "'steps' values")
    log: bool = Field(False, description="sample on a log scale (low > 0)")
    type: Literal["float", "int"] = "float"
    steps: int = Field(3, ge=2, le=100, description="grid values of a range")


class ObjectiveSpec(Strict):
    metric: str = Field("val_accuracy", description="a metric of the job's metrics.json 'final'")
    goal: Literal["max", "min"] = "max"


class EarlyStoppingSpec(Strict):
    rule: Literal["median"] = Field("median", description="stop a trial whose best objective so far is worse than "
                                                          "the median of the other trials at the same epoch")
    min_epochs: int = Field(2, ge=1, description="never stop a trial before this many epochs")
    min_trials: int = Field(3, ge=1, description="completed curves needed before the rule applies")


class SearchSpec(Strict):
    algorithm: Literal["grid", "random"] = "random"
    space: dict[str, Union[ChoicesSpec, RangeSpec]] = Field(
        min_length=1, description="hyperparameter: {choices: [..]} or {range: [low, high], log: true, type: int}")
    trials: int = Field(6, ge=1, le=1000, description="trials (grid: at most this many grid points)")
    max_parallel: int = Field(2, ge=1, le=64)
    seed: int = 0
    objective: ObjectiveSpec = ObjectiveSpec()
    early_stopping: EarlyStoppingSpec | None = None


class TrainSpec(Strict):
    code_dir: str = Field("jobs/image_classification", description="training code folder (default: the project's "
                          "job for data.task: jobs/image_classification or jobs/face_recognition)")
    boot_file: str = "train.py"
    inference_code: str | None = Field("inference/image_classification",
                                       description="folder whose customize_service.py and config.json are shipped "
                                                   "with the training code, for export_model (default: the "
                                                   "project's for data.task when code_dir is the project's job; "
                                                   "else none)")
    flavor: str = "modelarts.vm.cpu.8u"
    instance_count: int = Field(1, ge=1, le=8, description="nodes; > 1 trains with MXNet's parameter server "
                                "(--kv_store=dist_sync unless set; batch_size is per worker)")
    hyperparameters: dict[str, Scalar] = {}
    envs: dict[str, str] = {}
    max_runtime: Duration = 3600.0
    image: str | None = Field(None, pattern=IMAGE, description=IMAGE_HELP + "the job runs in it instead of the "
                              "preset MXNet engine (default: the profile's image); the local backend runs the "
                              "same runtime without it")
    cache: bool = Field(True, description="reuse the output of an earlier completed job with the same key (code, "
                                          "data, hyperparameters, flavour) while it still exists")
    search: SearchSpec | None = Field(None, description="hyperparameter search: one training job per trial; "
                                                        "the best trial's output goes on to import")

    _duration = field_validator("max_runtime", mode="before")(lambda v: parse_duration(v))

    @field_validator("hyperparameters")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", key):
                raise ValueError(f"hyperparameter name '{key}' must be letters, digits, '_' or '-'")
        return value


WHEN = Field(None, description="a condition over metrics of earlier steps, e.g. 'train.metrics.val_accuracy "
                               ">= 0.9'; the step (and those needing it) is skipped when it is false")


class ModelSection(Strict):
    name: str | None = Field(None, pattern=NAME)
    when: str | None = WHEN
    version: str = Field("0.0.1", pattern=r"^\d+\.\d+\.\d+$")
    model_algorithm: str = Field("image_classification", description="default: face_recognition when data.task is face")
    runtime: str | None = Field(None, description="the model's runtime: python2.7, python3.6 or python3.7 (ModelArts' "
                                "MXNet runtimes); default: config.json's runtime, python2.7 when it has none")
    image: str | None = Field(None, pattern=IMAGE, description=IMAGE_HELP + "the model is imported as "
                              "model_type Image and served by it (default: the profile's image)")
    inference_code: str | None = Field(None, description="folder with customize_service.py and config.json (and any "
                                       "other files of model/); the import step builds model/ from the training "
                                       "output's symbol and latest params plus this folder")

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str | None) -> str | None:
        if value is not None and value not in MXNET_RUNTIMES:
            raise ValueError(f"'{value}' is not one of ModelArts' MXNet runtimes ({', '.join(MXNET_RUNTIMES)})")
        return value
    optimize: Literal["fp32", "fused", "int8", "bf16"] = Field(
        "fp32", description="network the service runs: fp32 as trained; fused (oneDNN graph fusion); int8 (oneDNN "
        "quantisation calibrated on training images); bf16 (where the CPU has bfloat16, else fp32 with a note). "
        "Converted once at import, checked against fp32 on the held-out images")
    calibration: Literal["naive", "entropy"] = Field("naive", description="int8 calibration: naive (min/max) or "
                                                     "entropy (KL divergence)")
    calibration_images: int = Field(64, ge=1, le=5000, description="training images int8 is calibrated on")
    min_top1_agreement: float = Field(0.99, ge=0.0, le=1.0, description="refuse the conversion below this share "
                                      "of held-out images with the same top-1 class as fp32")
    max_verification_drop: float = Field(0.5, ge=0.0, description="face: refuse the conversion when verification "
                                         "accuracy falls by more than this many points")


class ServiceSection(Strict):
    name: str | None = Field(None, pattern=NAME)
    when: str | None = WHEN
    flavor: str = "modelarts.vm.cpu.2u"
    instance_count: int = Field(1, ge=1, le=16)
    envs: dict[str, str] = {}
    deploy_timeout: Duration = 300.0
    ttl: Duration | None = Field(None, description="stop the service this long after it is up (e.g. 2h), even when "
                                 "the orchestrator is gone; on ModelArts the service's auto-stop schedule")

    _duration = field_validator("deploy_timeout", "ttl", mode="before")(
        lambda v: None if v is None else parse_duration(v))


class PredictSection(Strict):
    images: str = Field("holdout", description="'holdout' (the data's test split) or a folder/file of images")
    limit: int | None = Field(None, ge=1)
    min_accuracy: float | None = Field(None, ge=0.0, le=1.0, description="fail the run below this accuracy")
    max_error_rate: float = Field(0.0, ge=0.0, le=1.0, description="fail the run when more than this share of "
                                  "the requests get an error (default 0: any error fails it)")
    when: str | None = WHEN


class EvaluateSection(Strict):
    """Runs the exported model over a labelled held-out set in worker processes, through the
    package's customize_service.py, without a service: accuracy, top-5, per class, confusion."""
    images: str = Field("holdout", description="'holdout' or a folder with one sub-folder of images per class")
    workers: int = Field(2, ge=1, le=32)
    limit: int | None = Field(None, ge=1)


class BatchPredictSection(Strict):
    """ModelArts-style batch inference: every file under a folder or obs:// prefix, one JSON
    line per file, in parallel worker processes; resumable."""
    input: str = Field("holdout", description="'holdout', a local folder, or an obs:// prefix")
    output: str | None = Field(None, description="obs:// prefix or local folder for predictions.jsonl "
                                                 "(default: the run folder)")
    workers: int = Field(2, ge=1, le=32)
    limit: int | None = Field(None, ge=1)
    when: str | None = WHEN


class TeardownSection(Strict):
    when: Literal["always", "on_success", "never"] = "always"
    keep_model_copy: bool = Field(True, description="copy the model package into the run folder first")


class PipelineSpec(Strict):
    """The whole of ``pipeline.yaml``."""
    name: str = Field(pattern=NAME, description="lower-case letters, digits and '-'")
    description: str = ""
    parameters: dict[str, Any] = Field({}, description="typed defaults: 'name: default' or 'name: {type, default, "
                                                       "description}'; use as ${params.name}, override with run -p")
    profile: str | None = Field(None, description="a profile of config.json; default: its default_profile")
    bucket: str = Field("orchestrator-demo", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    model: ModelSection = ModelSection()
    service: ServiceSection = ServiceSection()
    predict: PredictSection = PredictSection()
    evaluate: EvaluateSection | None = Field(None, description="score the trained model offline (after train)")
    batch_predict: BatchPredictSection | None = Field(None, description="batch inference (after predict)")
    teardown: TeardownSection = TeardownSection()


class LocalProfile(Strict):
    backend: Literal["local"]
    root: str = ".orchestrator"
    predictor_host: str = "127.0.0.1"


class ModelArtsProfile(Strict):
    """Huawei Cloud (or the emulator): endpoints default to the region's public ones. The
    AK/SK are read from the environment variables named here, never from a file."""
    backend: Literal["modelarts"]
    region: str
    project_id: str
    modelarts_endpoint: str | None = Field(None, description="default https://modelarts.<region>.myhuaweicloud.com")
    obs_endpoint: str | None = Field(None, description="default https://obs.<region>.myhuaweicloud.com")
    ak_env: str = "HUAWEICLOUD_SDK_AK"
    sk_env: str = "HUAWEICLOUD_SDK_SK"
    root: str = Field(".orchestrator", description="local folder for the ledger, run folders and upload checkpoints")
    verify_ssl: bool = True
    path_style: bool = Field(False, description="path-style OBS addressing (local S3-compatible servers)")
    obs_signature: Literal["obs", "v2", "v4"] = Field("obs", description="v2 for local S3-compatible servers")
    create_bucket: bool = Field(False, description="create the pipeline's bucket when it does not exist")
    engine_name: str = "MXNet"
    engine_version: str = Field("MXNet-1.2.1-python3.7", description="a preset engine of your region "
                                "(GET /v2/{project_id}/training-job-engines)")
    image: str | None = Field(None, pattern=IMAGE, description="custom image for jobs and models of this profile "
                              "when the pipeline names none (train.image, model.image)")
    request_timeout: Duration = 60.0
    retries: int = Field(5, ge=1, le=20)
    poll_interval: Duration = 2.0

    def endpoints(self) -> tuple[str, str]:
        return (self.modelarts_endpoint or f"https://modelarts.{self.region}.myhuaweicloud.com",
                self.obs_endpoint or f"https://obs.{self.region}.myhuaweicloud.com")


Profile = Annotated[Union[LocalProfile, ModelArtsProfile], Field(discriminator="backend")]


class FlavorSpec(Strict):
    cpus: int = Field(ge=1)
    gpus: int = Field(0, ge=0)
    gpu_type: str | None = None
    memory_gb: int | None = None


class MlflowTracking(Strict):
    """Log each run to MLflow: parameters, per-epoch and prediction metrics, report.html and
    the model package as artefacts, and a version of a registered model."""
    tracking_uri: str = Field("sqlite:///.orchestrator/mlflow.db", description="an MLflow tracking URI; a relative "
                              "sqlite:/// or file path is relative to config.json's folder")
    experiment: str | None = Field(None, description="default: the pipeline's name")
    artifact_location: str | None = Field(None, description="for a new experiment; default: mlartifacts/ beside "
                                          "a sqlite database, else the server's default")
    register_model: bool = True
    model_name: str | None = Field(None, description="registered model name; default: the pipeline's name")

    def resolved(self, base: Path) -> "MlflowTracking":
        """Relative sqlite and file locations made absolute against ``base``."""
        def absolute(uri: str | None) -> str | None:
            if uri and uri.startswith("sqlite:///"):
                rest = uri[len("sqlite:///"):]
                return uri if rest.startswith("/") or rest == ":memory:" else f"sqlite:///{(base / rest).resolve()}"
            if uri is None or re.match(r"^[A-Za-z][\w+.-]*:", uri):   # another scheme: as it is
                return uri
            return str((base / uri).resolve())
        uri = absolute(self.tracking_uri)
        artifacts = absolute(self.artifact_location)
        if artifacts is None and uri.startswith("sqlite:///"):
            artifacts = str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")
        return self.model_copy(update={"tracking_uri": uri, "artifact_location": artifacts})


class TrackingSpec(Strict):
    mlflow: MlflowTracking | None = None


class ConfigSpec(Strict):
    """The whole of ``config.json``: backend profiles, flavours, default timeouts, tracking."""
    default_profile: str = "local"
    profiles: dict[str, Profile] = {"local": LocalProfile(backend="local")}
    flavors: dict[str, FlavorSpec] = {}
    poll_interval: Duration = 0.5
    tracking: TrackingSpec | None = None

    def profile(self, name: str | None) -> tuple[str, LocalProfile | ModelArtsProfile]:
        chosen = name or self.default_profile
        if chosen not in self.profiles:
            raise UserError(f"unknown profile '{chosen}'", hint=f"config.json defines: {', '.join(sorted(self.profiles))}")
        return chosen, self.profiles[chosen]


def load_pipeline(path: Path, overrides: dict[str, str] | None = None) -> PipelineSpec:
    return load_pipeline_params(path, overrides)[0]


def load_pipeline_params(path: Path, overrides: dict[str, str] | None = None) -> tuple[PipelineSpec, Resolved]:
    """The spec with ``${params.NAME}`` substituted (``overrides`` from ``run -p``) and the
    parameter values used."""
    data, lines = load_with_lines(path)
    if not isinstance(data, dict):
        raise UserError("the top level must be a mapping of keys", where=f"{path}:1")
    resolved = resolve(data, lines, path, overrides)
    return _validate(PipelineSpec, path, (resolved.data, lines), resolved), resolved


def load_config(path: Path | None) -> ConfigSpec:
    return ConfigSpec() if path is None else _validate(ConfigSpec, path)


def pipeline_json_schema() -> dict:
    schema = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "orchestrator pipeline.yaml"
    return schema


def _validate(model: type[BaseModel], path: Path, loaded: tuple | None = None, resolved: Resolved | None = None) -> Any:
    data, lines = loaded or load_with_lines(path)
    if not isinstance(data, dict):
        raise UserError("the top level must be a mapping of keys", where=f"{path}:1")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        messages = [_describe(err, model, path, lines) + _from_parameter(err, resolved) for err in exc.errors()[:5]]
        more = len(exc.errors()) - len(messages)
        if more > 0:
            messages.append(f"... and {more} more")
        raise UserError("\n".join(messages)) from None


def _from_parameter(err: dict, resolved: Resolved | None) -> str:
    """' (from parameter 'lr' = 'x')' when the failing value came from a parameter."""
    if resolved is None:
        return ""
    loc = tuple(err["loc"])
    for n in range(len(loc), 0, -1):
        name = resolved.used_at.get(loc[:n])
        if name is not None:
            how = "-p" if resolved.sources.get(name) == "-p" else "its default"
            return f" (from parameter '{name}' = {resolved.values[name]!r}, {how})"
    return ""


def _describe(err: dict, model: type[BaseModel], path: Path, lines: dict) -> str:
    loc, tagged = _strip_union_tag(tuple(err["loc"]))
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    line = line_of(lines, loc)
    where = f"{path}:{line}" if line else str(path)
    if err["type"] == "extra_forbidden":
        known = sorted(tagged.model_fields) if tagged else _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(known)}"
        return f"{where}: unknown key '{dotted}' ({hint})"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {dotted}: {message}"


_PROFILE_TYPES = {"local": LocalProfile, "modelarts": ModelArtsProfile}


def _strip_union_tag(loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
    """pydantic puts the discriminator value into the location of profile errors:
    ``("profiles", "dev", "local", "rooot")``; drop it and return the profile class."""
    if len(loc) >= 4 and loc[0] == "profiles" and loc[2] in _PROFILE_TYPES:
        return loc[:2] + loc[3:], _PROFILE_TYPES[loc[2]]
    return loc, None


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model at ``loc`` (follows nested models and dict values)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields and part in fields:
            current = _inner_model(fields[part].annotation)
    fields = getattr(current, "model_fields", None) or {}
    return sorted(fields)


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
