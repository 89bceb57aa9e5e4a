//! The policy engine of `LRUCache`: plain Rust, no Node types.
//!
//! The JS layer keeps the JS values (key -> slot in a `Map`, and slot arrays
//! of keys and values). This core owns everything else about an entry,
//! addressed by its slot id:
//!
//! - which slot ids are in use and which are free (it hands them out and
//!   recycles them, growing with the entries actually present: nothing is
//!   allocated up front in proportion to `max`);
//! - the recency order (a doubly linked list over slot ids, least recently
//!   used at the head);
//! - the size of every entry and the total (`calculatedSize`);
//! - TTL bookkeeping: the start and ttl of every entry (in two `f64` slices
//!   the caller lends, so JS can read them to answer "is it stale?" without
//!   crossing), and a deadline heap for auto-purge and `evictExpiredFirst`;
//! - the choice of victims when room is needed;
//! - aggregate statistics.
//!
//! Reads do not reach this core one by one: the JS layer appends the slot of
//! every hit to an access log and [`Policy::replay`] applies the log, in
//! order, before any operation whose result depends on the order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// "No slot": the end of the recency list, or an absent victim.
pub const NONE: u32 = u32::MAX;

/// In an access log, a slot with this bit set is a TTL refresh
/// (`updateAgeOnGet`/`updateAgeOnHas` restarted the entry's TTL), not a read:
/// the entry's deadline is re-armed at that point of the log.
pub const REFRESH_BIT: u32 = 0x8000_0000;

/// In an access log, a slot with this bit set is followed by one more word,
/// the entry's new size: the JS layer gave the slot a value of that size
/// without a call (an add that reused an evicted slot or took a reserved
/// one, in a cache with sizes). Slot ids stay far below this bit (a JS `Map`
/// holds at most 2^24 entries).
pub const SIZE_BIT: u32 = 0x4000_0000;

/// `prev` of a slot that holds no entry.
const FREE: u32 = u32::MAX - 1;

/// `prev` of a slot handed out by [`Policy::reserve`] and not yet used.
const RESERVED: u32 = u32::MAX - 2;

/// A slot's place in the recency list. Both links share a cache line, so a
/// move costs one miss per node touched (the replay of a long access log is
/// bound by these misses; see `Policy::replay`).
#[derive(Clone, Copy)]
struct Link {
  prev: u32,
  next: u32,
}

/// Why an entry left the cache, as far as the policy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
  /// Evicted to make room (or popped).
  Evict,
  /// Removed because its TTL passed.
  Expire,
  /// Deleted by the user, or replaced wholesale.
  Delete,
}

/// The TTL columns of the cache: `starts[slot]` and `ttls[slot]`, in the
/// caller's clock unit (milliseconds of `perf.now()`). A slot with `ttl == 0`
/// or `start == 0` never goes stale (lru-cache's rule).
pub struct TtlColumns<'a> {
  /// When each entry's TTL started.
  pub starts: &'a mut [f64],
  /// Each entry's TTL, 0 for none.
  pub ttls: &'a mut [f64],
}

impl TtlColumns<'_> {
  fn deadline(&self, slot: u32) -> Option<f64> {
    let i = slot as usize;
    let (start, ttl) = (*self.starts.get(i)?, *self.ttls.get(i)?);
    (ttl != 0.0 && start != 0.0).then_some(start + ttl)
  }

  /// Whether `slot` is stale at `now` (lru-cache's rule: `now - start > ttl`).
  pub fn is_stale(&self, slot: u32, now: f64) -> bool {
    let i = slot as usize;
    match (self.starts.get(i), self.ttls.get(i)) {
      (Some(&start), Some(&ttl)) => ttl != 0.0 && start != 0.0 && now - start > ttl,
      _ => false,
    }
  }
}

/// Aggregate counters of a cache (the policy's share of `stats()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
  /// Entries added or replaced.
  pub sets: u64,
  /// Entries evicted to make room (or popped).
  pub evictions: u64,
  /// Entries removed because their TTL passed.
  pub expirations: u64,
  /// Entries deleted by the user.
  pub deletes: u64,
}

/// What a visitor of [`Policy::order_into`] returns: `()` to go on, or a
/// `bool` (`false` stops the walk).
pub trait Visit {
  /// Whether the walk goes on.
  fn go_on(self) -> bool;
}

impl Visit for () {
  fn go_on(self) -> bool {
    true
  }
}

