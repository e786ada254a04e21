"""Property-based tests: random and mutated pipeline.yaml files never produce a traceback;
each is either valid or refused with a UserError that names the file and the key."""

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import UserError
from orchestrator.plan import build_plan
from orchestrator.spec import ConfigSpec, load_pipeline

BASE = {
    "name": "fuzz-demo", "bucket": "demo-bucket",
    "data": {"source": "generated", "generate": {"classes": 3, "images_per_class": 15, "seed": 1},
             "val_ratio": 0.2, "test_ratio": 0.2, "resize": 36},
    "train": {"code_dir": "jobs/image_classification", "boot_file": "train.py", "flavor": "modelarts.vm.cpu.8u",
              "hyperparameters": {"num_layers": 8, "lr": 0.05}, "max_runtime": "5m"},
    "model": {"version": "0.0.1"},
    "service": {"flavor": "modelarts.vm.cpu.2u", "instance_count": 1, "deploy_timeout": "2m"},
    "predict": {"images": "holdout", "min_accuracy": 0.5},
    "teardown": {"when": "always"},
}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def paths(tree: dict, prefix=()) -> list[tuple]:
    out = []
    for key, value in tree.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += paths(value, prefix + (key,))
    return out


def check(tmp_path: Path, document: str | bytes, expect: str = "") -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(document if isinstance(document, bytes) else document.encode())
    try:
        spec = load_pipeline(path)
        build_plan(spec, ConfigSpec(), spec_path=path, config_dir=tmp_path, run_id="261123-000000-abcd")
    except UserError as err:
        text = f"{err.where or ''} {err} {err.hint or ''}"
        assert "pipeline.yaml" in text, text
        assert expect in text, (expect, text)   # it names the key that was changed


@SETTINGS
@given(data=st.data())
def test_mutated_pipelines_fail_cleanly(tmp_path, data):
    doc = copy.deepcopy(BASE)
    key_path = data.draw(st.sampled_from(paths(doc)))
    parent = doc
    for key in key_path[:-1]:
        parent = parent[key]
    leaf = key_path[-1]
    action = data.draw(st.sampled_from(["delete", "replace", "rename", "add"]))
    expect = str(key_path[0])
    if action == "delete":
        del parent[leaf]
    elif action == "replace":
        parent[leaf] = data.draw(values)
    elif action == "rename":
        expect = leaf + data.draw(st.text("abcxyz_", min_size=1, max_size=3))
        parent[expect] = parent.pop(leaf)
    else:
        expect = data.draw(st.text("abcdefghijklmnop_", min_size=1, max_size=10).filter(lambda k: k not in parent))
        parent[expect] = data.draw(values)
    check(tmp_path, yaml.safe_dump(doc, allow_unicode=True), expect)


@SETTINGS
@given(document=st.text(max_size=200))
def test_random_text_fails_cleanly(tmp_path, document):
    check(tmp_path, document)


@SETTINGS
@given(document=st.binary(max_size=200))
def test_random_bytes_fail_cleanly(tmp_path, document):
    check(tmp_path, document)


@SETTINGS
@given(cut=st.integers(0, 2000), junk=st.sampled_from(["", ":", "- ", "\t", "{", "&a", "*b", "!!python/object:os.system"]))
def test_truncated_and_damaged_files_fail_cleanly(tmp_path, cut, junk):
    text = yaml.safe_dump(BASE)
    check(tmp_path, text[:cut] + junk + text[cut:cut + 40])
