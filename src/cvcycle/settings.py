"""`--set SECTION.KEY=VALUE` settings on the command line (init, extend, benchmarks): parsing,
values read as TOML, comma-separated lists of values for sweeps, and applying them to a spec."""

from __future__ import annotations

import tomllib
from typing import Any

from .errors import SpecError

Key = tuple[str, str]  # (section, key)


def split_setting(item: str) -> tuple[Key, str]:
    """'learner.ensemble=3' -> (('learner', 'ensemble'), '3')."""
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name or not value.strip():
        raise SpecError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. budget.max_iterations=12")
    return (section, name), value.strip()


def toml_value(key: Key, text: str) -> Any:
    """VALUE read as TOML: a number, true/false, a quoted string or an array."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise SpecError(f"--set {'.'.join(key)}: {text!r} is not a TOML value (a number, true/false, a quoted "
                        "string or an array)") from None


def split_values(text: str) -> list[str]:
    """Top-level comma-separated items: '1,3,5' -> ['1', '3', '5']; '[0.2, 0.8],[0.3, 0.7]' -> two
    arrays; commas inside brackets or quotes do not split."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def parse_values(item: str) -> tuple[Key, list[Any]]:
    """'bias.sigma=0.025,0.035' -> (('bias', 'sigma'), [0.025, 0.035]); one value gives a list of one."""
    key, text = split_setting(item)
    try:
        return key, [tomllib.loads(f"v = {text}")["v"]]  # one TOML value (an array with commas included)
    except tomllib.TOMLDecodeError:
        pass
    parts = split_values(text)
    if any(not p for p in parts):
        raise SpecError(f"--set {'.'.join(key)}: empty value in {text!r}")
    values = [toml_value(key, p) for p in parts]
    if len({repr(v) for v in values}) < len(values):
        raise SpecError(f"--set {'.'.join(key)}: a value is given twice in {text!r}")
    return key, values


def apply(spec: dict[str, Any], values: dict[Key, Any]) -> dict[str, Any]:
    """A copy of the spec with the settings applied (sections created where the spec has none)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in spec.items()}
    for (section, name), value in values.items():
        body = out.setdefault(section, {})
        if not isinstance(body, dict):
            raise SpecError(f"--set {section}.{name}: {section} is not a section of the spec")
        body[name] = value
    return out
