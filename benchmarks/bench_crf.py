"""CRF log-likelihood (forward + backward) and Viterbi decoding: bertforge's `CRF` against `pytorch-crf`, same
parameters and inputs, in this process, alternating, median of repeats. Batch 32 × length 128, 9 and 21 tags
(CoNLL's BIO and CLUENER's BIO tag counts), with ragged lengths (every row a different length, as NER
batches are); results are checked equal before timing.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_crf.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torchcrf  # noqa: E402

from bertforge.modeling import CRF  # noqa: E402


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"batch {args.batch} × length {args.length}, ragged; {torch.get_num_threads()} threads; "
        f"median of {args.repeats}"
    )
    for tags in (9, 21):
        ours, theirs = CRF(tags), torchcrf.CRF(tags, batch_first=True)
        theirs.load_state_dict(ours.state_dict())
        emissions = torch.randn(args.batch, args.length, tags, requires_grad=True)
        lengths = torch.randint(args.length // 4, args.length + 1, (args.batch,))
        lengths[0] = args.length
        mask = torch.arange(args.length)[None, :] < lengths[:, None]
        labels = torch.randint(0, tags, (args.batch, args.length))
        assert torch.allclose(ours(emissions, labels, mask), theirs(emissions, labels, mask), atol=1e-3)
        assert ours.decode_lists(emissions, mask) == theirs.decode(emissions, mask)

        def ll(crf):
            return lambda: crf(emissions, labels, mask).backward()

        def viterbi(crf, decode):
            return lambda: decode(emissions.detach(), mask)

        rows = {
            "log-likelihood + backward": (timed(ll(ours), args.repeats), timed(ll(theirs), args.repeats)),
            "Viterbi": (
                timed(viterbi(ours, ours.decode_lists), args.repeats),
                timed(viterbi(theirs, theirs.decode), args.repeats),
            ),
        }
        for name, (a, b) in rows.items():
            print(
                f"  {tags:2d} tags  {name:26s} bertforge {a * 1e3:7.2f} ms  pytorch-crf {b * 1e3:7.2f} ms  "
                f"{b / a:5.2f}x"
            )


if __name__ == "__main__":
    main()
