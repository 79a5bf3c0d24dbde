# Recipes for working on wh. `just ci` runs exactly what CI runs (.ci/run).

# Run every test (unit, end-to-end, snapshots).
test:
    cargo test

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Everything CI runs.
ci:
    bash .ci/run

# wh send against the worker run directly, side by side (needs hyperfine); see docs/performance.md.
bench:
    bash bench/send_overhead.sh

# Review snapshot changes after an intended output change (needs cargo-insta).
snapshots:
    cargo insta review
