//! Users, their certificates and their login sessions.
//!
//! Uniqueness (user names, emails) and "a deleted user's certificates and sessions go with it"
//! are enforced here, in one transaction each; who may do what is core's business.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use tether_wire::admin::Role;

use crate::codec::{self, Stored};
use crate::tables::{CERTS, CERTS_BY_USER, SESSIONS, SESSIONS_BY_USER, USER_EMAILS, USERS};
use crate::{Store, StoreError};

/// A user (seed 002's `users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Unique name.
    pub name: String,
    /// Optional email, unique among users (compared in lower case).
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// Disabled users can neither connect nor log in.
    pub enabled: bool,
    /// argon2id hash in PHC string format; `None`: no password login.
    pub password_hash: Option<String>,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last changed, unix ms.
    pub updated_at_ms: i64,
    /// Last successful password login, unix ms.
    pub last_login_ms: Option<i64>,
    /// Its address.
    pub last_login_addr: Option<String>,
}

impl Stored for UserRecord {}

/// A certificate core issued to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Its user.
    pub user: String,
    /// Issued, unix ms.
    pub issued_at_ms: i64,
    /// Who issued it.
    pub issued_by: String,
    /// Not after, unix ms.
    pub expires_at_ms: i64,
    /// Revoked, unix ms.
    pub revoked_at_ms: Option<i64>,
    /// By whom, or why.
    pub revoked_by: Option<String>,
}

impl Stored for CertRecord {}

/// A login session. Its token is kept only as a SHA-256 hash (the table's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public id (not the token).
    pub id: String,
    /// Its user.
    pub user: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last used, unix ms.
    pub last_used_ms: i64,
    /// Ends at this time whatever happens, unix ms.
    pub expires_at_ms: i64,
    /// Browser address at login.
    pub client_addr: Option<String>,
    /// Browser user agent at login.
    pub user_agent: Option<String>,
}

impl Stored for SessionRecord {}

/// What became of an attempt to create a user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddUser {
    /// Created.
    Added,
    /// A user of that name exists.
    NameTaken,
    /// Another user has that email.
    EmailTaken(String),
}

/// A change to a user record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UserChange {
    /// New role.
    Role(Role),
    /// Enable or disable.
    Enabled(bool),
    /// New password hash.
    Password(String),
    /// A successful login from this address.
    LoggedIn(Option<String>),
}

/// What became of a change to a user, or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserOutcome {
    /// Done: the user as it is now (as it was, for a deletion).
    Done(UserRecord),
    /// No such user.
    NotFound,
    /// Refused: it would leave no enabled admin. Checked in the change's own transaction, so
    /// two admins disabling each other at once cannot both succeed.
    LastAdmin,
}

fn is_active_admin(user: &UserRecord) -> bool {
    user.enabled && user.role == Role::Admin
}

