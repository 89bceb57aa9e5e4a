//! Model-based test of the `WorkerPool` core (`bulkhead::pool::Pool`).
//!
//! Random operation sequences (submits, workers attaching, taking and
//! completing tasks, aborts, worker exits, clock steps and timer runs,
//! drains, close, destroy) run against the core and against a reference made
//! of a FIFO queue, per-worker running counts and a plain list of deadlines,
//! with a manual clock. After every step they must agree on which task each
//! worker gets (FIFO), on every delivered completion (in order) and on the
//! counters. Invariants: no worker runs more than `concurrency` tasks; never
//! more than `maxThreads` workers; queued tasks are never stranded (a worker
//! is starting, has room, or the pool is at `maxThreads`); after a timer run
//! no task is still queued or running past its deadline; every accepted task
//! settles exactly once (by `cancel` or by one completion), checked again
//! after a final `destroy`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bulkhead::clock::{Clock, ManualClock};
use bulkhead::error::{Error, ErrorCode};
use bulkhead::pool::{Notify, Outcome, Pool, PoolConfig, SubmitOptions, TaskId, WorkerId};
use proptest::prelude::*;

struct Nobody;
impl Notify for Nobody {
  fn notify(&self) {}
}

#[derive(Clone, Debug)]
enum Op {
  Submit {
    queue_timeout: Option<u8>,
    run_timeout: Option<u8>,
  },
  /// The `pick`-th starting worker attaches.
  Attach {
    pick: usize,
  },
  /// The `pick`-th worker asks for a task.
  Take {
    pick: usize,
  },
  /// The `pick`-th task held by a worker returns (`ok`) or throws.
  Complete {
    pick: usize,
    ok: bool,
  },
  /// The caller of the `pick`-th live task aborts it.
  Cancel {
    pick: usize,
  },
  /// The `pick`-th worker reads its inbox.
  Poll {
    pick: usize,
  },
  /// The `pick`-th worker exits.
  Exit {
    pick: usize,
  },
  Advance {
    by: u8,
  },
  Expire,
  Drain {
    max: u8,
  },
  Close,
  Destroy,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    8 => (proptest::option::weighted(0.3, 1u8..30), proptest::option::weighted(0.3, 1u8..30))
      .prop_map(|(queue_timeout, run_timeout)| Op::Submit { queue_timeout, run_timeout }),
    3 => any::<usize>().prop_map(|pick| Op::Attach { pick }),
    6 => any::<usize>().prop_map(|pick| Op::Take { pick }),
    6 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::Complete { pick, ok }),
    2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
    1 => any::<usize>().prop_map(|pick| Op::Poll { pick }),
    1 => any::<usize>().prop_map(|pick| Op::Exit { pick }),
    3 => (1u8..12).prop_map(|by| Op::Advance { by }),
    3 => Just(Op::Expire),
    2 => (1u8..6).prop_map(|max| Op::Drain { max }),
    1 => Just(Op::Close),
    1 => Just(Op::Destroy),
  ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TState {
  Queued,
  Running(WorkerId),
  /// Settled for the caller, still occupying its worker.
  Abandoned(WorkerId),
}

#[derive(Clone, Copy, Debug)]
struct MTask {
  state: TState,
  run_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WState {
  Starting,
  Ready,
  Retiring,
}

#[derive(Clone, Debug)]
struct MWorker {
  state: WState,
  aborts: Vec<TaskId>,
}

/// Same order as the core's timer heap: time, then kind, then ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
  Queue(TaskId),
  Run(TaskId),
  Grace(WorkerId, TaskId),
}

/// How a completion ended, without its bytes' identity.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Done {
  Value(Vec<u8>),
  Threw(Vec<u8>),
  Failed(ErrorCode),
}

