"""A real single-node SLURM for tests: Debian's slurm-wlm + munge, configured in a temp dir, started, stopped.

The settings are the ones that run as root in a container (DESIGN §11):
process tracking by /proc, no task plugin, no accounting (the executor polls
squeue), consumable cores and memory on one node named after this host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import apt_lock

SLURM_CONF = Path("/etc/slurm/slurm.conf")
NO_CLUSTER_CONF = Path(__file__).with_name("no_slurm_cluster.conf")
"""What SLURM's commands of the test processes read while no test cluster runs (its comments say why)."""
MUNGE_KEY = Path("/etc/munge/munge.key")
DAEMONS = ("slurmctld", "slurmd")


def install() -> None:
    """apt-get the daemons when this machine lacks them (CI machines start without)."""
    if all(shutil.which(tool) for tool in ("sbatch", "slurmctld", "slurmd", "munged")):
        return
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    with apt_lock.LOCK:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], check=True, env=env,
                       capture_output=True)


def slurm_conf(work: Path, cpus: int, memory_mb: int) -> str:
    host = socket.gethostname().split(".")[0]
    settings = {
        "ClusterName": "eventspec",
        "SlurmctldHost": host,
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        # the node declares memory_mb whatever the machine has: jobs ask for what real checkpoints need
        # (profiles/default), the toy world uses a fraction of it
        "SlurmdParameters": "config_overrides",
        "ReturnToService": "2",
        "MpiDefault": "none",
        "StateSaveLocation": work / "state",
        "SlurmdSpoolDir": work / "spool",
        "SlurmctldPidFile": work / "slurmctld.pid",
        "SlurmdPidFile": work / "slurmd.pid",
        "SlurmctldLogFile": work / "slurmctld.log",
        "SlurmdLogFile": work / "slurmd.log",
    }
    lines = [f"{k}={v}" for k, v in settings.items()]
    lines.append(f"NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN")
    lines.append(f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def use(conf: Path) -> None:
    """Point the SLURM commands of this process and of the processes it starts at ``conf`` (SLURM_CONF)."""
    os.environ["SLURM_CONF"] = str(conf)


def start(work: Path, memory_mb: int = 100000) -> None:
    """Configure and start munged, slurmctld and slurmd; wait until the node takes jobs. Until stop(), this
    process and its children (Snakemake, sbatch, squeue) talk to that cluster."""
    install()
    use(SLURM_CONF)
    for sub in ("state", "spool"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for d in (MUNGE_KEY.parent, Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge")):
        d.mkdir(parents=True, exist_ok=True)
    if not MUNGE_KEY.exists():
        MUNGE_KEY.write_bytes(os.urandom(1024))
    subprocess.run(["chown", "-R", "munge:munge", str(MUNGE_KEY.parent), "/run/munge", "/var/log/munge", "/var/lib/munge"],
                   check=True)
    MUNGE_KEY.chmod(0o400)
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        subprocess.run(["munged", "--force"], check=True)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(slurm_conf(work, os.cpu_count() or 1, memory_mb))
    stop_daemons()
    for daemon in DAEMONS:
        subprocess.run([daemon], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            return
        time.sleep(1)
    raise RuntimeError(f"SLURM node not ready (state {state!r}); see {work}/slurmctld.log and slurmd.log")


def stop() -> None:
    stop_daemons()
    use(NO_CLUSTER_CONF)


def stop_daemons() -> None:
    for daemon in DAEMONS:
        subprocess.run(["pkill", "-x", daemon], capture_output=True)
    for daemon in DAEMONS:
        for _ in range(50):
            if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
