//! Harness for the end-to-end tests in `tests/`.

pub mod attack;
