"""Every default of the spec schema (cvcycle.spec.SCHEMA) is the one README.md's "Campaign spec
reference" table documents, and the table documents every schema field and no other.

Rows name one or more fields in backticks: a full name (`engine.dt`), a bare key continuing the
row's section (`learner.epochs`, `batch_size`), or a key continuing the previous name after a dot
(`system.states.NAME.center`, `.radius`). The default column lists one value per name, separated
by commas outside brackets; `required` (possibly followed by a remark) marks every name of the row
as required. Values: `code` is a string unless it is a list literal, true/false are booleans,
otherwise a number (5e-4, 2e6) or a list ([32, 32]).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cvcycle import spec as spec_module
from cvcycle.spec import SCHEMA, STATE_FIELDS, Field

README = Path(__file__).resolve().parents[1] / "README.md"

# Fields whose README default is prose rather than a value, with the reason. None at present;
# a field added here is still required to be in the table, only its default is not compared.
PROSE_DEFAULTS: dict[str, str] = {}

# Schema fields that are tables of named entries: the README documents their entries' fields as
# `<field>.NAME.<key>` rows (system.states.NAME.center / .radius, checked against STATE_FIELDS).
NAMED_TABLES = {"system.states": STATE_FIELDS}

# Sections whose fields depend on a kind (spec.FEATURE_FIELDS: featurizer kind -> its own fields,
# spec.SYSTEM_FIELDS: system.potential -> its own fields, merged into the section by validate): the
# README documents each such field as `<section>.<key>`, with one default however many kinds share the key.
KIND_TABLES = {"features": "FEATURE_FIELDS", "system": "SYSTEM_FIELDS"}

NONE_WORDS = {"none", "null", "unset", "—", "-", "–"}


def _table_rows() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Campaign spec reference")
    lines = text[start:].splitlines()[1:]
    rows, in_table = [], False
    for line in lines:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            in_table = True
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cells[0] == "field" or set(cells[0]) <= {"-", ":", " "}:
                continue
            rows.append((cells[0], cells[1]))
        elif in_table:
            break
    assert rows, "no table found under '## Campaign spec reference' in README.md"
    return rows


def _names(cell: str) -> list[str]:
    names: list[str] = []
    for token in re.findall(r"`([^`]+)`", cell):
        if token.startswith("."):
            assert names, f"{cell!r}: {token!r} continues no earlier name"
            token = names[-1].rsplit(".", 1)[0] + token
        elif "." not in token:
            assert names, f"{cell!r}: bare key {token!r} before any section"
            token = names[0].split(".", 1)[0] + "." + token
        names.append(token)
    assert names, f"no field names in {cell!r}"
    return names


def _split_top_level(cell: str) -> list[str]:
    parts, depth, in_code, current = [], 0, False, ""
    for ch in cell:
        if ch == "`":
            in_code = not in_code
        elif not in_code and ch in "[(":
            depth += 1
        elif not in_code and ch in "])":
            depth -= 1
        if ch == "," and depth == 0 and not in_code:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


class Prose(str):
    pass


def _value(text: str):
    code = re.fullmatch(r"`([^`]*)`", text)
    if code:
        inner = code.group(1)
        if inner.startswith("["):
            return ast.literal_eval(inner)
        return inner
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in NONE_WORDS:
        return None
    try:
        return ast.literal_eval(text.replace("_", ""))
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)
    except ValueError:
        return Prose(text)


def readme_defaults() -> dict[str, object]:
    """Field name -> README default ("required" for required fields, Prose for what is not a value)."""
    out: dict[str, object] = {}
    for names_cell, default_cell in _table_rows():
        names = _names(names_cell)
        for name in names:
            assert name not in out, f"README documents {name} twice"
        if default_cell.lower().startswith("required"):
            out.update({n: "required" for n in names})
            continue
        values = _split_top_level(default_cell)
        if len(values) != len(names):
            for n in names:
                out[n] = Prose(default_cell)
            continue
        out.update({n: _value(v) for n, v in zip(names, values)})
    return out


def schema_fields() -> dict[str, object]:
    out: dict[str, object] = {}
    for section, fields in SCHEMA.items():
        for key, field in fields.items():
            name = f"{section}.{key}"
            if name in NAMED_TABLES:
                for sub, sub_field in NAMED_TABLES[name].items():
                    out[f"{name}.NAME.{sub}"] = sub_field
                continue
            out[name] = field
    for section, attribute in KIND_TABLES.items():
        for kind, fields in getattr(spec_module, attribute, {}).items():
            for key, field in fields.items():
                name = f"{section}.{key}"
                if name in out and not _same(field.default, out[name].default):
                    out[name] = Field(object, _Conflict(f"{attribute}: {key} defaults to {out[name].default!r} "
                                                        f"and {field.default!r} ({kind})"))
                elif name not in out:
                    out[name] = field
    return out


class _Conflict(str):
    """Kinds give one key different defaults: the README's single default cannot match."""


