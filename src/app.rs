//! Startup: turns `stork serve` flags into running stores, driver, servers and background tasks,
//! and tears them down on SIGTERM/SIGINT.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    body::BodyLimits,
    cli::{DriverSetup, LimitArgs, MonitorArgs, SelfSignedArgs, ServeArgs},
    cluster::{self, ClusterView},
    driver::{
        Driver,
        csi::{CsiDriver, snapshots::CsiSnapshots},
        mock::MockDriver,
        openstorage::OsdDriver,
    },
    events::EventSink,
    extender::{self, http::ExtenderState, limits::ExtenderLimits},
    leader,
    metrics::Metrics,
    monitor,
    server::{self, ConnLimits, Health, Listen, Servers},
    snapshot,
    tls::{
        self,
        client_auth::{self, ClientAuth},
    },
    webhook::{WebhookConfig, WebhookState},
};

/// A started stork: servers plus background tasks, stopped together.
pub struct Running {
    /// Bound listener addresses.
    pub addrs: server::BoundAddrs,
    /// The mock driver, when that is the driver (the demo edits its file).
    pub mock: Option<Arc<MockDriver>>,
    servers: Servers,
    health: Health,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    /// Ends the leader election (and with it leader-only work) ahead of everything else.
    step_down: CancellationToken,
}

fn extender_limits(limits: &LimitArgs) -> ExtenderLimits {
    ExtenderLimits::new(
        BodyLimits::new(limits.extender_max_body, limits.extender_body_budget, limits.body_timeout),
        limits.extender_timeout,
        limits.extender_max_nodes,
        limits.extender_threads.unwrap_or_else(extender::limits::default_threads),
    )
}

