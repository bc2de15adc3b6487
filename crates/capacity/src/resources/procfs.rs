//! CPU and memory from Linux's `/proc` and cgroup v2 files: a target process
//! (`--pid`), a cgroup (`--cgroup`), and the load generator itself.

use super::{Ident, Kind, Sample, SampleFuture, Source};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Kernel clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on every
/// Linux architecture powertune builds for).
const USER_HZ: f64 = 100.0;

/// CPUs this process may run on.
pub fn cores() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

/// utime + stime of `/proc/PID/stat` (or `/proc/PID/task/TID/stat`), in seconds.
fn stat_cpu_s(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Run-queue wait of every thread of a process, in seconds (`schedstat` field 2).
fn run_queue_s(pid: &str) -> Option<f64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0.0;
    for e in dir.flatten() {
        let p = e.path().join("schedstat");
        if let Ok(t) = std::fs::read_to_string(p) {
            if let Some(ns) = t
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
            {
                total += ns / 1e9;
            }
        }
    }
    Some(total)
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
fn rss_bytes(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// A rate of a cumulative counter between two samples.
#[derive(Debug, Default)]
struct Delta {
    last: Option<(Instant, f64)>,
}

impl Delta {
    /// Per second since the previous value (None on the first).
    fn per_s(&mut self, now: Instant, v: f64) -> Option<f64> {
        let out = self.last.and_then(|(t, prev)| {
            let dt = now.duration_since(t).as_secs_f64();
            (dt > 0.0).then(|| ((v - prev) / dt).max(0.0))
        });
        self.last = Some((now, v));
        out
    }
}

/// A process's CPU (utime + stime over the machine's cores, run-queue wait as
/// saturation) and resident memory (against the machine's memory).
pub struct Process {
    pid: String,
    cpu: Delta,
    queue: Delta,
    cores: f64,
}

impl Process {
    /// Checks that `/proc/PID/stat` is readable.
    pub fn new(pid: u32) -> Result<Process, String> {
        let p = pid.to_string();
        stat_cpu_s(&PathBuf::from(format!("/proc/{p}/stat"))).ok_or_else(|| {
            format!("--pid {pid}: no readable /proc/{pid}/stat (is the process running, on this machine?)")
        })?;
        Ok(Process {
            pid: p,
            cpu: Delta::default(),
            queue: Delta::default(),
            cores: cores(),
        })
    }
}

impl Source for Process {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let now = Instant::now();
            let mut out = Vec::new();
            let source = format!("/proc/{}", self.pid);
            if let Some(cpu) = stat_cpu_s(&PathBuf::from(format!("/proc/{}/stat", self.pid))) {
                let busy = self.cpu.per_s(now, cpu);
                let queue = run_queue_s(&self.pid).and_then(|q| self.queue.per_s(now, q));
                if let Some(b) = busy {
                    out.push((
                        Ident {
                            resource: format!("CPU (pid {})", self.pid),
                            kind: Kind::Cpu,
                            source: source.clone(),
                            saturation_word: "run queue",
                            unit: "cores",
                        },
                        Sample {
                            utilisation: Some((b / self.cores).min(1.0)),
                            saturation: queue,
                            used: Some(b),
                            capacity: Some(self.cores),
                            ..Default::default()
                        },
                    ));
                }
            }
            if let (Some(rss), Some(total)) = (rss_bytes(&self.pid), mem_total()) {
                out.push((
                    Ident {
                        resource: format!("memory (pid {})", self.pid),
                        kind: Kind::Memory,
                        source,
                        saturation_word: "",
                        unit: "",
                    },
                    Sample {
                        utilisation: Some(rss / total),
                        ..Default::default()
                    },
                ));
            }
            out
        })
    }
}

/// The load generator's own CPU: this process, less the threads whose name starts
/// with `exclude` (the embedded target's runtime in `--demo`).
pub struct Generator {
    exclude: Option<String>,
    cpu: Delta,
    cores: f64,
}

impl Generator {
    pub fn new(exclude: Option<String>) -> Generator {
        Generator {
            exclude,
            cpu: Delta::default(),
            cores: cores(),
        }
    }

