//! Users, their certificates and their sessions (admins; a password also by its own user).
//!
//! Every change that takes something away applies at once: a disable or a deletion closes the
//! user's connections and ends their terminals, a revocation closes the certificate's
//! connections, a role without terminals ends the user's terminals. The last enabled admin
//! cannot be disabled, demoted or deleted (checked in the store's transaction), so core is never
//! left without one; nobody disables or deletes themself.

use std::time::Duration;

use tether_store::{AddUser, CertRecord, SessionRecord, UserChange, UserOutcome, UserRecord};
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminResponse, Role, check_user_name};
use tether_wire::users::{
    CertView, NewUser, Secret, SessionView, UserView, check_email, check_password,
};

use super::{Reply, chunks, internal};
use crate::auth::{Caller, millis, password};
use crate::server::Shared;

fn not_found(name: &str) -> (ErrorCode, String) {
    (ErrorCode::NOT_FOUND, format!("no user {name:?}"))
}

fn user_view(shared: &Shared, user: UserRecord) -> Result<UserView, (ErrorCode, String)> {
    let now = shared.now_ms();
    let active_certs = shared
        .store
        .certs_of(&user.name)
        .map_err(internal)?
        .iter()
        .filter(|c| c.revoked_at_ms.is_none() && c.expires_at_ms > now)
        .count();
    let sessions = shared
        .store
        .sessions_of(&user.name)
        .map_err(internal)?
        .len();
    Ok(UserView {
        name: user.name,
        email: user.email,
        role: user.role,
        enabled: user.enabled,
        has_password: user.password_hash.is_some(),
        created_at_ms: user.created_at_ms,
        updated_at_ms: user.updated_at_ms,
        last_login_ms: user.last_login_ms,
        last_login_addr: user.last_login_addr,
        active_certs: u32::try_from(active_certs).unwrap_or(u32::MAX),
        sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
    })
}

pub(crate) fn cert_view(cert: CertRecord) -> CertView {
    CertView {
        serial: cert.serial,
        user: cert.user,
        issued_at_ms: cert.issued_at_ms,
        issued_by: cert.issued_by,
        expires_at_ms: cert.expires_at_ms,
        revoked_at_ms: cert.revoked_at_ms,
        revoked_by: cert.revoked_by,
    }
}

pub(crate) fn session_view(shared: &Shared, session: SessionRecord) -> SessionView {
    let idle = millis(shared.config.session_idle_timeout);
    SessionView {
        idle_expires_at_ms: session
            .last_used_ms
            .saturating_add(idle)
            .min(session.expires_at_ms),
        id: session.id,
        user: session.user,
        created_at_ms: session.created_at_ms,
        last_used_ms: session.last_used_ms,
        expires_at_ms: session.expires_at_ms,
        client_addr: session.client_addr,
        user_agent: session.user_agent,
    }
}

fn existing(shared: &Shared, name: &str) -> Result<UserRecord, (ErrorCode, String)> {
    shared
        .store
        .user(name)
        .map_err(internal)?
        .ok_or_else(|| not_found(name))
}

fn last_admin(name: &str, what: &str) -> (ErrorCode, String) {
    (
        ErrorCode::CONFLICT,
        format!(
            "{name} is the only enabled admin; {what} would leave core without one (make another admin first)"
        ),
    )
}

async fn new_hash(password: &Secret) -> Result<String, (ErrorCode, String)> {
    check_password(password.expose()).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    password::hash_blocking(password.expose().to_string())
        .await
        .map_err(|m| (ErrorCode::INTERNAL, m))
}

/// `UserAdd`.
pub(crate) async fn add(shared: &Shared, new: NewUser) -> Reply {
    check_user_name(&new.name).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    if let Some(email) = &new.email {
        check_email(email).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    }
    if new.role == Role::Bridge && new.password.is_some() {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "a bridge is a service with a certificate; it has no password".into(),
        ));
    }
    let password_hash = match &new.password {
        Some(password) => Some(new_hash(password).await?),
        None => None,
    };
    let now = shared.now_ms();
    let record = UserRecord {
        name: new.name.clone(),
        email: new.email.clone(),
        role: new.role,
        enabled: true,
        password_hash,
        created_at_ms: now,
        updated_at_ms: now,
        last_login_ms: None,
        last_login_addr: None,
    };
    match shared
        .store
        .add_user(record.clone())
        .await
        .map_err(internal)?
    {
        AddUser::Added => Ok(vec![AdminResponse::User(user_view(shared, record)?)]),
        AddUser::NameTaken => Err((
            ErrorCode::CONFLICT,
            format!("user {:?} already exists", new.name),
        )),
        AddUser::EmailTaken(owner) => Err((
            ErrorCode::CONFLICT,
            format!("user {owner:?} already has that email"),
        )),
        _ => Err((
            ErrorCode::INTERNAL,
            "unexpected answer from the store".into(),
        )),
    }
}

