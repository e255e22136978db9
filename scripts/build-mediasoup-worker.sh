#!/usr/bin/env bash
# Builds mediasoup's C++ worker (mediasoup-worker) of the pinned mediasoup version from the sources in
# its npm tarball, against Debian 12's own libraries, and caches it outside the repo and outside
# node_modules:
#   ${VIDEOTELLER_CACHE:-$HOME/.cache/videoteller}/mediasoup-worker-<version>-<WORKER_BUILD_REV>/mediasoup-worker
# The last line on stdout is that path (scripts/setup.sh reads it); progress goes to stderr.
# Idempotent: if the binary is already there and runs, exits at once. Needs root only when Debian
# packages are missing. Takes ~5 minutes on 2 cores the first time (4.5 min measured, incl. pip + npm).
# Concurrent runs on one cache are serialized with flock; the later one then finds the binary built.
#
# Usage:  bash scripts/build-mediasoup-worker.sh
#   env:  VIDEOTELLER_CACHE   cache root (default $HOME/.cache/videoteller)
#         BUILD_JOBS          parallel compile jobs (default 2)
#         PYTHON              python used to install meson (default python3)
#         SKIP_WORKER_CHECK=1 skip the Node API check after a build
#         KEEP_BUILD_DIR=1    keep the build directory (logs, objects) after a successful build
#
# Why the project builds its own worker: `npm install mediasoup` downloads a prebuilt worker from
# GitHub, or else builds it with meson while pip-installing meson 1.12.0 and downloading every meson
# subproject (openssl, libuv, libsrtp, usrsctp, abseil, flatbuffers, liburing, catch2) from GitHub
# and wrapdb. Bank build networks mirror only the npm registry and Debian's archive, and banks want
# to know every binary they run. So: sources from npm (the same tarball package-lock.json pins,
# integrity checked), libraries from Debian, no other download.
#
# What it takes (measured on Debian 12, g++ 12; see /work/shared/MACHINE.md, mediasoup route 1):
#  - Debian packages: meson toolchain and the -dev packages of each library mediasoup bundles.
#  - meson >= 1.1 (mediasoup's meson_version): Debian's is 1.0.1, so meson 1.12.1 + ninja are
#    pip-installed with --target into the cache (a local pip index on these machines has them; pip
#    is used as configured, never pointed at PyPI by this script).
#  - every subproject is replaced by a local shim directory (scripts/mediasoup-shims/<wrap name>,
#    copied to the .wrap file's `directory =` name, which meson then uses as already "downloaded";
#    --wrap-mode=nodownload makes any miss an error instead of a download). Each shim declares the
#    variables worker/meson.build and worker/deps/libwebrtc/meson.build read, from the system library.
#  - libsrtp: mediasoup 3.15 is written against libsrtp 3.0-alpha, Debian ships 2.5 → the libsrtp2
#    shim adds /usr/include/srtp2 to the include path and force-includes srtp3_compat.h (size_t* vs
#    int* lengths; srtp_stream_remove → srtp_remove_stream).
#  - -Dms_disable_liburing=true: Debian's liburing 2.3 lacks io_uring_prep_sendto (and the liburing
#    subproject would be downloaded); libuv's own I/O is used instead.
#  - the flatbuffers-generator target (flatc → FBS/*.h) is built first: the build order does not
#    guarantee it runs before the sources that include its headers.
#  - the binary links Debian's shared libraries (libuv1, libssl3, libsrtp2-1, libusrsctp2, libabsl,
#    libflatbuffers), installed with the -dev packages; it runs only where those are installed.
set -euo pipefail

