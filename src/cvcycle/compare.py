"""`python -m cvcycle compare [FILTER ...]`: the campaigns of a workspace side by side.

One row per campaign (status, iterations, walker steps, wall time, and the accuracy the system's
references allow: FES RMSE, committor quality of the CV, q RMSE, k_AB against the exact rate, the
committor histogram test), and one row per group of campaigns that differ only in their seed:
mean and 95 % t-interval over the seeds that finished (campaigns still running are counted, not
averaged). Groups are told apart by the swept keys, the spec keys
whose values differ between campaigns of the same name. Plots: every metric against every swept
value, and the convergence curves of all campaigns overlaid.

FILTER: `SECTION.KEY=VALUE` on the spec (`bias.sigma=0.025`, `campaign.name=mueller-brown-autoencoder`),
`status=converged`, or a job id prefix; several filters must all hold.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .analysis.intervals import Support, format_interval, t_interval
from .campaign import STATEPOINT
from .errors import CvcycleError, SpecError


@dataclass(frozen=True)
class Metric:
    key: str
    header: str
    form: str
    get: Callable[[dict[str, Any]], float | None]
    support: Support = (None, None)  # the values it can take, where intervals are cut


def _ratio(r: dict[str, Any]) -> float | None:
    return r["rate_AB"] / r["rate_AB_exact"] if r["rate_AB"] is not None and r["rate_AB_exact"] else None


METRICS = (
    Metric("iterations", "iterations", ".1f", lambda r: r["iterations"], (0, None)),
    Metric("walker_steps", "walker steps", ",.0f", lambda r: r["total_steps"], (0, None)),
    Metric("wall_s", "wall time (s)", ".0f", lambda r: sum(r["seconds"].values()) if r["seconds"] else None, (0, None)),
    Metric("fes_rmse", "FES RMSE (kT)", ".3f",
           lambda r: r["fes_rmse_exact"] if r["fes_rmse_exact"] is not None else r["fes_rmse_reference"], (0, None)),
    Metric("dF_others", "F(others) - F(A) (kT)", ".2f", lambda r: (r["state_free_energies"] or {}).get("others")),
    Metric("committor_r2", "CV committor R²", ".4f", lambda r: r["committor_r2"], (None, 1)),
    Metric("committor_width", "CV width", ".3f", lambda r: r["committor_width"], (0, None)),
    Metric("q_rmse", "q RMSE", ".4f", lambda r: r["committor_rmse"], (0, 1)),
    Metric("k_ratio", "k_AB / exact", ".2f", _ratio, (0, None)),
    Metric("test_p_B", "test p_B", ".3f", lambda r: (r["committor_test"] or {}).get("p_B_mean"), (0, 1)),
    Metric("bias_stiffness", "bias stiffness", ".2f", lambda r: r["bias_stiffness"], (0, None)),
    Metric("cv_spearman", "|Spearman(CV, first state coordinate)|", ".3f", lambda r: _first_rank_correlation(r), (0, 1)),
)


def _first_rank_correlation(r: dict[str, Any]) -> float | None:
    """|Spearman's rho| of the last CV with the system's first state coordinate (e.g. the largest
    crystalline cluster): the sign of an autoencoder's CV is arbitrary."""
    rho = next(iter((r.get("cv_rank_correlation") or {}).values()), None)
    return abs(rho) if rho is not None else None


def flatten(spec: dict[str, Any]) -> dict[str, str]:
    """{'section.key': value as compact JSON} (states and arrays compare as text)."""
    return {f"{section}.{k}": json.dumps(v, sort_keys=True) for section, body in spec.items() if isinstance(body, dict)
            for k, v in body.items()}


def campaign_paths(workspace: str | Path) -> list[Path]:
    """Job folders (holding a state point) directly under `workspace`."""
    root = Path(workspace)
    if not root.is_dir():
        raise SpecError(f"{root}: no such workspace folder (run `python project.py init ...` first, or give --workspace)")
    return sorted(p for p in root.iterdir() if (p / STATEPOINT).is_file())