/// `UserList`.
pub(crate) fn list(shared: &Shared) -> Reply {
    let users = shared.store.users().map_err(internal)?;
    let views = users
        .into_iter()
        .map(|u| user_view(shared, u))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(chunks(views, AdminResponse::Users))
}

/// `UserShow`.
pub(crate) fn show(shared: &Shared, name: &str) -> Reply {
    Ok(vec![AdminResponse::User(user_view(
        shared,
        existing(shared, name)?,
    )?)])
}

async fn change(
    shared: &Shared,
    name: &str,
    change: UserChange,
    what: &str,
) -> Result<UserRecord, (ErrorCode, String)> {
    match shared
        .store
        .change_user(name, change, shared.now_ms())
        .await
        .map_err(internal)?
    {
        UserOutcome::Done(user) => Ok(user),
        UserOutcome::LastAdmin => Err(last_admin(name, what)),
        _ => Err(not_found(name)),
    }
}

/// Refuses shutting yourself out: another admin must do it (and no admin locks themself out
/// mid-request).
fn not_yourself(caller: &Caller, name: &str, what: &str) -> Result<(), (ErrorCode, String)> {
    if caller.user == name {
        return Err((
            ErrorCode::CONFLICT,
            format!("you cannot {what} yourself; ask another admin"),
        ));
    }
    // Nor the bridge a request came through: the page would cut itself, and everyone's
    // browser, off.
    if caller.bridge.as_deref() == Some(name) {
        return Err((
            ErrorCode::CONFLICT,
            format!(
                "this request came through the web bridge, which is user {name}: a page cannot \
                 {what} it (every browser would be cut off); use the tether CLI"
            ),
        ));
    }
    Ok(())
}

/// `UserRole`.
pub(crate) async fn role(shared: &Shared, caller: &Caller, name: &str, role: Role) -> Reply {
    if caller.bridge.as_deref() == Some(name) {
        not_yourself(caller, name, "change the role of")?;
    }
    let before = existing(shared, name)?;
    if role == Role::Bridge && before.password_hash.is_some() {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "a bridge has no password; this user has one".into(),
        ));
    }
    let user = change(shared, name, UserChange::Role(role), "a new role").await?;
    let terminals = |r: Role| matches!(r, Role::Admin | Role::Operator);
    if terminals(before.role) && !terminals(role) {
        let reason = format!(
            "{} {} (user {name} became {role})",
            caller.role, caller.user
        );
        crate::auth::cut_off(shared, name, &reason, false).await;
    }
    Ok(vec![AdminResponse::User(user_view(shared, user)?)])
}

/// `UserEnable`.
pub(crate) async fn enable(shared: &Shared, caller: &Caller, name: &str, enabled: bool) -> Reply {
    if !enabled {
        not_yourself(caller, name, "disable")?;
    }
    let user = change(shared, name, UserChange::Enabled(enabled), "disabling them").await?;
    if !enabled {
        let reason = format!("{} {} (user {name} disabled)", caller.role, caller.user);
        crate::auth::cut_off(shared, name, &reason, true).await;
    }
    Ok(vec![AdminResponse::User(user_view(shared, user)?)])
}

/// `UserPasswd`: the user's sessions end (a stolen one must not outlive the new password).
/// Through a browser session, changing one's own password needs the current one: a stolen
/// session must not be able to take the account over.
pub(crate) async fn passwd(
    shared: &Shared,
    caller: &Caller,
    name: &str,
    password: &Secret,
    current: Option<&Secret>,
) -> Reply {
    let before = existing(shared, name)?;
    if before.role == Role::Bridge {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "a bridge is a service with a certificate; it has no password".into(),
        ));
    }
    if caller.bridge.is_some() && caller.user == name {
        let Some(current) = current else {
            return Err((
                ErrorCode::INVALID_ARGUMENT,
                "changing your password in a browser needs your current password".into(),
            ));
        };
        // Guessing through a stolen session is throttled like logins.
        let addr = crate::auth::attempt_addr(caller, &caller.client);
        crate::auth::throttled(shared, name, addr, "wrong passwords")?;
        let matches =
            password::verify_blocking(before.password_hash.clone(), current.expose().to_string())
                .await;
        if !matches {
            crate::auth::wrong_password(shared, name, addr);
            return Err((
                ErrorCode::LOGIN_FAILED,
                "the current password is wrong; nothing was changed".into(),
            ));
        }
    }
    let hash = new_hash(password).await?;
    let user = change(shared, name, UserChange::Password(hash), "a new password").await?;
    Ok(vec![AdminResponse::User(user_view(shared, user)?)])
}

/// `UserDelete`.
pub(crate) async fn delete(shared: &Shared, caller: &Caller, name: &str) -> Reply {
    not_yourself(caller, name, "delete")?;
    let by = format!("{} {}", caller.role, caller.user);
    let user = match shared
        .store
        .delete_user(name, shared.now_ms(), &by)
        .await
        .map_err(internal)?
    {
        UserOutcome::Done(user) => user,
        UserOutcome::LastAdmin => return Err(last_admin(name, "deleting them")),
        _ => return Err(not_found(name)),
    };
    crate::auth::cut_off(shared, name, &format!("{by} (user {name} deleted)"), true).await;
    let mut view = user_view(shared, user)?;
    view.enabled = false;
    Ok(vec![AdminResponse::User(view)])
}

