"""Command line: `python -m cvcycle show JOB [--json]`, `python -m cvcycle validate SPEC.toml`,
`python -m cvcycle verify JOB` (every file read back),
`python -m cvcycle extend JOB --set budget.max_iterations=12` (more budget, other run settings),
`python -m cvcycle committor-test JOB` (the committor histogram test of the learned CV, by shooting),
`python -m cvcycle compare [FILTER ...]` (campaigns side by side, grouped by the swept keys),
`python -m cvcycle export JOB --format mlcolvar|plumed` (the learned CV for those tools) and
`python -m cvcycle figure JOB` (one summary figure of a campaign).

Every cvcycle error is printed as one line `error: ...` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import CvcycleError


def _show(args: argparse.Namespace) -> None:
    from .show import find_campaign, render, summary

    s = summary(find_campaign(args.job))
    print(json.dumps(s, indent=2, allow_nan=False) if args.json else render(s))


def _validate(args: argparse.Namespace) -> None:
    from .spec import load_spec

    print(f"ok: {load_spec(args.spec)['campaign']['name']}")


def _extend(args: argparse.Namespace) -> None:
    from .extend import extend, parse_settings
    from .routes import route_for
    from .show import find_campaign

    changes = parse_settings(args.set)
    c = find_campaign(args.job)
    with c.lock():
        c.check(route_for(c.spec).files)
        for line in extend(c, changes):
            print(f"{c.id}: {line}")


def _verify(args: argparse.Namespace) -> None:
    from .show import find_campaign
    from .verify import verify

    c = find_campaign(args.job)
    checked, problems = verify(c)
    for problem in problems:
        print(f"damaged: {problem}")
    if problems:
        raise CvcycleError(f"campaign {c.id}: {len(problems)} problem(s) in {checked} files checked (listed above)")
    print(f"ok: campaign {c.id}: {checked} files intact (checksums, JSON, models)")


def _committor_test(args: argparse.Namespace) -> None:
    from .analysis.committor_histogram import committor_histogram
    from .show import find_campaign

    c = find_campaign(args.job)
    with c.lock():  # it writes committor_test.json/.png into the job directory
        committor_histogram(c, shots=args.shots, points=args.points, max_steps=args.max_steps, seed=args.seed,
                            feature=args.feature)


def _compare(args: argparse.Namespace) -> None:
    import time

    from .compare import compare, report, write_outputs

    t0 = time.perf_counter()
    cmp = compare(args.workspace, args.filter)
    print(report(cmp, args.format, campaigns_only=args.campaigns))
    if args.out:
        for path in write_outputs(cmp, args.out):
            print(f"wrote {path}", file=sys.stderr)
    print(f"compared {len(cmp.rows)} campaigns in {len(cmp.groups)} groups in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)


def _export(args: argparse.Namespace) -> None:
    from .handoff import export
    from .show import find_campaign

    c = find_campaign(args.job)
    out = args.out or os.path.join(str(c.path), f"export-{args.format}")
    for path in export(c, args.format, out, args.iteration):
        print(path)


def _figure(args: argparse.Namespace) -> None:
    from .analysis.summary_figure import summary_figure
    from .results import load

    r = load(args.job)
    for path in summary_figure(r, Path(args.out) if args.out else r.path / "summary"):
        print(path)


def parser() -> argparse.ArgumentParser:
    """The command line: show, validate, verify, extend, committor-test, compare, export and figure."""
    parser = argparse.ArgumentParser(prog="cvcycle", description="Iterative machine-learned CVs for enhanced sampling.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="metrics per iteration and paths of models and plots of one campaign")
    show.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    show.add_argument("--json", action="store_true", help="print a JSON object instead of a report")
    show.set_defaults(func=_show)
    validate = sub.add_parser("validate", help="check a campaign spec (TOML) and print its name")
    validate.add_argument("spec")
    validate.set_defaults(func=_validate)
    ver = sub.add_parser("verify", help="read back every file of a campaign (checksums, JSON, models) and list "
                                        "the damaged ones")
    ver.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    ver.set_defaults(func=_verify)
    ext = sub.add_parser("extend", help="change a campaign's run settings: budget, resources, plots (a campaign that "
                                        "spent its budget goes on with the next iteration)")
    ext.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    ext.add_argument("--set", action="append", required=True, metavar="SECTION.KEY=VALUE",
                     help="a budget.*, resources.* or analysis.plots value, e.g. budget.max_iterations=12 or "
                          "resources.walltime_hours=4 (repeatable)")
    ext.set_defaults(func=_extend)
    test = sub.add_parser("committor-test", help="committor histogram test of the latest 1-D CV by shooting "
                                                 "(writes committor_test.json and .png in the job directory)")
    test.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    test.add_argument("--shots", type=int, default=100, help="trajectories per point on the isosurface (default 100)")
    test.add_argument("--points", type=int, default=50, help="points on the isosurface (default 50)")
    test.add_argument("--max-steps", type=int, default=20000, help="steps before a trajectory counts as undecided (default 20000)")
    test.add_argument("--seed", type=int, default=0, help="random stream of the test (default 0)")
    test.add_argument("--feature", help="test this input feature (e.g. mu2) or state coordinate (e.g. phi) instead of "
                                        "the learned CV, on the same frames; writes committor_test-FEATURE.json/.png")
    test.set_defaults(func=_committor_test)
    cmp = sub.add_parser("compare", help="the campaigns of a workspace side by side: one row per campaign and, grouped "
                                         "by the swept spec keys, mean and 95 %% interval over seeds")
    cmp.add_argument("filter", nargs="*", help="SECTION.KEY=VALUE on the spec (e.g. bias.sigma=0.025), status=converged, "
                                               "or a job id prefix; all must hold")
    cmp.add_argument("--workspace", default="workspace", help="folder of job folders (default ./workspace)")
    cmp.add_argument("--format", choices=("text", "markdown", "csv"), default="text",
                     help="text and markdown: the campaign and group tables; csv: the group table with mean, "
                          "95 %% half-width and n in separate columns")
    cmp.add_argument("--campaigns", action="store_true", help="the per-campaign table only")
    cmp.add_argument("--out", help="also write campaigns.csv, groups.csv, compare.md and the plots (PNG and PDF: "
                                   "metrics against each swept key, convergence curves overlaid) into this folder")
    cmp.set_defaults(func=_compare)
    exp = sub.add_parser("export", help="the learned CV for mlcolvar (a checkpoint its CV class loads) or PLUMED "
                                        "(model.ptc for PYTORCH_MODEL and a plumed.dat with the features and OPES_METAD)")
    exp.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    exp.add_argument("--format", choices=("mlcolvar", "plumed"), required=True)
    exp.add_argument("--out", help="output folder (default: export-FORMAT/ in the job directory)")
    exp.add_argument("--iteration", type=int, help="the iteration whose CV to export (default: the newest trained)")
    exp.set_defaults(func=_export)
    fig = sub.add_parser("figure", help="one summary figure of a campaign (FES with CV isolines, FES along the CV, "
                                        "convergence against thresholds, committor test) as PNG and PDF")
    fig.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    fig.add_argument("--out", help="file name without suffix (default: summary in the job directory)")
    fig.set_defaults(func=_figure)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except CvcycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `| head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
