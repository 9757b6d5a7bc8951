"""Digests of campaign outputs, for bit-for-bit comparisons between runs."""

from __future__ import annotations

import hashlib
from pathlib import Path


def campaign_digests(job: Path, suffixes: tuple[str, ...] = (".npz", ".pt", ".json", ".png")) -> dict[str, str]:
    """SHA-256 of every data, model, metrics and plot file under the iteration folders, sim/ and
    train/ included (train.json is left out: it records wall-clock times)."""
    return {str(f.relative_to(job)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(job.glob("iter-*/**/*"))
            if f.is_file() and f.suffix in suffixes and f.name != "train.json"}
