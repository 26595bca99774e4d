//! What an enclave keeps across restarts: the persistent map, the state id
//! and counter that make rollback visible, and the codecs of the sealed
//! state, mail-to-self and the state frame that leads every reply.
//!
//! All of this is enclave-private: the host only ever sees sealed blobs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use conclave_core::PublicKey;
pub use conclave_core::StateFrame;

use crate::EnclaveError;

/// The default size limit of the persistent map (keys plus values).
pub const DEFAULT_MAP_LIMIT: usize = 16 * 1024 * 1024;

/// A string-keyed byte map that survives restarts.
///
/// After every call that changed it, the runtime seals it under a new state
/// id and the next counter value and hands it to the host in the same batch
/// as that call's replies. If a call fails, its changes are undone.
#[derive(Debug, Default)]
pub struct PersistentMap {
    entries: BTreeMap<String, Vec<u8>>,
    size: usize,
    limit: usize,
    /// Snapshot taken at the first change of a call, restored if the call fails.
    backup: Option<(BTreeMap<String, Vec<u8>>, usize)>,
}

impl PersistentMap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { entries: BTreeMap::new(), size: 0, limit, backup: None }
    }

    fn touch(&mut self) {
        if self.backup.is_none() {
            self.backup = Some((self.entries.clone(), self.size));
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets `key` to `value`; refuses if the map would exceed its size limit.
    pub fn insert(&mut self, key: &str, value: Vec<u8>) -> Result<Option<Vec<u8>>, EnclaveError> {
        if key.len() > u16::MAX as usize {
            return Err(EnclaveError::application(format!("persistent map key of {} bytes is too long", key.len())));
        }
        let old_len = self.entries.get(key).map_or(0, |v| key.len() + v.len());
        let new_size = self.size - old_len + key.len() + value.len();
        if new_size > self.limit {
            return Err(EnclaveError::application(format!(
                "persistent map would hold {new_size} bytes, over its limit of {} bytes",
                self.limit
            )));
        }
        self.touch();
        self.size = new_size;
        Ok(self.entries.insert(key.to_owned(), value))
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<Vec<u8>> {
        if !self.entries.contains_key(key) {
            return None;
        }
        self.touch();
        let old = self.entries.remove(key)?;
        self.size -= key.len() + old.len();
        Some(old)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes used (keys plus values), counted against the limit.
    pub fn size_bytes(&self) -> usize {
        self.size
    }

    /// Whether the current call changed the map.
    pub(crate) fn changed(&self) -> bool {
        self.backup.is_some()
    }

    /// Ends a call: keep the changes, or undo them.
    pub(crate) fn end_call(&mut self, keep: bool) {
        if let Some((entries, size)) = self.backup.take()
            && !keep
        {
            self.entries = entries;
            self.size = size;
        }
    }
}

/// The enclave's durable state, as sealed.
#[derive(Debug, Default)]
pub(crate) struct DurableState {
    pub state_id: [u8; 16],
    pub counter: u64,
    pub next_self_mail: u64,
    pub shown: HashMap<PublicKey, u64>,
    /// Next expected sequence number of every (sender, topic) at sealing time.
    pub floors: Vec<(PublicKey, String, u64)>,
    /// Numbers of the mail-to-self posted and not yet deleted.
    pub live_self_mail: BTreeSet<u64>,
}

const SEALED_STATE_VERSION: u8 = 1;

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnclaveError> {
        if self.0.len() < n {
            return Err(EnclaveError::Persistence("sealed state is truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, EnclaveError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn u32(&mut self) -> Result<u32, EnclaveError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, EnclaveError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
}

/// Encodes the plaintext that gets sealed.
pub(crate) fn encode_state(state: &DurableState, map: &PersistentMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + map.size_bytes() + map.len() * 6);
    out.push(SEALED_STATE_VERSION);
    out.extend_from_slice(&state.state_id);
    out.extend_from_slice(&state.counter.to_be_bytes());
    out.extend_from_slice(&state.next_self_mail.to_be_bytes());
    out.extend_from_slice(&(map.len() as u32).to_be_bytes());
    for (key, value) in map.iter() {
        // Key lengths are checked on insert; values fit the map's limit.
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    let mut shown: Vec<_> = state.shown.iter().collect();
    shown.sort();
    out.extend_from_slice(&(shown.len() as u32).to_be_bytes());
    for (key, counter) in shown {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
    }
    out.extend_from_slice(&(state.floors.len() as u32).to_be_bytes());
    for (key, topic, expected) in &state.floors {
        out.extend_from_slice(key.as_bytes());
        // Topics are validated to at most 255 bytes.
        out.push(topic.len() as u8);
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&expected.to_be_bytes());
    }
    out.extend_from_slice(&(state.live_self_mail.len() as u32).to_be_bytes());
    for number in &state.live_self_mail {
        out.extend_from_slice(&number.to_be_bytes());
    }
    out
}

/// Decodes unsealed state into `map` (which keeps its limit).
pub(crate) fn decode_state(bytes: &[u8], map: &mut PersistentMap) -> Result<DurableState, EnclaveError> {
    let mut c = Cursor(bytes);
    let version = c.take(1)?[0];
    if version != SEALED_STATE_VERSION {
        return Err(EnclaveError::Persistence(format!(
            "sealed state version {version} is not supported (this enclave reads version {SEALED_STATE_VERSION})"
        )));
    }
    let mut state = DurableState {
        state_id: c.take(16)?.try_into().unwrap_or_default(),
        counter: c.u64()?,
        next_self_mail: c.u64()?,
        shown: HashMap::new(),
        floors: Vec::new(),
        live_self_mail: BTreeSet::new(),
    };
    let entries = c.u32()?;
    let mut fresh = PersistentMap::new(map.limit);
    for _ in 0..entries {
        let key_len = c.u16()? as usize;
        let key = std::str::from_utf8(c.take(key_len)?)
            .map_err(|_| EnclaveError::Persistence("sealed state has a key that is not UTF-8".into()))?
            .to_owned();
        let value_len = c.u32()? as usize;
        let value = c.take(value_len)?.to_vec();
        fresh.size += key.len() + value.len();
        fresh.entries.insert(key, value);
    }
    let shown = c.u32()?;
    for _ in 0..shown {
        let key = PublicKey::from_slice(c.take(32)?).ok_or_else(|| EnclaveError::bug("32-byte key"))?;
        state.shown.insert(key, c.u64()?);
    }
    let floors = c.u32()?;
    for _ in 0..floors {
        let key = PublicKey::from_slice(c.take(32)?).ok_or_else(|| EnclaveError::bug("32-byte key"))?;
        let topic_len = c.take(1)?[0] as usize;
        let topic = std::str::from_utf8(c.take(topic_len)?)
            .map_err(|_| EnclaveError::Persistence("sealed state has a topic that is not UTF-8".into()))?
            .to_owned();
        state.floors.push((key, topic, c.u64()?));
    }
    let live = c.u32()?;
    for _ in 0..live {
        state.live_self_mail.insert(c.u64()?);
    }
    if !c.0.is_empty() {
        return Err(EnclaveError::Persistence("sealed state has trailing bytes".into()));
    }
    *map = fresh;
    Ok(state)
}

/// Mail to self, before sealing: its place in the enclave's own sequence, topic and body.
pub(crate) fn encode_self_mail(sequence: u64, topic: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + topic.len() + body.len());
    out.extend_from_slice(&sequence.to_be_bytes());
    // Topics are validated to at most 255 bytes.
    out.push(topic.len() as u8);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode_self_mail(bytes: &[u8]) -> Result<(u64, String, Vec<u8>), EnclaveError> {
    let mut c = Cursor(bytes);
    let sequence = c.u64()?;
    let topic_len = c.take(1)?[0] as usize;
    let topic = std::str::from_utf8(c.take(topic_len)?)
        .map_err(|_| EnclaveError::Persistence("mail to self has a topic that is not UTF-8".into()))?
        .to_owned();
    Ok((sequence, topic, c.0.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_undo_their_changes() {
        let mut map = PersistentMap::new(100);
        map.insert("a", vec![1]).unwrap();
        map.end_call(true);
        map.insert("a", vec![2]).unwrap();
        map.insert("b", vec![3]).unwrap();
        map.remove("a");
        map.end_call(false);
        assert_eq!(map.get("a"), Some(&[1u8][..]));
        assert!(!map.contains_key("b"));
        assert_eq!(map.size_bytes(), 2);
    }

    #[test]
    fn the_limit_is_enforced() {
        let mut map = PersistentMap::new(10);
        map.insert("k", vec![0; 9]).unwrap();
        assert!(map.insert("j", vec![0]).is_err());
        // Replacing a value counts only the difference.
        map.insert("k", vec![0; 8]).unwrap();
        map.insert("j", vec![]).unwrap();
    }

    #[test]
    fn state_round_trips() {
        let mut map = PersistentMap::new(1000);
        map.insert("x", b"1".to_vec()).unwrap();
        map.insert("yy", vec![]).unwrap();
        let mut state = DurableState {
            state_id: [9; 16],
            counter: 4,
            next_self_mail: 2,
            shown: HashMap::new(),
            floors: vec![(PublicKey::from_bytes([2; 32]), "t".to_owned(), 7)],
            live_self_mail: [1u64].into_iter().collect(),
        };
        state.shown.insert(PublicKey::from_bytes([1; 32]), 3);
        let bytes = encode_state(&state, &map);
        let mut restored = PersistentMap::new(1000);
        let back = decode_state(&bytes, &mut restored).unwrap();
        assert_eq!((back.state_id, back.counter, back.next_self_mail), ([9; 16], 4, 2));
        assert_eq!(back.shown.get(&PublicKey::from_bytes([1; 32])), Some(&3));
        assert_eq!(back.floors, state.floors);
        assert_eq!(back.live_self_mail, state.live_self_mail);
        assert_eq!(restored.get("x"), Some(&b"1"[..]));
        assert_eq!(restored.size_bytes(), map.size_bytes());
        for len in 0..bytes.len() {
            assert!(decode_state(&bytes[..len], &mut PersistentMap::new(1000)).is_err());
        }
    }
}
