//! The end-to-end suite: one test binary, so one local control plane serves every test.
//! Run with `just e2e` (builds the components first; tests run one at a time).

#[path = "suite/admission.rs"]
mod admission;
#[path = "suite/csi.rs"]
mod csi;
#[path = "suite/deploy.rs"]
mod deploy;
#[path = "suite/group_snapshots.rs"]
mod group_snapshots;
#[path = "suite/kubectl_stork.rs"]
mod kubectl_stork;
#[path = "suite/kwok_exec.rs"]
mod kwok_exec;
#[path = "suite/manifests.rs"]
mod manifests;
#[path = "suite/monitor.rs"]
mod monitor;
#[path = "suite/openstorage.rs"]
mod openstorage;
#[path = "suite/placement_rules.rs"]
mod placement_rules;
#[path = "suite/rules.rs"]
mod rules;
#[path = "suite/schedules.rs"]
mod schedules;
#[path = "suite/scheduling.rs"]
mod scheduling;
#[path = "suite/self_signed.rs"]
mod self_signed;
#[path = "suite/snapshots.rs"]
mod snapshots;
