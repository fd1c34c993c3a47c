"""CRF against pytorch-crf (the reference implementation) with identical parameter values, and the NumPy
Viterbi against every path scored by a plain loop."""

import itertools

import numpy as np
import pytest
import torch
import torchcrf

from bertforge.modeling.crf import CRF, compact_mask, viterbi

SEEDS = [0, 1, 2, 3, 4, 5]
REDUCTIONS = ["sum", "mean", "none", "token_mean"]
LARGEST = (8, 20, 10)  # batch, seq_len, num_tags: seed 0 uses these, other seeds draw up to them


def make_pair(num_tags: int, dtype: torch.dtype = torch.float64) -> tuple[CRF, "torchcrf.CRF"]:
    """Our CRF and a pytorch-crf one holding the same parameters, drawn as large as the emissions (σ 2 beside
    their 3): the initialisation's ±0.1 would let a decoder that forgets the start or end scores, or the
    transitions, agree with pytorch-crf on nearly every row."""
    ours = CRF(num_tags).to(dtype)
    with torch.no_grad():
        for param in ours.parameters():
            param.normal_(0, 2)
    theirs = torchcrf.CRF(num_tags, batch_first=True).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def random_case(seed: int, dtype: torch.dtype = torch.float64):
    """Emissions (B, S, T), tags (B, S) and a left-aligned ragged mask (B, S) with every length >= 1.

    float64 by default so that comparisons with pytorch-crf test the algorithm, not rounding order.
    """
    gen = torch.Generator().manual_seed(seed)
    sizes = [int(torch.randint(1, high + 1, (1,), generator=gen)) for high in LARGEST]
    batch, seq_len, num_tags = LARGEST if seed == 0 else sizes
    emissions = torch.randn(batch, seq_len, num_tags, generator=gen, dtype=dtype) * 3
    tags = torch.randint(num_tags, (batch, seq_len), generator=gen)
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
    lengths[0], lengths[-1] = seq_len, 1  # the full width and the shortest row are always there
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)
    return emissions, tags, mask


