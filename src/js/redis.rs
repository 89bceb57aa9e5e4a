//! The napi glue of distributed mode: `RedisConnection`, a handle on the
//! process-wide Redis hub (`src/redis_hub.rs`) for one URL. Internal: used by
//! `lib/redis.js`, not a public API.
//!
//! Every command returns a promise made with a deferred (a thread-safe
//! function under the hood, so a pending command keeps the event loop alive
//! until its deadline, and no longer). Lease renewals run as tasks on the
//! hub's runtime, so they continue while the JS event loop is blocked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Function, Null, Object, ToNapiValue};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, Status};
use napi_derive::napi;
use parking_lot::Mutex;
use redis::Script;

use super::guard;
use crate::error::Error;
use crate::redis_hub::{self, Deadlines, RedisHandle, Reply, TlsOptions};

/// A reply, or a failure delivered as an `Error` value with its `code` (the
/// JS layer throws it): a deferred can only reject with napi's own status
/// codes, and users match on bulkhead's.
enum JsReply {
  Ok(Reply),
  Fail(Error),
}

impl ToNapiValue for JsReply {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    match val {
      JsReply::Ok(Reply::Nil) => Null::to_napi_value(env, Null),
      JsReply::Ok(Reply::Int(i)) => f64::to_napi_value(env, i as f64),
      JsReply::Ok(Reply::Str(s)) => String::to_napi_value(env, s),
      JsReply::Ok(Reply::Arr(v)) => {
        Vec::<JsReply>::to_napi_value(env, v.into_iter().map(JsReply::Ok).collect())
      }
      JsReply::Fail(err) => {
        let code = String::to_napi_value(env, err.code.as_str().to_owned())?;
        let msg = String::to_napi_value(env, err.message)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: called on the JS thread with a live env (napi-rs calls
        // `to_napi_value` from the deferred's resolve callback); both values
        // are strings made just above.
        napi::check_status!(unsafe { sys::napi_create_error(env, code, msg, &mut out) })?;
        Ok(out)
      }
    }
  }
}

fn settle(deferred: Deferred, r: Result<Reply, Error>) {
  let value = match r {
    Ok(reply) => JsReply::Ok(reply),
    Err(e) => JsReply::Fail(e),
  };
  deferred.resolve(Box::new(move |_| Ok(value)));
}

type Deferred = napi::JsDeferred<JsReply, Box<dyn FnOnce(Env) -> napi::Result<JsReply> + Send>>;

fn closed() -> napi::Error {
  napi::Error::new(
    Status::GenericFailure,
    "ERR_CLOSED: redis connection is closed",
  )
}

fn ms(ms: f64) -> Duration {
  if ms.is_finite() && ms > 0.0 {
    Duration::from_secs_f64(ms / 1000.0)
  } else {
    Duration::from_millis(1)
  }
}

/// `(channel payload, or null once subscribed and after a reconnect)`.
type MessageFn = ThreadsafeFunction<Option<String>, (), Option<String>, Status, false, true>;
/// Called with the renewal id when a lease is lost.
type LostFn = ThreadsafeFunction<u32, (), u32, Status, false, true>;

struct Renewal {
  task: tokio::task::JoinHandle<()>,
}

/// What every lease of one handle is renewed with (`configureRenewal`).
struct RenewalPlan {
  script: Arc<Script>,
  keys: Arc<[String]>,
  interval: Duration,
  lease: Duration,
  deadlines: Deadlines,
  lost: Arc<LostFn>,
}

/// Keys and leading arguments that stay the same for every call of one
/// instance (`registerKeyset`): passed once, not converted per call.
struct Keyset {
  keys: Arc<[String]>,
  args: Arc<[String]>,
}

/// TLS settings of a `rediss://` connection, checked and normalized by
/// `lib/redis.js` (PEM as strings; internal).
#[napi(object)]
pub struct RedisTls {
  /// PEM certificates of the CAs to trust instead of the bundled roots.
  pub ca: Option<String>,
  /// PEM client certificate (chain) for mutual TLS.
  pub cert: Option<String>,
  /// PEM private key of `cert`.
  pub key: Option<String>,
  /// `false` skips verifying the server (testing only). Default `true`.
  pub reject_unauthorized: Option<bool>,
}

impl From<RedisTls> for TlsOptions {
  fn from(tls: RedisTls) -> Self {
    TlsOptions {
      ca: tls.ca.map(String::into_bytes),
      cert: tls.cert.map(String::into_bytes),
      key: tls.key.map(String::into_bytes),
      insecure: tls.reject_unauthorized == Some(false),
    }
  }
}