#[derive(Default)]
struct Model {
  open: bool,
  destroyed: bool,
  queue: VecDeque<TaskId>,
  tasks: BTreeMap<TaskId, MTask>,
  workers: BTreeMap<WorkerId, MWorker>,
  deadlines: Vec<(Duration, Due)>,
  outbox: VecDeque<(TaskId, Done)>,
  terminate: BTreeSet<WorkerId>,
  /// How each accepted task was settled for its caller (exactly once).
  settled: BTreeMap<TaskId, &'static str>,
  submitted: u64,
  completed: u64,
  failed: u64,
  rejected: u64,
  timed_out: u64,
  aborted: u64,
  worker_exits: u64,
}

impl Model {
  fn running_on(&self, w: WorkerId) -> usize {
    self
      .tasks
      .values()
      .filter(|t| matches!(t.state, TState::Running(x) | TState::Abandoned(x) if x == w))
      .count()
  }

  fn settle(&mut self, id: TaskId, how: &'static str) -> Result<(), TestCaseError> {
    let before = self.settled.insert(id, how);
    prop_assert!(
      before.is_none(),
      "task {} settled twice ({:?}, then {})",
      id,
      before,
      how
    );
    Ok(())
  }

  fn complete(&mut self, id: TaskId, done: Done) -> Result<(), TestCaseError> {
    self.settle(id, "completion")?;
    self.outbox.push_back((id, done));
    Ok(())
  }

  fn take(&mut self, w: WorkerId, cfg: &PoolConfig, now: Duration) -> Option<TaskId> {
    let ready = self
      .workers
      .get(&w)
      .is_some_and(|x| x.state == WState::Ready);
    if !ready || self.running_on(w) >= cfg.concurrency {
      return None;
    }
    let id = self.queue.pop_front()?;
    let t = self.tasks.get_mut(&id).unwrap();
    t.state = TState::Running(w);
    if let Some(rt) = t.run_timeout {
      self.deadlines.push((now + rt, Due::Run(id)));
    }
    Some(id)
  }

  /// Takes task `id` from its caller; `true` if the caller settles it now.
  fn cancel(&mut self, id: TaskId, code: ErrorCode, now: Duration, cfg: &PoolConfig) -> bool {
    let Some(t) = self.tasks.get(&id).copied() else {
      return false;
    };
    match t.state {
      TState::Queued => {
        self.tasks.remove(&id);
        self.queue.retain(|&q| q != id);
      }
      TState::Running(w) => {
        self.tasks.get_mut(&id).unwrap().state = TState::Abandoned(w);
        if let Some(x) = self.workers.get_mut(&w) {
          x.aborts.push(id);
        }
        self
          .deadlines
          .push((now + cfg.abort_grace, Due::Grace(w, id)));
      }
      TState::Abandoned(_) => return false,
    }
    match code {
      ErrorCode::Timeout => self.timed_out += 1,
      ErrorCode::Aborted => self.aborted += 1,
      _ => {}
    }
    true
  }

  fn retire(&mut self, w: WorkerId) {
    if let Some(x) = self.workers.get_mut(&w) {
      if matches!(x.state, WState::Ready | WState::Starting) {
        x.state = WState::Retiring;
        self.terminate.insert(w);
      }
    }
  }

  fn add_workers(&mut self, ids: &[WorkerId]) -> Result<(), TestCaseError> {
    for &w in ids {
      prop_assert!(
        !self.workers.contains_key(&w),
        "worker id {} handed out twice",
        w
      );
      self.workers.insert(
        w,
        MWorker {
          state: WState::Starting,
          aborts: Vec::new(),
        },
      );
    }
    Ok(())
  }

  fn live_workers(&self) -> usize {
    self
      .workers
      .values()
      .filter(|w| matches!(w.state, WState::Starting | WState::Ready))
      .count()
  }
}

fn done(o: &Outcome) -> Done {
  match o {
    Outcome::Value(b) => Done::Value(b.clone()),
    Outcome::Threw(b) => Done::Threw(b.clone()),
    Outcome::Failed(e) => Done::Failed(e.code),
  }
}

