# shellcheck shell=bash
# Shared implementation of launch/tpu_vm.sh and launch/tpu_pod.sh; not run directly.
#
# The caller sets, before sourcing:
#   SCRIPT_NAME      name shown in --help and in error messages
#   MODE             "vm" (one host) or "pod" (a multi-host slice)
# and may pre-set the defaults below (DEFAULT_ACCELERATOR_TYPE, DEFAULT_QUEUED).
#
# Every remote command runs on ALL workers (`--worker=all`): a TPU job is one process
# per host, the same command on every host, and jax.distributed.initialize() (called by
# skd_jax.main) finds the other hosts by itself.

set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${LAUNCH_DIR}/.." && pwd)"

# shellcheck source=launch/_common.sh
source "${LAUNCH_DIR}/_common.sh"

# ---------------------------------------------------------------------------- settings

sanitize_name() {
  local name
  name="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-' '-')"
  printf '%s' "${name}"
}

# A runtime image per TPU generation (cloud.google.com/tpu/docs/runtimes).
default_runtime_version() {
  case "$1" in
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v5litepod-* | v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    *) echo "tpu-ubuntu2204-base" ;;
  esac
}

load_settings() {
  TPU_NAME="${TPU_NAME:-$(sanitize_name "skd-${MODE}-${USER:-user}")}"
  ZONE="${ZONE:-us-central2-b}"
  ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-${DEFAULT_ACCELERATOR_TYPE}}"
  RUNTIME_VERSION="${RUNTIME_VERSION:-$(default_runtime_version "${ACCELERATOR_TYPE}")}"
  PROJECT="${PROJECT:-}"
  SPOT="${SPOT:-0}"
  QUEUED="${QUEUED:-${DEFAULT_QUEUED}}"
  QR_ID="${QR_ID:-${TPU_NAME}-qr}"
  CONFIG="${CONFIG:-}"
  WORKDIR="${WORKDIR:-}"
  EXTRA_FLAGS="${EXTRA_FLAGS:-}"
  RUN_ENV="${RUN_ENV:-}"
  REPO_URL="${REPO_URL:-}"
  REPO_REF="${REPO_REF:-}"
  REMOTE_DIR="${REMOTE_DIR:-skd_jax}"
  REMOTE_VENV="${REMOTE_VENV:-skd_venv}"
  PIP_EXTRAS="${PIP_EXTRAS:-jax[tpu]}"
  LOG_NAME="${LOG_NAME:-skd}"
  LOG_LINES="${LOG_LINES:-50}"
  LOCAL_LOG_DIR="${LOCAL_LOG_DIR:-tpu_logs/${TPU_NAME}}"
  SSH_FLAGS="${SSH_FLAGS:-}"
  FORCE="${FORCE:-0}"
  DRY_RUN="${DRY_RUN:-0}"
}