impl Visit for bool {
  fn go_on(self) -> bool {
    self
  }
}

/// Construction options of a [`Policy`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyOptions {
  /// Most entries, 0 for no count limit.
  pub max: u32,
  /// Largest total size, 0 for no size limit.
  pub max_size: f64,
  /// Keep a deadline heap (needed by auto-purge and `evict_expired_first`).
  pub track_deadlines: bool,
  /// When room is needed, drop an expired entry before the least recently used live one.
  pub evict_expired_first: bool,
}

/// The recency, size, TTL and victim policy of one cache.
///
/// # Examples
///
/// ```
/// use bulkhead::cache::{Policy, PolicyOptions};
/// let mut p = Policy::new(PolicyOptions { max: 2, ..Default::default() });
/// let mut victims = Vec::new();
/// let a = p.insert(0.0, None, 0.0, &mut victims);
/// let b = p.insert(0.0, None, 0.0, &mut victims);
/// p.replay(&[a], None); // `a` was read: `b` is now the least recently used
/// let c = p.insert(0.0, None, 0.0, &mut victims);
/// assert_eq!(victims, vec![(b, bulkhead::cache::Removal::Evict)]);
/// assert_eq!(c, b); // the victim's slot is reused
/// assert_eq!(p.order(true), vec![c, a]);
/// ```
pub struct Policy {
  opts: PolicyOptions,
  links: Vec<Link>,
  sizes: Vec<f64>,
  free: Vec<u32>,
  head: u32,
  tail: u32,
  len: u32,
  calculated_size: f64,
  /// Auto-purge deadlines as `(deadline, arm sequence, slot)`: equal
  /// deadlines come out in the order they were armed (lru-cache's order: it
  /// arms one timer per entry, and timers due together fire in arming order).
  deadlines: BinaryHeap<Reverse<(u64, u64, u32)>>,
  /// The arm sequence of each slot's current deadline record (0: none);
  /// heap records with another sequence are outdated.
  armed: Vec<u64>,
  arm_seq: u64,
  reserved: Vec<u32>,
  stats: PolicyStats,
}

fn key(deadline: f64) -> u64 {
  // Non-negative finite floats order like their bit patterns.
  deadline.max(0.0).to_bits()
}

impl Policy {
  /// An empty policy. Allocates nothing in proportion to `max`.
  pub fn new(opts: PolicyOptions) -> Self {
    Self {
      opts,
      links: Vec::new(),
      sizes: Vec::new(),
      free: Vec::new(),
      head: NONE,
      tail: NONE,
      len: 0,
      calculated_size: 0.0,
      deadlines: BinaryHeap::new(),
      armed: Vec::new(),
      arm_seq: 0,
      reserved: Vec::new(),
      stats: PolicyStats::default(),
    }
  }

  /// Number of entries.
  pub fn len(&self) -> u32 {
    self.len
  }

  /// Whether there are no entries.
  pub fn is_empty(&self) -> bool {
    self.len == 0
  }

  /// The total size of the entries.
  pub fn calculated_size(&self) -> f64 {
    self.calculated_size
  }

  /// The recorded size of `slot` (0 when sizes are not tracked).
  pub fn size_of(&self, slot: u32) -> f64 {
    self.sizes.get(slot as usize).copied().unwrap_or(0.0)
  }

  /// Slot ids ever handed out (the high-water mark): the length the
  /// caller's per-slot columns must have.
  pub fn slots_used(&self) -> u32 {
    self.links.len() as u32
  }

  /// The counters.
  pub fn stats(&self) -> PolicyStats {
    self.stats
  }

  /// Whether `slot` holds an entry.
  pub fn is_linked(&self, slot: u32) -> bool {
    self
      .links
      .get(slot as usize)
      .is_some_and(|l| l.prev != FREE && l.prev != RESERVED)
  }

  /// Changes whether an expired entry is evicted before the LRU live one.
  pub fn set_evict_expired_first(&mut self, on: bool) {
    self.opts.evict_expired_first = on;
    self.opts.track_deadlines |= on;
  }

  fn unlink(&mut self, slot: u32) {
    let Link { prev: p, next: n } = self.links[slot as usize];
    if p == NONE {
      self.head = n;
    } else {
      self.links[p as usize].next = n;
    }
    if n == NONE {
      self.tail = p;
    } else {
      self.links[n as usize].prev = p;
    }
  }

