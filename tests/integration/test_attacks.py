"""Deliberate change end to end (issue 11): taylor, wanda, bfa and finetune on stories260K and
the digits classifier under mpirun; identical rows and paths at 1 and 2 ranks and after a
sharded run is merged; bfa paths in /paths (readable by h5py and xarray, prefixes of each
other across budgets); chosen changes beat random ones; bad objectives and budgets refused
before any work."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "jobs" / "default"


def attack_job(directory, shared, name="attacks-itest", strategies=None, counts="1 2 4", extra=""):
    strategies = strategies or [
        "zero",
        "taylor then=zero objective=agreement",
        "taylor then=bitflip bits=mantissa",
        "wanda then=zero",
        "bfa bits=mantissa limit=3",
        "bfa bits=any",
        "finetune sites=taylor steps=2 lr=0.01",
        "finetune sites=random steps=2 lr=0.01",
    ]
    text = f"""name = {name}
seed = 11
[models]
model = stories260K path={shared}/models/stories260K/stories260K.bin tokenizer={shared}/models/stories260K/tok512.bin
model = digits path={DIGITS}/digits-mlp.json
[eval]
text = {shared}/data/tinystories/tinystories_val.txt
paragraphs = 6
greedy_tokens = 0
inputs = {DIGITS}/digits-test-images.npy
labels = {DIGITS}/digits-test-labels.npy
input_divisor = 16
{extra}
[sweep]
counts = {counts}
seeds = 0-1
""" + "".join(f"strategy = {line}\n" for line in strategies)
    path = Path(directory) / f"{name}.ini"
    path.write_text(text)
    return path


def trials(path):
    with h5py.File(path) as f:
        t = f["trials"]
        frame = pd.DataFrame({name: t[name][:] for name in
                              ("trial", "k", "k_changed", "seed", "top1_agreement", "accuracy", "mean_nll")})
        frame["model"] = [x.decode() for x in t["model"][:]]
        frame["strategy"] = [x.decode() for x in t["strategy"][:]]
    return frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir, run_fracsweep):
    directory = tmp_path_factory.mktemp("attacks")
    job = attack_job(directory, shared_dir)
    outputs = {}
    for label, ranks, extra in (("one", None, []), ("two", 2, []),
                                ("shard0", 2, ["--shard", "0/2"]), ("shard1", None, ["--shard", "1/2"])):
        out = directory / f"{label}.h5"
        result = run_fracsweep(["run", job, "--out", out, *extra], ranks=ranks, timeout=900)
        assert result.returncode == 0, result.stderr
        outputs[label] = out
    merged = directory / "merged.h5"
    result = run_fracsweep(["merge", outputs["shard0"], outputs["shard1"], "--out", merged])
    assert result.returncode == 0, result.stderr
    outputs["merged"] = merged
    return outputs


def compare(a, b):
    return subprocess.run([sys.executable, REPO / "scripts" / "compare-results.py", a, b],
                          capture_output=True, text=True)


def test_same_rows_and_paths_at_any_rank_count_and_after_merge(runs):
    for other in ("two", "merged"):
        result = compare(runs["one"], runs[other])
        assert result.returncode == 0, result.stdout + result.stderr


def test_bfa_paths_are_complete_prefixes_readable_by_xarray(runs):
    rows = trials(runs["one"])
    paths = xr.open_dataset(runs["one"], group="paths", engine="h5netcdf")
    assert "path_step" in paths.dims
    frame = paths.to_dataframe()
    bfa = rows[rows.strategy.str.startswith("bfa")]
    assert len(bfa) == 2 * 2 * 3  # 2 models x 2 bfa strategies x 3 budgets, deterministic
    by_trial = {trial: group.sort_values("step") for trial, group in frame.groupby("trial")}
    assert set(by_trial) == set(bfa.trial)
    for (model, strategy), group in bfa.groupby(["model", "strategy"]):
        previous = None
        for _, row in group.sort_values("k").iterrows():
            steps = by_trial[row.trial]
            assert list(steps.step) == list(range(1, len(steps) + 1))
            assert 1 <= len(steps) <= row.k
            if "limit=3" in strategy:
                assert len(steps) == min(row.k, 3)
                assert (steps.bit < 23).all()  # mantissa bits of f32 weights
            if previous is not None:  # a larger budget extends the smaller one's path
                n = len(previous)
                assert list(steps.offset[:n]) == list(previous.offset)
                assert list(steps.bit[:n]) == list(previous.bit)
            previous = steps
            # The row's metrics are the path's last state.
            last = steps.iloc[-1]
            metric = "top1_agreement" if model == "stories260K" else "accuracy"
            assert np.isclose(row[metric], last[metric], equal_nan=True)
        if "bits=any" in strategy:  # one exponent flip destroys the outputs: the search ends
            assert len(by_trial[group.trial.iloc[-1]]) == 1


def test_chosen_changes_beat_random_ones(runs):
    rows = trials(runs["one"])
    lm = rows[(rows.model == "stories260K") & (rows.k == 4)]
    random = lm[lm.strategy == "zero"].top1_agreement.mean()
    taylor = lm[lm.strategy.str.startswith("taylor(then=zero")].top1_agreement.iloc[0]
    wanda = lm[lm.strategy.str.startswith("wanda")].top1_agreement.iloc[0]
    assert random > 0.99
    assert taylor < random - 0.05 and wanda < random - 0.05
    # Every strategy changes at most k weights; finetune sites=taylor trains sites of nonzero
    # gradient, so all of them move (a random site may sit behind a dead ReLU and stay).
    assert (rows.k_changed <= rows.k).all()
    tuned = rows[rows.strategy.str.startswith("finetune(sites=taylor")]
    assert len(tuned) == 6 and (tuned.k_changed == tuned.k).all()


@pytest.mark.parametrize("strategy, extra, counts, message", [
    ("taylor objective=remove:refusal", "", "1", "needs behaviour probes"),
    ("bfa objective=remove:nosuchkind", "probes = {shared}/fixtures/stories260K/probes.tsv", "1",
     "has no probes of kind 'nosuchkind'"),
    ("zero", "", "5000", "5000 sites exceed the 4810 parameters"),
])
def test_bad_objectives_and_budgets_are_refused_before_any_work(tmp_path, shared_dir, run_fracsweep,
                                                                strategy, extra, counts, message):
    extra = extra.format(shared=shared_dir)
    job = attack_job(tmp_path, shared_dir, strategies=[strategy], counts=counts, extra=extra)
    if extra:  # probes belong to language models: this job keeps only stories260K
        job.write_text("\n".join(line for line in job.read_text().splitlines()
                                 if "digits" not in line and not line.startswith(("inputs", "labels", "input_divisor"))))
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert str(job) in result.stderr
    assert not out.exists()
    assert list(tmp_path.glob("out.h5*")) == []


@pytest.mark.parametrize("reference, strategy", [("reference=digits", "zero"), ("", "delta from=digits")])
def test_a_second_checkpoint_of_another_architecture_is_refused_up_front(
        tmp_path, shared_dir, run_fracsweep, reference, strategy):
    job = attack_job(tmp_path, shared_dir, strategies=[strategy], counts="1")
    job.write_text(job.read_text().replace("tok512.bin\n", f"tok512.bin {reference}\n"))
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "expected two checkpoints of one architecture" in result.stderr
    assert "model 'stories260K'" in result.stderr and str(job) in result.stderr
    assert list(tmp_path.glob("out.h5*")) == []


def test_bf16_and_gpt2_checkpoints_are_attacked_in_their_stored_format(tmp_path, shared_dir, run_fracsweep):
    from hf_stories import write_hf_directory, write_tokens
    from test_formats import write_gpt2

    llama = write_hf_directory(tmp_path / "hf", shared_dir / "models/stories260K/stories260K.bin", "BF16")
    write_tokens(tmp_path / "tokens.npy", shared_dir, 4)
    gpt2 = write_gpt2(tmp_path / "gpt2")
    strategies = ["bfa bits=mantissa limit=2", "taylor then=bitflip bits=exponent", "wanda then=zero",
                  "finetune sites=taylor steps=2 lr=0.01"]
    for name, model, eval_lines in (
            ("bf16", f"model = hf path={llama}", f"tokens = {tmp_path}/tokens.npy\nexamples = 4"),
            ("gpt2", f"model = gpt2 path={gpt2}", f"tokens = {tmp_path}/gpt2-tokens.npy")):
        if name == "gpt2":
            np.save(tmp_path / "gpt2-tokens.npy", np.random.default_rng(1).integers(0, 40, (3, 16)).astype(np.int32))
        job = tmp_path / f"{name}.ini"
        job.write_text(f"name = attacks-{name}\n[models]\n{model}\n[eval]\n{eval_lines}\ngreedy_tokens = 0\n"
                       "[sweep]\ncounts = 1 2 4\nseeds = 0\n" + "".join(f"strategy = {s}\n" for s in strategies))
        out = tmp_path / f"{name}.h5"
        result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=600)
        assert result.returncode == 0, result.stderr
        rows = trials(out)
        assert len(rows) == 12
        assert (rows.k_changed >= 1).all() and (rows.k_changed <= rows.k).all()
        with h5py.File(out) as f:
            bits = f["/paths/bit"][:]
            new_values = f["/paths/new_value"][:]
        assert len(bits) == 1 + 2 + 2
        if name == "bf16":
            assert (bits < 7).all()  # bf16 mantissa bits 0..6 of the 16-bit pattern
            # Every value written is a bf16 value: the low 16 bits of its float32 pattern are 0.
            assert (new_values.view(np.uint32) & 0xFFFF == 0).all()
        else:
            assert (bits < 23).all()