/// Whether an enabled admin other than `name` exists.
fn another_admin(txn: &WriteTransaction, name: &str) -> Result<bool, StoreError> {
    let users = txn.open_table(USERS)?;
    for row in users.iter()? {
        let (key, value) = row?;
        if key.value() != name
            && codec::decode::<UserRecord>(value.value()).is_ok_and(|u| is_active_admin(&u))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn email_key(email: &str) -> String {
    email.to_lowercase()
}

impl Store {
    /// Creates a user unless the name or the email is taken.
    pub async fn add_user(&self, user: UserRecord) -> Result<AddUser, StoreError> {
        self.write(move |txn| {
            let mut users = txn.open_table(USERS)?;
            if users.get(user.name.as_str())?.is_some() {
                return Ok(AddUser::NameTaken);
            }
            let mut emails = txn.open_table(USER_EMAILS)?;
            if let Some(email) = &user.email {
                if let Some(owner) = emails.get(email_key(email).as_str())? {
                    return Ok(AddUser::EmailTaken(owner.value().to_string()));
                }
                emails.insert(email_key(email).as_str(), user.name.as_str())?;
            }
            users.insert(user.name.as_str(), codec::encode(&user).as_slice())?;
            Ok(AddUser::Added)
        })
        .await
    }

    /// Changes a user. Disabling or a new password also ends the user's login sessions, in the
    /// same transaction. A change that would leave no enabled admin is refused.
    pub async fn change_user(
        &self,
        name: &str,
        change: UserChange,
        now_ms: i64,
    ) -> Result<UserOutcome, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let Some(mut user) = txn
                .open_table(USERS)?
                .get(name.as_str())?
                .map(|v| codec::decode::<UserRecord>(v.value()))
                .transpose()?
            else {
                return Ok(UserOutcome::NotFound);
            };
            let was_admin = is_active_admin(&user);
            let mut end_sessions = false;
            let login = matches!(change, UserChange::LoggedIn(_));
            match change {
                UserChange::Role(role) => user.role = role,
                UserChange::Enabled(enabled) => {
                    user.enabled = enabled;
                    end_sessions = !enabled;
                }
                UserChange::Password(hash) => {
                    user.password_hash = Some(hash);
                    end_sessions = true;
                }
                UserChange::LoggedIn(addr) => {
                    user.last_login_ms = Some(now_ms);
                    user.last_login_addr = addr;
                }
            }
            if was_admin && !is_active_admin(&user) && !another_admin(txn, &name)? {
                return Ok(UserOutcome::LastAdmin);
            }
            if !login {
                user.updated_at_ms = now_ms;
            }
            txn.open_table(USERS)?
                .insert(name.as_str(), codec::encode(&user).as_slice())?;
            if end_sessions {
                remove_sessions(txn, &name, None)?;
            }
            Ok(UserOutcome::Done(user))
        })
        .await
    }

    /// Deletes a user: their certificates are revoked (kept, so they stay refused should the
    /// name be used again), their sessions removed. The last enabled admin is not deleted.
    pub async fn delete_user(
        &self,
        name: &str,
        now_ms: i64,
        by: &str,
    ) -> Result<UserOutcome, StoreError> {
        let name = name.to_string();
        let by = by.to_string();
        self.write(move |txn| {
            let Some(user) = txn
                .open_table(USERS)?
                .get(name.as_str())?
                .map(|v| codec::decode::<UserRecord>(v.value()))
                .transpose()?
            else {
                return Ok(UserOutcome::NotFound);
            };
            if is_active_admin(&user) && !another_admin(txn, &name)? {
                return Ok(UserOutcome::LastAdmin);
            }
            txn.open_table(USERS)?.remove(name.as_str())?;
            if let Some(email) = &user.email {
                txn.open_table(USER_EMAILS)?
                    .remove(email_key(email).as_str())?;
            }
            let serials: Vec<String> = {
                let by_user = txn.open_table(CERTS_BY_USER)?;
                by_user
                    .range((name.as_str(), "")..)?
                    .map_while(|row| {
                        let row = row.ok()?;
                        let (user, serial) = row.0.value();
                        (user == name).then(|| serial.to_string())
                    })
                    .collect()
            };
            let mut certs = txn.open_table(CERTS)?;
            for serial in serials {
                let Some(mut cert) = certs
                    .get(serial.as_str())?
                    .map(|v| codec::decode::<CertRecord>(v.value()))
                    .transpose()?
                else {
                    continue;
                };
                if cert.revoked_at_ms.is_none() {
                    cert.revoked_at_ms = Some(now_ms);
                    cert.revoked_by = Some(format!("{by} (user deleted)"));
                    certs.insert(serial.as_str(), codec::encode(&cert).as_slice())?;
                }
            }
            drop(certs);
            remove_sessions(txn, &name, None)?;
            Ok(UserOutcome::Done(user))
        })
        .await
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.read()?;
        let users = txn.open_table(USERS)?;
        let value = users.get(name)?;
        value.map(|v| codec::decode(v.value())).transpose()
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.read()?;
        let users = txn.open_table(USERS)?;
        users
            .iter()?
            .map(|row| codec::decode(row?.1.value()))
            .collect()
    }

    /// Whether any user exists (false on a database written before users existed).
    pub fn has_users(&self) -> Result<bool, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(USERS)?.first()?.is_some())
    }

    /// Records a certificate issued to an existing user; `false` (nothing written) if the user
    /// does not exist.
    pub async fn add_cert(&self, cert: CertRecord) -> Result<bool, StoreError> {
        self.write(move |txn| {
            if txn.open_table(USERS)?.get(cert.user.as_str())?.is_none() {
                return Ok(false);
            }
            txn.open_table(CERTS)?
                .insert(cert.serial.as_str(), codec::encode(&cert).as_slice())?;
            txn.open_table(CERTS_BY_USER)?
                .insert((cert.user.as_str(), cert.serial.as_str()), ())?;
            Ok(true)
        })
        .await
    }

    /// A certificate by serial.
    pub fn cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        let txn = self.read()?;
        let certs = txn.open_table(CERTS)?;
        let value = certs.get(serial)?;
        value.map(|v| codec::decode(v.value())).transpose()
    }

    /// A certificate and its user, read together (one snapshot): what core checks on every
    /// connection and every request.
    pub fn cert_and_user(
        &self,
        serial: &str,
    ) -> Result<(Option<CertRecord>, Option<UserRecord>), StoreError> {
        let txn = self.read()?;
        let certs = txn.open_table(CERTS)?;
        let Some(cert) = certs
            .get(serial)?
            .map(|v| codec::decode::<CertRecord>(v.value()))
            .transpose()?
        else {
            return Ok((None, None));
        };
        let users = txn.open_table(USERS)?;
        let user = users
            .get(cert.user.as_str())?
            .map(|v| codec::decode(v.value()))
            .transpose()?;
        Ok((Some(cert), user))
    }

    /// A user's certificates, by serial.
    pub fn certs_of(&self, user: &str) -> Result<Vec<CertRecord>, StoreError> {
        let txn = self.read()?;
        let by_user = txn.open_table(CERTS_BY_USER)?;
        let certs = txn.open_table(CERTS)?;
        let mut out = Vec::new();
        for row in by_user.range((user, "")..)? {
            let row = row?;
            let (owner, serial) = row.0.value();
            if owner != user {
                break;
            }
            if let Some(value) = certs.get(serial)? {
                out.push(codec::decode(value.value())?);
            }
        }
        Ok(out)
    }

    /// Revokes a certificate; `None` if unknown. Revoking a revoked one changes nothing.
    pub async fn revoke_cert(
        &self,
        serial: &str,
        now_ms: i64,
        by: &str,
    ) -> Result<Option<CertRecord>, StoreError> {
        let serial = serial.to_string();
        let by = by.to_string();
        self.write(move |txn| {
            let mut certs = txn.open_table(CERTS)?;
            let Some(mut cert) = certs
                .get(serial.as_str())?
                .map(|v| codec::decode::<CertRecord>(v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            if cert.revoked_at_ms.is_none() {
                cert.revoked_at_ms = Some(now_ms);
                cert.revoked_by = Some(by);
                certs.insert(serial.as_str(), codec::encode(&cert).as_slice())?;
            }
            Ok(Some(cert))
        })
        .await
    }

    /// Stores a new session under its token's hash, if its user still exists and is enabled.
    pub async fn add_session(
        &self,
        token_hash: [u8; 32],
        session: SessionRecord,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let users = txn.open_table(USERS)?;
            let enabled = users
                .get(session.user.as_str())?
                .map(|v| codec::decode::<UserRecord>(v.value()))
                .transpose()?
                .is_some_and(|u| u.enabled);
            if !enabled {
                return Ok(false);
            }
            drop(users);
            txn.open_table(SESSIONS)?
                .insert(token_hash.as_slice(), codec::encode(&session).as_slice())?;
            txn.open_table(SESSIONS_BY_USER)?
                .insert((session.user.as_str(), token_hash.as_slice()), ())?;
            Ok(true)
        })
        .await
    }

    /// The session of a token hash.
    pub fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.read()?;
        let sessions = txn.open_table(SESSIONS)?;
        let value = sessions.get(token_hash.as_slice())?;
        value.map(|v| codec::decode(v.value())).transpose()
    }

    /// Records a session's use.
    pub async fn touch_session(&self, token_hash: [u8; 32], now_ms: i64) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let Some(mut session) = sessions
                .get(token_hash.as_slice())?
                .map(|v| codec::decode::<SessionRecord>(v.value()))
                .transpose()?
            else {
                return Ok(());
            };
            session.last_used_ms = session.last_used_ms.max(now_ms);
            sessions.insert(token_hash.as_slice(), codec::encode(&session).as_slice())?;
            Ok(())
        })
        .await
    }

    /// Removes the session of a token hash; whether there was one.
    pub async fn remove_session(&self, token_hash: [u8; 32]) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let removed = txn
                .open_table(SESSIONS)?
                .remove(token_hash.as_slice())?
                .map(|v| codec::decode::<SessionRecord>(v.value()))
                .transpose()?;
            if let Some(session) = &removed {
                txn.open_table(SESSIONS_BY_USER)?
                    .remove((session.user.as_str(), token_hash.as_slice()))?;
            }
            Ok(removed.is_some())
        })
        .await
    }

    /// Removes a user's sessions, or only the one with public id `only`; how many.
    pub async fn remove_sessions_of(
        &self,
        user: &str,
        only: Option<String>,
    ) -> Result<u32, StoreError> {
        let user = user.to_string();
        self.write(move |txn| remove_sessions(txn, &user, only.as_deref()))
            .await
    }

    /// A user's sessions, oldest first.
    pub fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let txn = self.read()?;
        let by_user = txn.open_table(SESSIONS_BY_USER)?;
        let sessions = txn.open_table(SESSIONS)?;
        let mut out: Vec<SessionRecord> = Vec::new();
        for row in by_user.range((user, [].as_slice())..)? {
            let row = row?;
            let (owner, hash) = row.0.value();
            if owner != user {
                break;
            }
            if let Some(value) = sessions.get(hash)? {
                out.push(codec::decode(value.value())?);
            }
        }
        out.sort_by_key(|s| s.created_at_ms);
        Ok(out)
    }

    /// Removes sessions that ended (absolute lifetime passed, or idle longer than `idle_ms`)
    /// before `now_ms`; how many.
    pub async fn prune_sessions(&self, now_ms: i64, idle_ms: i64) -> Result<u32, StoreError> {
        self.write(move |txn| {
            let ended: Vec<(Vec<u8>, String)> = {
                let sessions = txn.open_table(SESSIONS)?;
                let mut ended = Vec::new();
                for row in sessions.iter()? {
                    let (key, value) = row?;
                    let Ok(session) = codec::decode::<SessionRecord>(value.value()) else {
                        ended.push((key.value().to_vec(), String::new()));
                        continue;
                    };
                    if session.expires_at_ms <= now_ms
                        || session.last_used_ms.saturating_add(idle_ms) <= now_ms
                    {
                        ended.push((key.value().to_vec(), session.user));
                    }
                }
                ended
            };
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut by_user = txn.open_table(SESSIONS_BY_USER)?;
            for (hash, user) in &ended {
                sessions.remove(hash.as_slice())?;
                by_user.remove((user.as_str(), hash.as_slice()))?;
            }
            Ok(u32::try_from(ended.len()).unwrap_or(u32::MAX))
        })
        .await
    }
}

