//! The SCIM conformance suite lives in `tests/conformance/`; this crate has no
//! library code. Run it with `cargo test -p scim-tests`. With `SCIM_BASE_URL`
//! (e.g. `http://127.0.0.1:8080/scim/v2`) and `SCIM_TOKEN` set it tests that
//! server; otherwise every test starts rosterd in-process on 127.0.0.1 with a
//! free port and a temporary data directory.
