"""What the project's training jobs share, imported as ``jobs.common.<module>``:

- ``arguments``: a job's arguments declared in its ``arguments.json``, parsed strictly
  (``ArgError``, one line) and checked; the orchestrator reads the same declarations;
- ``runtime``: the frame of a job's ``main`` (logging for the orchestrator, the workspace,
  exit code 2 for the user's mistakes) and the compute context;
- ``package``: atomic JSON files and the ``model/`` package built beside the checkpoints;
- ``workspace``: remote ``--data_url`` / ``--train_url`` (``obs://``) through moxing;
- ``swap``: a folder built under a temporary name replaces the old one whole (also used by
  the data tools of ``jobs/data``).

In this repository (installed with ``pip install -e .``) ``jobs`` is importable from
anywhere. ModelArts gets only a job's code folder: the orchestrator ships this package
inside it as ``jobs/common/`` (see ``orchestrator/tasks.py``); by hand, copy this folder
and ``jobs/__init__.py`` into the code folder the same way. Imports nothing heavy: mxnet
only inside ``runtime.pick_context``.
"""
