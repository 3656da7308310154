//! Turns off Nagle's algorithm on PostgreSQL TCP connections.
//!
//! sqlx 0.9.0 stopped setting `TCP_NODELAY` (transact-rs/sqlx#4335, fixed upstream by #4336 but
//! not yet released). Without it, a request that leaves the client in more than one segment
//! waits for the server's delayed ACK: a flat ~40 ms on loopback, which capped the ledger at
//! ~2,400 pairs/s instead of ~6,000. sqlx does not hand out its socket, so on a new connection
//! we ask the server which client port it sees, find our socket with that local port among the
//! process's descriptors, and set the option on it. Remove this module once sqlx sets the
//! option itself again.
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, Error};

/// For `PoolOptions::after_connect`. Unix-socket connections (no client port) are left alone;
/// failing to find the socket only costs latency, so it is a warning, not an error.
pub async fn apply(connection: &mut PgConnection) -> Result<(), Error> {
    let (client, server): (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(&mut *connection)
            .await?;
    let port = |port: Option<i32>| port.and_then(|port| u16::try_from(port).ok());
    let (Some(local), Some(peer)) = (port(client), port(server)) else {
        return Ok(());
    };
    if !set_on_socket(local, peer) {
        // Behind NAT or a pooler the server sees other ports than ours.
        tracing::warn!(
            local,
            peer,
            "PostgreSQL socket not found, TCP_NODELAY not set: expect ~40 ms stalls; \
             a Unix-socket DATABASE_URL (?host=/var/run/postgresql) avoids them"
        );
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn set_on_socket(local_port: u16, peer_port: u16) -> bool {
    use std::os::fd::BorrowedFd;

    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    for entry in descriptors.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for two syscalls that fail harmlessly (EBADF,
        // ENOTSOCK) if it was closed or is not a socket; it is never closed here.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let port_of = |addr: std::io::Result<socket2::SockAddr>| {
            addr.ok()
                .and_then(|addr| addr.as_socket())
                .map(|addr| addr.port())
        };
        if port_of(socket.local_addr()) == Some(local_port)
            && port_of(socket.peer_addr()) == Some(peer_port)
        {
            return socket.set_tcp_nodelay(true).is_ok();
        }
    }
    false
}

#[cfg(not(target_os = "linux"))]
fn set_on_socket(_local_port: u16, _peer_port: u16) -> bool {
    false
}
