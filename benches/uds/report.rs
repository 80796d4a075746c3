//! Statistics, the machine's description, and the table (terminal and
//! Markdown).

use std::fmt::Write as _;
use std::process::Command;

/// The value at percentile `p` (0-100), nearest rank.
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn median(v: &[f64]) -> f64 {
    pct(v, 50.0)
}

/// A duration given in µs, in the unit that reads best.
pub fn us(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else if x >= 10_000.0 {
        format!("{:.1} ms", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.2} ms", x / 1000.0)
    } else {
        format!("{x:.1} µs")
    }
}

pub fn rate(x: f64, unit: &str) -> String {
    if x >= 10_000.0 {
        format!("{:.1}k {unit}", x / 1000.0)
    } else {
        format!("{x:.0} {unit}")
    }
}

pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}", a / b)
    }
}

/// Whether a row meets its target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    Info,
}

impl Verdict {
    pub fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }
    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Info => "",
        }
    }
}

pub struct Row {
    pub row: &'static str,
    pub what: String,
    pub lib: String,
    pub base: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

pub const HEAD: [&str; 7] = [
    "#",
    "measure",
    "binance-uds",
    "baseline",
    "ratio",
    "target",
    "result",
];

fn cells(r: &Row) -> [&str; 7] {
    [
        r.row,
        &r.what,
        &r.lib,
        &r.base,
        &r.ratio,
        &r.target,
        r.verdict.text(),
    ]
}

pub fn print_table(rows: &[Row]) {
    let mut width = HEAD.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(cells(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |c: [&str; 7]| {
        let mut s = String::new();
        for (i, (w, c)) in width.iter().zip(c).enumerate() {
            let pad = w - c.chars().count();
            if i > 0 {
                s.push_str(" | ");
            }
            s.push_str(c);
            s.push_str(&" ".repeat(pad));
        }
        println!("{}", s.trim_end());
    };
    line(HEAD);
    println!(
        "{}",
        "-".repeat(width.iter().sum::<usize>() + 3 * (width.len() - 1))
    );
    for r in rows {
        line(cells(r));
    }
}

pub fn markdown_table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| {} |", HEAD.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEAD.len()));
    for r in rows {
        let c = cells(r).map(|c| c.replace('|', "\\|"));
        let _ = writeln!(s, "| {} |", c.join(" | "));
    }
    s
}

fn first_line(out: Option<std::process::Output>) -> String {
    out.filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The machine, as `(what, value)` pairs.
pub fn machine() -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown")
        .to_string();
    let processors = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let rustc = first_line(Command::new("rustc").arg("-V").output().ok());
    let date = first_line(
        Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .ok(),
    );
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    vec![
        ("CPU", cpu),
        (
            "cores",
            format!("{processors} logical ({usable} usable by this process)"),
        ),
        ("RAM", format!("{:.1} GiB", ram_kib / (1024.0 * 1024.0))),
        ("kernel", format!("Linux {kernel}")),
        ("rustc", rustc),
        ("date", date),
        ("load average at start", load),
    ]
}
