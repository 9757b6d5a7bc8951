"""Properties of cvcycle.io and cvcycle.checkpoints that the writers' and readers' docstrings
promise and the rest of the suite did not check (each found as a surviving mutant of
tools/mutation.py): directories are created, descriptors closed, NaN/inf metrics written, the
checksum covers names, dtypes and shapes, npz files are never unpickled, derived seeds use all
63 bits uniformly, and a damaged checkpoint is set aside, not read.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest

from cvcycle import io as cio
from cvcycle.checkpoints import CheckpointSeries
from cvcycle.errors import WorkspaceError


def test_writers_create_missing_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "metrics.json"
    cio.write_json(path, {"k": 1})
    assert cio.read_json(path) == {"k": 1}
    cio.write_json(path, {"k": 2})  # and the folders existing already is fine
    assert cio.read_json(path) == {"k": 2}


def test_writers_leave_no_open_descriptors(tmp_path):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for i in range(20):
        cio.write_json(tmp_path / f"{i}.json", {"i": i})
        cio.write_npz(tmp_path / f"{i}.npz", x=np.arange(i))
    assert open_fds() == before


def test_json_metrics_may_be_nan_or_infinite(tmp_path):
    # fes_change and cv_kolmogorov return inf when there is too little data: metrics.json holds them
    cio.write_json(tmp_path / "m.json", {"fes_change": math.inf, "k_s": -math.inf, "r2": math.nan})
    back = cio.read_json(tmp_path / "m.json")
    assert back["fes_change"] == math.inf and back["k_s"] == -math.inf and math.isnan(back["r2"])


def test_json_bytes_do_not_depend_on_key_order(tmp_path):
    cio.write_json(tmp_path / "a.json", {"b": 1, "a": {"y": 2, "x": 3}})
    cio.write_json(tmp_path / "b.json", {"a": {"x": 3, "y": 2}, "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_checksum_covers_names_dtypes_and_shapes():
    x = np.arange(6, dtype=np.float32)
    digests = {cio.array_digest({"a": x}), cio.array_digest({"b": x}),  # same bytes, another name
               cio.array_digest({"a": x.reshape(2, 3)}), cio.array_digest({"a": x.reshape(3, 2)}),  # shape
               cio.array_digest({"a": x.view(np.int32)})}  # same bytes, another dtype
    assert len(digests) == 5


class _Marker:
    """Unpickling this object creates the file `path` (what a hostile pickle could do)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_npz_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    buf = io.BytesIO()
    np.savez(buf, x=np.array([_Marker(str(marker))], dtype=object), **{cio.CHECKSUM_KEY: np.array("0" * 64)})
    (tmp_path / "evil.npz").write_bytes(buf.getvalue())
    with pytest.raises(WorkspaceError):
        cio.read_npz(tmp_path / "evil.npz")
    assert not marker.exists()


def _seeds(n: int = 4000) -> np.ndarray:
    return np.array([cio.derive_seed(7, i, i % 13) for i in range(n)], dtype=np.uint64)


def test_derived_seeds_are_63_bit_distinct_and_order_sensitive():
    seeds = _seeds()
    assert all(0 <= int(s) < 2**63 for s in seeds)
    assert len(set(seeds.tolist())) == len(seeds)
    assert cio.derive_seed(1, 2) != cio.derive_seed(2, 1)
    assert cio.derive_seed(1, 2, 3) != cio.derive_seed(1, 2)
    # (numpy's SeedSequence ignores trailing zero keys: derive_seed(1, 2, 0) == derive_seed(1, 2))


def test_derived_seed_bits_are_uniform_and_uncorrelated():
    seeds = _seeds()
    bits = ((seeds[:, None] >> np.arange(63, dtype=np.uint64)) & np.uint64(1)).astype(np.float64)  # (n, 63)
    n = len(seeds)
    freq = bits.mean(0)
    assert np.all(np.abs(freq - 0.5) < 5 * 0.5 / math.sqrt(n)), freq  # every bit, top ones included
    corr = np.corrcoef(bits.T)
    off = np.abs(corr[~np.eye(63, dtype=bool)])
    assert off.max() < 0.12, off.max()  # independent bits: |corr| ~ 1/sqrt(n) = 0.016


def test_damaged_checkpoint_is_set_aside_and_the_previous_one_read(tmp_path):
    series = CheckpointSeries(tmp_path, "checkpoint")
    series.write(1, x=np.array([1.0]))
    series.write(2, x=np.array([2.0]))
    data = series.path(2).read_bytes()
    series.path(2).write_bytes(data[: len(data) // 2])  # truncated by a crash
    lines = []
    index, arrays = series.latest(lines.append)
    assert index == 1 and arrays["x"][0] == 1.0
    assert (tmp_path / "checkpoint-0002.npz.corrupt").exists() and not series.path(2).exists()
    assert len(lines) == 1 and "checkpoint-0002.npz" in lines[0]
    assert series.latest(lines.append)[0] == 1  # the damaged one is not read again


def test_no_checkpoint_is_none_and_other_files_are_ignored(tmp_path):
    series = CheckpointSeries(tmp_path / "missing", "epoch")
    assert series.indices() == [] and series.latest(print) is None
    series = CheckpointSeries(tmp_path, "epoch")
    for name in ("epoch-0003.npz.corrupt", "other-0009.npz", "epoch-12.npz.tmp", "xepoch-0005.npz"):
        (tmp_path / name).write_bytes(b"")
    assert series.indices() == [] and series.latest(print) is None
    path = series.write(3, x=np.zeros(1))
    assert path == tmp_path / "epoch-0003.npz" and series.indices() == [3]


def test_pruning_tolerates_a_checkpoint_removed_meanwhile(tmp_path, monkeypatch):
    # another reader (or a crashed run's clean-up) may remove an old checkpoint between listing and unlinking
    series = CheckpointSeries(tmp_path, "c")
    for i in (1, 2, 3):
        cio.write_npz(series.path(i), x=np.array([i]))
    real = series.indices
    monkeypatch.setattr(series, "indices", lambda: [*real(), 0])  # index 0 is listed but not on disk
    assert series.latest(print)[0] == 3
    assert sorted(Path(p).name for p in os.listdir(tmp_path)) == ["c-0002.npz", "c-0003.npz"]


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, expected):
    """Group members on shared cluster storage read a campaign's results when the umask lets
    them: every writer gives 0666 & ~umask, as open() does, not mkstemp's 0600."""
    old = os.umask(umask)
    try:
        cio.write_json(tmp_path / "m.json", {"k": 1})
        cio.write_npz(tmp_path / "a.npz", x=np.arange(3))
        cio.write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    for name in ("m.json", "a.npz", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
