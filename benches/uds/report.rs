//! Everything about reporting, nothing about measuring: statistics, the
//! rows of one run (saved as JSON), several runs merged into one table
//! (median and range), the machine's description, and BENCHMARKS.md.

use serde_json::{json, Value};
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

/// What a row's numbers are.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Unit {
    /// Microseconds (lower is better).
    Us,
    /// Events or requests per second (higher is better).
    Rate(&'static str),
    /// A count (threads).
    Count,
    /// Bytes (memory, file size).
    Bytes,
}

impl Unit {
    fn fmt(self, x: f64) -> String {
        if x.is_nan() {
            return "n/a".into();
        }
        match self {
            Unit::Us => us(x),
            Unit::Rate(u) if x >= 10_000.0 => format!("{:.1}k {u}", x / 1000.0),
            Unit::Rate(u) => format!("{x:.0} {u}"),
            Unit::Count => format!("{x:.0}"),
            Unit::Bytes => format!("{:.1} MiB", x / (1024.0 * 1024.0)),
        }
    }
    fn code(self) -> String {
        match self {
            Unit::Us => "us".into(),
            Unit::Rate(u) => format!("rate:{u}"),
            Unit::Count => "count".into(),
            Unit::Bytes => "bytes".into(),
        }
    }
    fn parse(s: &str) -> Unit {
        match s {
            "us" => Unit::Us,
            "count" => Unit::Count,
            "bytes" => Unit::Bytes,
            _ => Unit::Rate(match s.trim_start_matches("rate:") {
                "req/s" => "req/s",
                _ => "ev/s",
            }),
        }
    }
}

/// What a row must reach; judged on the median of the runs.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Target {
    None,
    /// binance-uds / baseline at most this.
    RatioMax(f64),
    /// binance-uds / baseline at least this.
    RatioMin(f64),
    /// binance-uds − baseline at most this many µs.
    PlusMax(f64),
    /// At most this many µs and this many times faster than the baseline.
    Faster(f64, f64),
    /// At most this much, in the row's unit.
    AbsMax(f64),
    /// Better than the baseline (an official SDK).
    Ahead,
}

impl Target {
    fn text(self, unit: Unit) -> String {
        match self {
            Target::None => String::new(),
            Target::RatioMax(r) => format!("ratio ≤ {r}"),
            Target::RatioMin(r) => format!("ratio ≥ {r}"),
            Target::PlusMax(d) => format!("≤ baseline + {d} µs"),
            Target::Faster(a, t) => format!("< {} and > {t}x faster", us(a)),
            Target::AbsMax(a) => format!("≤ {}", unit.fmt(a)),
            Target::Ahead => "ahead of the SDK".into(),
        }
    }
    fn met(self, unit: Unit, lib: f64, ratio: f64, plus: f64) -> Option<bool> {
        let higher_better = matches!(unit, Unit::Rate(_));
        match self {
            Target::None => None,
            _ if lib.is_nan() => None,
            Target::RatioMax(r) => Some(ratio <= r),
            Target::RatioMin(r) => Some(ratio >= r),
            Target::PlusMax(d) => Some(plus <= d),
            Target::Faster(a, t) => Some(lib < a && 1.0 / ratio > t),
            Target::AbsMax(a) => Some(lib <= a),
            Target::Ahead if ratio.is_nan() => None,
            Target::Ahead => Some(if higher_better {
                ratio > 1.0
            } else {
                ratio < 1.0
            }),
        }
    }
    fn to_json(self) -> Value {
        let (k, a, b) = match self {
            Target::None => ("none", 0.0, 0.0),
            Target::RatioMax(r) => ("ratio_max", r, 0.0),
            Target::RatioMin(r) => ("ratio_min", r, 0.0),
            Target::PlusMax(d) => ("plus_max", d, 0.0),
            Target::Faster(a, t) => ("faster", a, t),
            Target::AbsMax(a) => ("abs_max", a, 0.0),
            Target::Ahead => ("ahead", 0.0, 0.0),
        };
        json!([k, a, b])
    }
    fn from_json(v: &Value) -> Target {
        let n = |i: usize| v[i].as_f64().unwrap_or(0.0);
        match v[0].as_str().unwrap_or("none") {
            "ratio_max" => Target::RatioMax(n(1)),
            "ratio_min" => Target::RatioMin(n(1)),
            "plus_max" => Target::PlusMax(n(1)),
            "faster" => Target::Faster(n(1), n(2)),
            "abs_max" => Target::AbsMax(n(1)),
            "ahead" => Target::Ahead,
            _ => Target::None,
        }
    }
}

/// One measured row of one run. `lib` and `base` are NaN when not
/// measured; `note` then says why.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub what: String,
    pub lib: f64,
    pub base: f64,
    pub unit: Unit,
    /// Show the difference (binance-uds − baseline) beside the ratio.
    pub plus: bool,
    pub target: Target,
    pub note: String,
}

