"""A batch-inference worker: ``python -m orchestrator.batch.worker --model-dir DIR --inputs
LIST --out PART`` loads the package's ``customize_service.py`` exactly as a predictor
worker does (``predictor.loader`` + ``predictor.handler.Runner``), sends each file of LIST
(one local path per line) through it as a multipart ``images`` upload, and appends one JSON
line per file to PART, flushed per line: ``{"file", "status", "result"}`` or
``{"file", "status", "error"}``. Files already in PART are skipped, so a worker restarted
after a crash continues where it stopped. Exit 0 when every file has a line; 2 when the
package cannot be loaded (the message is on stderr)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def done_files(part: str) -> set[str]:
    out = set()
    try:
        with open(part, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.add(json.loads(line)["file"])
                except (ValueError, KeyError, TypeError):
                    pass          # a line cut short by a crash: that file runs again
    except FileNotFoundError:
        pass
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator.batch.worker")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--inputs", required=True, help="a file listing one input path per line")
    parser.add_argument("--out", required=True, help="the JSON-lines file to append to")
    parser.add_argument("--py2-compat", action="store_true")
    args = parser.parse_args(argv)
    from orchestrator.predictor import loader
    from orchestrator.predictor.handler import Runner

    model_dir = os.path.abspath(args.model_dir)
    os.chdir(model_dir)
    try:
        service, style = loader.load_service(model_dir, "batch", py2_compat=args.py2_compat)
    except BaseException as exc:   # SystemExit in a service module too
        print(f"cannot load the model package {model_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    runner = Runner(service, style)
    with open(args.inputs, encoding="utf-8") as fh:
        files = [line.rstrip("\n") for line in fh if line.strip()]
    skip = done_files(args.out)
    with open(args.out, "a", encoding="utf-8") as out:
        for path in files:
            if path in skip:
                continue
            try:
                with open(path, "rb") as f:
                    content = f.read()
            except OSError as exc:
                record = {"file": path, "status": None, "error": f"cannot read: {exc.strerror}"}
            else:
                status, body, _ = runner.handle(("multipart", [("images", os.path.basename(path), content)], {}))
                answer = json.loads(body)
                record = {"file": path, "status": status,
                          **({"result": answer} if status == 200 else {"error": answer.get("error_msg", answer)})}
            out.write(json.dumps(record) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
