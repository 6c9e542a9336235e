//! TLS for SIP connections (`sips:`, RFC 5630), driven by hand: glommio has
//! no TLS, and a `rustls::ServerConnection` is itself sans-IO, so the
//! connection's reader hands it the bytes it read and its writer asks it
//! for the bytes to write.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{ServerConfig, ServerConnection};

use crate::mgmt::tls::TlsError;

/// The certificate and key of `sip.tls_cert` / `sip.tls_key`.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let mgmt = crate::mgmt::tls::load(cert, key)?;
    let mut cfg = (*mgmt).clone();
    // SIP clients offer no ALPN; the management plane's http/1.1 is not ours.
    cfg.alpn_protocols.clear();
    Ok(Arc::new(cfg))
}

/// One connection's TLS state.
pub struct TlsSession {
    conn: ServerConnection,
}

impl TlsSession {
    pub fn new(cfg: Arc<ServerConfig>) -> Option<TlsSession> {
        ServerConnection::new(cfg).ok().map(|conn| TlsSession { conn })
    }

    /// Feeds bytes read from the socket; the plaintext they carried is
    /// appended to `plain`. `Ok(true)`: TLS wants to send (handshake), so
    /// the writer must be woken. `Err`: the peer broke the protocol.
    pub fn open(&mut self, mut wire: &[u8], plain: &mut Vec<u8>) -> Result<bool, ()> {
        while !wire.is_empty() {
            match self.conn.read_tls(&mut wire) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err(()),
            }
            let state = self.conn.process_new_packets().map_err(|_| ())?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                let dst = plain.get_mut(start..).ok_or(())?;
                self.conn.reader().read_exact(dst).map_err(|_| ())?;
            }
        }
        Ok(self.conn.wants_write())
    }

    /// Encrypts `data` (empty: only flush what TLS itself wants to send)
    /// and returns the bytes for the socket. Plaintext given before the
    /// handshake ends is held by rustls and sent once it does.
    pub fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, ()> {
        if !data.is_empty() {
            self.conn.writer().write_all(data).map_err(|_| ())?;
        }
        let mut out = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut out).map_err(|_| ())? == 0 {
                break;
            }
        }
        Ok(out)
    }
}
