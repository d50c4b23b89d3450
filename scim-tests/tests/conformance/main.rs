//! The SCIM conformance suite (one test binary). See `common.rs` for how the
//! server under test is chosen.

mod common;
mod flows;
mod groups;
// The PostgreSQL the suite runs on under TEST_STORE=postgres (shared with
// rosterd's integration tests).
#[path = "../../../tests/support/pg.rs"]
mod pg_harness;
mod protocol;
mod quirks;
mod replays;
mod scale;
mod schema_driven;
