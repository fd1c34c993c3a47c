"""`create-pretraining-data`: raw text -> MLM/NSP instances in shards, in parallel, resumable.

Work is planned as chunks of whole documents (~`chunk_mb` of text each, from the files' bytes alone) grouped
into output shards (~`shard_mb`). Each chunk is processed independently with its own seeded random streams
(random-next sentences are drawn from the chunk's documents), so the output is identical for any number of
workers, memory is bounded by a shard, and a killed run resumes at the first unfinished shard.

A document longer than a chunk (a book; a corpus without blank lines is one document) is cut at line ends
into pieces of about `chunk_mb`, each a document of its own (see `corpus`): so a one-document corpus is
worked on in parallel and streamed like any other. Google's algorithm runs unchanged on each piece, and the
pieces share the document's one target-length draw per pass (see `instances`); all that differs from one
whole document is at the cuts (a segment ends there as at a document end, about one instance in a thousand
at 128 tokens and 1 MB pieces) and where random segments B come from (the piece, as with any chunk).
Corpora whose documents fit in `chunk_mb` are not cut: their output is as before.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bertforge.data import corpus, shards
from bertforge.data.documents import tokenize_documents
from bertforge.data.instances import assemble, create_instances
from bertforge.data.masking import MaskingConfig, mask_instances
from bertforge.errors import BertforgeError, Interrupted
from bertforge.tokenization import FullTokenizer

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]", "[UNK]")


@dataclass
class CreateOptions:
    """Google's create_pretraining_data.py flags and defaults, plus our own."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    dupe_factor: int = 10
    short_seq_prob: float = 0.1
    random_seed: int = 12345
    do_lower_case: bool = True
    whole_word_mask: bool = False
    dynamic_masking: bool = False  # store unmasked instances; masks are drawn at load time, fresh every epoch
    chunk_mb: float = 1.0  # unit of work, pool random-next sentences come from, longest document left whole
    shard_mb: float = 64.0  # text per output shard: bounds memory

    def validate(self) -> None:
        if self.max_seq_length < 5:
            raise BertforgeError(
                f"max_seq_length {self.max_seq_length} is too small (needs room for [CLS] A [SEP] B [SEP])"
            )
        if self.max_seq_length > shards.MAX_SEQ_LENGTH:
            raise BertforgeError(
                f"max_seq_length {self.max_seq_length} is above the {shards.MAX_SEQ_LENGTH} the format holds"
            )
        if not 0 < self.masked_lm_prob < 1:
            raise BertforgeError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if self.max_predictions_per_seq < 1 or self.dupe_factor < 1:
            raise BertforgeError("max_predictions_per_seq and dupe_factor must be at least 1")
        if self.max_predictions_per_seq > self.max_seq_length:
            raise BertforgeError(
                f"max_predictions_per_seq {self.max_predictions_per_seq} is above max_seq_length "
                f"{self.max_seq_length}: an instance has no more tokens than that to mask"
            )
        if self.random_seed < 0:
            raise BertforgeError(f"random_seed must be >= 0, got {self.random_seed}")
        if not 0 <= self.short_seq_prob <= 1:
            raise BertforgeError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")


@dataclass
class CreateReport:
    instances: int = 0
    tokens: int = 0
    shards: int = 0
    shards_reused: int = 0
    read: corpus.ReadReport = field(default_factory=corpus.ReadReport)
    seconds: float = 0.0

    def summary(self) -> str:
        r = self.read
        text = (
            f"{self.instances} instances ({self.tokens} tokens) in {self.shards} shards from {r.documents} documents, "
            f"{r.lines} lines in {self.seconds:.1f}s"
        )
        if self.shards_reused:
            text += f"; {self.shards_reused} shards kept from the interrupted run"
        skipped = [
            f"{n} {what}"
            for n, what in ((r.invalid_utf8, "lines of invalid UTF-8"), (r.too_long, "over-long lines"))
            if n
        ]
        if skipped:
            text += f"; skipped {' and '.join(skipped)}" + "".join(f"\n  e.g. {e}" for e in r.examples)
        return text


