"""Saving and loading models: state_dict tensors in checksummed .npz + JSON architecture,
and the CV as a TorchScript file that loads without cvcycle (torch.jit.load)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import io as cio
from ..errors import WorkspaceError
from .autoencoder import AutoEncoder, CVExport
from .committor import CommittorExport, CommittorNet

Model = AutoEncoder | CommittorNet
KINDS: dict[str, type[AutoEncoder] | type[CommittorNet]] = {"autoencoder": AutoEncoder, "committor": CommittorNet}


def cv_module(model: Model) -> torch.nn.Module:
    """The CV a bias acts on, (n, n_features) -> (n, cv_dim): the autoencoder's bottleneck, or
    the committor net's logit q."""
    return CVExport(model) if isinstance(model, AutoEncoder) else model


def save_model(model: Model, path: Path) -> None:
    """Write the model's tensors to `path` (.npz) and its kind and architecture to `path`.json."""
    kind = next(name for name, cls in KINDS.items() if isinstance(model, cls))
    cio.write_npz(path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    cio.write_json(Path(str(path) + ".json"), {"kind": kind, "architecture": model.architecture})


def load_model(path: Path) -> Model:
    """Restore a model written by save_model; a damaged file raises WorkspaceError naming it."""
    meta_path = Path(str(path) + ".json")
    meta = cio.read_json(meta_path)
    tensors = cio.read_npz(path)
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in KINDS:
        raise WorkspaceError(f"model description {meta_path}: unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    try:
        model = KINDS[kind].from_architecture(meta["architecture"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WorkspaceError(f"model description {meta_path} is not a valid {kind} architecture "
                             f"({type(exc).__name__}: {exc})") from None
    try:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
    except (RuntimeError, KeyError) as exc:  # torch lists every mismatch on its own line: keep one line
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip()) or str(exc)
        raise WorkspaceError(f"model file {path} does not match its architecture in {meta_path.name}: {detail}") from None
    return model.eval()


def export_cv(model: Model, path: Path) -> torch.jit.ScriptModule:
    """Export the CV (see `cv_module`) as TorchScript to `path`; returns the exported module."""
    return _export(cv_module(model), path)


def export_committor(model: CommittorNet, path: Path) -> torch.jit.ScriptModule:
    """Export q = sigmoid(logit q), (n, n_features) -> (n,), as TorchScript to `path`."""
    return _export(CommittorExport(model), path)


def _export(module: torch.nn.Module, path: Path) -> torch.jit.ScriptModule:
    """Script, freeze and write `module` to `path`; returns the exported module.

    The same model gives the same bytes in every process, so a resumed campaign's cv.pt equals
    an uninterrupted one's. Plain scripting does not: each submodule's `__constants__` (e.g.
    nn.Linear's in_features/out_features) is written in Python set order, which follows the
    per-process string hash seed. So the module is frozen (one flat forward, weights as
    constants; no numeric rewrites, values and gradients stay bit-identical), after a round trip
    through torch.jit.load: the frozen copy then gets its class name in that load's own
    compilation unit, not a name numbered by the exports this process made before."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated from torch 2.10 on; still loads everywhere
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module.eval()), buf)
        buf.seek(0)
        exported = torch.jit.freeze(torch.jit.load(buf, map_location="cpu"), optimize_numerics=False)
        buf = io.BytesIO()
        torch.jit.save(exported, buf)
    cio.write_bytes(path, buf.getvalue())
    return exported


def load_cv(path: Path) -> torch.jit.ScriptModule:
    """Load an exported TorchScript CV."""
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript loading in favour of torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise WorkspaceError(f"unreadable TorchScript CV {path}: {str(exc).splitlines()[0]}") from None
