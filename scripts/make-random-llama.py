#!/usr/bin/env python3
"""A Hugging Face Llama folder at the real layer sizes of Llama-3.2-1B or -3B, with seeded random weights and
SmolLM2's tokenizer (49,152 tokens): for measuring training speed and memory at the sizes users fine-tune, on a
machine that cannot download the real checkpoints. It is not a trained model: its outputs are noise, and every
number measured on it says so.

  make-random-llama.py SHAPE OUT [--gguf SMOLLM2_GGUF] [--seed 0] [--device cuda]

SHAPE: llama-3.2-1b (16 layers, hidden 2048, MLP 8192, 32 heads / 8 key-value heads of 64) or llama-3.2-3b (28
layers, hidden 3072, MLP 8192, 24 heads / 8 key-value heads of 128); both with tied embeddings, RoPE theta 500000
and Llama 3 RoPE scaling, as the real models' config.json say. The vocabulary is SmolLM2's (the real models have
128,256 tokens): the tokenizer comes from the SmolLM2 GGUF (scripts/fetch-smollm2.sh), read by transformers.

Writes OUT/config.json, OUT/model.safetensors (bf16), OUT/tokenizer.json, OUT/tokenizer_config.json and
OUT/README.md. Seeded: the same seed gives the same weights. --device cuda builds the weights on the GPU (a 3B
model initialises in seconds there, minutes on a CPU).

Needs: torch, transformers, gguf (python3 -m pip install torch transformers gguf).
"""

import argparse
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
SMOLLM2 = REPO / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"

SHAPES = {
    "llama-3.2-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64},
    "llama-3.2-3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--gguf", type=pathlib.Path, default=SMOLLM2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not args.gguf.is_file():
        parser.error(f"{args.gguf} is missing: run scripts/fetch-smollm2.sh (its tokenizer is used)")

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="bfloat16",
        **SHAPES[args.shape],
    )
    torch.manual_seed(args.seed)
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="20GB")
    tokenizer.save_pretrained(args.out)
    parameters = sum(p.numel() for p in model.parameters())
    (args.out / "README.md").write_text(
        f"# {args.shape}-shaped, random weights\n\n"
        f"Seeded random weights (seed {args.seed}) at the layer sizes of {args.shape}, with SmolLM2's tokenizer "
        f"({len(tokenizer)} tokens), {parameters / 1e9:.2f} B parameters. Made by scripts/make-random-llama.py for "
        f"speed and memory measurements: not a trained model.\n")
    print(f"wrote {args.out}: {parameters / 1e9:.2f} B parameters, vocabulary {len(tokenizer)}")


if __name__ == "__main__":
    main()
