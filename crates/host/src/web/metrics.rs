//! Prometheus metrics of the web host, in the OpenMetrics text format.
//!
//! Only counts, sizes of queues and latencies: nothing about who sent what.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The label of `conclave_errors_total`: the stable error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    pub(crate) code: String,
}

/// The label of refusals and timeouts: why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CauseLabel {
    pub(crate) cause: &'static str,
}

/// Every metric the web host exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Mails the enclave accepted.
    pub(crate) mails_in: Counter,
    /// Replies the enclave posted (each is queued until acknowledged).
    pub(crate) mails_out: Counter,
    /// Error responses by stable code.
    pub(crate) errors: Family<CodeLabel, Counter>,
    /// Requests and connections turned away by cause.
    pub(crate) refused: Family<CauseLabel, Counter>,
    /// Connections closed or requests ended by a timeout, by cause.
    pub(crate) timeouts: Family<CauseLabel, Counter>,
    /// Replies waiting in the store over all correlation ids.
    pub(crate) stored_replies: Gauge,
    /// Jobs waiting for the enclave worker.
    pub(crate) worker_queue: Gauge,
    /// Enclave restarts since the host started.
    pub(crate) enclave_restarts: Counter,
    /// Connections open now.
    pub(crate) connections_open: Gauge,
    /// Connections accepted since the host started.
    pub(crate) connections_accepted: Counter,
    /// Failed `accept` calls (for example: out of file descriptors).
    pub(crate) accept_errors: Counter,
    /// TLS handshakes that failed (other than by timeout).
    pub(crate) tls_handshake_failures: Counter,
    /// Bytes of request bodies held now.
    pub(crate) body_bytes_held: Gauge,
    /// Correlation ids forgotten because they were idle.
    pub(crate) correlation_ids_pruned: Counter,
    /// Time from a mail's arrival to its response, queueing included.
    pub(crate) delivery_seconds: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("conclave");
        let metrics = Self {
            mails_in: Counter::default(),
            mails_out: Counter::default(),
            errors: Family::default(),
            refused: Family::default(),
            timeouts: Family::default(),
            stored_replies: Gauge::default(),
            worker_queue: Gauge::default(),
            enclave_restarts: Counter::default(),
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            accept_errors: Counter::default(),
            tls_handshake_failures: Counter::default(),
            body_bytes_held: Gauge::default(),
            correlation_ids_pruned: Counter::default(),
            // 0.5 ms to about 16 s.
            delivery_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register("mails_in", "Mails delivered to the enclave", m.mails_in.clone());
        registry.register("mails_out", "Replies posted by the enclave", m.mails_out.clone());
        registry.register("errors", "Error responses by stable error code", m.errors.clone());
        registry.register("refused", "Connections and requests turned away, by cause", m.refused.clone());
        registry.register("timeouts", "Connections and requests ended by a timeout, by cause", m.timeouts.clone());
        registry.register("stored_replies", "Replies queued in the store until acknowledged", m.stored_replies.clone());
        registry.register("worker_queue_length", "Requests waiting for the enclave worker", m.worker_queue.clone());
        registry.register("enclave_restarts", "Enclave restarts since the host started", m.enclave_restarts.clone());
        registry.register("connections_open", "Connections open now", m.connections_open.clone());
        registry.register("connections_accepted", "Connections accepted", m.connections_accepted.clone());
        registry.register("accept_errors", "Failed accepts (e.g. out of file descriptors)", m.accept_errors.clone());
        registry.register("tls_handshake_failures", "TLS handshakes that failed", m.tls_handshake_failures.clone());
        registry.register("body_bytes_held", "Bytes of request bodies held in memory", m.body_bytes_held.clone());
        registry.register("correlation_ids_pruned", "Idle correlation ids forgotten", m.correlation_ids_pruned.clone());
        registry.register(
            "delivery_duration_seconds",
            "Time from a mail's arrival to its response, queueing included",
            m.delivery_seconds.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Counts one error response.
    pub(crate) fn error(&self, code: &str) {
        self.errors.get_or_create(&CodeLabel { code: code.to_owned() }).inc();
    }

    /// Counts one refusal.
    pub(crate) fn refuse(&self, cause: &'static str) {
        self.refused.get_or_create(&CauseLabel { cause }).inc();
    }

    /// Counts one timeout.
    pub(crate) fn timeout(&self, cause: &'static str) {
        self.timeouts.get_or_create(&CauseLabel { cause }).inc();
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
