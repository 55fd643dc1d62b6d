#!/usr/bin/env bash
# Multi-host TPU pod slice (v4-32, v5p-64, v5litepod-16, ...): create, setup, run, logs,
# delete. One process per host: every command below runs the same thing on all workers
# (`--worker=all`), and skd_jax.main's jax.distributed.initialize() joins them.
# Settings are environment variables; `launch/tpu_pod.sh --help` lists them with their
# defaults, and launch/README.md is the runbook. DRY_RUN=1 (or --dry-run) prints every
# command instead of running it.
set -euo pipefail

SCRIPT_NAME="launch/tpu_pod.sh"
MODE="pod"
DEFAULT_ACCELERATOR_TYPE="v4-32"
DEFAULT_QUEUED=1  # queued resources: the recommended way to get (spot) pod capacity.

# shellcheck source=launch/_tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_tpu_common.sh"

main "$@"
