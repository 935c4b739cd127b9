//! Every decoder of stream bytes (control, admin, execution output, terminal, release upload and download streams): arbitrary input never panics, never allocates beyond the limit,
//! and whatever decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::control::{CoreMessage, NodeMessage};
use tether_wire::deploys::{DownloadFrame, DownloadRequest, MAX_DOWNLOAD_FRAME_LEN};
use tether_wire::exec::ExecFrame;
use tether_wire::frame::{Decoded, FrameReader, decode_frame, encode_frame};
use tether_wire::limits::{
    MAX_ADMIN_FRAME_LEN, MAX_CONTROL_FRAME_LEN, MAX_EXEC_FRAME_LEN, MAX_TTY_FRAME_LEN,
};
use tether_wire::releases::UploadFrame;
use tether_wire::tty::{TtyInput, TtyOpen, TtyOutput};

fn check<T>(data: &[u8], max: usize)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(Decoded::Complete { message, consumed }) = decode_frame::<T>(data, max) {
        assert!(consumed <= data.len());
        let again = encode_frame(&message, max).expect("a decoded message re-encodes within the limit");
        match decode_frame::<T>(&again, max) {
            Ok(Decoded::Complete { message: back, .. }) => assert_eq!(back, message),
            other => panic!("re-encoded frame does not decode: {other:?}"),
        }
    }
    // The same bytes fed in uneven pieces through the streaming reader never panic.
    let mut reader = FrameReader::new(max);
    for chunk in data.chunks(7) {
        reader.push(chunk);
        while let Ok(Some(_)) = reader.next_message::<T>() {}
    }
}

fuzz_target!(|data: &[u8]| {
    check::<NodeMessage>(data, MAX_CONTROL_FRAME_LEN);
    check::<CoreMessage>(data, MAX_CONTROL_FRAME_LEN);
    check::<AdminRequest>(data, MAX_ADMIN_FRAME_LEN);
    check::<AdminResponse>(data, MAX_ADMIN_FRAME_LEN);
    check::<ExecFrame>(data, MAX_EXEC_FRAME_LEN);
    check::<TtyOpen>(data, MAX_TTY_FRAME_LEN);
    check::<TtyInput>(data, MAX_TTY_FRAME_LEN);
    check::<TtyOutput>(data, MAX_TTY_FRAME_LEN);
    check::<UploadFrame>(data, MAX_ADMIN_FRAME_LEN);
    check::<DownloadRequest>(data, MAX_DOWNLOAD_FRAME_LEN);
    check::<DownloadFrame>(data, MAX_DOWNLOAD_FRAME_LEN);
});
