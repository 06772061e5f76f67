"""Multi-host faults: a sweep runs under mpirun on two "hosts", two network namespaces of this
machine (each with its own host name) joined by a veth pair, its ranks talking over TCP on that
link only; netns_launch.sh starts mpirun on host A and, as Open MPI's ssh, the daemon on host B.
Mid-sweep every process of host B (its daemon and its ranks) is killed with SIGKILL, as when a
node dies, once with rank 0 (the journal writer and lock holder) on the surviving host A and
once on the dying host B. mpirun and host A's ranks must end within a bound, not hang, and no
committed trial is lost. The same command on host A alone then resumes from every committed
trial to completion (taking over host A's stale lock; host B's lock is refused until deleted by
hand, as the README says): the final file equals an uninterrupted run row for row and bit for
bit, with zero lost and zero duplicated trials. Needs root and iproute2's `ip netns` (skipped
without them, a failure under CI=true)."""
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import _missing, mpiexec_prefix, write_job
from resume_helpers import assert_same_rows, journal_trials, read_trials, wait_for_trials

LAUNCHER = Path(__file__).with_name("netns_launch.sh")
SUBNET = "10.77.0.0/24"
RANKS_PER_HOST = 2  # at most the machine's cores: the rankfile binds each to its own core
MPIRUN_EXIT_TIMEOUT_S = 30  # after host B died: mpirun and host A's ranks must be gone by then


@dataclass(frozen=True)
class Host:
    """A "host": a network namespace with one address on the veth link."""
    namespace: str
    address: str

    def pids(self):
        """Every process whose network namespace is this host's."""
        listed = _ip("netns", "pids", self.namespace, check=False).stdout
        return [int(pid) for pid in listed.split()]

    def processes(self):
        """(name, MPI rank or None) of every process of this host, from /proc."""
        found = []
        for pid in self.pids():
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:  # ended meanwhile
                continue
            ranks = [int(variable.split(b"=", 1)[1]) for variable in environ
                     if variable.startswith(b"OMPI_COMM_WORLD_RANK=")]
            found.append((name, ranks[0] if ranks else None))
        return found

    def wait_until_empty(self, timeout):
        """Waits until no process of this host is left; False when some still are."""
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def kill_all(self, timeout=10):
        """SIGKILLs every process of this host until none is left; False when some still are."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        return not self.pids()


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module", autouse=True)
def root_and_iproute2():
    """Checked before the module's other fixtures spend time on a reference run."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        _missing("root and iproute2's `ip netns` (two network namespaces as hosts)")


@pytest.fixture
def two_hosts():
    """Hosts A (10.77.0.1) and B (10.77.0.2): namespaces with names unique to this run, lo up,
    joined by a veth pair. Every process left in them is killed and both are deleted at the
    end, whatever the outcome."""
    run_id = f"{os.getpid()}-{secrets.token_hex(3)}"
    hosts = [Host(f"fracsweep-{run_id}-{name}", f"10.77.0.{i + 1}")
             for i, name in enumerate("ab")]
    try:
        added = _ip("netns", "add", hosts[0].namespace, check=False)
        if added.returncode != 0:
            _missing(f"network namespaces (`ip netns add` failed: {added.stderr.strip()})")
        _ip("netns", "add", hosts[1].namespace)
        _ip("-n", hosts[0].namespace, "link", "add", "fsveth", "type", "veth",
            "peer", "name", "fsveth", "netns", hosts[1].namespace)
        for host in hosts:
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "fsveth")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
            _ip("-n", host.namespace, "link", "set", "fsveth", "up")
        yield hosts
    finally:
        for host in hosts:
            host.kill_all()
            _ip("netns", "delete", host.namespace, check=False)


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared_dir):
    """resume_helpers' interruptible job at half its seeds: 205 trials, with recorded sites."""
    return write_job(tmp_path_factory.mktemp("job"), shared_dir, name="multihost",
                     seeds="seeds = 0-9", record_sites="record_sites = 1 40 199")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, job, run_fracsweep):
    """The job run uninterrupted on 2 ranks of this machine."""
    out = tmp_path_factory.mktemp("reference") / "reference.h5"
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    return out


