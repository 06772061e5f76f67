"""Helpers shared by the resume, kill, merge and Slurm tests: a sweep long enough to interrupt,
running `fracsweep run` in the background, and comparing results files row for row, bit for bit."""
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py

from conftest import mpiexec_prefix, write_job

# Columns that may differ between runs of the same job: who ran a trial and how long it took.
SCHEDULE_COLUMNS = {"wall_s", "rank"}
INCOMPLETE = 75  # exit code: stopped by a signal, resumable


def interruptible_job(directory, shared, name="resumable", seeds="0-19"):
    """stories260K, 4 random strategies x 5 amounts x 20 seeds + magnitude = 405 trials (~6 s on
    2 ranks), with recorded sites."""
    return write_job(directory, shared, name=name, seeds=f"seeds = {seeds}",
                     record_sites="record_sites = 1 40 399")


def start_run(fracsweep_bin, args, ranks=None):
    """Starts `fracsweep run ARGS` (under mpiexec when ranks) in its own session; returns Popen."""
    command = ([*mpiexec_prefix(ranks)] if ranks else []) + [fracsweep_bin, "run", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def descendants(pid):
    """Process ids of every live descendant of `pid` (from /proc), deepest last."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child in children.get(parent, []):
            found.append(child)
            frontier.append(child)
    return found


def kill_tree(process, sig=signal.SIGKILL):
    """Sends `sig` to every rank (descendants of the launcher) and to the launcher itself, and
    waits until they are gone."""
    pids = [*descendants(process.pid), process.pid]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.02)


def alive(pid):
    """A process that has not exited (zombies count as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def journal_trials(path):
    """Committed trial records in a journal (record kind 'T'), counted without the engine."""
    path = Path(path)
    if not path.exists():
        return 0
    data, position, count = path.read_bytes(), 0, 0
    while position + 12 <= len(data):
        kind = int.from_bytes(data[position:position + 4], "little")
        length = int.from_bytes(data[position + 4:position + 8], "little")
        if position + 12 + length > len(data):
            break
        count += kind == ord("T")
        position += 12 + length
    return count


def wait_for_trials(journal, at_least, process, timeout=120):
    """Waits until `journal` holds `at_least` committed trials (or the run ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if journal_trials(journal) >= at_least:
            return True
        time.sleep(0.02)
    return False


def read_trials(path):
    with h5py.File(path, "r") as f:
        return {name: f["trials"][name][()] for name in f["trials"]}


def assert_same_rows(reference_path, other_path, subset=False):
    """Row for row, bitwise in every metric (NaN included); timing and rank columns aside.
    With `subset`, `other` may hold only some of the reference's trials."""
    reference, other = read_trials(reference_path), read_trials(other_path)
    assert set(other) == set(reference)
    trials = other["trial"]
    assert len(set(trials.tolist())) == len(trials), "duplicated trials"
    if subset:
        index = {t: i for i, t in enumerate(reference["trial"].tolist())}
        rows = [index[t] for t in trials.tolist()]
        reference = {name: values[rows] for name, values in reference.items()}
    for column, values in reference.items():
        if column in SCHEDULE_COLUMNS:
            continue
        if values.dtype == object:
            assert list(values) == list(other[column]), column
        else:
            assert values.tobytes() == other[column].tobytes(), column
    with h5py.File(reference_path, "r") as a, h5py.File(other_path, "r") as b:
        if not subset:
            assert ("sites" in a) == ("sites" in b)
            for name in a.get("sites", {}):
                x, y = a["sites"][name][()], b["sites"][name][()]
                assert (list(x) == list(y)) if x.dtype == object else x.tobytes() == y.tobytes(), name
        for name in a["baseline"]:
            x, y = a["baseline"][name][()], b["baseline"][name][()]
            assert (list(x.ravel()) == list(y.ravel())) if x.dtype == object else x.tobytes() == y.tobytes()
