"""Autoencoder training, CV normalisation, TorchScript export and checksummed model files."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from cvcycle import io as cio
from cvcycle.errors import WorkspaceError
from cvcycle.learn.train import normalize_cv, train_autoencoder
from cvcycle.models.autoencoder import AutoEncoder
from cvcycle.models.export import export_cv, load_cv, load_model, save_model
from cvcycle.spec import validate

STATE_A, STATE_B = np.array([-0.558, 1.442]), np.array([0.623, 0.028])


def learner_cfg(cv_dim: int = 1, **over) -> dict:
    raw = {
        "campaign": {"name": "t"},
        "system": {"potential": "mueller-brown",
                   "states": {"A": {"center": STATE_A.tolist(), "radius": 0.15},
                              "B": {"center": STATE_B.tolist(), "radius": 0.15}}},
        "learner": {"cv_dim": cv_dim, "hidden": [16, 8], "epochs": 15, "batch_size": 64, "patience": 100,
                    "learning_rate": 3e-3, "select": "kolmogorov" if cv_dim == 1 else "reconstruction", **over},
    }
    return validate(raw)["learner"]


def toy_data(n: int = 600, seed: int = 0) -> np.ndarray:
    """Points scattered along the segment A -> B with a little noise (a 1-D manifold in 2-D)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, n)
    return STATE_A + t[:, None] * (STATE_B - STATE_A) + rng.normal(0, 0.03, (n, 2))


@pytest.fixture(scope="module", params=[1, 2], ids=["cv1", "cv2"])
def trained(request):
    cv_dim = request.param
    x = toy_data()
    result = train_autoencoder(x, np.ones(len(x)), learner_cfg(cv_dim), seed=11, log=lambda s: None)
    normalize_cv(result.model, x, [STATE_A, STATE_B])
    return result, x, cv_dim