@dataclass
class _Job:
    """What a worker needs besides the chunk (inherited through fork, or rebuilt after spawn)."""

    vocab_file: str
    options: CreateOptions
    tokenizer: FullTokenizer | None = None


_JOB: _Job | None = None  # set once per worker process by _init_worker; never changed afterwards


def _init_worker(job: _Job, pool_process: bool) -> None:
    global _JOB
    if pool_process:
        # One process per core: Rust's thread pool would only oversubscribe.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.environ["RAYON_NUM_THREADS"] = "1"
        # Ctrl-C reaches the whole process group: the main process stops the pool (no traceback per worker).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if job.tokenizer is None:
        job.tokenizer = FullTokenizer(job.vocab_file, do_lower_case=job.options.do_lower_case)
    _JOB = job


def process_chunk(chunk: corpus.Chunk) -> tuple[dict[str, np.ndarray], corpus.ReadReport]:
    """Read, tokenize, build and (unless dynamic) mask the instances of one chunk."""
    job = _JOB
    opts, tok = job.options, job.tokenizer
    dtype = shards.id_dtype(len(tok))
    documents, pieces, report = corpus.read_documents(chunk)
    docs = tokenize_documents(documents, tok, dtype, whole_words=opts.whole_word_mask)
    if docs.num_documents == 0:
        return {}, report
    rng = random.Random(f"{opts.random_seed}:{chunk.index}")  # str seeds are stable across runs and platforms
    # The pieces of a cut document (named by the chunk where it begins) share its per-pass draws.
    names = {d: f"{opts.random_seed}:document {pieces[s]}" for d, s in enumerate(docs.source.tolist()) if s in pieces}
    spans = create_instances(docs, opts.max_seq_length, opts.short_seq_prob, opts.dupe_factor, rng, names)
    ids, offsets, word_starts = assemble(docs, spans, tok.vocab["[CLS]"], tok.vocab["[SEP]"])
    columns = {
        "input_ids": ids,
        "lengths": np.diff(offsets),
        "a_lengths": spans.a_len,
        "next_sentence_labels": spans.is_random_next,
    }
    if opts.dynamic_masking:
        if word_starts is not None:
            columns["word_starts"] = word_starts
    else:
        masked = mask_instances(
            ids,
            offsets,
            spans.a_len,
            masking_config(opts, tok),
            np.random.default_rng([opts.random_seed, chunk.index]),
            word_starts,
        )
        columns["input_ids"] = masked.ids
        columns["masked_lm_positions"] = masked.positions
        columns["masked_lm_ids"] = masked.labels
        columns["masked_lm_counts"] = masked.counts
    specs = shards.column_specs(
        len(tok), opts.max_seq_length, opts.max_predictions_per_seq, opts.dynamic_masking, opts.whole_word_mask
    )
    return shards.as_stored(columns, specs), report