def load_rows(paths: list[Path], warn: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[dict[str, Any]]:
    """One summary per campaign; folders that are not readable campaigns are reported and left out."""
    from .analysis.benchmark import campaign_summary

    rows = []
    for p in paths:
        try:
            rows.append(campaign_summary(p))
        except CvcycleError as exc:
            warn(f"warning: {p.name} left out: {exc}")
    return rows


def _filter_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # an unquoted string, e.g. campaign.name=mueller-brown-autoencoder


def select(rows: list[dict[str, Any]], filters: list[str]) -> list[dict[str, Any]]:
    """The rows every filter accepts (KEY=VALUE on the flattened spec or `status`, else a job id prefix)."""
    known = {k for r in rows for k in flatten(r["spec"])} | {"status"}
    for f in filters:
        key, sep, text = f.partition("=")
        if not sep:
            rows = [r for r in rows if r["id"].startswith(f)]
            continue
        if key not in known:
            raise SpecError(f"filter {f!r}: {key} is not a spec key of these campaigns (e.g. bias.sigma, "
                            "campaign.name) or `status`")
        want = _filter_value(text)
        if key == "status":
            rows = [r for r in rows if r["status"] == want]
        else:
            rows = [r for r in rows if flatten(r["spec"]).get(key) == json.dumps(want, sort_keys=True)]
    return rows


def swept_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Spec keys (not the seed) whose values differ between campaigns of the same name, in spec order."""
    keys: list[str] = []
    by_name: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(flatten(r["spec"]))
    for flats in by_name.values():
        for k in flats[0]:
            if k != "campaign.seed" and k not in keys and len({f.get(k) for f in flats}) > 1:
                keys.append(k)
    return keys


@dataclass
class Group:
    name: str
    values: dict[str, str]  # swept key -> value (JSON text)
    rows: list[dict[str, Any]]

    @property
    def finished(self) -> list[dict[str, Any]]:
        """The campaigns that ended (converged or out of budget): the ones the statistics use."""
        return [r for r in self.rows if r["status"] in ("converged", "budget")]

    @property
    def label(self) -> str:
        return " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in self.values.items()) or self.name


def groups(rows: list[dict[str, Any]], keys: list[str]) -> list[Group]:
    """Campaigns that share their name and every swept value, in the order first seen."""
    out: dict[tuple, Group] = {}
    for r in rows:
        flat = flatten(r["spec"])
        values = {k: flat.get(k, "-") for k in keys}
        out.setdefault((r["name"], *values.values()), Group(r["name"], values, [])).rows.append(r)
    for g in out.values():
        g.rows.sort(key=lambda r: r["seed"])
    return list(out.values())


def shown_metrics(rows: list[dict[str, Any]]) -> list[Metric]:
    """The metrics at least one campaign has."""
    return [m for m in METRICS if any(m.get(r) is not None for r in rows)]


def _cell(v: float | None, form: str) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else format(v, form)


def test_text(test: dict[str, Any] | None) -> str:
    """The last committor histogram test: mean p_B / width without binomial noise, or why it did not run."""
    from .analysis.committor_histogram import levels_text

    if test is None:
        return "-"
    if "error" in test:
        return "not run: " + test["error"].split(": ", 1)[-1]
    return f"{test['p_B_mean']:.3f} / {test['p_B_std_intrinsic']:.3f}{levels_text(test)}"


def campaign_table(rows: list[dict[str, Any]], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """One row per campaign; the job id column (its first 8 characters) where the folders are
    signac jobs (named by a 32-digit hex id), not e.g. a benchmark's named folders."""
    metrics = shown_metrics(rows)
    ids = all(re.fullmatch(r"[0-9a-f]{32}", r["id"]) for r in rows)
    head = ["campaign", *keys, "seed", "status", *(m.header for m in metrics), "committor test p_B / width",
            "failed checks", *(["job"] if ids else [])]
    body = []
    for r in rows:
        flat = flatten(r["spec"])
        body.append([r["name"], *(flat.get(k, "-") for k in keys), str(r["seed"]), r["status"],
                     *(_cell(m.get(r), m.form) for m in metrics), test_text(r["committor_test"]),
                     ", ".join(r["failed_checks"]) or "-", *([r["id"][:8]] if ids else [])])
    return head, body


def group_table(gs: list[Group], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    metrics = shown_metrics([r for g in gs for r in g.rows])
    head = ["campaign", *keys, "seeds", "finished", "converged", *(m.header for m in metrics)]
    body = [[g.name, *g.values.values(), str(len(g.rows)), str(len(g.finished)),
             f"{sum(bool(r['converged']) for r in g.finished)} / {len(g.finished)}",
             *(format_interval([m.get(r) for r in g.finished], m.form, m.support) for m in metrics)] for g in gs]
    return head, body


def group_csv(gs: list[Group], keys: list[str]) -> str:
    """The group table with mean, 95 % half-width and n in their own columns."""
    metrics = shown_metrics([r for g in gs for r in g.rows])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["campaign", *keys, "seeds", "finished", "converged",
                *(f"{m.key}_{part}" for m in metrics for part in ("mean", "ci95", "n"))])
    for g in gs:
        cells = []
        for m in metrics:
            r = t_interval([m.get(row) for row in g.finished])
            cells += ["", "", 0] if r is None else [r[0], "" if r[2] == 1 else r[1], r[2]]
        w.writerow([g.name, *g.values.values(), len(g.rows), len(g.finished), sum(bool(r["converged"]) for r in g.finished),
                    *cells])
    return buf.getvalue()


def render(head: list[str], body: list[list[str]], form: str) -> str:
    """A table as aligned text, markdown or CSV."""
    if form == "markdown":
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(row) + " |" for row in body])
    if form == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([head, *body])
        return buf.getvalue().rstrip("\n")
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [head, *body])


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    keys: list[str]
    groups: list[Group]


