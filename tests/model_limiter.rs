//! Model-based test of the `Limiter` core (`bulkhead::limiter::LimiterCore`).
//!
//! Random operation sequences run against the core and against a reference
//! made of counters and a plain priority list (higher priority first, FIFO
//! within a priority, no overtaking of the head), with a manual clock. After
//! every step they must agree on which tasks started (in order), which
//! waited, which timed out, and on the counters; permits are never exceeded
//! when a task starts and never lost (`permits_in_use` is the sum of the
//! running weights); every submitted task ends exactly once; the rate limit
//! holds over every window; no task outlives its deadline past an `expire`,
//! and the wake-up time is never later than the next deadline.

use bulkhead::error::ErrorCode;
use bulkhead::limiter::{Cancel, Config, LimiterCore, Rate, TaskOptions, UNLIMITED};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
  Submit {
    weight: u64,
    priority: i32,
    timeout: Option<u8>,
  },
  /// The `pick`-th running task's function settles.
  Finish {
    pick: usize,
    ok: bool,
  },
  /// The `pick`-th live task's signal fires.
  Abort {
    pick: usize,
  },
  Advance {
    by: u8,
  },
  Expire,
  Poll,
  Pause,
  Resume,
  SetConcurrency {
    to: u64,
  },
  Clear,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    8 => (0u64..5, -1i32..2, proptest::option::weighted(0.4, 0u8..40))
      .prop_map(|(weight, priority, timeout)| Op::Submit { weight, priority, timeout }),
    5 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::Finish { pick, ok }),
    2 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
    4 => (1u8..15).prop_map(|by| Op::Advance { by }),
    3 => Just(Op::Expire),
    2 => Just(Op::Poll),
    1 => Just(Op::Pause),
    2 => Just(Op::Resume),
    1 => (1u64..6).prop_map(|to| Op::SetConcurrency { to }),
    1 => Just(Op::Clear),
  ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
  Waiting { seq: u64 },
  Running { cancelled: bool },
}

#[derive(Clone, Copy, Debug)]
struct Task {
  id: u32,
  weight: u64,
  priority: i32,
  /// Finite deadline not yet consumed by an expiry.
  deadline: Option<f64>,
  state: St,
}

#[derive(Default)]
struct Model {
  config: Option<Config>,
  paused: bool,
  tasks: Vec<Task>,
  seq: u64,
  starts: Vec<f64>,
  started: Vec<u32>,
  completed: u64,
  rejected: u64,
  timed_out: u64,
  aborted: u64,
  queue_full: u64,
}

impl Model {
  fn cfg(&self) -> Config {
    self.config.unwrap()
  }

  fn in_use(&self) -> u64 {
    self
      .tasks
      .iter()
      .filter(|t| matches!(t.state, St::Running { .. }))
      .map(|t| t.weight)
      .sum()
  }

  fn fits(&self, weight: u64) -> bool {
    let c = self.cfg().concurrency;
    c == UNLIMITED || self.in_use() + weight <= c
  }

  fn rate_allows(&self, now: f64) -> bool {
    match self.cfg().rate {
      None => true,
      Some(r) => {
        self
          .starts
          .iter()
          .filter(|&&t| now - t < r.interval_ms)
          .count()
          < r.limit as usize
      }
    }
  }

  /// Waiting tasks, head first.
  fn queue(&self) -> Vec<usize> {
    let mut q: Vec<(i32, u64, usize)> = self
      .tasks
      .iter()
      .enumerate()
      .filter_map(|(i, t)| match t.state {
        St::Waiting { seq } => Some((-t.priority, seq, i)),
        _ => None,
      })
      .collect();
    q.sort_unstable();
    q.into_iter().map(|(_, _, i)| i).collect()
  }

  fn start(&mut self, i: usize, now: f64) {
    self.tasks[i].state = St::Running { cancelled: false };
    if self.cfg().rate.is_some() {
      self.starts.push(now);
    }
  }

  fn drain(&mut self, now: f64) {
    if self.paused {
      return;
    }
    while let Some(&i) = self.queue().first() {
      if !self.fits(self.tasks[i].weight) || !self.rate_allows(now) {
        break;
      }
      self.start(i, now);
      self.started.push(self.tasks[i].id);
    }
  }

  fn find(&self, id: u32) -> usize {
    self
      .tasks
      .iter()
      .position(|t| t.id == id)
      .expect("id in model")
  }

  fn count(&mut self, why: Cancel) {
    match why {
      Cancel::Aborted => self.aborted += 1,
      Cancel::TimedOut => self.timed_out += 1,
    }
  }

  /// Returns whether the task was waiting (and is gone).
  fn cancel(&mut self, i: usize, why: Cancel, now: f64) -> bool {
    match self.tasks[i].state {
      St::Waiting { .. } => {
        self.count(why);
        self.tasks.remove(i);
        self.drain(now);
        true
      }
      St::Running { cancelled } => {
        if !cancelled {
          self.count(why);
          self.tasks[i].state = St::Running { cancelled: true };
        }
        false
      }
    }
  }
}