def masking_config(opts: CreateOptions, tokenizer: FullTokenizer) -> MaskingConfig:
    return MaskingConfig(
        opts.max_predictions_per_seq,
        opts.masked_lm_prob,
        tokenizer.vocab["[MASK]"],
        len(tokenizer),
        opts.whole_word_mask,
    )


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def create_pretraining_data(
    inputs: list[str | Path],
    vocab_file: str | Path,
    output: str | Path,
    options: CreateOptions | None = None,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> CreateReport:
    """Build a sharded pretraining dataset in `output` from sentence-per-line text files or directories."""
    start = time.perf_counter()
    opts = options or CreateOptions()
    opts.validate()
    files = corpus.find_input_files(inputs)
    tokenizer = FullTokenizer(vocab_file, do_lower_case=opts.do_lower_case)
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.vocab]
    if missing:
        raise BertforgeError(f"{vocab_file}: vocab lacks {', '.join(missing)} (needed to build instances)")
    out = Path(output)
    params = {
        "options": asdict(opts),
        "vocab": shards.vocab_fingerprint(vocab_file)
        | {"size": len(tokenizer), "path": str(Path(vocab_file).resolve())},
        "inputs": [{"path": str(p), "bytes": p.stat().st_size} for p in files],
    }
    shards.prepare_output(out, params, resume, overwrite)

    chunks = corpus.plan_chunks(files, max(1, int(opts.chunk_mb * 2**20)))
    groups = _group(chunks, opts.shard_mb * 2**20)
    report = CreateReport(shards=len(groups))
    todo = []
    for index, group in enumerate(groups):
        if resume and shards.read_shard_meta(out, index) is not None:
            report.shards_reused += 1
        else:
            todo.append((index, group))
    job = _Job(str(vocab_file), opts, tokenizer)
    bar = tqdm(
        total=sum(c.end - c.start for _, g in todo for c in g),
        unit="B",
        unit_scale=True,
        desc="create-pretraining-data",
        disable=not progress,
    )
    try:
        _write_shards(out, todo, _pool(job, workers), bar)
    except KeyboardInterrupt:
        written = sum(shards.read_shard_meta(out, index) is not None for index in range(len(groups)))
        raise Interrupted(
            signal.SIGINT, f"{written} of {len(groups)} shards written; rerun with --resume to continue"
        ) from None
    finally:
        bar.close()
    metas = [shards.read_shard_meta(out, index) for index in range(len(groups))]
    report.instances = sum(meta["instances"] for meta in metas)
    report.tokens = sum(meta["tokens"] for meta in metas)
    for meta in metas:
        report.read.merge(corpus.ReadReport(**meta["read"]))
    report.seconds = time.perf_counter() - start
    if report.instances == 0:  # nothing that looks like a dataset is left behind
        shards.clear_dataset(out)
        raise BertforgeError(f"no instances were created: the input has no usable text ({report.summary()})")
    shards.write_schema(
        out,
        metas,
        max_seq_length=opts.max_seq_length,
        max_predictions=opts.max_predictions_per_seq,
        dynamic=opts.dynamic_masking,
        whole_word=opts.whole_word_mask,
        masking=asdict(masking_config(opts, tokenizer)),
        vocab=params["vocab"],
        special_ids={t: tokenizer.vocab[t] for t in SPECIAL_TOKENS},
        parameters=params,
    )
    return report


def _write_shards(out: Path, todo: list[tuple[int, list[corpus.Chunk]]], pool: _pool, bar: tqdm) -> None:
    """Process the chunks of the shards to do (index, chunks) through the pool, writing each shard in turn."""
    instances = 0
    with pool as results:
        stream = results([chunk for _, group in todo for chunk in group])
        for index, group in todo:
            parts = []
            shard_read = corpus.ReadReport()
            for chunk in group:
                columns, read = next(stream)
                parts.append(columns)
                shard_read.merge(read)
                bar.update(chunk.end - chunk.start)
            columns = _concat(parts)
            count = len(columns.get("lengths", ()))
            meta = {
                "instances": count,
                "tokens": int(columns["lengths"].sum()) if count else 0,
                "chunks": [group[0].index, group[-1].index],
                "read": asdict(shard_read),
            }
            shards.write_shard(out, index, columns, meta)
            instances += count
            bar.set_postfix(instances=instances)


def _group(chunks: list[corpus.Chunk], shard_bytes: float) -> list[list[corpus.Chunk]]:
    groups: list[list[corpus.Chunk]] = [[]]
    size = 0
    for chunk in chunks:
        if groups[-1] and size >= shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += chunk.end - chunk.start
    return groups if groups[0] else []


class _pool:
    """`with _pool(job, workers) as results: for r in results(chunks)` — ordered results, in-process for 1."""

    def __init__(self, job: _Job, workers: int):
        self.job, self.workers, self.pool = job, max(1, workers), None

    def __enter__(self):
        if self.workers == 1:
            _init_worker(self.job, pool_process=False)
            return lambda chunks: map(process_chunk, chunks)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        job = self.job if method == "fork" else _Job(self.job.vocab_file, self.job.options)
        self.pool = multiprocessing.get_context(method).Pool(self.workers, _init_worker, (job, True))
        return lambda chunks: self.pool.imap(process_chunk, chunks)

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
