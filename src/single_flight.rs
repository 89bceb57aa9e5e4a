//! The plain-Rust core of `SingleFlight`: per-key deduplication of
//! concurrent calls.
//!
//! Two pieces live here, both without Node types:
//!
//! - [`DeadlineQueue`]: the deadlines of live flights, earliest first, with
//!   exact removal. A local (unnamed) `SingleFlight` keeps its flights in JS
//!   (the join path must not cross into Rust) and hands its deadline
//!   additions and removals to this queue in batches; one timer per group,
//!   armed at [`DeadlineQueue::next`], drains what expired in one crossing.
//! - [`FlightTable`]: the whole state machine of a group (keys to flight ids,
//!   waiter and call counts, deadlines, the `maxKeys` bound, stats, and the
//!   data that detects a flight waiting on itself). It is what a group shared
//!   across threads needs, because there the table must be reachable from
//!   every thread; it is also the executable specification the JS layer of a
//!   local group follows, and the tests below pin it down.
//!
//! Time is passed in by the caller (`now` since some origin), so the tests
//! drive it with a [`crate::clock::ManualClock`] and never sleep.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorCode};

/// A key of a flight: a string or a number compared with SameValueZero
/// (`NaN` equals `NaN`, `-0` equals `0`), the equality of a JS `Map`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FlightKey {
  /// A string key.
  Str(String),
  /// A number key, stored as normalised IEEE-754 bits.
  Num(u64),
}

impl FlightKey {
  /// A number key under SameValueZero: every `NaN` is one key and `-0` is `0`.
  ///
  /// # Examples
  ///
  /// ```
  /// use bulkhead::single_flight::FlightKey;
  /// assert_eq!(FlightKey::number(-0.0), FlightKey::number(0.0));
  /// assert_eq!(FlightKey::number(f64::NAN), FlightKey::number(-f64::NAN));
  /// assert_ne!(FlightKey::number(1.0), FlightKey::number(2.0));
  /// ```
  pub fn number(n: f64) -> Self {
    let normalised = if n.is_nan() {
      f64::NAN
    } else if n == 0.0 {
      0.0
    } else {
      n
    };
    FlightKey::Num(normalised.to_bits())
  }

  /// A string key.
  pub fn string(s: impl Into<String>) -> Self {
    FlightKey::Str(s.into())
  }
}

/// The identity of one flight. Ids are never reused within a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlightId(pub u64);

/// One deadline: when `deadline` passes, the flight kept in `slot` whose
/// id is `id` expires. `(deadline, id)` identifies the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadlineEntry {
  /// When the entry expires.
  pub deadline: Duration,
  /// Where the owner keeps the flight.
  pub slot: u32,
  /// The flight's id (unique within its group).
  pub id: u64,
}

/// The deadlines of the live flights of a group, earliest first.
///
/// An ordered map keyed by `(deadline, id)`, so a flight that settles is
/// removed exactly (the owner knows both) and the queue never holds more
/// entries than there are live flights with a deadline.
///
/// # Examples
///
/// ```
/// use bulkhead::single_flight::{DeadlineEntry, DeadlineQueue};
/// use std::time::Duration;
/// let mut q = DeadlineQueue::new();
/// q.push(DeadlineEntry { deadline: Duration::from_millis(20), slot: 1, id: 11 });
/// q.push(DeadlineEntry { deadline: Duration::from_millis(10), slot: 0, id: 10 });
/// q.push(DeadlineEntry { deadline: Duration::from_millis(15), slot: 2, id: 12 });
/// assert!(q.remove(Duration::from_millis(15), 12));
/// assert_eq!(q.next(), Some(Duration::from_millis(10)));
/// let mut out = Vec::new();
/// q.pop_expired(Duration::from_millis(15), usize::MAX, &mut out);
/// assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![10]);
/// assert_eq!(q.len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct DeadlineQueue {
  entries: BTreeMap<(Duration, u64), u32>,
}

impl DeadlineQueue {
  /// An empty queue.
  pub fn new() -> Self {
    Self::default()
  }

  /// Adds one deadline (replacing an entry with the same deadline and id).
  pub fn push(&mut self, entry: DeadlineEntry) {
    self.entries.insert((entry.deadline, entry.id), entry.slot);
  }

  /// Removes the entry of flight `id` with `deadline`. Returns whether it was queued.
  pub fn remove(&mut self, deadline: Duration, id: u64) -> bool {
    self.entries.remove(&(deadline, id)).is_some()
  }

  /// The earliest deadline, if any.
  pub fn next(&self) -> Option<Duration> {
    self.entries.keys().next().map(|&(deadline, _)| deadline)
  }

  /// Moves up to `limit` entries whose deadline is at or before `now` into
  /// `out`, earliest first. Returns how many it moved.
  pub fn pop_expired(
    &mut self,
    now: Duration,
    limit: usize,
    out: &mut Vec<DeadlineEntry>,
  ) -> usize {
    let mut moved = 0;
    while moved < limit {
      match self.entries.first_key_value() {
        Some((&(deadline, id), &slot)) if deadline <= now => {
          self.entries.pop_first();
          out.push(DeadlineEntry { deadline, slot, id });
          moved += 1;
        }
        _ => break,
      }
    }
    moved
  }

  /// How many entries the queue holds.
  pub fn len(&self) -> usize {
    self.entries.len()
  }

  /// Whether the queue is empty.
  pub fn is_empty(&self) -> bool {
    self.entries.is_empty()
  }

  /// Drops every entry.
  pub fn clear(&mut self) {
    self.entries.clear();
  }
}