def holey_case(seed: int):
    """Like ``random_case`` but the mask has holes, offsets and one all-False row; tags are -100 off-mask."""
    gen = torch.Generator().manual_seed(100 + seed)
    batch, seq_len, num_tags = 6, 15, 5
    emissions = torch.randn(batch, seq_len, num_tags, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(batch, seq_len, generator=gen) < 0.5
    mask[:, 0] = False  # [CLS]
    mask[1] = False  # a row with nothing to label
    mask[2, -1] = True
    tags = torch.randint(num_tags, (batch, seq_len), generator=gen).masked_fill(~mask, -100)
    return emissions, tags, mask


def compacted_reference(emissions, tags, mask):
    """Row by row, the masked positions moved to the front (the plain-Python meaning of compaction)."""
    rows = [b for b in range(mask.size(0)) if mask[b].any()]
    length = int(mask.sum(1).max())
    em = emissions.new_zeros(len(rows), length, emissions.size(2))
    tg = torch.zeros(len(rows), length, dtype=torch.long)
    mk = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, b in enumerate(rows):
        n = int(mask[b].sum())
        em[i, :n], tg[i, :n], mk[i, :n] = emissions[b, mask[b]], tags[b, mask[b]], True
    return rows, em, tg, mk


def test_compact_mask_left_aligns_in_order():
    mask = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    index, compact, lengths = compact_mask(mask)
    assert lengths.tolist() == [3, 0, 2]
    assert index[0].tolist() == [1, 3, 4] and index[2, :2].tolist() == [0, 1]
    assert compact.tolist() == [[True, True, True], [False, False, False], [True, True, False]]
    assert all(len(set(row)) == len(row) for row in index.tolist())  # scatter back never collides


@pytest.mark.parametrize("seed", SEEDS)
def test_log_likelihood_matches_pytorch_crf(seed):
    torch.manual_seed(seed)
    emissions, tags, mask = random_case(seed)
    ours, theirs = make_pair(emissions.size(2))
    for reduction in REDUCTIONS:
        expected = theirs(emissions, tags, mask, reduction=reduction)
        torch.testing.assert_close(ours(emissions, tags, mask, reduction), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_log_likelihood_matches_in_float32(seed):
    torch.manual_seed(seed)
    emissions, tags, mask = random_case(seed, torch.float32)
    ours, theirs = make_pair(emissions.size(2), torch.float32)
    expected = theirs(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(ours(emissions, tags, mask, "none"), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_viterbi_matches_pytorch_crf(seed):
    torch.manual_seed(seed)
    emissions, _, mask = random_case(seed)
    ours, theirs = make_pair(emissions.size(2))
    expected = theirs.decode(emissions, mask)
    assert ours.decode_lists(emissions, mask) == expected
    decoded = ours.decode(emissions, mask)
    assert decoded.dtype == torch.long and decoded.shape == mask.shape
    assert (decoded[~mask] == -100).all()
    assert [row[: len(path)].tolist() for row, path in zip(decoded, expected)] == expected


def brute_force_best(em, start, end, trans) -> list[int]:
    """The highest-scoring tag path of one row (L, T), by scoring all T**L paths."""

    def score(path):
        moved = sum(trans[a, b] for a, b in zip(path, path[1:]))
        return start[path[0]] + sum(em[t, tag] for t, tag in enumerate(path)) + moved + end[path[-1]]

    return list(max(itertools.product(range(em.shape[1]), repeat=len(em)), key=score))


@pytest.mark.parametrize("seed", SEEDS)
def test_numpy_viterbi_finds_the_best_of_all_paths(seed):
    """Ragged rows of up to 6 steps over 4 tags (4,096 paths), start, end and transition scores as large as the
    emissions: `viterbi` returns the brute-force best path of every row (continuous scores: no ties)."""
    rng = np.random.default_rng(seed)
    batch, length, tags = 5, 6, 4
    em = rng.normal(0, 2, (batch, length, tags))
    start, end, trans = rng.normal(0, 2, tags), rng.normal(0, 2, tags), rng.normal(0, 2, (tags, tags))
    lengths = rng.integers(1, length + 1, batch)
    lengths[0], lengths[-1] = length, 1
    paths = viterbi(em, lengths, start, end, trans)
    for b in range(batch):
        assert paths[b, : lengths[b]].tolist() == brute_force_best(em[b, : lengths[b]], start, end, trans), b


@pytest.mark.parametrize("seed", SEEDS)
def test_holey_masks_equal_pytorch_crf_on_compacted_rows(seed):
    torch.manual_seed(seed)
    emissions, tags, mask = holey_case(seed)
    ours, theirs = make_pair(emissions.size(2))
    rows, em, tg, mk = compacted_reference(emissions, tags, mask)

    llh = ours(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(llh[rows], theirs(em, tg, mk, reduction="none"), rtol=0, atol=1e-5)
    assert llh[1] == 0
    torch.testing.assert_close(ours(emissions, tags, mask, "token_mean"), llh.sum() / mask.sum(), rtol=0, atol=1e-12)

    decoded = ours.decode(emissions, mask)
    assert (decoded[~mask] == -100).all() and (decoded[1] == -100).all()
    assert [decoded[b][mask[b]].tolist() for b in rows] == theirs.decode(em, mk)


def test_tags_outside_the_mask_are_ignored():
    emissions, tags, mask = holey_case(0)
    ours = CRF(emissions.size(2)).double()
    other_tags = tags.masked_fill(~mask, 3)
    torch.testing.assert_close(ours(emissions, tags, mask, "none"), ours(emissions, other_tags, mask, "none"))


def test_all_false_mask():
    ours = CRF(4)
    emissions = torch.randn(3, 5, 4, requires_grad=True)
    tags = torch.full((3, 5), -100)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for reduction in REDUCTIONS:
        assert (ours(emissions, tags, mask, reduction) == 0).all()
    ours(emissions, tags, mask).backward()  # stays differentiable, with zero gradient
    assert (emissions.grad == 0).all()
    assert (ours.decode(emissions, mask) == -100).all()
    assert ours.decode_lists(emissions, mask) == [[], [], []]


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_gradients_match_pytorch_crf(seed):
    torch.manual_seed(seed)
    emissions, tags, mask = random_case(seed)
    ours, theirs = make_pair(emissions.size(2))
    grads = []
    for crf in (ours, theirs):
        em = emissions.clone().requires_grad_()
        (-crf(em, tags, mask, reduction="mean")).backward()
        params = (crf.start_transitions, crf.end_transitions, crf.transitions)
        grads.append([em.grad] + [p.grad for p in params])
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_state_dict_interchanges_with_pytorch_crf():
    ours, theirs = CRF(6), torchcrf.CRF(6, batch_first=True)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    back = CRF(6)
    back.load_state_dict(theirs.state_dict())
    for name, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], value)


def test_parameters_start_uniform_in_a_tenth():
    for param in CRF(10).parameters():
        assert param.abs().max() <= 0.1 and param.std() > 0


def test_half_precision_emissions_compute_in_float32():
    emissions, tags, mask = random_case(0, torch.float32)
    ours = CRF(emissions.size(2))
    half = emissions.half()
    llh = ours(half, tags, mask, "none")
    assert llh.dtype == torch.float32
    torch.testing.assert_close(llh, ours(half.float(), tags, mask, "none"))
    assert torch.equal(ours.decode(half, mask), ours.decode(half.float(), mask))


def test_under_autocast():
    emissions, tags, mask = random_case(1, torch.float32)
    linear = torch.nn.Linear(emissions.size(2), emissions.size(2))
    ours = CRF(emissions.size(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = linear(emissions)
        assert logits.dtype == torch.bfloat16
        llh = ours(logits, tags, mask)
    assert llh.dtype == torch.float32 and torch.isfinite(llh)
    llh.backward()
    assert linear.weight.grad is not None and ours.transitions.grad is not None


def test_large_emissions_stay_finite():
    emissions, tags, mask = random_case(2, torch.float32)
    llh = CRF(emissions.size(2))(emissions * 1e4, tags, mask, "none")
    assert torch.isfinite(llh).all() and (llh <= 1e-3).all()


def test_rejects_bad_arguments():
    ours = CRF(3)
    emissions, tags = torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="reduction"):
        ours(emissions, tags, mask, reduction="avg")
    with pytest.raises(ValueError, match="emissions"):
        ours(torch.randn(2, 4, 5), tags, mask)
    with pytest.raises(ValueError, match="mask"):
        ours.decode(emissions, mask[:, :3])
    with pytest.raises(ValueError, match="tags"):
        ours(emissions, tags[:, :3], mask)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    emissions, tags, mask = holey_case(0)
    ours = CRF(emissions.size(2)).double()
    on_gpu = CRF(emissions.size(2)).double().cuda()
    on_gpu.load_state_dict(ours.state_dict())
    cuda = (emissions.cuda(), tags.cuda(), mask.cuda())
    torch.testing.assert_close(on_gpu(*cuda, "none").cpu(), ours(emissions, tags, mask, "none"))
    assert torch.equal(on_gpu.decode(cuda[0], cuda[2]).cpu(), ours.decode(emissions, mask))
