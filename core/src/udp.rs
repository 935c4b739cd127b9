//! UDP sockets with buffers sized for many QUIC connections.
//!
//! Linux gives a UDP socket about 208 KiB of receive buffer; a burst from thousands of nodes
//! overflows it, the kernel drops packets, and QUIC's loss recovery turns the drops into stalls of
//! seconds. So core asks for more (the kernel grants at most `net.core.rmem_max`) and says so when
//! it gets less.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

/// Binds a UDP socket at `addr` with `buffer` bytes of receive and send buffer (as far as the
/// kernel allows). Returns the socket and the receive buffer actually granted.
pub fn bind(addr: SocketAddr, buffer: usize) -> std::io::Result<(std::net::UdpSocket, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Listening on [::] serves IPv4 too.
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    // Linux reports twice what it granted (it counts its own bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    Ok((socket.into(), granted))
}

/// Like [`bind`], logging what was granted, and how to get more when the kernel clamped it.
pub fn bind_logged(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    let (socket, granted) = bind(addr, buffer)?;
    if granted + 4096 < buffer {
        warn!(
            requested = buffer,
            granted,
            "the kernel limits UDP receive buffers (net.core.rmem_max); under bursts from many nodes \
             packets will be dropped. Raise it: sysctl -w net.core.rmem_max={buffer} net.core.wmem_max={buffer}"
        );
    } else {
        info!(receive_buffer = granted, "UDP socket ready");
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_raised_as_far_as_allowed() {
        let (socket, granted) = bind("127.0.0.1:0".parse().unwrap(), 1024 * 1024).unwrap();
        assert!(socket.local_addr().unwrap().port() > 0);
        // Whatever the limit on this machine, more than the kernel default was asked and some given.
        assert!(granted > 0);
    }
}
