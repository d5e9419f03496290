"""One apt-get at a time on this machine: the tests that install system packages (tests/browser.py's Chromium,
tests/slurm_cluster.py's slurm-wlm) can run at once on two pytest-xdist workers, and dpkg's lock would fail the
second."""

import tempfile
from pathlib import Path

from filelock import FileLock

LOCK = FileLock(Path(tempfile.gettempdir()) / "eventspec-tests-apt-get.lock")
