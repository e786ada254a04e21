"""Base classes of the MMS-legacy service chain: ``ModelService`` -> ``SingleNodeService``.

Contract:

* ``ModelService.__init__`` accepts both constructor styles of the ModelArts runtime:
  new ``(model_name, model_path)`` and legacy ``(model_name, model_dir, manifest, gpu=None)``.
  It sets ``model_name``, ``model_path`` (== ``model_dir``), ``manifest`` and ``gpu``; when
  no manifest is given it builds one from the folder and the service environment
  (see ``mms.manifest``). ``signature`` returns ``manifest['Model']['Signature']``.
* ``SingleNodeService.inference(data)`` runs ``_preprocess -> _inference -> _postprocess``
  and logs the milliseconds of each stage. An exception keeps its type and gets the
  attribute ``mms_stage`` ("preprocess", "inference" or "postprocess") so the runtime can
  tell bad input (400) from a failing model (500).
* Subclasses that skip ``super().__init__`` (common in legacy code) still work: every
  attribute read here has a fallback.
"""

from __future__ import annotations

import os
import time

from mms.log import get_logger
from mms.manifest import build_manifest

logger = get_logger("service")


class ModelService:
    """Holds the model folder, the manifest and the signature; knows nothing of MXNet."""

    def __init__(self, model_name, model_path=None, manifest=None, gpu=None, **kwargs):
        model_path = kwargs.pop("model_dir", model_path)
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if model_path is None:
            raise TypeError("model_path (or model_dir) is required")
        self.model_name = model_name
        self.model_path = os.path.abspath(model_path)
        self.gpu = gpu
        self._manifest = manifest

    @property
    def model_dir(self) -> str:
        """Legacy name of ``model_path``."""
        return self.model_path

    @model_dir.setter
    def model_dir(self, value) -> None:
        self.model_path = value

    @property
    def manifest(self) -> dict:
        """The legacy manifest; built from the folder and the environment on first use."""
        if getattr(self, "_manifest", None) is None:
            folder = getattr(self, "model_path", None) or os.getcwd()
            self._manifest = build_manifest(folder, getattr(self, "model_name", None))
        return self._manifest

    @manifest.setter
    def manifest(self, value) -> None:
        self._manifest = value

    @property
    def signature(self) -> dict:
        """``{'inputs': [{'data_name', 'data_shape'}], 'outputs': [...]}``."""
        explicit = getattr(self, "_signature", None)
        return explicit if explicit is not None else self.manifest["Model"]["Signature"]

    @signature.setter
    def signature(self, value) -> None:
        # Legacy services sometimes assign their own signature; honour it.
        self._signature = value

    def ping(self) -> str:
        """Health probe; a subclass may report something more useful."""
        return "healthy"

    def inference(self, data):  # pragma: no cover - overridden
        raise NotImplementedError


def _run_stage(name: str, func, data, timings: dict):
    start = time.perf_counter()
    try:
        return func(data)
    except Exception as exc:
        try:
            exc.mms_stage = name
        except AttributeError:  # exceptions with __slots__; the stage is then unknown
            pass
        raise
    finally:
        timings[name] = (time.perf_counter() - start) * 1000.0


class SingleNodeService(ModelService):
    """``inference = _preprocess -> _inference -> _postprocess``; subclasses fill the stages."""

    def inference(self, data):
        timings: dict[str, float] = {}
        try:
            data = _run_stage("preprocess", self._preprocess, data, timings)
            data = _run_stage("inference", self._inference, data, timings)
            return _run_stage("postprocess", self._postprocess, data, timings)
        finally:
            logger.info("%s %s", getattr(self, "model_name", "?"),
                        " ".join(f"{k}={v:.1f}ms" for k, v in timings.items()))

    def _preprocess(self, data):
        return data

    def _inference(self, data):
        return data

    def _postprocess(self, data):
        return data
