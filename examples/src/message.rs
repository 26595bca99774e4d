//! The message framing the samples share: a JSON object with a `"v"`
//! version tag beside the message's own fields.

use conclave_enclave::{EnclaveContext, EnclaveError, EnclaveMail};
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
/// `VERSION`, and lets [`answer`] turn a refusal into the `Response`'s
/// `Error { message }`.
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

        impl $crate::message::Answer for Response {
            fn refused(message: String) -> Self {
                Self::Error { message }
            }

            fn body(&self) -> Vec<u8> {
                self.to_body()
            }
        }
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

/// Why a sample did not carry out a request.
pub(crate) enum Refusal {
    /// The sender's fault: answered with an error reply.
    Bad(String),
    /// The enclave could not act: the call fails and leaves nothing behind.
    Failed(EnclaveError),
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Self::Bad(message)
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Self {
        Self::Bad(message.to_owned())
    }
}

impl From<BadMessage> for Refusal {
    fn from(e: BadMessage) -> Self {
        Self::Bad(e.0)
    }
}

impl From<EnclaveError> for Refusal {
    fn from(e: EnclaveError) -> Self {
        Self::Failed(e)
    }
}

/// A sample's reply type.
pub(crate) trait Answer {
    /// The reply that tells the sender what was wrong.
    fn refused(message: String) -> Self;
    /// The reply's mail body.
    fn body(&self) -> Vec<u8>;
}

/// How every sample answers a mail: `handle` it; on success seal the
/// sample's state under `key` (with this call's replies); on a refusal reply
/// with what is wrong, changing nothing; if the enclave cannot act, fail the
/// call so that nothing of it is committed.
pub(crate) fn answer<S: Serialize, R: Answer>(
    state: &mut S,
    key: &str,
    ctx: &mut EnclaveContext<'_>,
    mail: &EnclaveMail,
    routing_hint: Option<&str>,
    handle: impl FnOnce(&mut S, &mut EnclaveContext<'_>, &EnclaveMail, Option<&str>) -> Result<R, Refusal>,
) -> Result<(), EnclaveError> {
    let response = match handle(state, ctx, mail, routing_hint) {
        Ok(response) => {
            save(ctx, key, state)?;
            response
        }
        Err(Refusal::Bad(message)) => R::refused(message),
        Err(Refusal::Failed(e)) => return Err(e),
    };
    ctx.reply(mail, &response.body(), routing_hint)
}

/// Replaces `state` with the one [`answer`] sealed under `key` in an earlier run, if any.
pub(crate) fn resume<S: DeserializeOwned>(
    state: &mut S,
    key: &str,
    ctx: &mut EnclaveContext<'_>,
) -> Result<(), EnclaveError> {
    if let Some(saved) = load(ctx, key)? {
        *state = saved;
    }
    Ok(())
}