/// Counters of a group, as `stats()` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlightStats {
  /// Flights started (calls of `fn`).
  pub flights: u64,
  /// Calls of `do`/`doShared` that were accepted (started or joined a flight).
  pub calls: u64,
  /// Calls that joined a flight another call had started.
  pub shared: u64,
  /// Flights that passed their deadline.
  pub timeouts: u64,
  /// Callers that left because their signal fired.
  pub aborts: u64,
  /// Flights whose `fn` threw or rejected.
  pub errors: u64,
}

/// What [`FlightTable::begin`] did with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
  /// No flight was in progress for the key: the caller leads a new one and
  /// must run `fn`.
  Lead(FlightId),
  /// The caller joined the flight in progress.
  Join(FlightId),
}

impl Begin {
  /// The flight the caller is now waiting on.
  pub fn id(self) -> FlightId {
    match self {
      Begin::Lead(id) | Begin::Join(id) => id,
    }
  }
}

/// What [`FlightTable::leave`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
  /// Other callers still wait; the flight goes on.
  Stay,
  /// That was the last caller: the flight is removed and its own signal must
  /// fire so `fn` can stop.
  AbortFlight,
  /// The flight had already ended (settled, expired, or the caller was not
  /// waiting); nothing changed.
  Gone,
}

/// How a flight ended, for the owner to wake its waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
  /// The flight that ended.
  pub id: FlightId,
  /// How many callers were still waiting on it.
  pub waiters: u32,
  /// Whether more than one call shared it (Go's `shared`).
  pub shared: bool,
}

#[derive(Debug)]
struct Flight {
  key: FlightKey,
  /// Whether `key` still maps to this flight (false after `forget`).
  mapped: bool,
  waiters: u32,
  calls: u32,
  deadline: Option<Duration>,
  /// The flights the leader's context was inside when it started this one:
  /// a call from inside this flight that reaches any of them would wait on
  /// itself.
  inside: Vec<FlightId>,
}

/// The state machine of one single-flight group.
///
/// Every method takes `now` where time matters. A caller first calls
/// [`begin`](Self::begin); a leader then runs `fn` and reports the outcome
/// with [`settle`](Self::settle); a caller whose signal fires calls
/// [`leave`](Self::leave); the owner's timer calls [`expire`](Self::expire)
/// at [`next_deadline`](Self::next_deadline).
///
/// # Examples
///
/// ```
/// use bulkhead::single_flight::{Begin, FlightKey, FlightTable};
/// use std::time::Duration;
/// let mut t = FlightTable::new(None, Some(Duration::from_millis(100)));
/// let now = Duration::ZERO;
/// let lead = t.begin(FlightKey::string("user:1"), now, None, &[]).unwrap();
/// assert!(matches!(lead, Begin::Lead(_)));
/// let join = t.begin(FlightKey::string("user:1"), now, None, &[]).unwrap();
/// assert_eq!(join, Begin::Join(lead.id()));
/// let ended = t.settle(lead.id(), true).unwrap();
/// assert_eq!((ended.waiters, ended.shared), (2, true));
/// assert_eq!(t.size(), 0);
/// ```
#[derive(Debug)]
pub struct FlightTable {
  max_keys: Option<usize>,
  timeout: Option<Duration>,
  keys: HashMap<FlightKey, FlightId>,
  flights: HashMap<FlightId, Flight>,
  /// The deadlines of the live flights, earliest first. Keyed by
  /// `(deadline, id)` so a flight that ends any way (settled, left, expired,
  /// abandoned) takes its entry out exactly, in O(log n): the set never
  /// holds more entries than there are live flights with a deadline. (A
  /// lazy-deletion heap, used before, kept every settled flight's entry
  /// until its deadline, so it grew with rate x timeout.)
  deadlines: BTreeSet<(Duration, FlightId)>,
  next_id: u64,
  stats: FlightStats,
}

impl FlightTable {
  /// A table that allows at most `max_keys` flights at once (`None`: no
  /// bound) and gives each flight `timeout` unless a call passes its own.
  pub fn new(max_keys: Option<usize>, timeout: Option<Duration>) -> Self {
    Self {
      max_keys,
      timeout,
      keys: HashMap::new(),
      flights: HashMap::new(),
      deadlines: BTreeSet::new(),
      next_id: 1,
      stats: FlightStats::default(),
    }
  }

  /// Starts or joins the flight for `key`.
  ///
  /// `timeout` (else the table's) sets the deadline of a flight this call
  /// starts; a call that joins is bound by the flight's deadline. `inside`
  /// lists the flights whose `fn` the calling context runs in.
  ///
  /// # Errors
  ///
  /// - [`ErrorCode::RecursiveFlight`] if the flight for `key` is one the
  ///   caller is inside (directly, or through the flights it was started in):
  ///   waiting on it would never end.
  /// - [`ErrorCode::QueueFull`] if no flight exists for `key` and `maxKeys`
  ///   flights (forgotten ones included) are in progress. Joining is always
  ///   allowed.
  pub fn begin(
    &mut self,
    key: FlightKey,
    now: Duration,
    timeout: Option<Duration>,
    inside: &[FlightId],
  ) -> Result<Begin, Error> {
    if let Some(&id) = self.keys.get(&key) {
      if self.waits_on_itself(id, inside) {
        return Err(Error::new(
          ErrorCode::RecursiveFlight,
          "a flight called do() for its own key; it would wait on itself",
        ));
      }
      let flight = self
        .flights
        .get_mut(&id)
        .expect("a mapped key has a flight");
      flight.waiters += 1;
      flight.calls += 1;
      self.stats.calls += 1;
      self.stats.shared += 1;
      return Ok(Begin::Join(id));
    }
    if let Some(max) = self.max_keys {
      // Forgotten flights still run, so they count against the bound.
      if self.flights.len() >= max {
        return Err(Error::new(
          ErrorCode::QueueFull,
          format!("{max} flights are in progress (maxKeys: {max})"),
        ));
      }
    }
    let id = FlightId(self.next_id);
    self.next_id += 1;
    let deadline = timeout.or(self.timeout).map(|t| now.saturating_add(t));
    if let Some(d) = deadline {
      self.deadlines.insert((d, id));
    }
    // What this flight is inside: the caller's context, plus what each of
    // those flights was itself inside, so a chain through other keys counts.
    let mut within: Vec<FlightId> = inside.to_vec();
    for parent in inside {
      if let Some(f) = self.flights.get(parent) {
        within.extend_from_slice(&f.inside);
      }
    }
    within.sort_unstable();
    within.dedup();
    self.keys.insert(key.clone(), id);
    self.flights.insert(
      id,
      Flight {
        key,
        mapped: true,
        waiters: 1,
        calls: 1,
        deadline,
        inside: within,
      },
    );
    self.stats.flights += 1;
    self.stats.calls += 1;
    Ok(Begin::Lead(id))
  }

