"""The featurizer contract: differentiable maps from particle positions to named features."""

from __future__ import annotations

import torch


def frames_per_chunk(n_particles: int, cap: int = 20000) -> int:
    """How many frames to differentiate a featurizer on at once: particle features hold pair
    intermediates (N^2 per frame) in their autograd graph, so chunks of about 2^16 / N^2 frames
    keep that memory bounded whatever the number of frames (a single particle: `cap`)."""
    return max(1, min(cap, 2**16 // (n_particles * n_particles)))


class Featurizer(torch.nn.Module):
    """Base class of featurizers: positions (..., N, d) -> features (..., len(names)).

    Contract every subclass keeps:

    * ``names: list[str]`` are the output names, in output order.
    * ``forward(positions, box=None)`` maps positions shaped (..., N, d) (leading walker/frame
      axes, N particles, d = 2 or 3 dimensions) to features shaped (..., len(names)), in the
      input dtype and on the input device, differentiable by autograd in ``positions``.
    * ``box`` is None (no periodicity) or the orthorhombic box edge lengths, shaped (d,) or
      (..., d) broadcastable to the leading axes; featurizers that use distances apply the
      minimum-image convention with it.
    * Periodic outputs (angles) are emitted as (sin, cos) pairs so every output is smooth;
      none of the current featurizers are angles.
    """

    names: list[str]

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(positions, box)")
