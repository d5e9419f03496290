"""Headless Chromium for the report's browser test: Debian's ``chromium``, apt-got when the machine lacks it.

CI machines start without a browser, so the test installs one the way tests/slurm_cluster.py installs
slurm-wlm. Measured on the 2-core development machine (Debian 12, 2026-12-03): ``apt-get update`` 3 s,
``apt-get install --no-install-recommends chromium`` 18 s (25 packages, 348 MB installed); recommends
(desktop helpers) are not needed headless. Each apt step is bounded by ``APT_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import apt_lock

APT_TIMEOUT_S = 600
NAMES = ("chromium", "chromium-browser", "google-chrome")


def find() -> str | None:
    return next(filter(None, map(shutil.which, NAMES)), None)


def install() -> str:
    """The browser's path, after ``apt-get update`` and ``apt-get install chromium`` when there is none (the
    install time is printed: ``pytest -s`` shows it)."""
    if found := find():
        return found
    with apt_lock.LOCK:
        if found := find():  # installed meanwhile
            return found
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        start = time.monotonic()
        for step in (["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", "chromium"]):
            res = subprocess.run(["apt-get", *step], env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
            assert res.returncode == 0, f"apt-get {' '.join(step)}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
        print(f"\napt-get update + install chromium: {time.monotonic() - start:.0f} s")
    found = find()
    assert found, f"apt-get installed chromium but none of {NAMES} is on PATH"
    return found
