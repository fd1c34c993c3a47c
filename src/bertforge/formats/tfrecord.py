"""TFRecord files without TensorFlow: a run of records, each framed as::

    uint64 length (little-endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

optionally GZIP- or ZLIB-compressed as a whole (TF's ``compression_type``; recognised here by magic
bytes, not by file name). Speed matters (a pretraining shard holds ~100k records of ~1.3 KB): records are
read and CRC-checked a few MiB at a time, their CRCs computed for thousands of records at once with numpy
(``crc32c_spans``). Checked against files written by TensorFlow itself (``scripts/make_tfrecord_fixtures.py``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path
from bertforge.formats.crc32c import crc32c, crc32c_spans, mask
from bertforge.formats.example_proto import encode_example

PathLike = str | os.PathLike[str]

_HEADER = 12  # uint64 length + its masked CRC
_FOOTER = 4  # masked CRC of the data
_BATCH_BYTES = 4 << 20  # records are CRC-checked and decoded this many bytes at a time
_MAX_READ = 256 << 20  # so a corrupt length with a matching CRC cannot ask for exabytes at once


# ------------------------------------------------------------------------------------------- reading


@dataclass
class RecordBatch:
    """Consecutive CRC-checked records: record i of the batch is ``data[starts[i]:starts[i] + lengths[i]]``."""

    data: bytes
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64
    first_index: int  # index in the file of the batch's first record
    stream_offset: int  # byte offset of data[0] in the (decompressed) file
    note: str  # says which bytes offsets count in a compressed file

    def where(self, i: int, at: int | None = None) -> str:
        """'record N (byte M)' for record i of the batch, at byte `at` of data (default its start)."""
        offset = self.stream_offset + (int(self.starts[i]) - _HEADER if at is None else at)
        return f"record {self.first_index + i} (byte {offset}{self.note})"


def _open_reader(path: Path, f) -> tuple[Callable[[int], bytes], str]:
    """A read(n) function over the file's records, decompressing if the file is GZIP or ZLIB, and a note
    for error messages. A valid length CRC at byte 0 wins over magic bytes (a plain file could start 1f 8b)."""
    head = f.read(_HEADER)
    f.seek(0)
    if len(head) == _HEADER and mask(crc32c(head[:8])) == int.from_bytes(head[8:], "little"):
        return f.read, ""
    if head[:2] == b"\x1f\x8b":
        return _in_pieces(gzip.GzipFile(fileobj=f, mode="rb").read), " of the gzip-decompressed data"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        decompressor = zlib.decompressobj()

        def read_zlib(n: int) -> bytes:
            out = bytearray()
            while len(out) < n and not decompressor.eof:
                chunk = decompressor.unconsumed_tail or f.read(1 << 20)
                if not chunk:
                    raise EOFError("the zlib stream ends before its end marker")
                out += decompressor.decompress(chunk, n - len(out))
            return bytes(out)

        return _in_pieces(read_zlib), " of the zlib-decompressed data"
    return f.read, ""


def _in_pieces(read: Callable[[int], bytes], piece: int = 1 << 16) -> Callable[[int], bytes]:
    """Wrap a decompressing read(n) so that a decompression error first returns the data before it, and
    is raised on the next call: the records before the damage are read, and the error names the first
    record lost."""
    failure: Exception | None = None

    def read_n(n: int) -> bytes:
        nonlocal failure
        if failure is not None:
            raise failure
        parts, got = [], 0
        while got < n:
            try:
                part = read(min(piece, n - got))
            except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                if not parts:
                    raise
                failure = exc
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    return read_n


def read_batches(path: PathLike) -> Iterator[RecordBatch]:
    """CRC-checked records of a TFRecord file, a few MiB at a time: for decoders that handle thousands of
    records at once (`iter_tfrecord` yields them one by one)."""
    path, batch_bytes = Path(path), _BATCH_BYTES
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise BertforgeError(f"{path}: cannot open TFRecord file: {exc.strerror}") from exc
    with f:
        read, note = _open_reader(path, f)
        pending, offset, index = b"", 0, 0  # unconsumed bytes, their stream offset, next record's index
        need = batch_bytes
        while True:
            try:
                chunk = read(min(max(need, batch_bytes), _MAX_READ))
            except (OSError, EOFError, zlib.error) as exc:
                raise BertforgeError(
                    f"{path}: record {index} (byte {offset}{note}): cannot decompress the file from here on "
                    f"({exc}); it is corrupt or truncated"
                ) from exc
            if not chunk:
                break
            data = pending + chunk
            starts, lengths, pos = [], [], 0
            while len(data) - pos >= _HEADER:
                (length,) = struct.unpack_from("<Q", data, pos)
                if mask(crc32c(data[pos : pos + 8])) != int.from_bytes(data[pos + 8 : pos + 12], "little"):
                    hint = " (this is not a TFRecord file)" if index == 0 and offset + pos == 0 else ""
                    raise BertforgeError(
                        f"{path}: record {index + len(starts)} (byte {offset + pos}{note}): the CRC of the record "
                        f"length does not match{hint}; the file is corrupt"
                    )
                end = pos + _HEADER + length + _FOOTER
                if end > len(data):
                    need = end - len(data)
                    break
                starts.append(pos + _HEADER)
                lengths.append(length)
                pos = end
            else:
                need = batch_bytes
            if starts:
                batch = RecordBatch(data, np.array(starts, np.int64), np.array(lengths, np.int64), index, offset, note)
                _check_data_crcs(path, batch)
                yield batch
                index += len(starts)
            pending, offset = data[pos:], offset + pos
        if pending:
            if len(pending) < _HEADER:
                what = f"its 12-byte header ({len(pending)} bytes left)"
            else:
                length = int.from_bytes(pending[:8], "little")
                what = f"its data (the record needs {_HEADER + length + _FOOTER} bytes, {len(pending)} are left)"
            raise BertforgeError(
                f"{path}: record {index} (byte {offset}{note}): the file ends inside {what}; truncated file"
            )


def _check_data_crcs(path: Path, batch: RecordBatch) -> None:
    buf = np.frombuffer(batch.data, dtype=np.uint8)
    ends = batch.starts + batch.lengths
    stored = buf[ends[:, None] + np.arange(4)].view("<u4").ravel()
    bad = np.flatnonzero(mask(crc32c_spans(buf, batch.starts, batch.lengths).astype(np.uint64)) != stored)
    if bad.size:
        i = int(bad[0])
        raise BertforgeError(
            f"{path}: {batch.where(i)}: the CRC of the record's {batch.lengths[i]} data bytes does not "
            f"match; the file is corrupt"
        )


def iter_tfrecord(path: PathLike) -> Iterator[bytes]:
    """Yield the data of every record of a TFRecord file (plain, GZIP or ZLIB), checking both CRCs.

    An empty file has no records (as in TensorFlow). Raises BertforgeError naming the file, the record
    index and the byte offset for a corrupt or truncated file.
    """
    for batch in read_batches(path):
        for start, length in zip(batch.starts.tolist(), batch.lengths.tolist()):
            yield batch.data[start : start + length]


# ------------------------------------------------------------------------------------------- writing


def frame_record(data: bytes, masked_crc: int | None = None) -> bytes:
    """One framed record: length, masked CRC of the length, data, masked CRC of the data (`masked_crc`
    when the caller computed it, for many records at once, with `crc32c_spans`)."""
    head = struct.pack("<Q", len(data))
    if masked_crc is None:
        masked_crc = mask(crc32c(data))
    return head + struct.pack("<I", mask(crc32c(head))) + data + struct.pack("<I", masked_crc)


def write_tfrecord(
    path: PathLike, examples: Iterable[Mapping[str, object] | bytes], *, compression: str | None = None
) -> None:
    """Write a TFRecord file that TensorFlow reads: each item is a feature mapping (see `encode_example`)
    or already-serialized record bytes. `compression` is None, "gzip" or "zlib" (TF's compression_type)."""
    records = [item if isinstance(item, bytes) else encode_example(item) for item in examples]
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    joined = np.frombuffer(b"".join(records), dtype=np.uint8)
    crcs = mask(crc32c_spans(joined, np.cumsum(lengths) - lengths, lengths).astype(np.int64)).tolist()
    framed = b"".join(frame_record(record, crc) for record, crc in zip(records, crcs))
    if compression == "gzip":
        framed = gzip.compress(framed, mtime=0)
    elif compression == "zlib":
        framed = zlib.compress(framed)
    elif compression is not None:
        raise BertforgeError(f"unknown TFRecord compression {compression!r}; expected None, 'gzip' or 'zlib'")
    with atomic_path(path) as tmp:
        tmp.write_bytes(framed)
