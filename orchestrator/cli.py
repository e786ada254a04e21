"""``python -m orchestrator``: run, validate, plan, status, logs, report, compare, cleanup, args, schema.

Exit codes: 0 success, 1 a step failed (after teardown), 2 the user's input is wrong
(one message naming file, line and key; no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import Interrupted, StepFailed, UserError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except BrokenPipeError:   # `orchestrator plan x.yaml | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    from .version import VersionAction
    p = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_: str, pipeline: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        if pipeline:
            sp.add_argument("pipeline", type=Path, help="the pipeline file (pipeline.yaml)")
        sp.add_argument("--config", type=Path, help="config.json with backend profiles (default: found next to the "
                                                    "pipeline or in the current folder)")
        sp.add_argument("--profile", help="backend profile of config.json (overrides the pipeline's)")
        sp.add_argument("--backend", choices=("local", "modelarts"),
                        help="use the profile of config.json with this backend (when --profile is not given)")
        if pipeline:
            sp.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", dest="params",
                            help="set a parameter declared under parameters: (repeatable)")
            sp.add_argument("--strict", action="store_true",
                            help="refuse settings this profile would only emulate or ignore (e.g. GPU flavours locally)")
        sp.set_defaults(func=func)
        return sp

    sp = add("run", cmd_run, "run every step: prepare, upload, train, import, deploy, predict, teardown", True)
    sp.add_argument("--json", action="store_true", help="print a machine-readable summary instead of the live view")
    sp.add_argument("--keep", action="store_true", help="leave everything running (teardown.when=never)")
    sp.add_argument("-v", "--verbose", action="store_true", help="show every job log line")
    sp.add_argument("--resume", metavar="RUN", help="continue run RUN (after a crash or Ctrl-C): finished steps are "
                                                    "skipped, a job still running is re-attached, uploads resume")
    sp.add_argument("--no-cache", action="store_true", help="run every step even when an earlier run's output "
                                                            "could be reused")
    sp = add("validate", cmd_validate, "check a pipeline file without side effects", True)
    sp = add("plan", cmd_plan, "show the steps, names and emulation notes of a run (no side effects)", True)
    sp.add_argument("--json", action="store_true")
    sp = add("status", cmd_status, "list runs, or one run's resources")
    sp.add_argument("run", nargs="?", help="a run id (or a unique prefix)")
    sp.add_argument("--json", action="store_true")
    sp = add("logs", cmd_logs, "print a run's logs")
    sp.add_argument("run", help="a run id (or a unique prefix)")
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing while the run is going")
    sp = add("report", cmd_report, "write a run's report.html (steps, settings, curves, predictions) and print its path")
    sp.add_argument("run", help="a run id (or a unique prefix), or a run folder")
    sp.add_argument("--open", action="store_true", help="open it in the web browser")
    sp = add("compare", cmd_compare, "parameters, metrics and curves of runs side by side (terminal + compare.html)")
    sp.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids (or unique prefixes, or run folders)")
    sp.add_argument("--output", type=Path, default=Path("compare.html"), help="the HTML page (default: ./compare.html)")
    sp.add_argument("--open", action="store_true", help="open compare.html in the web browser")
    sp.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    sp = add("cleanup", cmd_cleanup, "remove whatever finished or crashed runs left behind")
    sp.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    sp.add_argument("--run", help="only this run")
    sp.add_argument("--force", action="store_true", help="with --run: a run still going is stopped first "
                                                          "(SIGTERM: it tears itself down), then cleaned")
    sp.add_argument("--repair", action="store_true", help="first replace a damaged ledger: keep a copy, recover "
                                                          "every readable row and the runs known from their folders")
    sp.add_argument("--cache", action="store_true", help="also delete every cached output (prepared data, "
                                                         "uploaded data, trained models) kept for later runs")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("args", help="list the arguments a training job declares (its arguments.json)")
    sp.add_argument("code_dir", nargs="*", type=Path, help="job folders (default: the project's jobs)")
    sp.add_argument("--markdown", action="store_true", help="Markdown tables, as in docs/jobs.md")
    sp.set_defaults(func=cmd_args)
    sp = sub.add_parser("schema", help="print the JSON Schema of pipeline.yaml (for editors)")
    sp.add_argument("--output", type=Path)
    sp.set_defaults(func=cmd_schema)
    sp = sub.add_parser("image", help="the custom image ModelArts runs MXNet in (docs/modelarts.md)")
    isub = sp.add_subparsers(dest="image_command", required=True, metavar="IMAGE_COMMAND")
    sp = isub.add_parser("build-context", help="write a Docker build context (Dockerfile, pinned requirements, "
                                               "runtime, boot scripts) into DIR")
    sp.add_argument("dir", type=Path, help="a new or empty folder (or one this command wrote before)")
    sp.add_argument("--base", help="base image of the CPU Dockerfile (default: python:<this Python>-slim-bookworm)")
    sp.set_defaults(func=cmd_image_context)
    return p


def cmd_run(args) -> int:
    from .display import Display, summary
    from .pipeline import Pipeline
    from rich.console import Console

    console = Console(stderr=args.json)
    display = Display(console, verbose=args.verbose)
    pipeline = Pipeline.from_yaml(args.pipeline, args.config, _profile(args), None if args.json else display,
                                  resume=args.resume, strict=args.strict, keep=args.keep, params=args.params,
                                  no_cache=args.no_cache)
    if not args.resume:
        for run_id in _unfinished_runs(pipeline.ledger, pipeline.plan.pipeline):
            console.print(f"note: run {run_id} of this pipeline did not finish and left resources: "
                          f"`run {args.pipeline} --resume {run_id}` continues it, `cleanup --run {run_id}` removes them")
    if pipeline.plan.data.split:
        console.print(f"data: {pipeline.plan.data.split}")
    code = 0
    try:
        with display if not args.json else _Null():
            pipeline.run()
    except StepFailed as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, Interrupted):
        code = Interrupted.exit_code
    except Exception as exc:   # a bug, not the user's fault: say where the traceback is
        print(f"internal error: {exc!r} (traceback in {pipeline.plan.run_dir / 'logs' / 'orchestrator.log'})",
              file=sys.stderr)
        code = 1
    report = pipeline.report.data
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        summary(console, report)
    return code


def _unfinished_runs(ledger, pipeline: str) -> list[str]:
    """Runs of ``pipeline`` whose process is gone but whose resources are not (newest first)."""
    from .reconcile import owner_alive
    return [r.run_id for r in ledger.runs(limit=20) if r.pipeline == pipeline and r.status != "cleaned"
            and not (r.status == "running" and owner_alive(r)) and ledger.live_resources(r.run_id)][:3]


def cmd_validate(args) -> int:
    from .factory import load_plan
    plan, _, _ = load_plan(args.pipeline, args.config, _profile(args), strict=args.strict, params=args.params)
    print(f"{args.pipeline}: valid ({len(plan.steps)} steps on the '{plan.profile}' profile, backend {plan.backend})")
    return 0


def cmd_plan(args) -> int:
    from .factory import load_plan
    plan, _, _ = load_plan(args.pipeline, args.config, _profile(args), strict=args.strict, params=args.params)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(f"pipeline {plan.pipeline}  profile {plan.profile} (backend {plan.backend})  root {plan.root}")
    print(f"run id (new for each run, e.g.): {plan.run_id}")
    if plan.params:
        print("parameters: " + ", ".join(f"{n}={v!r}" + (" (-p)" if src == "-p" else "") for n, v, src in plan.params))
    if plan.cache:
        print("cache: " + ", ".join(f"{s} {k}" for s, k in plan.cache)
              + " (an earlier run's output with the same key is reused; --no-cache runs them all)")
    for i, step in enumerate(plan.steps, 1):
        print(f"{i}. {step.title}")
        for detail in step.details:
            print(f"     {detail}")
    for note in plan.notes:
        print(f"note: {note}")
    return 0


def cmd_status(args) -> int:
    from .factory import config_and_dir, ledger_for, make_backend
    config, config_dir = config_and_dir(args.config)
    backend = make_backend(config, config_dir, _profile(args))
    ledger = ledger_for(backend)
    if args.run:
        run = ledger.find_run(args.run)
        rows = [{"kind": r.kind, "name": r.name, "state": _resource_state(backend, r), "id": r.ref_id}
                for r in ledger.resources(run.run_id)]
        out = {"run": {**run.__dict__, "status": _run_status(run)}, "resources": rows}
        if args.json:
            print(json.dumps(out, indent=2, default=str))
            return 0
        print(f"{run.run_id}  {run.pipeline}  {_run_status(run)}  started {_when(run.started_at)}  folder {run.run_dir}")
        for r in rows:
            print(f"  {r['kind']:<14} {r['state']:<13} {r['name']}")
        return 0
    runs = ledger.runs(limit=20)
    if args.json:
        print(json.dumps([{**r.__dict__, "status": _run_status(r)} for r in runs], indent=2, default=str))
        return 0
    if not runs:
        print("no runs yet")
        folders = [p for p in (backend.root / "runs").glob("*") if p.is_dir()]
        if folders:
            print(f"warning: the ledger knows no run, but {len(folders)} run folder(s) exist in {backend.root / 'runs'}: "
                  "was it lost or truncated? `orchestrator cleanup --repair` adds them back", file=sys.stderr)
    for run in runs:
        live = len(ledger.live_resources(run.run_id))
        took = f"{run.ended_at - run.started_at:6.1f}s" if run.ended_at else "   ... "
        print(f"{run.run_id}  {run.pipeline:<20} {_run_status(run):<12} {_when(run.started_at)} {took}  "
              f"{live} live resource(s)")
    return 0


def _run_status(run) -> str:
    """The ledger's status, except that a 'running' run whose process is gone is 'crashed'
    (``run --resume`` continues it, ``cleanup`` removes what it left)."""
    from .reconcile import live
    return "crashed" if run.status == "running" and not live(run) else run.status


def _resource_state(backend, row) -> str:
    """The ledger's state; for a created service, what the backend says when it cannot answer."""
    if row.kind != "service" or row.state != "created":
        return row.state
    from .backends.base import ServiceRef
    actual = backend.service_status(ServiceRef(row.ref_id or row.name, row.name, row.detail.get("url", "")))
    return row.state if actual == "running" else f"{row.state}, {actual}"


