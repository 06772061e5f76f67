"""Kill test: a running `mpiexec -np 2` sweep is killed with SIGKILL (every rank and the
launcher) at random moments, at least 10 times, and resumed each time; the final file equals an
uninterrupted run row for row and bit for bit, with zero lost and zero duplicated trials, and
no committed trial is ever lost between sessions."""
import os
import random
import time

import h5py
import numpy as np

from resume_helpers import assert_same_rows, interruptible_job, journal_trials, kill_tree, start_run

KILLS = 10
N_TRIALS = 4 * 5 * 20 + 5


def test_sigkill_at_random_moments(tmp_path, shared_dir, fracsweep_bin, run_fracsweep):
    job = interruptible_job(tmp_path, shared_dir)
    reference = tmp_path / "reference.h5"
    started = time.monotonic()
    result = run_fracsweep(["run", job, "--out", reference, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    full_run_s = time.monotonic() - started

    seed = int(os.environ.get("FRACSWEEP_KILL_SEED", "20261126"))
    rng = random.Random(seed)
    out = tmp_path / "killed.h5"
    journal = f"{out}.journal"
    kills, committed_before_kill, sessions = 0, [], 0
    # Each session is killed after a random share of an uninterrupted run's time: some before
    # the journal exists, most mid-sweep; commits every 3 trials so kills land between and
    # during commits.
    while kills < KILLS:
        process = start_run(fracsweep_bin, [job, "--out", out, "--progress-interval", "0",
                                            "--commit-every", "3"], ranks=2)
        sessions += 1
        time.sleep(rng.uniform(0.05, 0.45) * full_run_s)
        if process.poll() is not None:  # finished before the kill: start a fresh sweep again
            assert process.returncode == 0, process.communicate()[1]
            out.unlink()
            continue
        before = journal_trials(journal)
        kill_tree(process)
        kills += 1
        if out.exists() and not os.path.exists(journal):  # killed after it completed
            assert_same_rows(reference, out)
            out.unlink()  # start a fresh sweep for the remaining kills
            continue
        after = journal_trials(journal)
        assert after >= before  # nothing committed is ever lost
        committed_before_kill.append(after)
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    print(f"seed {seed}: {kills} kills survived over {sessions} sessions; committed trials at each "
          f"kill: {committed_before_kill}")

    assert_same_rows(reference, out)
    with h5py.File(out, "r") as f:
        trials = f["trials/trial"][()]
        assert int(f.attrs["n_trials_done"]) == N_TRIALS
        np.testing.assert_array_equal(trials, np.arange(N_TRIALS))  # zero lost, zero duplicated
        before = [int(line.rsplit("=", 1)[1]) for line in f.attrs["sessions"].splitlines()]
        assert before == sorted(before)  # each session starts from at least the last one's trials
    assert not os.path.exists(journal)
    assert not list(tmp_path.glob("killed.h5.tmp-*"))
