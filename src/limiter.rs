//! The permit/queue state machine of `Limiter` (`bulkhead/p-limit`).
//!
//! Plain Rust, no Node types. The core decides which task holds permits,
//! which waits and in which order, when a waiting task has run out of time,
//! and what the statistics are. The JS layer keeps the closures and promises
//! in slots indexed by the task ids handed out here, and is told which ids to
//! start, to time out, or to forget.
//!
//! - **Permits**: `concurrency` permits; a task takes `weight` of them while
//!   it runs and gives them back in [`LimiterCore::finish`].
//! - **Queue**: higher `priority` first, FIFO within a priority. No task
//!   overtakes the head of the queue: a heavy task at the head waits until
//!   enough permits are free, and the lighter ones behind it wait too, so a
//!   heavy task is never starved.
//! - **Bound**: at most `max_pending` waiting tasks; one more is refused with
//!   [`ErrorCode::QueueFull`].
//! - **Deadlines**: a task's `timeout` covers queue wait and run time
//!   *together* (one deadline, set at submit). Deadlines sit in one heap, so
//!   the JS side needs one timer per limiter, armed at [`LimiterCore::next_wake`].
//! - **Rate**: at most `limit` starts in any window of `interval` ms (a token
//!   bucket whose every token comes back exactly `interval` after it was
//!   spent, kept as the times of the last `limit` starts).
//! - **Stats**: counters, and wait-time and run-time percentiles from
//!   fixed-size histograms ([`Histogram`]).
//!
//! Time is passed in by the caller (`now`, in milliseconds on any monotonic
//! clock), so tests drive it by hand.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use crate::error::{Error, ErrorCode, Result};

/// A `concurrency` or `max_pending` without a limit.
pub const UNLIMITED: u64 = u64::MAX;

/// Rate limit: at most `limit` starts in any window of `interval_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
  /// Starts allowed per window (at least 1).
  pub limit: u32,
  /// Window length in milliseconds (positive, finite).
  pub interval_ms: f64,
}

/// How a limiter is built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
  /// Permits (at least 1, or [`UNLIMITED`]).
  pub concurrency: u64,
  /// Most tasks that may wait ([`UNLIMITED`] for no bound).
  pub max_pending: u64,
  /// Optional rate limit.
  pub rate: Option<Rate>,
}

impl Default for Config {
  fn default() -> Self {
    Self {
      concurrency: 1,
      max_pending: UNLIMITED,
      rate: None,
    }
  }
}

/// Per-task options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskOptions {
  /// Permits the task takes (1 ..= concurrency).
  pub weight: u64,
  /// Higher runs first; FIFO within a priority.
  pub priority: i32,
  /// Milliseconds from submit until the task times out, waiting or running.
  pub timeout_ms: Option<f64>,
  /// Milliseconds the task may wait for its permits; a task still waiting
  /// then times out. Ends when the task starts (`timeout_ms` goes on).
  pub queue_timeout_ms: Option<f64>,
}

impl Default for TaskOptions {
  fn default() -> Self {
    Self {
      weight: 1,
      priority: 0,
      timeout_ms: None,
      queue_timeout_ms: None,
    }
  }
}

/// What [`LimiterCore::submit`] did with a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
  /// The task's id, valid until it is finished, cancelled or expired.
  pub id: u32,
  /// Whether it holds its permits already (otherwise it waits).
  pub started: bool,
}

/// Why a task was taken out before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
  /// Its `AbortSignal` fired.
  Aborted,
  /// Its deadline passed.
  TimedOut,
}

/// A task that ran out of time, reported by [`LimiterCore::expire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
  /// The task.
  pub id: u32,
  /// `true`: it was waiting and is gone (its id is free again); `false`: it
  /// is running and keeps its permits until [`LimiterCore::finish`].
  pub was_waiting: bool,
}

/// Counters and percentiles, as [`LimiterCore::stats`] reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
  /// Tasks running (holding permits).
  pub active: u64,
  /// Tasks waiting.
  pub pending: u64,
  /// Permits held.
  pub permits_in_use: u64,
  /// Tasks whose function fulfilled.
  pub completed: u64,
  /// Tasks whose function threw or rejected.
  pub rejected: u64,
  /// Tasks that timed out (waiting or running).
  pub timed_out: u64,
  /// Tasks aborted by their signal (waiting or running).
  pub aborted: u64,
  /// Submissions refused because the queue was full.
  pub queue_full: u64,
  /// Queue wait percentiles of started tasks, milliseconds.
  pub wait_p50: f64,
  /// See `wait_p50`.
  pub wait_p90: f64,
  /// See `wait_p50`.
  pub wait_p99: f64,
  /// Run time percentiles of finished tasks, milliseconds.
  pub run_p50: f64,
  /// See `run_p50`.
  pub run_p90: f64,
  /// See `run_p50`.
  pub run_p99: f64,
}

// -- histogram ---------------------------------------------------------------

const LINEAR: usize = 16;
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = LINEAR + (64 - 4) * SUB;

/// A fixed-size log-linear histogram of durations in microseconds: exact
/// below 16 µs, then 8 buckets per power of two (at most 12.5 % error).
/// Its size never changes, however many values it records.
#[derive(Clone)]
pub struct Histogram {
  counts: Box<[u64; BUCKETS]>,
  total: u64,
}

impl Default for Histogram {
  fn default() -> Self {
    Self {
      counts: Box::new([0; BUCKETS]),
      total: 0,
    }
  }
}

impl std::fmt::Debug for Histogram {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Histogram")
      .field("total", &self.total)
      .finish()
  }
}