/// A handle on the process-wide connections to one Redis URL (internal).
#[napi]
pub struct RedisConnection {
  handle: Option<RedisHandle>,
  scripts: Vec<Arc<Script>>,
  renewals: Arc<Mutex<HashMap<u32, Renewal>>>,
  next_renewal: u32,
  subscriptions: Vec<(String, u64)>,
  /// Bounds opening a connection (the `connectTimeout` option).
  connect_timeout: Duration,
  keysets: Vec<Keyset>,
  renewal_plan: Option<RenewalPlan>,
}

impl RedisConnection {
  fn handle(&self) -> napi::Result<&RedisHandle> {
    self.handle.as_ref().ok_or_else(closed)
  }

  fn deadlines(&self, timeout_ms: f64) -> Deadlines {
    let command = ms(timeout_ms);
    Deadlines {
      command,
      connect: self.connect_timeout.min(command),
    }
  }

  fn script(&self, id: u32) -> napi::Result<Arc<Script>> {
    self
      .scripts
      .get(id as usize)
      .cloned()
      .ok_or_else(|| napi::Error::new(Status::InvalidArg, "unknown script id"))
  }
}

#[napi]
impl RedisConnection {
  /// Opens (or shares) the connections to `url` with the TLS settings
  /// `tls` (`rediss://` only). Instances share connections only when both
  /// the URL and the TLS settings are the same. Nothing is connected until
  /// the first command; opening a connection gives up after
  /// `connectTimeoutMs` (and never outlasts the command's own deadline).
  #[napi(constructor, catch_unwind)]
  pub fn new(url: String, tls: Option<RedisTls>, connect_timeout_ms: f64) -> napi::Result<Self> {
    let tls = tls.map(TlsOptions::from);
    Ok(Self {
      handle: Some(
        redis_hub::open(&url, tls.as_ref())
          .map_err(|e| napi::Error::new(Status::InvalidArg, e.message))?,
      ),
      scripts: Vec::new(),
      renewals: Arc::new(Mutex::new(HashMap::new())),
      next_renewal: 1,
      subscriptions: Vec::new(),
      connect_timeout: ms(connect_timeout_ms),
      keysets: Vec::new(),
      renewal_plan: None,
    })
  }

  /// Whether the process's Redis runtime is running (test hook).
  #[napi(catch_unwind)]
  pub fn runtime_running() -> bool {
    redis_hub::runtime_running()
  }

