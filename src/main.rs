//! The `fanout` binary: load the configuration (flags > `FANOUT_*` > `--config` file >
//! defaults), print it if asked, raise the open-file limit, run the server until SIGINT/SIGTERM;
//! SIGHUP reloads the TLS certificate.

use std::io::IsTerminal;
use std::process::ExitCode;

use fanout::tls::TlsError;
use fanout::{Config, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Bad settings exit with 2 and say which flag, variable or file key is wrong.
    let loaded = Config::load().unwrap_or_else(|e| e.exit());
    let config = loaded.config;
    if loaded.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &loaded.file {
        info!(file = %file.display(), "configuration file loaded");
    }

    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open-file limit"),
        Err(e) => warn!(error = %e, "could not raise the open-file limit"),
    }

    let server = match Server::bind(config.clone()) {
        Ok(server) => server,
        // A bad certificate or key is a bad setting: exit 2, naming the file.
        Err(e) if e.get_ref().is_some_and(|e| e.is::<TlsError>()) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            error!(addr = %config.listen, error = %e, "cannot start the server");
            return ExitCode::FAILURE;
        }
    };

    // Signals arrive on their own thread and become a shutdown command through the same inbox
    // every other publisher uses, so the loop has one way in from outside. SIGHUP swaps the
    // TLS configuration the loops take at each accept, with no message to them.
    let handle = server.handle();
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                // Logged either way by the reload itself; without TLS there is nothing to do.
                if let Err(TlsError::NotConfigured) = handle.reload_tls() {
                    info!("SIGHUP ignored: no TLS certificate to reload");
                }
                continue;
            }
            info!(signal, "received signal, shutting down");
            if handle.shutdown().is_err() {
                break;
            }
        }
    });

    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "event loop failed");
            ExitCode::FAILURE
        }
    }
}
