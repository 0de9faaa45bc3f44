#!/usr/bin/env bash
# Snakemake runs this inside a freshly created slimflow.yaml environment (--sdm conda).
# It installs pipeline_lib into it, without dependencies, which conda has already installed:
# - from $SLIMFLOW_SOURCE when set (a pip requirement: a wheel, a path, or git+https://...@TAG),
#   for a module Snakemake fetched from github(...), which runs a copy of this script elsewhere;
# - else from the checkout this script is in: editable, so code changes need no new environment.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -n "${SLIMFLOW_SOURCE:-}" ]; then
    python -m pip install --no-deps --no-build-isolation --quiet "$SLIMFLOW_SOURCE"
elif [ -f "$repo/pyproject.toml" ] && [ -d "$repo/pipeline_lib" ]; then
    python -m pip install --no-deps --no-build-isolation --quiet -e "$repo"
else
    echo "slimflow.post-deploy.sh: no slimflow checkout at $repo (a module from github?);" \
         "set SLIMFLOW_SOURCE to what pip should install, e.g. a slimflow wheel (docs/DEPLOY.md)" >&2
    exit 1
fi
