//! Parsers placeholder.
