//! The `openstorage` driver when the SDK fails or is secured: killed mid-run (nodes unknown,
//! every node kept, no pod deleted, everything back once it returns); with security on (a
//! missing or expired token is one clear error naming the token file, a fresh token in the file
//! is picked up, a shared secret signs stork's own tokens); over TLS (read with `--osd-ca`).
use stork_e2e::{
    osd::{OsdOptions, OsdServer},
    shared, wait_for,
};

use super::{PxStork, PxWorld, deployment, explained, nodes, running_db};
use stork_e2e::objects::WAIT;

/// Failed reads of the SDK's node list because it could not be reached.
const UNREACHABLE: &str = r#"stork_driver_api_errors_total{call="nodes",kind="unreachable"} "#;

/// The value of the metric series starting with `series` (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// Waits until `/readyz` has no warning and stork counts `n` Online driver nodes.
async fn nodes_known(stork: &PxStork, n: usize) {
    wait_for(&format!("/readyz without a warning and {n} Online driver nodes"), WAIT, || async {
        let (r, m) = (stork.readyz(), stork.metrics());
        let online = metric(&m, r#"stork_driver_nodes{status="Online"} "#);
        if !r.contains("warning") && online == n as f64 { Ok(()) } else { Err(format!("{r} online={online}")) }
    })
    .await;
}

#[tokio::test]
async fn while_the_sdk_is_down_nodes_are_kept_no_pod_is_deleted_and_all_recovers_when_it_returns() {
    // PVs name their volumes by name: the restarted SDK gives the same names new ids.
    let mut w = PxWorld::new("pxk", 44, true).await;
    let (client, ns, names) = (w.client.clone(), w.ns.clone(), w.names.clone());
    let pods = deployment(&client, &ns).await;
    let (pod, uid, node, _) = running_db(&pods).await;
    assert_eq!(node, "pxk-n2");
    explained(&w.stork, &ns, &pod, &[("pxk-n1", 100), ("pxk-n2", 200), ("pxk-n3", 100)]).await;

    w.server.kill();
    wait_for("/readyz ready, saying the SDK is unreachable", WAIT, || async {
        let r = w.stork.readyz();
        if r.contains(" 200 ") && r.contains("is unreachable") { Ok(()) } else { Err(r) }
    })
    .await;
    // Unknown is not down: every node stays a candidate, and the monitor deletes nothing over
    // several of its intervals.
    wait_for("every node kept while the SDK is down", WAIT, || async {
        // Other tests' nodes may be in the shared cluster too: these five are the ones to check.
        let kept: Vec<String> = w.stork.explain(&ns, &pod)?.into_iter().filter(|n| n.1).map(|n| n.0).collect();
        if names.iter().all(|n| kept.contains(n)) { Ok(()) } else { Err(format!("{kept:?}")) }
    })
    .await;
    // Over three more monitor passes and two more failed reads of the SDK, nothing is deleted.
    let before = w.stork.metrics();
    let passes = metric(&before, "stork_monitor_passes_total ");
    let failures = metric(&before, UNREACHABLE);
    wait_for("three monitor passes and two failed SDK reads with no pod deleted", WAIT, || async {
        assert_eq!(running_db(&pods).await.1, uid, "no pod deleted while the SDK is down");
        let m = w.stork.metrics();
        let (p, f) = (metric(&m, "stork_monitor_passes_total "), metric(&m, UNREACHABLE));
        if p >= passes + 3.0 && f >= failures + 2.0 { Ok(()) } else { Err(format!("passes {p}, failed reads {f}")) }
    })
    .await;
    let m = w.stork.metrics();
    assert_eq!(metric(&m, "stork_pods_rescheduled_total "), 0.0);
    assert!(metric(&m, UNREACHABLE) >= 1.0, "{m}");

    w.server.restart().expect("osd-harness again");
    let ips: Vec<String> = (1..=5).map(|i| format!("10.44.0.{i}")).collect();
    w.server.set_nodes(&super::sdk_nodes("pxk", &names, &ips)).unwrap();
    w.server.create_volume("pxk-v1", &["px-pxk-1", "px-pxk-2"]).await.unwrap();
    w.server.create_volume("pxk-v2", &["px-pxk-2", "px-pxk-3"]).await.unwrap();
    explained(&w.stork, &ns, &pod, &[("pxk-n1", 100), ("pxk-n2", 200), ("pxk-n3", 100)]).await;
    wait_for("/readyz without a warning", WAIT, || async {
        let r = w.stork.readyz();
        if r.contains(" 200 ") && !r.contains("warning") { Ok(()) } else { Err(r) }
    })
    .await;
    assert_eq!(running_db(&pods).await.1, uid, "the pod survived the outage");
    w.finish().await;
}

#[tokio::test]
async fn with_sdk_security_a_missing_or_expired_token_is_one_clear_error_a_fresh_one_is_picked_up_and_a_shared_secret_works()
 {
    let (cluster, client) = shared().await;
    let server = OsdServer::start(OsdOptions { jwt_secret: Some("e2e-shared-secret".into()), ..OsdOptions::default() })
        .expect("osd-harness");
    let names = nodes(&client, &server, "pxa", 45).await;

    let stork = PxStork::start(cluster, &server.endpoint, &[]);
    wait_for("/readyz saying a token is needed", WAIT, || async {
        let r = stork.readyz();
        if r.contains("refused stork's credentials") && r.contains("give one with --osd-token-file") {
            Ok(())
        } else {
            Err(r)
        }
    })
    .await;
    drop(stork);

    let token_file = server.dir().join("stork-token");
    std::fs::write(&token_file, server.token("-1h").unwrap()).unwrap();
    let flag = format!("--osd-token-file={}", token_file.display());
    let stork = PxStork::start(cluster, &server.endpoint, &[&flag]);
    let named = format!("refused stork's credentials (token from --osd-token-file {})", token_file.display());
    let auth_errors = r#"stork_driver_api_errors_total{call="nodes",kind="auth"} "#;
    wait_for("an expired token refused at least three times", WAIT, || async {
        let (r, m) = (stork.readyz(), stork.metrics());
        if r.contains(&named) && metric(&m, auth_errors) >= 3.0 { Ok(()) } else { Err(r) }
    })
    .await;
    let log = std::fs::read_to_string(cluster.info.dir.join("stork.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("OpenStorage SDK credentials refused")).collect();
    assert_eq!(lines.len(), 1, "one error line, not one per retry: {lines:#?}");
    assert!(lines[0].contains(&token_file.display().to_string()), "{}", lines[0]);

    // A fresh token in the same file: read again without a restart.
    std::fs::write(&token_file, server.token("1h").unwrap()).unwrap();
    nodes_known(&stork, 3).await;
    drop(stork);

    // No token at all, the shared secret instead: stork signs its own tokens, as Stork does.
    let secret_file = server.dir().join("shared-secret");
    std::fs::write(&secret_file, "e2e-shared-secret\n").unwrap();
    let secret = format!("--osd-shared-secret-file={}", secret_file.display());
    let stork = PxStork::start(cluster, &server.endpoint, &[&secret, "--osd-jwt-issuer=stork-e2e"]);
    nodes_known(&stork, 3).await;
    drop(stork);
    stork_e2e::delete_nodes(&client, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn over_tls_the_sdk_is_read_with_the_ca_given_and_a_plaintext_endpoint_is_an_error_not_a_down_node() {
    let (cluster, client) = shared().await;
    let server = OsdServer::start(OsdOptions { tls: true, ..OsdOptions::default() }).expect("osd-harness with TLS");
    let names = nodes(&client, &server, "pxt", 46).await;
    let ca = format!("--osd-ca={}", server.ca().display());
    let stork = PxStork::start(cluster, &server.endpoint, &[&ca]);
    nodes_known(&stork, 3).await;
    drop(stork);

    // The TLS port spoken to in plaintext: an unreachable SDK, reported as such.
    let plaintext = server.endpoint.replace("https://", "http://");
    let stork = PxStork::start(cluster, &plaintext, &[]);
    wait_for("/readyz saying the SDK is unreachable", WAIT, || async {
        let r = stork.readyz();
        if r.contains(" 200 ") && r.contains("is unreachable") { Ok(()) } else { Err(r) }
    })
    .await;
    drop(stork);
    stork_e2e::delete_nodes(&client, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
}
