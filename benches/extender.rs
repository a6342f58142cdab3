//! Filter + prioritize as the scheduler drives them (decode → decide → encode), in-process,
//! at 100 / 1,000 / 5,000 nodes, names and full-node modes, 1 and 4 volumes per pod.

use std::{hint::black_box, sync::Arc};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stork::{
    driver::mock::MockDriver,
    events::EventSink,
    extender::http::{ExtenderState, filter_body, prioritize_body},
    metrics::Metrics,
    synth::SynthCluster,
};

fn state(cluster: &SynthCluster) -> ExtenderState {
    ExtenderState {
        cluster: cluster.objects.clone().into_view(),
        driver: Arc::new(MockDriver::from_topology(cluster.topology.clone())),
        events: EventSink::log_only(),
        metrics: Metrics::new(),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("filter+prioritize");
    group.sample_size(20);
    for nodes in [100usize, 1_000, 5_000] {
        let cluster = SynthCluster::new(nodes, 8);
        let st = state(&cluster);
        for volumes in [1usize, 4] {
            for (mode, body) in [("names", cluster.names_args(volumes)), ("nodes", cluster.nodes_args(volumes))] {
                group.throughput(Throughput::Bytes(body.len() as u64));
                let id = BenchmarkId::new(format!("{mode}/{volumes}vol"), nodes);
                group.bench_with_input(id, &body, |b, body| {
                    b.iter(|| {
                        let f = filter_body(&st, black_box(body)).expect("filter");
                        let p = prioritize_body(&st, black_box(body)).expect("prioritize");
                        black_box((f, p))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
