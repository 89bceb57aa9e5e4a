//! The core of `WorkerPool`: the task queue and the dispatch state machine,
//! shared by the main thread, every worker thread and one timer thread.
//!
//! Plain Rust, no Node types. Payloads are opaque bytes (the JS layer encodes
//! them with the V8 serializer), and the threads are reached through the
//! [`Notify`] trait, which the glue implements with thread-safe functions.
//!
//! How the pieces talk:
//! - the main thread [`Pool::submit`]s tasks; the call returns the ids of
//!   workers the JS layer must start (the core decides when to grow);
//! - a worker pulls work with [`Pool::take`] and hands back a result with
//!   [`Pool::complete`], which returns the next queued task in the same call,
//!   so a busy pool never waits for the main thread;
//! - results pile up in an outbox; the main thread is notified once per batch
//!   and takes them all with [`Pool::drain`];
//! - an idle worker is woken through its [`Notify`] when work arrives (once,
//!   not once per task), and reads its inbox (aborts) with [`Pool::poll`];
//! - deadlines (time in queue, time running, the abort grace period, idle
//!   workers) sit in one heap, processed by [`Pool::expire`], which
//!   [`run_timer`] calls from one thread per pool.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::clock::Clock;
use crate::error::{Error, ErrorCode, Result};

/// A task's id. The JS layer picks it (a counter below 2^53).
pub type TaskId = u64;
/// A worker's id, handed out by the core.
pub type WorkerId = u32;

/// Something a thread can be woken through (the glue: a thread-safe function).
pub trait Notify: Send + Sync {
  /// Asks the owner to look at the pool soon. Must not block.
  fn notify(&self);
}

/// How a pool is shaped. Validation of user options happens in JS (with the
/// peer's messages); [`Pool::new`] re-checks the invariants it relies on.
#[derive(Clone, Debug)]
pub struct PoolConfig {
  /// Workers kept alive while idle.
  pub min_threads: usize,
  /// Most workers alive at once.
  pub max_threads: usize,
  /// Most tasks waiting in the queue (not counting running ones); `usize::MAX` for no bound.
  pub max_queue: usize,
  /// Tasks one worker runs at once.
  pub concurrency: usize,
  /// How long a worker beyond `min_threads` stays idle before it is retired.
  pub idle_timeout: Duration,
  /// How long a worker has to return an aborted or timed-out task before it is terminated.
  pub abort_grace: Duration,
}

impl Default for PoolConfig {
  fn default() -> Self {
    Self {
      min_threads: 1,
      max_threads: 2,
      max_queue: 1024,
      concurrency: 1,
      idle_timeout: Duration::ZERO,
      abort_grace: Duration::from_millis(1000),
    }
  }
}

/// Per-task options of [`Pool::submit`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SubmitOptions {
  /// Module handle from [`Pool::module_id`].
  pub module: u32,
  /// Longest time the task may wait in the queue.
  pub queue_timeout: Option<Duration>,
  /// Longest time the task may run once a worker took it.
  pub run_timeout: Option<Duration>,
}

/// A task's argument: serialized bytes, plus the contents of buffers the
/// caller transferred (moved, so the worker can own them without a copy).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Payload {
  /// The serialized value.
  pub bytes: Vec<u8>,
  /// Transferred buffers, in the order the serialized value refers to them.
  pub buffers: Vec<Vec<u8>>,
}

impl From<Vec<u8>> for Payload {
  fn from(bytes: Vec<u8>) -> Self {
    Self {
      bytes,
      buffers: Vec::new(),
    }
  }
}

/// A task handed to a worker.
#[derive(Debug, PartialEq, Eq)]
pub struct Task {
  /// The task's id.
  pub id: TaskId,
  /// Module handle (see [`Pool::module`]).
  pub module: u32,
  /// The argument.
  pub payload: Payload,
}

/// How a task ended, as delivered to the main thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
  /// The task function returned; the serialized value.
  Value(Vec<u8>),
  /// The task function threw; the serialized error.
  Threw(Vec<u8>),
  /// The pool ended the task (timeout, worker exit, destroy).
  Failed(Error),
}

/// One finished task.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
  /// The task's id.
  pub id: TaskId,
  /// How it ended.
  pub outcome: Outcome,
  // Queue wait and run time in microseconds, `UNKNOWN` when the pool does
  // not know (the main thread reads them only for tracing:
  // docs/observability.md). u32, not Option<Duration>: every completion
  // carries them, and the wider struct measurably slowed a burst of tiny
  // tasks (~8% on 20k echo tasks).
  wait_us: u32,
  run_us: u32,
}

const UNKNOWN: u32 = u32::MAX;

/// Microseconds in a u32, `UNKNOWN` for `None`; saturates at ~71 minutes.
fn compact(d: Option<Duration>) -> u32 {
  d.map_or(UNKNOWN, |d| {
    u32::try_from(d.as_micros()).unwrap_or(UNKNOWN - 1)
  })
}

fn expand(us: u32) -> Option<Duration> {
  (us != UNKNOWN).then(|| Duration::from_micros(u64::from(us)))
}

impl Completion {
  fn new(id: TaskId, outcome: Outcome) -> Self {
    Completion {
      id,
      outcome,
      wait_us: UNKNOWN,
      run_us: UNKNOWN,
    }
  }

  fn timed(mut self, wait: Option<Duration>, run: Option<Duration>) -> Self {
    self.wait_us = compact(wait);
    self.run_us = compact(run);
    self
  }

  /// How long it waited in the queue, if the pool knows (microsecond
  /// precision, at most ~71 minutes).
  pub fn wait(&self) -> Option<Duration> {
    expand(self.wait_us)
  }

  /// How long it ran in a worker, if it started.
  pub fn run(&self) -> Option<Duration> {
    expand(self.run_us)
  }
}

/// What the main thread takes from [`Pool::drain`].
#[derive(Debug, Default)]
pub struct Batch {
  /// Finished tasks, in the order they finished.
  pub completions: Vec<Completion>,
  /// Workers the main thread must terminate (idle beyond `idleTimeout`, or
  /// stuck past the abort grace period).
  pub terminate: Vec<WorkerId>,
  /// Completions are left for another call (see [`Pool::drain`]).
  pub more: bool,
}

/// What a worker reads from [`Pool::poll`] when woken.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inbox {
  /// Tasks of this worker whose signal must fire (abort or run timeout).
  pub aborts: Vec<TaskId>,
}

/// What the main thread does after a worker exited (see [`Pool::worker_exited`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Respawn {
  /// Workers to start (ids already reserved).
  pub workers: Vec<WorkerId>,
  /// Wait this long before starting them (backoff after repeated crashes).
  pub delay: Duration,
}

/// Counters and histograms of a pool.
#[derive(Clone, Debug, Default)]
pub struct Stats {
  /// Tasks submitted.
  pub submitted: u64,
  /// Tasks that ran to the end in a worker (returned or threw).
  pub completed: u64,
  /// Tasks whose function threw.
  pub failed: u64,
  /// Tasks rejected with `ERR_QUEUE_FULL`.
  pub rejected: u64,
  /// Tasks that timed out (in the queue or running).
  pub timed_out: u64,
  /// Tasks aborted by their caller.
  pub aborted: u64,
  /// Tasks lost with their worker.
  pub worker_exits: u64,
  /// Workers started.
  pub spawned: u64,
  /// Tasks waiting now.
  pub queued: usize,
  /// Tasks running now (including abandoned ones not yet returned).
  pub running: usize,
  /// Workers alive or starting now.
  pub workers: usize,
  /// Time from submit to start, microseconds.
  pub wait_time: HistogramSummary,
  /// Time from start to finish, microseconds.
  pub run_time: HistogramSummary,
  /// Sum of run times, microseconds.
  pub run_time_total_us: u64,
}

/// A summary of a [`Histogram`]. All values in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HistogramSummary {
  /// Samples recorded.
  pub count: u64,
  /// Smallest sample.
  pub min: u64,
  /// Largest sample.
  pub max: u64,
  /// Mean of the samples.
  pub mean: f64,
  /// 50th percentile (bucket resolution, within 1/16 of the value).
  pub p50: u64,
  /// 90th percentile.
  pub p90: u64,
  /// 99th percentile.
  pub p99: u64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// A log-linear histogram of `u64` samples: exact below 16, and within 1/16
