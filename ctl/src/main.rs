//! The `gopher-ctl` binary: parse, run, exit with the code of the outcome.

use clap::Parser;

fn main() {
    // Usage errors: clap prints them and exits 2 (EXIT_USAGE).
    let cli = gopher_ctl::cli::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match gopher_ctl::run::run(&cli, &mut out) {
        Ok(()) => std::process::exit(gopher_ctl::error::EXIT_OK),
        // `gopher-ctl metrics | head`: the reader left; not an error.
        Err(gopher_ctl::error::CtlError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            std::process::exit(gopher_ctl::error::EXIT_OK)
        }
        Err(e) => {
            eprintln!("gopher-ctl: {e}");
            std::process::exit(e.exit_code())
        }
    }
}
