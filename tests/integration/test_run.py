"""`fracsweep run` end to end under mpiexec: identical rows at 1, 2 and 3 ranks (dynamic and
static scheduling), a file that h5py, xarray and pandas read, and provenance that tells the truth."""
import json
import math
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import write_job

# Columns that may differ between runs of the same job: who ran a trial and how long it took.
SCHEDULE_COLUMNS = {"wall_s", "rank"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir, run_fracsweep):
    """The same job at 1, 2 (dynamic), 2 (static) and 3 ranks."""
    directory = tmp_path_factory.mktemp("runs")
    job = write_job(directory, shared_dir)
    files = {}
    for label, ranks, extra in [("np1", 1, []), ("np2", 2, []), ("np2-static", 2, ["--schedule", "static"]),
                                ("np3", 3, ["--chunk", "2"])]:
        out = directory / f"{label}.h5"
        result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0.01", *extra], ranks=ranks)
        assert result.returncode == 0, result.stderr
        files[label] = (out, result)
    return files


def read_trials(path):
    with h5py.File(path, "r") as f:
        return {name: f["trials"][name][()] for name in f["trials"]}


def test_rows_identical_across_rank_counts(runs):
    reference = read_trials(runs["np1"][0])
    assert len(reference["trial"]) == 4 * 5 * 3 + 5  # 4 random strategies x 5 amounts x 3 seeds + magnitude
    for label in ("np2", "np2-static", "np3"):
        other = read_trials(runs[label][0])
        assert set(other) == set(reference)
        for column, values in reference.items():
            if column in SCHEDULE_COLUMNS:
                continue
            if values.dtype == object:  # strings
                assert list(values) == list(other[column]), (label, column)
            else:  # bitwise, NaN included
                assert values.tobytes() == other[column].tobytes(), (label, column)


def test_several_ranks_computed_trials(runs):
    ranks = read_trials(runs["np3"][0])["rank"]
    assert set(np.unique(ranks)) == {0, 1, 2}  # rank 0 computes too
    assert set(np.unique(read_trials(runs["np2-static"][0])["rank"])) == {0, 1}


def test_readers_and_columns(runs):
    path = runs["np2"][0]
    table = pd.read_hdf(path, "trials_table")
    dataset = xr.open_dataset(path, group="trials", engine="h5netcdf")
    assert len(table) == dataset.sizes["trial"] == 65
    for column in ["trial", "model", "strategy", "fraction", "seed", "k", "n_scope", "mean_nll",
                   "perplexity", "top1_agreement", "accuracy", "mean_kl", "max_kl",
                   "nonfinite_positions", "greedy_match", "wall_s", "rank", "status"]:
        assert column in table.columns and column in dataset
    np.testing.assert_array_equal(table["trial"].to_numpy(), dataset["trial"].to_numpy())
    np.testing.assert_array_equal(table["mean_kl"].to_numpy(), dataset["mean_kl"].to_numpy())
    # k = round(f * N) for fractions, the count for counts, over all 260,032 parameters.
    n = 260032
    for row in table.itertuples():
        assert row.n_scope == n
    fractions = table[table["k"] > 4]
    assert (fractions["k"] == np.floor(fractions["fraction"] * n + 0.5).astype(int)).all()
    counts = xr.open_dataset(path, group="grid", engine="h5netcdf")["count"].to_numpy()
    assert sorted(c for c in counts if c > 0) == [1, 4]


def test_metrics_are_consistent(runs):
    table = pd.read_hdf(runs["np1"][0], "trials_table")
    finite = table[table["nonfinite_positions"] == 0]
    np.testing.assert_allclose(finite["perplexity"], np.exp(finite["mean_nll"]), rtol=1e-12)
    assert ((finite["mean_kl"] >= 0) & (finite["mean_kl"] <= finite["max_kl"])).all()
    broken = table[table["nonfinite_positions"] > 0]
    assert broken["mean_nll"].isna().all() and (broken["status"] == 1).all()
    assert ((table["top1_agreement"] >= 0) & (table["top1_agreement"] <= 1)).all()
    # More zeroed weights never touch fewer sites: nested sites per (strategy, seed).
    zero = table[(table["strategy"] == b"zero") | (table["strategy"] == "zero")]
    assert len(zero) == 15


def test_baseline_and_provenance(runs, shared_dir):
    path = runs["np3"][0]
    expected = json.loads((shared_dir / "fixtures/stories260K/expected.json").read_text())
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        assert attrs["schema_version"] == "fracsweep-results/1"
        assert int(attrs["mpi_size"]) == 3
        assert int(attrs["n_trials"]) == int(attrs["n_trials_done"]) == 65
        assert attrs["blis_kernels"] and attrs["blis_version"] and int(attrs["blis_threads"]) == 1
        assert attrs["hostnames"] and attrs["started_utc"] <= attrs["finished_utc"]
        assert "name = itest" in attrs["job_text"]
        assert len(attrs["job_sha256"]) == 64 and len(attrs["git_commit"]) >= 7
        greedy = f["baseline/greedy_ids"][0]
        # From BOS, the first 24 greedy tokens are the reference's.
        assert list(greedy[:24]) == expected["greedy_from_bos"]["ids"][:24]
        assert int(f["baseline/greedy_length"][0]) == 24
        assert f["baseline/greedy_text"][0].decode().startswith("Once upon a time")
        assert f["tensors/name"].len() == 1 + 5 * 9 + 1


def test_recorded_sites(runs):
    with h5py.File(runs["np2"][0], "r") as f:
        sites = f["sites"]
        trials = sites["trial"][()]
        assert set(np.unique(trials)) == {1, 40}
        k = dict(zip(f["trials/trial"][()], f["trials/k"][()]))
        for trial in (1, 40):
            assert (trials == trial).sum() == k[trial]
            ranks = sites["site_rank"][()][trials == trial]
            assert list(ranks) == list(range(k[trial]))
        offsets = sites["offset"][()][trials == 1]
        assert len(set(offsets)) == len(offsets)  # without replacement


def test_progress_on_rank_zero_only(runs):
    stderr = runs["np3"][1].stderr
    lines = [line for line in stderr.splitlines() if "trials/s" in line]
    assert lines, stderr
    assert all(line.startswith("[fracsweep]") and "ETA" in line for line in lines)
    assert lines[-1].startswith("[fracsweep] 65/65 trials (100.0%)")
    assert "[rank" not in stderr


def test_load_phases_announced_in_order(runs):
    """Rank 0 prints each load phase once with its duration: the node file (several ranks share
    the weights), weights, the greedy continuation (the job has greedy_tokens = 24), then the
    baseline's forward pass."""
    in_order = ["weights", "greedy continuation", "baseline", "ready"]
    for label, expected in [("np1", in_order), ("np3", ["converted into the node file", *in_order])]:
        stderr = runs[label][1].stderr
        phases = re.findall(r"^\[fracsweep\] model 'stories260K': (.+) in [0-9.]+ s$", stderr,
                            re.MULTILINE)
        assert phases == expected, stderr


def test_refuses_to_overwrite(tmp_path, shared_dir, run_fracsweep, runs):
    out = runs["np1"][0]
    before = out.read_bytes()
    job = write_job(tmp_path, shared_dir)
    result = run_fracsweep(["run", job, "--out", out], ranks=2)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_bytes() == before