print_help() {
  cat <<EOF
Usage: ${SCRIPT_NAME} [--dry-run|--plan] [--spot] [-h|--help] COMMAND [ARGS]

$([[ "${MODE}" == pod ]] && echo "Multi-host TPU pod slice (one process per host, same command on every worker)." \
                         || echo "Single-host TPU VM (v4-8, v5litepod-8, v5p-8, v6e-8, ...).")

Commands (usual order: create, setup, check, run, logs, delete):
  create      create the TPU ($([[ "${QUEUED}" == 1 ]] && echo "queued resource" || echo "tpu-vm create"); QUEUED=0/1 chooses)
  wait        poll the queued resource until it is ACTIVE (QUEUED=1 only)
  status      describe the TPU (and the queued resource)
  setup       copy the local checkout (or git clone REPO_URL) to every worker and
              pip install it into ~/${REMOTE_VENV} with ${PIP_EXTRAS}
  check       print jax.process_count() / device counts from every worker
  run         start 'python -m skd_jax.main' on every worker in the background (nohup);
              rerun with the same WORKDIR to resume from the latest checkpoint
  logs        print the last LOG_LINES lines of every worker's log
  fetch-logs  copy every worker's log directory to LOCAL_LOG_DIR (scp)
  stop        kill the job started by 'run' on every worker
  exec CMD    run a shell command on every worker
  delete      delete the TPU (and the queued resource)

Settings (environment variables; current value in brackets):
  TPU_NAME          TPU node name                        [${TPU_NAME}]
  ZONE              GCP zone                             [${ZONE}]
  ACCELERATOR_TYPE  e.g. v4-8, v5litepod-8, v4-32, v5p-64 [${ACCELERATOR_TYPE}]
  RUNTIME_VERSION   TPU software version (default from the accelerator family)
                                                         [${RUNTIME_VERSION}]
  PROJECT           GCP project (empty: gcloud's default) [${PROJECT}]
  SPOT              1: spot capacity (preemptible, cheap) [${SPOT}]
  QUEUED            1: create through queued-resources    [${QUEUED}]
  QR_ID             queued resource id                   [${QR_ID}]
  CONFIG            experiment config, e.g. configs/gemma_translate.py (required by run)
                                                         [${CONFIG}]
  WORKDIR           checkpoints and metrics; $([[ "${MODE}" == pod ]] && echo "must be gs://... (shared by all hosts)" || echo "gs://... recommended (survives the VM)") (required by run)
                                                         [${WORKDIR}]
  EXTRA_FLAGS       extra flags for skd_jax.main, whitespace-separated, e.g.
                    '--config.train.steps=1000 --config.seed=1' [${EXTRA_FLAGS}]
  RUN_ENV           VAR=value words exported before the job, e.g. 'TF_CPP_MIN_LOG_LEVEL=2'
                                                         [${RUN_ENV}]
  REPO_URL          if set, setup git-clones this URL instead of copying the checkout
                                                         [${REPO_URL}]
  REPO_REF          branch/tag/commit to check out after cloning [${REPO_REF}]
  REMOTE_DIR        checkout directory on the workers (relative to \$HOME) [${REMOTE_DIR}]
  REMOTE_VENV       virtualenv on the workers (relative to \$HOME) [${REMOTE_VENV}]
  PIP_EXTRAS        extra pip requirements installed with the package [${PIP_EXTRAS}]
  LOG_NAME          log file prefix: ~/skd_logs/<LOG_NAME>.<hostname>.log [${LOG_NAME}]
  LOG_LINES         lines shown by 'logs'                [${LOG_LINES}]
  LOCAL_LOG_DIR     destination of 'fetch-logs'          [${LOCAL_LOG_DIR}]
  SSH_FLAGS         extra flags for tpu-vm ssh/scp, e.g. '--internal-ip' [${SSH_FLAGS}]
  FORCE             1: 'run' even if a job from this script is still alive [${FORCE}]
  DRY_RUN           1: print every command instead of running it; json: print the
                    plan as one JSON object (what would run, where, its logs) [${DRY_RUN}]

Example:
  $([[ "${MODE}" == pod ]] \
    && echo "TPU_NAME=skd-pod ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 CONFIG=configs/gemma_translate.py WORKDIR=gs://my-bucket/skd/run1 ${SCRIPT_NAME} run" \
    || echo "TPU_NAME=skd-vm ZONE=us-central2-b ACCELERATOR_TYPE=v4-8 CONFIG=configs/gemma_translate.py WORKDIR=gs://my-bucket/skd/run1 ${SCRIPT_NAME} run")
See launch/README.md for the full runbook.
EOF
}

validate_common() {
  [[ "${TPU_NAME}" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] \
    || die "TPU_NAME='${TPU_NAME}' is not a valid name (lowercase letters, digits, '-'; starts with a letter)."
  [[ -n "${ZONE}" ]] || die "ZONE is not set (e.g. ZONE=us-central2-b)."
  [[ -n "${ACCELERATOR_TYPE}" ]] || die "ACCELERATOR_TYPE is not set (e.g. ACCELERATOR_TYPE=v4-8)."
  local flag
  for flag in SPOT QUEUED FORCE; do
    [[ "${!flag}" == 0 || "${!flag}" == 1 ]] || die "${flag} must be 0 or 1, got '${!flag}'."
  done
  check_dry_run_setting
}

# Every single-host slice type ends in a number <= 8 (v4-8, v5litepod-8, v5p-8, v6e-8).
validate_accelerator() {
  local size="${ACCELERATOR_TYPE##*-}"
  [[ "${size}" =~ ^[0-9]+$ ]] || die "ACCELERATOR_TYPE='${ACCELERATOR_TYPE}' does not end in a size (e.g. v4-8)."
  if [[ "${MODE}" == vm && "${size}" -gt 8 ]]; then
    die "ACCELERATOR_TYPE=${ACCELERATOR_TYPE} is a multi-host slice; use launch/tpu_pod.sh."
  fi
  if [[ "${MODE}" == pod && "${size}" -le 8 ]]; then
    warn "ACCELERATOR_TYPE=${ACCELERATOR_TYPE} is a single host; launch/tpu_vm.sh is enough."
  fi
}

validate_run() {
  [[ -n "${CONFIG}" ]] || die "CONFIG is not set: the experiment config to run, e.g. CONFIG=configs/gemma_translate.py (see ${SCRIPT_NAME} --help)."
  [[ -n "${WORKDIR}" ]] || die "WORKDIR is not set: where checkpoints go$([[ "${MODE}" == pod ]] && echo ", a gs:// path shared by all hosts, e.g. WORKDIR=gs://my-bucket/skd/run1" || echo ", e.g. WORKDIR=gs://my-bucket/skd/run1")."
  if [[ "${MODE}" == pod && "${WORKDIR}" != gs://* ]]; then
    die "WORKDIR='${WORKDIR}' must be a gs:// path on a pod: every host writes its shards of the checkpoint there and each host's local disk is private."
  fi
  if [[ "${MODE}" == vm && "${SPOT}" == 1 && "${WORKDIR}" != gs://* ]]; then
    warn "WORKDIR='${WORKDIR}' is on the VM's disk, which a spot preemption deletes; use gs:// to resume."
  fi
  local config_file="${CONFIG%%:*}"
  if [[ -z "${REPO_URL}" && ! -f "${REPO_ROOT}/${config_file}" ]]; then
    warn "${config_file} is not in the local checkout ${REPO_ROOT}."
  fi
}

# -------------------------------------------------------------------------- gcloud

# gcloud_tpu GROUP VERB NAME [FLAGS...] runs
# `gcloud compute tpus GROUP VERB NAME --zone=ZONE FLAGS... [--project=PROJECT]`.
gcloud_tpu() {
  local head=("$1" "$2" "$3")
  shift 3
  local project=()
  if [[ -n "${PROJECT}" ]]; then
    project=("--project=${PROJECT}")
  fi
  run_cmd gcloud compute tpus "${head[@]}" "--zone=${ZONE}" "$@" "${project[@]}"
}

# Runs a shell command string on every worker.
ssh_all() {
  local ssh_flags=()
  read -r -a ssh_flags <<<"${SSH_FLAGS}"
  gcloud_tpu tpu-vm ssh "${TPU_NAME}" --worker=all "${ssh_flags[@]}" "--command=$1"
}

scp_all() {
  local ssh_flags=()
  read -r -a ssh_flags <<<"${SSH_FLAGS}"
  gcloud_tpu tpu-vm scp "$@" --worker=all "${ssh_flags[@]}"
}

# Quotes each word of a whitespace-separated list for a remote shell.
quote_words() {
  local words=() word out=""
  read -r -a words <<<"$1"
  for word in "${words[@]}"; do
    out+="${out:+ }$(printf '%q' "${word}")"
  done
  printf '%s' "${out}"
}

# Paths on the workers are relative to the remote $HOME, expanded by the remote shell.
remote_python() {
  # shellcheck disable=SC2016  # "$HOME" is for the remote shell.
  printf '"$HOME"/%s/bin/python' "$(printf '%q' "${REMOTE_VENV}")"
}

remote_log_dir() {
  # shellcheck disable=SC2016  # "$HOME" is for the remote shell.
  printf '"$HOME"/skd_logs'
}

# -------------------------------------------------------------------------- commands

cmd_create() {
  local spot=()
  [[ "${SPOT}" == 1 ]] && spot=(--spot)
  if [[ "${QUEUED}" == 1 ]]; then
    gcloud_tpu queued-resources create "${QR_ID}" "--node-id=${TPU_NAME}" \
      "--accelerator-type=${ACCELERATOR_TYPE}" "--runtime-version=${RUNTIME_VERSION}" "${spot[@]}"
    info "queued resource ${QR_ID} requested; '${SCRIPT_NAME} wait' blocks until the TPU is ACTIVE."
  else
    gcloud_tpu tpu-vm create "${TPU_NAME}" "--accelerator-type=${ACCELERATOR_TYPE}" \
      "--version=${RUNTIME_VERSION}" "${spot[@]}"
  fi
}

cmd_wait() {
  [[ "${QUEUED}" == 1 ]] || die "'wait' needs QUEUED=1 (tpu-vm create already waits)."
  if dry_run; then
    gcloud_tpu queued-resources describe "${QR_ID}" "--format=value(state.state)"
    return
  fi
  local state
  while true; do
    state="$(gcloud_tpu queued-resources describe "${QR_ID}" "--format=value(state.state)" 2>/dev/null)"
    info "queued resource ${QR_ID}: ${state}"
    case "${state}" in
      ACTIVE) return 0 ;;
      FAILED | SUSPENDED | SUSPENDING) die "queued resource ${QR_ID} is ${state}; '${SCRIPT_NAME} delete' then 'create' again." ;;
    esac
    sleep 30
  done
}

cmd_status() {
  if [[ "${QUEUED}" == 1 ]]; then
    gcloud_tpu queued-resources describe "${QR_ID}"
  fi
  gcloud_tpu tpu-vm describe "${TPU_NAME}" "--format=value(state,acceleratorType,health)"
}

cmd_setup() {
  local dir venv python
  dir="$(printf '%q' "${REMOTE_DIR}")"
  venv="$(printf '%q' "${REMOTE_VENV}")"
  python="$(remote_python)"
  local fetch
  if [[ -n "${REPO_URL}" ]]; then
    local url ref checkout=""
    url="$(printf '%q' "${REPO_URL}")"
    ref="$(printf '%q' "${REPO_REF}")"
    [[ -n "${REPO_REF}" ]] && checkout=" && git -C ${dir} checkout ${ref}"
    fetch="if [ -d ${dir}/.git ]; then git -C ${dir} fetch --all --tags; else git clone ${url} ${dir}; fi${checkout}"
    [[ -z "${REPO_REF}" ]] && fetch+=" && git -C ${dir} pull --ff-only"
  else
    # Tracked and untracked-but-not-ignored files of the local checkout (no .git, no venvs).
    local tarball="${TMPDIR:-/tmp}/${TPU_NAME}-skd_jax.tar.gz"
    run_local_sh "cd $(printf '%q' "${REPO_ROOT}") && git ls-files -z --cached --others --exclude-standard | tar --null -T - -czf $(printf '%q' "${tarball}")"
    scp_all "${tarball}" "${TPU_NAME}:skd_jax.tar.gz"
    fetch="mkdir -p ${dir} && tar -xzf skd_jax.tar.gz -C ${dir}"
  fi
  local pip_extras extras_list=()
  pip_extras="$(quote_words "${PIP_EXTRAS}")"
  read -r -a extras_list <<<"${PIP_EXTRAS}"
  PLAN_SETUP="$(json_object source "$([[ -n "${REPO_URL}" ]] && echo "${REPO_URL}" || echo "local checkout")" \
    ref "${REPO_REF}" dir "\$HOME/${REMOTE_DIR}" venv "\$HOME/${REMOTE_VENV}" \
    pip_install "json:$(json_list -e . "${extras_list[@]}")")"
  # python3-venv is not always on the image; fall back to virtualenv from pip.
  ssh_all "set -e; cd \"\$HOME\"; ${fetch}; \
if [ ! -x ${python} ]; then python3 -m venv ${venv} || { python3 -m pip install --user -q virtualenv && python3 -m virtualenv ${venv}; }; fi; \
${python} -m pip install -q -U pip && cd ${dir} && ${python} -m pip install -e . ${pip_extras} && \
${python} -c 'import jax, skd_jax; print(\"skd_jax installed, jax\", jax.__version__)'"
}

cmd_check() {
  local init=""
  [[ "${MODE}" == pod ]] && init="jax.distributed.initialize(); "
  ssh_all "cd \"\$HOME\"/$(printf '%q' "${REMOTE_DIR}") && $(remote_python) -c 'import jax, socket; ${init}print(socket.gethostname(), \"process_index=%d\" % jax.process_index(), \"jax.process_count()=%d\" % jax.process_count(), \"local_devices=%d\" % jax.local_device_count(), \"devices=%d\" % jax.device_count())'"
}

# What the plan (DRY_RUN=json) says besides the gcloud commands: the TPU, and for
# 'run' the job every worker starts (paths under the worker's $HOME).
PLAN_JOB="null"
PLAN_SETUP="null"

tpu_resolved() {
  json_object command "$1" mode "${MODE}" tpu_name "${TPU_NAME}" zone "${ZONE}" \
    project "json:$(json_str_or_null "${PROJECT}")" \
    accelerator_type "${ACCELERATOR_TYPE}" runtime_version "${RUNTIME_VERSION}" \
    spot "json:$([[ "${SPOT}" == 1 ]] && echo true || echo false)" \
    queued_resource "json:$(json_str_or_null "$([[ "${QUEUED}" == 1 ]] && echo "${QR_ID}")")" \
    workers all processes "one per host" job "json:${PLAN_JOB}" setup "json:${PLAN_SETUP}"
}

cmd_run() {
  validate_run
  local args=(-m skd_jax.main "--config=${CONFIG}" "--workdir=${WORKDIR}")
  local extra=()
  read -r -a extra <<<"${EXTRA_FLAGS}"
  local job="" word
  for word in "${args[@]}" "${extra[@]}"; do
    job+=" $(printf '%q' "${word}")"
  done
  local env_words=""
  local run_env=()
  [[ -n "${RUN_ENV}" ]] && env_words="$(quote_words "${RUN_ENV}") "
  read -r -a run_env <<<"${RUN_ENV}"
  PLAN_JOB="$(json_object argv "json:$(json_list "\$HOME/${REMOTE_VENV}/bin/python" "${args[@]}" "${extra[@]}")" \
    env "json:$(json_env PYTHONUNBUFFERED=1 "${run_env[@]}")" cwd "\$HOME/${REMOTE_DIR}" \
    log "\$HOME/skd_logs/${LOG_NAME}.\$(hostname).log" pid_file "\$HOME/skd_logs/${LOG_NAME}.pid" \
    guard "json:$([[ "${FORCE}" == 1 ]] && echo false || echo true)")"
  local log_dir log pid_file
  log_dir="$(remote_log_dir)"
  log="${log_dir}/$(printf '%q' "${LOG_NAME}").\$(hostname).log"
  pid_file="${log_dir}/$(printf '%q' "${LOG_NAME}").pid"
  local guard=""
  if [[ "${FORCE}" != 1 ]]; then
    # A second job on the same TPU fails with 'TPU already in use'; refuse early instead.
    guard="if [ -f ${pid_file} ] && kill -0 \"\$(cat ${pid_file})\" 2>/dev/null; then echo \"\$(hostname): job \$(cat ${pid_file}) still running; '${SCRIPT_NAME} stop' or FORCE=1\" >&2; exit 1; fi; "
  fi
  # `;` not `&&` before the `&`: only the python process goes to the background, so
  # $! is its pid (an `a && b &` list would background a subshell instead).
  ssh_all "mkdir -p ${log_dir} || exit 1; ${guard}cd \"\$HOME\"/$(printf '%q' "${REMOTE_DIR}") || exit 1; \
echo \"=== \$(date -u +%FT%TZ) start on \$(hostname)\" >> ${log}; \
PYTHONUNBUFFERED=1 ${env_words}nohup $(remote_python)${job} >> ${log} 2>&1 < /dev/null & \
echo \$! > ${pid_file}; echo \"\$(hostname): started pid \$! log ${log}\""
  info "job started on every worker of ${TPU_NAME}; follow it with '${SCRIPT_NAME} logs'."
}

cmd_logs() {
  local logs
  logs="$(remote_log_dir)/$(printf '%q' "${LOG_NAME}").*.log"
  ssh_all "for f in ${logs}; do echo \"==> \$(hostname): \$f <==\"; tail -n $(printf '%q' "${LOG_LINES}") \"\$f\"; done"
}

cmd_fetch_logs() {
  run_cmd mkdir -p "${LOCAL_LOG_DIR}"
  scp_all --recurse "${TPU_NAME}:skd_logs" "${LOCAL_LOG_DIR}/"
}

cmd_stop() {
  local pid_file
  pid_file="$(remote_log_dir)/$(printf '%q' "${LOG_NAME}").pid"
  ssh_all "if [ -f ${pid_file} ]; then kill \"\$(cat ${pid_file})\" 2>/dev/null && echo \"\$(hostname): stopped\" || echo \"\$(hostname): not running\"; rm -f ${pid_file}; fi"
}

cmd_exec() {
  [[ $# -gt 0 ]] || die "'exec' needs a command, e.g. ${SCRIPT_NAME} exec 'nproc'."
  ssh_all "$*"
}

cmd_delete() {
  if [[ "${QUEUED}" == 1 ]]; then
    # --force also deletes the TPU node the queued resource created.
    gcloud_tpu queued-resources delete "${QR_ID}" --force
  else
    gcloud_tpu tpu-vm delete "${TPU_NAME}"
  fi
}

main() {
  local command="" args=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h | --help) load_settings; print_help; exit 0 ;;
      --dry-run) export DRY_RUN=1 ;;
      --plan) export DRY_RUN=json ;;
      --spot) export SPOT=1 ;;
      --) shift; args+=("$@"); break ;;
      -*) if [[ -z "${command}" ]]; then die "unknown option '$1' (see --help)."; else args+=("$1"); fi ;;
      *) if [[ -z "${command}" ]]; then command="$1"; else args+=("$1"); fi ;;
    esac
    shift
  done
  load_settings
  if [[ -n "${command}" && "${command}" != exec && ${#args[@]} -gt 0 ]]; then
    die "unexpected arguments after '${command}': ${args[*]} (settings are environment variables, see --help)."
  fi
  if [[ -z "${command}" ]]; then
    print_help >&2
    die "no command given (create, wait, status, setup, check, run, logs, fetch-logs, stop, exec, delete)."
  fi
  validate_common
  validate_accelerator
  case "${command}" in
    create) cmd_create ;;
    wait) cmd_wait ;;
    status) cmd_status ;;
    setup) cmd_setup ;;
    check) cmd_check ;;
    run) cmd_run ;;
    logs) cmd_logs ;;
    fetch-logs) cmd_fetch_logs ;;
    stop) cmd_stop ;;
    exec) cmd_exec "${args[@]}" ;;
    delete) cmd_delete ;;
    *) die "unknown command '${command}' (see --help)." ;;
  esac
  plan_emit "$(tpu_resolved "${command}")"
}
