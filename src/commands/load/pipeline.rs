//! The loader's threads (module doc of `load`, steps 2–4):
//!
//! - **readers** (up to 4): take a numbered chunk of messages from librdkafka under the order
//!   lock, decode it without copying the messages, pass it on;
//! - **assembler** (the calling thread): puts chunks back in read order, pushes their events into
//!   the micro-batch, and hands a full (or timed-out) batch to the sink;
//! - **sink**: applies a batch in one warehouse transaction, then commits its offsets.
//!
//! The hand-over is a rendezvous: while the sink applies batch N the assembler fills batch N+1
//! and then waits, and the readers stop when their bounded queue is full. So at most two batches
//! are in memory, and offsets are committed in order, each only after its batch is in the
//! warehouse.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use super::isolate::Refused;
use super::metrics::{self, Committed, Metrics, Shared};
use super::{Plan, Summary, TargetRows, Targets};
use crate::cdc::batch::{Batch, Compacted, TableId};
use crate::cdc::dlq::{self, DeadLetter};
use crate::cdc::event::{Decoded, Decoder, KafkaPosition, MessageRef, Op};
use crate::cdc::topics::table_of_topic;
use crate::clients::kafka::{Kafka, OutMessage, Producer, Reader, StartAt};
use crate::clients::warehouse::Sink;
use crate::config::Config;
use crate::error::{CliError, Outcome};
use crate::output::{Output, progress_style};
use crate::retry::{Backoff, Breaker};

/// The largest message the dead-letter topic takes (its `max.message.bytes`).
const DLQ_MAX_BYTES: &str = "16777216";

/// Messages a reader takes at once.
const CHUNK_MESSAGES: usize = 1024;

/// A decoded chunk, numbered in read order.
struct Chunk {
    seq: u64,
    items: Vec<Item>,
    /// Nothing more was waiting after it ([`crate::clients::kafka::Taken::drained`]).
    drained: bool,
}

// Nearly every item is a decoded event: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Item {
    Decoded(Decoded),
    Undecodable(Undecodable),
}

/// A message the decoder rejected: where it is, why, and (for the dead-letter queue) its key,
/// value and headers as read.
struct Undecodable {
    kafka: KafkaPosition,
    class: &'static str,
    reason: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: dlq::Headers,
}

/// A compacted batch on its way to the sink, with what the metrics need.
struct Job {
    compacted: Compacted,
    /// Messages of the batch that go to the dead-letter queue.
    poison: Vec<Undecodable>,
    kafka_ts_ms: Vec<i64>,
    source_ts_ms: Vec<i64>,
    handed_over: Instant,
}

/// The micro-batch being assembled.
#[derive(Default)]
struct Assembling {
    batch: Batch,
    poison: Vec<Undecodable>,
    kafka_ts_ms: Vec<i64>,
    source_ts_ms: Vec<i64>,
    started: Option<Instant>,
}

impl Assembling {
    /// An empty batch; `history` keeps every change (`load --history`).
    fn new(history: bool) -> Self {
        Assembling {
            batch: if history {
                Batch::with_history()
            } else {
                Batch::new()
            },
            ..Assembling::default()
        }
    }

    fn push(&mut self, decoded: Decoded) {
        self.started.get_or_insert_with(Instant::now);
        if let Some(ts) = decoded.kafka().timestamp_ms {
            self.kafka_ts_ms.push(ts);
        }
        if let Some(ts) = decoded.as_change().and_then(|e| e.source.ts_ms) {
            self.source_ts_ms.push(ts);
        }
        self.batch.push(decoded);
    }

    /// A message for the dead-letter queue: its offset is committed with the batch.
    fn push_poison(&mut self, bad: Undecodable) {
        self.started.get_or_insert_with(Instant::now);
        self.batch.skip(&bad.kafka);
        self.poison.push(bad);
    }

    fn events(&self) -> u64 {
        self.batch.stats().events_in
    }

