//! `GET /explain/pods/{namespace}/{name}` on the admin port: why a pod was placed where it is, or
//! why it is Pending. It runs the extender's own filter and prioritize over every cached node and
//! returns the verdict, score and reason of each, with the pod's volumes and where their replicas
//! are. Read-only, from the caches, like every request path; `kubectl stork explain` reaches it
//! through the API server's service proxy.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::{Candidate, Inputs, filter, http::ExtenderState, limits::Deadline, prioritize};
use crate::{
    cluster::{ClusterView, pod::PodFacts},
    driver::{self, Driver},
};

/// How long one explanation may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a pod is (or would be) where it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `namespace/name`.
    pub pod: String,
    /// The pod's scheduler.
    pub scheduler: String,
    /// The node it runs on, if placed.
    pub node: String,
    /// Its phase.
    pub phase: String,
    /// The storage driver.
    pub driver: String,
    /// The pod's driver volumes.
    pub volumes: Vec<VolumeRow>,
    /// Claims of a WaitForFirstConsumer class not bound yet.
    pub pending_claims: Vec<String>,
    /// Every node, as the extender judges it now.
    pub nodes: Vec<NodeRow>,
    /// A sentence summing it up.
    pub summary: String,
}

/// One driver volume of the pod.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRow {
    /// `namespace/name` of the claim.
    pub claim: String,
    /// Driver volume id.
    pub volume: String,
    /// Where its replicas are.
    pub replicas: Vec<ReplicaRow>,
}

/// One replica of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRow {
    /// Storage id.
    pub storage_id: String,
    /// Kubernetes node name the driver reports (empty when unknown).
    pub node: String,
    /// Driver status there.
    pub status: String,
}

/// One node's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    /// Node name.
    pub name: String,
    /// Kept by the filter.
    pub kept: bool,
    /// Score from prioritize (kept nodes only).
    pub score: Option<i64>,
    /// Why it was dropped, or why it scores as it does.
    pub reason: String,
}

/// Explains `pod` over every cached node. Pure: reads the caches only.
pub fn explain(cluster: &ClusterView, driver: &dyn Driver, pod: &Pod) -> Result<Explanation, String> {
    let facts: PodFacts = serde_json::to_vec(pod)
        .and_then(|b| serde_json::from_slice(&b))
        .map_err(|e| format!("the cached pod does not decode: {e}"))?;
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let mut out = Explanation {
        pod: format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default()),
        scheduler: spec.and_then(|s| s.scheduler_name.clone()).unwrap_or_else(|| "default-scheduler".into()),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
        driver: driver.name().to_string(),
        volumes: Vec::new(),
        pending_claims: Vec::new(),
        nodes: Vec::new(),
        summary: String::new(),
    };
    let inventory = driver.nodes().ok();
    match driver::pod_volumes(driver, cluster, &facts) {
        Ok(v) => {
            out.pending_claims = v.pending_wffc.clone();
            for pv in &v.bound {
                let replicas = pv
                    .volume
                    .replicas
                    .iter()
                    .map(|id| {
                        let n = inventory.as_ref().and_then(|i| i.by_id(id));
                        ReplicaRow {
                            storage_id: id.clone(),
                            node: n.map(|n| n.name.clone()).unwrap_or_default(),
                            status: n.map_or("unknown to the driver".into(), |n| format!("{:?}", n.status)),
                        }
                    })
                    .collect();
                out.volumes.push(VolumeRow { claim: pv.claim.clone(), volume: pv.volume.id.clone(), replicas });
            }
        }
        Err(e) => out.summary = format!("stork cannot resolve the pod's volumes: {e}"),
    }
    let nodes = cluster.nodes();
    let mut nodes: Vec<_> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let names: Vec<&str> = nodes.iter().map(|n| n.metadata.name.as_deref().unwrap_or_default()).collect();
    let candidates: Vec<Candidate<'_>> =
        names.iter().zip(&nodes).map(|(name, node)| Candidate::from_cache(name, Some(node))).collect();
    let inputs = Inputs { pod: &facts, cluster, driver, deadline: Deadline::after(TIMEOUT) };
    let decision = filter::filter(&inputs, &candidates).map_err(|_| "the filter ran out of time".to_string())?;
    let kept: Vec<Candidate<'_>> = decision.kept.iter().map(|&i| candidates[i].clone()).collect();
    let scores = prioritize::prioritize(&inputs, &kept).map_err(|_| "prioritize ran out of time".to_string())?;
    let reasons: Vec<(usize, &String)> =
        decision.failed.iter().chain(&decision.unresolvable).map(|(i, why)| (*i, why)).collect();
    for (i, name) in names.iter().enumerate() {
        let k = decision.kept.iter().position(|&j| j == i);
        let score = k.and_then(|k| scores.scores.get(k).copied());
        let reason = match (k, reasons.iter().find(|(j, _)| *j == i)) {
            (_, Some((_, why))) => (*why).clone(),
            (Some(_), None) => score_reason(&out.volumes, name, score),
            (None, None) => String::new(),
        };
        out.nodes.push(NodeRow { name: name.to_string(), kept: k.is_some(), score, reason });
    }
    if out.summary.is_empty() {
        out.summary = summary(&out);
    }
    Ok(out)
}

