"""How the orchestrator's cost grows with the amount of state and data it handles.

    python benchmarks/scale.py            # default sizes: a few minutes on 2 cores
    python benchmarks/scale.py --full     # the issue's sizes (10,000 runs, 20,000 files, 1,000 resources, 50,000 images)

Each case runs at two sizes N and 2N in a fresh temporary root (local backend, real SQLite
ledger, real object store, the real CLI as a subprocess), and reports seconds at both and
the growth factor t(2N) / t(N): 2.0 is linear, below is better (fixed costs), above is
worse than linear (flagged). Cases:

* ``status``: ``python -m orchestrator status`` with N finished runs in the ledger (includes
  the CLI's start-up, also reported alone for an empty ledger);
* ``upload``: ``LocalObjectStore.put`` of a folder of N 1 KB files, then the re-upload that
  skips every unchanged file;
* ``cleanup``: ``python -m orchestrator cleanup`` of N leftover object prefixes (one object each)
  that a crashed run recorded in the ledger;
* ``pack``: ``python -m jobs.data.im2rec`` of N generated 48x48 JPEGs into RecordIO.

Timings on a shared machine move with other load; the growth factor, from two sizes measured
back to back, is the number to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT = {"status": 5000, "upload": 2500, "cleanup": 200, "pack": 2500}
FULL = {"status": 5000, "upload": 10000, "cleanup": 500, "pack": 25000}  # x2 gives the sizes


def _config(root: Path) -> Path:
    path = root / "config.json"
    path.write_text(json.dumps({"default_profile": "local",
                                "profiles": {"local": {"backend": "local", "root": str(root / "state")}}}))
    return path


def _cli(config: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args, "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"orchestrator {' '.join(args)} failed: {done.stderr[-600:]}")
    return time.perf_counter() - started


def _ledger(root: Path):
    from orchestrator.ledger import Ledger

    (root / "state").mkdir(parents=True, exist_ok=True)
    return Ledger(root / "state" / "ledger.sqlite")


def status(root: Path, n: int) -> float:
    """``status`` with ``n`` finished runs; the runs are written in one transaction with the
    ledger's own row format (``Ledger.start_run`` commits each, ~16 ms apiece on a busy disk)."""
    from orchestrator import ledger as ledger_module

    config, ledger = _config(root), _ledger(root)
    now = time.time()
    rows = [tuple(ledger_module.RunRecord(f"261204-000000-{i:05x}", "scale", "pipeline.yaml", "local", "local",
                                          "succeeded", now - n + i, now - n + i + 1, 0, 0.0,
                                          str(root / "runs" / str(i))).__dict__.values()) for i in range(n)]
    with ledger._tx(write=True) as con:
        con.executemany(f"INSERT INTO runs ({ledger_module._RUN_COLS}) VALUES ({','.join('?' * len(rows[0]))})", rows)
    return _cli(config, "status")


def status_empty(root: Path) -> float:
    return _cli(_config(root), "status")


def upload(root: Path, n: int) -> tuple[float, float]:
    from orchestrator.backends.local.storage import LocalObjectStore

    src = root / "files"
    for i in range(n):
        folder = src / f"d{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(1024))
    store = LocalObjectStore(root / "state")
    started = time.perf_counter()
    first = store.put(str(src), "obs://scale/files/")
    mid = time.perf_counter()
    again = store.put(str(src), "obs://scale/files/")
    if first.files != n or again.skipped != n:
        raise RuntimeError(f"upload wrote {first.files}/{n} and skipped {again.skipped}/{n} on the re-upload")
    return mid - started, time.perf_counter() - mid


def cleanup(root: Path, n: int) -> float:
    from orchestrator.backends.local.storage import LocalObjectStore

    config, ledger = _config(root), _ledger(root)
    store = LocalObjectStore(root / "state")
    one = root / "one.bin"
    one.write_bytes(b"x" * 100)
    run_id = "261204-000000-c1ea"
    ledger.start_run(run_id, "scale", "pipeline.yaml", "local", "local", 0, 0.0, str(root / "runs" / run_id))
    for i in range(n):
        uri = f"obs://scale/leftovers/r{i:05d}/"
        store.put(str(one), uri)
        ledger.created(ledger.intend(run_id, "object_prefix", uri, {}), uri)
    ledger.finish_run(run_id, "failed")
    seconds = _cli(config, "cleanup")
    left = store.list("obs://scale/leftovers/")
    if left:
        raise RuntimeError(f"cleanup left {len(left)} objects behind")
    return seconds


def pack(root: Path, n: int) -> float:
    from jobs.data import generate_classification as gen

    classes = 10
    gen.generate(root / "images", classes=classes, images_per_class=n // classes, seed=0, min_size=48, max_size=48,
                 progress=False)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jobs.data.im2rec", str(root / "images"), str(root / "packed"),
                           "--val-ratio", "0.1", "--test-ratio", "0", "--resize", "48"], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"im2rec failed: {done.stderr[-600:]}")
    return time.perf_counter() - started


def measure(name: str, func, n: int) -> list[tuple[str, int, float, float]]:
    """``[(label, N, t(N), t(2N))]`` (upload gives two rows: first upload and re-upload)."""
    times = []
    for size in (n, 2 * n):
        with tempfile.TemporaryDirectory(prefix=f"scale-{name}-") as tmp:
            result = func(Path(tmp), size)
        times.append(result if isinstance(result, tuple) else (result,))
        print(f"  {name} N={size}: " + ", ".join(f"{t:.2f} s" for t in times[-1]), flush=True)
    labels = [name] if len(times[0]) == 1 else [f"{name} (first)", f"{name} (re-upload, all skipped)"]
    return [(label, n, times[0][i], times[1][i]) for i, label in enumerate(labels)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the issue's sizes (much longer)")
    p.add_argument("--only", help="comma-separated cases: status,upload,cleanup,pack")
    p.add_argument("--n", type=int, help="the smaller size N of every case (a quick check)")
    args = p.parse_args(argv)
    sizes = FULL if args.full else DEFAULT
    wanted = args.only.split(",") if args.only else list(sizes)
    cases = {"status": status, "upload": upload, "cleanup": cleanup, "pack": pack}
    rows = []
    if "status" in wanted:
        with tempfile.TemporaryDirectory(prefix="scale-status-") as tmp:
            print(f"  status with an empty ledger (the CLI's start-up): {status_empty(Path(tmp)):.2f} s", flush=True)
    for name in wanted:
        rows += measure(name, cases[name], args.n or sizes[name])
    print(f"\n{'case':<34}{'N':>7}{'t(N) s':>9}{'t(2N) s':>9}{'growth':>8}")
    for label, n, small, large in rows:
        growth = large / small if small else float("nan")
        flag = "  worse than linear" if growth > 2.3 else ""
        print(f"{label:<34}{n:>7}{small:>9.2f}{large:>9.2f}{growth:>7.2f}x{flag}")
    print("growth = t(2N) / t(N): 2.0x is linear")
    return 0


if __name__ == "__main__":
    sys.exit(main())
