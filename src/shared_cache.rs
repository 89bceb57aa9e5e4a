//! The store behind a named (process-wide) LRU cache.
//!
//! One [`SharedCache`] is shared by every worker_thread that opens the same
//! name. It holds keys and values as plain bytes in Rust memory (off the V8
//! heap), keeps them in exact least-recently-used order, expires them by TTL
//! and bounds them by entry count (`max`) and by bytes (`max_size`), counting
//! every entry's real bytes: key + value + a fixed per-entry overhead
//! ([`ENTRY_OVERHEAD`]).
//!
//! Time is passed in by the caller (`now`, in milliseconds on any monotonic
//! scale shared by all callers), so the core never reads a clock and tests
//! never sleep. By default one [`parking_lot::Mutex`] guards the whole store
//! and its one exact LRU order; each operation holds it for well under a
//! microsecond. With `shards` the store is split by key hash into parts with
//! their own lock, order and share of the bounds: exact LRU per shard,
//! approximate overall, and threads that seldom wait for each other.
//!
//! Entries removed by an operation (evicted, replaced, deleted, expired) are
//! handed back to the caller in a list, so the thread whose operation caused
//! them runs its own `dispose` callbacks.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cache::prefetch;

const NIL: u32 = u32::MAX;

/// A cache key: a string or a number. Numbers follow JS `SameValueZero`
/// (`-0` is `0`, every `NaN` is the same key), like a JS `Map`.
///
/// A key is kept in its encoded form: one type byte ([`KEY_STR`] or
/// [`KEY_NUM`]) then the UTF-8 bytes of the string or the 8 little-endian
/// bytes of the normalized number. Lookups take the encoded bytes as a
/// `&[u8]`, so a caller can encode into a stack buffer and look up without
/// allocating.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(Arc<[u8]>);

/// Type byte of an encoded string key.
pub const KEY_STR: u8 = 0;
/// Type byte of an encoded number key.
pub const KEY_NUM: u8 = 1;

impl Borrow<[u8]> for Key {
  fn borrow(&self) -> &[u8] {
    &self.0
  }
}

impl Key {
  /// The encoded bytes of the number `n`, normalized so `-0 == 0` and all
  /// NaNs are equal.
  pub fn encode_num(n: f64) -> [u8; 9] {
    let n = if n == 0.0 {
      0.0
    } else if n.is_nan() {
      f64::NAN
    } else {
      n
    };
    let mut out = [KEY_NUM; 9];
    out[1..].copy_from_slice(&n.to_le_bytes());
    out
  }

  /// A number key.
  pub fn num(n: f64) -> Self {
    Key(Arc::from(&Self::encode_num(n)[..]))
  }

  /// A string key.
  pub fn str(s: &str) -> Self {
    let mut bytes = Vec::with_capacity(s.len() + 1);
    bytes.push(KEY_STR);
    bytes.extend_from_slice(s.as_bytes());
    Key(bytes.into())
  }

  /// A key from its encoded bytes (see the type docs).
  pub fn from_encoded(bytes: &[u8]) -> Self {
    Key(Arc::from(bytes))
  }

  /// The encoded bytes.
  pub fn encoded(&self) -> &[u8] {
    &self.0
  }

  /// The number of a number key.
  pub fn as_f64(&self) -> Option<f64> {
    match &self.0[..] {
      [KEY_NUM, rest @ ..] if rest.len() == 8 => {
        let mut le = [0u8; 8];
        le.copy_from_slice(rest);
        Some(f64::from_le_bytes(le))
      }
      _ => None,
    }
  }

  /// The UTF-8 bytes of a string key.
  pub fn as_str_bytes(&self) -> Option<&[u8]> {
    match &self.0[..] {
      [KEY_STR, rest @ ..] => Some(rest),
      _ => None,
    }
  }

  /// Bytes this key occupies outside the entry itself (its shared
  /// allocation, with the reference-count header).
  fn heap_bytes(&self) -> u64 {
    (self.0.len() + 2 * size_of::<usize>()) as u64
  }
}

/// A stored value: a type tag chosen by the caller (how to turn the bytes
/// back into a JS value) and the bytes. Cloning shares the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
  /// What the bytes encode; opaque to the store.
  pub tag: u8,
  /// The encoded value.
  pub bytes: Arc<[u8]>,
}

impl Value {
  /// A value with `tag` and a copy of `bytes`.
  pub fn new(tag: u8, bytes: &[u8]) -> Self {
    Self {
      tag,
      bytes: Arc::from(bytes),
    }
  }

  fn heap_bytes(&self) -> u64 {
    (self.bytes.len() + 2 * size_of::<usize>()) as u64
  }
}

/// Why an entry left the cache (lru-cache's `dispose` reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
  /// Pushed out by `max`/`maxSize`, or taken by `pop()`.
  Evict,
  /// Replaced by a `set` of the same key (or refused by `maxEntrySize`).
  Set,
  /// Removed by `delete` or `clear`.
  Delete,
  /// Found stale and removed.
  Expire,
}

impl Reason {
  /// The string lru-cache passes to `dispose`.
  pub const fn as_str(self) -> &'static str {
    match self {
      Reason::Evict => "evict",
      Reason::Set => "set",
      Reason::Delete => "delete",
      Reason::Expire => "expire",
    }
  }
}

/// An entry that left the cache during an operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Disposed {
  /// Its key.
  pub key: Key,
  /// Its value.
  pub value: Value,
  /// Why it left.
  pub reason: Reason,
}

/// The options fixed when a named cache is created. Every handle that opens
/// the same name must agree on them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options {
  /// Most entries held; 0 for no count limit.
  pub max: u64,
  /// Most bytes held (entries' real bytes); 0 for no byte limit.
  pub max_size: u64,
  /// Largest single entry in bytes; 0 means `max_size` (or no limit).
  pub max_entry_size: u64,
  /// Default time to live in milliseconds; 0 for none.
  pub ttl: f64,
  /// Independent parts the store is split into by key hash, each with its
  /// own lock, order and share of `max` and `max_size`; 0 or 1 for one
  /// exact LRU order.
  pub shards: u32,
}

/// The most shards a store may have.
pub const MAX_SHARDS: u32 = 256;

/// Counters since the cache was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
  /// `get`s that returned a fresh value.
  pub hits: u64,
  /// `get`s that found nothing fresh.
  pub misses: u64,
  /// `set`s that stored a value.
  pub sets: u64,
  /// Entries pushed out by `max`/`maxSize` or taken by `pop()`.
  pub evictions: u64,
  /// Entries removed because they were stale.
  pub expirations: u64,
  /// Entries removed by `delete`, `clear` or a refused oversized `set`.
  pub deletes: u64,
}

/// Per-call choices for reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
  /// Return a stale value (once) instead of `None`.
  pub allow_stale: bool,
  /// A fresh hit restarts the entry's TTL.
  pub update_age: bool,
  /// A stale hit leaves the entry in place.
  pub no_delete_on_stale: bool,
}