  fn waits_on_itself(&self, target: FlightId, inside: &[FlightId]) -> bool {
    inside.iter().any(|&ctx| {
      ctx == target
        || self
          .flights
          .get(&ctx)
          .is_some_and(|f| f.inside.contains(&target))
    })
  }

  /// A caller of flight `id` leaves (its signal fired).
  pub fn leave(&mut self, id: FlightId) -> Leave {
    let Some(flight) = self.flights.get_mut(&id) else {
      return Leave::Gone;
    };
    self.stats.aborts += 1;
    flight.waiters -= 1;
    if flight.waiters > 0 {
      return Leave::Stay;
    }
    self.remove(id);
    Leave::AbortFlight
  }

  /// Flight `id`'s `fn` finished, with a value (`ok`) or an error. Errors
  /// are counted and never remembered: the key is free for a new flight.
  /// Returns `None` if the flight had already ended (expired or left by all).
  pub fn settle(&mut self, id: FlightId, ok: bool) -> Option<Ended> {
    let flight = self.remove(id)?;
    if !ok {
      self.stats.errors += 1;
    }
    Some(Ended {
      id,
      waiters: flight.waiters,
      shared: flight.calls > 1,
    })
  }

  /// Unmaps `key`: the next call starts a new flight, while the callers of
  /// the old one still get its outcome. Returns whether a flight was mapped.
  pub fn forget(&mut self, key: &FlightKey) -> bool {
    match self.keys.remove(key) {
      Some(id) => {
        if let Some(f) = self.flights.get_mut(&id) {
          f.mapped = false;
        }
        true
      }
      None => false,
    }
  }

  /// Ends every flight whose deadline is at or before `now` and returns
  /// them: their waiters must be rejected with `ERR_TIMEOUT` and their
  /// signal fired. Nothing of them is kept.
  pub fn expire(&mut self, now: Duration) -> Vec<Ended> {
    let mut ended = Vec::new();
    while let Some(&(deadline, id)) = self.deadlines.first() {
      if deadline > now {
        break;
      }
      self.deadlines.pop_first();
      // Every entry belongs to a live flight (`remove` takes it out when
      // the flight ends), so this always finds one.
      if let Some(flight) = self.remove(id) {
        self.stats.timeouts += 1;
        ended.push(Ended {
          id,
          waiters: flight.waiters,
          shared: flight.calls > 1,
        });
      }
    }
    ended
  }

  /// The earliest deadline of a live flight.
  pub fn next_deadline(&self) -> Option<Duration> {
    self.deadlines.first().map(|&(deadline, _)| deadline)
  }

  /// How many deadlines are queued: exactly the live flights that have one.
  pub fn queued_deadlines(&self) -> usize {
    self.deadlines.len()
  }

  /// Whether a flight for `key` is in progress (and not forgotten).
  pub fn in_flight(&self, key: &FlightKey) -> bool {
    self.keys.contains_key(key)
  }

  /// How many keys have a flight in progress.
  pub fn size(&self) -> usize {
    self.keys.len()
  }

  /// How many flights are alive, forgotten ones included.
  pub fn live_flights(&self) -> usize {
    self.flights.len()
  }

  /// The deadline of flight `id`, if it is alive and has one.
  pub fn deadline_of(&self, id: FlightId) -> Option<Duration> {
    self.flights.get(&id).and_then(|f| f.deadline)
  }

  /// The flight `key` maps to, if any.
  pub fn flight_of(&self, key: &FlightKey) -> Option<FlightId> {
    self.keys.get(key).copied()
  }

  /// How many callers wait on flight `id` (0 if it ended).
  pub fn waiters(&self, id: FlightId) -> u32 {
    self.flights.get(&id).map_or(0, |f| f.waiters)
  }

  /// The counters so far.
  pub fn stats(&self) -> FlightStats {
    self.stats
  }

  /// Removes flight `id` without an outcome (its leader is gone). Counts
  /// nothing; returns how it ended, or `None` if it had already ended.
  pub fn abandon(&mut self, id: FlightId) -> Option<Ended> {
    let flight = self.remove(id)?;
    Some(Ended {
      id,
      waiters: flight.waiters,
      shared: flight.calls > 1,
    })
  }

  fn remove(&mut self, id: FlightId) -> Option<Flight> {
    let flight = self.flights.remove(&id)?;
    if flight.mapped {
      self.keys.remove(&flight.key);
    }
    if let Some(d) = flight.deadline {
      self.deadlines.remove(&(d, id));
    }
    Some(flight)
  }
}

/// A participant in a shared (named) group: one `SingleFlight` handle in
/// one thread. Each member is woken through its own channel.
pub type MemberId = u64;

