"""MXNet training and deployment pipelines in the style of Huawei Cloud ModelArts.

``Pipeline`` is the Python API (see ``orchestrator.pipeline``); ``python -m orchestrator``
the command line. Heavy modules (mxnet) are never imported here.
"""

__all__ = ["Pipeline"]


def __getattr__(name):
    if name == "Pipeline":
        from .pipeline import Pipeline
        return Pipeline
    raise AttributeError(name)
