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


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    trials_started = threading.Event()
    lines = []

    def read_stderr():
        for line in process.stderr:
            lines.append(line.rstrip())
            if re.search(r"\d+/\d+ trials", line):
                trials_started.set()

    reader = threading.Thread(target=read_stderr)
    reader.start()
    peak = peak_trials = 0
    ranks = 0
    while process.poll() is None:
        pids = fracsweep_pids(process.pid)
        total = sum(pss_kib(p) for p in pids)
        ranks = max(ranks, len(pids))
        peak = max(peak, total)
        if trials_started.is_set():
            peak_trials = max(peak_trials, total)
        time.sleep(0.2)
    reader.join()
    for line in lines:
        if "trials/s" not in line:
            print(line)
    print(f"node PSS peak: {peak / 1024:.0f} MiB over the run, {peak_trials / 1024:.0f} MiB "
          f"during the trials ({ranks} rank processes)")
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
