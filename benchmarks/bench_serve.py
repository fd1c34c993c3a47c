"""A load test of `bertforge serve` on loopback: requests/s and latency (p50, p99) at several concurrencies, with
dynamic batching on and off, on real short sentences (Pang & Lee), zero errors required.

The model is all-MiniLM-L6-v2's real encoder with a two-label classification head (random: speed does not depend
on the head's values), served by `python -m bertforge serve --port 0` in a subprocess, torch backend, `--threads`.
Clients are threads in this process, each a closed loop on its own keep-alive connection (send one sentence,
wait for the answer, send the next) for `--seconds` per setting. The server and the clients share this machine's
cores, as they would in any loopback test. The server's resident memory is read from /proc before and after
each setting: it must not grow with the number of requests. Batching on vs off is the ratio of requests/s at
the highest concurrency.

Before the load test, what batching saves in the model alone, without HTTP: the same model in this process
(`Predictor`, same threads), the same sentences predicted one per call and then in calls of 16 (the server's
`--max-batch-size`), alternating; the ratio of the times per sentence. On a CPU the matrix products of one
short sentence already keep the cores busy, so this ratio is small; what batching saves beyond it is the
server's cost per forward pass (the hand-off to the model thread, Python around the model).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_serve.py [--seconds 30] [--concurrency 1,8,32]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from bertforge.inference import Predictor  # noqa: E402
from bertforge.model_folder import ModelSettings, save_model_folder  # noqa: E402
from bertforge.modeling import BertConfig  # noqa: E402
from bertforge.modeling.heads import BertForSequenceClassification  # noqa: E402
from bertforge.samples import fetch  # noqa: E402


def model_folder(work: Path) -> Path:
    minilm = fetch("minilm")
    config = BertConfig.from_file(minilm / "config.json")
    config.num_labels = 2
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm, config=config)
    settings = ModelSettings("classification", ["negative", "positive"], max_seq_length=128, task={"format": "csv"})
    return save_model_folder(work / "model", model, settings, minilm / "vocab.txt")


def sentences() -> list[str]:
    with open(fetch("polarity-en"), encoding="utf-8-sig", newline="") as f:
        return [text.strip() for _, text in csv.reader(f)]


def start_server(folder: Path, threads: int, batching: bool) -> tuple[subprocess.Popen, str, int]:
    command = [sys.executable, "-m", "bertforge", "serve", "--model", str(folder), "--port", "0"]
    command += ["--threads", str(threads), "--max-concurrent-requests", "1024"]
    command += [] if batching else ["--no-batching"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = server.stdout.readline()
    if " at " not in ready:
        server.kill()
        raise SystemExit(f"the server did not start: {ready!r}")
    url = ready.split(" at ", 1)[1].split()[0]
    host, port = url.removeprefix("http://").split(":")
    return server, host, int(port)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(host: str, port: int, texts: list[str], concurrency: int, seconds: float) -> dict:
    """`concurrency` closed-loop clients for `seconds`: requests/s, latency percentiles, errors."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = time.perf_counter() + seconds
    start = threading.Barrier(concurrency + 1)

    def client(i: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        n = i
        start.wait()
        while time.perf_counter() < deadline:
            body = json.dumps({"inputs": texts[n % len(texts)]})
            n += concurrency
            t0 = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                ok = response.status == 200 and answer[0]["label"] in ("negative", "positive")
            except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            if ok:
                latencies[i].append(time.perf_counter() - t0)
            else:
                errors[i] += 1
        connection.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    done = sorted(x for per in latencies for x in per)
    quantile = lambda q: done[min(len(done) - 1, int(q * len(done)))] * 1000 if done else float("nan")  # noqa: E731
    return {"requests": len(done), "errors": sum(errors), "rps": len(done) / elapsed, "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99)}  # fmt: skip


def model_alone(folder: Path, texts: list[str], threads: int, rounds: int = 5, n: int = 256) -> dict:
    """Seconds per sentence predicted one per call vs in calls of 16, in this process, median of `rounds`."""
    predictor = Predictor.from_pretrained(folder, threads=threads)
    texts = texts[:n]
    predictor.predict(texts[:16])  # warm-up
    times: dict[str, list[float]] = {"single": [], "batched": []}
    for _ in range(rounds):
        start = time.perf_counter()
        for text in texts:
            predictor.predict(text)
        times["single"].append((time.perf_counter() - start) / n)
        start = time.perf_counter()
        for i in range(0, n, 16):
            predictor.predict(texts[i : i + 16])
        times["batched"].append((time.perf_counter() - start) / n)
    single, batched = (statistics.median(times[k]) for k in ("single", "batched"))
    return {"single_ms": single * 1000, "batched_ms": batched * 1000, "ratio": single / batched}


def batch_sizes(host: str, port: int) -> float:
    """Mean requests per forward pass so far, from the server's Prometheus metrics."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("bertforge_batch_requests_sum", "bertforge_batch_requests_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("bertforge_batch_requests_count", 0)
    return values.get("bertforge_batch_requests_sum", 0) / count if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    texts = sentences()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, server threads {args.threads}; "
          f"{len(texts)} Pang & Lee sentences (mean {statistics.mean(len(t.split()) for t in texts):.0f} words); "
          f"{args.seconds:.0f} s per setting")  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(Path(tmp))
        alone = model_alone(folder, texts, args.threads)
        print(f"model alone (no HTTP): {alone['single_ms']:.2f} ms per sentence one at a time, "
              f"{alone['batched_ms']:.2f} ms in calls of 16: {alone['ratio']:.2f}x", flush=True)  # fmt: skip
        for batching in (True, False):
            server, host, port = start_server(folder, args.threads, batching)
            try:
                load(host, port, texts, 4, 3)  # warm-up: first calls of each shape
                for c in levels:
                    before = rss_mb(server.pid)
                    r = load(host, port, texts, c, args.seconds)
                    r |= {"rss_before_mb": before, "rss_after_mb": rss_mb(server.pid)}
                    r["requests_per_pass"] = batch_sizes(host, port) if batching else 1.0
                    results[(batching, c)] = r
                    print(f"batching {'on ' if batching else 'off'} concurrency {c:3d}: {r['rps']:7.1f} req/s, "
                          f"p50 {r['p50_ms']:7.1f} ms, p99 {r['p99_ms']:7.1f} ms, {r['requests']} requests, "
                          f"{r['errors']} errors, server RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB"
                          + (f", {r['requests_per_pass']:.1f} requests per forward pass (cumulative)"
                             if batching else ""), flush=True)  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=60)
    top = max(levels)
    ratio = results[(True, top)]["rps"] / results[(False, top)]["rps"]
    print(f"dynamic batching at concurrency {top}: {ratio:.2f}x the requests/s without "
          f"(the model alone: {alone['ratio']:.2f}x)")  # fmt: skip
    print(json.dumps({f"{'on' if b else 'off'}-{c}": r for (b, c), r in results.items()}
                     | {"ratio": ratio, "model_alone": alone}))  # fmt: skip
    if any(r["errors"] for r in results.values()):
        raise SystemExit("errors during the load test")


if __name__ == "__main__":
    main()
