#!/usr/bin/python3
"""Runs a fracsweep command and reports the node memory its ranks use: the sum over the rank
processes of PSS (proportional set size, /proc/PID/smaps_rollup), where a page shared by n
processes counts 1/n in each, so the sum counts every page once. Sampled every 0.2 s.

    /usr/bin/python3 scripts/node-memory.py -- mpirun --allow-run-as-root -np 2 build/fracsweep run JOB.ini ...

Prints the peak over the whole run and the peak after the first progress line ("N/M trials"),
i.e. during the trials, in MiB, plus the command's stderr lines of the load phases.
"""
import os
import re
import subprocess
import sys
import threading
import time


def fracsweep_pids(root):
    """The fracsweep processes descending from `root` (the launcher), so other runs on the
    machine are never counted."""
    parent, argv0 = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0[int(entry)] = f.read().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue

    def descends(pid):
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    return [pid for pid, name in argv0.items()
            if (name.endswith(b"/fracsweep") or name == b"fracsweep") and descends(pid)]


def status_kib(pid, field):
    """A memory field of /proc/PID/status in KiB (e.g. VmHWM, the process's peak RSS); 0 when
    the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Measurement:
    """What measure() saw: the command's exit status and stderr lines, the node's peak PSS sum
    over the run and during the trials, and the largest peak RSS (VmHWM) of one rank, in KiB."""

    def __init__(self):
        self.returncode = None
        self.lines = []
        self.peak_pss = self.peak_pss_trials = self.peak_rank_rss = 0
        self.ranks = 0


def measure(command, quiet=False):
    """Runs `command` (a launcher of fracsweep ranks) and samples its ranks every 0.2 s; `quiet`
    discards its standard output."""
    result = Measurement()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               stdout=subprocess.DEVNULL if quiet else None)
    trials_started = threading.Event()

    def read_stderr():
        for line in process.stderr:
            result.lines.append(line.rstrip())
            if re.search(r"\d+/\d+ trials", line):
                trials_started.set()

    reader = threading.Thread(target=read_stderr)
    reader.start()
    while process.poll() is None:
        pids = fracsweep_pids(process.pid)
        total = sum(pss_kib(p) for p in pids)
        result.ranks = max(result.ranks, len(pids))
        result.peak_pss = max(result.peak_pss, total)
        result.peak_rank_rss = max([result.peak_rank_rss] + [status_kib(p, "VmHWM") for p in pids])
        if trials_started.is_set():
            result.peak_pss_trials = max(result.peak_pss_trials, total)
        time.sleep(0.2)
    reader.join()
    result.returncode = process.returncode
    return result


def main():
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    result = measure(command)
    for line in result.lines:
        if "trials/s" not in line:
            print(line)
    print(f"node PSS peak: {result.peak_pss / 1024:.0f} MiB over the run, "
          f"{result.peak_pss_trials / 1024:.0f} MiB during the trials ({result.ranks} rank "
          f"processes); largest rank peak RSS {result.peak_rank_rss / 1024:.0f} MiB")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