/// of the value above, in a fixed 8 KiB (no growth, no allocation per sample).
#[derive(Clone)]
pub struct Histogram {
  counts: Box<[u64; BUCKETS]>,
  count: u64,
  min: u64,
  max: u64,
  sum: u128,
}

impl Default for Histogram {
  fn default() -> Self {
    Self {
      counts: Box::new([0; BUCKETS]),
      count: 0,
      min: u64::MAX,
      max: 0,
      sum: 0,
    }
  }
}

impl std::fmt::Debug for Histogram {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Histogram")
      .field("summary", &self.summary())
      .finish()
  }
}

impl Histogram {
  fn index(v: u64) -> usize {
    if v < SUB {
      return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(e - SUB_BITS) * SUB + sub) as usize
  }

  fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
      return i;
    }
    let e = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    (1u64 << e) | (sub << (e - u64::from(SUB_BITS)))
  }

  /// Records one sample.
  pub fn record(&mut self, v: u64) {
    self.counts[Self::index(v)] += 1;
    self.count += 1;
    self.min = self.min.min(v);
    self.max = self.max.max(v);
    self.sum += u128::from(v);
  }

  /// The value at quantile `q` (0..=1), clamped to the recorded range.
  pub fn quantile(&self, q: f64) -> u64 {
    if self.count == 0 {
      return 0;
    }
    let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
    let mut seen = 0;
    for (i, &c) in self.counts.iter().enumerate() {
      seen += c;
      if seen >= rank {
        return Self::lower_bound(i).clamp(self.min, self.max);
      }
    }
    self.max
  }

  /// Count, min, max, mean and p50/p90/p99.
  pub fn summary(&self) -> HistogramSummary {
    if self.count == 0 {
      return HistogramSummary::default();
    }
    HistogramSummary {
      count: self.count,
      min: self.min,
      max: self.max,
      mean: self.sum as f64 / self.count as f64,
      p50: self.quantile(0.5),
      p90: self.quantile(0.9),
      p99: self.quantile(0.99),
    }
  }
}

/// Hashes integer ids as themselves. Task ids come from a counter and
/// worker ids are few, so SipHash's protection buys nothing on a map that
/// every submit and every completion touches under the pool's lock.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
  fn finish(&self) -> u64 {
    // Spread the counter's low bits over the high bits hashbrown uses for its tags.
    self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
  }

  fn write(&mut self, bytes: &[u8]) {
    for &b in bytes {
      self.0 = (self.0 << 8) | u64::from(b);
    }
  }

  fn write_u32(&mut self, n: u32) {
    self.0 = u64::from(n);
  }

  fn write_u64(&mut self, n: u64) {
    self.0 = n;
  }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
  Open,
  Closing,
  Destroyed,
}

#[derive(Debug)]
enum TaskState {
  Queued {
    at: Duration,
  },
  Running {
    worker: WorkerId,
    at: Duration,
    /// How long it waited in the queue before it started (µs, as in
    /// [`Completion`]).
    waited_us: u32,
  },
  /// Already settled for the caller (abort, timeout, destroy), still occupying its worker.
  Abandoned {
    worker: WorkerId,
  },
}

