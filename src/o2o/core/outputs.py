"""Where a command will write, checked before it does any work: a refusal then costs nothing and
changes nothing (no folder is made to find out).

Only local paths are checked; a URL (``memory://``, ``s3://``, ...) is left to its filesystem.
A local path is checked by what the file system says: every name no longer than it allows, the
nearest existing folder a folder, writable, and a folder can be made in it (a folder made and
removed at once: ``/proc`` or ``/sys`` say yes to the permission check and no to that).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from o2o.core.errors import UserError


def _is_url(target: str | Path) -> bool:
    return "://" in str(target)


def _nearest_existing(path: Path) -> Path:
    for folder in (path, *path.parents):
        if folder.exists():
            return folder
    return Path(path.anchor or ".")


def _refuse_unwritable_folder(path: Path, option: str, folder: Path | None = None) -> None:
    """The nearest existing folder of ``folder`` (default ``path``) must be a folder this
    process can write in, and every name below it short enough."""
    try:
        _check_names(path, option)
        base = _nearest_existing(path if folder is None else folder)
        if not base.is_dir():
            raise UserError(f"{option} {path}: {base} is a file, not a folder; choose another {option}")
        if not os.access(base, os.W_OK | os.X_OK):
            reason = "a read-only file system" if _read_only_fs(base) else "not writable by this user"
            raise UserError(f"{option} {path}: cannot write in {base} ({reason}); choose another {option}")
        probe = tempfile.mkdtemp(prefix=".o2o-write-check-", dir=base)
        os.rmdir(probe)
    except OSError as exc:
        raise UserError(f"{option} {_short(path)}: cannot be created ({exc.strerror or exc}); "
                        f"choose another {option}") from None


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else text[:60] + "..." + text[-40:]


def _check_names(path: Path, option: str) -> None:
    """Each name at most NAME_MAX characters, the whole path at most PATH_MAX (as bytes)."""
    try:
        name_max = os.pathconf("/", "PC_NAME_MAX")
        path_max = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    longest = max((len(os.fsencode(p)) for p in path.parts), default=0)
    if longest > name_max:
        raise UserError(f"{option} {_short(path)}: a name of {longest} bytes, more than the "
                        f"{name_max} this file system allows; choose another {option}")
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        raise UserError(f"{option} {_short(path)}: the path is longer than the {path_max} bytes "
                        f"this system allows; choose another {option}")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_output_file(target: str | Path, option: str) -> None:
    """Refuse a file to be written at ``target`` that cannot be: a folder there, a file in
    the way of its folder, or a place that is not writable."""
    if _is_url(target):
        return
    path = Path(target).expanduser()
    _refuse_unwritable_folder(path, option, path.parent)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} exists and is not writable; choose another {option}")


def check_output_folder(target: str | Path | None, option: str) -> None:
    """Refuse a folder to be written at ``target`` that cannot be: a file there, or a place
    that is not writable. None (no folder asked for) passes."""
    if target is None or _is_url(target):
        return
    path = Path(target).expanduser()
    _refuse_unwritable_folder(path, option)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder; choose another {option}")


def write_error(exc: OSError, target: str | Path, option: str) -> UserError:
    """The one-line refusal for an ``OSError`` met while writing ``target``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "the disk is full"
    return UserError(f"cannot write {option} {target}: {reason}; nothing was written")
