//! Who is asking: users behind certificates and login sessions, checked on every request.
//!
//! A certificate proves its holder was issued it; whether it still counts is core's record: the
//! certificate must be registered, unrevoked and unexpired, and its user must exist and be
//! enabled. The role comes from the user record, read again for every request, so a role change,
//! a disable or a revocation applies at once, to open connections too (which are also closed,
//! see [`Connections`]). Browser sessions (through the web bridge) are opaque 256-bit tokens kept
//! only as their SHA-256, with an idle timeout and an absolute lifetime.

pub mod password;
pub(crate) mod throttle;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use quinn::Connection;
use sha2::{Digest, Sha256};
use tether_certs::ca::{UserCertInfo, user_cert_info};
use tether_certs::identity::AdminIdentity;
use tether_store::{AddUser, CertRecord, SessionRecord, Store, StoreError, UserRecord};
use tether_wire::ErrorCode;
use tether_wire::admin::Role;
use tether_wire::users::{ClientInfo, MAX_USER_AGENT_BYTES};
use tracing::{info, warn};

use crate::admin::{Refusal, internal};
use crate::server::Shared;

/// Who is asking, as core knows it for this request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// User name.
    pub user: String,
    /// Role, from the user record.
    pub role: Role,
    /// The connection's address.
    pub addr: SocketAddr,
    /// The certificate's serial, for requests on a certificate's own connection.
    pub serial: Option<String>,
    /// The browser, for requests through the bridge.
    pub client: ClientInfo,
    /// The bridge's user, for requests through it.
    pub bridge: Option<String>,
    /// The login session's public id, for requests through the bridge.
    pub session: Option<String>,
}

/// Checks a certificate against core's records now: the user it speaks for.
pub(crate) fn check_cert(shared: &Shared, info: &UserCertInfo) -> Result<UserRecord, Refusal> {
    let denied = |message: String| (ErrorCode::CREDENTIALS_REVOKED, message);
    let (cert, user) = shared.store.cert_and_user(&info.serial).map_err(internal)?;
    let Some(cert) = cert else {
        return Err(denied(format!(
            "certificate {} of {:?} is not registered with this core (issued before users \
             existed, or by another core); ask an admin for a new one: tether user cert {}",
            info.serial, info.user, info.user
        )));
    };
    if cert.user != info.user {
        return Err(denied(format!(
            "certificate {} names {:?} but was issued to {:?}",
            cert.serial, info.user, cert.user
        )));
    }
    if let Some(at) = cert.revoked_at_ms {
        return Err(denied(format!(
            "certificate {} of user {} was revoked at {} by {}",
            cert.serial,
            cert.user,
            crate::views::rfc3339(at),
            cert.revoked_by.as_deref().unwrap_or("an admin")
        )));
    }
    if cert.expires_at_ms <= shared.now_ms() {
        return Err(denied(format!(
            "certificate {} of user {} expired at {}; ask an admin for a new one",
            cert.serial,
            cert.user,
            crate::views::rfc3339(cert.expires_at_ms)
        )));
    }
    let Some(user) = user else {
        return Err(denied(format!("user {} no longer exists", cert.user)));
    };
    if !user.enabled {
        return Err(denied(format!("user {} is disabled", user.name)));
    }
    Ok(user)
}

/// The certificate a connection presented, read.
pub(crate) fn peer_cert(connection: &Connection) -> Option<UserCertInfo> {
    let chain = connection
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    user_cert_info(chain.first()?)
}

