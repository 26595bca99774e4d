//! What an enclave keeps across restarts: the persistent map, the state id
//! and counter that make rollback visible, and the codecs of the sealed
//! state, mail-to-self and the state frame that leads every reply.
//!
//! All of this is enclave-private: the host only ever sees sealed blobs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use conclave_core::{PublicKey, ReplyChain, StateCheckpoint};

use crate::EnclaveError;

/// The default size limit of the persistent map (keys plus values).
pub const DEFAULT_MAP_LIMIT: usize = 16 * 1024 * 1024;

/// A string-keyed byte map that survives restarts.
///
/// After every call that changed it, the runtime seals it with the next
/// state of the enclave and hands it to the host in the same batch as that
/// call's replies. If a call fails, its changes are undone. Its limit is
/// shared with the runtime's own records (one per client and per stream).
#[derive(Debug, Default)]
pub struct PersistentMap {
    entries: BTreeMap<String, Vec<u8>>,
    size: usize,
    limit: usize,
    /// Bytes of the limit already taken by the runtime's own records
    /// (client records, stream floors), set before each call.
    pub(crate) reserved: usize,
    /// Snapshot taken at the first change of a call, restored if the call fails.
    backup: Option<(BTreeMap<String, Vec<u8>>, usize)>,
}

impl PersistentMap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { entries: BTreeMap::new(), size: 0, limit, reserved: 0, backup: None }
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
        if new_size.saturating_add(self.reserved) > self.limit {
            return Err(EnclaveError::application(format!(
                "persistent map would hold {new_size} bytes, over its limit of {} bytes ({} taken by the runtime's \
                 records of clients)",
                self.limit, self.reserved
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

/// What the enclave keeps about one client (any key it exchanged mail with).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ClientRecord {
    /// The head of the client's reply chain.
    pub chain: ReplyChain,
    /// The routing hint of the client's latest mail: where mail to it goes
    /// when the application names none.
    pub hint: Option<String>,
}

impl ClientRecord {
    /// Bytes this record counts against the state limit.
    pub fn size(&self) -> usize {
        32 + 40 + 2 + self.hint.as_ref().map_or(0, String::len)
    }
}

/// Bytes one stream's floor counts against the state limit.
pub(crate) fn stream_size(topic: &str) -> usize {
    32 + 1 + topic.len() + 8
}

/// How many run checkpoints the sealed state remembers.
pub const MAX_RUNS: usize = 64;

/// The enclave's durable state, as sealed.
#[derive(Debug, Clone, Default)]
pub(crate) struct DurableState {
    /// This state's place in the chain of sealed states.
    pub checkpoint: StateCheckpoint,
    /// The number the next mail-to-self gets.
    pub next_self_mail: u64,
    /// Per client: reply chain and routing hint.
    pub clients: HashMap<PublicKey, ClientRecord>,
    /// Per (sender, topic): the next sequence number expected. Only accepted
    /// mail creates an entry.
    pub streams: HashMap<(PublicKey, String), u64>,
    /// The checkpoints of the last [`MAX_RUNS`] runs' start states, oldest first.
    pub runs: VecDeque<StateCheckpoint>,
    /// Mail-to-self posted and not yet deleted: number → SHA-256 of its sealed blob.
    pub live_self_mail: BTreeMap<u64, [u8; 32]>,
}

impl DurableState {
    /// Bytes of client records and stream floors, counted against the state limit.
    pub fn protocol_size(&self) -> usize {
        self.clients.values().map(ClientRecord::size).sum::<usize>()
            + self.streams.keys().map(|(_, topic)| stream_size(topic)).sum::<usize>()
    }
}

const SEALED_STATE_VERSION: u8 = 2;

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
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnclaveError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, EnclaveError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, EnclaveError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, EnclaveError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn key(&mut self) -> Result<PublicKey, EnclaveError> {
        Ok(PublicKey::from_bytes(self.array()?))
    }
    fn text(&mut self, len: usize, what: &str) -> Result<String, EnclaveError> {
        std::str::from_utf8(self.take(len)?)
            .map(str::to_owned)
            .map_err(|_| EnclaveError::Persistence(format!("sealed state has a {what} that is not UTF-8")))
    }
}

/// Encodes the plaintext that gets sealed. Maps are written in key order,
/// so one state always encodes to the same bytes.
pub(crate) fn encode_state(state: &DurableState, map: &PersistentMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + map.size_bytes() + map.len() * 6 + state.protocol_size());
    out.push(SEALED_STATE_VERSION);
    out.extend_from_slice(&state.checkpoint.to_bytes());
    out.extend_from_slice(&state.next_self_mail.to_be_bytes());
    out.extend_from_slice(&(map.len() as u32).to_be_bytes());
    for (key, value) in map.iter() {
        // Key lengths are checked on insert; values fit the map's limit.
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    let mut clients: Vec<_> = state.clients.iter().collect();
    clients.sort_by_key(|(key, _)| **key);
    out.extend_from_slice(&(clients.len() as u32).to_be_bytes());
    for (key, record) in clients {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&record.chain.index.to_be_bytes());
        out.extend_from_slice(&record.chain.digest);
        match &record.hint {
            // Hints are at most 256 bytes (the host's correlation id limit); 0xFFFF means none.
            Some(hint) => {
                out.extend_from_slice(&(hint.len().min(0xFFFE) as u16).to_be_bytes());
                out.extend_from_slice(&hint.as_bytes()[..hint.len().min(0xFFFE)]);
            }
            None => out.extend_from_slice(&0xFFFFu16.to_be_bytes()),
        }
    }
    let mut streams: Vec<_> = state.streams.iter().collect();
    streams.sort();
    out.extend_from_slice(&(streams.len() as u32).to_be_bytes());
    for ((key, topic), next) in streams {
        out.extend_from_slice(key.as_bytes());
        // Topics are validated to at most 255 bytes.
        out.push(topic.len() as u8);
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&next.to_be_bytes());
    }
    // At most MAX_RUNS entries.
    out.push(state.runs.len() as u8);
    for run in &state.runs {
        out.extend_from_slice(&run.to_bytes());
    }
    out.extend_from_slice(&(state.live_self_mail.len() as u32).to_be_bytes());
    for (number, hash) in &state.live_self_mail {
        out.extend_from_slice(&number.to_be_bytes());
        out.extend_from_slice(hash);
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
        checkpoint: StateCheckpoint::from_bytes(&c.array()?),
        next_self_mail: c.u64()?,
        ..DurableState::default()
    };
    let entries = c.u32()?;
    let mut fresh = PersistentMap::new(map.limit);
    for _ in 0..entries {
        let key_len = c.u16()? as usize;
        let key = c.text(key_len, "key")?;
        let value_len = c.u32()? as usize;
        let value = c.take(value_len)?.to_vec();
        fresh.size += key.len() + value.len();
        fresh.entries.insert(key, value);
    }
    for _ in 0..c.u32()? {
        let key = c.key()?;
        let chain = ReplyChain { index: c.u64()?, digest: c.array()? };
        let hint = match c.u16()? {
            0xFFFF => None,
            len => Some(c.text(len as usize, "routing hint")?),
        };
        state.clients.insert(key, ClientRecord { chain, hint });
    }
    for _ in 0..c.u32()? {
        let key = c.key()?;
        let topic_len = c.take(1)?[0] as usize;
        let topic = c.text(topic_len, "topic")?;
        state.streams.insert((key, topic), c.u64()?);
    }
    let runs = c.take(1)?[0] as usize;
    if runs > MAX_RUNS {
        return Err(EnclaveError::Persistence("sealed state lists too many runs".into()));
    }
    for _ in 0..runs {
        state.runs.push_back(StateCheckpoint::from_bytes(&c.array()?));
    }
    for _ in 0..c.u32()? {
        let number = c.u64()?;
        state.live_self_mail.insert(number, c.array()?);
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
    let topic = c.text(topic_len, "mail-to-self topic")?;
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
            checkpoint: StateCheckpoint { counter: 4, id: [9; 32] },
            next_self_mail: 2,
            runs: [StateCheckpoint { counter: 1, id: [1; 32] }].into_iter().collect(),
            live_self_mail: [(1u64, [7u8; 32])].into_iter().collect(),
            ..DurableState::default()
        };
        let alice = PublicKey::from_bytes([1; 32]);
        state
            .clients
            .insert(alice, ClientRecord { chain: ReplyChain { index: 3, digest: [3; 32] }, hint: Some("cid".into()) });
        state.clients.insert(PublicKey::from_bytes([2; 32]), ClientRecord::default());
        state.streams.insert((alice, "t".to_owned()), 7);
        let bytes = encode_state(&state, &map);
        // One state always encodes to the same bytes.
        assert_eq!(encode_state(&state.clone(), &map), bytes);
        let mut restored = PersistentMap::new(1000);
        let back = decode_state(&bytes, &mut restored).unwrap();
        assert_eq!((back.checkpoint, back.next_self_mail), (state.checkpoint, 2));
        assert_eq!(back.clients, state.clients);
        assert_eq!(back.streams, state.streams);
        assert_eq!(back.runs, state.runs);
        assert_eq!(back.live_self_mail, state.live_self_mail);
        assert_eq!(restored.get("x"), Some(&b"1"[..]));
        assert_eq!(restored.size_bytes(), map.size_bytes());
        assert_eq!(back.protocol_size(), state.protocol_size());
        for len in 0..bytes.len() {
            assert!(decode_state(&bytes[..len], &mut PersistentMap::new(1000)).is_err());
        }
    }

    #[test]
    fn records_count_against_the_map_limit() {
        let mut map = PersistentMap::new(10);
        map.reserved = 5;
        assert!(map.insert("k", vec![0; 5]).is_err());
        map.insert("k", vec![0; 4]).unwrap();
    }
}
