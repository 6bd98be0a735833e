#!/usr/bin/env python3
"""Reference numbers for SmolLM2-135M-Instruct from Hugging Face transformers (the GGUF loaded
dequantized to f32): per-token NLL of raw token sequences and 32 greedy tokens after them.
Writes tests/fixtures/smollm2_reference.json; tests/smollm2_parity.rs compares lablens to it.

Needs: python3 -m pip install torch transformers gguf; scripts/fetch-smollm2.sh run first.
The token ids come from transformers' own tokenizer; both sides consume the same ids, so the
comparison is of the models, not the tokenizers.
"""

import hashlib
import json
import pathlib

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDER = ROOT / "models" / "smollm2-135m-instruct"
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests" / "fixtures" / "smollm2_reference.json"


def texts():
    rows = [json.loads(l) for l in (ROOT / "sample_data" / "discharge.jsonl").open()]
    picked = [rows[i]["input"][:700] for i in (0, 7, 19)]
    picked += [rows[i]["target"][:500] for i in (3, 11)]
    picked += [
        "<|im_start|>user\nWhat does furosemide do?<|im_end|>\n<|im_start|>assistant\n",
        "The patient was started on metoprolol 25 mg twice daily and her blood pressure improved.",
        "Take 1 tablet by mouth every 6 hours as needed for pain. Do not take more than 4 tablets a day.",
        "Discharge Diagnosis:\nCommunity-acquired pneumonia\n\nDischarge Medications:\n1. Amoxicillin 875 mg PO BID",
        "Hello! Can you explain what a heart attack is in simple words?",
        "BP 142/88, HR 104, SpO2 93% on room air. Creatinine 1.8 (baseline 1.1).",
        "Les médicaments doivent être pris avec de l'eau. 血压 120/80 mmHg.",
    ]
    return picked


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(FOLDER, gguf_file=NAME)
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=NAME, dtype=torch.float32)
    model.eval()
    records = []
    for text in texts():
        ids = tok(text, add_special_tokens=False).input_ids[:160]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits.double(), dim=-1)
            nll = [-logp[p - 1, ids[p]].item() for p in range(1, len(ids))]
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=32,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=tok.eos_token_id,
            )
        records.append({
            "text": text,
            "ids": ids,
            "nll": nll,
            "mean_nll": sum(nll) / len(nll),
            "greedy_32": out[0, len(ids):].tolist(),
        })
        print(f"{len(ids):4d} tokens  mean nll {records[-1]['mean_nll']:.5f}")
    digest = hashlib.sha256((FOLDER / NAME).read_bytes()).hexdigest()
    OUT.write_text(json.dumps({"model_sha256": digest, "records": records}) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
