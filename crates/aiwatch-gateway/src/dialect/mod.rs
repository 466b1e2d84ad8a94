//! One upstream adapter per wire dialect.

pub mod anthropic;
