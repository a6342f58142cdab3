//! `stork-bench serve`: the fixtures of one cluster size and a stork serving them, left running
//! for manual runs and profiling (perf, flamegraph) of exactly what the suite measures.

use std::{io::Write, path::Path, time::Duration};

use stork_synth::SynthCluster;

use crate::{
    fixtures::{self, Mode},
    plan::CLUSTER_VOLUMES,
    stork::{Certs, Stork},
};

/// Writes the files into `dir`, starts stork, prints how to load it, and waits until killed.
pub fn serve(bin: &Path, dir: &Path, nodes: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let certs = Certs::issue(bin, dir)?;
    let files = fixtures::write_cluster(dir, nodes, CLUSTER_VOLUMES, CLUSTER_VOLUMES)?;
    let cluster = SynthCluster::new(nodes, CLUSTER_VOLUMES);
    let mut bodies = vec![];
    for mode in [Mode::Names, Mode::Nodes] {
        for volumes in [1, 4, 8] {
            bodies.push(fixtures::write_body(dir, &cluster, mode, volumes)?.0);
        }
    }
    let mut stork = Stork::start(bin, dir, &files.objects, &files.topology, &certs)?;
    stork.wait_ready(Duration::from_secs(300))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "stork pid {} serving {nodes} nodes; files in {}", stork.pid(), dir.display())?;
    writeln!(out, "extender (HTTP/1.1): http://{}/filter  /prioritize", stork.extender)?;
    writeln!(out, "HTTPS (HTTP/2 with --http2): https://{}/filter  /prioritize  /mutate", stork.https)?;
    writeln!(out, "bodies:")?;
    for b in &bodies {
        writeln!(out, "  {}", b.display())?;
    }
    writeln!(
        out,
        "e.g. oha --no-tui -m POST -T application/json -D {} -c 1 -z 5s http://{}/filter",
        bodies[0].display(),
        stork.extender
    )?;
    writeln!(out, "Ctrl-C stops stork and this command.")?;
    out.flush()?;
    let status = stork.wait()?;
    anyhow::bail!("stork exited ({status}):\n{}", stork.log_tail())
}
