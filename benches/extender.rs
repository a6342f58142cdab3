//! Filter + prioritize as the scheduler drives them (decode → decide → encode), in-process,
//! at 100 / 500 / 1,000 / 5,000 nodes, names and full-node modes, 1 and 4 volumes per pod; and
//! the node index builder's rebuild at 1,000 / 5,000 nodes.
//!
//! On a shared machine set `STORK_BENCH_CPU_TIME=1`: iterations are then timed in thread CPU
//! time, which other processes competing for the cores do not inflate (their cache pollution
//! still does, a little).
//!
//! `STORK_BENCH_PROFILE=names/1vol/5000[/filter|/prioritize]` skips criterion and runs that case
//! 20 times, for a profiler (`valgrind --tool=callgrind`, `perf record`): instruction counts
//! are the steadiest figures on a noisy machine.

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use stork::{
    driver::mock::MockDriver,
    events::EventSink,
    extender::{
        http::{ExtenderState, filter_body, prioritize_body},
        limits::Deadline,
        wire::ExtenderArgs,
    },
    metrics::Metrics,
};
use stork_synth::SynthCluster;

/// The extender's state with its node index built, as `serve`'s index builder keeps it.
fn state(cluster: &SynthCluster) -> ExtenderState {
    let state = ExtenderState {
        cluster: cluster.objects.clone().into_view(),
        driver: Arc::new(MockDriver::from_topology(cluster.topology.clone())),
        events: EventSink::log_only(),
        metrics: Metrics::new(),
        limits: Default::default(),
        client_auth: None,
    };
    stork::driver::node_index::refresh(state.driver.as_ref(), &state.cluster);
    stork::driver::claims::refresh(state.driver.as_ref(), &state.cluster);
    state
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec (64-bit Linux layout) for the call's duration.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn bench(c: &mut Criterion) {
    let cpu_time = std::env::var_os("STORK_BENCH_CPU_TIME").is_some_and(|v| v != "0");
    let mut group = c.benchmark_group("filter+prioritize");
    group.sample_size(20);
    for nodes in [100usize, 500, 1_000, 5_000] {
        let cluster = SynthCluster::new(nodes, 8);
        let st = state(&cluster);
        for volumes in [1usize, 4] {
            for (mode, body) in [("names", cluster.names_args(volumes)), ("nodes", cluster.nodes_args(volumes))] {
                let id = BenchmarkId::new(format!("{mode}/{volumes}vol"), nodes);
                let once = || {
                    let f = filter_body(&st, black_box(&body), Deadline::NONE).expect("filter");
                    let p = prioritize_body(&st, black_box(&body), Deadline::NONE).expect("prioritize");
                    black_box((f, p));
                };
                group.throughput(Throughput::Bytes(body.len() as u64));
                group.bench_function(id, |b| {
                    if cpu_time {
                        b.iter_custom(|iters| {
                            let start = thread_cpu_time();
                            (0..iters).for_each(|_| once());
                            thread_cpu_time() - start
                        })
                    } else {
                        b.iter(once)
                    }
                });
            }
        }
    }
    group.finish();
    decode(c);
    index_rebuild(c);
    claim_index(c);
}

/// Decoding alone (the body into `ExtenderArgs`, as both verbs start), 1 volume per pod: set
/// against `filter+prioritize/…/1vol/…` (two decodes) it gives decoding's share of a call.
fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    for nodes in [500usize, 5_000] {
        let cluster = SynthCluster::new(nodes, 1);
        for (mode, body) in [("names", cluster.names_args(1)), ("nodes", cluster.nodes_args(1))] {
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(BenchmarkId::new(mode, nodes), |b| {
                b.iter(|| black_box(serde_json::from_slice::<ExtenderArgs<'_>>(black_box(&body)).expect("decode")))
            });
        }
    }
    group.finish();
}

/// The node index builder's work, off the request path since requests stopped building it:
/// a first build, and a rebuild after a Node change (every unchanged entry reused).
fn index_rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("node-index");
    group.sample_size(20);
    for nodes in [1_000usize, 5_000] {
        let cluster = SynthCluster::new(nodes, 8);
        let st = state(&cluster);
        let inventory = st.driver.nodes().expect("inventory");
        let published = inventory.node_index(&st.cluster).expect("built by state()");
        let generation = st.cluster.node_generation();
        group.bench_function(BenchmarkId::new("first-build", nodes), |b| {
            b.iter(|| black_box(inventory.build_kube_nodes(&st.cluster, generation, None)))
        });
        group.bench_function(BenchmarkId::new("rebuild-after-a-change", nodes), |b| {
            b.iter(|| black_box(inventory.build_kube_nodes(&st.cluster, generation + 1, Some(&published))))
        });
    }
    group.finish();
}

