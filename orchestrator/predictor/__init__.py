"""Local predictor: serves a ModelArts MXNet model package over HTTP.

``python -m orchestrator.predictor --model-dir DIR [--port 0] [--ready-file PATH] ...``
runs one front process (FastAPI on uvicorn, no mxnet) and ``--workers`` model processes
(``worker.py``, one ``customize_service`` instance each). Modules: ``cli`` (arguments),
``server`` (lifecycle, ready file), ``app`` + ``asgi`` (HTTP), ``pool`` (dispatch to
workers), ``protocol`` (messages, error codes), ``worker`` + ``loader`` (model side).
"""