def compare(workspace: str | Path = "workspace", filters: list[str] = (),
            warn: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Comparison:
    """The campaigns of `workspace` that pass the filters, their swept keys and groups."""
    rows = select(load_rows(campaign_paths(workspace), warn), list(filters))
    if not rows:
        raise SpecError(f"no campaign in {workspace}" + (f" matches {' '.join(filters)}" if filters else ""))
    return comparison(rows)


def _order(text: str) -> tuple:
    """Sort key of a JSON value: numbers by value, before anything else by text."""
    v = json.loads(text) if text != "-" else None
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    return (not number, v if number else 0, text)


def comparison(rows: list[dict[str, Any]]) -> Comparison:
    """Campaign summaries (load_rows) with their swept keys and groups, ordered by campaign
    name, swept values and seed."""
    keys = swept_keys(rows)
    rows = sorted(rows, key=lambda r: (r["name"], *(_order(flatten(r["spec"]).get(k, "-")) for k in keys), r["seed"]))
    return Comparison(rows, keys, groups(rows, keys))


def report(cmp: Comparison, form: str = "text", campaigns_only: bool = False) -> str:
    """The per-campaign table and the group table (CSV: the group table alone, unless campaigns_only)."""
    per = render(*campaign_table(cmp.rows, cmp.keys), form)
    if campaigns_only:
        return per
    if form == "csv":
        return group_csv(cmp.groups, cmp.keys).rstrip("\n")
    title = ("Mean and 95 % t-interval over the seeds that finished (converged or out of budget), those that did "
             "not converge included")
    title = f"**{title}**" if form == "markdown" else title
    swept = f"swept: {', '.join(cmp.keys)}" if cmp.keys else "no swept keys: one group per campaign name"
    return f"{per}\n\n{title} ({swept})\n\n{render(*group_table(cmp.groups, cmp.keys), form)}"


def write_outputs(cmp: Comparison, out: str | Path) -> list[Path]:
    """campaigns.csv, groups.csv, compare.md and the plots (PNG and PDF) in folder `out`."""
    from . import io as cio
    from .analysis.plots import plot_convergence_overlay, plot_metric_vs_value

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("campaigns.csv", render(*campaign_table(cmp.rows, cmp.keys), "csv") + "\n"),
                       ("groups.csv", group_csv(cmp.groups, cmp.keys)), ("compare.md", report(cmp, "markdown") + "\n")):
        cio.write_bytes(out / name, text.encode())
        written.append(out / name)
    metrics = [m for m in shown_metrics(cmp.rows) if m.key not in ("walker_steps",)]
    for key in cmp.keys:
        stem = out / f"metrics_vs_{key.replace('.', '_')}"
        plot_metric_vs_value(stem, key, cmp.groups, metrics)
        written += [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    stem = out / "convergence"
    plot_convergence_overlay(stem, cmp.groups)
    written += [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    return written
