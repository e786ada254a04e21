"""Checkpoints of the embedding network and the ModelArts model package ``model/``.

Checkpoints (insightface ``ckpt_embedding``: the embedding network only, no fc7):
``<prefix>-symbol.json`` + ``<prefix>-%04d.params`` with ``arg:``/``aux:`` keys, the format
of ``mx.model.save_checkpoint`` (loadable by ``mx.model.load_checkpoint`` and Module).

Package (``export_package``), built in a temporary folder and renamed into place::

    model/model-symbol.json, model/model-0000.params   embedding network: data -> N x emb
    model/face.json        {"image_size": [H, W], "data_name": "data", "prefix": "model",
                            "epoch": 0, "emb_size", "flip": true, "threshold": cosine,
                            "threshold_source", "network", "loss", "verification": {...}}
    model/gallery.npz      optional: "embeddings" C x emb (L2-normalised mean of each
                           identity's flip-summed embeddings), "labels" C names
    model/customize_service.py, model/config.json   from inference/face_recognition/

The service calls two faces the same person when the cosine of their flip-summed,
normalised embeddings exceeds ``threshold``.
"""
import json
import os

from jobs.common import package
from jobs.common.package import ExportError, write_json_atomic, write_package  # noqa: F401 (ExportError: API)


def find_inference_dir(explicit, code_dir):
    """Folder holding customize_service.py and config.json, or ExportError."""
    return package.find_inference_dir(explicit, code_dir, "face_recognition")


def network_params(net):
    """(symbol, {"arg:name"|"aux:name": CPU NDArray}) of a Gluon embedding network."""
    import mxnet as mx
    symbol = net(mx.sym.var("data"))
    aux = set(symbol.list_auxiliary_states())
    params = {("aux:" if name in aux else "arg:") + name: p.data(p.list_ctx()[0]).copyto(mx.cpu())
              for name, p in net.collect_params().items()}
    return symbol, params


def save_checkpoint(prefix, epoch, symbol, params):
    """Write prefix-symbol.json and prefix-%04d.params atomically; return the params path."""
    import mxnet as mx
    path = "%s-%04d.params" % (prefix, epoch)
    for target, write in ((prefix + "-symbol.json", symbol.save),
                          (path, lambda p: mx.nd.save(p, params))):
        tmp = f"{target}.tmp-{os.getpid()}"
        write(tmp)
        os.replace(tmp, target)
    return path


def resolve(prefix, epoch, also_in=None):
    """(prefix, epoch, face.json dict or {}) of a checkpoint 'prefix,epoch' or, with epoch
    None, of a model package folder (model-symbol.json + model-0000.params + face.json).
    A relative path not found as given is also looked up inside folder `also_in`.
    ValueError says what is missing."""
    def where(path):
        if not os.path.exists(path) and also_in and not os.path.isabs(path):
            return os.path.join(also_in, path)
        return path
    if epoch is None:
        folder = where(prefix)
        info = {}
        if os.path.isfile(os.path.join(folder, "face.json")):
            with open(os.path.join(folder, "face.json")) as f:
                info = json.load(f)
        prefix, epoch = os.path.join(folder, info.get("prefix", "model")), info.get("epoch", 0)
        if not os.path.isfile("%s-%04d.params" % (prefix, epoch)):
            raise ValueError(f"{folder} is not a model package (no {os.path.basename(prefix)}-"
                             f"{epoch:04d}.params); pass a package folder or 'prefix,epoch'")
        return prefix, epoch, info
    path = where("%s-%04d.params" % (prefix, epoch))
    if not os.path.isfile(path):
        looked = f" (also looked in {also_in})" if also_in else ""
        raise ValueError(f"{prefix}-{epoch:04d}.params not found{looked}; pass 'prefix,epoch' "
                         f"of an existing checkpoint or a model package folder")
    return path[:-len("-0000.params")], epoch, {}


def load_params(prefix, epoch, also_in=None):
    """{name: NDArray} (arg:/aux: stripped) of a checkpoint or package (see resolve)."""
    import mxnet as mx
    prefix, epoch, _ = resolve(prefix, epoch, also_in)
    path = "%s-%04d.params" % (prefix, epoch)
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise ValueError(f"cannot read {path} ({str(e).splitlines()[0]})") from None
    return {k.partition(":")[2] or k: v for k, v in loaded.items()}


def load_block(prefix, epoch, also_in, ctx):
    """(SymbolBlock of the saved embedding network, face.json dict or {}); the network
    shape comes from its -symbol.json, so no --network arguments are needed."""
    import mxnet as mx
    prefix, epoch, info = resolve(prefix, epoch, also_in)
    if not os.path.isfile(prefix + "-symbol.json"):
        raise ValueError(f"{prefix}-symbol.json not found beside the weights")
    try:
        block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                             "%s-%04d.params" % (prefix, epoch), ctx=ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as e:
        raise ValueError(f"cannot load {prefix} ({str(e).splitlines()[0]})") from None
    return block, info


def set_network_params(net, loaded, what):
    """Copy `loaded` into the (initialised) Gluon net; ValueError when they do not fit.

    Names the net lacks (e.g. fc7 of a classification checkpoint) are ignored.
    """
    params = net.collect_params()
    missing = [n for n in params if n not in loaded]
    wrong = [n for n in params if n in loaded and tuple(loaded[n].shape) != params[n].shape]
    if missing or wrong:
        example = (wrong or missing)[0]
        raise ValueError(f"{what} does not fit this network ({len(wrong)} shape mismatches, "
                         f"{len(missing)} missing parameters, e.g. {example}): use the same "
                         f"--network, --num_layers/--net_units, --width_mult and --emb_size")
    for name, p in params.items():
        p.set_data(loaded[name])


def export_package(train_url, symbol, params, face_info, gallery, inference_dir):
    """Write train_url/model/ (see the module docstring); return its path.

    gallery: None or (embeddings C x D float32, labels [C]).
    """
    import mxnet as mx
    import numpy as np

    def fill(tmp):
        symbol.save(os.path.join(tmp, "model-symbol.json"))
        mx.nd.save(os.path.join(tmp, "model-0000.params"), params)
        write_json_atomic(os.path.join(tmp, "face.json"),
                          dict(face_info, prefix="model", epoch=0, data_name="data", flip=True))
        if gallery is not None:
            embeddings, labels = gallery
            with open(os.path.join(tmp, "gallery.npz"), "wb") as f:
                np.savez(f, embeddings=np.asarray(embeddings, np.float32),
                         labels=np.asarray(labels, dtype=str))

    return write_package(train_url, inference_dir, fill)
