import itertools

import pytest

from bertforge.data.sampler import DistributedSampler


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
    with pytest.raises(ValueError):
        DistributedSampler(1000, rank=0, world_size=2, seed=9).load_state_dict(state)