  fn link_tail(&mut self, slot: u32) {
    self.links[slot as usize] = Link {
      prev: self.tail,
      next: NONE,
    };
    if self.tail == NONE {
      self.head = slot;
    } else {
      self.links[self.tail as usize].next = slot;
    }
    self.tail = slot;
  }

  /// Marks `slot` as the most recently used entry. A slot handed out by
  /// [`Policy::reserve`] becomes an entry (of size 0, no TTL deadline) here.
  pub fn touch(&mut self, slot: u32) {
    let Some(link) = self.links.get(slot as usize) else {
      return;
    };
    match link.prev {
      FREE => {}
      RESERVED => {
        self.len += 1;
        self.stats.sets += 1;
        self.link_tail(slot);
      }
      _ if slot != self.tail => {
        self.unlink(slot);
        self.link_tail(slot);
      }
      _ => {}
    }
  }

  /// Hands out up to `want` slot ids below `cap` for entries the caller will
  /// add without a call: each becomes an entry, at the most recently used
  /// end, when it is [touched](Policy::touch) (the access log carries it).
  /// The count limit is respected. Ids not used by the next
  /// [`Policy::release_reserved`] go back to the free list.
  pub fn reserve(&mut self, want: usize, cap: u32) -> &[u32] {
    self.release_reserved();
    self.restart_if_empty();
    let room = if self.opts.max == 0 {
      usize::MAX
    } else {
      self.opts.max.saturating_sub(self.len) as usize
    };
    let want = want.min(room);
    while self.reserved.len() < want {
      let slot = match self.free.pop() {
        Some(slot) => slot,
        None if (self.links.len() as u32) < cap => self.take_slot(),
        None => break,
      };
      self.links[slot as usize].prev = RESERVED;
      self.reserved.push(slot);
    }
    &self.reserved
  }

  /// Takes back the reserved ids that were not used, restoring the free
  /// list (and the high-water mark) as if they had never been handed out:
  /// slot ids are then given out in exactly lru-cache's order.
  pub fn release_reserved(&mut self) {
    let reserved = std::mem::take(&mut self.reserved);
    for &slot in reserved.iter().rev() {
      let i = slot as usize;
      if self.links[i].prev != RESERVED {
        continue;
      }
      if i + 1 == self.links.len() {
        self.links.pop();
        self.sizes.pop();
        self.armed.pop();
      } else {
        self.links[i].prev = FREE;
        self.free.push(slot);
      }
    }
    self.reserved = reserved;
    self.reserved.clear();
  }

  /// An empty cache hands out slot ids from 0 again, as lru-cache does (it
  /// resets its free list whenever its last entry leaves). Which slot an
  /// entry gets is observable in lru-cache: a background fetch whose entry
  /// was removed writes its late value back only while its old slot is
  /// still empty (`ignoreFetchAbort` with `allowStaleOnFetchAbort`).
  fn restart_if_empty(&mut self) {
    if self.len == 0 && self.reserved.is_empty() {
      self.links.clear();
      self.sizes.clear();
      self.armed.clear();
      self.free.clear();
      self.deadlines.clear();
      self.head = NONE;
      self.tail = NONE;
    }
  }

  /// Applies an access log: each slot, in order, becomes the most recently used.
  ///
  /// Unlike reads done one by one, a batch knows its future, so the cache
  /// misses of a large cache overlap instead of queueing: the node of the
  /// slot `FAR` entries ahead is requested from memory, and once it has
  /// arrived (`NEAR` entries ahead) so are its two neighbours, which the move
  /// will rewrite. A neighbour may change before its turn; a prefetch is only
  /// a hint, so that costs nothing but the wasted load.
  ///
  /// A slot with [`REFRESH_BIT`] re-arms that entry's deadline from `ttl`
  /// (its TTL was restarted by a read) instead of moving it; a slot with
  /// [`SIZE_BIT`] takes the next word as its entry's size.
  pub fn replay(&mut self, log: &[u32], ttl: Option<&TtlColumns<'_>>) {
    const FAR: usize = 16;
    const NEAR: usize = 8;
    let links = self.links.as_ptr();
    let mut i = 0;
    while i < log.len() {
      let slot = log[i];
      if slot & SIZE_BIT != 0 {
        if let Some(&size) = log.get(i + 1) {
          self.set_size(slot & !SIZE_BIT, f64::from(size));
        }
        i += 2;
        continue;
      }
      // (A size word ahead is prefetched as if it were a slot: a wasted hint.)
      if let Some(&far) = log.get(i + FAR) {
        prefetch(links.wrapping_add((far & !(REFRESH_BIT | SIZE_BIT)) as usize));
      }
      if let Some(link) = log.get(i + NEAR).and_then(|&s| self.links.get(s as usize)) {
        if link.prev < RESERVED {
          prefetch(links.wrapping_add(link.prev as usize));
        }
        if link.next < RESERVED {
          prefetch(links.wrapping_add(link.next as usize));
        }
      }
      if slot & REFRESH_BIT == 0 {
        self.touch(slot);
      } else if self.is_linked(slot & !REFRESH_BIT) {
        self.push_deadline(slot & !REFRESH_BIT, ttl);
      }
      i += 1;
    }
  }

