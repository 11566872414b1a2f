//! The locally built Kafka-protocol broker (noida-db 0.2.3 + cdcctl's Fetch
//! patch, `scripts/patches/noida-db-0.2.3.patch`) behaves like a
//! fair broker: Fetch honours `max_bytes`/`partition_max_bytes` (a backlog far
//! larger than librdkafka's default `receive.message.max.bytes` is consumable
//! with default client settings) and `max_wait_ms` (an idle consumer does not
//! make the broker spin). Stock 0.2.3 fails both tests. The patch also lets the stack space out
//! the broker's log saves (`NOIDA_AUTOSAVE_SECS`), tested last.
//!
//! Each test starts its own private broker on a free port with a throwaway
//! data dir, so the shared dev stack is never touched. Needs `kcat` on PATH
//! and the broker built by `scripts/stack.sh install`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::free_port;

/// `${CDCCTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl}/noida/bin/noida-db`
fn broker_bin() -> PathBuf {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = non_empty("CDCCTL_CACHE_DIR").unwrap_or_else(|| {
        non_empty("XDG_CACHE_HOME")
            .unwrap_or_else(|| non_empty("HOME").expect("HOME is not set").join(".cache"))
            .join("cdcctl")
    });
    cache.join("noida").join("bin").join("noida-db")
}

fn require_kcat() {
    let ok = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "kcat is required for the broker tests (Debian: `apt-get install -y kcat`)"
    );
}

/// A child process killed (SIGKILL) and reaped when dropped, also on panic.
struct KillOnDrop(Child);

