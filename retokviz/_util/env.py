"""Yes/no switches read from the environment, in a user's words."""
from __future__ import annotations

import os

YES = ("1", "true", "yes", "on", "y")
NO = ("", "0", "false", "no", "off", "n")


def env_flag(name: str) -> bool:
    """Whether the environment variable `name` says yes: unset or one of NO is False, one of YES is True (any
    case, spaces ignored).

    Raises:
        ValueError: any other value, naming the variable, its value and the accepted words.
    """
    value = os.environ.get(name, "").strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is neither yes nor no; use one of "
                     f"{', '.join(w for w in YES)} for yes, or {', '.join(w for w in NO if w)} (or unset) for no")
