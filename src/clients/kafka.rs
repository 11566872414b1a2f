//! Kafka, through librdkafka (rdkafka): topic metadata, start positions, and a reader.
//!
//! The reader assigns partitions itself (`assign`, never `subscribe`). A session opened with
//! [`Kafka::open`] belongs to no group and never commits, so reading a topic with `cdcctl tail`
//! cannot move a running loader's consumer group. A session opened with [`Kafka::open_group`]
//! starts where its group's committed offsets say and commits only when told to
//! ([`Reader::commit`]), after the warehouse transaction: there is no group membership and no
//! rebalance, so one loader runs per group (DuckDB has one writer anyway). All calls here block;
//! commands run them on a blocking thread.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};

use crate::config::KafkaConfig;
use crate::error::CliError;

/// How long metadata and offset lookups may take before the broker counts as unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a bootstrap server may take to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Routes librdkafka's own logs and error callbacks to `-v` tracing: the errors that matter reach
/// the caller as typed results of `poll` and metadata calls, worded for people.
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, "librdkafka: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for QuietContext {}

/// A consumer whose librdkafka logs go to `-v` tracing.
pub type QuietConsumer = BaseConsumer<QuietContext>;

/// A handle on the configured brokers.
#[derive(Debug, Clone)]
pub struct Kafka {
    brokers: String,
    properties: BTreeMap<String, String>,
}

/// One topic and its partition count, from the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Partition ids.
    pub partitions: Vec<i32>,
}

/// Where reading starts in every assigned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained message.
    Beginning,
    /// Only messages produced after the reader starts.
    End,
    /// This absolute offset (clamped by the broker to what is retained).
    Offset(i64),
    /// The last N messages of each partition.
    Last(i64),
    /// The first message whose timestamp is at or after this time (milliseconds since epoch).
    Time(i64),
    /// The group's committed offset, and `Beginning` or `End` where the group has none
    /// (sessions of [`Kafka::open_group`] only).
    Committed {
        /// Start where nothing is committed: the beginning (true) or the end.
        otherwise_beginning: bool,
    },
}

/// The low and high watermarks of one partition: the first retained offset and the offset the
/// next message will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watermarks {
    /// First retained offset.
    low: i64,
    /// Offset of the next message to be produced.
    high: i64,
}

impl Kafka {
    /// A handle for the brokers and extra librdkafka properties of the configuration.
    pub fn new(config: &KafkaConfig) -> Self {
        Kafka {
            brokers: config.brokers.clone(),
            properties: config.properties.clone(),
        }
    }

