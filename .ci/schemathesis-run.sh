#!/usr/bin/env bash
# Tests the OpenAPI document against the real server: starts `atelier serve` (the debug binary
# the test command built) on a scratch SQLite database with an admin token and a funded
# account, then runs schemathesis over every operation of `GET /openapi.json` with every check.
# It fails on any 5xx and on any answer the document does not describe (status, headers, body),
# within a hard time limit. Leaves nothing behind: the server is stopped, the scratch directory
# removed.
#
#   bash .ci/schemathesis-run.sh [path/to/schemathesis]   # default: from .ci/schemathesis-setup.sh
#
# The engine is off (`workflow.run_engine = false`): generations stay `reserved`, and no URL
# schemathesis makes up (an input image, a webhook endpoint) is ever fetched or called.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
schemathesis=${1:-$(bash "$repo/.ci/schemathesis-setup.sh")}
binary=${ATELIER_BINARY:-$repo/target/debug/atelier}
# Cases per operation, the whole run's limit in seconds, and the seed: fixed, so that a CI
# failure reproduces; another seed explores other cases.
examples=${SCHEMATHESIS_EXAMPLES:-10}
limit=${SCHEMATHESIS_TIMEOUT:-150}
seed=${SCHEMATHESIS_SEED:-12}

[[ -x $binary ]] || { echo "schemathesis-run: no $binary (build it first)" >&2; exit 1; }
scratch=$(mktemp -d)
server=
stop() {
  if [[ -n $server ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap stop EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
token=adm_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# From the scratch directory, so that no atelier.toml lying around is read.
(
  cd "$scratch"
  exec env ATELIER_BIND=127.0.0.1:$port ATELIER_ADMIN_TOKEN=$token \
    DATABASE_URL="sqlite://$scratch/atelier.sqlite?mode=rwc" ATELIER_DATA_DIR=$scratch/data \
    ATELIER_WORKFLOW__RUN_ENGINE=false RUST_LOG=warn "$binary" serve
) >"$scratch/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -fs "$base/readyz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$scratch/serve.log" >&2; exit 1; }
  sleep 0.2
done
curl -fs "$base/readyz" >/dev/null || { echo "schemathesis-run: server not ready" >&2; exit 1; }

admin() { curl -fsS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$2" "$base$1"; }
account=$(admin /v1/accounts '{"name": "schemathesis"}')
account_id=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$account")
api_key=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])' <<<"$account")
admin "/v1/accounts/$account_id/grants" '{"credits": 1000000000, "reference": "schemathesis"}' >/dev/null

echo "schemathesis-run: $examples cases per operation against $base, at most ${limit}s"
status=0
# From the scratch directory too: schemathesis keeps its cache in the working directory.
cd "$scratch"
ATELIER_ADMIN_TOKEN=$token ATELIER_ST_API_KEY=$api_key \
  timeout --kill-after=10 "$limit" "$schemathesis" --config-file "$repo/.ci/schemathesis.toml" --no-color \
  run "$base/openapi.json" --checks all --max-examples "$examples" --seed "$seed" \
  --request-timeout 10 || status=$?
if ((status != 0)); then
  echo "schemathesis-run: failed (exit $status); the server's log:" >&2
  tail -n 50 "$scratch/serve.log" >&2
fi
exit "$status"
