//! What operators and auditors scrape: Prometheus metrics (SPEC section 5) and the
//! health endpoints, on the admin address.
//!
//! Metric handles are registered once per agreement ([`Metrics::new`]); the shells
//! count into a plain [`Tally`] per batch and hand it over here, so no label is ever
//! formatted per event. Label values come only from bounded sets: the agreement's
//! names, the drop reasons, the configured inputs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::agreement::Agreement;
use crate::engine::DropReason;
use crate::report::tally::Tally;

/// Buckets of `accord_processing_seconds`: the time spent enforcing one batch, not
/// waiting for it (issue 13). A batch is one event when the input trickles (a few
/// microseconds) up to 1024 events or a second's worth (milliseconds), so the buckets
/// run from 1 µs to 100 ms.
const BUCKETS: &[f64] = &[
    0.000_001, 0.000_002_5, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("accord_processing_seconds".into()), BUCKETS)
            .expect("buckets are not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once");
        describe();
        handle
    })
}

fn describe() {
    describe_counter!("accord_events_received_total", "Events read from an input.");
    describe_counter!("accord_events_forwarded_total", "Output events sent to a purpose's topic, by the rule that allowed them.");
    describe_counter!("accord_events_dropped_total", "Events dropped, by reason and category (a taxonomy or agreement name, else other).");
    describe_counter!("accord_fields_removed_total", "Fields removed from outputs, by rule.");
    describe_counter!("accord_fields_pseudonymised_total", "Fields pseudonymised, by purpose.");
    describe_counter!("accord_fields_generalised_total", "Fields generalised, by rule.");
    describe_gauge!("accord_agreement_info", "1 for the agreement in force.");
    describe_counter!("accord_agreement_reloads_total", "Agreement loads, by result (loaded or refused).");
    describe_histogram!("accord_processing_seconds", "Time spent enforcing one batch of events (work only, never the wait for input).");
    describe_gauge!("accord_kafka_consumer_lag", "Records in an assigned input partition not yet done (its end as of the last fetch less the done watermark, every second; 0 once unassigned).");
    describe_gauge!("accord_suppressions", "Suppressions in force (objections, restrictions, privacy switches; SPEC 2.7).");
    describe_gauge!("accord_kafka_producer_queue_messages", "Records waiting in librdkafka's producer queues.");
    describe_gauge!("accord_kafka_producer_queue_bytes", "Bytes of the records waiting in librdkafka's producer queues.");
    describe_counter!("accord_kafka_delivery_errors_total", "Outputs whose delivery failed (each is retried, or its transaction aborted).");
}

/// Counter handles for one agreement, indexed like [`Tally`].
#[derive(Debug)]
pub struct Metrics {
    received: Counter,
    /// Per `rule * purposes + purpose`; none for a pair that can never occur (a rule
    /// only forwards to the purposes it names).
    forwarded: Vec<Option<Counter>>,
    dropped: Vec<Counter>,
    removed: Vec<Counter>,
    generalised: Vec<Counter>,
    pseudonymised: Vec<Counter>,
    processing: Histogram,
    info: Gauge,
}

impl Metrics {
    /// Registers every handle the agreement can need, labelled with `input`.
    pub fn new(a: &Agreement, input: &str) -> Metrics {
        recorder();
        let mut forwarded = Vec::with_capacity(a.rules.len() * a.purposes.len());
        for rule in &a.rules {
            for (i, purpose) in a.purposes.iter().enumerate() {
                let occurs = rule.purposes.iter().any(|p| usize::from(*p) == i);
                forwarded.push(occurs.then(|| counter!("accord_events_forwarded_total", "purpose" => purpose.name.clone(), "rule" => rule.name.clone())));
            }
        }
        let mut dropped = Vec::new();
        for reason in DropReason::ALL {
            for (_, name, _) in a.taxonomy.iter() {
                dropped.push(counter!("accord_events_dropped_total", "reason" => reason.as_str(), "category" => name.to_string()));
            }
            dropped.push(counter!("accord_events_dropped_total", "reason" => reason.as_str(), "category" => "other"));
        }
        let per_rule = |name: &'static str| a.rules.iter().map(|r| counter!(name, "rule" => r.name.clone())).collect();
        Metrics {
            received: counter!("accord_events_received_total", "input" => input.to_string()),
            forwarded,
            dropped,
            removed: per_rule("accord_fields_removed_total"),
            generalised: per_rule("accord_fields_generalised_total"),
            pseudonymised: a.purposes.iter().map(|p| counter!("accord_fields_pseudonymised_total", "purpose" => p.name.clone())).collect(),
            processing: histogram!("accord_processing_seconds"),
            info: gauge!("accord_agreement_info", "agreement" => a.id.clone(), "version" => a.version.to_string(), "sha256" => a.sha256.clone()),
        }
    }

    /// Adds one batch's tally (of the same agreement) and its processing time; an
    /// empty batch (the input paused with nothing new) is no observation.
    pub fn record(&self, t: &Tally, elapsed: Duration) {
        if t.received == 0 {
            return;
        }
        self.received.increment(t.received);
        for (c, n) in self.forwarded.iter().zip(&t.forwarded) {
            if let (Some(c), true) = (c, *n > 0) {
                c.increment(*n);
            }
        }
        for (pairs, counts) in [
            (&self.dropped, &t.dropped),
            (&self.removed, &t.fields_removed),
            (&self.generalised, &t.fields_generalised),
            (&self.pseudonymised, &t.fields_pseudonymised),
        ] {
            for (c, n) in pairs.iter().zip(counts) {
                if *n > 0 {
                    c.increment(*n);
                }
            }
        }
        self.processing.record(elapsed.as_secs_f64());
    }

