//! Unit tests: config validation (errors name the key) and the pure mapping
//! (records in, entries out), with sources built by parsing real config text
//! against the shipped catalog.

use std::path::Path;

use chrono::{NaiveDate, TimeZone};
use serde_json::json;

use super::map::JsonRecord;
use super::*;
use crate::config::{ConfigError, parse};
use crate::employee::OfficePhone;
use crate::sync::config::SourceKind;

/// The shipped config, without its demo HR source.
fn shipped() -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml"))
            .unwrap();
    text[..text.find("# ---- demo HR source").unwrap_or(text.len())].to_string()
}

fn source(block: &str, env: &[(&str, &str)]) -> Result<crate::sync::config::Source, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let text = format!("{}\n{block}\n", shipped());
    parse(Path::new("test.toml"), &text, &env).map(|mut c| c.sources.remove(0))
}

fn http(block: &str) -> HttpSource {
    match source(block, &[("HR_TOKEN", "tok-123456")])
        .unwrap_or_else(|e| panic!("{e}"))
        .kind
    {
        SourceKind::Http(h) => h,
        other => panic!("{}", other.name()),
    }
}

fn csv_src(block: &str) -> CsvSource {
    match source(block, &[]).unwrap_or_else(|e| panic!("{e}")).kind {
        SourceKind::Csv(c) => c,
        other => panic!("{}", other.name()),
    }
}

/// The message `csv::parse` (`,`-separated, UTC) refuses `text` with.
fn csv_refusal(c: &CsvSource, text: &str) -> String {
    csv::parse(text, b',', &c.mapping, chrono_tz::Tz::UTC)
        .unwrap_err()
        .to_string()
}

/// The key of the error a block gives.
fn err_key(block: &str) -> ConfigError {
    source(block, &[("HR_TOKEN", "tok-123456")]).expect_err("config should be refused")
}

const HTTP: &str = r#"
[[sources]]
id = "hr"
kind = "http"
url = "https://hr.example.com/api/v1/employees"
records = "/employees"
join_key = "/id"
[sources.auth]
kind = "bearer"
token_env = "HR_TOKEN"
[sources.fields]
email = { from = "/workEmail", transform = ["lowercase"] }
given_name = "/firstName"
family_name = "/lastName"
display_name = { join = ["/firstName", "/lastName"] }
mobile_phone = "/mobilePhone"
office_phone = "/workPhone"
office_phone_extension = "/workPhoneExtension"
employee_number = "/employeeNumber"
manager = "/supervisorId"
hire_date = { from = "/hireDate", format = "%m/%d/%Y" }
termination_date = "/terminationDate"
status = { from = "/status", inactive = ["Terminated", "Inactive"] }
positions = { from = "/jobTitle", split = ";", map = { "Truck Driver" = "Driver", "Shop Mechanic" = "Mechanic" } }
role = { from = "/jobTitle", map = { "Dispatcher" = "Dispatcher", "Fleet Manager" = "Administrator" } }
business_unit = { from = "/department", map = { "Northern Region" = "North", "HQ" = "Head Office", "Contractors" = "" } }
default_role = "Technician"
"#;

fn record() -> serde_json::Value {
    json!({
        "id": 1042,
        "workEmail": "  Ana.Lopez@Example.com ",
        "firstName": "Ana",
        "lastName": "López",
        "mobilePhone": "+1 555 0101",
        "workPhone": "+1 555 0100",
        "workPhoneExtension": 12,
        "employeeNumber": "E-1042",
        "supervisorId": "1001",
        "hireDate": "03/01/2027",
        "terminationDate": "0000-00-00",
        "status": "Active",
        "jobTitle": "Truck Driver; Shop Mechanic",
        "department": "Northern Region"
    })
}

