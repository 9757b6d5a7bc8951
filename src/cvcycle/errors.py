"""Exception types: every user-facing failure is one of these, with a message naming the cause."""


class CvcycleError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class SpecError(CvcycleError):
    """A campaign spec is malformed; the message names the field."""


class EngineUnavailable(CvcycleError):
    """A spec asks for an engine whose package is not installed."""


class SimulationError(CvcycleError):
    """A simulation diverged (NaN/inf); the message names iteration, step and walker."""


class TrainingError(CvcycleError):
    """Training diverged (a non-finite loss or parameter); nothing of it was saved."""


class WorkspaceError(CvcycleError):
    """A job directory is missing files, holds corrupted ones, or is locked by another process."""


class WalltimeReached(Exception):
    """Not an error: a phase stopped at a checkpoint because the job's walltime budget is nearly spent."""
