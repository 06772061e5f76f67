#!/usr/bin/python3
"""Writes stories260K (llama2.c, from ../shared) as a Hugging Face LlamaForCausalLM directory and
the TinyStories evaluation paragraphs as a pre-tokenized .npy, for the HF example job and tests.

    /usr/bin/python3 tests/integration/hf_stories.py OUT_DIR [--dtype bf16|f16|f32] [--paragraphs N]

OUT_DIR/stories260K-hf/{config.json,model.safetensors} and OUT_DIR/stories260K-tokens.npy
(int32, shape (N, 512), one paragraph per row as BOS + llama2.c BPE ids, -1 padding). The q/k
projections are written in Hugging Face's rotate-half row order, as HF's own conversion does.
Written from the format descriptions with numpy only.
"""
import argparse
import json
import struct
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(__file__).resolve().parents[2]


def read_llama2c(path):
    raw = Path(path).read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    values = np.frombuffer(raw, dtype="<f4", offset=28)
    config = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                  vocab=abs(vocab), seq_len=seq_len, shared=vocab > 0)
    head_dim, kv_dim = dim // heads, dim // heads * kv_heads
    offset = 0

    def take(*shape):
        nonlocal offset
        count = int(np.prod(shape))
        out = values[offset:offset + count].reshape(shape)
        offset += count
        return out

    tensors = {"embed": take(abs(vocab), dim), "attn_norm": take(layers, dim), "wq": take(layers, dim, dim),
               "wk": take(layers, kv_dim, dim), "wv": take(layers, kv_dim, dim), "wo": take(layers, dim, dim),
               "ffn_norm": take(layers, dim), "w1": take(layers, hidden, dim), "w2": take(layers, dim, hidden),
               "w3": take(layers, hidden, dim), "norm": take(dim)}
    take(seq_len, head_dim)  # legacy freq_cis
    if vocab < 0:
        tensors["lm_head"] = take(abs(vocab), dim)
    return config, tensors


def rotate_half(w, heads):
    """llama2.c adjacent-pair rows -> HF rotate-half rows, per head."""
    rows, width = w.shape
    head_dim = rows // heads
    return w.reshape(heads, head_dim // 2, 2, width).transpose(0, 2, 1, 3).reshape(rows, width)


def to_dtype(array, dtype):
    array = np.ascontiguousarray(array, dtype="<f4")
    if dtype == "F32":
        return array.tobytes()
    if dtype == "F16":
        return array.astype("<f2").tobytes()
    bits = array.view("<u4").astype(np.uint64)  # bf16: round to nearest even on the top 16 bits
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        blob = to_dtype(array, dtype)
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_hf_directory(out_dir, model_path, dtype="BF16"):
    config, t = read_llama2c(model_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"model.embed_tokens.weight": t["embed"]}
    for layer in range(config["layers"]):
        p = f"model.layers.{layer}."
        tensors[p + "input_layernorm.weight"] = t["attn_norm"][layer]
        tensors[p + "self_attn.q_proj.weight"] = rotate_half(t["wq"][layer], config["heads"])
        tensors[p + "self_attn.k_proj.weight"] = rotate_half(t["wk"][layer], config["kv_heads"])
        tensors[p + "self_attn.v_proj.weight"] = t["wv"][layer]
        tensors[p + "self_attn.o_proj.weight"] = t["wo"][layer]
        tensors[p + "post_attention_layernorm.weight"] = t["ffn_norm"][layer]
        tensors[p + "mlp.gate_proj.weight"] = t["w1"][layer]
        tensors[p + "mlp.down_proj.weight"] = t["w2"][layer]
        tensors[p + "mlp.up_proj.weight"] = t["w3"][layer]
    tensors["model.norm.weight"] = t["norm"]
    if "lm_head" in t:
        tensors["lm_head.weight"] = t["lm_head"]
    write_safetensors(out_dir / "model.safetensors", tensors, dtype)
    hf_config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": config["dim"],
        "intermediate_size": config["hidden"], "num_hidden_layers": config["layers"],
        "num_attention_heads": config["heads"], "num_key_value_heads": config["kv_heads"],
        "vocab_size": config["vocab"], "max_position_embeddings": config["seq_len"], "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "hidden_act": "silu", "rope_scaling": None, "bos_token_id": 1,
        "eos_token_id": 2, "tie_word_embeddings": config["shared"],
        "torch_dtype": {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype]}
    (out_dir / "config.json").write_text(json.dumps(hf_config, indent=2))
    return out_dir


def read_tokenizer(path, vocab_size):
    raw = Path(path).read_bytes()
    offset, pieces, scores = 4, [], []
    for _ in range(vocab_size):
        score, length = struct.unpack_from("<fi", raw, offset)
        offset += 8
        pieces.append(raw[offset:offset + length])
        scores.append(score)
        offset += length
    return pieces, scores


def encode(text, pieces, scores):
    """llama2.c's encode: BOS, dummy leading space, per-codepoint lookup with byte fallback
    (id = byte + 3), then repeated merges of the adjacent pair with the best score."""
    ids_of = {piece: i for i, piece in enumerate(pieces)}
    ids = [1]
    if not text:
        return ids
    tokens = [ids_of[b" "]]
    for char in text:
        piece = char.encode()
        tokens.extend([ids_of[piece]] if piece in ids_of else [byte + 3 for byte in piece])
    while True:
        best, best_at = None, -1
        for i in range(len(tokens) - 1):
            merged = ids_of.get(pieces[tokens[i]] + pieces[tokens[i + 1]])
            if merged is not None and (best is None or scores[merged] > scores[best]):
                best, best_at = merged, i
        if best is None:
            break
        tokens[best_at:best_at + 2] = [best]
    return ids + tokens


def paragraphs(path, count):
    out, current = [], []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            current.append(line)
        elif current:
            out.append("\n".join(current).strip())
            current = []
    if current:
        out.append("\n".join(current).strip())
    return out[:count]


def write_tokens(path, shared, count, seq_len=512):
    pieces, scores = read_tokenizer(shared / "models/stories260K/tok512.bin", 512)
    rows = [encode(p, pieces, scores)[:seq_len] for p in
            paragraphs(shared / "data/tinystories/tinystories_val.txt", count)]
    array = np.full((len(rows), seq_len), -1, dtype="<i4")
    for r, row in enumerate(rows):
        array[r, :len(row)] = row
    np.save(path, array)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    parser.add_argument("--paragraphs", type=int, default=50)
    parser.add_argument("--shared", type=Path, default=SOURCE_DIR.parent / "shared")
    args = parser.parse_args()
    directory = write_hf_directory(args.out_dir / "stories260K-hf",
                                   args.shared / "models/stories260K/stories260K.bin", args.dtype.upper())
    write_tokens(args.out_dir / "stories260K-tokens.npy", args.shared, args.paragraphs)
    print(f"wrote {directory} and {args.out_dir / 'stories260K-tokens.npy'}")


if __name__ == "__main__":
    main()