/// Per-call choices for `set`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
  /// TTL of this entry in ms; `None` uses the cache's default.
  pub ttl: Option<f64>,
  /// Start time of the TTL; `None` is `now`.
  pub start: Option<f64>,
  /// Replacing a value does not report the old one as disposed.
  pub no_dispose_on_set: bool,
  /// Replacing a value keeps the entry's TTL start.
  pub no_update_ttl: bool,
}

/// What `set` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
  /// The value is stored.
  Stored,
  /// The entry was larger than `maxEntrySize`; it was not stored (and any
  /// old value of the key was removed, as lru-cache does).
  TooLarge,
}

/// One entry as `dump` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpEntry {
  /// Its key.
  pub key: Key,
  /// Its value.
  pub value: Value,
  /// Its TTL in ms (0: none).
  pub ttl: f64,
  /// When its TTL started, on the caller's clock.
  pub start: f64,
  /// Its size in bytes.
  pub size: u64,
}

struct Node {
  key: Key,
  value: Value,
  size: u64,
  start: f64,
  ttl: f64,
  /// `now` of its last `set` or `get` hit: orders entries across shards.
  stamp: f64,
}

/// An entry's neighbours in the recency list, kept apart from the entries
/// so a move touches a compact array (8 bytes per slot) instead of three
/// entries scattered over the heap.
#[derive(Clone, Copy)]
struct Link {
  prev: u32,
  next: u32,
}

/// How many `get` hits wait in [`Inner::pending`] before they are applied.
const PENDING_MAX: usize = 1024;

/// The fixed bytes every entry costs besides its key's and value's own
/// allocations: its slot in the entry table and its slot in the hash index.
pub const ENTRY_OVERHEAD: u64 =
  (size_of::<Option<Node>>() + size_of::<Link>() + size_of::<(Key, u32)>() + size_of::<u64>())
    as u64;

/// The bytes an entry with `key` and `value` is charged.
pub fn entry_size(key: &Key, value: &Value) -> u64 {
  ENTRY_OVERHEAD + key.heap_bytes() + value.heap_bytes()
}

struct Inner {
  map: HashMap<Key, u32>,
  nodes: Vec<Option<Node>>,
  /// `links[i]` belongs to `nodes[i]`.
  links: Vec<Link>,
  /// Slots read by `get` hits and not yet moved to the most recent end,
  /// oldest first. [`Inner::settle`] applies them before anything reads or
  /// changes the order or frees a slot, so the order every other operation
  /// sees is exact; a hit itself then touches neither its neighbours nor
  /// the tail (dependent cache misses), and the moves are done in one pass
  /// with prefetching.
  pending: Vec<u32>,
  free: Vec<u32>,
  head: u32,
  tail: u32,
  calculated: u64,
  stats: Stats,
}

/// A thread-safe LRU store of byte values. See the module docs.
pub struct SharedCache {
  options: Options,
  shards: Box<[Shard]>,
  /// Picks a key's shard (keyed, so clients cannot aim keys at one shard).
  hasher: RandomState,
}

/// One lock's worth of the store: its own entries, order and bounds (its
/// share of `max` and `maxSize`). Aligned so two shards' locks never share a
/// cache line.
#[repr(align(128))]
struct Shard {
  max: u64,
  max_size: u64,
  /// The largest entry this shard takes (0: no limit).
  max_entry: u64,
  ttl: f64,
  inner: Mutex<Inner>,
}

fn stale(node: &Node, now: f64) -> bool {
  node.ttl > 0.0 && now - node.start > node.ttl
}

impl Inner {
  fn node(&self, i: u32) -> &Node {
    self.nodes[i as usize]
      .as_ref()
      .expect("linked index is live")
  }

  fn node_mut(&mut self, i: u32) -> &mut Node {
    self.nodes[i as usize]
      .as_mut()
      .expect("linked index is live")
  }

  fn unlink(&mut self, i: u32) {
    let Link { prev, next } = self.links[i as usize];
    if prev == NIL {
      self.head = next;
    } else {
      self.links[prev as usize].next = next;
    }
    if next == NIL {
      self.tail = prev;
    } else {
      self.links[next as usize].prev = prev;
    }
  }

  fn push_tail(&mut self, i: u32) {
    let tail = self.tail;
    self.links[i as usize] = Link {
      prev: tail,
      next: NIL,
    };
    if tail == NIL {
      self.head = i;
    } else {
      self.links[tail as usize].next = i;
    }
    self.tail = i;
  }

  /// Records a `get` hit of `i`: it becomes the most recently used once
  /// [`Inner::settle`] runs (at the latest after [`PENDING_MAX`] hits).
  fn record_hit(&mut self, i: u32) {
    if self.pending.last() == Some(&i) {
      return;
    }
    self.pending.push(i);
    if self.pending.len() >= PENDING_MAX {
      self.settle();
    }
  }

  /// Applies the pending hits in order. Their list moves are dependent
  /// cache misses on a large store, so they overlap here: the link of the
  /// slot `FAR` hits ahead is requested from memory, and once it has arrived
  /// (`NEAR` hits ahead) so are its neighbours', which the move rewrites. A
  /// neighbour may change before its turn; a prefetch is only a hint.
  fn settle(&mut self) {
    const FAR: usize = 16;
    const NEAR: usize = 8;
    if self.pending.is_empty() {
      return;
    }
    let pending = std::mem::take(&mut self.pending);
    for (j, &i) in pending.iter().enumerate() {
      let links = self.links.as_ptr();
      if let Some(&far) = pending.get(j + FAR) {
        prefetch(links.wrapping_add(far as usize));
      }
      if let Some(&near) = pending.get(j + NEAR) {
        let Link { prev, next } = self.links[near as usize];
        if prev != NIL {
          prefetch(links.wrapping_add(prev as usize));
        }
        if next != NIL {
          prefetch(links.wrapping_add(next as usize));
        }
      }
      self.move_to_tail(i);
    }
    self.pending = pending;
    self.pending.clear();
  }

  fn move_to_tail(&mut self, i: u32) {
    if self.tail != i {
      self.unlink(i);
      self.push_tail(i);
    }
  }

  fn remove(&mut self, i: u32, reason: Reason, out: &mut Option<&mut Vec<Disposed>>) {
    self.unlink(i);
    let node = self.nodes[i as usize].take().expect("linked index is live");
    self.free.push(i);
    self.map.remove(node.key.encoded());
    self.calculated -= node.size;
    match reason {
      Reason::Evict => self.stats.evictions += 1,
      Reason::Expire => self.stats.expirations += 1,
      Reason::Delete => self.stats.deletes += 1,
      Reason::Set => {}
    }
    if let Some(out) = out {
      out.push(Disposed {
        key: node.key,
        value: node.value,
        reason,
      });
    }
  }

  fn insert(&mut self, node: Node) -> u32 {
    let key = node.key.clone();
    self.calculated += node.size;
    let i = match self.free.pop() {
      Some(i) => {
        self.nodes[i as usize] = Some(node);
        i
      }
      None => {
        self.nodes.push(Some(node));
        self.links.push(Link {
          prev: NIL,
          next: NIL,
        });
        (self.nodes.len() - 1) as u32
      }
    };
    self.map.insert(key, i);
    self.push_tail(i);
    i
  }

