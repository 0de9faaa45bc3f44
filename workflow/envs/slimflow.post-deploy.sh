#!/usr/bin/env bash
# Snakemake runs this inside a freshly created slimflow.yaml environment (--sdm conda).
# It installs this checkout's pipeline_lib into it: editable, so code changes need no new
# environment, and without dependencies, which conda has already installed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python -m pip install --no-deps --no-build-isolation --quiet -e "$repo"
