//! `stork-cluster up`: starts the local cluster and stork, prints how to use it, and keeps it
//! running until SIGTERM/SIGINT (`just cluster-down` sends SIGTERM).

use anyhow::Result;
use stork_e2e::Cluster;

fn main() -> Result<()> {
    let cluster = Cluster::start()?;
    let info = &cluster.info;
    println!("cluster and stork are running; logs and certs in {}", info.dir.display());
    println!("stop everything with: just cluster-down");
    println!("export KUBECONFIG={}", info.kubeconfig.display());
    println!("export STORK_MOCK_TOPOLOGY={}", info.topology.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(stork::app::shutdown_signal());
    cluster.shutdown();
    Ok(())
}
