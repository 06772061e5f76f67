"""Sharding and merge: `run --shard I/N` runs a disjoint part of the grid; `fracsweep merge`
combines the shards (run at different rank counts and schedules) into a file equal, row for row
and bit for bit, to a single run, and refuses other jobs, overlaps and missing shards."""
import h5py
import pytest

from conftest import write_job
from resume_helpers import assert_same_rows, read_trials

N_TRIALS = 65


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir, run_fracsweep):
    directory = tmp_path_factory.mktemp("shards")
    job = write_job(directory, shared_dir, name="sharded")
    files = {"job": job}
    for label, args, ranks in [("whole", [], 2),
                               ("0", ["--shard", "0/3"], None),
                               ("1", ["--shard", "1/3"], 2),
                               ("2", ["--shard", "2/3", "--schedule", "static"], 2)]:
        out = directory / f"{label}.h5"
        result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0", *args], ranks=ranks)
        assert result.returncode == 0, result.stderr
        files[label] = out
    return files


def test_shards_are_disjoint_consecutive_thirds(runs):
    ids = [read_trials(runs[str(i)])["trial"].tolist() for i in range(3)]
    assert ids == [list(range(0, 21)), list(range(21, 43)), list(range(43, 65))]
    with h5py.File(runs["1"], "r") as f:
        assert (int(f.attrs["shard_index"]), int(f.attrs["shard_count"])) == (1, 3)
        assert int(f.attrs["n_trials"]) == N_TRIALS and int(f.attrs["n_trials_done"]) == 22


def test_merge_equals_single_run(tmp_path, runs, run_fracsweep):
    out = tmp_path / "merged.h5"
    result = run_fracsweep(["merge", "--out", out, runs["2"], runs["0"], runs["1"]])
    assert result.returncode == 0, result.stderr
    assert f"merged 3 shard file(s) into {out}: 65 of 65 trials" in result.stderr
    assert_same_rows(runs["whole"], out)
    with h5py.File(out, "r") as f, h5py.File(runs["whole"], "r") as whole:
        assert (int(f.attrs["shard_index"]), int(f.attrs["shard_count"])) == (0, 1)
        assert int(f.attrs["n_trials_done"]) == N_TRIALS
        assert f.attrs["job_sha256"] == whole.attrs["job_sha256"]
        assert f.attrs["job_text"] == whole.attrs["job_text"]
        sessions = f.attrs["sessions"].splitlines()
        assert [line.split(":")[0] for line in sessions] == ["shard 0/3", "shard 1/3", "shard 2/3"]
        for name in ("grid/strategy", "grid/fraction", "tensors/name", "tensors/shape"):
            assert list(f[name][()]) == list(whole[name][()]) or \
                f[name][()].tobytes() == whole[name][()].tobytes(), name


def test_missing_shard_refused_unless_allow_partial(tmp_path, runs, run_fracsweep):
    out = tmp_path / "partial.h5"
    result = run_fracsweep(["merge", "--out", out, runs["0"], runs["2"]])
    assert result.returncode == 2 and "missing shard(s) 1 of 3" in result.stderr, result.stderr
    assert not out.exists()
    result = run_fracsweep(["merge", "--out", out, runs["0"], runs["2"], "--allow-partial"])
    assert result.returncode == 0, result.stderr
    trials = read_trials(out)["trial"].tolist()
    assert trials == list(range(0, 21)) + list(range(43, 65))
    assert_same_rows(runs["whole"], out, subset=True)


