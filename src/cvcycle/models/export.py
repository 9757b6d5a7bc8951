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


def save_model(model: AutoEncoder, path: Path) -> None:
    """Write the model's tensors to `path` (.npz) and its architecture to `path`.json."""
    cio.write_npz(path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    cio.write_json(Path(str(path) + ".json"), {"kind": "autoencoder", "architecture": model.architecture})


def load_model(path: Path) -> AutoEncoder:
    """Restore a model written by save_model; a damaged file raises WorkspaceError naming it."""
    meta = cio.read_json(Path(str(path) + ".json"))
    tensors = cio.read_npz(path)
    model = AutoEncoder.from_architecture(meta["architecture"])
    try:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
    except (RuntimeError, KeyError) as exc:
        raise WorkspaceError(f"model file {path} does not match its architecture: {exc}") from None
    return model.eval()


def export_cv(model: AutoEncoder, path: Path) -> torch.jit.ScriptModule:
    """Export the CV as TorchScript to `path`; returns the scripted module."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated from torch 2.10 on; still loads everywhere
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(CVExport(model).eval())
        torch.jit.save(scripted, buf)
    cio.write_bytes(path, buf.getvalue())
    return scripted


def load_cv(path: Path) -> torch.jit.ScriptModule:
    """Load an exported TorchScript CV."""
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript loading in favour of torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise WorkspaceError(f"unreadable TorchScript CV {path}: {str(exc).splitlines()[0]}") from None