impl Histogram {
  fn index(micros: u64) -> usize {
    if micros < LINEAR as u64 {
      return micros as usize;
    }
    let exp = 63 - micros.leading_zeros(); // >= 4
    let sub = ((micros >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    LINEAR + (exp as usize - 4) * SUB + sub
  }

  fn upper_bound(index: usize) -> u64 {
    if index < LINEAR {
      return index as u64;
    }
    let exp = ((index - LINEAR) / SUB) as u32 + 4;
    let sub = ((index - LINEAR) % SUB) as u64;
    let low = (1u64 << exp) + (sub << (exp - SUB_BITS));
    low + (1u64 << (exp - SUB_BITS)) - 1
  }

  /// Records one duration in milliseconds (negative counts as 0).
  pub fn record_ms(&mut self, ms: f64) {
    let micros = if ms.is_finite() && ms > 0.0 {
      (ms * 1000.0) as u64
    } else {
      0
    };
    self.counts[Self::index(micros)] += 1;
    self.total += 1;
  }

  /// How many values were recorded.
  pub fn count(&self) -> u64 {
    self.total
  }

  /// The value (milliseconds) at or below which `p` (0..=1) of the recorded
  /// values lie, as the upper bound of its bucket; 0 when empty.
  pub fn percentile_ms(&self, p: f64) -> f64 {
    if self.total == 0 {
      return 0.0;
    }
    let rank = ((p.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, count) in self.counts.iter().enumerate() {
      seen += count;
      if seen >= rank {
        return Self::upper_bound(index) as f64 / 1000.0;
      }
    }
    Self::upper_bound(BUCKETS - 1) as f64 / 1000.0
  }
}

// -- the core ----------------------------------------------------------------

type QueueKey = (Reverse<i32>, u64);

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
  Free,
  Waiting { key: QueueKey, since: f64 },
  Running { since: f64, cancelled: bool },
}

#[derive(Clone, Copy, Debug)]
struct Task {
  generation: u32,
  owner: u64,
  weight: u64,
  deadline: f64,
  // The queue-wait deadline while it waits (and is earlier than `deadline`),
  // else infinity.
  wait_deadline: f64,
  state: State,
}

/// Deadline heap entries: (deadline in microseconds, id, generation).
type DeadlineEntry = Reverse<(u64, u32, u32)>;

/// One owner's deadlines: a heap with lazy deletion, and how many of its
/// entries are live.
#[derive(Debug, Default)]
struct Deadlines {
  heap: BinaryHeap<DeadlineEntry>,
  live: usize,
}

/// The state machine. See the module documentation.
#[derive(Debug)]
pub struct LimiterCore {
  config: Config,
  paused: bool,
  in_use: u64,
  active: u64,
  tasks: Vec<Task>,
  free: Vec<u32>,
  queue: BTreeMap<QueueKey, u32>,
  sequence: u64,
  // Per owner, so each owner of a shared limiter times out only its own
  // tasks (see `expire_owner`); a local limiter has the one owner 0.
  deadlines: HashMap<u64, Deadlines>,
  starts: VecDeque<f64>,
  started: Vec<u32>,
  stats: Stats,
  wait: Histogram,
  run: Histogram,
}

fn check_config(config: &Config) -> Result<()> {
  if config.concurrency == 0 {
    return Err(Error::invalid_arg(
      "options.concurrency must be an integer from 1 and up, or Infinity",
    ));
  }
  if let Some(rate) = config.rate {
    if rate.limit == 0 {
      return Err(Error::invalid_arg(
        "options.rate.limit must be an integer from 1 and up",
      ));
    }
    if !(rate.interval_ms.is_finite() && rate.interval_ms > 0.0) {
      return Err(Error::invalid_arg(
        "options.rate.interval must be a positive finite number of milliseconds",
      ));
    }
  }
  Ok(())
}

impl LimiterCore {
  /// A limiter with no task.
  ///
  /// # Errors
  ///
  /// [`ErrorCode::InvalidArg`] for a zero `concurrency` or a bad `rate`.
  ///
  /// # Examples
  ///
  /// ```
  /// use bulkhead::limiter::{Config, LimiterCore, TaskOptions};
  /// let mut core = LimiterCore::new(Config { concurrency: 1, ..Config::default() }).unwrap();
  /// let a = core.submit(TaskOptions::default(), 0.0).unwrap();
  /// let b = core.submit(TaskOptions::default(), 0.0).unwrap();
  /// assert!(a.started && !b.started);
  /// core.finish(a.id, true, 5.0);
  /// assert_eq!(core.take_started(), vec![b.id]);
  /// ```
  pub fn new(config: Config) -> Result<Self> {
    check_config(&config)?;
    Ok(Self {
      config,
      paused: false,
      in_use: 0,
      active: 0,
      tasks: Vec::new(),
      free: Vec::new(),
      queue: BTreeMap::new(),
      sequence: 0,
      deadlines: HashMap::new(),
      starts: VecDeque::new(),
      started: Vec::new(),
      stats: Stats::default(),
      wait: Histogram::default(),
      run: Histogram::default(),
    })
  }

  /// The configuration in force.
  pub fn config(&self) -> Config {
    self.config
  }

  /// Tasks running.
  pub fn active(&self) -> u64 {
    self.active
  }

  /// Tasks waiting.
  pub fn pending(&self) -> u64 {
    self.queue.len() as u64
  }

  /// Whether starting is paused.
  pub fn is_paused(&self) -> bool {
    self.paused
  }

  /// Submits a task. It starts at once if it is not paused, nobody waits,
  /// enough permits are free and the rate allows; otherwise it waits.
  ///
  /// # Errors
  ///
  /// [`ErrorCode::QueueFull`] if it would have to wait and `max_pending`
  /// tasks wait already; [`ErrorCode::InvalidArg`] for a weight of 0 or
  /// above `concurrency`, or a timeout that is not a non-negative number.
  pub fn submit(&mut self, options: TaskOptions, now: f64) -> Result<Submitted> {
    self.submit_owned(options, 0, now)
  }

  /// [`LimiterCore::submit`] for a task tagged with `owner`: a limiter shared
  /// by several threads tags each task with the handle that submitted it,
  /// so it can tell whom a start or a timeout concerns
  /// ([`LimiterCore::owner_of`]) and drop a departed owner's tasks
  /// ([`LimiterCore::forget_owner`]).
  ///
  /// # Errors
  ///
  /// As [`LimiterCore::submit`].
  pub fn submit_owned(&mut self, options: TaskOptions, owner: u64, now: f64) -> Result<Submitted> {
    if options.weight == 0 || options.weight > self.config.concurrency {
      return Err(Error::invalid_arg(format!(
        "options.weight must be an integer from 1 to the concurrency ({})",
        self.config.concurrency
      )));
    }
    if let Some(timeout) = options.timeout_ms {
      if timeout.is_nan() || timeout < 0.0 {
        return Err(Error::invalid_arg(
          "options.timeout must be a non-negative number of milliseconds",
        ));
      }
    }
    if let Some(timeout) = options.queue_timeout_ms {
      if timeout.is_nan() || timeout < 0.0 {
        return Err(Error::invalid_arg(
          "options.queueTimeout must be a non-negative number of milliseconds",
        ));
      }
    }
    let can_start =
      !self.paused && self.queue.is_empty() && self.fits(options.weight) && self.rate_allows(now);
    if !can_start && self.queue.len() as u64 >= self.config.max_pending {
      self.stats.queue_full += 1;
      return Err(Error::new(
        ErrorCode::QueueFull,
        format!(
          "the queue is full (maxPending: {})",
          self.config.max_pending
        ),
      ));
    }
    let id = self.allocate();
    let deadline = options.timeout_ms.map_or(f64::INFINITY, |t| now + t);
    let task = &mut self.tasks[id as usize];
    task.weight = options.weight;
    task.owner = owner;
    task.deadline = deadline;
    task.wait_deadline = f64::INFINITY;
    let generation = task.generation;
    if can_start {
      self.take_token(now);
      self.begin(id, now, now);
    } else {
      let key = (Reverse(options.priority), self.sequence);
      self.sequence += 1;
      self.queue.insert(key, id);
      self.tasks[id as usize].state = State::Waiting { key, since: now };
      let wait_deadline = options.queue_timeout_ms.map_or(f64::INFINITY, |t| now + t);
      if wait_deadline < deadline {
        self.tasks[id as usize].wait_deadline = wait_deadline;
        self.push_deadline(owner, wait_deadline, id, generation);
      }
    }
    if deadline.is_finite() {
      self.push_deadline(owner, deadline, id, generation);
    }
    Ok(Submitted {
      id,
      started: can_start,
    })
  }

  /// A running task's function settled (`ok`: it fulfilled). Its permits
  /// come back, waiting tasks may start (see [`LimiterCore::take_started`])
  /// and its id is free again. Unknown or waiting ids are ignored.
  pub fn finish(&mut self, id: u32, ok: bool, now: f64) {
    let Some(task) = self.tasks.get(id as usize).copied() else {
      return;
    };
    let State::Running { since, cancelled } = task.state else {
      return;
    };
    self.run.record_ms(now - since);
    if !cancelled {
      if ok {
        self.stats.completed += 1;
      } else {
        self.stats.rejected += 1;
      }
    }
    self.in_use -= task.weight;
    self.active -= 1;
    self.release(id);
    self.drain(now);
    self.shrink_if_idle();
  }

  /// Takes a task out before it finished. A waiting task leaves the queue
  /// and its id is free again (returns `true`); a running one is marked (it
  /// keeps its permits until [`LimiterCore::finish`]; returns `false`).
  /// Counts the task as aborted or timed out, once.
  pub fn cancel(&mut self, id: u32, why: Cancel, now: f64) -> bool {
    let Some(task) = self.tasks.get(id as usize).copied() else {
      return false;
    };
    match task.state {
      State::Free => false,
      State::Waiting { key, .. } => {
        self.queue.remove(&key);
        self.count_cancel(why);
        self.release(id);
        // The head may have changed (a heavy head left).
        self.drain(now);
        self.shrink_if_idle();
        true
      }
      State::Running { since, cancelled } => {
        if !cancelled {
          self.count_cancel(why);
          self.tasks[id as usize].state = State::Running {
            since,
            cancelled: true,
          };
        }
        false
      }
    }
  }

  /// Times out every task whose deadline is at or before `now`, waiting or
  /// running, and reports them (in deadline order for each owner).
  pub fn expire(&mut self, now: f64) -> Vec<Expired> {
    let owners: Vec<u64> = self.deadlines.keys().copied().collect();
    let mut out = Vec::new();
    for owner in owners {
      out.extend(self.expire_owner(owner, now));
    }
    self.drain(now);
    out
  }

  /// [`LimiterCore::expire`] for the tasks of one owner only. A shared
  /// limiter's handles each time out their own tasks, so the id of a task
  /// that timed out while waiting is freed by the thread that owns it, never
  /// under its feet by another thread.
  pub fn expire_owner(&mut self, owner: u64, now: f64) -> Vec<Expired> {
    let mut out = Vec::new();
    let limit = micros(now);
    while let Some(deadlines) = self.deadlines.get_mut(&owner) {
      let Some(&Reverse((at, id, generation))) = deadlines.heap.peek() else {
        break;
      };
      if at > limit {
        break;
      }
      deadlines.heap.pop();
      let Some(task) = self.tasks.get(id as usize).copied() else {
        continue;
      };
      if task.generation != generation || task.state == State::Free {
        continue;
      }
      // A task has up to two entries: its queue-wait deadline (dropped,
      // stale, when it started) and its own deadline.
      if task.wait_deadline.is_finite() && at == micros(task.wait_deadline) {
        self.tasks[id as usize].wait_deadline = f64::INFINITY;
      } else if task.deadline.is_finite() && at == micros(task.deadline) {
        self.tasks[id as usize].deadline = f64::INFINITY;
      } else {
        continue;
      }
      deadlines.live -= 1;
      match task.state {
        State::Running {
          cancelled: true, ..
        } => {}
        _ => {
          let was_waiting = self.cancel(id, Cancel::TimedOut, now);
          out.push(Expired { id, was_waiting });
        }
      }
    }
    self.drain(now);
    out
  }

  /// When the caller should call back (with [`LimiterCore::expire`] and
  /// [`LimiterCore::poll`]): the earliest deadline, or when the rate lets
  /// the head of the queue start. `None`: nothing to wait for.
  pub fn next_wake(&self) -> Option<f64> {
    let deadline = self
      .deadlines
      .values()
      .filter_map(|d| d.heap.peek())
      .map(|Reverse((at, _, _))| *at)
      .min()
      .map(|at| at as f64 / 1000.0);
    Self::earliest(deadline, self.rate_blocks_head())
  }

  /// [`LimiterCore::next_wake`] for one owner: its own earliest deadline,
  /// or when the rate lets the head start.
  pub fn next_wake_owner(&self, owner: u64) -> Option<f64> {
    let deadline = self
      .deadlines
      .get(&owner)
      .and_then(|d| d.heap.peek())
      .map(|Reverse((at, _, _))| *at as f64 / 1000.0);
    Self::earliest(deadline, self.rate_blocks_head())
  }

  fn earliest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
      (Some(a), Some(b)) => Some(a.min(b)),
      (a, b) => a.or(b),
    }
  }

