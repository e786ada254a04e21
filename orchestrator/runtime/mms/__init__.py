"""Local stand-in for the `mms` package of ModelArts' MXNet runtime (MMS legacy lineage).

Only the parts a ``customize_service.py`` touches: ``mms.model_service.mxnet_model_service``,
``mms.log`` and ``mms.utils.mxnet.{image,ndarray}``. This folder's parent
(``orchestrator/runtime``) is put on ``sys.path`` of predictor workers and jobs only.
"""

__version__ = "1.0.0-local"
