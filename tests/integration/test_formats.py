"""Released model formats end to end: `fracsweep inspect` and `run` on stories260K as GGUF and as
a Hugging Face directory (written by hf_stories.py), a small GPT-2 directory, and bad input in
each format (exit 2, one message naming the file)."""
import json
import struct

import h5py
import numpy as np
import pytest

from conftest import SOURCE_DIR
from hf_stories import write_hf_directory, write_tokens, write_safetensors


def run_job(run_fracsweep, tmp_path, text, ranks=2):
    name = text.split("\n", 1)[0].split("=")[1].strip()
    job = tmp_path / f"{name}.ini"
    job.write_text(text)
    out = tmp_path / f"{name}.h5"
    return run_fracsweep(["run", job, "--out", out], ranks=ranks, timeout=600), out


def baseline(out):
    with h5py.File(out) as f:
        names = [m.decode() for m in f["/baseline/model"][:]]
        return dict(zip(names, f["/baseline/mean_nll"][:]))


SWEEP = """[sweep]
fractions = 0.001 0.01
seeds = 0-1
strategy = zero
strategy = bitflip bits=any
strategy = gaussian sigma=0.5
"""


def test_inspect_gguf(shared_dir, run_fracsweep):
    result = run_fracsweep(["inspect", shared_dir / "models/stories260K/stories260K.gguf", "--json"])
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "gguf-v3" and info["architecture"] == "llama"
    # output.weight is stored apart from token_embd.weight: 260,032 + 512 x 64 parameters.
    assert info["n_parameters"] == 292800 and info["n_nonfinite"] == 0
    assert info["config"]["seq_len"] == 2048 and info["config"]["shared_classifier"] is False
    tensors = {t["name"]: t for t in info["tensors"]}
    assert tensors["output"]["shape"] == [512, 64] and tensors["output"]["dtype"] == "f32"
    assert sum(t["elements"] for t in info["tensors"]) == 292800


def test_gguf_and_bin_runs_agree(shared_dir, run_fracsweep, tmp_path):
    models = shared_dir / "models/stories260K"
    result, out = run_job(run_fracsweep, tmp_path, f"""name = formats-gguf
[models]
model = gguf path={models}/stories260K.gguf
model = bin path={models}/stories260K.bin tokenizer={models}/tok512.bin
[eval]
text = {shared_dir}/data/tinystories/tinystories_val.txt
paragraphs = 8
greedy_tokens = 16
{SWEEP}""")
    assert result.returncode == 0, result.stderr
    nll = baseline(out)
    assert nll["gguf"] == nll["bin"]
    with h5py.File(out) as f:
        assert [m.decode() for m in f["/grid/model_format"][:]] == ["gguf-v3", "llama2c-v0"]
        greedy = f["/baseline/greedy_text"][:]
        assert greedy[0] == greedy[1]


def test_hf_directory_matches_the_bin(shared_dir, run_fracsweep, tmp_path):
    # f32: the HF-layout model must reproduce the reference baseline NLL on the same 50 paragraphs.
    directory = write_hf_directory(tmp_path / "hf", shared_dir / "models/stories260K/stories260K.bin", "F32")
    write_tokens(tmp_path / "tokens.npy", shared_dir, 50)
    inspect = run_fracsweep(["inspect", directory, "--json"])
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    assert info["format"] == "hf-llama" and info["n_parameters"] == 260032
    expected = json.loads((shared_dir / "fixtures/stories260K/expected.json").read_text())
    # The llama2.c model reads the text, the HF directory the same paragraphs pre-tokenized.
    models = shared_dir / "models/stories260K"
    result, out = run_job(run_fracsweep, tmp_path, f"""name = formats-hf
[models]
model = hf path={directory}
model = bin path={models}/stories260K.bin tokenizer={models}/tok512.bin
[eval]
text = {shared_dir}/data/tinystories/tinystories_val.txt
paragraphs = 50
tokens = {tmp_path}/tokens.npy
greedy_tokens = 16
{SWEEP}""")
    assert result.returncode == 0, result.stderr
    nll = baseline(out)
    assert nll["hf"] == nll["bin"]
    assert nll["hf"] == pytest.approx(expected["baseline"]["mean_nll"], abs=1e-4)
    with h5py.File(out) as f:
        assert f["/baseline/positions"][0] == f["/baseline/positions"][1] == 5055


