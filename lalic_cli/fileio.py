"""Writing outputs safely: never a half-written file, never an unintended overwrite."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import InputError, LalicError


class OutputExistsError(LalicError, FileExistsError):
    """The output exists and ``force`` was not given."""


def names_folder(output: str, many: bool) -> bool:
    """Whether ``-o output`` is a folder: several inputs share it, it ends in a slash, or it is one."""
    return many or output.endswith(("/", os.sep)) or Path(output).is_dir()


def ready_output_place(output: str, many: bool) -> None:
    """Create the folder ``-o`` names, or refuse a file in a missing folder, before any coding
    work, so that a mistyped path costs nothing and never ends in a traceback."""
    if names_folder(output, many):
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise InputError(f"{output}: exists and is not a folder") from None
        except OSError as e:
            raise InputError(f"{output}: cannot create this folder ({e.strerror})") from None
        return
    if not Path(output).parent.is_dir():
        raise _missing_folder(output)


def _missing_folder(path: str | Path) -> InputError:
    return InputError(f"{path}: folder {Path(path).parent} does not exist (end -o with / to create it)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None] | bytes, *, force: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    ``write`` is either the bytes or a function that writes a file at the path it
    is given. On any failure (Ctrl-C included) the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists (use --force to overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=path.suffix + ".tmp")
    except FileNotFoundError:
        raise _missing_folder(path) from None
    tmp = Path(tmp_name)
    try:
        if isinstance(write, (bytes, bytearray)):
            with os.fdopen(fd, "wb") as f:
                f.write(write)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would leak into the output
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path
