"""PNG training curves from a run's ``metrics.jsonl`` (``bertforge plot RUN_DIR``): one figure per group
of related metrics, each a smoothed line over the raw values drawn faintly.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg renderer, without pyplot:
no display is needed and no global figure state is left behind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.extras import need
from bertforge.fileio import atomic_path
from bertforge.training.metrics_log import METRICS_FILE, read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE = (8.0, 4.5)  # inches: with DPI, 960x540 pixels, readable at 100%
DPI = 120


@dataclass(frozen=True)
class PlotGroup:
    """Metrics drawn on one figure, saved as ``<name>.png``."""

    name: str
    title: str
    keys: tuple[str, ...]  # metric names in metrics.jsonl, in legend order
    ylabel: str
    log_y: bool = False
    smooth: bool = True  # False for metrics that are not noisy (a schedule, the loss scale)
    eng_y: bool = False  # y tick labels as 12k, 1.5M


GROUPS = (
    PlotGroup("loss", "Training loss", ("loss", "mlm_loss", "nsp_loss"), "loss"),
    PlotGroup("accuracy", "Training accuracy", ("mlm_accuracy", "nsp_accuracy"), "accuracy"),
    PlotGroup("learning_rate", "Learning rate", ("lr",), "learning rate", smooth=False),
    PlotGroup("grad_norm", "Gradient norm (before clipping)", ("grad_norm",), "global L2 norm"),
    PlotGroup("loss_scale", "Loss scale (mixed precision)", ("loss_scale",), "loss scale", log_y=True, smooth=False),
    PlotGroup("throughput", "Throughput", ("tokens_per_second",), "tokens/s", eng_y=True),
)


def plot_run(
    run_dir: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    groups: Sequence[PlotGroup] = GROUPS,
) -> list[Path]:
    """Write one PNG per group of `groups` that has data in ``RUN_DIR/metrics.jsonl`` into `output`
    (default ``RUN_DIR/plots``), atomically. Returns the paths written. Raises BertforgeError naming the
    run directory if it holds no metrics."""
    run_dir = Path(run_dir)
    records = drop_restarted(read_metrics(run_dir))
    output = run_dir / "plots" if output is None else Path(output)
    written = []
    for group in groups:
        series = {key: _series(records, key) for key in group.keys}
        series = {key: s for key, s in series.items() if np.isfinite(s[1]).any()}
        if not series:
            continue
        path = output / f"{group.name}.png"
        figure = _draw(group, series, run_dir.name)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=DPI)
        written.append(path)
    if not written:
        known = ", ".join(key for group in groups for key in group.keys)
        raise BertforgeError(
            f"{run_dir / METRICS_FILE}: no metrics to plot ({len(records)} records); expected some of: {known}"
        )
    return written


def drop_restarted(records: list[dict]) -> list[dict]:
    """Keep one history when a run was resumed without truncating its log: a step lower than one seen
    before starts a new run, whose records replace the earlier ones from that step on (as TensorBoard
    purges orphaned events). Repeated equal steps (train and eval logged separately) are kept."""
    out: list[dict] = []
    for record in records:
        if out and record["step"] < out[-1]["step"]:
            out = [r for r in out if r["step"] < record["step"]]
        out.append(record)
    return out


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing, so the first points are not pulled toward
    zero; NaN/inf points are skipped (the average carries over them) and stay NaN in the result."""
    out = np.full(len(values), np.nan)
    average, debias = 0.0, 0.0
    for i, value in enumerate(values.tolist()):
        if not math.isfinite(value):
            continue
        average = weight * average + (1 - weight) * value
        debias = weight * debias + (1 - weight)
        out[i] = average / debias
    return out


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    steps = np.array([p[0] for p in pairs], dtype=np.int64)
    values = np.array([p[1] for p in pairs], dtype=np.float64)
    return steps, values


def _smoothing_weight(n: int) -> float:
    """About n/50 points per averaging window: the same visual smoothness for short and long runs."""
    span = max(1.0, n / 50)
    return 1 - 2 / (span + 1)


def _draw(group: PlotGroup, series: dict[str, tuple[np.ndarray, np.ndarray]], run_name: str) -> Figure:
    ticker = need("matplotlib.ticker", "plot")  # matplotlib is optional (bertforge[plot]): imported when drawing
    figure = need("matplotlib.figure", "plot").Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = figure.subplots()
    for index, (key, (steps, values)) in enumerate(series.items()):
        color = f"C{index}"
        if group.log_y:
            values = np.where(values > 0, values, np.nan)
        if group.smooth and len(values) >= 10:
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
            ax.plot(steps, smooth(values, _smoothing_weight(len(values))), color=color, linewidth=2, label=key)
        elif group.smooth:
            ax.plot(steps, values, color=color, linewidth=1.5, marker="o", markersize=3, label=key)
        else:
            ax.plot(steps, values, color=color, linewidth=1.5, label=key, drawstyle="steps-post")
    if group.log_y:
        ax.set_yscale("log", base=2)
    elif group.eng_y:
        ax.yaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # a learning rate: 1e-4 above the axis
    ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))  # 250k, 1M: steps get long
    ax.set_title(f"{group.title} — {run_name}")
    ax.set_xlabel("step")
    ax.set_ylabel(group.ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return figure
