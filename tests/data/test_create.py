"""create-pretraining-data against Google's create_pretraining_data.py on real text, and its guarantees."""

import dataclasses
import functools
import json
import random
import re
import shutil

import numpy as np
import pytest

from bertforge.data.corpus import plan_chunks, read_documents
from bertforge.data.create import CreateOptions, create_pretraining_data
from bertforge.data.dataset import PretrainingDataset
from bertforge.data.documents import tokenize_documents
from bertforge.data.inspect import dataset_statistics, statistics
from bertforge.data.instances import assemble, create_instances
from bertforge.data.masking import MaskingConfig, candidate_mask, mask_instances
from bertforge.data.sentences import split_sentences
from bertforge.errors import BertforgeError
from bertforge.tokenization import FullTokenizer
from tests.reference.google_bert import load_google_module


@pytest.fixture(scope="module")
def chinese_text(sample, tmp_path_factory):
    """People's Daily, tags stripped, one paragraph = one document, split into sentences."""
    path = tmp_path_factory.mktemp("zh") / "peoples_daily.txt"
    lines = sample("peoples-daily").read_text(encoding="utf-8").splitlines()[:1500]
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            text = re.sub(r" +", "", re.sub(r"/[A-Za-z]+", "", line)).strip()
            if text:
                f.write("\n".join(split_sentences(text)) + "\n\n")
    return path


@pytest.fixture(scope="module")
def english_text(sample, tmp_path_factory):
    """lee_background news articles (one per line) split into sentences, a blank line between articles."""
    path = tmp_path_factory.mktemp("en") / "lee.txt"
    with open(path, "w", encoding="utf-8") as f:
        for line in sample("lee-background").read_text(encoding="utf-8").splitlines():
            if line.strip():
                f.write("\n".join(split_sentences(line)) + "\n\n")
    return path


@pytest.fixture(scope="module")
def wiki_text(enwiki):
    """The real English Wikipedia dump sample, through extract-wiki (once per session, tests/conftest.py)."""
    return enwiki.shards[0]


@functools.cache
def google_tokenizer(vocab):
    """Google's FullTokenizer with `tokenize` memoised (a pure function of the line): runs over many seeds
    of the same text then tokenize it once."""
    tokenizer = load_google_module("tokenization").FullTokenizer(str(vocab), do_lower_case=True)
    tokenizer.tokenize = functools.cache(tokenizer.tokenize)
    return tokenizer


def google_instances(text, vocab, dupe_factor, seed=12345, short_seq_prob=0.1):
    cpd = load_google_module("create_pretraining_data")
    return cpd.create_training_instances(
        [str(text)], google_tokenizer(vocab), 128, dupe_factor, short_seq_prob, 0.15, 20, random.Random(seed)
    )


def google_statistics(text, vocab, dupe_factor, seed=12345, short_seq_prob=0.1):
    tokenizer = google_tokenizer(vocab)
    instances = google_instances(text, vocab, dupe_factor, seed, short_seq_prob)

    def items():
        for inst in instances:
            ids = tokenizer.convert_tokens_to_ids(inst.tokens)
            n, k = len(ids), len(inst.masked_lm_positions)
            item = {name: np.zeros(128, dtype=np.int64) for name in ("input_ids", "input_mask", "segment_ids")}
            item["input_ids"][:n], item["input_mask"][:n], item["segment_ids"][:n] = ids, 1, inst.segment_ids
            item["masked_lm_positions"] = np.zeros(20, dtype=np.int64)
            item["masked_lm_positions"][:k] = inst.masked_lm_positions
            item["masked_lm_ids"] = np.zeros(20, dtype=np.int64)
            item["masked_lm_ids"][:k] = tokenizer.convert_tokens_to_ids(inst.masked_lm_labels)
            item["masked_lm_weights"] = (np.arange(20) < k).astype(np.float32)
            item["next_sentence_labels"] = np.int64(inst.is_random_next)
            yield item

    return statistics(items(), 128, tokenizer.vocab["[MASK]"])


