#!/usr/bin/python3
"""Writes a random-weight bf16 Hugging Face Llama directory (config.json + model.safetensors) of
a named shape, for memory and load measurements at real sizes without downloading a model.

    /usr/bin/python3 scripts/make-random-llama.py OUT_DIR {110M|1.1B} [--seed N]

110M: dim 768, 12 layers, 12 heads, hidden 2048, vocab 32000 (tied embeddings);
1.1B: dim 2048, 22 layers, 32 heads / 4 KV heads, hidden 5632, vocab 32000 (untied), as in
tests/bench/bench_forward.cpp. Weights are uniform in +-1/sqrt(fan_in), norms 1 + small noise,
so the forward pass stays finite; values are written tensor by tensor (memory: one tensor).
Use with an [eval] tokens = FILE.npy job (any ids below 32000), since there is no tokenizer.
"""
import argparse
import json
import struct
from pathlib import Path

import numpy as np

SHAPES = {
    "110M": dict(dim=768, layers=12, heads=12, kv_heads=12, hidden=2048, vocab=32000, tied=True),
    "1.1B": dict(dim=2048, layers=22, heads=32, kv_heads=4, hidden=5632, vocab=32000, tied=False),
}


def tensor_shapes(s):
    kv_dim = s["dim"] // s["heads"] * s["kv_heads"]
    shapes = {"model.embed_tokens.weight": (s["vocab"], s["dim"])}
    for layer in range(s["layers"]):
        p = f"model.layers.{layer}."
        shapes[p + "input_layernorm.weight"] = (s["dim"],)
        shapes[p + "self_attn.q_proj.weight"] = (s["dim"], s["dim"])
        shapes[p + "self_attn.k_proj.weight"] = (kv_dim, s["dim"])
        shapes[p + "self_attn.v_proj.weight"] = (kv_dim, s["dim"])
        shapes[p + "self_attn.o_proj.weight"] = (s["dim"], s["dim"])
        shapes[p + "post_attention_layernorm.weight"] = (s["dim"],)
        shapes[p + "mlp.gate_proj.weight"] = (s["hidden"], s["dim"])
        shapes[p + "mlp.down_proj.weight"] = (s["dim"], s["hidden"])
        shapes[p + "mlp.up_proj.weight"] = (s["hidden"], s["dim"])
    shapes["model.norm.weight"] = (s["dim"],)
    if not s["tied"]:
        shapes["lm_head.weight"] = (s["vocab"], s["dim"])
    return shapes


def random_bf16(rng, shape):
    """bf16 bit patterns (uint16): the top 16 bits of float32 values (truncation is fine here)."""
    if len(shape) == 1:
        values = 1.0 + rng.uniform(-0.05, 0.05, size=shape).astype(np.float32)
    else:
        bound = np.float32(1.0 / np.sqrt(shape[1]))
        values = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return (values.view("<u4") >> 16).astype("<u2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    s = SHAPES[args.shape]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes(s)
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    rng = np.random.default_rng(args.seed)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, shape in shapes.items():
            f.write(random_bf16(rng, shape).tobytes())
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s["dim"],
        "intermediate_size": s["hidden"], "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"],
        "vocab_size": s["vocab"], "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "hidden_act": "silu", "rope_scaling": None, "bos_token_id": 1,
        "eos_token_id": 2, "tie_word_embeddings": s["tied"], "torch_dtype": "bfloat16"}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"{out}: {args.shape}, {offset / 2**30:.2f} GiB of bf16 weights")


if __name__ == "__main__":
    main()
