"""`python -m cvcycle extend`: change a campaign's run settings (budget, resources, plots)
without making a new campaign, and let one that spent its budget go on.

The settings go into the job document (`settings`), which overrides the state point's; the
state point, and so the job id, stay as they are. A campaign stopped by its budget becomes
`running` again at the next iteration when the new budget allows one more, and then continues
exactly as a campaign created with the larger budget would have (the budget enters no random
stream, only the decision to stop).
"""

from __future__ import annotations

from typing import Any

from .campaign import RUN_SETTINGS, Campaign, is_run_setting, run_setting_names
from .errors import SpecError, WorkspaceError
from .settings import split_setting, toml_value


def parse_settings(items: list[str]) -> dict[str, dict[str, Any]]:
    """SECTION.KEY=VALUE strings (VALUE read as TOML) as {section: {key: value}}; run settings
    only (campaign.RUN_SETTINGS)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        (section, name), text = split_setting(item)
        if not is_run_setting(section, name):
            raise SpecError(f"--set {section}.{name}: only the run settings change after a campaign is created "
                            f"({run_setting_names()}); {section}.{name} describes the campaign itself")
        out.setdefault(section, {})[name] = toml_value((section, name), text)
    return out


def extend(c: Campaign, changes: dict[str, dict[str, Any]]) -> list[str]:
    """Apply run-setting changes to campaign `c` (hold its lock) and return what changed, one
    line each. Refuses (SpecError) invalid values and a budget below what is already spent."""
    doc = c.progress()
    settings = {s: dict((doc.get("settings") or {}).get(s, {})) for s in RUN_SETTINGS}
    for section, body in changes.items():
        settings.setdefault(section, {}).update(body)
    settings = {s: body for s, body in settings.items() if body}
    new = c.with_settings(settings)
    budget = new["budget"]
    spent_iterations = len(doc["history"])
    if budget["max_iterations"] < spent_iterations:
        raise SpecError(f"budget.max_iterations: the campaign has run {spent_iterations} iterations, got {budget['max_iterations']}")
    if budget["max_total_steps"] < doc["total_steps"]:
        raise SpecError(f"budget.max_total_steps: the campaign has spent {doc['total_steps']:,} walker steps, "
                        f"got {budget['max_total_steps']:,}")
    lines = [f"{s}.{k}: {c.spec[s][k]!r} -> {new[s][k]!r}" for s in RUN_SETTINGS for k in new[s]
             if is_run_setting(s, k) and new[s][k] != c.spec[s][k]]
    update: dict[str, Any] = {"settings": settings}
    k = doc["iteration"]
    if doc["status"] == "budget":
        next_steps = doc.get("next_total_steps", doc["total_steps"])
        if k + 1 < budget["max_iterations"] and next_steps <= budget["max_total_steps"]:
            update.update(status="running", iteration=k + 1, phase="simulate")
            lines.append(f"status: budget -> running (continues with iteration {k + 1})")
        else:
            lines.append(f"status stays budget: iteration {k + 1} needs budget.max_iterations >= {k + 2} and "
                         f"budget.max_total_steps >= {next_steps:,}")
    elif doc["status"] == "converged":
        raise WorkspaceError(f"campaign {c.id} has converged; extend gives more budget or other resources to a "
                             "campaign that is running or ran out of budget")
    c.update_doc(**update)
    c.spec = new
    return lines or ["nothing changed"]
