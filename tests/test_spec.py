"""pipeline.yaml and config.json validation: clear errors with file, line and key path."""

import json
from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.spec import ConfigSpec, load_config, load_pipeline, parse_duration, pipeline_json_schema

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, loader=load_pipeline) -> str:
    with pytest.raises(UserError) as info:
        loader(path)
    return str(info.value)


def test_default_pipeline_and_config_are_valid():
    spec = load_pipeline(REPO / "pipeline.yaml")
    assert spec.name == "caltech-demo"
    assert spec.predict.min_accuracy == 0.9
    config = load_config(REPO / "config.json")
    assert config.profile(None)[0] == "local"
    assert config.flavors["modelarts.vm.gpu.p100"].gpus == 1


def test_misspelt_key_names_line_path_and_suggestion(tmp_path):
    path = write(tmp_path, "name: demo\ntrain:\n  hyperparameters:\n    lr: 0.1\n  max_runtme: 5m\n")
    message = error_of(path)
    assert f"{path}:5" in message
    assert "train.max_runtme" in message
    assert "did you mean 'max_runtime'" in message


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path):
    message = error_of(write(tmp_path, "name: demo\nservice:\n  zzz: 1\n"))
    assert "allowed keys here" in message and "instance_count" in message


def test_invalid_values_name_their_lines(tmp_path):
    path = write(tmp_path, "name: demo\ndata:\n  val_ratio: 2\nservice:\n  instance_count: 0\n")
    message = error_of(path)
    assert f"{path}:3: data.val_ratio" in message
    assert f"{path}:5: service.instance_count" in message


def test_bad_name_and_missing_name(tmp_path):
    assert "name" in error_of(write(tmp_path, "name: Bad_Name\n"))
    assert "name: Field required" in error_of(write(tmp_path, "description: x\n"))


def test_yaml_syntax_error_and_duplicate_keys(tmp_path):
    assert f"{tmp_path / 'pipeline.yaml'}:2" in error_of(write(tmp_path, "name: demo\n  bad: [\n"))
    assert "duplicate key 'name'" in error_of(write(tmp_path, "name: a\nname: b\n"))


def test_empty_and_non_mapping_files(tmp_path):
    assert "empty" in error_of(write(tmp_path, ""))
    assert "mapping" in error_of(write(tmp_path, "- a\n- b\n"))


def test_missing_file():
    assert "file not found" in error_of(Path("/nonexistent/pipeline.yaml"))


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("5m") == 300 and parse_duration(2) == 2
    assert parse_duration("1.5h") == 5400
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_hyperparameter_values_keep_types(tmp_path):
    spec = load_pipeline(write(tmp_path, "name: demo\ntrain:\n  hyperparameters:\n    lr: 0.1\n    aug: true\n"))
    assert spec.train.hyperparameters == {"lr": 0.1, "aug": True}


def test_specs_are_frozen(tmp_path):
    spec = load_pipeline(write(tmp_path, "name: demo\n"))
    with pytest.raises(Exception):
        spec.name = "other"


def test_config_profile_errors(tmp_path):
    path = write(tmp_path, json.dumps({"profiles": {"dev": {"backend": "local", "rooot": "x"}}}), "config.json")
    message = error_of(path, load_config)
    assert "profiles.dev.rooot" in message and "did you mean 'root'" in message
    path = write(tmp_path, json.dumps({"profiles": {"dev": {"backend": "nope"}}}), "config.json")
    assert "profiles.dev" in error_of(path, load_config)
    with pytest.raises(UserError, match="unknown profile 'prod'"):
        ConfigSpec().profile("prod")


def test_json_schema_export_describes_every_section():
    schema = pipeline_json_schema()
    assert {"data", "train", "model", "service", "predict", "teardown"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_committed_schema_is_up_to_date():
    """docs/pipeline.schema.json is what editors use: regenerate it with
    `python -m orchestrator schema --output docs/pipeline.schema.json` after changing spec.py."""
    import json
    from pathlib import Path

    from orchestrator.spec import pipeline_json_schema

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "pipeline.schema.json").read_text())
    assert committed == pipeline_json_schema()
