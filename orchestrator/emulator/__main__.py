"""``python -m orchestrator.emulator --port N --root DIR --obs-endpoint URL [--host 127.0.0.1]``

Accepts requests signed with the keys in ``HUAWEICLOUD_SDK_AK`` / ``HUAWEICLOUD_SDK_SK``
(the same keys are used towards the object store). Prints one line with its address once
it listens. SIGTERM/SIGINT: stop serving, stop every job and predictor it started, exit 0.
Exit code 2: bad arguments or missing keys.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

AK_ENV, SK_ENV = "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.emulator", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--root", type=Path, required=True, help="folder for the emulator's state")
    p.add_argument("--obs-endpoint", required=True, help="S3-compatible server, e.g. http://127.0.0.1:9000")
    p.add_argument("--project-id", default="emulator-project", help="project id shown in answers")
    p.add_argument("--flavors", help="comma-separated flavours to accept (default: ModelArts' common ones)")
    p.add_argument("--max-jobs", type=int, default=8, help="training jobs at once before the quota error")
    p.add_argument("--max-services", type=int, default=8, help="services before the quota error")
    p.add_argument("--image", action="append", default=[], metavar="SWR_URL=DIR",
                   help="an image jobs and models may name (engine.image_url, swr_location), backed by a build "
                        "context from `python -m orchestrator image build-context DIR`; repeatable")
    args = p.parse_args(argv)
    ak, sk = os.environ.get(AK_ENV), os.environ.get(SK_ENV)
    if not ak or not sk:
        print(f"error: set {AK_ENV} and {SK_ENV}: the emulator accepts requests signed with these keys",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    from orchestrator.backends.local.backend import LocalBackend
    from orchestrator.backends.modelarts.storage import ObsStorage

    from . import images
    from .jobs import Jobs
    from .models import Models
    from .records import FLAVORS
    from .server import Router, Server
    from .services import Services

    try:
        known = images.Images(images.parse(args.image))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    flavors = tuple(args.flavors.split(",")) if args.flavors else FLAVORS
    router = Router(ak, sk)
    try:
        server = Server(args.host, args.port, router)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    address = f"http://{args.host}:{server.server_port}"
    local = LocalBackend(root / "local")
    obs = ObsStorage(args.obs_endpoint, ak, sk, root / "obs-state", path_style=True, signature="v2",
                     verify_ssl=False)
    jobs = Jobs(root, local, obs, args.obs_endpoint, flavors, args.max_jobs, known)
    models = Models(root, local, obs, args.obs_endpoint, args.project_id, known)
    services = Services(root, local, models, address, args.project_id, flavors, args.max_services)
    for part in (jobs, models, services):
        part.routes(router)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ModelArts emulator listening on {address} (object storage {args.obs_endpoint})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        services.shutdown()
        jobs.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
