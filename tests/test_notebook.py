"""notebooks/walkthrough.ipynb runs top to bottom in a real Jupyter kernel of this interpreter.

``python tests/test_notebook.py`` executes it once more and stores the outputs in the
notebook (that is how the committed outputs were made).
"""

import json
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"
KERNEL = "orchestrator-walkthrough"


def execute(kernels_dir: Path) -> nbformat.NotebookNode:
    """Run the notebook in a kernel started with ``sys.executable``; the kernelspec lives in
    ``kernels_dir`` only, so nothing is registered globally. Raises on the first cell error."""
    spec_dir = kernels_dir / KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (orchestrator)", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)
    manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    assert manager.kernel_spec.argv[0] == sys.executable
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, km=manager, timeout=300, record_timing=False, coalesce_streams=True,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return notebook


def stream_text(notebook) -> str:
    return "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []))


@pytest.mark.slow
def test_walkthrough_notebook_runs_in_a_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("WALKTHROUGH_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")   # jupyter_core's own paths, without its migration warning
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    (tmp_path / "work").mkdir()
    notebook = execute(tmp_path / "kernels")

    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert errors == []
    text = stream_text(notebook)
    # part 1: the Pipeline object
    assert "    epoch 3/3: validation accuracy" in text
    assert "accuracy on the held-out images:" in text and "succeeded" in text
    assert "pictures: timeline, curves, confusion, per_class, latency" in text
    inline = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if out.output_type == "display_data" and "image/png" in out.get("data", {})]
    assert len(inline) == 2, "the training curves and the confusion matrix are shown inline"
    # part 2: the SDK classes: progress, final status, predictions, deletion
    assert "Training job walkthrough-sdk: Running" in text
    assert "  epoch 3/3: Train-accuracy=" in text and "Training job walkthrough-sdk: Completed" in text
    assert "first answer: {'predicted_label':" in text and "\naccuracy: " in text
    assert "Service walkthrough_sdk deleted" in text and "{'deleted'}" in text
    assert "nothing to clean up" in text

    state = tmp_path / "work" / "state"
    assert not [p for p in psutil.process_iter(["cmdline"]) if any(str(state) in a for a in p.info["cmdline"] or [])]
    assert not list((state / "services").glob("*")) and not list((state / "jobs").glob("*"))


if __name__ == "__main__":   # refresh the committed outputs
    import os
    import tempfile
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    start = time.time()
    with tempfile.TemporaryDirectory() as kernels:
        executed = execute(Path(kernels))
    for cell in executed.cells:
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(executed, NOTEBOOK)
    print(f"executed and saved {NOTEBOOK} in {time.time() - start:.0f}s")
