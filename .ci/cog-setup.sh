#!/usr/bin/env bash
# Provides the Python venv that the integration tests run real Cog prediction servers from
# (tests/fixtures/cog/predict.py), idempotently: a venv that already has the pinned packages
# is left as it is. It starts no server; each test starts its own on a free port.
#
#   ATELIER_TEST_COG_PYTHON=$(bash .ci/cog-setup.sh)   # prints the venv's python on stdout
#   source .ci/cog-setup.sh                             # exports ATELIER_TEST_COG_PYTHON too
#
# The venv is ${COG_VENV:-<repo>/target/cog-venv}; it is built with ${PYTHON:-python3}.
# Whoever starts a server from it must put the venv's bin/ first on PATH: coglet starts its
# worker as plain `python` from PATH, and a worker that cannot import coglet leaves the
# server answering STARTING forever.

_cog_setup() (
  set -euo pipefail
  local repo venv py
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv=${COG_VENV:-$repo/target/cog-venv}
  # Pinned: the tests rely on this version's wire behaviour (webhooks, 409 when busy, ...).
  # standardwebhooks: the official library the completion-webhook tests verify deliveries with.
  local -a pins=(cog==0.23.1 pillow==13.0.0 standardwebhooks==1.1.0)

  ready() {
    [[ -x $venv/bin/python ]] && "$venv/bin/python" - "${pins[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import cog, coglet, PIL, standardwebhooks.webhooks  # noqa: F401  (importable, not just installed)
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
EOF
  }

  if ! ready; then
    echo "cog-setup: installing ${pins[*]} into $venv" >&2
    mkdir -p "$venv"
    "${PYTHON:-python3}" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
    ready || { echo "cog-setup: $venv still lacks ${pins[*]}" >&2; exit 1; }
  fi
  py=$(cd "$venv/bin" && pwd)/python
  echo "$py"
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  _cog_setup
else
  ATELIER_TEST_COG_PYTHON=$(_cog_setup) || return 1
  export ATELIER_TEST_COG_PYTHON
  echo "$ATELIER_TEST_COG_PYTHON"
  unset -f _cog_setup
fi
