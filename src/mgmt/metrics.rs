//! `/metrics`: the executors' samples and the management plane's own
//! counters, encoded by the Prometheus client library with a HELP and a
//! TYPE line for every family.
//!
//! Executors publish plain [`Sample`]s (no library types on the shards);
//! the family's type follows the Prometheus naming rule (a `_total` name is
//! a counter, anything else a gauge) and its help text comes from
//! [`help`].

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Board;

/// Label set of the management plane's own families.
pub type Labels = Vec<(String, String)>;

/// The management plane's own metrics, and the registry that encodes them
/// with the board's.
pub struct Metrics {
    registry: Registry,
    /// `cc_mgmt_auth_failures_total{reason}`.
    pub auth_failures: Family<Labels, Counter>,
    /// `cc_mgmt_requests_total{code}`.
    pub requests: Family<Labels, Counter>,
    /// `cc_mgmt_connections_refused_total`: over the connection limit.
    pub refused: Counter,
}

impl Metrics {
    pub fn new(board: Arc<Board>) -> Metrics {
        let mut registry = Registry::default();
        let auth_failures = Family::<Labels, Counter>::default();
        let requests = Family::<Labels, Counter>::default();
        let refused = Counter::default();
        registry.register(
            "cc_mgmt_auth_failures",
            "Management API requests refused: no or an unknown token (401), or a viewer acting (403)",
            auth_failures.clone(),
        );
        registry.register("cc_mgmt_requests", "Management API requests answered, by HTTP status", requests.clone());
        registry.register(
            "cc_mgmt_connections_refused",
            "Management connections closed at once because the connection limit was reached",
            refused.clone(),
        );
        registry.register_collector(Box::new(BoardCollector(board)));
        registry.register_collector(Box::new(HistogramCollector {
            name: "cc_store_commit_seconds",
            help: "Store group commit time (transaction and fsync), failed commits included",
            hist: &crate::acd::store::COMMIT_TIME,
        }));
        registry.register_collector(Box::new(HistogramCollector {
            name: "cc_call_invite_to_agent_seconds",
            help: "Customer INVITE received to the first INVITE sent to an agent for that call (queue wait included)",
            hist: &crate::call::INVITE_TO_AGENT,
        }));
        registry.register_collector(Box::new(HistogramCollector {
            name: "cc_queue_wait_seconds",
            help: "Wait of answered callers, arrival to answer",
            hist: &crate::acd::routing::WAIT_TIME,
        }));
        registry.register_collector(Box::new(super::retention_metrics::RetentionCollector));
        Metrics { registry, auth_failures, requests, refused }
    }

    pub fn count_auth_failure(&self, reason: &str) {
        self.auth_failures.get_or_create(&vec![("reason".to_string(), reason.to_string())]).inc();
    }

    pub fn count_request(&self, code: u16) {
        self.requests.get_or_create(&vec![("code".to_string(), code.to_string())]).inc();
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding /metrics failed");
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}

/// The board's latest samples, summed across publishers, one family per
/// sample name.
struct BoardCollector(Arc<Board>);

impl std::fmt::Debug for BoardCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoardCollector")
    }
}

impl Collector for BoardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sums = self.0.sums();
        let mut it = sums.iter().peekable();
        while let Some(((name, _), _)) = it.peek() {
            let name = *name;
            let (base, ty) = match name.strip_suffix("_total") {
                Some(b) => (b, MetricType::Counter),
                None => (name, MetricType::Gauge),
            };
            let mut family = encoder.encode_descriptor(base, help(name), None, ty)?;
            while let Some(((_, labels), v)) = it.next_if(|((n, _), _)| *n == name) {
                if labels.is_empty() {
                    encode_value(&mut family, ty, *v)?;
                    continue;
                }
                let Some(set) = parse_labels(labels) else {
                    tracing::debug!(name, labels, "sample with unparsable labels left out");
                    continue;
                };
                encode_value(&mut family.encode_family(&set)?, ty, *v)?;
            }
        }
        Ok(())
    }
}

/// A process-wide [`super::Histogram`] as one Prometheus histogram.
struct HistogramCollector {
    name: &'static str,
    help: &'static str,
    hist: &'static super::Histogram,
}

impl std::fmt::Debug for HistogramCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Collector for HistogramCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.hist.snapshot();
        let mut e = encoder.encode_descriptor(self.name, self.help, None, MetricType::Histogram)?;
        e.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

fn encode_value(
    e: &mut prometheus_client::encoding::MetricEncoder<'_>,
    ty: MetricType,
    v: u64,
) -> Result<(), std::fmt::Error> {
    match ty {
        MetricType::Counter => e.encode_counter::<NoLabelSet, u64, u64>(&v, None),
        _ => e.encode_gauge(&v),
    }
}

