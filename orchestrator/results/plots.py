"""The report's pictures: matplotlib figures rendered with the Agg backend to PNG bytes.

Each function takes plain values (from ``rundata``) and returns PNG bytes, or None when
there is nothing to draw. No pyplot: figures are built directly on an Agg canvas, so no
global backend or figure registry is touched and nothing needs a display.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .rundata import CURVE_KEYS, Series

STATUS_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "running": "#f9a825", "skipped": "#9e9e9e",
                  "cached": "#64b5f6", "interrupted": "#ef6c00"}


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buf.getvalue()


def step_state(info: dict) -> str:
    """succeeded / failed / running / skipped / cached: cached covers results reused from
    an earlier run or attempt (``cached_from``, ``cache.hit`` or ``resumed`` in its facts)."""
    status = info.get("status", "running")
    cache = info.get("cache") if isinstance(info.get("cache"), dict) else {}
    if status == "succeeded" and (info.get("cached") or info.get("cached_from") or cache.get("hit") or info.get("resumed")):
        return "cached"
    return status


def timeline(steps: dict, titles: dict | None = None) -> bytes | None:
    """A bar per step from its start to its end (seconds since the run began)."""
    if not steps:
        return None
    titles = titles or {}
    names = list(steps)
    starts = [s.get("started_at") for s in steps.values()]
    origin = min((s for s in starts if s is not None), default=None)
    fig = Figure(figsize=(8, 0.45 * len(names) + 1.0), dpi=100)
    ax = fig.add_subplot()
    cursor = end = 0.0
    for i, (name, info) in enumerate(steps.items()):
        seconds = float(info.get("seconds") or 0.0)
        start = info["started_at"] - origin if origin is not None and info.get("started_at") else cursor
        cursor = start + seconds
        end = max(end, cursor)
        state = step_state(info)
        ax.barh(i, max(seconds, 0.02), left=start, color=STATUS_COLOURS.get(state, "#607d8b"),
                hatch="//" if state in ("cached", "skipped") else None, edgecolor="white")
        ax.text(start + seconds, i, f" {seconds:.1f}s" + ("" if state == "succeeded" else f" ({state})"),
                va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [titles.get(n, n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_xlim(0, max(end, 1.0) * 1.2)
    ax.spines[["top", "right"]].set_visible(False)
    return png(fig)


def curves(series: tuple[Series, ...] | list[Series], title_prefix: str = "") -> bytes | None:
    """One panel per per-epoch quantity present (accuracy, loss, lr, images/s), one line per
    series (job, worker, trial or run)."""
    keys = [k for k in CURVE_KEYS if any(s.values(k)[0] for s in series)]
    if not keys:
        return None
    panels = {"accuracy": [k for k in keys if k.endswith("accuracy")],
              "loss": [k for k in keys if "loss" in k or "cross_entropy" in k],
              "learning rate": [k for k in keys if k == "lr"], "images/s": [k for k in keys if k == "samples_per_s"]}
    panels = {t: ks for t, ks in panels.items() if ks}
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(5.2 * cols, 3.2 * rows), dpi=100)
    many = len(series) > 1
    for i, (title, ks) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, s in enumerate(series):
            colour = f"C{j % 10}"
            for k in ks:
                x, y = s.values(k)
                if not x:
                    continue
                style = "--" if k.startswith("val") and len(ks) > 1 else "-"
                label = " ".join(p for p in ((s.label if many else ""), CURVE_KEYS[k] if len(ks) > 1 else "") if p)
                ax.plot(x, y, style, color=colour if many else f"C{ks.index(k)}", label=label or None,
                        marker="o" if len(x) < 12 else None, markersize=3)
        if title == "learning rate" and ax.lines:
            ax.set_yscale("log")
        ax.set_title(title_prefix + (CURVE_KEYS[ks[0]] if len(ks) == 1 else title), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if any(line.get_label() and not line.get_label().startswith("_") for line in ax.lines):
            ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def confusion(labels: list[str], matrix: np.ndarray) -> bytes:
    n = len(labels)
    size = min(11.0, 2.5 + 0.45 * n)
    fig = Figure(figsize=(size, size * 0.85), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 25:
        top = matrix.max() or 1
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=8,
                        color="white" if v > top / 2 else "black")
    ax.set_title("confusion matrix of the held-out predictions", fontsize=10)
    return png(fig)


def per_class(labels: list[str], accuracy: list[float], counts: list[int]) -> bytes:
    fig = Figure(figsize=(max(5.0, 0.5 * len(labels) + 2), 3.2), dpi=100)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(labels)), accuracy, color="#1976d2")
    for bar, acc, count in zip(bars, accuracy, counts):
        ax.text(bar.get_x() + bar.get_width() / 2, acc, f"{acc:.0%}\nn={count}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy per class", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return png(fig)


def histogram(values_ms: list[float], title: str, xlabel: str) -> bytes | None:
    if not values_ms:
        return None
    fig = Figure(figsize=(5.5, 3.0), dpi=100)
    ax = fig.add_subplot()
    ax.hist(values_ms, bins=min(30, max(5, len(values_ms) // 3)), color="#546e7a")
    p50, p95 = np.percentile(values_ms, [50, 95])
    for v, name, height in ((p50, "p50", 0.97), (p95, "p95", 0.85)):
        ax.axvline(v, color="#c62828", linestyle="--", linewidth=1)
        ax.text(v, ax.get_ylim()[1] * height, f" {name} {v:.1f}", color="#c62828", fontsize=8, va="top")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests")
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return png(fig)


def bars_with_error(names: list[str], means: list[float], stds: list[float], title: str) -> bytes:
    fig = Figure(figsize=(max(4.0, 1.1 * len(names) + 2), 3.0), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="#6a1b9a")
    for i, (m, s) in enumerate(zip(means, stds)):
        ax.text(i, m + s, f"{m:.3f}\n±{s:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.2)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return png(fig)


def roc(curves_by_target: dict[str, tuple[np.ndarray, np.ndarray]], far_target: float) -> bytes | None:
    """TAR against FAR (log scale) per verification set, with the FAR target marked."""
    if not curves_by_target:
        return None
    fig = Figure(figsize=(5.5, 3.8), dpi=100)
    ax = fig.add_subplot()
    for i, (name, (far, tar)) in enumerate(curves_by_target.items()):
        keep = far > 0
        ax.plot(far[keep], tar[keep], color=f"C{i}", label=name, drawstyle="steps-post")
    ax.axvline(far_target, color="#c62828", linestyle="--", linewidth=1, label=f"FAR={far_target:g}")
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("ROC: TAR at FAR", fontsize=10)
    return png(fig)


def distances(pairs_by_target: dict[str, dict]) -> bytes | None:
    """Histograms of same-person and different-person distances per set, threshold marked."""
    if not pairs_by_target:
        return None
    n = len(pairs_by_target)
    fig = Figure(figsize=(5.2 * min(n, 2), 3.0 * ((n + 1) // 2)), dpi=100)
    for i, (name, p) in enumerate(pairs_by_target.items()):
        ax = fig.add_subplot((n + 1) // 2, min(n, 2), i + 1)
        dist, same = np.asarray(p["distances"], float), np.asarray(p["issame"], bool)
        bins = np.linspace(0, max(4.0, float(dist.max(initial=0))), 41)
        ax.hist(dist[same], bins=bins, alpha=0.6, color="#2e7d32", label=f"same person ({same.sum()})")
        ax.hist(dist[~same], bins=bins, alpha=0.6, color="#c62828", label=f"different ({(~same).sum()})")
        if p.get("threshold") is not None:
            ax.axvline(p["threshold"], color="black", linestyle="--", linewidth=1,
                       label=f"threshold {p['threshold']:.2f}")
        ax.set_xlabel("squared L2 distance of normalised embeddings")
        ax.set_ylabel("pairs")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