impl Row {
    pub fn new(id: &str, what: impl Into<String>, lib: f64, base: f64, unit: Unit) -> Row {
        Row {
            id: id.into(),
            what: what.into(),
            lib,
            base,
            unit,
            plus: false,
            target: Target::None,
            note: String::new(),
        }
    }
    pub fn target(mut self, t: Target) -> Row {
        self.target = t;
        self
    }
    pub fn plus(mut self) -> Row {
        self.plus = true;
        self
    }
    pub fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }

    fn to_json(&self) -> Value {
        let num = |x: f64| if x.is_nan() { Value::Null } else { json!(x) };
        json!({"id": self.id, "what": self.what, "lib": num(self.lib), "base": num(self.base),
            "unit": self.unit.code(), "plus": self.plus, "target": self.target.to_json(),
            "note": self.note})
    }
    fn from_json(v: &Value) -> Row {
        let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        Row {
            id: v["id"].as_str().unwrap_or("").into(),
            what: v["what"].as_str().unwrap_or("").into(),
            lib: num("lib"),
            base: num("base"),
            unit: Unit::parse(v["unit"].as_str().unwrap_or("us")),
            plus: v["plus"].as_bool().unwrap_or(false),
            target: Target::from_json(&v["target"]),
            note: v["note"].as_str().unwrap_or("").into(),
        }
    }
}

/// One run as saved to disk: its rows, the machine and the run's notes.
pub fn run_json(
    rows: &[Row],
    machine: &[(&str, String)],
    notes: &[String],
    secs: f64,
    method: &str,
) -> Value {
    json!({
        "method": method,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "machine": machine.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "notes": notes,
        "secs": secs,
    })
}

/// Rows of several runs merged: each value is the median of the runs, with
/// their range.
pub struct Merged {
    pub row: Row,
    lib: Vec<f64>,
    base: Vec<f64>,
    ratio: Vec<f64>,
    diff: Vec<f64>,
}

pub fn merge(runs: &[Value]) -> Vec<Merged> {
    let mut out: Vec<Merged> = Vec::new();
    for run in runs {
        for v in run["rows"].as_array().into_iter().flatten() {
            let r = Row::from_json(v);
            let at = out
                .iter()
                .position(|m| m.row.id == r.id && m.row.what == r.what);
            let m = match at {
                Some(i) => &mut out[i],
                None => {
                    out.push(Merged {
                        row: r.clone(),
                        lib: Vec::new(),
                        base: Vec::new(),
                        ratio: Vec::new(),
                        diff: Vec::new(),
                    });
                    out.last_mut().expect("pushed")
                }
            };
            let keep = |v: &mut Vec<f64>, x: f64| {
                if !x.is_nan() {
                    v.push(x)
                }
            };
            keep(&mut m.lib, r.lib);
            keep(&mut m.base, r.base);
            if !r.lib.is_nan() && !r.base.is_nan() && r.base != 0.0 {
                m.ratio.push(r.lib / r.base);
                m.diff.push(r.lib - r.base);
            }
            if m.row.note.is_empty() {
                m.row.note = r.note;
            }
        }
    }
    out
}

fn spread(v: &[f64], f: &dyn Fn(f64) -> String) -> String {
    if v.is_empty() {
        return String::new();
    }
    let (lo, hi) = (pct(v, 0.0), pct(v, 100.0));
    if v.len() == 1 || f(lo) == f(hi) {
        f(median(v))
    } else {
        format!("{} ({}–{})", f(median(v)), f(lo), f(hi))
    }
}

const HEAD: [&str; 7] = [
    "#",
    "measure",
    "binance-uds",
    "baseline",
    "ratio",
    "target",
    "result",
];

impl Merged {
    fn cells(&self) -> [String; 7] {
        let r = &self.row;
        let unit = r.unit;
        let fmt = |x: f64| unit.fmt(x);
        let mut ratio = spread(&self.ratio, &|x| format!("{x:.2}"));
        if r.plus && !self.diff.is_empty() {
            let d = spread(&self.diff, &|x| {
                format!("{}{}", if x >= 0.0 { "+" } else { "−" }, us(x.abs()))
            });
            ratio = format!("{ratio}; {d}");
        }
        let verdict = r.target.met(
            unit,
            median(&self.lib),
            median(&self.ratio),
            median(&self.diff),
        );
        let result = match verdict {
            Some(true) => "met".to_string(),
            Some(false) => "MISSED".to_string(),
            None => String::new(),
        };
        let result = match (result.is_empty(), r.note.is_empty()) {
            (_, true) => result,
            (true, false) => r.note.clone(),
            (false, false) => format!("{result}: {}", r.note),
        };
        [
            r.id.clone(),
            r.what.clone(),
            spread(&self.lib, &fmt),
            spread(&self.base, &fmt),
            ratio,
            r.target.text(unit),
            result,
        ]
    }
}

