"""Threads per rank (`--threads`): a run at 1 and at 2 threads writes identical results (every
threaded kernel splits rows whose results do not depend on the split); the default is the cores
of the process's CPU affinity mask; the thread count is recorded; bad counts are refused; and a
BLIS kernel set of `generic` on a CPU with AVX2 is warned about."""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from conftest import SOURCE_DIR, write_job


def run_with_mask(run_fracsweep, args, cpus):
    """fracsweep (without mpiexec) with its CPU affinity mask restricted to `cpus`."""
    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # inherited by the child; restored below
    try:
        return run_fracsweep(args)
    finally:
        os.sched_setaffinity(0, original)


def threads_attribute(path):
    with h5py.File(path, "r") as f:
        return int(f.attrs["blis_threads"])


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared_dir):
    directory = tmp_path_factory.mktemp("threads")
    # Enough evaluation tokens (12 paragraphs) that every kernel splits its rows across threads.
    return write_job(directory, shared_dir, paragraphs="paragraphs = 12",
                     seeds="seeds = 0-1", fractions="fractions = 0.001 0.01",
                     record_sites="record_sites = 1 20"), directory


def test_one_and_two_threads_write_identical_results(job, run_fracsweep):
    path, directory = job
    outputs = {}
    for threads in (1, 2):
        out = directory / f"t{threads}.h5"
        result = run_fracsweep(["run", path, "--out", out, "--force", "--threads", threads,
                                "--progress-interval", "0"], timeout=900)
        assert result.returncode == 0, result.stderr
        assert f"threads={threads}" in result.stderr
        assert threads_attribute(out) == threads
        outputs[threads] = out
    compare = subprocess.run([sys.executable, SOURCE_DIR / "scripts" / "compare-results.py",
                              outputs[1], outputs[2]], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout
    assert compare.stdout.startswith("0 difference(s)")


def test_default_is_the_affinity_mask(job, run_fracsweep, shared_dir):
    path, directory = job
    first_cpu = min(os.sched_getaffinity(0))
    out = directory / "default.h5"
    result = run_with_mask(run_fracsweep, ["run", path, "--out", out, "--force",
                                           "--progress-interval", "0"], {first_cpu})
    assert result.returncode == 0, result.stderr
    assert threads_attribute(out) == 1
    # More threads than the mask's cores: said once, on stderr, with the fix. (A one-trial job:
    # BLIS threads spin at barriers, so two of them on one core take a time slice per GEMM.)
    tiny = write_job(directory, shared_dir, name="tiny", paragraphs="paragraphs = 1",
                     greedy_tokens="greedy_tokens = 0", fractions="fractions = 0.001",
                     counts="counts = 1", seeds="seeds = 0", strategies="strategy = zero",
                     record_sites="")
    out = directory / "over.h5"
    result = run_with_mask(run_fracsweep, ["run", tiny, "--out", out, "--force", "--threads", "2",
                                           "--progress-interval", "0"], {first_cpu})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("2 threads per rank but rank 0 may run on 1 core(s)") == 1
    assert "--bind-to none" in result.stderr


def test_help_names_the_mask_size(run_fracsweep):
    result = run_fracsweep(["run", "--help"])
    assert result.returncode == 0
    assert f"{len(os.sched_getaffinity(0))} here" in " ".join(result.stdout.split())


@pytest.mark.parametrize("flags, message", [
    (["--threads", "0"], "--threads must be in 1..256, found 0"),
    (["--threads", "300"], "--threads must be in 1..256, found 300"),
    (["--blis-threads", "2"], "blis-threads"),  # replaced by --threads
])
def test_bad_thread_flags_are_refused(job, run_fracsweep, flags, message):
    path, directory = job
    result = run_fracsweep(["run", path, "--out", directory / "bad.h5", *flags])
    assert result.returncode == 2
    assert message in result.stderr
    assert not (directory / "bad.h5").exists()


def cpu_flags():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_generic_kernels_are_warned_about(job, run_fracsweep):
    """`--blis-kernels native` leaves the choice to BLIS, which falls back to its generic kernels
    on CPUs it does not recognise: on a CPU with AVX2 and FMA that is a warning naming the fix."""
    path, directory = job
    out = directory / "native.h5"
    result = run_fracsweep(["run", path, "--out", out, "--force", "--blis-kernels", "native",
                            "--threads", "1", "--progress-interval", "0"])
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as f:
        selected = f.attrs["blis_kernels"]
    selected = selected.decode() if isinstance(selected, bytes) else str(selected)
    warned = "BLIS selected its generic (unoptimised) kernels" in result.stderr
    if selected == "generic" and {"avx2", "fma"} <= cpu_flags():
        assert warned and result.stderr.count("--blis-kernels auto") == 1
    else:
        assert not warned
