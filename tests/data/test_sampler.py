import itertools

import numpy as np
import pytest

from bertforge.data.sampler import DistributedSampler
from bertforge.errors import BertforgeError


@pytest.mark.parametrize("n,world,drop_last", [(103, 4, True), (103, 4, False), (8, 2, True), (5, 8, False)])
def test_ranks_get_disjoint_parts_covering_the_data(n, world, drop_last):
    parts = [list(DistributedSampler(n, rank=r, world_size=world, seed=3, drop_last=drop_last)) for r in range(world)]
    assert len({len(p) for p in parts}) == 1  # equal length: no rank waits
    flat = list(itertools.chain(*parts))
    if drop_last:
        assert len(set(flat)) == len(flat) == (n // world) * world
    else:
        assert set(flat) == set(range(n))  # everything, some items twice to even out
        assert len(flat) == -(-n // world) * world


def test_epochs_reshuffle_reproducibly():
    a, b = DistributedSampler(50, seed=1), DistributedSampler(50, seed=1)
    first = list(a)
    assert first == list(b) == list(a) and sorted(first) == list(range(50))
    a.set_epoch(1)
    assert list(a) != first  # the next epoch is a new permutation
    assert list(DistributedSampler(50, seed=2)) != first


def test_resume_mid_epoch_without_replaying():
    full = DistributedSampler(1000, rank=1, world_size=3, seed=9)
    expected = list(full)
    run = DistributedSampler(1000, rank=1, world_size=3, seed=9)
    seen = list(itertools.islice(iter(run), 100))
    list(itertools.islice(iter(run), 100, 130))  # a prefetching loader pulls ahead of the trainer
    run.advance(100)
    state = run.state_dict()
    assert state["position"] == 100
    resumed = DistributedSampler(1000, rank=1, world_size=3, seed=9)
    resumed.load_state_dict(state)
    assert seen + list(resumed) == expected


@pytest.mark.parametrize(
    "world,seed,expected",
    [
        (2, 9, "saved by 3 process.es. with data seed 9, resumed with 2 and 9: .*nproc-per-node 3"),
        (3, 8, "resumed with 3 and 8"),
    ],
)
def test_resume_with_another_world_size_or_seed_is_our_error(world, seed, expected):
    """Each rank's part of the permutation depends on both: there is no exact place to continue from. A
    bare ValueError here used to reach the user as a traceback (the CLI reports only our errors)."""
    state = DistributedSampler(1000, rank=1, world_size=3, seed=9, position=100).state_dict()
    with pytest.raises(BertforgeError, match=expected):
        DistributedSampler(1000, rank=0, world_size=world, seed=seed).load_state_dict(state)


def test_length_grouped_batches_are_homogeneous_disjoint_and_resumable():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 128, 1000)
    samplers = [DistributedSampler(1000, r, 2, seed=1, lengths=lengths, batch_size=16) for r in range(2)]
    parts = [list(s) for s in samplers]
    assert len(parts[0]) == len(parts[1]) == (500 // 16) * 16
    assert not set(parts[0]) & set(parts[1])
    batches = np.array(parts[0]).reshape(-1, 16)
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 15  # random batches of 16 would span ~100
    firsts = [lengths[b].max() for b in batches[:10]]
    assert firsts != sorted(firsts, reverse=True)  # batches are shuffled, not longest first
    resumed = DistributedSampler(1000, 0, 2, seed=1, lengths=lengths, batch_size=16)
    resumed.advance(64)
    assert list(resumed) == parts[0][64:]