    fn into_job(self) -> Job {
        let started = Instant::now();
        let compacted = self.batch.finish();
        tracing::debug!(
            events = compacted.stats.events_in,
            finish_ms = started.elapsed().as_millis() as u64,
            "batch compacted"
        );
        Job {
            compacted,
            poison: self.poison,
            kafka_ts_ms: self.kafka_ts_ms,
            source_ts_ms: self.source_ts_ms,
            handed_over: Instant::now(),
        }
    }
}

/// Runs the loader until caught up (`--until-caught-up`), stopped, or failed.
pub(super) fn load(
    plan: Plan,
    config: &Config,
    out: &Output,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let Plan {
        selection,
        group,
        otherwise_beginning,
        flush,
        until_caught_up,
        sink,
        dlq_topic,
        runtime,
        backoff,
        breaker,
        table_options,
        mut targets,
        metrics_file,
        metrics_interval,
        metrics_addr,
        commit_interval,
    } = plan;
    // The warehouse first: a file locked by another loader fails before anything is read.
    let mut db = super::open_sink(sink, config, table_options, &runtime)?;
    let shared = Metrics::new();
    if let Some(addr) = &metrics_addr {
        let bound = metrics::serve(shared.clone(), addr)?;
        tracing::info!("serving Prometheus metrics on http://{bound}/metrics");
    }
    let kafka = Kafka::new(&config.kafka);
    let dead_letters = match &dlq_topic {
        Some(topic) => {
            // Made up front, for messages as large as any it may have to keep.
            if kafka.ensure_topic(&runtime, topic, 1, &[("max.message.bytes", DLQ_MAX_BYTES)])? {
                tracing::info!("created the dead-letter topic `{topic}`");
            }
            Some(DeadLetters {
                producer: kafka.producer()?,
                topic: topic.clone(),
                kafka: kafka.clone(),
            })
        }
        None => None,
    };
    let session = kafka.open_group(&group)?;
    let all = session.topics()?;
    let topics = selection.resolve(&config.kafka.topic_prefix, &all)?;
    // Targets of the table topics now: a collision of two sources fails before any loading.
    for topic in &topics {
        if let Some((schema, table)) = table_of_topic(&config.kafka.topic_prefix, &topic.name) {
            targets.target(&TableId {
                schema: Some(schema.into()),
                name: table.into(),
            })?;
        }
    }
    let reader = session
        .reader(
            &topics,
            StartAt::Committed {
                otherwise_beginning,
            },
        )?
        .tolerate_outages(backoff.max_elapsed);
    if !out.is_quiet() {
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let _ = writeln!(
            std::io::stderr(),
            "loading {} into {} (group {group}){}",
            names.join(", "),
            db.describe(),
            if until_caught_up {
                ""
            } else {
                "; Ctrl-C to stop"
            }
        );
    }
    let bar = out.progress(None, "loading");
    if let Some(style) = progress_style("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));

    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let order = Mutex::new(0_u64);
    let done = AtomicBool::new(false);

    let result = std::thread::scope(|scope| -> Result<()> {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(workers * 2);
        let mut readers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let chunk_tx = chunk_tx.clone();
            let (reader, order) = (&reader, &order);
            let worker = std::thread::Builder::new().name("load-read".into());
            readers.push(worker.spawn_scoped(scope, move || {
                let result = read_chunks(reader, order, stop, until_caught_up, &chunk_tx);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })?);
        }
        drop(chunk_tx);

        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(0);
        let sink = {
            let (reader, shared, bar, db, targets, dead_letters) = (
                &reader,
                &shared,
                &bar,
                db.as_mut(),
                &mut targets,
                dead_letters.as_ref(),
            );
            let thread = std::thread::Builder::new().name("load-sink".into());
            thread.spawn_scoped(scope, move || {
                let result = apply_jobs(
                    job_rx,
                    SinkThread {
                        db,
                        targets,
                        dead_letters,
                        reader,
                        shared,
                        bar,
                        out,
                        commit_interval,
                        backoff,
                        breaker: Breaker::new(breaker.0, breaker.1),
                        stop,
                    },
                );
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })?
        };
        if let Some(path) = &metrics_file {
            let (shared, done) = (&shared, &done);
            let thread = std::thread::Builder::new().name("load-metrics-file".into());
            thread.spawn_scoped(scope, move || {
                let mut last = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() >= metrics_interval {
                        if let Err(e) = metrics::write_file(shared, path) {
                            tracing::warn!("{e:#}");
                        }
                        last = Instant::now();
                    }
                }
            })?;
        }

        let assembled = assemble(
            chunk_rx,
            &job_tx,
            flush,
            dlq_topic.is_some(),
            table_options.history,
            stop,
        );
        drop(job_tx);
        let applied = sink
            .join()
            .map_err(|_| anyhow::anyhow!("the sink thread panicked"));
        done.store(true, Ordering::Relaxed);
        let read = crate::commands::join_workers(readers, "a reader thread");
        // The sink's error explains why the rest stopped: report it first.
        applied??;
        read?;
        assembled
    });
    bar.finish_and_clear();
    if let Some(path) = &metrics_file {
        metrics::write_file(&shared, path)?;
    }
    result?;

    tracing::debug!("loading done");
    let metrics = metrics::lock(&shared);
    let per_table = metrics.table_events();
    let mut rows = Vec::new();
    for (source, target) in targets.pairs() {
        rows.push(TargetRows {
            events: per_table.get(&source.to_string()).copied().unwrap_or(0),
            source: source.to_string(),
            // The warehouse may be the reason the loader stopped: counts are best effort.
            rows: db.row_count(&target).ok().flatten(),
            target: target.sql(db.dialect()),
        });
    }
    let summary = Summary {
        warehouse: db.describe(),
        group,
        targets: rows,
        metrics: metrics.snapshot(),
    };
    let status = metrics.status_line();
    drop(metrics);
    out.report(&summary, |w| {
        if !summary.targets.is_empty() {
            let mut table = out.table(["SOURCE", "TARGET", "EVENTS", "ROWS"]);
            for t in &summary.targets {
                table.add_row([
                    t.source.clone(),
                    t.target.clone(),
                    t.events.to_string(),
                    t.rows.map_or("-".into(), |n| n.to_string()),
                ]);
            }
            write!(w, "{}", out.render_table(&table))?;
        }
        writeln!(w, "loaded {status} into {}", summary.warehouse)
    })?;
    // Closing checkpoints a DuckDB file (DuckDB writes the WAL into the table storage) or
    // logs out of Snowflake.
    drop(db);
    tracing::debug!("closed the warehouse");
    // Everything is committed and the process is about to exit: tearing down librdkafka's
    // threads would only add ~0.1 s.
    std::mem::forget(reader);
    Ok(Outcome::Ok)
}

