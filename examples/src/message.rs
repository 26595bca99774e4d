//! The message framing the samples share: a JSON object with a `"v"`
//! version tag beside the message's own fields.

use conclave_enclave::{EnclaveContext, EnclaveError};
use serde::{Serialize, de::DeserializeOwned};

/// A body that is not a valid message of a sample's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage(pub String);

impl core::fmt::Display for BadMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadMessage {}

/// A message with its version tag, as it travels.
#[derive(Serialize)]
struct Versioned<'a, T> {
    v: u64,
    #[serde(flatten)]
    message: &'a T,
}

/// Encodes `message` as JSON tagged with `version`.
pub(crate) fn encode<T: Serialize>(version: u64, message: &T) -> Vec<u8> {
    // The samples' messages hold strings, numbers and booleans only (stats
    // refuses non-finite numbers before they get here): serialisation
    // cannot fail, and an empty body would be refused by the peer anyway.
    serde_json::to_vec(&Versioned { v: version, message }).unwrap_or_default()
}

/// Decodes a JSON message, refusing a missing or different version tag.
pub(crate) fn decode<T: DeserializeOwned>(version: u64, body: &[u8]) -> Result<T, BadMessage> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BadMessage(format!("body is not JSON: {e}")))?;
    let object = value.as_object_mut().ok_or_else(|| BadMessage("message must be a JSON object".into()))?;
    match object.remove("v").map(|v| v.as_u64()) {
        Some(Some(v)) if v == version => {}
        Some(Some(v)) => {
            return Err(BadMessage(format!("unsupported version {v}: this enclave speaks version {version}")));
        }
        Some(None) => return Err(BadMessage("\"v\" must be a whole number".into())),
        None => return Err(BadMessage(format!("message has no version: add \"v\": {version}"))),
    }
    serde_json::from_value(value).map_err(|e| BadMessage(format!("malformed message: {e}")))
}

/// Gives a sample's `Request` and `Response` types their `to_body` and
/// `parse` methods, framed by [`encode`] and [`decode`] with the module's
/// `VERSION`.
macro_rules! json_messages {
    ($($message:ty: $what:literal),+ $(,)?) => {
        $(
            impl $message {
                #[doc = concat!("The mail body for this ", $what, ".")]
                pub fn to_body(&self) -> Vec<u8> {
                    $crate::message::encode(VERSION, self)
                }

                #[doc = concat!("Parses the mail body of a ", $what, ".")]
                pub fn parse(body: &[u8]) -> Result<Self, BadMessage> {
                    $crate::message::decode(VERSION, body)
                }
            }
        )+
    };
}
pub(crate) use json_messages;

/// Seals a sample's whole state into the persistent map under `key` (as
/// JSON), so that it is committed with the call's replies and a restarted
/// enclave resumes where it was.
pub(crate) fn save<T: Serialize>(ctx: &mut EnclaveContext<'_>, key: &str, state: &T) -> Result<(), EnclaveError> {
    let bytes = serde_json::to_vec(state).map_err(|e| EnclaveError::application(format!("cannot save {key}: {e}")))?;
    ctx.persistent_map().insert(key, bytes)?;
    Ok(())
}

/// The state [`save`] left under `key`, if any.
pub(crate) fn load<T: DeserializeOwned>(ctx: &mut EnclaveContext<'_>, key: &str) -> Result<Option<T>, EnclaveError> {
    ctx.persistent_map()
        .get(key)
        .map(|bytes| {
            serde_json::from_slice(bytes)
                .map_err(|e| EnclaveError::application(format!("saved {key} is unreadable: {e}")))
        })
        .transpose()
}
