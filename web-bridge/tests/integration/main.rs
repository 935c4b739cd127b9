//! The bridge's end-to-end tests, as one test binary (each binary links core, node and bridge
//! again): `api` without a browser, `browser` in a real Chromium. Run one with
//! `cargo test -p tether-web-bridge --test integration browser::`.

mod support;

mod api;
mod browser;