/// What a member must be told about a flight it takes part in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedEvent {
  /// The leader's `fn` settled; `bytes` is the serialized value or error.
  Settled {
    /// The flight.
    id: FlightId,
    /// Whether `fn` fulfilled (else `bytes` is an error).
    ok: bool,
    /// The outcome, serialized by the leader (structured clone).
    bytes: Arc<[u8]>,
  },
  /// The flight passed its deadline.
  TimedOut {
    /// The flight.
    id: FlightId,
  },
  /// The member that led the flight went away (its thread exited).
  LeaderExited {
    /// The flight.
    id: FlightId,
  },
  /// Sent to the leader: every caller left, so `fn` should stop.
  Abort {
    /// The flight.
    id: FlightId,
  },
  /// Another member forgot the flight's key: new callers must not join it.
  Forgotten {
    /// The flight.
    id: FlightId,
  },
}

#[derive(Debug)]
struct Parts {
  leader: MemberId,
  /// One entry per time a member joined and has not left.
  members: Vec<MemberId>,
}

/// The state of a group shared by several members (threads): the
/// [`FlightTable`], with members instead of callers as its waiters, plus
/// who leads each flight and who must hear about it.
///
/// Every method returns the events to deliver, as `(member, event)` pairs;
/// the owner wakes those members. A member counts as one waiter of a flight
/// however many of its own callers wait (they join in the member's thread
/// without crossing).
///
/// # Examples
///
/// ```
/// use bulkhead::single_flight::{Begin, FlightKey, SharedEvent, SharedFlights};
/// use std::time::Duration;
/// let mut g = SharedFlights::new(None, None);
/// let lead = g.begin(1, FlightKey::string("k"), Duration::ZERO, None).unwrap();
/// let join = g.begin(2, FlightKey::string("k"), Duration::ZERO, None).unwrap();
/// assert_eq!(join, Begin::Join(lead.id()));
/// let events = g.settle(1, lead.id(), true, b"v".as_slice().into());
/// assert_eq!(events.len(), 1);
/// assert!(matches!(&events[0], (2, SharedEvent::Settled { ok: true, .. })));
/// ```
#[derive(Debug)]
pub struct SharedFlights {
  table: FlightTable,
  parts: HashMap<FlightId, Parts>,
}

impl SharedFlights {
  /// A shared group with the table's `max_keys` and default `timeout`.
  pub fn new(max_keys: Option<usize>, timeout: Option<Duration>) -> Self {
    Self {
      table: FlightTable::new(max_keys, timeout),
      parts: HashMap::new(),
    }
  }

  /// `member` starts or joins the flight for `key`.
  ///
  /// # Errors
  ///
  /// As [`FlightTable::begin`] (`ERR_QUEUE_FULL`).
  pub fn begin(
    &mut self,
    member: MemberId,
    key: FlightKey,
    now: Duration,
    timeout: Option<Duration>,
  ) -> Result<Begin, Error> {
    let begun = self.table.begin(key, now, timeout, &[])?;
    match begun {
      Begin::Lead(id) => {
        self.parts.insert(
          id,
          Parts {
            leader: member,
            members: vec![member],
          },
        );
      }
      Begin::Join(id) => {
        if let Some(p) = self.parts.get_mut(&id) {
          p.members.push(member);
        }
      }
    }
    Ok(begun)
  }

  /// The leader reports the outcome. Every other member that waits gets it;
  /// a report from a member that does not lead `id`, or for a flight that
  /// already ended, changes nothing.
  pub fn settle(
    &mut self,
    member: MemberId,
    id: FlightId,
    ok: bool,
    bytes: Arc<[u8]>,
  ) -> Vec<(MemberId, SharedEvent)> {
    if self.parts.get(&id).is_none_or(|p| p.leader != member) {
      return Vec::new();
    }
    self.table.settle(id, ok);
    let parts = self.parts.remove(&id).expect("checked above");
    Self::unique(parts.members, Some(parts.leader))
      .into_iter()
      .map(|m| {
        (
          m,
          SharedEvent::Settled {
            id,
            ok,
            bytes: Arc::clone(&bytes),
          },
        )
      })
      .collect()
  }

  /// `member` stops waiting on `id` (its callers left). If no member waits
  /// any more, the flight ends and its leader is told to abort `fn`.
  pub fn leave(&mut self, member: MemberId, id: FlightId) -> Vec<(MemberId, SharedEvent)> {
    let Some(parts) = self.parts.get_mut(&id) else {
      return Vec::new();
    };
    let Some(at) = parts.members.iter().position(|&m| m == member) else {
      return Vec::new();
    };
    parts.members.swap_remove(at);
    match self.table.leave(id) {
      Leave::AbortFlight => {
        let parts = self.parts.remove(&id).expect("checked above");
        vec![(parts.leader, SharedEvent::Abort { id })]
      }
      Leave::Stay | Leave::Gone => Vec::new(),
    }
  }

  /// Ends the flights whose deadline passed; every member of each (leader
  /// included) is told.
  pub fn expire(&mut self, now: Duration) -> Vec<(MemberId, SharedEvent)> {
    let mut events = Vec::new();
    for ended in self.table.expire(now) {
      if let Some(parts) = self.parts.remove(&ended.id) {
        let mut all = parts.members;
        all.push(parts.leader);
        for m in Self::unique(all, None) {
          events.push((m, SharedEvent::TimedOut { id: ended.id }));
        }
      }
    }
    events
  }

  /// `member` is gone (its thread exited or its handle was dropped): the
  /// flights it led end and their other members are told; it leaves the
  /// flights it had joined.
  pub fn remove_member(&mut self, member: MemberId) -> Vec<(MemberId, SharedEvent)> {
    let mut events = Vec::new();
    let led: Vec<FlightId> = self
      .parts
      .iter()
      .filter(|(_, p)| p.leader == member)
      .map(|(&id, _)| id)
      .collect();
    for id in led {
      self.table.abandon(id);
      let parts = self.parts.remove(&id).expect("listed above");
      for m in Self::unique(parts.members, Some(member)) {
        events.push((m, SharedEvent::LeaderExited { id }));
      }
    }
    let joined: Vec<FlightId> = self
      .parts
      .iter()
      .filter(|(_, p)| p.members.contains(&member))
      .map(|(&id, _)| id)
      .collect();
    for id in joined {
      while self
        .parts
        .get(&id)
        .is_some_and(|p| p.members.contains(&member))
      {
        events.extend(self.leave(member, id));
      }
    }
    events
  }

