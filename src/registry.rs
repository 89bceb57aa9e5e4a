//! Process-wide registries of named instances.
//!
//! A `.node` addon's statics are shared by every worker_thread of the
//! process, so a `static` [`Registry`] is how `{ name: 'sessions' }` gives
//! every thread the same state. The registry holds only weak references:
//! an instance lives while some [`Named`] handle holds it, in any thread,
//! and its entry is removed when the last handle is dropped.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// A map from names to live shared instances of `T`.
///
/// Meant to be a `static`: [`Registry::new`] is `const`.
pub struct Registry<T> {
  entries: Mutex<BTreeMap<String, Weak<T>>>,
}

impl<T> Registry<T> {
  /// An empty registry.
  pub const fn new() -> Self {
    Self {
      entries: Mutex::new(BTreeMap::new()),
    }
  }

  /// Opens the instance called `name`, creating it with `create` if no live
  /// one exists. If one exists, `check` decides whether the caller's options
  /// are compatible with it before the caller may share it.
  ///
  /// # Errors
  ///
  /// Whatever `create` or `check` return.
  ///
  /// # Examples
  ///
  /// ```
  /// use bulkhead::registry::Registry;
  /// use std::sync::atomic::{AtomicU32, Ordering};
  ///
  /// static COUNTERS: Registry<AtomicU32> = Registry::new();
  /// let a = COUNTERS.open("hits", || Ok::<_, ()>(AtomicU32::new(0)), |_| Ok(())).unwrap();
  /// let b = COUNTERS.open("hits", || Ok::<_, ()>(AtomicU32::new(0)), |_| Ok(())).unwrap();
  /// a.fetch_add(1, Ordering::SeqCst);
  /// assert_eq!(b.load(Ordering::SeqCst), 1);
  /// drop((a, b));
  /// assert_eq!(COUNTERS.len(), 0);
  /// ```
  pub fn open<E>(
    &'static self,
    name: &str,
    create: impl FnOnce() -> Result<T, E>,
    check: impl FnOnce(&T) -> Result<(), E>,
  ) -> Result<Named<T>, E> {
    let mut entries = self.entries.lock();
    if let Some(existing) = entries.get(name).and_then(Weak::upgrade) {
      check(&existing)?;
      return Ok(Named {
        registry: self,
        name: name.to_owned(),
        inner: Some(existing),
      });
    }
    let inner = Arc::new(create()?);
    entries.insert(name.to_owned(), Arc::downgrade(&inner));
    Ok(Named {
      registry: self,
      name: name.to_owned(),
      inner: Some(inner),
    })
  }

  /// How many named instances are alive.
  pub fn len(&self) -> usize {
    self.entries.lock().len()
  }

  /// Whether no named instance is alive.
  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  /// The names of the live instances, sorted.
  pub fn names(&self) -> Vec<String> {
    self.entries.lock().keys().cloned().collect()
  }

  fn release(&self, name: &str, inner: Arc<T>) {
    let mut entries = self.entries.lock();
    drop(inner);
    // Under the lock nobody can upgrade the weak reference, so a zero strong
    // count means this was the last handle anywhere in the process.
    if entries
      .get(name)
      .is_some_and(|weak| weak.strong_count() == 0)
    {
      entries.remove(name);
    }
  }
}

impl<T> Default for Registry<T> {
  fn default() -> Self {
    Self::new()
  }
}

/// A handle on a named instance. Dropping the last handle frees the
/// instance and removes its name from the registry.
pub struct Named<T: 'static> {
  registry: &'static Registry<T>,
  name: String,
  inner: Option<Arc<T>>,
}

impl<T> Named<T> {
  /// The name this instance is registered under.
  pub fn name(&self) -> &str {
    &self.name
  }
}

impl<T> Deref for Named<T> {
  type Target = T;

  fn deref(&self) -> &T {
    self
      .inner
      .as_deref()
      .expect("a Named handle holds its instance until dropped")
  }
}

impl<T> Drop for Named<T> {
  fn drop(&mut self) {
    if let Some(inner) = self.inner.take() {
      self.registry.release(&self.name, inner);
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::atomic::{AtomicU64, Ordering};
  use std::thread;

  #[test]
  fn handles_share_one_instance_and_the_last_drop_frees_it() {
    static REG: Registry<AtomicU64> = Registry::new();
    let a = REG
      .open("a", || Ok::<_, ()>(AtomicU64::new(7)), |_| Ok(()))
      .unwrap();
    let b = REG
      .open("a", || Ok::<_, ()>(AtomicU64::new(0)), |_| Ok(()))
      .unwrap();
    assert_eq!(
      b.load(Ordering::SeqCst),
      7,
      "second open shares, not creates"
    );
    assert_eq!(REG.names(), vec!["a".to_owned()]);
    drop(a);
    assert_eq!(REG.len(), 1);
    drop(b);
    assert!(REG.is_empty());
    let c = REG
      .open("a", || Ok::<_, ()>(AtomicU64::new(1)), |_| Ok(()))
      .unwrap();
    assert_eq!(c.load(Ordering::SeqCst), 1, "a freed name starts fresh");
    assert_eq!(c.name(), "a");
  }

  #[test]
  fn an_incompatible_reopen_is_refused() {
    static REG: Registry<u32> = Registry::new();
    let _a = REG.open("x", || Ok::<_, String>(10), |_| Ok(())).unwrap();
    let err = REG
      .open(
        "x",
        || Ok(20),
        |existing| {
          if *existing == 20 {
            Ok(())
          } else {
            Err(format!("max is {existing}"))
          }
        },
      )
      .err();
    assert_eq!(err.as_deref(), Some("max is 10"));
  }

  #[test]
  fn many_threads_opening_and_dropping_leave_nothing_behind() {
    static REG: Registry<AtomicU64> = Registry::new();
    let threads: Vec<_> = (0..8)
      .map(|t| {
        thread::spawn(move || {
          for i in 0..2_000u64 {
            let name = format!("n{}", (i + t) % 5);
            let h = REG
              .open(&name, || Ok::<_, ()>(AtomicU64::new(0)), |_| Ok(()))
              .unwrap();
            h.fetch_add(1, Ordering::Relaxed);
          }
        })
      })
      .collect();
    for t in threads {
      t.join().unwrap();
    }
    assert!(REG.is_empty());
  }
}
