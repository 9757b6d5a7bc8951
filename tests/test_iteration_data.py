"""The per-iteration data the analysis reweights: an iteration's equilibrated frames, and the
stored positions of a subset of frames mapped back to their rows, with or without a stride and
an equilibration cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvcycle import io as cio
from cvcycle.routes.data import equilibrated, flat, flat_positions

WALKERS, N, D = 3, 2, 2


class Iterations:
    """The part of a Campaign that flat_positions reads: one folder per iteration."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def iter_dir(self, k: int) -> Path:
        return self.root / f"iter-{k:03d}"


def write_iteration(c: Iterations, k: int, frames: int, stride: int) -> dict[str, np.ndarray]:
    """Samples whose state coordinates are the first particle's position, and the positions of
    every `stride`-th frame, as simulate writes them."""
    rng = np.random.default_rng(k)
    positions = rng.standard_normal((frames, WALKERS, N, D))
    samples = {"step": 10 * np.arange(frames), "log_weight": rng.standard_normal((frames, WALKERS)),
               "state_coordinates": positions[:, :, 0, :].copy(), "state": rng.integers(-1, 2, (frames, WALKERS))}
    d = c.iter_dir(k)
    d.mkdir(parents=True)
    kept = np.arange(frames) % stride == 0
    cio.write_npz(d / "trajectory.npz", positions=positions[kept], frame=np.arange(frames)[kept])
    return samples


def test_equilibrated_drops_the_first_fraction_of_frames_of_every_array():
    s = {"step": np.arange(20), "state": np.arange(40).reshape(20, 2)}
    eq = equilibrated(s, 0.25)
    assert int(eq["first_frame"]) == 5
    np.testing.assert_array_equal(eq["step"], np.arange(5, 20))
    np.testing.assert_array_equal(eq["state"], s["state"][5:])
    whole = equilibrated(s, 0.0)
    np.testing.assert_array_equal(whole["state"], s["state"])
    assert int(whole["first_frame"]) == 0


@pytest.mark.parametrize("fraction", [0.0, 0.3])
@pytest.mark.parametrize("stride", [1, 4])
def test_stored_positions_map_to_their_rows_after_an_equilibration_cut(tmp_path, fraction, stride):
    c = Iterations(tmp_path)
    data = [write_iteration(c, k, frames, stride) for k, frames in enumerate((17, 12))]
    eq = [equilibrated(d, fraction) for d in data]
    pos, rows = flat_positions(c, [0, 1], eq)
    z = np.concatenate([flat(d, "state_coordinates") for d in eq])
    np.testing.assert_array_equal(pos[:, 0, :], z[rows])  # every stored position lands on its own frame's row
    # and every equilibrated frame whose number is a multiple of the stride is there, once
    expected = sum(WALKERS * int(np.sum(np.arange(int(d["first_frame"]), len(s["step"])) % stride == 0))
                   for d, s in zip(eq, data))
    assert len(rows) == len(set(rows.tolist())) == expected
