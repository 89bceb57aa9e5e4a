//! Distributed mode's Redis I/O (plain Rust, no Node types).
//!
//! One process-wide hub: a tokio runtime owned by the addon (one worker
//! thread), and per Redis URL one [`Server`] holding one multiplexed command
//! connection and, once something subscribes, one subscriber connection.
//! Every thread and every distributed instance of the process that names the
//! same URL with the same TLS settings shares them (different TLS settings
//! are different connections, so a CA or client certificate given to one
//! instance is never used for another's traffic). Both are opened lazily; the runtime is started with
//! the first [`open`] and shut down when the last [`RedisHandle`] is dropped,
//! so an idle process holds no thread or socket.
//!
//! Failure rules (design notes, "Across processes: Redis"):
//! - Every command has a deadline (`command_timeout`, connecting included). A
//!   missed deadline is [`ErrorCode::Unavailable`], never a wait.
//! - There is no offline queue and no retry: a command that failed or timed
//!   out is never sent again, and its connection is dropped (so nothing else
//!   is queued behind a dead socket); the next command opens a new one.
//! - Scripts run by `EVALSHA`; on `NOSCRIPT` (after `SCRIPT FLUSH` or a
//!   restart) the script is loaded and run once more, within the same
//!   deadline.
//!
//! TLS (`rediss://`) is the `redis` crate's, on rustls with the `ring`
//! provider: the server certificate is checked against the Mozilla roots
//! bundled by `webpki-roots` (what Node's `tls` trusts by default) or against
//! [`TlsOptions::ca`]; a handshake that fails is [`ErrorCode::Unavailable`]
//! like any other connect failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{
  AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ErrorKind, RedisError, Script,
  TlsCertificates, Value,
};
use tokio::runtime::Runtime;

use crate::error::{Error, ErrorCode};

/// A reply from Redis, reduced to what the JS layer uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
  /// `nil`.
  Nil,
  /// An integer (Lua numbers come back as integers).
  Int(i64),
  /// A string (bulk or simple; bytes that are not UTF-8 are replaced).
  Str(String),
  /// An array.
  Arr(Vec<Reply>),
}

impl From<Value> for Reply {
  fn from(value: Value) -> Self {
    match value {
      Value::Nil => Reply::Nil,
      Value::Int(i) => Reply::Int(i),
      Value::BulkString(b) => Reply::Str(String::from_utf8_lossy(&b).into_owned()),
      Value::SimpleString(s) => Reply::Str(s),
      Value::Okay => Reply::Str("OK".into()),
      Value::Array(v) | Value::Set(v) => Reply::Arr(v.into_iter().map(Reply::from).collect()),
      Value::Map(v) => Reply::Arr(
        v.into_iter()
          .flat_map(|(k, v)| [Reply::from(k), Reply::from(v)])
          .collect(),
      ),
      Value::Double(d) => Reply::Str(d.to_string()),
      Value::Boolean(b) => Reply::Int(i64::from(b)),
      other => Reply::Str(format!("{other:?}")),
    }
  }
}

/// Counters of one [`Server`] (all instances of the process on that URL).
#[derive(Default, Debug)]
pub struct ServerStats {
  /// Commands sent (a `NOSCRIPT` reload counts its `SCRIPT LOAD` and second
  /// `EVALSHA`).
  pub round_trips: AtomicU64,
  /// Commands that missed their deadline or failed on the connection.
  pub unavailable: AtomicU64,
  /// Scripts reloaded after `NOSCRIPT`.
  pub script_reloads: AtomicU64,
  /// Connections opened (the first included).
  pub connects: AtomicU64,
  /// Total microseconds spent waiting on Redis.
  pub wait_micros: AtomicU64,
  /// Lease renewals attempted.
  pub renewals: AtomicU64,
  /// Leases found lost (by a renewal reply of 0, or renewals failing for a
  /// whole lease).
  pub lost_leases: AtomicU64,
}

/// How long one command may take: `command` bounds the whole call,
/// connecting included; `connect` bounds opening a connection within it (the
/// `redis` option's `commandTimeout` and `connectTimeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
  /// The whole command, connecting included.
  pub command: Duration,
  /// Opening the connection, when the command has to.
  pub connect: Duration,
}

impl Deadlines {
  /// `command` for both.
  pub fn new(command: Duration) -> Self {
    Self {
      command,
      connect: command,
    }
  }
}

