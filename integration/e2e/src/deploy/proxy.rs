//! A Service without kube-proxy: a loopback listener that forwards each connection to the next
//! backend (a local pod's port) that accepts it, round robin. A stopped replica refuses
//! connections and is skipped, as an endpoint that left the Service would be.

use std::{
    net::TcpListener as StdListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

/// One Service port forwarded on `127.0.0.1:<port>`.
pub struct ServiceProxy {
    /// The loopback port standing in for the Service's port.
    pub port: u16,
    backends: Arc<Mutex<Vec<u16>>>,
}

impl ServiceProxy {
    /// Listens on `127.0.0.1:<port>` (0 picks one) on a thread of its own, so it keeps
    /// forwarding while the test thread blocks.
    pub fn start(port: u16) -> Result<Self> {
        let listener = StdListener::bind(("127.0.0.1", port)).with_context(|| format!("bind 127.0.0.1:{port}"))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let backends = Arc::new(Mutex::new(Vec::new()));
        let shared = backends.clone();
        std::thread::Builder::new().name(format!("service-proxy-{port}")).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            rt.block_on(serve(listener, shared));
        })?;
        Ok(Self { port, backends })
    }

    /// Replaces the endpoints (local ports).
    pub fn set_backends(&self, ports: Vec<u16>) {
        *self.backends.lock().expect("lock") = ports;
    }
}

async fn serve(listener: StdListener, backends: Arc<Mutex<Vec<u16>>>) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    let next = Arc::new(AtomicUsize::new(0));
    while let Ok((mut inbound, _)) = listener.accept().await {
        let ports = backends.lock().expect("lock").clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            for i in 0..ports.len() {
                let port = ports[(start + i) % ports.len()];
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}
