"""``ServiceConfig``: one model behind a real-time service
(``modelarts.config.model_config.ServiceConfig``)."""

from __future__ import annotations

from ...backends.base import ServiceConfig as BackendServiceConfig
from .. import checks


class ServiceConfig:
    """``ServiceConfig(model_id, weight="100", specification="modelarts.vm.cpu.2u",
    instance_count=1, envs={})``: which model, its share of the traffic (the weights of a
    service's configs add up to 100), the flavour, how many instances and the environment
    of its inference code. Wrong shapes raise ``ArgumentError`` at once; the flavour is
    checked against the session's flavours when the service is deployed."""

    def __init__(self, model_id=None, weight="100", specification="modelarts.vm.cpu.2u", instance_count=1,
                 envs=None):
        self.model_id = checks.required(model_id, "model_id")
        if not isinstance(model_id, str):
            raise checks.fail("model_id", f"expected a string (model.get_model_id()), got {type(model_id).__name__}")
        try:
            self.weight = int(str(weight))
        except ValueError:
            self.weight = -1
        if not 0 <= self.weight <= 100:
            raise checks.fail("weight", f"must be a whole number from 0 to 100, got {weight!r}")
        if not isinstance(specification, str) or not specification:
            raise checks.fail("specification", f"expected a flavour name, got {specification!r}")
        self.specification = specification
        self.instance_count = checks.count(instance_count, "instance_count")
        envs = {} if envs is None else envs
        if not isinstance(envs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
            raise checks.fail("envs", f"must be a dict of strings to strings, got {envs!r}",
                              hint="e.g. envs={'input_data_shape': '0,3,32,32'}")
        self.envs = dict(envs)

    def __repr__(self) -> str:
        return (f"ServiceConfig(model_id={self.model_id!r}, weight={str(self.weight)!r}, "
                f"specification={self.specification!r}, instance_count={self.instance_count}, envs={self.envs!r})")

    def to_backend(self) -> BackendServiceConfig:
        return BackendServiceConfig(model_id=self.model_id, weight=self.weight, flavor=self.specification,
                                    instance_count=self.instance_count, envs=tuple(sorted(self.envs.items())))
