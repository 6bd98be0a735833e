#!/usr/bin/env python3
"""The measuring side of scripts/bench-gpu.sh: lablens against transformers (+ PEFT) on one GPU, in bf16.

  bench_gpu.py [--quick] [--device D] [--dtype T] [--train-model M] [--seq N] [--micro-batch N] [--steps N]
              [--train-only | --generate-only] LABLENS MODEL
        training: LoRA on SmolLM2-135M (GGUF dequantized), sequence length 512, micro-batch 16, r=16 on all
        seven targets; lablens trains with --record-batches and transformers + PEFT replays the same batches
        (scripts/bench_train.py's replay); training tokens/s and peak GPU memory side by side, the ratio
        the ratios, and how closely the losses agree.
        generation: greedy decode tokens/s at batch 1 and batch 16 (128 new tokens after each prompt).
  bench_gpu.py --generate-engine REQUEST   transformers' side of the generation timing (a child process)

--train-model trains another model instead of MODEL (a Hugging Face folder such as one that
scripts/make-random-llama.py writes), with --seq and --micro-batch in place of 512 and 16; --train-only skips the
generation timing, --generate-only the training. --qlora trains a GGUF --train-model with its weights kept quantized on the GPU (lablens alone:
the replay has no 4-bit base). --device cuda:0 and --dtype bf16 are the defaults. `--device cpu --dtype bf16 --quick` runs the same code on
the CPU with short shapes: a smoke test of the script, not a measurement. Peak GPU memory is read for both
engines alike, from nvidia-smi's memory in use on the device (sampled every 50 ms, less the reading before the
engine started); transformers' own allocator peak is printed beside it.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

from bench_generate import agreement, run_child
from bench_train import (RECIPE, batch_sha256, config_ron, demo_project, lablens_steps, max_difference, rate,
                         read_batches, train_lablens)

REPO = pathlib.Path(__file__).resolve().parent.parent
FULL = {"steps": 12, "warmup": 2, "max_seq_len": 512, "micro_batch": 16, "new_tokens": 128, "batch": 16}
QUICK = {"steps": 3, "warmup": 1, "max_seq_len": 128, "micro_batch": 2, "new_tokens": 8, "batch": 4}
PROMPTS = REPO / "sample_data" / "discharge.jsonl"
# bf16 rounds every product to 8 bits of mantissa; two engines' losses drift apart by more than f32's 1e-5.
BF16_LOSS_AGREEMENT = 5e-2


class GpuMemory:
    """Peak memory in use on one GPU while a `with` block runs, less the reading before it (nvidia-smi)."""

    def __init__(self, device):
        self.index = device.split(":", 1)[1] if device.startswith("cuda:") else None
        self.peak = None

    def read(self):
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i",
                              self.index], capture_output=True, text=True, check=True).stdout
        return float(out.strip())

    def __enter__(self):
        if self.index is None:
            return self
        self.base = self.read()
        self.highest = self.base
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while not self.done.wait(0.05):
            self.highest = max(self.highest, self.read())

    def __exit__(self, *exc):
        if self.index is not None:
            self.done.set()
            self.thread.join()
            self.peak = max(self.highest, self.read()) - self.base
        return False


def mib(value):
    return "-" if value is None else f"{value:.0f}"


def train(lablens, model, settings, device, dtype):
    recipe = dict(RECIPE, max_seq_len=settings["max_seq_len"])
    gguf = model.endswith(".gguf")
    qlora = settings.get("qlora", False)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        project = demo_project(tmp)
        text = config_ron(model, gguf and not qlora, settings["micro_batch"], 1, settings["steps"], recipe, device,
                          dtype)
        print(f"training lablens for {settings['steps']} steps on {device} in {dtype}", file=sys.stderr)
        with GpuMemory(device) as lablens_memory:
            summary, _ = train_lablens(lablens, project, "gpu", text)
        run_dir = summary["run_dir"]
        rows = {"lablens": lablens_steps(run_dir)}
        memory = {"lablens": lablens_memory.peak}
        doc = {}
        if not qlora:
            print(f"replaying {len(read_batches(run_dir))} steps in transformers + PEFT "
                  f"(batches {batch_sha256(read_batches(run_dir))[:12]})", file=sys.stderr)
            with GpuMemory(device) as torch_memory:
                out, _ = run_child("transformers + PEFT replay",
                                   [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--replay", run_dir])
            doc = json.loads(out)
            rows["torch"] = doc["steps"]
            memory["torch"] = torch_memory.peak
    warmup = settings["warmup"]
    rates = {key: rate(steps, warmup) for key, steps in rows.items()}
    labels = {"lablens": f"lablens ({dtype}, adapters f32)", "torch": f"transformers + PEFT ({dtype})"}
    if qlora:
        labels["lablens"] = f"lablens QLoRA (Q4_0 base, {dtype})"
    name = pathlib.Path(model).name if not gguf or qlora else "SmolLM2-135M-Instruct (GGUF dequantized)"
    print(f"\nTraining: {name}, LoRA r={RECIPE['r']} on all seven targets, "
          f"sequence length {settings['max_seq_len']}, micro-batch {settings['micro_batch']}, {device}; "
          f"{settings['steps']} steps on the same batches, rates over steps {warmup + 1}-{settings['steps']}\n")
    print(f"{'engine':<40} {'tokens/s':>10} {'peak GPU MiB':>13}")
    print(f"{'-' * 40} {'-' * 10} {'-' * 13}")
    for key in rows:
        print(f"{labels[key]:<40} {rates[key]:>10.0f} {mib(memory[key]):>13}")
    if doc.get("gpu_train_peak_mib") is not None:
        print(f"(torch's allocator peaks at {doc['gpu_train_peak_mib']:.0f} MiB while training)")
    if qlora:
        return
    print(f"\ntokens/s: lablens / transformers + PEFT = {rates['lablens'] / rates['torch']:.2f}x")
    if memory["lablens"] and memory["torch"]:
        print(f"peak GPU memory: lablens / transformers + PEFT = {memory['lablens'] / memory['torch']:.2f}x")
    diff, step = max_difference(rows["lablens"], rows["torch"], "loss")
    print(f"loss: lablens and transformers + PEFT differ by at most {diff:.2e} (step {step})")
    if diff > BF16_LOSS_AGREEMENT:
        print(f"WARNING: above {BF16_LOSS_AGREEMENT}: more than bf16 rounding apart")


def prompts(lablens, model, n):
    """The first `n` discharge inputs as raw prompts, with the ids lablens gives them (fed to transformers as they
    are, so that both engines start from the same tokens)."""
    with open(PROMPTS) as f:
        records = [json.loads(line) for _, line in zip(range(n), f)]
    out = []
    for r in records:
        text = r["input"][:1200]
        got, _ = run_child("lablens tokenize", [lablens, "tokenize", "--model", model, "--text", text, "--json"])
        out.append({"id": r["id"], "input": text, "ids": json.loads(got)["ids"]})
    return out


def lablens_generate(lablens, model, batch, settings, device, dtype):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as data:
        for p in batch:
            data.write(json.dumps({"id": p["id"], "text": p["input"]}) + "\n")
        data.flush()
        command = [lablens, "generate", "--model", model, "--dequantize", "--device", device, "--dtype", dtype,
                   "--data", data.name, "--raw", "--greedy", "--max-new-tokens", str(settings["new_tokens"]),
                   "--ignore-eos", "--batch-size", str(len(batch)), "--json"]
        run_child("lablens generate (warm-up)", command)
        out, _ = run_child("lablens generate", command)
    doc = json.loads(out)
    timing = doc["timing"]
    return {"decode": timing["new_tokens"] / timing["decode_s"], "ids": [o["ids"] for o in doc["outputs"]]}


def generate_engine(request_path):
    """transformers' greedy decoding of a batch (left-padded), prefill timed apart from the decode steps."""
    import torch
    from transformers import AutoModelForCausalLM

    with open(request_path) as f:
        request = json.load(f)
    device = request["device"]
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[request["dtype"]]
    model = pathlib.Path(request["model"])
    lm = AutoModelForCausalLM.from_pretrained(model.parent, gguf_file=model.name, dtype=dtype).to(device).eval()
    rows = request["ids"]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def once():
        with torch.inference_mode():
            sync()
            started = time.perf_counter()
            out = lm(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
            tokens = out.logits[:, -1].argmax(-1, keepdim=True)
            produced, attention = [tokens], mask
            sync()
            prefilled = time.perf_counter()
            for _ in range(request["new_tokens"] - 1):
                attention = torch.cat([attention, torch.ones_like(tokens)], dim=1)
                out = lm(input_ids=tokens, attention_mask=attention, past_key_values=out.past_key_values,
                         use_cache=True)
                tokens = out.logits[:, -1].argmax(-1, keepdim=True)
                produced.append(tokens)
            sync()
            return torch.cat(produced, dim=1).tolist(), time.perf_counter() - prefilled

    once()
    produced, decode_s = once()
    decoded = len(rows) * (request["new_tokens"] - 1)
    print(json.dumps({"decode": decoded / decode_s, "ids": produced}))


def transformers_generate(model, batch, settings, device, dtype):
    with tempfile.NamedTemporaryFile("w", suffix=".json") as request:
        json.dump({"model": str(model), "device": device, "dtype": dtype, "new_tokens": settings["new_tokens"],
                   "ids": [p["ids"] for p in batch]}, request)
        request.flush()
        out, _ = run_child("transformers generate", [sys.executable, __file__, "--generate-engine", request.name])
    return json.loads(out)


def generation(lablens, model, settings, device, dtype):
    every = prompts(lablens, model, settings["batch"])
    print(f"\nGeneration: greedy, {settings['new_tokens']} new tokens after each prompt (the first discharge "
          f"inputs, cut at 1200 characters), GGUF dequantized, {dtype}, {device}\n")
    print(f"{'batch':>5} {'lablens decode tok/s':>21} {'transformers decode tok/s':>26} {'ratio':>6} "
          f"{'same greedy ids':>16}")
    for batch in (every[:1], every):
        print(f"timing batch {len(batch)}", file=sys.stderr)
        ours = lablens_generate(lablens, model, batch, settings, device, dtype)
        theirs = transformers_generate(model, batch, settings, device, dtype)
        same = sum(agreement(a, b) for a, b in zip(ours["ids"], theirs["ids"]))
        total = len(batch) * settings["new_tokens"]
        print(f"{len(batch):>5} {ours['decode']:>21.0f} {theirs['decode']:>26.0f} "
              f"{ours['decode'] / theirs['decode']:>5.2f}x {same:>7}/{total:<8}")
    print("(transformers' rate counts the decode steps after its prefill; lablens' its own decode timing; same "
          "greedy ids: tokens before each row's first difference)")


def main(argv):
    if len(argv) == 2 and argv[0] == "--generate-engine":
        generate_engine(argv[1])
        return
    settings, device, dtype, rest = dict(FULL), "cuda:0", "bf16", []
    train_model, overrides, train_only, generate_only = None, {}, False, False
    args = iter(argv)
    for arg in args:
        if arg == "--quick":
            settings = dict(QUICK)
        elif arg == "--device":
            device = next(args, "")
        elif arg == "--dtype":
            dtype = next(args, "")
        elif arg == "--train-model":
            train_model = str(pathlib.Path(next(args, "")).resolve())
        elif arg in ("--seq", "--micro-batch", "--steps"):
            key = {"--seq": "max_seq_len", "--micro-batch": "micro_batch", "--steps": "steps"}[arg]
            overrides[key] = int(next(args, "0"))
        elif arg == "--train-only":
            train_only = True
        elif arg == "--generate-only":
            generate_only = True
        elif arg == "--qlora":
            overrides["qlora"] = True
        else:
            rest.append(arg)
    if len(rest) != 2 or dtype not in ("bf16", "f32") or not (device == "cpu" or device.startswith("cuda:")):
        sys.exit(__doc__)
    settings.update(overrides)
    lablens, model = rest[0], str(pathlib.Path(rest[1]).resolve())
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not generate_only:
        train(lablens, train_model or model, settings, device, dtype)
    if not train_only:
        generation(lablens, model, settings, device, dtype)


if __name__ == "__main__":
    main(sys.argv[1:])