  /// Sets the size of the entry in `slot` (a linked one), keeping the total.
  fn set_size(&mut self, slot: u32, size: f64) {
    if !self.is_linked(slot) {
      return;
    }
    let i = slot as usize;
    self.calculated_size += size - self.sizes[i];
    self.sizes[i] = size;
  }

  fn take_slot(&mut self) -> u32 {
    if let Some(slot) = self.free.pop() {
      return slot;
    }
    let slot = self.links.len() as u32;
    self.links.push(Link {
      prev: FREE,
      next: NONE,
    });
    self.sizes.push(0.0);
    self.armed.push(0);
    slot
  }

  /// (Re-)arms `slot`'s deadline from its TTL columns: a new record, later
  /// in arming order than every one before; its older records are outdated.
  fn push_deadline(&mut self, slot: u32, ttl: Option<&TtlColumns<'_>>) {
    if !self.opts.track_deadlines {
      return;
    }
    let Some(armed) = self.armed.get_mut(slot as usize) else {
      return;
    };
    *armed = 0;
    if let Some(d) = ttl.and_then(|t| t.deadline(slot)) {
      self.arm_seq += 1;
      *armed = self.arm_seq;
      self.deadlines.push(Reverse((key(d), self.arm_seq, slot)));
      if self.deadlines.len() > 2 * self.len as usize + 1024 {
        self.compact_deadlines();
      }
    }
  }

  /// Drops the outdated records (keeping the current ones, and so the
  /// arming order).
  fn compact_deadlines(&mut self) {
    let mut records = std::mem::take(&mut self.deadlines).into_vec();
    records
      .retain(|&Reverse((_, seq, slot))| self.is_linked(slot) && self.armed[slot as usize] == seq);
    self.deadlines = BinaryHeap::from(records);
  }

  /// The earliest deadline of a live entry, after dropping outdated heap
  /// records. A TTL restarted by JS reaches the policy as a refresh in the
  /// access log; a start changed without one is re-armed here (late in
  /// arming order: a fallback, not a path the JS layer takes).
  pub fn next_deadline(&mut self, ttl: Option<&TtlColumns<'_>>) -> Option<f64> {
    let ttl = ttl?;
    while let Some(&Reverse((k, seq, slot))) = self.deadlines.peek() {
      if !self.is_linked(slot) || self.armed[slot as usize] != seq {
        self.deadlines.pop();
        continue;
      }
      match ttl.deadline(slot) {
        Some(d) if key(d) == k => return Some(d),
        _ => {
          self.deadlines.pop();
          self.push_deadline(slot, Some(ttl));
        }
      }
    }
    None
  }

  fn choose_victim(
    &mut self,
    protect: u32,
    ttl: Option<&TtlColumns<'_>>,
    now: f64,
  ) -> (u32, Removal) {
    if self.opts.evict_expired_first {
      if let Some(d) = self.next_deadline(ttl) {
        if now > d {
          if let Some(&Reverse((_, _, slot))) = self.deadlines.peek() {
            if slot != protect {
              self.deadlines.pop();
              return (slot, Removal::Expire);
            }
          }
        }
      }
    }
    (self.head, Removal::Evict)
  }

  fn drop_entry(&mut self, slot: u32, why: Removal, free: bool) {
    self.unlink(slot);
    let i = slot as usize;
    self.links[i].prev = FREE;
    self.armed[i] = 0;
    self.calculated_size -= self.sizes[i];
    self.sizes[i] = 0.0;
    self.len -= 1;
    if self.len == 0 {
      self.calculated_size = 0.0;
    }
    if free {
      self.free.push(slot);
    }
    match why {
      Removal::Evict => self.stats.evictions += 1,
      Removal::Expire => self.stats.expirations += 1,
      Removal::Delete => self.stats.deletes += 1,
    }
  }