  /// Ids from most to least recently used.
  fn order(&self) -> Vec<u32> {
    let mut ids = Vec::with_capacity(self.map.len());
    let mut i = self.tail;
    while i != NIL {
      ids.push(i);
      i = self.links[i as usize].prev;
    }
    ids
  }
}

impl Shard {
  fn new(max: u64, max_size: u64, max_entry: u64, ttl: f64) -> Self {
    Self {
      max,
      max_size,
      max_entry,
      ttl,
      inner: Mutex::new(Inner {
        map: HashMap::new(),
        nodes: Vec::new(),
        links: Vec::new(),
        pending: Vec::new(),
        free: Vec::new(),
        head: NIL,
        tail: NIL,
        calculated: 0,
        stats: Stats::default(),
      }),
    }
  }

  /// Locks the shard with every pending hit applied: for anything that
  /// reads or changes the order, or frees a slot.
  fn lock_settled(&self) -> parking_lot::MutexGuard<'_, Inner> {
    let mut inner = self.inner.lock();
    inner.settle();
    inner
  }

  /// How many entries are held (fresh or stale).
  pub fn len(&self) -> usize {
    self.inner.lock().map.len()
  }

  /// Whether no entry is held.
  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  /// The bytes held by all entries (see [`entry_size`]).
  pub fn calculated_size(&self) -> u64 {
    self.inner.lock().calculated
  }

  /// Entry count, bytes and counters, read under one lock.
  pub fn snapshot(&self) -> (usize, u64, Stats) {
    let inner = self.inner.lock();
    (inner.map.len(), inner.calculated, inner.stats)
  }

  /// Looks `key` up and marks it most recently used.
  ///
  /// A stale entry is removed (reason `Expire`, unless
  /// `no_delete_on_stale`) and returned only with `allow_stale`.
  pub fn get(
    &self,
    key: &[u8],
    now: f64,
    opts: ReadOptions,
    mut out: Option<&mut Vec<Disposed>>,
  ) -> Option<Value> {
    let mut inner = self.inner.lock();
    let Some(&i) = inner.map.get(key) else {
      inner.stats.misses += 1;
      return None;
    };
    if stale(inner.node(i), now) {
      inner.stats.misses += 1;
      let value = inner.node(i).value.clone();
      if !opts.no_delete_on_stale {
        inner.settle();
        inner.remove(i, Reason::Expire, &mut out);
      }
      return opts.allow_stale.then_some(value);
    }
    inner.stats.hits += 1;
    inner.record_hit(i);
    let node = inner.node_mut(i);
    node.stamp = now;
    if opts.update_age && node.ttl > 0.0 {
      node.start = now;
    }
    Some(node.value.clone())
  }

  /// Whether `key` holds a fresh value. Does not change recency; with
  /// `update_age` a fresh entry's TTL restarts.
  pub fn has(&self, key: &[u8], now: f64, update_age: bool) -> bool {
    let mut inner = self.inner.lock();
    let Some(&i) = inner.map.get(key) else {
      return false;
    };
    let node = inner.node_mut(i);
    if stale(node, now) {
      return false;
    }
    if update_age && node.ttl > 0.0 {
      node.start = now;
    }
    true
  }

  /// The value of `key` without changing recency or removing it when stale.
  pub fn peek(&self, key: &[u8], now: f64, allow_stale: bool) -> Option<Value> {
    let inner = self.inner.lock();
    let &i = inner.map.get(key)?;
    let node = inner.node(i);
    if stale(node, now) && !allow_stale {
      return None;
    }
    Some(node.value.clone())
  }

  /// Stores `value` under `key` as the most recently used entry, evicting
  /// least recently used entries until `max` and `max_size` hold.
  pub fn set(
    &self,
    key: Key,
    value: Value,
    now: f64,
    opts: WriteOptions,
    mut out: Option<&mut Vec<Disposed>>,
  ) -> SetOutcome {
    let size = entry_size(&key, &value);
    let max_entry = self.max_entry;
    let mut inner = self.lock_settled();
    if max_entry != 0 && size > max_entry {
      if let Some(&i) = inner.map.get(&key) {
        inner.remove(i, Reason::Set, &mut out);
        inner.stats.deletes += 1;
      }
      return SetOutcome::TooLarge;
    }
    let ttl = opts.ttl.unwrap_or(self.ttl);
    let start = opts.start.unwrap_or(now);
    inner.stats.sets += 1;
    if let Some(&i) = inner.map.get(&key) {
      inner.move_to_tail(i);
      let old_size = inner.node(i).size;
      inner.calculated -= old_size;
      let old = {
        let node = inner.node_mut(i);
        let old = std::mem::replace(&mut node.value, value);
        node.size = size;
        node.stamp = now;
        if !opts.no_update_ttl {
          node.ttl = ttl;
          node.start = start;
        }
        old
      };
      self.make_room(&mut inner, size, i, &mut out);
      inner.calculated += size;
      if let Some(out) = out.as_deref_mut() {
        if !opts.no_dispose_on_set && old != inner.node(i).value {
          out.push(Disposed {
            key,
            value: old,
            reason: Reason::Set,
          });
        }
      }
      return SetOutcome::Stored;
    }
    if self.max != 0 && inner.map.len() as u64 >= self.max {
      let head = inner.head;
      inner.remove(head, Reason::Evict, &mut out);
    }
    self.make_room(&mut inner, size, NIL, &mut out);
    inner.insert(Node {
      key,
      value,
      size,
      start,
      ttl,
      stamp: now,
    });
    SetOutcome::Stored
  }

  /// Evicts from the LRU end (never `keep`) until `incoming` more bytes fit.
  fn make_room(
    &self,
    inner: &mut Inner,
    incoming: u64,
    keep: u32,
    out: &mut Option<&mut Vec<Disposed>>,
  ) {
    let max_size = self.max_size;
    if max_size == 0 {
      return;
    }
    while inner.calculated + incoming > max_size && inner.head != NIL && inner.head != keep {
      let head = inner.head;
      inner.remove(head, Reason::Evict, out);
    }
  }

  /// Removes `key`. Returns whether it was present.
  pub fn delete(&self, key: &[u8], mut out: Option<&mut Vec<Disposed>>) -> bool {
    let mut inner = self.lock_settled();
    match inner.map.get(key) {
      Some(&i) => {
        inner.remove(i, Reason::Delete, &mut out);
        true
      }
      None => false,
    }
  }

  /// Removes every entry (reason `Delete`), least recently used first.
  pub fn clear(&self, mut out: Option<&mut Vec<Disposed>>) {
    let mut inner = self.lock_settled();
    while inner.head != NIL {
      let head = inner.head;
      inner.remove(head, Reason::Delete, &mut out);
    }
    inner.nodes = Vec::new();
    inner.links = Vec::new();
    inner.free = Vec::new();
    inner.map = HashMap::new();
  }

  /// Removes and returns the least recently used entry (reason `Evict`).
  pub fn pop(&self, mut out: Option<&mut Vec<Disposed>>) -> Option<(Key, Value)> {
    let mut inner = self.lock_settled();
    let head = inner.head;
    if head == NIL {
      return None;
    }
    let (key, value) = {
      let n = inner.node(head);
      (n.key.clone(), n.value.clone())
    };
    inner.remove(head, Reason::Evict, &mut out);
    Some((key, value))
  }

  /// Milliseconds left in `key`'s TTL: 0 if absent, infinity without a
  /// TTL, negative once stale.
  pub fn remaining_ttl(&self, key: &[u8], now: f64) -> f64 {
    let inner = self.inner.lock();
    match inner.map.get(key) {
      None => 0.0,
      Some(&i) => {
        let n = inner.node(i);
        if n.ttl > 0.0 {
          n.ttl - (now - n.start)
        } else {
          f64::INFINITY
        }
      }
    }
  }

  /// Removes every stale entry (reason `Expire`). Returns whether any was.
  pub fn purge_stale(&self, now: f64, mut out: Option<&mut Vec<Disposed>>) -> bool {
    let mut inner = self.lock_settled();
    let stale_ids: Vec<u32> = inner
      .order()
      .into_iter()
      .rev()
      .filter(|&i| stale(inner.node(i), now))
      .collect();
    for &i in &stale_ids {
      inner.remove(i, Reason::Expire, &mut out);
    }
    !stale_ids.is_empty()
  }

  /// The stamp of the least recently used entry, if any.
  fn head_stamp(&self) -> Option<f64> {
    let inner = self.lock_settled();
    (inner.head != NIL).then(|| inner.node(inner.head).stamp)
  }

  /// The entries with their stamps, most recently used first; stale
  /// entries only with `allow_stale`.
  fn entries(&self, now: f64, allow_stale: bool) -> Vec<(f64, (Key, Value))> {
    let inner = self.lock_settled();
    inner
      .order()
      .into_iter()
      .map(|i| inner.node(i))
      .filter(|n| allow_stale || !stale(n, now))
      .map(|n| (n.stamp, (n.key.clone(), n.value.clone())))
      .collect()
  }

  /// Every entry with its stamp, TTL data and size, most recently used first.
  fn dump(&self) -> Vec<(f64, DumpEntry)> {
    let inner = self.lock_settled();
    inner
      .order()
      .into_iter()
      .map(|i| {
        let n = inner.node(i);
        let entry = DumpEntry {
          key: n.key.clone(),
          value: n.value.clone(),
          ttl: n.ttl,
          start: n.start,
          size: n.size,
        };
        (n.stamp, entry)
      })
      .collect()
  }

  /// Checks the internal structure (links, index, byte count, bounds).
  /// For tests; returns a description of the first broken invariant.
  pub fn check_invariants(&self) -> Result<(), String> {
    let inner = self.lock_settled();
    let mut count = 0usize;
    let mut bytes = 0u64;
    let mut prev = NIL;
    let mut i = inner.head;
    while i != NIL {
      let n = inner.node(i);
      let link = inner.links[i as usize];
      if link.prev != prev {
        return Err(format!("node {i} has prev {} instead of {prev}", link.prev));
      }
      if inner.map.get(n.key.encoded()) != Some(&i) {
        return Err(format!("node {i} is not indexed by its key"));
      }
      if n.size != entry_size(&n.key, &n.value) {
        return Err(format!("node {i} has a wrong size"));
      }
      count += 1;
      bytes += n.size;
      prev = i;
      i = link.next;
    }
    if prev != inner.tail {
      return Err("tail is not the last node".into());
    }
    if count != inner.map.len() {
      return Err(format!("{count} linked nodes, {} indexed", inner.map.len()));
    }
    if bytes != inner.calculated {
      return Err(format!("bytes {bytes} != calculated {}", inner.calculated));
    }
    if self.max != 0 && count as u64 > self.max {
      return Err(format!("{count} entries exceed max {}", self.max));
    }
    if self.max_size != 0 && bytes > self.max_size {
      return Err(format!("{bytes} bytes exceed maxSize {}", self.max_size));
    }
    Ok(())
  }
}

