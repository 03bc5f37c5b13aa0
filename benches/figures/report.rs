//! The table: one row per figure with its median, the spread over runs, the target and
//! whether it is met; the machine it ran on; and `BENCHMARKS.md`, whose generated part lies
//! between two markers so that notes written by hand around it survive a new run.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

/// One line of the table.
pub struct Row {
    pub figure: String,
    /// The median, with its unit.
    pub median: String,
    /// Min–max over the runs.
    pub spread: String,
    pub target: String,
    pub verdict: Verdict,
}

pub enum Verdict {
    Met,
    /// Missed, and by how much.
    Missed(String),
    /// A figure with no target of its own (nginx, a detail).
    Info,
}

impl Row {
    pub fn new(figure: impl Into<String>, median: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            median: median.into(),
            spread: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn spread(mut self, spread: impl Into<String>) -> Row {
        self.spread = spread.into();
        self
    }

    /// A target, met when `met`; otherwise missed by `by`.
    pub fn target(mut self, target: impl Into<String>, met: bool, by: impl Into<String>) -> Row {
        self.target = target.into();
        self.verdict = if met {
            Verdict::Met
        } else {
            Verdict::Missed(by.into())
        };
        self
    }

    /// An upper bound: met when `value <= bound`, otherwise missed by `format(value - bound)`
    /// "over".
    pub fn at_most(
        self,
        target: &str,
        value: f64,
        bound: f64,
        format: impl Fn(f64) -> String,
    ) -> Row {
        let by = format!("{} over", format(value - bound));
        self.target(target, value <= bound, by)
    }

    /// A figure that could not be measured.
    pub fn failed(figure: impl Into<String>, why: &str) -> Row {
        let first_line = why.lines().next().unwrap_or_default();
        let short: String = first_line.chars().take(160).collect();
        Row::new(figure, format!("not measured: {short}"))
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `min–max` of `values`, each formatted by `f`.
pub fn range(values: &[f64], f: impl Fn(f64) -> String) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}–{}", f(min), f(max))
}

/// `12,345`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out =
        String::from("| figure | median | runs: min–max | target | met |\n|---|---|---|---|---|\n");
    for row in rows {
        let verdict = match &row.verdict {
            Verdict::Met => "yes".to_owned(),
            Verdict::Missed(by) => format!("**no**: {by}"),
            Verdict::Info => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.figure, row.median, row.spread, row.target, verdict
        );
    }
    out
}

/// CPU, cores, memory, kernel, compiler: what the figures depend on.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU".into(), |(_, name)| name.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_kib: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} CPUs, {:.1} GiB RAM, Linux {}, {rustc}",
        memory_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// The current UTC time, `2026-11-24 18:02 UTC`.
pub fn now() -> String {
    let stamp = seedmesh::logging::rfc3339(SystemTime::now());
    format!("{} {} UTC", &stamp[..10], &stamp[11..16])
}

const BEGIN: &str = "<!-- cargo bench: generated from here -->";
const END: &str = "<!-- cargo bench: generated up to here -->";

/// Puts `generated` between the markers of `path`, keeping what is around them; a file
/// without markers gets a title and the generated part.
pub fn write_markdown(path: &Path, generated: &str) -> std::io::Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{generated}{END}\n");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!(
                "{}{block}{}",
                &old[..begin],
                &old[end + END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!("# Benchmarks\n\n{block}"),
    };
    fs::write(path, new)
}