fn check(pool: &Pool, m: &Model, cfg: &PoolConfig) -> Result<(), TestCaseError> {
  let s = pool.stats();
  let queued = m.queue.len();
  prop_assert_eq!(s.queued, queued, "queued");
  prop_assert_eq!(pool.queue_size(), queued);
  prop_assert_eq!(
    s.running,
    m.tasks.len() - queued,
    "running (abandoned included)"
  );
  prop_assert_eq!(s.workers, m.live_workers(), "live workers");
  prop_assert_eq!(
    (
      s.submitted,
      s.completed,
      s.failed,
      s.rejected,
      s.timed_out,
      s.aborted,
      s.worker_exits
    ),
    (
      m.submitted,
      m.completed,
      m.failed,
      m.rejected,
      m.timed_out,
      m.aborted,
      m.worker_exits
    ),
    "stats (submitted, completed, failed, rejected, timed_out, aborted, worker_exits)"
  );
  prop_assert!(
    m.workers.len() <= cfg.max_threads,
    "more than maxThreads workers"
  );
  for &w in m.workers.keys() {
    prop_assert!(
      m.running_on(w) <= cfg.concurrency,
      "worker {} runs more than concurrency",
      w
    );
  }
  if m.open && queued > 0 {
    let room = m.workers.values().any(|w| w.state == WState::Starting)
      || m
        .workers
        .iter()
        .any(|(&id, w)| w.state == WState::Ready && m.running_on(id) < cfg.concurrency)
      || m.workers.len() == cfg.max_threads;
    prop_assert!(
      room,
      "queued tasks stranded: no worker starting or free, and room to grow"
    );
  }
  Ok(())
}

