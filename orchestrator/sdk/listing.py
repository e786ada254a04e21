"""The classic SDK's class-level queries (``Estimator.get_job_list``, ``get_train_instance_types``,
``get_framework_list``, ``Model.get_model_list``, ``Predictor.get_service_list``) answered from
what the session's backend lists, in the shapes of ModelArts' v1 APIs behind them.

Read-only and cheap: one ``list_resources`` call plus one status call per training job. They
see everything in the backend's store, not only what this session made (as ModelArts lists
every job of the project).
"""

from __future__ import annotations

from .checks import DOCUMENTED_FLAVOURS
from .job import V1_STATUS

# ModelArts' MXNet engines of the v1 training API (GET /v1/{project_id}/job/ai-engines); engine_type 2 = MXNet
MXNET_ENGINES = ("MXNet-1.2.1-python2.7", "MXNet-1.2.1-python3.6", "MXNet-1.2.1-python3.7")


def _page(items: list, offset: int, limit: int | None) -> list:
    return items[offset: offset + limit if limit else None]


def _resources(session, kind: str) -> list:
    return [r for r in session.backend.list_resources(None) if r.kind == kind]


def job_list(session, status=None, per_page: int = 10, page: int = 1, sort_by: str = "job_name",
             order: str = "desc", search_content: str | None = None) -> dict:
    """``GET /v1/{project_id}/training-jobs``: ``{is_success, job_total_count, job_count, jobs}``."""
    jobs = []
    for res in _resources(session, "job"):
        if search_content and search_content not in res.name:
            continue
        state = session.backend.job_status(_job_ref(res))
        code = V1_STATUS.get(state.phase, 0)
        if status is not None and int(status) != code:
            continue
        jobs.append({"job_id": res.id, "job_name": res.name, "version_id": 1, "version_count": 1,
                     "status": code, "phase": state.phase, "engine_type": 2, "engine_name": "MXNet",
                     "job_desc": state.reason, "run_id": res.run_id})
    jobs.sort(key=lambda j: j.get(sort_by, j["job_name"]), reverse=order == "desc")
    shown = _page(jobs, (max(1, page) - 1) * per_page, per_page)
    return {"is_success": True, "job_total_count": len(jobs), "job_count": len(shown), "jobs": shown}


def _job_ref(res):
    from ..backends.base import JobRef
    return JobRef(res.id, res.name)


def train_instance_types(session) -> dict:
    """``GET /v1/{project_id}/job/resource-specs?job_type=train``: ``{is_success, spec_total_count, specs}``.
    config.json's flavours say what each one is here; the others run on this machine's CPU."""
    specs = []
    for code in sorted(set(DOCUMENTED_FLAVOURS) | set(session.config.flavors)):
        known = session.config.flavors.get(code)
        specs.append({"spec_code": code, "spec_id": len(specs) + 1, "core": str(known.cpus) if known else "",
                      "gpu_num": known.gpus if known else 0, "gpu_type": (known.gpu_type or "") if known else "",
                      "no_resource": False, "interface_type": 1})
    return {"is_success": True, "spec_total_count": len(specs), "specs": specs}


def framework_list(session) -> dict:
    """``GET /v1/{project_id}/job/ai-engines``: only MXNet, the engine this project runs."""
    engines = [{"engine_id": i + 1, "engine_name": "MXNet", "engine_type": 2, "engine_version": version}
               for i, version in enumerate(MXNET_ENGINES)]
    return {"is_success": True, "engine_total_count": len(engines), "engines": engines}


def model_list(session, model_name=None, model_version=None, model_status=None, description=None,
               offset: int = 0, limit: int = 280, sort_by: str = "create_at", order: str = "desc",
               workspace_id=None) -> dict:
    """``GET /v1/{project_id}/models``: ``{total_count, count, models}``."""
    models = []
    for res in _resources(session, "model"):
        name, _, version = res.name.rpartition(" ")
        if model_name and model_name not in name or model_version and version != model_version:
            continue
        if model_status and model_status != "published":
            continue
        models.append({"model_id": res.id, "model_name": name, "model_version": version,
                       "model_status": "published", "model_type": "MXNet", "run_id": res.run_id})
    models.sort(key=lambda m: m.get(sort_by, m["model_name"]), reverse=order == "desc")
    shown = _page(models, offset, limit)
    return {"total_count": len(models), "count": len(shown), "models": shown}


def service_list(session, service_id=None, service_name=None, infer_type=None, offset: int = 0,
                 limit: int = 1000, service_status=None, sort_by: str = "publish_at", order: str = "desc",
                 model_id=None, workspace_id=None) -> dict:
    """``GET /v1/{project_id}/services``: ``{total_count, count, services}``."""
    services = []
    for res in _resources(session, "service"):
        status = "stopped" if "stopped" in res.detail else "running"
        if service_id and res.id != service_id or service_name and service_name not in res.name:
            continue
        if infer_type not in (None, "real-time") or service_status not in (None, status):
            continue
        services.append({"service_id": res.id, "service_name": res.name, "infer_type": "real-time",
                         "status": status, "detail": res.detail, "run_id": res.run_id})
    services.sort(key=lambda s: s.get(sort_by, s["service_name"]), reverse=order == "desc")
    shown = _page(services, offset, limit)
    return {"total_count": len(services), "count": len(shown), "services": shown}
