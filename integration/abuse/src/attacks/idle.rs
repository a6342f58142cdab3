//! Attack 4, idle connections: 2,000 TCP connections to the HTTPS port that never send a
//! ClientHello, kept open (reopened when the server drops one, as a slowloris client does), then
//! 300 reviews on fresh TLS connections.
//!
//! Asserted: webhook p99 < 100 ms and every review answered.

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use stork_bench::stork::Extra;

use crate::{
    harness::Ctx,
    latency::{self, Pace},
    report::Outcome,
    wait::Stop,
};

/// Idle connections held.
const IDLE: usize = 2_000;
/// Reviews sent while they are held.
const REVIEWS: usize = 300;
/// Reviews a second, each on a fresh connection.
const RATE: f64 = 50.0;

fn open(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// What keeping the connections open took.
#[derive(Debug, Default)]
struct Kept {
    /// Connections the server closed (each reopened).
    closed_by_server: usize,
    /// When the first one was closed, since the attack began.
    first_close: Option<Duration>,
    /// Reopens that failed (retried on the next round).
    reopen_failures: usize,
}

/// Every 200 ms, reopens the connections the server closed, until `stop`.
fn keep_open(idle: &mut [TcpStream], addr: SocketAddr, began: Instant, stop: &Stop) -> Kept {
    let mut kept = Kept::default();
    let mut byte = [0u8; 1];
    loop {
        for s in idle.iter_mut() {
            let alive = match s.peek(&mut byte) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == ErrorKind::WouldBlock,
            };
            if !alive {
                kept.closed_by_server += 1;
                kept.first_close.get_or_insert(began.elapsed());
                match open(addr) {
                    Ok(fresh) => *s = fresh,
                    Err(_) => kept.reopen_failures += 1,
                }
            }
        }
        if stop.wait(Duration::from_millis(200)) {
            return kept;
        }
    }
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let target = ctx.start_seed("idle", &Extra::default())?;
    let addr = target.https.addr;
    let began = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    let mut refused = 0;
    while idle.len() < IDLE && refused < 100 && began.elapsed() < Duration::from_secs(30) {
        match open(addr) {
            Ok(s) => idle.push(s),
            Err(_) => refused += 1,
        }
    }
    out.figure("idle_connections", idle.len());
    out.figure("idle_open_s", (began.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    out.figure("idle_connects_refused", refused);
    out.check(idle.len() == IDLE, || format!("only {} of {IDLE} idle connections could be opened", idle.len()));

    let stop = Stop::new();
    let (samples, kept) = std::thread::scope(|s| {
        let keeper = s.spawn(|| keep_open(&mut idle, addr, began, &stop));
        let pace = Pace { per_second: RATE, count: REVIEWS, until: Instant::now() + Duration::from_secs(60) };
        let samples = latency::probe(&target.https, pace, &Stop::new());
        stop.set();
        (samples, keeper.join().expect("idle keeper thread"))
    });
    out.figure("idle_closed_by_server", kept.closed_by_server);
    out.figure("idle_first_close_s", kept.first_close.map_or(-1.0, |t| (t.as_secs_f64() * 10.0).round() / 10.0));
    out.figure("idle_reopen_failures", kept.reopen_failures);
    latency::assert_webhook(out, &samples, &format!("the idle-connection attack ({} idle connections)", idle.len()));
    drop(idle);
    target.finish(ctx, out, "the idle-connection attack");
    Ok(())
}
