//! `kubectl stork explain pod NAME`: asks the running stork (its admin port, through the API
//! server's service proxy) and prints every node's verdict, score and reason, and where the pod's
//! volumes have their replicas.

use std::io::Write;

use clap::{Args, ValueEnum};
use kube::Client;

use super::{
    Error,
    output::{Format, Table, write_data},
};
use crate::extender::explain::Explanation;

/// `explain pod NAME`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Always `pod`.
    pub kind: PodKind,
    /// The pod.
    pub name: String,
    /// Namespace of stork's Service.
    #[arg(long, default_value = "kube-system")]
    pub stork_namespace: String,
    /// stork's Service (its `admin` port serves /explain).
    #[arg(long, default_value = "stork-service")]
    pub stork_service: String,
}

/// What `explain` explains.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PodKind {
    /// A pod.
    #[value(alias = "pods", alias = "po")]
    Pod,
}

/// Runs `explain`.
pub async fn run(client: &Client, ns: &str, a: &ExplainArgs, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let path = format!(
        "/api/v1/namespaces/{}/services/http:{}:admin/proxy/explain/pods/{ns}/{}",
        a.stork_namespace, a.stork_service, a.name
    );
    let req = http::Request::get(&path).body(Vec::new()).map_err(|e| Error::Usage(e.to_string()))?;
    let text = client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 403 => Error::Forbidden(format!(
            "you may not proxy to service {}/{} (verb get on services/proxy): {}",
            a.stork_namespace, a.stork_service, s.message
        )),
        kube::Error::Api(s) if s.code == 404 && s.message.contains("not in stork's cache") => {
            Error::NotFound(s.message.clone())
        }
        kube::Error::Api(s) if s.code == 404 => Error::NotInstalled(format!(
            "the Service {}/{} with an `admin` port ({}); is stork running? (--stork-namespace/--stork-service)",
            a.stork_namespace, a.stork_service, s.message
        )),
        kube::Error::Api(s) if s.code == 503 => Error::Failed(format!(
            "stork is not reachable through service {}/{}: {}",
            a.stork_namespace, a.stork_service, s.message
        )),
        e => Error::Api(format!("explain through service {}/{}: {e}", a.stork_namespace, a.stork_service)),
    })?;
    let e: Explanation = serde_json::from_str(&text)
        .map_err(|err| Error::Failed(format!("stork answered something else: {err}: {text}")))?;
    match format {
        Format::Table => print(&e, out),
        f => write_data(&e, f, out),
    }
}

fn print(e: &Explanation, out: &mut dyn Write) -> Result<(), Error> {
    let io = super::output::io;
    let placed = if e.node.is_empty() { "not placed".to_string() } else { format!("on {}", e.node) };
    writeln!(out, "Pod {} ({}, {placed}, scheduler {}; driver {})", e.pod, or_dash(&e.phase), e.scheduler, e.driver)
        .map_err(io)?;
    if e.volumes.is_empty() && e.pending_claims.is_empty() {
        writeln!(out, "\nVolumes: none of the {} driver", e.driver).map_err(io)?;
    } else {
        writeln!(out, "\nVolumes:").map_err(io)?;
        let mut t = Table::new(&["CLAIM", "VOLUME", "REPLICAS"]);
        for v in &e.volumes {
            let replicas: Vec<String> = v
                .replicas
                .iter()
                .map(|r| {
                    let node = if r.node.is_empty() { r.storage_id.as_str() } else { r.node.as_str() };
                    format!("{node} ({})", r.status)
                })
                .collect();
            t.row(vec![v.claim.clone(), v.volume.clone(), replicas.join(", ")]);
        }
        for c in &e.pending_claims {
            t.row(vec![c.clone(), "-".into(), "not bound yet (WaitForFirstConsumer)".into()]);
        }
        t.write(out)?;
    }
    writeln!(out, "\nNodes:").map_err(io)?;
    let mut t = Table::new(&["NODE", "FILTER", "SCORE", "REASON"]);
    for n in &e.nodes {
        let verdict = if n.kept { "kept" } else { "dropped" };
        t.row(vec![n.name.clone(), verdict.into(), n.score.map_or("-".into(), |s| s.to_string()), n.reason.clone()]);
    }
    t.write(out)?;
    writeln!(out, "\n{}", e.summary).map_err(io)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
