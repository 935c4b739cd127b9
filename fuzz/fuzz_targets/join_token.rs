//! The join token parser (text a human pastes): never panics; what parses re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_wire::token::JoinToken;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(token) = JoinToken::parse(&text) {
        assert_eq!(JoinToken::parse(&token.encode()).unwrap(), token);
    }
});
