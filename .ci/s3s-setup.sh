#!/usr/bin/env bash
# Provides s3s-fs, the real S3 server (SigV4 signatures and presigned URLs checked) that the
# storage tests (tests/it/s3.rs) run, idempotently: an s3s-fs of the pinned version already
# on the machine is used as it is. It starts no server; each test starts its own on a free
# loopback port over a scratch directory, so that it can stop and restart it.
#
#   ATELIER_TEST_S3S_FS=$(bash .ci/s3s-setup.sh)   # prints the binary's path on stdout
#
# Pinned: later versions need a newer Rust than this machine's.
set -euo pipefail
version=0.14.1
root=${S3S_ROOT:-${CARGO_HOME:-$HOME/.cargo}}
binary=$root/bin/s3s-fs
if ! { [[ -x $binary ]] && "$binary" --version 2>/dev/null | grep -qF "$version"; }; then
  echo "s3s-setup: installing s3s-fs $version into $root" >&2
  cargo install --quiet --locked --root "$root" "s3s-fs@$version" --features binary >&2
fi
echo "$binary"