fn check(core: &LimiterCore, m: &Model) -> Result<(), TestCaseError> {
  let s = core.stats();
  let running = m
    .tasks
    .iter()
    .filter(|t| matches!(t.state, St::Running { .. }))
    .count() as u64;
  prop_assert_eq!(s.active, running, "active");
  prop_assert_eq!(core.active(), running);
  prop_assert_eq!(s.pending, m.queue().len() as u64, "pending");
  prop_assert_eq!(core.pending(), m.queue().len() as u64);
  prop_assert_eq!(
    s.permits_in_use,
    m.in_use(),
    "permits in use = sum of running weights"
  );
  prop_assert_eq!(
    (
      s.completed,
      s.rejected,
      s.timed_out,
      s.aborted,
      s.queue_full
    ),
    (
      m.completed,
      m.rejected,
      m.timed_out,
      m.aborted,
      m.queue_full
    ),
    "(completed, rejected, timed_out, aborted, queue_full)"
  );
  prop_assert_eq!(core.is_paused(), m.paused);
  let cfg = m.cfg();
  prop_assert!(
    m.queue().len() as u64 <= cfg.max_pending,
    "queue bound exceeded"
  );
  if let Some(r) = cfg.rate {
    // No window of `interval` holds more than `limit` starts.
    for &t in &m.starts {
      let n = m
        .starts
        .iter()
        .filter(|&&u| u >= t && u - t < r.interval_ms)
        .count();
      prop_assert!(
        n <= r.limit as usize,
        "rate exceeded in the window from {}",
        t
      );
    }
  }
  // Every live deadline is honoured: the wake-up comes no later.
  let earliest = m
    .tasks
    .iter()
    .filter_map(|t| t.deadline)
    .min_by(|a, b| a.partial_cmp(b).unwrap());
  if let Some(d) = earliest {
    let wake = core.next_wake();
    prop_assert!(
      wake.is_some_and(|w| w <= d),
      "wake {:?} later than deadline {}",
      wake,
      d
    );
  }
  // Each live task has its own id.
  let mut ids: Vec<u32> = m.tasks.iter().map(|t| t.id).collect();
  ids.sort_unstable();
  ids.dedup();
  prop_assert_eq!(ids.len(), m.tasks.len(), "an id handed out twice");
  Ok(())
}

