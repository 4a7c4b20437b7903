//! DHCPv4 messages (RFC 2131, options RFC 2132) as far as a static-lease server needs them, and the
//! server's whole decision: [`parse`] a client's datagram, [`respond`] to it from the one [`Lease`]
//! of the tap it came in on, [`encode`] the reply, and [`destination`] it goes to. Pure functions
//! only (no sockets, no clock), so the real server and the tests share them; every input, however
//! malformed, gives a value or a [`ParseError`], never a panic.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The BOOTP fixed part: op .. file.
const FIXED: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Replies are padded to the BOOTP minimum (some clients drop shorter ones).
const MIN_REPLY: usize = 300;
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const FLAG_BROADCAST: u16 = 0x8000;
pub const SERVER_PORT: u16 = crate::firewall::ruleset::DHCP_SERVER_PORT;
pub const CLIENT_PORT: u16 = 68;

mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const INTERFACE_MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const END: u8 = 255;
}

/// Option 53.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        use MessageType::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0} bytes: shorter than a DHCP message")]
    TooShort(usize),
    #[error("op {0}: not a BOOTREQUEST")]
    NotRequest(u8),
    #[error("hardware type {htype} length {hlen}: not Ethernet")]
    NotEthernet { htype: u8, hlen: u8 },
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("option {0} runs past the end of the message")]
    TruncatedOption(u8),
    #[error("option {code} has length {len}, expected {expected}")]
    BadOptionLength { code: u8, len: usize, expected: usize },
    #[error("no message type option")]
    NoMessageType,
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
}

/// A client's message: the fields the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: MessageType,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54: the server the client chose.
    pub server_id: Option<Ipv4Addr>,
}

/// What one NIC is given: its IPAM address, with its zone's prefix length and gateway (also the
/// server identifier: the host answers for it by proxy ARP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub lease_secs: u32,
    pub mtu: Option<u16>,
}

/// One day: the address never changes while the NIC exists, so the lease only bounds how long a
/// guest keeps it after the NIC went away.
pub const LEASE_SECS: u32 = 86_400;

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub server_id: Ipv4Addr,
    /// Mask, router, lease times, MTU: for OFFER and ACK (not for NAK; INFORM gets no lease time).
    pub config: Option<Config>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub prefix: u8,
    pub router: Ipv4Addr,
    pub lease_secs: Option<u32>,
    pub mtu: Option<u16>,
}

/// `"52:54:00:aa:bb:cc"` as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

fn option_addr(code: u8, data: &[u8]) -> Result<Ipv4Addr, ParseError> {
    match data {
        &[a, b, c, d] => Ok(Ipv4Addr::new(a, b, c, d)),
        _ => Err(ParseError::BadOptionLength { code, len: data.len(), expected: 4 }),
    }
}

/// The options after the cookie, as (code, data), up to the end option; pads skipped; an option
/// running past the end is the last item, an error.
fn options(b: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), ParseError>> {
    let mut at = FIXED + COOKIE.len();
    std::iter::from_fn(move || loop {
        let code = *b.get(at)?;
        match code {
            opt::PAD => at += 1,
            opt::END => return None,
            _ => {
                let data = b
                    .get(at + 1)
                    .and_then(|&len| b.get(at + 2..at + 2 + usize::from(len)))
                    .ok_or(ParseError::TruncatedOption(code));
                at = if data.is_ok() { at + 2 + data.as_ref().map_or(0, |d| d.len()) } else { b.len() };
                return Some(data.map(|d| (code, d)));
            }
        }
    })
}

/// A client's datagram (the UDP payload). Options are read from the options field only (an
/// overloaded `sname`/`file`, option 52, is not looked into: no client needs it for a request).
pub fn parse(b: &[u8]) -> Result<Request, ParseError> {
    if b.len() < FIXED + COOKIE.len() {
        return Err(ParseError::TooShort(b.len()));
    }
    if b[0] != BOOTREQUEST {
        return Err(ParseError::NotRequest(b[0]));
    }
    if b[1] != HTYPE_ETHERNET || b[2] != 6 {
        return Err(ParseError::NotEthernet { htype: b[1], hlen: b[2] });
    }
    if b[FIXED..FIXED + 4] != COOKIE {
        return Err(ParseError::NoCookie);
    }
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&b[28..34]);
    let mut kind = None;
    let (mut requested_ip, mut server_id) = (None, None);
    for option in options(b) {
        let (code, data) = option?;
        let len = data.len();
        match code {
            opt::MESSAGE_TYPE => {
                let &[t] = data else {
                    return Err(ParseError::BadOptionLength { code, len, expected: 1 });
                };
                kind = Some(MessageType::from_u8(t).ok_or(ParseError::UnknownMessageType(t))?);
            }
            opt::REQUESTED_IP => requested_ip = Some(option_addr(code, data)?),
            opt::SERVER_ID => server_id = Some(option_addr(code, data)?),
            _ => {}
        }
    }
    Ok(Request {
        kind: kind.ok_or(ParseError::NoMessageType)?,
        xid: be32(b, 4),
        flags: be16(b, 10),
        ciaddr: addr(b, 12),
        giaddr: addr(b, 24),
        chaddr,
        requested_ip,
        server_id,
    })
}

