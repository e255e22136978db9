#!/usr/bin/env bash
# Sets up whatever is missing, quickly and idempotently, so that `npm start` and `npm test` work on
# a fresh Debian 12 machine: Debian packages, the mediasoup worker (built from source, cached
# outside node_modules), npm packages, and the built client pages.
#   scripts/setup.sh          what the server needs
#   scripts/setup.sh --test   plus what the test suite needs (Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------------------------
packages=(ffmpeg)
(( want_test )) && packages+=(chromium)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})"
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- mediasoup worker (built from the npm tarball's sources; see the script for why) ----------
worker_bin=$(bash scripts/build-mediasoup-worker.sh | tail -n 1)
[[ -x "$worker_bin" ]] || { say "mediasoup worker build did not produce a binary"; exit 1; }

# --- npm packages: reinstall only when package-lock.json changed ------------------------------
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.videoteller-lock.sha256
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
  say "installing npm packages"
  # mediasoup's own postinstall (download or build of a worker) is skipped: we bring the worker.
  MEDIASOUP_WORKER_BIN="$worker_bin" npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$lock_sum" > "$stamp"
fi

# Put the worker where mediasoup looks by default, so no environment variable is needed at run time.
default_bin=node_modules/mediasoup/worker/out/Release/mediasoup-worker
if ! cmp -s "$worker_bin" "$default_bin" 2>/dev/null; then
  mkdir -p "$(dirname "$default_bin")"
  cp "$worker_bin" "$default_bin.tmp" && mv "$default_bin.tmp" "$default_bin"
fi

# --- client pages: rebuild when their sources (or the shared protocol) changed ----------------
src_sum=$( { find client-web -path client-web/dist -prune -o -type f -print; echo signaling/protocol.ts; echo package-lock.json; } \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [[ ! -f client-web/dist/.source.sha256 || "$(cat client-web/dist/.source.sha256)" != "$src_sum" ]]; then
  say "building client pages"
  npx vite build --config client-web/vite.config.ts --logLevel warn >&2
  echo "$src_sum" > client-web/dist/.source.sha256
fi