/// Claims in the claim-index benchmarks (the memory goal's cluster size).
const CLAIMS: usize = 50_000;

/// The claim index builder's work: a whole build, and the update after one PVC changed (the
/// change is written to the cache as a watch event would write it, then folded in). Besides
/// criterion's estimate, 1,000 single updates are timed one by one and their percentiles
/// written to target/criterion/claims-percentiles.json for the goal "p99 < 5 ms".
fn claim_index(c: &mut Criterion) {
    use stork::driver::{
        Driver,
        claims::{Refreshed, refresh},
    };
    let cluster = SynthCluster::new(1_000, CLAIMS);
    let (view, mut updates) = cluster.objects.clone().into_view_with_updates();
    let driver = MockDriver::from_topology(cluster.topology.clone());
    // Built once up front too, so the updates below have an index to fold into even when a
    // filter skips the whole-build benchmark.
    refresh(&driver, &view);
    let mut group = c.benchmark_group("claims");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("first-build", CLAIMS), |b| {
        b.iter(|| {
            driver.claim_index().expect("mock keeps a claim index").volumes_changed();
            let refreshed = refresh(&driver, &view);
            assert_eq!(refreshed, Refreshed::Whole { claims: CLAIMS });
        })
    });
    let mut pvc = cluster.objects.pvcs[CLAIMS / 2].clone();
    let mut n = 0u64;
    let mut one_change = || {
        n += 1;
        pvc.metadata.annotations.get_or_insert_with(Default::default).insert("bench/generation".into(), n.to_string());
        updates.apply_pvc(pvc.clone());
        let refreshed = refresh(&driver, &view);
        assert_eq!(refreshed, Refreshed::Incremental { claims: 1 });
    };
    group.sample_size(50);
    group.bench_function(BenchmarkId::new("rebuild-after-one-pvc", CLAIMS), |b| b.iter(&mut one_change));
    group.finish();
    let mut times: Vec<Duration> = (0..1_000)
        .map(|_| {
            let start = std::time::Instant::now();
            one_change();
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e3;
    let out = serde_json::json!({
        "id": format!("claims/rebuild-after-one-pvc/{CLAIMS}"),
        "samples": times.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0),
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion/claims-percentiles.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("criterion directory");
    std::fs::write(&path, out.to_string()).expect("write claim percentiles");
}

/// Runs one case a fixed number of times (see the module doc).
fn profile(spec: &str) {
    let parts: Vec<&str> = spec.split('/').collect();
    let [mode, volumes, nodes, rest @ ..] = parts.as_slice() else {
        panic!("STORK_BENCH_PROFILE is mode/Nvol/nodes[/verb], got {spec:?}");
    };
    let volumes: usize = volumes.trim_end_matches("vol").parse().expect("volumes");
    let cluster = SynthCluster::new(nodes.parse().expect("nodes"), 8);
    let st = state(&cluster);
    let body = if *mode == "names" { cluster.names_args(volumes) } else { cluster.nodes_args(volumes) };
    let verb = rest.first().copied().unwrap_or("both");
    let once = || {
        if verb != "prioritize" {
            black_box(filter_body(&st, black_box(&body), Deadline::NONE).expect("filter"));
        }
        if verb != "filter" {
            black_box(prioritize_body(&st, black_box(&body), Deadline::NONE).expect("prioritize"));
        }
    };
    once();
    (0..20).for_each(|_| once());
}

criterion_group!(benches, bench);

fn main() {
    match std::env::var("STORK_BENCH_PROFILE") {
        Ok(spec) => profile(&spec),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
