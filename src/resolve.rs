//! The node's side of DNS seeding (SPEC §12): look up `_seedmesh._tcp.NAME SRV` through a
//! DNS server (`--resolver`, or the nameservers of `/etc/resolv.conf`), over UDP with a retry
//! over TCP when the answer is truncated, and turn the answer into nodes. Messages are
//! hickory-proto's; the sockets are std's, every one bounded by the caller's timeout.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::dnsseed::{MAX_UDP_SIZE, SERVICE};
use crate::nodes::Node;

/// Where the system's nameservers are listed (resolv.conf(5)).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why a lookup found no nodes.
#[derive(Debug)]
pub enum LookupError {
    /// The name is not a valid domain name.
    BadName(String),
    /// No nameserver to ask: no `--resolver`, and none in `/etc/resolv.conf`.
    NoResolver(String),
    /// No nameserver answered within the timeout.
    Timeout,
    /// A socket could not be opened, or sending or reading failed.
    Io(io::Error),
    /// The nameserver answered with an error: `NXDOMAIN` (no such seed zone), `SERVFAIL`,
    /// `REFUSED`, ….
    Rcode(ResponseCode),
    /// The answer could not be read.
    BadAnswer(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::BadName(e) => write!(f, "bad domain name: {e}"),
            LookupError::NoResolver(e) => write!(f, "no nameserver to ask: {e}"),
            LookupError::Timeout => f.write_str("no answer in time"),
            LookupError::Io(e) => write!(f, "{e}"),
            LookupError::Rcode(code) => write!(f, "the nameserver answered {code}"),
            LookupError::BadAnswer(e) => write!(f, "bad answer: {e}"),
        }
    }
}

impl std::error::Error for LookupError {}

impl From<io::Error> for LookupError {
    fn from(e: io::Error) -> Self {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            LookupError::Timeout
        } else {
            LookupError::Io(e)
        }
    }
}

/// The nodes that `_seedmesh._tcp.DOMAIN SRV` lists, asking `resolver` or else the system's
/// nameservers in turn, all within `timeout`. An SRV target with an address record in the
/// answer gives a node per address; one without (a hostname node) gives a hostname node.
pub fn seed_nodes(
    domain: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Vec<Node>, LookupError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let qname = Name::from_ascii(format!("{SERVICE}.{domain}."))
        .map_err(|e| LookupError::BadName(format!("{domain:?}: {e}")))?;
    let servers = match resolver {
        Some(server) => vec![server],
        None => system_resolvers()?,
    };
    let deadline = Instant::now() + timeout;
    let mut last = LookupError::Timeout;
    for (i, server) in servers.iter().enumerate() {
        // Share the time left among the servers not yet asked.
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / (servers.len() - i) as u32;
        if share.is_zero() {
            break;
        }
        match ask(*server, &qname, Instant::now() + share) {
            Ok(answer) => match answer.metadata.response_code {
                ResponseCode::NoError => return Ok(nodes_in(&qname, &answer)),
                // The zone's own word: another server would say the same.
                ResponseCode::NXDomain => return Err(LookupError::Rcode(ResponseCode::NXDomain)),
                code => last = LookupError::Rcode(code),
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The nameservers of `/etc/resolv.conf`, on port 53.
pub fn system_resolvers() -> Result<Vec<SocketAddr>, LookupError> {
    let text = std::fs::read_to_string(RESOLV_CONF)
        .map_err(|e| LookupError::NoResolver(format!("cannot read {RESOLV_CONF}: {e}")))?;
    let servers = nameservers(&text);
    if servers.is_empty() {
        return Err(LookupError::NoResolver(format!(
            "{RESOLV_CONF} lists no nameserver; give --resolver"
        )));
    }
    Ok(servers)
}

/// The `nameserver` lines of a resolv.conf text, as port-53 addresses (an IPv6 zone index,
/// `fe80::1%eth0`, is dropped with the address).
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The nodes an answer lists for the SRV question `qname`: each SRV record's port with each
/// address its target has in the answer, or the target itself when it has none.
pub fn nodes_in(qname: &Name, answer: &Message) -> Vec<Node> {
    let records = || answer.answers.iter().chain(&answer.additionals);
    let mut nodes = Vec::new();
    for record in answer
        .answers
        .iter()
        .filter(|r| r.name.eq_ignore_root(qname))
    {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        // RFC 2782: a target of "." means the service is not offered there.
        if srv.target.is_root() || srv.port == 0 {
            continue;
        }
        let addresses: Vec<IpAddr> = records()
            .filter(|r| r.name.eq_ignore_root(&srv.target))
            .filter_map(|r| match r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        let hosts: Vec<String> = if addresses.is_empty() {
            let target = srv.target.to_ascii();
            vec![target.strip_suffix('.').unwrap_or(&target).to_owned()]
        } else {
            addresses.iter().map(IpAddr::to_string).collect()
        };
        for host in hosts {
            match Node::new(&host, srv.port) {
                Ok(node) if !nodes.contains(&node) => nodes.push(node),
                Ok(_) => {}
                Err(e) => log::debug!("SRV target {host}:{} skipped: {e}", srv.port),
            }
        }
    }
    nodes
}

/// Asks one server, over UDP and then over TCP if the answer is truncated.
fn ask(server: SocketAddr, qname: &Name, deadline: Instant) -> Result<Message, LookupError> {
    let id = fastrand::u16(..);
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query
        .queries
        .push(Query::query(qname.clone(), RecordType::SRV));
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_SIZE);
    query.edns = Some(edns);
    let bytes = query
        .to_vec()
        .map_err(|e| LookupError::BadName(e.to_string()))?;
    let answer = ask_udp(server, &bytes, id, deadline)?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    ask_tcp(server, &bytes, id, deadline)
}

fn time_left(deadline: Instant) -> Result<Duration, LookupError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(LookupError::Timeout);
    }
    Ok(left)
}

/// Whether `bytes` answer our query `id`; other datagrams (late answers to an earlier try,
/// noise) are not ours.
fn ours(bytes: &[u8], id: u16) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    (message.id == id && message.message_type == MessageType::Response).then_some(message)
}

fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    deadline: Instant,
) -> Result<Message, LookupError> {
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0))?;
    // Connected: the kernel drops datagrams from anyone but the server.
    socket.connect(server)?;
    socket.send(query)?;
    let mut buffer = vec![0u8; usize::from(MAX_UDP_SIZE) + 512];
    loop {
        socket.set_read_timeout(Some(time_left(deadline)?))?;
        let len = socket.recv(&mut buffer)?;
        if let Some(message) = ours(&buffer[..len], id) {
            return Ok(message);
        }
    }
}

fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    deadline: Instant,
) -> Result<Message, LookupError> {
    let mut stream = TcpStream::connect_timeout(&server, time_left(deadline)?)?;
    stream.set_write_timeout(Some(time_left(deadline)?))?;
    let length = u16::try_from(query.len()).map_err(|_| LookupError::BadName("too long".into()))?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    stream.set_read_timeout(Some(time_left(deadline)?))?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.set_read_timeout(Some(time_left(deadline)?))?;
    stream.read_exact(&mut answer)?;
    ours(&answer, id).ok_or_else(|| LookupError::BadAnswer("not an answer to our query".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, SRV};

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.org\nnameserver 127.0.0.53\nnameserver ::1\n\
                    nameserver fe80::1%eth0\noptions edns0\n";
        let want: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ];
        assert_eq!(nameservers(text), want);
    }

    #[test]
    fn srv_answers_become_nodes() {
        let qname = Name::from_ascii("_seedmesh._tcp.seed.test.").unwrap();
        let target = |s: &str| Name::from_ascii(s).unwrap();
        let mut answer = Message::new(1, MessageType::Response, OpCode::Query);
        for (port, name) in [
            (55001, "127-0-0-1.seed.test."),
            (55002, "node.example.org."),
            (55003, "."),
            (0, "127-0-0-1.seed.test."),
        ] {
            let srv = SRV::new(0, 0, port, target(name));
            answer
                .answers
                .push(Record::from_rdata(qname.clone(), 60, RData::SRV(srv)));
        }
        answer.additionals.push(Record::from_rdata(
            target("127-0-0-1.SEED.test."),
            60,
            RData::A(A("127.0.0.1".parse().unwrap())),
        ));
        assert_eq!(
            nodes_in(&qname, &answer),
            vec![
                Node::new("127.0.0.1", 55001).unwrap(),
                Node::new("node.example.org", 55002).unwrap()
            ]
        );
    }
}
