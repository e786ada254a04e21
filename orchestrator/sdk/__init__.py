"""The notebook SDK: ModelArts' classic ``modelarts`` SDK classes on any backend.

Cells written for ModelArts run with only their imports changed::

    from modelarts.session import Session           ->  from orchestrator.sdk.session import Session
    from modelarts.estimator import Estimator       ->  from orchestrator.sdk.estimator import Estimator
    from modelarts.model import Model, Predictor    ->  from orchestrator.sdk.model import Model, Predictor
    from modelarts.config.model_config import ServiceConfig
                                                    ->  from orchestrator.sdk.config.model_config import ServiceConfig

or all at once: ``from orchestrator.sdk import Session, Estimator, Model, ServiceConfig, Predictor``.
The backend comes from a ``config.json`` profile (``Session(profile=..., config=...)``);
everything a session creates is in the ledger, so ``python -m orchestrator cleanup``
removes what a notebook forgot. See docs/sdk.md.
"""

from .checks import ArgumentError
from .config.model_config import ServiceConfig
from .estimator import Estimator
from .job import TrainingJob
from .model import Model
from .predictor import Predictor
from .session import Session

__all__ = ["ArgumentError", "Estimator", "Model", "Predictor", "ServiceConfig", "Session", "TrainingJob"]
