"""The reference of a job's arguments, rendered from its ``arguments.json``.

``python -m orchestrator args [CODE_DIR ...]`` prints it for any job folder with a
declaration; ``--markdown`` gives the tables that ``docs/jobs.md`` holds between its
``<!-- generated -->`` markers (a test keeps them equal).
"""

from __future__ import annotations

from pathlib import Path

from .jobargs import declaration

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_JOBS = ("jobs/image_classification", "jobs/face_recognition")
BEGIN, END = "<!-- generated: python -m orchestrator args --markdown -->", "<!-- end generated -->"


def project_declarations() -> list[tuple[str, dict]]:
    return [(job, declaration(REPO_ROOT / job)) for job in PROJECT_JOBS]


def markdown(declarations: list[tuple[str, dict]]) -> str:
    out = []
    for folder, decl in declarations:
        out += [f"## {decl.get('title', folder)}", "", decl.get("description", ""), ""]
        for group, entries in _groups(decl):
            out += [f"### {group}", "", "| argument | type | default | allowed | meaning |", "|---|---|---|---|---|"]
            out += [f"| {_names(e)} | {e.get('type', 'str')} | {_default(e)} | {_allowed(e)} | "
                    f"{_help(e)} |" for e in entries]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def text(folder: str, decl: dict) -> str:
    """The plain-text listing for a terminal."""
    lines = [f"{decl.get('title', folder)}: {decl.get('description', '')}"]
    for group, entries in _groups(decl):
        lines.append(f"\n{group}:")
        for e in entries:
            lines.append(f"  {_names(e, code=False):<38} {e.get('type', 'str'):<5} default {_default(e, code=False)}"
                         + (f"; {_allowed(e, code=False)}" if _allowed(e, code=False) else ""))
            if e.get("help"):
                lines.append(f"      {e['help']}")
    return "\n".join(lines) + "\n"


def generated_block(doc: str) -> str:
    """The text between the markers of ``docs/jobs.md`` ('' when they are missing)."""
    if BEGIN not in doc or END not in doc:
        return ""
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def _groups(decl: dict) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for entry in decl["arguments"]:
        groups.setdefault(entry.get("group", "Other"), []).append(entry)
    return list(groups.items())


def _names(e: dict, code: bool = True) -> str:
    names = [f"--{e['name']}"] + [f"--{a}" for a in e.get("aliases", ())]
    if code:
        names = [f"`{n}`" for n in names]
    tags = [t for t, on in (("required", e.get("required")), ("set by the platform", e.get("platform"))) if on]
    return " ".join(names) + (f" ({', '.join(tags)})" if tags else "")


def _default(e: dict, code: bool = True) -> str:
    if e.get("required") or "default" not in e or e["default"] is None:
        return "-" if e.get("required") else "none"
    value = e["default"]
    value = str(value).lower() if isinstance(value, bool) else (str(value) if value != "" else '""')
    return f"`{value}`" if code else value


def _allowed(e: dict, code: bool = True) -> str:
    quote = (lambda v: f"`{v}`") if code else str
    parts = []
    if "choices" in e:
        parts.append(", ".join(quote(c) for c in e["choices"]))
    for key, sign in (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<")):
        if key in e:
            parts.append(f"{sign} {e[key]}")
    if "pattern_hint" in e:
        parts.append(e["pattern_hint"])
    return "; ".join(parts)


def _help(e: dict) -> str:
    return (e.get("help") or "").replace("|", "\\|")
