//! The "Before" column of the Goals table: what the previous BENCHMARKS.md measured for each
//! goal, so one run's render shows before and after side by side.

use std::collections::HashMap;

/// The previous render's goal figures, by goal text.
#[derive(Debug, Default, PartialEq)]
pub struct Before {
    /// The commit the previous run measured.
    pub commit: Option<String>,
    /// Goal text → "measured (status)".
    pub goals: HashMap<String, String>,
}

/// Reads the header's commit and the Goals table of a previous render; accepts the older
/// three-column table (Goal | Measured | Status) and the current one (Goal | Before | Now | Status).
pub fn parse(previous: &str) -> Before {
    let commit = previous
        .lines()
        .find_map(|l| l.strip_prefix("| Commit | "))
        .map(|rest| rest.trim_end_matches('|').trim().trim_matches('`').to_string());
    let mut goals = HashMap::new();
    let Some(start) = previous.find("## Goals") else { return Before { commit, goals } };
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
    Before { commit, goals }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_table_layouts_are_read_with_the_commit_and_the_now_column_becomes_before() {
        let old = "# B\n\n| | |\n|---|---|\n| Commit | `1102193` |\n\n## Goals\n\n| Goal | Measured | Status |\n\
                   |---|---|---|\n| webhook | 17 k/s | **missed** |\n| memory | 122 MB | met |\n\n## Next\n| x | y | z |\n";
        let b = parse(old);
        assert_eq!(b.commit.as_deref(), Some("1102193"));
        assert_eq!(b.goals.len(), 2);
        assert_eq!(b.goals["webhook"], "17 k/s (missed)");
        let new = "| Commit | `abc` |\n## Goals\n\n| Goal | Before (`x`) | Now | Status |\n|---|---|---|---|\n\
                   | memory | 122 MB (met) | 118 MB | met |\n";
        assert_eq!(parse(new).goals["memory"], "118 MB (met)");
        assert_eq!(parse("no table"), Before::default());
    }
}
