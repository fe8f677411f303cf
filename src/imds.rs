//! Instance identity from IMDSv2, through the SDK's IMDS client (token PUT, then GETs).
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` points it elsewhere, which is how tests use a local server.

use aws_config::imds::client::error::ImdsError;
use aws_config::imds::Client;
use std::fmt;

/// One error type for every IMDS lookup; it names the path asked for.
#[derive(Debug)]
pub enum ImdsLookupError {
    Request {
        path: &'static str,
        source: ImdsError,
    },
}

impl fmt::Display for ImdsLookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdsLookupError::Request { path, source } => write!(
                f,
                "instance metadata (IMDSv2) {path}: {source}; off EC2, pass --instance-id"
            ),
        }
    }
}

impl std::error::Error for ImdsLookupError {}

pub struct ImdsClient {
    client: Client,
}

const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const REGION: &str = "/latest/meta-data/placement/region";

impl ImdsClient {
    /// The SDK's client with its defaults (IMDSv2 only, honours the endpoint variable).
    pub fn new() -> Self {
        ImdsClient {
            client: Client::builder().build(),
        }
    }

    /// A client for a given base URI (tests).
    pub fn with_endpoint(uri: &str) -> Result<Self, String> {
        let b = Client::builder()
            .endpoint(uri)
            .map_err(|e| format!("bad IMDS endpoint {uri}: {e}"))?;
        Ok(ImdsClient { client: b.build() })
    }

    async fn get(&self, path: &'static str) -> Result<String, ImdsLookupError> {
        self.client
            .get(path)
            .await
            .map(|s| s.as_ref().trim().to_string())
            .map_err(|source| ImdsLookupError::Request { path, source })
    }

    pub async fn fetch_instance_id(&self) -> Result<String, ImdsLookupError> {
        self.get(INSTANCE_ID).await
    }

    pub async fn fetch_region(&self) -> Result<String, ImdsLookupError> {
        self.get(REGION).await
    }
}

impl Default for ImdsClient {
    fn default() -> Self {
        Self::new()
    }
}