def test_training_reduces_loss_and_is_deterministic(trained):
    result, x, cv_dim = trained
    assert len(result.train_loss) == 15 and len(result.val_loss) == 15
    assert result.val_loss[result.best_epoch] == min(result.val_loss)
    assert min(result.val_loss) < 0.5 * result.val_loss[0]
    again = train_autoencoder(x, np.ones(len(x)), learner_cfg(cv_dim), seed=11, log=lambda s: None)
    normalize_cv(again.model, x, [STATE_A, STATE_B])
    for (k, v), (k2, v2) in zip(result.model.state_dict().items(), again.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    # input standardisation uses the (weighted) data mean / std
    np.testing.assert_allclose(result.model.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(result.model.std.numpy(), x.std(0), rtol=1e-4)


def test_normalize_cv_maps_data_to_unit_range_and_orders_states(trained):
    result, x, cv_dim = trained
    with torch.no_grad():
        cv = result.model.cv(torch.as_tensor(x, dtype=torch.float32)).numpy()
        ca, cb = result.model.cv(torch.as_tensor(np.stack([STATE_A, STATE_B]), dtype=torch.float32)).numpy()
    assert cv.shape == (len(x), cv_dim)
    np.testing.assert_allclose(np.percentile(cv, 0.5, axis=0), -1.0, atol=1e-4)
    np.testing.assert_allclose(np.percentile(cv, 99.5, axis=0), 1.0, atol=1e-4)
    assert np.all(ca < cb)


def test_exported_torchscript_cv_matches_model(trained, tmp_path):
    result, x, cv_dim = trained
    path = tmp_path / "cv.pt"
    export_cv(result.model, path)
    loaded = torch.jit.load(str(path))  # loads without cvcycle-specific code
    xt = torch.as_tensor(x[:100], dtype=torch.float32)
    with torch.no_grad():
        expected = result.model.cv(xt)
        out = loaded(xt)
        out64 = loaded(xt.double())  # float64 input (what engines pass) is cast inside
    assert out.shape == (100, cv_dim) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out64, expected, rtol=1e-5, atol=1e-5)
    # gradients flow through the exported module (the bias needs them)
    xg = torch.as_tensor(x[:5], dtype=torch.float64).requires_grad_(True)
    (g,) = torch.autograd.grad(loaded(xg).sum(), xg)
    assert g.shape == (5, 2) and torch.isfinite(g).all() and g.abs().sum() > 0
    torch.testing.assert_close(load_cv(path)(xt), expected, rtol=1e-6, atol=1e-6)


def test_save_load_model_round_trip(trained, tmp_path):
    result, x, _ = trained
    path = tmp_path / "model.npz"
    save_model(result.model, path)
    with np.load(path) as archive:
        assert cio.CHECKSUM_KEY in archive.files  # the checksum travels inside the file
    meta = json.loads((tmp_path / "model.npz.json").read_text())
    assert meta["architecture"] == result.model.architecture
    back = load_model(path)
    assert back.architecture == result.model.architecture and not back.training
    sd, sd2 = result.model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(back.cv(xt), result.model.cv(xt))
        assert torch.equal(back(xt), result.model(xt))


def test_warm_start_continues_from_init(trained):
    result, x, cv_dim = trained
    cfg = learner_cfg(cv_dim, epochs=1)
    cont = train_autoencoder(x, np.ones(len(x)), cfg, seed=5, log=lambda s: None, init=result.model)
    # the scaling buffers come from init, not from the data of this call
    for name in ("mean", "std", "cv_shift", "cv_scale"):
        assert torch.equal(getattr(cont.model, name), getattr(result.model, name)), name
    # one epoch of training from a trained model: the loss stays near the trained loss
    assert cont.val_loss[0] < 2.0 * min(result.val_loss)


def _saved(tmp_path):
    model = AutoEncoder(2, 1, [8], "tanh")
    path = tmp_path / "model.npz"
    save_model(model, path)
    return path


def test_truncated_model_file_raises_workspace_error(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkspaceError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "checksum" in str(info.value)


def test_garbage_model_file_raises_workspace_error(tmp_path):
    path = _saved(tmp_path)
    path.write_bytes(b"PK\x03\x04 definitely not an archive")
    with pytest.raises(WorkspaceError) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_a_flipped_byte_in_any_tensor_is_detected(tmp_path):
    path = _saved(tmp_path)
    original = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if m.filename != f"{cio.CHECKSUM_KEY}.npy"]
    for m in members:
        name_len, extra_len = struct.unpack("<HH", original[m.header_offset + 26:m.header_offset + 30])
        last_byte = m.header_offset + 30 + name_len + extra_len + m.compress_size - 1  # inside the tensor's data
        data = bytearray(original)
        data[last_byte] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(WorkspaceError, match="checksum"):
            load_model(path)


def test_missing_model_files_raise_workspace_error(tmp_path):
    path = _saved(tmp_path)
    path.unlink()
    with pytest.raises(WorkspaceError, match="missing") as info:
        load_model(path)
    assert str(path) in str(info.value)
    with pytest.raises(WorkspaceError, match="missing"):
        load_model(tmp_path / "other.npz")  # no .json either


def test_model_file_of_another_architecture_raises_workspace_error(tmp_path):
    path = _saved(tmp_path)
    other = AutoEncoder(2, 1, [16], "tanh")
    cio.write_npz(path, **{k: v.numpy() for k, v in other.state_dict().items()})
    with pytest.raises(WorkspaceError, match="architecture") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_corrupted_json_raises_workspace_error(tmp_path):
    path = _saved(tmp_path)
    (tmp_path / "model.npz.json").write_text('{"kind": "autoencoder", "archi')
    with pytest.raises(WorkspaceError, match="corrupted JSON"):
        load_model(path)


@pytest.mark.parametrize("content", [b"garbage" * 20, b"", None], ids=["garbage", "empty", "truncated"])
def test_bad_torchscript_file_raises_workspace_error(tmp_path, content):
    path = tmp_path / "cv.pt"
    if content is None:
        export_cv(AutoEncoder(2, 1, [8], "tanh"), path)
        data = path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(WorkspaceError) as info:
        load_cv(path)
    assert str(path) in str(info.value)


def test_missing_torchscript_file_raises_workspace_error(tmp_path):
    with pytest.raises(WorkspaceError) as info:
        load_cv(tmp_path / "absent.pt")
    assert "absent.pt" in str(info.value)


def test_write_npz_is_atomic_and_checksummed(tmp_path):
    path = tmp_path / "sub" / "a.npz"
    cio.write_npz(path, a=np.arange(5), b=np.eye(2))
    out = cio.read_npz(path)
    np.testing.assert_array_equal(out["a"], np.arange(5))
    np.testing.assert_array_equal(out["b"], np.eye(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.npz"]  # one file, no temp files left


def test_read_npz_detects_changed_contents_and_a_missing_checksum(tmp_path):
    path = tmp_path / "a.npz"
    cio.write_npz(path, a=np.arange(5))
    with np.load(path) as archive:
        stored = archive[cio.CHECKSUM_KEY]
    np.savez(path, a=np.arange(5) + 1, **{cio.CHECKSUM_KEY: stored})  # a valid archive, other numbers
    with pytest.raises(WorkspaceError, match="checksum mismatch"):
        cio.read_npz(path)
    np.savez(path, a=np.arange(5))
    with pytest.raises(WorkspaceError, match="no checksum in"):
        cio.read_npz(path)


EXPORT_TWICE = """
import sys, torch
from pathlib import Path
from cvcycle.models.autoencoder import AutoEncoder
from cvcycle.models.export import export_cv
torch.manual_seed(0)
for act in ("tanh", "elu", "softplus"):
    model = AutoEncoder(2, 1, [16, 8], act)
    for n in range(2):  # the second export of a model in one process: same bytes as the first
        export_cv(model, Path(sys.argv[1]) / f"{act}-{n}.pt")
"""


def test_export_gives_the_same_bytes_in_every_process(tmp_path):
    """cv.pt must not depend on the process's string hash seed (TorchScript writes a module's
    __constants__ in set order) nor on what the process exported before."""
    for seed in ("1", "2"):  # these two seeds order nn.Linear's two constants differently
        (tmp_path / seed).mkdir()
        subprocess.run([sys.executable, "-c", EXPORT_TWICE, str(tmp_path / seed)], check=True, timeout=120,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    files = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert len(files) == 6
    for name in files:
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "1" / f"{name[:-5]}-0.pt").read_bytes(), name
