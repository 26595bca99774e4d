//! `conclave attest`, `send`, `poll` and `attestation show`: the client side
//! of a web host, from the command line.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use conclave_client::{ClientError, EnclaveClient, FailoverRelay, HttpRelay, HttpRelayOptions, ReplyKind};
use conclave_core::{EnclaveConstraint, EnclaveInstanceInfo, MailRelay, VerifiedEnclaveInfo};

const CLIENT_EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the enclave does not satisfy the constraint, or its attestation does not verify (reason on stderr)
  2  any other error: bad flags or constraint, host unreachable or refusing, unreadable files";

/// How the client reaches the host (flags shared by `attest`, `send` and `poll`).
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Trust this CA or self-signed certificate (PEM) for an https:// host, besides the usual web roots.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Allow plain http:// to a host that is not a loopback address (anyone on the network can then
    /// read the traffic and pose as the host).
    #[arg(long)]
    insecure_http: bool,
}

/// Flags of `conclave attest`.
#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_CODES)]
pub struct AttestArgs {
    /// The web host, e.g. http://127.0.0.1:8080.
    url: String,
    /// The constraint the enclave must satisfy, e.g. "C:<code hash> SEC:INSECURE".
    #[arg(long, value_name = "C")]
    constraint: String,
    #[command(flatten)]
    transport: TransportArgs,
}