@pytest.mark.parametrize("case, fragment", [
    ("overlap", "overlaps"),
    ("twice", "is given twice"),
    ("twice by another name", "is given twice"),
    ("unsharded", "is shard 0/1 of 65 trials"),
    ("other job", "different job"),
    ("not hdf5", "cannot open as an HDF5 file"),
    ("other hdf5", "not a fracsweep results file"),
    ("missing", "does not exist"),
    ("directory", "is not a regular file"),
])
def test_refusals(tmp_path, shared_dir, runs, run_fracsweep, case, fragment):
    out = tmp_path / "refused.h5"
    if case == "overlap":
        copy = tmp_path / "copy-of-1.h5"
        copy.write_bytes(runs["1"].read_bytes())
        inputs = [runs["0"], runs["1"], copy, runs["2"]]
    elif case == "twice":
        inputs = [runs["0"], runs["1"], runs["1"], runs["2"]]
    elif case == "twice by another name":
        link = tmp_path / "link-to-1.h5"
        link.symlink_to(runs["1"])
        inputs = [runs["0"], runs["1"], link, runs["2"]]
    elif case == "other hdf5":
        other = tmp_path / "other.h5"
        with h5py.File(other, "w") as f:
            f["x"] = [1, 2, 3]
        inputs = [runs["0"], other]
    elif case == "missing":
        inputs = [runs["0"], tmp_path / "no-such.h5"]
    elif case == "directory":
        inputs = [runs["0"], tmp_path]
    elif case == "unsharded":
        inputs = [runs["0"], runs["whole"]]
    elif case == "other job":
        other = write_job(tmp_path, shared_dir, name="sharded", seed="seed = 8")
        other_shard = tmp_path / "other1.h5"
        result = run_fracsweep(["run", other, "--out", other_shard, "--shard", "1/3"], ranks=2)
        assert result.returncode == 0, result.stderr
        inputs = [runs["0"], other_shard, runs["2"]]
    else:
        junk = tmp_path / "junk.h5"
        junk.write_text("not a results file")
        inputs = [runs["0"], junk]
    result = run_fracsweep(["merge", "--out", out, *inputs])
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not out.exists()


def test_merge_needs_out_and_refuses_overwrite(tmp_path, runs, run_fracsweep):
    result = run_fracsweep(["merge", runs["0"], runs["1"], runs["2"]])
    assert result.returncode == 2 and "--out is required" in result.stderr
    result = run_fracsweep(["merge", "--out", runs["whole"], runs["0"], runs["1"], runs["2"]])
    assert result.returncode == 2 and "already exists" in result.stderr


def test_merge_refuses_to_write_over_an_input(tmp_path, runs, run_fracsweep):
    """--out naming one of the inputs (even with --force) would replace a shard."""
    shard = tmp_path / "0.h5"
    shard.write_bytes(runs["0"].read_bytes())
    before = shard.read_bytes()
    for out in (shard, tmp_path / "." / "0.h5"):
        result = run_fracsweep(["merge", "--force", "--out", out, shard, runs["1"], runs["2"]])
        assert result.returncode == 2 and "is also an input of the merge" in result.stderr, result.stderr
        assert shard.read_bytes() == before


def test_merge_refuses_rows_that_do_not_fit_the_grid(tmp_path, runs, run_fracsweep):
    """A row whose axis indices are not those its trial id has in the job's grid (an edited or
    damaged file) is an input error naming the file, not an internal error of the writer."""
    shard = tmp_path / "0.h5"
    shard.write_bytes(runs["0"].read_bytes())
    with h5py.File(shard, "r+") as f:
        axis = next(name for name in ("seed", "fraction", "strategy") if len(f["grid/" + name]) > 1)
        column = f[f"trials/{axis}_idx"]
        column[0] = (column[0] + 1) % len(f["grid/" + axis])
    result = run_fracsweep(["merge", "--out", tmp_path / "merged.h5", shard, runs["1"], runs["2"]])
    assert result.returncode == 2, result.stderr
    assert str(shard) in result.stderr and "other axis indices than its job's grid" in result.stderr


def test_merge_keeps_one_site_recipe_and_refuses_mixed_ones(tmp_path, runs, run_fracsweep):
    """Shards drawn by different site recipes (an engine upgrade between shards) give the same
    trial different sites: refused. Shards all from before the site_recipe attribute keep their
    (Fisher-Yates) recipe, named explicitly in the merged file."""
    with h5py.File(runs["whole"], "r") as f:
        assert f.attrs["site_recipe"] == "feistel-v1"
    old = {}
    for label in ("0", "1", "2"):
        old[label] = tmp_path / f"old-{label}.h5"
        old[label].write_bytes(runs[label].read_bytes())
        with h5py.File(old[label], "r+") as f:
            del f.attrs["site_recipe"]
    out = tmp_path / "mixed.h5"
    result = run_fracsweep(["merge", "--out", out, runs["0"], old["1"], runs["2"]])
    assert result.returncode == 2, result.stderr
    assert "drew its sites by recipe fisher-yates" in result.stderr and "feistel-v1" in result.stderr
    assert not out.exists()
    result = run_fracsweep(["merge", "--out", out, old["0"], old["1"], old["2"]])
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["site_recipe"] == "fisher-yates"