def cmd_logs(args) -> int:
    from .factory import config_and_dir, ledger_for, make_backend
    from .reconcile import owner_alive
    config, config_dir = config_and_dir(args.config)
    ledger = ledger_for(make_backend(config, config_dir, _profile(args)))
    run = ledger.find_run(args.run)
    logs = Path(run.run_dir) / "logs"
    offsets: dict[Path, int] = {}
    while True:
        for path in sorted(logs.glob("*.log")):
            with open(path, "rb") as fh:
                fh.seek(offsets.get(path, 0))
                chunk = fh.read()
            if chunk:
                if path not in offsets:
                    print(f"==> {path.name} <==")
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
            offsets[path] = offsets.get(path, 0) + len(chunk)
        run = ledger.run(run.run_id)
        if not args.follow or run.status != "running" or not owner_alive(run):
            return 0
        time.sleep(0.5)


def cmd_report(args) -> int:
    from .results.page import write
    path = write(_run_dir(args, args.run))
    print(path)
    if args.open:
        _open(path)
    return 0


def cmd_compare(args) -> int:
    from .results import compare
    if len(args.runs) < 2:
        raise UserError("compare needs at least two runs", hint="e.g. `orchestrator compare RUN1 RUN2`")
    runs = compare.load_all([_run_dir(args, r) for r in args.runs])
    table = compare.table(runs)
    path = compare.write_html(runs, args.output)
    if args.json:
        print(json.dumps(table, indent=2, default=str))
    else:
        from rich.console import Console
        compare.print_table(Console(), table)
        print(f"compare.html: {path}")
    if args.open:
        _open(path)
    return 0