/// What the server answers `req` with, given the lease of the tap it came in on; `None`: nothing
/// (a MAC other than the NIC's, a relayed message, another server chosen, a message a server does
/// not answer). It never hands out anything but `lease`.
pub fn respond(req: &Request, lease: &Lease) -> Option<Reply> {
    if req.chaddr != lease.mac || !req.giaddr.is_unspecified() {
        return None;
    }
    let config = |lease_secs| Config { prefix: lease.prefix, router: lease.gateway, lease_secs, mtu: lease.mtu };
    let reply = |kind, ciaddr, yiaddr, config| Reply {
        kind,
        xid: req.xid,
        flags: req.flags,
        ciaddr,
        yiaddr,
        chaddr: req.chaddr,
        server_id: lease.gateway,
        config,
    };
    let unspecified = Ipv4Addr::UNSPECIFIED;
    match req.kind {
        MessageType::Discover => {
            Some(reply(MessageType::Offer, unspecified, lease.ip, Some(config(Some(lease.lease_secs)))))
        }
        MessageType::Request => {
            if req.server_id.is_some_and(|s| s != lease.gateway) {
                return None; // the client took another server's offer
            }
            // SELECTING / INIT-REBOOT name the address in option 50; RENEWING / REBINDING in ciaddr.
            let wanted = req.requested_ip.or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr))?;
            if wanted == lease.ip {
                Some(reply(MessageType::Ack, req.ciaddr, lease.ip, Some(config(Some(lease.lease_secs)))))
            } else {
                Some(reply(MessageType::Nak, unspecified, unspecified, None))
            }
        }
        MessageType::Inform if req.ciaddr == lease.ip => {
            Some(reply(MessageType::Ack, req.ciaddr, unspecified, Some(config(None))))
        }
        _ => None,
    }
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0))
}

/// The reply as a UDP payload.
pub fn encode(r: &Reply) -> Vec<u8> {
    let mut b = vec![0u8; FIXED];
    b[0] = BOOTREPLY;
    b[1] = HTYPE_ETHERNET;
    b[2] = 6;
    b[4..8].copy_from_slice(&r.xid.to_be_bytes());
    b[10..12].copy_from_slice(&r.flags.to_be_bytes());
    b[12..16].copy_from_slice(&r.ciaddr.octets());
    b[16..20].copy_from_slice(&r.yiaddr.octets());
    b[28..34].copy_from_slice(&r.chaddr);
    b.extend_from_slice(&COOKIE);
    let mut put = |code: u8, data: &[u8]| {
        b.push(code);
        b.push(data.len() as u8);
        b.extend_from_slice(data);
    };
    put(opt::MESSAGE_TYPE, &[r.kind as u8]);
    put(opt::SERVER_ID, &r.server_id.octets());
    if let Some(c) = &r.config {
        if let Some(secs) = c.lease_secs {
            put(opt::LEASE_TIME, &secs.to_be_bytes());
            put(opt::RENEWAL_TIME, &(secs / 2).to_be_bytes());
            put(opt::REBINDING_TIME, &(secs / 8 * 7).to_be_bytes());
        }
        put(opt::SUBNET_MASK, &mask(c.prefix).octets());
        put(opt::ROUTER, &c.router.octets());
        if let Some(mtu) = c.mtu {
            put(opt::INTERFACE_MTU, &mtu.to_be_bytes());
        }
    }
    b.push(opt::END);
    if b.len() < MIN_REPLY {
        b.resize(MIN_REPLY, opt::PAD);
    }
    b
}