/// The SHA-256 of a token (a login session's, a terminal's): all core keeps of it, so a lookup
/// needs no secret comparison and a memory dump yields no usable token.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token: 256 random bits, URL-safe base64, shown to its holder once.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A public id for a session: random, unrelated to its token.
pub(crate) fn new_session_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Session use is written at most this often (each request through the bridge would be a
/// write otherwise); the idle timeout is counted from the recorded time.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Checks a session token now: its session and user, or why it does not count. An ended
/// session is removed.
pub(crate) async fn check_session(
    shared: &Shared,
    token: &str,
) -> Result<(SessionRecord, UserRecord), Refusal> {
    let expired = |message: &str| (ErrorCode::SESSION_EXPIRED, message.to_string());
    if token.len() > 128 {
        return Err(expired("not logged in (unknown session)"));
    }
    let hash = token_hash(token);
    let session = shared
        .store
        .session(&hash)
        .map_err(internal)?
        .ok_or_else(|| expired("not logged in (the session ended or is unknown); log in again"))?;
    let now = shared.now_ms();
    let idle_ms = millis(shared.config.session_idle_timeout);
    let ended = if now >= session.expires_at_ms {
        Some(format!(
            "the session ended: sessions last {} (session_lifetime); log in again",
            humantime::format_duration(shared.config.session_lifetime)
        ))
    } else if now >= session.last_used_ms.saturating_add(idle_ms) {
        Some(format!(
            "the session ended after {} without use (session_idle_timeout); log in again",
            humantime::format_duration(shared.config.session_idle_timeout)
        ))
    } else {
        None
    };
    if let Some(message) = ended {
        shared.store.remove_session(hash).await.map_err(internal)?;
        return Err((ErrorCode::SESSION_EXPIRED, message));
    }
    let user = shared.store.user(&session.user).map_err(internal)?;
    let Some(user) = user.filter(|u| u.enabled) else {
        shared.store.remove_session(hash).await.map_err(internal)?;
        return Err((
            ErrorCode::CREDENTIALS_REVOKED,
            format!("user {} is disabled or deleted", session.user),
        ));
    };
    if now - session.last_used_ms >= TOUCH_EVERY_MS {
        shared
            .store
            .touch_session(hash, now)
            .await
            .map_err(internal)?;
    }
    Ok((session, user))
}

pub(crate) use crate::clock::millis;

/// Whether the caller of a long-lived request (a watch) may still ask, read now without
/// touching anything: its login session (not ended, not idle past the timeout) or its
/// certificate (registered, not revoked, not expired), and its user (enabled). The user's
/// current role, to check the request against again.
pub(crate) fn still_valid(shared: &Shared, caller: &Caller) -> Result<Role, Refusal> {
    let ended = |message: String| (ErrorCode::SESSION_EXPIRED, message);
    let now = shared.now_ms();
    if let Some(id) = &caller.session {
        let idle_ms = millis(shared.config.session_idle_timeout);
        let live = shared
            .store
            .sessions_of(&caller.user)
            .map_err(internal)?
            .into_iter()
            .any(|s| {
                s.id == *id && now < s.expires_at_ms && now < s.last_used_ms.saturating_add(idle_ms)
            });
        if !live {
            return Err(ended(format!(
                "session {id} of {} ended; log in again",
                caller.user
            )));
        }
    } else if let Some(serial) = &caller.serial {
        let (cert, _) = shared.store.cert_and_user(serial).map_err(internal)?;
        let valid = cert.is_some_and(|c| c.revoked_at_ms.is_none() && now < c.expires_at_ms);
        if !valid {
            return Err((
                ErrorCode::CREDENTIALS_REVOKED,
                format!("certificate {serial} was revoked or has expired"),
            ));
        }
    }
    match shared.store.user(&caller.user).map_err(internal)? {
        Some(user) if user.enabled => Ok(user.role),
        _ => Err((
            ErrorCode::CREDENTIALS_REVOKED,
            format!("user {} is disabled or deleted", caller.user),
        )),
    }
}

/// The address password attempts from this caller are throttled by: the browser's when the
/// bridge names one (an address, or an address and port), else the connection's.
pub(crate) fn attempt_addr(caller: &Caller, client: &ClientInfo) -> Option<IpAddr> {
    client
        .addr
        .as_deref()
        .and_then(|a| {
            a.parse::<IpAddr>()
                .ok()
                .or_else(|| a.parse::<SocketAddr>().ok().map(|s| s.ip()))
        })
        .or(Some(caller.addr.ip()))
}

/// Refuses a password attempt (`what`: "logins", "wrong passwords") for `name` from `addr`
/// while the login throttle holds it back.
pub(crate) fn throttled(
    shared: &Shared,
    name: &str,
    addr: Option<IpAddr>,
    what: &str,
) -> Result<(), Refusal> {
    let now = tokio::time::Instant::now();
    let blocked = shared
        .login_throttle
        .lock()
        .expect("not poisoned")
        .check(name, addr, now);
    blocked.map_err(|blocked| {
        let secs = blocked.wait.as_secs_f64().ceil() as u64;
        let message = if blocked.locked {
            format!("too many {what} for this user or from this address; locked for {secs} s more")
        } else {
            format!("too many {what}; try again in {secs} s")
        };
        (ErrorCode::RATE_LIMITED, message)
    })
}

/// Counts a wrong password for `name` from `addr`.
pub(crate) fn wrong_password(shared: &Shared, name: &str, addr: Option<IpAddr>) {
    shared.login_throttle.lock().expect("not poisoned").failed(
        name,
        addr,
        tokio::time::Instant::now(),
    );
}

/// What core keeps of what a browser said about itself: bounded, no control characters.
pub(crate) fn clean_client(client: ClientInfo) -> ClientInfo {
    let clean = |text: String, max: usize| {
        let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
        if text.len() > max {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    };
    ClientInfo {
        addr: client.addr.map(|a| clean(a, 64)),
        user_agent: client.user_agent.map(|u| clean(u, MAX_USER_AGENT_BYTES)),
    }
}

/// Admin connections open now, by user and certificate, so a disable or a revocation can
/// close them at once.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (String, String, Connection)>>,
}

/// Removes a connection from [`Connections`] when dropped.
#[derive(Debug)]
pub(crate) struct Registered<'a> {
    connections: &'a Connections,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
    }
}

