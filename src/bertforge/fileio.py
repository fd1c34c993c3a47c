"""bertforge's cache folder, and safe file writing: a reader (or a killed run) never sees a half-written file,
a full disk is one clear error, and --overwrite never deletes through a symbolic link."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bertforge.errors import BertforgeError, Interrupted


def cache_dir() -> Path:
    """Where bertforge caches what it can recompute or download: ``$BERTFORGE_CACHE``, default
    ``~/.cache/bertforge``."""
    return Path(os.environ.get("BERTFORGE_CACHE", Path.home() / ".cache" / "bertforge"))


class _DiskFull(BertforgeError):
    pass


@contextlib.contextmanager
def reporting_full_disk(path: str | Path) -> Iterator[None]:
    """Turn running out of space while writing `path` into one error naming it and its filesystem. Not every
    library says so with ENOSPC (numpy reports a short write, torch an opaque RuntimeError), so an error
    without an errno while the filesystem has no space left counts too. Any other error of the system about
    `path` is one error naming it and its errno (a read-only filesystem, no permission, /proc)."""
    try:
        yield
    except _DiskFull as exc:  # from a file inside ours (a temporary directory): name what was asked for
        raise _DiskFull(_no_space(Path(path))) from exc.__cause__
    except (BertforgeError, Interrupted):
        raise
    except Exception as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and _free_bytes(Path(path)) < 2**20):
            raise _DiskFull(_no_space(Path(path))) from exc
        if isinstance(exc, OSError) and code is not None and _about(exc, Path(path)):
            raise BertforgeError(f"cannot write {path}: {exc.strerror} ({errno.errorcode.get(code, code)})") from exc
        raise


def _about(exc: OSError, path: Path) -> bool:
    """Whether `exc` names `path`, or the temporary file or folder beside it that stands in for it."""
    if exc.filename is None:
        return False
    named, path = Path(os.fsdecode(exc.filename)).absolute(), path.absolute()
    if named in path.parents:  # a folder made for it
        return True
    return any(
        p == path or (p.parent == path.parent and p.name.startswith(f".{path.name}.")) for p in (named, *named.parents)
    )


def _no_space(path: Path) -> str:
    return f"no space left on {_mount_point(path)} while writing {path}"


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def _mount_point(path: Path) -> Path:
    path = _existing(path)
    while not os.path.ismount(path):
        path = path.parent
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; on success it is renamed over `path`
    (a symbolic link there is replaced, not followed), on error removed. The caller creates the file, so it
    gets the usual permissions (umask)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with reporting_full_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path` to fill; on success it replaces `path` (an existing
    directory of that name is removed first), on error it is removed. A reader sees the old directory,
    nothing, or the complete new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with reporting_full_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            yield tmp
            remove(path)
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove(path: Path) -> None:
    """Remove a file, a directory tree, or a symbolic link (never what it points to); nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def check_output_dir(path: Path, overwrite: bool) -> None:
    """`path` can be an output directory: absent, or a directory. Replacing what one holds (`overwrite`) is
    refused through a symbolic link, whose target may be anything."""
    if path.is_symlink():
        if not path.is_dir():
            raise BertforgeError(f"{path} is a symbolic link to {os.readlink(path)}, which is not a directory")
        if overwrite:
            raise BertforgeError(
                f"{path} is a symbolic link (to {os.readlink(path)}); --overwrite does not replace files through "
                "a link: give the directory itself, or another output"
            )
    elif path.exists() and not path.is_dir():
        raise BertforgeError(f"{path} exists and is not a directory")


def check_output_file(path: Path, overwrite: bool) -> None:
    """`path` can be an output file: absent, or a regular file replaced only with `overwrite`. A symbolic
    link (even a dangling one), a directory or a device is never replaced."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise BertforgeError(
            f"{path} is a symbolic link (to {os.readlink(path)}); bertforge never replaces a link: give the file "
            "itself, or another output"
        )
    if not stat.S_ISREG(mode):
        raise BertforgeError(f"{path} exists and is {_kind(mode)}, not a regular file; choose another output")
    if not overwrite:
        raise BertforgeError(f"{path} already exists; pass --overwrite to replace it")


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def open_no_link(path: Path, flags: int) -> int:
    """`os.open(path, flags)` that never goes through a symbolic link (its target may be anyone's file, which
    writing, appending or truncating would spoil) and opens only a regular file (a FIFO would block, a device
    take the writes): either is one error."""
    not_a_file = BertforgeError(f"{path} is not a regular file; remove it, or choose another --output")
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except IsADirectoryError:
        raise not_a_file from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise BertforgeError(
            f"{path} is a symbolic link (to {os.readlink(path)}); bertforge never writes through a link: "
            "remove it, or choose another --output"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise not_a_file
    return fd


LOCK_FILE = ".bertforge.lock"


@contextlib.contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on an output directory for a whole run, so that a second run writing there
    fails at once (naming the holder's process id) instead of mixing its results in. The lock is the
    operating system's (`flock`): it dies with its process, so a killed run never leaves a stale lock. The
    lock file is removed on release, and so is the directory when the run made it and left it empty: a run
    that fails its checks leaves nothing behind."""
    directory = Path(directory)
    made = _missing_parents(directory)
    f = _locked(directory / LOCK_FILE)
    try:
        with reporting_full_disk(directory / LOCK_FILE):
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        yield
    finally:
        (directory / LOCK_FILE).unlink(missing_ok=True)  # still locked: no other run holds this file
        f.close()
        for folder in made:
            with contextlib.suppress(OSError):  # not empty (the run wrote there), or not ours to remove
                folder.rmdir()


def _missing_parents(directory: Path) -> list[Path]:
    """`directory` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and not directory.is_symlink() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _locked(path: Path) -> TextIO:
    """`path` opened (`open_no_link`) and flocked. Another run removes the file it held on release, so a file
    locked only after that is dropped and the new one taken."""
    import fcntl

    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = open_no_link(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        except FileNotFoundError:  # the directory was removed by a run releasing it: make it again
            continue
        f = open(fd, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise BertforgeError(
                f"{path.parent} is in use by another run (process {holder}); wait for it to end or choose "
                "another --output"
            ) from None
        try:
            if os.path.samestat(os.fstat(f.fileno()), os.lstat(path)):
                return f
        except FileNotFoundError:
            pass
        f.close()


def holds_files(directory: str | Path) -> bool:
    """Whether `directory` exists and holds anything besides a run lock."""
    directory = Path(directory)
    return directory.is_dir() and any(p.name != LOCK_FILE for p in directory.iterdir())
