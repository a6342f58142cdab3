//! CPU accounting of the cluster's processes, from /proc.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// CPU seconds used so far by this process (`bench`), by each child process (named by
/// component: `etcd`, `apiserver`, `controller-manager`, `scheduler`, `stork-scheduler`, `kwok`,
/// `stork`), and by the whole machine (`machine`, from /proc/stat). Linux only; empty elsewhere.
pub fn cpu_seconds() -> BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let me = std::process::id().to_string();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the parenthesised command name: state ppid … utime(14) stime(15).
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(ut), Some(st)) = (f.get(1), f.get(11), f.get(12)) else { continue };
        let name = if pid == me {
            "bench".to_string()
        } else if *ppid == me {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            component(&String::from_utf8_lossy(&cmd).replace('\0', " "))
        } else {
            continue;
        };
        let secs = (ut.parse::<f64>().unwrap_or(0.0) + st.parse::<f64>().unwrap_or(0.0)) / tick;
        *out.entry(name).or_insert(0.0) += secs;
    }
    if let Some(cpu) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().next().map(str::to_owned)) {
        // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
        let v: Vec<f64> = cpu.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
        if v.len() == 8 {
            out.insert("machine".into(), (v.iter().sum::<f64>() - v[3] - v[4]) / tick);
        }
    }
    out
}

fn component(cmdline: &str) -> String {
    let mut words = cmdline.split_whitespace();
    let bin = words.next().unwrap_or_default();
    if bin.ends_with("k8s-local") {
        let sub = words.next().unwrap_or("k8s");
        if sub == "scheduler" && cmdline.contains("stork-scheduler.json") {
            "stork-scheduler".into()
        } else {
            sub.into()
        }
    } else {
        bin.rsplit('/').next().unwrap_or(bin).to_string()
    }
}

/// `after - before` per key, rounded to 0.1 s, plus `others`: the machine's busy time not spent
/// by this process or the cluster (someone else's load, which skews the figures).
pub fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> =
        after.iter().map(|(k, v)| (k.clone(), v - before.get(k).unwrap_or(&0.0))).collect();
    if let Some(machine) = out.get("machine").copied() {
        let ours: f64 = out.iter().filter(|(k, _)| *k != "machine").map(|(_, v)| v).sum();
        out.insert("others".into(), (machine - ours).max(0.0));
    }
    out.values_mut().for_each(|v| *v = (*v * 10.0).round() / 10.0);
    out
}

/// CPUs the cluster's components (not this process, not other processes) used on average.
fn cluster_cores(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, wall: Duration) -> f64 {
    let used: f64 = after
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "machine" | "bench"))
        .map(|(k, v)| v - before.get(k).unwrap_or(&0.0))
        .sum();
    used / wall.as_secs_f64().max(0.001)
}

/// Waits until the cluster's components together use less than `cores` CPUs over a second
/// (KWOK's node heartbeats keep a base load), at most `max`; returns the last rate seen.
pub async fn quiesce(cores: f64, max: Duration) -> f64 {
    let deadline = Instant::now() + max;
    let (mut prev, mut at) = (cpu_seconds(), Instant::now());
    loop {
        // A rate needs an interval: one CPU sample per second.
        tokio::time::sleep(Duration::from_secs(1)).await; // poll until the deadline
        let now = cpu_seconds();
        let busy = cluster_cores(&prev, &now, at.elapsed());
        if busy < cores || Instant::now() >= deadline {
            return busy;
        }
        (prev, at) = (now, Instant::now());
    }
}