/// A pub/sub callback: receives the message payload, or `None` after the
/// subscriber connection was re-established (messages may have been missed).
pub type Listener = Arc<dyn Fn(Option<Vec<u8>>) + Send + Sync>;

struct Subscriptions {
  next_id: u64,
  /// channel -> (listener id, listener)
  channels: HashMap<String, Vec<(u64, Listener)>>,
  /// The live subscriber's sink, if connected.
  sink: Option<PubSubSink>,
  /// Whether a task is (re)connecting the subscriber.
  connecting: bool,
}

/// TLS settings beyond the `rediss://` URL (the JS `redis.tls` option).
///
/// The default (no `ca`, no client certificate, verified) is what a plain
/// `rediss://` URL gets. Not `Debug`: it may hold a private key.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
  /// PEM certificates of the CAs to trust instead of the bundled roots.
  pub ca: Option<Vec<u8>>,
  /// PEM client certificate (chain) for mutual TLS; needs `key`.
  pub cert: Option<Vec<u8>>,
  /// PEM private key of `cert` (unencrypted).
  pub key: Option<Vec<u8>>,
  /// Skip verifying the server's certificate and name (the crate's
  /// `#insecure` mode; for testing only).
  pub insecure: bool,
}

/// What makes two users share a [`Server`]: the URL and the TLS settings.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ServerKey {
  url: String,
  tls: Option<TlsOptions>,
}

/// One Redis URL's connections (with one set of TLS settings), shared by the
/// whole process.
pub struct Server {
  key: ServerKey,
  client: Client,
  runtime: tokio::runtime::Handle,
  /// `(generation, connection)`; `None` until the first command or after a
  /// failure dropped it.
  conn: tokio::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
  generation: AtomicU64,
  subs: Mutex<Subscriptions>,
  /// Counters.
  pub stats: ServerStats,
}

struct Hub {
  runtime: Option<Runtime>,
  servers: HashMap<ServerKey, Weak<Server>>,
  users: usize,
}

static HUB: std::sync::LazyLock<Mutex<Hub>> = std::sync::LazyLock::new(|| {
  Mutex::new(Hub {
    runtime: None,
    servers: HashMap::new(),
    users: 0,
  })
});

/// Whether the hub's runtime is running (a test hook: an idle process has
/// none).
pub fn runtime_running() -> bool {
  HUB.lock().runtime.is_some()
}

/// Checks a Redis URL and TLS settings and makes the crate's client for
/// them (nothing is connected). `tls` needs a `rediss://` URL; an empty
/// [`TlsOptions`] is the same as none.
///
/// # Errors
/// [`ErrorCode::InvalidArg`] naming the option and the rule: not a
/// `redis://` or `rediss://` URL, a `#fragment` in it, `tls` with
/// `redis://`, `cert` without `key` (or the reverse), or PEM that does not
/// parse.
pub fn client(url: &str, tls: Option<&TlsOptions>) -> Result<Client, Error> {
  let tls = tls.filter(|t| **t != TlsOptions::default());
  let secure = url.starts_with("rediss://");
  if !secure && !url.starts_with("redis://") {
    return Err(Error::invalid_arg(
      "options.redis must be a redis:// or rediss:// URL or { url }",
    ));
  }
  if url.contains('#') {
    // The crate reads `#insecure` as "do not verify": that is spelled
    // `tls: { rejectUnauthorized: false }` here, so it cannot be slipped in
    // through a URL copied from elsewhere.
    return Err(Error::invalid_arg(
      "options.redis.url must not have a #fragment (to skip certificate checks in tests, use tls: { rejectUnauthorized: false })",
    ));
  }
  let invalid = |e: RedisError| Error::invalid_arg(format!("options.redis: invalid URL ({e})"));
  let Some(tls) = tls else {
    if secure {
      install_crypto_provider();
    }
    return Client::open(url).map_err(invalid);
  };
  if !secure {
    return Err(Error::invalid_arg(
      "options.redis.tls needs a rediss:// URL (redis:// is plain TCP)",
    ));
  }
  install_crypto_provider();
  let url = if tls.insecure {
    format!("{url}#insecure")
  } else {
    url.to_owned()
  };
  let client_tls = match (&tls.cert, &tls.key) {
    (Some(cert), Some(key)) => Some(ClientTlsConfig {
      client_cert: cert.clone(),
      client_key: key.clone(),
    }),
    (None, None) => None,
    _ => {
      return Err(Error::invalid_arg(
        "options.redis.tls.cert and options.redis.tls.key must be given together",
      ))
    }
  };
  certificates("options.redis.tls.ca", tls.ca.as_deref())?;
  certificates("options.redis.tls.cert", tls.cert.as_deref())?;
  if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
    client_identity(cert, key)?;
  }
  if client_tls.is_none() && tls.ca.is_none() {
    return Client::open(url.as_str()).map_err(invalid);
  }
  // Parses the PEM now, so a bad certificate or key fails the constructor.
  Client::build_with_tls(
    url.as_str(),
    TlsCertificates {
      client_tls,
      root_cert: tls.ca.clone(),
    },
  )
  .map_err(|e| Error::invalid_arg(format!("options.redis.tls: {e}")))
}