fn run(cfg: PoolConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
  let clock = Arc::new(ManualClock::new());
  let pool = Pool::new(cfg.clone(), clock.clone()).unwrap();
  let mut m = Model {
    open: true,
    ..Model::default()
  };
  m.add_workers(&pool.start())?;
  let mut next_id: TaskId = 1;
  for op in ops {
    let now = clock.now();
    match op {
      Op::Submit {
        queue_timeout,
        run_timeout,
      } => {
        let id = next_id;
        next_id += 1;
        let opts = SubmitOptions {
          module: 0,
          queue_timeout: queue_timeout.map(|t| Duration::from_millis(t.into())),
          run_timeout: run_timeout.map(|t| Duration::from_millis(t.into())),
        };
        let got = pool.submit(id, id.to_le_bytes().to_vec(), opts);
        if !m.open {
          prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::Closed));
          continue;
        }
        let free: usize = m
          .workers
          .iter()
          .filter(|(_, w)| matches!(w.state, WState::Ready | WState::Starting))
          .map(|(&w, _)| cfg.concurrency.saturating_sub(m.running_on(w)))
          .sum();
        let capacity = free + cfg.max_threads.saturating_sub(m.workers.len()) * cfg.concurrency;
        let queued = m.queue.len();
        if queued >= capacity && queued - capacity >= cfg.max_queue {
          prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::QueueFull));
          m.rejected += 1;
          continue;
        }
        prop_assert!(got.is_ok(), "submit refused: {:?}", got);
        m.add_workers(&got.unwrap())?;
        m.submitted += 1;
        m.queue.push_back(id);
        m.tasks.insert(
          id,
          MTask {
            state: TState::Queued,
            run_timeout: opts.run_timeout,
          },
        );
        if let Some(t) = opts.queue_timeout {
          m.deadlines.push((now + t, Due::Queue(id)));
        }
        // A second submit with a live id is refused.
        let again = pool.submit(id, vec![], SubmitOptions::default());
        prop_assert_eq!(again.map_err(|e| e.code), Err(ErrorCode::InvalidArg));
      }
      Op::Attach { pick } => {
        // Mostly starting workers; any worker once in a while (refused).
        let mut cands: Vec<WorkerId> = m
          .workers
          .iter()
          .filter(|(_, w)| w.state == WState::Starting)
          .map(|(&id, _)| id)
          .collect();
        if cands.is_empty() || pick.is_multiple_of(8) {
          cands = m.workers.keys().copied().collect();
        }
        if cands.is_empty() {
          continue;
        }
        let w = cands[pick % cands.len()];
        let got = pool.attach(w, Arc::new(Nobody));
        if m.destroyed || m.workers[&w].state != WState::Starting {
          prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::Closed));
        } else {
          prop_assert!(got.is_ok());
          m.workers.get_mut(&w).unwrap().state = WState::Ready;
        }
      }
      Op::Take { pick } => {
        if m.workers.is_empty() {
          continue;
        }
        let ids: Vec<WorkerId> = m.workers.keys().copied().collect();
        let w = ids[pick % ids.len()];
        let got = pool.take(w);
        let want = m.take(w, &cfg, now);
        prop_assert_eq!(
          got.as_ref().map(|t| t.id),
          want,
          "task taken by worker {}",
          w
        );
        if let Some(t) = got {
          prop_assert_eq!(
            t.payload.bytes,
            t.id.to_le_bytes().to_vec(),
            "payload of task {}",
            t.id
          );
        }
      }
      Op::Complete { pick, ok } => {
        let held: Vec<(TaskId, WorkerId)> = m
          .tasks
          .iter()
          .filter_map(|(&id, t)| match t.state {
            TState::Running(w) | TState::Abandoned(w) => Some((id, w)),
            TState::Queued => None,
          })
          .collect();
        if held.is_empty() {
          continue;
        }
        let (id, w) = held[pick % held.len()];
        let bytes = format!("r{id}").into_bytes();
        let result = if ok {
          Ok(bytes.clone())
        } else {
          Err(bytes.clone())
        };
        let got = pool.complete(w, id, result);
        let t = m.tasks.remove(&id).unwrap();
        if matches!(t.state, TState::Running(_)) {
          m.completed += 1;
          if ok {
            m.complete(id, Done::Value(bytes))?;
          } else {
            m.failed += 1;
            m.complete(id, Done::Threw(bytes))?;
          }
        }
        let want = m.take(w, &cfg, now);
        prop_assert_eq!(
          got.map(|t| t.id),
          want,
          "next task handed to worker {} with its result",
          w
        );
        // A result for a task the worker no longer holds is ignored (the
        // call still hands out a queued task if the worker has room).
        let before = pool.stats();
        let again = pool.complete(w, id, Ok(vec![]));
        let want = m.take(w, &cfg, now);
        prop_assert_eq!(again.map(|t| t.id), want, "next task after a stale result");
        prop_assert_eq!(
          pool.stats().completed,
          before.completed,
          "a stale result counted"
        );
      }
      Op::Cancel { pick } => {
        if m.tasks.is_empty() {
          continue;
        }
        let ids: Vec<TaskId> = m.tasks.keys().copied().collect();
        let id = ids[pick % ids.len()];
        let got = pool.cancel(id, &Error::new(ErrorCode::Aborted, "aborted"));
        let want = m.cancel(id, ErrorCode::Aborted, now, &cfg);
        prop_assert_eq!(got, want, "cancel of task {}", id);
        if want {
          m.settle(id, "cancel")?;
        }
      }
      Op::Poll { pick } => {
        if m.workers.is_empty() {
          continue;
        }
        let ids: Vec<WorkerId> = m.workers.keys().copied().collect();
        let w = ids[pick % ids.len()];
        let got = pool.poll(w);
        let want = std::mem::take(&mut m.workers.get_mut(&w).unwrap().aborts);
        prop_assert_eq!(got.aborts, want, "aborts in the inbox of worker {}", w);
      }
      Op::Exit { pick } => {
        if m.workers.is_empty() {
          continue;
        }
        let ids: Vec<WorkerId> = m.workers.keys().copied().collect();
        let w = ids[pick % ids.len()];
        let reason = Error::new(ErrorCode::WorkerExited, "gone");
        let respawn = pool.worker_exited(w, &reason);
        let slot = m.workers.remove(&w).unwrap();
        let expected = slot.state == WState::Retiring || !m.open;
        let held: Vec<TaskId> = m
          .tasks
          .iter()
          .filter(|(_, t)| matches!(t.state, TState::Running(x) | TState::Abandoned(x) if x == w))
          .map(|(&id, _)| id)
          .collect();
        // The core walks a hash map here: the order of these is not specified.
        let mut exited = Vec::new();
        for id in held {
          let t = m.tasks.remove(&id).unwrap();
          if matches!(t.state, TState::Running(_)) {
            m.worker_exits += 1;
            m.settle(id, "completion")?;
            exited.push(id);
          }
        }
        exited.sort_unstable();
        let mut batch_tail: Vec<(TaskId, Done)> = exited
          .iter()
          .map(|&id| (id, Done::Failed(ErrorCode::WorkerExited)))
          .collect();
        if !expected && slot.state == WState::Starting {
          // Failed during start-up: the whole queue fails (in queue order).
          for id in std::mem::take(&mut m.queue) {
            m.tasks.remove(&id);
            m.worker_exits += 1;
            m.settle(id, "completion")?;
            batch_tail.push((id, Done::Failed(ErrorCode::WorkerExited)));
          }
        }
        // Compare the running ones as a set (hash order), then keep model order.
        let mut core_batch = pool.drain(usize::MAX);
        let prior: Vec<(TaskId, Done)> = m.outbox.drain(..).collect();
        let got: Vec<(TaskId, Done)> = core_batch
          .completions
          .drain(..)
          .map(|c| (c.id, done(&c.outcome)))
          .collect();
        prop_assert_eq!(
          &got[..prior.len().min(got.len())],
          &prior[..],
          "completions before the exit"
        );
        let mut rest: Vec<(TaskId, Done)> = got[prior.len().min(got.len())..].to_vec();
        let n = exited.len().min(rest.len());
        rest[..n].sort_by_key(|c| c.0);
        prop_assert_eq!(rest, batch_tail, "completions of the exit");
        let term: BTreeSet<WorkerId> = core_batch.terminate.into_iter().collect();
        prop_assert_eq!(
          term,
          std::mem::take(&mut m.terminate),
          "workers to terminate"
        );
        prop_assert!(respawn.workers.len() + m.workers.len() <= cfg.max_threads);
        m.add_workers(&respawn.workers)?;
      }
      Op::Advance { by } => clock.advance(Duration::from_millis(by.into())),
      Op::Expire => {
        let next = pool.expire();
        prop_assert!(
          next.is_none_or(|d| d > now),
          "the timer left a due deadline ({:?} at {:?})",
          next,
          now
        );
        while let Some(i) = (0..m.deadlines.len())
          .filter(|&i| m.deadlines[i].0 <= now)
          .min_by_key(|&i| m.deadlines[i])
        {
          let (_, due) = m.deadlines.remove(i);
          match due {
            Due::Queue(id) => {
              if m.tasks.get(&id).is_some_and(|t| t.state == TState::Queued) {
                m.cancel(id, ErrorCode::Timeout, now, &cfg);
                m.complete(id, Done::Failed(ErrorCode::Timeout))?;
              }
            }
            Due::Run(id) => {
              if m
                .tasks
                .get(&id)
                .is_some_and(|t| matches!(t.state, TState::Running(_)))
              {
                m.cancel(id, ErrorCode::Timeout, now, &cfg);
                m.complete(id, Done::Failed(ErrorCode::Timeout))?;
              }
            }
            Due::Grace(w, id) => {
              if m
                .tasks
                .get(&id)
                .is_some_and(|t| t.state == TState::Abandoned(w))
              {
                m.retire(w);
              }
            }
          }
        }
      }
      Op::Drain { max } => {
        let batch = pool.drain(max.into());
        let n = usize::from(max).min(m.outbox.len());
        let want: Vec<(TaskId, Done)> = m.outbox.drain(..n).collect();
        let got: Vec<(TaskId, Done)> = batch
          .completions
          .iter()
          .map(|c| (c.id, done(&c.outcome)))
          .collect();
        prop_assert_eq!(got, want, "drained completions, oldest first");
        prop_assert_eq!(batch.more, !m.outbox.is_empty());
        let term: BTreeSet<WorkerId> = batch.terminate.into_iter().collect();
        prop_assert_eq!(
          term,
          std::mem::take(&mut m.terminate),
          "workers to terminate"
        );
      }
      Op::Close => {
        pool.close();
        m.open = false;
      }
      Op::Destroy => {
        destroy(&pool, &mut m)?;
      }
    }
    check(&pool, &m, &cfg)?;
  }
  // Final reconciliation: destroy settles whatever is left; every accepted
  // task was settled exactly once.
  destroy(&pool, &mut m)?;
  for (id, t) in &m.tasks {
    prop_assert!(
      matches!(t.state, TState::Abandoned(_)),
      "task {} still pending after destroy",
      id
    );
  }
  prop_assert_eq!(
    m.settled.len() as u64,
    m.submitted,
    "settled tasks != accepted tasks"
  );
  Ok(())
}

