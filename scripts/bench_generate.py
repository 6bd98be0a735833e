#!/usr/bin/env python3
"""The measuring side of scripts/bench-generate.sh: greedy generation speed of lablens, llama.cpp and transformers.

  bench_generate.py [--quick] LABLENS MODEL          the whole comparison: table, ratios, agreement checks
  bench_generate.py --builds OLD NEW MODEL           two lablens binaries, alternating: tokens/s, new/old and
                                                     whether their greedy ids agree
  bench_generate.py --engine ENGINE MODEL REQUEST    time one Python-hosted engine (llama.cpp or transformers)
                                                     in this process; REQUEST is a JSON file {"text", "ids",
                                                     "new_tokens", "repeats"}; prints one JSON line

Every engine gets the same prompt ids (lablens' tokenizer), generates exactly the asked number of tokens
greedily (end of sequence ignored) and is timed after one warm-up generation; the median of the timed runs
is reported. Prefill is the forward over the prompt that yields the first new token; decode is the
single-token forwards after it (new tokens - 1). Each engine runs in its own child process so that its
peak resident memory can be read from the kernel when it exits.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

THREADS = 2
PROMPT_SOURCE = "sample_data/discharge.jsonl"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT_TOKENS = (290, 320)
FULL = {"new_tokens": 128, "repeats": 3}
QUICK = {"new_tokens": 16, "repeats": 1}
# Below this many identical greedy tokens, lablens --dequantize and transformers did not compute the same thing.
SAME_WEIGHTS_AGREEMENT = 32


def run_child(what, command, env=None):
    """Runs a command to completion; returns its stdout and its own peak RSS in MiB, or exits naming `what`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would mix in every earlier engine's peak.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-15:]
            if child.returncode < 0:
                how = f"was killed by {signal.Signals(-child.returncode).name}"
            else:
                how = f"exited with {child.returncode}"
            sys.exit(f"{what} failed: {command[0]} {how}\n" + "\n".join(tail))
        out.seek(0)
        return out.read().decode(), usage.ru_maxrss / 1024


def lablens_env():
    # candle's CPU kernels and gemm run on rayon's pool; pin it so every engine gets the same two threads.
    return dict(os.environ, RAYON_NUM_THREADS=str(THREADS))


def lablens_ids(lablens, model, text):
    out, _ = run_child("lablens tokenize", [lablens, "tokenize", "--model", model, "--text", text, "--json"],
                       lablens_env())
    return json.loads(out)["ids"]


def build_prompt(lablens, model):
    """The first discharge record's input, cut at the last sentence or line end that keeps it within PROMPT_TOKENS."""
    with open(os.path.join(REPO, PROMPT_SOURCE)) as f:
        text = json.loads(f.readline())["input"]
    cuts = sorted({m.end() for m in re.finditer(r"\.(?=\s|$)", text)} | {m.start() for m in re.finditer(r"\n", text)})
    low, high = 0, len(cuts) - 1
    best = None
    while low <= high:  # token counts grow with the prefix, so bisect on the cut points
        middle = (low + high) // 2
        ids = lablens_ids(lablens, model, text[:cuts[middle]])
        if len(ids) <= PROMPT_TOKENS[1]:
            best = (text[:cuts[middle]], ids)
            low = middle + 1
        else:
            high = middle - 1
    if best is None or len(best[1]) < PROMPT_TOKENS[0]:
        got = "none" if best is None else len(best[1])
        sys.exit(f"no sentence end of the first record of {PROMPT_SOURCE} gives {PROMPT_TOKENS[0]}-{PROMPT_TOKENS[1]} "
                 f"tokens (closest below: {got})")
    return best


def median_timing(runs, prompt_tokens, new_tokens):
    """runs: (ids, prefill_s, decode_s) per timed generation -> the engine's summary."""
    return {
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "prefill_s": statistics.median(r[1] for r in runs),
        "decode_s": statistics.median(r[2] for r in runs),
        "ids": runs[0][0],
    }


def time_lablens(lablens, model, text, prompt_ids, new_tokens, repeats, dequantize):
    what = "lablens generate" + (" --dequantize" if dequantize else "")
    command = [lablens, "generate", "--model", model, "--prompt", text, "--raw", "--greedy",
               "--max-new-tokens", str(new_tokens), "--ignore-eos", "--json"] + (["--dequantize"] if dequantize else [])
    runs, peak = [], 0.0
    for _ in range(1 + repeats):  # one warm-up (page cache, allocator), then the timed runs
        out, rss = run_child(what, command, lablens_env())
        peak = max(peak, rss)
        doc = json.loads(out)
        timing, ids = doc["timing"], doc["outputs"][0]["ids"]
        if timing["prompt_tokens"] != len(prompt_ids) or timing["new_tokens"] != new_tokens or len(ids) != new_tokens:
            sys.exit(f"{what} took {timing['prompt_tokens']} prompt tokens and made {timing['new_tokens']} "
                     f"({len(ids)} ids); expected {len(prompt_ids)} and {new_tokens}")
        runs.append((ids, timing["prefill_s"], timing["decode_s"]))
    return dict(median_timing(runs[1:], len(prompt_ids), new_tokens), peak_mib=peak)


