//! QUIC settings every Tether endpoint shares, so that both ends of a connection agree.

use quinn::{EndpointConfig, MtuDiscoveryConfig};

use crate::limits::MAX_UDP_PAYLOAD;

/// Path MTU discovery up to [`MAX_UDP_PAYLOAD`] (see there): for core and the CLI. It finds
/// large packets only towards an endpoint set up with [`accept_large_packets`].
pub fn mtu_discovery() -> MtuDiscoveryConfig {
    let mut discovery = MtuDiscoveryConfig::default();
    discovery.upper_bound(MAX_UDP_PAYLOAD);
    discovery
}

/// Lets an endpoint (core's, the CLI's) accept datagrams up to [`MAX_UDP_PAYLOAD`], and tell its
/// peers so.
pub fn accept_large_packets(config: &mut EndpointConfig) {
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("within quinn's bounds");
}