struct TaskEntry {
  module: u32,
  payload: Payload,
  state: TaskState,
  run_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkerState {
  /// Asked for; the thread has not attached yet.
  Starting,
  Ready,
  /// Will be terminated by the main thread; takes no work.
  Retiring,
  /// Its thread is gone (env cleanup ran) but the main thread has not seen the exit yet.
  Gone,
}

struct WorkerSlot {
  state: WorkerState,
  running: usize,
  notify: Option<Arc<dyn Notify>>,
  wake_pending: bool,
  aborts: Vec<TaskId>,
  idle_since: Option<Duration>,
  /// An idle deadline for this worker is in the heap.
  idle_armed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
  Queue(TaskId),
  Run(TaskId),
  Grace(WorkerId, TaskId),
  Idle(WorkerId),
}

struct State {
  lifecycle: Lifecycle,
  queue: VecDeque<TaskId>,
  queued: usize,
  tasks: IdMap<TaskId, TaskEntry>,
  workers: IdMap<WorkerId, WorkerSlot>,
  next_worker: WorkerId,
  outbox: Vec<Completion>,
  terminate: Vec<WorkerId>,
  main_pending: bool,
  main_notify: Option<Arc<dyn Notify>>,
  deadlines: BinaryHeap<Reverse<(Duration, Deadline)>>,
  timer_armed: Option<Duration>,
  timer_stop: bool,
  crashes: u32,
  modules: Vec<(String, String)>,
  module_ids: HashMap<(String, String), u32>,
  stats: Stats,
  wait_hist: Histogram,
  run_hist: Histogram,
}

/// The queue and dispatch state machine of one `WorkerPool`.
///
/// Every method takes `&self`; one mutex guards the state, and no callback
/// ([`Notify::notify`]) runs while it is held.
///
/// # Examples
///
/// One worker, two tasks: the worker gets the second task in the same call
/// that completes the first, and the main thread collects both results in
/// one batch.
///
/// ```
/// use std::sync::Arc;
/// use bulkhead::clock::ManualClock;
/// use bulkhead::pool::{Notify, Outcome, Pool, PoolConfig, SubmitOptions};
///
/// struct Nobody;
/// impl Notify for Nobody {
///   fn notify(&self) {}
/// }
///
/// let config = PoolConfig { min_threads: 1, max_threads: 1, ..PoolConfig::default() };
/// let pool = Pool::new(config, Arc::new(ManualClock::new())).unwrap();
/// let worker = pool.start()[0];
/// pool.submit(1, b"first".to_vec(), SubmitOptions::default()).unwrap();
/// pool.submit(2, b"second".to_vec(), SubmitOptions::default()).unwrap();
///
/// pool.attach(worker, Arc::new(Nobody)).unwrap();
/// let task = pool.take(worker).unwrap();
/// let next = pool.complete(worker, task.id, Ok(b"one".to_vec())).unwrap();
/// assert_eq!(next.payload.bytes, b"second");
/// assert!(pool.complete(worker, next.id, Ok(b"two".to_vec())).is_none());
///
/// let batch = pool.drain(usize::MAX);
/// assert_eq!(batch.completions.len(), 2);
/// assert_eq!(batch.completions[0].outcome, Outcome::Value(b"one".to_vec()));
/// ```
pub struct Pool {
  config: PoolConfig,
  clock: Arc<dyn Clock>,
  state: Mutex<State>,
  timer_cv: Condvar,
}

/// Wake-ups collected under the lock and sent after it is released.
#[derive(Default)]
struct Wakes(Vec<Arc<dyn Notify>>);

impl Wakes {
  fn send(self) {
    for n in self.0 {
      n.notify();
    }
  }
}

fn micros(d: Duration) -> u64 {
  u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Pool {
  /// A pool shaped by `config`, reading time from `clock`.
  ///
  /// # Errors
  ///
  /// `ERR_INVALID_ARG` if `max_threads` or `concurrency` is 0, or
  /// `min_threads > max_threads`.
  pub fn new(config: PoolConfig, clock: Arc<dyn Clock>) -> Result<Self> {
    if config.max_threads == 0 {
      return Err(Error::invalid_arg("maxThreads must be a positive integer"));
    }
    if config.concurrency == 0 {
      return Err(Error::invalid_arg(
        "concurrentTasksPerWorker must be a positive integer",
      ));
    }
    if config.min_threads > config.max_threads {
      return Err(Error::invalid_arg(
        "minThreads and maxThreads must not conflict",
      ));
    }
    Ok(Self {
      config,
      clock,
      state: Mutex::new(State {
        lifecycle: Lifecycle::Open,
        queue: VecDeque::new(),
        queued: 0,
        tasks: IdMap::default(),
        workers: IdMap::default(),
        next_worker: 1,
        outbox: Vec::new(),
        terminate: Vec::new(),
        main_pending: false,
        main_notify: None,
        deadlines: BinaryHeap::new(),
        timer_armed: None,
        timer_stop: false,
        crashes: 0,
        modules: Vec::new(),
        module_ids: HashMap::new(),
        stats: Stats::default(),
        wait_hist: Histogram::default(),
        run_hist: Histogram::default(),
      }),
      timer_cv: Condvar::new(),
    })
  }

  /// The configuration this pool was made with.
  pub fn config(&self) -> &PoolConfig {
    &self.config
  }

  /// Sets how the main thread is told that [`Pool::drain`] has something.
  pub fn set_main_notify(&self, notify: Arc<dyn Notify>) {
    self.state.lock().main_notify = Some(notify);
  }

  /// Interns a task module (`filename`, export `name`) as a small handle.
  pub fn module_id(&self, filename: &str, name: &str) -> u32 {
    let mut st = self.state.lock();
    let key = (filename.to_owned(), name.to_owned());
    if let Some(&id) = st.module_ids.get(&key) {
      return id;
    }
    let id = st.modules.len() as u32;
    st.modules.push(key.clone());
    st.module_ids.insert(key, id);
    id
  }

  /// The module (`filename`, export `name`) behind a handle.
  pub fn module(&self, id: u32) -> Option<(String, String)> {
    self.state.lock().modules.get(id as usize).cloned()
  }

  /// Reserves the workers needed to reach `min_threads`; the JS layer starts them.
  pub fn start(&self) -> Vec<WorkerId> {
    let mut st = self.state.lock();
    let mut out = Vec::new();
    while st.workers.len() < self.config.min_threads {
      out.push(self.reserve_worker(&mut st));
    }
    out
  }

  fn reserve_worker(&self, st: &mut State) -> WorkerId {
    let id = st.next_worker;
    st.next_worker = st.next_worker.wrapping_add(1).max(1);
    st.workers.insert(
      id,
      WorkerSlot {
        state: WorkerState::Starting,
        running: 0,
        notify: None,
        wake_pending: false,
        aborts: Vec::new(),
        idle_since: None,
        idle_armed: false,
      },
    );
    st.stats.spawned += 1;
    id
  }

  /// Queues a task. Returns the ids of workers the JS layer must start.
  ///
  /// # Errors
  ///
  /// `ERR_CLOSED` after [`Pool::close`] or [`Pool::destroy`];
  /// `ERR_QUEUE_FULL` when no worker can take the task now and the queue
  /// holds `max_queue` tasks; `ERR_INVALID_ARG` if `id` is already in use.
  pub fn submit(
    &self,
    id: TaskId,
    payload: impl Into<Payload>,
    opts: SubmitOptions,
  ) -> Result<Vec<WorkerId>> {
    let payload = payload.into();
    let mut wakes = Wakes::default();
    let spawn;
    {
      let mut st = self.state.lock();
      if st.lifecycle != Lifecycle::Open {
        return Err(Error::closed("the pool is closed"));
      }
      if st.tasks.contains_key(&id) {
        return Err(Error::invalid_arg("task id is already in use"));
      }
      // A task that a worker can take at once does not count against maxQueue
      // (piscina's rule: maxQueue bounds the tasks that have to wait).
      let capacity = self.free_capacity(&st, true) + self.growable_capacity(&st);
      if st.queued >= capacity && st.queued - capacity >= self.config.max_queue {
        st.stats.rejected += 1;
        return Err(Error::new(
          ErrorCode::QueueFull,
          format!(
            "the task queue is full (maxQueue: {})",
            self.config.max_queue
          ),
        ));
      }
      let now = self.clock.now();
      st.tasks.insert(
        id,
        TaskEntry {
          module: opts.module,
          payload,
          state: TaskState::Queued { at: now },
          run_timeout: opts.run_timeout,
        },
      );
      st.queue.push_back(id);
      st.queued += 1;
      st.stats.submitted += 1;
      if let Some(t) = opts.queue_timeout {
        self.push_deadline(&mut st, now + t, Deadline::Queue(id));
      }
      spawn = self.dispatch(&mut st, &mut wakes);
    }
    wakes.send();
    Ok(spawn)
  }

  /// Free task slots of ready workers (and, with `starting`, of starting ones).
  fn free_capacity(&self, st: &State, starting: bool) -> usize {
    st.workers
      .values()
      .filter(|w| w.state == WorkerState::Ready || (starting && w.state == WorkerState::Starting))
      .map(|w| self.config.concurrency.saturating_sub(w.running))
      .sum()
  }

  fn live_workers(st: &State) -> usize {
    st.workers
      .values()
      .filter(|w| matches!(w.state, WorkerState::Starting | WorkerState::Ready))
      .count()
  }

  fn growable_capacity(&self, st: &State) -> usize {
    self.config.max_threads.saturating_sub(st.workers.len()) * self.config.concurrency
  }

  /// Wakes idle workers for the queued tasks and reserves new workers when
  /// the ready ones cannot take them all.
  fn dispatch(&self, st: &mut State, wakes: &mut Wakes) -> Vec<WorkerId> {
    let mut need = st.queued;
    // Workers already woken will take tasks when their wake-up runs.
    for w in st.workers.values() {
      if w.state == WorkerState::Ready && w.wake_pending {
        need = need.saturating_sub(self.config.concurrency.saturating_sub(w.running));
      }
    }
    if need > 0 {
      for w in st.workers.values_mut() {
        if need == 0 {
          break;
        }
        let free = self.config.concurrency.saturating_sub(w.running);
        if w.state == WorkerState::Ready && !w.wake_pending && free > 0 {
          w.wake_pending = true;
          if let Some(n) = &w.notify {
            wakes.0.push(n.clone());
          }
          need = need.saturating_sub(free);
        }
      }
    }
    for w in st.workers.values() {
      if w.state == WorkerState::Starting {
        need = need.saturating_sub(self.config.concurrency);
      }
    }
    let mut spawn = Vec::new();
    if st.lifecycle == Lifecycle::Destroyed {
      return spawn;
    }
    while need > 0 && st.workers.len() < self.config.max_threads {
      spawn.push(self.reserve_worker(st));
      need = need.saturating_sub(self.config.concurrency);
    }
    spawn
  }

  fn push_deadline(&self, st: &mut State, at: Duration, what: Deadline) {
    st.deadlines.push(Reverse((at, what)));
    if st.timer_armed.is_none_or(|armed| at < armed) {
      self.timer_cv.notify_one();
    }
  }

  fn push_completion(st: &mut State, wakes: &mut Wakes, completion: Completion) {
    st.outbox.push(completion);
    Self::wake_main(st, wakes);
  }

  fn wake_main(st: &mut State, wakes: &mut Wakes) {
    if !st.main_pending {
      st.main_pending = true;
      if let Some(n) = &st.main_notify {
        wakes.0.push(n.clone());
      }
    }
  }

  /// Called by a worker thread once it is ready for tasks.
  ///
  /// # Errors
  ///
  /// `ERR_CLOSED` if the pool no longer expects this worker (destroyed, or
  /// the id is unknown); the worker should then exit.
  pub fn attach(&self, worker: WorkerId, notify: Arc<dyn Notify>) -> Result<()> {
    let mut st = self.state.lock();
    let now = self.clock.now();
    let destroyed = st.lifecycle == Lifecycle::Destroyed;
    match st.workers.get_mut(&worker) {
      Some(w) if w.state == WorkerState::Starting && !destroyed => {
        w.state = WorkerState::Ready;
        w.notify = Some(notify);
        w.idle_since = Some(now);
        Ok(())
      }
      _ => Err(Error::closed("the pool no longer expects this worker")),
    }
  }

  /// Clears the worker's wake-up flag and returns what it must act on.
  pub fn poll(&self, worker: WorkerId) -> Inbox {
    let mut st = self.state.lock();
    match st.workers.get_mut(&worker) {
      Some(w) => {
        w.wake_pending = false;
        Inbox {
          aborts: std::mem::take(&mut w.aborts),
        }
      }
      None => Inbox::default(),
    }
  }

  /// Gives `worker` the next queued task if it has a free slot.
  pub fn take(&self, worker: WorkerId) -> Option<Task> {
    let mut st = self.state.lock();
    let task = self.take_locked(&mut st, worker);
    if task.is_none() {
      // A worker that started after the burst it was made for (or was woken
      // for nothing) must still retire after idleTimeout.
      let now = self.clock.now();
      self.after_idle(&mut st, worker, now);
    }
    task
  }

  fn take_locked(&self, st: &mut State, worker: WorkerId) -> Option<Task> {
    {
      let w = st.workers.get(&worker)?;
      if w.state != WorkerState::Ready || w.running >= self.config.concurrency {
        return None;
      }
    }
    let now = self.clock.now();
    while let Some(id) = st.queue.pop_front() {
      let Some(entry) = st.tasks.get_mut(&id) else {
        continue; // removed while queued (abort, queue timeout)
      };
      let TaskState::Queued { at } = entry.state else {
        continue;
      };
      entry.state = TaskState::Running {
        worker,
        at: now,
        waited_us: compact(Some(now.saturating_sub(at))),
      };
      let payload = std::mem::take(&mut entry.payload);
      let module = entry.module;
      let run_timeout = entry.run_timeout;
      st.queued -= 1;
      st.wait_hist.record(micros(now.saturating_sub(at)));
      if let Some(t) = run_timeout {
        self.push_deadline(st, now + t, Deadline::Run(id));
      }
      let w = st.workers.get_mut(&worker).expect("checked above");
      w.running += 1;
      w.idle_since = None;
      return Some(Task {
        id,
        module,
        payload,
      });
    }
    None
  }

  /// A worker hands back the result of task `id` (`Ok` value bytes or `Err`
  /// thrown-error bytes) and receives its next task, if one is queued.
  pub fn complete(
    &self,
    worker: WorkerId,
    id: TaskId,
    result: std::result::Result<Vec<u8>, Vec<u8>>,
  ) -> Option<Task> {
    let mut wakes = Wakes::default();
    let next;
    {
      let mut st = self.state.lock();
      let now = self.clock.now();
      let owned = match st.tasks.get(&id).map(|e| &e.state) {
        Some(TaskState::Running { worker: w, .. }) | Some(TaskState::Abandoned { worker: w }) => {
          *w == worker
        }
        _ => false,
      };
      if owned {
        let entry = st.tasks.remove(&id).expect("checked above");
        if let TaskState::Running { at, waited_us, .. } = entry.state {
          let waited = expand(waited_us);
          let ran = now.saturating_sub(at);
          let run = micros(ran);
          st.run_hist.record(run);
          st.stats.run_time_total_us += run;
          st.stats.completed += 1;
          st.crashes = 0;
          let outcome = match result {
            Ok(bytes) => Outcome::Value(bytes),
            Err(bytes) => {
              st.stats.failed += 1;
              Outcome::Threw(bytes)
            }
          };
          Self::push_completion(
            &mut st,
            &mut wakes,
            Completion::new(id, outcome).timed(waited, Some(ran)),
          );
        }
        self.release_slot(&mut st, worker, now);
      }
      next = self.take_locked(&mut st, worker);
      if next.is_none() {
        self.after_idle(&mut st, worker, now);
      }
    }
    wakes.send();
    next
  }

  fn release_slot(&self, st: &mut State, worker: WorkerId, now: Duration) {
    if let Some(w) = st.workers.get_mut(&worker) {
      w.running = w.running.saturating_sub(1);
      if w.running == 0 {
        w.idle_since = Some(now);
      }
    }
  }

  /// Arms the idle deadline of a worker that has nothing to do, and finishes
  /// a closing pool once the last task is done.
  fn after_idle(&self, st: &mut State, worker: WorkerId, now: Duration) {
    let Some(w) = st.workers.get(&worker) else {
      return;
    };
    if w.running != 0 || w.state != WorkerState::Ready {
      return;
    }
    if w.idle_armed {
      return;
    }
    if st.lifecycle == Lifecycle::Open && Self::live_workers(st) > self.config.min_threads {
      if let Some(w) = st.workers.get_mut(&worker) {
        w.idle_armed = true;
      }
      let since = st
        .workers
        .get(&worker)
        .and_then(|w| w.idle_since)
        .unwrap_or(now);
      self.push_deadline(st, since + self.config.idle_timeout, Deadline::Idle(worker));
    }
  }

  /// The caller gave up on task `id` (`err` says why: abort or timeout).
  /// Returns `true` if the task was still pending, in which case the caller
  /// settles it with `err` now and the pool will never deliver it; `false`
  /// if its result is already on its way (leave the promise to [`Pool::drain`]).
  ///
  /// A running task's worker is told to fire the task's signal, and is
  /// terminated if it has not returned within `abort_grace`.
  pub fn cancel(&self, id: TaskId, err: &Error) -> bool {
    let mut wakes = Wakes::default();
    let found;
    {
      let mut st = self.state.lock();
      found = self.cancel_locked(&mut st, &mut wakes, id, err.code);
    }
    wakes.send();
    found
  }

  fn cancel_locked(&self, st: &mut State, wakes: &mut Wakes, id: TaskId, code: ErrorCode) -> bool {
    let Some(entry) = st.tasks.get_mut(&id) else {
      return false;
    };
    match entry.state {
      TaskState::Queued { .. } => {
        st.tasks.remove(&id);
        st.queued -= 1;
      }
      TaskState::Running { worker, .. } => {
        entry.state = TaskState::Abandoned { worker };
        let now = self.clock.now();
        if let Some(w) = st.workers.get_mut(&worker) {
          w.aborts.push(id);
          if !w.wake_pending {
            w.wake_pending = true;
            if let Some(n) = &w.notify {
              wakes.0.push(n.clone());
            }
          }
        }
        self.push_deadline(
          st,
          now + self.config.abort_grace,
          Deadline::Grace(worker, id),
        );
      }
      TaskState::Abandoned { .. } => return false,
    }
    match code {
      ErrorCode::Timeout => st.stats.timed_out += 1,
      ErrorCode::Aborted => st.stats.aborted += 1,
      _ => {}
    }
    true
  }

  /// Processes every deadline due at the clock's current time. Returns the
  /// next deadline, if any.
  pub fn expire(&self) -> Option<Duration> {
    let mut wakes = Wakes::default();
    let next;
    {
      let mut st = self.state.lock();
      let now = self.clock.now();
      while let Some(&Reverse((at, what))) = st.deadlines.peek() {
        if at > now {
          break;
        }
        st.deadlines.pop();
        self.fire(&mut st, &mut wakes, what, now);
      }
      next = st.deadlines.peek().map(|Reverse((at, _))| *at);
    }
    wakes.send();
    next
  }

  fn fire(&self, st: &mut State, wakes: &mut Wakes, what: Deadline, now: Duration) {
    match what {
      Deadline::Queue(id) => {
        if let Some(TaskState::Queued { at }) = st.tasks.get(&id).map(|e| &e.state) {
          let waited = now.saturating_sub(*at);
          self.cancel_locked(st, wakes, id, ErrorCode::Timeout);
          let err = Error::new(
            ErrorCode::Timeout,
            "the task waited in the queue longer than its queueTimeout",
          );
          Self::push_completion(
            st,
            wakes,
            Completion::new(id, Outcome::Failed(err)).timed(Some(waited), None),
          );
        }
      }
      Deadline::Run(id) => {
        if let Some(&TaskState::Running { at, waited_us, .. }) = st.tasks.get(&id).map(|e| &e.state)
        {
          let waited = expand(waited_us);
          self.cancel_locked(st, wakes, id, ErrorCode::Timeout);
          let err = Error::new(ErrorCode::Timeout, "the task ran longer than its timeout");
          Self::push_completion(
            st,
            wakes,
            Completion::new(id, Outcome::Failed(err)).timed(waited, Some(now.saturating_sub(at))),
          );
        }
      }
      Deadline::Grace(worker, id) => {
        let stuck = matches!(
          st.tasks.get(&id).map(|e| &e.state),
          Some(TaskState::Abandoned { worker: w }) if *w == worker
        );
        if stuck {
          self.retire(st, wakes, worker);
        }
      }
      Deadline::Idle(worker) => {
        if let Some(w) = st.workers.get_mut(&worker) {
          w.idle_armed = false;
        }
        let idle_long = st.workers.get(&worker).is_some_and(|w| {
          w.state == WorkerState::Ready
            && w.running == 0
            && w
              .idle_since
              .is_some_and(|since| since + self.config.idle_timeout <= now)
        });
        if idle_long
          && st.lifecycle == Lifecycle::Open
          && Self::live_workers(st) > self.config.min_threads
        {
          self.retire(st, wakes, worker);
        } else {
          // Idle again since the deadline was armed: count from then.
          self.after_idle(st, worker, now);
        }
      }
    }
  }

  /// Takes a worker out of dispatch and asks the main thread to terminate it.
  fn retire(&self, st: &mut State, wakes: &mut Wakes, worker: WorkerId) {
    if let Some(w) = st.workers.get_mut(&worker) {
      if matches!(w.state, WorkerState::Ready | WorkerState::Starting) {
        w.state = WorkerState::Retiring;
        w.notify = None;
        st.terminate.push(worker);
        Self::wake_main(st, wakes);
      }
    }
  }

  /// The worker's environment is being torn down (its cleanup hook): no more
  /// work or wake-ups go to it. Its tasks are failed when the main thread
  /// reports the exit ([`Pool::worker_exited`]).
  pub fn worker_gone(&self, worker: WorkerId) {
    let mut st = self.state.lock();
    if let Some(w) = st.workers.get_mut(&worker) {
      w.state = WorkerState::Gone;
      w.notify = None;
    }
  }

  /// The main thread saw `worker` exit. Fails the tasks it still held with
  /// `reason` (normally `ERR_WORKER_EXITED`), and returns the workers to
  /// start in its place. A worker that exits before attaching fails the
  /// whole queue (it would fail again), so a bad worker set-up never hangs.
  pub fn worker_exited(&self, worker: WorkerId, reason: &Error) -> Respawn {
    let mut wakes = Wakes::default();
    let mut respawn = Respawn::default();
    {
      let mut st = self.state.lock();
      let Some(slot) = st.workers.remove(&worker) else {
        return respawn;
      };
      let expected = slot.state == WorkerState::Retiring || st.lifecycle != Lifecycle::Open;
      let held: Vec<TaskId> = st
        .tasks
        .iter()
        .filter(|(_, e)| {
          matches!(e.state, TaskState::Running { worker: w, .. } | TaskState::Abandoned { worker: w } if w == worker)
        })
        .map(|(&id, _)| id)
        .collect();
      for id in held {
        let entry = st.tasks.remove(&id).expect("listed above");
        if let TaskState::Running { at, waited_us, .. } = entry.state {
          let waited = expand(waited_us);
          st.stats.worker_exits += 1;
          let ran = self.clock.now().saturating_sub(at);
          Self::push_completion(
            &mut st,
            &mut wakes,
            Completion::new(id, Outcome::Failed(reason.clone())).timed(waited, Some(ran)),
          );
        }
      }
      if !expected {
        st.crashes = st.crashes.saturating_add(1);
        if slot.state == WorkerState::Starting {
          // Failed during start-up: what is queued would only wait forever.
          let queued: Vec<TaskId> = st.queue.drain(..).collect();
          for id in queued {
            if let Some(e) = st.tasks.remove(&id) {
              if matches!(e.state, TaskState::Queued { .. }) {
                st.stats.worker_exits += 1;
                let err = Error::new(
                  ErrorCode::WorkerExited,
                  format!("a worker failed to start: {}", reason.message),
                );
                Self::push_completion(
                  &mut st,
                  &mut wakes,
                  Completion::new(id, Outcome::Failed(err)),
                );
              }
            }
          }
          st.queued = 0;
        }
      }
      if st.lifecycle == Lifecycle::Open {
        let mut spawn = self.dispatch(&mut st, &mut wakes);
        while Self::live_workers(&st) < self.config.min_threads
          && st.workers.len() < self.config.max_threads
        {
          spawn.push(self.reserve_worker(&mut st));
        }
        if !spawn.is_empty() && st.crashes > 1 {
          let exp = (st.crashes - 2).min(7);
          respawn.delay = Duration::from_millis(10u64 << exp).min(Duration::from_secs(1));
        }
        respawn.workers = spawn;
      }
    }
    wakes.send();
    respawn
  }

  /// Takes what waits for the main thread: at most `max` completions (the
  /// oldest) and every worker to terminate. When completions remain,
  /// [`Batch::more`] is set and no new notification comes for them: the
  /// caller drains again after letting its event loop run.
  pub fn drain(&self, max: usize) -> Batch {
    let mut st = self.state.lock();
    let completions = if st.outbox.len() <= max {
      std::mem::take(&mut st.outbox)
    } else {
      let rest = st.outbox.split_off(max);
      std::mem::replace(&mut st.outbox, rest)
    };
    let more = !st.outbox.is_empty();
    st.main_pending = more;
    Batch {
      completions,
      terminate: std::mem::take(&mut st.terminate),
      more,
    }
  }

  /// Stops accepting tasks; queued and running tasks go on.
  pub fn close(&self) {
    let mut st = self.state.lock();
    if st.lifecycle == Lifecycle::Open {
      st.lifecycle = Lifecycle::Closing;
    }
  }

  /// Stops accepting tasks and fails every queued and running task with
  /// `ERR_CLOSED` (delivered through [`Pool::drain`]). Returns the workers
  /// still known, for the main thread to terminate. Stops the timer thread.
  pub fn destroy(&self) -> Vec<WorkerId> {
    let mut wakes = Wakes::default();
    let workers;
    {
      let mut st = self.state.lock();
      st.lifecycle = Lifecycle::Destroyed;
      st.queue.clear();
      st.queued = 0;
      let ids: Vec<TaskId> = st.tasks.keys().copied().collect();
      for id in ids {
        let entry = st.tasks.get_mut(&id).expect("listed above");
        let settle = match entry.state {
          TaskState::Queued { .. } => {
            st.tasks.remove(&id);
            true
          }
          TaskState::Running { worker, .. } => {
            entry.state = TaskState::Abandoned { worker };
            true
          }
          TaskState::Abandoned { .. } => false,
        };
        if settle {
          Self::push_completion(
            &mut st,
            &mut wakes,
            Completion::new(id, Outcome::Failed(Error::closed("the pool was destroyed"))),
          );
        }
      }
      for w in st.workers.values_mut() {
        w.notify = None;
        if w.state != WorkerState::Gone {
          w.state = WorkerState::Retiring;
        }
      }
      workers = st.workers.keys().copied().collect();
      st.deadlines.clear();
      st.timer_stop = true;
      // Nothing reaches the main thread after this call's batch (the caller
      // drains it right away): let go of its wake-up, which in the glue
      // holds the JS callback (and through it the pool object) alive.
      st.main_notify = None;
      self.timer_cv.notify_all();
    }
    wakes.send();
    workers
  }

  /// Tasks waiting for a worker.
  pub fn queue_size(&self) -> usize {
    self.state.lock().queued
  }

  /// Counters and histograms.
  pub fn stats(&self) -> Stats {
    let st = self.state.lock();
    let mut stats = st.stats.clone();
    stats.queued = st.queued;
    stats.running = st.tasks.len() - st.queued;
    stats.workers = Self::live_workers(&st);
    stats.wait_time = st.wait_hist.summary();
    stats.run_time = st.run_hist.summary();
    stats
  }

  /// Tells [`run_timer`] to return.
  pub fn stop_timer(&self) {
    self.state.lock().timer_stop = true;
    self.timer_cv.notify_all();
  }
}

/// The pool's timer loop: sleeps until the next deadline (or until one
/// earlier is added), then calls [`Pool::expire`]. Returns after
/// [`Pool::stop_timer`] or [`Pool::destroy`]. Run it on its own thread; it
/// assumes `pool`'s clock is the real monotonic clock.
pub fn run_timer(pool: Arc<Pool>) {
  loop {
    let next = pool.expire();
    let mut st = pool.state.lock();
    if st.timer_stop {
      return;
    }
    // A deadline may have been added between expire() and the lock.
    let next = match (next, st.deadlines.peek().map(|Reverse((at, _))| *at)) {
      (Some(a), Some(b)) => Some(a.min(b)),
      (a, b) => a.or(b),
    };
    st.timer_armed = next;
    match next {
      Some(at) => {
        let now = pool.clock.now();
        if at > now {
          let until = Instant::now() + (at - now);
          pool.timer_cv.wait_until(&mut st, until);
        }
      }
      None => {
        st.timer_armed = Some(Duration::MAX);
        pool.timer_cv.wait(&mut st);
      }
    }
    st.timer_armed = None;
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::clock::{ManualClock, MonotonicClock};
  use std::sync::atomic::{AtomicUsize, Ordering};

  #[derive(Default)]
  struct Counter(AtomicUsize);
  impl Notify for Counter {
    fn notify(&self) {
      self.0.fetch_add(1, Ordering::SeqCst);
    }
  }
  impl Counter {
    fn get(&self) -> usize {
      self.0.load(Ordering::SeqCst)
    }
  }

  fn pool(config: PoolConfig) -> (Arc<Pool>, Arc<ManualClock>, Arc<Counter>) {
    let clock = Arc::new(ManualClock::new());
    let pool = Arc::new(Pool::new(config, clock.clone()).unwrap());
    let main = Arc::new(Counter::default());
    pool.set_main_notify(main.clone());
    (pool, clock, main)
  }

  fn cfg(min: usize, max: usize, queue: usize) -> PoolConfig {
    PoolConfig {
      min_threads: min,
      max_threads: max,
      max_queue: queue,
      ..PoolConfig::default()
    }
  }

  fn opts() -> SubmitOptions {
    SubmitOptions::default()
  }

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  #[test]
  fn rejects_impossible_shapes() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    assert!(Pool::new(cfg(0, 0, 1), clock.clone()).is_err());
    assert!(Pool::new(cfg(3, 2, 1), clock.clone()).is_err());
    let mut c = cfg(0, 1, 1);
    c.concurrency = 0;
    assert_eq!(
      Pool::new(c, clock).err().unwrap().code,
      ErrorCode::InvalidArg
    );
  }

  #[test]
  fn starts_min_threads_and_grows_to_max_on_demand() {
    let (p, _, _) = pool(cfg(1, 3, 10));
    let first = p.start();
    assert_eq!(first.len(), 1);
    // One starting worker covers one task; more tasks grow the pool, never beyond max.
    assert!(p.submit(1, vec![], opts()).unwrap().is_empty());
    assert_eq!(p.submit(2, vec![], opts()).unwrap().len(), 1);
    assert_eq!(p.submit(3, vec![], opts()).unwrap().len(), 1);
    assert!(p.submit(4, vec![], opts()).unwrap().is_empty());
    assert_eq!(p.stats().workers, 3);
  }

  #[test]
  fn a_worker_takes_tasks_in_fifo_order_and_gets_the_next_on_completion() {
    let (p, _, main) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    for id in 1..=3 {
      p.submit(id, vec![id as u8], opts()).unwrap();
    }
    let note = Arc::new(Counter::default());
    p.attach(w, note.clone()).unwrap();
    let t1 = p.take(w).unwrap();
    assert_eq!((t1.id, t1.payload.bytes.clone()), (1, vec![1]));
    // Concurrency 1: no second task while one runs.
    assert!(p.take(w).is_none());
    let t2 = p.complete(w, 1, Ok(vec![10])).unwrap();
    assert_eq!(t2.id, 2);
    let t3 = p.complete(w, 2, Err(vec![20])).unwrap();
    assert_eq!(t3.id, 3);
    assert!(p.complete(w, 3, Ok(vec![30])).is_none());
    // The main thread was notified once for the batch, and gets all three in order.
    assert_eq!(main.get(), 1);
    let batch = p.drain(usize::MAX);
    assert_eq!(
      batch.completions,
      vec![
        Completion::new(1, Outcome::Value(vec![10])).timed(Some(ms(0)), Some(ms(0))),
        Completion::new(2, Outcome::Threw(vec![20])).timed(Some(ms(0)), Some(ms(0))),
        Completion::new(3, Outcome::Value(vec![30])).timed(Some(ms(0)), Some(ms(0))),
      ]
    );
    let s = p.stats();
    assert_eq!((s.completed, s.failed, s.queued, s.running), (3, 1, 0, 0));
    assert_eq!(s.run_time.count, 3);
    assert_eq!(s.wait_time.count, 3);
  }

  #[test]
  fn completions_carry_each_task_s_queue_wait_and_run_time() {
    let (p, clock, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    p.submit(1, vec![], opts()).unwrap();
    p.submit(
      2,
      vec![],
      SubmitOptions {
        run_timeout: Some(ms(30)),
        ..opts()
      },
    )
    .unwrap();
    p.submit(
      3,
      vec![],
      SubmitOptions {
        queue_timeout: Some(ms(20)),
        ..opts()
      },
    )
    .unwrap();
    clock.advance(ms(5));
    p.take(w).unwrap();
    clock.advance(ms(7));
    // Task 1 waited 5 ms and ran 7; task 2 starts now, after 12 ms.
    assert_eq!(p.complete(w, 1, Ok(vec![])).unwrap().id, 2);
    clock.advance(ms(8));
    // At 20 ms task 3 has waited its queueTimeout; at 42 task 2 has run its timeout.
    p.expire();
    clock.advance(ms(22));
    p.expire();
    let batch = p.drain(usize::MAX);
    let times: Vec<_> = batch
      .completions
      .iter()
      .map(|c| (c.id, c.wait(), c.run()))
      .collect();
    assert_eq!(
      times,
      vec![
        (1, Some(ms(5)), Some(ms(7))),
        (3, Some(ms(20)), None),
        (2, Some(ms(12)), Some(ms(30))),
      ]
    );
  }

  #[test]
  fn drain_hands_out_bounded_batches_without_renotifying() {
    let (p, _, main) = pool(cfg(1, 1, 100));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    for id in 1..=5 {
      p.submit(id, vec![], opts()).unwrap();
    }
    let mut t = p.take(w);
    while let Some(task) = t {
      t = p.complete(w, task.id, Ok(vec![]));
    }
    assert_eq!(main.get(), 1);
    let first = p.drain(2);
    assert_eq!(
      first.completions.iter().map(|c| c.id).collect::<Vec<_>>(),
      vec![1, 2]
    );
    assert!(first.more);
    let second = p.drain(10);
    assert_eq!(second.completions.len(), 3);
    assert!(!second.more);
    assert_eq!(main.get(), 1);
    // Drained dry: the next completion notifies again.
    p.submit(6, vec![], opts()).unwrap();
    let task = p.take(w).unwrap();
    p.complete(w, task.id, Ok(vec![]));
    assert_eq!(main.get(), 2);
  }

  #[test]
  fn an_idle_worker_is_woken_once_for_a_burst() {
    let (p, _, _) = pool(cfg(1, 1, 100));
    let w = p.start()[0];
    let note = Arc::new(Counter::default());
    p.attach(w, note.clone()).unwrap();
    for id in 1..=50 {
      p.submit(id, vec![], opts()).unwrap();
    }
    assert_eq!(note.get(), 1);
    assert_eq!(p.poll(w), Inbox::default());
    let mut t = p.take(w);
    let mut n = 0;
    while let Some(task) = t {
      n += 1;
      t = p.complete(w, task.id, Ok(vec![]));
    }
    assert_eq!(n, 50);
    // Idle again: the next task wakes it again.
    p.submit(51, vec![], opts()).unwrap();
    assert_eq!(note.get(), 2);
  }

  #[test]
  fn concurrency_lets_one_worker_hold_several_tasks() {
    let mut c = cfg(1, 1, 10);
    c.concurrency = 3;
    let (p, _, _) = pool(c);
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    for id in 1..=4 {
      p.submit(id, vec![], opts()).unwrap();
    }
    let taken: Vec<_> = std::iter::from_fn(|| p.take(w)).map(|t| t.id).collect();
    assert_eq!(taken, vec![1, 2, 3]);
    assert_eq!(p.complete(w, 2, Ok(vec![])).unwrap().id, 4);
  }

  #[test]
  fn max_queue_counts_only_tasks_that_must_wait() {
    let (p, _, _) = pool(cfg(1, 1, 2));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    // 1 can start at once, 2 more may wait, the 4th is rejected.
    for id in 1..=3 {
      p.submit(id, vec![], opts()).unwrap();
    }
    let err = p.submit(4, vec![], opts()).unwrap_err();
    assert_eq!(err.code, ErrorCode::QueueFull);
    assert_eq!(p.stats().rejected, 1);
    // Once the worker finishes one and takes the next, there is room again.
    p.take(w).unwrap();
    assert_eq!(
      p.submit(4, vec![], opts()).unwrap_err().code,
      ErrorCode::QueueFull
    );
    assert_eq!(p.complete(w, 1, Ok(vec![])).unwrap().id, 2);
    p.submit(5, vec![], opts()).unwrap();
    assert_eq!(
      p.submit(6, vec![], opts()).unwrap_err().code,
      ErrorCode::QueueFull
    );
  }

  #[test]
  fn zero_max_queue_accepts_only_what_can_start() {
    let (p, _, _) = pool(cfg(1, 1, 0));
    p.start();
    p.submit(1, vec![], opts()).unwrap();
    assert_eq!(
      p.submit(2, vec![], opts()).unwrap_err().code,
      ErrorCode::QueueFull
    );
  }

  #[test]
  fn transferred_buffers_travel_with_their_task() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    let payload = Payload {
      bytes: vec![7],
      buffers: vec![vec![1, 2], vec![3]],
    };
    p.submit(1, payload, opts()).unwrap();
    let t = p.take(w).unwrap();
    assert_eq!(t.payload.bytes, vec![7]);
    assert_eq!(t.payload.buffers, vec![vec![1, 2], vec![3]]);
  }

  #[test]
  fn duplicate_ids_are_refused() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    p.submit(1, vec![], opts()).unwrap();
    assert_eq!(
      p.submit(1, vec![], opts()).unwrap_err().code,
      ErrorCode::InvalidArg
    );
  }

  #[test]
  fn cancelling_a_queued_task_removes_it() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.submit(1, vec![], opts()).unwrap();
    p.submit(2, vec![], opts()).unwrap();
    assert!(p.cancel(1, &Error::new(ErrorCode::Aborted, "x")));
    assert!(!p.cancel(1, &Error::new(ErrorCode::Aborted, "x")));
    assert_eq!(p.queue_size(), 1);
    p.attach(w, Arc::new(Counter::default())).unwrap();
    assert_eq!(p.take(w).unwrap().id, 2);
    assert_eq!(p.stats().aborted, 1);
    assert!(p.drain(usize::MAX).completions.is_empty());
  }

