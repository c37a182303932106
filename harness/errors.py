"""Errors a user can cause: the CLI turns them into one line and exit code 2."""

from search_spaces.base import SpaceError
from tasks.base import TaskError


class UserError(Exception):
    """Bad input from the user (a name, a number, a file, a URI): exit code 2, one line."""


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