/// Flags of `conclave send`.
#[derive(Debug, Args)]
#[command(after_help = "\
Creates the state file (the client's private key, correlation id, sequence numbers, and what it
has verified of the enclave's state; mode 0600) on first use and saves it before every delivery, so
later sends continue the conversation. The mail is kept in the state file until the enclave itself
answers it: if the host fails or cannot be reached, running the same command again sends the same
mail again, and it is processed once. A different body on the same topic first settles the earlier
mail. The reply body is written to stdout as raw bytes; if the enclave processed the mail without
replying, nothing is written (later replies: `poll`).

Exit codes:
  0  sent and answered (the reply, if any, written)
  1  the enclave does not satisfy the constraint, or its attestation does not verify (reason on stderr)
  2  any other error: bad flags or constraint, host unreachable, mail not answered yet (kept, run again),
     the enclave refused the mail, a rollback or fork detected, unreadable files")]
pub struct SendArgs {
    /// The web host, e.g. http://127.0.0.1:8080; several hosts of one cluster: URL,URL,... (the
    /// client moves to the next when one cannot be reached).
    #[arg(value_name = "URL[,URL...]")]
    url: String,
    /// The constraint the enclave must satisfy. An existing state file keeps the constraint it was
    /// made with; giving a different one is an error.
    #[arg(long, value_name = "C")]
    constraint: String,
    /// The client state file (created if missing).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// The topic: one conversation of this client with the enclave.
    #[arg(long, value_name = "T", default_value = "default")]
    topic: String,
    /// The mail body: text, or @FILE to send a file's bytes.
    #[arg(value_name = "BODY | @FILE")]
    body: String,
    #[command(flatten)]
    transport: TransportArgs,
}

/// Flags of `conclave poll`.
#[derive(Debug, Args)]
#[command(after_help = "\
Fetches the replies waiting for this client, checks and decrypts them, writes each body to stdout
as raw bytes followed by a newline, oldest first, then acknowledges them so the host deletes them.
The count goes to stderr. The state file must exist (made by `conclave send`).

Exit codes:
  0  polled (possibly nothing)
  1  the enclave does not satisfy the state's constraint, or its attestation does not verify
  2  any other error: host unreachable, a reply fails its checks, unreadable state file")]
pub struct PollArgs {
    /// The web host, e.g. http://127.0.0.1:8080; several hosts of one cluster: URL,URL,...
    #[arg(value_name = "URL[,URL...]")]
    url: String,
    /// The client state file written by `conclave send`.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    #[command(flatten)]
    transport: TransportArgs,
}

/// Flags of `conclave attestation show`.
#[derive(Debug, Args)]
#[command(after_help = "\
FILE holds an encoded EnclaveInstanceInfo, e.g. saved with
  curl http://127.0.0.1:8080/v1/attestation > info.bin
It is verified at the current time and its JSON view printed.

Exit codes:
  0  verified; JSON printed
  1  the attestation does not verify (reason on stderr)
  2  the file cannot be read or decoded")]
pub struct ShowArgs {
    /// The encoded EnclaveInstanceInfo.
    file: PathBuf,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The relay of the client commands: one host, or the hosts of a cluster in turn.
type Relay = FailoverRelay<HttpRelay>;

/// The host URLs of `list` (`URL` or `URL,URL,...`).
fn host_urls(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).filter(|url| !url.is_empty()).collect()
}

/// The one place the client commands build their relay.
fn relay(urls: &str, transport: &TransportArgs) -> anyhow::Result<Relay> {
    let mut options = HttpRelayOptions::default().insecure_http(transport.insecure_http);
    if let Some(ca) = &transport.tls_ca {
        options = options.trust_ca_file(ca).map_err(|e| anyhow!("{}", e.message))?;
    }
    let relays = host_urls(urls)
        .into_iter()
        .map(|url| HttpRelay::with_options(url, options.clone()).map_err(|e| anyhow!("{}", e.message)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    FailoverRelay::new(relays).ok_or_else(|| anyhow!("no host URL given: write URL or URL,URL,..."))
}

fn parse_constraint(text: &str) -> anyhow::Result<EnclaveConstraint> {
    EnclaveConstraint::parse(text).with_context(|| format!("invalid constraint {text:?}"))
}

fn print_summary(info: &VerifiedEnclaveInfo) {
    let id = &info.identity;
    println!("mode:                  {}", info.mode.as_str());
    println!("code hash:             {}", hex::encode(&id.code_hash));
    println!("code signer:           {}", id.signer.as_ref().map_or_else(|| "(none)".to_owned(), hex::encode));
    let or_none = |v: Option<u16>| v.map_or_else(|| "(none)".to_owned(), |v| v.to_string());
    println!("product id:            {}", or_none(id.product_id));
    println!("revocation level:      {}", or_none(id.revocation_level));
    println!("security:              {}", id.security.as_str());
    println!("security reason:       {}", id.security_reason);
    if let Some(key) = id.simulated_attestation_key.map(hex::encode) {
        println!("simulation key:        {key}");
        println!("                       pin this host's simulated attestation key with SIMKEY:{key}");
    }
    println!("data signing key:      {}", hex::encode(info.data_signing_key));
    println!("encryption key:        {}", info.encryption_key.to_hex());
}

/// Runs `conclave attest`.
pub fn attest(args: &AttestArgs) -> anyhow::Result<ExitCode> {
    let constraint = parse_constraint(&args.constraint)?;
    let encoded =
        relay(&args.url, &args.transport)?.attestation().map_err(|e| anyhow!("cannot fetch the attestation: {e}"))?;
    let info = EnclaveInstanceInfo::decode(&encoded).context("the host's attestation is unreadable")?;
    let verified = match info.verify(now_unix()) {
        Ok(verified) => verified,
        Err(e) => {
            eprintln!("attestation does not verify: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    print_summary(&verified);
    match constraint.check_identity(&verified.identity, now_unix()) {
        Ok(()) => {
            println!("constraint:            satisfied ({constraint})");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("constraint:            NOT satisfied");
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Starts (attests) a client; a constraint failure is exit code 1.
fn start(client: &mut EnclaveClient<Relay>) -> anyhow::Result<Option<ExitCode>> {
    match client.start() {
        Ok(_) => Ok(None),
        Err(ClientError::Constraint(e)) => {
            eprintln!("enclave rejected: {e}");
            Ok(Some(ExitCode::from(1)))
        }
        Err(e) => Err(anyhow!("cannot attest the enclave: {e}")),
    }
}

fn read_body(body: &str) -> anyhow::Result<Vec<u8>> {
    match body.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read mail body file {path}")),
        None => Ok(body.as_bytes().to_vec()),
    }
}

/// Refuses a state file that was used with another host: its sequence
/// numbers and correlation id belong there. Hosts of one cluster share
/// them, so a list that names any host the state was used with is accepted.
fn check_host(client: &EnclaveClient<Relay>, urls: &str, state: &Path) -> anyhow::Result<()> {
    let Some(saved) = client.save().host else { return Ok(()) };
    let normal = |list: &str| -> Vec<String> {
        host_urls(list).into_iter().map(|url| url.trim_end_matches('/').to_owned()).collect()
    };
    let given = normal(urls);
    if normal(&saved).iter().any(|url| given.contains(url)) {
        Ok(())
    } else {
        bail!("state file {} belongs to the host {saved}, not {urls}: use one state file per host", state.display())
    }
}

/// Runs `conclave send`.
pub fn send(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let constraint = parse_constraint(&args.constraint)?;
    let body = read_body(&args.body)?;
    let relay = relay(&args.url, &args.transport)?;
    let mut client = if args.state.exists() {
        let client = EnclaveClient::restore_from_file(relay, &args.state)
            .with_context(|| format!("cannot restore client state {}", args.state.display()))?;
        if client.constraint().to_string() != constraint.to_string() {
            bail!(
                "state file {} was made for the constraint {:?}; use that constraint or another state file",
                args.state.display(),
                client.constraint().to_string()
            );
        }
        check_host(&client, &args.url, &args.state)?;
        client
    } else {
        let mut state = EnclaveClient::new(relay, constraint).save();
        state.host = Some(args.url.clone());
        EnclaveClient::restore(self::relay(&args.url, &args.transport)?, state)?
    };
    // Every step is saved before the next delivery: a crash or a lost
    // connection loses no mail, and the next run sends the same mail again.
    client.autosave_to(&args.state).with_context(|| format!("cannot save client state {}", args.state.display()))?;
    if let Some(code) = start(&mut client)? {
        return Ok(code);
    }
    // Running the same command again after a failure is a retry, not a second mail.
    let retry = client.pending_body(&args.topic).is_some_and(|pending| pending == body);
    let sent = if retry {
        eprintln!(
            "the same mail on topic {:?} was sent before without an answer: sending it again (not a second copy)",
            args.topic
        );
        client.resend_pending(&args.topic)
    } else {
        client.send_mail(&args.topic, &body)
    };
    warn_dropped(&client);
    match sent {
        Ok(Some(reply)) => {
            let mut stdout = std::io::stdout().lock();
            // Raw bytes for pipes; a final newline only for a person at a terminal.
            let newline: &[u8] = if std::io::IsTerminal::is_terminal(&stdout) { b"\n" } else { b"" };
            stdout
                .write_all(&reply.body)
                .and_then(|()| stdout.write_all(newline))
                .and_then(|()| stdout.flush())
                .context("cannot write the reply")?;
        }
        Ok(None) => eprintln!("sent; the enclave processed it without replying (later replies: `conclave poll`)"),
        Err(e @ ClientError::Unsettled { .. }) => {
            bail!("cannot send: {e}. Run the same command again to resend it; it will not be processed twice")
        }
        Err(e) => bail!("cannot send: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn warn_dropped(client: &EnclaveClient<Relay>) {
    if client.dropped_mail() > 0 {
        eprintln!(
            "warning: dropped {} queued mail that did not decrypt for this client or came from no attested run",
            client.dropped_mail()
        );
    }
}

/// Runs `conclave poll`.
pub fn poll(args: &PollArgs) -> anyhow::Result<ExitCode> {
    if !args.state.exists() {
        anyhow::bail!(
            "client state file {} does not exist: `conclave send` creates it with the first mail",
            args.state.display()
        );
    }
    let mut client = EnclaveClient::restore_from_file(relay(&args.url, &args.transport)?, &args.state)
        .with_context(|| format!("cannot restore client state {}", args.state.display()))?;
    check_host(&client, &args.url, &args.state)?;
    client.autosave_to(&args.state).with_context(|| format!("cannot save client state {}", args.state.display()))?;
    if let Some(code) = start(&mut client)? {
        return Ok(code);
    }
    let polled = client.poll_mail();
    warn_dropped(&client);
    let replies = polled.map_err(|e| anyhow!("cannot poll: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    let mut shown = 0;
    for reply in &replies {
        if reply.kind == ReplyKind::Refused {
            let answered = reply.answers.map_or_else(|| "a mail".to_owned(), |n| format!("mail {n}"));
            eprintln!(
                "the enclave refused {answered} on topic {:?}: {}",
                reply.topic,
                String::from_utf8_lossy(&reply.body)
            );
            continue;
        }
        stdout.write_all(&reply.body).and_then(|()| stdout.write_all(b"\n")).context("cannot write a reply")?;
        shown += 1;
    }
    stdout.flush().context("cannot write")?;
    eprintln!("{shown} replies");
    for topic in client.pending_topics() {
        eprintln!("mail on topic {topic:?} is still waiting for an answer; it is sent again at the next poll or send");
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of `conclave checkpoint`.
#[derive(Debug, Args)]
#[command(after_help = "\
Prints the latest state of the enclave this client has verified, as COUNTER:ID, and how many
replies it has verified. Parties compare their checkpoints out of band: if two of them show the
same counter with different ids, the host showed them different copies of the enclave (a fork).

Exit codes:
  0  printed
  2  the state file cannot be read")]
pub struct CheckpointArgs {
    /// The client state file written by `conclave send`.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
}

/// Runs `conclave checkpoint`.
pub fn checkpoint(args: &CheckpointArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.state).with_context(|| format!("cannot read client state {}", args.state.display()))?;
    let state = conclave_client::ClientState::from_bytes(&bytes)
        .with_context(|| format!("cannot read client state {}", args.state.display()))?;
    println!("checkpoint:        {}", state.chain.state);
    println!("replies verified:  {}", state.chain.head.index);
    println!("reply chain:       {}", hex::encode(state.chain.head.digest));
    Ok(ExitCode::SUCCESS)
}

/// Runs `conclave attestation show`.
pub fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let info = EnclaveInstanceInfo::decode(&bytes)
        .with_context(|| format!("{} is not an encoded EnclaveInstanceInfo", args.file.display()))?;
    match info.verify(now_unix()) {
        Ok(verified) => {
            println!("{}", serde_json::to_string_pretty(&verified.to_json())?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("attestation does not verify: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
