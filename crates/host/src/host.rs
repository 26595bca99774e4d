//! EnclaveHost: loads an enclave, starts it, and passes calls and mail in.

use std::any::Any;

use conclave_core::{EnclaveInstanceInfo, EnclaveReport, Evidence, HostCommand};
use conclave_enclave::{
    CallOutcome, Delivered, Enclave, EnclaveError, EnclaveIdentity, EnclaveRuntime, HostInterface, KdsCall, StartInput,
};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::{
    HostError,
    simulation::{SignedEnclave, SimulationBackend, check_data_dir, simulated_attestation_key},
};
use conclave_core::channel::HostToEnclave;
use serde_bytes::ByteBuf;

/// The host's answer to `call_untrusted_host`: bytes in, optional bytes out.
pub type HostCallback = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send>;

/// Makes a fresh enclave value for each (re)start or reset of a mock enclave.
pub type EnclaveFactory = std::sync::Arc<dyn Fn() -> Box<dyn Enclave> + Send + Sync>;

/// How the enclave runs.
enum Backend {
    /// In this process. `pending` is the value for the next start; `factory`
    /// makes another one for a restart. The runtime exists once started.
    Mock {
        pending: Option<Box<dyn Enclave>>,
        factory: Option<EnclaveFactory>,
        identity: EnclaveIdentity,
        runtime: Option<Box<EnclaveRuntime>>,
    },
    /// A separate, sandboxed process started from a signed binary.
    Simulation(Box<SimulationBackend>),
}

/// Runs one enclave for the untrusted side: start, deliver mail, call, close.
///
/// Every call returns the ordered commands the enclave emitted during it;
/// carrying them out (routing mail, storing sealed state) is the caller's job.
pub struct EnclaveHost {
    backend: Backend,
    /// How the enclave reaches its key derivation service, if it has one.
    kds: SharedKds,
}

/// Carries an enclave's exchanges with its key derivation service: the
/// CLI gives an HTTP relay to the KDS's web host; tests give anything.
pub type KdsTransport = Box<dyn FnMut(KdsCall) -> Result<Vec<u8>, String> + Send>;

/// The transport, shared by the host and each start's host interface.
pub(crate) type SharedKds = std::sync::Arc<std::sync::Mutex<Option<KdsTransport>>>;

/// Runs one KDS exchange through `kds`.
pub(crate) fn call_kds(kds: &SharedKds, call: KdsCall) -> Result<Vec<u8>, String> {
    let mut guard = kds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match guard.as_mut() {
        Some(transport) => transport(call),
        None => Err("the enclave asked for its key derivation service, but the host has none: start it with --kds URL"
            .to_owned()),
    }
}

impl core::fmt::Debug for EnclaveHost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveHost").field("mode", &self.mode()).field("started", &self.is_started()).finish()
    }
}

struct MockHostInterface {
    callback: Option<HostCallback>,
    kds: SharedKds,
}

impl HostInterface for MockHostInterface {
    fn call_untrusted_host(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, EnclaveError> {
        match &mut self.callback {
            Some(callback) => Ok(callback(bytes)),
            None => Err(EnclaveError::Host("the host registered no callback for call_untrusted_host".into())),
        }
    }

    fn evidence(&mut self, report: EnclaveReport) -> Result<Evidence, EnclaveError> {
        Ok(Evidence::Mock(report))
    }

    fn kds(&mut self, call: KdsCall) -> Result<Vec<u8>, EnclaveError> {
        call_kds(&self.kds, call).map_err(|e| EnclaveError::Kds(conclave_enclave::KdsProblem::Unreachable(e)))
    }
}

/// The identity a mock enclave reports: its code hash is SHA-256 of the
/// enclave type's name (there is no binary to measure), its signer the hash of
/// a fixed "mock signer" label.
pub fn mock_identity<E: Enclave>() -> EnclaveIdentity {
    EnclaveIdentity {
        code_hash: Sha256::digest(std::any::type_name::<E>().as_bytes()).into(),
        code_signing_key_hash: Sha256::digest(b"conclave mock signer").into(),
        product_id: 0,
        revocation_level: 0,
    }
}

impl EnclaveHost {
    /// Loads `enclave` to run in this process (mock mode: INSECURE, for tests).
    pub fn load_mock<E: Enclave>(enclave: E) -> Self {
        Self::load_mock_with_identity(enclave, mock_identity::<E>())
    }

    /// Loads a mock enclave that reports the given identity.
    pub fn load_mock_with_identity<E: Enclave>(enclave: E, identity: EnclaveIdentity) -> Self {
        Self {
            backend: Backend::Mock { pending: Some(Box::new(enclave)), factory: None, identity, runtime: None },
            kds: SharedKds::default(),
        }
    }