  #[test]
  fn cancelling_a_running_task_tells_its_worker_and_terminates_it_after_the_grace_period() {
    let mut c = cfg(1, 1, 10);
    c.abort_grace = ms(100);
    let (p, clock, _) = pool(c);
    let w = p.start()[0];
    let note = Arc::new(Counter::default());
    p.attach(w, note.clone()).unwrap();
    p.submit(1, vec![], opts()).unwrap();
    p.poll(w);
    p.take(w).unwrap();
    assert!(p.cancel(1, &Error::new(ErrorCode::Aborted, "x")));
    assert_eq!(note.get(), 2);
    assert_eq!(p.poll(w).aborts, vec![1]);
    clock.advance(ms(99));
    p.expire();
    assert!(p.drain(usize::MAX).terminate.is_empty());
    clock.advance(ms(1));
    p.expire();
    let batch = p.drain(usize::MAX);
    assert_eq!(batch.terminate, vec![w]);
    // The abandoned task is never delivered, even when the exit is reported.
    let respawn = p.worker_exited(w, &Error::new(ErrorCode::WorkerExited, "x"));
    assert!(p.drain(usize::MAX).completions.is_empty());
    // min_threads is 1, so a replacement is started right away.
    assert_eq!(respawn.workers.len(), 1);
    assert_eq!(respawn.delay, Duration::ZERO);
  }

