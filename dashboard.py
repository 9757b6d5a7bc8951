"""signac-dashboard for cvcycle campaigns (`pip install -e ".[dashboard]"`):

    python dashboard.py run                 # prints the address to open, with its access token
    python dashboard.py run --port 8890 --host 0.0.0.0

The project page shows the comparison table (`python -m cvcycle compare`); each campaign shows
its progress, its latest FES and CV plots and its convergence plot. The access token is random
unless CVCYCLE_DASHBOARD_TOKEN is set. Reads the job folders only (cvcycle never imports flow).
"""

from __future__ import annotations

import html
import os

from markupsafe import Markup
from signac_dashboard import Dashboard
from signac_dashboard.module import Module
from signac_dashboard.modules import ImageViewer

from cvcycle.campaign import Campaign, latest_failed_checks
from cvcycle.errors import CvcycleError


def _table(head: list[str], body: list[list[str]]) -> Markup:
    def row(cells: list[str], tag: str) -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    rows = "".join(row(r, "td") for r in body)
    return Markup("<div class='table-container' style='overflow-x: auto'>"
                  "<table class='table is-narrow is-striped' style='white-space: nowrap; font-size: 0.8em'>"
                  f"<thead>{row(head, 'th')}</thead><tbody>{rows}</tbody></table></div>")


class CampaignProgress(Module):
    """Status, iteration and phase, walker steps, wall time, the checks the last iteration
    failed and the last error of one campaign."""

    _supported_contexts = {"JobContext"}

    def __init__(self, name: str = "Campaign", **kwargs) -> None:
        super().__init__(name=name, context="JobContext", template="cards/text_display.html", **kwargs)

    def get_cards(self, job):
        try:
            c = Campaign(job.path)
            doc = c.progress()
        except CvcycleError as exc:
            return [{"name": self.name, "content": Markup(f"<p>not a campaign: {html.escape(str(exc))}</p>")}]
        last = doc["history"][-1] if doc["history"] else {}
        seconds = doc.get("seconds") or {}
        rows = [["campaign", f"{c.spec['campaign']['name']} (seed {c.seed})"],
                ["status", doc["status"] + ("" if doc["status"] != "running" else f": iteration {doc['iteration']} {doc['phase']}")],
                ["walker steps", f"{doc['total_steps']:,}"],
                ["wall time", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) or "-"],
                ["failed checks", ", ".join(latest_failed_checks(doc)) or "-"]]
        for key in ("fes_rmse_exact", "fes_rmse_reference", "committor_r2", "committor_rmse", "q_change", "fes_change"):
            if last.get(key) is not None:
                rows.append([key, f"{last[key]:.4g}"])
        if doc.get("last_error"):
            e = doc["last_error"]
            rows.append(["last error", f"iteration {e['iteration']} {e['phase']}: {e['message']}"])
        return [{"name": self.name, "content": _table(["", ""], rows)}]


class LatestPlots(ImageViewer):
    """The newest iteration's FES and CV plots, and the convergence plot."""

    def get_cards(self, job):
        folders = sorted(p for p in os.listdir(job.path) if p.startswith("iter-") and os.path.isdir(job.fn(p)))
        newest = next((f for f in reversed(folders) if os.path.isfile(job.fn(os.path.join(f, "fes_cv.png")))), None)
        self.img_globs = ["convergence.png", "summary.png"] + (
            [f"{newest}/fes_xy.png", f"{newest}/fes_states.png", f"{newest}/fes_cv.png"] if newest else [])
        yield from super().get_cards(job)


class ComparisonTable(Module):
    """The workspace's campaigns grouped by their swept keys: mean and 95 % interval over seeds."""

    _supported_contexts = {"ProjectContext"}

    def __init__(self, name: str = "Comparison (python -m cvcycle compare)", **kwargs) -> None:
        super().__init__(name=name, context="ProjectContext", template="cards/text_display.html", **kwargs)

    def get_cards(self, project):
        from cvcycle.compare import campaign_table, compare, group_table

        try:
            cmp = compare(project.workspace, warn=lambda line: None)
        except CvcycleError as exc:
            return [{"name": self.name, "content": Markup(f"<p>{html.escape(str(exc))}</p>")}]
        swept = ", ".join(cmp.keys) or "none"
        return [{"name": self.name, "content": Markup(f"<p>swept keys: {html.escape(swept)}</p>")
                 + _table(*group_table(cmp.groups, cmp.keys))},
                {"name": "Campaigns", "content": _table(*campaign_table(cmp.rows, cmp.keys))}]


class CampaignDashboard(Dashboard):
    def job_title(self, job):
        try:
            c = Campaign(job.path)
            return f"{c.spec['campaign']['name']} seed {c.seed}: {c.progress()['status']}"
        except CvcycleError:
            return f"{job.id[:8]} (not a campaign)"

    def job_sorter(self, job):
        sp = job.statepoint().get("spec", {})
        return (str(sp.get("campaign", {}).get("name")), sp.get("campaign", {}).get("seed", 0), job.id)


def dashboard() -> CampaignDashboard:
    config = {"ACCESS_TOKEN": os.environ.get("CVCYCLE_DASHBOARD_TOKEN") or None, "PER_PAGE": 24, "CARDS_PER_ROW": 1}
    if config["ACCESS_TOKEN"] is None:
        del config["ACCESS_TOKEN"]  # signac-dashboard draws a random one and prints the address with it
    modules = [ComparisonTable(), CampaignProgress(), LatestPlots(name="Plots")]
    return CampaignDashboard(config=config, modules=modules)


if __name__ == "__main__":
    dashboard().main()
