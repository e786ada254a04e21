"""Local predictor: serves ModelArts MXNet model packages over HTTP.

``python -m orchestrator.predictor --model-dir DIR`` (one package) or ``--config FILE``
(several packages with traffic weights, reloaded on SIGHUP) runs one front process
(its own HTTP/1.1 layer on httptools and uvloop, no mxnet) and a pool of worker processes per package (one
``customize_service`` instance each). See README.md here for the module map and
docs/predictor.md for the user guide.
"""
