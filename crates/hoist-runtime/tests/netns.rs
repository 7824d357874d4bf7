//! Pod network namespaces, as root (skipped like the other host tests): sockets bound
//! inside one answer from the address they were bound to.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use hoist_runtime::netns::{PodNetwork, bind_udp, delete_netns};
use support::runnable;

/// Deletes the namespace however the test ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = delete_netns(&self.0);
    }
}

#[test]
fn udp_binds_wait_for_lo_and_replies_reach_a_connected_client() {
    if !runnable("udp_binds_wait_for_lo_and_replies_reach_a_connected_client") {
        return;
    }
    let id = format!("netns-test-{}", std::process::id());
    let name = PodNetwork::name_for(&id);
    let _cleanup = Cleanup(name.clone());
    // A namespace as `ip netns add` leaves it, before `lo` is up: what a concurrent
    // reconcile can see of a pod being set up.
    let st = Command::new("ip").args(["netns", "add", &name]).status();
    assert!(st.unwrap().success());
    let path = std::path::Path::new("/run/netns").join(&name);
    let resolver = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 53), 53));
    let err = bind_udp(&path, resolver).expect_err("bound with lo down");
    assert!(err.to_string().contains("lo is not up yet"), "{err}");

    // Set up (the existing namespace is reused): now the bind works and its replies come
    // from the bound address, which is what a connected client accepts.
    let net = PodNetwork::create(&id, Ipv4Addr::new(127, 64, 255, 201)).unwrap();
    let server = bind_udp(&net.path, resolver).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let client = bind_udp(&net.path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    client.connect(resolver).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.send(b"query").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"query");
    server.send_to(b"reply", from).unwrap();
    let n = client.recv(&mut buf).expect("the reply reaches the client");
    assert_eq!(&buf[..n], b"reply");
}