/// `total` split into `n` shares that differ by at most one and sum to it.
fn share(total: u64, n: u64, i: u64) -> u64 {
  total / n + u64::from(i < total % n)
}

/// Lists that are each most recently used first (by stamp), merged into one
/// list in that order; on equal stamps the lower shard comes first.
fn merge_newest_first<T>(lists: Vec<Vec<(f64, T)>>) -> Vec<T> {
  struct Head {
    stamp: f64,
    shard: usize,
  }
  impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
      self.cmp(other) == Ordering::Equal
    }
  }
  impl Eq for Head {}
  impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
      Some(self.cmp(other))
    }
  }
  impl Ord for Head {
    // The max-heap pops the newest stamp, then the lowest shard.
    fn cmp(&self, other: &Self) -> Ordering {
      self
        .stamp
        .total_cmp(&other.stamp)
        .then(other.shard.cmp(&self.shard))
    }
  }
  let total = lists.iter().map(Vec::len).sum();
  let mut iters: Vec<_> = lists
    .into_iter()
    .map(|l| l.into_iter().peekable())
    .collect();
  let mut heap = BinaryHeap::new();
  for (shard, it) in iters.iter_mut().enumerate() {
    if let Some(&(stamp, _)) = it.peek() {
      heap.push(Head { stamp, shard });
    }
  }
  let mut merged = Vec::with_capacity(total);
  while let Some(Head { shard, .. }) = heap.pop() {
    let it = &mut iters[shard];
    let (_, item) = it.next().expect("a queued shard has a next entry");
    merged.push(item);
    if let Some(&(stamp, _)) = it.peek() {
      heap.push(Head { stamp, shard });
    }
  }
  merged
}

impl SharedCache {
  /// An empty store with `options`. Validation of the options is the
  /// caller's job (the JS layer checks them with lru-cache's messages);
  /// `shards` is clamped to 1..=[`MAX_SHARDS`], to `max` and to `max_size`.
  ///
  /// With more than one shard, each key belongs to one shard (by a keyed
  /// hash) and each shard keeps its own exact LRU order within its share of
  /// `max` and `max_size`, so the store as a whole is approximately LRU, and
  /// an entry larger than one shard's share of `max_size` is refused.
  pub fn new(options: Options) -> Self {
    let mut n = u64::from(options.shards.clamp(1, MAX_SHARDS));
    if options.max != 0 {
      n = n.min(options.max);
    }
    // A share of 0 bytes would read as "no byte limit".
    if options.max_size != 0 {
      n = n.min(options.max_size);
    }
    let max_entry = if options.max_entry_size != 0 {
      options.max_entry_size
    } else {
      options.max_size
    };
    let shards = (0..n)
      .map(|i| {
        let max = if options.max == 0 {
          0
        } else {
          share(options.max, n, i)
        };
        let max_size = if options.max_size == 0 {
          0
        } else {
          share(options.max_size, n, i)
        };
        let max_entry = match (max_entry, max_size) {
          (0, limit) | (limit, 0) => limit,
          (a, b) => a.min(b),
        };
        Shard::new(max, max_size, max_entry, options.ttl)
      })
      .collect();
    Self {
      options,
      shards,
      hasher: RandomState::new(),
    }
  }