    /// A client configuration with cdcctl's `defaults` for a use, then the profile's extra
    /// properties, which win.
    fn client_config_with(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        // With `-vv`, librdkafka's own debug lines (e.g. `kafka.properties` `debug = "fetch"`)
        // reach the log too.
        let level = if tracing::enabled!(tracing::Level::DEBUG) {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        };
        config
            .set("bootstrap.servers", &self.brokers)
            .set_log_level(level);
        for (key, value) in defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// A session: one consumer, not a member of any group, that never commits offsets, for the
    /// metadata and then the reading (one client to set up and tear down, not two).
    pub fn open(&self) -> Result<Session> {
        // librdkafka wants a group id even for `assign`; it is never joined (no `subscribe`) and
        // nothing is committed under it.
        self.open_with(&format!("cdcctl-reader-{}", std::process::id()), false)
    }

    /// A session of consumer group `group`: [`StartAt::Committed`] starts at its committed
    /// offsets and [`Reader::commit`] commits. Never joins the group (module doc).
    pub fn open_group(&self, group: &str) -> Result<Session> {
        self.open_with(group, true)
    }

    fn open_with(&self, group: &str, commits: bool) -> Result<Session> {
        self.check_reachable()?;
        // A reader of a backlog is throughput-bound, like kcat. When the local queue is full
        // librdkafka pauses fetching for `fetch.queue.backoff.ms` (1 s by default): a reader that
        // decodes would spend most of its time waiting. Resume almost at once instead.
        let defaults = [
            ("group.id", group.to_string()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("enable.partition.eof", "true".into()),
            // A committed offset no longer retained restarts at the oldest message, never
            // silently at the end.
            ("auto.offset.reset", "earliest".into()),
            ("fetch.queue.backoff.ms", "10".into()),
            ("fetch.wait.max.ms", "100".into()),
            // librdkafka prefetches up to 64 MB per client by default; the readers keep up with
            // a quarter of it, and the loader's memory stays bounded.
            ("queued.max.messages.kbytes", "16384".into()),
        ];
        let consumer = self
            .client_config_with(&defaults)
            .create_with_context(QuietContext)
            .context("cannot create a Kafka consumer (check `kafka.properties`)")?;
        Ok(Session {
            consumer,
            brokers: self.brokers.clone(),
            commits,
        })
    }

    /// A producer that waits for every message to be acknowledged by all in-sync replicas
    /// (the dead-letter queue of `load`; `replay-dlq`).
    pub fn producer(&self) -> Result<Producer> {
        self.check_reachable()?;
        let defaults = [
            ("acks", "all".to_string()),
            ("enable.idempotence", "true".into()),
            ("linger.ms", "5".into()),
            // A dead letter can be as large as the message it keeps.
            ("message.max.bytes", (16 * 1024 * 1024).to_string()),
        ];
        let inner = self
            .client_config_with(&defaults)
            .create_with_context(DeliveryContext::default())
            .context("cannot create a Kafka producer (check `kafka.properties`)")?;
        Ok(Producer {
            inner,
            brokers: self.brokers.clone(),
        })
    }

    /// Creates `topic` with `partitions` partitions and the given topic configs unless it
    /// exists; returns whether it was created. Blocks (drives the admin request on `runtime`).
    pub fn ensure_topic(
        &self,
        runtime: &tokio::runtime::Handle,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<bool> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        self.check_reachable()?;
        let admin: AdminClient<QuietContext> = self
            .client_config_with(&[])
            .create_with_context(QuietContext)
            .context("cannot create a Kafka admin client (check `kafka.properties`)")?;
        // All topics: asking for one by name may make the broker auto-create it.
        let exists = admin
            .inner()
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            })
            .unwrap_or(false);
        if exists {
            return Ok(false);
        }
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        for (key, value) in configs {
            new = new.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = runtime
            .block_on(admin.create_topics([&new], &options))
            .with_context(|| format!("cannot create topic `{topic}` on {}", self.brokers))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    anyhow::bail!("cannot create topic `{name}` on {}: {code}", self.brokers)
                }
            }
        }
        Ok(true)
    }

    /// The messages at `positions` (topic, partition, offset), read again with a throwaway
    /// consumer that belongs to no group (the loader dead-letters the events of a table the
    /// warehouse rejected this way, without keeping every message's bytes in memory).
    pub fn fetch(&self, positions: &[(String, i32, i64)]) -> Result<Vec<FetchedMessage>> {
        use rdkafka::Message;
        let session = self.open()?;
        let mut out = Vec::with_capacity(positions.len());
        for (topic, partition, offset) in positions {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            session
                .consumer
                .assign(&list)
                .with_context(|| format!("cannot assign {topic}/{partition}"))?;
            let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
            loop {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "cannot read {topic}/{partition}@{offset} again (no longer retained?)"
                );
                match session.consumer.poll(Duration::from_millis(500)) {
                    Some(Ok(m)) if m.offset() == *offset && m.partition() == *partition => {
                        out.push(FetchedMessage {
                            topic: topic.clone(),
                            partition: *partition,
                            offset: *offset,
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().map(<[u8]>::to_vec),
                            headers: headers_of(&m),
                        });
                        break;
                    }
                    Some(Ok(_)) | None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot read {topic}/{partition}@{offset} again")));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Fails at once when no bootstrap server accepts a TCP connection: librdkafka would retry
    /// until the metadata timeout (10 s) before saying the same.
    fn check_reachable(&self) -> Result<()> {
        let mut last_error = None;
        for server in self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let addresses = match server.to_socket_addrs() {
                Ok(addresses) => addresses,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            for address in addresses {
                match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                    Ok(_) => return Ok(()),
                    Err(e) => last_error = Some(e),
                }
            }
        }
        Err(CliError::Unreachable {
            service: "Kafka".into(),
            endpoint: self.brokers.clone(),
            source: last_error.map(anyhow::Error::new),
        }
        .into())
    }
}

/// One consumer on the brokers: metadata first, then [`Session::reader`].
pub struct Session {
    consumer: QuietConsumer,
    brokers: String,
    /// Opened for a group ([`Kafka::open_group`]).
    commits: bool,
}

fn unreachable(brokers: &str, source: KafkaError) -> anyhow::Error {
    CliError::Unreachable {
        service: "Kafka".into(),
        endpoint: brokers.to_string(),
        source: Some(source.into()),
    }
    .into()
}

impl Session {
    fn unreachable(&self, source: KafkaError) -> anyhow::Error {
        unreachable(&self.brokers, source)
    }

    /// Every topic in the cluster with its partitions, sorted by name.
    pub fn topics(&self) -> Result<Vec<TopicInfo>> {
        let metadata = self
            .consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| self.unreachable(e))?;
        let mut topics: Vec<TopicInfo> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| {
                let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                partitions.sort_unstable();
                TopicInfo {
                    name: t.name().to_string(),
                    partitions,
                }
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Per partition of `topics`: the low and high watermarks and the committed offset of the
    /// session's group (`None` when it has none), for lag.
    pub fn positions(&self, topics: &[TopicInfo]) -> Result<Vec<PartitionPosition>> {
        let mut list = TopicPartitionList::new();
        let mut out = Vec::new();
        for topic in topics {
            for &partition in &topic.partitions {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&topic.name, partition, METADATA_TIMEOUT)
                    .map_err(|e| self.unreachable(e))?;
                list.add_partition(&topic.name, partition);
                out.push(PartitionPosition {
                    topic: topic.name.clone(),
                    partition,
                    low,
                    high,
                    committed: None,
                });
            }
        }
        if out.is_empty() {
            return Ok(out);
        }
        let committed = self
            .consumer
            .committed_offsets(list, METADATA_TIMEOUT)
            .map_err(|e| self.unreachable(e))?;
        for element in committed.elements() {
            if let Offset::Offset(at) = element.offset()
                && let Some(p) = out
                    .iter_mut()
                    .find(|p| p.topic == element.topic() && p.partition == element.partition())
            {
                p.committed = Some(at);
            }
        }
        Ok(out)
    }

    /// A reader of the given partitions from `start`.
    pub fn reader(self, topics: &[TopicInfo], start: StartAt) -> Result<Reader> {
        let mut list = TopicPartitionList::new();
        let mut watermarks = BTreeMap::new();
        for topic in topics {
            for &partition in &topic.partitions {
                let marks = self
                    .consumer
                    .fetch_watermarks(&topic.name, partition, METADATA_TIMEOUT)
                    .map_err(|e| self.unreachable(e))?;
                let marks = Watermarks {
                    low: marks.0,
                    high: marks.1,
                };
                watermarks.insert((topic.name.clone(), partition), marks);
                let offset = match start {
                    StartAt::Beginning | StartAt::Time(_) => Offset::Beginning,
                    StartAt::End => Offset::End,
                    StartAt::Offset(n) => Offset::Offset(n.clamp(marks.low, marks.high)),
                    StartAt::Last(n) => Offset::Offset((marks.high - n).max(marks.low)),
                    StartAt::Committed { .. } => Offset::Stored,
                };
                list.add_partition_offset(&topic.name, partition, offset)
                    .with_context(|| format!("cannot assign {}/{partition}", topic.name))?;
            }
        }
        if let StartAt::Time(ms) = start {
            list = self.offsets_for_time(&list, ms)?;
        }
        if let StartAt::Committed {
            otherwise_beginning,
        } = start
        {
            list = self.committed(&list, otherwise_beginning)?;
        }
        // Partitions whose start is already at the end have nothing to read.
        let mut pending = Vec::new();
        for element in list.elements() {
            let key = (element.topic().to_string(), element.partition());
            let marks = watermarks[&key];
            let at_end = match element.offset() {
                Offset::Offset(o) => o >= marks.high,
                Offset::End => true,
                _ => marks.low >= marks.high,
            };
            if !at_end {
                pending.push((key.0, key.1, marks.high));
            }
        }
        self.consumer
            .assign(&list)
            .context("cannot assign the topic partitions")?;
        Ok(Reader {
            consumer: self.consumer,
            brokers: self.brokers,
            commits: self.commits,
            pending: Mutex::new(pending),
            outage_tolerance: Duration::ZERO,
            down_since: Mutex::new(None),
        })
    }

    /// The group's committed offset of each partition of `list`; where there is none (or it
    /// is no longer retained: the broker resets it) the beginning or the end.
    fn committed(
        &self,
        list: &TopicPartitionList,
        otherwise_beginning: bool,
    ) -> Result<TopicPartitionList> {
        if !self.commits {
            anyhow::bail!("committed offsets need a group session (Kafka::open_group)");
        }
        let found = self
            .consumer
            .committed_offsets(list.clone(), METADATA_TIMEOUT)
            .map_err(|e| self.unreachable(e))?;
        let otherwise = if otherwise_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        let mut resolved = TopicPartitionList::new();
        for element in found.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => otherwise,
            };
            resolved.add_partition_offset(element.topic(), element.partition(), offset)?;
        }
        Ok(resolved)
    }

    fn offsets_for_time(&self, list: &TopicPartitionList, ms: i64) -> Result<TopicPartitionList> {
        let mut query = TopicPartitionList::new();
        for element in list.elements() {
            query.add_partition_offset(element.topic(), element.partition(), Offset::Offset(ms))?;
        }
        let found = self
            .consumer
            .offsets_for_times(query, METADATA_TIMEOUT)
            .map_err(|e| self.unreachable(e))?;
        // A partition with no message at or after the time starts at its end.
        let mut resolved = TopicPartitionList::new();
        for element in found.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::End,
            };
            resolved.add_partition_offset(element.topic(), element.partition(), offset)?;
        }
        Ok(resolved)
    }
}