  /// Starts waiting tasks that can start at `now` (after time passed for
  /// the rate limit).
  pub fn poll(&mut self, now: f64) {
    self.drain(now);
  }

  /// The ids started since the last call, in start order.
  pub fn take_started(&mut self) -> Vec<u32> {
    std::mem::take(&mut self.started)
  }

  /// Appends the ids started since the last call to `out` and forgets them.
  pub fn drain_started_into(&mut self, out: &mut Vec<u32>) {
    out.append(&mut self.started);
  }

  /// Takes the first id started since the last take, and whether more wait
  /// to be taken (the common case, one start per finish, allocates nothing).
  pub fn take_first_started(&mut self) -> Option<(u32, bool)> {
    if self.started.is_empty() {
      return None;
    }
    let first = self.started.remove(0);
    Some((first, !self.started.is_empty()))
  }

  /// Whether tasks were started since the last take.
  pub fn has_started(&self) -> bool {
    !self.started.is_empty()
  }

  /// Changes the number of permits; more permits start waiting tasks.
  ///
  /// # Errors
  ///
  /// [`ErrorCode::InvalidArg`] for 0.
  pub fn set_concurrency(&mut self, concurrency: u64, now: f64) -> Result<()> {
    check_config(&Config {
      concurrency,
      ..self.config
    })?;
    self.config.concurrency = concurrency;
    self.drain(now);
    Ok(())
  }