  /// `member` unmaps `key` (see [`FlightTable::forget`]); every other
  /// member of the flight is told, so its new callers stop joining it.
  /// Returns whether a flight was mapped, and the events.
  pub fn forget(
    &mut self,
    member: MemberId,
    key: &FlightKey,
  ) -> (bool, Vec<(MemberId, SharedEvent)>) {
    let Some(id) = self.table.flight_of(key) else {
      return (false, Vec::new());
    };
    self.table.forget(key);
    let events = self.parts.get(&id).map_or_else(Vec::new, |parts| {
      let mut all = parts.members.clone();
      all.push(parts.leader);
      Self::unique(all, Some(member))
        .into_iter()
        .map(|m| (m, SharedEvent::Forgotten { id }))
        .collect()
    });
    (true, events)
  }

  /// Whether a flight for `key` is in progress.
  pub fn in_flight(&self, key: &FlightKey) -> bool {
    self.table.in_flight(key)
  }

  /// How many keys have a flight in progress.
  pub fn size(&self) -> usize {
    self.table.size()
  }

  /// How many flights are alive (forgotten ones included).
  pub fn live_flights(&self) -> usize {
    self.parts.len()
  }

  /// The earliest deadline of a live flight.
  pub fn next_deadline(&self) -> Option<Duration> {
    self.table.next_deadline()
  }

  /// How many deadlines are queued: exactly the live flights that have one.
  pub fn queued_deadlines(&self) -> usize {
    self.table.queued_deadlines()
  }

  /// The deadline of flight `id`, if it is alive and has one.
  pub fn deadline_of(&self, id: FlightId) -> Option<Duration> {
    self.table.deadline_of(id)
  }

  /// The counters of the whole group (every member's calls).
  pub fn stats(&self) -> FlightStats {
    self.table.stats()
  }