  #[test]
  fn an_aborted_task_that_returns_in_time_frees_its_worker_without_a_result() {
    let (p, clock, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    p.submit(1, vec![], opts()).unwrap();
    p.submit(2, vec![], opts()).unwrap();
    p.take(w).unwrap();
    assert!(p.cancel(1, &Error::new(ErrorCode::Aborted, "x")));
    assert_eq!(p.complete(w, 1, Ok(vec![])).unwrap().id, 2);
    clock.advance(Duration::from_secs(5));
    p.expire();
    let batch = p.drain(usize::MAX);
    assert!(batch.completions.is_empty());
    assert!(batch.terminate.is_empty());
  }

  #[test]
  fn queue_timeout_fails_a_task_that_waits_too_long() {
    let (p, clock, main) = pool(cfg(1, 1, 10));
    p.start();
    let o = SubmitOptions {
      queue_timeout: Some(ms(50)),
      ..opts()
    };
    p.submit(1, vec![], o).unwrap();
    clock.advance(ms(49));
    assert_eq!(p.expire(), Some(ms(50)));
    clock.advance(ms(1));
    assert_eq!(p.expire(), None);
    assert_eq!(main.get(), 1);
    let batch = p.drain(usize::MAX);
    assert!(matches!(
      &batch.completions[..],
      [Completion { id: 1, outcome: Outcome::Failed(e), .. }] if e.code == ErrorCode::Timeout
    ));
    assert_eq!(p.queue_size(), 0);
    assert_eq!(p.stats().timed_out, 1);
  }

  #[test]
  fn queue_timeout_stops_once_the_task_starts_and_run_timeout_starts_then() {
    let (p, clock, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    let note = Arc::new(Counter::default());
    p.attach(w, note.clone()).unwrap();
    let o = SubmitOptions {
      queue_timeout: Some(ms(50)),
      run_timeout: Some(ms(100)),
      ..opts()
    };
    p.submit(1, vec![], o).unwrap();
    clock.advance(ms(40));
    p.take(w).unwrap();
    clock.advance(ms(99));
    p.expire();
    assert!(p.drain(usize::MAX).completions.is_empty());
    clock.advance(ms(1));
    p.expire();
    let batch = p.drain(usize::MAX);
    assert!(matches!(
      &batch.completions[..],
      [Completion { id: 1, outcome: Outcome::Failed(e), .. }] if e.code == ErrorCode::Timeout
    ));
    assert_eq!(p.poll(w).aborts, vec![1]);
    // A late result is dropped.
    assert!(p.complete(w, 1, Ok(vec![])).is_none());
    assert!(p.drain(usize::MAX).completions.is_empty());
  }

  #[test]
  fn a_worker_exit_fails_its_tasks_and_starts_a_replacement_with_backoff() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let mut w = p.start()[0];
    let exited = Error::new(ErrorCode::WorkerExited, "worker exited with code 1");
    let mut delays = Vec::new();
    for round in 0..4u64 {
      p.attach(w, Arc::new(Counter::default())).unwrap();
      p.submit(round, vec![], opts()).unwrap();
      p.take(w).unwrap();
      let respawn = p.worker_exited(w, &exited);
      let batch = p.drain(usize::MAX);
      assert!(matches!(
        &batch.completions[..],
        [Completion { outcome: Outcome::Failed(e), .. }] if e.code == ErrorCode::WorkerExited
      ));
      delays.push(respawn.delay);
      w = respawn.workers[0];
    }
    assert_eq!(delays, vec![ms(0), ms(10), ms(20), ms(40)]);
    // A success resets the backoff.
    p.attach(w, Arc::new(Counter::default())).unwrap();
    p.submit(99, vec![], opts()).unwrap();
    p.take(w).unwrap();
    p.complete(w, 99, Ok(vec![]));
    p.submit(100, vec![], opts()).unwrap();
    p.take(w).unwrap();
    assert_eq!(p.worker_exited(w, &exited).delay, ms(0));
    assert_eq!(p.stats().worker_exits, 5);
  }

  #[test]
  fn a_worker_that_dies_before_attaching_fails_the_queue_instead_of_hanging() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.submit(1, vec![], opts()).unwrap();
    p.submit(2, vec![], opts()).unwrap();
    p.worker_exited(w, &Error::new(ErrorCode::WorkerExited, "bad execArgv"));
    let batch = p.drain(usize::MAX);
    assert_eq!(batch.completions.len(), 2);
    assert_eq!(p.queue_size(), 0);
  }