/// Validates flags and starts everything. Fails fast with the offending flag or file.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    // Every cross-flag rule, before anything starts.
    let setup = args.check().map_err(anyhow::Error::msg)?;
    let ServeArgs {
        // In `setup`.
        driver: _,
        mock_topology: _,
        csi_drivers: _,
        csi_node_plugins: _,
        rack_label: _,
        osd: _,
        mock_state,
        csi_snapshot_class,
        objects,
        kubeconfig,
        listen,
        extender_listen,
        extender_client_ca,
        admin_listen,
        tls_cert,
        tls_key,
        namespace,
        self_signed,
        webhook_skip_annotation,
        webhook_exclude_namespace,
        webhook_claim_wait,
        limits,
        monitor,
    } = args;
    let self_signed = self_signed.enabled.then(|| self_signed_settings(namespace.clone(), self_signed));
    if let Some(settings) = &self_signed {
        settings.policy()?;
    }
    let cancel = CancellationToken::new();
    let step_down = cancel.child_token();
    let mut tasks = JoinSet::new();

    let metrics = Metrics::new();
    let live = objects.is_none();
    let (cluster, events, client) = match objects {
        Some(path) => (cluster::load_objects_file(&path)?, EventSink::log_only(), None),
        None => {
            let client = kube_client(kubeconfig).await?;
            let (view, writers) = ClusterView::new();
            tasks.spawn(cluster::run_reflectors(client.clone(), view.clone(), writers, cancel.clone()));
            let (events, drain) = EventSink::publishing(client.clone(), "stork", cancel.clone());
            tasks.spawn(drain);
            (view, events, Some(client))
        }
    };

    let (driver, mock): (Arc<dyn Driver>, _) = match setup {
        DriverSetup::Mock { topology: path } => {
            let mock = match mock_state {
                Some(state) => MockDriver::load_with_state_file(&path, &state)?,
                None => MockDriver::load(&path)?,
            };
            let mock = Arc::new(mock.with_error_counter(metrics.driver_config_errors.clone()));
            tasks.spawn(mock.clone().watch(cancel.clone()));
            (mock.clone(), Some(mock))
        }
        DriverSetup::Csi(config) => {
            // `check` refuses --driver csi with --objects.
            let client = client.as_ref().context("--driver csi needs a live cluster")?;
            let csi = CsiDriver::new(config, cluster.clone());
            csi.enable_snapshots(CsiSnapshots::new(
                client.clone(),
                cluster.clone(),
                csi_snapshot_class,
                namespace.clone(),
                std::time::Duration::from_secs(300),
            ));
            tasks.spawn(csi.clone().run(client.clone(), cancel.clone()));
            (csi, None)
        }
        DriverSetup::OpenStorage(config) => {
            // `check` refuses --driver openstorage with --objects.
            let client = client.as_ref().context("--driver openstorage needs a live cluster")?;
            let osd = OsdDriver::new(config, cluster.clone(), metrics.driver_api_errors.clone());
            tasks.spawn(osd.clone().run(Some(client.clone()), cancel.clone()));
            (osd, None)
        }
    };
    metrics.set_census(crate::driver::census(driver.clone()));

    if let Some(client) = &client {
        tasks.spawn(extender::placement::run(cluster.clone(), driver.clone(), metrics.clone(), cancel.clone()));
        if monitor.health_monitor || monitor.snapshot_controllers {
            let (election, leading) = leader_election(client, &namespace, &monitor, &metrics);
            tasks.spawn(election.run_until(step_down.clone()));
            if monitor.health_monitor {
                let m = monitor::Monitor {
                    client: client.clone(),
                    cluster: cluster.clone(),
                    driver: driver.clone(),
                    events: events.clone(),
                    metrics: metrics.clone(),
                    settings: monitor_settings(&monitor),
                };
                tasks.spawn(m.run(leading.clone(), cancel.clone()));
            }
            if monitor.snapshot_controllers {
                let ctx = snapshot::Context {
                    client: client.clone(),
                    cluster: cluster.clone(),
                    driver: driver.clone(),
                    events: events.clone(),
                    settings: snapshot::Settings {
                        rules: crate::rule::Settings {
                            retries: monitor.rule_exec_retries,
                            retry_interval: monitor.rule_exec_retry_interval,
                            pod_timeout: monitor.rule_exec_timeout,
                            ..crate::rule::Settings::default()
                        },
                        schedule: snapshot::ScheduleTiming {
                            zone: monitor.schedule_time_zone.clone(),
                            minute: monitor.schedule_test_minute,
                        },
                        ..snapshot::Settings::default()
                    },
                };
                tasks.spawn(snapshot::run(Arc::new(ctx), leading, cancel.clone()));
            }
        }
    }

    let client_auth = match extender_client_ca {
        Some(path) if path.as_os_str() == client_auth::SELF_SIGNED => Some(ClientAuth::self_signed()),
        Some(path) => {
            let auth = ClientAuth::from_file(&path);
            tasks.spawn(auth.clone().watch(cancel.clone()));
            Some(auth)
        }
        None => None,
    };
    let https = match (self_signed, tls_cert, tls_key) {
        (Some(settings), _, _) => {
            let client = client.context("--self-signed needs a kube client")?;
            let (resolver, rotation) = tls::self_signed::start(client, settings, client_auth.clone()).await?;
            tasks.spawn(rotation.run(cancel.clone()));
            Some((listen, tls::server_config(resolver, client_auth.as_ref())))
        }
        (None, Some(cert), Some(key)) => {
            let resolver = tls::ReloadingCertResolver::from_files(&cert, &key)?;
            tasks.spawn(tls::watch_and_reload(resolver.clone(), cert, key, cancel.clone()));
            Some((listen, tls::server_config(resolver, client_auth.as_ref())))
        }
        _ if extender_listen.is_some() => {
            tracing::info!(%listen, "no --tls-cert/--tls-key or --self-signed: HTTPS listener disabled; extender on plain HTTP only");
            None
        }
        _ => {
            tracing::warn!(%listen, "no --tls-cert/--tls-key or --self-signed: the HTTPS listener (webhooks, extender) is disabled");
            None
        }
    };
    let health = Health::new(cluster.clone()).with_driver(driver.clone());
    let webhook = WebhookState {
        cluster: cluster.clone(),
        driver: driver.clone(),
        config: Arc::new(WebhookConfig {
            skip_annotation: webhook_skip_annotation,
            excluded_namespaces: webhook_exclude_namespace,
            // Offline objects never change: nothing to wait for.
            claim_wait: if live { webhook_claim_wait } else { std::time::Duration::ZERO },
            body: BodyLimits::new(limits.webhook_max_body, limits.webhook_body_budget, limits.body_timeout),
        }),
        metrics: metrics.clone(),
    };
    tasks.spawn(crate::driver::node_index::run(driver.clone(), cluster.clone(), cancel.clone()));
    tasks.spawn(crate::driver::claims::run(driver.clone(), cluster.clone(), metrics.clone(), cancel.clone()));
    let extender = ExtenderState {
        cluster,
        driver,
        events,
        metrics: metrics.clone(),
        limits: extender_limits(&limits),
        // The plain listener shares the state: it is for loopback use only (see --help).
        client_auth,
    };
    let listen = Listen { https, extender: extender_listen, admin: admin_listen };
    let conn = ConnLimits {
        head_timeout: limits.header_timeout,
        tls_handshake_timeout: limits.tls_handshake_timeout,
        max_connections: limits.max_connections,
        max_requests_per_connection: limits.max_requests_per_connection,
    };
    let servers = server::start(listen, &conn, extender, webhook, health.clone(), metrics)?;
    tracing::info!(addrs = ?servers.addrs, "stork serving");
    Ok(Running { addrs: servers.addrs, mock, servers, health, tasks, cancel, step_down })
}

