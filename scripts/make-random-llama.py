#!/usr/bin/env python3
"""A Hugging Face Llama folder at the real layer sizes of Llama-3.2-1B or -3B, with seeded random weights and
SmolLM2's tokenizer (49,152 tokens): for measuring training speed and memory at the sizes users fine-tune, on a
machine that cannot download the real checkpoints. It is not a trained model: its outputs are noise, and every
number measured on it says so.

  make-random-llama.py SHAPE OUT [--gguf SMOLLM2_GGUF] [--seed 0] [--device cuda] [--q4-0 FILE.gguf]

SHAPE: llama-3.2-1b (16 layers, hidden 2048, MLP 8192, 32 heads / 8 key-value heads of 64) or llama-3.2-3b (28
layers, hidden 3072, MLP 8192, 24 heads / 8 key-value heads of 128); both with tied embeddings, RoPE theta 500000
and Llama 3 RoPE scaling, as the real models' config.json say. The vocabulary is SmolLM2's (the real models have
128,256 tokens): the tokenizer comes from the SmolLM2 GGUF (scripts/fetch-smollm2.sh), read by transformers.

Writes OUT/config.json, OUT/model.safetensors (bf16), OUT/tokenizer.json, OUT/tokenizer_config.json and
OUT/README.md; --q4-0 also writes the same weights as a GGUF file in Q4_0 (as llama.cpp lays a Llama out: q and k
rows permuted, norms in f32, SmolLM2's tokenizer metadata) for QLoRA. Seeded: the same seed gives the same weights. --device cuda builds the weights on the GPU (a 3B
model initialises in seconds there, minutes on a CPU).

Needs: torch, transformers, gguf (python3 -m pip install torch transformers gguf).
"""

import argparse
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
SMOLLM2 = REPO / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"

ROPE_THETA = 500000.0
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
    parser.add_argument("--q4-0", type=pathlib.Path, dest="q4_0")
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
        rope_theta=ROPE_THETA,
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
    if args.q4_0:
        write_q4_0_gguf(model, config, args.gguf, args.q4_0)
        print(f"wrote {args.q4_0}")


def q4_0_blocks(weight):
    """llama.cpp's Q4_0 of a [rows, cols] tensor (cols a multiple of 32), as uint8 [rows, cols / 32 * 18]: per block
    of 32, the f16 scale d = (the value of largest magnitude) / -8, then 16 bytes of 4-bit codes
    min(15, trunc(x / d + 8.5)), the block's first half in the low nibbles."""
    import torch

    rows, cols = weight.shape
    blocks = weight.float().reshape(-1, 32)
    extreme = blocks.gather(1, blocks.abs().argmax(dim=1, keepdim=True))
    d = extreme / -8
    inverse = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    codes = (blocks * inverse + 8.5).to(torch.int32).clamp(0, 15).to(torch.uint8)
    packed = codes[:, :16] | (codes[:, 16:] << 4)
    scale = d.to(torch.float16).view(torch.uint8).reshape(-1, 2)
    return torch.cat([scale, packed], dim=1).reshape(rows, cols // 32 * 18).cpu().numpy()


def permuted(weight, heads):
    """llama.cpp's row order for q and k: each head's two rotary halves interleaved."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def write_q4_0_gguf(model, config, smollm2, path):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    reader = gguf.GGUFReader(str(smollm2))
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), kind)
    q4 = gguf.GGMLQuantizationType.Q4_0
    state = model.state_dict()
    writer.add_tensor("token_embd.weight", q4_0_blocks(state["model.embed_tokens.weight"]), raw_dtype=q4)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(config.num_hidden_layers):
        for hf, short in names.items():
            w = state[f"model.layers.{i}.{hf}.weight"]
            if short == "attn_q":
                w = permuted(w, config.num_attention_heads)
            elif short == "attn_k":
                w = permuted(w, config.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{short}.weight", q4_0_blocks(w), raw_dtype=q4)
        for hf, short in (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")):
            writer.add_tensor(f"blk.{i}.{short}.weight", state[f"model.layers.{i}.{hf}.weight"].float().cpu().numpy())
    writer.add_tensor("output_norm.weight", state["model.norm.weight"].float().cpu().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