  fn unique(mut members: Vec<MemberId>, except: Option<MemberId>) -> Vec<MemberId> {
    members.sort_unstable();
    members.dedup();
    members.retain(|&m| Some(m) != except);
    members
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::clock::{Clock, ManualClock};

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  fn key(s: &str) -> FlightKey {
    FlightKey::string(s)
  }

  #[test]
  fn concurrent_calls_of_one_key_share_one_flight() {
    let mut t = FlightTable::new(None, None);
    let lead = t.begin(key("a"), ms(0), None, &[]).unwrap();
    assert!(matches!(lead, Begin::Lead(_)));
    for _ in 0..999 {
      assert_eq!(
        t.begin(key("a"), ms(0), None, &[]).unwrap(),
        Begin::Join(lead.id())
      );
    }
    assert_eq!(t.waiters(lead.id()), 1000);
    let ended = t.settle(lead.id(), true).unwrap();
    assert_eq!(ended.waiters, 1000);
    assert!(ended.shared);
    let s = t.stats();
    assert_eq!((s.flights, s.calls, s.shared), (1, 1000, 999));
    assert_eq!(t.size(), 0);
    assert_eq!(t.live_flights(), 0);
  }

  #[test]
  fn distinct_keys_get_distinct_flights() {
    let mut t = FlightTable::new(None, None);
    let ids: Vec<_> = (0..100)
      .map(|i| {
        t.begin(FlightKey::number(i as f64), ms(0), None, &[])
          .unwrap()
      })
      .collect();
    assert!(ids.iter().all(|b| matches!(b, Begin::Lead(_))));
    assert_eq!(t.size(), 100);
    assert_eq!(t.stats().flights, 100);
  }

  #[test]
  fn number_keys_follow_same_value_zero() {
    let mut t = FlightTable::new(None, None);
    let a = t
      .begin(FlightKey::number(f64::NAN), ms(0), None, &[])
      .unwrap();
    assert_eq!(
      t.begin(FlightKey::number(-f64::NAN), ms(0), None, &[])
        .unwrap(),
      Begin::Join(a.id())
    );
    let z = t.begin(FlightKey::number(0.0), ms(0), None, &[]).unwrap();
    assert_eq!(
      t.begin(FlightKey::number(-0.0), ms(0), None, &[]).unwrap(),
      Begin::Join(z.id())
    );
    // The string "1" and the number 1 are different keys, as in a JS Map.
    let n = t.begin(FlightKey::number(1.0), ms(0), None, &[]).unwrap();
    let s = t.begin(key("1"), ms(0), None, &[]).unwrap();
    assert_ne!(n.id(), s.id());
  }

  #[test]
  fn errors_are_counted_and_never_remembered() {
    let mut t = FlightTable::new(None, None);
    let first = t.begin(key("a"), ms(0), None, &[]).unwrap();
    t.begin(key("a"), ms(0), None, &[]).unwrap();
    let ended = t.settle(first.id(), false).unwrap();
    assert_eq!(ended.waiters, 2);
    assert_eq!(t.stats().errors, 1);
    let next = t.begin(key("a"), ms(0), None, &[]).unwrap();
    assert!(matches!(next, Begin::Lead(id) if id != first.id()));
  }

  #[test]
  fn the_deadline_releases_every_waiter_and_frees_the_key() {
    let clock = ManualClock::new();
    let mut t = FlightTable::new(None, Some(ms(100)));
    let a = t.begin(key("a"), clock.now(), None, &[]).unwrap();
    t.begin(key("a"), clock.now(), None, &[]).unwrap();
    let b = t.begin(key("b"), clock.now(), Some(ms(50)), &[]).unwrap();
    assert_eq!(t.next_deadline(), Some(ms(50)));
    clock.advance(ms(49));
    assert!(t.expire(clock.now()).is_empty());
    clock.advance(ms(1));
    let ended = t.expire(clock.now());
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].id, b.id());
    clock.advance(ms(50));
    let ended = t.expire(clock.now());
    assert_eq!(
      ended,
      vec![Ended {
        id: a.id(),
        waiters: 2,
        shared: true
      }]
    );
    assert_eq!(t.size(), 0);
    assert_eq!(t.live_flights(), 0);
    assert_eq!(t.stats().timeouts, 2);
    assert_eq!(t.next_deadline(), None);
    // A late settle of an expired flight changes nothing.
    assert_eq!(t.settle(a.id(), true), None);
  }

  #[test]
  fn a_settled_flight_leaves_no_deadline_behind() {
    let mut t = FlightTable::new(None, Some(ms(10)));
    let a = t.begin(key("a"), ms(0), None, &[]).unwrap();
    assert_eq!(t.queued_deadlines(), 1);
    t.settle(a.id(), true).unwrap();
    assert_eq!(t.queued_deadlines(), 0, "settling removed the entry");
    assert_eq!(t.next_deadline(), None);
    let again = t.begin(key("a"), ms(5), None, &[]).unwrap();
    assert_eq!(t.next_deadline(), Some(ms(15)));
    assert!(t.expire(ms(10)).is_empty());
    assert_eq!(t.expire(ms(15))[0].id, again.id());
    assert_eq!(t.stats().timeouts, 1);
    assert_eq!(t.queued_deadlines(), 0);
  }

  #[test]
  fn every_way_a_flight_ends_takes_its_deadline_out() {
    let mut t = FlightTable::new(None, Some(ms(1000)));
    // Settled with an error, left by its last caller, abandoned, forgotten
    // and then settled, expired: none leaves an entry.
    let a = t.begin(key("a"), ms(0), None, &[]).unwrap();
    let b = t.begin(key("b"), ms(0), Some(ms(5)), &[]).unwrap();
    let c = t.begin(key("c"), ms(0), None, &[]).unwrap();
    let d = t.begin(key("d"), ms(0), None, &[]).unwrap();
    let e = t.begin(key("e"), ms(0), Some(ms(1)), &[]).unwrap();
    let f = t.begin(key("f"), ms(0), Some(Duration::MAX), &[]).unwrap();
    assert_eq!(t.queued_deadlines(), 6);
    t.settle(a.id(), false).unwrap();
    assert_eq!(t.leave(b.id()), Leave::AbortFlight);
    t.abandon(c.id()).unwrap();
    assert!(t.forget(&key("d")));
    let d2 = t.begin(key("d"), ms(0), None, &[]).unwrap();
    t.settle(d.id(), true).unwrap();
    assert_eq!(t.queued_deadlines(), 3, "e, f and the new d");
    assert_eq!(t.next_deadline(), Some(ms(1)));
    assert_eq!(t.expire(ms(1))[0].id, e.id());
    t.settle(d2.id(), true).unwrap();
    assert_eq!(
      t.next_deadline(),
      Some(Duration::MAX),
      "a saturated deadline"
    );
    t.settle(f.id(), true).unwrap();
    assert_eq!(t.queued_deadlines(), 0);
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.live_flights(), 0);
  }

  #[test]
  fn a_million_short_flights_with_a_long_timeout_keep_no_deadlines() {
    // The regression of issue 16: with a lazy-deletion heap, each settled
    // flight left its entry until its deadline (10 minutes here), so the
    // queue held every flight of the last 10 minutes.
    let clock = ManualClock::new();
    let mut t = FlightTable::new(Some(100), Some(Duration::from_secs(600)));
    let mut live = Vec::new();
    for i in 0..1_000_000u64 {
      let id = t
        .begin(FlightKey::number((i % 64) as f64), clock.now(), None, &[])
        .unwrap()
        .id();
      live.push(id);
      // Flights settle a few at a time, as they would under load.
      if live.len() == 8 {
        for id in live.drain(..) {
          t.settle(id, true);
        }
        assert_eq!(t.queued_deadlines(), 0);
      }
      assert!(t.queued_deadlines() <= t.live_flights());
      clock.advance(Duration::from_micros(10));
    }
    for id in live.drain(..) {
      t.settle(id, true);
    }
    assert_eq!(t.queued_deadlines(), 0);
    assert_eq!(t.stats().flights, 1_000_000);
    assert!(t.expire(Duration::MAX).is_empty());
  }

  #[test]
  fn the_flight_is_aborted_only_when_its_last_caller_leaves() {
    let mut t = FlightTable::new(None, None);
    let a = t.begin(key("a"), ms(0), None, &[]).unwrap();
    t.begin(key("a"), ms(0), None, &[]).unwrap();
    t.begin(key("a"), ms(0), None, &[]).unwrap();
    assert_eq!(t.leave(a.id()), Leave::Stay);
    assert_eq!(t.leave(a.id()), Leave::Stay);
    assert!(t.in_flight(&key("a")));
    assert_eq!(t.leave(a.id()), Leave::AbortFlight);
    assert!(!t.in_flight(&key("a")));
    assert_eq!(t.leave(a.id()), Leave::Gone);
    assert_eq!(t.stats().aborts, 3);
    assert_eq!(t.settle(a.id(), true), None, "a late outcome is dropped");
  }

  #[test]
  fn max_keys_bounds_new_flights_but_never_joins() {
    let mut t = FlightTable::new(Some(2), None);
    let a = t.begin(key("a"), ms(0), None, &[]).unwrap();
    t.begin(key("b"), ms(0), None, &[]).unwrap();
    let err = t.begin(key("c"), ms(0), None, &[]).unwrap_err();
    assert_eq!(err.code, ErrorCode::QueueFull);
    assert!(err.message.contains("maxKeys: 2"));
    assert_eq!(
      t.begin(key("a"), ms(0), None, &[]).unwrap(),
      Begin::Join(a.id())
    );
    t.settle(a.id(), true);
    assert!(matches!(
      t.begin(key("c"), ms(0), None, &[]).unwrap(),
      Begin::Lead(_)
    ));
    assert_eq!(t.stats().calls, 4, "a rejected call is not counted");
  }

  #[test]
  fn forget_starts_a_new_flight_while_the_old_callers_keep_theirs() {
    let mut t = FlightTable::new(Some(2), None);
    let old = t.begin(key("a"), ms(0), None, &[]).unwrap();
    assert!(t.forget(&key("a")));
    assert!(!t.forget(&key("a")));
    assert_eq!(t.size(), 0);
    let new = t.begin(key("a"), ms(0), None, &[]).unwrap();
    assert!(matches!(new, Begin::Lead(id) if id != old.id()));
    // The old flight settles without unmapping the new one.
    let full = t.begin(key("b"), ms(0), None, &[]).unwrap_err();
    assert_eq!(
      full.code,
      ErrorCode::QueueFull,
      "a forgotten flight still counts"
    );
    assert_eq!(t.settle(old.id(), true).unwrap().waiters, 1);
    assert!(t.in_flight(&key("a")));
    assert_eq!(t.live_flights(), 1);
  }

  #[test]
  fn a_flight_calling_its_own_key_is_refused() {
    let mut t = FlightTable::new(None, None);
    let a = t.begin(key("a"), ms(0), None, &[]).unwrap();
    let err = t.begin(key("a"), ms(0), None, &[a.id()]).unwrap_err();
    assert_eq!(err.code, ErrorCode::RecursiveFlight);
    assert_eq!(t.waiters(a.id()), 1, "the refused call did not join");
  }

  #[test]
  fn a_cycle_through_other_keys_is_refused() {
    let mut t = FlightTable::new(None, None);
    let a = t.begin(key("a"), ms(0), None, &[]).unwrap();
    // a's fn calls b, b's fn calls c, c's fn calls a.
    let b = t.begin(key("b"), ms(0), None, &[a.id()]).unwrap();
    let c = t.begin(key("c"), ms(0), None, &[b.id()]).unwrap();
    let err = t.begin(key("a"), ms(0), None, &[c.id()]).unwrap_err();
    assert_eq!(err.code, ErrorCode::RecursiveFlight);
    // An unrelated caller may still join a.
    assert_eq!(
      t.begin(key("a"), ms(0), None, &[]).unwrap(),
      Begin::Join(a.id())
    );
    // And c may join an unrelated flight.
    let d = t.begin(key("d"), ms(0), None, &[]).unwrap();
    assert_eq!(
      t.begin(key("d"), ms(0), None, &[c.id()]).unwrap(),
      Begin::Join(d.id())
    );
  }

  #[test]
  fn deadline_queue_pops_in_order_with_a_limit_and_removes_exactly() {
    let mut q = DeadlineQueue::new();
    for (i, d) in [30u64, 10, 20, 10, 25].into_iter().enumerate() {
      q.push(DeadlineEntry {
        deadline: ms(d),
        slot: i as u32,
        id: i as u64,
      });
    }
    assert!(q.remove(ms(25), 4));
    assert!(!q.remove(ms(25), 4), "already gone");
    assert!(!q.remove(ms(30), 1), "the deadline must match too");
    let mut out = Vec::new();
    assert_eq!(q.pop_expired(ms(25), 2, &mut out), 2);
    assert_eq!(q.pop_expired(ms(25), 10, &mut out), 1);
    let got: Vec<_> = out.iter().map(|e| (e.deadline, e.slot, e.id)).collect();
    assert_eq!(got, vec![(ms(10), 1, 1), (ms(10), 3, 3), (ms(20), 2, 2)]);
    assert_eq!(q.next(), Some(ms(30)));
    assert_eq!(q.len(), 1);
    q.clear();
    assert!(q.is_empty());
    assert_eq!(q.next(), None);
  }

  #[test]
  fn a_table_under_churn_keeps_nothing() {
    let clock = ManualClock::new();
    let mut t = FlightTable::new(Some(1000), Some(ms(5)));
    for round in 0..100u64 {
      let mut leaders = Vec::new();
      for k in 0..1000u64 {
        if let Begin::Lead(id) = t
          .begin(FlightKey::number(k as f64), clock.now(), None, &[])
          .unwrap()
        {
          leaders.push(id);
        }
      }
      // Half settle, the rest never do and must be released by the deadline.
      for (i, id) in leaders.iter().enumerate() {
        if i % 2 == round as usize % 2 {
          t.settle(*id, i % 3 != 0);
        }
      }
      clock.advance(ms(5));
      t.expire(clock.now());
      assert_eq!(t.live_flights(), 0);
      assert_eq!(t.size(), 0);
    }
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.stats().timeouts, 50_000);
  }

  fn bytes(b: &[u8]) -> Arc<[u8]> {
    b.into()
  }

  #[test]
  fn shared_flight_delivers_the_leaders_outcome_to_every_other_member_once() {
    let mut g = SharedFlights::new(None, None);
    let lead = g.begin(1, key("k"), ms(0), None).unwrap();
    assert_eq!(
      g.begin(2, key("k"), ms(0), None).unwrap(),
      Begin::Join(lead.id())
    );
    assert_eq!(
      g.begin(3, key("k"), ms(0), None).unwrap(),
      Begin::Join(lead.id())
    );
    // Member 2 joined twice (left in between is not needed: a re-join counts).
    assert_eq!(
      g.begin(2, key("k"), ms(0), None).unwrap(),
      Begin::Join(lead.id())
    );
    assert!(
      g.settle(2, lead.id(), true, bytes(b"x")).is_empty(),
      "only the leader settles"
    );
    let events = g.settle(1, lead.id(), true, bytes(b"v"));
    let to: Vec<_> = events.iter().map(|(m, _)| *m).collect();
    assert_eq!(to, vec![2, 3]);
    assert!(events.iter().all(
      |(_, e)| matches!(e, SharedEvent::Settled { ok: true, bytes, .. } if &bytes[..] == b"v")
    ));
    assert_eq!(g.size(), 0);
    assert_eq!(g.live_flights(), 0);
    assert!(g.settle(1, lead.id(), true, bytes(b"v")).is_empty());
  }

  #[test]
  fn shared_flight_aborts_the_leader_when_every_member_left() {
    let mut g = SharedFlights::new(None, None);
    let id = g.begin(1, key("k"), ms(0), None).unwrap().id();
    g.begin(2, key("k"), ms(0), None).unwrap();
    assert!(g.leave(1, id).is_empty(), "member 2 still waits");
    assert!(g.in_flight(&key("k")));
    assert_eq!(g.leave(2, id), vec![(1, SharedEvent::Abort { id })]);
    assert!(!g.in_flight(&key("k")));
    assert!(g.leave(2, id).is_empty());
  }

  #[test]
  fn forgetting_a_shared_key_tells_the_other_members() {
    let mut g = SharedFlights::new(None, None);
    let id = g.begin(1, key("k"), ms(0), None).unwrap().id();
    g.begin(2, key("k"), ms(0), None).unwrap();
    g.begin(3, key("k"), ms(0), None).unwrap();
    let (was, mut events) = g.forget(2, &key("k"));
    events.sort_by_key(|(m, _)| *m);
    assert!(was);
    assert_eq!(
      events,
      vec![
        (1, SharedEvent::Forgotten { id }),
        (3, SharedEvent::Forgotten { id })
      ]
    );
    let fresh = g.begin(2, key("k"), ms(0), None).unwrap();
    assert!(matches!(fresh, Begin::Lead(other) if other != id));
    assert_eq!(
      g.settle(1, id, true, bytes(b"old")).len(),
      2,
      "members 2 and 3 still get the old result"
    );
  }

  #[test]
  fn shared_flight_deadline_tells_every_member_including_the_leader() {
    let clock = ManualClock::new();
    let mut g = SharedFlights::new(None, Some(ms(50)));
    let id = g.begin(7, key("k"), clock.now(), None).unwrap().id();
    g.begin(8, key("k"), clock.now(), None).unwrap();
    g.leave(7, id);
    clock.advance(ms(50));
    let events = g.expire(clock.now());
    assert_eq!(
      events,
      vec![
        (7, SharedEvent::TimedOut { id }),
        (8, SharedEvent::TimedOut { id })
      ]
    );
    assert_eq!(g.stats().timeouts, 1);
    assert_eq!(g.live_flights(), 0);
    assert_eq!(g.queued_deadlines(), 0);
  }

  #[test]
  fn shared_flights_that_end_early_leave_no_deadline() {
    let mut g = SharedFlights::new(None, Some(Duration::from_secs(600)));
    for round in 0..100_000u64 {
      let k = FlightKey::number((round % 16) as f64);
      let id = g.begin(1, k.clone(), ms(round), None).unwrap().id();
      g.begin(2, k.clone(), ms(round), None).unwrap();
      match round % 4 {
        0 => drop(g.settle(1, id, true, bytes(b"v"))),
        1 => {
          g.leave(1, id);
          g.leave(2, id);
        }
        2 => drop(g.remove_member(1)),
        _ => {
          g.forget(2, &k);
          g.settle(1, id, false, bytes(b"e"));
        }
      }
      assert_eq!(g.queued_deadlines(), 0, "round {round}");
    }
    assert_eq!(g.live_flights(), 0);
    assert_eq!(g.next_deadline(), None);
  }

  #[test]
  fn a_member_that_goes_away_releases_what_it_led_and_what_it_joined() {
    let mut g = SharedFlights::new(Some(10), None);
    let led = g.begin(1, key("a"), ms(0), None).unwrap().id();
    g.begin(2, key("a"), ms(0), None).unwrap();
    g.begin(3, key("a"), ms(0), None).unwrap();
    let joined = g.begin(2, key("b"), ms(0), None).unwrap().id();
    g.begin(1, key("b"), ms(0), None).unwrap();
    let only = g.begin(3, key("c"), ms(0), None).unwrap().id();
    g.begin(1, key("c"), ms(0), None).unwrap();
    let mut events = g.remove_member(1);
    events.sort_by_key(|(m, _)| *m);
    assert_eq!(
      events,
      vec![
        (2, SharedEvent::LeaderExited { id: led }),
        (3, SharedEvent::LeaderExited { id: led }),
      ]
    );
    assert!(!g.in_flight(&key("a")));
    assert!(g.in_flight(&key("b")), "b is led by 2, which still waits");
    assert_eq!(
      g.forget(2, &key("b")),
      (true, Vec::new()),
      "member 1 left b, so nobody else hears"
    );
    assert_eq!(g.forget(2, &key("b")), (false, Vec::new()));
    assert!(g.in_flight(&key("c")));
    // When the last member of c (its leader, 3) leaves, 3 is told to abort.
    assert_eq!(g.leave(3, only), vec![(3, SharedEvent::Abort { id: only })]);
    assert_eq!(g.remove_member(2), Vec::new());
    assert_eq!(g.live_flights(), 0);
    assert_eq!(g.size(), 0);
    let _ = joined;
  }
}
