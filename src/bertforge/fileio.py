"""bertforge's cache folder, and atomic file writing: a reader (or a killed run) never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from bertforge.errors import BertforgeError


def cache_dir() -> Path:
    """Where bertforge caches what it can recompute or download: ``$BERTFORGE_CACHE``, default
    ``~/.cache/bertforge``."""
    return Path(os.environ.get("BERTFORGE_CACHE", Path.home() / ".cache" / "bertforge"))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; on success it is renamed over `path`,
    on error removed. The caller creates the file, so it gets the usual permissions (umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


LOCK_FILE = ".bertforge.lock"


@contextlib.contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on an output directory for a whole run, so that a second run writing there
    fails at once (naming the holder's process id) instead of mixing its results in. The lock is the
    operating system's (`flock`): it dies with its process, so a killed run never leaves a stale lock."""
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    f = open(directory / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise BertforgeError(
            f"{directory} is in use by another run (process {holder}); wait for it to end or choose another --output"
        ) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.truncate(0)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def holds_files(directory: str | Path) -> bool:
    """Whether `directory` exists and holds anything besides a run lock."""
    directory = Path(directory)
    return directory.is_dir() and any(p.name != LOCK_FILE for p in directory.iterdir())
