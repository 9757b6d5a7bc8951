"""Mutation testing of cvcycle's core modules: does the test suite notice bug-like changes?

    .venv/bin/python tools/mutation.py                        # every core module
    .venv/bin/python tools/mutation.py --module bias          # one module (repeatable)
    .venv/bin/python tools/mutation.py --module io --list     # the mutants and their ids, nothing run
    .venv/bin/python tools/mutation.py --module io --survivors  # the stored survivors again, after new tests
    .venv/bin/python tools/mutation.py --report               # the table of the stored results

Each mutant is one classic change to one site of a module's source (see OPERATORS below):
a comparison, arithmetic or boolean operator swapped, a number or a boolean changed, a return
value replaced by None, a call statement dropped, a `not` or unary minus removed, a dataclass
field's string default changed. Mutants are applied one at a time to a *copy* of the working tree
(git's tracked and untracked-not-ignored files) in a temporary directory whose src/ goes first
on PYTHONPATH (subprocesses the tests start inherit it), and the tests mapped to the module
(MODULES below) run there with `pytest -x`, in a child forked from this process (numpy, torch
and pytest imported once), under a per-mutant timeout (twice the unmutated run, at least +30 s).
Tests that killed mutants in the same function run first. "slow" tests (small campaigns) run
only on the survivors of the fast ones (--fast skips them). The live src/ is never written, so an
interrupted run leaves the checkout as it was (the copy is removed on exit, Ctrl-C and SIGTERM
included).

A mutant is *killed* when the tests fail, stop collecting or time out, and *survives* when they
pass. Mutants listed in tools/mutation-equivalents.toml (by module and mutation id, with the
reason they cannot change behaviour) are run like the others but left out of the score:
score = killed / (total - equivalent). Results go to build/mutation/<module>.json; the table and
the survivors (file:line, id, change) are printed at the end.

Not mutated: docstrings and other string constants (error and log messages), f-strings,
annotations, calls to log()/print(), `raise` statements and `if __name__ == "__main__"` blocks.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "tools" / "mutation-equivalents.toml"
RESULTS = ROOT / "build" / "mutation"

# module -> the source files mutated (relative to src/cvcycle) and the tests that cover them, in the
# order they run (fast and targeted first: with -x the first failure ends a mutant's run). "slow"
# tests (whole small campaigns) run only on the mutants that survive the fast ones.
MODULES: dict[str, dict[str, list[str]]] = {
    "io": {
        "files": ["io.py"],
        "tests": ["tests/test_atomic_writes.py", "tests/test_checkpoints.py", "tests/test_io_invariants.py", "tests/test_export.py"],
        "slow": [],
    },
    "checkpoints": {
        "files": ["checkpoints.py"],
        "tests": ["tests/test_checkpoints.py", "tests/test_io_invariants.py"],
        "slow": [],
    },
    "bias": {
        "files": ["bias/__init__.py", "bias/grid.py", "bias/methods.py"],
        "tests": ["tests/test_bias.py", "tests/test_opes_priming.py", "tests/test_bias_invariants.py", "tests/test_langevin.py",
                  "tests/test_engine_conformance.py", "tests/test_committor.py::test_kolmogorov_bias_energy_and_forces"],
        "slow": ["tests/test_committor.py::test_small_committor_campaign_through_project"],
    },
    "engines": {
        "files": ["engines/__init__.py", "engines/base.py", "engines/langevin.py"],
        "tests": ["tests/test_engine_conformance.py", "tests/test_langevin.py", "tests/test_engine_invariants.py"],
        "slow": ["tests/test_shooting.py::test_shooting_reproduces_the_exact_committor_on_mueller_brown"],
    },
    "learn": {
        "files": ["learn/reweight.py", "learn/cv_kolmogorov.py", "learn/committor.py", "learn/train.py"],
        "tests": ["tests/test_reweight.py", "tests/test_cv_kolmogorov.py", "tests/test_committor_metric.py", "tests/test_learn_invariants.py",
                  "tests/test_committor.py::test_feature_metric_is_jacobian_product",
                  "tests/test_committor.py::test_kolmogorov_loss_on_boltzmann_grid_gives_exact_committor",
                  "tests/test_committor.py::test_committor_export_matches_model", "tests/test_export.py"],
        "slow": ["tests/test_committor.py::test_small_committor_campaign_through_project",
                 "tests/test_committor.py::test_small_tps_committor_campaign_through_project"],
    },
    "analysis": {
        "files": ["analysis/quality.py", "analysis/fes.py", "analysis/rates.py", "analysis/committor_histogram.py"],
        "tests": ["tests/test_metric_calibration.py", "tests/test_reference.py", "tests/test_analysis_metrics.py",
                  "tests/test_committor_histogram.py",
                  "tests/test_committor.py::test_tpt_rate_of_double_well_matches_kramers"],
        "slow": ["tests/test_shooting.py::test_committor_histogram_test_of_a_campaign_cv",
                 "tests/test_committor.py::test_small_committor_campaign_through_project"],
    },
    "spec": {
        "files": ["spec.py"],
        "tests": ["tests/test_spec_version.py", "tests/test_spec_defaults.py", "tests/test_spec.py", "tests/test_spec_rules.py",
                  "tests/test_committor.py::test_committor_spec_errors"],
        "slow": [],
    },
}

QUIET_CALLS = {"log", "print"}  # dropping or changing these changes messages only

_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
               ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
               ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr, ast.BitXor: ast.BitOr}
_CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_BOOL_SWAP = {ast.And: ast.Or, ast.Or: ast.And}
OPERATORS = ("binop", "compare", "boolop", "unary", "number", "bool", "string-default", "return-none", "drop-call")


@dataclass
class Mutant:
    module: str
    file: str        # relative to src/cvcycle
    line: int
    qualname: str    # function or class the site is in
    operator: str    # one of OPERATORS
    before: str      # the source of the mutated node ...
    after: str       # ... and what it becomes
    id: str = ""     # stable: file, qualname and a hash of (operator, before, after, occurrence)
    span: tuple[int, int, int, int] = (0, 0, 0, 0)  # lineno, col, end_lineno, end_col of the replaced node

    @property
    def change(self) -> str:
        return f"{_short(self.before)}  ->  {_short(self.after)}"


# -- finding mutation sites ----------------------------------------------------------------------
class _Sites(ast.NodeVisitor):
    """Collects (node, replacement node or None for `pass`, operator, qualname) for one module."""

    def __init__(self) -> None:
        self.sites: list[tuple[ast.AST, ast.AST | None, str, str]] = []
        self.scope: list[str] = []
        self.in_function = 0

    @property
    def qualname(self) -> str:
        return ".".join(self.scope) or "<module>"

    def add(self, node: ast.AST, new: ast.AST | None, op: str) -> None:
        self.sites.append((node, new, op, self.qualname))

    # scopes; annotations, decorators' and docstrings' contents are not visited
    def _body(self, body: list[ast.stmt]) -> None:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        for stmt in body:
            self.visit(stmt)

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                value = stmt.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):  # a field's string default
                    self.add(value, ast.Constant(value.value + "_mutant"), "string-default")
        self._body(node.body)
        self.scope.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(default)
        self.scope.append(node.name)
        self.in_function += 1
        self._body(node.body)
        self.in_function -= 1
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_arg(self, node: ast.arg) -> None:
        pass

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__":
            return
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            return
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        pass  # the exception's message; raising at all is covered by the conditions around it

    # statements
    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if isinstance(call, ast.Call):
            func = call.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in QUIET_CALLS:
                return
            self.add(node, None, "drop-call")
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if self.in_function and value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            self.add(node, ast.Return(ast.Constant(None)), "return-none")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        swap = _BINOP_SWAP.get(type(node.op))
        if swap is not None:
            self.add(node, ast.AugAssign(node.target, swap(), node.value), "binop")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in QUIET_CALLS:
            return
        self.generic_visit(node)

    # expressions
    def visit_BinOp(self, node: ast.BinOp) -> None:
        swap = _BINOP_SWAP.get(type(node.op))
        strings = any(isinstance(x, ast.JoinedStr) or (isinstance(x, ast.Constant) and isinstance(x.value, str))
                      for x in (node.left, node.right))
        if swap is not None and not strings:
            self.add(node, ast.BinOp(node.left, swap(), node.right), "binop")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            new = copy.copy(node)
            new.ops = list(node.ops)
            new.ops[i] = _CMP_SWAP[type(op)]()
            self.add(node, new, "compare")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.add(node, ast.BoolOp(_BOOL_SWAP[type(node.op)](), node.values), "boolop")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
            self.add(node, node.operand, "unary")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool):
            self.add(node, ast.Constant(not v), "bool")
        elif isinstance(v, int):
            self.add(node, ast.Constant(v + 1), "number")
        elif isinstance(v, float):
            self.add(node, ast.Constant(v + 1.0), "number")


def _replace(source: str, span: tuple[int, int, int, int], text: str) -> str:
    """source with the node at span (ast line numbers, UTF-8 byte columns) replaced by text."""
    lines = source.splitlines(keepends=True)
    lineno, col, end_lineno, end_col = span
    head = lines[lineno - 1].encode()[:col].decode()
    tail = lines[end_lineno - 1].encode()[end_col:].decode()
    return "".join(lines[:lineno - 1]) + head + text + tail + "".join(lines[end_lineno:])


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def mutants_of(module: str, file: str, source: str) -> list[Mutant]:
    """Every mutant of one source file, in source order, with stable ids."""
    finder = _Sites()
    finder.visit(ast.parse(source))
    out: list[Mutant] = []
    seen: dict[tuple[str, ...], int] = {}
    for node, new, op, qualname in finder.sites:
        before = ast.get_source_segment(source, node) or ast.unparse(node)
        after = "pass" if new is None else ast.unparse(new)
        if new is not None and isinstance(node, ast.expr):
            after = f"({after})"
        key = (qualname, op, " ".join(before.split()), after)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        digest = hashlib.sha1(repr((*key, occurrence)).encode()).hexdigest()[:8]
        out.append(Mutant(module, file, node.lineno, qualname, op, " ".join(before.split()), after,
                          f"{file}:{qualname}:{digest}",
                          (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)))
    return out


def all_mutants(module: str, tree: Path) -> list[Mutant]:
    """The mutants of a module's files in the tree `tree`."""
    return [m for file in MODULES[module]["files"]
            for m in mutants_of(module, file, (tree / "src" / "cvcycle" / file).read_text())]


