//! `/metrics` families of the retention sweep (`acd::retention`), read
//! from its process-wide counters.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::acd::retention::{Table, COUNTS};

#[derive(Debug)]
pub struct RetentionCollector;

/// Name, help, and which of `RetentionCounts::of`'s three counts.
type Family = (&'static str, &'static str, fn((u64, u64, u64)) -> u64);

impl Collector for RetentionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families: [Family; 3] = [
            ("cc_retention_rows_exported", "Rows the retention sweep appended to dated export files, by table", |c| c.0),
            ("cc_retention_rows_deleted", "Rows the retention sweep deleted after exporting them, by table", |c| c.1),
            ("cc_retention_errors", "Retention batches that failed (export or store error; nothing of the batch deleted), by table", |c| c.2),
        ];
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for table in Table::ALL {
                let labels = vec![("table".to_string(), table.name().to_string())];
                let v = pick(COUNTS.of(table));
                family.encode_family(&labels)?.encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
            }
        }
        Ok(())
    }
}