  /// The options this store was created with.
  pub fn options(&self) -> Options {
    self.options
  }

  /// How many shards the store has.
  pub fn shard_count(&self) -> usize {
    self.shards.len()
  }

  /// The effective largest entry size in bytes (0: unlimited): with
  /// shards, no more than the smallest shard's share of `max_size`.
  pub fn max_entry_size(&self) -> u64 {
    self.shards.iter().map(|s| s.max_entry).min().unwrap_or(0)
  }

  fn shard(&self, key: &[u8]) -> &Shard {
    if self.shards.len() == 1 {
      return &self.shards[0];
    }
    let h = self.hasher.hash_one(key);
    &self.shards[(h % self.shards.len() as u64) as usize]
  }

  /// How many entries are held (fresh or stale).
  pub fn len(&self) -> usize {
    self.shards.iter().map(Shard::len).sum()
  }

  /// Whether no entry is held.
  pub fn is_empty(&self) -> bool {
    self.shards.iter().all(Shard::is_empty)
  }

  /// The bytes held by all entries (see [`entry_size`]).
  pub fn calculated_size(&self) -> u64 {
    self.shards.iter().map(Shard::calculated_size).sum()
  }

  /// The counters since creation.
  pub fn stats(&self) -> Stats {
    self.snapshot().2
  }

  /// Entry count, bytes and counters (each shard read under its lock).
  pub fn snapshot(&self) -> (usize, u64, Stats) {
    let mut total = (0, 0, Stats::default());
    for shard in self.shards.iter() {
      let (len, bytes, s) = shard.snapshot();
      total.0 += len;
      total.1 += bytes;
      let t = &mut total.2;
      t.hits += s.hits;
      t.misses += s.misses;
      t.sets += s.sets;
      t.evictions += s.evictions;
      t.expirations += s.expirations;
      t.deletes += s.deletes;
    }
    total
  }

  /// Looks `key` up and marks it most recently used.
  ///
  /// A stale entry is removed (reason `Expire`, unless
  /// `no_delete_on_stale`) and returned only with `allow_stale`.
  pub fn get(
    &self,
    key: &[u8],
    now: f64,
    opts: ReadOptions,
    out: Option<&mut Vec<Disposed>>,
  ) -> Option<Value> {
    self.shard(key).get(key, now, opts, out)
  }

  /// Whether `key` holds a fresh value. Does not change recency; with
  /// `update_age` a fresh entry's TTL restarts.
  pub fn has(&self, key: &[u8], now: f64, update_age: bool) -> bool {
    self.shard(key).has(key, now, update_age)
  }

  /// The value of `key` without changing recency or removing it when stale.
  pub fn peek(&self, key: &[u8], now: f64, allow_stale: bool) -> Option<Value> {
    self.shard(key).peek(key, now, allow_stale)
  }

  /// Stores `value` under `key` as the most recently used entry, evicting
  /// least recently used entries (of its shard) until `max` and `max_size`
  /// hold.
  pub fn set(
    &self,
    key: Key,
    value: Value,
    now: f64,
    opts: WriteOptions,
    out: Option<&mut Vec<Disposed>>,
  ) -> SetOutcome {
    self.shard(key.encoded()).set(key, value, now, opts, out)
  }

  /// Removes `key`. Returns whether it was present.
  pub fn delete(&self, key: &[u8], out: Option<&mut Vec<Disposed>>) -> bool {
    self.shard(key).delete(key, out)
  }

  /// Removes every entry (reason `Delete`), least recently used first
  /// (shard by shard).
  pub fn clear(&self, mut out: Option<&mut Vec<Disposed>>) {
    for shard in self.shards.iter() {
      shard.clear(out.as_deref_mut());
    }
  }

  /// Removes and returns the least recently used entry (reason `Evict`):
  /// with shards, the oldest of the shards' least recently used entries.
  pub fn pop(&self, out: Option<&mut Vec<Disposed>>) -> Option<(Key, Value)> {
    if self.shards.len() == 1 {
      return self.shards[0].pop(out);
    }
    let oldest = self
      .shards
      .iter()
      .filter_map(|s| s.head_stamp().map(|stamp| (stamp, s)))
      .min_by(|a, b| a.0.total_cmp(&b.0))?;
    oldest.1.pop(out)
  }

  /// Milliseconds left in `key`'s TTL: 0 if absent, infinity without a
  /// TTL, negative once stale.
  pub fn remaining_ttl(&self, key: &[u8], now: f64) -> f64 {
    self.shard(key).remaining_ttl(key, now)
  }

  /// Removes every stale entry (reason `Expire`). Returns whether any was.
  pub fn purge_stale(&self, now: f64, mut out: Option<&mut Vec<Disposed>>) -> bool {
    let mut any = false;
    for shard in self.shards.iter() {
      any |= shard.purge_stale(now, out.as_deref_mut());
    }
    any
  }

  /// A snapshot of the entries, most recently used first (or least first
  /// with `reverse`); stale entries only with `allow_stale`. With shards,
  /// the shards' orders merged by the time of each entry's last use.
  pub fn entries(&self, now: f64, allow_stale: bool, reverse: bool) -> Vec<(Key, Value)> {
    let lists = self
      .shards
      .iter()
      .map(|s| s.entries(now, allow_stale))
      .collect();
    let mut all = merge_newest_first(lists);
    if reverse {
      all.reverse();
    }
    all
  }

  /// Every entry with its TTL data and size, least recently used first
  /// (the order in which re-setting them rebuilds the same cache).
  pub fn dump(&self) -> Vec<DumpEntry> {
    let lists = self.shards.iter().map(Shard::dump).collect();
    let mut all = merge_newest_first(lists);
    all.reverse();
    all
  }

  /// Checks the internal structure of every shard (links, index, byte
  /// count, its bounds) and the store's bounds. For tests; returns a
  /// description of the first broken invariant.
  pub fn check_invariants(&self) -> Result<(), String> {
    for (i, shard) in self.shards.iter().enumerate() {
      shard
        .check_invariants()
        .map_err(|e| format!("shard {i}: {e}"))?;
    }
    let (count, bytes, _) = self.snapshot();
    if self.options.max != 0 && count as u64 > self.options.max {
      return Err(format!("{count} entries exceed max {}", self.options.max));
    }
    if self.options.max_size != 0 && bytes > self.options.max_size {
      return Err(format!(
        "{bytes} bytes exceed maxSize {}",
        self.options.max_size
      ));
    }
    Ok(())
  }
}

