"""Training metrics on disk: one JSON line per logged step (``RUN_DIR/metrics.jsonl``, for scripts and
``bertforge plot``) and TensorBoard scalar events (``RUN_DIR/tensorboard/``, see `formats.tensorboard`).

A resumed run writes ``SessionLog.START`` at the step after its checkpoint: TensorBoard then drops the old
files' events from that step on, as ``truncate_after`` does for the JSONL, so both views agree after a resume.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path, open_no_link, reporting_full_disk
from bertforge.formats.tensorboard import EventFileWriter

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "time")


class MetricsLogger:
    """Append scalar metrics of a training run to ``metrics.jsonl`` and a TensorBoard event file.

    `enabled=False` (non-zero distributed ranks) makes every method a no-op that touches no file.
    `resume_step` is the step of the checkpoint a run resumes from: entries logged after it by the
    interrupted run are dropped from the JSONL and hidden in TensorBoard, so the curves stay one line.
    The JSONL is flushed on every `log` (a killed run keeps all it logged); events every `flush_secs`
    and on `close`.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        enabled: bool = True,
        *,
        resume_step: int | None = None,
        flush_secs: float = 30.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.flush_secs = flush_secs
        self.jsonl_path = self.run_dir / METRICS_FILE
        self.event_path: Path | None = None
        self._jsonl: IO[str] | None = None
        self._events: EventFileWriter | None = None
        self._last_flush = time.monotonic()
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            truncate_after(self.run_dir, resume_step)
        else:
            _repair_tail(self.jsonl_path)
        self._jsonl = open(open_no_link(self.jsonl_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a", encoding="utf-8")
        self._events = EventFileWriter(self.run_dir / TENSORBOARD_DIR)
        self.event_path = self._events.path
        if resume_step is not None:
            self._events.add_session_start(time.time(), resume_step + 1)
        self.flush()

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Record `values` (name -> number; tensors and numpy scalars are fine) at training step `step`."""
        if not self.enabled:
            return
        if self._jsonl is None:
            raise RuntimeError(f"MetricsLogger({self.run_dir}) is closed")
        step, now = int(step), time.time()
        scalars = _as_floats(values)
        record = {"step": step, "time": round(now, 3)}
        record.update({k: v if math.isfinite(v) else None for k, v in scalars.items()})  # strict JSON: no NaN
        with reporting_full_disk(self.jsonl_path):
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        with reporting_full_disk(self.event_path):
            self._events.add_scalars(now, step, scalars)
        if time.monotonic() - self._last_flush >= self.flush_secs:
            self.flush()

    def flush(self) -> None:
        if self._events is not None:
            with reporting_full_disk(self.event_path):
                self._events.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close both files; later `close` calls do nothing."""
        for f in (self._jsonl, self._events):
            if f is not None:
                f.close()
        self._jsonl = self._events = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ JSONL


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict]:
    """The records of ``RUN_DIR/metrics.jsonl`` in file order: ``{"step": int, "time": float, name: float}``
    (a non-finite value, stored as null, reads as NaN). A last line cut short by a killed run is skipped.
    Raises BertforgeError if the file is missing or a complete line is not a metrics record."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise BertforgeError(f"{run_dir}: no {METRICS_FILE} (expected a run directory written by MetricsLogger)")
    records = []
    for _, record in _parse_lines(path, path.read_bytes()):
        records.append({k: float("nan") if v is None else v for k, v in record.items()})
    return records


def truncate_after(run_dir: str | os.PathLike[str], step: int) -> int:
    """Drop the records of ``RUN_DIR/metrics.jsonl`` with a step after `step` (logged after the checkpoint
    a run resumes from), and a torn last line; the file is rewritten atomically. Returns how many records
    were dropped; a missing file is left missing."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    lines = _parse_lines(path, path.read_bytes())
    kept = [line for line, record in lines if record["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(line + b"\n" for line in kept))
    return len(lines) - len(kept)


def _parse_lines(path: Path, data: bytes) -> list[tuple[bytes, dict]]:
    """(line bytes, record) for every non-blank line; a last line without its newline that does not parse
    is a write cut short by a kill, and is left out."""
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    out = [(line, _parse_line(path, number, line)) for number, line in enumerate(lines, 1) if line.strip()]
    if torn.strip():
        try:
            out.append((torn, _parse_line(path, len(lines) + 1, torn)))
        except BertforgeError:
            pass
    return out


def _parse_line(path: Path, number: int, line: bytes) -> dict:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BertforgeError(
            f"{path} line {number}: not valid JSON ({exc}); expected one metrics record per line"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise BertforgeError(f"{path} line {number}: expected a JSON object with an integer 'step', got {line[:80]!r}")
    return record


def _repair_tail(path: Path) -> None:
    """Before appending: end a complete last line with its newline, or cut off a torn one, so the next
    record starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    with open(open_no_link(path, os.O_WRONLY | os.O_APPEND), "ab") as f:
        if _parse_lines(path, data[start:]):
            f.write(b"\n")
        else:
            f.truncate(start)


def _as_floats(values: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, value in values.items():
        if not isinstance(name, str) or name in _RESERVED:
            raise ValueError(f"metric name {name!r}: names must be strings other than {', '.join(_RESERVED)}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r}: {value!r} is not a number") from None
    return out
