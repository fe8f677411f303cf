//! systemd's notify protocol: `READY=1` and `STATUS=…` datagrams to `$NOTIFY_SOCKET`.
//! Without the variable (not under systemd, or `Type=simple`) every call is a no-op.

use std::os::unix::net::UnixDatagram;

fn send(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(msg.as_bytes(), &addr))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Tells systemd the service is up, with a first status line.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// Updates the line `systemctl status` shows.
pub fn status(status: &str) {
    send(&format!("STATUS={status}"));
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    send("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_status_reach_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // Only this test sets NOTIFY_SOCKET; the others never read it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        ready("idle, listening on q");
        status("draining: 1.0 MB left in 2 files");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=idle, listening on q");
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=draining: 1.0 MB left in 2 files");
    }
}
