"""Shows a running pipeline: a live view on a terminal (phase, epoch and batch bars,
validation accuracy, prediction count), plain lines elsewhere (CI logs, pipes), and the
closing summary. It only consumes ``Event``s; it never drives the pipeline."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .events import Event

TITLES = {"prepare": "Prepare data", "upload": "Upload data", "train": "Train", "evaluate": "Evaluate",
          "import_model": "Import model", "deploy": "Deploy service", "predict": "Predict",
          "batch_predict": "Batch predict", "teardown": "Tear down"}


class Display:
    def __init__(self, console: Console | None = None, verbose: bool = False):
        self.console = console or Console(stderr=False)
        self.verbose = verbose
        self.live = self.console.is_terminal
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=self.console, transient=False)
        self.tasks: dict[str, int] = {}
        self.last_epoch_reported = 0
        self.phase: str | None = None

    def __enter__(self):
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.progress.stop()
        return False

    def __call__(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.kind, None)
        if handler:
            handler(event)

    def _print(self, text: str) -> None:
        (self.progress.console if self.live else self.console).print(text, highlight=False)

    def _task(self, key: str, description: str, total: float | None = None) -> int:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, info="")
        return self.tasks[key]

    def _on_step_start(self, event: Event) -> None:
        if self.live:
            self._task(event.step, TITLES.get(event.step, event.step), total=None)
        else:
            self._print(f"[bold]> {TITLES.get(event.step, event.step)}[/bold]")

    def _on_step_end(self, event: Event) -> None:
        ok = event.message == "succeeded"
        mark = "[green]done[/green]" if ok else f"[red]{event.message}[/red]"
        if self.live and event.step in self.tasks:
            self.progress.update(self.tasks[event.step], total=1, completed=1 if ok else 0,
                                 info=f"{event.message} ({event.data.get('seconds', 0):.1f}s)")
            for key in ("epochs", "batches"):
                if event.step == "train" and key in self.tasks:
                    self.progress.update(self.tasks[key], visible=key == "epochs")
        else:
            self._print(f"  {mark} {TITLES.get(event.step, event.step)} in {event.data.get('seconds', 0):.1f}s")
        if not ok and event.data.get("error"):
            self._print(f"  [red]{event.data['error']}[/red]")

    def _on_progress(self, event: Event) -> None:
        p = event.data["progress"]
        acc = p.metrics.get("Validation-accuracy")
        info = (f"{p.val_label} {acc:.3f}" if acc is not None else "") + (f"  {p.speed:.0f} img/s" if p.speed else "")
        if p.phase != self.phase:
            self.phase = p.phase
            if self.live and "epochs" in self.tasks:
                self.progress.update(self.tasks["epochs"], description=f"  epochs ({p.phase.split(',')[0]})")
            elif not self.live:
                self._print(f"    phase {p.phase}")
        if self.live:
            epochs = self._task("epochs", "  epochs", total=p.num_epochs)
            self.progress.update(epochs, total=p.num_epochs, completed=p.epochs_done, info=info)
            if p.epoch_size:
                batches = self._task("batches", "  batches (this epoch)", total=p.epoch_size)
                self.progress.update(batches, total=p.epoch_size, completed=min(p.batch, p.epoch_size))
        if p.validated > self.last_epoch_reported and "Validation-accuracy" in p.metrics:
            self.last_epoch_reported = p.validated
            if not self.live:
                total = f"/{p.num_epochs}" if p.num_epochs else ""
                self._print(f"    epoch {p.validated}{total} {info}")

    def _on_trial(self, event: Event) -> None:
        t = event.data["trial"]
        if self.live:
            task = self._task(f"trial-{t['number']}", f"  trial {t['number']:02d} " + " ".join(
                f"{k}={v}" for k, v in t["hyperparameters"].items())[:26], total=t["num_epochs"])
            value = t["objective"] if t["objective"] is not None else (t["curve"][-1] if t["curve"] else None)
            info = t["status"] + (f" {t['metric']} {value:.3f}" if value is not None else "")
            done = t["epochs_done"] if t["status"] == "running" else (t["num_epochs"] or 1)
            self.progress.update(task, total=t["num_epochs"] or 1, completed=done, info=info)
        elif t["status"] != "running" or "started" in event.message:
            self._print(f"    {event.message}")

    def _on_log(self, event: Event) -> None:
        if self.verbose or event.step == "teardown":
            self._print(f"    [dim]{event.message}[/dim]")

    def _on_prediction(self, event: Event) -> None:
        if self.live:
            task = self._task(f"predictions-{event.step}", "  images" if event.step == "predict" else "  files",
                              total=event.data["total"])
            self.progress.update(task, total=event.data["total"], completed=event.data["done"])
        elif event.data["done"] == event.data["total"] or event.data["done"] % 20 == 0:
            self._print(f"    {event.data['done']}/{event.data['total']} images")


def summary(console: Console, report: dict) -> None:
    table = Table(title=f"run {report['run_id']} ({report['pipeline']}, {report['backend']}): {report['status']}",
                  show_lines=False)
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("result")
    for name, info in report["steps"].items():
        status = "cached" if info.get("cached_from") and info["status"] == "succeeded" else info["status"]
        table.add_row(TITLES.get(name, name), status, f"{info.get('seconds', 0):.1f}s", _result(name, info))
    console.print(table)
    search = report["steps"].get("train", {}).get("search")
    if search:
        _trials_table(console, search)
    if report.get("accuracy") is not None:
        predict = report["steps"]["predict"]
        console.print(f"[bold]Accuracy of the test predictions: {report['accuracy']:.1%}[/bold] "
                      f"({predict['correct']}/{predict['count']} images, p50 latency {predict['latency_p50_ms']} ms)")
    for note in report.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")
    for warning in report["steps"].get("train", {}).get("warnings", []):
        console.print(f"[yellow]training warning: {warning}[/yellow]")
    console.print(f"total {report['seconds']:.1f}s; report: {report['paths']['report']}; logs: {report['paths']['logs']}")
    html = report["paths"].get("html")
    if html and Path(html).is_file():
        console.print(f"pictures: {html} (python -m orchestrator report {report['run_id']} --open)")
    if report.get("tracking"):
        t = report["tracking"]
        console.print(f"MLflow: run {t['run_id']} in {t['tracking_uri']}"
                      + (f", model {t['model_name']} version {t['model_version']}" if t.get("model_version") else ""))
    if report["paths"].get("model"):
        console.print(f"model package kept at {report['paths']['model']}")
    if report.get("error"):
        console.print(f"[red]error: {report['error']}[/red]")


def _trials_table(console: Console, search: dict) -> None:
    table = Table(title=f"{search['algorithm']} search: trials ranked by {search['goal']} {search['metric']}")
    for column in ("rank", "trial", "hyperparameters", "status", search["metric"], "epochs", "time"):
        table.add_column(column)
    for t in search["trials"]:
        value = t["objective"] if t["objective"] is not None else (max(t["curve"]) if t["curve"] else None)
        table.add_row(str(t["rank"]), f"{t['number']:02d}", " ".join(f"{k}={v}" for k, v in t["hyperparameters"].items()),
                      t["status"] + (" (reused)" if t["resumed"] else ""), f"{value:.4f}" if value is not None else "-",
                      str(len(t["curve"])), f"{t['seconds'] or 0:.1f}s")
    console.print(table)


def _result(name: str, info: dict) -> str:
    if info.get("status") == "skipped":
        return info.get("reason", "")
    if info.get("cached_from"):
        text = _result(name, {k: v for k, v in info.items() if k != "cached_from"})
        return f"reused from run {info['cached_from']}" + (f"; {text}" if text else "")
    if name == "upload" and "files" in info:
        return f"{info['files']} files, {info['skipped']} unchanged, {info['bytes'] / 1e6:.1f} MB"
    if name == "train" and info.get("search", {}).get("best_trial"):
        s = info["search"]
        best = next(t for t in s["trials"] if t["number"] == s["best_trial"])
        return f"best of {len(s['trials'])} trials: {best['number']:02d}, {s['metric']} {best['objective']:.3f}"
    if name == "train" and info.get("metrics"):
        m = info["metrics"]
        labels = {"train_accuracy": "train accuracy", "val_accuracy": info.get("selection", "val accuracy")}
        parts = [f"{label} {m[k]:.3f}" for k, label in labels.items() if isinstance(m.get(k), (int, float))]
        for phase in info.get("phases", []) if len(info.get("phases", [])) > 1 else []:
            best = phase.get("best") or {}
            if "accuracy" in best:
                parts.append(f"{phase['name']} ({phase['loss']}) best {best['accuracy']:.3f} @ epoch {best['epoch'] + 1}")
        return ", ".join(parts)
    if name == "import_model" and info.get("optimize"):
        o = info["optimize"]
        agree = (f", top-1 agreement {o['top1_agreement']:.1%}" if o.get("top1_agreement") is not None else
                 f", embeddings within {o['embedding_max_abs_diff']:.3f}" if o.get("embedding_max_abs_diff") is not None
                 else "")
        return f"serving {o['mode']}{agree}"
    if name == "evaluate" and info.get("metrics"):
        m = info["metrics"]
        return f"{m['count']} images, accuracy {m['accuracy']:.1%}, top-5 {m['top5_accuracy']:.1%}"
    if name == "batch_predict" and "count" in info:
        return f"{info['count']} files, {info['errors']} errors -> {info['output']}"
    if name == "deploy" and info.get("url"):
        return info["url"]
    if name == "predict" and "count" in info:
        acc = f"{info['accuracy']:.1%}" if info.get("accuracy") is not None else "n/a"
        unscored = f", {info['unscored']} answers not scored" if info.get("unscored") else ""
        return f"{info['count']} images, accuracy {acc}, {info['errors']} errors{unscored}"
    if name == "teardown" and "deleted" in info:
        return f"{info['deleted']} resources deleted"
    return info.get("error", "")[:80] if info.get("error") else ""