/// The in-flight `fetch()` calls of one named cache, so that concurrent
/// fetches of a key in any threads run the fetch method once.
///
/// The first caller of [`Flights::join`] for a key becomes its owner and runs
/// the fetch; later callers are queued as waiters (`W` is whatever the glue
/// needs to wake them) until the owner calls [`Flights::finish`], or the
/// owner goes away and [`Flights::abandon`] hands back all its waiters.
pub struct Flights<W> {
  inner: Mutex<HashMap<Key, Flight<W>>>,
}

struct Flight<W> {
  owner: u64,
  waiters: Vec<W>,
}

/// What [`Flights::join`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
  /// No fetch of the key was running: the caller owns it now.
  Owner,
  /// Another caller is fetching the key: the caller's waiter was queued.
  Waiting,
}

impl<W> Default for Flights<W> {
  fn default() -> Self {
    Self {
      inner: Mutex::new(HashMap::new()),
    }
  }
}

impl<W> Flights<W> {
  /// Joins the fetch of `key`: becomes its owner (`owner` is the caller's
  /// id) if none runs, else queues the waiter `make_waiter()` makes.
  pub fn join(&self, key: &[u8], owner: u64, make_waiter: impl FnOnce() -> W) -> Joined {
    let mut flights = self.inner.lock();
    match flights.get_mut(key) {
      Some(flight) => {
        flight.waiters.push(make_waiter());
        Joined::Waiting
      }
      None => {
        flights.insert(
          Key::from_encoded(key),
          Flight {
            owner,
            waiters: Vec::new(),
          },
        );
        Joined::Owner
      }
    }
  }

  /// Ends `owner`'s fetch of `key` and returns its waiters to wake. A fetch
  /// that is not `owner`'s (already abandoned) is left alone.
  pub fn finish(&self, key: &[u8], owner: u64) -> Vec<W> {
    let mut flights = self.inner.lock();
    match flights.get(key) {
      Some(flight) if flight.owner == owner => {
        flights.remove(key).map(|f| f.waiters).unwrap_or_default()
      }
      _ => Vec::new(),
    }
  }

  /// Ends every fetch `owner` runs (its thread closed the cache or exited)
  /// and returns their waiters to wake.
  pub fn abandon(&self, owner: u64) -> Vec<W> {
    let mut flights = self.inner.lock();
    let mut woken = Vec::new();
    flights.retain(|_, flight| {
      if flight.owner == owner {
        woken.append(&mut flight.waiters);
        false
      } else {
        true
      }
    });
    woken
  }

  /// How many keys are being fetched.
  pub fn len(&self) -> usize {
    self.inner.lock().len()
  }

  /// Whether no key is being fetched.
  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::collections::HashSet;
  use std::thread;

  fn s(v: &str) -> Value {
    Value::new(0, v.as_bytes())
  }

  fn k(v: &str) -> Key {
    Key::str(v)
  }

  fn kb(v: &str) -> Vec<u8> {
    Key::str(v).encoded().to_vec()
  }

  fn set(c: &SharedCache, key: &str, v: &str, now: f64) -> Vec<Disposed> {
    let mut out = Vec::new();
    c.set(k(key), s(v), now, WriteOptions::default(), Some(&mut out));
    out
  }

  fn get(c: &SharedCache, key: &str, now: f64) -> Option<String> {
    c.get(&kb(key), now, ReadOptions::default(), None)
      .map(|v| String::from_utf8(v.bytes.to_vec()).unwrap())
  }

  fn keys(c: &SharedCache) -> Vec<String> {
    c.entries(0.0, false, false)
      .into_iter()
      .map(|(key, _)| String::from_utf8(key.as_str_bytes().unwrap().to_vec()).unwrap())
      .collect()
  }

  #[test]
  fn max_evicts_the_least_recently_used_entry() {
    let c = SharedCache::new(Options {
      max: 3,
      ..Options::default()
    });
    for key in ["a", "b", "c"] {
      set(&c, key, key, 0.0);
    }
    assert_eq!(get(&c, "a", 0.0).as_deref(), Some("a"));
    let out = set(&c, "d", "d", 0.0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, k("b"));
    assert_eq!(out[0].reason, Reason::Evict);
    assert_eq!(keys(&c), ["d", "a", "c"]);
    assert_eq!(c.stats().evictions, 1);
    c.check_invariants().unwrap();
  }

  #[test]
  fn pending_hits_keep_the_exact_order_past_a_batch() {
    // More hits than one batch of pending moves, in a scrambled order,
    // checked against a model list after each round and across evictions.
    let n = 3000usize;
    let c = SharedCache::new(Options {
      max: n as u64,
      ..Options::default()
    });
    let mut model: Vec<String> = Vec::new(); // least recently used first
    for i in 0..n {
      let key = format!("k{i}");
      set(&c, &key, "v", 0.0);
      model.push(key);
    }
    let mut rng = Rng(7);
    for round in 0..3 {
      for _ in 0..(PENDING_MAX * 2 + 17) {
        let key = model[(rng.next() % n as u64) as usize].clone();
        assert!(get(&c, &key, 0.0).is_some());
        let at = model.iter().position(|m| *m == key).unwrap();
        let moved = model.remove(at);
        model.push(moved);
      }
      // an add at the count limit evicts the model's least recent key
      let key = format!("new{round}");
      let out = set(&c, &key, "v", 0.0);
      assert_eq!(out[0].key, k(&model.remove(0)), "round {round}");
      model.push(key);
      let mut newest_first = model.clone();
      newest_first.reverse();
      assert_eq!(keys(&c), newest_first, "round {round}");
      c.check_invariants().unwrap();
    }
  }

  #[test]
  fn shards_split_the_bounds_and_keep_each_shard_lru() {
    let c = SharedCache::new(Options {
      max: 10,
      shards: 4,
      ..Options::default()
    });
    assert_eq!(c.shard_count(), 4);
    let shares: Vec<u64> = c.shards.iter().map(|s| s.max).collect();
    assert_eq!(shares, [3, 3, 2, 2]);
    for i in 0..200 {
      set(&c, &format!("k{i}"), "v", f64::from(i));
      assert!(c.len() <= 10);
      c.check_invariants().unwrap();
    }
    // Each shard holds its most recent keys: every shard is full, and a key
    // is held only if no newer key of its shard was evicted before it.
    assert_eq!(c.len(), 10);
    for shard in c.shards.iter() {
      assert_eq!(shard.len() as u64, shard.max);
    }
    // More shards than `max` are clamped to `max`, and than `max_size` to
    // `max_size` (a share of 0 bytes would mean no byte limit).
    let tiny = SharedCache::new(Options {
      max: 2,
      shards: 16,
      ..Options::default()
    });
    assert_eq!(tiny.shard_count(), 2);
    let few_bytes = SharedCache::new(Options {
      max_size: 3,
      shards: 16,
      ..Options::default()
    });
    assert_eq!(few_bytes.shard_count(), 3);
    assert!(few_bytes.shards.iter().all(|s| s.max_size == 1));
  }

