"""Transition path sampling by two-way shooting through openpathsampling (optional: pip install
'cvcycle[paths]'). openpathsampling is imported only when a TPS run starts."""

from .initial import initial_path
from .records import ShootingRecords, accepted_paths
from .tps import run_tps

__all__ = ["ShootingRecords", "accepted_paths", "initial_path", "run_tps"]
