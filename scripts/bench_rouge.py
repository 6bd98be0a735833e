#!/usr/bin/env python3
"""The Python side of scripts/bench-rouge.sh.

  bench_rouge.py --make RECORDS.jsonl PAIRS.jsonl   pairs of discharge-length texts: each record's
                                                    target as reference, a perturbed copy (words
                                                    dropped, swapped, replaced, lines reordered)
                                                    as prediction; seeded
  bench_rouge.py PAIRS.jsonl                        rouge-score (rouge1, rouge2, rougeL, rougeLsum,
                                                    use_stemmer=True) over every pair on one thread;
                                                    prints {"pairs", "seconds", "cpu_seconds",
                                                    "mean_fmeasure"}
"""
import json
import random
import sys
import time

WORDS = ["doctor", "medicine", "heart", "blood", "pain", "daily", "walk", "water", "sugar", "kidney"]


def perturb(text, rng):
    lines = text.split("\n")
    out = []
    for line in lines:
        words = [w for w in line.split(" ") if rng.random() > 0.12]
        for i in range(len(words) - 1):
            if rng.random() < 0.05:
                words[i], words[i + 1] = words[i + 1], words[i]
        words = [rng.choice(WORDS) if rng.random() < 0.05 else w for w in words]
        out.append(" ".join(words))
    if len(out) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return "\n".join(out)


def make(records, pairs):
    rng = random.Random(7)
    with open(records) as f, open(pairs, "w") as out:
        for i, line in enumerate(f):
            r = json.loads(line)
            out.write(json.dumps({"id": r["id"], "reference": r["target"],
                                  "prediction": perturb(r["target"], rng)}) + "\n")


def score(pairs):
    from rouge_score import rouge_scorer

    rows = [json.loads(l) for l in open(pairs)]
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = [scorer.score(r["reference"], r["prediction"]) for r in rows]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    mean = {t: sum(s[t].fmeasure for s in scores) / len(scores) for t in types}
    print(json.dumps({"pairs": len(rows), "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "mean_fmeasure": mean}))


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        make(sys.argv[2], sys.argv[3])
    else:
        score(sys.argv[1])
