"""Shared helpers for the end-to-end tests: the real `fracsweep` binary under a real mpiexec,
on the real models and data in ../shared (skipped when absent, a failure under CI=true)."""
import os
import shlex
import subprocess
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("FRACSWEEP_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def _missing(what):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"skipped: {what} not available")


@pytest.fixture(scope="session")
def fracsweep_bin():
    path = os.environ.get("FRACSWEEP_BIN")
    if not path or not Path(path).exists():
        _missing("the built fracsweep binary (FRACSWEEP_BIN)")
    return path


@pytest.fixture(scope="session")
def shared_dir():
    path = Path(os.environ.get("FRACSWEEP_SHARED", SOURCE_DIR.parent / "shared"))
    if not (path / "fixtures" / "stories260K" / "expected.json").exists():
        _missing(f"shared data at {path} (set FRACSWEEP_SHARED)")
    return path


def mpiexec_prefix(ranks):
    mpiexec = os.environ.get("FRACSWEEP_MPIEXEC") or "mpiexec"
    flags = shlex.split(os.environ.get("FRACSWEEP_MPIEXEC_PREFLAGS", ""))
    if os.geteuid() == 0 and "--allow-run-as-root" not in flags:
        flags.append("--allow-run-as-root")
    if "--oversubscribe" not in flags:
        flags.append("--oversubscribe")
    return [mpiexec, "-np", str(ranks), *flags]


@pytest.fixture(scope="session")
def run_fracsweep(fracsweep_bin):
    """run_fracsweep(args, ranks=None, timeout=...) -> CompletedProcess; ranks=None runs without mpiexec."""

    def run(args, ranks=None, timeout=300, cwd=None, env=None):
        command = ([*mpiexec_prefix(ranks)] if ranks else []) + [fracsweep_bin, *map(str, args)]
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env=full_env)

    return run


def write_job(directory, shared, name="itest", body=None, **overrides):
    """A small job on stories260K; `overrides` replace whole lines by key, `body` replaces all."""
    lines = {
        "name": f"name = {name}",
        "seed": "seed = 7",
        "model": f"model = stories260K path={shared}/models/stories260K/stories260K.bin "
                 f"tokenizer={shared}/models/stories260K/tok512.bin",
        "text": f"text = {shared}/data/tinystories/tinystories_val.txt",
        "paragraphs": "paragraphs = 6",
        "greedy_tokens": "greedy_tokens = 24",
        "fractions": "fractions = 0.0001 0.001 0.01",
        "counts": "counts = 1 4",
        "seeds": "seeds = 0-2",
        "strategies": "strategy = zero\nstrategy = signflip\nstrategy = bitflip bits=any\n"
                      "strategy = gaussian sigma=0.5 relative=abs\nstrategy = magnitude then=zero",
        "record_sites": "record_sites = 1 40",
    }
    lines.update(overrides)
    text = body if body is not None else (
        f"{lines['name']}\n{lines['seed']}\n[models]\n{lines['model']}\n"
        f"[eval]\n{lines['text']}\n{lines['paragraphs']}\n{lines['greedy_tokens']}\n"
        f"[sweep]\n{lines['fractions']}\n{lines['counts']}\n{lines['seeds']}\n"
        f"{lines['strategies']}\n{lines['record_sites']}\n")
    path = Path(directory) / f"{name}.ini"
    path.write_text(text)
    return path
