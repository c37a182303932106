"""Errors a user can cause: the CLI turns them into one line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (a name, a number, a file, a URI): exit code 2, one line."""


def unknown(kind: str, value: object, accepted: list[str] | tuple[str, ...]) -> UserError:
    """The one-line error for a name that is not in a registry."""
    return UserError(f"unknown {kind} '{value}': accepted {', '.join(sorted(accepted))}")
