"""cvcycle: iterative machine-learned collective variables for enhanced sampling.

The package is importable without signac-flow; heavy optional engines are imported lazily.
"""

__version__ = "0.1.0"