fn remove_sessions(
    txn: &WriteTransaction,
    user: &str,
    only: Option<&str>,
) -> Result<u32, StoreError> {
    let hashes: Vec<Vec<u8>> = {
        let by_user = txn.open_table(SESSIONS_BY_USER)?;
        let mut hashes = Vec::new();
        for row in by_user.range((user, [].as_slice())..)? {
            let row = row?;
            let (owner, hash) = row.0.value();
            if owner != user {
                break;
            }
            hashes.push(hash.to_vec());
        }
        hashes
    };
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut by_user = txn.open_table(SESSIONS_BY_USER)?;
    let mut removed = 0;
    for hash in hashes {
        if let Some(only) = only {
            let id = sessions
                .get(hash.as_slice())?
                .and_then(|v| codec::decode::<SessionRecord>(v.value()).ok())
                .map(|s| s.id);
            if id.as_deref() != Some(only) {
                continue;
            }
        }
        sessions.remove(hash.as_slice())?;
        by_user.remove((user, hash.as_slice()))?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: Option<&str>) -> UserRecord {
        UserRecord {
            name: name.into(),
            email: email.map(Into::into),
            role: Role::Operator,
            enabled: true,
            password_hash: None,
            created_at_ms: 1,
            updated_at_ms: 1,
            last_login_ms: None,
            last_login_addr: None,
        }
    }

    fn session(id: &str, user: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            user: user.into(),
            created_at_ms: 10,
            last_used_ms: 10,
            expires_at_ms: 1_000,
            client_addr: None,
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn names_and_emails_are_unique_and_deletion_takes_certs_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert!(!store.has_users().unwrap());
        let alice = user("alice", Some("Ops@Example.com"));
        assert_eq!(store.add_user(alice.clone()).await.unwrap(), AddUser::Added);
        assert_eq!(store.add_user(alice).await.unwrap(), AddUser::NameTaken);
        assert_eq!(
            store
                .add_user(user("bob", Some("ops@example.com")))
                .await
                .unwrap(),
            AddUser::EmailTaken("alice".into())
        );
        assert!(store.user("bob").unwrap().is_none(), "nothing written");
        let cert = CertRecord {
            serial: "0abc".into(),
            user: "alice".into(),
            issued_at_ms: 1,
            issued_by: "core".into(),
            expires_at_ms: 100,
            revoked_at_ms: None,
            revoked_by: None,
        };
        assert!(store.add_cert(cert.clone()).await.unwrap());
        assert!(
            !store
                .add_cert(CertRecord {
                    user: "nobody".into(),
                    ..cert.clone()
                })
                .await
                .unwrap()
        );
        assert!(
            store
                .add_session([1; 32], session("s1", "alice"))
                .await
                .unwrap()
        );
        assert!(
            store
                .add_session([2; 32], session("s2", "alice"))
                .await
                .unwrap()
        );
        assert_eq!(store.sessions_of("alice").unwrap().len(), 2);
        assert_eq!(
            store
                .remove_sessions_of("alice", Some("s1".into()))
                .await
                .unwrap(),
            1
        );
        assert!(store.session(&[1; 32]).unwrap().is_none());
        // A new password ends the sessions left.
        assert!(matches!(
            store
                .change_user("alice", UserChange::Password("h".into()), 5)
                .await
                .unwrap(),
            UserOutcome::Done(_)
        ));
        assert!(store.sessions_of("alice").unwrap().is_empty());
        assert!(
            store
                .add_session([3; 32], session("s3", "alice"))
                .await
                .unwrap()
        );

        let UserOutcome::Done(gone) = store.delete_user("alice", 50, "root").await.unwrap() else {
            panic!("deleted")
        };
        assert_eq!(gone.name, "alice");
        let cert = store.cert("0abc").unwrap().unwrap();
        assert_eq!(cert.revoked_at_ms, Some(50));
        assert!(store.session(&[3; 32]).unwrap().is_none());
        // The name and the email are free again; the old certificate stays revoked.
        assert_eq!(
            store
                .add_user(user("alice", Some("ops@example.com")))
                .await
                .unwrap(),
            AddUser::Added
        );
        assert!(store.cert("0abc").unwrap().unwrap().revoked_at_ms.is_some());
        // Disabled users get no sessions.
        store
            .change_user("alice", UserChange::Enabled(false), 60)
            .await
            .unwrap();
        assert!(
            !store
                .add_session([4; 32], session("s4", "alice"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_last_enabled_admin_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        for name in ["ann", "bea"] {
            store
                .add_user(UserRecord {
                    role: Role::Admin,
                    ..user(name, None)
                })
                .await
                .unwrap();
        }
        // Two admins disabling each other at once: one wins, the other is refused.
        let (a, b) = tokio::join!(
            store.change_user("ann", UserChange::Enabled(false), 2),
            store.change_user("bea", UserChange::Enabled(false), 2)
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == UserOutcome::LastAdmin)
                .count(),
            1,
            "{outcomes:?}"
        );
        let left = if outcomes[0] == UserOutcome::LastAdmin {
            "ann"
        } else {
            "bea"
        };
        assert_eq!(
            store.delete_user(left, 3, "x").await.unwrap(),
            UserOutcome::LastAdmin
        );
        assert_eq!(
            store
                .change_user(left, UserChange::Role(Role::Viewer), 3)
                .await
                .unwrap(),
            UserOutcome::LastAdmin
        );
        assert!(store.user(left).unwrap().unwrap().enabled);
    }

    #[tokio::test]
    async fn ended_sessions_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.add_user(user("alice", None)).await.unwrap();
        store
            .add_session([1; 32], session("old", "alice"))
            .await
            .unwrap();
        store
            .add_session(
                [2; 32],
                SessionRecord {
                    last_used_ms: 500,
                    ..session("fresh", "alice")
                },
            )
            .await
            .unwrap();
        // At 600 with a 200 ms idle timeout: "old" (last used at 10) has ended.
        assert_eq!(store.prune_sessions(600, 200).await.unwrap(), 1);
        let left = store.sessions_of("alice").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "fresh");
        // Past the absolute lifetime, every session ends.
        assert_eq!(store.prune_sessions(1_000, 1_000_000).await.unwrap(), 1);
    }
}