MEDIASOUP_VERSION=3.15.8
# sha512 of mediasoup-3.15.8.tgz, as in package-lock.json (npm checks it too; this guards a tarball
# reused from the cache or a node_modules copy).
MEDIASOUP_INTEGRITY='sha512-A1Syx910euPQwy9KxLmtr6vsrpxo+hI8vmO7LjFk3ZjeX3YQk3kpxfJxxf/r9/a8hzgQGtpPOg0ms5WFE/5QAQ=='
# Bumped whenever the shims or patches change what gets built: it is part of the cache path, so a
# worker built from older shims or patches is never reused. media/worker-bin.ts has the same value.
WORKER_BUILD_REV=vt2
MESON_VERSION=1.12.1
APT_PACKAGES=(g++ patch meson ninja-build pkg-config libuv1-dev libssl-dev libsrtp2-dev libusrsctp-dev
  libabsl-dev libflatbuffers-dev flatbuffers-compiler)

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHIMS_DIR="$REPO_DIR/scripts/mediasoup-shims"
PATCHES_DIR="$REPO_DIR/scripts/mediasoup-patches"
CACHE_DIR=${VIDEOTELLER_CACHE:-$HOME/.cache/videoteller}
OUT_DIR="$CACHE_DIR/mediasoup-worker-$MEDIASOUP_VERSION-$WORKER_BUILD_REV"
OUT_BIN="$OUT_DIR/mediasoup-worker"
PYTOOLS_DIR="$CACHE_DIR/pytools/meson-$MESON_VERSION"
TARBALL="$CACHE_DIR/npm/mediasoup-$MEDIASOUP_VERSION.tgz"
JOBS=${BUILD_JOBS:-2}
PYTHON=${PYTHON:-python3}