  fn make_room_for(
    &mut self,
    size: f64,
    protect: u32,
    ttl: Option<&TtlColumns<'_>>,
    now: f64,
    victims: &mut Vec<(u32, Removal)>,
  ) {
    if self.opts.max_size == 0.0 {
      return;
    }
    let limit = self.opts.max_size - size;
    while self.calculated_size > limit {
      let (victim, why) = self.choose_victim(protect, ttl, now);
      if victim == NONE || victim == protect {
        break;
      }
      self.drop_entry(victim, why, true);
      victims.push((victim, why));
    }
  }

  /// Writes `slot`'s TTL (when given) and hands the columns back, read-only.
  fn write_ttl<'c, 'a>(
    &mut self,
    slot: u32,
    ttl: Option<(&'c mut TtlColumns<'a>, f64, f64)>,
  ) -> Option<&'c TtlColumns<'a>> {
    let (cols, ttl_ms, start) = ttl?;
    let i = slot as usize;
    if i < cols.starts.len() && i < cols.ttls.len() {
      cols.starts[i] = if ttl_ms != 0.0 { start } else { 0.0 };
      cols.ttls[i] = ttl_ms;
      self.push_deadline(slot, Some(cols));
    }
    Some(cols)
  }

  /// Adds a new entry of `size` at the most recently used end and returns its
  /// slot. Victims removed to make room are appended to `victims` in the
  /// order they were chosen; when the count limit forced one out, its slot is
  /// the one returned (the caller reads the victim's key and value first).
  /// `ttl` is `(columns, ttl, start)` when TTLs are tracked; `now` is used
  /// only to find expired entries for `evict_expired_first`.
  pub fn insert(
    &mut self,
    size: f64,
    mut ttl: Option<(&mut TtlColumns<'_>, f64, f64)>,
    now: f64,
    victims: &mut Vec<(u32, Removal)>,
  ) -> u32 {
    let slot = if self.free.is_empty() && self.opts.max != 0 && self.len >= self.opts.max {
      let cols = ttl.as_mut().map(|(c, _, _)| &**c);
      let (victim, why) = self.choose_victim(NONE, cols, now);
      self.drop_entry(victim, why, false);
      victims.push((victim, why));
      victim
    } else {
      self.restart_if_empty();
      self.take_slot()
    };
    self.len += 1;
    self.link_tail(slot);
    // The TTL goes in before room is made: until then the slot's columns
    // may hold the deadline of its previous entry, and an expired one would
    // shadow (as the protected slot) a truly expired entry to drop first.
    let cols = self.write_ttl(slot, ttl);
    self.make_room_for(size, slot, cols, now, victims);
    self.sizes[slot as usize] = size;
    self.calculated_size += size;
    self.stats.sets += 1;
    slot
  }

  /// Updates the entry in `slot`: it becomes the most recently used; with
  /// `size` (`Some` when the value changed and sizes are tracked) its size is
  /// replaced, evicting others if needed; with `ttl` its TTL restarts.
  pub fn update(
    &mut self,
    slot: u32,
    size: Option<f64>,
    ttl: Option<(&mut TtlColumns<'_>, f64, f64)>,
    now: f64,
    victims: &mut Vec<(u32, Removal)>,
  ) {
    if !self.is_linked(slot) {
      return;
    }
    self.touch(slot);
    // As in `insert`: the restarted TTL first, so the entry's own old
    // deadline does not shadow another expired entry.
    let cols = self.write_ttl(slot, ttl);
    if let Some(size) = size {
      let i = slot as usize;
      self.calculated_size -= self.sizes[i];
      self.sizes[i] = 0.0;
      self.make_room_for(size, slot, cols, now, victims);
      self.sizes[i] = size;
      self.calculated_size += size;
    }
    self.stats.sets += 1;
  }

  /// Removes the entry in `slot` and recycles the slot.
  pub fn remove(&mut self, slot: u32, why: Removal) -> bool {
    if !self.is_linked(slot) {
      return false;
    }
    self.drop_entry(slot, why, true);
    true
  }

  /// Removes the least recently used entry (lru-cache's `pop`) and returns
  /// its slot, or [`NONE`] when empty.
  pub fn pop(&mut self) -> u32 {
    let slot = self.head;
    if slot != NONE {
      self.drop_entry(slot, Removal::Evict, true);
    }
    slot
  }

  /// Slots in recency order: most recently used first when `mru_first`.
  pub fn order(&self, mru_first: bool) -> Vec<u32> {
    let mut out = Vec::with_capacity(self.len as usize);
    self.order_into(mru_first, |s| out.push(s));
    out
  }

  /// Calls `f` with each slot in recency order, until it returns `false`
  /// (a `()`-returning closure visits every slot).
  pub fn order_into<R: Visit>(&self, mru_first: bool, mut f: impl FnMut(u32) -> R) {
    let mut slot = if mru_first { self.tail } else { self.head };
    while slot != NONE {
      if !f(slot).go_on() {
        return;
      }
      let link = self.links[slot as usize];
      slot = if mru_first { link.prev } else { link.next };
    }
  }

  /// Stale slots at `now`, least recently used first (the order lru-cache's
  /// `purgeStale` disposes them in).
  pub fn stale(&self, ttl: &TtlColumns<'_>, now: f64) -> Vec<u32> {
    let mut out = Vec::new();
    self.order_into(false, |s| {
      if ttl.is_stale(s, now) {
        out.push(s)
      }
    });
    out
  }

  /// Live entries whose deadline passed at `now`, earliest deadline first
  /// and, among equal deadlines, in the order they were armed (for the
  /// auto-purge timer). They stay in the cache: the caller removes them, so
  /// its hooks see them.
  pub fn expired(&mut self, ttl: &TtlColumns<'_>, now: f64) -> Vec<u32> {
    let mut out = Vec::new();
    while self.next_deadline(Some(ttl)).is_some() {
      let Some(&Reverse((_, _, slot))) = self.deadlines.peek() else {
        break;
      };
      if !ttl.is_stale(slot, now) {
        break;
      }
      if let Some(Reverse((_, _, slot))) = self.deadlines.pop() {
        // (a record is current once: its slot is disarmed as it is taken)
        self.armed[slot as usize] = 0;
        out.push(slot);
      }
    }
    out
  }

  /// Empties the policy (the caller disposes the values first).
  pub fn clear(&mut self) {
    let removed = self.len as u64;
    self.links.clear();
    self.sizes.clear();
    self.free.clear();
    self.reserved.clear();
    self.deadlines.clear();
    self.armed.clear();
    self.head = NONE;
    self.tail = NONE;
    self.len = 0;
    self.calculated_size = 0.0;
    self.stats.deletes += removed;
  }
}

/// Asks the CPU to start loading `ptr`'s cache line (a hint: never faults).
#[inline(always)]
pub(crate) fn prefetch<T>(ptr: *const T) {
  #[cfg(target_arch = "x86_64")]
  // SAFETY: a prefetch is a hint; it never dereferences or faults, whatever the address.
  #[allow(unused_unsafe)]
  unsafe {
    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast::<i8>());
  }
  #[cfg(not(target_arch = "x86_64"))]
  let _ = ptr;
}

#[cfg(test)]
mod tests {
  use super::*;