/// What one poll of a [`Reader`] produced.
pub enum Polled<'a> {
    /// A message.
    Message(BorrowedMessage<'a>),
    /// Every partition has been read up to the high watermark taken when the reader started.
    CaughtUp,
    /// Nothing arrived within the poll timeout.
    Idle,
}

/// A reader over assigned partitions. `poll` takes `&self`, so several threads can read (and
/// decode the messages they got without copying them) at once.
pub struct Reader {
    consumer: QuietConsumer,
    brokers: String,
    commits: bool,
    /// Partitions not yet read up to their start-time high watermark: (topic, partition, high).
    pending: Mutex<Vec<(String, i32, i64)>>,
    /// How long the brokers may be unreachable before `poll` fails ([`Reader::tolerate_outages`]).
    outage_tolerance: Duration,
    /// Since when they are unreachable, if they are.
    down_since: Mutex<Option<std::time::Instant>>,
}

impl Reader {
    /// Lets `poll` ride out brokers that are unreachable for up to `tolerance` (a restart, a
    /// network blip): librdkafka reconnects by itself, and `poll` reports idle meanwhile. By
    /// default the first transport error fails (a command that just reads should say so at once).
    pub fn tolerate_outages(mut self, tolerance: Duration) -> Self {
        self.outage_tolerance = tolerance;
        self
    }