#[test]
fn http_record_maps_to_profile_fields() {
    let h = http(HTTP);
    let tz: chrono_tz::Tz = "America/Chicago".parse().unwrap();
    let m = h
        .mapping
        .map(&JsonRecord(&record()), "record 1 (page 1)", tz)
        .unwrap();
    assert_eq!(m.key, "1042");
    assert_eq!(m.dn, "record 1 (page 1)");
    let f = &m.fields;
    assert_eq!(f.email, "ana.lopez@example.com");
    assert_eq!(f.given_name.as_deref(), Some("Ana"));
    assert_eq!(f.display_name.as_deref(), Some("Ana López"));
    assert_eq!(f.mobile_phone, Some(Some("+1 555 0101".into())));
    assert_eq!(
        f.office_phone,
        Some(Some(OfficePhone {
            number: "+1 555 0100".into(),
            extension: Some("12".into())
        }))
    );
    assert_eq!(f.employee_number, Some(Some("E-1042".into())));
    assert_eq!(f.photo_url, None, "not mapped");
    assert_eq!(f.positions, Some(vec!["Driver".into(), "Mechanic".into()]));
    // "Truck Driver; Shop Mechanic" is not in the role map: the default role
    // (silently: default_role is set).
    assert_eq!(f.role.as_deref(), Some("Technician"));
    assert_eq!(f.business_unit, Some(Some("North".into())));
    assert_eq!(m.manager.as_deref(), Some("1001"));
    assert_eq!(m.disabled, None);
    assert_eq!(m.termination, None, "0000-00-00 is no date");
    let hire = m.hire.unwrap();
    assert_eq!(hire.date, NaiveDate::from_ymd_opt(2027, 3, 1).unwrap());
    // Local midnight in Chicago (CST, UTC-6).
    assert_eq!(
        hire.at,
        chrono::Utc.with_ymd_and_hms(2027, 3, 1, 6, 0, 0).unwrap()
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(
        h.mapping.provides(),
        vec![
            "email",
            "given_name",
            "family_name",
            "display_name",
            "mobile_phone",
            "office_phone",
            "positions",
            "role",
            "business_unit",
            "employee_number",
            "manager"
        ]
    );
    assert_eq!(h.location(), "https://hr.example.com/api/v1/employees");
    // Debug never shows the token.
    assert!(!format!("{h:?}").contains("tok-123456"));
}

#[test]
fn status_dates_and_maps() {
    let h = http(HTTP);
    let tz = chrono_tz::Tz::UTC;
    let map = |patch: serde_json::Value| {
        let mut r = record();
        for (k, v) in patch.as_object().unwrap() {
            r[k] = v.clone();
        }
        h.mapping
            .map(&JsonRecord(&r), "record 1 (page 1)", tz)
            .map_err(|e| e.to_string())
    };
    let m = map(json!({"status": "terminated", "terminationDate": "2024-05-31"})).unwrap();
    assert_eq!(m.disabled.as_deref(), Some("status \"terminated\""));
    assert_eq!(
        m.termination.unwrap().date,
        NaiveDate::from_ymd_opt(2024, 5, 31).unwrap()
    );
    // A time or offset after the date is ignored.
    let m = map(json!({"terminationDate": "2024-05-31T17:00:00-07:00"})).unwrap();
    assert_eq!(
        m.termination.unwrap().date,
        NaiveDate::from_ymd_opt(2024, 5, 31).unwrap()
    );
    let e = map(json!({"hireDate": "2027-03-01"})).unwrap_err();
    assert!(
        e.contains("fields.hire_date") && e.contains("2027-03-01") && e.contains("%m/%d/%Y"),
        "{e}"
    );
    let e = map(json!({"workEmail": null})).unwrap_err();
    assert!(e.contains("no email") && e.contains("/workEmail"), "{e}");
    let e = map(json!({"id": ""})).unwrap_err();
    assert!(e.contains("join key"), "{e}");
    // Mapped role, BU mapped to "" (no report), unknown BU (reported, empty).
    let m = map(json!({"jobTitle": "fleet manager", "department": "Contractors"})).unwrap();
    assert_eq!(m.fields.role.as_deref(), Some("Administrator"));
    assert_eq!(m.fields.business_unit, Some(None));
    assert!(
        m.warnings.iter().all(|w| !w.contains("business_unit")),
        "{:?}",
        m.warnings
    );
    assert!(
        m.warnings.iter().any(|w| w.contains("fields.positions")),
        "{:?}",
        m.warnings
    );
    let m =
        map(json!({"department": "Atlantis", "jobTitle": ["Truck Driver", "Dispatcher"]})).unwrap();
    assert_eq!(m.fields.business_unit, Some(None));
    assert!(
        m.warnings.iter().any(|w| w.contains("Atlantis")),
        "{:?}",
        m.warnings
    );
    // A catalog name needs no map entry; arrays give several positions.
    assert_eq!(
        m.fields.positions,
        Some(vec!["Dispatcher".into(), "Driver".into()])
    );
    // Empty mapped fields are cleared.
    let m = map(json!({"mobilePhone": "  ", "workPhone": null, "jobTitle": null})).unwrap();
    assert_eq!(m.fields.mobile_phone, Some(None));
    assert_eq!(m.fields.office_phone, Some(None));
    assert_eq!(m.fields.positions, Some(vec![]));
    // An object where a value is expected refuses the record.
    let e = map(json!({"firstName": {"legal": "Ana"}})).unwrap_err();
    assert!(e.contains("/firstName"), "{e}");
}

#[test]
fn status_with_an_active_list() {
    let h = http(&HTTP.replace(
        r#"status = { from = "/status", inactive = ["Terminated", "Inactive"] }"#,
        r#"status = { from = "/active", active = ["true"] }"#,
    ));
    let mut r = record();
    r["active"] = json!(true);
    let m = h
        .mapping
        .map(&JsonRecord(&r), "r", chrono_tz::Tz::UTC)
        .unwrap();
    assert_eq!(m.disabled, None);
    r["active"] = json!(false);
    let m = h
        .mapping
        .map(&JsonRecord(&r), "r", chrono_tz::Tz::UTC)
        .unwrap();
    assert_eq!(
        m.disabled.as_deref(),
        Some("status \"false\" (not in fields.status.active)")
    );
}

/// Long by nature: one row per refused key (block, key named, words said).
#[test]
fn bad_http_config_names_the_key() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            HTTP.replace(r#"from = "/workEmail""#, r#"from = "workEmail""#),
            "sources[0].fields.email.from",
            "JSON pointer",
        ),
        (
            HTTP.replace(r#"records = "/employees""#, r#"records = "/a~2b""#),
            "sources[0].records",
            "~",
        ),
        (
            HTTP.replace("https://hr.example.com", "http://hr.example.com"),
            "sources[0].url",
            "https",
        ),
        (
            HTTP.replace("https://hr.example.com", "https://user:pw@hr.example.com"),
            "sources[0].url",
            "credentials",
        ),
        (
            HTTP.replace("https://hr.example.com/api/v1/employees", "not a url"),
            "sources[0].url",
            "not a URL",
        ),
        (
            HTTP.replace(r#"transform = ["lowercase"]"#, r#"transform = ["snake"]"#),
            "sources[0].fields.email.transform[0]",
            "unknown transform",
        ),
        (
            HTTP.replace("%m/%d/%Y", "%m/%Y"),
            "sources[0].fields.hire_date.format",
            "full date",
        ),
        (
            HTTP.replace(
                r#""Shop Mechanic" = "Mechanic""#,
                r#""Shop Mechanic" = "Welder""#,
            ),
            "sources[0].fields.positions.map.\"Shop Mechanic\"",
            "not in catalog.positions",
        ),
        (
            HTTP.replace(r#""HQ" = "Head Office""#, r#""HQ" = "Moon Base""#),
            "sources[0].fields.business_unit.map.\"HQ\"",
            "business unit",
        ),
        (
            HTTP.replace(
                r#"default_role = "Technician""#,
                r#"default_role = "Pilot""#,
            ),
            "sources[0].fields.default_role",
            "catalog.roles",
        ),
        (
            HTTP.replace(
                "token_env = \"HR_TOKEN\"",
                "token_file = \"/nonexistent/hr.token\"",
            ),
            "sources[0].auth.token_file",
            "cannot read",
        ),
        (
            HTTP.replace(
                "token_env = \"HR_TOKEN\"",
                "token_env = \"NOT_SET_ANYWHERE\"",
            ),
            "sources[0].auth.token_env",
            "NOT_SET_ANYWHERE",
        ),
        (
            HTTP.replace("kind = \"bearer\"", "kind = \"oauth\""),
            "sources[0].auth.kind",
            "bearer, basic, header or query",
        ),
        (
            HTTP.replace("given_name = ", "givenname = "),
            "sources[0].fields.givenname",
            "unknown field",
        ),
        (
            HTTP.replace(
                r#"email = { from = "/workEmail", transform = ["lowercase"] }"#,
                "",
            ),
            "sources[0].fields.email",
            "email",
        ),
        (
            HTTP.replace(
                "mobile_phone = \"/mobilePhone\"",
                "mobile_phone = { from = \"/m\", format = \"%Y\" }",
            ),
            "sources[0].fields.mobile_phone.format",
            "hire_date",
        ),
        (
            format!("{HTTP}\n[sources.pagination]\nkind = \"page\"\nnext = \"/next\"\n"),
            "sources[0].pagination.next",
            "next_link",
        ),
        (
            format!("{HTTP}\n[sources.pagination]\nkind = \"pages\"\n"),
            "sources[0].pagination.kind",
            "cursor",
        ),
        (
            format!("{HTTP}\n[sources.pagination]\nkind = \"cursor\"\ncursor = \"meta.next\"\n"),
            "sources[0].pagination.cursor",
            "JSON pointer",
        ),
        (
            format!("{HTTP}\n[sources.retry]\nattempts = 0\n"),
            "sources[0].retry.attempts",
            "1 to 20",
        ),
        (
            HTTP.replace(r#"inactive = ["Terminated", "Inactive"]"#, "inactive = []"),
            "sources[0].fields.status",
            "inactive",
        ),
    ];
    for (block, key, needle) in cases {
        let e = err_key(&block);
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(needle), "{key}: {e}");
        assert!(!e.to_string().contains("tok-123456"), "{e}");
    }
}

#[test]
fn unknown_key_in_a_field_table_is_refused() {
    let e = err_key(&HTTP.replace(
        r#"email = { from = "/workEmail", transform = ["lowercase"] }"#,
        r#"email = { frm = "/workEmail" }"#,
    ));
    assert!(e.key.starts_with("sources[0].fields.email"), "{e}");
    assert!(e.message.contains("frm"), "{e}");
}

#[test]
fn http_to_loopback_and_auth_kinds() {
    let h = http(&HTTP.replace("https://hr.example.com", "http://127.0.0.1:8099"));
    assert_eq!(h.location(), "http://127.0.0.1:8099/api/v1/employees");
    let basic = HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"basic\"\nusername_env = \"HR_TOKEN\"\npassword = \"x\"",
    );
    http(&basic);
    let e = err_key(&HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"basic\"\nusername = \"svc\"\npassword_env = \"NOPE\"",
    ));
    assert_eq!(e.key, "sources[0].auth.password_env", "{e}");
    let e = err_key(&HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"header\"\ntoken_env = \"HR_TOKEN\"",
    ));
    assert_eq!(e.key, "sources[0].auth.header", "{e}");
    http(&HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"header\"\nheader = \"X-API-Key\"\ntoken_env = \"HR_TOKEN\"",
    ));
    let e = err_key(&HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"\nheader = \"X\"",
    ));
    assert_eq!(e.key, "sources[0].auth.header", "{e}");
}