impl Connections {
    pub(crate) fn register(
        &self,
        user: &str,
        serial: &str,
        connection: Connection,
    ) -> Registered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .expect("not poisoned")
            .insert(id, (user.to_string(), serial.to_string(), connection));
        Registered {
            connections: self,
            id,
        }
    }

    /// Closes the connections `pick` selects (by user name and serial); how many.
    fn close_where(&self, pick: impl Fn(&str, &str) -> bool, reason: &str) -> usize {
        let open = self.open.lock().expect("not poisoned");
        let mut closed = 0;
        for (user, serial, connection) in open.values() {
            if pick(user, serial) {
                crate::node_conn::close(connection, ErrorCode::CREDENTIALS_REVOKED, reason);
                closed += 1;
            }
        }
        closed
    }

    /// Closes a user's connections.
    pub(crate) fn close_user(&self, user: &str, reason: &str) -> usize {
        self.close_where(|u, _| u == user, reason)
    }

    /// Closes the connections of one certificate.
    pub(crate) fn close_cert(&self, serial: &str, reason: &str) -> usize {
        self.close_where(|_, s| s == serial, reason)
    }
}

/// Cuts a user off at once: their connections close and their live terminals end (a disable,
/// a deletion, or a role that may no longer open terminals).
pub(crate) async fn cut_off(shared: &Shared, user: &str, reason: &str, connections: bool) {
    // Terminals first, so that each records why it ended before its connection goes.
    let ended = crate::tty::end_user_sessions(shared, user, reason).await;
    let closed = if connections {
        shared.admin_connections.close_user(user, reason)
    } else {
        0
    };
    if closed + ended > 0 {
        info!(%user, closed, terminals = ended, "{reason}");
    }
}

/// The bootstrap admin: on a database without users (a first start, or one written before
/// users existed), the user named in `admin.identity` is created with that certificate's role
/// and the certificate registered; on later starts a re-created `admin.identity` (the file
/// was removed) is registered if its user exists.
pub(crate) async fn bootstrap(
    store: &Store,
    identity_path: &Path,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Ok(identity) = AdminIdentity::load(identity_path) else {
        return Ok(());
    };
    let Some(info) = tether_certs::ca::parse_cert_pem(&identity.cert)
        .ok()
        .and_then(|der| user_cert_info(&der))
    else {
        warn!(path = %identity_path.display(), "admin identity certificate does not parse");
        return Ok(());
    };
    register_cert(
        store,
        &info,
        info.role.unwrap_or(Role::Admin),
        "core",
        now_ms,
    )
    .await
}

