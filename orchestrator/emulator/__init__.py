"""A ModelArts emulator on 127.0.0.1: the REST routes, JSON shapes, statuses, error bodies
and AK/SK signature checks of the real service, executed by the local backend, with any
S3-compatible server as its OBS. Start it with ``python -m orchestrator.emulator``."""
