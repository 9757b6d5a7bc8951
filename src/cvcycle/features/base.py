"""The featurizer contract: differentiable maps from particle positions to named features."""

from __future__ import annotations

import torch


def frames_per_chunk(featurizer: torch.nn.Module, n_particles: int, cap: int = 20000) -> int:
    """How many frames to differentiate a featurizer on at once: particle features hold pair
    intermediates in their autograd graph, N^2 per frame or, with a neighbour list, N times the
    featurizer's `pairs_per_particle`, so chunks of about 2^16 pairs keep that memory bounded
    whatever the number of frames (a single particle: `cap`)."""
    pairs = getattr(featurizer, "pairs_per_particle", None) or n_particles
    return max(1, min(cap, 2**16 // (n_particles * min(pairs, n_particles))))


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
    pairs_per_particle: int | None = None  # of a neighbour list (None: all pairs): frames_per_chunk

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(positions, box)")

    def blocks(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The features as blocks of columns, (..., k_b) each, whose concatenation along the last
        axis is ``forward(positions, box)``. A Jacobian taken one column at a time
        (learn.committor.feature_metric) back-propagates each column through its own block's
        graph only, so a featurizer whose blocks are separate branches of its graph overrides
        this; the default is one block."""
        return [self(positions, box)]