  #[test]
  fn idle_workers_beyond_min_threads_retire_after_idle_timeout() {
    let mut c = cfg(1, 2, 10);
    c.idle_timeout = ms(500);
    let (p, clock, _) = pool(c);
    let a = p.start()[0];
    p.submit(1, vec![], opts()).unwrap();
    let b = p.submit(2, vec![], opts()).unwrap()[0];
    p.attach(a, Arc::new(Counter::default())).unwrap();
    p.attach(b, Arc::new(Counter::default())).unwrap();
    p.take(a).unwrap();
    p.take(b).unwrap();
    clock.advance(ms(10));
    p.complete(a, 1, Ok(vec![]));
    p.complete(b, 2, Ok(vec![]));
    clock.advance(ms(499));
    p.expire();
    assert!(p.drain(usize::MAX).terminate.is_empty());
    clock.advance(ms(1));
    p.expire();
    // Only one retires: the other is the min_threads floor.
    assert_eq!(p.drain(usize::MAX).terminate.len(), 1);
    assert_eq!(p.stats().workers, 1);
  }

  #[test]
  fn a_worker_that_never_got_a_task_still_retires() {
    let mut c = cfg(1, 2, 10);
    c.idle_timeout = ms(100);
    let (p, clock, _) = pool(c);
    let a = p.start()[0];
    p.attach(a, Arc::new(Counter::default())).unwrap();
    p.submit(1, vec![], opts()).unwrap();
    let b = p.submit(2, vec![], opts()).unwrap()[0];
    // `a` takes both before `b` attaches.
    let t1 = p.take(a).unwrap();
    assert_eq!(p.complete(a, t1.id, Ok(vec![])).unwrap().id, 2);
    p.attach(b, Arc::new(Counter::default())).unwrap();
    assert!(p.take(b).is_none());
    // Woken for nothing again: no second deadline piles up.
    assert!(p.take(b).is_none());
    clock.advance(ms(100));
    p.expire();
    assert_eq!(p.drain(usize::MAX).terminate, vec![b]);
  }

