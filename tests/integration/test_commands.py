"""`fracsweep inspect`, `plan`, `--help` and `--version` on the real model and job files."""
import json

from conftest import SOURCE_DIR


def test_inspect_json_matches_reference(shared_dir, run_fracsweep):
    expected = json.loads((shared_dir / "fixtures/stories260K/expected.json").read_text())["model"]
    result = run_fracsweep(["inspect", shared_dir / "models/stories260K/stories260K.bin", "--json"])
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["n_parameters"] == expected["n_parameters"] == 260032
    assert info["n_nonfinite"] == 0
    for key, value in expected["header"].items():
        assert info["config"][key] == value, key
    shapes = {t["name"]: t["shape"] for t in info["tensors"]}
    assert shapes["tok_embeddings"] == expected["tensors"]["tok_embeddings"]
    assert shapes["norm_final"] == expected["tensors"]["rms_final"]
    per_layer = {"attn.wq": "wq", "attn.wk": "wk", "attn.wv": "wv", "attn.wo": "wo", "ffn.w1": "w1",
                 "ffn.w2": "w2", "ffn.w3": "w3", "attn_norm": "rms_att", "ffn_norm": "rms_ffn"}
    for layer in range(5):
        for ours, theirs in per_layer.items():
            assert shapes[f"layers.{layer}.{ours}"] == expected["tensors"][theirs][1:]
    matrices = sum(t["elements"] for t in info["tensors"] if ".attn.w" in t["name"] or ".ffn.w" in t["name"])
    assert matrices == expected["n_matrix_weights"]
    offsets = [t["offset"] for t in info["tensors"]]
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_inspect_text(shared_dir, run_fracsweep):
    result = run_fracsweep(["inspect", shared_dir / "models/stories260K/stories260K.bin"])
    assert result.returncode == 0
    assert "layers.3.attn.wq" in result.stdout and "64x64" in result.stdout
    assert "260032 parameters" in result.stdout
    assert "buffer values" not in result.stdout  # no buffers: no buffer count


def test_inspect_bad_file(tmp_path, run_fracsweep):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01\x00")
    result = run_fracsweep(["inspect", bad])
    assert result.returncode == 2 and str(bad) in result.stderr


def test_plan_claims_job(shared_dir, run_fracsweep):
    job = SOURCE_DIR / "jobs/stories260K-claims.ini"
    result = run_fracsweep(["plan", job, "--ranks", "2"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "= 1395 trials" in result.stdout
    # The largest k (0.25 of 260032) and the smallest (1e-5), then magnitude's ranking.
    assert "trials: timed 3 (k = 65008, 3, 3)" in result.stdout
    assert "(forward pass + 4 of 256 greedy tokens)" in result.stdout
    assert "trial-seconds in all" in result.stdout and "wall estimate at 2 rank(s)" in result.stdout


def test_plan_shows_a_greedy_continuation_only_for_language_models(shared_dir, run_fracsweep):
    classifier = run_fracsweep(["plan", SOURCE_DIR / "jobs/default.ini", "--no-measure"], timeout=120)
    assert classifier.returncode == 0, classifier.stderr
    assert "= 1395 trials" in classifier.stdout and "strategies (12)" in classifier.stdout
    assert "greedy" not in classifier.stdout  # a classifier job generates no continuation
    language = run_fracsweep(["plan", SOURCE_DIR / "jobs/stories260K-claims.ini", "--no-measure"], timeout=120)
    assert language.returncode == 0, language.stderr
    assert "greedy continuation: 256 tokens from BOS" in language.stdout


def test_help_and_version(run_fracsweep):
    assert "usage" in run_fracsweep(["--help"]).stdout
    for command in ("run", "plan", "inspect"):
        result = run_fracsweep([command, "--help"])
        assert result.returncode == 0 and "--help" in result.stdout, command
    assert "--blis-kernels" in run_fracsweep(["run", "--help"]).stdout
    version = run_fracsweep(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("fracsweep 0.1.0")


def test_inspect_sequential_classifier(run_fracsweep):
    result = run_fracsweep(["inspect", SOURCE_DIR / "jobs/default/digits-mlp.json", "--json"])
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["architecture"] == "sequential" and info["config"]["classes"] == 10
    assert info["config"]["layers"] == "flatten,linear,relu,linear"
    assert [t["name"] for t in info["tensors"]] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert info["n_parameters"] == info["n_values"] == 64 * 64 + 64 + 10 * 64 + 10 == 4810
    assert info["n_buffer_values"] == 0 and {t["role"] for t in info["tensors"]} == {"parameter"}