  fn count(max: u32) -> Policy {
    Policy::new(PolicyOptions {
      max,
      ..Default::default()
    })
  }

  #[test]
  fn evicts_the_least_recently_used_and_reuses_its_slot() {
    let mut p = count(3);
    let mut v = Vec::new();
    let a = p.insert(0.0, None, 0.0, &mut v);
    let b = p.insert(0.0, None, 0.0, &mut v);
    let c = p.insert(0.0, None, 0.0, &mut v);
    p.replay(&[a, b], None);
    let d = p.insert(0.0, None, 0.0, &mut v);
    assert_eq!(v, vec![(c, Removal::Evict)]);
    assert_eq!(d, c);
    assert_eq!(p.order(true), vec![d, b, a]);
    assert_eq!(p.order(false), vec![a, b, d]);
    assert_eq!(p.stats().evictions, 1);
    assert_eq!(p.stats().sets, 4);
  }

  #[test]
  fn replay_applies_reads_in_order() {
    let mut p = count(0);
    let mut v = Vec::new();
    let s: Vec<u32> = (0..5).map(|_| p.insert(0.0, None, 0.0, &mut v)).collect();
    p.replay(&[s[0], s[2], s[0], s[4]], None);
    assert_eq!(p.order(false), vec![s[1], s[3], s[2], s[0], s[4]]);
  }

