//! The results: one [`Record`] per mechanism, size and metric, the machine
//! they were measured on, and the text table and JSON made from them.

use std::fmt::Write as _;

use serde::Serialize;

use super::mechanism::Mechanism;

/// The machine, for the output's header.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// `uname -srm`.
    pub kernel: String,
    /// The first `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may run on (`nproc`).
    pub cpus: usize,
    /// /proc/loadavg's first three fields when the bench started.
    pub load_average: String,
}

impl Host {
    /// Describes this machine; unreadable parts say "unknown".
    pub fn describe() -> Host {
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy(),
                    u.machine().to_string_lossy()
                )
            })
            .unwrap_or_else(|_| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        Host {
            kernel,
            cpu_model,
            cpus,
            load_average,
        }
    }
}

/// What a record measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// One-way throughput, GB/s.
    Throughput,
    /// Median round trip, µs.
    RoundTripP50,
    /// 99th-percentile round trip, µs.
    RoundTripP99,
    /// UDP datagrams sent but not received during a throughput run
    /// (`samples`: datagrams sent); may be 0.
    Lost,
    /// The `rpc` row's p50 over the `unix-stream` row's p50 at the same
    /// size, both of the same run (`samples`: the rpc round trips).
    RoundTripP50Ratio,
}

impl Metric {
    /// The unit of its value.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Throughput => "GB/s",
            Metric::RoundTripP50 | Metric::RoundTripP99 => "us",
            Metric::Lost => "datagrams",
            Metric::RoundTripP50Ratio => "x",
        }
    }
}

/// One measurement, or why it could not be made.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The mechanism's name.
    pub mechanism: String,
    /// Message size in bytes (0: a signal, no payload).
    pub size: usize,
    /// What is measured.
    pub metric: Metric,
    /// The value in `unit`; `null` when not available.
    pub value: Option<f64>,
    /// The unit.
    pub unit: &'static str,
    /// Messages (throughput), round trips (latency) or datagrams sent
    /// (loss) behind the value.
    pub samples: u64,
    /// Why there is no value (a host limit, a failure).
    pub na_reason: Option<String>,
    /// How far apart the rounds were: (largest - smallest) / median of the
    /// per-round values, in percent; `null` with one round (and for p99,
    /// which is taken over all rounds together).
    pub spread_pct: Option<f64>,
}

impl Record {
    /// A measured value.
    pub fn value(mechanism: &str, size: usize, metric: Metric, value: f64, samples: u64) -> Record {
        Record {
            mechanism: mechanism.to_owned(),
            size,
            metric,
            value: Some(value),
            unit: metric.unit(),
            samples,
            na_reason: None,
            spread_pct: None,
        }
    }

    /// The same, with the spread of its rounds.
    pub fn with_spread(mut self, spread_pct: Option<f64>) -> Record {
        self.spread_pct = spread_pct;
        self
    }

    /// No value, and why.
    pub fn na(mechanism: &str, size: usize, metric: Metric, reason: &str) -> Record {
        Record {
            mechanism: mechanism.to_owned(),
            size,
            metric,
            value: None,
            unit: metric.unit(),
            samples: 0,
            na_reason: Some(reason.to_owned()),
            spread_pct: None,
        }
    }
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub host: Host,
    /// How long each measurement ran, in words.
    pub settings: String,
    /// The measurements.
    pub records: Vec<Record>,
}

/// The row of unary calls over an rpc edge's listener.
fn rpc() -> &'static str {
    Mechanism::Rpc.name()
}

/// The mechanism whose round trips the `rpc` row is read against: the
/// raw socket beneath an rpc edge's Unix listener.
const RPC_BENEATH: &str = "unix-stream";

/// For each size where both were measured, the `rpc` p50 over the
/// `unix-stream` p50: what the framing of a unary call costs on top of the
/// socket it runs on.
pub fn rpc_ratios(records: &[Record]) -> Vec<Record> {
    let p50 = |mechanism: &str, size: usize| {
        records.iter().find(|r| {
            r.mechanism == mechanism && r.size == size && r.metric == Metric::RoundTripP50
        })
    };
    records
        .iter()
        .filter(|r| r.mechanism == rpc() && r.metric == Metric::RoundTripP50)
        .filter_map(|call| {
            let raw = p50(RPC_BENEATH, call.size)?.value.filter(|v| *v > 0.0)?;
            let ratio = call.value? / raw;
            Some(Record::value(
                rpc(),
                call.size,
                Metric::RoundTripP50Ratio,
                ratio,
                call.samples,
            ))
        })
        .collect()
}

/// `64 B`, `4 KiB`, `1 MiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size % (1 << 20) == 0 {
        format!("{} MiB", size >> 20)
    } else if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

