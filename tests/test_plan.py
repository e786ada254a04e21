"""The frozen plan: deterministic names, resolved paths, emulation notes, no side effects."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.plan import STEPS, build_plan
from orchestrator.spec import ConfigSpec, FlavorSpec, PipelineSpec, load_pipeline

REPO = Path(__file__).resolve().parents[1]


def make_spec(tmp_path: Path, **overrides) -> PipelineSpec:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("print('hi')\n")
    data = {"name": "demo", "train": {"code_dir": str(code), "flavor": "modelarts.vm.gpu.v100",
                                      "hyperparameters": {"lr": 0.1, "export_model": True}}}
    data.update(overrides)
    return PipelineSpec.model_validate(data)


def config() -> ConfigSpec:
    return ConfigSpec(flavors={"modelarts.vm.gpu.v100": FlavorSpec(cpus=8, gpus=1, gpu_type="V100"),
                               "modelarts.vm.cpu.2u": FlavorSpec(cpus=2)})


def test_names_paths_and_steps(tmp_path):
    plan = build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path,
                      run_id="261123-101500-abcd", no_cache=True)
    assert [s.name for s in plan.steps] == list(STEPS)
    assert plan.job.name == "demo-261123-101500-abcd-train"
    assert plan.service.name == "demo-261123-101500-abcd-svc"
    assert plan.data.data_uri == "obs://orchestrator-demo/demo/261123-101500-abcd/data/"
    assert plan.job.train_url == "obs://orchestrator-demo/demo/261123-101500-abcd/output/"
    assert plan.model.source_location == plan.job.train_url
    assert plan.root == (tmp_path / ".orchestrator").resolve()
    assert plan.data.work_dir == plan.root / "tmp" / "261123-101500-abcd"
    assert ("lr", "0.1") in plan.job.hyperparameters and ("export_model", "True") in plan.job.hyperparameters
    assert not plan.root.exists(), "planning must not create anything"
    cached = build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path,
                        run_id="261123-101500-abcd")   # cacheable outputs live outside the run's own prefix
    assert cached.data.data_uri == "obs://orchestrator-demo/demo/cache/261123-101500-abcd/data/"
    assert cached.job.train_url == "obs://orchestrator-demo/demo/cache/261123-101500-abcd/output/"


def test_gpu_flavour_is_reported_as_emulated_on_cpu(tmp_path):
    plan = build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    assert any("V100" in n and "emulated on the CPU" in n for n in plan.notes)
    assert any("modelarts.vm.cpu.2u" in n and "vCPU" in n for n in plan.notes)


def test_plan_is_frozen_and_serialisable(tmp_path):
    plan = build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.run_id = "x"
    assert plan.to_dict()["job"]["name"] == plan.job.name


def test_missing_data_folder_and_code(tmp_path):
    with pytest.raises(UserError, match="data.source: folder 'nope' does not exist"):
        build_plan(make_spec(tmp_path, data={"source": "nope"}), config(), spec_path=tmp_path / "p.yaml",
                   config_dir=tmp_path)
    spec = make_spec(tmp_path)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"boot_file": "missing.py"})})
    with pytest.raises(UserError, match="missing.py"):
        build_plan(spec, config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path)


def test_holdout_without_test_split_is_refused(tmp_path):
    with pytest.raises(UserError, match="nothing is held out"):
        build_plan(make_spec(tmp_path, data={"test_ratio": 0}), config(), spec_path=tmp_path / "p.yaml",
                   config_dir=tmp_path)


def test_cloud_profile_plans_and_strict_refuses_emulated_settings(tmp_path):
    cfg = ConfigSpec.model_validate({"profiles": {"cloud": {"backend": "modelarts", "region": "cn-north-4",
                                                            "project_id": "p", "image": IMAGE}},
                                     "default_profile": "cloud"})
    plan = build_plan(make_spec(tmp_path), cfg, spec_path=tmp_path / "p.yaml", config_dir=tmp_path, strict=True)
    assert plan.backend == "modelarts" and not any("emulated" in n for n in plan.notes)
    assert plan.job.image == plan.model.image == IMAGE and not any("preset" in n for n in plan.notes)
    with pytest.raises(UserError, match="(?s)--strict.*V100.*emulated on the CPU"):
        build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path, strict=True)


IMAGE = "swr.cn-north-4.myhuaweicloud.com/ml-team/mxnet-orchestrator:1.9.1"


def test_cloud_profile_without_an_image_says_the_preset_engine_may_be_missing(tmp_path):
    cfg = ConfigSpec.model_validate({"profiles": {"cloud": {"backend": "modelarts", "region": "cn-north-4",
                                                            "project_id": "p"}}, "default_profile": "cloud"})
    spec = make_spec(tmp_path)
    plan = build_plan(spec, cfg, spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    assert plan.job.image == plan.model.image == ""
    assert any("train.image and model.image not set" in n and "image build-context" in n for n in plan.notes)
    with pytest.raises(UserError, match="(?s)--strict.*preset MXNet engine"):
        build_plan(spec, cfg, spec_path=tmp_path / "p.yaml", config_dir=tmp_path, strict=True)
    only_train = spec.model_copy(update={"train": spec.train.model_copy(update={"image": IMAGE})})
    plan = build_plan(only_train, cfg, spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    assert plan.job.image == IMAGE and any(n.startswith("model.image not set: the model") for n in plan.notes)
    assert "in image " + IMAGE in " ".join(plan.steps[2].details)
    local = build_plan(only_train, config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    assert any("runs the same runtime without the image" in n for n in local.notes)


def test_image_names_must_be_tagged_swr_paths(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: demo\ntrain:\n  image: mxnet-orchestrator\n")
    with pytest.raises(UserError, match=r"p.yaml:3: train.image: String should match pattern"):
        load_pipeline(path)


def test_run_ids_differ(tmp_path):
    a = build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    b = build_plan(make_spec(tmp_path), config(), spec_path=tmp_path / "p.yaml", config_dir=tmp_path)
    assert a.run_id != b.run_id


def test_pipeline_from_dict_for_notebooks(tmp_path):
    from orchestrator import Pipeline
    from pipelines import tiny_pipeline
    tiny_pipeline(tmp_path)
    p = Pipeline.from_dict({"name": "nb-demo", "train": {"hyperparameters": {"num_epochs": 1}}},
                           base_dir=tmp_path, config=tmp_path / "config.json")
    assert p.plan.pipeline == "nb-demo" and ("num_epochs", "1") in p.plan.job.hyperparameters
    assert p.plan.root == (tmp_path / "state").resolve()
    with pytest.raises(UserError, match="unknown key 'trian'"):
        Pipeline.from_dict({"name": "nb-demo", "trian": {}}, base_dir=tmp_path, config=tmp_path / "config.json")
    assert not list(tmp_path.glob(".pipeline-*")), "no temporary files left behind"


def test_face_task_defaults_and_shared_modules_ship_with_the_code(tmp_path):
    """A face pipeline runs the project's face job; the modules it shares with other jobs go
    next to its train.py (ModelArts uploads only the code folder), on every backend."""
    from orchestrator.backends.staging import stage_code
    from orchestrator.factory import load_plan

    plan, _, _ = load_plan(REPO / "examples" / "face_softmax.yaml", None, None)
    assert plan.job.code_dir == str(REPO / "jobs" / "face_recognition")
    assert plan.model.model_algorithm == "face_recognition"
    staged = stage_code(plan.job.code_dir, plan.job.include_dirs, tmp_path / "code", plan.job.shipped)
    for name in ("train.py", "jobs/__init__.py", "jobs/common/workspace.py", "jobs/common/package.py",
                 "jobs/data/face_rec_reader.py", "jobs/data/face_bin.py", "customize_service.py"):
        assert (staged / name).is_file(), name
    # the job imports the shipped copies, not the repository's: the folder stands alone
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import jobs.common.package, jobs.data.face_rec_reader; "
             "print(jobs.common.package.__file__); print(jobs.data.face_rec_reader.__file__)")
    out = subprocess.run([sys.executable, "-c", probe, str(staged)], capture_output=True, text=True, check=True)
    assert all(line.startswith(str(staged)) for line in out.stdout.split()), out.stdout
