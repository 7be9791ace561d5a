//! `--metrics-addr HOST:PORT`: `/metrics` (Prometheus text exposition of
//! [`crate::metrics::render`]), `/healthz` (the supervisor answers) and
//! `/readyz` (every wanted worker is a member and no rolling restart or stop
//! is under way: 200, else 503), on a thread of its own. The supervisor's
//! loop publishes its view after every event; a scrape reads it and the
//! workers' resident memory, and never waits on the loop.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tracing::{info, warn};

use crate::metrics::FleetView;

/// The view the supervisor's loop publishes for the server.
pub type Shared = Arc<Mutex<FleetView>>;

/// A share run's backlog, as its poller last read it from the broker
/// (`status::spawn_backlog_poller`); empty for other groups.
pub type ShareFigures = Arc<Mutex<Vec<crate::metrics::ShareBacklog>>>;

/// Bind `addr` now (a bad or busy address is the user's to fix: exit 2 via
/// the caller), then serve on a thread.
pub fn start(addr: &str, shared: Shared, share: ShareFigures) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        crate::error::UsageError(format!(
            "--metrics-addr {addr}: cannot listen there ({e}); give a free HOST:PORT, e.g. 127.0.0.1:9187"
        ))
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or_else(|| addr.to_string());
    info!(event = "metrics_listening", addr = %bound, "metrics on http://{bound}/metrics (and /healthz, /readyz)");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(server, shared, share))
        .context("cannot start the metrics thread")?;
    Ok(())
}

fn serve(server: tiny_http::Server, shared: Shared, share: ShareFigures) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let (status, body, kind) = match (request.method(), path.as_str()) {
            (tiny_http::Method::Get, "/metrics") => {
                let mut view = shared.lock().map(|v| v.clone()).unwrap_or_default();
                for s in &mut view.slots {
                    s.rss_bytes = s.pid.and_then(rss_bytes);
                }
                view.share = share.lock().map(|v| v.clone()).unwrap_or_default();
                (
                    200,
                    crate::metrics::render(&view),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            }
            (tiny_http::Method::Get, "/healthz") => {
                let view = shared.lock().map(|v| v.clone()).unwrap_or_default();
                (200, health_body(&view, "ok", None), JSON)
            }
            (tiny_http::Method::Get, "/readyz") => {
                let view = shared.lock().map(|v| v.clone()).unwrap_or_default();
                if view.ready() {
                    (200, health_body(&view, "ready", None), JSON)
                } else {
                    let why = why_not_ready(&view);
                    (503, health_body(&view, "not ready", Some(why)), JSON)
                }
            }
            _ => (
                404,
                "not found: try /metrics, /healthz or /readyz\n".to_string(),
                "text/plain",
            ),
        };
        let header = tiny_http::Header::from_bytes("Content-Type", kind).expect("a valid header");
        let response = tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header);
        if let Err(e) = request.respond(response) {
            warn!("metrics: cannot answer a request: {e}");
        }
    }
}

const JSON: &str = "application/json";

/// The JSON body of /healthz and /readyz: each slot that is not healthy and
/// why (the status code alone stays the contract).
fn health_body(view: &FleetView, status: &str, why: Option<String>) -> String {
    let h = crate::metrics::Health {
        status: status.to_string(),
        why,
        unhealthy: view.unhealthy(crate::metrics::unix_now()),
    };
    let mut body =
        serde_json::to_string(&h).unwrap_or_else(|_| format!("{{\"status\":\"{status}\"}}"));
    body.push('\n');
    body
}

fn why_not_ready(v: &FleetView) -> String {
    if v.shutting_down {
        return "stopping".into();
    }
    if v.rolling_restart {
        return "rolling restart under way".into();
    }
    let joined = v.slots.iter().filter(|s| s.joined).count();
    format!("{joined} of {} workers are members of the group", v.target)
}

/// VmRSS of a process, in bytes.
fn rss_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
