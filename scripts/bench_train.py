#!/usr/bin/env python3
"""The measuring side of scripts/bench-train.sh: LoRA training throughput and peak memory of lablens and of
transformers + PEFT on the same batches. scripts/make-train-fixture.py uses its lablens driver and replay.

  bench_train.py [--quick] LABLENS MODEL   the whole comparison: table, ratios against issue 4's goals, loss
                                           agreement
  bench_train.py --builds OLD NEW MODEL  two lablens binaries on the same run: tokens/s, new/old, loss agreement
  bench_train.py --replay RUN_DIR          replay a lablens run made with --record-batches in transformers + PEFT
                                           in this process, from its step-0 adapter; prints one JSON line: each
                                           step's loss, grad_norm, tokens and seconds, and the peak RSS while
                                           loading and while training

lablens trains first, in a temporary copy of projects/demo, with --record-batches; PyTorch then replays the
batches it recorded, step by step, with the learning rate lablens used at each step. The replay is the
reference semantics: the loss of an optimizer step is the summed NLL of every labelled token of its
micro-batches over their count, torch.optim.AdamW over the LoRA A and B matrices, clip_grad_norm_ before the
step. A step's time is forward + backward + optimizer; the first steps are warm-up and left out of the rates
of every engine alike. Each engine runs in its own child process so that its peak resident memory can be read
from the kernel when it exits.
"""

import hashlib
import json
import pathlib
import re
import statistics
import sys
import tempfile
import time

from bench_generate import THREADS, lablens_env, run_child

REPO = pathlib.Path(__file__).resolve().parent.parent
DEMO_PROJECT = REPO / "projects" / "demo" / "project.ron"
FULL = {"steps": 12, "warmup": 2}
QUICK = {"steps": 3, "warmup": 1}
BENCH_SHAPE = {"micro_batch": 4, "grad_accum": 1}
# Shared by the benchmark and the reference fixture: issue 4's configuration (sequence length 256, r=16 on all
# seven targets), a learning rate high enough that the loss moves within 20 steps, and a warm-up, weight decay
# and clipping so that the replay checks each of them (gradient norms run 0.4-0.7 here: about half the steps clip).
RECIPE = {
    "dataset": "discharge",
    "max_seq_len": 256,
    "lr": 1e-3,
    "schedule": "linear",
    "warmup_steps": 2,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.01,
    "max_grad_norm": 0.5,
    "r": 16,
    "alpha": 32.0,
    "dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "seed": 42,
}
# lablens evaluates at the end of a run; a few validation records keep that short. It is not timed.
EVAL_RECORDS = 4


def config_ron(model, dequantize, micro_batch, grad_accum, max_steps, recipe=RECIPE, device="cpu", dtype="f32"):
    """A complete TrainConfig in RON for `lablens train --config`."""
    targets = ", ".join(f'"{t}"' for t in recipe["target_modules"])
    return f"""(
    model: {json.dumps(str(model))},
    dequantize: {str(dequantize).lower()},
    device: {json.dumps(device)},
    dtype: {json.dumps(dtype)},
    dataset: {json.dumps(recipe["dataset"])},
    max_seq_len: {recipe["max_seq_len"]},
    micro_batch: {micro_batch},
    grad_accum: {grad_accum},
    epochs: 1,
    max_steps: Some({max_steps}),
    lr: {recipe["lr"]!r},
    schedule: {recipe["schedule"]},
    warmup_steps: {recipe["warmup_steps"]},
    betas: ({recipe["betas"][0]!r}, {recipe["betas"][1]!r}),
    eps: {recipe["eps"]!r},
    weight_decay: {recipe["weight_decay"]!r},
    max_grad_norm: {recipe["max_grad_norm"]!r},
    lora: (r: {recipe["r"]}, alpha: {recipe["alpha"]!r}, dropout: {recipe["dropout"]!r}, target_modules: [{targets}]),
    eval_every: 0,
    eval_records: {EVAL_RECORDS},
    checkpoint_every: 0,
    early_stopping_patience: None,
    seed: {recipe["seed"]},
)
"""


