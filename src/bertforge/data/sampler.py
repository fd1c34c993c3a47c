"""Which instances each distributed rank reads, in which order, resumable mid-epoch in O(1)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bertforge.errors import BertforgeError


@dataclass
class DistributedSampler:
    """Rank `rank` of `world_size` reads every world_size-th item of a seeded per-epoch permutation.

    The ranks' parts are disjoint and, with `drop_last`, equally long (so no rank waits at the end of an
    epoch); without it the permutation is padded by wrapping around. Iteration starts at `position`, the
    number of this epoch's items the trainer has confirmed with `advance` — not what a prefetching
    DataLoader has already pulled — so `state_dict()`/`load_state_dict()` resume exactly, without replaying.
    """

    num_items: int
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = True
    epoch: int = 0
    position: int = 0  # items of this epoch the trainer has used on this rank
    lengths: np.ndarray | None = None  # with `batch_size`: batches of similar lengths (less padding)
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.world_size
        return -(-self.num_items // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning (a resumed position is kept only for the epoch it belongs to)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def advance(self, count: int) -> None:
        """Record that the trainer has used `count` more items of this epoch."""
        self.position += count

    def _indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        total = len(self) * self.world_size
        if total > self.num_items:  # pad by wrapping around
            order = np.concatenate([order, order[: total - self.num_items]])
        if self.lengths is None:
            return order[self.rank : total : self.world_size]
        return self._length_grouped(order[:total], rng)

    def _length_grouped(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sort windows of 50 batches by length, cut them into batches, shuffle the batches (so that the
        epoch does not go from short to long), and deal whole batches to the ranks in turn."""
        per_rank = len(self) // self.batch_size  # whole batches only: every rank gets the same number
        order = order[: per_rank * self.world_size * self.batch_size]
        window = 50 * self.batch_size
        chunks = [order[i : i + window] for i in range(0, len(order), window)]
        grouped = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks] or [order])
        batches = grouped.reshape(-1, self.batch_size)
        if self.shuffle:
            batches = batches[rng.permutation(len(batches))]
        return batches[self.rank :: self.world_size].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.position :].tolist())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where `state` stopped. Only with the same world size and seed: the permutation, each
        rank's part of it and the position in it all depend on them (and the global batch on the world size),
        so there is no exact place to continue from with others."""
        if state["world_size"] != self.world_size or state["seed"] != self.seed:
            raise BertforgeError(
                f"saved by {state['world_size']} process(es) with data seed {state['seed']}, resumed with "
                f"{self.world_size} and {self.seed}: resume with the same number of processes "
                f"(torchrun --nproc-per-node {state['world_size']}, or none for 1) and seed"
            )
        self.epoch, self.position = state["epoch"], state["position"]