/// `[sources.auth]` and `[sources.pagination]` are tagged enums: a key of
/// another kind is refused with its full path and the kinds it belongs to.
#[test]
fn a_key_of_another_auth_or_pagination_kind_is_refused_with_its_path() {
    let e = err_key(&HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"basic\"\nusername = \"svc\"\ntoken_env = \"HR_TOKEN\"",
    ));
    assert_eq!(e.key, "sources[0].auth.token_env", "{e}");
    assert!(
        e.message.contains("does not apply to kind = \"basic\""),
        "{e}"
    );
    assert!(
        e.message.contains("\"bearer\", \"header\" or \"query\""),
        "{e}"
    );
    assert!(e.message.contains("username, username_file"), "{e}");
    let e = err_key(&format!(
        "{HTTP}\n[sources.pagination]\nkind = \"offset\"\nsize = 50\n"
    ));
    assert_eq!(e.key, "sources[0].pagination.size", "{e}");
    assert!(e.message.contains("a key of kind = \"page\""), "{e}");
    // `none` (also when `kind` is absent) takes no keys at all.
    let e = err_key(&format!(
        "{HTTP}\n[sources.pagination]\ntotal = \"/total\"\n"
    ));
    assert_eq!(e.key, "sources[0].pagination.total", "{e}");
    assert!(
        e.message.contains("kind = \"none\" takes no other keys"),
        "{e}"
    );
}