# A RON value as written in a run's config.ron: a string, Some(x), a tuple or list of scalars, or a scalar.
RON_VALUE = r'"[^"]*"|Some\([^()]*\)|\([^()]*\)|\[[^\]]*\]|[^,\s()]+'


def ron_value(text):
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)
    some = re.fullmatch(r"Some\((.*)\)", text, re.S)
    if some:
        return ron_value(some.group(1))
    if text[0] in "([":
        return [ron_value(item) for item in text[1:-1].split(",") if item.strip()]
    if text in ("true", "false"):
        return text == "true"
    if text == "None":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text  # an enum variant, such as a schedule's name


def read_config(run_dir, names):
    """The named fields of a run's config.ron (field names are unique across its nesting)."""
    path = pathlib.Path(run_dir) / "config.ron"
    if not path.is_file():
        sys.exit(f"{run_dir} is not a lablens run folder (no config.ron)")
    text = path.read_text()
    out = {}
    for name in names:
        found = re.search(rf"\b{name}\s*:\s*({RON_VALUE})", text)
        if not found:
            sys.exit(f"{path}: no field {name}")
        out[name] = ron_value(found.group(1))
    return out


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_metrics(run_dir):
    """metrics.jsonl's optimizer-step lines (evaluation lines have val_loss instead of loss), by step."""
    return {m["step"]: m for m in read_jsonl(pathlib.Path(run_dir) / "metrics.jsonl") if "loss" in m}


def read_batches(run_dir):
    path = pathlib.Path(run_dir) / "batches.jsonl"
    if not path.is_file():
        sys.exit(f"{path} is missing: make the run with lablens train --record-batches")
    return read_jsonl(path)


def batch_sha256(batches):
    """sha256 of one text line per row of every micro-batch of every step, in order: the row's input_ids, then
    ';', then its labels, each list comma-separated ("12,7,0;-100,7,-100\\n"). Padding ids are included."""
    digest = hashlib.sha256()
    for step in batches:
        for micro in step["micro_batches"]:
            for ids, labels in zip(micro["input_ids"], micro["labels"]):
                digest.update((",".join(map(str, ids)) + ";" + ",".join(map(str, labels)) + "\n").encode())
    return digest.hexdigest()


def demo_project(folder):
    """projects/demo's project.ron in `folder`, its dataset paths made absolute so that they resolve there; runs
    then land in `folder`/runs, not in the repository."""
    text = DEMO_PROJECT.read_text()

    def absolute(found):
        return f'path: {json.dumps(str((DEMO_PROJECT.parent / found.group(1)).resolve()))}'

    (pathlib.Path(folder) / "project.ron").write_text(re.sub(r'path:\s*"([^"]*)"', absolute, text))
    return pathlib.Path(folder)


def train_lablens(lablens, project, name, config_text):
    """Runs `lablens train --record-batches --json` on `project` with the config written to `name`.ron; returns
    its JSON summary (run_dir made absolute) and its peak RSS in MiB."""
    config = pathlib.Path(project) / f"{name}.ron"
    config.write_text(config_text)
    out, peak = run_child(f"lablens train --config {config.name}",
                          [lablens, "train", "--project", str(project), "--config", str(config), "--record-batches",
                           "--json"], lablens_env())
    summary = json.loads(out)
    summary["run_dir"] = str(pathlib.Path(summary["run_dir"]).resolve())
    return summary, peak


def torch_tensors(micro, device="cpu"):
    import torch

    return {key: torch.tensor(micro[key], device=device) for key in ("input_ids", "attention_mask", "labels")}


def torch_placement(fields):
    """The torch device and dtype of a run's config.ron `device` and `dtype` (as lablens reads them: auto is the
    first GPU when there is one, and bf16 there, f32 on the CPU)."""
    import torch

    device = fields.get("device", "cpu")
    if device == "auto":
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    dtype = fields.get("dtype", "auto")
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "f32"
    return device, {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]


