"""Safe writing: a full disk is one error naming the path, and nothing is deleted through a symbolic link."""

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_dir, atomic_path, check_output_dir, reporting_full_disk

Usage = namedtuple("Usage", "total used free")


def test_enospc_while_writing_names_the_path_and_leaves_nothing(tmp_path):
    with pytest.raises(BertforgeError, match=f"^no space left on /\\S* while writing {tmp_path / 'a.txt'}$"):
        with atomic_path(tmp_path / "a.txt"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(BertforgeError, match=f"while writing {tmp_path / 'shard'}$"):
        with atomic_dir(tmp_path / "shard") as tmp:
            (tmp / "x.npy").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.iterdir())


def test_an_opaque_library_error_on_a_full_filesystem_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="unexpected pos"):  # space left: the error is not ours to explain
        with reporting_full_disk(tmp_path / "trainer.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(100, 100, 0))
    with pytest.raises(BertforgeError, match=f"no space left on /\\S* while writing {tmp_path / 'trainer.pt'}"):
        with reporting_full_disk(tmp_path / "trainer.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_another_error_on_a_full_filesystem_is_reported_with_its_own_errno(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(100, 100, 0))  # as /proc: 0 bytes free
    target = tmp_path / "out" / "p.jsonl"
    with pytest.raises(BertforgeError, match=f"^cannot write {target}: Permission denied \\(EACCES\\)$"):
        with atomic_path(target) as tmp:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    with pytest.raises(BertforgeError, match=f"^cannot write {target}: Read-only file system \\(EROFS\\)$"):
        with reporting_full_disk(target):
            raise OSError(errno.EROFS, "Read-only file system", str(target.parent))
    with pytest.raises(FileNotFoundError, match="input.txt"):  # about another file: passed on as it is
        with atomic_path(target):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "input.txt"))
    monkeypatch.undo()
    with pytest.raises(BertforgeError, match="^cannot write /proc/p.jsonl: No such file or directory \\(ENOENT\\)$"):
        with atomic_path("/proc/p.jsonl") as tmp:
            tmp.write_text("x")


def test_a_symbolic_link_is_replaced_never_followed(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    (tmp_path / "shard").symlink_to(tmp_path / "mine")
    with atomic_dir(tmp_path / "shard") as tmp:
        (tmp / "new.txt").write_text("new")
    assert not (tmp_path / "shard").is_symlink() and (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    (tmp_path / "link.txt").symlink_to(tmp_path / "mine" / "precious.txt")
    with atomic_path(tmp_path / "link.txt") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def test_output_directories(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir")
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("dir", "absent", "to-dir"):
        check_output_dir(tmp_path / name, overwrite=False)
    check_output_dir(tmp_path / "dir", overwrite=True)
    for name, overwrite, message in (
        ("to-dir", True, "is a symbolic link .*; --overwrite does not replace files through a link"),
        ("to-file", False, "is a symbolic link to .*file, which is not a directory"),
        ("dangling", False, "is a symbolic link to .*nowhere, which is not a directory"),
        ("file", False, "exists and is not a directory"),
    ):
        with pytest.raises(BertforgeError, match=f"{tmp_path / name} {message}"):
            check_output_dir(tmp_path / name, overwrite)


def test_a_full_disk_when_taking_the_run_lock(tmp_path, monkeypatch):
    import builtins

    from bertforge.fileio import LOCK_FILE, run_lock

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda *args, **kwargs: Full(real_open(*args, **kwargs)))
    with pytest.raises(BertforgeError, match=f"while writing {tmp_path / LOCK_FILE}"):
        with run_lock(tmp_path):
            pass
    monkeypatch.undo()
    with run_lock(tmp_path):  # and it was released
        pass


def test_the_run_lock_never_writes_through_a_link_nor_into_anything_but_a_file(tmp_path):
    import os

    from bertforge.fileio import LOCK_FILE, run_lock

    (tmp_path / "important.txt").write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_FILE).symlink_to(tmp_path / "important.txt")
    with pytest.raises(BertforgeError, match=f"^{tmp_path / 'out' / LOCK_FILE} is a symbolic link \\(to .*important"):
        with run_lock(tmp_path / "out"):
            pass
    assert (tmp_path / "important.txt").read_text() == "keep"
    (tmp_path / "out" / LOCK_FILE).unlink()
    os.mkfifo(tmp_path / "out" / LOCK_FILE)  # opening it must neither block nor write into it
    with pytest.raises(BertforgeError, match=f"^{tmp_path / 'out' / LOCK_FILE} is not a regular file"):
        with run_lock(tmp_path / "out"):
            pass
    (tmp_path / "out" / LOCK_FILE).unlink()
    (tmp_path / "out" / LOCK_FILE).mkdir()
    with pytest.raises(BertforgeError, match=f"^{tmp_path / 'out' / LOCK_FILE} is not a regular file"):
        with run_lock(tmp_path / "out"):
            pass


def test_the_run_lock_leaves_nothing_behind(tmp_path):
    from bertforge.fileio import LOCK_FILE, run_lock

    with pytest.raises(BertforgeError, match="a check failed"):
        with run_lock(tmp_path / "new" / "out"):
            assert (tmp_path / "new" / "out" / LOCK_FILE).is_file()
            raise BertforgeError("a check failed")
    assert not (tmp_path / "new").exists()  # the run made both folders, and wrote nothing there
    (tmp_path / "empty").mkdir()
    with run_lock(tmp_path / "empty"):
        pass
    assert list((tmp_path / "empty").iterdir()) == []  # the user's folder is kept
    with run_lock(tmp_path / "made"):
        (tmp_path / "made" / "result.txt").write_text("done")
    assert [p.name for p in (tmp_path / "made").iterdir()] == ["result.txt"]


def test_a_lock_file_removed_by_the_run_releasing_it_is_not_the_one_held(tmp_path, monkeypatch):
    """A second run may open the lock file just before the first removes it on release: locking that
    (unlinked) file would let a third run lock a new one alongside. The second run takes the new file."""
    import fcntl
    import os

    from bertforge.fileio import LOCK_FILE, run_lock

    (tmp_path / LOCK_FILE).write_text("")
    real_flock, removed = fcntl.flock, []

    def flock(f, operation):
        if not removed:  # the holder releases between our open and our flock
            removed.append(True)
            (tmp_path / LOCK_FILE).unlink()
        return real_flock(f, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"  # the file at the path is ours
        with pytest.raises(BertforgeError, match=f"in use by another run \\(process {os.getpid()}\\)"):
            with run_lock(tmp_path):
                pass


def test_an_output_file_is_absent_or_a_regular_file(tmp_path):
    import os

    from bertforge.fileio import check_output_file

    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    check_output_file(tmp_path / "absent", overwrite=False)
    check_output_file(tmp_path / "file", overwrite=True)
    for name, overwrite, message in (
        ("file", False, "already exists; pass --overwrite to replace it"),
        ("dir", True, "exists and is a directory, not a regular file"),
        ("fifo", True, "exists and is a named pipe, not a regular file"),
        ("to-file", True, "is a symbolic link \\(to .*file\\); bertforge never replaces a link"),
        ("dangling", False, "is a symbolic link \\(to .*nowhere\\); bertforge never replaces a link"),
    ):
        with pytest.raises(BertforgeError, match=f"^{tmp_path / name} {message}"):
            check_output_file(tmp_path / name, overwrite)
    if os.geteuid() == 0:  # a device node only root could have replaced
        with pytest.raises(BertforgeError, match="^/dev/full exists and is a character device"):
            check_output_file(Path("/dev/full"), overwrite=True)