#[test]
fn a_missing_key_of_an_auth_or_pagination_kind_is_named() {
    let e = err_key(&HTTP.replace(
        "kind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
        "kind = \"query\"\ntoken_env = \"HR_TOKEN\"",
    ));
    assert_eq!(e.key, "sources[0].auth.param", "{e}");
    assert!(e.message.contains("kind = \"query\" needs `param`"), "{e}");
    let e = err_key(&format!(
        "{HTTP}\n[sources.pagination]\nkind = \"next_link\"\n"
    ));
    assert_eq!(e.key, "sources[0].pagination.next", "{e}");
    assert!(
        e.message.contains("kind = \"next_link\" needs `next`"),
        "{e}"
    );
}

#[test]
fn an_unknown_kind_lists_the_known_ones() {
    let e = err_key(&HTTP.replace("kind = \"http\"", "kind = \"soap\""));
    assert_eq!(e.key, "sources[0].kind", "{e}");
    assert!(e.message.contains("`soap`"), "{e}");
    assert!(e.message.contains("ldap, http or csv"), "{e}");
    let e = err_key(&format!("{HTTP}\n[sources.pagination]\nkind = \"pages\"\n"));
    assert!(
        e.message
            .contains("none, next_link, link_header, page, offset or cursor"),
        "{e}"
    );
}

