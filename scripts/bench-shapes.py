#!/usr/bin/python3
"""Benchmark at real shapes: random-weight Llamas of named shapes, run by the real engine.

    /usr/bin/python3 scripts/bench-shapes.py [--shapes [110M] [1.1B]] [--threads T] [--trials N]
                                             [--greedy G] [--job JOB.ini ...] [--work DIR]
                                             [--build DIR]

Per shape it writes (once, kept in --work) a bf16 Hugging Face directory and a float32 llama2.c
checkpoint with scripts/make-random-llama.py, and 8 x 256 random token ids. Then, measured in
this one invocation:

* `fracsweep run` of a job of N trials (gaussian sigma=0.1 relative=std at f = 1e-4: the
  forward pass and metrics dominate) in two layouts on the same cores: 1 rank x T threads and
  T ranks x 1 thread. Per layout and model format: load s and baseline s (rank 0's phase lines),
  median s/trial and trials/s (each rank's trials over its summed trial wall time, summed over
  the ranks; from the results file), the trial's FLOP rate (the forward's FLOPs, counted as the
  engine counts them, over the median trial time: metrics included; summed over ranks), the
  share of a trial spent outside BLIS (1 - the projection GEMMs' time alone, from
  fracsweep_bench in the same layout, over the trial's), the largest peak RSS of one rank
  (VmHWM) and the node's peak PSS sum (scripts/node-memory.py: shared pages counted once). The
  llama2.c file is run in the 1 x T layout only (its trials are the same computation).
* `fracsweep_bench --shape`: the forward pass and its projection GEMMs alone (bli_sgemm on the
  same shapes), one process at T threads, then T processes at 1 thread at once; forward
  GFLOP/s, GEMM GFLOP/s and their ratio (T x 1: the processes' rates summed).
* Each `--job` (e.g. jobs/stories260K-claims.ini) run whole in the same two layouts: its
  trials/s (as above) at 1 x T and T x 1, and the ratio.

Run it on a quiet machine (uptime): another job's threads on the same cores skew every ratio.
1.1B needs ~10 GB of memory and ~7 GB of disk in --work.
"""
import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # dim, layers, heads, kv_heads, hidden, vocab: scripts/make-random-llama.py's
    "110M": (768, 12, 12, 12, 2048, 32000),
    "1.1B": (2048, 22, 32, 4, 5632, 32000),
}
SEQUENCES, SEQ_LEN = 8, 256