def load_peft(run_dir, fields):
    """The run's base model in transformers (a GGUF dequantized, or a Hugging Face folder) with its step-0 adapter,
    trainable."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = pathlib.Path(fields["model"])
    if not model.is_absolute():
        model = REPO / model
    gguf = model.suffix == ".gguf"
    if (gguf and not fields["dequantize"]) or not (gguf or (model / "config.json").is_file()):
        sys.exit(f"{run_dir}: the replay needs a GGUF model trained with dequantize: true, or a Hugging Face "
                 f"folder (got {model}, dequantize: {fields['dequantize']})")
    if fields["dropout"] != 0.0:
        sys.exit(f"{run_dir}: the replay needs lora dropout 0 (got {fields['dropout']})")
    step0 = pathlib.Path(run_dir) / "checkpoints" / "step-0"
    if not (step0 / "adapter_model.safetensors").is_file():
        sys.exit(f"{step0} is missing: make the run with lablens train --record-batches")
    device, dtype = torch_placement(fields)
    if gguf:
        base = AutoModelForCausalLM.from_pretrained(model.parent, gguf_file=model.name, dtype=dtype).to(device)
    else:
        base = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
    # PEFT keeps the adapter in f32 under a bf16 base (autocast_adapter_dtype), as lablens does.
    return PeftModel.from_pretrained(base, step0, is_trainable=True).to(device)


def replay(run_dir, after_load=lambda: None):
    """Trains in transformers + PEFT on a recorded run's batches from its step-0 adapter; returns one
    {"step", "loss", "grad_norm", "tokens", "seconds"} per optimizer step."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    fields = read_config(run_dir, ["model", "dequantize", "betas", "eps", "weight_decay", "max_grad_norm",
                                   "dropout", "device", "dtype"])
    device, _ = torch_placement(fields)
    # A GPU runs ahead of Python: wait for it before reading the clock.
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    lrs = {step: m["lr"] for step, m in train_metrics(run_dir).items()}
    steps = [(s["step"], [torch_tensors(m, device) for m in s["micro_batches"]]) for s in read_batches(run_dir)]
    model = load_peft(run_dir, fields)
    after_load()
    model.train()
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if not names or any("lora_A" not in n and "lora_B" not in n for n in names):
        sys.exit(f"{run_dir}: the trainable parameters should be the LoRA matrices alone; got {len(names)}, "
                 f"e.g. {names[:3]}")
    params = [p for p in model.parameters() if p.requires_grad]
    # The learning rate is lablens' own of each step, set before each update: no schedule code has to agree.
    optimizer = torch.optim.AdamW(params, lr=0.0, betas=tuple(fields["betas"]), eps=fields["eps"],
                                  weight_decay=fields["weight_decay"])
    # lablens reads max_grad_norm 0 as no clipping; an infinite limit makes clip_grad_norm_ only measure.
    max_norm = fields["max_grad_norm"] or float("inf")
    out = []
    for step, micro_batches in steps:
        sync()
        if step not in lrs:
            sys.exit(f"{run_dir}: batches.jsonl has step {step} but metrics.jsonl has no training line for it")
        started = time.perf_counter()
        # The step's loss is token-weighted over all its micro-batches, so each backward divides by the total.
        labelled = sum(int((m["labels"][:, 1:] != -100).sum()) for m in micro_batches)
        nll_sum = 0.0
        for m in micro_batches:
            logits = model(input_ids=m["input_ids"], attention_mask=m["attention_mask"], use_cache=False).logits
            nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), m["labels"][:, 1:].flatten(), ignore_index=-100,
                                  reduction="sum")
            (nll / labelled).backward()
            nll_sum += nll.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        for group in optimizer.param_groups:
            group["lr"] = lrs[step]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        seconds = time.perf_counter() - started
        tokens = sum(int(m["attention_mask"].sum()) for m in micro_batches)
        out.append({"step": step, "loss": nll_sum / labelled, "grad_norm": grad_norm, "tokens": tokens,
                    "seconds": seconds})
        print(f"torch step {step}: loss {nll_sum / labelled:.5f}, {seconds:.1f} s", file=sys.stderr)
    return out