  #[test]
  fn remove_and_pop_recycle_slots_and_grow_lazily() {
    let mut p = count(1_000_000);
    let mut v = Vec::new();
    let a = p.insert(0.0, None, 0.0, &mut v);
    let b = p.insert(0.0, None, 0.0, &mut v);
    assert_eq!(p.slots_used(), 2, "no allocation proportional to max");
    assert!(p.remove(a, Removal::Delete));
    assert!(!p.remove(a, Removal::Delete));
    let c = p.insert(0.0, None, 0.0, &mut v);
    assert_eq!(c, a);
    assert_eq!(p.pop(), b);
    assert_eq!(p.pop(), c);
    assert_eq!(p.pop(), NONE);
    assert!(p.is_empty());
    assert_eq!(p.stats().deletes, 1);
    assert_eq!(p.stats().evictions, 2);
  }

  #[test]
  fn size_limit_evicts_until_the_new_entry_fits() {
    let mut p = Policy::new(PolicyOptions {
      max_size: 10.0,
      ..Default::default()
    });
    let mut v = Vec::new();
    let a = p.insert(4.0, None, 0.0, &mut v);
    let b = p.insert(4.0, None, 0.0, &mut v);
    assert_eq!(p.calculated_size(), 8.0);
    let c = p.insert(5.0, None, 0.0, &mut v);
    assert_eq!(v, vec![(a, Removal::Evict)]);
    assert_eq!(p.calculated_size(), 9.0);
    v.clear();
    p.update(c, Some(9.0), None, 0.0, &mut v);
    assert_eq!(v, vec![(b, Removal::Evict)]);
    assert_eq!(p.calculated_size(), 9.0);
    assert_eq!(p.size_of(c), 9.0);
  }

  #[test]
  fn ttl_columns_follow_lru_cache_rules() {
    let mut starts = vec![0.0; 4];
    let mut ttls = vec![0.0; 4];
    let mut p = Policy::new(PolicyOptions {
      max: 4,
      track_deadlines: true,
      evict_expired_first: true,
      ..Default::default()
    });
    let mut v = Vec::new();
    let mut cols = TtlColumns {
      starts: &mut starts,
      ttls: &mut ttls,
    };
    let a = p.insert(0.0, Some((&mut cols, 10.0, 100.0)), 100.0, &mut v);
    let b = p.insert(0.0, Some((&mut cols, 0.0, 100.0)), 100.0, &mut v);
    let c = p.insert(0.0, Some((&mut cols, 5.0, 100.0)), 100.0, &mut v);
    assert_eq!(cols.starts[b as usize], 0.0, "no ttl: no start");
    assert!(!cols.is_stale(a, 110.0));
    assert!(cols.is_stale(a, 110.5));
    assert_eq!(p.stale(&cols, 106.0), vec![c]);
    assert_eq!(p.next_deadline(Some(&cols)), Some(105.0));
    // a refresh the policy did not see (updateAgeOnGet) moves c later
    cols.starts[c as usize] = 104.0;
    assert_eq!(p.next_deadline(Some(&cols)), Some(109.0));
    assert_eq!(p.expired(&cols, 109.5), vec![c]);
    let _d = p.insert(0.0, Some((&mut cols, 10.0, 100.0)), 100.0, &mut v);
    assert!(v.is_empty());
    // full: an expired entry goes before the LRU live one
    let e = p.insert(0.0, Some((&mut cols, 10.0, 111.0)), 111.0, &mut v);
    assert_eq!(v, vec![(a, Removal::Expire)]);
    assert_eq!(e, a);
    assert_eq!(p.stats().expirations, 1);
  }

  #[test]
  fn reserved_slots_become_entries_when_touched_and_return_when_not() {
    let mut p = count(3);
    let mut v = Vec::new();
    let a = p.insert(0.0, None, 0.0, &mut v);
    let got = p.reserve(8, 16).to_vec();
    assert_eq!(got.len(), 2, "the count limit bounds a reservation");
    p.replay(&[got[1], a], None);
    assert_eq!(p.len(), 2);
    assert_eq!(p.order(false), vec![got[1], a]);
    assert!(!p.is_linked(got[0]));
    p.release_reserved();
    assert_eq!(p.reserve(8, 3).len(), 1);
    p.release_reserved();
    let c = p.insert(0.0, None, 0.0, &mut v);
    assert_eq!(c, got[0], "an unused reservation is free again");
    assert_eq!(p.stats().sets, 3);
    assert!(p.reserve(4, 3).is_empty(), "full");
  }

