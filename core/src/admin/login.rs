//! Password login and logout, for the web bridge's identity: core verifies the password, issues
//! a session and keeps only its token's hash. Throttled per user name and per source address
//! (the browser's, as the bridge names it); an unknown user and a wrong password get one
//! answer, and take as long.

use tether_store::{SessionRecord, UserChange};
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminResponse, Role};
use tether_wire::users::{ClientInfo, Secret};
use tracing::{info, warn};

use super::users::session_view;
use super::{Reply, internal};
use crate::auth::{
    Caller, attempt_addr, clean_client, millis, new_session_id, new_token, password, throttled,
    token_hash, wrong_password,
};
use crate::server::Shared;

/// The answer to every failed password check.
pub(crate) const LOGIN_FAILED: &str = "unknown user or wrong password";

/// `Login`.
pub(crate) async fn login(
    shared: &Shared,
    caller: &Caller,
    user: &str,
    secret: &Secret,
    client: ClientInfo,
) -> Reply {
    let client = clean_client(client);
    let addr = attempt_addr(caller, &client);
    let name = if user.len() > 64 {
        &user[..user.floor_char_boundary(64)]
    } else {
        user
    };
    throttled(shared, name, addr, "failed logins")?;
    let record = shared.store.user(name).map_err(internal)?;
    let stored = record.as_ref().and_then(|u| u.password_hash.clone());
    let matches = password::verify_blocking(stored, secret.expose().to_string()).await;
    let Some(record) = record.filter(|_| matches) else {
        wrong_password(shared, name, addr);
        warn!(user = %name, addr = ?addr, "password login failed");
        return Err((ErrorCode::LOGIN_FAILED, LOGIN_FAILED.into()));
    };
    // The password was right: from here the answer may say more.
    if !record.enabled {
        return Err((
            ErrorCode::CREDENTIALS_REVOKED,
            format!("user {name} is disabled; ask an admin"),
        ));
    }
    if record.role == Role::Bridge {
        return Err((ErrorCode::LOGIN_FAILED, LOGIN_FAILED.into()));
    }
    shared
        .login_throttle
        .lock()
        .expect("not poisoned")
        .succeeded(name);
    let now_ms = shared.now_ms();
    let token = new_token();
    let hash = token_hash(&token);
    let session = SessionRecord {
        id: new_session_id(),
        user: record.name.clone(),
        created_at_ms: now_ms,
        last_used_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(millis(shared.config.session_lifetime)),
        client_addr: client.addr.clone(),
        user_agent: client.user_agent.clone(),
    };
    if !shared
        .store
        .add_session(hash, session.clone())
        .await
        .map_err(internal)?
    {
        // Disabled or deleted between the check and now.
        return Err((
            ErrorCode::CREDENTIALS_REVOKED,
            format!("user {name} is disabled; ask an admin"),
        ));
    }
    shared
        .store
        .change_user(
            &record.name,
            UserChange::LoggedIn(client.addr.clone()),
            now_ms,
        )
        .await
        .map_err(internal)?;
    info!(user = %record.name, session = %session.id, "logged in");
    Ok(vec![AdminResponse::LoggedIn {
        token: Secret::new(token),
        session: session_view(shared, session),
    }])
}

/// `Logout`: ends the session of a token (an unknown one is not an error: the outcome is the
/// same).
pub(crate) async fn logout(shared: &Shared, token: &Secret) -> Reply {
    let ended = shared
        .store
        .remove_session(token_hash(token.expose()))
        .await
        .map_err(internal)?;
    Ok(vec![AdminResponse::LoggedOut {
        sessions: u32::from(ended),
    }])
}
