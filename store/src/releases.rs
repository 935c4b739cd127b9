//! Agent releases (seed 002's `versions`): each build's signed manifest, notes and uploader,
//! numbered, with an index by version, OS and architecture (unique, as the seed's
//! `uk_component_version_os_arch`). The files themselves are core's business (kept on disk
//! by SHA-256); the store keeps only what describes them.

use redb::{ReadableTable, ReadableTableMetadata};
use tether_wire::releases::{MAX_RELEASES, Manifest, Release};

use crate::codec::{self, Stored};
use crate::tables::{META, RELEASE_BY_BUILD, RELEASES, RELEASES_NEXT_ID};
use crate::{Store, StoreError};

impl Stored for Release {}

/// Why a release was not added or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseRefusal {
    /// That version, OS and architecture exists.
    #[error("release {0} exists already; delete it first or give another version")]
    Exists(String),
    /// Core keeps at most [`MAX_RELEASES`].
    #[error("at most {0} releases may exist; delete old ones first")]
    Limit(usize),
    /// Nothing matches.
    #[error("no release {0}")]
    NotFound(String),
    /// The change is refused (the caller's reason).
    #[error("{0}")]
    Invalid(String),
}

impl Store {
    /// Adds a release. Refused if its version, OS and architecture exist.
    pub async fn add_release(
        &self,
        manifest: Manifest,
        notes: String,
        by: String,
        now_ms: i64,
    ) -> Result<Result<Release, ReleaseRefusal>, StoreError> {
        self.write(move |txn| {
            let key = (
                manifest.version.as_str(),
                manifest.os.as_str(),
                manifest.arch.as_str(),
            );
            let mut by_build = txn.open_table(RELEASE_BY_BUILD)?;
            if by_build.get(key)?.is_some() {
                return Ok(Err(ReleaseRefusal::Exists(manifest.describe())));
            }
            let mut releases = txn.open_table(RELEASES)?;
            if releases.len()? >= MAX_RELEASES as u64 {
                return Ok(Err(ReleaseRefusal::Limit(MAX_RELEASES)));
            }
            let mut meta = txn.open_table(META)?;
            let id = meta.get(RELEASES_NEXT_ID)?.map_or(1, |v| v.value());
            meta.insert(RELEASES_NEXT_ID, id + 1)?;
            by_build.insert(key, id)?;
            let release = Release {
                id,
                manifest: manifest.clone(),
                notes,
                uploaded_by: by,
                uploaded_at_ms: now_ms,
            };
            releases.insert(id, codec::encode(&release).as_slice())?;
            Ok(Ok(release))
        })
        .await
    }

    /// Every release, newest first.
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(RELEASES)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            out.push(codec::decode::<Release>(entry?.1.value())?);
        }
        Ok(out)
    }

    /// Release number `id`.
    pub fn release(&self, id: u64) -> Result<Option<Release>, StoreError> {
        let txn = self.read()?;
        txn.open_table(RELEASES)?
            .get(id)?
            .map(|v| codec::decode::<Release>(v.value()))
            .transpose()
    }

    /// The build of `version` for `os` and `arch`.
    pub fn release_for(
        &self,
        version: &str,
        os: &str,
        arch: &str,
    ) -> Result<Option<Release>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn
            .open_table(RELEASE_BY_BUILD)?
            .get((version, os, arch))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        txn.open_table(RELEASES)?
            .get(id)?
            .map(|v| codec::decode::<Release>(v.value()))
            .transpose()
    }

    /// Every build of `version`, by OS and architecture.
    pub fn releases_of(&self, version: &str) -> Result<Vec<Release>, StoreError> {
        let txn = self.read()?;
        let by_build = txn.open_table(RELEASE_BY_BUILD)?;
        let releases = txn.open_table(RELEASES)?;
        let mut out = Vec::new();
        for entry in by_build.range((version, "", "")..)? {
            let (key, id) = entry?;
            if key.value().0 != version {
                break;
            }
            if let Some(v) = releases.get(id.value())? {
                out.push(codec::decode::<Release>(v.value())?);
            }
        }
        Ok(out)
    }

    /// Deletes the builds of `version` (only `os`'s and `arch`'s when given), unless `keep`
    /// refuses one (it sees each release in the transaction and answers why it must stay).
    /// Answers those deleted; nothing is deleted when one is refused.
    pub async fn delete_releases(
        &self,
        version: String,
        os: Option<String>,
        arch: Option<String>,
        keep: impl Fn(&Release) -> Option<String> + Send + 'static,
    ) -> Result<Result<Vec<Release>, ReleaseRefusal>, StoreError> {
        self.write(move |txn| {
            let mut by_build = txn.open_table(RELEASE_BY_BUILD)?;
            let mut releases = txn.open_table(RELEASES)?;
            let mut chosen = Vec::new();
            for entry in by_build.range((version.as_str(), "", "")..)? {
                let (key, id) = entry?;
                let (v, o, a) = key.value();
                if v != version {
                    break;
                }
                if os.as_deref().is_some_and(|os| os != o)
                    || arch.as_deref().is_some_and(|arch| arch != a)
                {
                    continue;
                }
                if let Some(value) = releases.get(id.value())? {
                    chosen.push(codec::decode::<Release>(value.value())?);
                }
            }
            if chosen.is_empty() {
                let what = match (&os, &arch) {
                    (None, None) => version,
                    (os, arch) => format!(
                        "{version} {}/{}",
                        os.as_deref().unwrap_or("*"),
                        arch.as_deref().unwrap_or("*")
                    ),
                };
                return Ok(Err(ReleaseRefusal::NotFound(what)));
            }
            for release in &chosen {
                if let Some(why) = keep(release) {
                    return Ok(Err(ReleaseRefusal::Invalid(why)));
                }
            }
            for release in &chosen {
                let m = &release.manifest;
                by_build.remove((m.version.as_str(), m.os.as_str(), m.arch.as_str()))?;
                releases.remove(release.id)?;
            }
            Ok(Ok(chosen))
        })
        .await
    }
}
