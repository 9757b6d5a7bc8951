"""`cvcycle compare` on synthetic campaign summaries: swept keys, groups, filters, the 95 % t-interval
and the output forms (the end-to-end run on real campaigns is in test_cli.py)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy import stats

from cvcycle.compare import Comparison, group_csv, group_table, groups, render, report, select, swept_keys, write_outputs
from cvcycle.errors import SpecError


def row(name: str, seed: int, sigma: float, ensemble: int, fes: float | None, converged: bool = True) -> dict:
    spec = {"campaign": {"name": name, "seed": seed}, "bias": {"sigma": sigma, "barrier": 11.0},
            "learner": {"ensemble": ensemble, "hidden": [32, 32]}, "convergence": {"fes_rmse": 0.5, "cv_r2": 0.99}}
    history = [{"iteration": k, "fes_change": 1.0 / (k + 1), "fes_rmse_exact": fes + 1.0 / (k + 1)} for k in range(3)]
    return {"id": f"{name[:2]}{seed}{sigma}{ensemble}", "name": name, "seed": seed, "status": "converged" if converged else "budget",
            "converged": converged, "iterations": 3, "total_steps": 1000 * (seed + 1), "fes_rmse_exact": fes,
            "fes_rmse_reference": None, "state_free_energies": None, "committor_r2": 0.99, "committor_width": None,
            "committor_rmse": None, "rate_AB": None, "rate_AB_exact": None, "committor_test": None, "bias_stiffness": None,
            "failed_checks": [] if converged else ["fes_change"], "seconds": {"simulate": 10.0, "train": 5.0 * seed},
            "spec": spec, "history": history}


@pytest.fixture
def sweep() -> list[dict]:
    fes = {(0.025, 0): [0.30, 0.40, 0.35], (0.035, 0): [0.50, 0.45, 0.70]}
    return [row("mb", seed, sigma, 1, v, converged=v < 0.6) for (sigma, _), vals in fes.items()
            for seed, v in enumerate(vals)] + [row("wq", 0, 0.05, 1, 0.2)]


def test_swept_keys_are_the_values_that_differ_within_a_campaign_name(sweep):
    assert swept_keys(sweep) == ["bias.sigma"]  # wq's other sigma is another campaign, not a sweep
    both = sweep + [row("mb", 0, 0.025, 3, 0.3)]
    assert swept_keys(both) == ["bias.sigma", "learner.ensemble"]


def test_groups_hold_the_seeds_of_one_sweep_point(sweep):
    gs = groups(sweep, ["bias.sigma"])
    assert [(g.name, g.values, [r["seed"] for r in g.rows]) for g in gs] == [
        ("mb", {"bias.sigma": "0.025"}, [0, 1, 2]), ("mb", {"bias.sigma": "0.035"}, [0, 1, 2]),
        ("wq", {"bias.sigma": "0.05"}, [0])]


def test_group_table_gives_mean_and_t_interval_over_seeds(sweep):
    head, body = group_table(groups(sweep, ["bias.sigma"]), ["bias.sigma"])
    col = head.index("FES RMSE (kT)")
    v = np.array([0.50, 0.45, 0.70])
    half = stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
    assert body[1][col] == f"{v.mean():.3f} ± {half:.3f}"
    assert body[1][head.index("converged")] == "2 / 3"
    assert body[2][col] == "0.200"  # one seed: the value, no interval
    assert body[0][head.index("wall time (s)")] == f"{np.mean([10, 15, 20]):.0f} ± {stats.t.ppf(0.975, 2) * 5 / np.sqrt(3):.0f}"
    assert "q RMSE" not in head  # no campaign has it


def test_group_csv_has_mean_half_width_and_n_in_columns(sweep):
    text = group_csv(groups(sweep, ["bias.sigma"]), ["bias.sigma"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and rows[0]["bias.sigma"] == "0.025" and rows[0]["seeds"] == "3"
    assert float(rows[0]["fes_rmse_mean"]) == pytest.approx(0.35)
    assert float(rows[0]["fes_rmse_ci95"]) == pytest.approx(stats.t.ppf(0.975, 2) * 0.05 / np.sqrt(3))
    assert rows[2]["fes_rmse_ci95"] == "" and rows[2]["fes_rmse_n"] == "1"


def test_filters_on_spec_keys_status_and_id_prefix(sweep):
    assert {r["seed"] for r in select(sweep, ["bias.sigma=0.035"])} == {0, 1, 2}
    assert len(select(sweep, ["campaign.name=mb", "status=budget"])) == 1
    assert len(select(sweep, ['campaign.name="wq"'])) == 1
    assert [r["id"] for r in select(sweep, ["mb10.025"])] == ["mb10.0251"]
    assert select(sweep, ["learner.hidden=[32, 32]"]) == sweep
    with pytest.raises(SpecError, match="bias.sigmaa is not a spec key"):
        select(sweep, ["bias.sigmaa=1"])


@pytest.mark.parametrize("form", ["text", "markdown", "csv"])
def test_every_form_has_one_line_per_campaign_and_group(sweep, form):
    cmp = Comparison(sweep, ["bias.sigma"], groups(sweep, ["bias.sigma"]))
    per = report(cmp, form, campaigns_only=True).splitlines()
    assert len(per) == len(sweep) + (2 if form == "markdown" else 1)
    if form != "csv":
        assert report(cmp, form).count("\n") == len(per) + 3 + 3 + (2 if form == "markdown" else 1) - 1
    head, body = group_table(cmp.groups, cmp.keys)
    assert render(head, body, "markdown").splitlines()[1] == "|" + "---|" * len(head)


def test_outputs_and_plots_are_written(sweep, tmp_path):
    cmp = Comparison(sweep, ["bias.sigma"], groups(sweep, ["bias.sigma"]))
    written = write_outputs(cmp, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(["campaigns.csv", "groups.csv", "compare.md", "metrics_vs_bias_sigma.png",
                            "metrics_vs_bias_sigma.pdf", "convergence.png", "convergence.pdf"])
    assert all(p.stat().st_size > 1000 for p in written if p.suffix in (".png", ".pdf"))


def test_plumed_export_names_the_feature_kinds_it_cannot_write():
    from cvcycle.handoff import plumed_input
    from cvcycle.spec import load_spec

    spec = load_spec(__import__("test_cli").ROOT / "workflows" / "lj-nucleation-autoencoder.toml")
    with pytest.raises(SpecError, match="no PLUMED equivalent is written for features.kind = 'steinhardt'"):
        plumed_input(spec, 1)


def test_campaigns_still_running_are_counted_not_averaged(sweep):
    running = row("mb", 3, 0.025, 1, 9.0, converged=False)
    running["status"] = "running"
    head, body = group_table(groups(sweep + [running], ["bias.sigma"]), ["bias.sigma"])
    first = dict(zip(head, body[0]))
    assert (first["seeds"], first["finished"], first["converged"]) == ("4", "3", "3 / 3")
    assert first["FES RMSE (kT)"].startswith("0.350 ± ")  # seeds 0-2 only