/// Checks that `pem` (if given) holds at least one certificate and that they
/// all parse. (The crate would take a `ca` without any as an empty trust
/// store that refuses every server, and find a bad client certificate only
/// when connecting.)
fn certificates(option: &str, pem: Option<&[u8]>) -> Result<(), Error> {
  use rustls::pki_types::pem::PemObject;
  use rustls::pki_types::CertificateDer;
  let Some(pem) = pem else { return Ok(()) };
  let mut count = 0;
  let mut anchors = rustls::RootCertStore::empty();
  for cert in CertificateDer::pem_slice_iter(pem) {
    let cert =
      cert.map_err(|e| Error::invalid_arg(format!("{option}: bad PEM certificate ({e})")))?;
    // The same parse the crate's trust store makes (for a client
    // certificate, an early check that it is a certificate at all).
    anchors
      .add(cert)
      .map_err(|e| Error::invalid_arg(format!("{option}: unusable certificate ({e})")))?;
    count += 1;
  }
  if count == 0 {
    return Err(Error::invalid_arg(format!(
      "{option} must hold a PEM certificate (-----BEGIN CERTIFICATE-----)"
    )));
  }
  Ok(())
}

/// Checks that `key` parses and belongs to `cert` by building a throwaway
/// rustls client configuration with them (the crate does the same only when
/// it connects, where a bad key would read as "Redis unavailable").
fn client_identity(cert: &[u8], key: &[u8]) -> Result<(), Error> {
  use rustls::pki_types::pem::PemObject;
  use rustls::pki_types::{CertificateDer, PrivateKeyDer};
  let chain = CertificateDer::pem_slice_iter(cert)
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| {
      Error::invalid_arg(format!("options.redis.tls.cert: bad PEM certificate ({e})"))
    })?;
  let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
    Error::invalid_arg(format!(
      "options.redis.tls.key must be an unencrypted PEM private key ({e})"
    ))
  })?;
  rustls::ClientConfig::builder()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_client_auth_cert(chain, key)
    .map(|_| ())
    .map_err(|e| {
      Error::invalid_arg(format!(
        "options.redis.tls.key must be the private key of options.redis.tls.cert ({e})"
      ))
    })
}

/// Makes `ring` rustls's process default (this addon's own copy of rustls:
/// nothing outside it sees the choice). The crate's insecure mode reads the
/// default provider; an `Err` means it is already installed.
fn install_crypto_provider() {
  // rustls 0.23.48 deprecates `ring`'s provider because it has no
  // post-quantum key exchange; Redis servers (OpenSSL 3.0 in Redis 7) do
  // not offer one either, and aws-lc-rs (which has it) is a much larger C
  // build. Revisit with the crate's next TLS release.
  #[allow(deprecated)]
  let provider = rustls::crypto::ring::default_provider();
  let _ = provider.install_default();
}

/// A user's hold on a [`Server`]: the runtime and connections stay while any
/// handle lives; dropping the last one closes them.
pub struct RedisHandle {
  server: Arc<Server>,
}

