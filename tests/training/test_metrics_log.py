"""MetricsLogger: the JSONL log (append, resume, kill tolerance) and TensorBoard events read back by
TensorBoard's own EventAccumulator."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from bertforge.errors import BertforgeError
from bertforge.formats.tfrecord import iter_tfrecord
from bertforge.training.metrics_log import METRICS_FILE, MetricsLogger, read_metrics, truncate_after


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_jsonl_records_one_line_per_call(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(10, {"loss": 2.5, "learning_rate": 1e-4})
        logger.log(20, {"loss": np.float32(2.0), "grad_norm": 3})
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["step"] == 10 and first["loss"] == 2.5 and first["learning_rate"] == 1e-4
    assert abs(first["time"] - time.time()) < 60
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20]
    assert read_metrics(tmp_path)[1]["grad_norm"] == 3.0


def test_jsonl_is_flushed_before_close(tmp_path):
    logger = MetricsLogger(tmp_path)
    logger.log(1, {"loss": 1.0})
    assert read_metrics(tmp_path)[0]["loss"] == 1.0  # a killed run keeps it
    logger.close()


def test_non_finite_values_are_strict_json_nulls(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"loss": float("nan"), "grad_norm": float("inf")})
    assert json.loads((tmp_path / METRICS_FILE).read_text())["loss"] is None
    record = read_metrics(tmp_path)[0]
    assert math.isnan(record["loss"]) and math.isnan(record["grad_norm"])
    assert math.isinf(_scalars(tmp_path)["grad_norm"][0][1])  # TensorBoard keeps the real value


def test_a_new_logger_appends(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"loss": 3.0})
    with MetricsLogger(tmp_path) as logger:
        logger.log(2, {"loss": 2.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 3.0), (2, 2.0)]


def test_resume_drops_steps_after_the_checkpoint(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        for step in range(1, 7):
            logger.log(step, {"loss": 10.0 - step})
    with MetricsLogger(tmp_path, resume_step=3) as logger:  # killed at 6, checkpoint at 3
        logger.log(4, {"loss": 0.5})
        logger.log(5, {"loss": 0.25})
    expected = [(1, 9.0), (2, 8.0), (3, 7.0), (4, 0.5), (5, 0.25)]
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == expected
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2
    # SessionLog.START in the new file makes TensorBoard drop the old file's steps 4..6
    assert _scalars(tmp_path)["loss"] == expected


def test_truncate_after(tmp_path):
    assert truncate_after(tmp_path, 5) == 0  # no file: nothing to do
    with MetricsLogger(tmp_path) as logger:
        for step in (10, 20, 20, 30):
            logger.log(step, {"loss": float(step)})
    assert truncate_after(tmp_path, 20) == 1
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 20]


def test_torn_last_line_is_skipped_and_repaired(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"loss": 1.0})
        logger.log(2, {"loss": 0.5})
    path = tmp_path / METRICS_FILE
    path.write_bytes(path.read_bytes()[:-9])  # killed mid-write
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]
    with MetricsLogger(tmp_path) as logger:  # appending starts on a fresh line
        logger.log(2, {"loss": 0.75})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 0.75)]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "time": 0, "loss": 1.0}\n{"step": 2, "time": 0, "loss": 0.5}')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    with MetricsLogger(tmp_path) as logger:
        logger.log(3, {"loss": 0.25})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_bad_line_in_the_middle_names_the_file_and_line(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(BertforgeError, match=r"metrics\.jsonl line 2"):
        read_metrics(tmp_path)


def test_missing_metrics_file(tmp_path):
    with pytest.raises(BertforgeError, match=str(tmp_path)):
        read_metrics(tmp_path)


def test_tensorboard_reads_back_exactly_the_logged_scalars(tmp_path):
    logged = {step: {"loss": 1.0 / step, "mlm_accuracy": step / 100, "loss_scale": 2.0**15} for step in range(1, 21)}
    logged[21] = {"loss": 0.01}  # tags need not appear at every step
    with MetricsLogger(tmp_path, flush_secs=0) as logger:
        for step, values in logged.items():
            logger.log(step, values)
    scalars = _scalars(tmp_path)
    assert set(scalars) == {"loss", "mlm_accuracy", "loss_scale"}
    for tag, events in scalars.items():
        expected = [(step, values[tag]) for step, values in logged.items() if tag in values]
        assert [s for s, _ in events] == [s for s, _ in expected]
        np.testing.assert_array_equal([v for _, v in events], np.float32([v for _, v in expected]))


def test_event_file_framing_and_version(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(7, {"loss": 1.5})
    (path,) = (tmp_path / "tensorboard").iterdir()
    assert path.name.startswith("events.out.tfevents.")
    records = list(iter_tfrecord(path))  # CRCs checked by the project's TFRecord reader
    assert len(records) == 2 and b"brain.Event:2" in records[0]
    acc = event_accumulator.EventAccumulator(str(path))
    acc.Reload()
    assert acc.file_version == 2.0


def test_disabled_logger_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    with MetricsLogger(run_dir, enabled=False, resume_step=3) as logger:
        logger.log(1, {"loss": 1.0})
        logger.flush()
    assert not run_dir.exists()


def test_reserved_and_non_numeric_names(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        with pytest.raises(ValueError, match="step"):
            logger.log(1, {"step": 1.0})
        with pytest.raises(TypeError, match="'loss'"):
            logger.log(1, {"loss": "high"})
    with pytest.raises(RuntimeError, match="closed"):
        logger.log(2, {"loss": 1.0})


def test_a_full_disk_names_the_metrics_file(tmp_path):
    import errno

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    logger = MetricsLogger(tmp_path)
    logger._jsonl.close()
    logger._jsonl = Full()
    with pytest.raises(BertforgeError, match=f"no space left on /.* while writing {tmp_path / METRICS_FILE}"):
        logger.log(1, {"loss": 1.0})
    logger._jsonl = None
    logger.close()


@pytest.mark.parametrize("content", [b"keep me", b'{"step": 1}', b'{"step": 1}\n'])
def test_a_linked_metrics_file_is_refused_and_its_target_kept(tmp_path, content):
    """Torn, complete without its newline, complete: the target is neither cut, nor appended to."""
    (tmp_path / "important.txt").write_bytes(content)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / METRICS_FILE).symlink_to(tmp_path / "important.txt")
    with pytest.raises(BertforgeError, match=f"^{tmp_path / 'run' / METRICS_FILE} is a symbolic link \\(to "):
        MetricsLogger(tmp_path / "run")
    assert (tmp_path / "important.txt").read_bytes() == content