    /// Marks this agreement as the one in force (1), or no longer (0).
    pub fn set_in_force(&self, yes: bool) {
        self.info.set(if yes { 1.0 } else { 0.0 });
    }
}

/// Counts an agreement load: `loaded` or `refused`.
pub fn count_reload(loaded: bool) {
    recorder();
    counter!("accord_agreement_reloads_total", "result" => if loaded { "loaded" } else { "refused" }).increment(1);
}

/// What `/readyz` answers: an agreement in force and, in Kafka mode, a consumer with
/// partitions assigned, and no cause that stops consumption (`run::kafka::stall`).
#[derive(Debug, Default)]
pub struct Health {
    agreement: AtomicBool,
    needs_kafka: AtomicBool,
    kafka: AtomicBool,
    stalled: std::sync::Mutex<Option<&'static str>>,
    /// What has kept failing for longer than `limits.stuck_after`: `/healthz` fails,
    /// so that the gateway is restarted.
    stuck: [AtomicBool; Stuck::ALL.len()],
}

/// What can get stuck: a liveness cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stuck {
    /// An output's delivery.
    Delivery,
    /// The commit of the consumed offsets (exactly-once: of the transaction).
    Commit,
    /// The consumer's membership of its group (librdkafka's statistics: its group
    /// handler not `up` and `steady`).
    Group,
}

impl Stuck {
    pub const ALL: [Stuck; 3] = [Stuck::Delivery, Stuck::Commit, Stuck::Group];

    /// What it is, for the log.
    pub fn name(self) -> &'static str {
        match self {
            Stuck::Delivery => "an output's delivery",
            Stuck::Commit => "committing the consumed offsets",
            Stuck::Group => "the consumer's membership of its group",
        }
    }

    /// What `/healthz` and `/readyz` say while it is stuck.
    pub fn cause(self) -> &'static str {
        match self {
            Stuck::Delivery => "an output's delivery has kept failing for longer than limits.stuck_after",
            Stuck::Commit => "committing the consumed offsets has kept failing for longer than limits.stuck_after",
            Stuck::Group => "the consumer has been out of its group (or between a leave and a join) for longer than limits.stuck_after",
        }
    }
}

impl Health {
    pub fn new(needs_kafka: bool) -> Arc<Health> {
        let h = Health::default();
        h.needs_kafka.store(needs_kafka, Ordering::Relaxed);
        Arc::new(h)
    }

    pub fn set_agreement(&self, in_force: bool) {
        self.agreement.store(in_force, Ordering::Relaxed);
    }

    pub fn set_kafka(&self, assigned: bool) {
        self.kafka.store(assigned, Ordering::Relaxed);
    }

    /// A cause that stops consumption, or None when it cleared.
    pub fn set_stalled(&self, cause: Option<&'static str>) {
        *self.stalled.lock().unwrap_or_else(|e| e.into_inner()) = cause;
    }

    /// Whether deliveries (`run::kafka::sink`), commits or the consumer's group
    /// membership (`run::kafka::source`) are stuck.
    pub fn set_stuck(&self, what: Stuck, stuck: bool) {
        self.stuck[what as usize].store(stuck, Ordering::Relaxed);
    }

    /// What `/healthz` answers: the process works, unless a delivery, the commits or
    /// the group membership are stuck, which a restart with new clients may free.
    pub fn live(&self) -> Result<(), &'static str> {
        match Stuck::ALL.into_iter().find(|s| self.stuck[*s as usize].load(Ordering::Relaxed)) {
            Some(s) => Err(s.cause()),
            None => Ok(()),
        }
    }

    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.agreement.load(Ordering::Relaxed) {
            return Err("no agreement in force");
        }
        self.live()?;
        if let Some(cause) = *self.stalled.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(cause);
        }
        if self.needs_kafka.load(Ordering::Relaxed) && !self.kafka.load(Ordering::Relaxed) {
            return Err("not connected to Kafka with partitions assigned");
        }
        Ok(())
    }
}

/// The admin routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(|| async { recorder().render() }))
        .route("/healthz", get(|State(h): State<Arc<Health>>| async move { answer(h.live(), "ok", "unhealthy") }))
        .route("/readyz", get(|State(h): State<Arc<Health>>| async move { answer(h.ready(), "ready", "not ready") }))
        .with_state(health)
}

/// 200 with `ok`, or 503 with `not` and why.
fn answer(result: Result<(), &'static str>, ok: &str, not: &str) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, format!("{ok}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{not}: {why}\n")),
    }
}

/// Serves the admin routes on `addr` until the runtime stops.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(health)).await
}

/// Binds `addr` and serves the admin routes from a thread of their own (for file mode,
/// which has no async runtime). Returns the bound address (port 0 picks a free one).
pub fn spawn(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("accord-admin".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime for the admin server");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a bound listener");
            let _ = axum::serve(listener, router(health)).await;
        });
    })?;
    Ok(bound)
}