/// Opens (or shares) the connections to `url` with the TLS settings `tls`.
///
/// # Errors
/// [`ErrorCode::InvalidArg`] for a bad URL or TLS settings (see [`client`]);
/// [`ErrorCode::Internal`] if the runtime cannot start.
pub fn open(url: &str, tls: Option<&TlsOptions>) -> Result<RedisHandle, Error> {
  let client = client(url, tls)?;
  let key = ServerKey {
    url: url.to_owned(),
    tls: tls.filter(|t| **t != TlsOptions::default()).cloned(),
  };
  let mut hub = HUB.lock();
  if hub.runtime.is_none() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
      .worker_threads(1)
      .thread_name("bulkhead-redis")
      .enable_io()
      .enable_time()
      .build()
      .map_err(|e| Error::new(ErrorCode::Internal, format!("redis runtime: {e}")))?;
    hub.runtime = Some(runtime);
  }
  let server = match hub.servers.get(&key).and_then(Weak::upgrade) {
    Some(server) => server,
    None => {
      let runtime = hub.runtime.as_ref().map(|r| r.handle().clone());
      let server = Arc::new(Server {
        key: key.clone(),
        client,
        runtime: runtime.ok_or_else(|| Error::new(ErrorCode::Internal, "no runtime"))?,
        conn: tokio::sync::Mutex::new(None),
        generation: AtomicU64::new(0),
        subs: Mutex::new(Subscriptions {
          next_id: 1,
          channels: HashMap::new(),
          sink: None,
          connecting: false,
        }),
        stats: ServerStats::default(),
      });
      hub.servers.insert(key, Arc::downgrade(&server));
      server
    }
  };
  hub.users += 1;
  Ok(RedisHandle { server })
}

impl Drop for RedisHandle {
  fn drop(&mut self) {
    let mut hub = HUB.lock();
    hub.users -= 1;
    if Arc::strong_count(&self.server) == 1 {
      hub.servers.remove(&self.server.key);
      // Closing the subscriber: dropping the sink ends its stream task once
      // the runtime stops.
      self.server.subs.lock().sink = None;
    }
    if hub.users == 0 {
      hub.servers.clear();
      if let Some(runtime) = hub.runtime.take() {
        // Shut down off this thread: the last handle may be dropped by a
        // task on the runtime itself.
        std::thread::spawn(move || runtime.shutdown_background());
      }
    }
  }
}

impl Clone for RedisHandle {
  /// Another hold on the same server (a pending command holds one, so the
  /// runtime is not shut down under it and its promise always settles).
  fn clone(&self) -> Self {
    HUB.lock().users += 1;
    RedisHandle {
      server: self.server.clone(),
    }
  }
}

impl RedisHandle {
  /// The shared server.
  pub fn server(&self) -> &Arc<Server> {
    &self.server
  }
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> Error {
  Error::new(
    ErrorCode::Unavailable,
    format!("redis unavailable: {what}: {err}"),
  )
}

fn is_connection_error(err: &RedisError) -> bool {
  err.is_io_error()
    || err.is_timeout()
    || err.is_connection_dropped()
    || err.is_connection_refusal()
    || matches!(err.kind(), ErrorKind::Io | ErrorKind::Client)
}

impl Server {
  /// The runtime the server's tasks run on.
  pub fn runtime(&self) -> &tokio::runtime::Handle {
    &self.runtime
  }

  async fn connection(&self, connect: Duration) -> Result<(u64, MultiplexedConnection), Error> {
    let mut guard = self.conn.lock().await;
    if let Some((generation, conn)) = guard.as_ref() {
      return Ok((*generation, conn.clone()));
    }
    // No response timeout inside the client: the caller's deadline bounds
    // the whole command, connecting included.
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    let conn = tokio::time::timeout(
      connect,
      self
        .client
        .get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| {
      unavailable(
        "connect",
        format!("no connection within {} ms", connect.as_millis()),
      )
    })?
    .map_err(|e| unavailable("connect", e))?;
    self.stats.connects.fetch_add(1, Ordering::Relaxed);
    let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
    *guard = Some((generation, conn.clone()));
    Ok((generation, conn))
  }

  /// Drops the connection of `generation` (if still current), so the next
  /// command opens a fresh one; commands queued on the old one fail.
  fn invalidate(&self, generation: u64) {
    if let Ok(mut guard) = self.conn.try_lock() {
      if matches!(guard.as_ref(), Some((g, _)) if *g == generation) {
        *guard = None;
      }
    } else {
      // Someone is connecting or reading; they will see the failure too.
    }
  }

