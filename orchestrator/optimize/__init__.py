"""Optimised inference per model (``model.optimize``): fp32, fused, int8 or bf16.

The conversion itself (``convert.py``, imports mxnet) runs once, in its own process, when
the pipeline imports the model; this module stays light so the CLI starts fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jobs.common.runtime import cpu_has_bf16 as cpu_supports_bf16  # noqa: F401 (one check for jobs and serving)
from orchestrator.errors import StepFailed
from orchestrator.files import tail

REPO_ROOT = Path(__file__).resolve().parents[2]

MODES = ("fp32", "fused", "int8", "bf16")


@dataclass(frozen=True)
class OptimizePlan:
    """What the import step converts (``model.optimize`` and its checks)."""
    mode: str = "fp32"
    calibration: str = "naive"          # int8: naive (min/max) or entropy (KL divergence)
    calibration_images: int = 64        # training records the int8 ranges are calibrated on
    min_top1_agreement: float = 0.99
    max_verification_drop: float = 0.5  # points of verification accuracy (face)

    def describe(self) -> str:
        if self.mode == "fp32":
            return "serve the network as trained (fp32)"
        what = {"fused": "oneDNN graph fusion", "bf16": "bfloat16 (AMP; fp32 if the CPU lacks bf16)",
                "int8": f"int8 oneDNN quantisation, {self.calibration} calibration on "
                        f"{self.calibration_images} training images"}[self.mode]
        return (f"convert to {what}; refuse below {self.min_top1_agreement:.0%} top-1 agreement with fp32 "
                f"(face: {self.max_verification_drop:g} point verification drop) on the held-out images")


def convert_package(opt: OptimizePlan, data, source_uri: str, storage, work: Path, log: Path) -> dict:
    """Download the package at ``source_uri`` (``.../model/``), convert it in a child process
    (``python -m orchestrator.optimize.convert``), upload the converted files beside the
    originals, and return the report. Raises ``StepFailed`` when the conversion fails or
    its agreement with fp32 is below the thresholds (the package is left fp32)."""
    package = work / "model"
    shutil.rmtree(work, ignore_errors=True)
    storage.get(source_uri, str(package))
    report_path = work / "report.json"
    cmd = [sys.executable, "-m", "orchestrator.optimize.convert", str(package), "--mode", opt.mode,
           "--calib-mode", opt.calibration, "--calib-count", str(opt.calibration_images),
           "--task", data.task, "--min-top1", str(opt.min_top1_agreement),
           "--max-verification-drop", str(opt.max_verification_drop), "--report", str(report_path)]
    if (data.packed_dir / "train.rec").is_file():
        cmd += ["--calib", str(data.packed_dir / "train.rec")]
    if (data.packed_dir / "test.lst").is_file():
        cmd += ["--holdout", str(data.packed_dir / "test.lst"), "--images-root", str(data.images_dir)]
    with open(log, "ab") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=str(REPO_ROOT)).returncode
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if code != 0:
        raise StepFailed("import_model", f"model.optimize {opt.mode}: "
                         + (report.get("error") or f"conversion failed (exit {code}):\n{tail(log, 8)}"), log=str(log))
    storage.put(str(package), source_uri)  # unchanged originals are skipped
    return report


def summary(report: dict) -> str:
    """One line for the log and the report: what ran and how close it is to fp32."""
    parts = [f"model.optimize: serving {report.get('mode', 'fp32')}"]
    if report.get("note"):
        parts.append(report["note"])
    if report.get("top1_agreement") is not None:
        parts.append(f"top-1 agreement with fp32 {report['top1_agreement']:.2%} on {report['images']} held-out images")
    if report.get("embedding_max_abs_diff") is not None:
        parts.append(f"embedding max abs diff {report['embedding_max_abs_diff']:.4f}")
    if report.get("verification_fp32") is not None and report.get("verification_converted") is not None:
        parts.append(f"verification {report['verification_fp32']:.2%} -> {report['verification_converted']:.2%}")
    if report.get("forward_ms_fp32"):
        parts.append(f"forward {report['forward_ms_fp32']} -> {report['forward_ms_converted']} ms")
    return "; ".join(parts)
