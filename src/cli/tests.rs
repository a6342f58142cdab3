//! Tests of the command line: defaults, conflicts, validation and duration parsing.

use super::*;

#[test]
fn version_names_the_package_version_and_the_git_revision() {
    use clap::CommandFactory;
    let printed = Cli::command().render_version();
    assert_eq!(printed.trim_end(), format!("stork {} (rev {GIT_REVISION})", env!("CARGO_PKG_VERSION")));
    // A revision is 12 hex digits from git or the build argument, or `unknown` without either.
    assert!(!GIT_REVISION.is_empty() && !GIT_REVISION.contains(char::is_whitespace), "{GIT_REVISION:?}");
}

#[test]
fn a_certificate_without_its_key_is_rejected() {
    let err = Cli::try_parse_from(["stork", "serve", "--driver", "mock", "--tls-cert", "c.pem"]).unwrap_err();
    assert!(err.to_string().contains("--tls-key"), "{err}");
}

#[test]
fn serve_defaults_match_the_pinned_interface() {
    let cli = Cli::try_parse_from(["stork", "serve", "--driver", "mock"]).unwrap();
    let Command::Serve(s) = cli.command else { panic!("not serve") };
    let s = *s;
    assert_eq!(s.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(s.admin_listen.to_string(), "0.0.0.0:9090");
    assert!(s.extender_listen.is_none());
    assert_eq!(s.namespace, "kube-system");
    let defaults = SelfSignedArgs::default();
    assert!(!s.self_signed.enabled);
    assert_eq!(
        (s.self_signed.service_name, s.self_signed.tls_secret, s.self_signed.webhook_config),
        (defaults.service_name, defaults.tls_secret, defaults.webhook_config)
    );
    assert_eq!(s.self_signed.cert_renew_before, defaults.cert_renew_before);
    assert_eq!(s.self_signed.cert_check_interval, defaults.cert_check_interval);
    let m = MonitorArgs::default();
    assert!(s.monitor.health_monitor);
    assert_eq!(
        (s.monitor.monitor_interval, s.monitor.monitor_backoff, s.monitor.monitor_batch_interval),
        (m.monitor_interval, m.monitor_backoff, m.monitor_batch_interval)
    );
    assert_eq!(
        (s.monitor.monitor_backoff_checks, s.monitor.monitor_batch_size, s.monitor.monitor_max_deletions_per_minute),
        (m.monitor_backoff_checks, m.monitor_batch_size, m.monitor_max_deletions_per_minute)
    );
    assert_eq!(s.monitor.monitor_max_down_fraction, m.monitor_max_down_fraction);
    assert_eq!(
        (s.monitor.leader_lease_duration, s.monitor.leader_renew_deadline, s.monitor.leader_retry_period),
        (m.leader_lease_duration, m.leader_renew_deadline, m.leader_retry_period)
    );
    assert!(s.monitor.validate().is_ok());
}

#[test]
fn short_monitor_intervals_and_unsound_lease_timings_are_rejected() {
    let parse = |extra: &[&str]| {
        let cli = Cli::try_parse_from(["stork", "serve", "--driver", "mock"].iter().chain(extra)).unwrap();
        let Command::Serve(s) = cli.command else { panic!("not serve") };
        s.monitor.validate()
    };
    assert!(parse(&["--monitor-interval", "10s"]).unwrap_err().contains("30 seconds"));
    assert!(parse(&["--monitor-interval", "2s", "--monitor-allow-short-interval"]).is_ok());
    assert!(parse(&["--leader-renew-deadline", "20s"]).is_err());
    assert!(parse(&["--monitor-max-down-fraction", "0"]).is_err());
    assert!(parse(&["--health-monitor=false"]).is_ok());
}

#[test]
fn self_signed_is_rejected_with_certificate_files_or_an_objects_file() {
    for extra in [["--tls-cert", "c.pem"], ["--tls-key", "k.pem"], ["--objects", "o.yaml"]] {
        let args = ["stork", "serve", "--driver", "mock", "--self-signed"].into_iter().chain(extra);
        let err = Cli::try_parse_from(args).unwrap_err();
        assert!(err.to_string().contains("--self-signed"), "{err}");
    }
}

#[test]
fn durations_are_seconds_or_unit_sums() {
    let day = 24 * 3600;
    for (text, secs) in
        [("90", 90), ("90s", 90), ("15m", 900), ("720h", 30 * day), ("30d", 30 * day), ("1d12h", 36 * 3600)]
    {
        assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
    }
    assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    for bad in ["", "d", "3x", "-5s", "5 parsecs", "99999999999999999999d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn flag_combinations_that_cannot_work_fail_before_anything_starts_with_the_flags_named() {
    let check = |args: &[&str]| {
        let cli = Cli::try_parse_from([&["stork", "serve"][..], args].concat()).expect("parses");
        let Command::Serve(s) = cli.command else { panic!("not serve") };
        s.check()
    };
    for (args, says) in [
        (&["--driver", "mock"][..], "--mock-topology"),
        (&["--driver", "csi", "--objects", "o.yaml"], "cannot run with --objects"),
        (&["--driver", "csi"], "driver"),
        (&["--driver", "csi", "--csi-driver", "a", "--csi-driver", "a"], "a"),
        (&["--driver", "mock", "--mock-topology", "t", "--extender-client-ca", "self-signed"], "--self-signed"),
        (&["--driver", "mock", "--mock-topology", "t", "--monitor-interval", "5s"], "--monitor-interval"),
        (&["--driver", "mock", "--mock-topology", "t", "--extender-max-nodes", "0"], "--extender-max-nodes"),
        (&["--driver", "openstorage", "--objects", "o.yaml"], "cannot run with --objects"),
        (&["--driver", "portworx", "--osd-endpoint", "px"], "--osd-endpoint"),
        (&["--driver", "portworx", "--osd-endpoint", "https://px:9020"], "--osd-ca"),
        (&["--driver", "portworx", "--osd-service", "portworx-service"], "--osd-service"),
        (&["--driver", "portworx", "--osd-poll-interval", "100ms"], "--osd-poll-interval"),
    ] {
        let err = check(args).expect_err(&format!("{args:?} accepted"));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(matches!(check(&["--driver", "mock", "--mock-topology", "t"]), Ok(DriverSetup::Mock { .. })));
    assert!(matches!(check(&["--driver", "csi", "--csi-driver", "a.example.com"]), Ok(DriverSetup::Csi(_))));
    let Ok(DriverSetup::OpenStorage(osd)) = check(&["--driver", "portworx", "--osd-token-file", "/t"]) else {
        panic!("portworx is openstorage")
    };
    assert_eq!(
        osd.endpoint,
        crate::driver::openstorage::EndpointSource::Service {
            namespace: "kube-system".into(),
            name: "portworx-service".into(),
            port: "px-sdk".into(),
        }
    );
    assert_eq!(osd.credentials, Some(crate::driver::openstorage::Credentials::TokenFile("/t".into())));
    let Ok(DriverSetup::OpenStorage(osd)) = check(&["--driver", "portworx", "--osd-shared-secret-file", "/s"]) else {
        panic!("a shared secret instead of a token")
    };
    assert_eq!(
        osd.credentials,
        Some(crate::driver::openstorage::Credentials::SharedSecret {
            file: "/s".into(),
            issuer: "stork.openstorage.io".into()
        })
    );
}
