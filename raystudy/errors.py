"""Everything a user can cause and fix raises a ``UserError``: each CLI catches this one
type and prints it as one line. Any other exception is a bug and keeps its traceback."""


class UserError(Exception):
    """Bad input, a missing file, a study folder that does not fit: one line that says why."""


class ConfigError(UserError, ValueError):
    """A config problem, phrased as one line naming the key."""


class DataError(UserError, ValueError):
    """A dataset that cannot be read, phrased as one line that says what is expected."""


class StudyError(UserError):
    """The study folder and the config do not fit together."""


class CheckpointError(UserError):
    """A saved model that cannot be used: one line naming it and what to do."""


class WeightsMissing(UserError, FileNotFoundError):
    """A backbone checkpoint is not on this machine and could not be fetched."""


class WeightsCorrupt(UserError):
    """A backbone checkpoint exists but is not a readable state dict of the right network."""


class ClusterError(UserError):
    """The Ray cluster cannot do the work as configured (too small, cannot see the study folder)."""


class TrainingFailed(UserError):
    """A training run did not finish (its logs say why)."""
