"""The custom image ModelArts runs MXNet in: its build context (``context.py``), the
paths and ports its specification promises (``layout.py``), a Dockerfile reader
(``dockerfile.py``) and the image's two boot programs (``train.py``, ``serve.py``)."""
