//! gateway

pub mod checks;