/// One reader: take a numbered chunk, decode it, pass it on; until caught up (with
/// `--until-caught-up`), stopped, or the assembler is gone.
fn read_chunks(
    reader: &Reader,
    order: &Mutex<u64>,
    stop: &AtomicBool,
    until_caught_up: bool,
    chunks: &mpsc::SyncSender<Chunk>,
) -> Result<()> {
    let mut decoder = Decoder::new();
    let mut messages: Vec<BorrowedMessage<'_>> = Vec::with_capacity(CHUNK_MESSAGES);
    while let Some(taken) =
        reader.take_batch(order, &mut messages, CHUNK_MESSAGES, until_caught_up, stop)?
    {
        let items = messages
            .drain(..)
            .map(|m| decode(&mut decoder, &m))
            .collect();
        let chunk = Chunk {
            seq: taken.seq,
            items,
            drained: taken.drained,
        };
        if chunks.send(chunk).is_err() || taken.last {
            break;
        }
    }
    Ok(())
}

fn decode(decoder: &mut Decoder, message: &BorrowedMessage<'_>) -> Item {
    let raw = MessageRef {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key(),
        value: message.payload(),
    };
    match decoder.decode(&raw) {
        Ok(Decoded::Change(mut event)) => {
            // Only a delete's before image is used (soft delete); the rest halves the memory.
            if event.op != Op::Delete {
                event.before = None;
            }
            Item::Decoded(Decoded::Change(event))
        }
        Ok(other) => Item::Decoded(other),
        Err(e) => {
            let headers = crate::clients::kafka::headers_of(message);
            Item::Undecodable(Undecodable {
                kafka: KafkaPosition {
                    topic: raw.topic.into(),
                    partition: raw.partition,
                    offset: raw.offset,
                    timestamp_ms: raw.timestamp_ms,
                },
                class: e.kind().as_str(),
                reason: e.to_string(),
                key: raw.key.map(<[u8]>::to_vec),
                value: raw.value.map(<[u8]>::to_vec),
                headers,
            })
        }
    }
}

