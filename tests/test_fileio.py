"""Safe writing: a full disk is one error naming the path, and nothing is deleted through a symbolic link."""

import errno
import shutil
from collections import namedtuple

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