def _same(readme, default) -> bool:
    if isinstance(readme, bool) or isinstance(default, bool):
        return type(readme) is type(default) and readme == default
    if isinstance(default, str):
        return readme == default
    if isinstance(default, (list, tuple)):
        return isinstance(readme, (list, tuple)) and len(readme) == len(default) and \
            all(_same(a, b) for a, b in zip(readme, default))
    if default is None:
        return readme is None
    return isinstance(readme, (int, float)) and not isinstance(readme, str) and readme == default


def test_readme_table_is_parsed():
    documented = readme_defaults()
    # spot checks of the parser on the row shapes the table uses
    assert documented["engine.dt"] == 5e-4 and documented["engine.mass"] == 1
    assert documented["learner.batch_size"] == 512  # bare key continuing the row's section
    assert documented["system.states.NAME.radius"] == "required"  # ".radius" after a full name
    assert documented["learner.hidden"] == [32, 32] and documented["learner.activation"] == "tanh"
    assert documented["features.names"] == ["x", "y"]
    assert documented["budget.max_total_steps"] == 2e6
    assert documented["learner.warm_start"] is True
    assert not isinstance(documented["engine.start"], Prose) and documented["engine.start"] == "A"


def test_every_schema_field_is_in_the_readme_table_and_vice_versa():
    documented, fields = set(readme_defaults()), set(schema_fields())
    assert not fields - documented, f"schema fields missing from README's spec table: {sorted(fields - documented)}"
    assert not documented - fields, f"README's spec table names fields the schema lacks: {sorted(documented - fields)}"
    assert set(PROSE_DEFAULTS) <= fields, f"stale PROSE_DEFAULTS entries: {sorted(set(PROSE_DEFAULTS) - fields)}"


def test_every_schema_default_is_the_readme_default():
    documented = readme_defaults()
    wrong = []
    for name, field in sorted(schema_fields().items()):
        if name not in documented or name in PROSE_DEFAULTS:
            continue
        readme = documented[name]
        if field.required or readme == "required":
            if not (field.required and readme == "required"):
                wrong.append(f"{name}: schema required={field.required}, README default {readme!r}")
            continue
        if isinstance(readme, Prose):
            wrong.append(f"{name}: README default {str(readme)!r} is not a value (one per name?) - "
                         f"fix the row or list the field in PROSE_DEFAULTS with the reason")
            continue
        if isinstance(field.default, _Conflict):
            wrong.append(f"{name}: {field.default}; list it in PROSE_DEFAULTS if the README explains it")
            continue
        if not _same(readme, field.default):
            wrong.append(f"{name}: schema default {field.default!r}, README {readme!r}")
    assert not wrong, "schema and README's spec table disagree:\n" + "\n".join(wrong)


@pytest.mark.parametrize("text, value", [("5e-4", 5e-4), ("2e6", 2_000_000), ("`tanh`", "tanh"), ("true", True),
                                         ("[-1, 1]", [-1, 1]), ('`["x", "y"]`', ["x", "y"]), ("1e-3", 1e-3)])
def test_value_parser(text, value):
    assert _same(_value(text), value)
