//! Agent releases (`tether release ...`): upload, list, show, delete. An upload takes its
//! stream: the file follows the request. The files are `crate::releases`.

use tether_store::ReleaseRefusal;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::deploys::{DeployKind, DeployState};
use tether_wire::releases::{MAX_NOTES, Manifest, Release, ReleaseView, UploadFrame};
use tether_wire::stream::FramedRecv;
use tracing::info;

use super::{Refusal, Reply, internal, invalid};
use crate::auth::Caller;
use crate::server::Shared;

fn refused(refusal: ReleaseRefusal) -> Refusal {
    let code = match refusal {
        ReleaseRefusal::NotFound(_) => ErrorCode::NOT_FOUND,
        ReleaseRefusal::Exists(_) => ErrorCode::CONFLICT,
        ReleaseRefusal::Limit(_) => ErrorCode::LIMIT_REACHED,
        _ => ErrorCode::INVALID_ARGUMENT,
    };
    (code, refusal.to_string())
}

/// The checks an upload passes before its first byte is read: shape, notes, signature by a
/// key core trusts, not a duplicate.
fn check_upload(shared: &Shared, manifest: &Manifest, notes: &str) -> Result<(), Refusal> {
    manifest.check_shape().map_err(invalid)?;
    if notes.len() > MAX_NOTES {
        return Err(invalid(format!(
            "release notes are {} bytes; the limit is {MAX_NOTES}",
            notes.len()
        )));
    }
    if shared.config.release_keys.is_empty() {
        return Err((
            ErrorCode::BAD_SIGNATURE,
            "core trusts no release key yet: start it with --release-key KEY (or \
             release_keys in its config file), the public key `tether release keygen` printed"
                .into(),
        ));
    }
    tether_certs::release::verify(manifest, &shared.config.release_keys)
        .map_err(|e| (ErrorCode::BAD_SIGNATURE, e.to_string()))?;
    if shared
        .store
        .release_for(&manifest.version, &manifest.os, &manifest.arch)
        .map_err(internal)?
        .is_some()
    {
        return Err(refused(ReleaseRefusal::Exists(manifest.describe())));
    }
    Ok(())
}

/// `ReleaseUpload`: checks, then reads the file from `recv`, then keeps it.
pub(crate) async fn upload(
    shared: &Shared,
    caller: &Caller,
    manifest: &Manifest,
    notes: &str,
    recv: &mut FramedRecv,
) -> Reply {
    check_upload(shared, manifest, notes)?;
    let files = &shared.release_files;
    let mut incoming = files.receive(manifest).await.map_err(|e| {
        (
            ErrorCode::INTERNAL,
            format!("core cannot store release files: {e}"),
        )
    })?;
    loop {
        match recv.next::<UploadFrame>().await {
            Ok(Some(UploadFrame::Data(bytes))) => incoming
                .write(&bytes.0)
                .await
                .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?,
            Ok(None) => break,
            Ok(Some(_)) => return Err(invalid("unexpected frame in an upload".into())),
            Err(e) => {
                return Err((
                    e.protocol_code().unwrap_or(ErrorCode::MALFORMED),
                    format!("the upload ended early: {e}"),
                ));
            }
        }
    }
    incoming
        .finish(manifest, files)
        .await
        .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    let added = shared
        .store
        .add_release(
            manifest.clone(),
            notes.to_string(),
            caller.user.clone(),
            shared.now_ms(),
        )
        .await;
    let release = match added {
        Ok(Ok(release)) => release,
        Ok(Err(refusal)) => {
            forget_file(shared, manifest.sha256.as_bytes());
            return Err(refused(refusal));
        }
        Err(e) => {
            forget_file(shared, manifest.sha256.as_bytes());
            return Err(internal(e));
        }
    };
    info!(release = %manifest.describe(), by = %caller.user, size = manifest.size, "release uploaded");
    Ok(vec![AdminResponse::Releases(vec![view(
        &open_deploys(shared),
        release,
    )])])
}

/// Removes the file with this SHA-256 unless a release record names it (another version may
/// be the same file).
fn forget_file(shared: &Shared, sha256: &[u8; 32]) {
    let used = shared
        .store
        .releases()
        .is_ok_and(|all| all.iter().any(|r| r.manifest.sha256.as_bytes() == sha256));
    shared.release_files.remove_unless(sha256, used);
}

/// Deploys that have not ended, by the version they install: (version, deploy, state).
fn open_deploys(shared: &Shared) -> Vec<(String, u64, DeployState)> {
    shared
        .store
        .open_deploys()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.deploy.kind == DeployKind::Update)
        .map(|v| (v.deploy.spec.version, v.deploy.id, v.deploy.state))
        .collect()
}

/// A release with the deploys (of `open`, from [`open_deploys`]) that use it.
fn view(open: &[(String, u64, DeployState)], release: Release) -> ReleaseView {
    let active_deploys = open
        .iter()
        .filter(|(version, _, _)| *version == release.manifest.version)
        .map(|(_, id, _)| *id)
        .collect();
    ReleaseView {
        release,
        active_deploys,
    }
}

/// Every other release request.
pub(crate) async fn handle(shared: &Shared, _caller: &Caller, request: AdminRequest) -> Reply {
    let store = &shared.store;
    let open = open_deploys(shared);
    let views = |all: Vec<Release>, open: &[(String, u64, DeployState)]| {
        vec![AdminResponse::Releases(
            all.into_iter().map(|r| view(open, r)).collect(),
        )]
    };
    match request {
        AdminRequest::ReleaseList => Ok(views(store.releases().map_err(internal)?, &open)),
        AdminRequest::ReleaseShow { version } => {
            let builds = store.releases_of(&version).map_err(internal)?;
            if builds.is_empty() {
                return Err(refused(ReleaseRefusal::NotFound(version)));
            }
            Ok(views(builds, &open))
        }
        AdminRequest::ReleaseDelete { version, os, arch } => {
            let deleted = store
                .delete_releases(version, os, arch, move |release| {
                    open.iter()
                        .find(|(v, _, _)| *v == release.manifest.version)
                        .map(|(v, id, state)| {
                            format!(
                                "release {v} is used by deploy {id}, which is {state}: cancel it \
                                 (tether release cancel {id}) or let it finish first"
                            )
                        })
                })
                .await
                .map_err(internal)?
                .map_err(refused)?;
            for release in &deleted {
                forget_file(shared, release.manifest.sha256.as_bytes());
            }
            // No deploy uses what was deleted.
            Ok(views(deleted, &[]))
        }
        _ => Err(invalid("not a release request".into())),
    }
}
