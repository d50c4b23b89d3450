//! `/metrics` parses as Prometheus text and moves with requests and syncs.

use serde_json::json;

use crate::common::{TestServer, employee};

/// Scrapes `/metrics` (no token needed) and parses it.
pub async fn scrape(s: &TestServer) -> prometheus_parse::Scrape {
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// The value of one sample, matched by name and labels.
pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_move_with_requests_and_employees() {
    let s = TestServer::start().await;
    let before = scrape(&s).await;
    let list = [
        ("route", "/api/v1/employees"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(value(&before, "rosterd_http_requests_total", &list), 0.0);
    for i in 0..3 {
        s.create(employee(
            "Met",
            &format!("Rics{i}"),
            &format!("m{i}@example.com"),
        ))
        .await;
    }
    let id = s.get("/api/v1/employees/m0@example.com").await.1["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
        .await;
    s.get("/api/v1/employees").await;
    s.get("/api/v1/employees").await;
    let after = scrape(&s).await;
    assert_eq!(value(&after, "rosterd_http_requests_total", &list), 2.0);
    assert_eq!(
        value(
            &after,
            "rosterd_http_requests_total",
            &[
                ("route", "/api/v1/employees"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        3.0
    );

    // Paths with ids are counted under their route template.
    assert_eq!(
        value(
            &after,
            "rosterd_http_requests_total",
            &[("route", "/api/v1/employees/:id/deactivate")]
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "rosterd_http_request_duration_seconds_count",
            &[("route", "/api/v1/employees")]
        ) >= 2.0
    );
    assert_eq!(
        value(&after, "rosterd_employees", &[("status", "active")]),
        2.0
    );
    assert_eq!(
        value(&after, "rosterd_employees", &[("status", "inactive")]),
        1.0
    );
    s.stop().await;
}