  async fn with_deadline<T, F>(&self, timeout: Duration, what: &str, f: F) -> Result<T, Error>
  where
    F: std::future::Future<Output = Result<T, (Option<u64>, Error)>>,
  {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, f).await;
    self
      .stats
      .wait_micros
      .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match result {
      Ok(Ok(v)) => Ok(v),
      Ok(Err((generation, err))) => {
        if err.code == ErrorCode::Unavailable {
          self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
          if let Some(g) = generation {
            self.invalidate(g);
          }
        }
        Err(err)
      }
      Err(_) => {
        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        // The connection may hold our command in a buffer; drop it so it is
        // not reused. (Redis may still execute what it already received:
        // scripts guard against late execution with a deadline in Redis time.)
        let current = self
          .conn
          .try_lock()
          .ok()
          .and_then(|g| g.as_ref().map(|c| c.0));
        if let Some(g) = current {
          self.invalidate(g);
        }
        Err(unavailable(
          what,
          format!("no answer within {} ms", timeout.as_millis()),
        ))
      }
    }
  }

  fn map_err(err: RedisError) -> Error {
    if is_connection_error(&err) {
      unavailable("command", err)
    } else {
      Error::new(ErrorCode::Internal, format!("redis error: {err}"))
    }
  }

  /// Runs one command within `deadlines`.
  ///
  /// # Errors
  /// [`ErrorCode::Unavailable`] if Redis cannot be reached or does not answer
  /// in time; [`ErrorCode::Internal`] for an error reply.
  pub async fn command(&self, cmd: Cmd, deadlines: Deadlines) -> Result<Reply, Error> {
    self
      .with_deadline(deadlines.command, "command", async {
        let (generation, mut conn) = self
          .connection(deadlines.connect)
          .await
          .map_err(|e| (None, e))?;
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        let value: Value = cmd
          .query_async(&mut conn)
          .await
          .map_err(|e| (Some(generation), Self::map_err(e)))?;
        Ok(Reply::from(value))
      })
      .await
  }

  /// Runs `script` by `EVALSHA`, loading it once on `NOSCRIPT`, within
  /// `deadlines`.
  ///
  /// # Errors
  /// As [`Server::command`].
  pub async fn eval(
    &self,
    script: &Script,
    keys: &[String],
    args: &[String],
    deadlines: Deadlines,
  ) -> Result<Reply, Error> {
    self
      .with_deadline(deadlines.command, "script", async {
        let (generation, mut conn) = self
          .connection(deadlines.connect)
          .await
          .map_err(|e| (None, e))?;
        let fail = |e: RedisError| (Some(generation), Self::map_err(e));
        let evalsha = || {
          let mut cmd = redis::cmd("EVALSHA");
          cmd
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
          cmd
        };
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        match evalsha().query_async::<Value>(&mut conn).await {
          Ok(v) => Ok(Reply::from(v)),
          Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            self.stats.script_reloads.fetch_add(1, Ordering::Relaxed);
            self.stats.round_trips.fetch_add(2, Ordering::Relaxed);
            script.load_async(&mut conn).await.map_err(fail)?;
            let v: Value = evalsha().query_async(&mut conn).await.map_err(fail)?;
            Ok(Reply::from(v))
          }
          Err(e) => Err(fail(e)),
        }
      })
      .await
  }

  /// Calls `listener` with every message published on `channel` (and with
  /// `None` once the subscription is confirmed, and again after the
  /// subscriber reconnects). Returns an id for
  /// [`Server::unsubscribe`].
  pub fn subscribe(self: &Arc<Self>, channel: &str, listener: Listener) -> u64 {
    let mut subs = self.subs.lock();
    let id = subs.next_id;
    subs.next_id += 1;
    subs
      .channels
      .entry(channel.to_owned())
      .or_default()
      .push((id, listener));
    if let Some(sink) = subs.sink.clone() {
      // Every listener added to a live subscriber sends its own SUBSCRIBE,
      // also when its channel is subscribed already (Redis answers in order,
      // so after the reply the channel is subscribed), and is confirmed
      // alone: the channel's other listeners were told when they came, and
      // telling them again would make them drop what they hold. (A listener
      // that only joined a subscribed channel used to be told nothing.)
      let channel = channel.to_owned();
      let weak = Arc::downgrade(self);
      self.runtime.spawn(async move {
        let mut sink = sink;
        if sink.subscribe(channel.as_str()).await.is_ok() {
          if let Some(server) = weak.upgrade() {
            server.confirm_listener(&channel, id);
          }
        }
      });
    } else if !subs.connecting {
      subs.connecting = true;
      let weak = Arc::downgrade(self);
      self.runtime.spawn(subscriber_loop(weak));
    }
    id
  }

  /// Tells the listeners of `channels` `None` once Redis confirmed their
  /// subscription: a message published before that was not delivered, so a
  /// listener that was told to expect one checks again.
  fn confirm(&self, channels: &[String]) {
    let listeners: Vec<Listener> = {
      let subs = self.subs.lock();
      channels
        .iter()
        .filter_map(|c| subs.channels.get(c))
        .flat_map(|l| l.iter().map(|(_, f)| f.clone()))
        .collect()
    };
    for f in listeners {
      f(None);
    }
  }

  /// Tells one listener of `channel` `None` (see [`Server::confirm`]).
  fn confirm_listener(&self, channel: &str, id: u64) {
    let listener = {
      let subs = self.subs.lock();
      subs
        .channels
        .get(channel)
        .and_then(|l| l.iter().find(|(i, _)| *i == id))
        .map(|(_, f)| f.clone())
    };
    if let Some(f) = listener {
      f(None);
    }
  }

  /// Removes a listener; the channel is unsubscribed with its last one.
  pub fn unsubscribe(&self, channel: &str, id: u64) {
    let mut subs = self.subs.lock();
    let Some(list) = subs.channels.get_mut(channel) else {
      return;
    };
    list.retain(|(i, _)| *i != id);
    if list.is_empty() {
      subs.channels.remove(channel);
      if let Some(mut sink) = subs.sink.clone() {
        let channel = channel.to_owned();
        self.runtime.spawn(async move {
          let _ = sink.unsubscribe(channel).await;
        });
      }
    }
  }
}

