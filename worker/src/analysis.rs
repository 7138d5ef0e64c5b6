//! The analysis engine: CSV bytes in, typed results out. No I/O.