    fn cpu_s(&self) -> Option<f64> {
        let Some(prefix) = &self.exclude else {
            return stat_cpu_s(Path::new("/proc/self/stat"));
        };
        // The live threads not named with the prefix (a thread that exited between two
        // samples drops out of the sum: that interval reads low, never high).
        threads_s(prefix, false).map(|(cpu, _)| cpu)
    }
}

/// CPU seconds and run-queue wait seconds of this process's live threads whose name
/// starts with `prefix` (or, with `matching` false, does not).
fn threads_s(prefix: &str, matching: bool) -> Option<(f64, f64)> {
    let (mut cpu, mut queue) = (0.0, 0.0);
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) == matching {
            cpu += stat_cpu_s(&e.path().join("stat")).unwrap_or(0.0);
            if let Ok(t) = std::fs::read_to_string(e.path().join("schedstat")) {
                if let Some(ns) = t
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    queue += ns / 1e9;
                }
            }
        }
    }
    Some((cpu, queue))
}

/// The embedded target's CPU in `--demo`: the threads of its runtime (named with a
/// prefix), against the machine's cores, their run-queue wait as saturation.
pub struct TargetThreads {
    prefix: String,
    cpu: Delta,
    queue: Delta,
    cores: f64,
}

impl TargetThreads {
    pub fn new(prefix: String) -> TargetThreads {
        TargetThreads {
            prefix,
            cpu: Delta::default(),
            queue: Delta::default(),
            cores: cores(),
        }
    }
}

impl Source for TargetThreads {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let now = Instant::now();
            let Some((cpu, queue)) = threads_s(&self.prefix, true) else {
                return Vec::new();
            };
            let (Some(busy), queue) = (self.cpu.per_s(now, cpu), self.queue.per_s(now, queue))
            else {
                return Vec::new();
            };
            vec![(
                Ident {
                    resource: "CPU (embedded target)".into(),
                    kind: Kind::Cpu,
                    source: format!("threads {}*", self.prefix),
                    saturation_word: "run queue",
                    unit: "cores",
                },
                Sample {
                    utilisation: Some((busy / self.cores).min(1.0)),
                    saturation: queue,
                    used: Some(busy),
                    capacity: Some(self.cores),
                    ..Default::default()
                },
            )]
        })
    }
}

impl Source for Generator {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let now = Instant::now();
            let Some(cpu) = self.cpu_s() else {
                return Vec::new();
            };
            let Some(busy) = self.cpu.per_s(now, cpu) else {
                return Vec::new();
            };
            // Threads appearing between two reads of the task list can make one
            // interval read high: no process uses more than the cores it may run on.
            let busy = busy.min(self.cores);
            vec![(
                Ident {
                    resource: "load generator CPU".into(),
                    kind: Kind::Generator,
                    source: "this process".into(),
                    saturation_word: "",
                    unit: "cores",
                },
                Sample {
                    utilisation: Some((busy / self.cores).min(1.0)),
                    used: Some(busy),
                    capacity: Some(self.cores),
                    ..Default::default()
                },
            )]
        })
    }
}

/// A cgroup v2 directory: `cpu.stat` usage against `cpu.max` (or the machine's
/// cores), throttled periods as saturation; `memory.current` against `memory.max`,
/// `memory.events` `oom_kill` as errors.
pub struct Cgroup {
    dir: PathBuf,
    usage: Delta,
    last_periods: Option<(f64, f64)>,
    cores: f64,
}

fn read_kv(path: &Path) -> Option<Vec<(String, f64)>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.parse().ok()?))
            })
            .collect(),
    )
}

fn kv(v: &[(String, f64)], key: &str) -> Option<f64> {
    v.iter().find(|(k, _)| k == key).map(|(_, x)| *x)
}

