//! Whether the client of a request that is still being generated has gone. tiny_http hands a
//! request no handle on its socket, so the socket is found among the process's descriptors by
//! the client's address (the one connected descriptor with that peer), and the kernel asked for
//! its TCP state: a connection the client closed or reset is no longer established. (Reading
//! cannot tell: tiny_http shuts the reading side down itself after a request that asked for
//! `Connection: close`.) On Linux; elsewhere a client is never known to have gone.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A request's client, asked about its connection at most once every `every`.
pub struct Peer {
    addr: SocketAddr,
    every: Duration,
    /// When it was last asked (`None`: never).
    asked: Cell<Option<Instant>>,
    /// The descriptor last found for it.
    #[cfg(target_os = "linux")]
    fd: Cell<Option<i32>>,
}

impl Peer {
    pub fn new(addr: SocketAddr, every: Duration) -> Peer {
        Peer {
            addr,
            every,
            asked: Cell::new(None),
            #[cfg(target_os = "linux")]
            fd: Cell::new(None),
        }
    }

    /// Whether the client has closed or reset the connection; `false` until `every` has
    /// passed since it was last asked, and where it cannot be told (the socket not found, a
    /// system without the calls): the request then runs to its end as it would have.
    pub fn gone(&self) -> bool {
        let now = Instant::now();
        if self.asked.get().is_some_and(|t| now - t < self.every) {
            return false;
        }
        self.asked.set(Some(now));
        #[cfg(target_os = "linux")]
        {
            let fd = match self
                .fd
                .get()
                .filter(|fd| linux::peer(*fd) == Some(self.addr))
            {
                Some(fd) => fd,
                None => match linux::find(self.addr) {
                    Some(fd) => fd,
                    None => return false,
                },
            };
            self.fd.set(Some(fd));
            linux::closed(fd)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = self.addr;
            false
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    /// The address a descriptor's socket is connected to; `None` for anything else.
    pub fn peer(fd: i32) -> Option<SocketAddr> {
        // SAFETY: sockaddr_storage is plain data, large enough for any address; the length
        // says how much of it getpeername may write.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: as above; an invalid or non-socket descriptor only makes the call fail.
        let rc =
            unsafe { libc::getpeername(fd, (&raw mut storage).cast::<libc::sockaddr>(), &mut len) };
        if rc != 0 {
            return None;
        }
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a = unsafe { *(&raw const storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a = unsafe { *(&raw const storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let port = u16::from_be(a.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// The descriptor connected to `addr`, among those the process has open.
    pub fn find(addr: SocketAddr) -> Option<i32> {
        std::fs::read_dir("/proc/self/fd")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .find(|fd| peer(*fd) == Some(addr))
    }

    /// Whether TCP socket `fd` is no longer established: its peer ended or reset the
    /// connection (the server itself never closes its writing side first).
    pub fn closed(fd: i32) -> bool {
        // SAFETY: tcp_info is plain data; the length says how much getsockopt may write.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: as above.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        };
        rc == 0 && i32::from(info.tcpi_state) != ESTABLISHED
    }

    /// `TCP_ESTABLISHED` of the kernel's TCP states.
    const ESTABLISHED: i32 = 1;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_closed_connection_is_told_from_an_open_one() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server_side, addr) = listener.accept().expect("accept");
        let peer = Peer::new(addr, Duration::ZERO);
        assert!(!peer.gone(), "connected, nothing sent");
        let request = b"GET / HTTP/1.1\r\n\r\n";
        client.write_all(request).expect("write");
        assert!(!peer.gone(), "data waiting is no end");
        let mut read = vec![0u8; request.len()];
        server_side.read_exact(&mut read).expect("read");
        assert!(!peer.gone(), "read, still connected");
        server_side
            .shutdown(std::net::Shutdown::Read)
            .expect("shutdown");
        assert!(!peer.gone(), "the server's own end of reading is no close");
        drop(client);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !peer.gone() {
            assert!(
                std::time::Instant::now() < deadline,
                "the close was never seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // An address no socket of the process is connected to: cannot tell, so not gone.
        let nobody = Peer::new("127.0.0.1:9".parse().expect("addr"), Duration::ZERO);
        assert!(!nobody.gone());
        // Asked again before `every` has passed: not asked of the socket.
        let slow = Peer::new(addr, Duration::from_secs(3600));
        assert!(slow.gone(), "the first question is asked");
        assert!(!slow.gone(), "the second waits an hour");
    }
}
