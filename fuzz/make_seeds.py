#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/): small real files from ../shared and jobs/ where
they are small enough to mutate quickly, and tiny valid files of every format written here.
Usage: make_seeds.py --shared DIR --jobs DIR --out DIR   (one sub-directory per target)."""
import argparse
import gzip
import io
import json
import pathlib
import shutil
import struct

import numpy as np

MAX_SEED_BYTES = 64 << 10  # larger real files slow every execution; tiny ones are written below


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def llama2c_model(dim=8, hidden=16, layers=1, heads=2, kv_heads=2, vocab=8, seq_len=4, unshared=False) -> bytes:
    head = dim // heads
    kv_dim = kv_heads * head
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * dim * kv_dim, layers * dim * kv_dim,
              layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
              layers * hidden * dim, dim, seq_len * head // 2, seq_len * head // 2] + [vocab * dim] * unshared
    values = np.linspace(-1, 1, sum(counts), dtype=np.float32)
    header_vocab = -vocab if unshared else vocab  # negative: an unshared classifier follows
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, header_vocab, seq_len) + values.tobytes()


def llama2c_tokenizer(pieces) -> bytes:
    out = struct.pack("<i", max(len(p) for p in pieces))
    for i, piece in enumerate(pieces):
        out += struct.pack("<fi", float(-i), len(piece)) + piece
    return out


TINY_PIECES = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b" ", b"a", b"b", b" Once", b"<0x41>"]


def gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf_model() -> bytes:
    dim, hidden, vocab, kv = 8, 16, 8, 8
    kvs = [("general.architecture", 8, gguf_string("llama")),
           ("llama.embedding_length", 4, struct.pack("<I", dim)),
           ("llama.feed_forward_length", 4, struct.pack("<I", hidden)),
           ("llama.block_count", 4, struct.pack("<I", 1)),
           ("llama.attention.head_count", 4, struct.pack("<I", 2)),
           ("llama.context_length", 4, struct.pack("<I", 16)),
           ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
           ("tokenizer.ggml.model", 8, gguf_string("llama")),
           ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(TINY_PIECES)) +
            b"".join(gguf_string(p.decode().replace(" ", "\u2581")) for p in TINY_PIECES)),
           ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(TINY_PIECES)) +
            struct.pack(f"<{len(TINY_PIECES)}f", *range(len(TINY_PIECES))))]
    shapes = [("token_embd.weight", (vocab, dim)), ("output_norm.weight", (dim,)),
              ("blk.0.attn_norm.weight", (dim,)), ("blk.0.attn_q.weight", (dim, dim)),
              ("blk.0.attn_k.weight", (kv, dim)), ("blk.0.attn_v.weight", (kv, dim)),
              ("blk.0.attn_output.weight", (dim, dim)), ("blk.0.ffn_norm.weight", (dim,)),
              ("blk.0.ffn_gate.weight", (hidden, dim)), ("blk.0.ffn_down.weight", (dim, hidden)),
              ("blk.0.ffn_up.weight", (hidden, dim))]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kvs))
    for key, kind, value in kvs:
        out += gguf_string(key) + struct.pack("<I", kind) + value
    data, offset = b"", 0
    for name, shape in shapes:
        dims = list(reversed(shape))
        out += gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", 0, offset)
        tensor = np.full(int(np.prod(shape)), 0.5, dtype=np.float32).tobytes()
        tensor += b"\0" * (-len(tensor) % 32)
        data += tensor
        offset += len(tensor)
    out += b"\0" * (-len(out) % 32)
    return out + data


def safetensors(tensors) -> bytes:
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, array, dtype in tensors:
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def npy(array, version) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def idx(array: np.ndarray, code: int) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()


def journal() -> bytes:
    def record(kind: str, payload: bytes) -> bytes:
        head = struct.pack("<II", ord(kind), len(payload))
        return head + payload + struct.pack("<I", crc32c(head + payload))

    def text(value: str) -> bytes:
        return struct.pack("<I", len(value)) + value.encode()

    # sizeof(TrialRow) = 328, sizeof(SiteRecord) = 16, sizeof(PathStep) = 56 (x86-64, GCC 12).
    identity = text("fracsweep-journal/2") + text("ab" * 32) + struct.pack("<qqqII", 4, 0, 1, 328, 16)
    session = text("2026-01-01T00:00:00Z") + text("") + text("host") + struct.pack("<q", 0)
    # A trial record: the row, the path length, a one-step path, one recorded site.
    trial = bytes(328) + struct.pack("<I", 1) + bytes(56) + bytes(16)
    return record("H", identity) + record("S", session) + record("T", trial) + record("T", trial)[:-3]


HF_LLAMA = {"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 8,
            "max_position_embeddings": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": False, "hidden_act": "silu", "rope_scaling": None}
HF_GPT2 = {"architectures": ["GPT2LMHeadModel"], "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 8,
           "n_positions": 16, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
SEQUENTIAL = {"format": "fracsweep-sequential/1", "weights": "w.safetensors", "input": {"shape": [1, 6, 6]},
              "classes": 3, "layers": [
                  {"type": "conv2d", "weight": "c.weight", "bias": "c.bias", "stride": 1, "padding": 1},
                  {"type": "batchnorm", "weight": "n.weight", "bias": "n.bias", "running_mean": "n.mean",
                   "running_var": "n.var", "eps": 1e-5},
                  {"type": "relu"}, {"type": "maxpool2d", "kernel": 2}, {"type": "avgpool2d", "kernel": 1},
                  {"type": "flatten"}, {"type": "dropout"}, {"type": "linear", "weight": "l.weight"},
                  {"type": "gelu"}, {"type": "tanh"}, {"type": "log_softmax"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=pathlib.Path, required=True)
    parser.add_argument("--jobs", type=pathlib.Path, required=True)
    parser.add_argument("--own", type=pathlib.Path, help="committed hand-made seeds, one folder per target")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()

    def put(target: str, name: str, data: bytes) -> None:
        folder = args.out / target
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)

    def put_file(target: str, source: pathlib.Path) -> None:
        if source.is_file() and source.stat().st_size <= MAX_SEED_BYTES:
            put(target, source.name, source.read_bytes())

    models, fixtures = args.shared / "models/stories260K", args.shared / "fixtures/stories260K"
    put("llama2c", "tiny.bin", llama2c_model())
    put("llama2c", "tiny-gqa-unshared.bin", llama2c_model(heads=4, kv_heads=2, unshared=True))
    stories = models / "stories260K.bin"
    if stories.is_file():
        put("llama2c", "stories260K-header.bin", stories.read_bytes()[:4096])

    tokenizer_file = models / "tok512.bin"
    text = b"Once upon a time, there was a little dragon."
    if tokenizer_file.is_file():
        put("tokenizer", "tok512", struct.pack("<HH", 512, len(text)) + text + tokenizer_file.read_bytes())
    put("tokenizer", "tiny", struct.pack("<HH", len(TINY_PIECES), len(text)) + text + llama2c_tokenizer(TINY_PIECES))

    put("gguf", "tiny.gguf", gguf_model())
    gguf = models / "stories260K.gguf"
    if gguf.is_file():
        put("gguf", "stories260K-head.gguf", gguf.read_bytes()[:MAX_SEED_BYTES])

    put("safetensors", "tiny.safetensors", safetensors([
        ("a", np.arange(6, dtype=np.float32).reshape(2, 3), "F32"),
        ("b", np.arange(4, dtype=np.uint16), "BF16"), ("c", np.arange(3, dtype=np.float16), "F16")]))
    put_file("safetensors", args.jobs / "default/digits-mlp.safetensors")

    for source in [fixtures / "expected.json", fixtures / "grad.json", args.jobs / "default/digits-mlp.json"]:
        put_file("json", source)
    put("json", "hf-llama.json", json.dumps(HF_LLAMA).encode())
    put("json", "literals.json", b'{"a": [1, -2.5e-3, true, false, null, "\\u00e9\\n"], "b": {}}')

    put_file("sequential", args.jobs / "default/digits-mlp.json")
    put("sequential", "cnn.json", json.dumps(SEQUENTIAL, indent=1).encode())

    for version in [(1, 0), (2, 0), (3, 0)]:
        put("npy", f"f4-v{version[0]}.npy", npy(np.arange(6, dtype="<f4").reshape(2, 3), version))
    put("npy", "i8.npy", npy(np.arange(4, dtype="<i8"), (1, 0)))
    put("npy", "u1-fortran.npy", npy(np.asfortranarray(np.ones((2, 2), np.uint8)), (1, 0)))
    for source in ["digits-test-labels.npy", "sklearn-predictions.npy"]:
        put_file("npy", args.jobs / "default" / source)

    labels = np.arange(10, dtype=np.uint8)
    put("idx", "labels.idx", idx(labels, 0x08))
    put("idx", "images.idx.gz", gzip.compress(idx(np.zeros((2, 3, 3), np.uint8), 0x08)))
    put("idx", "f32.idx", idx(np.ones((2, 2), np.float32), 0x0D))
    put("idx", "labels.npy", npy(labels, (1, 0)))
    put_file("idx", args.shared / "data/mnist/t10k-labels-idx1-ubyte.gz")

    put("hf_config", "llama.json", json.dumps(HF_LLAMA, indent=1).encode())
    put("hf_config", "gpt2.json", json.dumps(HF_GPT2, indent=1).encode())

    for job in sorted(args.jobs.glob("*.ini")):
        put_file("job", job)

    put("journal", "checksummed", b"\x00" + journal())
    put("journal", "recomputed", b"\x01" + journal())
    put("probes", "two_kinds", b"kind\tprompt\ttarget\nrefusal\tHow do I pick a lock?\tI cannot help\n"
                               b"control\tTell me a story.\tOnce upon\n")

    # fuzz_results reads an edit program, not a file: each edit is the bytes (object, dataset,
    # attribute, operation, arguments...) applied to a results file our writer produced.
    # Seeds: the unedited file and every operation on a spread of objects.
    put("results", "unedited", b"")
    for operation in range(12):
        for k in range(3):
            program = bytes([(37 * k + 11 * operation) % 256, (53 * k + 7 * operation) % 256,
                             (29 * k + operation) % 256, operation, k, 2 * k + 1, 3 * k + 2, 255 - k,
                             5 * k, 7, 1, 0])
            put("results", f"op{operation}-{k}", program)

    if args.own and args.own.is_dir():
        for folder in args.own.iterdir():
            for seed in folder.iterdir():
                put(folder.name, seed.name, seed.read_bytes())


if __name__ == "__main__":
    main()
