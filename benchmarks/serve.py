"""Serving benchmark: our predictor against Multi Model Server 1.1.11, same models, same box.

    python benchmarks/serve.py [--quick] [--models resnet18,resnet50,echo] [--concurrency 1,4,16]
        [--duration S] [--reps N] [--workers N] [--no-mms] [--mms-venv PATH] [--cache DIR]
        [--autogroup-nice -15] [--json FILE]

Builds a ResNet-18 and a ResNet-50 classification package (224x224, random weights, MXNet
symbol API, the project's ``inference/image_classification/customize_service.py``) and an
echo package in a temporary folder. Each is served by our predictor and by MMS with the
same number of model processes (default: one per core), and a separate load-generator
process (``_serve_load.py``: closed loop, keep-alive connections) posts the same 640x480
JPEG (multipart field ``images``) at each concurrency. Reported per point: successful
requests/s, p50 and p99 latency, errors, RSS and CPU time per request of the server's
process tree; per server: cold start to ready. Ratios: throughput ours/MMS and p99
MMS/ours (above 1: ours ahead). The echo run shows the HTTP layer's own cost.

Both servers run at the same time and are measured in turns (the order alternating), each
point being the best of ``--reps`` runs, so both see the same background load. On a shared
machine, ``--autogroup-nice -15`` (root) shields the benchmark's sessions from the others.
Default run: about 5 minutes on 2 cores (--quick: about 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _serve_models import build_classifier, build_echo, multipart_body, sample_jpeg  # noqa: E402
from _serve_servers import MMS_VERSION, Mms, Ours, find_mms, spawn  # noqa: E402


def measure(server, body_file: str, content_type: str, concurrency: int, warmup: float, duration: float) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "_serve_load.py"), server.url, body_file, content_type,
           "--concurrency", str(concurrency), "--warmup", str(warmup), "--duration", str(duration)]
    cpu = server.cpu_seconds()
    load = spawn(cmd, server.autogroup_nice, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = load.communicate(timeout=warmup + duration + 120)
    finally:
        load.kill()
    if load.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.strip()[-500:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mb"] = server.rss_mb()
    result["cpu_ms_per_request"] = (server.cpu_seconds() - cpu) * 1000.0 / max(1, result["answered"])
    return result


def best_of(runs: list[dict]) -> dict:
    """One point from repeated runs: the best rate and latencies (each server gets the same
    treatment, which damps bursts of unrelated load on a shared machine); errors added up."""
    errors: dict = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {"rps": max(r["rps"] for r in runs), "p50_ms": min(r["p50_ms"] for r in runs),
            "p99_ms": min(r["p99_ms"] for r in runs), "errors": errors, "rss_mb": max(r["rss_mb"] for r in runs),
            "cpu_ms_per_request": min(r["cpu_ms_per_request"] for r in runs), "runs": runs}


def run_model(servers: list, body_file: str, content_type: str, levels: list[int], warmup: float,
              duration: float, reps: int) -> dict:
    """Start every server, then measure them in turns (order alternating between repetitions)
    so that they see the same background load; stop them all."""
    results = {}
    try:
        for server in servers:
            results[server.label] = {"cold_start_s": server.start(), "points": {}}
            print(f"  {server.label:<10} ready in {results[server.label]['cold_start_s']:5.1f} s", flush=True)
        for c in levels:
            runs: dict = {server.label: [] for server in servers}
            for rep in range(reps):
                for server in (servers if rep % 2 == 0 else servers[::-1]):
                    runs[server.label].append(measure(server, body_file, content_type, c, warmup, duration))
            for server in servers:
                results[server.label]["points"][c] = r = best_of(runs[server.label])
                print(f"  {server.label:<10} c={c:<3} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                      f"p99 {r['p99_ms']:7.1f} ms  errors {sum(r['errors'].values())}  RSS {r['rss_mb']:.0f} MB  "
                      f"CPU {r['cpu_ms_per_request']:.2f} ms/request", flush=True)
    finally:
        for server in servers:
            server.stop()
    return results


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def _summary(label: str, result: dict) -> str:
    points = result["points"].values()
    return (f"{label} cold start {result['cold_start_s']:.1f} s, RSS {max(p['rss_mb'] for p in points):.0f} MB, "
            f"CPU {min(p['cpu_ms_per_request'] for p in points):.2f} ms/request")


def report(title: str, ours: dict, mms: dict | None, levels: list[int]) -> list[str]:
    head = f"{'conc':>4} | {'ours req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'err':>4}"
    if mms:
        head += (f" | {'MMS req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} | "
                 f"{'thr ours/MMS':>12} {'p99 MMS/ours':>12}")
    lines = [f"\n{title}", head]
    for c in levels:
        o = ours["points"][c]
        m = mms["points"][c] if mms else None
        row = f"{c:>4} | {o['rps']:>10.1f} {o['p50_ms']:>7.1f} {o['p99_ms']:>7.1f} {sum(o['errors'].values()):>4}"
        if m:
            row += (f" | {m['rps']:>10.1f} {m['p50_ms']:>7.1f} {m['p99_ms']:>7.1f} {sum(m['errors'].values()):>4} | "
                    f"{_ratio(o['rps'], m['rps']):>11.2f}x {_ratio(m['p99_ms'], o['p99_ms']):>11.2f}x")
        lines.append(row)
    lines.append(_summary("ours:", ours) + (";  " + _summary("MMS:", mms) if mms else ""))
    return lines


def verdicts(name: str, ours: dict, mms: dict, levels: list[int]) -> list[str]:
    out = []
    if 4 in levels:
        r = _ratio(ours["points"][4]["rps"], mms["points"][4]["rps"])
        out.append(f"{name}: throughput at c=4 ours/MMS = {r:.2f}x -> {'ours ahead' if r > 1 else 'NOT ahead'}")
    behind = [c for c in levels if not ours["points"][c]["p99_ms"] < mms["points"][c]["p99_ms"]]
    out.append(f"{name}: p99 ahead at every concurrency: {'yes' if not behind else 'NO, behind at c=' + str(behind)}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Our predictor vs Multi Model Server on loopback.")
    p.add_argument("--quick", action="store_true", help="short points (about 2 minutes in all)")
    p.add_argument("--duration", type=float, help="seconds measured per run (default 4, --quick 3)")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated levels (default 1,4,16)")
    p.add_argument("--reps", type=int, help="repetitions per point, best kept (default 3, --quick 1)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="model processes per server (default: cores)")
    p.add_argument("--models", default="resnet18,resnet50,echo", help="which of resnet18,resnet50,echo (default: all)")
    p.add_argument("--no-mms", action="store_true", help="measure our predictor only")
    p.add_argument("--mms-venv", help=f"a venv with multi-model-server {MMS_VERSION} (default: $MMS_VENV or the cache)")
    p.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "orchestrator-bench"),
                   help="where the MMS venv is created when missing")
    p.add_argument("--json", help="also write all numbers to this file")
    p.add_argument("--autogroup-nice", type=int,
                   help="Linux: scheduling priority of this benchmark's session against other sessions "
                        "(-20..19; negative needs root). On a shared machine `nice` alone does not help: "
                        "the kernel first splits the CPU between sessions (autogroups)")
    args = p.parse_args(argv)
    levels = sorted({int(c) for c in args.concurrency.split(",")})
    duration = args.duration or (3.0 if args.quick else 4.0)
    warmup = 1.0
    reps = args.reps or (1 if args.quick else 3)

    mms_venv, why = (None, "--no-mms") if args.no_mms else find_mms(args.mms_venv, args.cache)
    if mms_venv is None and not args.no_mms:
        print(f"MMS is not available, measuring our predictor only: {why}", flush=True)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {args.workers} model processes per server; "
          f"each point: best of {reps} x {duration:g} s after {warmup:g} s warm-up, servers measured in turns; "
          "servers and load generator share the cores", flush=True)

    results, lines, checks = {}, [], []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        jpeg = sample_jpeg()
        image_type = multipart_body(os.path.join(tmp, "image.body"), "images", "photo.jpg", jpeg)
        echo_type = multipart_body(os.path.join(tmp, "echo.body"), "images", "blob.bin", os.urandom(100 * 1024))
        started = time.perf_counter()
        wanted = args.models.split(",")
        builders = {"ResNet-18": lambda d: build_classifier(d, 18), "ResNet-50": lambda d: build_classifier(d, 50),
                    "echo": build_echo}
        packages = {name: build(os.path.join(tmp, name.lower().replace("-", "")))
                    for name, build in builders.items() if name.lower().replace("-", "") in wanted}
        print(f"packages built in {time.perf_counter() - started:.1f} s; request: {len(jpeg) // 1024} KB JPEG "
              f"640x480 (echo: 100 KB)", flush=True)
        for name, package in packages.items():
            body, ctype = (("echo.body", echo_type) if name == "echo" else ("image.body", image_type))
            body = os.path.join(tmp, body)
            these = [1, max(levels)] if name == "echo" else levels
            print(f"\n{name}", flush=True)
            slug = os.path.basename(package)
            servers = [Ours(package, os.path.join(tmp, f"ours-{slug}"), args.workers, args.autogroup_nice)]
            if mms_venv:
                servers.append(Mms(mms_venv, package, os.path.join(tmp, f"mms-{slug}"), slug, args.workers,
                                   args.autogroup_nice))
            measured = run_model(servers, body, ctype, these, warmup, duration, reps)
            ours, mms = measured[servers[0].label], measured.get(servers[-1].label) if mms_venv else None
            results[name] = {"ours": ours, "mms": mms}
            title = f"{name}: {'100 KB upload, no decoding (HTTP layer + dispatch)' if name == 'echo' else '224x224, 640x480 JPEG'}"
            lines += report(title, ours, mms, these)
            if mms and name != "echo":
                checks += verdicts(name, ours, mms, these)
    print("\n".join(lines + [""] + checks))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"workers": args.workers, "duration_s": duration, "cpu_count": os.cpu_count(),
                       "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
