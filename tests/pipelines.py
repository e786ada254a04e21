"""Tiny pipelines for integration tests: a few generated images, one short epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_pipeline(tmp_path: Path, **sections) -> Path:
    """Write config.json (root inside tmp_path) and a tiny pipeline.yaml; return its path."""
    (tmp_path / "config.json").write_text(json.dumps({
        "profiles": {"local": {"backend": "local", "root": str(tmp_path / "state")}},
        "flavors": {"modelarts.vm.cpu.2u": {"cpus": 2}, "modelarts.vm.gpu.p100": {"cpus": 8, "gpus": 1, "gpu_type": "P100"}},
        "poll_interval": 0.2}))
    spec = {
        "name": "tiny",
        "data": {"generate": {"classes": 3, "images_per_class": 15, "seed": 1, "min_size": 40, "max_size": 80},
                 "val_ratio": 0.2, "test_ratio": 0.2, "resize": 36, "workers": 1},
        "train": {"code_dir": str(REPO / "jobs" / "image_classification"), "flavor": "modelarts.vm.gpu.p100",
                  "hyperparameters": {"num_layers": 20, "image_shape": "3,32,32", "num_epochs": 1, "batch_size": 8,
                                      "lr": 0.05, "disp_batches": 2}, "max_runtime": "5m"},
        "service": {"deploy_timeout": "2m"},
    }
    for key, value in sections.items():
        if isinstance(value, dict):   # merged into the section; None drops a key
            value = {k: v for k, v in {**spec.get(key, {}), **value}.items() if v is not None}
        spec[key] = value
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fake_job(tmp_path: Path, body: str) -> Path:
    """A ModelArts-style training code folder whose train.py runs ``body``."""
    code = tmp_path / "fake_job"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("import sys, time\n" + body + "\n")
    return code


def cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})}, **kwargs)
