"""The environment of the processes that run user code: training jobs (and their
supervisor), data tools, predictors and their workers.

``allowed_env(environ)`` keeps only what such a process legitimately needs from ours:
the basics (``PATH``, ``HOME``, ``LANG``, ``TMPDIR``, ...), Python's own variables
(``PYTHONPATH``, ...), the thread and library knobs of MXNet, OpenMP, MKL, OpenBLAS and
CUDA (``OMP_NUM_THREADS``, ``MXNET_*``, ``KMP_*``, ``OPENBLAS_*``, ...), ModelArts' and
the orchestrator's own (``MA_*``, ``VC_*``, ``DMLC_*``, ``ORCHESTRATOR_*``). Everything
else, credentials first (``HUAWEICLOUD_SDK_SK``, ``PREDICTOR_AUTH_TOKEN``, cloud keys,
proxies with passwords in them), stays behind; a job that needs a variable names it in
the spec (``train.envs``, ``service.envs``), which the caller adds on top. A name that
looks like a secret (``secret_keys``) is dropped even when its prefix is allowed.

``without_secrets(environ)`` only drops secret-looking names: for a process started by
hand (``python -m orchestrator.predictor``), whose environment is its configuration.
"""

from __future__ import annotations

import os
from typing import Mapping

from .secret_keys import secret_key_name

ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "COLUMNS", "LINES", "NO_COLOR", "TZ",
    "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "MPLBACKEND", "MPLCONFIGDIR",
})
ALLOWED_PREFIXES = (
    "LC_", "XDG_", "PYTHON",                                       # locale, cache dirs, PYTHONPATH & co
    "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "BLIS_", "NUMEXPR_", "VECLIB_",   # thread pools
    "MXNET_", "DMLC_", "CUDA_", "CUDNN_", "NCCL_", "NVIDIA_",      # MXNet, its parameter server, GPUs
    "MA_", "VC_", "ORCHESTRATOR_", "COVERAGE_",                    # ModelArts' job variables, ours, coverage
)


def allowed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items()
            if (k in ALLOWED or k.startswith(ALLOWED_PREFIXES)) and not secret_key_name(k)}


def without_secrets(environ: Mapping[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """``environ`` minus ``drop`` and every secret-looking name."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k not in drop and not secret_key_name(k)}