def node_memory():
    spec = importlib.util.spec_from_file_location("node_memory", REPO / "scripts/node-memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forward_flops(shape):
    """llama_forward_flops (src/nn/llama.cpp) for 8 sequences of 256 tokens."""
    dim, layers, heads, kv_heads, hidden, vocab = SHAPES[shape]
    n = SEQUENCES * SEQ_LEN
    kv_dim = dim // heads * kv_heads
    gemm_per_layer = 2.0 * n * (2.0 * dim * dim + 2.0 * kv_dim * dim + 3.0 * hidden * dim)
    attention_per_layer = 2.0 * (dim // heads) * SEQUENCES * SEQ_LEN * (SEQ_LEN + 1) * heads
    return layers * (gemm_per_layer + attention_per_layer) + 2.0 * n * vocab * dim


def make_models(work, shape):
    """The shape's HF directory and llama2.c file, written on first use."""
    hf, llama2c = work / f"{shape}-hf", work / f"{shape}-llama2c"
    script = REPO / "scripts/make-random-llama.py"
    if not (hf / "config.json").exists():
        subprocess.run([sys.executable, script, hf, shape], check=True)
    if not (llama2c / "model.bin").exists():
        subprocess.run([sys.executable, script, llama2c, shape, "--format", "llama2c"], check=True)
    return {"hf bf16": hf, "llama2.c f32": llama2c / "model.bin"}


def write_job(work, shape, model, format_name, trials, greedy):
    tokens = work / "tokens.npy"
    if not tokens.exists():
        ids = np.random.default_rng(0).integers(3, 32000, size=(SEQUENCES, SEQ_LEN))
        np.save(tokens, ids.astype("<i4"))
    name = f"bench-{shape}-{format_name.split()[0]}"
    job = work / f"{name}.ini"
    job.write_text(f"name = {name}\nseed = 1\n[models]\nmodel = m path={model}\n"
                   f"[eval]\ntokens = {tokens}\nexamples = {SEQUENCES}\ngreedy_tokens = {greedy}\n"
                   f"[sweep]\nfractions = 0.0001\nseeds = 0-{trials - 1}\n"
                   f"strategy = gaussian sigma=0.1 relative=std\n")
    return job


def phase_seconds(lines):
    """Rank 0's load phase lines: "[fracsweep] model 'm': PHASE in S s"."""
    phases = {}
    for line in lines:
        found = re.match(r"\[fracsweep\] model '[^']*': (.+) in ([0-9.]+) s$", line)
        if found:
            phases[found.group(1)] = phases.get(found.group(1), 0.0) + float(found.group(2))
    return phases


def run_layout(fracsweep, job, ranks, threads, out, memory):
    command = ["mpirun", "--allow-run-as-root", "-n", str(ranks),
               "--bind-to", "none" if threads > 1 else "core", fracsweep, "run", str(job),
               "--out", str(out), "--force", "--threads", str(threads),
               "--progress-interval", "0"]
    result = memory.measure(command, quiet=True)
    if result.returncode != 0:
        sys.exit(f"bench-shapes: {' '.join(command)} failed:\n" + "\n".join(result.lines))
    phases = phase_seconds(result.lines)
    with h5py.File(out, "r") as f:
        wall = f["trials/wall_s"][()]
        rank = f["trials/rank"][()]
    # Each rank's trials over its summed trial time, summed over ranks: the layout's throughput,
    # whichever rank the scheduler gave more trials (a few trials split 3:1 otherwise halve it).
    rate = sum((rank == r).sum() / wall[rank == r].sum() for r in np.unique(rank))
    return {
        "load": sum(s for p, s in phases.items() if p not in ("baseline", "ready")),
        "baseline": phases.get("baseline", float("nan")),
        "s_per_trial": float(np.median(wall)),
        "trials_per_s": float(rate),
        "rank_rss_gib": result.peak_rank_rss / 2**20,
        "node_pss_gib": result.peak_pss / 2**20,
    }


def bench_forward(bench, shape, threads, processes, runs):
    """`processes` fracsweep_bench --shape runs at once: (forward GFLOP/s, GEMM GFLOP/s, the
    projection GEMMs' seconds per forward pass), rates summed over the processes, seconds their
    mean."""
    started = [subprocess.Popen([bench, "--shape", shape, str(threads), str(runs)],
                                stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    forward = gemm = gemm_seconds = 0.0
    for process in started:
        output, _ = process.communicate()
        if process.returncode != 0:
            sys.exit(f"bench-shapes: fracsweep_bench --shape {shape} failed:\n{output}")
        row = output.strip().splitlines()[-1].split()  # threads, forward ms, GEMMs ms, GF/s, ...
        forward_rate = float(row[3])
        forward += forward_rate
        gemm += forward_rate / float(row[-1])
        gemm_seconds += float(row[2]) * 1e-3 / processes
    return forward, gemm, gemm_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", choices=sorted(SHAPES), default=["110M", "1.1B"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per run (default: 2 per rank of the T x 1 layout)")
    parser.add_argument("--greedy", type=int, default=0, help="greedy_tokens of the job")
    parser.add_argument("--runs", type=int, default=3, help="timed forward passes per bench")
    parser.add_argument("--job", type=Path, action="append", default=[],
                        help="a job file to run whole at 1 x T and T x 1 (repeatable)")
    parser.add_argument("--work", type=Path,
                        default=Path(os.environ.get("TMPDIR", "/tmp")) / "fracsweep-bench-shapes")
    parser.add_argument("--build", type=Path, default=REPO / "build")
    args = parser.parse_args()
    t = args.threads
    trials = args.trials or 2 * t
    fracsweep, bench = args.build / "fracsweep", args.build / "fracsweep_bench"
    for binary in (fracsweep, bench):
        if not binary.exists():
            sys.exit(f"bench-shapes: {binary} is missing; build it (scripts/build.sh)")
    args.work.mkdir(parents=True, exist_ok=True)
    memory = node_memory()
    load = os.getloadavg()[0]
    print(f"# bench-shapes: {t} threads, {trials} trials per run, greedy_tokens {args.greedy}, "
          f"load average {load:.2f} at start, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| shape | format | layout | load s | baseline s | s/trial | trials/s | "
          "trial GFLOP/s | outside BLIS | peak RSS/rank GiB | node PSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    forward_rows, trial_rates = [], {}
    for shape in args.shapes:
        models = make_models(args.work, shape)
        flops = forward_flops(shape)
        gemm_seconds = {}
        for ranks, threads in [(1, t), (t, 1)]:
            forward, gemm, seconds = bench_forward(bench, shape, threads, ranks, args.runs)
            forward_rows.append((shape, f"{ranks}x{threads}", forward, gemm))
            gemm_seconds[(ranks, threads)] = seconds
        for format_name, model in models.items():
            job = write_job(args.work, shape, model, format_name, trials, args.greedy)
            layouts = [(1, t), (t, 1)] if format_name == "hf bf16" else [(1, t)]
            for ranks, threads in layouts:
                out = args.work / f"{job.stem}-{ranks}x{threads}.h5"
                r = run_layout(fracsweep, job, ranks, threads, out, memory)
                outside = 1.0 - gemm_seconds[(ranks, threads)] / r["s_per_trial"]
                print(f"| {shape} | {format_name} | {ranks}x{threads} | {r['load']:.1f} | "
                      f"{r['baseline']:.1f} | {r['s_per_trial']:.2f} | {r['trials_per_s']:.3f} | "
                      f"{flops / r['s_per_trial'] * 1e-9 * ranks:.1f} | {100 * outside:.1f}% | "
                      f"{r['rank_rss_gib']:.2f} | {r['node_pss_gib']:.2f} |", flush=True)
                if format_name == "hf bf16":
                    trial_rates[(shape, ranks)] = r["trials_per_s"]
    if forward_rows:
        print("\n| shape | layout | forward GFLOP/s | sgemm GFLOP/s (same shapes) | forward / sgemm |")
        print("|---|---|---|---|---|")
    for shape, layout, forward, gemm in forward_rows:
        print(f"| {shape} | {layout} | {forward:.1f} | {gemm:.1f} | {forward / gemm:.2f} |")
    for job in args.job:
        for ranks in (1, t):
            out = args.work / f"{job.stem}-{ranks}x{t // ranks}.h5"
            trial_rates[(job.name, ranks)] = run_layout(fracsweep, job.resolve(), ranks, t // ranks,
                                                        out, memory)["trials_per_s"]
    print(f"\n| shape or job | trials/s 1x{t} | trials/s {t}x1 | 1x{t} / {t}x1 |")
    print("|---|---|---|---|")
    for name in args.shapes + [job.name for job in args.job]:
        one, many = trial_rates[(name, 1)], trial_rates[(name, t)]
        print(f"| {name} | {one:.3f} | {many:.3f} | {one / many:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
