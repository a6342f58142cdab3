//! The HTTP listeners: HTTPS (webhooks and extender), optional plain-HTTP extender, and the
//! plain-HTTP admin port. Each surface configures its own routes; nothing is shared globally.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, web};
use tokio::task::JoinHandle;

use crate::{
    cluster::ClusterView, extender::http::ExtenderState, metrics::Metrics, tls::client_auth::ClientAuth,
    webhook::WebhookState,
};

/// Seconds given to in-flight requests when stopping.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Connection-level bounds of the HTTPS and plain extender listeners.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time for a request head to arrive (actix answers 408 past it).
    pub head_timeout: Duration,
    /// Time for a TLS handshake to finish; a client that never sends its ClientHello is cut off.
    pub tls_handshake_timeout: Duration,
    /// Open connections per listener; past it the listener stops accepting until some close.
    pub max_connections: usize,
    /// Requests one connection may have in flight at once (HTTP/2 multiplexes them; actix-http
    /// cannot advertise `SETTINGS_MAX_CONCURRENT_STREAMS`, so the bound is enforced per request).
    pub max_requests_per_connection: usize,
}

impl Default for ConnLimits {
    /// The flag defaults.
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(5),
            tls_handshake_timeout: Duration::from_secs(3),
            max_connections: 10_000,
            max_requests_per_connection: 100,
        }
    }
}

/// Requests in flight on one connection and their ceiling (set up by [`on_connect`]).
#[derive(Clone)]
struct ConnLoad {
    in_flight: Arc<AtomicUsize>,
    max: usize,
}

/// A request's place among its connection's in-flight requests; freed on drop.
pub struct ConnSlot(Option<Arc<AtomicUsize>>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Takes a slot among the connection's in-flight requests; `None` when the connection has
/// [`ConnLimits::max_requests_per_connection`] in flight already. Connections not set up by
/// [`on_connect`] (tests) are not counted.
pub fn conn_slot(req: &HttpRequest) -> Option<ConnSlot> {
    let Some(load) = req.conn_data::<ConnLoad>() else {
        return Some(ConnSlot(None));
    };
    let n = load.in_flight.fetch_add(1, Ordering::AcqRel);
    let slot = ConnSlot(Some(load.in_flight.clone()));
    (n < load.max).then_some(slot)
}

/// Per-connection state of the HTTPS and extender listeners: the in-flight counter, and whether
/// the client showed a verified certificate.
fn on_connect(max: usize) -> impl Fn(&dyn std::any::Any, &mut actix_web::dev::Extensions) + Send + Sync + 'static {
    move |conn, ext| {
        ext.insert(ConnLoad { in_flight: Arc::default(), max });
        ClientAuth::on_connect(conn, ext);
    }
}

/// Errors starting the servers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What `/readyz` reports on.
#[derive(Clone)]
pub struct Health {
    cluster: ClusterView,
    stopping: Arc<AtomicBool>,
    driver: Option<Arc<dyn crate::driver::Driver>>,
    // Latched: readiness waits for the first node index only, never for a rebuild.
    indexed: Arc<AtomicBool>,
}

impl Health {
    /// Readiness follows the cluster caches, and turns false as soon as shutdown begins.
    pub fn new(cluster: ClusterView) -> Self {
        Self { cluster, stopping: Arc::new(AtomicBool::new(false)), driver: None, indexed: Arc::default() }
    }

    /// Also makes readiness wait for the first node index of a driver with nodes (built off the
    /// request path by `driver::node_index`), so no request is served before it. Adds the
    /// driver's configuration problems to `/readyz` as warnings. They leave the
    /// replica ready: it serves the last good configuration, and taking it out of the Service
    /// would turn a bad file into an outage of every pod creation and scheduling decision.
    pub fn with_driver(mut self, driver: Arc<dyn crate::driver::Driver>) -> Self {
        self.driver = Some(driver);
        self
    }