/// `a="x",b="y\"z"` back into pairs (the samples carry rendered labels).
pub fn parse_labels(s: &str) -> Option<Labels> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        rest = after.get(end + 1..)?.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

/// The HELP text of every family the executors publish.
pub fn help(name: &str) -> &'static str {
    match name {
        "cc_agent_answered_total" => "Calls answered, by agent",
        "cc_agent_status" => "Agents by ACD status (1 for the agent's current status)",
        "cc_agent_status_seconds" => "Seconds the agent has been in its current status",
        "cc_agent_reported_answered_total" => "Calls the agent answered, since the database was created",
        "cc_agent_missed_total" => "Offers the agent missed, by kind (no_answer, busy, rejected, unreachable), since the database was created",
        "cc_agent_talk_ms_total" => "Agent talk time in milliseconds, counted when a call ends, since the database was created",
        "cc_agent_pause_ms_total" => "Agent pause time in milliseconds, counted when a pause ends, since the database was created",
        "cc_call_invite_to_agent_seconds" => "Customer INVITE received to the first INVITE sent to an agent for that call (histogram)",
        "cc_call_facts_total" => "Call facts a signalling shard sent to the routing shard",
        "cc_calls_active" => "Calls in progress on a signalling shard",
        "cc_media_timeouts_total" => "Calls ended because no RTP arrived within media_timeout_s",
        "cc_queue_counter_events_total" => "queue-counters events sent to the event stream (a queue's counters changed; at most one per queue per second)",
        "cc_queue_agents_available" => "Agents of the queue free to take a call",
        "cc_queue_agents_online" => "Agents of the queue with at least one registered contact",
        "cc_queue_calls" => "Calls in the queue, by state (waiting, ringing, talking)",
        "cc_queue_wait_seconds" => "Wait of answered callers, arrival to answer (histogram)",
        "cc_queue_longest_wait_ms" => "Longest current wait in the queue, in milliseconds",
        "cc_queue_dispositions_total" => "Queue calls by disposition (offered, answered, abandoned, timed_out, overflowed, failed, rejected, answered_in_sl), since the database was created",
        "cc_queue_dispositions_today" => "Queue calls by disposition over the current UTC day (restarts at midnight)",
        "cc_queue_wait_answered_ms_total" => "Sum of answered callers' waits in milliseconds (÷ answered: the average wait)",
        "cc_queue_talk_ms_total" => "Sum of answered calls' talk time in milliseconds",
        "cc_queue_longest_wait_today_ms" => "Longest wait of a caller who left the queue today, in milliseconds",
        "cc_queue_service_level_threshold_seconds" => "The queue's service level threshold (service_level_s)",
        "cc_queue_service_level_percent" => "Answered within the threshold ÷ answered, in percent, by period (today, total)",
        "cc_relay_packets_total" => "RTP and RTCP packets the media relay received (valid ones) and sent (forwarded and hold audio), by direction",
        "cc_relay_bytes_total" => "Bytes of the media relay's packets, by direction (received, sent)",
        "cc_relay_drops_total" => "Datagrams the media relay did not forward, by reason",
        "cc_store_commit_running_ms" => "How long the store commit in progress has been running, in milliseconds (0: none)",
        "cc_registered_contacts" => "Registered agent contacts (bindings)",
        "cc_registrations_total" => "REGISTER requests answered, by response class (2xx, 4xx, ...)",
        "cc_routing_decisions_total" => "Routing decisions the routing shard made",
        "cc_routing_facts_total" => "Facts the routing shard received from signalling shards",
        "cc_routing_pending" => "Routing requests waiting for the routing shard's answer",
        "cc_routing_replies_unmatched_total" => "Routing answers that matched no pending request",
        "cc_rtp_port_refusals_total" => "Calls refused because no RTP port pair was free",
        "cc_rtp_ports_bind_skipped_total" => "RTP port pairs skipped because they could not be bound",
        "cc_rtp_ports_in_use" => "RTP port pairs in use",
        "cc_rtp_ports_quarantined" => "RTP port pairs resting after a call before reuse",
        "cc_rtp_ports_reused_early_total" => "RTP port pairs taken out of quarantine early for lack of free ones",
        "cc_rtp_rtcp_bind_failures_total" => "RTCP sockets that could not be bound",
        "cc_sip_client_timeouts_total" => "Client transactions that timed out",
        "cc_sip_client_transport_errors_total" => "Client transactions ended by a transport error",
        "cc_sip_connections" => "Open SIP TCP/TLS connections, by transport",
        "cc_sip_connections_accepted_total" => "SIP TCP/TLS connections accepted, by transport",
        "cc_sip_connections_closed_total" => "SIP TCP/TLS connections closed, by transport and reason (peer, idle_timeout, partial_timeout, oversize, missing_content_length, bad_content_length, backlog, io_error, tls_error)",
        "cc_sip_connections_refused_total" => "SIP TCP/TLS connections refused, by transport and reason (per_ip_limit)",
        "cc_sip_dropped_total" => "SIP datagrams dropped, by reason",
        "cc_sip_forwarded_total" => "SIP messages forwarded to the shard that owns their dialog",
        "cc_sip_icmp_unreachable_total" => "ICMP port or host unreachable errors received for SIP",
        "cc_sip_keepalives_total" => "Keep-alive datagrams (CRLF) received",
        "cc_sip_requests_total" => "SIP requests received",
        "cc_sip_responses_received_total" => "SIP responses received",
        "cc_sip_responses_sent_total" => "SIP responses sent, by class (1xx..6xx)",
        "cc_sip_responses_total" => "SIP responses sent, by status code",
        "cc_sip_retransmissions_absorbed_total" => "Retransmitted SIP requests answered from the transaction layer",
        "cc_sip_retransmissions_sent_total" => "SIP messages retransmitted",
        "cc_sip_stream_messages_total" => "SIP messages framed off TCP/TLS connections, by transport",
        "cc_sip_stream_pongs_total" => "CRLF pongs sent for RFC 5626 CRLFCRLF keep-alives on connections",
        "cc_sip_stream_relayed_total" => "Messages another shard passed on for a connection this shard holds",
        "cc_sip_send_errors_total" => "SIP datagrams the kernel refused to send",
        "cc_sip_untrusted_priority_total" => "Callers whose Priority, X-CC-Priority or X-CC-Skills header was ignored (source not in sip.trusted_sources)",
        "cc_sip_server_timeouts_total" => "Server transactions that timed out",
        "cc_sip_transactions" => "Live SIP transactions, by kind",
        "cc_store_commit_errors_total" => "Store group commits that failed (retried)",
        "cc_store_commits_total" => "Store group commits",
        "cc_store_pending_changes" => "Changes waiting for the next store commit",
        _ => "cc-engine metric",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::Sample;

    /// Every family the shipped Grafana dashboard queries is one this
    /// code describes.
    #[test]
    fn the_dashboard_uses_known_families() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../grafana/cc-engine-dashboard.json")).unwrap();
        let own = ["cc_mgmt_auth_failures_total", "cc_store_commit_seconds"];
        let mut n = 0;
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !word.starts_with("cc_") {
                        continue;
                    }
                    let family = word.strip_suffix("_bucket").unwrap_or(word);
                    assert!(
                        own.contains(&family) || help(family) != "cc-engine metric",
                        "the dashboard queries {word}, which nothing describes"
                    );
                    n += 1;
                }
            }
        }
        assert!(n >= 10, "{n}");
    }

    #[test]
    fn labels_round_trip() {
        assert_eq!(parse_labels(""), Some(vec![]));
        assert_eq!(
            parse_labels(r#"queue="sup\"port",state="waiting""#),
            Some(vec![("queue".into(), "sup\"port".into()), ("state".into(), "waiting".into())])
        );
        assert_eq!(parse_labels(r#"queue="x"#), None);
        assert_eq!(parse_labels(r#"="x""#), None);
    }

    #[test]
    fn every_family_has_help_and_type() {
        let b = Arc::new(Board::new(2));
        b.publish(0, vec![
            Sample::new("cc_sip_dropped_total", "reason=\"garbage\"", 2),
            Sample::new("cc_calls_active", "", 1),
        ]);
        b.publish(1, vec![Sample::new("cc_sip_dropped_total", "reason=\"garbage\"", 3)]);
        let m = Metrics::new(b);
        m.count_auth_failure("missing");
        let text = m.render();
        assert!(text.contains("# TYPE cc_sip_dropped_total counter\n"), "{text}");
        assert!(text.contains("# HELP cc_sip_dropped_total SIP datagrams dropped, by reason\n"), "{text}");
        assert!(text.contains("cc_sip_dropped_total{reason=\"garbage\"} 5\n"), "{text}");
        assert!(text.contains("# TYPE cc_calls_active gauge\ncc_calls_active 1\n"), "{text}");
        assert!(text.contains("cc_mgmt_auth_failures_total{reason=\"missing\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE cc_mgmt_auth_failures_total counter\n"), "{text}");
        assert!(text.contains("# TYPE cc_store_commit_seconds histogram\n"), "{text}");
        assert!(text.contains("cc_store_commit_seconds_bucket{le=\"+Inf\"} "), "{text}");
        assert!(text.contains("# TYPE cc_queue_wait_seconds histogram\n"), "{text}");
    }
}