impl KillOnDrop {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private broker: own port, own data dir (a tempdir), stopped by PID on drop.
struct Broker {
    proc: KillOnDrop,
    addr: String,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with `env` added to its environment.
    fn start_with(env: &[(&str, &str)]) -> Broker {
        let bin = broker_bin();
        if !bin.is_file() {
            panic!(
                "broker binary not found at {}: run `scripts/stack.sh install` first \
                 (builds noida-db with scripts/patches/noida-db-0.2.3.patch)",
                bin.display()
            );
        }
        require_kcat();
        let mut dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // Another process may take the free port before the broker binds it: try another.
        for attempt in 1.. {
            let log = std::fs::File::create(dir.path().join("broker.out")).expect("broker log");
            let port = free_port();
            let child = Command::new(&bin)
                .args([
                    "start",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    &port.to_string(),
                    "--data-dir",
                ])
                .arg(&data)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut broker = Broker {
                proc: KillOnDrop(child),
                addr: format!("127.0.0.1:{port}"),
                dir,
            };
            match broker.wait_ready(Duration::from_secs(15)) {
                Ok(()) => return broker,
                Err(out) if out.contains("already in use") && attempt < 5 => {
                    dir = broker.into_dir()
                }
                Err(out) => panic!("broker exited during startup:\n{out}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Stops the broker and keeps its directory (for another start).
    fn into_dir(self) -> tempfile::TempDir {
        let Broker { proc, dir, .. } = self;
        drop(proc);
        dir
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.out")).unwrap_or_default()
    }

    /// Waits until the broker answers metadata; `Err(its output)` if it exited first.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.proc.0.try_wait() {
                return Err(format!("({status}) {}", self.output()));
            }
            let listening = TcpStream::connect_timeout(
                &self.addr.parse().expect("socket address"),
                Duration::from_millis(200),
            )
            .is_ok();
            if listening {
                let metadata_ok = Command::new("kcat")
                    .args(["-b", &self.addr, "-L", "-m", "2"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if metadata_ok {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "broker on {} not ready after {timeout:?}:\n{}",
                    self.addr,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// utime + stime of the broker process so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/<broker pid>/stat");
        // Fields after the parenthesised command name start at field 3 (state).
        let rest = &stat[stat.rfind(')').expect("malformed stat") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
    }
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn kcat(args: &[&str]) -> Command {
    let mut cmd = Command::new("kcat");
    cmd.args(args);
    cmd
}

/// Reads a pipe to the end on a thread; the join handle yields what was read.
fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` to exit; kills it (and panics) after `timeout`.
fn wait_or_kill(child: &mut KillOnDrop, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            panic!(
                "{what} did not finish within {timeout:?} (killed pid {})",
                child.pid()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a kcat consumer with piped output: (process, its stdout, its drained stderr).
fn spawn_consumer(
    args: &[&str],
) -> (
    KillOnDrop,
    std::process::ChildStdout,
    thread::JoinHandle<Vec<u8>>,
) {
    let mut consumer = KillOnDrop(
        kcat(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kcat {}: {e}", args.join(" "))),
    );
    let stdout = consumer.0.stdout.take().unwrap();
    let stderr = drain(consumer.0.stderr.take().unwrap());
    (consumer, stdout, stderr)
}

const BACKLOG_MESSAGES: usize = 70_000;
const MESSAGE_BYTES: usize = 3_200; // payload, without the newline delimiter

/// Message `i`: a unique, newline-free, fixed-size payload.
fn message(i: usize) -> Vec<u8> {
    let mut m = format!("msg-{i:08}-").into_bytes();
    m.extend((m.len()..MESSAGE_BYTES).map(|j| b'a' + ((i + j) % 26) as u8));
    m
}

#[test]
fn backlog_over_200mb_is_consumed_by_kcat_with_defaults() {
    let broker = Broker::start();
    let topic = "backlog";
    let total_bytes = BACKLOG_MESSAGES * MESSAGE_BYTES;
    assert!(
        total_bytes > 200 * 1024 * 1024,
        "backlog must exceed 200 MiB"
    );

    // Produce: newline-delimited messages streamed to `kcat -P` on stdin.
    let started = Instant::now();
    let mut producer = KillOnDrop(
        kcat(&["-b", &broker.addr, "-P", "-t", topic, "-p", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kcat -P"),
    );
    let mut stdin = producer.0.stdin.take().unwrap();
    let producer_err = drain(producer.0.stderr.take().unwrap());
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut stdin);
        for i in 0..BACKLOG_MESSAGES {
            out.write_all(&message(i))?;
            out.write_all(b"\n")?;
        }
        out.flush()
        // stdin is dropped here: EOF tells kcat to flush and exit.
    });
    let status = wait_or_kill(&mut producer, Duration::from_secs(120), "kcat -P");
    let written = writer.join().expect("writer thread");
    let err = String::from_utf8_lossy(&producer_err.join().unwrap()).into_owned();
    assert!(
        status.success() && written.is_ok(),
        "kcat -P failed ({status}, {written:?}):\n{err}"
    );
    let produce_time = started.elapsed();

    // Consume everything with default client settings.
    let started = Instant::now();
    let (mut consumer, stdout, consumer_err) = spawn_consumer(&[
        "-b",
        &broker.addr,
        "-C",
        "-t",
        topic,
        "-e",
        "-o",
        "beginning",
        "-q",
    ]);
    // Count messages and bytes while streaming: never hold 200 MB in memory.
    let counter = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, stdout);
        let (mut lines, mut bytes, mut first, mut last) = (0usize, 0usize, None, None);
        let mut line = Vec::with_capacity(MESSAGE_BYTES + 1);
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let head = line[..12.min(line.len())].to_vec();
            if first.is_none() {
                first = Some(head.clone());
            }
            last = Some(head);
            lines += 1;
            bytes += line.len();
            line.clear();
        }
        (lines, bytes, first, last)
    });
    let status = wait_or_kill(
        &mut consumer,
        Duration::from_secs(60),
        "kcat -C -e (backlog)",
    );
    let (count, bytes, first, last) = counter.join().expect("counter thread");
    let err = String::from_utf8_lossy(&consumer_err.join().unwrap()).into_owned();
    let consume_time = started.elapsed();
    eprintln!(
        "backlog: {BACKLOG_MESSAGES} x {MESSAGE_BYTES} B = {:.1} MB; produce {produce_time:.2?}, \
         consume {consume_time:.2?}",
        total_bytes as f64 / 1e6
    );

    assert!(
        status.success(),
        "kcat -C exited with {status} after {count} messages:\n{err}"
    );
    assert_eq!(
        count, BACKLOG_MESSAGES,
        "messages consumed; kcat stderr:\n{err}"
    );
    assert_eq!(
        bytes,
        BACKLOG_MESSAGES * (MESSAGE_BYTES + 1),
        "bytes consumed"
    );
    assert_eq!(first.as_deref(), Some(&message(0)[..12]), "first message");
    assert_eq!(
        last.as_deref(),
        Some(&message(BACKLOG_MESSAGES - 1)[..12]),
        "last message"
    );
}

#[test]
fn idle_consumer_does_not_spin() {
    let broker = Broker::start();
    let topic = "idle";

    // A caught-up consumer on an empty topic (auto-created by its metadata request).
    let (mut consumer, stdout, stderr) = spawn_consumer(&[
        "-b",
        &broker.addr,
        "-C",
        "-t",
        topic,
        "-o",
        "end",
        "-u",
        "-X",
        "allow.auto.create.topics=true",
    ]);
    let (tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Let it connect, join and start fetching, then measure the broker's CPU.
    thread::sleep(Duration::from_secs(1));
    let window = Duration::from_secs(3);
    let before = broker.cpu_time();
    thread::sleep(window);
    let used = broker.cpu_time().saturating_sub(before);

    let alive = consumer.0.try_wait().expect("try_wait").is_none();
    if !alive {
        let err = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
        panic!("idle kcat consumer exited early; the measurement is void:\n{err}");
    }
    eprintln!("idle consumer: broker CPU {used:.3?} over {window:?}");
    assert!(
        used < Duration::from_millis(250),
        "broker used {used:?} of CPU in {window:?} serving one idle consumer (Fetch ignores max_wait_ms?)"
    );

    // The held-back Fetch still wakes up promptly when a record arrives.
    let mut producer = KillOnDrop(
        kcat(&["-b", &broker.addr, "-P", "-t", topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kcat -P"),
    );
    {
        let mut stdin = producer.0.stdin.take().unwrap();
        stdin.write_all(b"wake-up\n").unwrap();
    }
    let status = wait_or_kill(&mut producer, Duration::from_secs(20), "kcat -P (wake-up)");
    assert!(status.success(), "kcat -P exited with {status}");
    let got = lines.recv_timeout(Duration::from_secs(5));
    assert_eq!(
        got.as_deref(),
        Ok("wake-up"),
        "idle consumer did not receive a new record"
    );
    drop(consumer);
}

/// The broker's log snapshot in its data dir.
fn snapshot_of(broker: &Broker) -> PathBuf {
    broker.dir.path().join("data").join("kafka.json")
}

/// Produces one message to `topic`.
fn produce_one(broker: &Broker, topic: &str) {
    let mut child = kcat(&["-b", &broker.addr, "-P", "-t", topic])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat -P");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one message\n")
        .unwrap();
    assert!(child.wait().unwrap().success(), "kcat -P failed");
}

#[test]
fn the_log_is_saved_every_noida_autosave_secs_and_always_at_a_stop() {
    // Stock behaviour (no variable): saved about a second after a change.
    let broker = Broker::start();
    produce_one(&broker, "saved-soon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !snapshot_of(&broker).exists() {
        assert!(Instant::now() < deadline, "no save within 10 s");
        thread::sleep(Duration::from_millis(100));
    }

    // 0: never while running (what the benchmarks' throwaway brokers use)...
    let mut broker = Broker::start_with(&[("NOIDA_AUTOSAVE_SECS", "0")]);
    produce_one(&broker, "saved-at-stop");
    thread::sleep(Duration::from_secs(3));
    assert!(!snapshot_of(&broker).exists(), "saved while running");
    // ...but a stop (SIGTERM, by PID) saves.
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(broker.pid() as i32, libc::SIGTERM) };
    let status = wait_or_kill(&mut broker.proc, Duration::from_secs(30), "broker stop");
    assert!(status.success(), "{status}:\n{}", broker.output());
    let saved = std::fs::read_to_string(snapshot_of(&broker)).expect("saved at the stop");
    assert!(
        saved.contains("saved-at-stop"),
        "the topic is in the snapshot"
    );
}
