#!/usr/bin/env python3
"""A PEFT LoRA adapter made by Python PEFT on SmolLM2-135M-Instruct (r=8, alpha=16, all seven
target modules, in four of the 30 layers, random non-zero A and B), saved to
tests/fixtures/peft-adapter-smollm2/, and the per-text NLL that transformers + PEFT give with it
(tests/fixtures/peft_reference.json). tests/peft_adapter.rs loads the same adapter in lablens.

  python3 scripts/make-peft-fixture.py                 # write the adapter and the reference
  python3 scripts/make-peft-fixture.py --check DIR     # NLL of an adapter written by lablens

Needs torch, transformers, peft and gguf, and scripts/fetch-smollm2.sh run first.
"""

import json
import pathlib
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDER = ROOT / "models" / "smollm2-135m-instruct"
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER = ROOT / "tests" / "fixtures" / "peft-adapter-smollm2"
OUT = ROOT / "tests" / "fixtures" / "peft_reference.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base():
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=NAME, dtype=torch.float32)
    return model.eval()


def sequences():
    ref = json.loads((ROOT / "tests" / "fixtures" / "smollm2_reference.json").read_text())
    return [r["ids"][:96] for r in ref["records"][:5]]


def mean_nll(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    nll = [-logp[p - 1, ids[p]].item() for p in range(1, len(ids))]
    return sum(nll) / len(nll)


def make():
    torch.manual_seed(1234)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS,
                        layers_to_transform=[0, 1, 14, 29], task_type="CAUSAL_LM")
    model = get_peft_model(base(), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    model.eval()
    model.save_pretrained(ADAPTER)
    records = [{"ids": ids, "mean_nll": mean_nll(model, ids)} for ids in sequences()]
    with model.disable_adapter():
        for r in records:
            r["base_mean_nll"] = mean_nll(model, r["ids"])
    OUT.write_text(json.dumps({"records": records}) + "\n")
    for r in records:
        print(f"{len(r['ids'])} tokens: base {r['base_mean_nll']:.5f} adapter {r['mean_nll']:.5f}")


def check(folder):
    model = PeftModel.from_pretrained(base(), folder).eval()
    for ids in sequences():
        print(f"{mean_nll(model, ids):.6f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        make()
