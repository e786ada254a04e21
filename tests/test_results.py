"""Seeing the results: report.html of a real tiny run rendered in headless Chromium, `report`
and `compare` on the command line, and MLflow tracking read back through MLflow's client.

Two tiny runs of the same pipeline (different lr) share one state folder; the first one logs
to a real MLflow SQLite store under tmp_path.
"""

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from pipelines import cli, tiny_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]   # the two runs are built in the first test
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("results")
    found = []
    for i, lr in enumerate((0.05, 0.02)):
        path = tiny_pipeline(base, train={"hyperparameters": {"num_layers": 20, "image_shape": "3,32,32",
                                                               "num_epochs": 2, "batch_size": 8, "lr": lr,
                                                               "disp_batches": 2}})
        path = path.rename(base / f"pipeline{i}.yaml")
        if i == 0:   # only the first run is tracked
            config = json.loads((base / "config.json").read_text())
            config["tracking"] = {"mlflow": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "experiment": "tiny-exp"}}
            (base / "config.json").write_text(json.dumps(config))
        result = cli("run", str(path), "--json", cwd=base, env={"HOME": str(base)})
        assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
        found.append(json.loads(result.stdout))
        if i == 0:
            (base / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "tracking"}))
    return base, found


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("headless test needs Debian's chromium (apt-get install chromium); CI installs it")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target.outerHTML.slice(0, 60))), true);
window.addEventListener('load', () => {
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({errors: window.__errors, images: [...document.images].map(
    i => ({cls: i.className, ok: i.complete, w: i.naturalWidth, h: i.naturalHeight}))});
  document.body.appendChild(out);
});
</script>"""


def browser_view(html_path: Path, tmp: Path) -> dict:
    """Load a copy of the page (plus a probe script) in headless Chromium: errors and images
    as the browser decoded them."""
    probed = tmp / f"probed-{html_path.name}"
    probed.write_text(html_path.read_text().replace("<head>", "<head>" + PROBE, 1))
    result = chromium("--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                      probed.as_uri(), tmp=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, "the page did not finish loading: " + result.stdout[-500:]
    view = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    view["console"] = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return view


def inline_pngs(html: str, cls: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
            for data in re.findall(rf"<img class='{cls}'[^>]*src='data:image/png;base64,([^']+)'", html)]


def not_blank(img: Image.Image) -> bool:
    lo, hi = zip(*img.getextrema())
    return max(hi) - min(lo) > 60 and len(img.getcolors(1 << 20) or range(1 << 20)) > 20


def test_report_html_loads_in_headless_chromium_with_every_picture(runs, tmp_path):
    _, (report, _) = runs
    run_dir = Path(report["paths"]["run_dir"])
    html_path = Path(report["paths"]["html"])
    html = html_path.read_text()
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html, "self-contained"
    assert "<script" not in html
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    wrong = sum(1 for p in predictions if p["correct"] is False)
    plots, thumbs = inline_pngs(html, "plot"), inline_pngs(html, "thumb")
    # timeline, curves, confusion matrix, accuracy per class, latency histogram
    assert len(plots) == 5 and len(thumbs) == wrong
    assert all(not_blank(img) for img in plots) and all(img.width >= 200 for img in plots)
    assert all(not_blank(img) for img in thumbs)
    for section in ("Steps", "Settings", "Training", "Predictions", "Mispredicted images"):
        assert f"<h2>{section}" in html
    assert "--lr</td><td>0.05" in html

    view = browser_view(html_path, tmp_path)
    assert view["errors"] == [] and view["console"] == []
    assert [i["cls"] for i in view["images"]].count("plot") == 5
    assert len(view["images"]) == 5 + wrong
    assert all(i["ok"] and i["w"] > 0 and i["h"] > 0 for i in view["images"]), view["images"]

    shot = tmp_path / "report.png"
    result = chromium("--hide-scrollbars", "--window-size=1000,1400", f"--screenshot={shot}", html_path.as_uri(),
                      tmp=tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert not_blank(Image.open(shot).convert("RGB"))


def test_report_command_rebuilds_the_page_and_names_unknown_runs(runs):
    base, (report, _) = runs
    html_path = Path(report["paths"]["html"])
    html_path.unlink()
    result = cli("report", report["run_id"][:15], cwd=base)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(html_path) and "<img class='plot'" in html_path.read_text()
    assert not list(html_path.parent.glob(".tmp-*")), "written atomically"
    missing = cli("report", "no-such-run", cwd=base)
    assert missing.returncode == 2 and "no run matches 'no-such-run'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_compare_two_runs_in_the_terminal_and_as_html(runs, tmp_path):
    base, (first, second) = runs
    out = tmp_path / "cmp.html"
    result = cli("compare", first["run_id"], second["run_id"], "--output", str(out), cwd=base)
    assert result.returncode == 0, result.stderr
    lr_row = next(line for line in result.stdout.splitlines() if re.match(r"\W*lr\b", line))
    assert "0.05" in lr_row and "0.02" in lr_row
    assert first["run_id"] in result.stdout and second["run_id"] in result.stdout
    as_json = json.loads(cli("compare", first["run_id"], second["run_id"], "--output", str(out), "--json",
                             cwd=base).stdout)
    rows = {r["name"]: r for r in as_json["params"]}
    assert rows["lr"] == {"name": "lr", "values": ["0.05", "0.02"], "differs": True}
    assert rows["num_epochs"]["differs"] is False
    metrics = {r["name"]: r for r in as_json["metrics"]}
    assert {"val_accuracy", "predict_accuracy", "predict_latency_p50_ms"} <= set(metrics)
    html = out.read_text()
    assert re.search(r"<tr class='diff'><td>lr</td>", html) and "<tr class=''><td>num_epochs</td>" in html
    curves = inline_pngs(html, "plot")
    assert len(curves) == 1 and not_blank(curves[0])
    view = browser_view(out, tmp_path)
    assert view["errors"] == [] and len(view["images"]) == 1 and view["images"][0]["w"] > 0
    one = cli("compare", first["run_id"], cwd=base)
    assert one.returncode == 2 and "at least two runs" in one.stderr


def test_mlflow_has_params_metrics_artifacts_and_the_registered_model(runs):
    from mlflow.tracking import MlflowClient

    base, (report, untracked) = runs
    uri = f"sqlite:///{base / 'mlflow' / 'mlflow.db'}"
    assert report["tracking"]["tracking_uri"] == uri and "tracking" not in untracked
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("tiny-exp")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == report["tracking"]["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["orchestrator.run_id"] == report["run_id"]
    params = run.data.params
    assert params["lr"] == "0.05" and params["num_epochs"] == "2" and params["task"] == "classification"
    assert params["train_flavor"] == "modelarts.vm.gpu.p100"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    metrics = json.loads((Path(report["paths"]["run_dir"]) / "metrics.json").read_text())
    assert [m.value for m in history] == pytest.approx([e["val_accuracy"] for e in metrics["epochs"]])
    assert run.data.metrics["predict_accuracy"] == pytest.approx(report["accuracy"])
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr")] == pytest.approx([0.05, 0.05])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "report.json", "metrics.json", "model"} <= artifacts
    assert "customize_service.py" in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    version = client.get_model_version("tiny", str(report["tracking"]["model_version"]))
    assert version.run_id == run.info.run_id and version.source.endswith("/model")
    assert version.tags["orchestrator.run_id"] == report["run_id"]
    assert not (base / "mlruns").exists(), "artefacts go beside the database, not into the current folder"