def test_llama2c_reads_pretokenized_sequences_without_a_tokenizer(shared_dir, run_fracsweep, tmp_path):
    # [eval] tokens needs no tokenizer: the same 50 paragraphs, encoded by the Python reference
    # encoder, give the reference baseline NLL.
    write_tokens(tmp_path / "tokens.npy", shared_dir, 50)
    expected = json.loads((shared_dir / "fixtures/stories260K/expected.json").read_text())
    result, out = run_job(run_fracsweep, tmp_path, f"""name = formats-bin-tokens
[models]
model = bin path={shared_dir}/models/stories260K/stories260K.bin
[eval]
tokens = {tmp_path}/tokens.npy
greedy_tokens = 8
[sweep]
fractions = 0.01
seeds = 0-1
strategy = zero
""", ranks=1)
    assert result.returncode == 0, result.stderr
    assert baseline(out)["bin"] == pytest.approx(expected["baseline"]["mean_nll"], abs=1e-4)
    # A job of one fraction gets one column in the closing summary.
    header = next(line for line in result.stdout.splitlines() if line.startswith("model "))
    assert header.split() == ["model", "strategy", "f=0.01"]


def test_bf16_directory_inspect_and_run(shared_dir, run_fracsweep, tmp_path):
    directory = write_hf_directory(tmp_path / "hf", shared_dir / "models/stories260K/stories260K.bin", "BF16")
    write_tokens(tmp_path / "tokens.npy", shared_dir, 6)
    info = json.loads(run_fracsweep(["inspect", directory, "--json"]).stdout)
    assert {t["dtype"] for t in info["tensors"]} == {"bf16"}
    text = run_fracsweep(["inspect", directory]).stdout
    assert "bf16" in text and "260032 parameters" in text
    result, out = run_job(run_fracsweep, tmp_path, f"""name = formats-bf16
[models]
model = hf path={directory}
[eval]
tokens = {tmp_path}/tokens.npy
examples = 4
greedy_tokens = 8
{SWEEP}""")
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert f["/trials/trial"].shape[0] == 12
        assert set(f["/trials/positions"][:]) == {f["/baseline/positions"][0]}
        # The stored number format, per tensor and per trial.
        assert {d.decode() for d in f["/tensors/dtype"][:]} == {"bf16"}
        assert {d.decode() for d in f["/trials/stored_dtype"][:]} == {"bf16"}
    # An explicit bit beyond 16 cannot apply to bf16 tensors: refused before any work.
    result, _ = run_job(run_fracsweep, tmp_path, f"""name = formats-bf16-bad
[models]
model = hf path={directory}
[eval]
tokens = {tmp_path}/tokens.npy
[sweep]
fractions = 0.01
seeds = 0
strategy = bitflip bits=20
""", ranks=1)
    assert result.returncode == 2
    assert "bits=20 is outside tensor" in result.stderr and "stored as bf16" in result.stderr


def write_gpt2(directory, seed=0):
    """A small random GPT-2 in HF's layout (Conv1D weights (in, out), 'transformer.' prefix)."""
    rng = np.random.default_rng(seed)
    d, layers, vocab, positions = 16, 2, 40, 24
    tensors = {"transformer.wte.weight": rng.normal(0, 0.5, (vocab, d)),
               "transformer.wpe.weight": rng.normal(0, 0.2, (positions, d))}
    for layer in range(layers):
        p = f"transformer.h.{layer}."
        for name, shape in [("ln_1.weight", (d,)), ("ln_1.bias", (d,)), ("attn.c_attn.weight", (d, 3 * d)),
                            ("attn.c_attn.bias", (3 * d,)), ("attn.c_proj.weight", (d, d)),
                            ("attn.c_proj.bias", (d,)), ("ln_2.weight", (d,)), ("ln_2.bias", (d,)),
                            ("mlp.c_fc.weight", (d, 4 * d)), ("mlp.c_fc.bias", (4 * d,)),
                            ("mlp.c_proj.weight", (4 * d, d)), ("mlp.c_proj.bias", (d,))]:
            tensors[p + name] = rng.normal(1 if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") else 0,
                                           0.2, shape)
    tensors["transformer.ln_f.weight"] = rng.normal(1, 0.1, (d,))
    tensors["transformer.ln_f.bias"] = rng.normal(0, 0.1, (d,))
    directory.mkdir(parents=True)
    write_safetensors(directory / "model.safetensors", tensors, "F16")
    (directory / "config.json").write_text(json.dumps({
        "architectures": ["GPT2LMHeadModel"], "n_embd": d, "n_layer": layers, "n_head": 4,
        "n_positions": positions, "vocab_size": vocab, "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new", "bos_token_id": 0, "eos_token_id": 0}))
    return directory


def test_gpt2_directory(run_fracsweep, tmp_path):
    directory = write_gpt2(tmp_path / "gpt2")
    info = json.loads(run_fracsweep(["inspect", directory, "--json"]).stdout)
    assert info["architecture"] == "gpt2" and info["config"]["n_embd"] == 16
    assert info["n_parameters"] == 40 * 16 + 24 * 16 + 2 * (12 * 16 * 16 + 13 * 16) + 2 * 16
    assert {t["dtype"] for t in info["tensors"]} == {"f16"}
    np.save(tmp_path / "tokens.npy", np.random.default_rng(1).integers(0, 40, (5, 20)).astype("<i8"))
    result, out = run_job(run_fracsweep, tmp_path, f"""name = formats-gpt2
[models]
model = gpt2 path={directory}
[eval]
tokens = {tmp_path}/tokens.npy
greedy_tokens = 8
{SWEEP}""")
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert f["/baseline/positions"][0] == 5 * 19
        assert f["/trials/trial"].shape[0] == 12


