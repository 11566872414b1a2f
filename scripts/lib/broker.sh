# shellcheck shell=bash
# Build the local Kafka-protocol broker (noida-db 0.2.3) with cdcctl's Fetch fix.
#
# Meant to be sourced (e.g. by scripts/stack.sh), not executed:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/broker.sh"
#   build_broker "$(broker_default_root)"     # -> $DEST_ROOT/bin/noida-db
#
# Stock noida-db 0.2.3 ignores Fetch max_bytes/partition_max_bytes and
# max_wait_ms (see the header of ../patches/noida-db-0.2.3.patch),
# so the broker is built from the crate source with that patch applied.
# Safe under `set -euo pipefail`; changes no shell option, trap or cwd of the caller.

# Where this file lives, resolved now (the caller may cd later).
_BROKER_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BROKER_CRATE_NAME="noida-db"
BROKER_CRATE_VERSION="0.2.3"
BROKER_PATCH="$(cd "${_BROKER_LIB_DIR}/.." && pwd)/patches/noida-db-0.2.3.patch"

# The install root the project uses by default; the binary is $root/bin/noida-db.
broker_default_root() {
    printf '%s\n' "${CDCCTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl}/noida"
}

_broker_sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# build_broker DEST_ROOT
# Idempotent: returns at once if DEST_ROOT/bin/noida-db exists and
# DEST_ROOT/.patch-sha256 holds the sha256 of the patch. Otherwise fetches the
# crate source with cargo (honours CARGO_HOME and cargo's source config),
# copies it to DEST_ROOT/build/src, applies the patch, and runs cargo install
# with CARGO_TARGET_DIR=DEST_ROOT/build/target (incremental rebuilds).
# The body runs in a subshell so its trap/cd/umask never leak into the caller.
build_broker() (
    local dest="${1:-}"
    local me="build_broker"
    fail() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }

    [ -n "$dest" ] || fail "usage: build_broker DEST_ROOT"
    [ -f "$BROKER_PATCH" ] || fail "patch not found: $BROKER_PATCH"
    local tool
    for tool in cargo patch; do
        command -v "$tool" >/dev/null 2>&1 \
            || fail "'$tool' is not on PATH (install Rust via rustup / the 'patch' package)"
    done
    command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 \
        || fail "neither sha256sum nor shasum is on PATH"

    mkdir -p "$dest" || fail "cannot create $dest"
    dest="$(cd "$dest" && pwd)" || fail "cannot enter $dest"
    local bin="$dest/bin/noida-db" stamp="$dest/.patch-sha256" want have=""
    want="$(_broker_sha256 "$BROKER_PATCH")" || fail "cannot hash $BROKER_PATCH"
    [ -n "$want" ] || fail "cannot hash $BROKER_PATCH"

    if [ -x "$bin" ] && [ -f "$stamp" ]; then
        have="$(cat "$stamp" 2>/dev/null || true)"
        [ "$have" = "$want" ] && return 0
    fi

    # One build at a time per DEST_ROOT (if flock is available).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$dest/.build.lock" || fail "cannot open $dest/.build.lock"
        flock 9 || fail "cannot lock $dest/.build.lock"
        # Someone else may have finished the build while we waited.
        if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
            return 0
        fi
    fi

    printf '%s: building %s %s with %s into %s\n' "$me" \
        "$BROKER_CRATE_NAME" "$BROKER_CRATE_VERSION" "$(basename "$BROKER_PATCH")" "$dest" >&2
    rm -f "$stamp"

    # 1. Fetch the crate source through cargo, in a throwaway project.
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/cdcctl-broker.XXXXXX")" || fail "mktemp failed"
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    mkdir -p "$tmp/fetch/src" || fail "cannot create $tmp/fetch"
    cat >"$tmp/fetch/Cargo.toml" <<EOF || fail "cannot write $tmp/fetch/Cargo.toml"
[package]
name = "cdcctl-broker-source-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$BROKER_CRATE_NAME = { version = "=$BROKER_CRATE_VERSION", default-features = false }
EOF
    : >"$tmp/fetch/src/lib.rs"
    (cd "$tmp/fetch" && cargo fetch --quiet) \
        || fail "cargo fetch of $BROKER_CRATE_NAME $BROKER_CRATE_VERSION failed (network/registry reachable?)"

    # Ask cargo where the source is (works with CARGO_HOME and source replacement);
    # fall back to the usual registry layout.
    local src="" manifest
    manifest="$(cd "$tmp/fetch" && cargo metadata --format-version 1 --offline 2>/dev/null \
        | grep -o "\"manifest_path\":\"[^\"]*/$BROKER_CRATE_NAME-$BROKER_CRATE_VERSION/Cargo.toml\"" \
        | head -n 1 || true)"
    if [ -n "$manifest" ]; then
        manifest="${manifest#\"manifest_path\":\"}"
        src="$(dirname "${manifest%\"}")"
    fi
    if [ -z "$src" ] || [ ! -d "$src" ]; then
        local d
        for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$BROKER_CRATE_NAME-$BROKER_CRATE_VERSION"; do
            [ -d "$d" ] && src="$d"
        done
    fi
    [ -n "$src" ] && [ -f "$src/Cargo.toml" ] \
        || fail "cargo fetched $BROKER_CRATE_NAME $BROKER_CRATE_VERSION but its source directory was not found"

    # 2. Copy to a stable scratch dir and patch it.
    local work="$dest/build/src"
    rm -rf "$work" && mkdir -p "$dest/build" && cp -R "$src" "$work" \
        || fail "cannot copy $src to $work"
    chmod -R u+w "$work" || fail "cannot make $work writable"
    (cd "$work" && patch -p1 --forward --quiet <"$BROKER_PATCH") \
        || fail "patch $BROKER_PATCH does not apply to $BROKER_CRATE_NAME $BROKER_CRATE_VERSION"

    # 3. Build and install.
    CARGO_TARGET_DIR="$dest/build/target" cargo install --locked --force --path "$work" \
        --no-default-features --features kafka --root "$dest" \
        || fail "cargo install of patched $BROKER_CRATE_NAME failed (see cargo output above)"
    [ -x "$bin" ] || fail "cargo install succeeded but $bin is missing"

    printf '%s\n' "$want" >"$stamp" || fail "cannot write $stamp"
    printf '%s: installed %s\n' "$me" "$bin" >&2
)
