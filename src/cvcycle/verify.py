"""`python -m cvcycle verify JOB`: read every file of a campaign back and say which are damaged.

`show` checks what it points to (the newest models and FES); `verify` checks everything: the
job document against the iteration folders, every array file against its stored checksum,
every JSON file, every model (model.npz against its architecture, each TorchScript module by
loading it and evaluating it on the iteration's first frames).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from . import io as cio
from .campaign import Campaign
from .errors import CvcycleError
from .routes import route_for


def _check_npz(path: Path) -> None:
    if Path(str(path) + ".json").is_file():  # a model: arrays and architecture must fit
        from .models.export import load_model

        load_model(path)
    else:
        cio.read_npz(path)


@functools.lru_cache(maxsize=1)  # cv.pt and committor.pt of one folder share one read
def _first_frames(folder: Path) -> np.ndarray | None:
    """The first 64 frames' features of a folder's samples.npz, or None where it is unreadable
    (a damaged samples.npz is reported on its own)."""
    try:
        features = cio.read_npz(folder / "samples.npz")["features"]
    except CvcycleError:
        return None
    return features.reshape(-1, features.shape[-1])[:64]


def _check_torchscript(path: Path) -> None:
    import torch

    from .models.export import load_cv

    module = load_cv(path)
    features = _first_frames(path.parent)
    if features is None:
        return
    x = torch.as_tensor(features, dtype=torch.float32)
    try:
        out = module(x).detach().numpy()
    except RuntimeError as exc:
        raise CvcycleError(f"TorchScript module {path} fails on the iteration's features: "
                           f"{str(exc).strip().splitlines()[-1]}") from None
    if not np.isfinite(out).all():
        raise CvcycleError(f"TorchScript module {path} gives non-finite values on the iteration's features")


CHECKS: dict[str, Callable[[Path], None]] = {".npz": _check_npz, ".json": cio.read_json, ".pt": _check_torchscript}


def verify(c: Campaign) -> tuple[int, list[str]]:
    """(files checked, problems): one line per damaged file or inconsistency, empty when the
    campaign is intact."""
    _first_frames.cache_clear()  # files may have changed since an earlier call
    problems = []
    try:
        c.check(route_for(c.spec).files)
    except CvcycleError as exc:
        problems.append(str(exc))
    files = sorted(p for p in c.path.rglob("*") if p.is_file() and p.suffix in CHECKS and not p.name.startswith("."))
    for path in files:
        if path.name.endswith(".npz.json"):
            continue  # checked with its model
        try:
            CHECKS[path.suffix](path)
        except CvcycleError as exc:
            problems.append(str(exc))
    return len(files), problems