impl Cgroup {
    /// Checks that `DIR/cpu.stat` is readable (a cgroup v2 directory).
    pub fn new(dir: PathBuf) -> Result<Cgroup, String> {
        read_kv(&dir.join("cpu.stat")).ok_or_else(|| {
            format!(
                "--cgroup {}: no readable cpu.stat (expected a cgroup v2 directory, e.g. /sys/fs/cgroup/system.slice/app.service)",
                dir.display()
            )
        })?;
        // cpu.max: "max 100000" (no limit) or "QUOTA PERIOD".
        let limit = std::fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .and_then(|t| {
                let mut it = t.split_whitespace();
                let q: f64 = it.next()?.parse().ok()?;
                let p: f64 = it.next()?.parse().ok()?;
                (p > 0.0).then_some(q / p)
            });
        Ok(Cgroup {
            dir,
            usage: Delta::default(),
            last_periods: None,
            cores: limit.unwrap_or_else(cores),
        })
    }
}

impl Source for Cgroup {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let now = Instant::now();
            let mut out = Vec::new();
            let shown = self.dir.display().to_string();
            if let Some(stat) = read_kv(&self.dir.join("cpu.stat")) {
                let busy = kv(&stat, "usage_usec").and_then(|u| self.usage.per_s(now, u / 1e6));
                let periods = kv(&stat, "nr_periods").zip(kv(&stat, "nr_throttled"));
                let throttled = match (self.last_periods, periods) {
                    (Some((p0, t0)), Some((p1, t1))) if p1 > p0 => Some((t1 - t0) / (p1 - p0)),
                    (Some(_), Some(_)) => Some(0.0),
                    _ => None,
                };
                self.last_periods = periods;
                if let Some(b) = busy {
                    out.push((
                        Ident {
                            resource: format!("CPU (cgroup {shown})"),
                            kind: Kind::Cpu,
                            source: shown.clone(),
                            saturation_word: "throttled",
                            unit: "cores",
                        },
                        Sample {
                            utilisation: Some((b / self.cores).min(1.0)),
                            saturation: throttled,
                            used: Some(b),
                            capacity: Some(self.cores),
                            ..Default::default()
                        },
                    ));
                }
            }
            let current = std::fs::read_to_string(self.dir.join("memory.current"))
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok());
            let max = std::fs::read_to_string(self.dir.join("memory.max"))
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .or_else(mem_total);
            let oom = read_kv(&self.dir.join("memory.events")).and_then(|e| kv(&e, "oom_kill"));
            if let (Some(c), Some(m)) = (current, max) {
                out.push((
                    Ident {
                        resource: format!("memory (cgroup {shown})"),
                        kind: Kind::Memory,
                        source: shown,
                        saturation_word: "",
                        unit: "",
                    },
                    Sample {
                        utilisation: Some(c / m),
                        errors: oom,
                        ..Default::default()
                    },
                ));
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_is_read() {
        assert!(stat_cpu_s(Path::new("/proc/self/stat")).is_some());
        assert!(rss_bytes("self").unwrap() > 0.0);
        assert!(Process::new(0).is_err());
    }

    #[tokio::test]
    async fn a_busy_generator_is_measured() {
        let mut g = Generator::new(None);
        assert!(
            g.sample().await.is_empty(),
            "the first sample only sets the start"
        );
        let until = Instant::now() + std::time::Duration::from_millis(200);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let s = g.sample().await;
        assert_eq!(s.len(), 1);
        assert!(s[0].1.utilisation.unwrap() > 0.0);
    }

    #[tokio::test]
    async fn a_cgroup_directory_is_read_from_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        write(
            "cpu.stat",
            "usage_usec 1000000\nnr_periods 10\nnr_throttled 0\n",
        );
        write("cpu.max", "50000 100000\n");
        write("memory.current", "50\n");
        write("memory.max", "100\n");
        write("memory.events", "oom 0\noom_kill 0\n");
        let mut c = Cgroup::new(dir.path().to_path_buf()).unwrap();
        assert_eq!(c.cores, 0.5);
        let first = c.sample().await;
        assert_eq!(first.len(), 1, "memory only on the first sample");
        write(
            "cpu.stat",
            "usage_usec 1100000\nnr_periods 20\nnr_throttled 5\n",
        );
        let second = c.sample().await;
        let cpu = second.iter().find(|(i, _)| i.kind == Kind::Cpu).unwrap();
        assert_eq!(cpu.1.saturation, Some(0.5));
        assert!(Cgroup::new(dir.path().join("nope")).is_err());
    }
}
