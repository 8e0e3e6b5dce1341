//! Every integration test in one binary, so the shared harness (`common`)
//! and the test dependencies link once instead of once per file. Run one
//! area with `cargo test --test it loop::`, one test with
//! `cargo test --test it loop::a_failing_test_is_fixed_within_five_runs`.

mod common;
mod testnet;

mod action;
mod attest;
mod auto_image;
mod boundary;
mod cage;
mod cage_policy;
mod caps;
mod dry_run;
mod gauntlet;
mod images;
mod judge;
mod r#loop;
mod mcp;
mod parallel;
mod plan;
mod presets;
mod remote;
mod review;
mod serve;
mod toolchain;
mod unattended;
mod warm;
mod workspace;
