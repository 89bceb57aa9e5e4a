//! Model-based tests of the `SingleFlight` cores
//! (`bulkhead::single_flight::{FlightTable, DeadlineQueue}`).
//!
//! Random operation sequences run against the core and against a plain map
//! model (key -> flight, plus the forgotten flights still running) with a
//! manual clock. After every step they must agree on every answer (lead or
//! join, errors, who ended and how, waiter counts, deadlines) and on the
//! counters; the `maxKeys` bound holds (forgotten flights included); ids are
//! never reused; and after `expire(now)` no live flight is past its deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead::error::ErrorCode;
use bulkhead::single_flight::{
  Begin, DeadlineEntry, DeadlineQueue, Ended, FlightId, FlightKey, FlightTable, Leave,
};
use proptest::prelude::*;

const KEYS: u8 = 5;

#[derive(Clone, Debug)]
enum Op {
  /// A call for `key`, with its own timeout or the table's, run inside the
  /// flights picked by `inside` (indices into every flight id seen so far).
  Begin {
    key: u8,
    timeout: Option<u8>,
    inside: Vec<usize>,
  },
  /// A caller of the `pick`-th live flight leaves (its signal fired).
  Leave {
    pick: usize,
  },
  /// The `pick`-th live flight settles.
  Settle {
    pick: usize,
    ok: bool,
  },
  /// A flight that already ended is reported again (settle, leave, abandon).
  Stale {
    pick: usize,
  },
  Forget {
    key: u8,
  },
  Abandon {
    pick: usize,
  },
  Advance {
    by: u8,
  },
  Expire,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    8 => (0..KEYS, proptest::option::of(0u8..30), proptest::collection::vec(any::<usize>(), 0..3))
      .prop_map(|(key, timeout, inside)| Op::Begin { key, timeout, inside }),
    2 => any::<usize>().prop_map(|pick| Op::Leave { pick }),
    3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::Settle { pick, ok }),
    1 => any::<usize>().prop_map(|pick| Op::Stale { pick }),
    1 => (0..KEYS).prop_map(|key| Op::Forget { key }),
    1 => any::<usize>().prop_map(|pick| Op::Abandon { pick }),
    3 => (1u8..12).prop_map(|by| Op::Advance { by }),
    2 => Just(Op::Expire),
  ]
}

#[derive(Clone, Debug)]
struct Flight {
  key: u8,
  mapped: bool,
  waiters: u32,
  calls: u32,
  deadline: Option<Duration>,
  /// Every flight this one was started inside, directly or through its parents.
  within: Vec<FlightId>,
}

#[derive(Default)]
struct Model {
  keys: BTreeMap<u8, FlightId>,
  flights: BTreeMap<FlightId, Flight>,
  flights_started: u64,
  calls: u64,
  shared: u64,
  timeouts: u64,
  aborts: u64,
  errors: u64,
}

impl Model {
  fn remove(&mut self, id: FlightId) -> Option<Ended> {
    let f = self.flights.remove(&id)?;
    if f.mapped {
      self.keys.remove(&f.key);
    }
    Some(Ended {
      id,
      waiters: f.waiters,
      shared: f.calls > 1,
    })
  }

  fn live(&self, pick: usize) -> Option<FlightId> {
    let ids: Vec<FlightId> = self.flights.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[pick % ids.len()])
  }
}

fn key(k: u8) -> FlightKey {
  if k.is_multiple_of(2) {
    FlightKey::string(format!("k{k}"))
  } else {
    FlightKey::number(f64::from(k))
  }
}

fn check(t: &mut FlightTable, m: &Model, max_keys: Option<usize>) -> Result<(), TestCaseError> {
  prop_assert_eq!(t.size(), m.keys.len(), "size (mapped keys)");
  prop_assert_eq!(t.live_flights(), m.flights.len(), "live flights");
  if let Some(max) = max_keys {
    prop_assert!(t.live_flights() <= max, "maxKeys exceeded");
  }
  for k in 0..KEYS {
    prop_assert_eq!(t.in_flight(&key(k)), m.keys.contains_key(&k));
    prop_assert_eq!(t.flight_of(&key(k)), m.keys.get(&k).copied());
  }
  for (&id, f) in &m.flights {
    prop_assert_eq!(t.waiters(id), f.waiters, "waiters of {:?}", id);
    prop_assert_eq!(t.deadline_of(id), f.deadline, "deadline of {:?}", id);
  }
  let next = m.flights.values().filter_map(|f| f.deadline).min();
  prop_assert_eq!(t.next_deadline(), next, "next deadline");
  let s = t.stats();
  prop_assert_eq!(
    (s.flights, s.calls, s.shared, s.timeouts, s.aborts, s.errors),
    (
      m.flights_started,
      m.calls,
      m.shared,
      m.timeouts,
      m.aborts,
      m.errors
    ),
    "stats (flights, calls, shared, timeouts, aborts, errors)"
  );
  Ok(())
}