/// Why a kept node scores as it does, from where the volumes' replicas are.
fn score_reason(volumes: &[VolumeRow], node: &str, score: Option<i64>) -> String {
    let here: Vec<&str> =
        volumes.iter().filter(|v| v.replicas.iter().any(|r| r.node == node)).map(|v| v.volume.as_str()).collect();
    match (here.is_empty(), score) {
        (_, None) => String::new(),
        (false, _) => format!("replica of {} here", here.join(", ")),
        (true, Some(s)) if s > 0 => "no replica here; scored by rack, zone or region".into(),
        (true, _) => "no replica here".into(),
    }
}

fn summary(e: &Explanation) -> String {
    let best = e.nodes.iter().filter_map(|n| n.score).max();
    let top: Vec<&str> =
        e.nodes.iter().filter(|n| n.score.is_some() && n.score == best).map(|n| n.name.as_str()).collect();
    let kept = e.nodes.iter().filter(|n| n.kept).count();
    if e.volumes.is_empty() && e.pending_claims.is_empty() {
        return format!("the pod uses no {} volume: stork keeps every node and scores none", e.driver);
    }
    if kept == 0 {
        return "no node passes stork's filter: the pod stays Pending until a node in the table can run it".into();
    }
    let placed = if e.node.is_empty() { "not placed yet".to_string() } else { format!("placed on {}", e.node) };
    match best {
        Some(_) => format!("{placed}; stork ranks {} highest", top.join(", ")),
        None => placed,
    }
}

#[derive(Deserialize)]
struct PodPath {
    namespace: String,
    name: String,
}

/// Registers `GET /explain/pods/{namespace}/{name}`.
pub fn configure(state: ExtenderState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state)).route("/explain/pods/{namespace}/{name}", web::get().to(explain_handler));
    }
}

async fn explain_handler(state: web::Data<ExtenderState>, path: web::Path<PodPath>) -> HttpResponse {
    let Some(pod) = state.cluster.pod(&path.namespace, &path.name) else {
        let msg = format!("pod {}/{} is not in stork's cache (does it exist?)", path.namespace, path.name);
        return status(actix_web::http::StatusCode::NOT_FOUND, "NotFound", msg);
    };
    match explain(&state.cluster, state.driver.as_ref(), &pod) {
        Ok(e) => HttpResponse::Ok().json(e),
        Err(msg) => status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", msg),
    }
}

/// An error as a Kubernetes `Status`, which the API server's proxy passes on and clients read.
fn status(code: actix_web::http::StatusCode, reason: &str, message: String) -> HttpResponse {
    HttpResponse::build(code).json(serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "message": message, "code": code.as_u16(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        driver::NodeStatus,
        fixtures::{DriverNodeExt, World, dnode},
    };

    fn seed() -> (ClusterView, crate::driver::mock::MockDriver) {
        World::new()
            .driver_nodes([dnode("n1"), dnode("n2"), dnode("n3").status(NodeStatus::Offline)])
            .k8s_node("n4", &[])
            .volume("data-1", &["n1", "n2"])
            .volume("data-2", &["n2", "n3"])
            .running_pod("p1", "n2", &["data-1", "data-2"])
            .build()
    }

    #[test]
    fn a_placed_pod_is_explained_node_by_node_with_its_volumes_replicas() {
        let (cluster, driver) = seed();
        let pod = cluster.pod(crate::fixtures::NS, "p1").expect("cached pod");
        let e = explain(&cluster, &driver, &pod).unwrap();
        assert_eq!((e.node.as_str(), e.phase.as_str(), e.driver.as_str()), ("n2", "Running", "mock"));
        let vols: Vec<(&str, Vec<&str>)> = e
            .volumes
            .iter()
            .map(|v| (v.volume.as_str(), v.replicas.iter().map(|r| r.node.as_str()).collect()))
            .collect();
        assert_eq!(vols, [("pv-data-1", vec!["n1", "n2"]), ("pv-data-2", vec!["n2", "n3"])]);
        assert_eq!(e.volumes[1].replicas[1].status, "Offline");
        let row = |n: &str| e.nodes.iter().find(|r| r.name == n).unwrap().clone();
        assert!(row("n2").kept && row("n2").reason.contains("replica of pv-data-1, pv-data-2"), "{:?}", row("n2"));
        assert!(row("n2").score > row("n1").score, "{:?}", e.nodes);
        assert!(!row("n3").kept && row("n3").reason.contains("Offline"), "{:?}", row("n3"));
        assert!(e.summary.contains("placed on n2") && e.summary.contains("ranks n2 highest"), "{}", e.summary);
    }

    #[test]
    fn a_pod_whose_replica_nodes_are_all_down_is_explained_as_stuck() {
        let (cluster, driver) = World::new()
            .driver_nodes([dnode("n1").status(NodeStatus::Offline), dnode("n2")])
            .k8s_node("n9", &[])
            .volume("only", &["n1"])
            .running_pod("stuck", "", &["only"])
            .build();
        let pod = cluster.pod(crate::fixtures::NS, "stuck").unwrap();
        let e = explain(&cluster, &driver, &pod).unwrap();
        assert!(e.nodes.iter().all(|n| !n.kept && !n.reason.is_empty()), "{:?}", e.nodes);
        assert!(e.summary.contains("no node passes"), "{}", e.summary);
    }
}
