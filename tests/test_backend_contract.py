"""Every backend implements the whole ``Backend`` protocol of backends/base.py itself (the
protocol's stubs return None, so a method left to them would fail silently), with the
protocol's parameter names."""

import inspect

import pytest

from orchestrator.backends.base import Backend
from orchestrator.backends.local.backend import LocalBackend
from orchestrator.backends.modelarts.backend import ModelArtsBackend

METHODS = sorted(name for name, value in vars(Backend).items() if inspect.isfunction(value) and name[0] != "_")


@pytest.mark.parametrize("cls", [LocalBackend, ModelArtsBackend])
def test_a_backend_implements_every_method_of_the_protocol(cls):
    assert {"submit_job", "deploy", "preflight", "temp_dir", "list_resources"} <= set(METHODS)
    assert Backend in cls.__mro__ and isinstance(cls.name, str)
    for name in METHODS:
        owner = next(klass for klass in cls.__mro__ if name in vars(klass))
        assert owner is not Backend, f"{cls.__name__}.{name} is only the protocol's stub"
        ours = list(inspect.signature(getattr(cls, name)).parameters)
        assert ours == list(inspect.signature(getattr(Backend, name)).parameters), f"{cls.__name__}.{name}{ours}"


def test_the_local_backend_has_the_protocols_attributes(tmp_path):
    backend = LocalBackend(tmp_path / "root")
    assert backend.root == tmp_path / "root" and backend.storage is not None
    assert backend.temp_dir("r1") == tmp_path / "root" / "tmp" / "r1"
    backend.preflight(("any-bucket",))    # nothing to check locally