say() { printf '[build-mediasoup-worker] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# The worker refuses to start unless spawned by mediasoup's Node library: without MEDIASOUP_VERSION
# in its environment it prints an error and exits with code 41. Getting exactly 41 proves the binary
# loads (every shared library resolves) and reaches main(). It has no --version flag.
worker_runs() {
  [[ -x "$1" ]] || return 1
  local rc=0
  env -u MEDIASOUP_VERSION "$1" </dev/null >/dev/null 2>&1 || rc=$?
  [[ $rc -eq 41 ]]
}

# --- fast path: already built ------------------------------------------------------------------
if worker_runs "$OUT_BIN"; then
  say "mediasoup $MEDIASOUP_VERSION worker already built"
  echo "$OUT_BIN"
  exit 0
fi

# --- one build at a time per cache (e.g. setup.sh in two terminals, or CI jobs sharing a cache) -----
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build-mediasoup-worker.lock"
if ! flock -n 9; then
  say "another build is running on $CACHE_DIR; waiting for it"
  flock 9
  if worker_runs "$OUT_BIN"; then
    say "mediasoup $MEDIASOUP_VERSION worker built by the other run"
    echo "$OUT_BIN"
    exit 0
  fi
fi
[[ -e "$OUT_BIN" ]] && say "cached worker at $OUT_BIN does not run (missing libraries?); rebuilding"
started=$SECONDS

# --- Debian packages ---------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  # Debian's python3 has no pip until python3-pip is installed (e.g. the node:20-bookworm image).
  [[ "$PYTHON" == python3 ]] || die "$PYTHON has no pip"
  missing+=(python3-pip)
  PYTHON=/usr/bin/python3
fi
if (( ${#missing[@]} )); then
  [[ $(id -u) -eq 0 ]] || die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- meson >= 1.1 and ninja, pip-installed into the cache ----------------------------------------
export PYTHONPATH="$PYTOOLS_DIR${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$PYTOOLS_DIR/bin:$PATH"   # meson looks ninja up on PATH: use the pip one
MESON="$PYTOOLS_DIR/bin/meson"
if [[ "$("$MESON" --version 2>/dev/null)" != "$MESON_VERSION" ]]; then
  say "installing meson $MESON_VERSION and ninja with pip into $PYTOOLS_DIR"
  rm -rf "$PYTOOLS_DIR.tmp"   # left by an interrupted run (runs are serialized by the lock above)
  mkdir -p "$CACHE_DIR/pytools"
  # pip as configured on the machine (here: a local index beside an unreachable PyPI; --retries 1
  # keeps the unreachable one from costing ~40 s of retries). Its output goes to a log shown on error.
  "$PYTHON" -m pip install --disable-pip-version-check --no-input --retries 1 --target "$PYTOOLS_DIR.tmp" \
    "meson==$MESON_VERSION" ninja >"$CACHE_DIR/pytools/pip.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/pytools/pip.log" >&2
         die "pip could not install meson==$MESON_VERSION and ninja (on these machines they come from the local pip index)"; }
  # Installed beside the final place, then renamed: an interrupted install never looks complete.
  rm -rf "$PYTOOLS_DIR" && mv "$PYTOOLS_DIR.tmp" "$PYTOOLS_DIR"
  [[ "$("$MESON" --version)" == "$MESON_VERSION" ]] || die "meson $MESON_VERSION does not run from $PYTOOLS_DIR"
fi

# --- build directory (inside the cache, so the final mv is a same-filesystem rename) -------------
# A failed build keeps its directory (logs) for a day; KEEP_BUILD_DIR=1 keeps a successful one too.
mkdir -p "$CACHE_DIR/tmp"
find "$CACHE_DIR/tmp" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
WORK=$(mktemp -d "$CACHE_DIR/tmp/mediasoup-$MEDIASOUP_VERSION.XXXXXX")
cleanup() {
  local rc=$?
  if (( rc != 0 )); then say "build directory kept for inspection: $WORK"
  elif [[ -n "${KEEP_BUILD_DIR:-}" ]]; then say "build directory kept: $WORK"
  else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- sources: mediasoup's npm tarball ------------------------------------------------------------
tarball_ok() {
  [[ -f "$1" ]] && [[ "sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)" == "$MEDIASOUP_INTEGRITY" ]]
}
SRC="$WORK/mediasoup"
mkdir -p "$SRC"
if ! tarball_ok "$TARBALL"; then
  say "fetching mediasoup@$MEDIASOUP_VERSION from the npm registry (npm pack)"
  mkdir -p "$WORK/pack" "$(dirname "$TARBALL")"
  if (cd "$WORK/pack" && npm pack "mediasoup@$MEDIASOUP_VERSION" --silent >/dev/null 2>"$WORK/pack.log") \
     && tarball_ok "$WORK/pack/mediasoup-$MEDIASOUP_VERSION.tgz"; then
    mv "$WORK/pack/mediasoup-$MEDIASOUP_VERSION.tgz" "$TARBALL"
  else
    say "npm pack failed or gave an unexpected tarball: $(tail -n 3 "$WORK/pack.log" 2>/dev/null | tr '\n' ' ')"
    TARBALL=
  fi
fi
if [[ -n "$TARBALL" ]]; then
  tar -xzf "$TARBALL" -C "$SRC" --strip-components=1
elif [[ -f "$REPO_DIR/node_modules/mediasoup/package.json" ]] \
  && [[ "$(node -p 'require(process.argv[1]).version' "$REPO_DIR/node_modules/mediasoup/package.json")" == "$MEDIASOUP_VERSION" ]] \
  && [[ -f "$REPO_DIR/node_modules/mediasoup/worker/meson.build" ]]; then
  say "using the sources of the installed node_modules/mediasoup $MEDIASOUP_VERSION instead"
  cp -r "$REPO_DIR/node_modules/mediasoup/package.json" "$REPO_DIR/node_modules/mediasoup/worker" "$SRC/"
  rm -rf "$SRC/worker/out" "$SRC/worker/subprojects/packagecache"
else
  die "cannot get mediasoup $MEDIASOUP_VERSION sources (npm pack failed and node_modules has no copy)"
fi
WORKER_SRC="$SRC/worker"
[[ -f "$WORKER_SRC/meson.build" ]] || die "no worker/meson.build in the mediasoup sources"

# --- fixes to mediasoup's own sources (scripts/mediasoup-patches/*.patch, each says why) --------------
for p in "$PATCHES_DIR"/*.patch; do
  [[ -f "$p" ]] || continue
  patch -p1 --forward --quiet -d "$SRC" <"$p" >&2 || die "patch $(basename "$p") does not apply to mediasoup $MEDIASOUP_VERSION"
done

# --- subproject shims -------------------------------------------------------------------------------
# Each .wrap names the directory meson would unpack its download into; a directory of that name
# that already exists is used as is. liburing (disabled above) and wingetopt (Windows) need none.
for shim in openssl libuv libsrtp2 usrsctp abseil-cpp flatbuffers catch2; do
  wrap="$WORKER_SRC/subprojects/$shim.wrap"
  [[ -f "$wrap" ]] || die "mediasoup $MEDIASOUP_VERSION has no subprojects/$shim.wrap (shims need updating)"
  dir=$(sed -n 's/^[[:space:]]*directory[[:space:]]*=[[:space:]]*//p' "$wrap" | tr -d '[:space:]')
  [[ -n "$dir" && "$dir" != */* ]] || die "cannot read directory = from $wrap"
  rm -rf "${WORKER_SRC:?}/subprojects/$dir"
  cp -r "$SHIMS_DIR/$shim" "$WORKER_SRC/subprojects/$dir"
done

# --- configure and build ------------------------------------------------------------------------------
BUILD="$WORK/build"
say "configuring (meson $MESON_VERSION, system libraries, no downloads)"
(
  cd "$WORKER_SRC"
  "$MESON" setup "$BUILD" \
    --buildtype release -Db_ndebug=true \
    --wrap-mode=nodownload \
    -Dms_disable_liburing=true
) >"$WORK/setup.log" 2>&1 || { tail -n 40 "$WORK/setup.log" >&2; die "meson setup failed (log above)"; }

say "compiling with $JOBS jobs (about 4 minutes on 2 cores)"
for target in flatbuffers-generator mediasoup-worker; do
  "$MESON" compile -C "$BUILD" -j "$JOBS" "$target" >"$WORK/compile-$target.log" 2>&1 \
    || { grep -E -m 20 'error|Error' "$WORK/compile-$target.log" >&2 || true
         tail -n 30 "$WORK/compile-$target.log" >&2; die "building $target failed (log above)"; }
done
BUILT="$BUILD/mediasoup-worker"
worker_runs "$BUILT" || die "the built worker does not run: $(env -u MEDIASOUP_VERSION "$BUILT" 2>&1 </dev/null | head -n 3)"

# --- check through mediasoup's Node API (Worker, Router, transports, SRTP round trip) ------------------
# Needs mediasoup's JS of the same version: the repo's node_modules if installed (npm install runs after
# this script on a fresh machine), else the tarball's own with its npm dependencies (no scripts).
if [[ -z "${SKIP_WORKER_CHECK:-}" ]]; then
  pkg_dir=
  if [[ -f "$REPO_DIR/node_modules/mediasoup/package.json" ]] \
    && [[ "$(node -p 'require(process.argv[1]).version' "$REPO_DIR/node_modules/mediasoup/package.json")" == "$MEDIASOUP_VERSION" ]]; then
    pkg_dir="$REPO_DIR/node_modules/mediasoup"
  elif [[ -f "$SRC/node/lib/index.js" ]] \
    && (cd "$SRC" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --no-package-lock --loglevel=error >"$WORK/npm-check.log" 2>&1); then
    pkg_dir="$SRC"
  fi
  if [[ -n "$pkg_dir" ]]; then
    say "checking the worker through mediasoup's Node API ($pkg_dir)"
    MEDIASOUP_WORKER_BIN="$BUILT" node "$REPO_DIR/scripts/check-mediasoup-worker.mjs" "$pkg_dir" >&2 \
      || die "the built worker failed the Node API check"
  else
    say "WARNING: no mediasoup $MEDIASOUP_VERSION JS to check the worker with; run scripts/check-mediasoup-worker.mjs after npm install"
  fi
fi

# --- install atomically -----------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
cp "$BUILT" "$OUT_BIN.tmp.$$"
chmod 0755 "$OUT_BIN.tmp.$$"
mv -f "$OUT_BIN.tmp.$$" "$OUT_BIN"
say "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s: $(du -h "$OUT_BIN" | cut -f1)"
echo "$OUT_BIN"
