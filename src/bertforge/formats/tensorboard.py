"""TensorBoard event files, written without TensorFlow or TensorBoard installed.

An event file is a TFRecord file of serialized ``Event`` protos; the few fields used here are::

    Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
                 Summary summary = 5; SessionLog session_log = 7 }
    Summary    { repeated Value value = 1 }
    Value      { string tag = 1; float simple_value = 2 }
    SessionLog { Status status = 1 }   # START = 1

The first event of a file carries only ``file_version = "brain.Event:2"``. On ``SessionLog.START`` at
step s, TensorBoard drops the events of earlier files from step s on (a restarted run's overlap).
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from bertforge.errors import BertforgeError
from bertforge.formats.protowire import encode_varint, length_delimited
from bertforge.formats.tfrecord import frame_record

_FILE_VERSION = "brain.Event:2"
_FLOAT32_MAX = 3.4028234663852886e38
_SESSION_START = 1


class EventFileWriter:
    """A new event file in `directory` (created if need be), its version event written; `path` names it."""

    def __init__(self, directory: Path) -> None:
        self.path, self._file = _new_event_file(directory)
        self._write(_encode_event(time.time(), 0, file_version=_FILE_VERSION))

    def add_scalars(self, wall_time: float, step: int, scalars: Mapping[str, float]) -> None:
        """One event holding `scalars` (tag -> value, stored as float32) at `step`."""
        self._write(_encode_event(wall_time, step, scalars=scalars))

    def add_session_start(self, wall_time: float, step: int) -> None:
        """``SessionLog.START`` at `step`: TensorBoard hides earlier files' events from `step` on."""
        self._write(_encode_event(wall_time, step, session_start=True))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _write(self, event: bytes) -> None:
        self._file.write(frame_record(event))


def _new_event_file(directory: Path) -> tuple[Path, IO[bytes]]:
    """Create ``events.out.tfevents.<time>.<host>.<pid>`` (TF's naming, which TensorBoard sorts by), with
    a counter suffix if this process already made one this second (a resume in a test)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
    for n in range(1000):
        path = directory / (base if n == 0 else f"{base}.{n}")
        try:
            return path, open(path, "xb")
        except FileExistsError:
            continue
    raise BertforgeError(f"{directory}: cannot create a new event file ({base}.* all exist)")


def _encode_event(
    wall_time: float,
    step: int,
    *,
    file_version: str | None = None,
    scalars: Mapping[str, float] | None = None,
    session_start: bool = False,
) -> bytes:
    """A serialized ``Event``; field keys are ``number << 3 | wire type`` (1: 8 bytes, 0: varint, 5: 4 bytes)."""
    out = bytearray(encode_varint(1 << 3 | 1) + struct.pack("<d", wall_time))
    out += encode_varint(2 << 3 | 0) + encode_varint(step)
    if file_version is not None:
        out += length_delimited(3, file_version.encode())
    if scalars:
        values = b"".join(
            length_delimited(1, length_delimited(1, tag.encode()) + encode_varint(2 << 3 | 5) + _float32(v))
            for tag, v in scalars.items()
        )
        out += length_delimited(5, values)
    if session_start:
        out += length_delimited(7, encode_varint(1 << 3 | 0) + encode_varint(_SESSION_START))
    return bytes(out)


def _float32(value: float) -> bytes:
    if math.isfinite(value) and abs(value) > _FLOAT32_MAX:  # struct refuses to round these to inf
        value = math.copysign(math.inf, value)
    return struct.pack("<f", value)