    /// True when every partition has been read up to where it ended at start.
    pub fn caught_up(&self) -> bool {
        self.pending().is_empty()
    }

    fn pending(&self) -> MutexGuard<'_, Vec<(String, i32, i64)>> {
        // The list stays consistent whatever a panicking holder did: entries are only removed.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle_or_caught_up(&self) -> Polled<'_> {
        if self.caught_up() {
            Polled::CaughtUp
        } else {
            Polled::Idle
        }
    }

    /// Commits `offsets` (topic, partition, next offset to read) for the session's group and
    /// waits for the broker to confirm.
    pub fn commit<'a>(&self, offsets: impl IntoIterator<Item = (&'a str, i32, i64)>) -> Result<()> {
        if !self.commits {
            anyhow::bail!("a reader without group cannot commit (Kafka::open_group)");
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in offsets {
            list.add_partition_offset(topic, partition, Offset::Offset(next))?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .map_err(|e| match e.rdkafka_error_code() {
                Some(code) if is_transport_code(code) => unreachable(&self.brokers, e),
                _ => anyhow::Error::new(e).context("cannot commit the consumer group's offsets"),
            })
    }

    /// Waits up to `timeout` for the next message.
    pub fn poll(&self, timeout: Duration) -> Result<Polled<'_>> {
        match self.consumer.poll(timeout) {
            None => Ok(self.idle_or_caught_up()),
            Some(Ok(message)) => {
                use rdkafka::Message;
                if let Ok(mut down) = self.down_since.lock()
                    && down.take().is_some()
                {
                    tracing::warn!("Kafka at {} answers again", self.brokers);
                }
                let mut pending = self.pending();
                if !pending.is_empty() {
                    let (partition, next) = (message.partition(), message.offset() + 1);
                    pending.retain(|(topic, p, high)| {
                        !(*p == partition && next >= *high && topic == message.topic())
                    });
                }
                Ok(Polled::Message(message))
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // The EOF names only a partition number: ask for the positions of all of them.
                if let Ok(positions) = self.consumer.position() {
                    let mut pending = self.pending();
                    for element in positions.elements() {
                        if let Offset::Offset(at) = element.offset() {
                            pending.retain(|(topic, p, high)| {
                                !(*p == element.partition()
                                    && at >= *high
                                    && topic == element.topic())
                            });
                        }
                    }
                }
                Ok(self.idle_or_caught_up())
            }
            Some(Err(e)) if is_transport_error(&e) => {
                let since = self
                    .down_since
                    .lock()
                    .map(|mut d| {
                        *d.get_or_insert_with(|| {
                            if !self.outage_tolerance.is_zero() {
                                tracing::warn!(
                                    "Kafka at {} is unreachable ({e}); waiting up to {} s for it",
                                    self.brokers,
                                    self.outage_tolerance.as_secs()
                                );
                            }
                            std::time::Instant::now()
                        })
                    })
                    .unwrap_or_else(|_| std::time::Instant::now());
                if since.elapsed() < self.outage_tolerance {
                    std::thread::sleep(timeout.min(Duration::from_millis(200)));
                    return Ok(Polled::Idle);
                }
                Err(CliError::Unreachable {
                    service: "Kafka".into(),
                    endpoint: self.brokers.clone(),
                    source: Some(e.into()),
                }
                .into())
            }
            Some(Err(e)) => Err(anyhow::Error::new(e).context("cannot read from Kafka")),
        }
    }
}