pub fn print_table(rows: &[Merged]) {
    let cells: Vec<[String; 7]> = rows.iter().map(Merged::cells).collect();
    let mut width = HEAD.map(|h| h.chars().count());
    for c in &cells {
        for (w, c) in width.iter_mut().zip(c) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |c: &[&str]| {
        let mut s = String::new();
        for (i, (w, c)) in width.iter().zip(c).enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            s.push_str(c);
            s.push_str(&" ".repeat(w - c.chars().count()));
        }
        println!("{}", s.trim_end());
    };
    line(&HEAD);
    println!(
        "{}",
        "-".repeat(width.iter().sum::<usize>() + 3 * (width.len() - 1))
    );
    for c in &cells {
        line(&c.each_ref().map(String::as_str));
    }
}

pub fn markdown_table(rows: &[Merged]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| {} |", HEAD.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEAD.len()));
    for r in rows {
        let c = r.cells().map(|c| c.replace('|', "\\|"));
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

/// The machine, as `(what, value)` pairs (from `lscpu` where it runs).
pub fn machine() -> Vec<(&'static str, String)> {
    let lscpu = Command::new("lscpu")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(|r| r.trim().to_string())
    };
    let cpu = field("Model name").unwrap_or_else(|| "unknown".into());
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cores = format!(
        "{} logical CPUs ({} usable by this process), {} thread(s) per core; hypervisor {}",
        field("CPU(s)").unwrap_or_default(),
        usable,
        field("Thread(s) per core").unwrap_or_else(|| "?".into()),
        field("Hypervisor vendor").unwrap_or_else(|| "none".into()),
    );
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
    vec![
        ("CPU", cpu),
        ("cores", cores),
        ("RAM", format!("{:.1} GiB", ram_kib / (1024.0 * 1024.0))),
        ("kernel", format!("Linux {kernel}")),
        ("rustc", rustc),
        ("date", date),
        ("load average at start", load()),
    ]
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// BENCHMARKS.md from saved runs: the generated part above "## Profile",
/// and the hand-written part from `old` (the current file) kept as it is.
pub fn markdown(runs: &[Value], method: &str, old: &str) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "binance-uds against the raw floor of its own stack (tokio + tokio-tungstenite + \
         native-tls + serde_json used by hand) and against Binance's official SDKs, all on \
         the local exchange over loopback TLS on the machine below, which runs the exchange \
         too. Every figure and its baseline come from the same run, taken alternately (A, B, \
         A, B, ...), so the drift of a shared machine hits both alike: read the ratios first.\n\n",
    );
    let secs: Vec<f64> = runs.iter().filter_map(|r| r["secs"].as_f64()).collect();
    let _ = writeln!(
        md,
        "Produced by `scripts/bench.sh --write`: {} runs of `cargo bench --bench uds` \
         ({:.0} s each), merged. Each cell is the median of the runs' figures with their \
         range (min–max) in brackets; *ratio* is binance-uds / baseline computed within each \
         run (for times lower is better, for rates higher is better), and the verdict is \
         taken on the median ratio. Everything above the *Profile* section is generated.\n",
        runs.len(),
        median(&secs),
    );
    md.push_str("## Machine\n\n");
    if let Some(first) = runs.first() {
        for kv in first["machine"].as_array().into_iter().flatten() {
            let (k, v) = (kv[0].as_str().unwrap_or(""), kv[1].as_str().unwrap_or(""));
            if k == "load average at start" {
                let loads: Vec<&str> = runs
                    .iter()
                    .filter_map(|r| {
                        r["machine"].as_array()?.iter().find_map(|kv| {
                            (kv[0] == "load average at start").then(|| kv[1].as_str())?
                        })
                    })
                    .collect();
                let _ = writeln!(
                    md,
                    "- load average (1, 5, 15 min) at the start of each run: {}",
                    loads.join("; ")
                );
            } else {
                let _ = writeln!(md, "- {k}: {v}");
            }
        }
    }
    md.push_str(
        "- shared: five other engineers build and test on the same 2 CPUs, so absolute \
         times move between runs; the ratios, taken alternately within a run, move less.\n",
    );
    md.push_str("\n## Results\n\n");
    md.push_str(&markdown_table(&merge(runs)));
    let mut notes: Vec<String> = Vec::new();
    for run in runs {
        for n in run["notes"].as_array().into_iter().flatten() {
            if let Some(n) = n.as_str() {
                if !notes.iter().any(|x| x == n) {
                    notes.push(n.to_string());
                }
            }
        }
    }
    if !notes.is_empty() {
        md.push('\n');
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md.push('\n');
    md.push_str(method);
    md.push('\n');
    match old.find("\n## Profile") {
        Some(at) => md.push_str(&old[at + 1..]),
        None => md.push_str("## Profile\n\n(not written yet)\n"),
    }
    md
}
