"""Services of ``model_type: Image`` models, run the way ModelArts runs a custom image:
the image's default command (its serving boot, from the build context) with the model
package mounted at ``MODEL_DIR`` (a copy here), listening where the image would (port 8080
inside; a free 127.0.0.1 port here, given as ``SERVE_PORT``), and ready when the ``health``
url of the model's config.json answers 200. ``stop`` sends SIGTERM (the image drains
in-flight requests), then SIGKILL after 60 s. Files: ``<root>/<service id>/``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import requests

from orchestrator.backends.local import distributed, procs
from orchestrator.files import read_json, tail, write_json
from orchestrator.image import layout


class ImageServers:
    def __init__(self, root: Path, images):
        self.root, self.images = root, images
        self._session = requests.Session()
        self._session.trust_env = False

    def start(self, sid: str, model: dict, package: Path, instance_count: int, timeout_s: float = 300.0) -> str:
        """Start the image for ``model`` (its emulator record) serving ``package``; blocks
        until healthy and returns its base URL; ``RuntimeError`` with the log tail if not."""
        folder = self.root / sid
        host = self.images.host(model["image"], folder / "root")
        mount = host.path(layout.MODEL_DIR)
        shutil.rmtree(mount, ignore_errors=True)
        shutil.copytree(package, mount)
        port = distributed.free_port()
        env = host.env(**{layout.HOST_ENV: "127.0.0.1", layout.PORT_ENV: str(port),
                          "SERVE_WORKERS": str(instance_count)})
        log = folder / "service.log"
        proc, ident = procs.spawn(host.default_command, log_path=log, cwd=host.make_home(), env=env)
        url = f"http://127.0.0.1:{port}"
        write_json(folder / "process.json", {"process": ident.to_dict(), "url": url})
        health = url + model["health"]["url"]
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the image exited with code {proc.returncode}: {tail(log, 5)}")
            try:
                if self._session.get(health, timeout=2).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.2)
        procs.stop(ident)
        raise RuntimeError(f"the image did not answer {model['health']['url']} within {timeout_s:.0f}s: {tail(log, 5)}")

    def url(self, sid: str) -> str | None:
        state = read_json(self.root / sid / "process.json") or {}
        return state.get("url") if procs.alive(procs.ProcId.from_dict(state.get("process"))) else None

    def stop(self, sid: str) -> None:
        state = read_json(self.root / sid / "process.json") or {}
        procs.stop(procs.ProcId.from_dict(state.get("process")), grace_s=60.0)

    def delete(self, sid: str) -> None:
        self.stop(sid)
        shutil.rmtree(self.root / sid, ignore_errors=True)

    def stop_all(self) -> None:
        for folder in sorted(self.root.glob("*/")):
            self.stop(folder.name)