impl Report {
    /// The JSON document: `{host, settings, records: [...]}`.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report serialises");
        text.push('\n');
        text
    }

    fn find(&self, mechanism: &str, size: usize, metric: Metric) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.mechanism == mechanism && r.size == size && r.metric == metric)
    }

    /// The text tables, with notes for every value that is not available.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let h = &self.host;
        let _ = writeln!(out, "ipc-run bench: IPC between two processes on this host");
        let _ = writeln!(
            out,
            "host: {}; {}; {} CPU(s); load average {}",
            h.kernel, h.cpu_model, h.cpus, h.load_average
        );
        let _ = writeln!(out, "run: {}", self.settings);
        let mechanisms = self.mechanisms();
        let width = mechanisms.iter().map(|m| m.len()).max().unwrap_or(9).max(9);
        let mut notes = Notes::default();
        self.throughput_table(&mut out, &mechanisms, width, &mut notes);
        self.round_trip_table(&mut out, &mechanisms, width, &mut notes);
        self.rpc_table(&mut out);
        self.lost_table(&mut out, width);
        self.spread_line(&mut out);
        notes.write(&mut out);
        out
    }

    /// How far apart the rounds were, over every value with a spread: the
    /// median and the widest, so a reader knows how far to trust a ratio.
    fn spread_line(&self, out: &mut String) {
        let mut spreads: Vec<(f64, &Record)> = self
            .records
            .iter()
            .filter_map(|r| r.spread_pct.map(|s| (s, r)))
            .collect();
        if spreads.is_empty() {
            return;
        }
        spreads.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mid = spreads[spreads.len() / 2].0;
        let (widest, r) = spreads[spreads.len() - 1];
        let metric = match r.metric {
            Metric::Throughput => "throughput",
            _ => "round trip",
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "rounds apart (largest - smallest, over the median): {mid:.0}% typically, at most {widest:.0}% ({} {} {metric})",
            r.mechanism,
            size_label(r.size)
        );
    }

    /// The mechanisms measured, in record order.
    fn mechanisms(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.records {
            if !seen.contains(&r.mechanism.as_str()) {
                seen.push(&r.mechanism);
            }
        }
        seen
    }

    /// Throughput: one row per mechanism, one column per size.
    fn throughput_table(
        &self,
        out: &mut String,
        mechanisms: &[&str],
        width: usize,
        notes: &mut Notes,
    ) {
        let mut sizes: Vec<usize> = self
            .records
            .iter()
            .filter(|r| r.metric == Metric::Throughput)
            .map(|r| r.size)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "throughput, GB/s (one way, sender process to receiver process)"
        );
        let _ = write!(out, "{:<width$}", "mechanism");
        for &size in &sizes {
            let _ = write!(out, " {:>10}", size_label(size));
        }
        let _ = writeln!(out);
        for m in mechanisms {
            // A row measured by round trips only (rpc) has no rate.
            if !self
                .records
                .iter()
                .any(|r| r.mechanism == *m && r.metric == Metric::Throughput)
            {
                continue;
            }
            let _ = write!(out, "{m:<width$}");
            for &size in &sizes {
                let text = notes.cell(self.find(m, size, Metric::Throughput));
                let _ = write!(out, " {text:>10}");
            }
            let _ = writeln!(out);
        }
    }

    /// Round trips: one row per mechanism and size.
    fn round_trip_table(
        &self,
        out: &mut String,
        mechanisms: &[&str],
        width: usize,
        notes: &mut Notes,
    ) {
        let _ = writeln!(out);
        let _ = writeln!(out, "round trip, µs (ping-pong of one message)");
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>10} {:>10} {:>9}",
            "mechanism", "size", "p50", "p99", "samples"
        );
        for m in mechanisms {
            let mut sizes: Vec<usize> = self
                .records
                .iter()
                .filter(|r| r.mechanism == *m && r.metric == Metric::RoundTripP50)
                .map(|r| r.size)
                .collect();
            sizes.dedup();
            for size in sizes {
                let p50 = self.find(m, size, Metric::RoundTripP50);
                let p99 = self.find(m, size, Metric::RoundTripP99);
                let samples = p50.map_or(0, |r| r.samples);
                let label = if size == 0 {
                    "none".into()
                } else {
                    size_label(size)
                };
                let a = notes.cell(p50);
                let b = notes.cell(p99);
                let _ = writeln!(out, "{m:<width$} {label:>8} {a:>10} {b:>10} {samples:>9}");
            }
        }
    }

    /// The rpc row against the socket beneath it, when both were measured.
    fn rpc_table(&self, out: &mut String) {
        let ratios: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.metric == Metric::RoundTripP50Ratio)
            .collect();
        if ratios.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "rpc: unary echo calls over an rpc edge's Unix listener vs {RPC_BENEATH} round trips, same run (p50)"
        );
        for r in ratios {
            let value = |m: &str| {
                self.find(m, r.size, Metric::RoundTripP50)
                    .and_then(|r| r.value)
                    .map_or_else(|| "-".to_owned(), number)
            };
            let _ = writeln!(
                out,
                "{:>8}  rpc {} us, {RPC_BENEATH} {} us: {:.2}x",
                size_label(r.size),
                value(rpc()),
                value(RPC_BENEATH),
                r.value.unwrap_or_default()
            );
        }
    }

    /// Datagrams lost, when a lossy mechanism was measured.
    fn lost_table(&self, out: &mut String, width: usize) {
        let lost: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.metric == Metric::Lost)
            .collect();
        if lost.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "datagrams lost during throughput runs (counted by the receiver)"
        );
        for r in lost {
            let text = match r.value {
                Some(v) => {
                    let share = if r.samples > 0 {
                        100.0 * v / r.samples as f64
                    } else {
                        0.0
                    };
                    format!("{v:.0} of {} sent ({share:.1}%)", r.samples)
                }
                None => format!("n/a: {}", r.na_reason.as_deref().unwrap_or("not measured")),
            };
            let _ = writeln!(
                out,
                "{:<width$} {:>8}  {text}",
                r.mechanism,
                size_label(r.size)
            );
        }
    }
}

