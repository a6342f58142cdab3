//! The HTTP listeners: HTTPS (webhooks and extender), optional plain-HTTP extender, and the
//! plain-HTTP admin port. Each surface configures its own routes; nothing is shared globally.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use tokio::task::JoinHandle;

use crate::{cluster::ClusterView, extender::http::ExtenderState, metrics::Metrics, webhook::WebhookState};

/// Seconds given to in-flight requests when stopping.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

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
}

impl Health {
    /// Readiness follows the cluster caches, and turns false as soon as shutdown begins.
    pub fn new(cluster: ClusterView) -> Self {
        Self { cluster, stopping: Arc::new(AtomicBool::new(false)) }
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
        } else {
            Ok(())
        }
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
    extender: ExtenderState,
    webhook: WebhookState,
    health: Health,
    metrics: Arc<Metrics>,
) -> Result<Servers, Error> {
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
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // Without it HTTP/2 frames written separately wait for the client's delayed ACK:
        // 40 ms on every extender call, measured in BENCHMARKS.md.
        .tcp_nodelay(true)
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
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
            .tcp_nodelay(true)
            .listen(lst)
            .map_err(|source| Error::Bind { addr, source })?
            .run();
        servers.push(server);
    }
    let lst = bind(listen.admin)?;
    servers.addrs.admin = lst.local_addr().map_err(|source| Error::Bind { addr: listen.admin, source })?;
    let server = HttpServer::new(move || App::new().configure(admin_routes(health.clone(), metrics.clone())))
        .workers(1)
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
    match health.readiness() {
        Ok(()) => HttpResponse::Ok().body("ok\n"),
        Err(why) => HttpResponse::ServiceUnavailable().body(format!("{why}\n")),
    }
}

async fn metrics_handler(metrics: web::Data<Arc<Metrics>>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(metrics.encode())
}
