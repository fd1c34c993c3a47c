"""`bertforge plot`: PNG curves of a run's metrics."""

from __future__ import annotations

import argparse

from bertforge.extras import note, require


def register(sub, common) -> None:
    p = sub.add_parser("plot", parents=[common], help="PNG curves of a run's metrics", epilog=note("plot") or None)
    p.add_argument("run_dir")
    p.add_argument("--output", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    require("plot", "plot")
    from bertforge.training.plot import plot_run

    for path in plot_run(args.run_dir, args.output):
        print(path)
