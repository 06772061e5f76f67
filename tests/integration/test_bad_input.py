"""Bad input exits with code 2 and one clear message naming the file and the problem; nothing is
written or overwritten, and no rank is left waiting (every run has a timeout)."""
import shutil
import struct
from pathlib import Path

import pytest

from conftest import write_job



def assert_rejected(result, out, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr  # one message, not one per rank
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert not out.exists()
    assert not list(out.parent.glob(out.name + ".tmp-*"))


@pytest.fixture
def model_copy(tmp_path, shared_dir):
    path = tmp_path / "model.bin"
    shutil.copy(shared_dir / "models/stories260K/stories260K.bin", path)
    return path


def job_with_model(tmp_path, shared_dir, model_path):
    return write_job(tmp_path, shared_dir, model=f"model = m path={model_path} "
                     f"tokenizer={shared_dir}/models/stories260K/tok512.bin")


@pytest.mark.parametrize("override, fragments", [
    ({"seed": "seed = 7\ncolour = blue"}, ["colour"]),
    ({"fractions": "fractions = 0.5 1.5"}, ["fractions", "1.5", "(0, 1]"]),
    ({"fractions": "fractions = 0"}, ["fractions", "(0, 1]"]),
    ({"strategies": "strategy = melt"}, ["unknown strategy 'melt'"]),
    ({"strategies": "strategy = bitflip bits=exponent-lsb"}, ["bits", "exponent-lsb"]),
    ({"text": "text = /nonexistent/eval.txt"}, ["/nonexistent/eval.txt"]),
    ({"model": "model = m path=/nonexistent/model.bin tokenizer=/nonexistent/tok.bin"},
     ["/nonexistent/model.bin"]),
])
def test_bad_job_file(tmp_path, shared_dir, run_fracsweep, override, fragments):
    job = write_job(tmp_path, shared_dir, **override)
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=120)
    assert_rejected(result, out, str(job) if "model" not in override and "text" not in override else "",
                    *fragments)


def test_missing_job_file(tmp_path, run_fracsweep):
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", tmp_path / "nope.ini", "--out", out], ranks=2, timeout=120)
    assert_rejected(result, out, "nope.ini")


@pytest.mark.parametrize("damage, fragments", [
    ("truncate", ["disagrees with the header"]),
    ("short", ["28-byte header"]),
    ("nonsense", ["n_heads"]),
    ("extra", ["disagrees with the header"]),
    ("huge", ["overflow"]),
])
def test_bad_model_file(tmp_path, shared_dir, run_fracsweep, model_copy, damage, fragments):
    data = bytearray(model_copy.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 1000]
    elif damage == "short":
        data = data[:20]
    elif damage == "nonsense":
        data[12:16] = struct.pack("<i", 7)  # n_heads 7 does not divide dim 64
    elif damage == "extra":
        data += b"\0\0\0\0"
    elif damage == "huge":
        data[0:28] = struct.pack("<7i", 1 << 22, 1 << 22, 1 << 22, 2, 2, 1 << 22, 1 << 22)
    model_copy.write_bytes(bytes(data))
    job = job_with_model(tmp_path, shared_dir, model_copy)
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=120)
    assert_rejected(result, out, str(model_copy), *fragments)


def test_unreadable_eval_file(tmp_path, shared_dir, run_fracsweep):
    directory = tmp_path / "eval.txt"
    directory.mkdir()  # a directory where a text file is expected: unreadable even for root
    job = write_job(tmp_path, shared_dir, text=f"text = {directory}")
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=120)
    assert_rejected(result, out, str(directory))


@pytest.mark.parametrize("flags, fragment", [
    (["--schedule", "random"], "--schedule"),
    (["--bogus"], "bogus"),
    (["--blis-kernels", "pentium"], "pentium"),
    (["--chunk", "x"], "chunk"),
])
def test_bad_flags(tmp_path, shared_dir, run_fracsweep, flags, fragment):
    job = write_job(tmp_path, shared_dir)
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out, *flags], ranks=2, timeout=120)
    assert_rejected(result, out, fragment)


def test_unknown_command(run_fracsweep):
    result = run_fracsweep(["sweep"])
    assert result.returncode == 2 and "unknown command 'sweep'" in result.stderr


def test_bad_input_without_mpiexec(tmp_path, shared_dir, run_fracsweep):
    job = write_job(tmp_path, shared_dir, fractions="fractions = 2")
    out = tmp_path / "out.h5"
    assert_rejected(run_fracsweep(["run", job, "--out", out], timeout=60), out, str(job), "fractions")


