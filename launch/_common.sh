# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, not run). The caller sets SCRIPT_NAME.
#
# Dry-run convention: with DRY_RUN=1, every command goes to stdout, one per line, quoted
# so that the output can be pasted into a shell; messages go to stderr.

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

info() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
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

# Runs a command given as separate words; with DRY_RUN=1 prints it to stdout instead.
run_cmd() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    shell_line "$@"
  else
    printf '+ %s' "$(shell_line "$@")" >&2
    printf '\n' >&2
    "$@"
  fi
}

# Runs a local shell snippet (pipelines); with DRY_RUN=1 prints it instead.
run_local_sh() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%s\n' "$1"
  else
    printf '+ %s\n' "$1" >&2
    bash -c "set -euo pipefail; $1"
  fi
}