/// When the assembler hands a batch over (`--batch-size`, `--flush-interval`, `--linger`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Flush {
    /// At this many events.
    pub batch_size: u64,
    /// At the latest this long after the batch's first event.
    pub interval: Duration,
    /// Once everything there was has been read, at least this long after the batch's first
    /// event (0: at once).
    pub linger: Duration,
}

impl Flush {
    /// How long from now a batch started at `started` may still wait, `drained` telling whether
    /// everything there was has been read.
    fn wait(&self, started: Instant, drained: bool) -> Duration {
        let deadline = if drained {
            self.linger.min(self.interval)
        } else {
            self.interval
        };
        deadline.saturating_sub(started.elapsed())
    }
}

/// Puts chunks back in read order and hands batches to the sink. Returns when the readers are
/// done (caught up or stopped) and the last batch is handed over, or at an undecodable message.
///
/// A batch is handed over at `--batch-size` events, `--flush-interval` after its first event, or
/// as soon as the readers have caught up with the topics (after `--linger`): a backlog is read
/// in large batches, while a trickle of changes is not held back waiting for more.
fn assemble(
    chunks: mpsc::Receiver<Chunk>,
    jobs: &mpsc::SyncSender<Job>,
    flush: Flush,
    dead_letters: bool,
    history: bool,
    stop: &AtomicBool,
) -> Result<()> {
    let batch_size = flush.batch_size;
    let mut waiting: BTreeMap<u64, Chunk> = BTreeMap::new();
    let mut next = 0_u64;
    let mut current = Assembling::new(history);
    let mut closed = false;
    // Whether the last chunk put into the batch left nothing waiting.
    let mut drained = false;
    let hand_over = |current: &mut Assembling| -> bool {
        let full = std::mem::replace(current, Assembling::new(history));
        if full.events() == 0 {
            return true;
        }
        // A send fails only when the sink stopped on an error, which it reports itself.
        jobs.send(full.into_job()).is_ok()
    };
    while !closed || !waiting.is_empty() {
        let timeout = current
            .started
            .map_or(Duration::from_millis(200), |s| flush.wait(s, drained));
        match chunks.recv_timeout(timeout) {
            Ok(chunk) => {
                waiting.insert(chunk.seq, chunk);
                // Everything already decoded joins this batch.
                while let Ok(chunk) = chunks.try_recv() {
                    waiting.insert(chunk.seq, chunk);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
        }
        while let Some(chunk) = waiting.remove(&next) {
            next += 1;
            drained = chunk.drained;
            if tracing::enabled!(tracing::Level::DEBUG) {
                trace_chunk(&chunk);
            }
            for item in chunk.items {
                match item {
                    Item::Decoded(decoded) => {
                        current.push(decoded);
                        if current.events() >= batch_size && !hand_over(&mut current) {
                            return Ok(());
                        }
                    }
                    Item::Undecodable(bad) if dead_letters => {
                        current.push_poison(bad);
                        if current.events() >= batch_size && !hand_over(&mut current) {
                            return Ok(());
                        }
                    }
                    Item::Undecodable(bad) => {
                        stop.store(true, Ordering::Relaxed);
                        hand_over(&mut current);
                        return Err(undecodable(&bad));
                    }
                }
            }
        }
        let due = current
            .started
            .is_some_and(|s| flush.wait(s, drained).is_zero());
        if due && !hand_over(&mut current) {
            return Ok(());
        }
        if closed && !waiting.is_empty() && !waiting.contains_key(&next) {
            // A reader failed between numbering and sending a chunk; it reports why.
            break;
        }
    }
    hand_over(&mut current);
    Ok(())
}

/// How late a chunk reaches the assembler: now − the oldest Kafka timestamp in it.
fn trace_chunk(chunk: &Chunk) {
    let oldest = chunk
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Decoded(d) => d.kafka().timestamp_ms,
            Item::Undecodable(u) => u.kafka.timestamp_ms,
        })
        .min();
    let lag_ms = oldest.map(|ts| chrono::Utc::now().timestamp_millis() - ts);
    tracing::debug!(
        seq = chunk.seq,
        messages = chunk.items.len(),
        drained = chunk.drained,
        lag_ms,
        "chunk read"
    );
}