# -- running -------------------------------------------------------------------------------------
def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked-not-ignored files) into dest."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-rfE", "-W", "ignore"]
PRELOAD = ("numpy", "scipy", "torch", "matplotlib", "pytest")  # imported once; each mutant's run forks from here


def _env(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(tree / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}


def _pytest_child(tree: Path, args: list[str], out: Path) -> None:
    """In a forked child: run pytest in the copy with its src/ first on the path; never returns."""
    code = 3
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(tree)
        os.environ.update(_env(tree))
        sys.path.insert(0, str(tree / "src"))
        sys.dont_write_bytecode = True
        import pytest

        code = int(pytest.main(args))
    except BaseException:  # noqa: BLE001 - report, never return into the parent's code
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_tests(tree: Path, nodeids: list[str], timeout: float, fork: bool = True) -> tuple[str, float, str, list[str]]:
    """('passed' | 'failed' | 'timeout', seconds, output tail, failing node ids) of pytest -x on
    `nodeids` (run in that order) in the copy: in a child forked from this process (its imports done
    once), or with fork=False in a fresh interpreter."""
    args = PYTEST_ARGS + nodeids
    out = tree / ".mutation-pytest.out"
    t0 = time.monotonic()
    if fork:
        pid = os.fork()
        if pid == 0:
            _pytest_child(tree, args, out)
    else:
        with open(out, "wb") as fh:
            pid = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=tree, env={**os.environ, **_env(tree)},
                                   stdout=fh, stderr=subprocess.STDOUT, start_new_session=True).pid
    code = None
    try:
        while code is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() - t0 > timeout:
                break
            else:
                time.sleep(0.05)
    finally:
        if code is None:  # timed out or interrupted: the child and everything it started
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
    secs = time.monotonic() - t0
    text = out.read_text(errors="replace") if out.exists() else ""
    failing = [line.split()[1] for line in text.splitlines() if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1]
    if code is None:
        return "timeout", secs, text[-1500:], failing
    # any other exit status than 0 (the unmutated run's) is the mutant's doing: failed tests (1), a
    # module that no longer imports (2), node ids that no longer collect (4, 5)
    return ("passed" if code == 0 else "failed"), secs, text[-1500:], failing


