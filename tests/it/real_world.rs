//! Real directories and HR exports as they are (a real slapd, a CSV file, the
//! daemon): phones in every form people write them lose nobody, one-part names
//! are names, and a bad optional field costs the field, not the account.

use serde_json::{Value, json};

use crate::common::{TestServer, employee_json as emp, replace_once, run_applied as run};
use crate::slapd::{self, ADMIN_DN, ADMIN_PW, Tree};

/// Office phones as directories and HR exports write them: (written, number
/// kept, extension).
const OFFICE_PHONES: &[(&str, &str, Option<&str>)] = &[
    ("+1 617 555 9548 x8413", "+1 617 555 9548", Some("8413")),
    ("+1 617 555 9549 ext 8414", "+1 617 555 9549", Some("8414")),
    ("+1 617 555 9550 ext. 8415", "+1 617 555 9550", Some("8415")),
    (
        "+1 617 555 9551 extension 8416",
        "+1 617 555 9551",
        Some("8416"),
    ),
    ("617.555.9552 #8417", "617.555.9552", Some("8417")),
    ("+1 617 555 9553;ext=8418", "+1 617 555 9553", Some("8418")),
    (
        "tel:+1-617-555-9554;ext=8419",
        "+1-617-555-9554",
        Some("8419"),
    ),
    ("+16175559555", "+16175559555", None),
    ("(617) 555-9556", "(617) 555-9556", None),
    ("617.555.9557", "617.555.9557", None),
    ("617/555-9558", "617/555-9558", None),
    ("+44 (0)20 7946 0958", "+44 (0)20 7946 0958", None),
    ("030 1234-5678", "030 1234-5678", None),
    ("(617) 555-9559 (ext. 8420)", "(617) 555-9559", Some("8420")),
];

fn hr_toml(csv: &std::path::Path) -> String {
    format!(
        r#"
[[sources]]
id = "hr"
kind = "csv"
priority = 20
path = "{csv}"
join_key = "Employee ID"
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
display_name = "Preferred Name"
mobile_phone = "Cell"
office_phone = "Work Phone"
business_unit = "Department"
photo_url = "Photo"
"#,
        csv = csv.display()
    )
}

