"""Files retokviz writes: output paths checked before any work (a run that would fail to save its result fails at
the start instead), and every file written atomically (the old content or the complete new one, never a part)."""
from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# A temporary file of `write_atomically` older than this is stale even if its process id is in use (by another).
STALE_SECONDS = 24 * 3600


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


def figure_format(path: str | os.PathLike, what: str) -> str:
    """The image format a figure file's extension names ("png", "svg", "pdf", ...), for `savefig(file, format=)`.
    `what` names the file in the message (an option).

    Raises:
        ValueError: no extension, or one matplotlib can't write; the message lists those it can.
    """
    from matplotlib.figure import Figure   # imported here: only where a figure file is asked for

    supported = Figure().canvas.get_supported_filetypes()
    suffix = Path(path).suffix.lower().removeprefix(".")
    if suffix not in supported:
        found = f"its extension .{suffix} is not an image format matplotlib writes" if suffix else "it has no extension"
        listed = ", ".join(f".{name}" for name in sorted(supported))
        raise ValueError(f"{what} {path}: {found}; give one of {listed}")
    return suffix


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that `path` holds its old content or the complete new one, never a part of it.

    `write` fills a temporary file `.NAME.<pid>.tmp` in the same directory, which is flushed to disk and then renamed
    over `path` (a rename within one file system is atomic). If anything fails, the temporary file is removed; one
    left by a killed process is removed by the next write of `path` (`remove_stale_temporaries`).

    Raises:
        OSError: the file system refused (full disk, a file-size limit, no permission...): the error names `path`
            and keeps its errno (and so its subclass), also where `write` turned it into another exception (as
            torch.save does, into a RuntimeError); `path` keeps its old content. Anything else `write` raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    file = None
    try:
        with _NotingWriter(io.FileIO(temporary, "wb")) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        cause = error if isinstance(error, OSError) else getattr(file, "noted", None)
        other_file = getattr(cause, "filename", None) not in (None, str(temporary), temporary)
        if cause is None or cause.errno is None or other_file:   # not this file's: `write` read another, say
            raise
        raise OSError(cause.errno, f"{cause.strerror}: could not write the file, which is left as it was",
                      str(path)) from error
    if os.name == "posix":  # make the rename itself durable, not just the file's bytes
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class _NotingWriter(io.BufferedWriter):
    """The buffered binary file `open(..., "wb")` gives, which also keeps the first OSError of a write or flush
    (`noted`), so that a caller that turns it into another exception can't hide it."""

    noted: OSError | None = None

    def write(self, data) -> int:
        try:
            return super().write(data)
        except OSError as error:
            self.noted = self.noted or error
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as error:
            self.noted = self.noted or error
            raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes of `path` left beside it: each `.NAME.<pid>.tmp` whose process
    is no longer running, or that is older than STALE_SECONDS. Best effort: a file that can't be removed stays.

    Returns:
        the files removed.
    """
    path = Path(path)
    prefix, suffix = f".{path.name}.", ".tmp"
    removed = []
    for candidate in path.parent.iterdir() if path.parent.is_dir() else ():
        name = candidate.name
        pid = name[len(prefix):-len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if _is_running(int(pid)) and not _is_older_than(candidate, STALE_SECONDS):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _is_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (assumed so where that can't be asked safely)."""
    if os.name != "posix":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)       # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:   # it runs, as another user
        pass
    return True


def _is_older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False