/// The numbered notes behind `n/a[N]` cells: one per distinct (mechanism,
/// reason), listing the sizes it applies to.
#[derive(Debug, Default)]
struct Notes(Vec<(String, String, Vec<usize>)>);

impl Notes {
    /// A table cell: the value, `-` when there is no record, or `n/a[N]`.
    fn cell(&mut self, record: Option<&Record>) -> String {
        let Some(r) = record else {
            return "-".into();
        };
        if let Some(v) = r.value {
            return number(v);
        }
        let reason = r.na_reason.as_deref().unwrap_or("not measured").to_owned();
        let notes = &mut self.0;
        let at = match notes
            .iter()
            .position(|(m, why, _)| *m == r.mechanism && *why == reason)
        {
            Some(at) => at,
            None => {
                notes.push((r.mechanism.clone(), reason, Vec::new()));
                notes.len() - 1
            }
        };
        if !notes[at].2.contains(&r.size) {
            notes[at].2.push(r.size);
        }
        format!("n/a[{}]", at + 1)
    }

    fn write(&self, out: &mut String) {
        if self.0.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "n/a:");
        for (i, (mechanism, reason, sizes)) in self.0.iter().enumerate() {
            let sizes: Vec<String> = sizes
                .iter()
                .map(|&s| {
                    if s == 0 {
                        "no payload".into()
                    } else {
                        size_label(s)
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "  [{}] {mechanism} {}: {reason}",
                i + 1,
                sizes.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_labelled_in_binary_units() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(65536), "64 KiB");
        assert_eq!(size_label(1 << 20), "1 MiB");
        assert_eq!(size_label(1000), "1000 B");
    }

    #[test]
    fn the_text_numbers_every_na_reason_once() {
        let report = Report {
            host: Host {
                kernel: "Linux 6 x86_64".into(),
                cpu_model: "cpu".into(),
                cpus: 2,
                load_average: "0 0 0".into(),
            },
            settings: "quick".into(),
            records: vec![
                Record::value("pipe", 64, Metric::Throughput, 0.5, 10),
                Record::na("posix-mq", 64, Metric::Throughput, "too big"),
                Record::value("pipe", 64, Metric::RoundTripP50, 10.0, 100),
                Record::value("pipe", 64, Metric::RoundTripP99, 20.0, 100),
            ],
        };
        let text = report.text();
        assert!(!text.contains("rpc"), "{text}");
        assert!(text.contains("n/a[1]"), "{text}");
        assert!(text.contains("[1] posix-mq 64 B: too big"), "{text}");
        assert!(
            text.contains("host: Linux 6 x86_64; cpu; 2 CPU(s)"),
            "{text}"
        );
    }

    #[test]
    fn the_rpc_row_is_set_beside_the_socket_beneath_it() {
        let records = vec![
            Record::value("unix-stream", 64, Metric::RoundTripP50, 10.0, 100),
            Record::value("unix-stream", 64, Metric::RoundTripP99, 20.0, 100),
            Record::value("rpc", 64, Metric::RoundTripP50, 12.5, 90),
            Record::value("rpc", 64, Metric::RoundTripP99, 30.0, 90),
            Record::value("rpc", 4096, Metric::RoundTripP50, 15.0, 90),
        ];
        let ratios = rpc_ratios(&records);
        assert_eq!(ratios.len(), 1, "{ratios:?}");
        assert_eq!(ratios[0].value, Some(1.25));
        assert_eq!(ratios[0].samples, 90);
        let mut all = records;
        all.extend(ratios);
        let report = Report {
            host: Host {
                kernel: "k".into(),
                cpu_model: "c".into(),
                cpus: 2,
                load_average: "0 0 0".into(),
            },
            settings: "s".into(),
            records: all,
        };
        let text = report.text();
        assert!(
            text.contains("    64 B  rpc 12.5 us, unix-stream 10.0 us: 1.25x"),
            "{text}"
        );
        // No throughput row for a mechanism measured by round trips only.
        let throughput = text.split("round trip,").next().unwrap();
        assert!(!throughput.contains("rpc"), "{text}");
    }
}
