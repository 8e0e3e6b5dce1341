//! proctor keeps an AI coding agent working on a git repository until a
//! machine-checkable exam passes, and proves it. Every agent and every exam
//! runs in a fresh container; the host process only manages git, budgets,
//! state and the answer-auth key.

pub mod attest;
pub mod cage;
pub mod cli;
pub mod cron;
pub mod engine;
pub mod exit_codes;
pub mod git;
pub mod judge;
pub mod leftovers;
pub mod manifest;
pub mod notify;
pub mod plan;
pub mod progress;
pub mod protect;
pub mod render;
pub mod run;
pub mod serve;
pub mod state;
pub mod terminal;
pub mod views;
