# Each recipe is one plain command; without `just` (`cargo install just`),
# copy the line after the recipe's name into a shell. See CONTRIBUTING.md.

# The fast check before every commit: layering, fmt, clippy, unit tests (no engine).
check:
    bash .ci/layering && cargo fmt --check && cargo clippy --all-targets -- -D warnings && cargo test --lib

# The integration tests: the real binary on real containers (needs Docker and Podman running).
test-engines:
    cargo test --test it

# What CI runs on a fresh Debian machine: install and start the engines, then every check and test.
ci:
    bash .ci/run
