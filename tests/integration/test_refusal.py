"""The behaviour work end to end on the real stories260K pair (base and its refusal fine-tune):
`fracsweep diff`, a small sweep with probes, a reference model and delta strategies under
mpirun -np 2, checked against ../shared/fixtures/stories260K/refusal-expected.json, and bad
probe files."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest


def refusal_job(tmp_path, shared, probes=None, seeds="0-1"):
    models = f"{shared}/models/stories260K"
    probes = probes or f"{shared}/fixtures/stories260K/probes.tsv"
    text = f"""name = refusal-itest
seed = 5
[models]
model = tuned path={models}/stories260K-refusal.bin tokenizer={models}/tok512.bin reference=base
model = base path={models}/stories260K.bin tokenizer={models}/tok512.bin
[eval]
text = {shared}/data/tinystories/tinystories_val.txt
paragraphs = 50
probes = {probes}
greedy_tokens = 8
[sweep]
fractions = 0.001 0.25 1
seeds = {seeds}
strategy = zero
strategy = delta from=base order=random
strategy = delta from=base order=largest
strategy = delta from=tuned order=random
"""
    path = tmp_path / "refusal.ini"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def expected(shared_dir):
    return json.loads((shared_dir / "fixtures/stories260K/refusal-expected.json").read_text())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, shared_dir, run_fracsweep):
    directory = tmp_path_factory.mktemp("refusal")
    out = directory / "refusal.h5"
    result = run_fracsweep(["run", refusal_job(directory, shared_dir), "--out", out], ranks=2, timeout=900)
    assert result.returncode == 0, result.stderr
    return out


def test_diff_matches_the_fixture(shared_dir, run_fracsweep, expected):
    models = shared_dir / "models/stories260K"
    result = run_fracsweep(["diff", models / "stories260K.bin", models / "stories260K-refusal.bin", "--json"])
    assert result.returncode == 0, result.stderr
    overall = json.loads(result.stdout)["overall"]
    assert overall["values"] == expected["delta"]["parameters"]
    assert overall["changed"] == expected["delta"]["changed"]
    for level, value in expected["delta"]["abs_quantiles"].items():
        assert abs(overall["abs_delta_quantiles"][level] - value) <= 1e-6 * value, level
    assert abs(overall["abs_delta_quantiles"]["1"] - expected["delta"]["max_abs"]) <= 1e-7


def test_diff_refuses_other_architectures(shared_dir, run_fracsweep):
    models = shared_dir / "models/stories260K"
    result = run_fracsweep(["diff", models / "stories260K.bin", models / "stories260K.gguf"])
    assert result.returncode == 2
    assert "expected two checkpoints of one architecture" in result.stderr


def test_baselines_match_the_fixture(sweep, expected):
    with h5py.File(sweep, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["grid/model"][()]]
        kinds = [k.decode() if isinstance(k, bytes) else k for k in f["grid/probe_kind"][()]]
        assert kinds == ["trigger", "control"]
        for m, which in ((names.index("tuned"), "tuned"), (names.index("base"), "base")):
            nll = expected["eval_nll"][which]
            assert abs(f["baseline/mean_nll"][m] - nll) <= 1e-4 * nll
            for kind in kinds:
                assert f[f"baseline/probe_{kind}_rate"][m] == expected["refusal_rate"][kind][which]


def test_delta_and_reference_columns(sweep, expected):
    table = pd.read_hdf(sweep, "trials_table")
    for column in ("model", "strategy"):
        table[column] = table[column].map(lambda s: s.decode() if isinstance(s, bytes) else s)
    tuned = table[table["model"] == "tuned"]
    # Reverting the whole fine-tune reproduces the base model: its NLL, no refusal, and exact
    # agreement with the reference (= base) outputs.
    full = tuned[(tuned["strategy"] == "delta(from=base,order=random)") & (tuned["fraction"] == 1.0)]
    assert len(full) == 2
    assert (full["k_changed"] == expected["delta"]["changed"]).all()
    assert np.allclose(full["mean_nll"], expected["eval_nll"]["base"], rtol=1e-4)
    assert (full["probe_trigger_rate"] == 0).all() and (full["top1_agreement_ref"] == 1).all()
    # A delta toward the model itself changes nothing.
    self_delta = tuned[tuned["strategy"] == "delta(from=tuned,order=random)"]
    assert (self_delta["k_changed"] == 0).all() and (self_delta["top1_agreement"] == 1).all()
    # A small random revert keeps the refusal.
    small = tuned[(tuned["strategy"] == "delta(from=base,order=random)") & (tuned["fraction"] == 0.001)]
    assert (small["probe_trigger_rate"] == 1).all()


@pytest.mark.parametrize("content, fragment", [
    ("kind\tprompt\n", "line 1: expected the header"),
    ("kind\tprompt\ttarget\ntrigger\tA dragon.\t\n", "line 2: column 'target' is empty"),
    ("kind\tprompt\ttarget\ntrigger\tA dragon.\t" + " dragon" * 600 + "\n", "line 2: column 'target': prompt + target is"),
])
def test_bad_probe_files_exit_2(tmp_path, shared_dir, run_fracsweep, content, fragment):
    probes = tmp_path / "probes.tsv"
    probes.write_text(content)
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", refusal_job(tmp_path, shared_dir, probes=probes), "--out", out], ranks=2)
    assert result.returncode == 2, result.stderr
    assert str(probes) in result.stderr and fragment in result.stderr
    assert not out.exists()
