//! How a server calls the other servers of its service id: over HTTPS when they serve it, trusting
//! the configured CA certificates, and with the peers' shared secret when authentication is on.

use crate::access::PEER_HEADER;
use crate::access_error::AccessError;

/// The setting naming the CA certificates (PEM) peers' HTTPS certificates are checked against.
pub const CA_LOCATION: &str = "eddy.rest.ssl.ca.location";

/// An HTTP client for peers.
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    secret: Option<String>,
}

impl Default for PeerClient {
    fn default() -> Self {
        PeerClient {
            http: reqwest::Client::new(),
            secret: None,
        }
    }
}

impl PeerClient {
    /// A client trusting the certificates of `ca_pem` besides the system's, sending `secret`.
    pub fn new(ca_pem: Option<&[u8]>, secret: Option<String>) -> Result<Self, AccessError> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| AccessError::Setting {
                    key: CA_LOCATION,
                    reason: format!("not PEM certificates: {e}"),
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| AccessError::Setting {
            key: CA_LOCATION,
            reason: e.to_string(),
        })?;
        Ok(PeerClient { http, secret })
    }

    /// A POST to a peer's URL.
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(url);
        match &self.secret {
            Some(secret) => request.header(PEER_HEADER, secret),
            None => request,
        }
    }
}