  #[test]
  fn shards_merge_their_orders_by_last_use() {
    let c = SharedCache::new(Options {
      max: 100,
      shards: 8,
      ..Options::default()
    });
    for i in 0..20 {
      set(&c, &format!("k{i}"), "v", f64::from(i));
    }
    // reads at later times make k3, k11, k0 the most recent, in that order
    for (t, key) in [(100.0, "k0"), (101.0, "k11"), (102.0, "k3")] {
      assert!(get(&c, key, t).is_some());
    }
    let mut expected: Vec<String> = vec!["k3".into(), "k11".into(), "k0".into()];
    expected.extend(
      (1..20)
        .rev()
        .filter(|i| ![3, 11].contains(i))
        .map(|i| format!("k{i}")),
    );
    assert_eq!(keys(&c), expected);
    let dumped: Vec<Key> = c.dump().into_iter().map(|e| e.key).collect();
    let mut oldest_first: Vec<Key> = expected.iter().map(|e| k(e)).collect();
    oldest_first.reverse();
    assert_eq!(dumped, oldest_first);
    // pop takes the oldest entry of all shards
    assert_eq!(c.pop(None).unwrap().0, k("k1"));
    assert_eq!(c.pop(None).unwrap().0, k("k2"));
    c.check_invariants().unwrap();
  }

  #[test]
  fn a_shard_refuses_an_entry_larger_than_its_share_of_max_size() {
    let one = entry_size(&k("a"), &s(&"x".repeat(100)));
    let c = SharedCache::new(Options {
      max_size: one * 4,
      shards: 4,
      ..Options::default()
    });
    assert_eq!(c.max_entry_size(), one);
    let fits = "x".repeat(100);
    assert_eq!(
      c.set(k("a"), s(&fits), 0.0, WriteOptions::default(), None),
      SetOutcome::Stored
    );
    let too_big = "x".repeat(101);
    assert_eq!(
      c.set(k("b"), s(&too_big), 0.0, WriteOptions::default(), None),
      SetOutcome::TooLarge
    );
    assert!(c.calculated_size() <= one * 4);
    c.check_invariants().unwrap();
  }

  #[test]
  fn max_size_counts_real_bytes_and_evicts_until_the_entry_fits() {
    let one = entry_size(&k("a"), &s(&"x".repeat(100)));
    let c = SharedCache::new(Options {
      max_size: one * 3,
      ..Options::default()
    });
    for key in ["a", "b", "c"] {
      set(&c, key, &"x".repeat(100), 0.0);
    }
    assert_eq!(c.calculated_size(), one * 3);
    let bigger = "y".repeat(150);
    let out = set(&c, "d", &bigger, 0.0);
    let evicted: Vec<_> = out.iter().map(|d| d.key.clone()).collect();
    assert_eq!(evicted, [k("a"), k("b")]);
    assert!(c.calculated_size() <= one * 3);
    assert_eq!(c.len(), 2);
    c.check_invariants().unwrap();
  }

  #[test]
  fn an_entry_larger_than_max_entry_size_is_refused_and_the_old_value_removed() {
    let c = SharedCache::new(Options {
      max_size: 1000,
      max_entry_size: ENTRY_OVERHEAD + 100,
      ..Options::default()
    });
    set(&c, "a", "small", 0.0);
    let mut out = Vec::new();
    let outcome = c.set(
      k("a"),
      s(&"z".repeat(200)),
      0.0,
      WriteOptions::default(),
      Some(&mut out),
    );
    assert_eq!(outcome, SetOutcome::TooLarge);
    assert_eq!(out[0].reason, Reason::Set);
    assert!(c.is_empty());
    assert_eq!(c.calculated_size(), 0);
  }

