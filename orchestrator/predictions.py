"""The predict step's test cases (held-out images with their true labels, or a folder the
user names), sending them to a service, and scoring the answers."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from .backends.base import BackendError
from .errors import UserError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def cases(plan) -> list[dict]:
    """[{"path", "expected"}]: expected is the true label name, or None when unknown."""
    found = cases_in(plan, plan.predict.images)   # a folder resolved by the plan
    if not found:
        raise UserError("no images to predict", hint="check predict.images and data.test_ratio")
    return found[: plan.predict.limit] if plan.predict.limit else found


def cases_in(plan, images: str) -> list[dict]:
    """The held-out images (``"holdout"``) or the images of a folder or file, labelled by
    their sub-folder when they have one (relative paths: from the pipeline file's folder)."""
    if images == "holdout":
        return _holdout(plan.data.packed_dir, plan.data.images_dir)
    root = Path(images).expanduser()
    return _folder(root if root.is_absolute() else plan.spec_path.parent / root)


def _holdout(packed: Path, images: Path) -> list[dict]:
    labels = (packed / "labels.txt").read_text().splitlines()
    out = []
    for line in (packed / "test.lst").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            out.append({"path": str(images / parts[-1]), "expected": labels[int(float(parts[1]))]})
    return out


def _folder(root: Path) -> list[dict]:
    if root.is_file():
        return [{"path": str(root), "expected": None}]
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTS and path.is_file():
            rel = path.relative_to(root)
            out.append({"path": str(path), "expected": rel.parts[0] if len(rel.parts) > 1 else None})
    return out


def send(backend, service, case: dict, labels: tuple[str, ...] | None = None) -> dict:
    """POST one image; the result records the answer and, when both are known, whether the
    predicted label is the expected one (by name, or by index into ``labels``)."""
    path = Path(case["path"])
    result = {"file": str(path), "expected": case["expected"], "predicted_label": None, "correct": None}
    try:
        answer = backend.predict(service, path.name, path.read_bytes())
    except (BackendError, OSError) as exc:
        return {**result, "status": None, "error": str(exc)}
    result.update(status=answer.status, seconds=round(answer.seconds, 4))
    body = answer.body
    if answer.status != 200:
        message = body.get("error_msg") if isinstance(body, dict) else None
        return {**result, "error": message or json.dumps(body)[:200]}
    label, score = interpret(body)
    if label is None:   # an answer shape we do not know: kept, not scored
        return {**result, "answer": body, "unscored": True}
    result.update(predicted_label=label, score=score)
    if case["expected"] is not None:
        result["correct"] = matches(label, case["expected"], labels)
    return result


_LABEL_KEYS = ("predicted_label", "label", "class", "class_name", "predicted_class", "prediction", "category")
_SCORE_KEYS = ("probability", "score", "confidence", "prob")
_WRAPPERS = ("result", "results", "data", "resp_data", "predictions", "output", "outputs")


def interpret(body, depth: int = 0) -> tuple[str | None, float | None]:
    """``(label, score)`` from the answer shapes services commonly give: ``{"predicted_label",
    "scores": [[label, p], ...]}``, top-k ``scores`` alone, a list of ``{class|label,
    probability|score}``, a list of ``[label, p]`` pairs, ``{"result": ...}``-style wrappers,
    or a bare label; ``(None, None)`` for anything else."""
    if depth > 3:
        return None, None
    if isinstance(body, bool) or body is None:
        return None, None
    if isinstance(body, (str, int, float)):
        return _name(body), None
    if isinstance(body, dict):
        entry = _entry(body)
        if entry is not None:
            label, score = entry
            if score is None and isinstance(body.get("scores"), list):
                score = interpret(body["scores"], depth + 1)[1]
            return label, score
        for key in ("scores", *_WRAPPERS):
            if key in body:
                found = interpret(body[key], depth + 1)
                if found[0] is not None:
                    return found
        return None, None
    if isinstance(body, list) and body:
        ranked = [_entry(item) for item in body]
        if all(entry is not None for entry in ranked):
            best = max(ranked, key=lambda e: -1.0 if e[1] is None else e[1]) if any(
                e[1] is not None for e in ranked) else ranked[0]
            return best
        if len(body) == 1:
            return interpret(body[0], depth + 1)
    return None, None


def _entry(item) -> tuple[str, float | None] | None:
    """One candidate of a list answer: ``{"class": c, "probability": p}`` or ``[c, p]``."""
    if isinstance(item, dict):
        label = next((item[k] for k in _LABEL_KEYS if _is_label(item.get(k))), None)
        score = next((item[k] for k in _SCORE_KEYS if _is_number(item.get(k))), None)
        return None if label is None else (_name(label), score)
    if isinstance(item, (list, tuple)) and len(item) == 2 and _is_label(item[0]) and _is_number(item[1]):
        return _name(item[0]), float(item[1])
    return None


def _is_label(value) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)          # a class index sent as 2.0
    return str(value)


def matches(label: str, expected: str, labels: tuple[str, ...] | None) -> bool:
    """The predicted label names the expected class, or is its index in ``labels``."""
    if label == expected:
        return True
    return bool(labels) and expected in labels and label == str(labels.index(expected))


def summarise(results: list[dict]) -> dict:
    scored = [r for r in results if r["correct"] is not None]
    latencies = sorted(r["seconds"] for r in results if r.get("seconds") is not None)
    return {"count": len(results), "errors": sum(1 for r in results if r.get("error")),
            "unscored": sum(1 for r in results if r.get("unscored")),
            "correct": sum(1 for r in scored if r["correct"]),
            "accuracy": (sum(1 for r in scored if r["correct"]) / len(scored)) if scored else None,
            "latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "latency_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1) if latencies else None}


def keep_thumbnails(results: list[dict], run_dir: Path, limit: int = 48, size: int = 112) -> None:
    """Small PNG copies of the first ``limit`` mispredicted images in ``run_dir/mispredicted/``
    (the held-out images live in a temporary folder the teardown deletes); each kept one is
    named in its result as ``thumbnail`` (relative to run_dir). Unreadable images are skipped."""
    from PIL import Image, UnidentifiedImageError

    wrong = [r for r in results if r.get("correct") is False][:limit]
    if not wrong:
        return
    folder = run_dir / "mispredicted"
    folder.mkdir(exist_ok=True)
    for i, result in enumerate(wrong):
        name = f"{i:03d}.png"
        try:
            with Image.open(result["file"]) as img:
                img = img.convert("RGB")
                img.thumbnail((size, size))
                img.save(folder / name)
        except (OSError, UnidentifiedImageError, ValueError):
            continue
        result["thumbnail"] = f"mispredicted/{name}"


def write(path: Path, results: list[dict]) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text("".join(json.dumps(r) + "\n" for r in results))
    os.replace(tmp, path)
