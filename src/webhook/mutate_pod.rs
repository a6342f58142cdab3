//! `/mutate`: route pods that use driver volumes to the `stork` scheduler. Pure.
//!
//! Deviation from Stork: every outcome is "allowed". A claim stork has not cached yet, or any
//! doubt, means "not mutated" plus a warning — a webhook must never block pod creation.

use json_patch::{AddOperation, Patch, PatchOperation, jsonptr::PointerBuf};

use super::WebhookConfig;
use crate::{cluster::ClusterView, cluster::pod::PodFacts, driver::Driver, knobs, model::STORK_SCHEDULER};

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
    for c in pod.claims() {
        // A generic ephemeral volume's claim is made after the pod: decide from its template.
        if let Some(class) = c.ephemeral_class {
            if cluster.template_class(class).is_some_and(|sc| driver.owns_class(&sc)) {
                return route("driver_ephemeral_volume");
            }
            continue;
        }
        match cluster.pvc(namespace, &c.name) {
            Some(pvc) if driver.owns_pvc(&pvc, cluster) => return route("driver_volume"),
            Some(_) => {}
            None => missing.push(c.name),
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

/// Sends the pod to the `stork` scheduler.
fn route(reason: &'static str) -> MutateDecision {
    let op = AddOperation {
        path: PointerBuf::from_tokens(["spec", "schedulerName"]),
        value: serde_json::Value::from(STORK_SCHEDULER),
    };
    MutateDecision { patch: Some(Patch(vec![PatchOperation::Add(op)])), warnings: vec![], reason }
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
    fn a_pod_whose_ephemeral_volume_template_names_a_driver_class_is_routed_before_its_claim_exists() {
        let d = decide(world(), &pod("p").with_ephemeral("scratch", Some("mock-wffc")), "default");
        assert_eq!((d.reason, d.warnings.len()), ("driver_ephemeral_volume", 0));
        assert!(d.patch.is_some());
        // No class named: the cluster's default class decides.
        let p = pod("p").with_ephemeral("scratch", None);
        assert_eq!(decide(world().default_class("mock-sc"), &p, "default").reason, "driver_ephemeral_volume");
        assert_eq!(decide(world().default_class("other-sc"), &p, "default").reason, "no_driver_volume");
        assert_eq!(decide(world(), &p, "default").reason, "no_driver_volume", "no default class");
        // A generateName pod has no name yet; its template still decides.
        let mut unnamed = pod("").with_ephemeral("scratch", Some("mock-sc"));
        unnamed.metadata.generate_name = "web-".into();
        assert_eq!(decide(world(), &unnamed, "default").reason, "driver_ephemeral_volume");
    }

    #[test]
    fn an_ephemeral_volume_of_another_or_unknown_class_neither_routes_nor_warns() {
        for class in ["other-sc", "no-such-class"] {
            let d = decide(world(), &pod("p").with_ephemeral("scratch", Some(class)), "default");
            assert_eq!((d.reason, d.warnings.len()), ("no_driver_volume", 0), "{class}");
        }
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
