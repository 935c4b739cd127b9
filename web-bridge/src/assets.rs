//! The pages' files, embedded at compile time from `web-bridge/assets/` (the app, and the
//! vendored xterm.js, uPlot and asciinema-player with their licenses; see
//! `assets/refresh-vendor.sh`), so `cargo build` needs neither npm nor the network.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::{ApiError, AppState};

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
#[exclude = "*.sh"]
struct Assets;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

async fn index() -> Response {
    serve("app/index.html", "no-cache")
}

async fn asset(Path(path): Path<String>) -> Response {
    // Vendored files change only with a new bridge; the app's own files are revalidated so a
    // new bridge is picked up at once.
    let cache = if path.starts_with("vendor/") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    serve(&path, cache)
}

fn serve(path: &str, cache: &'static str) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such file: /assets/{path}"),
        )
        .into_response();
    };
    let mime = file.metadata.mimetype();
    let etag = format!("\"{}\"", hex_prefix(&file.metadata.sha256_hash()));
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn hex_prefix(hash: &[u8; 32]) -> String {
    hash[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::Assets;

    /// The page preloads every module of the app, so that none is found only level by level as
    /// imports are read (a module missing from the list still loads, just later).
    #[test]
    fn the_page_preloads_every_module() {
        let index = Assets::get("app/index.html").expect("embedded");
        let index = std::str::from_utf8(&index.data).expect("UTF-8");
        let modules: Vec<_> = Assets::iter()
            .filter(|path| path.starts_with("app/") && path.ends_with(".js"))
            .collect();
        assert!(modules.len() > 20, "{modules:?}");
        for module in modules {
            let link = format!("<link rel=\"modulepreload\" href=\"/assets/{module}\">");
            assert!(index.contains(&link), "index.html lacks {link}");
        }
    }
}
