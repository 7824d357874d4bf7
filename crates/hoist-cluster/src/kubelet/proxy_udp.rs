//! UDP Service ports for the userspace proxy: datagrams to ClusterIP:port (in a pod's
//! namespace) or 127.0.0.1:nodePort (on the host) go to a ready endpoint chosen per client
//! address (round-robin over new clients, like conntrack keeps a UDP flow on one backend);
//! replies come back from the Service address. A flow idle for [`IDLE`] is forgotten.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// kube-proxy's UDP conntrack timeout is of this order.
const IDLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// Flows per listener (one reply thread each); datagrams of further clients are dropped.
const MAX_FLOWS: usize = 256;

type Targets = Arc<Mutex<Vec<(PathBuf, Ipv4Addr, u16)>>>;

struct Flow {
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the listener started, at the last datagram either way.
    last: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// Serves `sock` until `stop`, on its own thread.
pub(super) fn serve(sock: UdpSocket, stop: Arc<AtomicBool>, targets: Targets) -> io::Result<()> {
    sock.set_read_timeout(Some(POLL))?;
    let sock = Arc::new(sock);
    std::thread::Builder::new()
        .name("svc-udp".into())
        .spawn(move || {
            let started = Instant::now();
            let now = move || started.elapsed().as_millis() as u64;
            let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
            let mut next = 0usize;
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                match sock.recv_from(&mut buf) {
                    Ok((n, client)) => {
                        if !flows.contains_key(&client) {
                            if flows.len() >= MAX_FLOWS {
                                tracing::warn!(
                                    "UDP service listener at {MAX_FLOWS} flows: dropping"
                                );
                                continue;
                            }
                            let list = targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
                            if list.is_empty() {
                                continue;
                            }
                            let target = list[next % list.len()].clone();
                            next = next.wrapping_add(1);
                            match open_flow(&sock, client, target, started) {
                                Ok(f) => {
                                    flows.insert(client, f);
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, "UDP service backend unreachable");
                                    continue;
                                }
                            }
                        }
                        let f = &flows[&client];
                        f.last.store(now(), Ordering::Relaxed);
                        if let Err(e) = f.upstream.send(&buf[..n]) {
                            tracing::debug!(error = %e, "UDP service send failed");
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "UDP service receive failed");
                        std::thread::sleep(POLL);
                    }
                }
                let t = now();
                flows.retain(|_, f| {
                    let idle =
                        t.saturating_sub(f.last.load(Ordering::Relaxed)) > IDLE.as_millis() as u64;
                    let keep = !idle && !f.stop.load(Ordering::Relaxed);
                    if !keep {
                        f.stop.store(true, Ordering::Relaxed);
                    }
                    keep
                });
            }
            for f in flows.values() {
                f.stop.store(true, Ordering::Relaxed);
            }
        })?;
    Ok(())
}

/// A socket in the endpoint's namespace connected to it, and a thread returning its
/// replies to `client` from the Service address.
fn open_flow(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    (netns, ip, port): (PathBuf, Ipv4Addr, u16),
    started: Instant,
) -> io::Result<Flow> {
    let now = move || started.elapsed().as_millis() as u64;
    let upstream =
        hoist_runtime::netns::bind_udp(&netns, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(io::Error::other)?;
    upstream.connect(SocketAddr::from((ip, port)))?;
    upstream.set_read_timeout(Some(POLL))?;
    let flow = Flow {
        upstream: Arc::new(upstream),
        last: Arc::new(AtomicU64::new(now())),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (up, stop, listener) = (flow.upstream.clone(), flow.stop.clone(), listener.clone());
    let last = flow.last.clone();
    std::thread::Builder::new()
        .name("svc-udp-flow".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                match up.recv(&mut buf) {
                    Ok(n) => {
                        let _ = listener.send_to(&buf[..n], client);
                        // Replies keep the flow alive too.
                        last.store(now(), Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    // ECONNREFUSED: nothing listens at the endpoint (yet); keep the flow.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(_) => {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        })?;
    Ok(flow)
}
