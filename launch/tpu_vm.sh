#!/usr/bin/env bash
# Single-host TPU VM (v4-8, v5litepod-8, v5p-8, v6e-8): create, setup, run, logs, delete.
# Settings are environment variables; `launch/tpu_vm.sh --help` lists them with their
# defaults, and launch/README.md is the runbook. DRY_RUN=1 (or --dry-run) prints every
# command instead of running it.
set -euo pipefail

SCRIPT_NAME="launch/tpu_vm.sh"
MODE="vm"
DEFAULT_ACCELERATOR_TYPE="v4-8"
DEFAULT_QUEUED=0  # `tpu-vm create` waits until the VM is ready; set QUEUED=1 to queue.

# shellcheck source=launch/_tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_tpu_common.sh"

main "$@"