def patched_gguf_value(gguf, key, value):
    """The GGUF bytes with the 4-byte value of metadata `key` (after its 4-byte type) replaced."""
    at = gguf.index(key.encode()) + len(key) + 4
    return gguf[:at] + value + gguf[at + 4:]


@pytest.mark.parametrize("case", ["truncated", "not_gguf", "tensor_missing", "token_out_of_vocab",
                                  "bos_out_of_vocab", "epsilon_inf"])
def test_bad_input_exits_2(case, shared_dir, run_fracsweep, tmp_path):
    gguf = (shared_dir / "models/stories260K/stories260K.gguf").read_bytes()
    model_line, eval_lines, culprit = "", f"text = {shared_dir}/data/tinystories/tinystories_val.txt\nparagraphs = 2", ""
    if case == "truncated":
        bad = tmp_path / "cut.gguf"
        bad.write_bytes(gguf[:len(gguf) // 2])
        model_line, culprit = f"model = m path={bad}", str(bad)
    elif case == "not_gguf":
        bad = tmp_path / "text.gguf"
        bad.write_text("hello")
        model_line, culprit = f"model = m path={bad}", "not a GGUF file"
    elif case in ("bos_out_of_vocab", "epsilon_inf"):
        key, value, culprit = {
            "bos_out_of_vocab": ("tokenizer.ggml.bos_token_id", struct.pack("<I", 70000),
                                 "key 'tokenizer.ggml.bos_token_id': expected a token id in 0..511, found 70000"),
            "epsilon_inf": ("llama.attention.layer_norm_rms_epsilon", struct.pack("<f", float("inf")),
                            "keys 'llama.attention.layer_norm_rms_epsilon' and 'llama.rope.freq_base' "
                            "must be positive and finite in float32, found inf")}[case]
        if case == "bos_out_of_vocab":  # a tokenizer this engine does not read: no tokenizer
            model_key = b"tokenizer.ggml.model" + struct.pack("<IQ", 8, 5)
            assert gguf.count(model_key + b"llama") == 1
            gguf = gguf.replace(model_key + b"llama", model_key + b"other")
        bad = tmp_path / "patched.gguf"
        bad.write_bytes(patched_gguf_value(gguf, key, value))
        np.save(tmp_path / "tokens.npy", np.array([[1, 2, 3]], dtype="<i4"))
        model_line, eval_lines = f"model = m path={bad}", f"tokens = {tmp_path}/tokens.npy"
        culprit = f"{bad}: GGUF metadata {culprit}"
    elif case == "tensor_missing":
        directory = write_hf_directory(tmp_path / "hf", shared_dir / "models/stories260K/stories260K.bin", "F32")
        config = json.loads((directory / "config.json").read_text())
        config["num_hidden_layers"] = 6  # the directory holds 5
        (directory / "config.json").write_text(json.dumps(config))
        np.save(tmp_path / "tokens.npy", np.array([[1, 2, 3]], dtype="<i4"))
        model_line, culprit = f"model = m path={directory}", "'model.layers.5.input_layernorm.weight' is missing"
        eval_lines = f"tokens = {tmp_path}/tokens.npy"
    elif case == "token_out_of_vocab":
        directory = write_hf_directory(tmp_path / "hf", shared_dir / "models/stories260K/stories260K.bin", "F32")
        np.save(tmp_path / "tokens.npy", np.array([[1, 2, 512]], dtype="<i4"))
        model_line, culprit = f"model = m path={directory}", "token id 512 is outside the model's vocabulary 0..511"
        eval_lines = f"tokens = {tmp_path}/tokens.npy"
    result, out = run_job(run_fracsweep, tmp_path, f"""name = bad
[models]
{model_line}
[eval]
{eval_lines}
greedy_tokens = 0
[sweep]
fractions = 0.01
seeds = 0
strategy = zero
""")
    assert result.returncode == 2, result.stderr
    assert culprit in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_example_hf_job_runs(shared_dir, run_fracsweep, tmp_path):
    write_hf_directory(tmp_path / "stories260K-hf", shared_dir / "models/stories260K/stories260K.bin", "BF16")
    write_tokens(tmp_path / "stories260K-tokens.npy", shared_dir, 10)
    result = run_fracsweep(["plan", SOURCE_DIR / "jobs/stories260K-hf.ini"], env={"FRACSWEEP_HF_DIR": str(tmp_path)},
                           timeout=300)
    assert result.returncode == 0, result.stderr