/// Where the reply to `req` goes (no relays): to the limited broadcast when the client asked for
/// it, has no address yet (the normal case) or is refused; else to its address.
pub fn destination(req: &Request, reply: &Reply) -> SocketAddrV4 {
    let broadcast = req.flags & FLAG_BROADCAST != 0 || req.ciaddr.is_unspecified() || reply.kind == MessageType::Nak;
    let to = if broadcast { Ipv4Addr::BROADCAST } else { req.ciaddr };
    SocketAddrV4::new(to, CLIENT_PORT)
}

/// The whole server step for one datagram on a tap: the reply's bytes and destination, or `None`.
pub fn answer(lease: &Lease, datagram: &[u8]) -> Option<(Vec<u8>, SocketAddrV4)> {
    let req = parse(datagram).ok()?;
    let reply = respond(&req, lease)?;
    Some((encode(&reply), destination(&req, &reply)))
}

/// A client's message (tests, and the test client in agent/tests): `kind` from `mac`, with options
/// 50 and 54 when given.
pub fn client_message(
    kind: MessageType,
    xid: u32,
    mac: [u8; 6],
    ciaddr: Ipv4Addr,
    requested_ip: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut b = vec![0u8; FIXED];
    b[0] = BOOTREQUEST;
    b[1] = HTYPE_ETHERNET;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[28..34].copy_from_slice(&mac);
    b.extend_from_slice(&COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    if let Some(ip) = requested_ip {
        b.extend_from_slice(&[opt::REQUESTED_IP, 4]);
        b.extend_from_slice(&ip.octets());
    }
    if let Some(ip) = server_id {
        b.extend_from_slice(&[opt::SERVER_ID, 4]);
        b.extend_from_slice(&ip.octets());
    }
    b.push(opt::END);
    b
}

/// A server's reply as a client reads it: (message type, yiaddr, server id, subnet mask, router,
/// lease time). `None` when it is not a well-formed BOOTREPLY.
pub fn read_reply(b: &[u8]) -> Option<ReplyView> {
    if b.len() < FIXED + 4 || b[0] != BOOTREPLY || b[FIXED..FIXED + 4] != COOKIE {
        return None;
    }
    let mut view = ReplyView {
        kind: None,
        xid: be32(b, 4),
        yiaddr: addr(b, 16),
        chaddr: [0; 6],
        server_id: None,
        mask: None,
        router: None,
        lease_secs: None,
        mtu: None,
    };
    view.chaddr.copy_from_slice(&b[28..34]);
    for option in options(b) {
        let (code, data) = option.ok()?;
        match (code, data) {
            (opt::MESSAGE_TYPE, &[t]) => view.kind = MessageType::from_u8(t),
            (opt::SERVER_ID, &[a, b, c, d]) => view.server_id = Some(Ipv4Addr::new(a, b, c, d)),
            (opt::SUBNET_MASK, &[a, b, c, d]) => view.mask = Some(Ipv4Addr::new(a, b, c, d)),
            (opt::ROUTER, &[a, b, c, d, ..]) => view.router = Some(Ipv4Addr::new(a, b, c, d)),
            (opt::LEASE_TIME, &[a, b, c, d]) => view.lease_secs = Some(u32::from_be_bytes([a, b, c, d])),
            (opt::INTERFACE_MTU, &[a, b]) => view.mtu = Some(u16::from_be_bytes([a, b])),
            _ => {}
        }
    }
    Some(view)
}

/// What [`read_reply`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyView {
    pub kind: Option<MessageType>,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub server_id: Option<Ipv4Addr>,
    pub mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub mtu: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x6e, 0x00, 0x01];
    const OTHER: [u8; 6] = [0x52, 0x54, 0x00, 0x6e, 0x00, 0x02];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    fn lease() -> Lease {
        Lease {
            mac: MAC,
            ip: ip("10.61.0.10"),
            prefix: 24,
            gateway: ip("10.61.0.1"),
            lease_secs: LEASE_SECS,
            mtu: None,
        }
    }

    /// A DISCOVER as busybox udhcpc sends it, built by hand: fixed part, cookie, message type,
    /// client id, parameter request list, max message size, end.
    fn udhcpc_discover() -> Vec<u8> {
        let mut b = vec![0u8; 236];
        b[..4].copy_from_slice(&[1, 1, 6, 0]);
        b[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        b[8..10].copy_from_slice(&[0, 3]); // secs
        b[28..34].copy_from_slice(&MAC);
        b.extend_from_slice(&[99, 130, 83, 99]);
        b.extend_from_slice(&[53, 1, 1]);
        b.extend_from_slice(&[61, 7, 1, 0x52, 0x54, 0x00, 0x6e, 0x00, 0x01]);
        b.extend_from_slice(&[0, 0]); // pad
        b.extend_from_slice(&[55, 7, 1, 3, 6, 12, 15, 28, 42]);
        b.extend_from_slice(&[57, 2, 0x02, 0x40]);
        b.push(255);
        b
    }

    #[test]
    fn parses_a_hand_built_discover() {
        let req = parse(&udhcpc_discover()).expect("parse");
        assert_eq!(
            req,
            Request {
                kind: MessageType::Discover,
                xid: 0xdead_beef,
                flags: 0,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                giaddr: Ipv4Addr::UNSPECIFIED,
                chaddr: MAC,
                requested_ip: None,
                server_id: None,
            }
        );
    }

    #[test]
    fn discover_gets_an_offer_of_the_lease_broadcast() {
        let (bytes, to) = answer(&lease(), &udhcpc_discover()).expect("an offer");
        assert_eq!(to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert!(bytes.len() >= 300);
        // Hand-checked bytes of the fixed part.
        assert_eq!(&bytes[..4], &[2, 1, 6, 0]);
        assert_eq!(&bytes[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&bytes[16..20], &[10, 61, 0, 10], "yiaddr");
        assert_eq!(&bytes[28..34], &MAC);
        assert_eq!(&bytes[236..240], &[99, 130, 83, 99]);
        assert_eq!(&bytes[240..243], &[53, 1, 2], "OFFER first");
        let view = read_reply(&bytes).expect("reply");
        assert_eq!(view.kind, Some(MessageType::Offer));
        assert_eq!(view.server_id, Some(ip("10.61.0.1")));
        assert_eq!(view.mask, Some(ip("255.255.255.0")));
        assert_eq!(view.router, Some(ip("10.61.0.1")));
        assert_eq!(view.lease_secs, Some(86_400));
        assert_eq!(view.mtu, None);
    }

    #[test]
    fn request_for_the_lease_is_acked_and_for_another_address_naked() {
        let l = lease();
        let req = client_message(MessageType::Request, 7, MAC, Ipv4Addr::UNSPECIFIED, Some(l.ip), Some(l.gateway));
        let (bytes, to) = answer(&l, &req).expect("ack");
        let view = read_reply(&bytes).expect("reply");
        assert_eq!((view.kind, view.yiaddr, view.xid), (Some(MessageType::Ack), l.ip, 7));
        assert_eq!(to.ip(), &Ipv4Addr::BROADCAST);
        let wrong = client_message(MessageType::Request, 8, MAC, Ipv4Addr::UNSPECIFIED, Some(ip("10.61.0.99")), None);
        let (bytes, to) = answer(&l, &wrong).expect("nak");
        let view = read_reply(&bytes).expect("reply");
        assert_eq!((view.kind, view.yiaddr, view.lease_secs), (Some(MessageType::Nak), Ipv4Addr::UNSPECIFIED, None));
        assert_eq!(to.ip(), &Ipv4Addr::BROADCAST);
        // Renewing (ciaddr set, no broadcast flag): unicast to the client.
        let renew = client_message(MessageType::Request, 9, MAC, l.ip, None, None);
        let (bytes, to) = answer(&l, &renew).expect("ack");
        assert_eq!(read_reply(&bytes).and_then(|v| v.kind), Some(MessageType::Ack));
        assert_eq!(to, SocketAddrV4::new(l.ip, 68));
        // Another server chosen: silence.
        let other =
            client_message(MessageType::Request, 10, MAC, Ipv4Addr::UNSPECIFIED, Some(l.ip), Some(ip("10.9.9.9")));
        assert_eq!(answer(&l, &other), None);
        // No address named at all: malformed, silence.
        let none = client_message(MessageType::Request, 11, MAC, Ipv4Addr::UNSPECIFIED, None, None);
        assert_eq!(answer(&l, &none), None);
    }

    #[test]
    fn unknown_macs_relays_and_other_messages_get_nothing() {
        let l = lease();
        for kind in [MessageType::Discover, MessageType::Request, MessageType::Inform] {
            let msg = client_message(kind, 1, OTHER, l.ip, Some(l.ip), None);
            assert_eq!(answer(&l, &msg), None, "{kind:?} from an unknown MAC");
        }
        for kind in [MessageType::Decline, MessageType::Release, MessageType::Offer, MessageType::Ack, MessageType::Nak]
        {
            let msg = client_message(kind, 1, MAC, Ipv4Addr::UNSPECIFIED, Some(l.ip), None);
            assert_eq!(answer(&l, &msg), None, "{kind:?}");
        }
        let mut relayed = client_message(MessageType::Discover, 1, MAC, Ipv4Addr::UNSPECIFIED, None, None);
        relayed[24..28].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(answer(&l, &relayed), None);
        let inform = client_message(MessageType::Inform, 2, MAC, l.ip, None, None);
        let view = read_reply(&answer(&l, &inform).expect("ack").0).expect("reply");
        assert_eq!((view.kind, view.lease_secs, view.router), (Some(MessageType::Ack), None, Some(l.gateway)));
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = udhcpc_discover();
        assert_eq!(parse(&good[..100]), Err(ParseError::TooShort(100)));
        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(parse(&reply), Err(ParseError::NotRequest(2)));
        let mut token_ring = good.clone();
        token_ring[1] = 6;
        assert!(matches!(parse(&token_ring), Err(ParseError::NotEthernet { .. })));
        let mut no_cookie = good.clone();
        no_cookie[236] = 0;
        assert_eq!(parse(&no_cookie), Err(ParseError::NoCookie));
        let truncated = &good[..good.len() - 3]; // inside option 57
        assert_eq!(parse(truncated), Err(ParseError::TruncatedOption(57)));
        let mut bad_type = good.clone();
        bad_type[242] = 42;
        assert_eq!(parse(&bad_type), Err(ParseError::UnknownMessageType(42)));
        let mut bad_len = client_message(MessageType::Request, 1, MAC, Ipv4Addr::UNSPECIFIED, Some(lease().ip), None);
        bad_len[244] = 3; // option 50 claims 3 bytes
        assert!(matches!(
            parse(&bad_len),
            Err(ParseError::BadOptionLength { code: 50, .. }) | Err(ParseError::TruncatedOption(_))
        ));
        let mut untyped = good[..240].to_vec();
        untyped.push(255);
        assert_eq!(parse(&untyped), Err(ParseError::NoMessageType));
    }

    #[test]
    fn masks_and_mtu() {
        assert_eq!(mask(24), ip("255.255.255.0"));
        assert_eq!(mask(0), ip("0.0.0.0"));
        assert_eq!(mask(32), ip("255.255.255.255"));
        assert_eq!(mask(200), ip("255.255.255.255"));
        let l = Lease { mtu: Some(1450), prefix: 20, ..lease() };
        let view = read_reply(&answer(&l, &udhcpc_discover()).expect("offer").0).expect("reply");
        assert_eq!((view.mtu, view.mask), (Some(1450), Some(ip("255.255.240.0"))));
        assert_eq!(parse_mac("52:54:00:6e:00:01"), Some(MAC));
        for bad in ["", "52:54:00:6e:00", "52:54:00:6e:00:01:02", "52:54:00:6e:00:zz", "5:254:00:6e:00:01"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Any bytes at all: a value or an error, never a panic; a reply only ever carries the lease.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let l = lease();
            let _ = parse(&bytes);
            let _ = read_reply(&bytes);
            if let Some((reply, _)) = answer(&l, &bytes) {
                let view = read_reply(&reply).expect("our own reply reads back");
                prop_assert!(view.yiaddr == l.ip || view.yiaddr.is_unspecified());
                prop_assert_eq!(view.chaddr, l.mac);
            }
        }

        /// Valid headers followed by arbitrary options: the same.
        #[test]
        fn arbitrary_options_never_panic(kind in 0u8..12, options in proptest::collection::vec(any::<u8>(), 0..300)) {
            let l = lease();
            let mut bytes = client_message(MessageType::Discover, 1, MAC, Ipv4Addr::UNSPECIFIED, None, None);
            bytes.truncate(240);
            bytes.extend_from_slice(&[53, 1, kind]);
            bytes.extend_from_slice(&options);
            if let Some((reply, _)) = answer(&l, &bytes) {
                let view = read_reply(&reply).expect("reply");
                prop_assert!(view.yiaddr == l.ip || view.yiaddr.is_unspecified());
            }
        }
    }
}