def start_run_on(launch_host, rank_hosts, fracsweep_bin, args, directory):
    """Starts `fracsweep run ARGS` under mpirun on `launch_host` with rank i on rank_hosts[i] (a
    rankfile in `directory`), over TCP on the veth subnet only."""
    rankfile = Path(directory) / "rankfile"
    rankfile.write_text("".join(
        f"rank {rank}={host.address} slot={rank_hosts[:rank].count(host)}\n"
        for rank, host in enumerate(rank_hosts)))
    mpirun = [
        *mpiexec_prefix(len(rank_hosts)), "--rankfile", str(rankfile),
        "--mca", "plm_rsh_agent", str(LAUNCHER),
        # Point to point over TCP (ob1 over the tcp BTL). One-sided calls (the dynamic
        # schedule's window) through pt2pt too: Open MPI 4.1 picks osc/rdma by default, whose
        # MPI_Win_allocate fails with MPI_ERR_WIN across hosts linked by TCP alone
        # (open-mpi/ompi#9871).
        "--mca", "pml", "ob1", "--mca", "osc", "pt2pt", "--mca", "btl", "tcp,self",
        "--mca", "btl_tcp_if_include", SUBNET,
        "--mca", "oob_tcp_if_include", SUBNET,
        fracsweep_bin, "run", *map(str, args)]
    hosts_map = " ".join(f"{host.address}={host.namespace}" for host in {launch_host, *rank_hosts})
    return subprocess.Popen([str(LAUNCHER), launch_host.address, shlex.join(mpirun)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env=dict(os.environ, FRACSWEEP_NETNS_HOSTS=hosts_map))


@pytest.mark.parametrize("rank_zero_on", ["surviving_host", "dying_host"])
def test_host_dies_mid_sweep_and_the_sweep_resumes(rank_zero_on, tmp_path, job, reference,
                                                   fracsweep_bin, two_hosts):
    host_a, host_b = two_hosts
    first, second = (host_a, host_b) if rank_zero_on == "surviving_host" else (host_b, host_a)
    rank_hosts = [first] * RANKS_PER_HOST + [second] * RANKS_PER_HOST
    n_trials = len(read_trials(reference)["trial"])
    out = tmp_path / "multihost.h5"
    journal = Path(f"{out}.journal")
    args = [job, "--out", out, "--progress-interval", "0", "--commit-every", "3"]

    process = start_run_on(host_a, rank_hosts, fracsweep_bin, args, tmp_path)
    if not wait_for_trials(journal, n_trials // 4, process, timeout=60):
        stderr = process.communicate()[1] if process.poll() is not None else "(still running)"
        pytest.fail(f"the two-host sweep committed {journal_trials(journal)} trials, not "
                    f"{n_trials // 4}, and ended or stalled:\n{stderr}")
    for host in two_hosts:  # every rank runs where the rankfile put it
        ranks = sorted(rank for name, rank in host.processes() if name == "fracsweep")
        assert ranks == [rank for rank, placed in enumerate(rank_hosts) if placed == host], (
            host.processes())
    assert ("orted", None) in host_b.processes()  # host B's daemon, started by the launcher

    committed_before = journal_trials(journal)
    killed_at = time.monotonic()
    assert host_b.kill_all(), f"processes of host B survived SIGKILL: {host_b.processes()}"
    try:
        _, stderr = process.communicate(timeout=MPIRUN_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # the fixture kills what is left
        pytest.fail(f"mpirun did not exit within {MPIRUN_EXIT_TIMEOUT_S} s after host B died; "
                    f"still running on host A: {host_a.processes()}")
    mpirun_exit_s = time.monotonic() - killed_at
    assert process.returncode != 0, f"mpirun reported success although host B died:\n{stderr}"
    assert host_a.wait_until_empty(timeout=MPIRUN_EXIT_TIMEOUT_S), (
        f"processes of host A outlived mpirun: {host_a.processes()}")
    committed_after = journal_trials(journal)
    assert committed_before <= committed_after < n_trials, (committed_before, committed_after)
    print(f"host B killed at {committed_before} committed trials; mpirun exited "
          f"{process.returncode} {mpirun_exit_s:.1f} s later with {committed_after} committed")

    lock = Path(f"{out}.lock")
    if rank_zero_on == "dying_host":  # its lock names host B: deleted by hand, as documented
        refused = start_run_on(host_a, [host_a] * RANKS_PER_HOST, fracsweep_bin, args, tmp_path)
        _, stderr = refused.communicate(timeout=120)
        assert refused.returncode == 2 and f"host {host_b.namespace}" in stderr, stderr
        lock.unlink()
    resumed = start_run_on(host_a, [host_a] * RANKS_PER_HOST, fracsweep_bin, args, tmp_path)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    if rank_zero_on == "surviving_host":  # its lock names host A, where that run has ended
        assert "taking over the lock of a run that ended" in stderr, stderr

    assert_same_rows(reference, out)
    with h5py.File(out, "r") as f:
        trials = f["trials/trial"][()]
        assert int(f.attrs["n_trials_done"]) == n_trials
        sessions = f.attrs["sessions"].splitlines()
    np.testing.assert_array_equal(trials, np.arange(n_trials))  # zero lost, zero duplicated
    # Rank 0 of each session ran on the host named, and the resume started from every trial
    # committed before host B died.
    assert [line.split(" host=")[1].split()[0] for line in sessions] == [
        first.namespace, host_a.namespace], sessions
    assert sessions[-1].rsplit("trials_before=", 1)[1] == str(committed_after), sessions
    assert not journal.exists() and not lock.exists()
