"""`MXNetBaseService` as ModelArts' MXNet runtime exposes it to `customize_service.py`.

Contract (both constructor styles of the runtime are accepted):

* new style: ``__init__(self, model_name, model_path)``;
* legacy MMS style: ``__init__(self, model_name, model_dir, manifest, gpu=None)``.

After ``super().__init__`` a service has ``model_name``, ``model_path`` (== ``model_dir``),
``ctx`` and ``signature``. ``inference(data)`` runs ``_preprocess -> _inference ->
_postprocess``. The default ``_inference`` forwards a list of NDArrays through ``mx_model``,
a ``mx.mod.Module`` loaded lazily from the ``*-symbol.json`` / ``*.params`` files in the
model folder, bound at batch size 1 with the signature's input shape.

Details of this implementation:

* Files come from ``manifest['Model']['Symbol']`` / ``['Parameters']`` (names relative to
  the model folder); see ``mms.manifest`` for how the runtime picks them.
* The Module's data names are the signature's input names when the symbol has such
  arguments; otherwise (ModelArts names the HTTP field ``images`` while networks call their
  input ``data``) the symbol's free inputs, in order, get the signature's shapes.
  A leading 0 (any batch) in a shape binds as 1; a batch of another size rebinds.
* ``mx_model`` may be assigned (legacy services build their own Module).
* A ``*label`` input of a loss head (``SoftmaxOutput``) is bound as a label and never fed.
* Default ``_preprocess`` turns a list of array-likes into NDArrays; default
  ``_postprocess`` turns NDArrays into nested lists. ``ping()`` returns the MXNet version.
"""

from __future__ import annotations

import os

import mxnet as mx
from mxnet.io import DataBatch, DataDesc

from mms.log import get_logger
from mms.model_service.model_service import SingleNodeService

logger = get_logger("mxnet_model_service")


def _load_params(path: str, ctx):
    arg_params, aux_params = {}, {}
    for key, value in mx.nd.load(path).items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value.as_in_context(ctx)
        elif kind == "aux":
            aux_params[name] = value.as_in_context(ctx)
    return arg_params, aux_params


def _bind_shape(shape) -> tuple:
    shape = [int(v) for v in shape]
    if not shape:
        raise ValueError("signature input has no data_shape; set input_data_shape (e.g. 0,3,224,224)")
    return tuple([shape[0] or 1] + shape[1:])


def _label_shapes(module, data_shapes) -> list:
    """``[(label_name, shape)]`` the network infers for these data shapes."""
    if not module.label_names:
        return []
    arg_shapes, _, _ = module.symbol.infer_shape_partial(**dict(data_shapes))
    by_name = dict(zip(module.symbol.list_arguments(), arg_shapes))
    return [(n, tuple(by_name[n])) for n in module.label_names]


class MXNetBaseService(SingleNodeService):
    """Base class of ModelArts MXNet services (see module docstring for the contract)."""

    def __init__(self, model_name, model_path=None, manifest=None, gpu=None, **kwargs):
        super().__init__(model_name, model_path, manifest, gpu, **kwargs)
        self.ctx = mx.gpu(int(gpu)) if gpu is not None else mx.cpu()
        self._mx_model = None

    # -- the network -------------------------------------------------------------------
    @property
    def mx_model(self):
        """The bound ``mx.mod.Module``; loaded on first use."""
        if getattr(self, "_mx_model", None) is None:
            self._mx_model = self._load_module()
        return self._mx_model

    @mx_model.setter
    def mx_model(self, module) -> None:
        self._mx_model = module

    def _model_file(self, key: str, what: str) -> str:
        name = self.manifest["Model"].get(key)
        if not name:
            raise FileNotFoundError(f"no {what} file in {self.model_path}")
        path = name if os.path.isabs(name) else os.path.join(self.model_path, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} file not found: {path}")
        return path

    def _load_module(self):
        ctx = getattr(self, "ctx", None) or mx.cpu()
        symbol = mx.sym.load(self._model_file("Symbol", "symbol (*-symbol.json)"))
        arg_params, aux_params = _load_params(self._model_file("Parameters", "parameters (*-NNNN.params)"), ctx)
        inputs = self.signature["inputs"]
        names = [d["data_name"] for d in inputs]
        arguments = symbol.list_arguments()
        if not all(n in arguments for n in names):
            free = [a for a in arguments if a not in arg_params and not a.endswith("label")]
            if len(free) != len(names):
                raise ValueError(f"signature inputs {names} do not match the network inputs {free}")
            names = free
        data_shapes = [(n, _bind_shape(d["data_shape"])) for n, d in zip(names, inputs)]
        # Loss heads (SoftmaxOutput) keep a `*label` input that inference never feeds; it is
        # declared as a label with its inferred shape so binds and rebinds stay consistent.
        labels = [a for a in arguments if a.endswith("label") and a not in arg_params and a not in names]
        module = mx.mod.Module(symbol=symbol, data_names=names, label_names=labels, context=ctx)
        module.bind(for_training=False, data_shapes=data_shapes,
                    label_shapes=_label_shapes(module, data_shapes) or None)
        module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)
        logger.info("loaded %s with inputs %s", os.path.basename(self.manifest["Model"]["Symbol"]), data_shapes)
        return module

    # -- the stages ----------------------------------------------------------------------
    def _preprocess(self, data):
        return [d if isinstance(d, mx.nd.NDArray) else mx.nd.array(d) for d in data]

    def _inference(self, data):
        """Forward a list of NDArrays (one per signature input); return the output list."""
        if isinstance(data, mx.nd.NDArray):
            data = [data]
        ctx = getattr(self, "ctx", None) or mx.cpu()  # legacy code may skip our __init__
        data = [d.as_in_context(ctx) for d in data]
        module = self.mx_model
        shapes = [(n, d.shape) for n, d in zip(module.data_names, data)]
        batch = DataBatch(data=data, provide_data=[DataDesc(n, s) for n, s in shapes],
                          provide_label=[DataDesc(n, s) for n, s in _label_shapes(module, shapes)] or None)
        module.forward(batch, is_train=False)  # rebinds when the batch size changes
        outputs = module.get_outputs()
        for out in outputs:
            out.wait_to_read()  # surface engine errors here, inside the inference stage
        return outputs

    def _postprocess(self, data):
        return [d.asnumpy().tolist() if isinstance(d, mx.nd.NDArray) else d for d in data]

    def ping(self) -> str:
        return mx.__version__