fn destroy(pool: &Pool, m: &mut Model) -> Result<(), TestCaseError> {
  let workers = pool.destroy();
  let known: BTreeSet<WorkerId> = m.workers.keys().copied().collect();
  prop_assert_eq!(
    workers.into_iter().collect::<BTreeSet<_>>(),
    known,
    "workers to terminate on destroy"
  );
  let mut closed = Vec::new();
  let ids: Vec<TaskId> = m.tasks.keys().copied().collect();
  for id in ids {
    let t = m.tasks.get(&id).copied().unwrap();
    match t.state {
      TState::Queued => {
        m.tasks.remove(&id);
        closed.push(id);
      }
      TState::Running(w) => {
        m.tasks.get_mut(&id).unwrap().state = TState::Abandoned(w);
        closed.push(id);
      }
      TState::Abandoned(_) => {}
    }
  }
  m.queue.clear();
  m.deadlines.clear();
  for w in m.workers.values_mut() {
    w.state = WState::Retiring;
  }
  m.open = false;
  m.destroyed = true;
  // Earlier completions in order, then the destroyed ones (hash order: as a set).
  let batch = pool.drain(usize::MAX);
  let got: Vec<(TaskId, Done)> = batch
    .completions
    .iter()
    .map(|c| (c.id, done(&c.outcome)))
    .collect();
  let prior: Vec<(TaskId, Done)> = m.outbox.drain(..).collect();
  prop_assert!(got.len() >= prior.len());
  prop_assert_eq!(
    &got[..prior.len()],
    &prior[..],
    "completions before destroy"
  );
  let mut rest: Vec<(TaskId, Done)> = got[prior.len()..].to_vec();
  rest.sort_by_key(|c| c.0);
  closed.sort_unstable();
  let want: Vec<(TaskId, Done)> = closed
    .iter()
    .map(|&id| (id, Done::Failed(ErrorCode::Closed)))
    .collect();
  prop_assert_eq!(rest, want, "tasks failed by destroy");
  for id in closed {
    m.settle(id, "destroy")?;
  }
  let term: BTreeSet<WorkerId> = batch.terminate.into_iter().collect();
  prop_assert_eq!(
    term,
    std::mem::take(&mut m.terminate),
    "workers to terminate"
  );
  Ok(())
}

fn config() -> impl Strategy<Value = PoolConfig> {
  (
    0usize..3,
    1usize..4,
    prop_oneof![Just(usize::MAX), 0usize..4],
    1usize..3,
    0u8..20,
  )
    .prop_map(|(min, extra, max_queue, concurrency, grace)| PoolConfig {
      min_threads: min,
      max_threads: (min + extra).max(1),
      max_queue,
      concurrency,
      // Idle retirement is left out of this model: it never fires here.
      idle_timeout: Duration::from_secs(1 << 30),
      abort_grace: Duration::from_millis(grace.into()),
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
  fn pool_matches_a_fifo_model(cfg in config(), ops in proptest::collection::vec(op(), 1..150)) {
    run(cfg, ops)?;
  }
}
