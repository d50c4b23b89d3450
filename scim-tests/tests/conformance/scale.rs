//! Speed: equality filters on indexed attributes read no records beyond the hit,
//! and paging through every user in pages of 100 reads each record about once
//! with memory flat at a page. In-process only (it counts store reads).
//!
//! The default run uses 20,000 users so CI stays quick in a debug build; for the
//! 100,000-user figure run `SCIM_SCALE_USERS=100000 cargo test --release -p
//! scim-tests scale -- --nocapture` (it prints record reads, times and RSS).

use std::time::Instant;

use reqwest::StatusCode;

use crate::common::*;
use rosterd::employee::NewEmployee;
use rosterd::store::Actor;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_many_users() {
    let n = std::env::var("SCIM_SCALE_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    indexed_filters_and_paging_over_a_large_roster(n).await;
}

async fn indexed_filters_and_paging_over_a_large_roster(n: usize) {
    let s = Scim::in_process("").await;
    let roster = s.roster().unwrap().clone();
    let actor = Actor::admin("bulk-load");
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewEmployee> = (i..(i + 5000).min(n))
            .map(|k| NewEmployee {
                given_name: "Load".into(),
                family_name: format!("User{k}"),
                email: format!("user{k}@scale.example.com"),
                external_id: Some(format!("ext-{k}")),
                ..Default::default()
            })
            .collect();
        i += batch.len();
        for r in roster.create_many(&actor, batch).await.unwrap() {
            r.unwrap();
        }
    }
    eprintln!("scale: created {n} employees in {:.1?}", t.elapsed());
    let store = roster.store();

    let probe = n / 2 + 7;
    for f in [
        format!("userName eq \"USER{probe}@scale.example.com\""),
        format!("emails.value eq \"user{probe}@scale.example.com\""),
        format!("emails[type eq \"work\"].value eq \"user{probe}@scale.example.com\""),
        format!("externalId eq \"ext-{probe}\""),
        "userName eq \"nobody@scale.example.com\"".to_string(),
    ] {
        let before = store.record_reads();
        let t = Instant::now();
        let r = s.filter_users(&f).await;
        let reads = store.record_reads() - before;
        assert_eq!(r.status, StatusCode::OK);
        eprintln!(
            "scale: `{f}` → {} result(s), {reads} record read(s), {:.1?}",
            r.body["totalResults"],
            t.elapsed()
        );
        assert!(
            reads <= 1,
            "{f}: {reads} records read; the index should answer it"
        );
        assert!(r.body["totalResults"].as_u64().unwrap() <= 1);
    }

    // Page through everything, 100 at a time.
    let before = store.record_reads();
    let t = Instant::now();
    let rss_start = rss_kib();
    let mut rss_mid = 0;
    let mut seen = 0usize;
    let mut start = 1usize;
    let mut last_id = String::new();
    loop {
        let r = s
            .get(&format!(
                "/Users?startIndex={start}&count=100&attributes=userName"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["totalResults"].as_u64().unwrap() as usize, n);
        let page = r.body["Resources"].as_array().unwrap();
        assert!(page.len() <= 100);
        if page.is_empty() {
            break;
        }
        let first = page[0]["id"].as_str().unwrap().to_string();
        assert!(first > last_id, "pages continue in id order");
        last_id = page.last().unwrap()["id"].as_str().unwrap().to_string();
        seen += page.len();
        start += page.len();
        if seen == n / 2 / 100 * 100 {
            rss_mid = rss_kib();
        }
    }
    let reads = store.record_reads() - before;
    let rss_end = rss_kib();
    eprintln!(
        "scale: paged {seen} users in {} pages in {:.1?}; {reads} record reads ({:.2} per user); RSS start {} MiB, middle {} MiB, end {} MiB",
        n.div_ceil(100),
        t.elapsed(),
        reads as f64 / n as f64,
        rss_start / 1024,
        rss_mid / 1024,
        rss_end / 1024
    );
    assert_eq!(seen, n);
    assert!(
        reads <= n as u64 + 100,
        "paging rescanned: {reads} reads for {n} users"
    );
    // A filtered walk (no index) counts once, then resumes: about 2 reads per user.
    let before = store.record_reads();
    let (mut start, mut seen) = (1usize, 0usize);
    loop {
        let url = reqwest::Url::parse_with_params(
            &format!(
                "{}/Users?startIndex={start}&count=100&attributes=id",
                s.base
            ),
            &[(
                "filter",
                "userName ew \"@scale.example.com\" and active eq true",
            )],
        )
        .unwrap();
        let r = s.get(url.as_str()).await;
        let page = r.body["Resources"].as_array().unwrap().len();
        if page == 0 {
            break;
        }
        seen += page;
        start += page;
    }
    let reads = store.record_reads() - before;
    eprintln!("scale: filtered walk over {seen} users: {reads} record reads");
    assert_eq!(seen, n);
    assert!(
        reads <= 2 * n as u64 + 100,
        "filtered paging rescanned: {reads} reads"
    );
    s.stop().await;
}
