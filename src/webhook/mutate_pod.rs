//! `/mutate`: route pods that use driver volumes to the `stork` scheduler. Pure.
//!
//! Deviation from Stork: every outcome is "allowed". A claim stork has not cached yet, or any
//! doubt, means "not mutated" plus a warning — a webhook must never block pod creation.

use json_patch::{AddOperation, Patch, PatchOperation, jsonptr::PointerBuf};

use super::WebhookConfig;
use crate::{cluster::ClusterView, cluster::pod::PodFacts, driver::Driver, knobs};

/// Name of the scheduler profile pods are routed to.
pub const STORK_SCHEDULER: &str = "stork";

/// What `/mutate` decided for one pod.
#[derive(Debug, PartialEq)]
pub struct MutateDecision {
    /// The patch to apply, if any.
    pub patch: Option<Patch>,
    /// Warnings for the client (`kubectl` prints them).
    pub warnings: Vec<String>,
    /// Why, for logs and metrics.
    pub reason: &'static str,
}

impl MutateDecision {
    fn skip(reason: &'static str) -> Self {
        Self { patch: None, warnings: vec![], reason }
    }
}

/// Decides whether a pod being created goes to the `stork` scheduler.
pub fn mutate_pod(
    pod: &PodFacts,
    namespace: &str,
    cfg: &WebhookConfig,
    cluster: &ClusterView,
    driver: &dyn Driver,
) -> MutateDecision {
    if cfg.excluded_namespaces.iter().any(|n| n == namespace) {
        return MutateDecision::skip("excluded_namespace");
    }
    if knobs::flag(&pod.metadata.annotations, &cfg.skip_annotation, false) {
        return MutateDecision::skip("skip_annotation");
    }
    if pod.spec.scheduler_name == STORK_SCHEDULER {
        return MutateDecision::skip("already_stork");
    }
    let mut missing = Vec::new();
    for (_, claim) in pod.claims() {
        match cluster.pvc(namespace, &claim) {
            Some(pvc) if driver.owns_pvc(&pvc, cluster) => {
                let op = AddOperation {
                    path: PointerBuf::from_tokens(["spec", "schedulerName"]),
                    value: serde_json::Value::from(STORK_SCHEDULER),
                };
                return MutateDecision {
                    patch: Some(Patch(vec![PatchOperation::Add(op)])),
                    warnings: vec![],
                    reason: "driver_volume",
                };
            }
            Some(_) => {}
            None => missing.push(claim),
        }
    }
    if missing.is_empty() {
        return MutateDecision::skip("no_driver_volume");
    }
    let warning = format!(
        "stork: pvc {} not known to stork yet; pod left on scheduler {:?} (set schedulerName: stork to use storage-aware placement)",
        missing.join(", "),
        pod.spec.scheduler_name
    );
    MutateDecision { patch: None, warnings: vec![warning], reason: "pvc_not_cached" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Built, PodExt, World, dnode, pod};

    fn decide(world: World, p: &PodFacts, ns: &str) -> MutateDecision {
        let built = Built::from(world);
        mutate_pod(p, ns, &WebhookConfig::default(), &built.cluster, &built.driver)
    }

    fn world() -> World {
        World::new().driver_nodes([dnode("n1")]).volume("db", &["n1"]).claim("other", "other-sc", Some("pv-x"))
    }

    #[test]
    fn a_pod_with_a_driver_claim_is_sent_to_the_stork_scheduler() {
        let d = decide(world(), &pod("p").with_pvc("other").with_pvc("db"), "default");
        let patch = serde_json::to_value(d.patch.expect("patch")).unwrap();
        assert_eq!(patch, serde_json::json!([{"op": "add", "path": "/spec/schedulerName", "value": "stork"}]));
    }

    #[test]
    fn pods_without_driver_claims_already_on_stork_or_opted_out_are_left_alone() {
        assert_eq!(decide(world(), &pod("p"), "default").reason, "no_driver_volume");
        assert_eq!(decide(world(), &pod("p").with_pvc("other"), "default").reason, "no_driver_volume");
        let mut on_stork = pod("p").with_pvc("db");
        on_stork.spec.scheduler_name = "stork".into();
        assert_eq!(decide(world(), &on_stork, "default").reason, "already_stork");
        let opted_out =
            pod("p").with_pvc("db").annotated("stork.libopenstorage.org/disable-admission-controller", "true");
        assert_eq!(decide(world(), &opted_out, "default").patch, None);
    }

    #[test]
    fn an_excluded_namespace_is_never_mutated() {
        assert_eq!(decide(world(), &pod("p").with_pvc("db"), "kube-system").reason, "excluded_namespace");
    }

    #[test]
    fn a_claim_missing_from_the_cache_allows_unchanged_with_a_warning() {
        let d = decide(world(), &pod("p").with_pvc("new-claim"), "default");
        assert_eq!(d.patch, None);
        assert!(d.warnings[0].contains("default/new-claim") || d.warnings[0].contains("new-claim"), "{:?}", d.warnings);
    }
}