const CSV: &str = r#"
[[sources]]
id = "hr-csv"
kind = "csv"
path = "people.csv"
join_key = "Employee ID"
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
positions = { from = "Positions", split = ";" }
business_unit = "Department"
hire_date = { from = "Hire Date", format = "%d.%m.%Y" }
"#;

#[test]
fn csv_config() {
    let c = csv_src(CSV);
    assert_eq!(c.location(), "people.csv");
    assert_eq!(c.delimiter, b',');
    assert_eq!(c.encoding, encoding_rs::UTF_8);
    let c = csv_src(&format!("{CSV}\n").replace(
        "path = \"people.csv\"",
        "path = \"people.csv\"\ndelimiter = \";\"\nencoding = \"latin1\"",
    ));
    assert_eq!(c.delimiter, b';');
    assert_eq!(c.encoding, encoding_rs::WINDOWS_1252);
    let e = source(
        &CSV.replace(
            "path = \"people.csv\"",
            "path = \"p.csv\"\ndelimiter = \";;\"",
        ),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "sources[0].delimiter");
    let e = source(
        &CSV.replace(
            "path = \"people.csv\"",
            "path = \"p.csv\"\nencoding = \"klingon\"",
        ),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "sources[0].encoding");
    let e = source(&CSV.replace("path = \"people.csv\"", ""), &[]).unwrap_err();
    assert_eq!(e.key, "sources[0].path");
    let e = source(
        &CSV.replace("join_key = \"Employee ID\"", "join_key = \" \""),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "sources[0].join_key.from");
}

