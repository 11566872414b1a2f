#!/usr/bin/env bash
# Install what is missing, start (or reuse) the local stack, then run formatting, lints and every
# test against it. Idempotent: a second run reuses the stack and the build cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    step "installing the Rust $component component"
    rustup component add "$component"
  fi
done

step "local stack (scripts/stack.sh up)"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (unit and integration, against the stack)"
cargo test --all-targets --locked "$@"

step "make -f examples/Makefile ci (the pipeline as a CI job runs it, gated on exit codes)"
make -f examples/Makefile ci CDCCTL="$CARGO_TARGET_DIR/debug/cdcctl"
