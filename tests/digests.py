"""Content digests of campaign outputs, for bit-for-bit comparisons between runs.

A TorchScript archive (cv.pt) names its class `___torch_mangle_<n>`, where n counts the
modules the *process* compiled before; the same model exported by a fresh and by a long-running
process differs only in that name, in the debug tables that spell it (and the source path), and
in the serialization id derived from them. cv.pt is therefore digested member by member, with
the counter normalised and those two members left out; code, constants and tensors all count.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

MANGLE = re.compile(rb"___torch_mangle_\d+")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.suffix != ".pt":
        h.update(path.read_bytes())
        return h.hexdigest()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist(), key=lambda n: MANGLE.sub(b"", n.encode())):
            if name.endswith((".data/serialization_id", ".debug_pkl")):
                continue
            h.update(MANGLE.sub(b"___torch_mangle_N", name.encode()))
            h.update(MANGLE.sub(b"___torch_mangle_N", z.read(name)))
    return h.hexdigest()


def campaign_digests(job: Path, suffixes: tuple[str, ...] = (".npz", ".pt", ".json", ".png")) -> dict[str, str]:
    """Digest of every data, model, metrics and plot file under the iteration folders
    (train.json is left out: it records wall-clock times)."""
    return {str(f.relative_to(job)): file_digest(f) for f in sorted(job.glob("iter-*/**/*"))
            if f.is_file() and f.suffix in suffixes and f.name != "train.json"}
