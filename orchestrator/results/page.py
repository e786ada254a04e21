"""``report.html``: one self-contained page per run (plain HTML + CSS, every picture an inline
base64 PNG, no script, nothing fetched), so it opens from disk, in a mail or an archive.

``write(run_dir)`` is idempotent: it rebuilds the page from the files of the run folder and
replaces the old one atomically. Each picture is an ``<img class="plot">`` (thumbnails of
mispredicted images ``<img class="thumb">``), which the browser test counts.
"""

from __future__ import annotations

import base64
import html
import os
import time
from pathlib import Path

from ..display import TITLES
from . import analysis, plots
from .rundata import RunData, load

MAX_THUMBS = 48

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
     color:#212121;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.sub{color:#616161;font-size:13px}
.status{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-size:12px}
.succeeded{background:#2e7d32}.failed{background:#c62828}.running{background:#f9a825}.interrupted{background:#ef6c00}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{max-width:100%;display:block;margin:8px 0}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:120px;font-size:11px;text-align:center}
figure img{width:112px;height:112px;object-fit:contain;background:#f5f5f5;border:1px solid #e0e0e0}
.warn{background:#fff3e0;border-left:4px solid #ef6c00;padding:6px 10px;margin:6px 0;font-size:13px}
.err{background:#ffebee;border-left:4px solid #c62828;padding:6px 10px;margin:6px 0;font-size:13px}
.cols{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
"""


def write(run_dir: str | Path) -> Path:
    """Build ``<run_dir>/report.html`` from the run folder; returns its path."""
    run = load(run_dir)
    target = run.run_dir / "report.html"
    tmp = target.with_name(f".tmp-{os.getpid()}-report.html")   # a run's end and `report RUN` may overlap
    tmp.write_text(render(run), encoding="utf-8")
    tmp.replace(target)
    return target


def render(run: RunData) -> str:
    r = run.report
    parts = [f"<h1>Run {_e(run.run_id)} <span class='status {_e(r.get('status', ''))}'>{_e(r.get('status', ''))}"
             f"</span></h1>",
             f"<div class='sub'>pipeline {_e(r.get('pipeline'))} · profile {_e(r.get('profile'))} (backend "
             f"{_e(r.get('backend'))}) · started {_when(r.get('started_at'))} · {float(r.get('seconds') or 0):.1f} s"
             + (f" · test accuracy {r['accuracy']:.1%}" if isinstance(r.get("accuracy"), float) else "") + "</div>"]
    if r.get("error"):
        parts.append(f"<div class='err'>{_e(r['error'])}</div>")
    parts += [f"<div class='warn'>note: {_e(n)}</div>" for n in r.get("notes", [])]
    pics = pictures(run)
    parts.append("<h2>Steps</h2>" + _img(pics.get("timeline"), "step timeline") + _steps_table(run.steps))
    parts.append("<h2>Settings</h2>" + _settings(run))
    parts.append(_training(run, pics) + _search(run))
    parts.append(_face(run, pics) if run.task == "face" else _classification(run, pics))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Run {_e(run.run_id)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body>\n{body}\n<p class='sub'>written {_when(time.time())} by "
            f"<code>python -m orchestrator report {_e(run.run_id)}</code></p></body></html>\n")


def _steps_table(steps: dict) -> str:
    rows = []
    for name, info in steps.items():
        facts = ", ".join(f"{k} {_num(v)}" for k, v in info.items()
                          if k not in ("status", "seconds", "started_at", "metrics", "progress", "error")
                          and isinstance(v, (str, int, float, bool)))
        rows.append(f"<tr><td>{_e(TITLES.get(name, name))}</td><td>{_e(plots.step_state(info))}</td>"
                    f"<td class='num'>{float(info.get('seconds') or 0):.1f}s</td>"
                    f"<td>{_e(info.get('error') or facts)}</td></tr>")
    return "<table><tr><th>step</th><th>status</th><th>time</th><th>facts</th></tr>" + "".join(rows) + "</table>"


def _settings(run: RunData) -> str:
    plan = run.plan
    job, data = plan.get("job") or {}, plan.get("data") or {}
    service = (plan.get("service") or {}).get("configs") or [{}]
    rows = [("task", data.get("task")), ("data", data.get("mode") or data.get("source")),
            ("training code", f"{_relative(job.get('code_dir'), plan.get('spec_path'))} {job.get('boot_file', '')}".strip()),
            ("training flavour", job.get("flavor")), ("training instances", job.get("instance_count")),
            ("service flavour", service[0].get("flavor")), ("service instances", service[0].get("instance_count"))]
    rows += [(f"--{k}", v) for k, v in run.hyperparameters.items()]
    rows = [(k, v) for k, v in rows if v not in (None, "")]
    if not rows:
        return "<p class='sub'>no plan.json in the run folder</p>"
    return _table(["setting", "value"], rows)


def pictures(run: RunData) -> dict[str, bytes]:
    """Every plot of the run as PNG bytes, by name: timeline, curves, and confusion,
    per_class, latency (classification) or accuracy_per_set, roc, distances (face); what
    the run lacks the data for is left out. ``IPython.display.Image(data)`` shows one."""
    out = {"timeline": plots.timeline(run.steps, TITLES), "curves": plots.curves(run.series) if run.series else None}
    if run.task == "face":
        final = run.metrics.get("final") or {}
        have = _face_sets(run)
        if have:
            out["accuracy_per_set"] = plots.bars_with_error(
                have, [final[f"{t}_accuracy"] for t in have], [final.get(f"{t}_accuracy_std") or 0.0 for t in have],
                "verification accuracy per set (10 folds, mean ± std)")
        if run.pairs:
            far_target = next(iter(run.pairs.values())).get("far_target", 1e-3)
            out["roc"] = plots.roc({t: analysis.roc(p["distances"], p["issame"]) for t, p in run.pairs.items()},
                                   far_target)
            out["distances"] = plots.distances(run.pairs)
    elif run.predictions:
        conf = analysis.confusion(run.predictions, _class_names(run))
        if conf is not None:
            acc, counts = conf.per_class
            out["confusion"] = plots.confusion(conf.labels, conf.matrix)
            out["per_class"] = plots.per_class(conf.labels, acc, counts)
        out["latency"] = plots.histogram([p["seconds"] * 1000 for p in run.predictions if p.get("seconds") is not None],
                                         "latency of the test predictions", "milliseconds per request")
    return {name: data for name, data in out.items() if data}


def _training(run: RunData, pics: dict) -> str:
    final = run.metrics.get("final") or {}
    if not run.series and not final:
        return ""
    out = ["<h2>Training</h2>", _img(pics.get("curves"), "training curves")]
    if final:
        out.append(_table(["final metric", "value"], [(k, _num(v)) for k, v in final.items()]))
    return "".join(out)


def _search(run: RunData) -> str:
    """The trials of a hyperparameter search, ranked (report.json: the train step's ``search``)."""
    search = (run.steps.get("train") or {}).get("search") or {}
    trials = search.get("trials") or []
    if not trials:
        return ""
    rows = [(t.get("rank"), f"t{t.get('number', 0):02d}", t.get("status"), _num(t.get("objective")),
             ", ".join(f"{k}={v}" for k, v in (t.get("hyperparameters") or {}).items()), t.get("reason") or "")
            for t in trials]
    return (f"<h2>Search: {len(trials)} trials by {_e(search.get('metric'))} ({_e(search.get('goal'))})</h2>"
            + _table(["rank", "trial", "status", "objective", "hyperparameters", "reason"], rows))


def _classification(run: RunData, pics: dict) -> str:
    preds = run.predictions
    if not preds:
        return ""
    out = ["<h2>Predictions</h2>"]
    if "confusion" in pics:
        out.append("<div class='cols'>" + _img(pics["confusion"], "confusion matrix")
                   + _img(pics["per_class"], "accuracy per class") + "</div>")
    out.append(_img(pics.get("latency"), "latency histogram"))
    wrong = [p for p in preds if p.get("correct") is False or p.get("error")]
    out.append(f"<h2>Mispredicted images ({len(wrong)} of {len(preds)})</h2>")
    figures = []
    for p in wrong[:MAX_THUMBS]:
        thumb = run.run_dir / p["thumbnail"] if p.get("thumbnail") else None
        img = (f"<img class='thumb' alt='{_e(Path(p['file']).name)}' src='data:image/png;base64,"
               f"{base64.b64encode(thumb.read_bytes()).decode()}'>") if thumb and thumb.is_file() else ""
        score = f" {p['score']:.2f}" if isinstance(p.get("score"), float) else ""
        caption = (f"true <b>{_e(p.get('expected'))}</b><br>predicted <b>{_e(p.get('predicted_label'))}</b>{score}"
                   if not p.get("error") else f"error: {_e(str(p['error'])[:80])}")
        figures.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
    if figures:
        out.append("<div class='grid'>" + "".join(figures) + "</div>")
        if len(wrong) > MAX_THUMBS:
            out.append(f"<p class='sub'>the first {MAX_THUMBS} are shown</p>")
    else:
        out.append("<p class='sub'>none: every scored image was predicted right</p>")
    return "".join(out)


def _face(run: RunData, pics: dict) -> str:
    final = run.metrics.get("final") or {}
    have = _face_sets(run)
    out = ["<h2>Verification</h2>"]
    if have:
        out.append(_img(pics.get("accuracy_per_set"), "accuracy per verification set"))
        out.append(_table(["set", "accuracy", "VAL@FAR", "FAR", "threshold", "XNorm"],
                          [(t, f"{final[f'{t}_accuracy']:.4f} ± {final.get(f'{t}_accuracy_std') or 0:.4f}",
                            _num(final.get(f"{t}_val")), _num(final.get(f"{t}_far")),
                            _num(final.get(f"{t}_threshold")), _num(final.get(f"{t}_xnorm"))) for t in have]))
    if run.pairs:
        out += [f"<div class='warn'>{_e(w)}</div>" for t, p in run.pairs.items()
                if (w := analysis.too_small(t, p["issame"], p.get("folds", 10), p.get("far_target", 1e-3)))]
        out += [_img(pics.get("roc"), "ROC"), _img(pics.get("distances"), "distance histograms")]
    elif have:
        out.append("<p class='sub'>no verification_pairs.json in the run folder: no ROC or distance histogram</p>")
    return "".join(out) if len(out) > 1 else ""


def _face_sets(run: RunData) -> list[str]:
    final = run.metrics.get("final") or {}
    return [t for t in run.metrics.get("targets") or list(run.pairs)
            if isinstance(final.get(f"{t}_accuracy"), (int, float))]


def _class_names(run: RunData) -> list[str] | None:
    for path in (run.run_dir / "model" / "model" / "labels.txt", run.run_dir / "model" / "labels.txt"):
        if path.is_file():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return None


def _relative(path: str | None, spec_path: str | None) -> str:
    """``path`` relative to the pipeline file's folder when it lies inside it."""
    if not path or not spec_path:
        return path or ""
    try:
        return str(Path(path).relative_to(Path(spec_path).parent))
    except ValueError:
        return path


def _img(data: bytes | None, alt: str) -> str:
    if not data:
        return ""
    return f"<img class='plot' alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"


def _table(head: list[str], rows) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _e(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _when(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "?"
