"""What one predictor front serves: one or more model configs, each with a traffic weight.

The service file (``--config FILE``; the local backend writes it) is JSON::

    {"generation": 3,
     "configs": [{"id": "m-v1", "model_dir": "/abs/model", "weight": 90, "workers": 2,
                  "envs": {"input_data_shape": "0,3,224,224"},
                  "batch_size": "auto", "batch_delay_ms": 5, "queue_size": 16, "runtime": "python2.7"}, ...]}

Only ``id`` and ``model_dir`` are required. ``weight`` is relative (ModelArts asks for a
sum of 100; any positive sum works here; 0 = loaded but sent no traffic). ``generation``
increases with every change so a caller can tell when a reload was applied. ``runtime``
overrides the package's config.json (ModelArts' model import ``runtime``).
``parse_service`` / ``read_service`` raise ``ConfigError`` naming the offending key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from orchestrator.predictor.loader import SERVICE_FILE

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_KEYS = {"id", "model_dir", "weight", "workers", "envs", "batch_size", "batch_delay_ms", "queue_size", "runtime"}
AUTO = 0            # batch_size "auto": batch up to AUTO_BATCH when the service supports it, else 1
AUTO_BATCH = 4
DEFAULT_BATCH_SIZE = AUTO   # measured: batching wins at c >= 4 and costs nothing at c=1 (docs/predictor.md)


class ConfigError(ValueError):
    """The service file or a model config is malformed (message names the key);
    ``generation`` is the file's generation when it could be read."""

    def __init__(self, message: str, generation: int | None = None):
        super().__init__(message)
        self.generation = generation


@dataclass(frozen=True)
class ModelConfig:
    """One model version behind the service, served by ``workers`` processes."""

    id: str
    model_dir: str
    weight: int = 100
    workers: int = 1
    envs: tuple[tuple[str, str], ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE   # 1 = no dynamic batching; AUTO = up to AUTO_BATCH if the service supports it
    batch_delay_ms: float = 5.0    # counted from the first queued request of a batch
    queue_size: int | None = None  # requests waiting for a worker; None = 8 per worker
    runtime: str = ""              # "" = the package's config.json runtime (python2.7 when unset)

    @property
    def waiting_limit(self) -> int:
        return 8 * self.workers if self.queue_size is None else self.queue_size

    def same_pool(self, other: "ModelConfig") -> bool:
        """True when ``other`` differs at most in weight (its workers can be kept)."""
        return self == ModelConfig(**{**other.__dict__, "weight": self.weight})


def batch_size_value(value, where: str) -> int:
    """``"auto"`` -> ``AUTO``, ``None`` -> ``DEFAULT_BATCH_SIZE``; otherwise an integer >= 1."""
    if value is None:
        return DEFAULT_BATCH_SIZE
    return AUTO if value == "auto" else _int(value, where, 1)


def _int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: must be an integer >= {minimum}, got {value!r}")
    return value


def parse_config(doc, where: str = "config") -> ModelConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    for key in ("id", "model_dir"):
        if not isinstance(doc.get(key), str) or not doc.get(key):
            raise ConfigError(f"{where}.{key}: a non-empty string is required")
    model_dir = os.path.abspath(doc["model_dir"])
    if not os.path.isfile(os.path.join(model_dir, SERVICE_FILE)):
        raise ConfigError(f"{where}.model_dir: no {SERVICE_FILE} in {model_dir} (not a ModelArts model package)")
    envs = doc.get("envs", {})
    if not isinstance(envs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
        raise ConfigError(f"{where}.envs: must map names to string values")
    delay = doc.get("batch_delay_ms", 5.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ConfigError(f"{where}.batch_delay_ms: must be a number >= 0, got {delay!r}")
    queue = doc.get("queue_size")
    return ModelConfig(
        id=doc["id"], model_dir=model_dir, weight=_int(doc.get("weight", 100), f"{where}.weight", 0),
        workers=_int(doc.get("workers", 1), f"{where}.workers", 1), envs=tuple(sorted(envs.items())),
        batch_size=batch_size_value(doc.get("batch_size"), f"{where}.batch_size"),
        batch_delay_ms=float(delay),
        queue_size=None if queue is None else _int(queue, f"{where}.queue_size", 0),
        runtime=_runtime(doc.get("runtime", ""), f"{where}.runtime"))


def _runtime(value, where: str) -> str:
    if value not in ("", "python2.7", "python3.6", "python3.7"):
        raise ConfigError(f"{where}: must be python2.7, python3.6 or python3.7, got {value!r}")
    return value


def parse_service(doc) -> tuple[int, tuple[ModelConfig, ...]]:
    """``(generation, configs)`` of a service document (see module docstring)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("configs"), list) or not doc["configs"]:
        raise ConfigError("the service file needs a non-empty 'configs' list")
    generation = _int(doc.get("generation", 0), "generation", 0)
    try:
        configs = tuple(parse_config(c, f"configs[{i}]") for i, c in enumerate(doc["configs"]))
        ids = [c.id for c in configs]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"configs: duplicate id in {ids}")
        if not any(c.weight for c in configs):
            raise ConfigError("configs: at least one weight must be positive")
    except ConfigError as exc:
        raise ConfigError(str(exc), generation) from None
    return generation, configs


def read_service(path: str) -> tuple[int, tuple[ModelConfig, ...]]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the service file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    try:
        return parse_service(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", exc.generation) from None


def service_document(generation: int, configs) -> dict:
    """The JSON document of ``configs`` (inverse of ``parse_service``)."""
    return {"generation": generation,
            "configs": [{**c.__dict__, "envs": dict(c.envs), "batch_size": "auto" if c.batch_size == AUTO else c.batch_size}
                        for c in configs]}


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_env(base: dict, config: ModelConfig, total_workers: int, drop: tuple[str, ...] = ()) -> dict:
    """Environment of a worker of ``config``: ``base`` (minus ``drop``, e.g. the auth
    token) + the config's envs, ``OMP_NUM_THREADS`` = cores // all workers of the service
    (oversubscribed OpenMP threads cost more than half the throughput on small boxes; a
    smaller value in the envs is kept), and the project on ``PYTHONPATH``."""
    env = {k: v for k, v in base.items() if k not in drop}
    env.update(config.envs)
    threads = max(1, cpu_cores() // max(1, total_workers))
    asked = env.get("OMP_NUM_THREADS", "")
    env["OMP_NUM_THREADS"] = str(min(threads, int(asked)) if asked.isdigit() and int(asked) > 0 else threads)
    env.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
    env.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))   # OpenCV refuses bigger images before decoding
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, env.get("PYTHONPATH")) if p)
    return env