/// Keeps the subscriber connected while the server lives and has channels:
/// connects, subscribes to every channel, tells their listeners `None`
/// (anything published before the subscription was missed), dispatches
/// messages; after a disconnect, waits (100 ms, doubling to 2 s) and starts
/// over.
async fn subscriber_loop(weak: Weak<Server>) {
  let mut backoff = Duration::from_millis(100);
  loop {
    let Some(server) = weak.upgrade() else { return };
    let pubsub =
      tokio::time::timeout(Duration::from_secs(2), server.client.get_async_pubsub()).await;
    let Ok(Ok(pubsub)) = pubsub else {
      drop(server);
      tokio::time::sleep(backoff).await;
      backoff = (backoff * 2).min(Duration::from_secs(2));
      continue;
    };
    let (mut sink, mut stream) = pubsub.split();
    let channels: Vec<String> = server.subs.lock().channels.keys().cloned().collect();
    let mut ok = true;
    for channel in &channels {
      if sink.subscribe(channel).await.is_err() {
        ok = false;
        break;
      }
    }
    if !ok {
      drop(server);
      tokio::time::sleep(backoff).await;
      continue;
    }
    backoff = Duration::from_millis(100);
    {
      let mut subs = server.subs.lock();
      subs.sink = Some(sink);
      subs.connecting = false;
      // Channels added while we subscribed.
      let missing: Vec<String> = subs
        .channels
        .keys()
        .filter(|c| !channels.contains(c))
        .cloned()
        .collect();
      if let Some(sink) = subs.sink.clone() {
        let weak = weak.clone();
        server.runtime.spawn(async move {
          let mut sink = sink;
          let mut confirmed = Vec::new();
          for c in missing {
            if sink.subscribe(c.as_str()).await.is_ok() {
              confirmed.push(c);
            }
          }
          if let Some(server) = weak.upgrade() {
            server.confirm(&confirmed);
          }
        });
      }
    }
    // Subscribed (first time, or again after a disconnect): messages sent
    // before now were missed, so every listener checks again.
    server.confirm(&channels);
    drop(server);
    while let Some(msg) = stream.next().await {
      let Some(server) = weak.upgrade() else { return };
      let channel = msg.get_channel_name().to_owned();
      let payload = msg.get_payload_bytes().to_vec();
      let listeners: Vec<Listener> = server
        .subs
        .lock()
        .channels
        .get(&channel)
        .map(|l| l.iter().map(|(_, f)| f.clone()).collect())
        .unwrap_or_default();
      for f in listeners {
        f(Some(payload.clone()));
      }
    }
    // Disconnected.
    let Some(server) = weak.upgrade() else { return };
    {
      let mut subs = server.subs.lock();
      subs.sink = None;
      if subs.channels.is_empty() {
        subs.connecting = false;
        return;
      }
      subs.connecting = true;
    }
    drop(server);
    tokio::time::sleep(backoff).await;
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  // The hub is process-wide: tests that open it run one at a time.
  static SERIAL: Mutex<()> = Mutex::new(());

  #[test]
  fn urls_and_tls_settings_are_checked() {
    let code = |url: &str, tls: Option<&TlsOptions>| client(url, tls).err().map(|e| e.code);
    assert_eq!(code("redis://127.0.0.1:6379/0", None), None);
    assert_eq!(code("rediss://h:1/0", None), None);
    assert_eq!(code("http://h", None), Some(ErrorCode::InvalidArg));
    assert_eq!(
      code("rediss://h:1/#insecure", None),
      Some(ErrorCode::InvalidArg)
    );
    let insecure = TlsOptions {
      insecure: true,
      ..TlsOptions::default()
    };
    assert_eq!(code("rediss://h:1/0", Some(&insecure)), None);
    // TLS settings need rediss://; an empty set is the same as none.
    let err = client("redis://h:1/0", Some(&insecure)).err().unwrap();
    assert!(err.message.contains("rediss://"), "{}", err.message);
    assert_eq!(code("redis://h:1/0", Some(&TlsOptions::default())), None);
    let no_pem = TlsOptions {
      ca: Some(b"not a certificate".to_vec()),
      ..TlsOptions::default()
    };
    let err = client("rediss://h:1/0", Some(&no_pem)).err().unwrap();
    assert!(
      err.message.contains("options.redis.tls.ca"),
      "{}",
      err.message
    );
    let half = TlsOptions {
      key: Some(b"k".to_vec()),
      ..TlsOptions::default()
    };
    let err = client("rediss://h:1/0", Some(&half)).err().unwrap();
    assert!(err.message.contains("together"), "{}", err.message);
  }

  #[test]
  fn different_tls_settings_do_not_share_a_server() {
    let _serial = SERIAL.lock();
    let insecure = TlsOptions {
      insecure: true,
      ..TlsOptions::default()
    };
    let a = open("rediss://127.0.0.1:1/", None).unwrap();
    let b = open("rediss://127.0.0.1:1/", Some(&insecure)).unwrap();
    let c = open("rediss://127.0.0.1:1/", Some(&insecure.clone())).unwrap();
    let d = open("rediss://127.0.0.1:1/", Some(&TlsOptions::default())).unwrap();
    assert!(!Arc::ptr_eq(a.server(), b.server()));
    assert!(Arc::ptr_eq(b.server(), c.server()));
    assert!(Arc::ptr_eq(a.server(), d.server()));
  }

  #[test]
  fn replies_convert() {
    let v = Value::Array(vec![
      Value::Int(3),
      Value::Nil,
      Value::BulkString(b"ab".to_vec()),
      Value::Okay,
    ]);
    assert_eq!(
      Reply::from(v),
      Reply::Arr(vec![
        Reply::Int(3),
        Reply::Nil,
        Reply::Str("ab".into()),
        Reply::Str("OK".into())
      ])
    );
  }

  #[test]
  fn the_runtime_lives_with_the_last_handle() {
    let _serial = SERIAL.lock();
    // A port nothing listens on: no connection is made by open().
    let a = open("redis://127.0.0.1:1/", None).unwrap();
    let b = open("redis://127.0.0.1:1/", None).unwrap();
    assert!(Arc::ptr_eq(a.server(), b.server()));
    assert!(runtime_running());
    drop(a);
    assert!(runtime_running());
    drop(b);
    assert!(!runtime_running());
  }

  #[test]
  fn an_unreachable_server_is_unavailable_within_the_deadline() {
    let _serial = SERIAL.lock();
    let h = open("redis://127.0.0.1:1/", None).unwrap();
    let server = h.server().clone();
    let started = std::time::Instant::now();
    let result = server.runtime().clone().block_on(async {
      server
        .command(
          redis::cmd("PING"),
          Deadlines::new(Duration::from_millis(200)),
        )
        .await
    });
    assert_eq!(result.unwrap_err().code, ErrorCode::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(server);
    drop(h);
  }
}
