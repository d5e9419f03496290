#!/usr/bin/env bash
# Snakemake runs this once inside a new conda env, after creating it from envs/eventspec.yaml (or
# envs/eventspec-cuda.yaml, whose post-deploy script is a link to this one). The env holds only the
# pinned dependencies; the eventspec package comes from the checkout that runs the workflow, which
# common.smk puts on the jobs' PYTHONPATH (the same code the rules' code digests hash). This adds the
# `eventspec` command that the rules run.
set -euo pipefail
prefix="$(python -c 'import sys; print(sys.prefix)')"
# As pip writes console scripts: the __main__ guard keeps spawned worker processes from running the CLI.
cat > "$prefix/bin/eventspec" <<LAUNCHER
#!$prefix/bin/python
import sys

from eventspec.cli import main

if __name__ == "__main__":
    sys.exit(main())
LAUNCHER
chmod +x "$prefix/bin/eventspec"
