"""A synthetic sentence-polarity task for fine-tuning and prediction tests: a tiny model learns it in seconds."""

import csv
import random

GOOD = ["good", "great", "excellent", "wonderful", "superb", "lovely"]
BAD = ["bad", "awful", "terrible", "boring", "dreadful", "poor"]
NOUNS = ["movie", "film", "story", "cast", "plot", "ending", "script", "music"]


def sentences(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(GOOD if positive else BAD)
        filler = " ".join(rng.choice(NOUNS) for _ in range(rng.randint(0, 12)))
        rows.append((f"the {rng.choice(NOUNS)} was {word} {filler}".strip(), "pos" if positive else "neg"))
    return rows


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path
