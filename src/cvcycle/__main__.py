"""Command line: `python -m cvcycle show JOB [--json]`, `python -m cvcycle validate SPEC.toml` and
`python -m cvcycle committor-test JOB` (the committor histogram test of the learned CV, by shooting).

Every cvcycle error is printed as one line `error: ...` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import CvcycleError


def _show(args: argparse.Namespace) -> None:
    from .show import find_campaign, render, summary

    s = summary(find_campaign(args.job))
    print(json.dumps(s, indent=2, allow_nan=False) if args.json else render(s))


def _validate(args: argparse.Namespace) -> None:
    from .spec import load_spec

    print(f"ok: {load_spec(args.spec)['campaign']['name']}")


def _committor_test(args: argparse.Namespace) -> None:
    from .analysis.committor_histogram import committor_histogram
    from .show import find_campaign

    c = find_campaign(args.job)
    with c.lock():  # it writes committor_test.json/.png into the job directory
        committor_histogram(c, shots=args.shots, points=args.points, max_steps=args.max_steps, seed=args.seed,
                            feature=args.feature)


def parser() -> argparse.ArgumentParser:
    """The command line: show, validate and committor-test."""
    parser = argparse.ArgumentParser(prog="cvcycle", description="Iterative machine-learned CVs for enhanced sampling.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="metrics per iteration and paths of models and plots of one campaign")
    show.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    show.add_argument("--json", action="store_true", help="print a JSON object instead of a report")
    show.set_defaults(func=_show)
    validate = sub.add_parser("validate", help="check a campaign spec (TOML) and print its name")
    validate.add_argument("spec")
    validate.set_defaults(func=_validate)
    test = sub.add_parser("committor-test", help="committor histogram test of the latest 1-D CV by shooting "
                                                 "(writes committor_test.json and .png in the job directory)")
    test.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    test.add_argument("--shots", type=int, default=100, help="trajectories per point on the isosurface (default 100)")
    test.add_argument("--points", type=int, default=50, help="points on the isosurface (default 50)")
    test.add_argument("--max-steps", type=int, default=20000, help="steps before a trajectory counts as undecided (default 20000)")
    test.add_argument("--seed", type=int, default=0, help="random stream of the test (default 0)")
    test.add_argument("--feature", help="test this input feature (e.g. mu2) instead of the learned CV, on the same "
                                        "frames; writes committor_test-FEATURE.json/.png")
    test.set_defaults(func=_committor_test)
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
