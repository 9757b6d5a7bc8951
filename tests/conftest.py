"""Shared test settings.

The tensors in these tests are tiny (hundreds of rows); intra-op threading only adds overhead
there (training a small autoencoder is ~15x slower with 2 threads than with 1 on a 2-core box),
so the whole suite runs torch single-threaded. LangevinEngine(threads=...) sets the same global.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