  #[test]
  fn a_busy_worker_is_not_retired_by_an_old_idle_deadline() {
    let mut c = cfg(0, 1, 10);
    c.idle_timeout = ms(100);
    let (p, clock, _) = pool(c);
    let w = p.submit(1, vec![], opts()).unwrap()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    p.take(w).unwrap();
    p.complete(w, 1, Ok(vec![]));
    clock.advance(ms(50));
    p.submit(2, vec![], opts()).unwrap();
    p.take(w).unwrap();
    clock.advance(ms(60));
    p.expire();
    assert!(p.drain(usize::MAX).terminate.is_empty());
  }

  #[test]
  fn close_refuses_new_tasks_but_keeps_queued_ones() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.submit(1, vec![], opts()).unwrap();
    p.close();
    assert_eq!(
      p.submit(2, vec![], opts()).unwrap_err().code,
      ErrorCode::Closed
    );
    p.attach(w, Arc::new(Counter::default())).unwrap();
    assert_eq!(p.take(w).unwrap().id, 1);
  }

  #[test]
  fn destroy_fails_queued_and_running_tasks_with_closed() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    p.submit(1, vec![], opts()).unwrap();
    p.submit(2, vec![], opts()).unwrap();
    p.take(w).unwrap();
    assert_eq!(p.destroy(), vec![w]);
    let batch = p.drain(usize::MAX);
    assert_eq!(batch.completions.len(), 2);
    assert!(batch
      .completions
      .iter()
      .all(|c| matches!(&c.outcome, Outcome::Failed(e) if e.code == ErrorCode::Closed)));
    // Late results and exits deliver nothing more.
    assert!(p.complete(w, 1, Ok(vec![])).is_none());
    assert!(p.worker_exited(w, &Error::closed("x")).workers.is_empty());
    assert!(p.drain(usize::MAX).completions.is_empty());
    assert_eq!(
      p.submit(3, vec![], opts()).unwrap_err().code,
      ErrorCode::Closed
    );
  }

  #[test]
  fn a_gone_worker_gets_no_work() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let w = p.start()[0];
    p.attach(w, Arc::new(Counter::default())).unwrap();
    p.worker_gone(w);
    p.submit(1, vec![], opts()).unwrap();
    assert!(p.take(w).is_none());
    let respawn = p.worker_exited(w, &Error::new(ErrorCode::WorkerExited, "x"));
    assert_eq!(respawn.workers.len(), 1);
  }

  #[test]
  fn modules_are_interned() {
    let (p, _, _) = pool(cfg(1, 1, 10));
    let a = p.module_id("/a.js", "default");
    let b = p.module_id("/a.js", "other");
    assert_ne!(a, b);
    assert_eq!(p.module_id("/a.js", "default"), a);
    assert_eq!(p.module(b), Some(("/a.js".into(), "other".into())));
    assert_eq!(p.module(99), None);
  }

  #[test]
  fn histogram_percentiles_are_within_a_sixteenth() {
    let mut h = Histogram::default();
    for v in 1..=1000u64 {
      h.record(v);
    }
    let s = h.summary();
    assert_eq!((s.count, s.min, s.max), (1000, 1, 1000));
    for (q, got) in [(500u64, s.p50), (900, s.p90), (990, s.p99)] {
      assert!(got <= q && got * 17 >= q * 16, "{got} vs {q}");
    }
    assert!((s.mean - 500.5).abs() < 1e-9);
    for v in [0u64, 15, 16, 17, 1 << 40, u64::MAX] {
      assert!(Histogram::lower_bound(Histogram::index(v)) <= v);
    }
    assert_eq!(Histogram::default().summary(), HistogramSummary::default());
  }

  /// Many worker threads pull from one pool while the submitter keeps adding:
  /// every task completes exactly once, with its own payload.
  #[test]
  fn stress_many_threads_complete_every_task_once() {
    const TASKS: u64 = 20_000;
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let mut c = cfg(4, 4, usize::MAX);
    c.concurrency = 2;
    let p = Arc::new(Pool::new(c, clock).unwrap());
    let main = Arc::new(Counter::default());
    p.set_main_notify(main.clone());
    let timer = {
      let p = p.clone();
      std::thread::spawn(move || run_timer(p))
    };
    let ids = p.start();
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = ids
      .into_iter()
      .map(|w| {
        let p = p.clone();
        let done = done.clone();
        std::thread::spawn(move || {
          p.attach(w, Arc::new(Counter::default())).unwrap();
          while done.load(Ordering::SeqCst) < TASKS as usize {
            p.poll(w);
            let mut t = p.take(w);
            while let Some(task) = t {
              let mut out = task.payload.bytes.clone();
              out.reverse();
              done.fetch_add(1, Ordering::SeqCst);
              t = p.complete(w, task.id, Ok(out));
            }
            std::thread::yield_now();
          }
        })
      })
      .collect();
    let mut seen = vec![false; TASKS as usize];
    let mut got = 0;
    for id in 0..TASKS {
      let o = SubmitOptions {
        queue_timeout: Some(Duration::from_secs(60)),
        ..opts()
      };
      p.submit(id, id.to_le_bytes().to_vec(), o).unwrap();
      if id % 64 == 0 {
        got += check(&p.drain(usize::MAX), &mut seen);
      }
    }
    for t in threads {
      t.join().unwrap();
    }
    got += check(&p.drain(usize::MAX), &mut seen);
    assert_eq!(got, TASKS as usize);
    assert!(seen.iter().all(|&s| s));
    let s = p.stats();
    assert_eq!((s.completed, s.queued, s.running), (TASKS, 0, 0));
    p.destroy();
    timer.join().unwrap();

    fn check(batch: &Batch, seen: &mut [bool]) -> usize {
      for c in &batch.completions {
        let Outcome::Value(bytes) = &c.outcome else {
          panic!("unexpected {:?}", c.outcome)
        };
        let mut b = bytes.clone();
        b.reverse();
        assert_eq!(u64::from_le_bytes(b.try_into().unwrap()), c.id);
        assert!(!seen[c.id as usize], "task {} delivered twice", c.id);
        seen[c.id as usize] = true;
      }
      batch.completions.len()
    }
  }

  /// The timer thread enforces real deadlines while workers and the
  /// submitter race with it; every task ends exactly once either way.
  #[test]
  fn stress_timer_thread_races_with_workers() {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let mut c = cfg(2, 2, usize::MAX);
    c.abort_grace = ms(5);
    let p = Arc::new(Pool::new(c, clock).unwrap());
    p.set_main_notify(Arc::new(Counter::default()));
    let timer = {
      let p = p.clone();
      std::thread::spawn(move || run_timer(p))
    };
    let ids = p.start();
    let stop = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = ids
      .into_iter()
      .map(|w| {
        let p = p.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
          p.attach(w, Arc::new(Counter::default())).unwrap();
          while stop.load(Ordering::SeqCst) == 0 {
            p.poll(w);
            let mut t = p.take(w);
            while let Some(task) = t {
              if task.id % 3 == 0 {
                std::thread::sleep(Duration::from_micros(300));
              }
              t = p.complete(w, task.id, Ok(vec![]));
            }
            std::thread::yield_now();
          }
        })
      })
      .collect();
    const TASKS: u64 = 2_000;
    for id in 0..TASKS {
      let o = SubmitOptions {
        queue_timeout: Some(Duration::from_micros(200 + id % 500)),
        run_timeout: Some(Duration::from_micros(100 + id % 300)),
        ..opts()
      };
      p.submit(id, vec![], o).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let start = Instant::now();
    while seen.len() < TASKS as usize && start.elapsed() < Duration::from_secs(20) {
      for c in p.drain(usize::MAX).completions {
        assert!(seen.insert(c.id), "task {} delivered twice", c.id);
      }
      std::thread::sleep(ms(1));
    }
    stop.store(1, Ordering::SeqCst);
    for t in threads {
      t.join().unwrap();
    }
    assert_eq!(seen.len(), TASKS as usize);
    p.destroy();
    timer.join().unwrap();
  }
}
