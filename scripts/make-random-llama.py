#!/usr/bin/python3
"""Writes a random-weight Llama of a named shape, for memory, load and speed measurements at real
sizes without downloading a model: a bf16 Hugging Face directory (config.json +
model.safetensors; the default) or a float32 llama2.c checkpoint (OUT_DIR/model.bin).

    /usr/bin/python3 scripts/make-random-llama.py OUT_DIR {110M|1.1B} [--seed N] [--format hf|llama2c]

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


def llama2c_tensors(s):
    """Shapes of the llama2.c v0 file's tensors in file order (before freq_cis), each
    layer-stacked tensor as one entry per layer."""
    kv_dim = s["dim"] // s["heads"] * s["kv_heads"]
    dim, hidden, layers = s["dim"], s["hidden"], s["layers"]
    stacked = [(dim,), (dim, dim), (kv_dim, dim), (kv_dim, dim), (dim, dim),  # rms_att wq wk wv wo
               (dim,), (hidden, dim), (dim, hidden), (hidden, dim)]  # rms_ffn w1 w2 w3
    return [(s["vocab"], dim)] + [shape for shape in stacked for _ in range(layers)] + [(dim,)]


def random_f32(rng, shape):
    """float32 values: norms 1 + small noise, matrices uniform in +-1/sqrt(fan_in)."""
    if len(shape) == 1:
        return (1.0 + rng.uniform(-0.05, 0.05, size=shape)).astype("<f4")
    bound = np.float32(1.0 / np.sqrt(shape[1]))
    return rng.uniform(-bound, bound, size=shape).astype("<f4")


def write_llama2c(out, s, seed, seq_len=2048):
    """llama2.c v0: 7 int32 header fields (vocab negative when the classifier is not tied), the
    tensors, the legacy freq_cis block (seq_len x head_dim floats), then the classifier."""
    rng = np.random.default_rng(seed)
    head_dim = s["dim"] // s["heads"]
    vocab = s["vocab"] if s["tied"] else -s["vocab"]
    path = out / "model.bin"
    floats = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", s["dim"], s["hidden"], s["layers"], s["heads"], s["kv_heads"],
                            vocab, seq_len))
        for shape in llama2c_tensors(s):
            values = random_f32(rng, shape)
            f.write(values.tobytes())
            floats += values.size
        f.write(np.zeros(seq_len * head_dim, dtype="<f4").tobytes())
        if not s["tied"]:
            values = random_f32(rng, (s["vocab"], s["dim"]))
            f.write(values.tobytes())
            floats += values.size
    print(f"{path}: {floats / 1e9:.2f}B float32 parameters, {path.stat().st_size / 2**30:.2f} GiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["hf", "llama2c"], default="hf")
    args = parser.parse_args()
    s = SHAPES[args.shape]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.format == "llama2c":
        write_llama2c(out, s, args.seed)
        return
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