/// A batch taken by [`Reader::take_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The batch's number: batches are numbered in read order, from 0.
    pub seq: u64,
    /// Every partition is caught up (with `until_caught_up`), or `stop` was set: the taker
    /// should not take again.
    pub last: bool,
    /// The batch ended because nothing more was there: every partition had been read up to
    /// its start-time end, and no message was waiting. What has been read is all there is for
    /// now, so a consumer that batches need not wait for more.
    pub drained: bool,
}

impl Reader {
    /// Fills `messages` (empty on entry) with up to `max` messages for one of several threads
    /// that decode in parallel and put the batches back in order by [`Taken::seq`]. Holds
    /// `order` while taking, so batch numbers follow read order. Waits for the first message;
    /// once there is one, takes only what is already there. Returns `None` when `stop` is set
    /// before any message was taken, or with `until_caught_up` when every partition is caught
    /// up and nothing was taken.
    pub fn take_batch<'a>(
        &'a self,
        order: &Mutex<u64>,
        messages: &mut Vec<BorrowedMessage<'a>>,
        max: usize,
        until_caught_up: bool,
        stop: &AtomicBool,
    ) -> Result<Option<Taken>> {
        let mut next = order.lock().unwrap_or_else(|e| e.into_inner());
        let (mut last, mut drained) = (false, false);
        loop {
            // Another taker read the last message: nothing will come, do not wait for it.
            if until_caught_up && messages.is_empty() && self.caught_up() {
                return Ok(None);
            }
            if stop.load(Ordering::Relaxed) {
                if messages.is_empty() {
                    return Ok(None);
                }
                last = true;
                break;
            }
            let timeout = if messages.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            match self.poll(timeout)? {
                Polled::Message(message) => {
                    messages.push(message);
                    if messages.len() >= max {
                        break;
                    }
                }
                Polled::CaughtUp if until_caught_up => {
                    last = true;
                    break;
                }
                Polled::CaughtUp if !messages.is_empty() => {
                    drained = true;
                    break;
                }
                Polled::Idle if !messages.is_empty() => break,
                Polled::CaughtUp | Polled::Idle => {}
            }
        }
        let seq = *next;
        *next += 1;
        Ok(Some(Taken { seq, last, drained }))
    }
}

