//! Tests of the self-signed mode's decisions: first issue, renewals, repairs and the CA handover.

use super::*;

const RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY);

fn policy() -> Policy {
    Policy::new("stork-service", "kube-system", RENEW_BEFORE).unwrap()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

/// Plan at `now` and expect a write; returns the new contents and why.
fn renew(current: &Material, policy: &Policy, now: SystemTime) -> (Material, Vec<Reason>) {
    match plan(current, policy, now).unwrap() {
        Plan::Write { material, reasons } => (material, reasons),
        Plan::Keep => panic!("expected a write, got Keep"),
    }
}

fn fresh(now: SystemTime) -> Material {
    renew(&Material::default(), &policy(), now).0
}

fn bundle(material: &Material) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(material.ca_bundle.as_bytes()).map(Result::unwrap).collect()
}

fn first_ca(material: &Material) -> CertificateDer<'static> {
    bundle(material).remove(0)
}

#[test]
fn an_empty_secret_gets_a_ca_and_a_serving_certificate_for_the_service() {
    let now = SystemTime::now();
    let (material, reasons) = renew(&Material::default(), &policy(), now);

    assert!(matches!(reasons[..], [Reason::CaUnusable(_), Reason::ServingUnusable(_)]), "{reasons:?}");
    assert_eq!(bundle(&material).len(), 1);
    assert!(assess(&material, &policy(), now).is_usable());
    assert!(matches!(plan(&material, &policy(), now + days(300)).unwrap(), Plan::Keep));
}

#[test]
fn a_serving_certificate_within_renew_before_is_reissued_by_the_same_ca() {
    let now = SystemTime::now();
    let before = fresh(now);

    let (after, reasons) = renew(&before, &policy(), now + SERVING_VALIDITY - days(29));

    assert_eq!(reasons, [Reason::ServingExpiring]);
    assert_eq!((&after.ca_bundle, &after.ca_key), (&before.ca_bundle, &before.ca_key));
    assert_ne!(after.cert, before.cert);
}

#[test]
fn a_certificate_without_the_service_name_is_reissued() {
    let now = SystemTime::now();
    let other = Policy::new("stork-service", "other-ns", RENEW_BEFORE).unwrap();
    let material = fresh(now);

    let reason = assess(&material, &other, now).serving.unwrap();

    assert!(reason.to_string().contains("not valid for stork-service.other-ns.svc"), "{reason}");
    let (renewed, _) = renew(&material, &other, now);
    assert!(assess(&renewed, &other, now).is_usable());
}

#[test]
fn a_serving_key_that_does_not_match_is_reissued_but_the_ca_is_kept() {
    let now = SystemTime::now();
    let (material, other) = (fresh(now), fresh(now));
    let broken = Material { key: other.key, ..material.clone() };

    let (renewed, reasons) = renew(&broken, &policy(), now);

    assert!(
        matches!(reasons[..], [Reason::ServingUnusable(ref why)] if why.contains("failed to match")),
        "{reasons:?}"
    );
    assert_eq!(renewed.ca_bundle, material.ca_bundle);
}

#[test]
fn a_mismatched_ca_key_brings_a_new_ca_while_the_old_one_stays_trusted_for_the_served_certificate() {
    let now = SystemTime::now();
    let (material, other) = (fresh(now), fresh(now));
    let broken = Material { ca_key: other.ca_key, ..material.clone() };

    let (renewed, reasons) = renew(&broken, &policy(), now);

    assert!(matches!(reasons[..], [Reason::CaUnusable(_)]), "{reasons:?}");
    assert_eq!(bundle(&renewed)[1], first_ca(&material));
    assert_eq!(renewed.cert, material.cert, "the served certificate still verifies");
    assert!(assess(&renewed, &policy(), now).is_usable());
}

