"""The slurm/ batch scripts on a real Slurm: munged, slurmctld and slurmd (Debian's slurm-wlm,
installed here when missing) started directly on localhost with a private configuration (2 CPUs,
proctrack/linuxproc, task/affinity: each task bound to its CPUs), jobs submitted with sbatch, results compared with a plain
mpiexec run. The time-limit signal (SIGUSR1 to the batch shell, as --signal=B:USR1@S sends
it) stops a sweep that then resumes in a resubmitted job. Only the daemons started here are
stopped, by PID. Skips with a message where the daemons cannot be installed or started."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import pytest

from conftest import SOURCE_DIR, write_job
from resume_helpers import assert_same_rows, interruptible_job, journal_trials

SLURM_DIR = SOURCE_DIR / "slurm"
PORTS = (16817, 16818)  # slurmctld, slurmd: away from the default 6817/6818


def ensure_installed():
    """slurmctld, slurmd, munged and the clients; installs slurm-wlm and munge with apt-get as root."""
    tools = ["slurmctld", "slurmd", "munged", "mungekey", "sbatch", "scontrol", "sinfo", "scancel"]
    if all(shutil.which(tool) for tool in tools):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed and this user cannot install them"
    result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm", "munge"],
                            capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if result.returncode != 0 or not all(shutil.which(tool) for tool in tools):
        return f"apt-get install slurm-wlm munge failed: {result.stderr[-400:]}"
    return None


def wait_until(predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class Cluster:
    """A one-node Slurm cluster under a private directory; every daemon is a child of this object."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="fs-slurm-"))  # short: socket paths are limited
        self.node = socket.gethostname().split(".")[0]
        self.daemons = []  # Popen of munged, slurmctld, slurmd
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def log_tail(self):
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(parts)

    def start(self):
        root = self.root
        for directory in ("state", "spool", "munge"):
            (root / directory).mkdir()
        key = root / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o400)
        socket_path = root / "munge" / "munge.sock"
        self.daemons.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
             f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
             f"--seed-file={root / 'munge' / 'seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not wait_until(socket_path.exists, 15):
            return "munged did not create its socket"
        self.conf.write_text(f"""ClusterName=fracsweepci
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
SlurmctldPort={PORTS[0]}
SlurmdPort={PORTS[1]}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'slurmctld.log'}
SlurmdLogFile={root / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=10
NodeName={self.node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=ci Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        for command in (["slurmctld", "-D", "-i", "-f", str(self.conf)],
                        ["slurmd", "-D", "-f", str(self.conf), "-N", self.node]):
            self.daemons.append(subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL))
            time.sleep(1)
        idle = wait_until(lambda: "idle" in self.run(["sinfo", "-h", "-o", "%T"]).stdout, 40)
        return None if idle else "the node did not become idle"

    def run(self, command, **kwargs):
        return subprocess.run(command, capture_output=True, text=True, env=kwargs.pop("env", self.env),
                              timeout=60, **kwargs)

    def sbatch(self, args, cwd, env=None):
        result = self.run(["sbatch", "--parsable", *map(str, args)], cwd=cwd,
                          env=dict(self.env, **(env or {})))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().split(";")[0]

    def job(self, job_id):
        """scontrol's fields of a job, e.g. {'JobState': 'COMPLETED', 'ExitCode': '0:0'}."""
        text = self.run(["scontrol", "-o", "show", "job", str(job_id)]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait_job(self, job_id, timeout=240):
        finished = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
        fields = wait_until(lambda: (lambda f: f if f.get("JobState") in finished else None)(
            self.job(job_id)), timeout)
        assert fields, f"job {job_id} did not finish: {self.job(job_id)}\n{self.log_tail()}"
        return fields

    def stop(self):
        self.run(["scancel", "--full", "--user", "root"])
        for process in reversed(self.daemons):  # exactly the daemons started here, by PID
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(fracsweep_bin, shared_dir):
    problem = ensure_installed()
    if problem:
        pytest.skip(f"skipped: no Slurm: {problem}")
    started = Cluster()
    try:
        problem = started.start()
    except (OSError, subprocess.SubprocessError) as error:
        problem = f"cannot start the daemons: {error}"
    if problem:
        logs = started.log_tail()
        started.stop()
        pytest.skip(f"skipped: Slurm daemons could not be started here: {problem}\n{logs}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory, shared_dir, run_fracsweep):
    """The small and the interruptible job, each with a reference run under mpiexec."""
    directory = tmp_path_factory.mktemp("slurm-work")
    jobs = {"small": write_job(directory, shared_dir, name="slurmsmall"),
            "long": interruptible_job(directory, shared_dir, name="slurmlong")}
    references = {}
    for label, job in jobs.items():
        out = directory / f"reference-{label}.h5"
        result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0"], ranks=2)
        assert result.returncode == 0, result.stderr
        references[label] = out
    return directory, jobs, references


def batch_env(fracsweep_bin):
    return {"FRACSWEEP": fracsweep_bin}


def assert_logged_version(log):
    text = Path(log).read_text()
    assert re.search(r"\[slurm\] fracsweep \d+\.\d+\.\d+ \([0-9a-f]{7,}", text), text


def test_mpi_script(cluster, work, fracsweep_bin):
    directory, jobs, references = work
    out = directory / "mpi.h5"
    job_id = cluster.sbatch([SLURM_DIR / "fracsweep-mpi.sbatch", jobs["small"], out], directory,
                            batch_env(fracsweep_bin))
    fields = cluster.wait_job(job_id)
    log = directory / f"fracsweep-{job_id}.log"
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", log.read_text()
    assert_logged_version(log)
    assert_same_rows(references["small"], out)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["mpi_size"]) == 2
        assert f"job={job_id} " in f.attrs["sessions"]


def test_mpi_script_hybrid_layout(cluster, work, fracsweep_bin):
    """1 task x 2 CPUs: task/affinity binds the rank to the 2 CPUs Slurm gave its task, so its 2
    threads (BLIS and OpenMP) run on 2 cores, not pinned to one (fracsweep warns when its
    threads exceed its affinity mask), and the rows are the reference's."""
    directory, jobs, references = work
    out = directory / "hybrid.h5"
    job_id = cluster.sbatch(["--ntasks=1", "--cpus-per-task=2", SLURM_DIR / "fracsweep-mpi.sbatch",
                             jobs["small"], out], directory, batch_env(fracsweep_bin))
    fields = cluster.wait_job(job_id)
    text = (directory / f"fracsweep-{job_id}.log").read_text()
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", text
    assert "1 tasks x 2 cpus" in text, text
    assert "threads per rank but rank 0 may run on" not in text, text
    assert_same_rows(references["small"], out)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["mpi_size"]) == 1
        assert int(f.attrs["blis_threads"]) == 2


def test_array_script_with_merge(cluster, work, fracsweep_bin):
    directory, jobs, references = work
    out = directory / "array.h5"
    result = cluster.run([str(SLURM_DIR / "fracsweep-array-submit.sh"), "2", str(jobs["small"]), str(out)],
                         cwd=directory, env=dict(cluster.env, **batch_env(fracsweep_bin)))
    assert result.returncode == 0, result.stderr
    array_id, merge_id = result.stdout.split()
    fields = cluster.wait_job(merge_id)
    merge_log = directory / f"array.merge-{merge_id}.log"
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", merge_log.read_text()
    for task in (0, 1):
        assert cluster.job(f"{array_id}_{task}")["ExitCode"] == "0:0"
        assert_logged_version(directory / f"fracsweep-{array_id}_{task}.log")
    assert_logged_version(merge_log)
    assert_same_rows(references["small"], out)
    with h5py.File(out, "r") as f:
        sessions = f.attrs["sessions"]
        assert f"job={array_id}_0 " in sessions and f"job={array_id}_1 " in sessions


def test_resumable_script_survives_the_time_limit_signal(cluster, work, fracsweep_bin):
    directory, jobs, references = work
    out = directory / "resumable.h5"
    first = cluster.sbatch(["--job-name=fsresume", SLURM_DIR / "fracsweep-resumable.sbatch",
                            jobs["long"], out, "--commit-every", "4"], directory,
                           batch_env(fracsweep_bin))
    journal = f"{out}.journal"
    assert wait_until(lambda: journal_trials(journal) >= 30, 120, 0.05), cluster.log_tail()
    # What --signal=B:USR1@S does at the time limit: SIGUSR1 to the batch shell only.
    signalled = cluster.run(["scancel", "--batch", "--signal=USR1", first])
    assert signalled.returncode == 0, signalled.stderr
    fields = cluster.wait_job(first)
    log = directory / "fracsweep-fsresume.log"
    text = log.read_text()
    assert fields["ExitCode"] == "0:0", text
    assert "SIGUSR1: time limit near" in text and "fracsweep exit code 75" in text, text
    match = re.search(r"resubmitted as job (\d+)", text)
    assert match, text
    second = match.group(1)
    fields = cluster.wait_job(second)
    text = log.read_text()
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", text
    assert "(resubmission 1)" in text
    assert_logged_version(log)
    assert_same_rows(references["long"], out)
    assert not os.path.exists(journal)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["resume_count"]) == 1
        sessions = f.attrs["sessions"].splitlines()
        assert [f"job={first} " in sessions[0], f"job={second} " in sessions[1]] == [True, True]
