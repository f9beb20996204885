"""Output paths checked before any work: a run that would fail to save its result fails at the start instead."""
from __future__ import annotations

import os
from pathlib import Path


def check_writable_folder(folder: str | os.PathLike, what: str) -> None:
    """Raise unless `folder` is a folder this process can write in, or one it can create. `what` names the folder
    in the message (an option or a field).

    Raises:
        NotADirectoryError: `folder`, or a folder above it, is a file.
        PermissionError: this process may not write there.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{what} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder}: this process may not write in {existing}")


def check_output_files(parser, **paths: Path | None) -> None:
    """For a command line: exit with a usage error (status 2) unless every given file's folder can be written.

    Args:
        parser: the argparse parser whose `error` reports the problem.
        paths: option name (without dashes, "_" for "-") -> the file it names, or None where not given.
    """
    for option, path in paths.items():
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        if Path(path).is_dir():
            parser.error(f"{flag} {path} is a folder; give a file name")
        try:
            check_writable_folder(Path(path).parent, flag)
        except OSError as error:
            parser.error(str(error))
