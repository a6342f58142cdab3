//! The "Before" column of the Goals table, so one run's render shows before and after side by
//! side: by default what the previous BENCHMARKS.md measured for each goal; with
//! `--before-results`, a results file of an older stork binary measured by this harness on this
//! machine (`stork-bench run --only … --stork OLD --out FILE`), which compares like with like.

use std::collections::HashMap;

use crate::results::Results;

/// The previous render's goal figures, by goal text.
#[derive(Debug, Default, PartialEq)]
pub struct Before {
    /// What was measured: the previous run's commit, or the label given with the results file.
    pub label: Option<String>,
    /// The CPU it ran on.
    pub cpu: Option<String>,
    /// Where the figures come from, in words.
    pub source: String,
    /// Goal text → "measured (status)".
    pub goals: HashMap<String, String>,
}

/// Reads the header's commit and the Goals table of a previous render; accepts the older
/// three-column table (Goal | Measured | Status) and the current one (Goal | Before | Now | Status).
pub fn parse(previous: &str) -> Before {
    let row = |name: &str| {
        previous
            .lines()
            .find_map(|l| l.strip_prefix(&format!("| {name} | ")))
            .map(|rest| rest.trim_end_matches('|').trim().trim_matches('`').to_string())
    };
    let (label, cpu) = (row("Commit"), row("CPU"));
    let source = "what the previous BENCHMARKS.md measured".to_string();
    let mut goals = HashMap::new();
    let Some(start) = previous.find("## Goals") else { return Before { label, cpu, source, goals } };
    let table = previous[start..].lines().skip(1).skip_while(|l| !l.starts_with('|'));
    for line in table.take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let (goal, now, status) = match cells.as_slice() {
            [goal, now, status] => (goal, now, status),
            [goal, _before, now, status] => (goal, now, status),
            _ => continue,
        };
        if *goal == "Goal" || goal.starts_with("---") {
            continue;
        }
        goals.insert(goal.to_string(), format!("{now} ({})", status.trim_matches('*')));
    }
    Before { label, cpu, source, goals }
}

/// The Before column from an older binary's results measured by this harness.
pub fn from_results(results: &Results, label: String) -> Before {
    let goals = crate::goals::judge(results, None)
        .into_iter()
        .filter(|v| v.met.is_some())
        .map(|v| (v.goal.clone(), format!("{} ({})", v.measured, v.status().trim_matches('*'))))
        .collect();
    let source = "an older stork binary measured by this harness on this machine".to_string();
    Before { label: Some(label), cpu: Some(results.machine.cpu.clone()), source, goals }
}

impl Before {
    /// The column's heading suffix: the label, and the CPU when it is not this run's.
    pub fn heading(&self, cpu: &str) -> String {
        let other_cpu = self.cpu.as_deref().filter(|c| *c != cpu);
        match (&self.label, other_cpu) {
            (Some(l), Some(c)) => format!(" (`{l}`, on {c})"),
            (Some(l), None) => format!(" (`{l}`)"),
            (None, Some(c)) => format!(" (on {c})"),
            (None, None) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_table_layouts_are_read_with_the_commit_and_the_now_column_becomes_before() {
        let old = "# B\n\n| | |\n|---|---|\n| Commit | `1102193` |\n\n## Goals\n\n| Goal | Measured | Status |\n\
                   |---|---|---|\n| webhook | 17 k/s | **missed** |\n| memory | 122 MB | met |\n\n## Next\n| x | y | z |\n";
        let b = parse(old);
        assert_eq!(b.label.as_deref(), Some("1102193"));
        assert_eq!(b.goals.len(), 2);
        assert_eq!(b.goals["webhook"], "17 k/s (missed)");
        let new = "| Commit | `abc` |\n## Goals\n\n| Goal | Before (`x`) | Now | Status |\n|---|---|---|---|\n\
                   | memory | 122 MB (met) | 118 MB | met |\n";
        assert_eq!(parse(new).goals["memory"], "118 MB (met)");
        assert_eq!(parse("no table").goals.len(), 0);
    }

    #[test]
    fn the_heading_names_the_cpu_only_when_it_differs_from_this_run_s() {
        let b = Before { label: Some("abc".into()), cpu: Some("AMD EPYC".into()), ..Before::default() };
        assert_eq!(b.heading("AMD EPYC"), " (`abc`)");
        assert_eq!(b.heading("Intel Xeon"), " (`abc`, on AMD EPYC)");
    }
}