  /// Stops starting waiting tasks (running ones go on; new ones wait).
  pub fn pause(&mut self) {
    self.paused = true;
  }

  /// Starts waiting tasks again.
  pub fn resume(&mut self, now: f64) {
    self.paused = false;
    self.drain(now);
  }

  /// Removes every waiting task, counted as aborted, and returns their ids
  /// (free again) in queue order.
  pub fn clear(&mut self) -> Vec<u32> {
    let ids: Vec<u32> = std::mem::take(&mut self.queue).into_values().collect();
    for &id in &ids {
      self.count_cancel(Cancel::Aborted);
      self.release(id);
    }
    self.shrink_if_idle();
    ids
  }

  /// The owner `id` was submitted with. Still answers for an id just
  /// reported by [`LimiterCore::expire`] or [`LimiterCore::clear`] (an id
  /// keeps its owner until it is handed out again).
  pub fn owner_of(&self, id: u32) -> Option<u64> {
    self.tasks.get(id as usize).map(|task| task.owner)
  }

  /// Removes the waiting tasks of `owner` (counted as aborted) and returns
  /// their ids, in queue order.
  pub fn clear_owner(&mut self, owner: u64, now: f64) -> Vec<u32> {
    let ids: Vec<u32> = self
      .queue
      .values()
      .copied()
      .filter(|&id| self.tasks[id as usize].owner == owner)
      .collect();
    // Take them all out before anything starts: a drain between two of
    // them could start the next one of this very owner.
    for &id in &ids {
      if let State::Waiting { key, .. } = self.tasks[id as usize].state {
        self.queue.remove(&key);
      }
      self.count_cancel(Cancel::Aborted);
      self.release(id);
    }
    self.drain(now);
    self.shrink_if_idle();
    ids
  }

  /// Drops every task of `owner`, whose thread is gone: waiting ones leave
  /// the queue, running ones give their permits back (counted as aborted).
  /// Other owners' waiting tasks may start.
  pub fn forget_owner(&mut self, owner: u64, now: f64) {
    self.clear_owner(owner, now);
    let running: Vec<u32> = (0..self.tasks.len() as u32)
      .filter(|&id| {
        let task = &self.tasks[id as usize];
        task.owner == owner && matches!(task.state, State::Running { .. })
      })
      .collect();
    for id in running {
      self.cancel(id, Cancel::Aborted, now);
      self.finish(id, false, now);
    }
  }

  /// Counters and percentiles.
  pub fn stats(&self) -> Stats {
    Stats {
      active: self.active,
      pending: self.pending(),
      permits_in_use: self.in_use,
      wait_p50: self.wait.percentile_ms(0.5),
      wait_p90: self.wait.percentile_ms(0.9),
      wait_p99: self.wait.percentile_ms(0.99),
      run_p50: self.run.percentile_ms(0.5),
      run_p90: self.run.percentile_ms(0.9),
      run_p99: self.run.percentile_ms(0.99),
      ..self.stats
    }
  }

  /// Task slots allocated (live or free); bounded by the peak of running
  /// plus waiting tasks, for leak tests.
  pub fn slots(&self) -> usize {
    self.tasks.len()
  }

  /// Entries in the deadline heap, stale ones included (for tests of its bound).
  pub fn deadline_entries(&self) -> usize {
    self.deadlines.values().map(|d| d.heap.len()).sum()
  }

  // -- internals --

  fn fits(&self, weight: u64) -> bool {
    self.config.concurrency == UNLIMITED || self.in_use + weight <= self.config.concurrency
  }

  fn rate_allows(&mut self, now: f64) -> bool {
    let Some(rate) = self.config.rate else {
      return true;
    };
    while self.starts.len() >= rate.limit as usize {
      match self.starts.front() {
        Some(&first) if now - first >= rate.interval_ms => {
          self.starts.pop_front();
        }
        _ => return false,
      }
    }
    true
  }

  fn take_token(&mut self, now: f64) {
    if self.config.rate.is_some() {
      self.starts.push_back(now);
    }
  }

  fn rate_blocks_head(&self) -> Option<f64> {
    let rate = self.config.rate?;
    if self.paused || self.starts.len() < rate.limit as usize {
      return None;
    }
    let (_, &head) = self.queue.first_key_value()?;
    if !self.fits(self.tasks[head as usize].weight) {
      return None;
    }
    let index = self.starts.len() - rate.limit as usize;
    self.starts.get(index).map(|t| t + rate.interval_ms)
  }