#[test]
fn a_ca_near_expiry_hands_over_in_steps_with_both_cas_in_the_bundle_meanwhile() {
    let t0 = SystemTime::now();
    let issued = fresh(t0);
    let old_ca = first_ca(&issued);
    let old_expiry = t0 + CA_VALIDITY;
    // A serving certificate issued shortly before the CA is due, so not due itself.
    let t1 = old_expiry - 2 * RENEW_BEFORE + days(1);
    let (original, _) = renew(&issued, &policy(), t1 - days(2));
    assert_eq!(first_ca(&original), old_ca);

    // Step 1: the successor joins the bundle, and the old CA signs a last serving certificate,
    // which expires with it: nobody trusts the successor yet.
    let (step1, reasons) = renew(&original, &policy(), t1);
    assert_eq!(reasons, [Reason::CaExpiring]);
    assert_eq!(bundle(&step1).len(), 2);
    assert_eq!(bundle(&step1)[1], old_ca);
    assert_ne!(step1.cert, original.cert);
    let only_old = Material { ca_bundle: original.ca_bundle.clone(), ..step1.clone() };
    assert_eq!(assess(&only_old, &policy(), t1).serving, None, "signed by the old CA");
    assert!(matches!(plan(&step1, &policy(), old_expiry - RENEW_BEFORE - days(1)).unwrap(), Plan::Keep));

    // Step 2: renew-before ahead of the old CA's expiry, the new CA signs.
    let t2 = old_expiry - RENEW_BEFORE + days(1);
    let (step2, reasons) = renew(&step1, &policy(), t2);
    assert_eq!(reasons, [Reason::ServingExpiring]);
    assert_eq!(step2.ca_bundle, step1.ca_bundle, "both CAs stay trusted");
    let only_new = Material { ca_bundle: pem_encode(&first_ca(&step1)), ..step2.clone() };
    assert_eq!(assess(&only_new, &policy(), t2).serving, None, "signed by the new CA");

    // Step 3: the old CA has expired and leaves the bundle.
    let (step3, reasons) = renew(&step2, &policy(), old_expiry + days(1));
    assert_eq!(reasons, [Reason::BundleStale]);
    assert_eq!(bundle(&step3), [first_ca(&step1)]);
    assert_eq!(step3.cert, step2.cert);
}

#[test]
fn a_scheduler_client_certificate_is_issued_with_the_serving_one_and_repaired_alone() {
    let now = SystemTime::now();
    let fresh = fresh(now);
    let ca = bundle(&fresh);
    let pair = parse_pair(fresh.client_cert.as_bytes(), fresh.client_key.as_bytes(), "c".as_ref(), "k".as_ref());
    let leaf = &pair.unwrap().cert[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    assert_eq!(cert.issuer(), x509_parser::parse_x509_certificate(&ca[0]).unwrap().1.subject());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    let lost = Material { client_key: String::new(), ..fresh.clone() };
    let (repaired, reasons) = renew(&lost, &policy(), now);
    assert!(matches!(reasons[..], [Reason::ClientUnusable(_)]), "{reasons:?}");
    assert_eq!((&repaired.cert, &repaired.ca_bundle), (&fresh.cert, &fresh.ca_bundle), "nothing else is reissued");
    assert!(assess(&repaired, &policy(), now).is_usable());
}

#[test]
fn garbage_in_every_field_is_replaced_by_fresh_certificates() {
    let now = SystemTime::now();
    let garbage = Material {
        ca_bundle: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ca_key: "nope".into(),
        cert: "nope".into(),
        key: String::new(),
        client_cert: "nope".into(),
        client_key: String::new(),
    };

    let (renewed, reasons) = renew(&garbage, &policy(), now);

    assert!(reasons.contains(&Reason::BundleStale), "{reasons:?}");
    assert_eq!(bundle(&renewed).len(), 1);
    assert!(assess(&renewed, &policy(), now).is_usable());
}

#[test]
fn renew_before_must_leave_room_between_ca_renewals() {
    for bad in [Duration::ZERO, CA_VALIDITY / 2] {
        assert!(matches!(Policy::new("s", "ns", bad), Err(Error::RenewBefore(_))), "{bad:?}");
    }
    // Longer than a serving certificate lives: every check renews, which tests use.
    let eager = Policy::new("s", "ns", SERVING_VALIDITY + days(1)).unwrap();
    let material = renew(&Material::default(), &eager, SystemTime::now()).0;
    assert_eq!(renew(&material, &eager, SystemTime::now()).1, [Reason::ServingExpiring]);
}
