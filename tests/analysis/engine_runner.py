"""Runs the real engine for the real-file tests, or skips (fails under CI=true) when it is absent.

Environment (set by tests/CMakeLists.txt): FRACSWEEP_BIN (built fracsweep binary),
FRACSWEEP_SHARED (shared models and data, default <repo>/../shared), FRACSWEEP_MPIEXEC and
FRACSWEEP_MPIEXEC_PREFLAGS (e.g. "--allow-run-as-root --oversubscribe").
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE_JOB = REPO / "jobs" / "stories260K-smoke.ini"
RUN_TIMEOUT_S = 900
RANKS = 2


def unavailable(reason: str) -> None:
    """Skips the test with `reason`, or fails it when CI=true (CI must run everything)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the real-engine tests must run)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Engine:
    binary: Path
    shared: Path
    mpiexec: str | None
    mpiexec_preflags: list[str]

    def command(self, job: Path, out: Path, ranks: int = RANKS) -> list[str]:
        """`fracsweep run JOB --out OUT`, under mpiexec when one is configured."""
        run = [str(self.binary), "run", str(job), "--out", str(out)]
        if not self.mpiexec:
            return run
        return [self.mpiexec, *self.mpiexec_preflags, "-n", str(ranks), *run]

    def run(self, job: Path, out: Path) -> Path:
        command = self.command(job, out)
        completed = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        if completed.returncode != 0 or not out.is_file():
            pytest.fail(f"engine run failed (exit {completed.returncode}, results file "
                        f"{'present' if out.is_file() else 'absent'}): {shlex.join(command)}\n"
                        f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}")
        return out


def require_engine() -> Engine:
    problems = []
    binary = os.environ.get("FRACSWEEP_BIN", "")
    if not binary:
        problems.append("FRACSWEEP_BIN is not set (path of the built fracsweep binary)")
    elif not (Path(binary).is_file() and os.access(binary, os.X_OK)):
        problems.append(f"FRACSWEEP_BIN={binary} is not an executable file")
    shared = Path(os.environ.get("FRACSWEEP_SHARED") or REPO.parent / "shared")
    if not shared.is_dir():
        problems.append(f"shared data directory {shared} is missing (set FRACSWEEP_SHARED)")
    if not SMOKE_JOB.is_file():
        problems.append(f"job file {SMOKE_JOB} is missing")
    if problems:
        unavailable("real-engine test needs the engine: " + "; ".join(problems))
    return Engine(Path(binary), shared, os.environ.get("FRACSWEEP_MPIEXEC") or None,
                  shlex.split(os.environ.get("FRACSWEEP_MPIEXEC_PREFLAGS", "")))


SITES_JOB_STRATEGIES = (  # every strategy kind, scopes with include/exclude and '?', explicit bits
    "zero include=layers.*.ffn.*",
    "signflip exclude=tok_embeddings",
    "scale factor=0.37",
    "bitflip bits=any include=layers.?.attn.wq,norm_final",
    "bitflip bits=mantissa",
    "bitflip bits=13",
    "gaussian sigma=0.3 relative=abs",
    "gaussian sigma=0.01 relative=absolute include=layers.4.*",
    "gaussian sigma=1 relative=std include=layers.0.*",
    "random-value exclude=layers.*",
    "magnitude then=signflip include=layers.1.*",
)
SITES_JOB_FRACTIONS = "0.0005 0.02"
SITES_JOB_COUNTS = "3"
SITES_JOB_SEEDS = "7 123456789"
SITES_JOB_SEED = 18446744073709551557  # near 2^64: the key text must print it unsigned


def write_sites_job(directory: Path, shared: Path) -> Path:
    """A small job on stories260K that records the sites of every trial (record_sites)."""
    n_amounts = len(SITES_JOB_FRACTIONS.split()) + len(SITES_JOB_COUNTS.split())
    n_seeds = len(SITES_JOB_SEEDS.split())
    n_trials = sum(n_amounts * (1 if s.startswith("magnitude") else n_seeds) for s in SITES_JOB_STRATEGIES)
    model = shared / "models" / "stories260K"
    lines = ["name = analysis-sites-check", f"seed = {SITES_JOB_SEED}", "", "[models]",
             f"model = stories260K path={model / 'stories260K.bin'} tokenizer={model / 'tok512.bin'}",
             "", "[eval]", f"text = {shared / 'data' / 'tinystories' / 'tinystories_val.txt'}",
             "paragraphs = 2", "greedy_tokens = 0", "", "[sweep]",
             f"fractions = {SITES_JOB_FRACTIONS}", f"counts = {SITES_JOB_COUNTS}",
             f"seeds = {SITES_JOB_SEEDS}",
             *(f"strategy = {strategy}" for strategy in SITES_JOB_STRATEGIES),
             "record_sites = " + " ".join(str(trial) for trial in range(n_trials))]
    job = directory / "sites-check.ini"
    job.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return job


REFUSAL_JOB = REPO / "jobs" / "refusal-claims.ini"
# The reduced copy: fewer fractions (25% not swept, 20% and 50% around it, like the full job's
# 21.5% and 46.4%) and three seeds; models, probes, evaluation set and strategies as in the job.
REFUSAL_TEST_FRACTIONS = "0.001 0.01 0.1 0.2 0.5 1"
REFUSAL_TEST_SEEDS = "0-2"


def write_refusal_job(directory: Path, shared: Path) -> Path:
    """jobs/refusal-claims.ini with ../shared at `shared`, REFUSAL_TEST_FRACTIONS and
    REFUSAL_TEST_SEEDS; skips (fails under CI=true) when the refusal pair or its probes are absent."""
    needed = [shared / "models/stories260K/stories260K-refusal.bin",
              shared / "fixtures/stories260K/probes.tsv",
              shared / "fixtures/stories260K/refusal-expected.json"]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        unavailable("the refusal job needs " + ", ".join(missing))
    lines = []
    for line in REFUSAL_JOB.read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "fractions_log":
            line = f"fractions = {REFUSAL_TEST_FRACTIONS}"
        elif key == "seeds":
            line = f"seeds = {REFUSAL_TEST_SEEDS}"
        lines.append(line.replace("../../shared", str(shared)))
    text = "\n".join(lines) + "\n"
    assert f"fractions = {REFUSAL_TEST_FRACTIONS}" in text and str(shared) in text, "job file changed shape"
    job = directory / "refusal-test.ini"
    job.write_text(text, encoding="utf-8")
    return job