/// Errors that mean the brokers cannot be reached at all.
fn is_transport_error(err: &KafkaError) -> bool {
    err.rdkafka_error_code().is_some_and(is_transport_code)
}

fn is_transport_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure
    )
}

/// Whether a Kafka error means the cluster is (perhaps briefly) unavailable: down, timed out,
/// a coordinator moving. Worth retrying later.
pub fn is_transient_error(err: &KafkaError) -> bool {
    err.rdkafka_error_code().is_some_and(|code| {
        is_transport_code(code)
            || matches!(
                code,
                RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::CoordinatorNotAvailable
                    | RDKafkaErrorCode::NotCoordinator
                    | RDKafkaErrorCode::CoordinatorLoadInProgress
                    | RDKafkaErrorCode::NetworkException
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::QueueFull
            )
    })
}

/// Where a partition is: its watermarks and a group's committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Oldest offset retained.
    pub low: i64,
    /// Next offset to be written.
    pub high: i64,
    /// The group's committed offset (next to read), if any.
    pub committed: Option<i64>,
}

impl PartitionPosition {
    /// Messages the group has not consumed yet (from the oldest retained without a commit).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

/// The headers of a message as cdcctl keeps them: name and optional value, in order.
pub fn headers_of<M: rdkafka::Message>(message: &M) -> Vec<(String, Option<Vec<u8>>)> {
    use rdkafka::message::Headers as _;
    message.headers().map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect()
    })
}

/// A message read again by [`Kafka::fetch`].
#[derive(Debug, Clone)]
pub struct FetchedMessage {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A message to produce.
#[derive(Debug, Clone, Copy)]
pub struct OutMessage<'a> {
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Headers, in order (a header may repeat; `None` is a null header value).
    pub headers: &'a [(String, Option<Vec<u8>>)],
}

/// Counts failed deliveries; librdkafka reports each delivery here.
#[derive(Default)]
pub struct DeliveryContext {
    failed: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, "librdkafka: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
    }
}

impl rdkafka::producer::ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.push(error.to_string());
        }
    }
}

/// A producer whose sends are confirmed ([`Kafka::producer`]).
pub struct Producer {
    inner: rdkafka::producer::BaseProducer<DeliveryContext>,
    brokers: String,
}

impl Producer {
    /// Produces `messages` to `topic` (partitioned by key) and returns once every one is
    /// acknowledged; fails if any is not, or not within `timeout`.
    pub fn send_all(
        &self,
        topic: &str,
        messages: &[OutMessage<'_>],
        timeout: Duration,
    ) -> Result<()> {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{BaseRecord, Producer as _};

        if messages.is_empty() {
            return Ok(());
        }
        if let Ok(mut failed) = self.inner.context().failed.lock() {
            failed.clear();
        }
        for message in messages {
            let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
            for (key, value) in message.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
            if let Some(key) = message.key {
                record = record.key(key);
            }
            if let Some(value) = message.value {
                record = record.payload(value);
            }
            let mut record = record;
            loop {
                match self.inner.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.inner.poll(Duration::from_millis(100));
                    }
                    Err((e, _)) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot produce to `{topic}` on {}", self.brokers)));
                    }
                }
            }
        }
        self.inner.flush(timeout).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "`{topic}` on {} did not acknowledge {} message(s) within {} s",
                self.brokers,
                messages.len(),
                timeout.as_secs()
            ))
        })?;
        let failed = self
            .inner
            .context()
            .failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        if let Some(first) = failed.first() {
            anyhow::bail!(
                "{} of {} message(s) to `{topic}` were not delivered: {first}",
                failed.len(),
                messages.len()
            );
        }
        Ok(())
    }
}