def peak_rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def replay_measured(run_dir):
    """The replay, with this process's peak RSS while loading the model and, apart, while training (None where
    the kernel does not let the peak be restarted)."""
    peaks = {}

    def after_load():
        import torch

        peaks["load"] = peak_rss_mib()
        peaks["gpu"] = torch.cuda.is_initialized()
        if peaks["gpu"]:
            torch.cuda.reset_peak_memory_stats()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # restarts VmHWM (and the rusage peak) from the current RSS
            peaks["restarted"] = True
        except OSError:
            peaks["restarted"] = False

    steps = replay(run_dir, after_load)
    gpu_peak = None
    if peaks["gpu"]:
        import torch

        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    return {"steps": steps, "load_peak_mib": peaks["load"],
            "train_peak_mib": peak_rss_mib() if peaks["restarted"] else None, "gpu_train_peak_mib": gpu_peak}


def replay_child(run_dir):
    """The replay in its own process; returns its steps, its whole peak RSS in MiB (the kernel's after the
    training's restart, or the loading's if higher) and its training-only peak."""
    out, peak = run_child("transformers + PEFT replay", [sys.executable, __file__, "--replay", str(run_dir)])
    doc = json.loads(out)
    return doc["steps"], max(peak, doc["load_peak_mib"]), doc["train_peak_mib"]


def lablens_steps(run_dir):
    """lablens' own per-step numbers in the replay's shape (a step's seconds from its tokens and rate)."""
    return [{"step": s, "loss": m["loss"], "grad_norm": m["grad_norm"], "tokens": m["tokens"],
             "seconds": m["tokens"] / m["tokens_per_s"]} for s, m in sorted(train_metrics(run_dir).items())]


def rate(steps, warmup):
    timed = steps[warmup:]
    return sum(s["tokens"] for s in timed) / sum(s["seconds"] for s in timed)


def max_difference(a, b, key):
    """(largest |a - b| of a per-step field, the step where it is)."""
    return max((abs(x[key] - y[key]), x["step"]) for x, y in zip(a, b))


LABELS = {
    "lablens": "lablens (GGUF dequantized, f32)",
    "lablens-qlora": "lablens (Q4_1 base, QLoRA)",
    "torch": "transformers + PEFT (GGUF dequantized, f32)",
}


def report(settings, rows, peaks, summaries, torch_train_peak):
    n, warmup = settings["steps"], settings["warmup"]
    rates = {key: rate(steps, warmup) for key, steps in rows.items()}
    print(f"\nSmolLM2-135M-Instruct, LoRA r={RECIPE['r']} on all seven targets, sequence length "
          f"{RECIPE['max_seq_len']}, micro-batch {BENCH_SHAPE['micro_batch']}, {THREADS} threads; {n} steps on the "
          f"same batches, rates over steps {warmup + 1}-{n} (forward + backward + optimizer)\n")
    print(f"{'engine':<46} {'tokens timed':>12} {'tokens/s':>9} {'peak RSS MiB':>13}")
    print(f"{'-' * 46} {'-' * 12} {'-' * 9} {'-' * 13}")
    for key, steps in rows.items():
        timed = sum(s["tokens"] for s in steps[warmup:])
        print(f"{LABELS[key]:<46} {timed:>12} {rates[key]:>9.1f} {peaks[key]:>13.0f}")
    for key, summary in summaries.items():
        print(f"({LABELS[key]} reports {summary['tokens_per_s']:.1f} tokens/s over all {summary['steps']} steps and "
              f"a peak of {summary['peak_rss_mb']:.0f} MiB)")
    if torch_train_peak is not None:
        print(f"(transformers + PEFT peaks at {torch_train_peak:.0f} MiB once the model is loaded)")
    print()
    goals = {"lablens": (" (goal >= 1.5x, resolves at >= 1.0x)", " (goal <= 0.7x, resolves at <= 1.0x)"),
             "lablens-qlora": ("", "")}
    for key, (speed_goal, memory_goal) in goals.items():
        print(f"tokens/s: {LABELS[key]} / transformers + PEFT = {rates[key] / rates['torch']:.2f}x{speed_goal}")
        print(f"peak RSS: {LABELS[key]} / transformers + PEFT = {peaks[key] / peaks['torch']:.2f}x{memory_goal}")
    diff, step = max_difference(rows["lablens"], rows["torch"], "loss")
    print(f"\nloss: lablens f32 and transformers + PEFT differ by at most {diff:.2e} (step {step})")
    if diff > 1e-3:
        print("WARNING: above 1e-3: the two did not train the same way (scripts/make-train-fixture.py shows the "
              "loss of each step side by side)")
    diff, step = max_difference(rows["lablens-qlora"], rows["lablens"], "loss")
    print(f"loss: lablens QLoRA and lablens f32 differ by at most {diff:.2e} (step {step})")