def time_python_engine(engine, model, text, prompt_ids, new_tokens, repeats):
    with tempfile.NamedTemporaryFile("w", suffix=".json") as request:
        json.dump({"text": text, "ids": prompt_ids, "new_tokens": new_tokens, "repeats": repeats}, request)
        request.flush()
        out, peak = run_child(engine, [sys.executable, __file__, "--engine", engine, model, request.name])
    return dict(json.loads(out), peak_mib=peak)


def repeat_timed(generate_once, repeats, prompt_tokens, new_tokens):
    generate_once()
    return median_timing([generate_once() for _ in range(repeats)], prompt_tokens, new_tokens)


def transformers_engine(model, request):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    lm = AutoModelForCausalLM.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model),
                                              dtype=torch.float32)
    lm.eval()
    prompt = torch.tensor([request["ids"]])
    new_tokens = request["new_tokens"]

    def generate_once():
        with torch.inference_mode():
            started = time.perf_counter()
            # logits_to_keep=1: like lablens and llama.cpp, project only the last position onto the vocabulary.
            out = lm(input_ids=prompt, use_cache=True, logits_to_keep=1)
            ids = [int(out.logits[0, -1].argmax())]
            prefilled = time.perf_counter()
            while len(ids) < new_tokens:
                out = lm(input_ids=torch.tensor([[ids[-1]]]), past_key_values=out.past_key_values, use_cache=True)
                ids.append(int(out.logits[0, -1].argmax()))
            return ids, prefilled - started, time.perf_counter() - prefilled

    return repeat_timed(generate_once, request["repeats"], len(request["ids"]), new_tokens)


def llama_cpp_engine(model, request):
    import llama_cpp
    import numpy as np

    ids = request["ids"]
    batch = max(512, len(ids))  # the whole prompt in one batch, as lablens and transformers see it
    llm = llama_cpp.Llama(model_path=model, n_threads=THREADS, n_threads_batch=THREADS, n_ctx=1024,
                          n_batch=batch, n_ubatch=batch, verbose=False)
    own = llm.tokenize(request["text"].encode(), add_bos=False, special=True)
    n_vocab = llm.n_vocab()
    new_tokens = request["new_tokens"]

    def argmax_last():
        return int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)).argmax())

    def generate_once():
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.eval(ids)
        out = [argmax_last()]
        while len(out) < new_tokens:
            llm.eval([out[-1]])
            out.append(argmax_last())
        # llama.cpp's own counters: time inside llama_decode, without the Python binding around it.
        perf = llama_cpp.llama_perf_context(llm.ctx)
        if perf.n_p_eval != len(ids) or perf.n_eval != new_tokens - 1:
            sys.exit(f"llama.cpp counted {perf.n_p_eval} prompt and {perf.n_eval} decode tokens; "
                     f"expected {len(ids)} and {new_tokens - 1}")
        return out, perf.t_p_eval_ms / 1000, perf.t_eval_ms / 1000

    result = repeat_timed(generate_once, request["repeats"], len(ids), new_tokens)
    result["own_tokenizer_ids"] = own
    return result