def _run_dir(args, run: str) -> Path:
    """A run folder given as a path, else found in the ledger by id or unique prefix."""
    if (Path(run) / "report.json").is_file():
        return Path(run)
    from .factory import config_and_dir, ledger_for, make_backend
    config, config_dir = config_and_dir(args.config)
    found = ledger_for(make_backend(config, config_dir, _profile(args))).find_run(run)
    if not (Path(found.run_dir) / "report.json").is_file():
        raise UserError(f"run {found.run_id} has no report.json in {found.run_dir}",
                        hint="it may have been started by an older version or its folder was removed")
    return Path(found.run_dir)


def _open(path: Path) -> None:
    import webbrowser
    if not webbrowser.open(path.resolve().as_uri()):
        print(f"no web browser found: open {path} yourself", file=sys.stderr)


def cmd_cleanup(args) -> int:
    from .factory import config_and_dir, ledger_for, make_backend
    from .reconcile import leftovers, live, owner_alive, remove, stop_owner
    config, config_dir = config_and_dir(args.config)
    backend = make_backend(config, config_dir, _profile(args))
    if args.repair:
        from .ledger_repair import repair
        for line in repair(backend.root / "ledger.sqlite", backend.root / "runs"):
            print(f"repair: {line}", file=sys.stderr)
    ledger = ledger_for(backend)
    run = ledger.find_run(args.run) if args.run else None
    run_id = run.run_id if run else None
    if live(run):
        if not args.force:
            raise UserError(f"run {run_id} is still running (process {run.owner_pid}); cleanup leaves it alone",
                            hint=f"stop it (Ctrl-C in its terminal, or `kill {run.owner_pid}`) and clean up again, "
                                 f"or pass --force to stop it through its own teardown first")
        if args.dry_run:
            print(f"would stop run {run_id} (process {run.owner_pid}), then remove what its teardown leaves")
            return 0
        print(f"stopping run {run_id} (process {run.owner_pid}): it tears itself down first", file=sys.stderr)
        if not stop_owner(run):
            print(f"run {run_id} did not stop within its grace period and was killed", file=sys.stderr)
    items = leftovers(backend, ledger, run_id)
    listed = [{"kind": r.kind, "name": r.name, "run_id": r.run_id, "detail": r.detail} for r, _ in items]
    if args.dry_run:
        if args.json:
            print(json.dumps(listed, indent=2))
            return 0
        if not items:
            print("nothing to clean up")
        for r in listed:
            print(f"would remove {r['kind']:<14} {r['name']}  (run {r['run_id']})")
        return 0
    deleted, failed = remove(backend, ledger, items, lambda msg: None if args.json else print(msg))
    if args.cache and not args.dry_run:
        from .cache import CacheStore, purge
        purged = purge(CacheStore(backend.root), backend, ledger, lambda msg: None if args.json else print(msg))
        deleted = deleted + [None] * purged
    for run in ledger.runs(status="running"):
        if not owner_alive(run) and not ledger.live_resources(run.run_id):
            ledger.finish_run(run.run_id, "cleaned")
    if args.json:
        print(json.dumps({"deleted": len(deleted), "failed": failed}, indent=2))
    else:
        print(f"removed {len(deleted)} resource(s)" + (f"; {len(failed)} failed" if failed else ""))
        for f in failed:
            print(f"  failed: {f}", file=sys.stderr)
    return StepFailed.exit_code if failed else 0


