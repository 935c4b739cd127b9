//! `tether user ...`: users, their certificates and their login sessions.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::json;
use tether_certs::identity::AdminIdentity;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::users::{CertView, NewUser, Secret, SessionView, UserView, check_password};

use crate::output::{self, ago, print_json, rfc3339};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    ///
    /// The password (for logging in through a browser) is read from standard input with
    /// --password-stdin, asked for on a terminal, or else generated and printed once. At
    /// least 12 characters. Give the user a certificate for the CLI with `tether user cert`.
    Add {
        /// The user's name: 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        /// admin (everything), operator (nodes, commands, terminals where allowed), viewer
        /// (read only), or bridge (a web bridge's service identity: no password).
        #[arg(long)]
        role: Role,
        /// Email address (unique among users).
        #[arg(long, value_name = "EMAIL")]
        email: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// No password: the user signs in with certificates only.
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One user, with their certificates and login sessions.
    Show {
        /// User name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role; it applies at once, to open connections and sessions too.
    Role {
        /// User name.
        name: String,
        /// admin, operator, viewer (or bridge).
        role: Role,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: their connections close, their terminals end, their sessions end, and
    /// they can neither connect nor log in until enabled.
    Disable {
        /// User name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled user.
    Enable {
        /// User name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (yours, or anyone's as an admin); their login sessions end.
    ///
    /// Read from standard input with --password-stdin, asked for on a terminal, or else
    /// generated and printed once.
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user: their certificates are revoked, sessions ended, connections closed.
    Delete {
        /// User name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue an identity file (certificate and key) for a user, for the `tether` CLI.
    ///
    /// The key pair is made on this machine; core only signs its public half. Hand the file
    /// to the user privately (it is mode 0600): whoever holds it acts as them.
    Cert {
        /// User name.
        name: String,
        /// Where to write the identity file (an existing file is never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// How long the certificate lasts (at most 5 years).
        #[arg(long, default_value = "90days", value_parser = tether_wire::units::parse_duration, value_name = "DURATION")]
        expires: Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A user's certificates: serials, expiry, revocation.
    Certs {
        /// User name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate: connections using it close at once and it is refused from now on.
    RevokeCert {
        /// The serial, as `tether user certs` shows it.
        serial: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A user's login sessions (browsers, through the web bridge).
    Sessions {
        /// User name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a user's login sessions, or one of them.
    Logout {
        /// User name.
        name: String,
        /// Only this session (its id, from `tether user sessions`).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A password: from stdin, asked for on a terminal, or generated (then `true`).
fn password(from_stdin: bool, name: &str) -> anyhow::Result<(String, bool)> {
    if from_stdin && std::io::stdin().is_terminal() {
        // Asked for stdin, and stdin is a person: ask without echo, once.
        let typed = rpassword::prompt_password(format!("Password for {name}: "))?;
        check_password(&typed).map_err(anyhow::Error::msg)?;
        return Ok((typed, false));
    }
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        let line = text.lines().next().unwrap_or("").to_string();
        check_password(&line).map_err(anyhow::Error::msg)?;
        return Ok((line, false));
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        check_password(&first).map_err(anyhow::Error::msg)?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok((first, false));
    }
    Ok((tether_client::generate_password(), true))
}

fn user_json(user: &UserView) -> serde_json::Value {
    json!({
        "name": user.name,
        "email": user.email,
        "role": user.role.as_str(),
        "enabled": user.enabled,
        "has_password": user.has_password,
        "created_at": rfc3339(user.created_at_ms),
        "updated_at": rfc3339(user.updated_at_ms),
        "last_login_at": user.last_login_ms.map(rfc3339),
        "last_login_addr": user.last_login_addr,
        "active_certs": user.active_certs,
        "sessions": user.sessions,
    })
}

fn cert_state(cert: &CertView, now_ms: i64) -> &'static str {
    if cert.revoked_at_ms.is_some() {
        "revoked"
    } else if cert.expires_at_ms <= now_ms {
        "expired"
    } else {
        "valid"
    }
}

fn cert_json(cert: &CertView, now_ms: i64) -> serde_json::Value {
    json!({
        "serial": cert.serial,
        "user": cert.user,
        "state": cert_state(cert, now_ms),
        "issued_at": rfc3339(cert.issued_at_ms),
        "issued_by": cert.issued_by,
        "expires_at": rfc3339(cert.expires_at_ms),
        "revoked_at": cert.revoked_at_ms.map(rfc3339),
        "revoked_by": cert.revoked_by,
    })
}

fn session_json(session: &SessionView) -> serde_json::Value {
    json!({
        "id": session.id,
        "user": session.user,
        "created_at": rfc3339(session.created_at_ms),
        "last_used_at": rfc3339(session.last_used_ms),
        "idle_expires_at": rfc3339(session.idle_expires_at_ms),
        "expires_at": rfc3339(session.expires_at_ms),
        "client_addr": session.client_addr,
        "user_agent": session.user_agent,
    })
}

fn one_user(answers: Vec<AdminResponse>) -> anyhow::Result<UserView> {
    crate::single(answers, |r| match r {
        AdminResponse::User(user) => Some(user),
        _ => None,
    })
}

fn certs_of(answers: Vec<AdminResponse>) -> Vec<CertView> {
    answers
        .into_iter()
        .flat_map(|r| match r {
            AdminResponse::Certs(certs) => certs,
            _ => Vec::new(),
        })
        .collect()
}

fn sessions_of(answers: Vec<AdminResponse>) -> Vec<SessionView> {
    answers
        .into_iter()
        .flat_map(|r| match r {
            AdminResponse::Sessions(sessions) => sessions,
            _ => Vec::new(),
        })
        .collect()
}

fn now_ms() -> i64 {
    tether_wire::units::unix_ms(std::time::SystemTime::now())
}

fn print_certs(certs: &[CertView]) -> anyhow::Result<()> {
    if certs.is_empty() {
        println!("none");
        return Ok(());
    }
    let now = now_ms();
    output::table(
        &["SERIAL", "STATE", "EXPIRES", "ISSUED BY", "REVOKED BY"],
        certs
            .iter()
            .map(|c| {
                vec![
                    c.serial.clone(),
                    cert_state(c, now).into(),
                    rfc3339(c.expires_at_ms),
                    c.issued_by.clone(),
                    c.revoked_by.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    )
}

fn print_sessions(sessions: &[SessionView]) -> anyhow::Result<()> {
    if sessions.is_empty() {
        println!("none");
        return Ok(());
    }
    output::table(
        &["ID", "LOGGED IN", "LAST USED", "ENDS", "FROM", "BROWSER"],
        sessions
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    ago(Some(s.created_at_ms)),
                    ago(Some(s.last_used_ms)),
                    rfc3339(s.idle_expires_at_ms.min(s.expires_at_ms)),
                    s.client_addr.clone().unwrap_or_else(|| "-".into()),
                    s.user_agent.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    )
}

/// A user after a password was set: as JSON (with the password, if it was generated here), or,
/// for a generated password, the password alone on stdout and `notice` on stderr. A password
/// given by the admin is never printed.
fn print_with_password(
    user: &UserView,
    json: bool,
    generated: Option<&str>,
    notice: &str,
) -> anyhow::Result<()> {
    if json {
        let mut value = user_json(user);
        if let Some(password) = generated {
            value["password"] = json!(password);
        }
        print_json(&value)?;
    } else if let Some(password) = generated {
        println!("{password}");
        eprintln!("{notice}");
    }
    Ok(())
}

fn changed(user: &UserView, json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        print_json(&user_json(user))?;
    }
    eprintln!("{what}");
    Ok(())
}

pub async fn run(
    client: &AdminClient,
    identity: &AdminIdentity,
    command: UserCommand,
) -> anyhow::Result<u8> {
    match command {
        UserCommand::Add {
            name,
            role,
            email,
            password_stdin,
            no_password,
            json,
        } => {
            if role == Role::Bridge && password_stdin {
                bail!("a bridge is a service with a certificate; it has no password");
            }
            let (secret, generated) = if no_password || role == Role::Bridge {
                (None, false)
            } else {
                let (password, generated) = password(password_stdin, &name)?;
                (Some(password), generated)
            };
            let user = one_user(
                client
                    .request(&AdminRequest::UserAdd(NewUser {
                        name: name.clone(),
                        role,
                        email,
                        password: secret.clone().map(Secret::new),
                    }))
                    .await?,
            )?;
            let notice = format!(
                "The line above is {name}'s password, generated and shown this once; hand it \
                 over privately (`tether user passwd {name}` sets another)."
            );
            let generated = secret.as_deref().filter(|_| generated);
            print_with_password(&user, json, generated, &notice)?;
            eprintln!(
                "created {} {name}; give them a certificate with `tether user cert {name} --out FILE`",
                user.role
            );
        }
        UserCommand::List { json } => {
            let mut users = Vec::new();
            for response in client.request(&AdminRequest::UserList).await? {
                if let AdminResponse::Users(chunk) = response {
                    users.extend(chunk);
                }
            }
            if json {
                print_json(&users.iter().map(user_json).collect::<Vec<_>>())?;
            } else {
                output::table(
                    &[
                        "NAME",
                        "ROLE",
                        "STATE",
                        "EMAIL",
                        "CERTS",
                        "SESSIONS",
                        "LAST LOGIN",
                    ],
                    users
                        .iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                u.role.to_string(),
                                if u.enabled { "enabled" } else { "disabled" }.into(),
                                u.email.clone().unwrap_or_else(|| "-".into()),
                                u.active_certs.to_string(),
                                u.sessions.to_string(),
                                ago(u.last_login_ms),
                            ]
                        })
                        .collect(),
                )?;
            }
        }
        UserCommand::Show { name, json } => {
            let user = one_user(
                client
                    .request(&AdminRequest::UserShow { name: name.clone() })
                    .await?,
            )?;
            let certs = certs_of(
                client
                    .request(&AdminRequest::UserCerts { name: name.clone() })
                    .await?,
            );
            let sessions = sessions_of(client.request(&AdminRequest::UserSessions { name }).await?);
            if json {
                let now = now_ms();
                let mut value = user_json(&user);
                value["certs"] = json!(certs.iter().map(|c| cert_json(c, now)).collect::<Vec<_>>());
                value["session_list"] =
                    json!(sessions.iter().map(session_json).collect::<Vec<_>>());
                print_json(&value)?;
            } else {
                println!("name:        {}", user.name);
                println!("role:        {}", user.role);
                println!(
                    "state:       {}",
                    if user.enabled { "enabled" } else { "disabled" }
                );
                println!("email:       {}", user.email.as_deref().unwrap_or("-"));
                println!(
                    "password:    {}",
                    if user.has_password {
                        "set"
                    } else {
                        "none (certificates only)"
                    }
                );
                println!("created:     {}", rfc3339(user.created_at_ms));
                println!("updated:     {}", rfc3339(user.updated_at_ms));
                println!(
                    "last login:  {}{}",
                    ago(user.last_login_ms),
                    user.last_login_addr
                        .as_deref()
                        .map(|a| format!(" from {a}"))
                        .unwrap_or_default()
                );
                println!("\ncertificates:");
                print_certs(&certs)?;
                println!("\nlogin sessions:");
                print_sessions(&sessions)?;
            }
        }
        UserCommand::Role { name, role, json } => {
            let user = one_user(
                client
                    .request(&AdminRequest::UserRole { name, role })
                    .await?,
            )?;
            changed(&user, json, &format!("{} is now {}", user.name, user.role))?;
        }
        UserCommand::Disable { name, json } => {
            let user = one_user(
                client
                    .request(&AdminRequest::UserEnable {
                        name,
                        enabled: false,
                    })
                    .await?,
            )?;
            changed(
                &user,
                json,
                &format!(
                    "disabled {}: their connections are closed, terminals and sessions ended",
                    user.name
                ),
            )?;
        }
        UserCommand::Enable { name, json } => {
            let user = one_user(
                client
                    .request(&AdminRequest::UserEnable {
                        name,
                        enabled: true,
                    })
                    .await?,
            )?;
            changed(&user, json, &format!("enabled {}", user.name))?;
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            json,
        } => {
            let (secret, generated) = password(password_stdin, &name)?;
            let user = one_user(
                client
                    .request(&AdminRequest::UserPasswd {
                        name: name.clone(),
                        password: Secret::new(secret.clone()),
                        current: None,
                    })
                    .await?,
            )?;
            let notice = format!("The line above is {name}'s new password, shown this once.");
            let generated = generated.then_some(secret.as_str());
            print_with_password(&user, json, generated, &notice)?;
            eprintln!("password of {name} set; their login sessions are ended");
        }
        UserCommand::Delete { name, json } => {
            let user = one_user(client.request(&AdminRequest::UserDelete { name }).await?)?;
            changed(
                &user,
                json,
                &format!(
                    "deleted {}: certificates revoked, sessions ended, connections closed",
                    user.name
                ),
            )?;
        }
        UserCommand::Cert {
            name,
            out,
            expires,
            json,
        } => {
            if out.as_os_str() == "-" {
                bail!("an identity holds a private key: give a file name, not standard output");
            }
            if out.exists() {
                bail!(
                    "{} exists; choose another file (it is never overwritten)",
                    out.display()
                );
            }
            let dir = match out.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                bail!("{} is not a directory; nothing was issued", dir.display());
            }
            let (new, cert) = client.issue_identity(identity, &name, expires).await?;
            if let Err(e) = new.save(&out) {
                // The key is lost with the file: the certificate must not stay valid.
                let revoked = client
                    .request(&AdminRequest::RevokeCert {
                        serial: cert.serial.clone(),
                    })
                    .await;
                let state = match revoked {
                    Ok(_) => "it was revoked again".to_string(),
                    Err(r) => format!(
                        "revoking it failed too ({r}): revoke it with `tether user revoke-cert {}`",
                        cert.serial
                    ),
                };
                return Err(anyhow::Error::new(e).context(format!(
                    "writing {} failed after core issued certificate {}; {state}",
                    out.display(),
                    cert.serial
                )));
            }
            if json {
                let mut value = cert_json(&cert, now_ms());
                value["file"] = json!(out.display().to_string());
                print_json(&value)?;
            }
            eprintln!(
                "Wrote the identity of {name} to {} (mode 0600): certificate {} valid until {}.\n\
                 Hand it over privately; use it with `tether --identity FILE`. Revoke it with \
                 `tether user revoke-cert {}`.",
                out.display(),
                cert.serial,
                rfc3339(cert.expires_at_ms),
                cert.serial
            );
        }
        UserCommand::Certs { name, json } => {
            let certs = certs_of(client.request(&AdminRequest::UserCerts { name }).await?);
            if json {
                let now = now_ms();
                print_json(&certs.iter().map(|c| cert_json(c, now)).collect::<Vec<_>>())?;
            } else {
                print_certs(&certs)?;
            }
        }
        UserCommand::RevokeCert { serial, json } => {
            let cert = crate::single(
                client.request(&AdminRequest::RevokeCert { serial }).await?,
                |r| match r {
                    AdminResponse::Cert(cert) => Some(cert),
                    _ => None,
                },
            )?;
            if json {
                print_json(&cert_json(&cert, now_ms()))?;
            }
            eprintln!(
                "certificate {} of {} is revoked; connections using it are closed",
                cert.serial, cert.user
            );
        }
        UserCommand::Sessions { name, json } => {
            let sessions = sessions_of(client.request(&AdminRequest::UserSessions { name }).await?);
            if json {
                print_json(&sessions.iter().map(session_json).collect::<Vec<_>>())?;
            } else {
                print_sessions(&sessions)?;
            }
        }
        UserCommand::Logout {
            name,
            session,
            json,
        } => {
            let ended = crate::single(
                client
                    .request(&AdminRequest::UserLogout {
                        name: name.clone(),
                        session,
                    })
                    .await?,
                |r| match r {
                    AdminResponse::LoggedOut { sessions } => Some(sessions),
                    _ => None,
                },
            )?;
            if json {
                print_json(&json!({ "user": name, "sessions_ended": ended }))?;
            }
            eprintln!("ended {ended} login session(s) of {name}");
        }
    }
    Ok(0)
}