def compare(lablens, model, settings):
    model = pathlib.Path(model).resolve()  # the config lives in a temporary project; the path must not depend on it
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        project = demo_project(tmp)
        rows, peaks, summaries, batches = {}, {}, {}, {}
        for key, dequantize in (("lablens", True), ("lablens-qlora", False)):
            print(f"training {LABELS[key]} for {settings['steps']} steps", file=sys.stderr)
            text = config_ron(model, dequantize, max_steps=settings["steps"], **BENCH_SHAPE)
            summaries[key], peaks[key] = train_lablens(lablens, project, key, text)
            run_dir = summaries[key]["run_dir"]
            rows[key] = lablens_steps(run_dir)
            batches[key] = batch_sha256(read_batches(run_dir))
        if batches["lablens"] != batches["lablens-qlora"]:
            sys.exit("lablens recorded different batches with the quantized and the dequantized base; the "
                     "comparison would not be of the same work")
        print(f"replaying the batches in {LABELS['torch']}", file=sys.stderr)
        rows["torch"], peaks["torch"], torch_train_peak = replay_child(summaries["lablens"]["run_dir"])
        report(settings, rows, peaks, summaries, torch_train_peak)


def builds(old, new, model, settings, rounds=3):
    """Two lablens binaries side by side on the same configuration and batches, alternating: tokens/s over the
    warm steps (the median of the rounds), the ratio new/old, and the largest difference of a step's loss."""
    model = pathlib.Path(model).resolve()
    rows = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-builds-") as tmp:
        for round_ in range(rounds):
            for key, binary in (("old", old), ("new", new)):
                folder = pathlib.Path(tmp) / f"{key}-{round_}"
                folder.mkdir()
                project = demo_project(folder)
                print(f"training with the {key} build ({binary}) for {settings['steps']} steps", file=sys.stderr)
                text = config_ron(model, True, max_steps=settings["steps"], **BENCH_SHAPE)
                summary, _ = train_lablens(binary, project, key, text)
                rows[key].append(lablens_steps(summary["run_dir"]))
    warmup = settings["warmup"]
    rates = {key: statistics.median(rate(steps, warmup) for steps in runs) for key, runs in rows.items()}
    print(f"\ntrain, LoRA r=16 on seven targets, micro-batch {BENCH_SHAPE['micro_batch']} x sequence "
          f"{RECIPE['max_seq_len']}, GGUF dequantized, rates over steps {warmup + 1}-{settings['steps']}, "
          f"median of {rounds} rounds")
    print(f"{'build':<8} {'tokens/s':>10}")
    for key in ("old", "new"):
        print(f"{key:<8} {rates[key]:>10.0f}")
    print(f"{'new/old':<8} {rates['new'] / rates['old']:>9.3f}x")
    worst, step = max(max_difference(rows["old"][0], steps, "loss") for runs in rows.values() for steps in runs)
    print(f"largest difference of a step's loss: {worst:.2e} (step {step})")
    return worst < 1e-5


def main(argv):
    if len(argv) == 4 and argv[0] == "--builds":
        sys.exit(0 if builds(argv[1], argv[2], argv[3], FULL) else 1)
    if len(argv) == 2 and argv[0] == "--replay":
        print(json.dumps(replay_measured(argv[1])))
    elif len(argv) == 3 and argv[0] == "--quick":
        compare(argv[1], argv[2], QUICK)
    elif len(argv) == 2 and not argv[0].startswith("-"):
        compare(argv[0], argv[1], FULL)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