  #[test]
  fn replacing_a_value_reports_the_old_one_unless_it_is_equal() {
    let c = SharedCache::new(Options {
      max: 10,
      ..Options::default()
    });
    set(&c, "a", "1", 0.0);
    assert!(set(&c, "a", "1", 0.0).is_empty(), "same bytes: no dispose");
    let out = set(&c, "a", "2", 0.0);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].reason, out[0].value.clone()), (Reason::Set, s("1")));
    let mut out = Vec::new();
    c.set(
      k("a"),
      s("3"),
      0.0,
      WriteOptions {
        no_dispose_on_set: true,
        ..WriteOptions::default()
      },
      Some(&mut out),
    );
    assert!(out.is_empty());
    assert_eq!(get(&c, "a", 0.0).as_deref(), Some("3"));
  }

  #[test]
  fn ttl_expires_entries_strictly_after_ttl_ms() {
    let c = SharedCache::new(Options {
      max: 10,
      ttl: 100.0,
      ..Options::default()
    });
    set(&c, "a", "1", 1000.0);
    assert_eq!(c.remaining_ttl(&kb("a"), 1040.0), 60.0);
    assert_eq!(
      get(&c, "a", 1100.0).as_deref(),
      Some("1"),
      "age == ttl is fresh"
    );
    assert!(c.has(&kb("a"), 1100.0, false));
    assert!(!c.has(&kb("a"), 1101.0, false));
    assert_eq!(c.peek(&kb("a"), 1101.0, false), None);
    assert_eq!(c.peek(&kb("a"), 1101.0, true), Some(s("1")));
    let mut out = Vec::new();
    let stale = c.get(
      &kb("a"),
      1101.0,
      ReadOptions {
        allow_stale: true,
        ..ReadOptions::default()
      },
      Some(&mut out),
    );
    assert_eq!(stale, Some(s("1")), "allowStale returns it once");
    assert_eq!(out[0].reason, Reason::Expire);
    assert!(c.is_empty());
    assert_eq!(c.remaining_ttl(&kb("a"), 1101.0), 0.0);
    let st = c.stats();
    assert_eq!((st.hits, st.misses, st.expirations), (1, 1, 1));
  }

  #[test]
  fn update_age_on_get_and_has_restart_the_ttl() {
    let c = SharedCache::new(Options {
      max: 10,
      ttl: 100.0,
      ..Options::default()
    });
    set(&c, "a", "1", 0.0);
    let read = ReadOptions {
      update_age: true,
      ..ReadOptions::default()
    };
    c.get(&kb("a"), 90.0, read, None);
    assert_eq!(c.remaining_ttl(&kb("a"), 90.0), 100.0);
    assert!(c.has(&kb("a"), 180.0, true));
    assert_eq!(c.remaining_ttl(&kb("a"), 180.0), 100.0);
    assert!(c.has(&kb("a"), 270.0, false));
  }

  #[test]
  fn no_delete_on_stale_get_keeps_the_entry_and_purge_stale_removes_it() {
    let c = SharedCache::new(Options {
      max: 10,
      ttl: 10.0,
      ..Options::default()
    });
    set(&c, "a", "1", 0.0);
    set(&c, "b", "2", 50.0);
    let read = ReadOptions {
      no_delete_on_stale: true,
      ..ReadOptions::default()
    };
    assert_eq!(c.get(&kb("a"), 20.0, read, None), None);
    assert_eq!(c.len(), 2);
    assert_eq!(c.entries(20.0, false, false).len(), 1);
    assert_eq!(c.entries(20.0, true, true).len(), 2);
    let mut out = Vec::new();
    assert!(c.purge_stale(20.0, Some(&mut out)));
    assert_eq!(out.len(), 1);
    assert_eq!(c.len(), 1);
  }

  #[test]
  fn peek_and_has_do_not_change_recency() {
    let c = SharedCache::new(Options {
      max: 2,
      ..Options::default()
    });
    set(&c, "a", "1", 0.0);
    set(&c, "b", "2", 0.0);
    c.peek(&kb("a"), 0.0, false);
    c.has(&kb("a"), 0.0, false);
    let out = set(&c, "c", "3", 0.0);
    assert_eq!(out[0].key, k("a"));
  }

  #[test]
  fn delete_clear_and_pop_report_their_reasons() {
    let c = SharedCache::new(Options {
      max: 10,
      ..Options::default()
    });
    for key in ["a", "b", "c", "d"] {
      set(&c, key, key, 0.0);
    }
    let mut out = Vec::new();
    assert!(c.delete(&kb("b"), Some(&mut out)));
    assert!(!c.delete(&kb("b"), Some(&mut out)));
    assert_eq!(c.pop(Some(&mut out)).map(|(key, _)| key), Some(k("a")));
    c.clear(Some(&mut out));
    let reasons: Vec<_> = out.iter().map(|d| (d.key.clone(), d.reason)).collect();
    assert_eq!(
      reasons,
      [
        (k("b"), Reason::Delete),
        (k("a"), Reason::Evict),
        (k("c"), Reason::Delete),
        (k("d"), Reason::Delete)
      ]
    );
    assert_eq!(c.pop(None), None);
    assert_eq!((c.len(), c.calculated_size()), (0, 0));
    c.check_invariants().unwrap();
  }

  #[test]
  fn number_keys_follow_same_value_zero() {
    let c = SharedCache::new(Options {
      max: 10,
      ..Options::default()
    });
    c.set(
      Key::num(-0.0),
      s("zero"),
      0.0,
      WriteOptions::default(),
      None,
    );
    assert_eq!(
      c.get(&Key::encode_num(0.0), 0.0, ReadOptions::default(), None),
      Some(s("zero"))
    );
    c.set(
      Key::num(f64::NAN),
      s("nan"),
      0.0,
      WriteOptions::default(),
      None,
    );
    let other_nan = f64::from_bits(f64::NAN.to_bits() | 1);
    assert!(c.has(&Key::encode_num(other_nan), 0.0, false));
    assert_ne!(Key::num(1.0), Key::str("1"), "1 and '1' are different keys");
    assert_eq!(Key::num(2.5).as_f64(), Some(2.5));
  }

  #[test]
  fn dump_lists_least_recently_used_first_with_ttl_and_size() {
    let c = SharedCache::new(Options {
      max: 10,
      ttl: 50.0,
      ..Options::default()
    });
    set(&c, "a", "1", 5.0);
    set(&c, "b", "2", 6.0);
    let d = c.dump();
    assert_eq!(d[0].key, k("a"));
    assert_eq!((d[0].ttl, d[0].start), (50.0, 5.0));
    assert_eq!(d[1].size, entry_size(&k("b"), &s("2")));
  }

  struct Rng(u64);
  impl Rng {
    fn next(&mut self) -> u64 {
      self.0 ^= self.0 << 13;
      self.0 ^= self.0 >> 7;
      self.0 ^= self.0 << 17;
      self.0
    }
  }

  #[test]
  fn many_threads_keep_every_invariant() {
    hammer(1);
  }

  #[test]
  fn many_threads_keep_every_invariant_with_shards() {
    hammer(8);
  }

  /// 8 threads of random sets, gets, deletes and pops, then every invariant.
  fn hammer(shards: u32) {
    let one = entry_size(&k("k00"), &s(&"v".repeat(40)));
    let c = Arc::new(SharedCache::new(Options {
      max: 64,
      max_size: one * 40,
      ttl: 30.0,
      shards,
      ..Options::default()
    }));
    let threads: Vec<_> = (0..8u64)
      .map(|t| {
        let c = Arc::clone(&c);
        thread::spawn(move || {
          let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
          let mut out = Vec::new();
          for step in 0..20_000u64 {
            let now = step as f64;
            let key = format!("k{:02}", rng.next() % 100);
            match rng.next() % 10 {
              0..=3 => {
                let len = (rng.next() % 80) as usize;
                // Every value written for a key starts with the key, so a
                // reader can check it got a value some thread set for it.
                let v = format!("{key}:{}", "v".repeat(len));
                c.set(k(&key), s(&v), now, WriteOptions::default(), Some(&mut out));
              }
              4..=7 => {
                if let Some(v) = c.get(&kb(&key), now, ReadOptions::default(), Some(&mut out)) {
                  assert!(v.bytes.starts_with(key.as_bytes()), "foreign value");
                }
              }
              8 => {
                c.delete(&kb(&key), Some(&mut out));
              }
              _ => {
                if rng.next().is_multiple_of(50) {
                  c.clear(Some(&mut out));
                } else {
                  c.pop(Some(&mut out));
                }
              }
            }
            if step.is_multiple_of(512) {
              c.check_invariants().unwrap();
            }
            out.clear();
          }
        })
      })
      .collect();
    for t in threads {
      t.join().unwrap();
    }
    c.check_invariants().unwrap();
    let st = c.stats();
    assert!(st.sets > 0 && st.hits > 0 && st.evictions > 0);
    let distinct: HashSet<_> = c
      .entries(0.0, true, false)
      .into_iter()
      .map(|e| e.0)
      .collect();
    assert_eq!(distinct.len(), c.len());
  }

  #[test]
  fn the_first_fetch_of_a_key_owns_it_and_later_ones_wait() {
    let f: Flights<u32> = Flights::default();
    let a = kb("a");
    assert_eq!(f.join(&a, 1, || 0), Joined::Owner);
    assert_eq!(f.join(&a, 2, || 20), Joined::Waiting);
    assert_eq!(f.join(&a, 3, || 30), Joined::Waiting);
    assert_eq!(f.join(&kb("b"), 2, || 0), Joined::Owner);
    assert_eq!(
      f.finish(&a, 2),
      Vec::<u32>::new(),
      "only the owner ends a flight"
    );
    assert_eq!(f.finish(&a, 1), vec![20, 30]);
    assert_eq!(
      f.join(&a, 3, || 0),
      Joined::Owner,
      "a finished key can be fetched again"
    );
    assert_eq!(f.join(&a, 1, || 10), Joined::Waiting);
    assert_eq!(f.join(&kb("b"), 1, || 11), Joined::Waiting);
    let mut woken = f.abandon(3);
    woken.sort();
    assert_eq!(
      woken,
      vec![10],
      "abandon wakes the waiters of the owner's flights only"
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f.finish(&kb("b"), 2), vec![11]);
    assert!(f.is_empty());
  }
}