  /// Sends one command (`args[0]` is its name); resolves with the reply
  /// (`null`, number, string or array), rejects with `ERR_UNAVAILABLE` when
  /// Redis does not answer within `timeoutMs`.
  #[napi(catch_unwind)]
  pub fn command<'env>(
    &self,
    env: &'env Env,
    args: Vec<String>,
    timeout_ms: f64,
  ) -> napi::Result<Object<'env>> {
    let hold = self.handle()?.clone();
    let server = hold.server().clone();
    let (deferred, promise): (Deferred, _) = env.create_deferred()?;
    let mut cmd = redis::Cmd::new();
    for a in &args {
      cmd.arg(a);
    }
    let deadlines = self.deadlines(timeout_ms);
    server.runtime().clone().spawn(async move {
      let reply = server.command(cmd, deadlines).await;
      // Let go before the caller can see the reply: a `close()` made after
      // awaiting it then finds no other hold and stops the runtime at once.
      drop(server);
      drop(hold);
      settle(deferred, reply);
    });
    Ok(promise)
  }

  /// Registers a Lua script; returns its id for `eval`.
  #[napi(catch_unwind)]
  pub fn register_script(&mut self, source: String) -> u32 {
    self.scripts.push(Arc::new(Script::new(&source)));
    (self.scripts.len() - 1) as u32
  }

  /// Runs script `id` by `EVALSHA` (reloading it after `NOSCRIPT`).
  #[napi(catch_unwind)]
  pub fn eval<'env>(
    &self,
    env: &'env Env,
    id: u32,
    keys: Vec<String>,
    args: Vec<String>,
    timeout_ms: f64,
  ) -> napi::Result<Object<'env>> {
    self.spawn_eval(env, id, keys, args, timeout_ms)
  }

  /// Registers keys and leading arguments that every `evalWith` call of
  /// this handle repeats; returns the keyset id.
  #[napi(catch_unwind)]
  pub fn register_keyset(&mut self, keys: Vec<String>, args: Vec<String>) -> u32 {
    self.keysets.push(Keyset {
      keys: keys.into(),
      args: args.into(),
    });
    (self.keysets.len() - 1) as u32
  }

  /// Runs script `id` with keyset `keyset`'s keys, its arguments and then
  /// `args`: `eval` without converting the unchanging strings on every call.
  #[napi(catch_unwind)]
  pub fn eval_with<'env>(
    &self,
    env: &'env Env,
    id: u32,
    keyset: u32,
    args: Vec<String>,
    timeout_ms: f64,
  ) -> napi::Result<Object<'env>> {
    let set = self
      .keysets
      .get(keyset as usize)
      .ok_or_else(|| napi::Error::new(Status::InvalidArg, "unknown keyset id"))?;
    let keys = set.keys.clone();
    let mut all = Vec::with_capacity(set.args.len() + args.len());
    all.extend(set.args.iter().cloned());
    all.extend(args);
    self.spawn_eval(env, id, keys, all, timeout_ms)
  }

  /// Sets how `startRenewal` renews this handle's leases: every
  /// `intervalMs`, script `id` runs with `keys` and `[lease, leaseMs]`; a
  /// reply of `0` means the lease is gone, and so does failing to renew for
  /// `leaseMs` (counted from the last success): then `onLost(renewalId)` is
  /// called once and renewing that lease stops. One callback for every
  /// lease, so a task start creates no thread-safe function.
  #[napi(catch_unwind)]
  pub fn configure_renewal(
    &mut self,
    id: u32,
    keys: Vec<String>,
    interval_ms: f64,
    lease_ms: f64,
    timeout_ms: f64,
    on_lost: Function<u32, ()>,
  ) -> napi::Result<()> {
    let script = self.script(id)?;
    let lost: LostFn = on_lost
      .build_threadsafe_function::<u32>()
      .callee_handled::<false>()
      .weak::<true>()
      .build()?;
    self.renewal_plan = Some(RenewalPlan {
      script,
      keys: keys.into(),
      interval: ms(interval_ms),
      lease: ms(lease_ms),
      deadlines: self.deadlines(timeout_ms),
      lost: Arc::new(lost),
    });
    Ok(())
  }

  /// Renews `lease` from the addon's runtime thread as `configureRenewal`
  /// said, until `stopRenewal`. Returns the renewal id.
  #[napi(catch_unwind)]
  pub fn start_lease_renewal(&mut self, lease: String) -> napi::Result<u32> {
    let plan = self
      .renewal_plan
      .take()
      .ok_or_else(|| napi::Error::new(Status::InvalidArg, "configureRenewal was not called"))?;
    let args = vec![lease, plan.lease.as_millis().to_string()];
    let id = self.spawn_renewal(&plan, args);
    self.renewal_plan = Some(plan);
    id
  }

  /// Renews a lease from the addon's runtime thread: every `intervalMs`,
  /// runs script `id` with `keys`/`args`; a reply of `0` means the lease is
  /// gone, and so does failing to renew for `leaseMs` (counted from the last
  /// success): then `onLost(renewalId)` is called once and renewing stops.
  /// Returns the renewal id for `stopRenewal`. (For a lease per call site;
  /// many leases of one kind use `configureRenewal` + `startLeaseRenewal`.)
  // A struct argument would cost an object read per field on the JS thread
  // for no gain.
  #[allow(clippy::too_many_arguments)]
  #[napi(catch_unwind)]
  pub fn start_renewal(
    &mut self,
    id: u32,
    keys: Vec<String>,
    args: Vec<String>,
    interval_ms: f64,
    lease_ms: f64,
    timeout_ms: f64,
    on_lost: Function<u32, ()>,
  ) -> napi::Result<u32> {
    let lost: LostFn = on_lost
      .build_threadsafe_function::<u32>()
      .callee_handled::<false>()
      .weak::<true>()
      .build()?;
    let plan = RenewalPlan {
      script: self.script(id)?,
      keys: keys.into(),
      interval: ms(interval_ms),
      lease: ms(lease_ms),
      deadlines: self.deadlines(timeout_ms),
      lost: Arc::new(lost),
    };
    self.spawn_renewal(&plan, args)
  }

  /// Stops renewing (the task's permit was released).
  #[napi(catch_unwind)]
  pub fn stop_renewal(&self, renewal_id: u32) {
    if let Some(r) = self.renewals.lock().remove(&renewal_id) {
      r.task.abort();
    }
  }

  /// Calls `onMessage(payload)` for every message on `channel`, and
  /// `onMessage(null)` once subscribed and after the subscriber reconnected (messages may have
  /// been missed). Returns the subscription id.
  #[napi(catch_unwind)]
  pub fn subscribe(
    &mut self,
    channel: String,
    on_message: Function<Option<String>, ()>,
  ) -> napi::Result<f64> {
    let server = self.handle()?.server().clone();
    let f: MessageFn = on_message
      .build_threadsafe_function::<Option<String>>()
      .callee_handled::<false>()
      .weak::<true>()
      .build()?;
    let f = Arc::new(f);
    let id = server.subscribe(
      &channel,
      Arc::new(move |payload: Option<Vec<u8>>| {
        let text = payload.map(|p| String::from_utf8_lossy(&p).into_owned());
        f.call(text, ThreadsafeFunctionCallMode::NonBlocking);
      }),
    );
    self.subscriptions.push((channel, id));
    Ok(id as f64)
  }

  /// Ends a subscription.
  #[napi(catch_unwind)]
  pub fn unsubscribe(&mut self, channel: String, id: f64) -> napi::Result<()> {
    let server = self.handle()?.server().clone();
    server.unsubscribe(&channel, id as u64);
    self
      .subscriptions
      .retain(|(c, i)| !(c == &channel && *i == id as u64));
    Ok(())
  }

  /// Counters of this URL's connections (the whole process):
  /// `[roundTrips, unavailable, scriptReloads, connects, waitMicros,
  /// renewals, lostLeases]`.
  #[napi(catch_unwind)]
  pub fn stats(&self) -> napi::Result<Vec<f64>> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &self.handle()?.server().stats;
    Ok(
      [
        &s.round_trips,
        &s.unavailable,
        &s.script_reloads,
        &s.connects,
        &s.wait_micros,
        &s.renewals,
        &s.lost_leases,
      ]
      .iter()
      .map(|c| c.load(Relaxed) as f64)
      .collect(),
    )
  }

  /// Stops renewals and subscriptions, and lets go of the connections (the
  /// last handle of the process closes them and stops the runtime).
  #[napi(catch_unwind)]
  pub fn close(&mut self) {
    self.release();
  }
}

