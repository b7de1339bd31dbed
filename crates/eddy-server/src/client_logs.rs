//! The Kafka clients' log lines as the server's own: rdkafka writes librdkafka's (a refused
//! login, a certificate that does not verify, a broker that cannot be reached) through the `log`
//! crate, and this hands them to `tracing`, under the `librdkafka` target.

/// Forwards `log` records to `tracing`.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "librdkafka", "{message}"),
            log::Level::Warn => tracing::warn!(target: "librdkafka", "{message}"),
            log::Level::Info => tracing::info!(target: "librdkafka", "{message}"),
            log::Level::Debug => tracing::debug!(target: "librdkafka", "{message}"),
            log::Level::Trace => tracing::trace!(target: "librdkafka", "{message}"),
        }
    }

    fn flush(&self) {}
}

/// Sends the `log` records of the process (the Kafka clients') to `tracing`, at warning level and
/// above (librdkafka's information lines are many). Once per process; later calls do nothing.
pub fn forward() {
    static FORWARD: ToTracing = ToTracing;
    if log::set_logger(&FORWARD).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}
