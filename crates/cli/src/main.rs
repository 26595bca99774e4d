//! `conclave`: the command-line tool of Conclave for Rust.
//!
//! Thin by design: it parses flags, reads files and prints; the work is done
//! by the library crates. Exit codes (also in the README):
//!
//! * 0: success; the check passed.
//! * 1: a check failed: an enclave or evidence does not satisfy a constraint,
//!   or evidence does not verify.
//! * 2: usage error, unreadable input, or any other failure.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod client_cmd;
mod demo;
mod evidence;
mod host_cmd;
mod kds_cmd;
mod samples;
mod signing;
mod soak;

/// Conclave for Rust: confidential computing with enclaves, attestation and encrypted mail.
#[derive(Debug, Parser)]
#[command(
    name = "conclave",
    version,
    about = "Conclave for Rust: confidential computing with enclaves, attestation and encrypted mail",
    after_help = "\
Exit codes (every command):
  0  success; the check passed
  1  a check failed: an enclave or evidence does not satisfy a constraint, evidence does not
     verify, or the demo's result was wrong
  2  usage error, invalid input, unreadable file, unreachable host, or any other failure

Logs go to stderr; set CONCLAVE_LOG (e.g. debug) to see more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the end-to-end demo: three parties pool private numbers in a simulated enclave behind a web host.
    Demo,
    /// Work with enclave constraints.
    #[command(subcommand)]
    Constraint(ConstraintCommand),
    /// Print the code hash of an enclave binary (SHA-256 of the file, lowercase hex).
    Measure(signing::MeasureArgs),
    /// Generate an Ed25519 enclave-signing key (file mode 0600).
    Keygen(signing::KeygenArgs),
    /// Sign an enclave binary: writes <BIN>.sig binding code hash, product id and revocation level.
    Sign(signing::SignArgs),
    /// Verify real TEE evidence (SGX DCAP, TDX, SEV-SNP, Nitro).
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Run a web host for one enclave: HTTP API for attestation and mail (see docs/http-api.md).
    Host(host_cmd::HostArgs),
    /// Run the key derivation service: enclaves get the same keys on every start and every host.
    Kds(host_cmd::KdsArgs),
    /// Fetch a web host's attestation, print its summary and check it against a constraint.
    Attest(client_cmd::AttestArgs),
    /// Attest a web host's enclave, send it one encrypted mail and print the reply body.
    Send(client_cmd::SendArgs),
    /// Fetch, print and acknowledge the replies waiting for a client (state from `conclave send`).
    Poll(client_cmd::PollArgs),
    /// Print the enclave state a client has verified, to compare with other parties.
    Checkpoint(client_cmd::CheckpointArgs),
    /// Inspect an encoded EnclaveInstanceInfo.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Measure start-up, in-process mail cryptography and load through the web host (a report, not a test).
    Bench(bench::BenchArgs),
    /// Slow, stalled and heavy load against a real web host, with memory figures (docs/reliability.md).
    Soak(soak::SoakArgs),
}

#[derive(Debug, Subcommand)]
enum AttestationCommand {
    /// Decode an encoded EnclaveInstanceInfo file, verify it now and print its JSON view.
    Show(client_cmd::ShowArgs),
}

#[derive(Debug, Subcommand)]
enum ConstraintCommand {
    /// Parse a constraint and print its canonical form (exit 2 and the bad token if invalid).
    Parse {
        /// The constraint, e.g. "C:<64 hex digits> SEC:INSECURE".
        text: String,
    },
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Verify evidence at a given time and print the verified result as JSON.
    Verify(evidence::VerifyArgs),
}

fn main() -> ExitCode {
    // `conclave __enclave <NAME>`: this binary started by a simulation host as
    // the enclave process of a built-in sample. Not a user command.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == samples::ENCLAVE_SUBCOMMAND) {
        return samples::run_enclave_process(args.get(2..).unwrap_or_default());
    }
    let cli = Cli::parse();
    match &cli.command {
        Command::Host(args) => init_logging(true, args.log_format()),
        Command::Kds(args) => init_logging(true, args.log_format()),
        _ => init_logging(false, host_cmd::LogFormat::Text),
    }
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Constraint(ConstraintCommand::Parse { text }) => constraint_parse(&text),
        Command::Measure(args) => signing::measure(&args),
        Command::Keygen(args) => signing::keygen(&args),
        Command::Sign(args) => signing::sign(&args),
        Command::Evidence(EvidenceCommand::Verify(args)) => return evidence::run(&args),
        Command::Host(args) => host_cmd::run(&args),
        Command::Kds(args) => host_cmd::run_kds(&args),
        Command::Attest(args) => client_cmd::attest(&args),
        Command::Send(args) => client_cmd::send(&args),
        Command::Poll(args) => client_cmd::poll(&args),
        Command::Checkpoint(args) => client_cmd::checkpoint(&args),
        Command::Attestation(AttestationCommand::Show(args)) => client_cmd::show(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Soak(args) => soak::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Sends the libraries' log events to stderr. The host logs what it does
/// (`info`); other commands only warnings, so their own output stays
/// readable. `CONCLAVE_LOG` (e.g. `debug`, `conclave_host=trace`) overrides.
/// `conclave host --log-format json` writes one JSON object per event instead.
fn init_logging(verbose: bool, format: host_cmd::LogFormat) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONCLAVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(true);
    match format {
        host_cmd::LogFormat::Text => builder.init(),
        host_cmd::LogFormat::Json => builder.json().init(),
    }
}

fn constraint_parse(text: &str) -> anyhow::Result<ExitCode> {
    match conclave_core::EnclaveConstraint::parse(text) {
        Ok(constraint) => {
            println!("{constraint}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(2))
        }
    }
}
