"""``orchestrator compare RUN RUN ...``: settings and metrics side by side with the
differences marked, and the training curves of every run overlaid (``compare.html``)."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from pathlib import Path

from . import plots
from .page import CSS, _e
from .rundata import RunData, load


def load_all(run_dirs: list[Path]) -> list[RunData]:
    return [load(d) for d in run_dirs]


def table(runs: list[RunData]) -> dict:
    """{"runs": [{id, pipeline, status}], "params": rows, "metrics": rows}; a row is
    {"name", "values" (one per run, None when a run lacks it), "differs"}."""
    def rows(per_run: list[dict]) -> list[dict]:
        names = list(dict.fromkeys(k for d in per_run for k in d))
        out = []
        for name in names:
            values = [d.get(name) for d in per_run]
            out.append({"name": name, "values": values, "differs": len({repr(v) for v in values}) > 1})
        return out
    return {"runs": [{"id": r.run_id, "pipeline": r.report.get("pipeline"), "status": r.report.get("status")}
                     for r in runs],
            "params": rows([_params(r) for r in runs]),
            "metrics": rows([r.final_metrics for r in runs])}


def print_table(console, data: dict) -> None:
    from rich.table import Table
    for section in ("params", "metrics"):
        t = Table(title=f"{section} (differences in yellow)", show_lines=False)
        t.add_column(section[:-1])
        for run in data["runs"]:
            t.add_column(f"{run['id']}\n{run['status']}", justify="right")
        for row in data[section]:
            style = "bold yellow" if row["differs"] else None
            t.add_row(row["name"], *[_fmt(v) for v in row["values"]], style=style)
        console.print(t)


def write_html(runs: list[RunData], output: Path) -> Path:
    """Write the comparison page atomically; returns its path."""
    data = table(runs)
    parts = [f"<h1>Comparison of {len(runs)} runs</h1>"]
    for section in ("params", "metrics"):
        head = "".join(f"<th>{_e(r['id'])}<br><span class='sub'>{_e(r['pipeline'])} · {_e(r['status'])}</span></th>"
                       for r in data["runs"])
        body = "".join(f"<tr class='{'diff' if row['differs'] else ''}'><td>{_e(row['name'])}</td>"
                       + "".join(f"<td class='num'>{_e(_fmt(v))}</td>" for v in row["values"]) + "</tr>"
                       for row in data[section])
        parts.append(f"<h2>{section}</h2><table><tr><th>{section[:-1]}</th>{head}</tr>{body}</table>")
    overlaid = [replace(s, label=r.run_id if s.label == "job" else f"{r.run_id} {s.label}")
                for r in runs for s in r.series]
    picture = plots.curves(overlaid)
    if picture:
        parts.append("<h2>Training curves</h2><img class='plot' alt='training curves' "
                     f"src='data:image/png;base64,{base64.b64encode(picture).decode()}'>")
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Comparison</title>"
            f"<style>{CSS} tr.diff td{{background:#fff8e1;font-weight:600}}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".tmp-{os.getpid()}-{output.name}")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return output


def _params(run: RunData) -> dict:
    job = run.plan.get("job") or {}
    out = {"pipeline": run.report.get("pipeline"), "task": run.task, "flavor": job.get("flavor"),
           "instance_count": job.get("instance_count")}
    out.update({k: v for k, v in run.hyperparameters.items()})
    return {k: v for k, v in out.items() if v is not None}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