def assert_same_distribution(ours_runs, google):
    """Google's statistics lie within the spread of ours over several seeds (mean ± 4 std, with a floor).

    The spread must be measured: target lengths are drawn once per document, so with a hundred long
    articles the instance count moves by ±10% from seed to seed."""
    keys = [
        "instances",
        "mean_tokens",
        "masked_per_instance",
        "short_fraction",
        "nsp_random_fraction",
        "masked_token_fraction",
        "padding_fraction",
    ]
    values = {k: np.array([r[k] for r in ours_runs]) for k in keys}
    for part in ("mask", "kept", "random"):
        values[part] = np.array([r["mask_split"][part] for r in ours_runs])
        google[part] = google["mask_split"][part]
    for key, ours in values.items():
        floor = 0.005 * abs(ours.mean()) + (0.002 if key not in ("instances", "mean_tokens") else 0)
        assert abs(google[key] - ours.mean()) <= 4 * ours.std(ddof=1) + floor, (key, google[key], ours.tolist())


def assert_well_formed(dataset, vocab_size, cls_id, sep_id):
    for i in range(len(dataset)):
        item = dataset[i]
        ids, mask, seg = item["input_ids"], item["input_mask"], item["segment_ids"]
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any() and (ids[n:] == 0).all()
        assert (ids < vocab_size).all() and (ids >= 0).all()
        assert ids[0] == cls_id and ids[n - 1] == sep_id
        a_end = int(np.argmax(seg)) - 1  # the first [SEP]
        assert ids[a_end] == sep_id and (seg[: a_end + 1] == 0).all() and (seg[a_end + 1 : n] == 1).all()
        k = int(item["masked_lm_weights"].sum())
        assert (item["masked_lm_weights"][:k] == 1).all() and (item["masked_lm_weights"][k:] == 0).all()
        pos = item["masked_lm_positions"][:k]
        assert k >= 1 and (np.diff(pos) > 0).all() and (pos > 0).all() and (pos < n - 1).all() and (pos != a_end).all()
        assert (item["masked_lm_positions"][k:] == 0).all() and (item["masked_lm_ids"][k:] == 0).all()
        assert item["next_sentence_labels"] in (0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("corpus,vocab", [("wiki_text", "vocab-en"), ("chinese_text", "vocab-zh")])
def test_statistics_match_googles_script(request, sample, tmp_path, corpus, vocab):
    text = request.getfixturevalue(corpus)
    vocab = sample(vocab)
    google = google_statistics(text, vocab, dupe_factor=3)
    runs = []
    for seed in range(6):
        out = tmp_path / f"seed{seed}"
        create_pretraining_data([text], vocab, out, CreateOptions(dupe_factor=3, random_seed=seed), progress=False)
        runs.append(dataset_statistics(PretrainingDataset(out)))
    assert_same_distribution(runs, google)
    tok = FullTokenizer(vocab)
    assert_well_formed(PretrainingDataset(out), len(tok), tok.vocab["[CLS]"], tok.vocab["[SEP]"])


@pytest.mark.parametrize("breaks", [True, False], ids=["documents", "one-document"])
def test_same_output_for_any_number_of_workers(english_text, sample, tmp_path, breaks):
    """Also without a single document break: the text is then cut into pieces of about a chunk, each a
    document, so the work spreads over the workers all the same."""
    text = english_text
    if not breaks:
        text = tmp_path / "one-document.txt"
        text.write_text("".join(f"{line}\n" for line in english_text.read_text().splitlines() if line))
    opts = CreateOptions(dupe_factor=2, chunk_mb=0.05, shard_mb=0.15)
    vocab = sample("vocab-en")
    for workers in (1, 2):
        report = create_pretraining_data([text], vocab, tmp_path / f"w{workers}", opts, workers=workers, progress=False)
    articles = len(english_text.read_text().strip().split("\n\n"))
    if breaks:
        assert report.read.documents == articles
    else:
        assert 5 <= report.read.documents < articles / 10  # pieces of about 0.05 MB
    one, two = sorted((tmp_path / "w1").rglob("*.npy")), sorted((tmp_path / "w2").rglob("*.npy"))
    assert len(one) == len(two) > 4  # several shards
    for a, b in zip(one, two):
        assert a.relative_to(tmp_path / "w1") == b.relative_to(tmp_path / "w2")
        assert a.read_bytes() == b.read_bytes(), a


@pytest.fixture(scope="module")
def english_book(english_text, tmp_path_factory):
    """The lee_background sentences as one document of 0.36 MB (no blank line): a book, longer than a chunk."""
    path = tmp_path_factory.mktemp("book") / "book.txt"
    path.write_text("".join(f"{line}\n" for line in english_text.read_text().splitlines() if line))
    return path


BOOK_CHUNK_MB = 0.1  # cuts the book into 4 pieces


def test_a_long_document_is_cut_into_pieces(english_book):
    """What the two tests below rely on."""
    chunks = plan_chunks([english_book], int(BOOK_CHUNK_MB * 2**20))
    assert len(chunks) == 4 and all(len(read_documents(c)[0]) == 1 for c in chunks)


@pytest.mark.slow
def test_pieces_of_a_document_share_googles_one_target_length_draw_per_pass(english_book, sample, tmp_path):
    """Google draws a document's target length once per pass: a short one (uniform in [2, 125]) with
    probability short_seq_prob, else 125, for the whole book. Drawn once per piece instead, a one-book pass
    is all full-length far more rarely (0.5^4 here, against 0.5), so a run's instance count differs from
    Google's by far more than the cuts could (issue 25: 41% more, shorter instances). Over 40 seeds, the
    share of full-length passes (mean length >= 127: no short target) must be Google's."""
    vocab = sample("vocab-en")
    seeds, short_seq_prob = range(40), 0.5
    google = [google_instances(english_book, vocab, 1, seed, short_seq_prob) for seed in seeds]
    google_full = sum(np.mean([len(i.tokens) for i in run]) >= 127 for run in google)
    ours_full = 0
    for seed in seeds:
        options = CreateOptions(dupe_factor=1, random_seed=seed, short_seq_prob=short_seq_prob, chunk_mb=BOOK_CHUNK_MB)
        report = create_pretraining_data(
            [english_book], vocab, tmp_path / "out", options, overwrite=True, progress=False
        )
        assert report.read.documents == 4  # cut
        ours_full += report.tokens / report.instances >= 127
    assert 10 <= google_full <= 30  # the oracle behaves as described (expected 20 of 40)
    assert abs(ours_full - google_full) <= 8, (ours_full, google_full)


@pytest.mark.slow
def test_a_document_longer_than_a_chunk_gives_googles_statistics_cut_or_not(english_book, sample, tmp_path):
    """Instance count, length, NSP and masking match Google's script within 1%, the book cut into pieces or
    whole. Without short targets (short_seq_prob 0): a single short draw for one book moves a run's count by
    tens of percent (the test above checks that draw); pooled over seeds, the rest must agree to 1%."""
    vocab = sample("vocab-en")
    seeds = range(6)
    runs = {"google": [google_statistics(english_book, vocab, 10, seed, short_seq_prob=0) for seed in seeds]}
    for name, chunk_mb in (("cut", BOOK_CHUNK_MB), ("whole", 1.0)):
        runs[name] = []
        for seed in seeds:
            out = tmp_path / f"{name}{seed}"
            options = CreateOptions(random_seed=seed, short_seq_prob=0, chunk_mb=chunk_mb)
            report = create_pretraining_data([english_book], vocab, out, options, progress=False)
            assert report.read.documents == (4 if name == "cut" else 1)
            runs[name].append(dataset_statistics(PretrainingDataset(out)))

    def pooled(name, key):
        return np.mean([r[key] if key in r else r["mask_split"][key] for r in runs[name]])

    for name in ("cut", "whole"):
        for key in ("instances", "mean_tokens", "masked_per_instance"):
            assert abs(pooled(name, key) / pooled("google", key) - 1) <= 0.01, (name, key)
        for key in ("nsp_random_fraction", "masked_token_fraction", "mask", "kept", "random"):
            assert abs(pooled(name, key) - pooled("google", key)) <= 0.01, (name, key)


def test_resume_after_interruption_gives_the_same_dataset(english_text, sample, tmp_path):
    opts = CreateOptions(dupe_factor=1, chunk_mb=0.05, shard_mb=0.1)
    vocab = sample("vocab-en")
    create_pretraining_data([english_text], vocab, tmp_path / "full", opts, progress=False)
    create_pretraining_data([english_text], vocab, tmp_path / "cut", opts, progress=False)
    # A kill leaves complete shards and no schema: remove the schema and the last two shards.
    (tmp_path / "cut" / "schema.json").unlink()
    for shard in sorted((tmp_path / "cut").glob("shard-*"))[-2:]:
        shutil.rmtree(shard)
    with pytest.raises(BertforgeError, match="rerun with --resume"):
        PretrainingDataset(tmp_path / "cut")
    with pytest.raises(BertforgeError, match="not empty; pass --resume"):
        create_pretraining_data([english_text], vocab, tmp_path / "cut", opts, progress=False)
    report = create_pretraining_data([english_text], vocab, tmp_path / "cut", opts, resume=True, progress=False)
    assert report.shards_reused == report.shards - 2
    for a in sorted((tmp_path / "full").rglob("*.npy")):
        assert a.read_bytes() == (tmp_path / "cut" / a.relative_to(tmp_path / "full")).read_bytes()
    with pytest.raises(BertforgeError, match="different options"):
        create_pretraining_data(
            [english_text],
            vocab,
            tmp_path / "cut",
            CreateOptions(dupe_factor=3, chunk_mb=0.05, shard_mb=0.1),
            resume=True,
            progress=False,
        )


def test_dynamic_masking_is_seeded_fresh_per_epoch_and_well_formed(english_text, sample, tmp_path):
    vocab = sample("vocab-en")
    create_pretraining_data(
        [english_text], vocab, tmp_path / "d", CreateOptions(dupe_factor=1, dynamic_masking=True), progress=False
    )
    schema = json.loads((tmp_path / "d" / "schema.json").read_text())
    assert "masked_lm_positions" not in schema["columns"]
    first, again = PretrainingDataset(tmp_path / "d", seed=7), PretrainingDataset(tmp_path / "d", seed=7)
    a, b = first[3], again[3]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # reproducible
    first.set_epoch(1)
    assert not np.array_equal(first[3]["masked_lm_positions"], a["masked_lm_positions"])  # fresh each epoch
    tok = FullTokenizer(vocab)
    assert_well_formed(first, len(tok), tok.vocab["[CLS]"], tok.vocab["[SEP]"])
    stats = dataset_statistics(first)
    assert abs(stats["mask_split"]["mask"] - 0.8) < 0.03 and abs(stats["masked_token_fraction"] - 0.15) < 0.01


def _masked_words_are_whole(item, word_of_position):
    k = int(item["masked_lm_weights"].sum())
    masked = set(item["masked_lm_positions"][:k].tolist())
    for p in masked:
        assert word_of_position(p) <= masked, p


@pytest.mark.parametrize("dynamic", [False, True])
def test_whole_word_masking_english(english_text, sample, tmp_path, dynamic):
    vocab = sample("vocab-en")
    tok = FullTokenizer(vocab)
    opts = CreateOptions(dupe_factor=1, whole_word_mask=True, dynamic_masking=dynamic)
    create_pretraining_data([english_text], vocab, tmp_path / "w", opts, progress=False)
    dataset = PretrainingDataset(tmp_path / "w")
    pieces = 0
    for i in range(300):
        item = dataset[i]
        n = int(item["input_mask"].sum())
        k = int(item["masked_lm_weights"].sum())
        original = item["input_ids"].copy()
        original[item["masked_lm_positions"][:k]] = item["masked_lm_ids"][:k]
        tokens = tok.convert_ids_to_tokens(original[:n])
        a_end = int(np.argmax(item["segment_ids"])) - 1

        def word(p, tokens=tokens, a_end=a_end):
            start = p
            while tokens[start].startswith("##") and start - 1 not in (0, a_end):
                start -= 1
            end = p + 1
            while end < len(tokens) and tokens[end].startswith("##"):
                end += 1
            return set(range(start, end))

        _masked_words_are_whole(item, word)
        pieces += sum(tokens[p].startswith("##") for p in item["masked_lm_positions"][:k])
    assert pieces > 20  # multi-piece words were masked, so the check above had something to check


def test_chinese_word_starts_follow_jieba(sample):
    import jieba

    tok = FullTokenizer(sample("vocab-zh"))
    sentences = ["我们在北京大学学习自然语言处理。", "他用BERT模型做命名实体识别，效果很好！"]
    docs = tokenize_documents([sentences], tok, np.dtype(np.int32), whole_words=True)
    got = np.split(docs.word_starts, docs.sentence_bounds[1:-1])
    for sentence, starts in zip(sentences, got):
        boundaries, position = {0}, 0
        for word in jieba.cut(sentence):
            position += len(word)
            boundaries.add(position)
        offsets = tok.ids_and_offsets_batch([sentence])[0][1]
        expected = [begin in boundaries for begin, _ in offsets]
        assert starts.tolist() == expected
        assert not all(expected)  # some characters continue a word
    # "BERT" is one jieba word; its second WordPiece continues it
    tokens = tok.tokenize(sentences[1])
    assert tokens[2:4] == ["be", "##rt"] and got[1][2:4].tolist() == [True, False]


def test_whole_word_masking_chinese_masks_whole_jieba_words(chinese_text, sample):
    tok = FullTokenizer(sample("vocab-zh"))
    documents = [d.split("\n") for d in chinese_text.read_text(encoding="utf-8").strip().split("\n\n")][:300]
    docs = tokenize_documents(documents, tok, np.dtype(np.int32), whole_words=True)
    spans = create_instances(docs, 128, 0.1, 1, random.Random(1))
    ids, offsets, word_starts = assemble(docs, spans, tok.vocab["[CLS]"], tok.vocab["[SEP]"])
    config = MaskingConfig(20, 0.15, tok.vocab["[MASK]"], len(tok), whole_word_mask=True)
    masked = mask_instances(ids, offsets, spans.a_len, config, np.random.default_rng(0), word_starts)
    special = ~candidate_mask(offsets, spans.a_len)
    word_id = np.cumsum(word_starts | special)  # a new group at every word start and at every special token
    multi = 0
    for i in range(len(spans.a_len)):
        k = masked.counts[i]
        chosen = set((offsets[i] + masked.positions[i, :k]).tolist())
        assert 1 <= k <= 20
        for p in chosen:
            group = set(np.nonzero(word_id == word_id[p])[0].tolist())
            assert group <= chosen, (i, p)
            multi += len(group) > 1
    assert multi > 500  # many multi-character words were masked whole


def long_documents(path, documents: int, sentences: int) -> None:
    """Documents of `sentences` sentences of 10 one-token words and a full stop (11 tokens each)."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog and cat".split()
    with open(path, "w") as f:
        for _ in range(documents):
            f.writelines(" ".join(rng.choices(words, k=10)) + ".\n" for _ in range(sentences))
            f.write("\n")


def test_counts_above_255_are_stored_exactly(sample, tmp_path):
    long_documents(tmp_path / "in.txt", documents=3, sentences=300)
    options = CreateOptions(max_seq_length=2560, max_predictions_per_seq=400, dupe_factor=1, short_seq_prob=0)
    create_pretraining_data([tmp_path / "in.txt"], sample("vocab-en"), tmp_path / "out", options, progress=False)
    dataset = PretrainingDataset(tmp_path / "out")
    assert dataset.schema["columns"]["masked_lm_counts"]["dtype"] == "uint16"
    tok = FullTokenizer(sample("vocab-en"))
    assert_well_formed(dataset, len(tok), tok.vocab["[CLS]"], tok.vocab["[SEP]"])
    assert max(int(dataset[i]["masked_lm_weights"].sum()) for i in range(len(dataset))) > 255


def test_lengths_above_65535_are_stored_exactly(sample, tmp_path):
    long_documents(tmp_path / "in.txt", documents=2, sentences=7000)
    options = CreateOptions(max_seq_length=70000, dupe_factor=1, short_seq_prob=0)
    create_pretraining_data([tmp_path / "in.txt"], sample("vocab-en"), tmp_path / "out", options, progress=False)
    dataset = PretrainingDataset(tmp_path / "out")
    assert dataset.schema["columns"]["lengths"]["dtype"] == "uint32"
    tok = FullTokenizer(sample("vocab-en"))
    assert_well_formed(dataset, len(tok), tok.vocab["[CLS]"], tok.vocab["[SEP]"])
    lengths = [int(dataset[i]["input_mask"].sum()) for i in range(len(dataset))]
    assert max(lengths) > 65535 and sum(lengths) == dataset.schema["tokens"]


def test_a_value_that_does_not_fit_its_column_is_an_error():
    from bertforge.data.shards import as_stored, column_specs

    specs = column_specs(30522, 128, 20, dynamic=False, whole_word=False)
    assert as_stored({"masked_lm_counts": np.array([20])}, specs)["masked_lm_counts"].dtype == np.uint8
    with pytest.raises(BertforgeError, match="column masked_lm_counts: value 256 does not fit its stored dtype uint8"):
        as_stored({"masked_lm_counts": np.array([3, 256])}, specs)


def test_limits_the_format_cannot_hold_are_refused(sample, tmp_path):
    (tmp_path / "in.txt").write_text("A sentence.\nAnother one.\n")
    for options, message in (
        (CreateOptions(max_seq_length=2**32), "max_seq_length 4294967296 is above the 4294967295 the format holds"),
        (CreateOptions(max_predictions_per_seq=200), "max_predictions_per_seq 200 is above max_seq_length 128"),
    ):
        with pytest.raises(BertforgeError, match=message):
            create_pretraining_data([tmp_path / "in.txt"], sample("vocab-en"), tmp_path / "out", options)


def test_every_flag_of_the_command_reaches_the_dataset(english_text, sample, tmp_path):
    """Each masking and instance flag, set away from its default, is what the dataset was made with (its
    schema.json records the options, the masking and the dynamic-masking flag)."""
    from bertforge.cli import main as cli

    flags = {"--max-seq-length": 64, "--max-predictions-per-seq": 7, "--masked-lm-prob": 0.2, "--dupe-factor": 1,
             "--short-seq-prob": 0.3, "--random-seed": 99}  # fmt: skip
    args = [arg for flag, value in flags.items() for arg in (flag, str(value))]
    out = tmp_path / "data"
    code = cli(["create-pretraining-data", "--input", str(english_text), "--vocab", str(sample("vocab-en")),
                "--output", str(out), "--quiet", "--workers", "1", "--whole-word-mask", "--dynamic-masking",
                "--no-do-lower-case", *args])  # fmt: skip
    assert code == 0
    schema = json.loads((out / "schema.json").read_text())
    expected = {flag.removeprefix("--").replace("-", "_"): value for flag, value in flags.items()}
    expected |= {"whole_word_mask": True, "dynamic_masking": True, "do_lower_case": False}
    options = schema["parameters"]["options"]
    assert {k: options[k] for k in expected} == expected
    assert {k: v for k, v in options.items() if k not in expected} == {
        k: v for k, v in dataclasses.asdict(CreateOptions()).items() if k not in expected
    }
    assert schema["dynamic_masking"] is True and schema["max_predictions_per_seq"] == 7
    masking = schema["masking"]
    assert (masking["whole_word_mask"], masking["masked_lm_prob"], masking["max_predictions_per_seq"]) == (True, 0.2, 7)


@pytest.mark.parametrize("prob", [0.02, 0.15, 0.5])
def test_each_instance_gets_googles_number_of_masks(prob):
    """num_to_predict = min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob))) as in Google's
    create_pretraining_data.py, computed here by hand for instances of 5 to 40 tokens: a small probability still
    masks one token of a short instance, a large one stops at max_predictions_per_seq."""
    lengths = np.arange(5, 41)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    a_lengths = (lengths - 3) // 2  # [CLS] A [SEP] B [SEP]
    ids = np.full(offsets[-1], 1000, dtype=np.int64)
    config = MaskingConfig(max_predictions_per_seq=12, masked_lm_prob=prob, mask_id=103, vocab_size=30522)
    masked = mask_instances(ids, offsets, a_lengths, config, np.random.default_rng(0))
    expected = [min(12, max(1, round(n * prob))) for n in lengths.tolist()]
    assert masked.counts.tolist() == expected
