//! Human-readable logs on stderr, filtered by --log-level or RUST_LOG.

use tracing_subscriber::EnvFilter;

pub fn init(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(format!("kswarm={level},rskafka=error,warn")).ok())
        .unwrap_or_else(|| EnvFilter::new("kswarm=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
