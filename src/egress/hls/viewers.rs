//! HLS viewers as sessions. HLS is many short requests, not a connection,
//! so a viewer is recognised by a cookie the first playlist response sets
//! (`mediarelay_hls`), by an `hls_session` query parameter, or — for
//! players that keep neither — by client address and User-Agent. A viewer
//! with no request for the idle timeout has left. Each viewer is a reader
//! session in the hub: listed by the API, counted per protocol, with
//! `read_start`/`read_stop` events, and it can be kicked (its next request
//! gets 403).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::hub::{Hub, Protocol, Role, SessionHandle, SessionSpec};

/// The cookie that carries a viewer's id.
pub const COOKIE: &str = "mediarelay_hls";
/// The query parameter that may carry it instead.
pub const QUERY: &str = "hls_session";
/// How long a kicked viewer's id keeps being refused.
const KICKED_MEMORY: Duration = Duration::from_secs(120);
/// At most this many viewers are tracked; beyond it the oldest idle one
/// is let go early (a flood of cookie-less clients cannot grow the table).
const MAX_VIEWERS: usize = 100_000;

/// Who sent a request, before it is known whether it is served. Its path
/// is borrowed from the request while the request is answered at once
/// (the plain listener's shortcut): only a request that waits owns it.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    path: Cow<'a, str>,
    /// The id the client presented (cookie or query), if any.
    presented: Option<ViewerId>,
    from_cookie: bool,
    /// Address + User-Agent, for clients that present nothing (or an id in
    /// the query only). None for a cookie's id: a client that keeps cookies
    /// is never recognised by its fingerprint (see `Viewer::keeps_cookie`),
    /// so its requests skip the hash.
    fingerprint: Option<u64>,
    ip: Option<IpAddr>,
}

impl<'a> Caller<'a> {
    pub fn new(
        path: &'a str,
        headers: &HeaderMap,
        query: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Caller<'a> {
        let values = |name| headers.get_all(name).iter().map(|v| v.as_bytes());
        Caller::from_header_values(
            path,
            values(axum::http::header::COOKIE),
            values(axum::http::header::USER_AGENT).next(),
            query,
            ip,
        )
    }

    /// [`Caller::new`] from the values of the request's `Cookie` headers and
    /// its first `User-Agent`, as sent.
    pub fn from_header_values<'v>(
        path: &'a str,
        cookies: impl Iterator<Item = &'v [u8]>,
        user_agent: Option<&[u8]>,
        query: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Caller<'a> {
        let from_cookie = cookie_id(cookies);
        let fingerprint = from_cookie.is_none().then(|| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ip.hash(&mut h);
            user_agent.hash(&mut h);
            path.hash(&mut h);
            h.finish()
        });
        Caller {
            path: Cow::Borrowed(path),
            from_cookie: from_cookie.is_some(),
            presented: from_cookie.or_else(|| query.and_then(query_id)),
            fingerprint,
            ip,
        }
    }

    /// The path the request is for.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The same caller, owning its path (for a request that waits).
    pub fn into_owned(self) -> Caller<'static> {
        Caller {
            path: Cow::Owned(self.path.into_owned()),
            presented: self.presented,
            from_cookie: self.from_cookie,
            fingerprint: self.fingerprint,
            ip: self.ip,
        }
    }
}

/// A viewer id: 128 random bits, written as 32 hex digits (lowercase in
/// the cookie the server sets; either case is read back). Kept as the
/// number: no string is made or hashed for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ViewerId(u128);

impl ViewerId {
    fn new() -> ViewerId {
        ViewerId(rand::random())
    }
}

impl std::fmt::Display for ViewerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The value of each ASCII hex digit; 16 for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [16u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => 16,
        };
        b += 1;
    }
    table
};

