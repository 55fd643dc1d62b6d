# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, not run). The caller sets SCRIPT_NAME.
#
# Dry-run convention (nothing runs in either; messages go to stderr):
#   DRY_RUN=1 (--dry-run): every command goes to stdout, one per line, quoted so that
#     the output can be pasted into a shell.
#   DRY_RUN=json (--plan): stdout is ONE JSON object, the plan:
#     {"script": NAME, "resolved": {what the script decided: process counts, devices,
#      logs, ...}, "commands": [{"argv": [...], "env": {...}, "cwd": DIR or null,
#      "stdout": FILE or null, "background": bool}, ...]}
#     `cd DIR` and `export K=V` are not commands there: they set "cwd" and "env" of
#     the commands after them, and a leading `env K=V ...` goes to "env" too.

if ((BASH_VERSINFO[0] < 4)); then
  echo "${0##*/}: error: needs bash >= 4 (macOS: 'brew install bash', then run the script with it)." >&2
  exit 2
fi

die() {
  printf '%s: error: %s\n' "${SCRIPT_NAME}" "$*" >&2
  exit 2
}

warn() {
  printf '%s: warning: %s\n' "${SCRIPT_NAME}" "$*" >&2
}

# True in either dry-run mode (DRY_RUN=1 or DRY_RUN=json).
dry_run() {
  [[ "${DRY_RUN:-0}" != 0 ]]
}

check_dry_run_setting() {
  [[ "${DRY_RUN}" == 0 || "${DRY_RUN}" == 1 || "${DRY_RUN}" == json ]] \
    || die "DRY_RUN must be 0, 1 (print the commands) or json (print the plan), got '${DRY_RUN}'."
}

info() {
  if dry_run; then
    printf '%s: (dry run) %s\n' "${SCRIPT_NAME}" "$*" >&2
  else
    printf '%s: %s\n' "${SCRIPT_NAME}" "$*" >&2
  fi
}

# Quotes one word for display so that the printed line can be pasted into a shell.
# `--flag=value` keeps the flag bare and quotes only the value.
shell_word() {
  local word="$1"
  local safe='^[][A-Za-z0-9_@%+=:,./~-]+$'
  if [[ -z "${word}" ]]; then
    printf "''"
  elif [[ "${word}" =~ ${safe} ]]; then
    printf '%s' "${word}"
  elif [[ "${word}" =~ ^(--[A-Za-z0-9-]+=)(.*)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    shell_word "${BASH_REMATCH[2]}"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

shell_line() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(shell_word "${word}")"
  done
  printf '%s\n' "${out}"
}

# ------------------------------------------------------------------ the JSON plan

PLAN_COMMANDS=()
PLAN_CWD=""
declare -A PLAN_EXPORTS=()

# A JSON string literal of one word (backslash, quote, newline, tab and CR escaped).
json_str() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\t'/\\t}"
  s="${s//$'\r'/\\r}"
  printf '"%s"' "${s}"
}

json_list() {
  local out="" word
  for word in "$@"; do
    out+="${out:+, }$(json_str "${word}")"
  done
  printf '[%s]' "${out}"
}

# json_object K1 V1 K2 V2 ...: string values; a value written as json:TEXT is put in raw
# (numbers, lists, nested objects, true/false/null).
json_object() {
  local out=""
  while [[ $# -gt 0 ]]; do
    local value="$2"
    if [[ "${value}" == json:* ]]; then
      value="${value#json:}"
    else
      value="$(json_str "${value}")"
    fi
    out+="${out:+, }$(json_str "$1"): ${value}"
    shift 2
  done
  printf '{%s}' "${out}"
}

# A JSON string of the word, or null when it is empty.
json_str_or_null() {
  if [[ -n "$1" ]]; then
    json_str "$1"
  else
    printf 'null'
  fi
}

# JSON of K=V words (split at the first '=').
json_env() {
  local pairs=() word
  for word in "$@"; do
    pairs+=("${word%%=*}" "${word#*=}")
  done
  json_object "${pairs[@]}"
}

# plan_add STDOUT BACKGROUND ARGV...: records one command (STDOUT "" = none).
plan_add() {
  local stdout="$1" background="$2"
  shift 2
  local plan_env=() key
  for key in "${!PLAN_EXPORTS[@]}"; do
    plan_env+=("${key}=${PLAN_EXPORTS[${key}]}")
  done
  if [[ "$1" == env ]]; then
    shift
    while [[ $# -gt 0 && "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
      plan_env+=("$1")
      shift
    done
  fi
  local cwd="null" out="null"
  [[ -n "${PLAN_CWD}" ]] && cwd="$(json_str "${PLAN_CWD}")"
  [[ -n "${stdout}" ]] && out="$(json_str "${stdout}")"
  PLAN_COMMANDS+=("$(json_object argv "json:$(json_list "$@")" env "json:$(json_env "${plan_env[@]}")" \
    cwd "json:${cwd}" stdout "json:${out}" background "json:${background}")")
}

# plan_emit RESOLVED_JSON: with DRY_RUN=json prints the plan (see the top of this file).
plan_emit() {
  [[ "${DRY_RUN:-0}" == json ]] || return 0
  local commands="" c
  for c in "${PLAN_COMMANDS[@]}"; do
    commands+="${commands:+, }${c}"
  done
  printf '%s\n' "$(json_object script "${SCRIPT_NAME}" resolved "json:$1" commands "json:[${commands}]")"
}

# --------------------------------------------------------------------- running

# Runs a command given as separate words; with DRY_RUN=1 prints it to stdout instead,
# with DRY_RUN=json records it in the plan (`cd` and `export` set the plan's cwd/env).
run_cmd() {
  if [[ "${DRY_RUN:-0}" == json ]]; then
    case "$1" in
      cd) PLAN_CWD="$2" ;;
      export) PLAN_EXPORTS["${2%%=*}"]="${2#*=}" ;;
      *) plan_add "" false "$@" ;;
    esac
  elif [[ "${DRY_RUN:-0}" == 1 ]]; then
    shell_line "$@"
  else
    printf '+ %s' "$(shell_line "$@")" >&2
    printf '\n' >&2
    "$@"
  fi
}

# Runs a command in the background, stdout and stderr to LOG; sets BG_PID. In a dry run
# prints `CMD > LOG 2>&1 &` (DRY_RUN=1) or records it (json).
run_bg() {
  local log="$1"
  shift
  if [[ "${DRY_RUN:-0}" == json ]]; then
    plan_add "${log}" true "$@"
  elif [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%s > %s 2>&1 &\n' "$(shell_line "$@")" "$(shell_word "${log}")"
  else
    "$@" >"${log}" 2>&1 &
    # shellcheck disable=SC2034  # read by the caller
    BG_PID="$!"
  fi
}

# Runs a local shell snippet (pipelines); with DRY_RUN=1 prints it instead (json: the
# plan gets `bash -c SNIPPET`).
run_local_sh() {
  if [[ "${DRY_RUN:-0}" == json ]]; then
    plan_add "" false bash -c "$1"
  elif [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%s\n' "$1"
  else
    printf '+ %s\n' "$1" >&2
    bash -c "set -euo pipefail; $1"
  fi
}