fn run(config: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
  let mut core = LimiterCore::new(config).unwrap();
  let mut m = Model {
    config: Some(config),
    ..Model::default()
  };
  let mut now = 0.0;
  let mut peak = 0usize;
  for op in ops {
    match op {
      Op::Submit {
        weight,
        priority,
        timeout,
      } => {
        let opts = TaskOptions {
          weight,
          priority,
          timeout_ms: timeout.map(f64::from),
          queue_timeout_ms: None,
        };
        let got = core.submit(opts, now);
        let cfg = m.cfg();
        if weight == 0 || weight > cfg.concurrency {
          prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::InvalidArg));
          continue;
        }
        let can_start = !m.paused && m.queue().is_empty() && m.fits(weight) && m.rate_allows(now);
        if !can_start && m.queue().len() as u64 >= cfg.max_pending {
          prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::QueueFull));
          m.queue_full += 1;
          continue;
        }
        prop_assert!(got.is_ok(), "submit refused: {:?}", got);
        let got = got.unwrap();
        prop_assert_eq!(got.started, can_start, "started at once");
        prop_assert!(
          m.tasks.iter().all(|t| t.id != got.id),
          "live id {} handed out again",
          got.id
        );
        m.tasks.push(Task {
          id: got.id,
          weight,
          priority,
          deadline: timeout.map(|t| now + f64::from(t)),
          state: St::Waiting { seq: m.seq },
        });
        m.seq += 1;
        if can_start {
          let i = m.tasks.len() - 1;
          m.start(i, now);
        }
      }
      Op::Finish { pick, ok } => {
        let running: Vec<usize> = (0..m.tasks.len())
          .filter(|&i| matches!(m.tasks[i].state, St::Running { .. }))
          .collect();
        if running.is_empty() {
          continue;
        }
        let i = running[pick % running.len()];
        let t = m.tasks[i];
        core.finish(t.id, ok, now);
        if t.state == (St::Running { cancelled: false }) {
          if ok {
            m.completed += 1;
          } else {
            m.rejected += 1;
          }
        }
        m.tasks.remove(i);
        m.drain(now);
        // A finished id is unknown now: finishing it again changes nothing.
        let before = core.stats();
        core.finish(t.id, ok, now);
        prop_assert_eq!(core.stats(), before, "a second finish counted");
      }
      Op::Abort { pick } => {
        if m.tasks.is_empty() {
          continue;
        }
        let i = pick % m.tasks.len();
        let id = m.tasks[i].id;
        let got = core.cancel(id, Cancel::Aborted, now);
        let want = m.cancel(i, Cancel::Aborted, now);
        prop_assert_eq!(got, want, "cancel result");
      }
      Op::Advance { by } => now += f64::from(by),
      Op::Expire => {
        let got = core.expire(now);
        let mut due: Vec<(f64, u32)> = m
          .tasks
          .iter()
          .filter_map(|t| t.deadline.filter(|&d| d <= now).map(|d| (d, t.id)))
          .collect();
        due.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut want = Vec::new();
        for (_, id) in due {
          // Only waiting tasks leave here, each on its own turn, so every
          // due id is still live when its turn comes.
          let i = m.find(id);
          m.tasks[i].deadline = None;
          match m.tasks[i].state {
            St::Running { cancelled: true } => {}
            _ => {
              let was_waiting = m.cancel(i, Cancel::TimedOut, now);
              want.push((id, was_waiting));
            }
          }
        }
        m.drain(now);
        let got: Vec<(u32, bool)> = got.iter().map(|e| (e.id, e.was_waiting)).collect();
        prop_assert_eq!(
          got,
          want,
          "expired tasks (id, was_waiting), in deadline order"
        );
        for t in &m.tasks {
          prop_assert!(
            t.deadline.is_none_or(|d| d > now),
            "task {} outlived its deadline",
            t.id
          );
        }
      }
      Op::Poll => {
        core.poll(now);
        m.drain(now);
      }
      Op::Pause => {
        core.pause();
        m.paused = true;
      }
      Op::Resume => {
        core.resume(now);
        m.paused = false;
        m.drain(now);
      }
      Op::SetConcurrency { to } => {
        core.set_concurrency(to, now).unwrap();
        if let Some(c) = m.config.as_mut() {
          c.concurrency = to;
        }
        m.drain(now);
      }
      Op::Clear => {
        let got = core.clear();
        let q = m.queue();
        let want: Vec<u32> = q.iter().map(|&i| m.tasks[i].id).collect();
        prop_assert_eq!(got, want, "cleared ids, in queue order");
        m.aborted += q.len() as u64;
        m.tasks.retain(|t| !matches!(t.state, St::Waiting { .. }));
      }
    }
    // Starts, in order, exactly as the model made them; each start fitted.
    let started = core.take_started();
    prop_assert_eq!(&started, &m.started, "started ids, in order");
    m.started.clear();
    let cfg = m.cfg();
    if cfg.concurrency != UNLIMITED && !started.is_empty() {
      prop_assert!(m.in_use() <= cfg.concurrency, "permits exceeded by a start");
    }
    peak = peak.max(m.tasks.len());
    prop_assert!(
      core.slots() <= peak.max(1),
      "slots {} beyond peak live tasks {}",
      core.slots(),
      peak
    );
    check(&core, &m)?;
  }
  // Final reconciliation: lift every limit, settle everything; nothing is lost.
  core.resume(now);
  core.set_concurrency(UNLIMITED, now).unwrap();
  for _ in 0..10_000 {
    now += 1e6; // past every deadline and rate window
    core.poll(now);
    for id in core.take_started() {
      let i = m.find(id);
      m.tasks[i].state = St::Running { cancelled: false };
    }
    let running: Vec<u32> = m
      .tasks
      .iter()
      .filter(|t| matches!(t.state, St::Running { .. }))
      .map(|t| t.id)
      .collect();
    if running.is_empty() && core.pending() == 0 {
      break;
    }
    for id in running {
      core.finish(id, true, now);
      m.tasks.remove(m.find(id));
    }
    for id in core.take_started() {
      let i = m.find(id);
      m.tasks[i].state = St::Running { cancelled: false };
    }
  }
  prop_assert!(m.tasks.is_empty(), "tasks never started: {:?}", m.tasks);
  let s = core.stats();
  prop_assert_eq!(
    (s.active, s.pending, s.permits_in_use),
    (0, 0, 0),
    "all permits back"
  );
  Ok(())
}

fn config() -> impl Strategy<Value = Config> {
  (
    prop_oneof![4 => 1u64..5, 1 => Just(UNLIMITED)],
    prop_oneof![Just(UNLIMITED), 0u64..5],
    proptest::option::weighted(0.3, (1u32..4, 5u8..30)),
  )
    .prop_map(|(concurrency, max_pending, rate)| Config {
      concurrency,
      max_pending,
      rate: rate.map(|(limit, interval)| Rate {
        limit,
        interval_ms: f64::from(interval),
      }),
    })
}

/// `cases` cases unless `PROPTEST_CASES` says otherwise.
fn cases(cases: u32) -> ProptestConfig {
  let cases = std::env::var("PROPTEST_CASES")
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(cases);
  ProptestConfig {
    cases,
    ..ProptestConfig::default()
  }
}

proptest! {
  #![proptest_config(cases(256))]

  #[test]
  fn limiter_matches_a_counter_and_priority_list_model(
    cfg in config(),
    ops in proptest::collection::vec(op(), 1..150),
  ) {
    run(cfg, ops)?;
  }
}
