# Shared by the bench scripts (sourced, run from the repository's root).

# Prints the path of the binary to measure: $CKPT_MIGRATE_BIN when set (an already
# built one), else the `dist` build, the one users run (whole-program optimized; built
# first if needed, with cargo's progress on stderr).
bench_binary() {
  if [ -n "${CKPT_MIGRATE_BIN:-}" ]; then
    realpath "$CKPT_MIGRATE_BIN"
  else
    echo "bench: building ckpt-migrate with the dist profile (from scratch about 20 minutes on 2 cores)" >&2
    cargo build --profile dist -p ckpt-migrate >&2 || return 1
    echo "$PWD/target/dist/ckpt-migrate"
  fi
}