def cmd_args(args) -> int:
    from . import jobdocs
    from .jobargs import DOC, declaration
    found = jobdocs.project_declarations() if not args.code_dir else []
    for folder in args.code_dir:
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder", hint="name a training code folder (train.code_dir)")
        decl = declaration(folder)
        if decl is None:
            raise UserError(f"{folder} declares no arguments (it has no arguments.json)",
                            hint=f"its hyperparameters are passed as they are; {DOC} shows the format")
        found.append((str(folder), decl))
    if args.markdown:
        sys.stdout.write(jobdocs.markdown(found))
    else:
        sys.stdout.write("\n".join(jobdocs.text(folder, decl) for folder, decl in found))
    return 0


def cmd_schema(args) -> int:
    from .spec import pipeline_json_schema
    text = json.dumps(pipeline_json_schema(), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_image_context(args) -> int:
    from .image.context import build_context
    manifest = build_context(args.dir, args.base)
    print(f"wrote a build context for MXNet {manifest['mxnet']} on {manifest['base']} to {args.dir}\n"
          f"next: docker build -t swr.<region>.myhuaweicloud.com/<organization>/mxnet-orchestrator:{manifest['mxnet']} "
          f"{args.dir}\n      (GPU flavours: -f {args.dir}/Dockerfile.cu112, untested here); then docker push, and set "
          "train.image / model.image in pipeline.yaml (docs/modelarts.md)")
    return 0


def _profile(args) -> str | None:
    """``--profile``, else the profile of config.json that uses ``--backend`` (the default
    profile when it does), else None (the pipeline's or config.json's default)."""
    if args.profile or not args.backend:
        return args.profile
    from .factory import config_and_dir
    config, _ = config_and_dir(args.config, getattr(args, "pipeline", None))
    names = sorted(n for n, p in config.profiles.items() if p.backend == args.backend)
    if config.default_profile in names:
        return config.default_profile
    if len(names) == 1:
        return names[0]
    raise UserError(f"{len(names)} profiles of config.json use the '{args.backend}' backend"
                    + (f": {', '.join(names)}" if names else ""), hint="name one with --profile")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