/// Records a certificate core issued outside the admin API (the bootstrap admin's, or
/// `tether-core admin issue` with core stopped), creating its user if there is none yet.
pub(crate) async fn register_cert(
    store: &Store,
    info: &UserCertInfo,
    role: Role,
    issued_by: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    if store.cert(&info.serial)?.is_some() {
        return Ok(());
    }
    let mut created = false;
    if store.user(&info.user)?.is_none() {
        if store.has_users()? && issued_by == "core" {
            warn!(user = %info.user, "admin.identity names a user that was deleted; not registering it");
            return Ok(());
        }
        let added = store
            .add_user(UserRecord {
                name: info.user.clone(),
                email: None,
                role,
                enabled: true,
                password_hash: None,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                last_login_ms: None,
                last_login_addr: None,
            })
            .await?;
        if added == AddUser::Added {
            created = true;
            info!(user = %info.user, %role, "user created for {issued_by}'s certificate");
        }
    }
    store
        .add_cert(CertRecord {
            serial: info.serial.clone(),
            user: info.user.clone(),
            issued_at_ms: now_ms,
            issued_by: issued_by.to_string(),
            expires_at_ms: info.not_after.saturating_mul(1000),
            revoked_at_ms: None,
            revoked_by: None,
        })
        .await?;
    // Made outside the admin API, and recorded all the same.
    let actor = if issued_by == "core" {
        "core".to_string()
    } else {
        let login = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        format!("local:{login}")
    };
    store
        .append_audit(tether_wire::users::AuditEntry {
            time_ms: now_ms,
            user: actor,
            role: None,
            action: "users.manage".into(),
            request: if issued_by == "core" {
                "Bootstrap"
            } else {
                "AdminIssue"
            }
            .into(),
            resource_kind: "user".into(),
            resource_id: Some(info.user.clone()),
            details: vec![
                ("role".into(), role.to_string()),
                ("serial".into(), info.serial.clone()),
                ("user_created".into(), created.to_string()),
                ("by".into(), issued_by.to_string()),
            ],
            source_addr: None,
            client_addr: None,
            user_agent: None,
            result: tether_wire::users::AuditResult::Ok,
            error: None,
        })
        .await?;
    Ok(())
}

/// `tether-core admin issue` with core stopped: writes an identity file for `name` and records
/// its certificate, creating the user with `role` if there is none (the way back in when every
/// admin identity is lost). Refused while core runs: it holds the database.
pub async fn issue_offline(
    data_dir: &crate::data_dir::DataDir,
    name: &str,
    role: Role,
    out: &Path,
) -> Result<(AdminIdentity, UserRecord), String> {
    let store = Store::open(&data_dir.database_path()).map_err(|e| match e {
        StoreError::InUse(_) => "core is running (it holds the database); with core running, use \
             `tether user add NAME --role ROLE` and `tether user cert NAME --out FILE`"
            .to_string(),
        other => other.to_string(),
    })?;
    let result = async {
        let existing = store.user(name).map_err(|e| e.to_string())?;
        let role = existing.as_ref().map_or(role, |u| u.role);
        let identity = data_dir
            .issue_admin(name, role, out)
            .map_err(|e| e.to_string())?;
        let info = tether_certs::ca::parse_cert_pem(&identity.cert)
            .ok()
            .and_then(|der| user_cert_info(&der))
            .ok_or("the certificate just issued does not parse")?;
        let now_ms = crate::clock::unix_ms(std::time::SystemTime::now());
        register_cert(&store, &info, role, "tether-core admin issue", now_ms)
            .await
            .map_err(|e| e.to_string())?;
        let user = store
            .user(name)
            .map_err(|e| e.to_string())?
            .ok_or("the user was not created")?;
        Ok::<_, String>((identity, user))
    }
    .await;
    store.close().await;
    result
}
