//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueHint};

/// Where the transport rule is told (`--help`).
const AFTER_HELP: &str = "\
Transport: --url talks to the REST API (global.rest_api_on = true in the agent's
config), --socket to the agent's root-only control socket, which it serves even
when the REST API is off. With neither, gopher-ctl uses the control socket
/run/gala-gopher/gopher-ctl.sock when it exists and can be connected to (as
root), and http://127.0.0.1:9999 otherwise.

Exit codes: 0 done; 1 the agent refused (its message is printed); 2 bad command
line or input; 3 the agent could not be reached (connect, TLS, timeout, a reply
that is not HTTP).";

/// gopher-ctl: look at and change the probes of a running gala-gopher.
#[derive(Debug, Parser)]
#[command(name = "gopher-ctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The agent's REST API, http://HOST[:PORT] or https://HOST[:PORT] (port 9999 when none).
    #[arg(long, global = true, value_name = "URL", env = "GOPHER_CTL_URL", value_hint = ValueHint::Url)]
    pub url: Option<String>,
    /// The agent's control socket (root only).
    #[arg(long, global = true, value_name = "PATH", env = "GALA_GOPHER_CTL_SOCKET", value_hint = ValueHint::FilePath)]
    pub socket: Option<PathBuf>,
    /// Print the agent's JSON as it is, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the connection and for each read of the reply.
    #[arg(long, global = true, value_name = "SECS", default_value = "10", value_parser = parse_timeout, value_hint = ValueHint::Other)]
    pub timeout: Duration,
    /// https: PEM file of the CA that signed the agent's certificate (default: the system's CAs).
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub cacert: Option<PathBuf>,
    /// https with mutual TLS: PEM client certificate (with --key).
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub cert: Option<PathBuf>,
    /// https with mutual TLS: PEM private key of --cert.
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub key: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, show and change probes.
    #[command(subcommand)]
    Probe(ProbeCmd),
    /// The agent: version, uptime, series, drops, and every probe's state and restarts.
    Status,
    /// The Prometheus exposition text, as :8888/metrics serves it.
    Metrics,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `probe` commands.
#[derive(Debug, Subcommand)]
pub enum ProbeCmd {
    /// Every probe (legacy feature names such as `tcp`, and the agent's probe names).
    List,
    /// One probe: state, sub-probes, params, snoopers.
    Get {
        /// Probe name.
        name: String,
    },
    /// Change a probe: JSON with any of the keys state, cmd, params, snoopers.
    #[command(
        after_help = "Examples:\n  gopher-ctl probe set tcp '{\"params\":{\"report_period\":10}}'\n  gopher-ctl probe set tcp json='{\"state\":\"running\"}'\n  gopher-ctl probe set tcp -f change.json"
    )]
    Set {
        /// Probe name.
        name: String,
        /// The change as JSON (a leading `json=`, as in the legacy curl examples, is accepted).
        #[arg(
            value_name = "JSON",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        change: Option<String>,
        /// Read the JSON from FILE (`-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE", value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
    },
    /// Start a probe (state running).
    Start {
        /// Probe name.
        name: String,
    },
    /// Stop a probe (state stopped); the others keep running.
    Stop {
        /// Probe name.
        name: String,
    },
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!("{s} is out of range (0 < SECS <= 3600)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gopher-ctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_and_global_flags() {
        let c = parse(&["probe", "list"]).unwrap();
        assert!(matches!(c.command, Command::Probe(ProbeCmd::List)));
        assert!(!c.json);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.url, None);

        let c = parse(&["probe", "get", "tcp", "--json", "--url", "http://h:1"]).unwrap();
        assert!(matches!(&c.command, Command::Probe(ProbeCmd::Get { name }) if name == "tcp"));
        assert!(c.json);
        assert_eq!(c.url.as_deref(), Some("http://h:1"));

        let c = parse(&["--socket", "/s", "--timeout", "0.5", "status"]).unwrap();
        assert!(matches!(c.command, Command::Status));
        assert_eq!(c.socket, Some(PathBuf::from("/s")));
        assert_eq!(c.timeout, Duration::from_millis(500));

        let c = parse(&["probe", "set", "tcp", "json={\"state\":\"running\"}"]).unwrap();
        match c.command {
            Command::Probe(ProbeCmd::Set { name, change, file }) => {
                assert_eq!(name, "tcp");
                assert_eq!(change.as_deref(), Some("json={\"state\":\"running\"}"));
                assert_eq!(file, None);
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&["probe", "set", "tcp", "-f", "x.json"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Probe(ProbeCmd::Set {
                file: Some(_),
                change: None,
                ..
            })
        ));
        assert!(matches!(
            parse(&["probe", "start", "tcp"]).unwrap().command,
            Command::Probe(ProbeCmd::Start { .. })
        ));
        assert!(matches!(
            parse(&["probe", "stop", "tcp"]).unwrap().command,
            Command::Probe(ProbeCmd::Stop { .. })
        ));
        assert!(matches!(
            parse(&["metrics"]).unwrap().command,
            Command::Metrics
        ));
        assert!(matches!(
            parse(&["completions", "bash"]).unwrap().command,
            Command::Completions {
                shell: clap_complete::Shell::Bash
            }
        ));
    }

    #[test]
    fn usage_errors() {
        use clap::error::ErrorKind as K;
        for (args, kind) in [
            (&["probe", "set", "tcp"][..], K::MissingRequiredArgument),
            (
                &["probe", "set", "tcp", "{}", "-f", "x"][..],
                K::ArgumentConflict,
            ),
            (&["probe", "get"][..], K::MissingRequiredArgument),
            (&["probe", "bogus"][..], K::InvalidSubcommand),
            (&["completions", "tcsh"][..], K::InvalidValue),
            (&["--timeout", "0", "status"][..], K::ValueValidation),
            (&["--timeout", "x", "status"][..], K::ValueValidation),
            (&[][..], K::DisplayHelpOnMissingArgumentOrSubcommand),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.kind(), kind, "{args:?}: {e}");
            // clap exits 2 on usage errors, as our exit codes say.
            if kind != K::DisplayHelpOnMissingArgumentOrSubcommand {
                assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{args:?}");
            }
        }
    }
}