  #[test]
  fn size_words_in_the_log_set_an_entry_size_and_the_total() {
    let mut p = Policy::new(PolicyOptions {
      max: 4,
      max_size: 100.0,
      ..Default::default()
    });
    let mut v = Vec::new();
    let a = p.insert(30.0, None, 0.0, &mut v);
    let got = p.reserve(2, 16).to_vec();
    // an add into a reserved slot: its move, then its size
    p.replay(&[got[0], got[0] | SIZE_BIT, 25], None);
    assert_eq!((p.size_of(got[0]), p.calculated_size()), (25.0, 55.0));
    // a slot reused by an evicting add: a new size in place of the old
    p.replay(&[a, a | SIZE_BIT, 10, got[0]], None);
    assert_eq!((p.size_of(a), p.calculated_size()), (10.0, 35.0));
    assert_eq!(
      p.order(true),
      vec![got[0], a],
      "size words do not move entries"
    );
    // a size word for a slot that holds no entry changes nothing
    p.release_reserved();
    p.replay(&[got[1] | SIZE_BIT, 99], None);
    assert_eq!(p.calculated_size(), 35.0);
    // and the next insert evicts by the sizes the log set
    let b = p.insert(70.0, None, 0.0, &mut v);
    assert_eq!(v, vec![(a, Removal::Evict)]);
    assert_eq!(p.calculated_size(), 95.0);
    assert!(p.is_linked(b));
  }

  #[test]
  fn clear_resets_everything() {
    let mut p = count(2);
    let mut v = Vec::new();
    p.insert(1.0, None, 0.0, &mut v);
    p.insert(1.0, None, 0.0, &mut v);
    p.clear();
    assert!(p.is_empty());
    assert_eq!(p.order(true), Vec::<u32>::new());
    assert_eq!(p.slots_used(), 0);
    assert_eq!(p.insert(0.0, None, 0.0, &mut v), 0);
  }

  #[test]
  fn equal_deadlines_expire_in_arming_order_and_a_logged_refresh_rearms() {
    let mut starts = vec![0.0; 4];
    let mut ttls = vec![0.0; 4];
    let mut p = Policy::new(PolicyOptions {
      track_deadlines: true,
      ..Default::default()
    });
    let mut v = Vec::new();
    let mut cols = TtlColumns {
      starts: &mut starts,
      ttls: &mut ttls,
    };
    // slots 0..3, then re-armed in another order: 2, 0, 3, 1 (same deadline 20)
    let s: Vec<u32> = (0..4)
      .map(|_| p.insert(0.0, Some((&mut cols, 10.0, 5.0)), 0.0, &mut v))
      .collect();
    for &i in &[2, 0, 3] {
      p.update(s[i], None, Some((&mut cols, 10.0, 10.0)), 0.0, &mut v);
    }
    // slot 1's TTL restarted by a read (JS wrote the start, the log says so)
    cols.starts[s[1] as usize] = 10.0;
    p.replay(&[s[1], s[1] | REFRESH_BIT], Some(&cols));
    assert_eq!(p.expired(&cols, 20.0), vec![]);
    assert_eq!(p.expired(&cols, 21.0), vec![s[2], s[0], s[3], s[1]]);
    assert_eq!(p.next_deadline(Some(&cols)), None);
  }

  #[test]
  fn deadline_heap_stays_bounded_under_rewrites() {
    let mut starts = vec![0.0; 1];
    let mut ttls = vec![0.0; 1];
    let mut p = Policy::new(PolicyOptions {
      track_deadlines: true,
      ..Default::default()
    });
    let mut v = Vec::new();
    let mut cols = TtlColumns {
      starts: &mut starts,
      ttls: &mut ttls,
    };
    let a = p.insert(0.0, Some((&mut cols, 10.0, 1.0)), 1.0, &mut v);
    for i in 0..10_000 {
      p.update(
        a,
        None,
        Some((&mut cols, 10.0, 2.0 + i as f64)),
        0.0,
        &mut v,
      );
    }
    assert!(p.deadlines.len() <= 1024 + 3);
    assert_eq!(p.next_deadline(Some(&cols)), Some(10_011.0));
  }
}