fn run(max_keys: Option<usize>, default: Option<u8>, ops: Vec<Op>) -> Result<(), TestCaseError> {
  let default = default.map(|d| Duration::from_millis(d.into()));
  let mut t = FlightTable::new(max_keys, default);
  let mut m = Model::default();
  let mut now = Duration::ZERO;
  let mut seen: Vec<FlightId> = Vec::new();
  let mut ended: Vec<FlightId> = Vec::new();
  for op in ops {
    match op {
      Op::Begin {
        key: k,
        timeout,
        inside,
      } => {
        let inside: Vec<FlightId> = if seen.is_empty() {
          Vec::new()
        } else {
          inside.iter().map(|&i| seen[i % seen.len()]).collect()
        };
        let timeout = timeout.map(|t| Duration::from_millis(t.into()));
        let got = t.begin(key(k), now, timeout, &inside);
        if let Some(&id) = m.keys.get(&k) {
          let recursive = inside
            .iter()
            .any(|c| *c == id || m.flights.get(c).is_some_and(|f| f.within.contains(&id)));
          if recursive {
            prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::RecursiveFlight));
          } else {
            prop_assert_eq!(got.map_err(|e| e.code), Ok(Begin::Join(id)));
            let f = m.flights.get_mut(&id).unwrap();
            f.waiters += 1;
            f.calls += 1;
            m.calls += 1;
            m.shared += 1;
          }
        } else if max_keys.is_some_and(|max| m.flights.len() >= max) {
          prop_assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::QueueFull));
        } else {
          let got = got.map_err(|e| e.code);
          prop_assert!(
            matches!(got, Ok(Begin::Lead(_))),
            "expected a lead, got {:?}",
            got
          );
          let id = got.unwrap().id();
          prop_assert!(
            seen.iter().all(|&s| s < id),
            "flight id {:?} reused or not increasing",
            id
          );
          seen.push(id);
          let mut within = inside.clone();
          for p in &inside {
            if let Some(f) = m.flights.get(p) {
              within.extend_from_slice(&f.within);
            }
          }
          m.keys.insert(k, id);
          m.flights.insert(
            id,
            Flight {
              key: k,
              mapped: true,
              waiters: 1,
              calls: 1,
              deadline: timeout.or(default).map(|t| now + t),
              within,
            },
          );
          m.flights_started += 1;
          m.calls += 1;
        }
      }
      Op::Leave { pick } => {
        let Some(id) = m.live(pick) else { continue };
        let got = t.leave(id);
        m.aborts += 1;
        let f = m.flights.get_mut(&id).unwrap();
        f.waiters -= 1;
        if f.waiters > 0 {
          prop_assert_eq!(got, Leave::Stay);
        } else {
          prop_assert_eq!(got, Leave::AbortFlight);
          m.remove(id);
          ended.push(id);
        }
      }
      Op::Settle { pick, ok } => {
        let Some(id) = m.live(pick) else { continue };
        let got = t.settle(id, ok);
        if !ok {
          m.errors += 1;
        }
        prop_assert_eq!(got, m.remove(id), "settle");
        ended.push(id);
      }
      Op::Stale { pick } => {
        if ended.is_empty() {
          continue;
        }
        let id = ended[pick % ended.len()];
        prop_assert_eq!(t.settle(id, true), None, "an ended flight settled again");
        prop_assert_eq!(t.leave(id), Leave::Gone, "an ended flight left again");
        prop_assert_eq!(t.abandon(id), None, "an ended flight abandoned again");
      }
      Op::Forget { key: k } => {
        let got = t.forget(&key(k));
        let want = match m.keys.remove(&k) {
          Some(id) => {
            m.flights.get_mut(&id).unwrap().mapped = false;
            true
          }
          None => false,
        };
        prop_assert_eq!(got, want, "forget");
      }
      Op::Abandon { pick } => {
        let Some(id) = m.live(pick) else { continue };
        prop_assert_eq!(t.abandon(id), m.remove(id), "abandon");
        ended.push(id);
      }
      Op::Advance { by } => now += Duration::from_millis(by.into()),
      Op::Expire => {
        let got = t.expire(now);
        let mut due: Vec<(Duration, FlightId)> = m
          .flights
          .iter()
          .filter_map(|(&id, f)| f.deadline.filter(|&d| d <= now).map(|d| (d, id)))
          .collect();
        due.sort_unstable();
        let want: Vec<Ended> = due.iter().filter_map(|&(_, id)| m.remove(id)).collect();
        m.timeouts += want.len() as u64;
        ended.extend(want.iter().map(|e| e.id));
        prop_assert_eq!(got, want, "expired flights, earliest deadline first");
        prop_assert!(
          t.next_deadline().is_none_or(|d| d > now),
          "a live flight outlived its deadline"
        );
      }
    }
    check(&mut t, &m, max_keys)?;
  }
  Ok(())
}

