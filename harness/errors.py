"""The harness's own errors: those a user can cause (the CLI turns them into one line and exit
code 2), a run interrupted, a store that stays unreachable."""

from search_spaces.base import SpaceError
from tasks.base import TaskError


class HarnessError(Exception):
    """Every error the harness raises on purpose."""


class UserError(HarnessError):
    """Bad input from the user (a name, a number, a file, a URI): exit code 2, one line."""


class Interrupted(HarnessError):
    """A run stopped by Ctrl-C, or by its time limit (`stopped_after`, in minutes): the trials
    running are marked KILLED, and running it again goes on."""

    def __init__(self, stopped_after: float | None = None):
        self.stopped_after = stopped_after
        why = f"after {stopped_after:g} min" if stopped_after is not None else "by Ctrl-C"
        super().__init__(f"stopped {why}: the trials running are marked KILLED")


class StoreUnavailable(HarnessError):
    """The store stayed unreachable or locked through every retry; a rerun resumes."""


USER_ERRORS = (UserError, TaskError, SpaceError)
"""What the CLI reports as one line and exit code 2: the harness's, the tasks' and the search
spaces' (an unknown family, a parameter budget a family cannot meet)."""


def unknown(kind: str, value: object, accepted: list[str] | tuple[str, ...]) -> UserError:
    """The one-line error for a name that is not in a registry."""
    return UserError(f"unknown {kind} '{value}': accepted {', '.join(sorted(accepted))}")


def first_line(error: Exception) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
