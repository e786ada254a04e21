"""Cache keys: what changes them (data, code, hyperparameters, flavour, image, profile) and
what must not (run ids, names, paths, max_runtime)."""

from dataclasses import replace
from pathlib import Path

from orchestrator.backends.base import JobSpec
from orchestrator.cache import CacheStore, cache_keys


def job(code: Path, **kw) -> JobSpec:
    base = JobSpec(name="demo-261123-101500-abcd-train", run_id="261123-101500-abcd", code_dir=str(code),
                   boot_file="train.py", data_url="obs://b/demo/cache/261123-101500-abcd/data/",
                   train_url="obs://b/demo/cache/261123-101500-abcd/output/", hyperparameters=(("lr", "0.1"),),
                   flavor="modelarts.vm.cpu.8u", max_runtime_s=600)
    return replace(base, **kw)


def test_train_key_follows_what_decides_the_output(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print(1)\n")
    keys = cache_keys("prep", "local", "b", job(code))
    same = cache_keys("prep", "local", "b", job(code, name="demo-261124-000000-ffff-train", run_id="261124-000000-ffff",
                                                   data_url="obs://b/x/", train_url="obs://b/y/", max_runtime_s=60))
    assert keys == same, "another run of the same pipeline hits the cache"
    changed = {
        "hyperparameter": cache_keys("prep", "local", "b", job(code, hyperparameters=(("lr", "0.05"),))),
        "flavour": cache_keys("prep", "local", "b", job(code, flavor="modelarts.vm.gpu.p100")),
        "nodes": cache_keys("prep", "local", "b", job(code, instance_count=2)),
        "envs": cache_keys("prep", "local", "b", job(code, envs=(("X", "1"),))),
        "data": cache_keys("prep2", "local", "b", job(code)),
        "profile": cache_keys("prep", "emulator", "b", job(code)),
    }
    for what, other in changed.items():
        assert other["train"] != keys["train"], what
    assert changed["hyperparameter"]["upload"] == keys["upload"], "a hyperparameter does not re-upload data"
    assert changed["profile"]["upload"] != keys["upload"], "data in another store is another cache entry"
    (code / "train.py").write_text("print(2)\n")
    assert cache_keys("prep", "local", "b", job(code))["train"] != keys["train"], "code bytes"


def test_store_forgets_entries_whose_output_is_gone(tmp_path):
    store = CacheStore(tmp_path)
    work = tmp_path / "work"
    (work / "packed").mkdir(parents=True)
    (work / "packed" / "dataset.json").write_text("{}")
    kept = store.keep_prepared("k1", work, "run-1")
    assert (kept / "packed" / "dataset.json").read_text() == "{}"
    assert store.lookup("prepare", "k1", storage=None).run_id == "run-1"
    store.keep_prepared("k1", work, "run-2")                       # same key again: the copy is reused
    assert [e.run_id for e in store.entries("prepare", "k1")] == ["run-2", "run-1"]
    (kept / "packed" / "dataset.json").unlink()
    assert store.lookup("prepare", "k1", storage=None) is None and store.entries() == []


def test_model_optimize_decides_the_import_key_and_never_touches_the_cached_training_output(tmp_path):
    """model.optimize and its calibration and thresholds decide the imported package: they
    are in the import step's key (``run --resume`` re-imports after a change), not in the
    train cache key (a change reuses the trained model), and a converted package is built
    under the run's own prefix, never inside the training output that later runs reuse."""
    from test_plan import config, make_spec

    from orchestrator.plan import build_plan

    def plan(**model):
        return build_plan(make_spec(tmp_path, model=model), config(), spec_path=tmp_path / "p.yaml",
                          config_dir=tmp_path, run_id="261123-101500-abcd")

    fp32 = plan()
    assert fp32.model.source_location == fp32.job.train_url            # nothing to convert: imported as trained
    assert plan(calibration="entropy").key("import_model") == fp32.key("import_model"), "not read under fp32"
    keys = {fp32.key("import_model")}
    for model in ({"optimize": "int8"}, {"optimize": "int8", "calibration": "entropy"},
                  {"optimize": "int8", "calibration_images": 8}, {"optimize": "int8", "min_top1_agreement": 0.9},
                  {"optimize": "int8", "max_verification_drop": 2.0}, {"optimize": "fused"}, {"optimize": "bf16"}):
        converted = plan(**model)
        assert converted.cache_key("train") == fp32.cache_key("train"), model
        assert converted.model.source_location == f"obs://orchestrator-demo/demo/{converted.run_id}/model-package/"
        assert "converted there" in " ".join(next(s for s in converted.steps if s.name == "import_model").details)
        keys.add(converted.key("import_model"))
        assert converted.key("deploy") != fp32.key("deploy"), model
    assert len(keys) == 8, "every setting makes another import key"
