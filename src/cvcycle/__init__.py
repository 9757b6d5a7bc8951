"""cvcycle: iterative machine-learned collective variables for enhanced sampling.

The package is importable without signac-flow; heavy optional engines are imported lazily.
"""

__version__ = "0.1.0"

from .results import Results, load  # noqa: E402  (cvcycle.load(job): a campaign's results)

__all__ = ["Results", "load", "__version__"]