/// The election task (mirrored into the `stork_leader` gauge) and its "is leader" receiver.
fn leader_election(
    client: &kube::Client,
    namespace: &str,
    args: &MonitorArgs,
    metrics: &Arc<Metrics>,
) -> (Election, tokio::sync::watch::Receiver<bool>) {
    let settings = leader::Settings {
        name: args.leader_lease.clone(),
        namespace: namespace.to_string(),
        identity: leader::default_identity(),
        lease_duration: args.leader_lease_duration,
        renew_deadline: args.leader_renew_deadline,
        retry_period: args.leader_retry_period,
    };
    tracing::info!(identity = %settings.identity, lease = %settings.name, "leader election on");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let election = Election { client: client.clone(), settings, tx, metrics: metrics.clone() };
    (election, rx)
}

/// A configured leader election, not yet running.
struct Election {
    client: kube::Client,
    settings: leader::Settings,
    tx: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Election {
    async fn run_until(self, cancel: CancellationToken) {
        let mut rx = self.tx.subscribe();
        let gauge = self.metrics.monitor.leader.clone();
        let mirror = async move {
            while rx.changed().await.is_ok() {
                gauge.set(i64::from(*rx.borrow()));
            }
        };
        tokio::select! {
            _ = leader::run(self.client, self.settings, self.tx, cancel) => {}
            _ = mirror => {}
        }
    }
}

fn monitor_settings(args: &MonitorArgs) -> monitor::Settings {
    monitor::Settings {
        interval: args.monitor_interval,
        backoff_initial: args.monitor_backoff,
        backoff_checks: args.monitor_backoff_checks,
        batch_size: args.monitor_batch_size,
        batch_interval: args.monitor_batch_interval,
        max_down_fraction: args.monitor_max_down_fraction,
        max_deletions_per_minute: args.monitor_max_deletions_per_minute,
        dry_run: args.monitor_dry_run,
    }
}

fn self_signed_settings(namespace: String, args: SelfSignedArgs) -> tls::self_signed::Settings {
    let SelfSignedArgs { enabled: _, service_name, tls_secret, webhook_config, cert_renew_before, cert_check_interval } =
        args;
    tls::self_signed::Settings {
        namespace,
        service: service_name,
        secret: tls_secret,
        webhook_config,
        renew_before: cert_renew_before,
        check_interval: cert_check_interval,
    }
}

async fn kube_client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("failed to read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.context("failed to find a kubeconfig or in-cluster config")?,
    };
    Ok(kube::Client::try_from(config)?)
}

impl Running {
    /// Stops serving: readiness goes false and the leader steps down (releasing the Lease, so
    /// another replica takes over in one retry period instead of waiting out the lease while
    /// the listeners drain), then listeners drain, then tasks end.
    pub async fn stop(mut self) {
        self.health.stopping();
        self.step_down.cancel();
        self.servers.stop().await;
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
    }
}

/// `stork serve`: runs until a shutdown signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let running = start(args).await?;
    shutdown_signal().await;
    running.stop().await;
    Ok(())
}
