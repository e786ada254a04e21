"""Pipeline parameters: typed defaults, -p overrides, ${params.NAME} anywhere, and errors
that name the parameter and the line."""

from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.params import parse_overrides
from orchestrator.spec import load_pipeline_params

BASE = """\
name: demo
parameters:
  lr: 0.1
  epochs: {type: int, default: 3, description: passes over the data}
  tag: {type: str, default: v1}
  deploy: true
train:
  hyperparameters:
    lr: ${params.lr}
    num_epochs: ${params.epochs}
    note: "run-${params.tag}-e${params.epochs}"
service:
  instance_count: ${params.epochs}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_defaults_keep_their_types_and_strings_interpolate(tmp_path):
    spec, resolved = load_pipeline_params(write(tmp_path, BASE))
    hp = spec.train.hyperparameters
    assert hp["lr"] == 0.1 and isinstance(hp["num_epochs"], int) and hp["note"] == "run-v1-e3"
    assert spec.service.instance_count == 3
    assert resolved.values == {"lr": 0.1, "epochs": 3, "tag": "v1", "deploy": True}
    assert set(resolved.sources.values()) == {"default"}


def test_overrides_are_converted_to_the_declared_type(tmp_path):
    spec, resolved = load_pipeline_params(write(tmp_path, BASE), parse_overrides(["lr=0.05", "epochs=2",
                                                                                  "deploy=no"]))
    assert spec.train.hyperparameters["lr"] == 0.05 and spec.train.hyperparameters["num_epochs"] == 2
    assert resolved.values["deploy"] is False and resolved.sources["lr"] == "-p"


@pytest.mark.parametrize("override, message", [
    (["epochs=2.5"], "parameter 'epochs': '2.5' is not a valid int"),
    (["lr=fast"], "parameter 'lr': 'fast' is not a valid float"),
    (["lr=nan"], "parameter 'lr': 'nan' is not a valid float"),
    (["deploy=maybe"], "parameter 'deploy': 'maybe' is not a valid bool"),
    (["epoch=2"], "declares no parameter 'epoch' (did you mean 'epochs'?)"),
    (["lr"], "write -p NAME=VALUE"),
])
def test_bad_overrides_name_the_parameter(tmp_path, override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_pipeline_params(write(tmp_path, BASE), parse_overrides(override))


def test_unknown_reference_names_the_key_and_line_with_a_suggestion(tmp_path):
    path = write(tmp_path, BASE.replace("${params.epochs}\n    note", "${params.epoch}\n    note"))
    with pytest.raises(UserError) as err:
        load_pipeline_params(path)
    assert f"{path}:10" in str(err.value)
    assert "train.hyperparameters.num_epochs: unknown parameter 'epoch' (did you mean 'epochs'?)" in str(err.value)


def test_type_errors_after_substitution_name_the_parameter(tmp_path):
    with pytest.raises(UserError) as err:
        load_pipeline_params(write(tmp_path, BASE), {"epochs": "40"})
    text = str(err.value)
    assert f"{tmp_path / 'p.yaml'}:13: service.instance_count" in text
    assert "from parameter 'epochs' = 40, -p" in text


def test_malformed_sections_and_references(tmp_path):
    cases = [
        ("parameters: [1, 2]\n", "parameters must be a mapping"),
        ("parameters:\n  x: {type: complex, default: 1}\n", "type 'complex' is not one of"),
        ("parameters:\n  x: {type: int}\n", "parameter 'x' has no default"),
        ("parameters:\n  x: {type: int, default: 1, help: no}\n", "unknown key 'help'"),
        ("parameters:\n  x: {type: int, default: abc}\n", "'abc' is not a valid int"),
        ("parameters:\n  x:\n", "needs a default value"),
        ("description: ${env.HOME}\n", "not a parameter reference"),
        ("description: ${params.x}\n", "the file declares no parameters"),
    ]
    for extra, message in cases:
        with pytest.raises(UserError, match=message):
            load_pipeline_params(write(tmp_path, "name: demo\n" + extra))


def test_files_without_parameters_are_unchanged(tmp_path):
    spec, resolved = load_pipeline_params(write(tmp_path, "name: demo\ndescription: costs $5 {not a ref}\n"))
    assert spec.description == "costs $5 {not a ref}" and resolved.values == {}


def test_pipeline_object_takes_parameters_and_no_cache(tmp_path):
    from orchestrator import Pipeline
    from pipelines import tiny_pipeline
    tiny_pipeline(tmp_path)
    spec = {"name": "nb-search", "parameters": {"epochs": 3, "gate": 0.5},
            "train": {"hyperparameters": {"num_epochs": "${params.epochs}"},
                      "search": {"trials": 2, "space": {"lr": {"choices": [0.1, 0.01]}}}},
            "model": {"when": "train.metrics.val_accuracy >= params.gate"}}
    p = Pipeline.from_dict(spec, base_dir=tmp_path, config=tmp_path / "config.json", params={"epochs": 2},
                           no_cache=True)
    assert ("epochs", 2, "-p") in p.plan.params and p.plan.cache == ()
    assert [dict(t.job.hyperparameters)["num_epochs"] for t in p.plan.search.trials] == ["2", "2"]
    assert p.plan.condition("import_model") == "train.metrics.val_accuracy >= params.gate"
    with pytest.raises(UserError, match="unknown parameter 'gat'"):
        Pipeline.from_dict({**spec, "model": {"when": "train.metrics.val_accuracy >= params.gat"}}, base_dir=tmp_path,
                           config=tmp_path / "config.json")
