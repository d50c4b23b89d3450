//! Prometheus metrics at `/metrics` (text format, prometheus-client): HTTP
//! requests by route and status with latency histograms; sync runs by source and
//! outcome, their duration and entries seen (the engine records them into
//! [`crate::sync::metrics`], registered here); employees active/inactive (counts
//! the store keeps as it writes) and the last successful sync per source.
//!
//! A top-level collector: it reads `employee` and `sync`, and nothing below it
//! imports it (the sync engine owns its own metric handles).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::employee::Roster;
use crate::sync::SyncEngine;
use crate::sync::metrics::SourceLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The registry and the handles that are written on the request path.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    employees: Family<StatusLabels, Gauge>,
    last_success: Family<SourceLabels, Gauge>,
    projection_rows: Gauge,
    projection_bytes: Gauge,
    record_reads: Gauge,
    roster: Roster,
    sync: SyncEngine,
}

impl Metrics {
    pub fn new(roster: Roster, sync: SyncEngine) -> Self {
        let mut r = Registry::with_prefix("rosterd");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        let employees = Family::<StatusLabels, Gauge>::default();
        let last_success = Family::<SourceLabels, Gauge>::default();
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        let sm = sync.metrics();
        r.register(
            "sync_runs",
            "Sync runs by source and outcome",
            sm.runs.clone(),
        );
        r.register(
            "sync_run_duration_seconds",
            "Sync run duration by source",
            sm.duration.clone(),
        );
        r.register(
            "sync_entries_seen",
            "Entries fetched by sync runs",
            sm.entries_seen.clone(),
        );
        r.register(
            "employees",
            "Employees by status (active/inactive)",
            employees.clone(),
        );
        r.register(
            "sync_last_success_timestamp_seconds",
            "Unix time of the last successful run per source",
            last_success.clone(),
        );
        let projection_rows = Gauge::default();
        let projection_bytes = Gauge::default();
        let record_reads = Gauge::default();
        r.register(
            "projection_rows",
            "Profiles in the in-memory projection lists and filters run on",
            projection_rows.clone(),
        );
        r.register(
            "projection_bytes",
            "Bytes the in-memory projection holds (rows and their texts, allocator overhead aside)",
            projection_bytes.clone(),
        );
        r.register(
            "store_record_reads",
            "Employee records read from the store since start",
            record_reads.clone(),
        );
        Self {
            registry: Arc::new(r),
            http_requests,
            http_latency,
            employees,
            last_success,
            projection_rows,
            projection_bytes,
            record_reads,
            roster,
            sync,
        }
    }

    /// Refreshes the gauges (counts kept by the store, last runs), then renders the text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        // Kept by the store as it writes: a scrape reads no records.
        let counts = self.roster.counts();
        let (active, inactive) = (counts.active as i64, counts.inactive as i64);
        let set = |s: &str, v: i64| {
            self.employees
                .get_or_create(&StatusLabels { status: s.into() })
                .set(v);
        };
        set("active", active);
        set("inactive", inactive);
        let f = self.roster.projection().footprint();
        self.projection_rows.set(f.rows as i64);
        self.projection_bytes.set(f.bytes as i64);
        self.record_reads
            .set(self.roster.store().record_reads().min(i64::MAX as u64) as i64);
        for src in self.sync.sources().iter() {
            if let Ok(st) = self.sync.runs().state(&src.id)
                && let Some(t) = st.last_success
            {
                self.last_success
                    .get_or_create(&SourceLabels {
                        source: src.id.clone(),
                    })
                    .set(t.timestamp());
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Middleware: counts every request by method (a closed set, see
/// [`method_label`]), matched route (the template, not the path, so ids do not
/// explode the label space; `unmatched` for any path no route takes) and status,
/// with latency.
pub async fn track(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let method = method_label(req.method()).to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| route_label(p.as_str()))
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    m.http_latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// The method as a label from a closed set: the standard methods by name, any
/// other (HTTP lets a client invent one per request) as `other`, so label
/// cardinality stays bounded whatever clients send.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// `/api/v1/employees/{id}` → `/api/v1/employees/:id`: the same template, without
/// braces (which some Prometheus text parsers mishandle inside label values).
fn route_label(template: &str) -> String {
    // One string, no parts in between (this runs for every request).
    let mut out = String::with_capacity(template.len() + 2);
    for (i, seg) in template.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(name) => {
                out.push(':');
                out.push_str(name);
            }
            None => out.push_str(seg),
        }
    }
    out
}

/// `GET /metrics`.
pub async fn metrics_get(State(m): State<Metrics>) -> Response {
    match m.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_closed_set() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["X1", "X49999", "get", "PROPFIND"] {
            let m = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{invented}");
        }
    }

    #[test]
    fn route_labels_write_parameters_with_a_colon() {
        for (template, label) in [
            (
                "/api/v1/employees/{id}/deactivate",
                "/api/v1/employees/:id/deactivate",
            ),
            ("/scim/v2/Users/{id}", "/scim/v2/Users/:id"),
            ("/healthz", "/healthz"),
            ("/", "/"),
            ("/a/{x}/{y}", "/a/:x/:y"),
        ] {
            assert_eq!(route_label(template), label);
        }
    }
}
