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
