"""Checkpoint series: the newest two are kept, also after a run killed between writing a
checkpoint and removing the oldest (found by the kill test: the extra file outlived the run)."""

from __future__ import annotations

import numpy as np

from cvcycle import io as cio
from cvcycle.checkpoints import CheckpointSeries


def test_reading_removes_checkpoints_a_killed_run_left_beyond_the_newest_two(tmp_path):
    series = CheckpointSeries(tmp_path, "checkpoint")
    for i in (6, 7, 8):  # as a run killed right after writing 8, before it removed 6, leaves them
        cio.write_npz(series.path(i), x=np.array([i]))
    index, arrays = series.latest(lambda line: None)
    assert index == 8 and int(arrays["x"][0]) == 8
    assert series.indices() == [8, 7]


def test_writing_keeps_the_newest_two(tmp_path):
    series = CheckpointSeries(tmp_path, "checkpoint")
    for i in range(1, 5):
        series.write(i, x=np.array([i]))
    assert series.indices() == [4, 3]
