#!/usr/bin/env bash
# Creates bench/peers/.venv with TRL for bench/peers/trl_vs_skd.py (network: pip only).
# Usage: bash bench/peers/setup_venv.sh        (idempotent; ~1-3 min with a local torch wheel)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
python -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0 trl transformers accelerate datasets
"$venv/bin/python" -c "import torch, trl, transformers; print('torch', torch.__version__, 'trl', trl.__version__, 'transformers', transformers.__version__)"
