//! The real [`DhcpService`]: per tap, a UDP socket bound to the tap (`SO_BINDTODEVICE`) on port 67
//! with `SO_BROADCAST`, and a thread answering what arrives with [`packet::answer`] for that tap's
//! lease, out of the same tap (to 255.255.255.255:68 for a client without an address). A tap has
//! no address, so a client's broadcast (from 0.0.0.0) is delivered to the socket of the tap it came
//! in on and to no other; the reply leaves through the tap whatever the routes say.
//!
//! A tap libvirt deletes and creates again (a VM stopped and started) is a new device: a socket of
//! the old one hears nothing, so each pass checks that every socket is still bound to a device of
//! its tap's name and opens a new one when not. One thread per served tap: they sleep in `recv`
//! (woken every [`POLL`] to see whether to stop).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::IntCounter;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::{packet, DhcpService, Lease};

/// How often a serving thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(200);

struct Port {
    socket: Arc<UdpSocket>,
    lease: Arc<Mutex<Lease>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Port {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// DHCP on the host's taps (or, for tests, a named network namespace's).
pub struct UdpDhcp {
    /// `/run/netns/<name>`: sockets are made in that namespace (tests); `None`: the agent's own.
    netns: Option<PathBuf>,
    ports: Mutex<BTreeMap<String, Port>>,
    /// Replies sent.
    replies: IntCounter,
}

impl std::fmt::Debug for UdpDhcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpDhcp").field("netns", &self.netns).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UdpDhcp {
    /// In the agent's network namespace (the host's).
    pub fn host() -> Self {
        Self::new(None)
    }

    /// In network namespace `name` (`ip netns add`): tests, like `IpDataPlane::in_netns`.
    pub fn in_netns(name: &str) -> Self {
        Self::new(Some(crate::netns::path_of(name)))
    }

    fn new(netns: Option<PathBuf>) -> Self {
        let replies = IntCounter::new("dhcp_replies", "DHCP replies sent")
            .unwrap_or_else(|e| unreachable!("a valid counter name: {e}"));
        UdpDhcp { netns, ports: Mutex::new(BTreeMap::new()), replies }
    }

    /// Counts the replies it sends in `replies` (the agent's `hci_agent_dhcp_replies_total`).
    pub fn counting(mut self, replies: IntCounter) -> Self {
        self.replies = replies;
        self
    }

    fn open(&self, tap: &str) -> Result<UdpSocket, String> {
        let make = {
            let tap = tap.to_string();
            move || -> std::io::Result<UdpSocket> {
                let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                socket.set_reuse_address(true)?;
                socket.bind_device(Some(tap.as_bytes()))?;
                socket.set_broadcast(true)?;
                socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, packet::SERVER_PORT).into())?;
                let socket: UdpSocket = socket.into();
                socket.set_read_timeout(Some(POLL))?;
                Ok(socket)
            }
        };
        let result = match &self.netns {
            None => make(),
            // A socket belongs to the namespace of the thread that made it: a short-lived thread
            // enters the namespace, makes it and ends.
            Some(path) => {
                let path = path.clone();
                std::thread::spawn(move || {
                    crate::netns::enter(&path)?;
                    make()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the socket thread panicked")))
            }
        };
        result.map_err(|e| format!("dhcp socket on {tap}: {e}"))
    }

    /// Whether `port`'s socket is still bound to a device named `tap` (not one deleted since).
    fn current(port: &Port, tap: &str) -> bool {
        matches!(SockRef::from(port.socket.as_ref()).device(), Ok(Some(name)) if name == tap.as_bytes())
    }

    fn start(&self, tap: &str, lease: &Lease) -> Result<Port, String> {
        let socket = Arc::new(self.open(tap)?);
        let lease = Arc::new(Mutex::new(lease.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, lease, stop, name) = (socket.clone(), lease.clone(), stop.clone(), tap.to_string());
            let replies = self.replies.clone();
            std::thread::Builder::new()
                .name(format!("dhcp-{tap}"))
                .spawn(move || run(&socket, &lease, &stop, &name, &replies))
                .map_err(|e| format!("dhcp thread for {tap}: {e}"))?
        };
        tracing::info!(%tap, "dhcp: serving");
        Ok(Port { socket, lease, stop, thread: Some(thread) })
    }
}

fn run(socket: &UdpSocket, lease: &Mutex<Lease>, stop: &AtomicBool, tap: &str, replies: &IntCounter) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::warn!(%tap, error = %e, "dhcp: receiving");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let lease = lock(lease).clone();
        let Some(datagram) = buf.get(..n) else { continue };
        match packet::parse(datagram) {
            Err(e) => tracing::debug!(%tap, error = %e, "dhcp: not a request"),
            Ok(req) => match packet::respond(&req, &lease) {
                None => tracing::debug!(%tap, kind = ?req.kind, mac = ?req.chaddr, "dhcp: not answered"),
                Some(reply) => {
                    let to = packet::destination(&req, &reply);
                    match socket.send_to(&packet::encode(&reply), to) {
                        Ok(_) => {
                            replies.inc();
                            tracing::info!(%tap, kind = ?reply.kind, ip = %lease.ip, %to, "dhcp: answered")
                        }
                        Err(e) => tracing::warn!(%tap, %to, error = %e, "dhcp: sending the reply"),
                    }
                }
            },
        }
    }
}

impl DhcpService for UdpDhcp {
    fn serve(&self, leases: &BTreeMap<String, Lease>) -> BTreeMap<String, String> {
        let mut ports = lock(&self.ports);
        // Taps no longer served, and sockets whose tap was deleted (and perhaps made again) since.
        let gone: Vec<String> = ports
            .iter()
            .filter(|(tap, port)| !leases.contains_key(*tap) || !Self::current(port, tap))
            .map(|(t, _)| t.clone())
            .collect();
        let mut stopping = Vec::new();
        for tap in gone {
            if let Some(mut port) = ports.remove(&tap) {
                port.stop();
                stopping.push(port);
            }
        }
        stopping.into_iter().for_each(Port::join);
        let mut errors = BTreeMap::new();
        for (tap, lease) in leases {
            match ports.get(tap) {
                Some(port) => *lock(&port.lease) = lease.clone(),
                None => match self.start(tap, lease) {
                    Ok(port) => {
                        ports.insert(tap.clone(), port);
                    }
                    Err(e) => {
                        errors.insert(tap.clone(), e);
                    }
                },
            }
        }
        errors
    }
}

impl Drop for UdpDhcp {
    fn drop(&mut self) {
        let ports = std::mem::take(&mut *lock(&self.ports));
        let mut ports: Vec<Port> = ports.into_values().collect();
        ports.iter_mut().for_each(Port::stop);
        ports.into_iter().for_each(Port::join);
    }
}
