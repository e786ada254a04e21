"""MMS 1.x entry point that serves a ModelArts ``customize_service.py`` unchanged.

Copied into each MMS model folder as ``mms_handler.py`` by benchmarks/serve.py and run
inside MMS's own Python worker (not the project's). MMS 1.1.11 ships only the legacy,
manifest-driven ``MXNetBaseService``; ModelArts' MXNet runtime gives a service a base
whose ``__init__(model_name, model_path)`` records the folder and whose ``inference`` runs
``_preprocess -> _inference -> _postprocess``. This adapter supplies exactly that base
while the service module is imported, then hands each request of the batch MMS passes
to the service in ModelArts' shape ``{"images": {filename: file-like}}``.
"""

import importlib.util
import io
import os
import sys
import types

_service = None


def _modelarts_base():
    module = types.ModuleType("mms.model_service.mxnet_model_service")

    class MXNetBaseService(object):
        def __init__(self, model_name, model_path, *args, **kwargs):
            import mxnet as mx
            self.model_name, self.model_path, self.ctx = model_name, model_path, mx.cpu()

        def inference(self, data):
            return self._postprocess(self._inference(self._preprocess(data)))

    module.MXNetBaseService = MXNetBaseService
    return module


def _load(model_name, model_dir):
    key = "mms.model_service.mxnet_model_service"
    saved = sys.modules.get(key)
    base = sys.modules[key] = _modelarts_base()
    try:
        spec = importlib.util.spec_from_file_location("customize_service", os.path.join(model_dir, "customize_service.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules[key]
        else:
            sys.modules[key] = saved
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, base.MXNetBaseService) and c is not base.MXNetBaseService]
    if len(classes) != 1:
        raise RuntimeError("customize_service.py must define exactly one service class")
    return classes[0](model_name, model_dir)


def handle(data, context):
    global _service
    if _service is None:
        _service = _load(context.model_name, context.system_properties["model_dir"])
    if data is None:  # MMS's initialisation call
        return None
    answers = []
    for request in data:
        raw = request.get("images") or request.get("body") or request.get("data")
        answers.append(_service.inference({"images": {"image.jpg": io.BytesIO(bytes(raw))}}))
    return answers
