//! Logging to stderr, text or JSON, with a filter a reload can swap.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::{LogFormat, Settings};

/// Swaps the log filter of the running process (SIGHUP applies `log.level` through it).
pub type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Sets up stderr logging; returns the handle that swaps the filter on reload.
pub fn init(settings: &Settings) -> FilterHandle {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match settings.log.format {
        LogFormat::Text => (
            Some(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)),
            None,
        ),
        LogFormat::Json => (None, Some(fmt::layer().json().with_writer(std::io::stderr))),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
    handle
}