def test_error_during_the_sweep_aborts_every_rank(tmp_path, shared_dir, run_fracsweep, model_copy):
    """A model whose header and size are fine but whose unperturbed outputs are NaN passes the
    up-front checks and fails only when a rank opens it mid-sweep: the job must end with that
    rank's message instead of leaving the other rank waiting."""
    data = bytearray(model_copy.read_bytes())
    data[28:28 + 4 * 512 * 64] = b"\xff\xff\xff\x7f" * (512 * 64)  # every embedding NaN
    model_copy.write_bytes(bytes(data))
    lines = (f"model = good path={shared_dir}/models/stories260K/stories260K.bin "
             f"tokenizer={shared_dir}/models/stories260K/tok512.bin\n"
             f"model = broken path={model_copy} tokenizer={shared_dir}/models/stories260K/tok512.bin")
    job = write_job(tmp_path, shared_dir, model=lines, record_sites="")
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out, "--chunk", "1"], ranks=2, timeout=180)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr  # the failing rank's message, once
    assert "non-finite logits" in errors[0] and str(model_copy) in errors[0]
    assert "[rank " in errors[0]
    # Bad input leaves nothing behind, also when found mid-sweep: no results, journal or lock.
    assert not out.exists() and not list(tmp_path.glob("out.h5.*")), list(tmp_path.iterdir())


@pytest.mark.parametrize("victim", ["model", "tokenizer", "job", "text", "hard_link", "journal"])
def test_output_never_overwrites_an_input(tmp_path, shared_dir, run_fracsweep, model_copy, victim):
    """`--out` (or its journal or lock) resolving to one of the job's own inputs is refused even
    with --force, and the input is left byte for byte as it was."""
    tokenizer = tmp_path / "tok.bin"
    shutil.copy(shared_dir / "models/stories260K/tok512.bin", tokenizer)
    text = tmp_path / "eval.txt"
    shutil.copy(shared_dir / "data/tinystories/tinystories_val.txt", text)
    job = write_job(tmp_path, shared_dir, model=f"model = m path={model_copy} tokenizer={tokenizer}",
                    text=f"text = {text}")
    targets = {"model": model_copy, "tokenizer": tokenizer, "job": job, "text": text}
    if victim == "hard_link":
        out = tmp_path / "results.h5"
        out.hardlink_to(model_copy)
        protected = model_copy
    elif victim == "journal":
        out = tmp_path / "results.h5"  # its journal would be the evaluation text
        (tmp_path / "results.h5.journal").symlink_to(text)
        protected = text
    else:
        out = protected = targets[victim]
    before = {path: path.read_bytes() for path in targets.values()}
    result = run_fracsweep(["run", job, "--out", out, "--force"], ranks=2, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "an input of this job; refusing to overwrite it" in errors[0], errors
    assert str(protected) in errors[0]
    assert {path: path.read_bytes() for path in targets.values()} == before
    assert not Path(f"{out}.lock").exists() and not list(tmp_path.glob("*.tmp-*"))


def test_missing_output_directory_is_named(tmp_path, shared_dir, run_fracsweep):
    job = write_job(tmp_path, shared_dir)
    out = tmp_path / "absent" / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=120)
    assert_rejected(result, out, f"the output directory {tmp_path / 'absent'} does not exist")
    assert ".lock" not in result.stderr


@pytest.mark.parametrize("sweep_lines, fragment", [
    ("fractions = 0.01\nseeds = 0-100000000", "makes more than 1000000 seeds"),
    ("fractions = 4.9e-324\nseeds = 0", "rounds to 0 sites"),
    ("fractions = 1e-7\nseeds = 0", "a fraction of at least 1/N = 3.85e-06 changes one weight"),
    ("counts = 99999999999\nseeds = 0", "99999999999 sites exceed the 260032 parameters"),
])
def test_sizes_that_cannot_run_are_refused_at_once(tmp_path, shared_dir, run_fracsweep,
                                                   sweep_lines, fragment):
    job = write_job(tmp_path, shared_dir, fractions=sweep_lines, counts="", seeds="",
                    strategies="strategy = zero", record_sites="")
    out = tmp_path / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=60)
    assert_rejected(result, out, str(job), fragment)
    assert not list(tmp_path.glob("out.h5.*"))
