"""Command line: `python -m cvcycle show JOB [--json]` and `python -m cvcycle validate SPEC.toml`.

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvcycle", description="Iterative machine-learned CVs for enhanced sampling.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="metrics per iteration and paths of models and plots of one campaign")
    show.add_argument("job", help="job directory, or job id / unique id prefix under ./workspace/")
    show.add_argument("--json", action="store_true", help="print a JSON object instead of a report")
    show.set_defaults(func=_show)
    validate = sub.add_parser("validate", help="check a campaign spec (TOML) and print its name")
    validate.add_argument("spec")
    validate.set_defaults(func=_validate)
    args = parser.parse_args(argv)
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