/// The id `s` writes, if it is exactly 32 hex digits. Read on every HLS
/// request that carries one: a table lookup per digit, one test at the end.
fn id_of(s: &[u8]) -> Option<ViewerId> {
    let digits: &[u8; 32] = s.try_into().ok()?;
    let (id, seen) = digits.iter().fold((0u128, 0u8), |(id, seen), &b| {
        let value = HEX_VALUE[usize::from(b)];
        (id << 4 | u128::from(value & 15), seen | value)
    });
    // A byte that is no digit set bit 4.
    (seen < 16).then_some(ViewerId(id))
}

/// The viewer id among `Cookie` header values (RFC 6265 §5.4): the first
/// `mediarelay_hls=<id>` pair; values that are not visible ASCII are
/// skipped, as `HeaderValue::to_str` does. Read as bytes, once each.
fn cookie_id<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<ViewerId> {
    values
        // Every byte looked at (no early exit), which the compiler can
        // vectorize: a cookie header is short.
        .filter(|v| {
            v.iter().fold(true, |ok, &b| {
                ok & (b == b'\t' || (0x20..0x7f).contains(&b))
            })
        })
        .flat_map(|v| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let value = pair
                .trim_ascii()
                .strip_prefix(COOKIE.as_bytes())?
                .strip_prefix(b"=")?;
            id_of(value)
        })
}

fn query_id(query: &str) -> Option<ViewerId> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find_map(|(k, v)| {
            if k == QUERY {
                id_of(v.as_bytes())
            } else {
                None
            }
        })
}

/// A viewer in the table. Shared with the requests it let in
/// ([`Admitted`]), which record themselves on it without the table's lock.
struct Viewer {
    id: ViewerId,
    session: SessionHandle,
    path: String,
    /// When its last request was served: nanoseconds after [`Viewers`]'
    /// `epoch`.
    last: AtomicU64,
    /// The client sent the cookie back: it keeps cookies, so a cookie-less
    /// request with the same fingerprint is somebody else.
    keeps_cookie: AtomicBool,
    /// The fingerprint it was first seen with, if it came without a cookie.
    fingerprint: Option<u64>,
    /// Taken out of the table (left, evicted or kicked): a request let in
    /// before that is recorded through the table again.
    gone: AtomicBool,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<ViewerId, Arc<Viewer>>,
    by_fingerprint: HashMap<u64, ViewerId>,
    kicked: HashMap<ViewerId, Instant>,
}

impl Table {
    /// Takes viewer `id` out of the table, marked `gone` for the requests
    /// that still hold it.
    fn remove(&mut self, id: &ViewerId) -> Option<Arc<Viewer>> {
        let v = self.by_id.remove(id)?;
        v.gone.store(true, Ordering::Release);
        Some(v)
    }
}

/// The HLS viewers of every path.
pub struct Viewers {
    hub: Hub,
    table: Mutex<Table>,
    /// The origin of each viewer's `last`.
    epoch: Instant,
}

/// A request [`Viewers::enter`] let in; [`Admitted::served`] records it.
/// Holds the viewer when it presented the id of a known viewer of the same
/// path (every request of a player but its first), so that recording it
/// takes no lock and no lookup.
pub struct Admitted {
    viewer: Option<Arc<Viewer>>,
}

impl Admitted {
    /// [`Viewers::served`] for a request `enter` let in.
    pub fn served(self, viewers: &Viewers, caller: &Caller) -> Served {
        match self.viewer {
            Some(v) if !v.gone.load(Ordering::Acquire) => visited(&v, caller, viewers.now()),
            _ => viewers.served(caller),
        }
    }
}

/// Why a request is not served.
#[derive(Debug)]
pub enum Refusal {
    /// Its viewer was kicked.
    Kicked,
    /// A new viewer of a path at its maximum of readers.
    Full(crate::hub::ReadError),
}

/// What to do with a served response for a viewer.
pub struct Served {
    /// A `Set-Cookie` header value to send (the viewer has no cookie yet).
    pub set_cookie: Option<String>,
    pub session: Arc<crate::hub::Session>,
}

