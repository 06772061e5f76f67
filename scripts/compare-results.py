#!/usr/bin/env python3
"""Compares two fracsweep results files bit for bit, timing and provenance aside.

Usage: /usr/bin/python3 scripts/compare-results.py A.h5 B.h5
Every dataset (every column of /trials, the grid, baselines, tensors, sites) must hold the same
bytes, except the per-trial timing and placement columns (wall_s, rank) and the root attributes
that describe a run rather than its results (times, hosts, commit, command line, BLIS kernels).
Exit 0 when equal; 1 with one line per difference otherwise.
"""
import sys

import h5py
import numpy as np

RUN_COLUMNS = {"wall_s", "rank"}
RUN_ATTRS = {"created_utc", "finished_utc", "started_utc", "git_commit", "git_sha", "command_line",
             "hostnames", "software_version", "sessions", "blis_kernels", "blis_kernels_selected_by",
             "mpi_size", "schedule", "blis_threads", "build_type", "compiler"}


def leaves(group, prefix=""):
    for name, item in group.items():
        path = f"{prefix}/{name}"
        if isinstance(item, h5py.Group):
            yield from leaves(item, path)
        else:
            yield path, item


def same_bytes(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.names:
        return all(same_bytes(a[n], b[n]) for n in a.dtype.names if n not in RUN_COLUMNS)
    if a.dtype.kind in "fc":
        return a.tobytes() == b.tobytes()
    return np.array_equal(a, b)


def main(path_a, path_b):
    problems = []
    with h5py.File(path_a, "r") as fa, h5py.File(path_b, "r") as fb:
        da, db = dict(leaves(fa)), dict(leaves(fb))
        for missing in sorted(set(da) ^ set(db)):
            problems.append(f"{missing}: present in only one file")
        for path in sorted(set(da) & set(db)):
            if path.rsplit("/", 1)[-1] in RUN_COLUMNS:
                continue
            if not same_bytes(da[path][()], db[path][()]):
                problems.append(f"{path}: contents differ")
        for key in sorted(set(fa.attrs) | set(fb.attrs)):
            if key in RUN_ATTRS:
                continue
            if key not in fa.attrs or key not in fb.attrs:
                problems.append(f"attribute {key}: present in only one file")
            elif not np.array_equal(np.asarray(fa.attrs[key]), np.asarray(fb.attrs[key])):
                problems.append(f"attribute {key}: differs")
    for line in problems:
        print(line)
    print(f"{len(problems)} difference(s) between {path_a} and {path_b}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