/// The office phone of a profile as `(number, extension)`.
fn office(e: &Value) -> (String, Option<String>) {
    (
        e["office_phone"]["number"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        e["office_phone"]["extension"].as_str().map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_in_every_real_world_form_lose_nobody() {
    let sl = slapd::slapd().await;
    let mut ldap = slapd::admin(sl.port).await;
    let tree = Tree::new(&mut ldap, "phones").await;
    // OpenLDAP's telephoneNumber is a PrintableString, which refuses `#` and
    // `;`; Active Directory's is a Unicode string and holds every form. This
    // directory therefore keeps the office phone in `description` (a Unicode
    // directory string), as an AD mapping of telephoneNumber would read it.
    for (i, (written, _, _)) in OFFICE_PHONES.iter().enumerate() {
        let uid = format!("ph{i}");
        tree.person(
            &mut ldap,
            &uid,
            "Phone",
            &format!("Person{i}"),
            &format!("{uid}@corp.example"),
            &[("description", &[written])],
        )
        .await;
    }
    // An extension on a mobile number stays in the number.
    tree.person(
        &mut ldap,
        "mob",
        "Mo",
        "Bile",
        "mob@corp.example",
        &[("mobile", &["+1 617 555 0199 x12"])],
    )
    .await;
    let pw_file = sl.dir.join("pw-phones");
    std::fs::write(&pw_file, ADMIN_PW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("hr.csv");
    let mut text = String::from(
        "Employee ID,Work Email,First Name,Last Name,Preferred Name,Cell,Work Phone,Department,Photo\n",
    );
    for (i, (written, _, _)) in OFFICE_PHONES.iter().enumerate() {
        text.push_str(&format!(
            "H{i},hr{i}@corp.example,Hr,Person{i},,,\"{written}\",,\n"
        ));
    }
    // One-part names: a given name alone, a preferred (display) name alone.
    text.push_str("H100,sukarno@corp.example,Sukarno,,,,,,\n");
    text.push_str("H101,teuku@corp.example,,,Teuku,,,,\n");
    std::fs::write(&csv, text).unwrap();
    let ldap_toml = replace_once(
        &crate::ldap_sync::source_toml(&tree, sl.port, &pw_file, ADMIN_DN, "priority = 10"),
        "office_phone = \"telephoneNumber\"",
        "office_phone = \"description\"",
    );
    let s = TestServer::start_with(&format!("{ldap_toml}\n{}", hr_toml(&csv))).await;

    let r = run(&s, "corp").await;
    assert_eq!(r["counts"]["created"], OFFICE_PHONES.len() + 1, "{r:#}");
    assert_eq!(r["counts"]["skipped"], 0, "{r:#}");
    assert_eq!(r["errors"], json!([]), "{r:#}");
    for (i, (written, number, ext)) in OFFICE_PHONES.iter().enumerate() {
        let e = emp(&s, &format!("ph{i}@corp.example")).await;
        assert_eq!(
            office(&e),
            (number.to_string(), ext.map(str::to_string)),
            "LDAP {written}"
        );
    }
    let mob = emp(&s, "mob@corp.example").await;
    assert_eq!(mob["mobile_phone"], "+1 617 555 0199 x12");

    let r = run(&s, "hr").await;
    assert_eq!(r["counts"]["created"], OFFICE_PHONES.len() + 2, "{r:#}");
    assert_eq!(r["counts"]["skipped"], 0, "{r:#}");
    assert_eq!(r["errors"], json!([]), "{r:#}");
    for (i, (written, number, ext)) in OFFICE_PHONES.iter().enumerate() {
        let e = emp(&s, &format!("hr{i}@corp.example")).await;
        assert_eq!(
            office(&e),
            (number.to_string(), ext.map(str::to_string)),
            "HR {written}"
        );
    }
    let sukarno = emp(&s, "sukarno@corp.example").await;
    assert_eq!(
        (
            sukarno["given_name"].as_str(),
            sukarno["family_name"].as_str(),
            sukarno["display_name"].as_str()
        ),
        (Some("Sukarno"), Some(""), Some("Sukarno"))
    );
    let teuku = emp(&s, "teuku@corp.example").await;
    assert_eq!(teuku["display_name"], "Teuku");
    assert_eq!(teuku["given_name"], "");

    // A re-run finds nothing to change: the split form is what is stored.
    let r = run(&s, "corp").await;
    assert_eq!(r["counts"]["unchanged"], OFFICE_PHONES.len() + 1, "{r:#}");
    let r = run(&s, "hr").await;
    assert_eq!(r["counts"]["updated"], 0, "{r:#}");
    s.stop().await;
}

/// The warnings of a run for the entry at `place` (its DN or CSV line).
fn warnings_of(run: &Value, place: &str) -> Vec<String> {
    run["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| e["dn"].as_str().unwrap_or_default().starts_with(place))
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_optional_field_costs_the_field_not_the_account() {
    let sl = slapd::slapd().await;
    let mut ldap = slapd::admin(sl.port).await;
    let tree = Tree::new(&mut ldap, "badfields").await;
    let people = &tree.people;
    // bob: a phone that is not a phone; una: a business unit not in the map;
    // pix: a jpegPhoto that is no image (a GIF header).
    slapd::ldapadd(
        sl.port,
        &format!(
            "dn: uid=bob,{people}\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\ngivenName: Bob\nsn: Badphone\nmail: bob@corp.example\ntelephoneNumber: call reception\ndepartmentNumber: 100\n\n\
             dn: uid=una,{people}\nobjectClass: inetOrgPerson\nuid: una\ncn: Una\ngivenName: Una\nsn: Unknownunit\nmail: una@corp.example\ntelephoneNumber: +1 617 555 0100 x7\ndepartmentNumber: 999\n\n\
             dn: uid=pix,{people}\nobjectClass: inetOrgPerson\nuid: pix\ncn: Pix\ngivenName: Pix\nsn: Brokenphoto\nmail: pix@corp.example\ndepartmentNumber: 200\njpegPhoto:: R0lGODlhAQABAAAAACw=\n"
        ),
    );
    let pw_file = sl.dir.join("pw-badfields");
    std::fs::write(&pw_file, ADMIN_PW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("hr.csv");
    std::fs::write(
        &csv,
        "Employee ID,Work Email,First Name,Last Name,Preferred Name,Cell,Work Phone,Department,Photo\n\
         B1,hbob@corp.example,Hob,Badphone,,n/a,,North,\n\
         B2,huna@corp.example,Hun,Unknownunit,,,,Atlantis,\n\
         B3,hpix@corp.example,Hpi,Brokenphoto,,,,South,ftp://photos.example/hpix.png\n\
         B4,,No,Email,,,,,\n\
         B5,noname@corp.example,,,,,,,\n",
    )
    .unwrap();
    let ldap_toml = replace_once(
        &crate::ldap_sync::source_toml(&tree, sl.port, &pw_file, ADMIN_DN, "priority = 10"),
        "office_phone = \"telephoneNumber\"",
        "office_phone = \"telephoneNumber\"\nphoto = \"jpegPhoto\"",
    );
    let s = TestServer::start_with(&format!("{ldap_toml}\n{}", hr_toml(&csv))).await;

    let r = run(&s, "corp").await;
    assert_eq!(r["counts"]["created"], 3, "{r:#}");
    assert_eq!(r["counts"]["skipped"], 0, "{r:#}");
    let bob = warnings_of(&r, "uid=bob");
    assert_eq!(bob.len(), 1, "{r:#}");
    assert!(
        bob[0].contains("office_phone") && bob[0].contains("`call reception`"),
        "{bob:?}"
    );
    let una = warnings_of(&r, "uid=una");
    assert_eq!(una.len(), 1, "{r:#}");
    assert!(
        una[0].contains("departmentNumber") && una[0].contains("`999`"),
        "{una:?}"
    );
    let pix = warnings_of(&r, "uid=pix");
    assert_eq!(pix.len(), 1, "{r:#}");
    assert!(
        pix[0].contains("jpegPhoto") && pix[0].contains("47 49 46 38"),
        "the value is named by its first bytes: {pix:?}"
    );
    assert_eq!(r["errors"].as_array().unwrap().len(), 3, "{r:#}");
    // Each created without that field, with the rest.
    let e = emp(&s, "bob@corp.example").await;
    assert_eq!(
        (&e["office_phone"], e["business_unit"].as_str()),
        (&Value::Null, Some("North"))
    );
    let e = emp(&s, "una@corp.example").await;
    assert_eq!(
        (&e["business_unit"], office(&e)),
        (
            &Value::Null,
            ("+1 617 555 0100".to_string(), Some("7".to_string()))
        )
    );
    let e = emp(&s, "pix@corp.example").await;
    assert_eq!(
        (&e["photo_url"], e["business_unit"].as_str()),
        (&Value::Null, Some("South"))
    );

    // HR: the same, and only what makes a profile impossible skips the entry.
    let r = run(&s, "hr").await;
    assert_eq!(r["counts"]["created"], 3, "{r:#}");
    assert_eq!(r["counts"]["skipped"], 2, "no email, no name: {r:#}");
    for (line, field, value) in [
        ("line 2", "mobile_phone", "`n/a`"),
        ("line 3", "business_unit", "Atlantis"),
        ("line 4", "photo_url", "`ftp://photos.example/hpix.png`"),
    ] {
        let w = warnings_of(&r, line);
        assert_eq!(w.len(), 1, "{line}: {r:#}");
        assert!(
            w[0].contains(field) && w[0].contains(value),
            "{line}: {w:?}"
        );
    }
    let e = emp(&s, "hbob@corp.example").await;
    assert_eq!(
        (&e["mobile_phone"], e["business_unit"].as_str()),
        (&Value::Null, Some("North"))
    );
    assert_eq!(
        emp(&s, "huna@corp.example").await["business_unit"],
        Value::Null
    );
    let e = emp(&s, "hpix@corp.example").await;
    assert_eq!(
        (&e["photo_url"], e["business_unit"].as_str()),
        (&Value::Null, Some("South"))
    );
    let skipped = r["errors"].to_string();
    assert!(
        skipped.contains("line 5") && skipped.contains("line 6"),
        "{r:#}"
    );

    // `rosterctl sync show` lists the warnings.
    let id = r["id"].as_u64().unwrap().to_string();
    let out = crate::rosterctl::ctl(&s, &["sync", "show", &id]).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains("mobile_phone") && out.stdout.contains("Atlantis"),
        "{}",
        out.stdout
    );
    s.stop().await;
}