#[test]
fn csv_rows_map_and_bad_rows_are_reported_with_their_line() {
    let c = csv_src(CSV);
    let text = "\
Employee ID,First Name,Last Name,Work Email,Positions,Department,Hire Date
1,Ana,López,ana@example.com,Driver;Crew Lead,North,01.02.2020
2,Bo,Berg,bo@example.com,Mechanic,South,bad date
3,Cy,Cole,,Driver,South,01.02.2020

4,Di,Dunn,di@example.com,Driver,Head Office,31.02.2020
5,Ed,Eze,ed@example.com,\"Driver;Mechanic\",south,15.06.2021
";
    let f = csv::parse(text, c.delimiter, &c.mapping, chrono_tz::Tz::UTC).unwrap();
    let keys: Vec<&str> = f.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["1", "5"]);
    assert_eq!(f.entries[0].dn, "line 2");
    assert_eq!(
        f.entries[0].fields.positions,
        Some(vec!["Crew Lead".into(), "Driver".into()])
    );
    assert_eq!(
        f.entries[1].fields.business_unit,
        Some(Some("South".into()))
    );
    let errs: Vec<(&str, &str)> = f
        .errors
        .iter()
        .map(|e| (e.dn.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[0].0, "line 3");
    assert!(errs[0].1.contains("bad date"), "{errs:?}");
    assert_eq!(errs[1].0, "line 4");
    assert!(errs[1].1.contains("no email"), "{errs:?}");
    assert_eq!(errs[2].0, "line 6");
    assert!(errs[2].1.contains("31.02.2020"), "{errs:?}");
    // What identifies each refused row is kept, for the plan.
    let ids: Vec<(Option<&str>, Option<&str>)> = f
        .errors
        .iter()
        .map(|e| (e.key.as_deref(), e.email.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            (Some("2"), Some("bo@example.com")),
            (Some("3"), None),
            (Some("4"), Some("di@example.com"))
        ]
    );
}

#[test]
fn csv_structure_problems_fail_the_whole_file() {
    let c = csv_src(CSV);
    let tz = chrono_tz::Tz::UTC;
    let head = "Employee ID,First Name,Last Name,Work Email,Positions,Department,Hire Date\n";
    let ok = "1,Ana,Lopez,ana@example.com,Driver,North,01.02.2020\n";
    // An unquoted delimiter in a value: more fields than the header.
    let text = format!("{head}{ok}2,Bo,Berg, Jr.,bo@example.com,Mechanic,South,01.02.2020\n{ok}");
    let e = csv_refusal(&c, &text);
    assert!(
        e.contains("line 3 (8)") && e.contains("must be quoted"),
        "{e}"
    );
    // Fewer fields on a row in the middle.
    let text = format!("{head}2,Bo,Berg,bo@example.com,Mechanic,South\n{ok}");
    let e = csv_refusal(&c, &text);
    assert!(
        e.contains("line 2 (6)") && e.contains("one field per column"),
        "{e}"
    );
    // The last row cut off.
    let text = format!("{head}{ok}2,Bo,Berg,bo@exa");
    let e = csv_refusal(&c, &text);
    assert!(e.contains("line 3 (4)") && e.contains("truncated"), "{e}");
    // Cut off inside a quoted value, which swallows the rest of the file.
    let text = format!("{head}{ok}2,Bo,Berg,bo@example.com,\"Driver;Mech\n");
    let e = csv_refusal(&c, &text);
    assert!(e.contains("line 3") && e.contains("never closed"), "{e}");
    // Quoted values with delimiters, doubled quotes and newlines are fine.
    let text = format!(
        "{head}2,Bo,\"Berg, \"\"Jr.\"\"\",bo@example.com,Driver,South,01.02.2020\n\
         3,Cy,Cole,cy@example.com,\"Driver;\nMechanic\",South,01.02.2020\n{ok}"
    );
    let f = csv::parse(&text, b',', &c.mapping, tz).unwrap();
    assert_eq!(f.entries.len() + f.errors.len(), 3, "{:?}", f.errors);
    assert_eq!(
        f.entries[0].fields.family_name.as_deref(),
        Some("Berg, \"Jr.\"")
    );
    // A last row without its final newline is complete when its fields are.
    let text = format!("{head}{}", ok.trim_end());
    assert_eq!(
        csv::parse(&text, b',', &c.mapping, tz)
            .unwrap()
            .entries
            .len(),
        1
    );
}

