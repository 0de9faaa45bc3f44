"""A private single-node SLURM cluster (munged, slurmctld, slurmd) in one folder, for tests.

    python tests/slurm/cluster.py install              # apt-get install slurm-wlm munge (root)
    python tests/slurm/cluster.py start /tmp/slurm     # then: sinfo, sbatch, snakemake --profile ...
    python tests/slurm/cluster.py stop /tmp/slurm

Key, socket, state, spool, logs and pid files live under the folder; the daemons use free ports.
The one thing outside it is /etc/slurm/slurm.conf, a symlink to the folder's slurm.conf: SLURM
commands inside a job must find the cluster, and snakemake's slurm-jobstep executor drops
SLURM_CONF from the environment of its inner `srun` (snakemake-executor-plugin-slurm issue #164).
A real /etc/slurm/slurm.conf is never replaced: `unavailable_reason()` reports it instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["SYSTEM_CONF", "missing_commands", "unavailable_reason", "install_blocker", "install", "start", "stop"]

TEMPLATE = Path(__file__).with_name("slurm.conf.in")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")  # where Debian's SLURM commands look first
DAEMONS = ("munged", "slurmctld", "slurmd")  # started in this order, stopped in reverse
COMMANDS = DAEMONS + ("sbatch", "srun", "squeue", "sinfo", "scancel")


def missing_commands() -> list[str]:
    """The SLURM and munge commands not installed here."""
    return [c for c in COMMANDS if not _which(c)]


def unavailable_reason() -> str | None:
    """Why a test cluster cannot start here (None when it can)."""
    if missing := missing_commands():
        return f"SLURM/munge commands not found: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    if _foreign_conf():
        return f"{SYSTEM_CONF} exists: this host has its own SLURM, which the test cluster must not replace"
    return None


def install_blocker() -> str | None:
    """Why `install()` cannot work here (None when running as root with apt-get)."""
    if os.geteuid() != 0:
        return "installing slurm-wlm and munge needs root"
    if not shutil.which("apt-get"):
        return "installing slurm-wlm and munge needs apt-get (Debian/Ubuntu)"
    return None


def install() -> None:
    """apt-get install Debian's slurm-wlm and munge; raises CalledProcessError on failure."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def start(root: Path, timeout: float = 60.0) -> None:
    """Start munged, slurmctld and slurmd under `root` and wait until the node is idle.

    On any failure the daemons already started are stopped again (their logs stay in root/log).
    """
    root = Path(root).resolve()
    if reason := unavailable_reason():
        raise RuntimeError(reason)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    try:
        _write_conf(root)
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        # --force: munged otherwise refuses a socket in a folder that not everyone can enter.
        _run([_which("munged"), "--force", f"--key-file={key}", f"--socket={root / 'munge.sock'}",
              f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'log/munged.log'}",
              f"--seed-file={root / 'munged.seed'}"])
        # Both daemons fork into the background after writing their pid files.
        _run([_which("slurmctld")])
        _run([_which("slurmd")])
        _wait_idle(timeout, root)
    except BaseException:
        stop(root)
        raise


def stop(root: Path, timeout: float = 20.0) -> None:
    """Cancel the cluster's jobs, stop slurmd, slurmctld and munged (by their pid files), unlink the conf."""
    root = Path(root).resolve()
    if (root / "slurmctld.pid").exists():
        try:
            ids = subprocess.run([_which("squeue"), "-h", "-o", "%i"], capture_output=True, text=True,
                                 timeout=30).stdout.split()
            if ids:
                subprocess.run([_which("scancel"), *ids], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            pass  # a controller that does not answer is stopped below all the same
    for daemon in reversed(DAEMONS):
        pid_file = root / f"{daemon}.pid"
        if pid_file.exists():
            _terminate(int(pid_file.read_text().split()[0]), daemon, timeout)
            pid_file.unlink(missing_ok=True)  # the daemons remove their own on a clean exit
    if SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == root / "slurm.conf":
        SYSTEM_CONF.unlink()


def _foreign_conf() -> bool:
    """/etc/slurm/slurm.conf exists and is not a test cluster's link (a dead link is a crashed run's)."""
    if not SYSTEM_CONF.exists():
        return False
    return not (SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF).endswith("/slurm.conf")
                and TEMPLATE.read_text().splitlines()[0] in SYSTEM_CONF.read_text())


def _write_conf(root: Path) -> None:
    # `slurmd -C` prints this host's node line (NodeName=<host> CPUs=... RealMemory=...), so the
    # node the controller expects is the one slurmd finds and it is not drained as misconfigured.
    node = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    text = TEMPLATE.read_text().format(root=root, node=node, hostname=node.split()[0].split("=", 1)[1],
                                       ctld_port=_free_port(), slurmd_port=_free_port())
    (root / "slurm.conf").write_text(text)
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.unlink(missing_ok=True)  # only a dead or test-cluster link gets here (unavailable_reason)
    SYSTEM_CONF.symlink_to(root / "slurm.conf")


def _wait_idle(timeout: float, root: Path) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = subprocess.run([_which("sinfo"), "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
        state = (proc.stdout + proc.stderr).strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise RuntimeError(f"SLURM node not idle after {timeout:.0f} s (sinfo: {state!r}); see the logs in {root / 'log'}")


def _terminate(pid: int, name: str, timeout: float) -> None:
    # A stale pid file may name a pid that now belongs to another process: leave that alone.
    if not _alive(pid) or name not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Running and not a zombie (the daemons fork away from us, so we cannot wait() for them)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


def _which(command: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-login shell may not have on PATH.
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        install()
    elif len(argv) == 2 and argv[0] in ("start", "stop"):
        (start if argv[0] == "start" else stop)(Path(argv[1]))
    else:
        print("usage: cluster.py install | start DIR | stop DIR", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