impl RedisConnection {
  /// Runs script `id` on the runtime; the promise settles with its reply.
  fn spawn_eval<'env, K>(
    &self,
    env: &'env Env,
    id: u32,
    keys: K,
    args: Vec<String>,
    timeout_ms: f64,
  ) -> napi::Result<Object<'env>>
  where
    K: AsRef<[String]> + Send + 'static,
  {
    let hold = self.handle()?.clone();
    let server = hold.server().clone();
    let script = self.script(id)?;
    let (deferred, promise): (Deferred, _) = env.create_deferred()?;
    let deadlines = self.deadlines(timeout_ms);
    server.runtime().clone().spawn(async move {
      let reply = server.eval(&script, keys.as_ref(), &args, deadlines).await;
      // As in `command`: the hold goes before the caller sees the reply.
      drop(server);
      drop(hold);
      settle(deferred, reply);
    });
    Ok(promise)
  }

  /// Renews one lease with `plan` and `args` until stopped or lost.
  fn spawn_renewal(&mut self, plan: &RenewalPlan, args: Vec<String>) -> napi::Result<u32> {
    let server = self.handle()?.server().clone();
    let renewal_id = self.next_renewal;
    self.next_renewal = self.next_renewal.wrapping_add(1).max(1);
    let (script, keys, lost) = (plan.script.clone(), plan.keys.clone(), plan.lost.clone());
    let (interval, lease, deadlines) = (plan.interval, plan.lease, plan.deadlines);
    let renewals = Arc::downgrade(&self.renewals);
    let task = server.runtime().clone().spawn(async move {
      let mut last_ok = tokio::time::Instant::now();
      loop {
        tokio::time::sleep(interval).await;
        let result = server.eval(&script, &keys, &args, deadlines).await;
        server
          .stats
          .renewals
          .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gone = match result {
          Ok(Reply::Int(0)) => true,
          Ok(_) => {
            last_ok = tokio::time::Instant::now();
            false
          }
          Err(_) => last_ok.elapsed() >= lease,
        };
        if gone {
          server
            .stats
            .lost_leases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
          if let Some(r) = renewals.upgrade() {
            r.lock().remove(&renewal_id);
          }
          lost.call(renewal_id, ThreadsafeFunctionCallMode::NonBlocking);
          return;
        }
      }
    });
    self.renewals.lock().insert(renewal_id, Renewal { task });
    Ok(renewal_id)
  }

  fn release(&mut self) {
    for (_, r) in self.renewals.lock().drain() {
      r.task.abort();
    }
    self.renewal_plan = None;
    if let Some(handle) = self.handle.take() {
      for (channel, id) in self.subscriptions.drain(..) {
        handle.server().unsubscribe(&channel, id);
      }
    }
  }
}

impl Drop for RedisConnection {
  fn drop(&mut self) {
    // A finalizer: a panic here must not unwind into Node.
    guard::quiet(|| {
      self.release();
    });
  }
}
