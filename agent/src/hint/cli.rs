//! `shadow-agent hint`: announce demand from a shell script or a cron job.
//! Prints the agent's reply line as it came; a refusal is an error (the
//! exit status is non-zero).

use std::path::PathBuf;

use anyhow::Context as _;

use super::{
    client::Client,
    protocol::{Amount, Reply, Request},
};

/// Arguments of `shadow-agent hint`.
#[derive(Debug, clap::Args)]
pub struct HintArgs {
    /// The agent's hint socket.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// CPU expected, in cores (e.g. 4, 0.5).
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory expected, bytes or with a binary unit (e.g. 2GiB).
    #[arg(long)]
    pub memory: Option<String>,
    /// Block I/O bandwidth expected, bytes/s or with a unit (e.g. 100MiB).
    #[arg(long)]
    pub io: Option<String>,
    /// Network bandwidth expected, bytes/s or with a unit.
    #[arg(long)]
    pub net: Option<String>,
    /// When the demand starts (e.g. 30s; default now).
    #[arg(long)]
    pub start_in: Option<String>,
    /// How long it lasts (e.g. 5m).
    #[arg(long, required_unless_present = "cancel")]
    pub duration: Option<String>,
    /// How sure you are, 0..1 (default 1).
    #[arg(long)]
    pub confidence: Option<f64>,
    /// Why, for the agent's log.
    #[arg(long)]
    pub reason: Option<String>,
    /// A cgroup at or below your own (default: your own).
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Cancel the hint with this id instead.
    #[arg(long, conflicts_with_all = ["cpu", "memory", "io", "net", "start_in", "duration", "confidence", "reason", "cgroup"])]
    pub cancel: Option<u64>,
}

impl HintArgs {
    /// The request line these arguments ask for.
    pub fn request(&self) -> Request {
        let amount = |t: &Option<String>| t.clone().map(Amount::Text);
        Request {
            cpu: self.cpu,
            memory: amount(&self.memory),
            io: amount(&self.io),
            net: amount(&self.net),
            start_in: self.start_in.clone(),
            duration: self.duration.clone(),
            confidence: self.confidence,
            reason: self.reason.clone(),
            cgroup: self.cgroup.clone(),
            cancel: self.cancel,
        }
    }
}

/// Sends the hint (or the cancellation) and prints the reply.
pub fn run(args: &HintArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.socket)?;
    let reply = client.send(&args.request()).context("sending the hint")?;
    println!("{}", client.last_line());
    match reply {
        Reply::Refused(r) => {
            let code = serde_json::to_value(r.code).unwrap_or_default();
            anyhow::bail!("refused ({}): {}", code.as_str().unwrap_or("?"), r.message)
        }
        Reply::Accepted(_) | Reply::Cancelled { .. } => Ok(()),
    }
}