    /// The driver's configuration problem, and why its nodes are unknown (an SDK that cannot be
    /// read): the replica stays ready, placing without driver state, and says why here.
    fn warnings(&self) -> Option<String> {
        let driver = self.driver.as_ref()?;
        let problems: Vec<String> =
            driver.config_problem().into_iter().chain(driver.nodes().err().map(|e| e.to_string())).collect();
        (!problems.is_empty()).then(|| problems.join("\nwarning: "))
    }

    /// Marks the process as shutting down.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            Err("shutting down".into())
        } else if !self.cluster.is_synced() {
            Err(format!("cluster caches not synced yet: {:?}", self.cluster.counts()))
        } else if !self.first_index_published() {
            Err("node index not built yet".into())
        } else {
            Ok(())
        }
    }

    /// Whether the first node index is out, or none is needed (no driver, a driver without
    /// nodes or one that cannot answer: the extender then reads the cache directly).
    fn first_index_published(&self) -> bool {
        if self.indexed.load(Ordering::Acquire) {
            return true;
        }
        let pending =
            self.driver.as_ref().and_then(|d| d.nodes().ok()).is_some_and(|inventory| {
                !inventory.nodes().is_empty() && inventory.node_index(&self.cluster).is_none()
            });
        if !pending {
            self.indexed.store(true, Ordering::Release);
        }
        !pending
    }
}

/// Where each listener ended up (ports may be chosen by the OS).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    /// HTTPS listener, if TLS is configured.
    pub https: Option<SocketAddr>,
    /// Plain-HTTP extender listener, if requested.
    pub extender: Option<SocketAddr>,
    /// Admin listener.
    pub admin: SocketAddr,
}

/// Listener addresses and TLS settings.
pub struct Listen {
    /// HTTPS address with its rustls config; `None` disables HTTPS.
    pub https: Option<(SocketAddr, rustls::ServerConfig)>,
    /// Plain-HTTP extender address.
    pub extender: Option<SocketAddr>,
    /// Admin address.
    pub admin: SocketAddr,
}

/// Running servers.
pub struct Servers {
    /// Bound addresses.
    pub addrs: BoundAddrs,
    handles: Vec<ServerHandle>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })
}