impl Viewers {
    pub fn new(hub: Hub) -> Viewers {
        Viewers {
            hub,
            table: Mutex::new(Table::default()),
            epoch: Instant::now(),
        }
    }

    /// Now, as a viewer's `last`.
    fn now(&self) -> u64 {
        nanos_since(self.epoch, Instant::now())
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the caller presented the id of a live session of this path
    /// (which was authorized when it started: sessions are only made for
    /// served requests).
    pub fn is_authorized(&self, caller: &Caller) -> bool {
        let t = self.lock();
        caller.presented.as_ref().is_some_and(|id| {
            t.by_id
                .get(id)
                .is_some_and(|v| v.path == caller.path && !v.session.is_cancelled())
        })
    }

    /// Whether `caller` may be served: not a viewer whose session was
    /// kicked (refused for a while after), and not a new viewer of a path
    /// that has its maximum of readers (`limits.max_readers_per_path`);
    /// known viewers go on. One lookup of the caller under one lock.
    pub fn enter(&self, caller: &Caller) -> Result<Admitted, Refusal> {
        let (known, viewer) = {
            let mut t = self.lock();
            if !t.kicked.is_empty() {
                let now = Instant::now();
                t.kicked
                    .retain(|_, at| now.duration_since(*at) < KICKED_MEMORY);
            }
            match &caller.presented {
                Some(id) => {
                    if t.kicked.contains_key(id) {
                        return Err(Refusal::Kicked);
                    }
                    match t.by_id.get(id) {
                        Some(v) if v.session.is_cancelled() => {
                            let id = *id;
                            t.remove(&id);
                            t.kicked.insert(id, Instant::now());
                            return Err(Refusal::Kicked);
                        }
                        Some(v) => (true, (v.path == caller.path).then(|| Arc::clone(v))),
                        None => (false, None),
                    }
                }
                None => {
                    let known = caller
                        .fingerprint
                        .and_then(|f| t.by_fingerprint.get(&f))
                        .is_some_and(|id| {
                            t.by_id
                                .get(id)
                                .is_some_and(|v| !v.keeps_cookie.load(Ordering::Relaxed))
                        });
                    (known, None)
                }
            }
        };
        if !known {
            self.hub
                .check_reader_limit(&caller.path)
                .map_err(Refusal::Full)?;
        }
        Ok(Admitted { viewer })
    }

    /// Records a served request of `caller`; starts its session if new.
    pub fn served(&self, caller: &Caller) -> Served {
        let now = self.now();
        let mut t = self.lock();
        // A viewer that presents its own id (every request but its first):
        // found without copying the id.
        if let Some(id) = &caller.presented
            && let Some(v) = t.by_id.get(id)
            && v.path == caller.path
        {
            return visited(v, caller, now);
        }
        // The viewer this request belongs to, if it is known.
        let known = match &caller.presented {
            Some(id) if t.by_id.get(id).is_some_and(|v| v.path == caller.path) => Some(*id),
            Some(_) => None,
            None => caller
                .fingerprint
                .and_then(|f| t.by_fingerprint.get(&f))
                .filter(|id| {
                    t.by_id.get(*id).is_some_and(|v| {
                        !v.keeps_cookie.load(Ordering::Relaxed) && v.path == caller.path
                    })
                })
                .copied(),
        };
        let id = match known {
            Some(id) => id,
            None => {
                // A new viewer. An id presented for another path (a cookie
                // of a parent path) is not taken over: it gets its own.
                let id = caller
                    .presented
                    .filter(|id| !t.by_id.contains_key(id))
                    .unwrap_or_else(ViewerId::new);
                if t.by_id.len() >= MAX_VIEWERS {
                    evict_oldest(&mut t);
                }
                if let Some(f) = caller.fingerprint {
                    t.by_fingerprint.insert(f, id);
                }
                id
            }
        };
        let v = match t.by_id.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let session = self.hub.register_session(SessionSpec {
                    protocol: Protocol::Hls,
                    role: Role::Reader,
                    path: caller.path.to_string(),
                    remote: caller.ip.map(|ip| (ip, 0).into()),
                    query: String::new(),
                    token: None,
                });
                tracing::debug!(path = %caller.path, session = session.id, "HLS viewer arrived");
                e.insert(Arc::new(Viewer {
                    id,
                    session,
                    path: caller.path.to_string(),
                    last: AtomicU64::new(now),
                    keeps_cookie: AtomicBool::new(false),
                    fingerprint: caller.fingerprint,
                    gone: AtomicBool::new(false),
                }))
            }
        };
        visited(v, caller, now)
    }

    /// Ends the sessions of viewers with no request for `idle`.
    pub fn expire(&self, idle: Duration) {
        let at = Instant::now();
        let now = nanos_since(self.epoch, at);
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        let mut t = self.lock();
        let gone: Vec<ViewerId> = t
            .by_id
            .iter()
            .filter(|(_, v)| {
                now.saturating_sub(v.last.load(Ordering::Relaxed)) >= idle
                    || v.session.is_cancelled()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(v) = t.remove(&id) {
                if v.session.is_cancelled() {
                    t.kicked.insert(id, at);
                }
                forget_fingerprint(&mut t, &v, id);
                tracing::debug!(path = %v.path, session = v.session.id, "HLS viewer left");
            }
        }
    }

    /// Viewers tracked now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Nanoseconds from `epoch` to `at`.
fn nanos_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// Records a request of viewer `v` by `caller` at `now` (see `Viewer::last`).
fn visited(v: &Viewer, caller: &Caller, now: u64) -> Served {
    v.last.store(now, Ordering::Relaxed);
    if caller.from_cookie && !v.keeps_cookie.load(Ordering::Relaxed) {
        v.keeps_cookie.store(true, Ordering::Relaxed);
    }
    let session = Arc::clone(v.session.arc());
    // A cookie for a viewer that did not send this one back.
    let id = v.id;
    let cookie_sent = caller.from_cookie && caller.presented == Some(id);
    let set_cookie = (!cookie_sent).then(|| {
        format!(
            "{COOKIE}={id}; Path=/{}/; Max-Age=86400; HttpOnly; SameSite=Lax",
            caller.path
        )
    });
    Served {
        set_cookie,
        session,
    }
}

fn evict_oldest(t: &mut Table) {
    if let Some(id) = t
        .by_id
        .iter()
        .min_by_key(|(_, v)| v.last.load(Ordering::Relaxed))
        .map(|(id, _)| *id)
        && let Some(v) = t.remove(&id)
    {
        forget_fingerprint(t, &v, id);
    }
}

/// Drops the fingerprint entry of a removed viewer `id`, if it still names it.
fn forget_fingerprint(t: &mut Table, v: &Viewer, id: ViewerId) {
    if let Some(f) = v.fingerprint
        && t.by_fingerprint.get(&f).is_some_and(|known| *known == id)
    {
        t.by_fingerprint.remove(&f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: Option<&str>, ua: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::USER_AGENT,
            HeaderValue::from_str(ua).unwrap(),
        );
        if let Some(c) = cookie {
            h.insert(
                axum::http::header::COOKIE,
                HeaderValue::from_str(c).unwrap(),
            );
        }
        h
    }

    fn cookie_of(s: &Served) -> String {
        let c = s.set_cookie.as_deref().unwrap();
        c.split(';').next().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_viewer_is_one_session_with_or_without_cookies() {
        let hub = Hub::new(Arc::new(crate::config::Config::default()));
        let v = Viewers::new(hub.clone());
        let ip = Some("192.0.2.1".parse().unwrap());
        // A browser: the first playlist sets the cookie, then it comes back.
        let first = v.served(&Caller::new("live/a", &headers(None, "B"), None, ip));
        let cookie = cookie_of(&first);
        let again = v.served(&Caller::new(
            "live/a",
            &headers(Some(&cookie), "B"),
            None,
            ip,
        ));
        assert!(again.set_cookie.is_none());
        assert_eq!(again.session.id, first.session.id);
        // ffmpeg, from the same address, keeps no cookies: its own session,
        // found again by address and User-Agent.
        let f1 = v.served(&Caller::new("live/a", &headers(None, "Lavf"), None, ip));
        let f2 = v.served(&Caller::new("live/a", &headers(None, "Lavf"), None, ip));
        assert_eq!(f1.session.id, f2.session.id);
        assert_ne!(f1.session.id, first.session.id);
        // A second browser behind the same address and User-Agent as the
        // first (which keeps cookies) is somebody else.
        let other = v.served(&Caller::new("live/a", &headers(None, "B"), None, ip));
        assert_ne!(other.session.id, first.session.id);
        // A token in the query works like the cookie.
        let id = cookie.split('=').nth(1).unwrap();
        let q = v.served(&Caller::new(
            "live/a",
            &headers(None, "X"),
            Some(&format!("{QUERY}={id}")),
            None,
        ));
        assert_eq!(q.session.id, first.session.id);
        assert_eq!(v.len(), 3);
        let hls_readers = hub
            .sessions()
            .iter()
            .filter(|s| s.protocol == Protocol::Hls)
            .count();
        assert_eq!(hls_readers, 3);
        v.expire(Duration::ZERO);
        assert!(v.is_empty());
        assert!(hub.sessions().is_empty(), "sessions end with the viewers");
    }

    #[test]
    fn ids_are_read_from_cookie_pairs_and_the_query() {
        let id = "0123456789abcdef0123456789ABCDEF";
        let low = id.to_ascii_lowercase();
        let cookies = |values: &[&[u8]]| cookie_id(values.iter().copied()).map(|id| id.to_string());
        let pair = format!("{COOKIE}={id}");
        assert_eq!(cookies(&[pair.as_bytes()]), Some(low.clone()));
        // Among other pairs, with spaces around, in a second header.
        let among = format!("a=b;  \t{COOKIE}={id} ; c=d");
        assert_eq!(cookies(&[b"x=y", among.as_bytes()]), Some(low.clone()));
        // The first valid one counts; invalid ones are passed over.
        let two = format!("{COOKIE}=zz; {COOKIE}={id}");
        assert_eq!(cookies(&[two.as_bytes()]), Some(low.clone()));
        // Not the name: a prefix, a space before `=`, another case.
        for bad in [
            format!("x{COOKIE}={id}"),
            format!("{COOKIE} ={id}"),
            format!("{}={id}", COOKIE.to_uppercase()),
            format!("{COOKIE}={id}0"),
            format!("{COOKIE}= {id}x"),
        ] {
            assert_eq!(cookies(&[bad.as_bytes()]), None, "{bad}");
        }
        // A header value that is not visible ASCII is skipped whole.
        let mut raw = pair.clone().into_bytes();
        raw.extend_from_slice(b"; \xff");
        assert_eq!(cookies(&[&raw]), None);
        assert_eq!(cookies(&[&raw, pair.as_bytes()]), Some(low.clone()));
        let query = |q: &str| query_id(q).map(|id| id.to_string());
        assert_eq!(query(&format!("a=1&{QUERY}=x&{QUERY}={id}")), Some(low));
        assert_eq!(query(&format!("{QUERY}x={id}")), None);
        // Exactly 32 hex digits: no sign, no space, no other digit.
        for bad in [
            "+123456789abcdef0123456789abcdef",
            " 0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcd\u{e9}",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(id_of(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(id_of(&[b'f'; 32]), Some(ViewerId(u128::MAX)));
    }

    #[tokio::test]
    async fn a_viewer_with_a_cookie_leaves_the_fingerprint_to_others() {
        let hub = Hub::new(Arc::new(crate::config::Config::default()));
        let v = Viewers::new(hub.clone());
        let ip = Some("192.0.2.1".parse().unwrap());
        // A player that keeps no cookies, then a browser behind the same
        // address and User-Agent that arrives with a cookie of its own.
        let player = v.served(&Caller::new("p", &headers(None, "UA"), None, ip));
        let cookie = format!("{COOKIE}={}", "a".repeat(32));
        let browser = v.served(&Caller::new("p", &headers(Some(&cookie), "UA"), None, ip));
        assert_ne!(browser.session.id, player.session.id);
        // The player is still found by its fingerprint.
        let again = v.served(&Caller::new("p", &headers(None, "UA"), None, ip));
        assert_eq!(again.session.id, player.session.id);
        assert_eq!(v.len(), 2);
    }

    #[tokio::test]
    async fn a_request_let_in_is_recorded_on_its_viewer_or_anew_if_it_left() {
        let hub = Hub::new(Arc::new(crate::config::Config::default()));
        let v = Viewers::new(hub.clone());
        let first = v.served(&Caller::new("p", &headers(None, "B"), None, None));
        let cookie = cookie_of(&first);
        let caller = Caller::new("p", &headers(Some(&cookie), "B"), None, None);
        let admitted = v.enter(&caller).unwrap();
        assert!(
            admitted.viewer.is_some(),
            "a known viewer of the path is held"
        );
        let s = admitted.served(&v, &caller);
        assert_eq!(s.session.id, first.session.id);
        assert!(s.set_cookie.is_none());
        // Its requests keep it: not idle for an hour.
        v.expire(Duration::from_secs(3600));
        assert_eq!(v.len(), 1);
        // It leaves while a request it made is answered: that request
        // starts it again, under the same id.
        let admitted = v.enter(&caller).unwrap();
        v.expire(Duration::ZERO);
        assert!(v.is_empty());
        let again = admitted.served(&v, &caller);
        assert_ne!(again.session.id, first.session.id);
        assert!(again.set_cookie.is_none(), "the id it sent is kept");
        assert_eq!(v.len(), 1);
        // Its cookie sent for another path: not held (that is another viewer).
        let other = Caller::new("p/sub", &headers(Some(&cookie), "B"), None, None);
        assert!(v.enter(&other).unwrap().viewer.is_none());
        // A new viewer is not held either.
        let new = Caller::new("p", &headers(None, "C"), None, None);
        assert!(v.enter(&new).unwrap().viewer.is_none());
    }

    #[tokio::test]
    async fn a_kicked_viewer_is_refused() {
        let hub = Hub::new(Arc::new(crate::config::Config::default()));
        let v = Viewers::new(hub.clone());
        let s = v.served(&Caller::new("p", &headers(None, "B"), None, None));
        let cookie = cookie_of(&s);
        let caller = Caller::new("p", &headers(Some(&cookie), "B"), None, None);
        assert!(v.enter(&caller).is_ok());
        // A cookie of another path does not take that viewer over.
        let other = v.served(&Caller::new(
            "p/sub",
            &headers(Some(&cookie), "B"),
            None,
            None,
        ));
        assert_ne!(other.session.id, s.session.id);
        assert!(other.set_cookie.is_some(), "its own cookie");
        assert!(hub.kick(s.session.id));
        assert!(matches!(v.enter(&caller), Err(Refusal::Kicked)));
        assert!(
            matches!(v.enter(&caller), Err(Refusal::Kicked)),
            "and stays refused"
        );
        // Garbage cookies are ignored, not trusted.
        let bad = Caller::new(
            "p",
            &headers(Some("mediarelay_hls=../../x"), "B"),
            None,
            None,
        );
        assert!(bad.presented.is_none());
    }
}