def collect(tree: Path, tests: list[str]) -> list[str]:
    """The node ids of `tests` (files or node ids) in the copy, in pytest's order."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *[t for t in tests if (tree / t.split("::")[0]).exists()]],
                          cwd=tree, env={**os.environ, **_env(tree)}, capture_output=True, text=True)
    ids = [line for line in proc.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if proc.returncode != 0 or not ids:
        raise SystemExit(f"collecting {tests} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return ids


def ordered(nodeids: list[str], killers: list[str]) -> list[str]:
    """The tests that killed earlier mutants nearby first (most recent first), then the rest in order."""
    first = list(dict.fromkeys(k for k in killers if k in set(nodeids)))
    return first + [n for n in nodeids if n not in set(first)]


def load_equivalents() -> dict[str, dict[str, str]]:
    if not EQUIVALENTS.exists():
        return {}
    with open(EQUIVALENTS, "rb") as fh:
        return tomllib.load(fh)


class BaselineFailed(Exception):
    pass


def run_module(module: str, tree: Path, only: set[str] | None, log, fork: bool = True, slow: bool = True) -> dict:
    mutants = [m for m in all_mutants(module, tree) if not only or m.id in only]
    stages = [("fast", collect(tree, MODULES[module]["tests"]))]
    if slow and MODULES[module]["slow"]:
        stages.append(("slow", collect(tree, MODULES[module]["slow"])))
    timeouts = {}
    for stage, nodeids in stages:
        status, base_s, tail, _ = run_tests(tree, nodeids, timeout=3600, fork=fork)
        if status != "passed":
            raise BaselineFailed(f"[{module}] the unmutated {stage} tests do not pass ({status}); fix that first:\n{tail}")
        timeouts[stage] = max(2.0 * base_s, base_s + 30.0)
        log(f"[{module}] {stage} tests: {len(nodeids)}, unmutated run {base_s:.0f} s, timeout per mutant "
            f"{timeouts[stage]:.0f} s")
    log(f"[{module}] {len(mutants)} mutants")
    originals = {f: (tree / "src" / "cvcycle" / f).read_text() for f in MODULES[module]["files"]}
    killers: dict[str, list[str]] = {}  # by function and by file: the tests that killed mutants there, newest first
    results = {}
    t_module = time.monotonic()
    for stage, nodeids in stages:
        todo = [m for m in mutants if m.id not in results or results[m.id]["verdict"] == "survived"]
        if stage == "slow":
            log(f"[{module}] {len(todo)} survivors of the fast tests go on to the slow ones")
        for n, m in enumerate(todo, 1):
            path = tree / "src" / "cvcycle" / m.file
            failing: list[str] = []
            try:
                path.write_text(_replace(originals[m.file], m.span, m.after))
                try:
                    compile(path.read_text(), str(path), "exec")
                except SyntaxError:
                    outcome, secs = "invalid", 0.0
                else:
                    order = ordered(nodeids, killers.get(m.file + ":" + m.qualname, []) + killers.get(m.file, []))
                    outcome, secs, _, failing = run_tests(tree, order, timeouts[stage], fork)
            finally:
                path.write_text(originals[m.file])
            for key in (m.file + ":" + m.qualname, m.file):
                killers[key] = (failing[:1] + [k for k in killers.get(key, []) if k not in failing[:1]])[:8]
            verdict = {"passed": "survived", "failed": "killed", "timeout": "killed", "error": "error",
                       "invalid": "invalid"}[outcome]
            previous = results.get(m.id, {}).get("seconds", 0.0)
            results[m.id] = {**asdict(m), "verdict": verdict, "outcome": outcome, "stage": stage,
                             "seconds": round(previous + secs, 1), "killed_by": failing[:1]}
            mark = "." if verdict == "killed" else "S" if verdict == "survived" else "?"
            log(f"[{module}] {stage} {n:4d}/{len(todo)} {mark} {secs:5.1f} s  {m.file}:{m.line} {m.operator}: "
                f"{m.change}" + (f"  [{failing[0]}]" if failing else ""))
    return {"module": module, "tests": MODULES[module]["tests"], "slow_tests": MODULES[module]["slow"] if slow else [],
            "timeouts": timeouts, "seconds": round(time.monotonic() - t_module, 1), "n_mutants": len(mutants),
            "results": list(results.values())}


def summarize(report: dict, equivalents: dict[str, str]) -> dict:
    res = report["results"]
    equiv = [r for r in res if r["id"] in equivalents]
    counted = [r for r in res if r["id"] not in equivalents and r["verdict"] != "invalid"]
    killed = sum(r["verdict"] == "killed" for r in counted)
    survivors = [r for r in counted if r["verdict"] != "killed"]
    total = len(counted)
    return {"module": report["module"], "total": len(res), "equivalent": len(equiv), "killed": killed,
            "survived": len(survivors), "score": killed / total if total else 1.0, "seconds": report["seconds"],
            "survivors": survivors,
            "equivalent_killed": [r for r in equiv if r["verdict"] == "killed"]}


def print_table(summaries: list[dict]) -> None:
    print(f"\n{'module':<12} {'killed':>7} {'total':>6} {'equiv':>6} {'score':>7} {'minutes':>8}")
    for s in summaries:
        print(f"{s['module']:<12} {s['killed']:>7} {s['total']:>6} {s['equivalent']:>6} {100 * s['score']:>6.1f}% "
              f"{s['seconds'] / 60:>8.1f}")
    killed = sum(s["killed"] for s in summaries)
    counted = sum(s["killed"] + s["survived"] for s in summaries)
    if len(summaries) > 1 and counted:
        print(f"{'all':<12} {killed:>7} {sum(s['total'] for s in summaries):>6} "
              f"{sum(s['equivalent'] for s in summaries):>6} {100 * killed / counted:>6.1f}%")
    print("score = killed / (total - equivalent); equivalent mutants (tools/mutation-equivalents.toml) excluded")
    for s in summaries:
        for r in s["survivors"]:
            print(f"  SURVIVED {s['module']}: src/cvcycle/{r['file']}:{r['line']} [{r['id']}] {r['operator']}: "
                  f"{_short(r['before'])}  ->  {_short(r['after'])}" + (f" ({r['verdict']})" if r["verdict"] != "survived" else ""))
        for r in s["equivalent_killed"]:
            print(f"  NOTE {s['module']}: [{r['id']}] is listed as equivalent but was killed; remove it from the list")


def print_markdown(summaries: list[dict], equivalents: dict[str, dict[str, str]]) -> None:
    """The table, every survivor and every equivalent mutant, as Markdown (docs/mutation.md)."""
    print("| module | killed | total | equivalent | score | minutes (2 cores) |\n|---|---|---|---|---|---|")
    for s in summaries:
        print(f"| {s['module']} | {s['killed']} | {s['total']} | {s['equivalent']} | {100 * s['score']:.1f} % "
              f"| {s['seconds'] / 60:.0f} |")
    killed = sum(s["killed"] for s in summaries)
    counted = sum(s["killed"] + s["survived"] for s in summaries)
    print(f"| all | {killed} | {sum(s['total'] for s in summaries)} | {sum(s['equivalent'] for s in summaries)} "
          f"| {100 * killed / max(counted, 1):.1f} % | {sum(s['seconds'] for s in summaries) / 60:.0f} |")
    for s in summaries:
        if s["survivors"]:
            print(f"\n### {s['module']}: survivors\n")
            for r in s["survivors"]:
                print(f"- `src/cvcycle/{r['file']}:{r['line']}` `{r['id']}` {r['operator']}: "
                      f"`{_short(r['before'], 70)}` -> `{_short(r['after'], 70)}`")
        if equivalents.get(s["module"]):
            print(f"\n### {s['module']}: equivalent (excluded from the score)\n")
            for mid, reason in equivalents[s["module"]].items():
                print(f"- `{mid}`: {reason}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", choices=sorted(MODULES), help="module(s) to mutate (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their ids, run nothing")
    ap.add_argument("--id", action="append", help="run only these mutation ids")
    ap.add_argument("--survivors", action="store_true",
                    help="run only the stored survivors again (after adding tests), updating the stored results")
    ap.add_argument("--report", action="store_true", help="print the table of the stored results, run nothing")
    ap.add_argument("--markdown", action="store_true", help="with --report: as Markdown, equivalents listed")
    ap.add_argument("--no-fork", action="store_true", help="start a fresh interpreter per mutant (slower)")
    ap.add_argument("--fast", action="store_true", help="skip the slow tests (survivors of the fast ones stay survivors)")
    args = ap.parse_args(argv)
    modules = args.module or list(MODULES)
    equivalents = load_equivalents()
    unknown = set(equivalents) - set(MODULES)
    if unknown:
        raise SystemExit(f"{EQUIVALENTS}: unknown module(s) {sorted(unknown)}")

    if args.report:
        stored = [summarize(json.loads((RESULTS / f"{m}.json").read_text()), equivalents.get(m, {}))
                  for m in modules if (RESULTS / f"{m}.json").exists()]
        print_markdown(stored, equivalents) if args.markdown else print_table(stored)
        return 0
    if args.list:
        for module in modules:
            mutants = all_mutants(module, ROOT)
            for m in mutants:
                tag = "  (equivalent)" if m.id in equivalents.get(module, {}) else ""
                print(f"{module}: src/cvcycle/{m.file}:{m.line} [{m.id}] {m.operator}: {m.change}{tag}")
            print(f"{module}: {len(mutants)} mutants")
        return 0

    def on_term(signum, frame):  # turn SIGTERM into the same clean-up as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if not args.no_fork:
        for name in PRELOAD:  # not cvcycle: each child imports it from the copy
            __import__(name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cvcycle-mutation-"))
    summaries, failed = [], False
    try:
        copy_tree(tmp)
        for module in modules:
            only = set(args.id or ())
            if args.survivors:
                stored_path = RESULTS / f"{module}.json"
                if not stored_path.exists():
                    print(f"[{module}] no stored results to take survivors from; run it whole first", flush=True)
                    continue
                only |= {r["id"] for r in json.loads(stored_path.read_text())["results"]
                         if r["verdict"] != "killed" and r["id"] not in equivalents.get(module, {})}
                if not only:
                    print(f"[{module}] no survivors", flush=True)
                    summaries.append(summarize(json.loads(stored_path.read_text()), equivalents.get(module, {})))
                    continue
            try:
                report = run_module(module, tmp, only or None, lambda s: print(s, flush=True),
                                    fork=not args.no_fork, slow=not args.fast)
            except BaselineFailed as exc:
                print(exc, flush=True)
                failed = True
                continue
            if only:  # a partial run updates the stored results of those ids
                stored_path = RESULTS / f"{module}.json"
                if stored_path.exists():
                    stored = json.loads(stored_path.read_text())
                    fresh = {r["id"]: r for r in report["results"]}
                    stored["results"] = [fresh.get(r["id"], r) for r in stored["results"]]
                    report = stored
            (RESULTS / f"{module}.json").write_text(json.dumps(report, indent=1) + "\n")
            summaries.append(summarize(report, equivalents.get(module, {})))
    except KeyboardInterrupt:
        print("interrupted; the live source tree was never modified", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(summaries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
