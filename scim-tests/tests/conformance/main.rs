//! The SCIM conformance suite (one test binary). See `common.rs` for how the
//! server under test is chosen.

mod common;
mod flows;
mod groups;
mod protocol;
mod quirks;
mod replays;
mod scale;
mod schema_driven;