def agreement(a, b):
    """How many greedy ids two engines share before the first difference."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefill_rate(r):
    return r["prompt_tokens"] / r["prefill_s"]


def decode_rate(r):
    return (r["new_tokens"] - 1) / r["decode_s"]


LABELS = {
    "lablens": "lablens (Q4_1)",
    "llama.cpp": "llama.cpp via llama-cpp-python (Q4_1)",
    "transformers": "transformers (GGUF dequantized, f32)",
    "lablens-f32": "lablens --dequantize (f32)",
}


def report(model, prompt_ids, settings, rows):
    print(f"\n{model}\nprompt: {len(prompt_ids)} tokens (first record of {PROMPT_SOURCE}, cut at a sentence end); "
          f"{settings['new_tokens']} new tokens, greedy, batch 1, {THREADS} threads; "
          f"median of {settings['repeats']} after a warm-up\n")
    print(f"{'engine':<40} {'prompt tok':>10} {'prefill tok/s':>14} {'decode tok/s':>13} {'peak RSS MiB':>13}")
    print(f"{'-' * 40} {'-' * 10} {'-' * 14} {'-' * 13} {'-' * 13}")
    for key, r in rows.items():
        print(f"{LABELS[key]:<40} {r['prompt_tokens']:>10} {prefill_rate(r):>14.1f} {decode_rate(r):>13.1f} "
              f"{r['peak_mib']:>13.0f}")
    print()
    for phase, rate, goals in (("decode", decode_rate, (" (goal >= 1.0x)", " (goal >= 10x)")),
                               ("prefill", prefill_rate, ("", ""))):
        for (a, b), goal in zip((("lablens", "llama.cpp"), ("lablens", "transformers")), goals):
            print(f"{phase}: {a} / {b} = {rate(rows[a]) / rate(rows[b]):.2f}x{goal}")
        print(f"{phase}: lablens --dequantize / transformers = "
              f"{rate(rows['lablens-f32']) / rate(rows['transformers']):.2f}x (both f32 weights)")
    n = settings["new_tokens"]
    quantized = agreement(rows["lablens"]["ids"], rows["llama.cpp"]["ids"])
    same = agreement(rows["lablens-f32"]["ids"], rows["transformers"]["ids"])
    print(f"\ngreedy ids: lablens and llama.cpp (both Q4_1) agree on the first {quantized} of {n} tokens")
    print(f"greedy ids: lablens --dequantize and transformers (both f32) agree on the first {same} of {n} tokens")
    if same < min(SAME_WEIGHTS_AGREEMENT, n):
        print(f"WARNING: the f32 engines should agree on at least {min(SAME_WEIGHTS_AGREEMENT, n)} tokens; "
              "they did not compute the same thing")
    own = rows["llama.cpp"]["own_tokenizer_ids"]
    if own != prompt_ids:
        print(f"WARNING: llama.cpp's tokenizer gives {len(own)} ids that differ from lablens' {len(prompt_ids)} from "
              f"position {agreement(own, prompt_ids)} on; every engine was fed lablens' ids")


def compare(lablens, model, settings):
    print("building the prompt with lablens tokenize", file=sys.stderr)
    text, prompt_ids = build_prompt(lablens, model)
    args = (model, text, prompt_ids, settings["new_tokens"], settings["repeats"])
    engines = {
        "lablens": lambda: time_lablens(lablens, *args, dequantize=False),
        "llama.cpp": lambda: time_python_engine("llama.cpp", *args),
        "transformers": lambda: time_python_engine("transformers", *args),
        "lablens-f32": lambda: time_lablens(lablens, *args, dequantize=True),
    }
    rows = {}
    for key, measure in engines.items():
        print(f"timing {LABELS[key]} (warm-up + {settings['repeats']} timed)", file=sys.stderr)
        rows[key] = measure()
    report(model, prompt_ids, settings, rows)


def builds(old, new, model, settings, rounds=6):
    """Two lablens binaries side by side on the Q4_1 model, alternating so that drift hits both alike: decode
    and prefill tokens/s, the ratio new/old, and whether their greedy ids are the same."""
    text, prompt_ids = build_prompt(new, model)
    args = (model, text, prompt_ids, settings["new_tokens"], settings["repeats"])
    runs = {"old": [], "new": []}
    for _ in range(rounds):
        for key, binary in (("old", old), ("new", new)):
            print(f"timing the {key} build ({binary})", file=sys.stderr)
            runs[key].append(time_lablens(binary, *args, dequantize=False))
    rates = {}
    for key, rows in runs.items():
        prefill = statistics.median(len(prompt_ids) / r["prefill_s"] for r in rows)
        decode = statistics.median(settings["new_tokens"] / r["decode_s"] for r in rows)
        rates[key] = (prefill, decode)
    print(f"\ngenerate, {len(prompt_ids)}-token prompt, {settings['new_tokens']} new tokens, batch 1, {THREADS} threads, "
          f"{rounds} rounds of {settings['repeats']} timed runs")
    print(f"{'build':<8} {'prefill tok/s':>14} {'decode tok/s':>14}")
    for key in ("old", "new"):
        print(f"{key:<8} {rates[key][0]:>14.1f} {rates[key][1]:>14.1f}")
    print(f"{'new/old':<8} {rates['new'][0] / rates['old'][0]:>13.3f}x {rates['new'][1] / rates['old'][1]:>13.3f}x")
    same = all(r["ids"] == runs["old"][0]["ids"] for rows in runs.values() for r in rows)
    print(f"greedy ids of every run the same: {same}")
    return same


ENGINES = {"llama.cpp": llama_cpp_engine, "transformers": transformers_engine}


def main(argv):
    if len(argv) == 4 and argv[0] == "--engine" and argv[1] in ENGINES:
        with open(argv[3]) as f:
            request = json.load(f)
        print(json.dumps(ENGINES[argv[1]](argv[2], request)))
    elif len(argv) == 4 and argv[0] == "--builds":
        sys.exit(0 if builds(argv[1], argv[2], argv[3], FULL) else 1)
    elif len(argv) == 3 and argv[0] == "--quick":
        compare(argv[1], argv[2], QUICK)
    elif len(argv) == 2 and not argv[0].startswith("-"):
        compare(argv[0], argv[1], FULL)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
