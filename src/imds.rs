//! Instance metadata from IMDSv2, through the SDK's IMDS client (token PUT, then GETs).
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` points it elsewhere, which is how tests use a local
//! server. A path AWS does not generate for this instance answers 404: that is `Ok(None)`.

use aws_config::imds::client::error::ImdsError;
use aws_config::imds::Client;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// One error type for every IMDS lookup; it names the path asked for.
#[derive(Debug)]
pub enum ImdsLookupError {
    Request {
        path: &'static str,
        source: Box<ImdsError>,
    },
    /// The answer was not what AWS documents (e.g. spot/instance-action not JSON).
    Unexpected { path: &'static str, detail: String },
}

impl fmt::Display for ImdsLookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdsLookupError::Request { path, source } => {
                write!(f, "instance metadata (IMDSv2) {path}: {source}")
            }
            ImdsLookupError::Unexpected { path, detail } => {
                write!(
                    f,
                    "instance metadata (IMDSv2) {path}: unexpected answer: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for ImdsLookupError {}

/// A Spot interruption notice: `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpotAction {
    /// `terminate`, `stop` or `hibernate`.
    pub action: String,
    /// When it happens (RFC 3339, UTC).
    pub time: String,
}

pub struct ImdsClient {
    client: Client,
}

const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const REGION: &str = "/latest/meta-data/placement/region";
const INSTANCE_LIFE_CYCLE: &str = "/latest/meta-data/instance-life-cycle";
const TARGET_LIFECYCLE_STATE: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";
const SPOT_INSTANCE_ACTION: &str = "/latest/meta-data/spot/instance-action";

impl ImdsClient {
    /// The SDK's client with its defaults (IMDSv2 only, honours the endpoint variable).
    pub fn new() -> Self {
        ImdsClient {
            client: Client::builder().build(),
        }
    }

    /// A client for watching: it asks again every second anyway, so one retry and short
    /// timeouts, lest a hung metadata service delay the next look by many seconds.
    pub fn for_watching() -> Self {
        ImdsClient {
            client: Client::builder()
                .max_attempts(2)
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(1))
                .build(),
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
            .map_err(|source| ImdsLookupError::Request {
                path,
                source: Box::new(source),
            })
    }

    /// `Ok(None)` when IMDS answers 404 (AWS does not generate that item here).
    async fn get_optional(&self, path: &'static str) -> Result<Option<String>, ImdsLookupError> {
        match self.get(path).await {
            Ok(s) => Ok(Some(s)),
            Err(ImdsLookupError::Request { source, .. }) if is_not_found(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn fetch_instance_id(&self) -> Result<String, ImdsLookupError> {
        self.get(INSTANCE_ID).await
    }

    pub async fn fetch_region(&self) -> Result<String, ImdsLookupError> {
        self.get(REGION).await
    }

    /// `spot`, `on-demand` or `scheduled`.
    pub async fn fetch_instance_life_cycle(&self) -> Result<Option<String>, ImdsLookupError> {
        self.get_optional(INSTANCE_LIFE_CYCLE).await
    }

    /// `InService`, `Terminated`, `Warmed:Terminated`, …; `None` outside a group (or in a
    /// group whose instances AWS does not generate the item for).
    pub async fn fetch_target_lifecycle_state(&self) -> Result<Option<String>, ImdsLookupError> {
        self.get_optional(TARGET_LIFECYCLE_STATE).await
    }

    /// The pending Spot interruption, if any.
    pub async fn fetch_spot_instance_action(&self) -> Result<Option<SpotAction>, ImdsLookupError> {
        let Some(body) = self.get_optional(SPOT_INSTANCE_ACTION).await? else {
            return Ok(None);
        };
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| ImdsLookupError::Unexpected {
                path: SPOT_INSTANCE_ACTION,
                detail: format!("{e}: {body:.200}"),
            })
    }
}

fn is_not_found(e: &ImdsError) -> bool {
    matches!(e, ImdsError::ErrorResponse(r) if r.response().status().as_u16() == 404)
}

impl Default for ImdsClient {
    fn default() -> Self {
        Self::new()
    }
}
