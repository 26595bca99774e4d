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
    /// Replies waiting in the store over all correlation ids.
    pub(crate) stored_replies: Gauge,
    /// Jobs waiting for the enclave worker.
    pub(crate) worker_queue: Gauge,
    /// Enclave restarts since the host started.
    pub(crate) enclave_restarts: Counter,
    /// Time from a mail's arrival to its response, queueing included.
    pub(crate) delivery_seconds: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("conclave");
        let mails_in = Counter::default();
        let mails_out = Counter::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let stored_replies = Gauge::default();
        let worker_queue = Gauge::default();
        let enclave_restarts = Counter::default();
        // 0.5 ms to about 16 s.
        let delivery_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("mails_in", "Mails delivered to the enclave", mails_in.clone());
        registry.register("mails_out", "Replies posted by the enclave", mails_out.clone());
        registry.register("errors", "Error responses by stable error code", errors.clone());
        registry.register("stored_replies", "Replies queued in the store until acknowledged", stored_replies.clone());
        registry.register("worker_queue_length", "Requests waiting for the enclave worker", worker_queue.clone());
        registry.register("enclave_restarts", "Enclave restarts since the host started", enclave_restarts.clone());
        registry.register(
            "delivery_duration_seconds",
            "Time from a mail's arrival to its response, queueing included",
            delivery_seconds.clone(),
        );
        Self { registry, mails_in, mails_out, errors, stored_replies, worker_queue, enclave_restarts, delivery_seconds }
    }

    /// Counts one error response.
    pub(crate) fn error(&self, code: &str) {
        self.errors.get_or_create(&CodeLabel { code: code.to_owned() }).inc();
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
