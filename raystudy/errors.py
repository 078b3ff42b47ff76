"""Everything a user can cause and fix raises a ``UserError``: each CLI catches this one
type and prints it as one line. Any other exception is a bug and keeps its traceback."""


class UserError(Exception):
    """Bad input, a missing file, a study folder that does not fit: one line that says why."""


class ConfigError(UserError, ValueError):
    """A config problem, phrased as one line naming the key."""


class DataError(UserError, ValueError):
    """A dataset that cannot be read, phrased as one line that says what is expected."""


class ArchiveError(DataError):
    """A dataset archive that is absent, not the expected one, unreadable, or unsafe to extract."""


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


class AnalysisError(UserError, ValueError):
    """Tables that cannot be analysed as asked (not a study folder, an unknown table or metric)."""



def one_line(err: BaseException | str, limit: int = 200, last: bool = False) -> str:
    """An exception (or message) as one line of at most ``limit`` characters, for messages that
    quote a library's error: its first line (``last``: its last, where a remote traceback ends
    in the exception), whitespace folded; the exception's type where it has no text."""
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    text = " ".join((lines[-1] if last else lines[0]).split()) if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
