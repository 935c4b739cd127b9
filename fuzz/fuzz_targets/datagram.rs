//! The heartbeat datagram decoder: arbitrary bytes never panic, and what decodes re-encodes to the
//! same datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_wire::heartbeat::{decode_datagram, encode_datagram};

fuzz_target!(|data: &[u8]| {
    if let Ok(datagram) = decode_datagram(data) {
        let again = encode_datagram(&datagram);
        // NaN metrics do not compare equal to themselves; compare the encodings instead.
        let back = decode_datagram(&again).expect("re-encoded datagram decodes");
        assert_eq!(encode_datagram(&back), again);
    }
});