/// `UserCert`: a certificate for the user's own public key.
pub(crate) async fn cert(
    shared: &Shared,
    caller: &Caller,
    name: &str,
    public_key: &[u8],
    lifetime_secs: u64,
) -> Reply {
    let user = existing(shared, name)?;
    if !user.enabled {
        return Err((
            ErrorCode::CONFLICT,
            format!("user {name} is disabled; enable them first"),
        ));
    }
    let ca = shared
        .data_dir
        .load_ca()
        .map_err(|e| (ErrorCode::INTERNAL, format!("core's CA: {e}")))?;
    let issued = ca
        .issue_user_cert(
            name,
            user.role,
            public_key,
            Duration::from_secs(lifetime_secs),
        )
        .map_err(|e| (ErrorCode::INVALID_ARGUMENT, e.to_string()))?;
    let record = CertRecord {
        serial: issued.info.serial.clone(),
        user: name.to_string(),
        issued_at_ms: shared.now_ms(),
        issued_by: format!("{} {}", caller.role, caller.user),
        expires_at_ms: issued.info.not_after.saturating_mul(1000),
        revoked_at_ms: None,
        revoked_by: None,
    };
    if !shared
        .store
        .add_cert(record.clone())
        .await
        .map_err(internal)?
    {
        return Err(not_found(name));
    }
    Ok(vec![AdminResponse::CertIssued {
        cert_pem: issued.cert_pem,
        cert: cert_view(record),
    }])
}

/// `UserCerts`.
pub(crate) fn certs(shared: &Shared, name: &str) -> Reply {
    let certs = shared.store.certs_of(name).map_err(internal)?;
    if certs.is_empty() && shared.store.user(name).map_err(internal)?.is_none() {
        return Err(not_found(name));
    }
    Ok(vec![AdminResponse::Certs(
        certs.into_iter().map(cert_view).collect(),
    )])
}

/// A serial as people copy it (any case, with or without colons, with or without leading zero
/// bytes), as core records it: lower-case hex of whole bytes, leading zero bytes dropped.
fn normal_serial(text: &str) -> String {
    let mut hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() % 2 == 1 {
        hex.insert(0, '0');
    }
    while hex.len() > 2 && hex.starts_with("00") {
        hex.drain(..2);
    }
    hex
}

/// `RevokeCert`.
pub(crate) async fn revoke(shared: &Shared, caller: &Caller, serial: &str) -> Reply {
    let serial = normal_serial(serial);
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) || serial.len() > 40 {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            format!("{serial:?} is not a certificate serial (hex, as `tether user certs` shows)"),
        ));
    }
    let by = format!("{} {}", caller.role, caller.user);
    let cert = shared
        .store
        .revoke_cert(&serial, shared.now_ms(), &by)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            (
                ErrorCode::NOT_FOUND,
                format!("no certificate with serial {serial}"),
            )
        })?;
    // Revoking the certificate this very request came on: `admin::dispatch` closes its
    // connections once the answer is out.
    if caller.serial.as_deref() != Some(serial.as_str()) {
        shared.admin_connections.close_cert(
            &serial,
            &format!("certificate {serial} was revoked by {by}"),
        );
    }
    Ok(vec![AdminResponse::Cert(cert_view(cert))])
}

/// `UserSessions`.
pub(crate) fn sessions(shared: &Shared, name: &str) -> Reply {
    existing(shared, name)?;
    let sessions = shared.store.sessions_of(name).map_err(internal)?;
    Ok(vec![AdminResponse::Sessions(
        sessions
            .into_iter()
            .map(|s| session_view(shared, s))
            .collect(),
    )])
}

/// `UserLogout`.
pub(crate) async fn logout(shared: &Shared, name: &str, session: Option<String>) -> Reply {
    existing(shared, name)?;
    let only = session.clone();
    let ended = shared
        .store
        .remove_sessions_of(name, session)
        .await
        .map_err(internal)?;
    if let Some(id) = only
        && ended == 0
    {
        return Err((
            ErrorCode::NOT_FOUND,
            format!("user {name} has no session {id}"),
        ));
    }
    Ok(vec![AdminResponse::LoggedOut { sessions: ended }])
}

#[cfg(test)]
mod tests {
    use super::normal_serial;

    #[test]
    fn serials_are_read_as_people_copy_them() {
        assert_eq!(normal_serial("0A:BC:01"), "0abc01");
        assert_eq!(normal_serial("00:0a:bc"), "0abc");
        assert_eq!(normal_serial("abc"), "0abc");
        assert_eq!(normal_serial("00ff"), "ff");
        assert_eq!(normal_serial("7f3e"), "7f3e");
    }
}
