"""One copy of the weights per node (par/node_weights.hpp) under a real mpiexec: rows at 2 and
3 ranks sharing the node's copy are bitwise those of a 1-rank run (and of a run with
--share-weights off), and no node file is left in /dev/shm after a success, a bad-input exit or
a SIGTERM; a leftover of an ended process is removed by the next run. Also `plan`'s memory
lines and the refusal of a layout that cannot fit (plan and run)."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SOURCE_DIR, write_job
from hf_stories import read_llama2c, write_hf_directory, write_tokens
from resume_helpers import start_run

SHM = Path("/dev/shm")


def node_files():
    return {p.name for p in SHM.glob("fracsweep-weights-*")}


def two_model_job(tmp_path, shared_dir):
    """stories260K as llama2.c (f32) and as a bf16 Hugging Face directory: both loaders, both
    widening paths, two node files."""
    hf_dir = write_hf_directory(tmp_path / "hf", shared_dir / "models/stories260K/stories260K.bin")
    models = (f"model = stories260K path={shared_dir}/models/stories260K/stories260K.bin "
              f"tokenizer={shared_dir}/models/stories260K/tok512.bin\n"
              f"model = hf-bf16 path={hf_dir} tokenizer={shared_dir}/models/stories260K/tok512.bin")
    tokens = tmp_path / "tokens.npy"
    write_tokens(tokens, shared_dir, 6)  # pre-tokenized: the HF directory has no tokenizer
    return write_job(tmp_path, shared_dir, name="shared-weights", model=models,
                     text=f"tokens = {tokens}", paragraphs="examples = 6",
                     counts="counts = 1 16", seeds="seeds = 0-1",
                     record_sites="record_sites = 1 7")


def compare(a, b):
    result = subprocess.run([sys.executable, str(SOURCE_DIR / "scripts/compare-results.py"), a, b],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rows_equal_one_rank_at_two_and_three_ranks_and_nothing_is_left(tmp_path, shared_dir,
                                                                           run_fracsweep):
    job = two_model_job(tmp_path, shared_dir)
    before = node_files()
    one = tmp_path / "one.h5"
    result = run_fracsweep(["run", job, "--out", one], ranks=1)
    assert result.returncode == 0, result.stderr
    assert "private to each rank (one rank per node)" in result.stderr
    for ranks in (2, 3):
        out = tmp_path / f"ranks{ranks}.h5"
        result = run_fracsweep(["run", job, "--out", out], ranks=ranks)
        assert result.returncode == 0, result.stderr
        assert f"shared by {ranks} ranks of the node" in result.stderr
        assert "converted into the node file" in result.stderr
        compare(one, out)
        assert node_files() == before
    off = tmp_path / "off.h5"
    result = run_fracsweep(["run", job, "--out", off, "--share-weights", "off"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert "private to each rank (--share-weights off)" in result.stderr
    compare(one, off)


def test_no_node_file_after_a_bad_input_exit(tmp_path, shared_dir, run_fracsweep):
    job = two_model_job(tmp_path, shared_dir)
    before = node_files()
    # The run's memory check refuses before loading (exit 2).
    result = run_fracsweep(["run", job, "--out", tmp_path / "refused.h5"], ranks=2,
                           env={"FRACSWEEP_TEST_MEMORY_LIMIT_MIB": "1"})
    assert result.returncode == 2, result.stderr
    assert "per node" in result.stderr and "FRACSWEEP_TEST_MEMORY_LIMIT_MIB" in result.stderr
    assert not (tmp_path / "refused.h5").exists()
    assert not (tmp_path / "refused.h5.journal").exists()
    # A model whose tensor bytes are cut short: the file size check refuses it (exit 2).
    broken = tmp_path / "broken.bin"
    broken.write_bytes((shared_dir / "models/stories260K/stories260K.bin").read_bytes()[:-4096])
    text = Path(job).read_text().replace(f"{shared_dir}/models/stories260K/stories260K.bin",
                                         str(broken))
    Path(job).write_text(text)
    result = run_fracsweep(["run", job, "--out", tmp_path / "broken.h5"], ranks=2)
    assert result.returncode == 2, result.stderr
    assert node_files() == before


def test_no_node_file_after_sigterm(tmp_path, shared_dir, fracsweep_bin):
    job = two_model_job(tmp_path, shared_dir)
    Path(job).write_text(Path(job).read_text().replace("seeds = 0-1", "seeds = 0-40"))
    before = node_files()
    process = start_run(fracsweep_bin, [job, "--out", tmp_path / "stopped.h5",
                                        "--progress-interval", "0"], ranks=2)
    deadline = time.monotonic() + 120
    journal = tmp_path / "stopped.h5.journal"
    # Stopped mid-sweep: once the journal holds rows, the node files were staged and unlinked.
    while time.monotonic() < deadline and (not journal.exists() or journal.stat().st_size < 4096):
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # to mpiexec, as a batch system does; it forwards it
    process.communicate(timeout=120)
    assert process.returncode == 1  # mpiexec's own code (test_resume.py); the ranks stop cleanly
    assert (tmp_path / "stopped.h5").exists()  # the partial results file of a clean stop
    assert node_files() == before


def test_a_leftover_of_an_ended_process_is_removed(tmp_path, shared_dir, run_fracsweep):
    child = subprocess.Popen(["true"])
    child.wait()  # a pid that no longer exists
    leftover = SHM / f"fracsweep-weights-local-{child.pid}-0.f32"
    leftover.write_bytes(b"\0" * 4096)
    mine = SHM / f"fracsweep-weights-local-{os.getpid()}-0.f32"  # a live process: kept
    mine.write_bytes(b"\0" * 4096)
    try:
        job = write_job(tmp_path, shared_dir, counts="counts = 1", seeds="seeds = 0",
                        record_sites="record_sites = 1")
        result = run_fracsweep(["run", job, "--out", tmp_path / "out.h5"], ranks=2)
        assert result.returncode == 0, result.stderr
        assert not leftover.exists()
        assert mine.exists()
        assert "removed 1 leftover file(s) of ended runs" in result.stderr
    finally:
        leftover.unlink(missing_ok=True)
        mine.unlink(missing_ok=True)


def memory_lines(stdout):
    per_rank = re.search(r"memory per rank: ([\d.]+) MiB \(([\d.]+) MiB of weights held privately",
                         stdout)
    per_node = re.search(r"memory per node: ([\d.]+) MiB \(([\d.]+) MiB of weights shared once per "
                         r"node \+ (\d+) rank\(s\).*the node has ([\d.]+) (GiB|MiB) \(([^)]+)\)",
                         stdout)
    assert per_rank and per_node, stdout
    return per_rank, per_node


def test_plan_prints_memory_per_node_and_per_rank_and_refuses_what_cannot_fit(
        tmp_path, shared_dir, run_fracsweep):
    job = write_job(tmp_path, shared_dir, counts="counts = 1", seeds="seeds = 0",
                        record_sites="record_sites = 1")
    config, tensors = read_llama2c(shared_dir / "models/stories260K/stories260K.bin")
    weights_mib = 4 * sum(t.size for t in tensors.values()) / 2**20  # float32 working values

    shared = run_fracsweep(["plan", job, "--ranks", "2"])
    assert shared.returncode == 0, shared.stderr
    per_rank, per_node = memory_lines(shared.stdout)
    assert float(per_node.group(2)) == pytest.approx(weights_mib, abs=0.05)  # once per node
    assert float(per_rank.group(2)) == 0  # nothing held privately
    assert int(per_node.group(3)) == 2
    working = float(per_rank.group(1))
    assert working > 0  # measured on sample trials
    assert float(per_node.group(1)) == pytest.approx(weights_mib + 2 * working, abs=0.15)

    private = run_fracsweep(["plan", job, "--ranks", "2", "--share-weights", "off", "--no-measure"])
    assert private.returncode == 0, private.stderr
    per_rank, per_node = memory_lines(private.stdout)
    assert float(per_rank.group(2)) == pytest.approx(weights_mib, abs=0.05)
    assert float(per_node.group(1)) == pytest.approx(2 * weights_mib, abs=0.1)

    # The node's real available memory: MemAvailable, unless a cgroup limit is lower.
    source = per_node.group(6)
    available_mib = float(per_node.group(4)) * (1024 if per_node.group(5) == "GiB" else 1)
    meminfo = dict(line.split(":") for line in Path("/proc/meminfo").read_text().splitlines())
    if source == "MemAvailable":
        assert available_mib == pytest.approx(int(meminfo["MemAvailable"].split()[0]) / 1024,
                                              rel=0.1)
    else:
        assert source == "cgroup memory limit"
        assert available_mib <= int(meminfo["MemAvailable"].split()[0]) / 1024

    refused = run_fracsweep(["plan", job, "--ranks", "2", "--no-measure"],
                            env={"FRACSWEEP_TEST_MEMORY_LIMIT_MIB": "0"})
    assert refused.returncode == 2
    assert re.search(r"the job needs [\d.]+ MiB per node .* more than the 0.0 MiB this node has "
                     r"\(FRACSWEEP_TEST_MEMORY_LIMIT_MIB\)", refused.stderr), refused.stderr