    /// Loads a mock enclave that can be restarted: each start gets `E::default()`.
    pub fn load_mock_restartable<E: Enclave + Default>() -> Self {
        Self::load_mock_restartable_with_identity::<E>(mock_identity::<E>())
    }

    /// Loads a restartable mock enclave that reports the given identity (a
    /// product id or signer that another enclave's constraint names).
    pub fn load_mock_restartable_with_identity<E: Enclave + Default>(identity: EnclaveIdentity) -> Self {
        Self {
            backend: Backend::Mock {
                pending: None,
                factory: Some(std::sync::Arc::new(|| Box::new(E::default()))),
                identity,
                runtime: None,
            },
            kds: SharedKds::default(),
        }
    }

    /// Loads a signed enclave binary to run as a sandboxed process
    /// (simulation mode: INSECURE).
    ///
    /// Reads the binary once into a sealed in-memory copy, hashing it on the
    /// way (the code hash), and checks `<binary>.sig` against that hash
    /// ([`SignedEnclave::load`]). Every start and restart then executes that
    /// copy: what runs is exactly what was measured, whatever later happens
    /// to the file, and nothing is hashed again. Uses (or creates, mode
    /// 0600) the simulated attestation key in `data_dir`, which must belong
    /// to this user and be closed to others. The process runs under the
    /// default [`EnclaveLimits`](crate::simulation::EnclaveLimits); for
    /// others, load with [`SignedEnclave::with_limits`] and
    /// [`load_simulation`](Self::load_simulation).
    pub fn load(binary: &std::path::Path, data_dir: &std::path::Path) -> Result<Self, HostError> {
        // An unusable data directory is refused before the binary is read.
        check_data_dir(data_dir)?;
        let enclave = SignedEnclave::load(binary)?;
        let key = simulated_attestation_key(data_dir)?;
        Ok(Self::load_simulation(enclave, key))
    }

    /// Runs an already measured and checked enclave binary (its sealed copy)
    /// in simulation mode, with evidence signed by `attestation_key`.
    pub fn load_simulation(enclave: SignedEnclave, attestation_key: ed25519_dalek::SigningKey) -> Self {
        let kds = SharedKds::default();
        Self {
            backend: Backend::Simulation(Box::new(SimulationBackend::new(enclave, attestation_key, kds.clone()))),
            kds,
        }
    }

    /// Tells the host how the enclave reaches its key derivation service.
    pub fn set_kds(&mut self, transport: KdsTransport) {
        *self.kds.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(transport);
    }

    /// "mock" or "simulation".
    pub fn mode(&self) -> &'static str {
        match &self.backend {
            Backend::Mock { .. } => "mock",
            Backend::Simulation(_) => "simulation",
        }
    }

    /// Whether the enclave is running.
    pub fn is_started(&self) -> bool {
        match &self.backend {
            Backend::Mock { runtime, .. } => runtime.is_some(),
            Backend::Simulation(sim) => sim.is_started(),
        }
    }