/// Binds and starts every listener. Signals are handled by the caller, not by actix.
pub fn start(
    listen: Listen,
    limits: &ConnLimits,
    extender: ExtenderState,
    webhook: WebhookState,
    health: Health,
    metrics: Arc<Metrics>,
) -> Result<Servers, Error> {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per_worker = limits.max_connections.div_ceil(workers).max(1);

    let mut servers = Servers {
        addrs: BoundAddrs { https: None, extender: None, admin: listen.admin },
        handles: vec![],
        tasks: vec![],
    };
    if let Some((addr, tls)) = listen.https {
        let lst = bind(addr)?;
        servers.addrs.https = lst.local_addr().ok();
        let ext = extender.clone();
        let server = HttpServer::new(move || {
            App::new()
                .configure(crate::extender::http::configure(ext.clone()))
                .configure(crate::webhook::review::configure(webhook.clone()))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // Without it HTTP/2 frames written separately wait for the client's delayed ACK:
        // 40 ms on every extender call, measured in BENCHMARKS.md.
        .tcp_nodelay(true)
        .max_connections(per_worker)
        // A burst of new connections (every API server replica's webhook client at once) waits
        // in the kernel's queue instead of being refused; the kernel caps it at somaxconn.
        .backlog(4096)
        // actix holds at most 256 TLS handshakes in progress per worker by default, and a client
        // that never sends its ClientHello holds one until the handshake timeout: 1,200 such
        // connections made every new webhook connection wait seconds. A pending handshake
        // costs nothing until bytes arrive, so the connection limit bounds them instead.
        .max_connection_rate(per_worker)
        .client_request_timeout(limits.head_timeout)
        .tls_handshake_timeout(limits.tls_handshake_timeout)
        .on_connect(on_connect(limits.max_requests_per_connection))
        .listen_rustls_0_23(lst, tls)
        .map_err(|source| Error::Bind { addr, source })?
        .run();
        servers.push(server);
    }
    if let Some(addr) = listen.extender {
        let lst = bind(addr)?;
        servers.addrs.extender = lst.local_addr().ok();
        let ext = extender.clone();
        let server = HttpServer::new(move || App::new().configure(crate::extender::http::configure(ext.clone())))
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
            .tcp_nodelay(true)
            .max_connections(per_worker)
            .backlog(4096)
            .client_request_timeout(limits.head_timeout)
            .on_connect(on_connect(limits.max_requests_per_connection))
            .listen(lst)
            .map_err(|source| Error::Bind { addr, source })?
            .run();
        servers.push(server);
    }
    let lst = bind(listen.admin)?;
    servers.addrs.admin = lst.local_addr().map_err(|source| Error::Bind { addr: listen.admin, source })?;
    let server = HttpServer::new(move || {
        App::new()
            .configure(admin_routes(health.clone(), metrics.clone()))
            .configure(crate::extender::explain::configure(extender.clone()))
    })
    .workers(1)
    .max_connections(256)
    .client_request_timeout(limits.head_timeout)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(lst)
    .map_err(|source| Error::Bind { addr: listen.admin, source })?
    .run();
    servers.push(server);
    Ok(servers)
}

impl Servers {
    fn push(&mut self, server: actix_web::dev::Server) {
        self.handles.push(server.handle());
        self.tasks.push(tokio::spawn(server));
    }

    /// Stops every listener gracefully and waits for them.
    pub async fn stop(self) {
        for h in &self.handles {
            h.stop(true).await;
        }
        for t in self.tasks {
            match t.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "server task failed"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn admin_routes(health: Health, metrics: Arc<Metrics>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(health))
            .app_data(web::Data::new(metrics))
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok\n") }))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_handler));
    }
}

async fn readyz(health: web::Data<Health>) -> HttpResponse {
    let warning = health.warnings().map(|w| format!("warning: {w}\n")).unwrap_or_default();
    match health.readiness() {
        Ok(()) => HttpResponse::Ok().body(format!("ok\n{warning}")),
        Err(why) => HttpResponse::ServiceUnavailable().body(format!("{why}\n{warning}")),
    }
}

async fn metrics_handler(metrics: web::Data<Arc<Metrics>>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{World, dnode};

    #[test]
    fn readiness_waits_for_the_first_node_index_and_only_the_first() {
        let (cluster, driver) = World::new().driver_nodes([dnode("n1")]).build();
        let driver: Arc<dyn crate::driver::Driver> = Arc::new(driver);
        let health = Health::new(cluster.clone()).with_driver(driver.clone());
        assert_eq!(health.readiness(), Err("node index not built yet".to_string()));
        crate::driver::node_index::refresh(driver.as_ref(), &cluster);
        assert_eq!(health.readiness(), Ok(()));
        // Latched: a view or inventory without an index yet (the builder catches up within
        // moments) does not take a ready replica out of its Service.
        let (other, _) = World::new().driver_nodes([dnode("n2")]).build();
        let health = Health { cluster: other, ..health };
        assert_eq!(health.readiness(), Ok(()));
    }

    #[test]
    fn a_driver_whose_nodes_are_unknown_stays_ready_and_says_why() {
        let (cluster, _) = World::new().build();
        let config = crate::driver::openstorage::OsdConfig::new(Some("127.0.0.1:1"), "a/b", "px-sdk", None).unwrap();
        let driver = crate::driver::openstorage::OsdDriver::new(config, cluster.clone(), Default::default());
        let health = Health::new(cluster).with_driver(driver);
        assert_eq!(health.readiness(), Ok(()));
        let warning = health.warnings().unwrap_or_default();
        assert!(warning.contains("storage driver openstorage is unavailable"), "{warning}");
    }

    #[test]
    fn a_driver_without_nodes_needs_no_index() {
        let (cluster, driver) = World::new().build();
        let health = Health::new(cluster).with_driver(Arc::new(driver));
        assert_eq!(health.readiness(), Ok(()));
    }
}