fn undecodable(bad: &Undecodable) -> anyhow::Error {
    CliError::Failed {
        message: format!(
            "the message at {}/{}@{} cannot be decoded: {}; the events before it are loaded and \
             committed, it and the rest are not",
            bad.kafka.topic, bad.kafka.partition, bad.kafka.offset, bad.reason
        ),
        hint: Some(format!(
            "inspect it with `cdcctl tail --topic {} --from offset:{} --count 1 --format raw`; \
             without --no-dlq it goes to the dead-letter topic and loading goes on",
            bad.kafka.topic, bad.kafka.offset
        )),
    }
    .into()
}

/// The dead-letter queue of the loader.
struct DeadLetters {
    producer: Producer,
    topic: String,
    /// For reading again the messages of a table the warehouse rejected.
    kafka: Kafka,
}

impl DeadLetters {
    /// Produces a batch's poison messages and waits for the broker to have them all: only then
    /// may the batch's offsets, theirs included, be committed.
    fn send(&self, poison: &[&Undecodable], out: &Output) -> Result<()> {
        if poison.is_empty() {
            return Ok(());
        }
        let failed_at = chrono::Utc::now();
        let headers: Vec<dlq::Headers> = poison
            .iter()
            .map(|bad| {
                DeadLetter {
                    class: bad.class.to_string(),
                    message: bad.reason.clone(),
                    topic: bad.kafka.topic.to_string(),
                    partition: bad.kafka.partition,
                    offset: bad.kafka.offset,
                    table: table_of_topic_any(&bad.kafka.topic),
                    failed_at,
                    attempts: 1,
                }
                .headers(&bad.headers)
            })
            .collect();
        let messages: Vec<OutMessage<'_>> = poison
            .iter()
            .zip(&headers)
            .map(|(bad, headers)| OutMessage {
                key: bad.key.as_deref(),
                value: bad.value.as_deref(),
                headers,
            })
            .collect();
        self.producer
            .send_all(&self.topic, &messages, Duration::from_secs(60))
            .with_context(|| {
                format!(
                    "cannot write {} message(s) to the dead-letter topic `{}`; the batch is in the \
                     warehouse but its offsets are not committed (a restart replays it, changing \
                     nothing)",
                    poison.len(),
                    self.topic
                )
            })?;
        let first = &poison[0];
        out.warn(&format!(
            "{} message(s) could not be loaded and went to `{}` (first: {}/{}@{}: {}); \
             `cdcctl replay-dlq list` shows them",
            poison.len(),
            self.topic,
            first.kafka.topic,
            first.kafka.partition,
            first.kafka.offset,
            first.reason
        ));
        Ok(())
    }
}

/// `schema.table` of a table topic, whatever its prefix (`<prefix>.<schema>.<table>`).
fn table_of_topic_any(topic: &str) -> Option<String> {
    let mut parts = topic.rsplitn(3, '.');
    let table = parts.next()?;
    let schema = parts.next()?;
    parts.next()?;
    Some(format!("{schema}.{table}"))
}

/// Offsets of applied batches not yet committed: (topic, partition) → next offset to read.
#[derive(Default)]
struct Uncommitted(BTreeMap<(String, i32), i64>);