    /// The OS process id of a simulation enclave (tests use it to kill the process).
    pub fn enclave_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Simulation(sim) => sim.pid(),
            Backend::Mock { .. } => None,
        }
    }

    /// What the simulation enclave reported about its sandbox at start.
    pub fn sandbox_report(&self) -> Option<&str> {
        match &self.backend {
            Backend::Simulation(sim) => sim.sandbox_report(),
            Backend::Mock { .. } => None,
        }
    }

    /// The code hash (measurement) of the loaded enclave.
    pub fn code_hash(&self) -> [u8; 32] {
        match &self.backend {
            Backend::Mock { identity, .. } => identity.code_hash,
            Backend::Simulation(sim) => sim.identity().code_hash,
        }
    }

    /// Starts the enclave with no stored state: keys, evidence,
    /// `on_startup`. `callback` answers the enclave's `call_untrusted_host`.
    pub fn start(&mut self, callback: Option<HostCallback>) -> Result<Vec<HostCommand>, HostError> {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        self.start_with(callback, StartInput::fresh(secret))
    }

    /// Starts the enclave from stored state (sealed state, mail-to-self).
    pub fn start_with(
        &mut self,
        callback: Option<HostCallback>,
        input: StartInput,
    ) -> Result<Vec<HostCommand>, HostError> {
        match &mut self.backend {
            Backend::Mock { pending, factory, identity, runtime } => {
                if runtime.is_some() {
                    return Err(HostError::AlreadyStarted);
                }
                let enclave = match (pending.take(), &*factory) {
                    (Some(enclave), _) => enclave,
                    (None, Some(factory)) => factory(),
                    (None, None) => return Err(HostError::NotRestartable),
                };
                // The runtime rebuilds the application in place with the same factory.
                let rebuild = factory.clone().map(|f| -> conclave_enclave::EnclaveFactory { Box::new(move || f()) });
                let host = Box::new(MockHostInterface { callback, kds: self.kds.clone() });
                let (started, commands) = EnclaveRuntime::start(enclave, rebuild, identity, host, input)?;
                *runtime = Some(Box::new(started));
                Ok(commands)
            }
            Backend::Simulation(sim) => sim.start(callback, input),
        }
    }

    fn runtime(&mut self) -> Result<&mut EnclaveRuntime, HostError> {
        match &mut self.backend {
            Backend::Mock { runtime, .. } => runtime.as_deref_mut().ok_or(HostError::NotStarted),
            Backend::Simulation(_) => Err(HostError::NotStarted),
        }
    }

    /// The attestation of the running enclave.
    pub fn enclave_instance_info(&self) -> Result<&EnclaveInstanceInfo, HostError> {
        match &self.backend {
            Backend::Mock { runtime, .. } => {
                runtime.as_deref().map(EnclaveRuntime::instance_info).ok_or(HostError::NotStarted)
            }
            Backend::Simulation(sim) => sim.info().ok_or(HostError::NotStarted),
        }
    }

    /// Delivers an encrypted mail; `routing_hint` comes back on the enclave's replies.
    pub fn deliver_mail(&mut self, mail: &[u8], routing_hint: Option<&str>) -> Result<Delivered, HostError> {
        if let Backend::Simulation(sim) = &mut self.backend {
            let message = HostToEnclave::DeliverMail {
                mail: ByteBuf::from(mail.to_vec()),
                routing_hint: routing_hint.map(str::to_owned),
            };
            let (_, commands, outcome) = sim.call(&message)?;
            let outcome = outcome_code(outcome.as_deref());
            return Ok(Delivered { commands, outcome });
        }
        Ok(self.runtime()?.deliver_mail(mail, routing_hint)?)
    }

    /// Rebuilds the enclave's application in place from a committed state,
    /// keeping its keys and its run (after a failed commit or a panic).
    pub fn reset(
        &mut self,
        sealed_state: Option<Vec<u8>>,
        self_mail: Vec<(u64, Vec<u8>)>,
    ) -> Result<Vec<HostCommand>, HostError> {
        if let Backend::Simulation(sim) = &mut self.backend {
            let message = HostToEnclave::Reset {
                sealed_state: sealed_state.map(ByteBuf::from),
                self_mail: self_mail.into_iter().map(|(id, blob)| (id, ByteBuf::from(blob))).collect(),
            };
            return sim.call(&message).map(|(_, commands, _)| commands);
        }
        Ok(self.runtime()?.reset(sealed_state.as_deref(), &self_mail)?)
    }

    /// Passes bytes to the enclave's `receive_from_untrusted_host`.
    pub fn call_enclave(&mut self, bytes: &[u8]) -> Result<CallOutcome, HostError> {
        if let Backend::Simulation(sim) = &mut self.backend {
            let message = HostToEnclave::CallEnclave { bytes: ByteBuf::from(bytes.to_vec()) };
            return sim.call(&message).map(|(response, commands, _)| CallOutcome { response, commands });
        }
        Ok(self.runtime()?.call_enclave(bytes)?)
    }

    /// Stops the enclave (its keys are gone); returns what `on_shutdown` emitted.
    pub fn close(&mut self) -> Vec<HostCommand> {
        match &mut self.backend {
            Backend::Mock { runtime, .. } => runtime.take().map(|r| r.stop()).unwrap_or_default(),
            Backend::Simulation(sim) if sim.is_started() => sim.stop(),
            Backend::Simulation(_) => Vec::new(),
        }
    }

    /// The mock enclave object itself, so a test can look inside it.
    /// `None` if the enclave is not of type `E`, not started, or not in mock mode.
    pub fn mock_enclave<E: Enclave>(&mut self) -> Option<&mut E> {
        let runtime = self.runtime().ok()?;
        let any: &mut dyn Any = runtime.enclave_any_mut();
        any.downcast_mut::<E>()
    }
}

/// The outcome codes an enclave process may report, as static strings; an
/// unknown one is reported as such rather than trusted.
fn outcome_code(code: Option<&str>) -> &'static str {
    const KNOWN: [&str; 8] = [
        "ACCEPTED",
        "SEQUENCE_REPLAYED",
        "SEQUENCE_GAP",
        "SEQUENCE_REORDERED",
        "STATE_ROLLBACK",
        "STATE_FORK",
        "STATE_FULL",
        "BAD_REQUEST",
    ];
    code.and_then(|c| KNOWN.iter().find(|k| **k == c).copied()).unwrap_or("UNKNOWN")
}