#[test]
fn csv_header_problems_fail_the_fetch() {
    let c = csv_src(CSV);
    let e = csv_refusal(&c, "Employee ID,First Name\n1,Ana\n");
    assert!(
        e.contains("no column `Last Name`") || e.contains("no column `Work Email`"),
        "{e}"
    );
    let e = csv_refusal(
        &c,
        "Employee ID;First Name;Last Name;Work Email;Positions;Department;Hire Date\n",
    );
    assert!(e.contains("delimiter = \";\""), "{e}");
    let e = csv_refusal(
        &c,
        "Employee ID,First Name,Last Name,Work Email,work email,Positions,Department,Hire Date\n",
    );
    assert!(
        e.contains("`Work Email`") && e.contains("more than once"),
        "{e}"
    );
    let e = csv_refusal(&c, "");
    assert!(e.contains("header row"), "{e}");
}

#[test]
fn csv_decoding() {
    // Latin-1 bytes decode with the right encoding, fail clearly without it.
    let latin1 = b"Name\nJos\xe9\n";
    assert_eq!(
        csv::decode(latin1, encoding_rs::WINDOWS_1252).unwrap(),
        "Name\nJos\u{e9}\n"
    );
    let e = csv::decode(latin1, encoding_rs::UTF_8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("windows-1252"), "{e}");
    // A UTF-8 BOM is dropped.
    assert_eq!(
        csv::decode(b"\xEF\xBB\xBFName\n", encoding_rs::UTF_8).unwrap(),
        "Name\n"
    );
    // UTF-16 with its BOM, whatever the configured encoding.
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("Name\n".encode_utf16().flat_map(|u| u.to_le_bytes()))
        .collect();
    assert_eq!(csv::decode(&utf16, encoding_rs::UTF_8).unwrap(), "Name\n");
}

#[test]
fn pointer_and_date_format_checks() {
    use super::config::{check_date_format, check_pointer};
    assert!(check_pointer("").is_ok());
    assert!(check_pointer("/a/0/b~1c~0").is_ok());
    assert!(check_pointer("a").is_err());
    assert!(check_pointer("/a~").is_err());
    assert!(check_date_format("%Y-%m-%d").is_ok());
    assert!(check_date_format("%d.%m.%Y").is_ok());
    assert!(check_date_format("%Y-%m").is_err());
    assert!(check_date_format("%Q").is_err());
}

#[tokio::test]
async fn demo_export_maps_cleanly() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml");
    // The demo source exactly as shipped in config/rosterd.toml.
    let c = crate::config::load_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sources[0].id, "demo-hr");
    let SourceKind::Csv(src) = &c.sources[0].kind else {
        panic!("csv")
    };
    assert!(
        src.location().ends_with("config/demo-hr.csv"),
        "{}",
        src.location()
    );
    let f = fetch_csv(src, c.sources[0].timezone).await.unwrap();
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(f.entries.len(), 36);
    for e in &f.entries {
        assert!(e.warnings.is_empty(), "{}: {:?}", e.key, e.warnings);
        assert!(e.fields.role.is_some() && e.fields.business_unit.as_ref().unwrap().is_some());
    }
    let by = |k: &str| f.entries.iter().find(|e| e.key == k).unwrap();
    let terminated: Vec<&str> = f
        .entries
        .iter()
        .filter(|e| e.disabled.is_some())
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(terminated, ["E1021", "E1041"]);
    assert!(by("E1021").termination.is_some() && by("E1041").termination.is_some());
    let future: Vec<&str> = f
        .entries
        .iter()
        .filter(|e| {
            e.hire
                .is_some_and(|h| h.date.to_string().as_str() > "2027-01-01")
        })
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(future, ["E1042"]);
    let tomas = by("E1003");
    assert_eq!(tomas.fields.given_name.as_deref(), Some("Tomás"));
    assert_eq!(tomas.fields.role.as_deref(), Some("Viewer"));
    assert_eq!(tomas.fields.business_unit, Some(Some("Head Office".into())));
    assert_eq!(
        tomas.fields.office_phone,
        Some(Some(OfficePhone {
            number: "+1 312 555 0100".into(),
            extension: Some("203".into())
        }))
    );
    let marco = by("E1012");
    assert_eq!(
        marco.fields.positions,
        Some(vec!["Crew Lead".into(), "Driver".into()])
    );
    assert_eq!(marco.fields.role.as_deref(), Some("Technician"));
    assert_eq!(marco.manager.as_deref(), Some("E1005"));
    assert_eq!(marco.fields.employee_number, Some(Some("E1012".into())));
    // Every manager is on the export.
    for e in &f.entries {
        if let Some(m) = &e.manager {
            assert!(
                f.entries.iter().any(|x| &x.key == m),
                "{}: manager {m}",
                e.key
            );
        }
    }
}

