"""Durable progress, resume and signals: a sweep stopped by SIGTERM, SIGINT or SIGUSR1 (or
killed) resumes from <out>.journal into a file equal, row for row and bit for bit, to an
uninterrupted run; a changed job is refused; a torn journal tail is discarded."""
import os
import signal
import socket

import h5py
import pytest

from resume_helpers import (INCOMPLETE, assert_same_rows, interruptible_job, journal_trials,
                            kill_tree, start_run, wait_for_trials)

N_TRIALS = 4 * 5 * 20 + 5


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared_dir):
    return interruptible_job(tmp_path_factory.mktemp("job"), shared_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, job, run_fracsweep):
    out = tmp_path_factory.mktemp("reference") / "reference.h5"
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(f"{out}.journal")  # removed once the file is complete
    return out


def interrupt(fracsweep_bin, job, out, ranks, signals, after_trials=30, extra=()):
    """Starts a run, waits for `after_trials` committed trials, sends `signals` to the launcher."""
    process = start_run(fracsweep_bin, [job, "--out", out, "--progress-interval", "0",
                                        "--commit-every", "4", *extra], ranks=ranks)
    assert wait_for_trials(f"{out}.journal", after_trials, process), process.communicate()[1]
    for sig in signals:
        os.kill(process.pid, sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def resume_and_check(run_fracsweep, job, out, reference, partial_done, extra=()):
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0", *extra], ranks=2)
    assert result.returncode == 0, result.stderr
    assert f"resuming {out}.journal with {partial_done} trials done" in result.stderr
    assert_same_rows(reference, out)
    assert not os.path.exists(f"{out}.journal")
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_trials_done"]) == int(f.attrs["n_trials"]) == N_TRIALS
        assert int(f.attrs["resume_count"]) == 1
        sessions = f.attrs["sessions"].splitlines()
        assert [line.rsplit("trials_before=", 1)[1] for line in sessions] == ["0", str(partial_done)]


@pytest.mark.parametrize("how, ranks, sig, expected_code", [
    ("SIGUSR1 to mpiexec", 2, signal.SIGUSR1, INCOMPLETE),  # Open MPI forwards SIGUSR1
    ("SIGTERM to one process", None, signal.SIGTERM, INCOMPLETE),
    ("SIGINT to one process", None, signal.SIGINT, INCOMPLETE),
    ("SIGTERM to mpiexec", 2, signal.SIGTERM, 1),  # mpiexec reports its own code, ranks stop cleanly
])
def test_signal_stops_cleanly_and_resume_equals_uninterrupted(
        tmp_path, fracsweep_bin, run_fracsweep, job, reference, how, ranks, sig, expected_code):
    out = tmp_path / "stopped.h5"
    code, stderr = interrupt(fracsweep_bin, job, out, ranks, [sig])
    assert code == expected_code, stderr
    assert "stopping after the trials in flight" in stderr
    assert "run the same command again to resume (exit code 75)" in stderr
    with h5py.File(out, "r") as f:  # a consistent partial file
        done = int(f.attrs["n_trials_done"])
        assert int(f.attrs["n_trials"]) == N_TRIALS and 30 <= done < N_TRIALS
    assert_same_rows(reference, out, subset=True)
    assert journal_trials(f"{out}.journal") == done
    resume_and_check(run_fracsweep, job, out, reference, done,
                     extra=["--resume"] if sig == signal.SIGINT else [])


def test_second_signal_exits_at_once(tmp_path, fracsweep_bin, run_fracsweep, job, reference):
    out = tmp_path / "twice.h5"
    # Two different signals: a second identical one could merge with the first while pending.
    code, stderr = interrupt(fracsweep_bin, job, out, None, [signal.SIGTERM, signal.SIGINT])
    assert code == INCOMPLETE, stderr
    assert "second signal: exiting now" in stderr
    assert "stopped:" not in stderr  # no partial file was written
    done = journal_trials(f"{out}.journal")
    assert done >= 30
    resume_and_check(run_fracsweep, job, out, reference, done)


def killed_run(fracsweep_bin, job, out, after_trials=20):
    process = start_run(fracsweep_bin, [job, "--out", out, "--progress-interval", "0",
                                        "--commit-every", "2"], ranks=2)
    assert wait_for_trials(f"{out}.journal", after_trials, process)
    kill_tree(process)
    assert not out.exists()
    return journal_trials(f"{out}.journal")


def test_changed_job_is_refused_unless_force(tmp_path, fracsweep_bin, run_fracsweep, job, reference):
    out = tmp_path / "changed.h5"
    killed_run(fracsweep_bin, job, out)
    journal = f"{out}.journal"
    before = open(journal, "rb").read()
    changed = tmp_path / "changed.ini"
    changed.write_text(job.read_text() + "# edited after the first run\n")
    result = run_fracsweep(["run", changed, "--out", out], ranks=2)
    assert result.returncode == 2, result.stderr
    assert journal in result.stderr and "different job" in result.stderr and "--force" in result.stderr
    assert open(journal, "rb").read() == before and not out.exists()
    result = run_fracsweep(["run", changed, "--out", out, "--force"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr
    assert_same_rows(reference, out)  # a comment changes the hash, not the trials
    with h5py.File(out, "r") as f:
        assert int(f.attrs["resume_count"]) == 0


def test_torn_tail_is_discarded(tmp_path, fracsweep_bin, run_fracsweep, job, reference):
    out = tmp_path / "torn.h5"
    done = killed_run(fracsweep_bin, job, out)
    with open(f"{out}.journal", "ab") as journal:  # half a trial record, as a killed write leaves
        journal.write(ord("T").to_bytes(4, "little") + (400).to_bytes(4, "little") + b"\x01" * 150)
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert "discarded a torn tail of 158 bytes" in result.stderr
    assert f"with {done} trials done" in result.stderr
    assert_same_rows(reference, out)


def test_resume_without_journal_is_refused(tmp_path, run_fracsweep, job, reference):
    out = tmp_path / "done.h5"
    out.write_bytes(reference.read_bytes())
    result = run_fracsweep(["run", job, "--out", out, "--resume"], ranks=2)
    assert result.returncode == 2 and "no journal" in result.stderr, result.stderr
    assert out.read_bytes() == reference.read_bytes()
    result = run_fracsweep(["run", job, "--out", out], ranks=2)
    assert result.returncode == 2 and "already exists" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.h5"]  # no journal, lock or temp file


@pytest.mark.parametrize("flags, fragment", [
    (["--shard", "2/2"], "--shard"),
    (["--shard", "1"], "--shard"),
    (["--shard", "-1/2"], "--shard"),
    (["--commit-every", "0"], "--commit-every"),
    (["--commit-interval", "-1"], "--commit-interval"),
])
def test_bad_flags(tmp_path, run_fracsweep, job, flags, fragment):
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out, *flags], ranks=2, timeout=120)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert not out.exists() and not os.path.exists(f"{out}.journal")


def test_second_run_on_the_same_output_is_refused(tmp_path, fracsweep_bin, run_fracsweep, job,
                                                  reference):
    out = tmp_path / "busy.h5"
    first = start_run(fracsweep_bin, [job, "--out", out, "--progress-interval", "0"], ranks=2)
    assert wait_for_trials(f"{out}.journal", 5, first)
    second = run_fracsweep(["run", job, "--out", out], ranks=2)
    assert second.returncode == 2, second.stderr
    assert f"{out}.lock" in second.stderr and "another run is writing" in second.stderr
    assert f"host {socket.gethostname()}" in second.stderr and f"pid " in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert_same_rows(reference, out)
    assert not os.path.exists(f"{out}.lock")


@pytest.mark.parametrize("holder, taken_over", [
    ("host={host} pid=999999999 job=12 started=2026-11-26T00:00:00Z\n", True),  # ended, same host
    ("host=elsewhere.example pid=1 job=12 started=2026-11-26T00:00:00Z\n", False),
])
def test_lock_left_behind(tmp_path, run_fracsweep, job, reference, holder, taken_over):
    out = tmp_path / "locked.h5"
    lock = tmp_path / "locked.h5.lock"
    lock.write_text(holder.format(host=socket.gethostname()))
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0",
                            "--no-file-locking"], ranks=2)
    if taken_over:
        assert result.returncode == 0, result.stderr
        assert "taking over the lock of a run that ended (pid 999999999)" in result.stderr
        assert_same_rows(reference, out)
        assert not lock.exists()
    else:
        assert result.returncode == 2, result.stderr
        assert "host elsewhere.example, pid 1, job 12" in result.stderr
        assert "delete this lock file" in result.stderr
        assert lock.exists() and not out.exists()
