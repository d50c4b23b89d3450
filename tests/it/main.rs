//! Integration tests: one binary (compile time), modules by area. Every test talks
//! to a real rosterd over HTTP on 127.0.0.1.

mod admin_api;
mod common;
mod durability;
mod ldap_sync;
mod mail;
mod rosterctl;
mod slapd;
mod smtp;
