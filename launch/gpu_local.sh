#!/usr/bin/env bash
# One multi-GPU host, no scheduler.
#
#   CONFIG=configs/gemma_translate.py WORKDIR=/data/skd/run1 launch/gpu_local.sh
#       one process that drives every visible GPU (the usual way; no jax.distributed).
#   PROCS=8 CONFIG=... WORKDIR=... launch/gpu_local.sh
#       8 processes, process i sees GPU i only, joined through COORDINATOR_ADDRESS /
#       NUM_PROCESSES / PROCESS_ID: rehearses a multi-host run on one machine (also on
#       CPU with JAX_PLATFORMS=cpu). Logs go to LOG_DIR/<LOG_NAME>.<i>.log; if one
#       process fails the others are stopped.
#
# Settings (environment variables):
#   CONFIG       experiment config (required)
#   WORKDIR      checkpoints and metrics (required)
#   EXTRA_FLAGS  extra flags for skd_jax.main, whitespace-separated   (default: none)
#   PYTHON       python with skd_jax installed                        (default: python)
#   PROCS        number of processes                                  (default: 1)
#   PORT         coordinator port on 127.0.0.1 when PROCS > 1         (default: 8476)
#   LOG_DIR, LOG_NAME  per-process logs when PROCS > 1                (default: logs, skd)
#   DRY_RUN      1 (or --dry-run): print the commands, run nothing    (default: 0)
#                json (or --plan): print the plan as one JSON object (launch/_common.sh)
# Resume: run again with the same WORKDIR; skd_jax.main restores the latest checkpoint.
set -euo pipefail

SCRIPT_NAME="launch/gpu_local.sh"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=launch/_common.sh
source "${REPO_DIR}/launch/_common.sh"

for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    --plan) DRY_RUN=json ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) die "unknown argument '${arg}' (settings are environment variables, see --help)." ;;
  esac
done

DRY_RUN="${DRY_RUN:-0}"
CONFIG="${CONFIG:-}"
WORKDIR="${WORKDIR:-}"
EXTRA_FLAGS="${EXTRA_FLAGS:-}"
PYTHON="${PYTHON:-python}"
PROCS="${PROCS:-1}"
PORT="${PORT:-8476}"
LOG_DIR="${LOG_DIR:-logs}"
LOG_NAME="${LOG_NAME:-skd}"

check_dry_run_setting
[[ -n "${CONFIG}" ]] || die "CONFIG is not set: the experiment config, e.g. CONFIG=configs/gemma_translate.py."
[[ -n "${WORKDIR}" ]] || die "WORKDIR is not set: where checkpoints and metrics go, e.g. WORKDIR=/data/skd/run1."
[[ "${PROCS}" =~ ^[1-9][0-9]*$ ]] || die "PROCS must be a positive integer, got '${PROCS}'."
[[ -f "${REPO_DIR}/${CONFIG%%:*}" ]] || warn "${CONFIG%%:*} is not in ${REPO_DIR}."

read -r -a extra_flags <<<"${EXTRA_FLAGS}"
job=("${PYTHON}" -m skd_jax.main "--config=${CONFIG}" "--workdir=${WORKDIR}" "${extra_flags[@]}")

# What the script decided, for DRY_RUN=json (the commands are recorded as they run).
resolved() {
  local logs=() i coordinator="" devices="all visible"
  if [[ "${PROCS}" != 1 ]]; then
    coordinator="127.0.0.1:${PORT}"
    devices="json:1"
    for ((i = 0; i < PROCS; i++)); do
      logs+=("${LOG_DIR}/${LOG_NAME}.${i}.log")
    done
  fi
  json_object config "${CONFIG}" workdir "${WORKDIR}" processes "json:${PROCS}" \
    coordinator "json:$(json_str_or_null "${coordinator}")" devices_per_process "${devices}" \
    logs "json:$(json_list "${logs[@]}")"
}

run_cmd cd "${REPO_DIR}"
if [[ "${PROCS}" == 1 ]]; then
  run_cmd env PYTHONUNBUFFERED=1 "${job[@]}"
  plan_emit "$(resolved)"
  exit 0
fi

run_cmd mkdir -p "${LOG_DIR}"
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill "${pid}" 2>/dev/null || true
  done
}
trap stop_all INT TERM
for ((i = 0; i < PROCS; i++)); do
  cmd=(env PYTHONUNBUFFERED=1 "COORDINATOR_ADDRESS=127.0.0.1:${PORT}" "NUM_PROCESSES=${PROCS}"
    "PROCESS_ID=${i}" "CUDA_VISIBLE_DEVICES=${i}" "${job[@]}")
  log="${LOG_DIR}/${LOG_NAME}.${i}.log"
  run_bg "${log}" "${cmd[@]}"
  if ! dry_run; then
    pids+=("${BG_PID}")
    info "process ${i}: pid ${BG_PID} log ${log}"
  fi
done
if dry_run; then
  plan_emit "$(resolved)"
  exit 0
fi

status=0
for ((i = 0; i < PROCS; i++)); do
  if ! wait -n; then
    status=1
    warn "a process failed; stopping the others (see ${LOG_DIR}/${LOG_NAME}.*.log)."
    stop_all
    wait || true
    break
  fi
done
exit "${status}"