  fn begin(&mut self, id: u32, since_queued: f64, now: f64) {
    let task = &mut self.tasks[id as usize];
    self.in_use += task.weight;
    self.active += 1;
    if task.wait_deadline.is_finite() {
      // It waited in time: its queue-wait entry is stale from now on.
      task.wait_deadline = f64::INFINITY;
      if let Some(deadlines) = self.deadlines.get_mut(&task.owner) {
        deadlines.live -= 1;
      }
    }
    task.state = State::Running {
      since: now,
      cancelled: false,
    };
    self.wait.record_ms(now - since_queued);
  }

  fn drain(&mut self, now: f64) {
    if self.paused {
      return;
    }
    while let Some((_, &id)) = self.queue.first_key_value() {
      let weight = self.tasks[id as usize].weight;
      if !self.fits(weight) || !self.rate_allows(now) {
        break;
      }
      self.queue.pop_first();
      let State::Waiting { since, .. } = self.tasks[id as usize].state else {
        unreachable!("a queued task is waiting");
      };
      self.take_token(now);
      self.begin(id, since, now);
      self.started.push(id);
    }
  }

  fn count_cancel(&mut self, why: Cancel) {
    match why {
      Cancel::Aborted => self.stats.aborted += 1,
      Cancel::TimedOut => self.stats.timed_out += 1,
    }
  }

  fn allocate(&mut self) -> u32 {
    if let Some(id) = self.free.pop() {
      return id;
    }
    let id = u32::try_from(self.tasks.len()).expect("fewer than 2^32 live tasks");
    self.tasks.push(Task {
      generation: 0,
      owner: 0,
      weight: 1,
      deadline: f64::INFINITY,
      wait_deadline: f64::INFINITY,
      state: State::Free,
    });
    id
  }

  fn release(&mut self, id: u32) {
    let task = &mut self.tasks[id as usize];
    let owner = task.owner;
    let had_deadlines =
      usize::from(task.deadline.is_finite()) + usize::from(task.wait_deadline.is_finite());
    task.state = State::Free;
    task.deadline = f64::INFINITY;
    task.wait_deadline = f64::INFINITY;
    task.generation = task.generation.wrapping_add(1);
    self.free.push(id);
    // Stale entries (tasks that finished before their deadline) are dropped
    // when they reach the top; rebuild when they outnumber the live ones so
    // the heap stays proportional to the live tasks.
    let tasks = &self.tasks;
    if let Some(deadlines) = self.deadlines.get_mut(&owner) {
      deadlines.live -= had_deadlines;
      if deadlines.heap.len() > 64 && deadlines.heap.len() > 2 * deadlines.live {
        deadlines.heap.retain(|Reverse((_, id, generation))| {
          let task = &tasks[*id as usize];
          task.generation == *generation && task.state != State::Free
        });
      }
    }
  }

  /// Gives memory back once the limiter is idle after a burst.
  fn shrink_if_idle(&mut self) {
    if self.active == 0 && self.queue.is_empty() && self.tasks.len() > 1024 {
      self.tasks.clear();
      self.tasks.shrink_to(64);
      self.free.clear();
      self.free.shrink_to(64);
      self.deadlines.clear();
      self.deadlines.shrink_to(4);
    }
  }

  fn push_deadline(&mut self, owner: u64, deadline: f64, id: u32, generation: u32) {
    let deadlines = self.deadlines.entry(owner).or_default();
    deadlines.live += 1;
    deadlines
      .heap
      .push(Reverse((micros(deadline), id, generation)));
  }
}

