//! The sources a sync reads, at the edge: LDAP and Active Directory
//! ([`ldap`]), and HR systems ([`hr`]: REST/JSON APIs and CSV exports, from a
//! file or a URL). Each turns what it reads into entries for the pure mapping.

pub mod hr;
pub mod ldap;
