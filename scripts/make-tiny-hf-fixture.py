#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints and the numbers transformers computes on them, so that
loading a Hugging Face folder is tested without a download.

Writes, under tests/fixtures/:
  tiny-llama-hf/          LlamaForCausalLM (2 layers, hidden 64, GQA 4/2, separate lm_head)
  tiny-llama-hf-sharded/  the same weights saved in ~100 KB shards (model.safetensors.index.json)
  tiny-qwen2-hf/          Qwen2ForCausalLM with non-zero q/k/v bias and rope_theta 1e6
  tiny_hf_reference.json  per model: per-token NLL of fixed token sequences and 16 greedy tokens
Each folder holds a byte-level BPE tokenizer.json (~300 tokens, trained on sample_data/discharge.jsonl)
and a tokenizer_config.json with a ChatML chat_template. tests/hf_folder_parity.rs compares lablens
to the reference and tests/model_bad_input.rs corrupts copies of these folders.

Needs: python3 -m pip install torch transformers tokenizers safetensors. Seeded: running it again
gives the same files.
"""

import json
import pathlib
import shutil

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TEXTS = [
    "The patient was started on metoprolol 25 mg twice daily and her blood pressure improved.",
    "Take 1 tablet by mouth every 6 hours as needed for pain.",
    "Discharge Diagnosis:\nCommunity-acquired pneumonia\n\nFollow-up: see your doctor in 1 week.",
    "<|im_start|>user\nWhat does furosemide do?<|im_end|>\n<|im_start|>assistant\n",
    "BP 142/88, HR 104, SpO2 93% on room air. Creatinine 1.8 (baseline 1.1).",
]
GREEDY = 16
# Smallest allowed gap between the best and second-best logit at each greedy step: below it, a
# float rounding difference between implementations could pick another token.
MIN_MARGIN = 1e-3


def corpus():
    rows = [json.loads(l) for l in (ROOT / "sample_data" / "discharge.jsonl").open()]
    text, out = 0, []
    for r in rows:
        for field in ("input", "target"):
            out.append(r[field])
            text += len(r[field])
        if text > 6000:
            break
    return out


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    return tok


def write_tokenizer(tok, folder):
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "chat_template": CHATML,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def spread_weights(model, seed, bias):
    """Random weights large enough that logits are far apart (the default init gives nearly
    uniform logits, where greedy decoding is decided by rounding noise); the output head is
    sharper still, as a trained model's is."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(bias * torch.randn(p.shape, generator=g))
            else:
                gain = 4.0 if name == "lm_head.weight" else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def shape(vocab):
    return dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        max_position_embeddings=256,
    )


def reference(model, tok):
    records = []
    for text in TEXTS:
        ids = tok.encode(text).ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits.double(), dim=-1)
            nll = [-logp[p - 1, ids[p]].item() for p in range(1, len(ids))]
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=GREEDY,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
                output_scores=True,
                return_dict_in_generate=True,
            )
        greedy = out.sequences[0, len(ids):].tolist()
        assert len(greedy) == GREEDY, greedy
        for step in out.scores:
            top = torch.topk(step[0], 2).values
            margin = (top[0] - top[1]).item()
            assert margin > MIN_MARGIN, f"greedy step too close to a tie ({margin}) for {text!r}"
        records.append({
            "text": text,
            "ids": ids,
            "nll": nll,
            "mean_nll": sum(nll) / len(nll),
            "greedy_16": greedy,
        })
    return records


def build(name, model, tok):
    folder = FIXTURES / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    write_tokenizer(tok, folder)
    return folder


def main():
    torch.manual_seed(0)
    tok = train_tokenizer()
    vocab = tok.get_vocab_size()
    out = {"vocab_size": vocab, "models": {}}

    llama = LlamaForCausalLM(LlamaConfig(rope_theta=10000, **shape(vocab))).eval()
    spread_weights(llama, seed=1, bias=0.0)
    build("tiny-llama-hf", llama, tok)
    out["models"]["tiny-llama-hf"] = reference(llama, tok)

    sharded = FIXTURES / "tiny-llama-hf-sharded"
    shutil.rmtree(sharded, ignore_errors=True)
    sharded.mkdir(parents=True)
    llama.save_pretrained(sharded, max_shard_size="100KB")
    write_tokenizer(tok, sharded)
    assert (sharded / "model.safetensors.index.json").is_file()

    qwen = Qwen2ForCausalLM(Qwen2Config(rope_theta=1_000_000, **shape(vocab))).eval()
    spread_weights(qwen, seed=2, bias=0.5)
    build("tiny-qwen2-hf", qwen, tok)
    out["models"]["tiny-qwen2-hf"] = reference(qwen, tok)

    path = FIXTURES / "tiny_hf_reference.json"
    path.write_text(json.dumps(out) + "\n")
    for name, records in out["models"].items():
        means = ", ".join(f"{r['mean_nll']:.4f}" for r in records)
        print(f"{name}: mean nll {means}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