fn micros(ms: f64) -> u64 {
  if ms <= 0.0 {
    0
  } else if ms.is_finite() {
    (ms * 1000.0).ceil() as u64
  } else {
    u64::MAX
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::clock::{Clock, ManualClock};
  use std::time::Duration;

  fn core(concurrency: u64) -> LimiterCore {
    LimiterCore::new(Config {
      concurrency,
      ..Config::default()
    })
    .unwrap()
  }

  fn opts(weight: u64, priority: i32) -> TaskOptions {
    TaskOptions {
      weight,
      priority,
      timeout_ms: None,
      queue_timeout_ms: None,
    }
  }

  #[test]
  fn starts_up_to_concurrency_then_queues_fifo() {
    let mut c = core(2);
    let ids: Vec<_> = (0..5)
      .map(|_| c.submit(TaskOptions::default(), 0.0).unwrap())
      .collect();
    assert_eq!(
      ids.iter().map(|s| s.started).collect::<Vec<_>>(),
      [true, true, false, false, false]
    );
    assert_eq!((c.active(), c.pending()), (2, 3));
    c.finish(ids[0].id, true, 1.0);
    assert_eq!(c.take_first_started(), Some((ids[2].id, false)));
    assert_eq!(c.take_first_started(), None);
    c.finish(ids[1].id, true, 1.0);
    c.finish(ids[2].id, true, 1.0);
    assert_eq!(c.take_started(), vec![ids[3].id, ids[4].id]);
    assert_eq!((c.active(), c.pending()), (2, 0));
  }

  #[test]
  fn higher_priority_first_and_fifo_within_a_level() {
    let mut c = core(1);
    let running = c.submit(opts(1, 0), 0.0).unwrap();
    let low = c.submit(opts(1, -1), 0.0).unwrap();
    let a = c.submit(opts(1, 5), 0.0).unwrap();
    let mid = c.submit(opts(1, 0), 0.0).unwrap();
    let b = c.submit(opts(1, 5), 0.0).unwrap();
    let mut order = Vec::new();
    let mut current = running.id;
    for _ in 0..4 {
      c.finish(current, true, 0.0);
      let started = c.take_started();
      assert_eq!(started.len(), 1);
      current = started[0];
      order.push(current);
    }
    assert_eq!(order, vec![a.id, b.id, mid.id, low.id]);
  }

  #[test]
  fn weights_take_several_permits_and_the_head_is_never_overtaken() {
    let mut c = core(4);
    let small = c.submit(opts(3, 0), 0.0).unwrap();
    assert!(small.started);
    let heavy = c.submit(opts(4, 0), 0.0).unwrap();
    let light = c.submit(opts(1, 0), 0.0).unwrap();
    assert!(
      !heavy.started && !light.started,
      "one permit is free, but the heavy head waits and the light one behind it too"
    );
    assert_eq!(c.stats().permits_in_use, 3);
    c.finish(small.id, true, 0.0);
    assert_eq!(c.take_started(), vec![heavy.id]);
    c.finish(heavy.id, true, 0.0);
    assert_eq!(c.take_started(), vec![light.id]);
    let err = c.submit(opts(5, 0), 0.0).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArg);
    assert!(err.message.contains("options.weight"));
    assert_eq!(
      c.submit(opts(0, 0), 0.0).unwrap_err().code,
      ErrorCode::InvalidArg
    );
  }

  #[test]
  fn a_full_queue_refuses_at_once() {
    let mut c = LimiterCore::new(Config {
      concurrency: 1,
      max_pending: 2,
      rate: None,
    })
    .unwrap();
    for _ in 0..3 {
      c.submit(TaskOptions::default(), 0.0).unwrap();
    }
    let err = c.submit(TaskOptions::default(), 0.0).unwrap_err();
    assert_eq!(err.code, ErrorCode::QueueFull);
    assert_eq!(err.message, "the queue is full (maxPending: 2)");
    assert_eq!(c.stats().queue_full, 1);
    assert_eq!(c.pending(), 2);
  }

  #[test]
  fn zero_max_pending_allows_only_immediate_starts() {
    let mut c = LimiterCore::new(Config {
      concurrency: 1,
      max_pending: 0,
      rate: None,
    })
    .unwrap();
    assert!(c.submit(TaskOptions::default(), 0.0).unwrap().started);
    assert_eq!(
      c.submit(TaskOptions::default(), 0.0).unwrap_err().code,
      ErrorCode::QueueFull
    );
  }

  #[test]
  fn cancelling_a_waiting_task_frees_it_and_a_running_one_keeps_its_permit() {
    let mut c = core(1);
    let a = c.submit(TaskOptions::default(), 0.0).unwrap();
    let b = c.submit(TaskOptions::default(), 0.0).unwrap();
    let d = c.submit(TaskOptions::default(), 0.0).unwrap();
    assert!(c.cancel(b.id, Cancel::Aborted, 0.0));
    assert_eq!(c.pending(), 1);
    assert!(!c.cancel(a.id, Cancel::Aborted, 0.0));
    assert!(!c.cancel(a.id, Cancel::Aborted, 0.0), "counted once");
    assert_eq!(c.active(), 1, "an aborted running task holds its permit");
    c.finish(a.id, false, 1.0);
    assert_eq!(c.take_started(), vec![d.id]);
    let s = c.stats();
    assert_eq!((s.aborted, s.rejected, s.completed), (2, 0, 0));
    assert!(
      !c.cancel(b.id, Cancel::Aborted, 0.0),
      "a freed id is unknown"
    );
  }

  #[test]
  fn cancelling_a_heavy_head_lets_the_next_start() {
    let mut c = core(2);
    let a = c.submit(opts(1, 0), 0.0).unwrap();
    let heavy = c.submit(opts(2, 0), 0.0).unwrap();
    let light = c.submit(opts(1, 0), 0.0).unwrap();
    assert!(a.started && !heavy.started && !light.started);
    assert!(c.cancel(heavy.id, Cancel::TimedOut, 0.0));
    assert_eq!(c.take_started(), vec![light.id]);
  }

  #[test]
  fn one_deadline_covers_waiting_and_running() {
    let clock = ManualClock::new();
    let mut c = core(1);
    let with_timeout = |ms| TaskOptions {
      timeout_ms: Some(ms),
      ..TaskOptions::default()
    };
    let running = c.submit(with_timeout(100.0), clock.now_ms()).unwrap();
    let waiting = c.submit(with_timeout(50.0), clock.now_ms()).unwrap();
    let patient = c.submit(TaskOptions::default(), clock.now_ms()).unwrap();
    assert_eq!(c.next_wake(), Some(50.0));
    clock.advance(Duration::from_millis(49));
    assert!(c.expire(clock.now_ms()).is_empty());
    clock.advance(Duration::from_millis(1));
    assert_eq!(
      c.expire(clock.now_ms()),
      vec![Expired {
        id: waiting.id,
        was_waiting: true
      }]
    );
    assert_eq!(c.pending(), 1);
    assert_eq!(c.next_wake(), Some(100.0));
    clock.advance(Duration::from_millis(50));
    assert_eq!(
      c.expire(clock.now_ms()),
      vec![Expired {
        id: running.id,
        was_waiting: false
      }]
    );
    assert_eq!(c.active(), 1, "the timed-out task runs on until it settles");
    assert!(c.take_started().is_empty());
    c.finish(running.id, true, clock.now_ms());
    assert_eq!(c.take_started(), vec![patient.id]);
    let s = c.stats();
    assert_eq!((s.timed_out, s.completed), (2, 0));
    assert_eq!(c.next_wake(), None);
  }

  #[test]
  fn finished_tasks_leave_no_deadline_behind() {
    let mut c = core(4);
    for i in 0..10_000 {
      let s = c
        .submit(
          TaskOptions {
            timeout_ms: Some(1_000.0),
            ..TaskOptions::default()
          },
          i as f64,
        )
        .unwrap();
      c.finish(s.id, true, i as f64);
      let _ = c.take_started();
    }
    assert!(c.deadline_entries() <= 130, "{}", c.deadline_entries());
    assert!(c.expire(1e9).is_empty());
    assert_eq!(c.slots(), 1);
  }

  #[test]
  fn a_timeout_of_zero_expires_at_the_next_check() {
    let mut c = core(1);
    let _ = c.submit(TaskOptions::default(), 0.0).unwrap();
    let t = c
      .submit(
        TaskOptions {
          timeout_ms: Some(0.0),
          ..TaskOptions::default()
        },
        0.0,
      )
      .unwrap();
    assert_eq!(
      c.expire(0.0),
      vec![Expired {
        id: t.id,
        was_waiting: true
      }]
    );
    let err = c
      .submit(
        TaskOptions {
          timeout_ms: Some(-1.0),
          ..TaskOptions::default()
        },
        0.0,
      )
      .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArg);
  }

  #[test]
  fn rate_allows_at_most_limit_starts_in_any_window() {
    let clock = ManualClock::new();
    let mut c = LimiterCore::new(Config {
      concurrency: UNLIMITED,
      max_pending: UNLIMITED,
      rate: Some(Rate {
        limit: 2,
        interval_ms: 100.0,
      }),
    })
    .unwrap();
    let mut starts = Vec::new();
    for _ in 0..7 {
      let s = c.submit(TaskOptions::default(), clock.now_ms()).unwrap();
      if s.started {
        starts.push(clock.now_ms());
      }
    }
    assert_eq!(starts, vec![0.0, 0.0]);
    assert_eq!(c.next_wake(), Some(100.0));
    clock.advance(Duration::from_millis(30));
    c.poll(clock.now_ms());
    assert!(c.take_started().is_empty());
    for _ in 0..40 {
      clock.advance(Duration::from_millis(10));
      c.poll(clock.now_ms());
      for _ in c.take_started() {
        starts.push(clock.now_ms());
      }
    }
    assert_eq!(starts.len(), 7);
    for (i, &t) in starts.iter().enumerate() {
      let in_window = starts[i..].iter().filter(|&&u| u < t + 100.0).count();
      assert!(in_window <= 2, "{starts:?}");
    }
    assert_eq!(starts[2], 100.0);
  }

  #[test]
  fn rate_and_concurrency_compose() {
    let mut c = LimiterCore::new(Config {
      concurrency: 1,
      max_pending: UNLIMITED,
      rate: Some(Rate {
        limit: 10,
        interval_ms: 1000.0,
      }),
    })
    .unwrap();
    let a = c.submit(TaskOptions::default(), 0.0).unwrap();
    let b = c.submit(TaskOptions::default(), 0.0).unwrap();
    assert!(a.started && !b.started);
    assert_eq!(
      c.next_wake(),
      None,
      "concurrency, not rate, blocks the head"
    );
    c.finish(a.id, true, 1.0);
    assert_eq!(c.take_started(), vec![b.id]);
  }

  #[test]
  fn pause_holds_waiting_tasks_and_resume_starts_them() {
    let mut c = core(2);
    c.pause();
    let a = c.submit(TaskOptions::default(), 0.0).unwrap();
    assert!(!a.started);
    assert!(c.is_paused());
    c.resume(0.0);
    assert_eq!(c.take_started(), vec![a.id]);
  }

  #[test]
  fn raising_concurrency_starts_waiting_tasks() {
    let mut c = core(1);
    let _a = c.submit(TaskOptions::default(), 0.0).unwrap();
    let b = c.submit(TaskOptions::default(), 0.0).unwrap();
    let d = c.submit(TaskOptions::default(), 0.0).unwrap();
    c.set_concurrency(3, 0.0).unwrap();
    assert_eq!(c.take_started(), vec![b.id, d.id]);
    assert_eq!(
      c.set_concurrency(0, 0.0).unwrap_err().code,
      ErrorCode::InvalidArg
    );
  }

  #[test]
  fn clear_removes_every_waiting_task() {
    let mut c = core(1);
    let _a = c.submit(TaskOptions::default(), 0.0).unwrap();
    let b = c.submit(opts(1, 0), 0.0).unwrap();
    let d = c.submit(opts(1, 9), 0.0).unwrap();
    assert_eq!(c.clear(), vec![d.id, b.id]);
    assert_eq!((c.pending(), c.stats().aborted), (0, 2));
  }

  #[test]
  fn clearing_a_large_queue_of_an_idle_limiter_gives_memory_back() {
    let mut c = core(1);
    c.pause();
    for _ in 0..3000 {
      c.submit(TaskOptions::default(), 0.0).unwrap();
    }
    assert_eq!(c.clear().len(), 3000);
    assert_eq!(c.slots(), 0);
  }

  #[test]
  fn owners_tag_tasks_and_a_departed_owner_gives_everything_back() {
    let mut c = core(2);
    let a1 = c.submit_owned(TaskOptions::default(), 1, 0.0).unwrap();
    let b1 = c.submit_owned(TaskOptions::default(), 2, 0.0).unwrap();
    let a2 = c.submit_owned(TaskOptions::default(), 1, 0.0).unwrap();
    let b2 = c.submit_owned(TaskOptions::default(), 2, 0.0).unwrap();
    assert!(a1.started && b1.started && !a2.started && !b2.started);
    assert_eq!(c.owner_of(b2.id), Some(2));
    c.forget_owner(1, 1.0);
    assert_eq!(c.take_started(), vec![b2.id], "owner 1's permit came back");
    assert_eq!((c.active(), c.pending()), (2, 0));
    assert_eq!(c.stats().aborted, 2);
    let b3 = c.submit_owned(TaskOptions::default(), 2, 1.0).unwrap();
    let a3 = c.submit_owned(TaskOptions::default(), 1, 1.0).unwrap();
    assert_eq!(c.clear_owner(2, 1.0), vec![b3.id]);
    assert_eq!(
      c.owner_of(b3.id),
      Some(2),
      "a cleared id still tells its owner"
    );
    assert_eq!(c.pending(), 1);
    assert!(!a3.started);
  }

  #[test]
  fn each_owner_times_out_only_its_own_tasks() {
    let mut c = core(1);
    let with_timeout = |ms| TaskOptions {
      timeout_ms: Some(ms),
      ..TaskOptions::default()
    };
    let _running = c.submit_owned(TaskOptions::default(), 1, 0.0).unwrap();
    let mine = c.submit_owned(with_timeout(10.0), 1, 0.0).unwrap();
    let theirs = c.submit_owned(with_timeout(5.0), 2, 0.0).unwrap();
    assert_eq!(c.next_wake_owner(1), Some(10.0));
    assert_eq!(c.next_wake_owner(2), Some(5.0));
    assert_eq!(c.next_wake(), Some(5.0));
    assert_eq!(
      c.expire_owner(1, 20.0),
      vec![Expired {
        id: mine.id,
        was_waiting: true
      }]
    );
    assert_eq!(c.pending(), 1, "owner 2's overdue task waits for owner 2");
    assert_eq!(
      c.expire_owner(2, 20.0),
      vec![Expired {
        id: theirs.id,
        was_waiting: true
      }]
    );
    assert_eq!(c.next_wake(), None);
  }

  #[test]
  fn clearing_an_owner_never_starts_its_own_next_task() {
    let mut c = core(2);
    let _a = c.submit_owned(TaskOptions::default(), 1, 0.0).unwrap();
    let heavy = c.submit_owned(opts(2, 0), 1, 0.0).unwrap();
    let light = c.submit_owned(opts(1, 0), 1, 0.0).unwrap();
    let other = c.submit_owned(opts(1, 0), 2, 0.0).unwrap();
    assert_eq!(c.clear_owner(1, 0.0), vec![heavy.id, light.id]);
    assert_eq!(c.take_started(), vec![other.id]);
    assert_eq!(c.active(), 2);
  }

  #[test]
  fn stats_report_wait_and_run_percentiles() {
    let mut c = core(1);
    let first = c.submit(TaskOptions::default(), 0.0).unwrap();
    let queued: Vec<_> = (0..99)
      .map(|_| c.submit(TaskOptions::default(), 0.0).unwrap())
      .collect();
    let mut now = 0.0;
    let mut current = first.id;
    for _ in 0..queued.len() {
      now += 10.0;
      c.finish(current, true, now);
      current = c.take_started()[0];
    }
    now += 10.0;
    c.finish(current, true, now);
    let s = c.stats();
    assert_eq!(s.completed, 100);
    assert!((9.0..=11.3).contains(&s.run_p50), "{s:?}");
    assert!((9.0..=11.3).contains(&s.run_p99), "{s:?}");
    assert!((440.0..=565.0).contains(&s.wait_p50), "{s:?}");
    assert!((880.0..=1130.0).contains(&s.wait_p90), "{s:?}");
    assert!(s.wait_p99 >= s.wait_p90 && s.wait_p90 >= s.wait_p50);
  }

  #[test]
  fn histogram_is_fixed_size_and_within_an_eighth() {
    let mut h = Histogram::default();
    assert_eq!(h.percentile_ms(0.5), 0.0);
    for micros in [0u64, 1, 15, 16, 17, 1000, 123_456, 10_000_000_000] {
      let index = Histogram::index(micros);
      assert!(index < BUCKETS);
      let upper = Histogram::upper_bound(index);
      assert!(upper >= micros, "{micros} -> {upper}");
      assert!(
        upper as f64 <= micros as f64 * 1.125 + 1.0,
        "{micros} -> {upper}"
      );
    }
    for v in 1..=1000 {
      h.record_ms(v as f64);
    }
    assert_eq!(h.count(), 1000);
    let p50 = h.percentile_ms(0.5);
    assert!((500.0..=563.0).contains(&p50), "{p50}");
    h.record_ms(-5.0);
    h.record_ms(f64::NAN);
    assert_eq!(h.count(), 1002);
  }

  #[test]
  fn ids_are_reused_and_memory_returns_after_a_burst() {
    let mut c = core(1);
    let ids: Vec<_> = (0..5000)
      .map(|_| c.submit(TaskOptions::default(), 0.0).unwrap())
      .collect();
    assert_eq!(c.slots(), 5000);
    let mut current = ids[0].id;
    loop {
      c.finish(current, true, 0.0);
      match c.take_started().first() {
        Some(&next) => current = next,
        None => break,
      }
    }
    assert_eq!(c.slots(), 0);
    let again = c.submit(TaskOptions::default(), 0.0).unwrap();
    assert_eq!(again.id, 0);
  }

  #[test]
  fn bad_config_is_refused_with_the_option_named() {
    let err = LimiterCore::new(Config {
      concurrency: 0,
      ..Config::default()
    })
    .unwrap_err();
    assert!(err.message.contains("options.concurrency"));
    let err = LimiterCore::new(Config {
      rate: Some(Rate {
        limit: 1,
        interval_ms: 0.0,
      }),
      ..Config::default()
    })
    .unwrap_err();
    assert!(err.message.contains("options.rate.interval"));
  }

  #[test]
  fn queue_timeout_expires_a_task_that_still_waits() {
    let mut core = LimiterCore::new(Config::default()).unwrap();
    let running = core.submit(TaskOptions::default(), 0.0).unwrap();
    let waiting = core
      .submit(
        TaskOptions {
          queue_timeout_ms: Some(10.0),
          ..TaskOptions::default()
        },
        0.0,
      )
      .unwrap();
    assert!(!waiting.started);
    assert_eq!(core.next_wake(), Some(10.0));
    assert!(core.expire(9.0).is_empty());
    assert_eq!(
      core.expire(10.0),
      vec![Expired {
        id: waiting.id,
        was_waiting: true
      }]
    );
    assert_eq!(core.pending(), 0);
    core.finish(running.id, true, 11.0);
    assert_eq!(core.stats().timed_out, 1);
  }

  #[test]
  fn queue_timeout_ends_when_the_task_starts() {
    let mut core = LimiterCore::new(Config::default()).unwrap();
    let first = core.submit(TaskOptions::default(), 0.0).unwrap();
    let second = core
      .submit(
        TaskOptions {
          queue_timeout_ms: Some(10.0),
          timeout_ms: Some(100.0),
          ..TaskOptions::default()
        },
        0.0,
      )
      .unwrap();
    core.finish(first.id, true, 5.0);
    assert_eq!(core.take_started(), vec![second.id]);
    // Its queue-wait deadline passed while it runs: nothing expires.
    assert!(core.expire(50.0).is_empty());
    // Its own timeout still holds.
    assert_eq!(
      core.expire(100.0),
      vec![Expired {
        id: second.id,
        was_waiting: false
      }]
    );
    core.finish(second.id, false, 101.0);
    assert_eq!(core.active(), 0);
  }

  #[test]
  fn a_later_timeout_than_queue_timeout_keeps_one_live_entry_after_start() {
    let mut core = LimiterCore::new(Config::default()).unwrap();
    let first = core.submit(TaskOptions::default(), 0.0).unwrap();
    let second = core
      .submit(
        TaskOptions {
          queue_timeout_ms: Some(50.0),
          timeout_ms: Some(20.0),
          ..TaskOptions::default()
        },
        0.0,
      )
      .unwrap();
    // The own timeout is earlier: it alone governs.
    assert_eq!(
      core.expire(20.0),
      vec![Expired {
        id: second.id,
        was_waiting: true
      }]
    );
    assert!(core.expire(60.0).is_empty());
    core.finish(first.id, true, 61.0);
    assert_eq!(core.next_wake(), None);
  }
}