impl Uncommitted {
    fn add(&mut self, stats: &crate::cdc::batch::BatchStats) {
        for (topic, partition, next) in stats.commit_offsets() {
            let slot = self.0.entry((topic.to_owned(), partition)).or_insert(next);
            *slot = (*slot).max(next);
        }
    }

    fn commit(&mut self, reader: &Reader) -> Result<()> {
        reader
            .commit(self.0.iter().map(|((t, p), o)| (t.as_str(), *p, *o)))
            .context(
                "the loaded batches are in the warehouse but their offsets are not committed; \
                 the next run replays them, which changes nothing",
            )?;
        self.0.clear();
        Ok(())
    }
}

/// What the sink thread works with.
struct SinkThread<'a> {
    db: &'a mut dyn Sink,
    targets: &'a mut Targets,
    dead_letters: Option<&'a DeadLetters>,
    reader: &'a Reader,
    shared: &'a Shared,
    bar: &'a indicatif::ProgressBar,
    out: &'a Output,
    commit_interval: Duration,
    backoff: Backoff,
    breaker: Breaker,
    stop: &'a AtomicBool,
}

/// The sink thread: apply each batch in one transaction (retried while the warehouse is
/// unavailable, behind a circuit breaker); commit the offsets of applied batches every
/// `commit_interval` (each batch with 0) and at the end, also when a batch fails.
fn apply_jobs(jobs: mpsc::Receiver<Job>, mut t: SinkThread<'_>) -> Result<()> {
    let mut uncommitted = Uncommitted::default();
    let mut last_commit = Instant::now();
    let result = (|| -> Result<()> {
        let mut reported_dropped = std::collections::HashSet::new();
        for job in jobs {
            let Some(rejected) = apply_with_retries(&job, &mut t, &mut reported_dropped)? else {
                // Stopped while the warehouse was unavailable: the batch is abandoned, its
                // offsets not committed (it is read again next time).
                break;
            };
            let poison: Vec<&Undecodable> = job.poison.iter().chain(&rejected).collect();
            if let Some(dead_letters) = t.dead_letters {
                // The broker may be restarting: retried like the warehouse (no breaker; a dead
                // letter written twice is harmless, one lost is not).
                let started = Instant::now();
                let mut attempt = 0;
                loop {
                    match dead_letters.send(&poison, t.out) {
                        Ok(()) => break,
                        Err(e)
                            if crate::clients::is_transient(&e)
                                && t.backoff.keep_trying(started, Instant::now())
                                && !t.stop.load(Ordering::Relaxed) =>
                        {
                            attempt += 1;
                            tracing::warn!("{}; retrying", crate::error::one_line(&e));
                            std::thread::sleep(t.backoff.wait(attempt, rand::random::<f64>()));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            metrics::lock(t.shared).record_dead_letters(poison.len() as u64);
            uncommitted.add(&job.compacted.stats);
            if last_commit.elapsed() >= t.commit_interval {
                match uncommitted.commit(t.reader) {
                    Ok(()) => {}
                    // The broker is away (a restart): keep the offsets, commit them later.
                    Err(e) if crate::clients::is_transient(&e) => {
                        tracing::warn!("{}; committing later", crate::error::one_line(&e));
                    }
                    Err(e) => return Err(e),
                }
                last_commit = Instant::now();
            }
            t.bar.set_message(metrics::lock(t.shared).status_line());
        }
        Ok(())
    })();
    let committed = uncommitted.commit(t.reader);
    tracing::debug!("offsets committed");
    result.and(committed)
}

/// Applies a batch, retrying while the warehouse is unavailable (transient errors) with backoff
/// and the breaker. Returns the messages of tables the warehouse rejected (for the dead-letter
/// queue), or `None` when stopped (Ctrl-C, SIGTERM) before the batch landed.
fn apply_with_retries(
    job: &Job,
    t: &mut SinkThread<'_>,
    reported_dropped: &mut std::collections::HashSet<(String, String)>,
) -> Result<Option<Vec<Undecodable>>> {
    let mut failing_since: Option<Instant> = None;
    let mut attempt = 0_u32;
    loop {
        // While the breaker is open, no attempt: wait (in steps, to notice a stop).
        loop {
            let wait = t.breaker.wait(Instant::now());
            metrics::lock(t.shared).set_breaker(t.breaker.state(Instant::now()).name());
            if wait.is_zero() {
                break;
            }
            t.bar.set_message(format!(
                "warehouse unavailable: circuit breaker open, next attempt in {:.0}s",
                wait.as_secs_f64().ceil()
            ));
            if t.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            std::thread::sleep(wait.min(Duration::from_millis(200)));
        }
        let isolate = t.dead_letters.is_some();
        match apply_job(
            job,
            t.db,
            t.targets,
            t.shared,
            t.out,
            reported_dropped,
            isolate,
        ) {
            Ok(rejected) => {
                if failing_since.is_some() {
                    t.out
                        .warn("the warehouse is available again: loading goes on");
                }
                t.breaker.success();
                metrics::lock(t.shared).set_breaker(t.breaker.state(Instant::now()).name());
                let Some(dead_letters) = t.dead_letters else {
                    return Ok(Some(Vec::new()));
                };
                return rejected_messages(&rejected, &dead_letters.kafka).map(Some);
            }
            Err(e) if crate::clients::is_transient(&e) => {
                let now = Instant::now();
                let since = *failing_since.get_or_insert(now);
                if !t.backoff.keep_trying(since, now) {
                    return Err(e.context(format!(
                        "the warehouse has been unavailable for {} s (--retry-max-elapsed); \
                         nothing of the batch was committed",
                        since.elapsed().as_secs()
                    )));
                }
                attempt += 1;
                t.breaker.failure(now);
                let state = t.breaker.state(now);
                {
                    let mut m = metrics::lock(t.shared);
                    m.record_retry();
                    m.set_breaker(state.name());
                }
                if attempt == 1 || t.breaker.wait(now) > Duration::ZERO {
                    t.out.warn(&format!(
                        "the warehouse is unavailable ({}); retrying, no offsets move meanwhile \
                         (circuit breaker {})",
                        crate::error::one_line(&e),
                        state.name()
                    ));
                }
                let wait = t.backoff.wait(attempt, rand::random::<f64>());
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if t.stop.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Keyless events of a keyed table — one with keyed events in the batch, or whose target exists
/// (a table without key is never created) — have lost their key (Debezium keys every message of
/// a table with a primary key), so they cannot be merged and would make the warehouse reject the
/// whole table. Returns the batch without them and what was taken out, or `None` when no table
/// has such events.
fn split_missing_keys(
    compacted: &Compacted,
    target_exists: &mut dyn FnMut(&TableId) -> bool,
) -> Option<(Compacted, Vec<Refused>)> {
    let keyed: Vec<bool> = compacted
        .tables
        .iter()
        .map(|p| {
            !p.keyless.is_empty()
                && (!(p.upserts.is_empty() && p.deletes.is_empty()) || target_exists(&p.table))
        })
        .collect();
    if !keyed.contains(&true) {
        return None;
    }
    let mut kept = compacted.clone();
    let mut rejected = Vec::new();
    for (plan, _) in kept.tables.iter_mut().zip(keyed).filter(|(_, k)| *k) {
        let keyless = std::mem::take(&mut plan.keyless);
        let mut positions: Vec<(String, i32, i64)> = keyless
            .iter()
            .map(|e| (e.kafka.topic.to_string(), e.kafka.partition, e.kafka.offset))
            .collect();
        positions.sort();
        rejected.push(Refused {
            positions,
            table: plan.table.to_string(),
            reason: format!(
                "{} message(s) of {} have no key, while its other messages have one: they \
                 cannot be merged (a producer that dropped the key?)",
                keyless.len(),
                plan.table
            ),
            class: "missing_key",
        });
    }
    Some((kept, rejected))
}

/// Applies one batch and records it in the metrics. When the batch fails for a reason that is
/// not transient and `isolate` (a dead-letter topic exists), each table is applied on its own:
/// the tables the warehouse takes land, the others are returned, to be dead-lettered.
fn apply_job(
    job: &Job,
    db: &mut dyn Sink,
    targets: &mut Targets,
    shared: &Shared,
    out: &Output,
    reported_dropped: &mut std::collections::HashSet<(String, String)>,
    isolate: bool,
) -> Result<Vec<Refused>> {
    let waited = job.handed_over.elapsed();
    let split = if isolate {
        split_missing_keys(&job.compacted, &mut |table| {
            targets
                .target(table)
                .ok()
                .and_then(|t| db.row_count(&t).ok().flatten())
                .is_some()
        })
    } else {
        None
    };
    let (compacted, mut rejected) = match split {
        Some((kept, rejected)) => (std::borrow::Cow::Owned(kept), rejected),
        None => (std::borrow::Cow::Borrowed(&job.compacted), Vec::new()),
    };
    let compacted = compacted.as_ref();
    let applied = if isolate {
        let (applied, refused) = super::isolate::apply(db, targets, compacted)?;
        rejected.extend(refused);
        applied
    } else {
        super::apply_compacted(db, targets, compacted)?
    };
    let committed_at_ms = chrono::Utc::now().timestamp_millis();
    tracing::debug!(
        waited_ms = waited.as_millis() as u64,
        apply_ms = (job.handed_over.elapsed() - waited).as_millis() as u64,
        "batch applied"
    );
    for table in &applied.created {
        tracing::info!("created table {}", table.sql(db.dialect()));
    }
    for statement in &applied.altered {
        tracing::info!("{statement}");
    }
    for (table, column) in applied.dropped_in_source {
        let name = table.sql(db.dialect());
        if reported_dropped.insert((name.clone(), column.clone())) {
            out.warn(&format!(
                "column `{column}` of {name} is no longer sent by the source: kept, new rows \
                 get NULL"
            ));
        }
    }
    metrics::lock(shared).record(&Committed {
        stats: &compacted.stats,
        rows_changed: applied.rows_changed,
        statements: applied.statements,
        changes_recorded: applied.changes_recorded,
        kafka_ts_ms: &job.kafka_ts_ms,
        source_ts_ms: &job.source_ts_ms,
        handed_over: job.handed_over,
        committed_at_ms,
    });
    for r in &rejected {
        out.warn(&format!(
            "the warehouse rejected the changes of {} ({}): its {} message(s) of this batch go \
             to the dead-letter topic; fix the cause, then `cdcctl replay-dlq replay`",
            r.table,
            r.reason,
            r.positions.len()
        ));
    }
    Ok(rejected)
}

/// The messages of rejected tables, read again, as dead letters.
fn rejected_messages(rejected: &[Refused], kafka: &Kafka) -> Result<Vec<Undecodable>> {
    let mut out = Vec::new();
    for r in rejected {
        for m in kafka.fetch(&r.positions)? {
            out.push(Undecodable {
                kafka: KafkaPosition {
                    topic: m.topic.as_str().into(),
                    partition: m.partition,
                    offset: m.offset,
                    timestamp_ms: None,
                },
                class: r.class,
                reason: r.reason.clone(),
                key: m.key,
                value: m.value,
                headers: m.headers,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_for_more_only_while_there_is_more_to_read() {
        let flush = Flush {
            batch_size: 20_000,
            interval: Duration::from_secs(1),
            linger: Duration::ZERO,
        };
        let started = Instant::now();
        // Still reading a backlog: up to the flush interval.
        let wait = flush.wait(started, false);
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Everything read: at once.
        assert_eq!(flush.wait(started, true), Duration::ZERO);
        // With a linger, that long after the batch's first event, never past the interval.
        let lingering = Flush {
            linger: Duration::from_millis(300),
            ..flush
        };
        let wait = lingering.wait(started, true);
        assert!(wait > Duration::from_millis(200) && wait <= Duration::from_millis(300));
        let long = Flush {
            linger: Duration::from_secs(5),
            ..flush
        };
        assert!(long.wait(started, true) <= Duration::from_secs(1));
        let old = started - Duration::from_secs(2);
        assert_eq!(flush.wait(old, false), Duration::ZERO);
    }
}
