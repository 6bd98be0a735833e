"""Load test of a running `lablens serve` (scripts/bench-serve.sh starts it): for each client
concurrency, that many threads each send REQUESTS chat completions (greedy, MAX_TOKENS new
tokens, a discharge summary of sample_data/ as the prompt) with urllib, one after another; prints
requests/s, P50 and P95 latency, generated tokens/s and the errors, one line a level and a JSON
summary last.

Usage: python3 bench_serve.py URL --concurrency 1,8,32 --requests 8 --max-tokens 64
"""

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("--concurrency", default="1,8,32")
parser.add_argument("--requests", type=int, default=8)
parser.add_argument("--max-tokens", type=int, default=64)
parser.add_argument("--data", default="sample_data/discharge.jsonl")
args = parser.parse_args()

with open(args.data) as f:
    notes = [json.loads(line)["input"] for line in f if line.strip()][:64]


def request(note):
    body = json.dumps({
        "messages": [{"role": "user", "content": note}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
    }).encode()
    req = urllib.request.Request(
        args.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["usage"]["completion_tokens"]


def level(clients):
    latencies, errors, tokens = [], [], [0]
    lock = threading.Lock()

    def client(i):
        for k in range(args.requests):
            started = time.perf_counter()
            try:
                n = request(notes[(i * args.requests + k) % len(notes)])
                with lock:
                    latencies.append(time.perf_counter() - started)
                    tokens[0] += n
            except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
                with lock:
                    errors.append(str(e))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None
    return {
        "clients": clients,
        "requests": clients * args.requests,
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_s": round(pick(0.5), 3) if latencies else None,
        "p95_s": round(pick(0.95), 3) if latencies else None,
        "mean_s": round(statistics.mean(latencies), 3) if latencies else None,
        "tokens_per_s": round(tokens[0] / wall, 1),
    }


results = []
for clients in [int(c) for c in args.concurrency.split(",")]:
    r = level(clients)
    results.append(r)
    print(
        f"{r['clients']:>3} clients x {args.requests}: {r['requests_per_s']:>6} requests/s, "
        f"P50 {r['p50_s']} s, P95 {r['p95_s']} s, {r['tokens_per_s']} tokens/s, "
        f"{r['errors']} errors", flush=True,
    )
print(json.dumps({"max_tokens": args.max_tokens, "levels": results}))