#[derive(Clone, Debug)]
enum QOp {
  Push {
    deadline: u8,
  },
  /// Remove the `pick`-th pushed entry (maybe already gone).
  Remove {
    pick: usize,
  },
  Pop {
    now: u8,
    limit: u8,
  },
  Clear,
}

fn qop() -> impl Strategy<Value = QOp> {
  prop_oneof![
    4 => (0u8..50).prop_map(|deadline| QOp::Push { deadline }),
    2 => any::<usize>().prop_map(|pick| QOp::Remove { pick }),
    2 => (0u8..60, 0u8..5).prop_map(|(now, limit)| QOp::Pop { now, limit }),
    1 => Just(QOp::Clear),
  ]
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
  fn flight_table_matches_a_map_model(
    max_keys in proptest::option::of(0usize..4),
    default in proptest::option::of(1u8..30),
    ops in proptest::collection::vec(op(), 1..150),
  ) {
    run(max_keys, default, ops)?;
  }

  /// The local group's deadline queue against a sorted `Vec`: exact removal,
  /// earliest first, `limit` honoured, never more entries than pushed-and-live.
  #[test]
  fn deadline_queue_matches_a_sorted_vec(ops in proptest::collection::vec(qop(), 1..150)) {
    let mut q = DeadlineQueue::new();
    let mut model: Vec<(Duration, u64, u32)> = Vec::new();
    let mut pushed: Vec<(Duration, u64)> = Vec::new();
    let mut next_id = 0u64;
    for op in ops {
      match op {
        QOp::Push { deadline } => {
          let d = Duration::from_millis(deadline.into());
          let slot = (next_id % 7) as u32;
          q.push(DeadlineEntry { deadline: d, slot, id: next_id });
          model.push((d, next_id, slot));
          pushed.push((d, next_id));
          next_id += 1;
        }
        QOp::Remove { pick } => {
          if pushed.is_empty() {
            continue;
          }
          let (d, id) = pushed[pick % pushed.len()];
          let was = model.iter().position(|&(md, mid, _)| (md, mid) == (d, id));
          prop_assert_eq!(q.remove(d, id), was.is_some());
          if let Some(i) = was {
            model.remove(i);
          }
        }
        QOp::Pop { now, limit } => {
          let now = Duration::from_millis(now.into());
          model.sort_unstable();
          let n = model.iter().take_while(|e| e.0 <= now).count().min(limit.into());
          let want: Vec<(Duration, u64, u32)> = model.drain(..n).collect();
          let mut out = Vec::new();
          prop_assert_eq!(q.pop_expired(now, limit.into(), &mut out), n);
          let got: Vec<(Duration, u64, u32)> = out.iter().map(|e| (e.deadline, e.id, e.slot)).collect();
          prop_assert_eq!(got, want);
        }
        QOp::Clear => {
          q.clear();
          model.clear();
        }
      }
      prop_assert_eq!(q.len(), model.len());
      prop_assert_eq!(q.is_empty(), model.is_empty());
      prop_assert_eq!(q.next(), model.iter().map(|e| e.0).min());
    }
  }
}