#[test]
fn shipped_examples_map_records_of_their_apis() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let stand_in = dir.join("rosterd.toml").display().to_string();
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name))
            .unwrap()
            .replace("/etc/rosterd/bamboohr.key", &stand_in)
            .replace("/etc/rosterd/workday.token", &stand_in);
        let c = parse(Path::new(name), &format!("{}\n{text}", shipped()), &[])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = c.sources.into_iter().next().unwrap();
        match s.kind {
            SourceKind::Http(h) => (h, s.timezone),
            other => panic!("{}", other.name()),
        }
    };
    let (bamboo, tz) = load("sources-bamboohr.example.toml");
    let row = json!({
        "id": "123", "employeeNumber": "1042", "firstName": "Charlotte", "lastName": "Abbott",
        "preferredName": null, "workEmail": "CAbbott@example.com", "mobilePhone": "801-555-0199",
        "workPhone": "801-724-6600", "workPhoneExtension": "1272", "jobTitle": "Delivery Driver",
        "department": "Operations", "division": "North Region", "status": "Inactive",
        "hireDate": "2016-03-14", "terminationDate": "2025-10-31", "supervisorEId": "9"
    });
    let m = bamboo
        .mapping
        .map(&JsonRecord(&row), "record 1 (page 1)", tz)
        .unwrap();
    assert_eq!(m.fields.email, "cabbott@example.com");
    assert_eq!(m.fields.positions, Some(vec!["Driver".into()]));
    assert_eq!(m.fields.role.as_deref(), Some("Technician"));
    assert_eq!(m.fields.business_unit, Some(Some("North".into())));
    assert_eq!(m.disabled.as_deref(), Some("status \"Inactive\""));
    assert_eq!(m.termination.unwrap().date.to_string(), "2025-10-31");
    assert_eq!(m.manager.as_deref(), Some("9"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(
        bamboo.location(),
        "https://api.bamboohr.com/api/gateway.php/acmefleet/v1/reports/custom"
    );

    let (workday, tz) = load("sources-workday.example.toml");
    let worker = json!({
        "id": "3aa5550b7fe348b98d7b5741afc65534", "descriptor": "Logan McNeil",
        "employeeId": "21001", "primaryWorkEmail": "lmcneil@example.com",
        "person": { "legalName": { "firstName": "Logan", "lastName": "McNeil" } },
        "primaryWorkPhone": "+49 40 5550 1234", "hireDate": "2020-01-01-08:00",
        "primaryJob": {
            "jobProfile": { "descriptor": "Dispatcher" },
            "businessSite": { "descriptor": "Hamburg Depot" },
            "manager": { "id": "0e44c92412d34b01ace61e80a47aaf6d" }
        }
    });
    let m = workday
        .mapping
        .map(&JsonRecord(&worker), "record 1 (page 1)", tz)
        .unwrap();
    assert_eq!(m.key, "3aa5550b7fe348b98d7b5741afc65534");
    assert_eq!(m.fields.given_name.as_deref(), Some("Logan"));
    assert_eq!(m.fields.role.as_deref(), Some("Dispatcher"));
    assert_eq!(m.fields.positions, Some(vec!["Dispatcher".into()]));
    assert_eq!(m.fields.business_unit, Some(Some("North".into())));
    assert_eq!(m.hire.unwrap().date.to_string(), "2020-01-01");
    assert_eq!(m.termination, None);
    assert_eq!(
        m.manager.as_deref(),
        Some("0e44c92412d34b01ace61e80a47aaf6d")
    );
}
