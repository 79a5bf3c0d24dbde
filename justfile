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

# The benchmarks of docs/performance.md (need hyperfine): wh send's overhead, wh lint on 1,000
# workers, wh host against the raw spawn rate, and wh host against Celery on Redis (needs a
# Redis at 127.0.0.1:6379, db 9 empty; pip-installs Celery into a throwaway venv).
bench:
    bash bench/send_overhead.sh
    bash bench/lint_large.sh
    bash bench/host_throughput.sh
    bash bench/celery_redis.sh
    bash bench/persistent.sh

# Review snapshot changes after an intended output change (needs cargo-insta).
snapshots:
    cargo insta review
