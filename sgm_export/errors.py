"""Errors that the user can fix.

Every problem with the user's input is raised as an `SgmError` that carries what is wrong and how
to fix it; the command line prints it as one line and exits with code 2. Anything else is a bug
and keeps its traceback (shown with `--debug`).
"""


class SgmError(Exception):
    """A problem with the input, reported as one line: what is wrong, then how to fix it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line reports of
    errors raised by other libraries."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ModelNotFoundError(SgmError):
    """The model id or directory does not exist or cannot be reached."""


class UnsupportedArchitectureError(SgmError):
    """No row of the family table describes this model."""


class UnsafeCheckpointError(SgmError):
    """The checkpoint holds only pickle files, which can run code when loaded."""


class CheckpointError(SgmError):
    """A checkpoint file is missing, truncated or corrupt."""


class DataError(SgmError):
    """A labelled-example source is missing, malformed or unusable."""


class ShapeMismatchError(SgmError):
    """A scores or glasses file does not fit the model it is used with."""


class OutputExistsError(SgmError):
    """The output path exists and `--force` was not given."""


class RecipeError(SgmError):
    """A recipe file or override is invalid."""
