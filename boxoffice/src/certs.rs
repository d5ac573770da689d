//! `boxoffice certs`: the cluster CA and each process's credential (see the `pki` crate).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Creates the cluster CA in a directory: `ca.pem` (give it to every process) and `ca.key`
    /// (keep it offline; it signs every credential).
    Init {
        /// Where to create the CA; an existing CA is never overwritten.
        #[arg(long)]
        ca_dir: PathBuf,
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = pki::CA_DAYS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issues a process's credential into a directory (`cert.pem`, `key.pem`, `ca.pem`) that
    /// the process reads with `--tls-dir`.
    Issue(IssueArgs),
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    /// The CA's directory (`boxoffice certs init`).
    #[arg(long)]
    ca_dir: PathBuf,
    /// What the process is: `node`, `api`, `indexer` or `operator`. Peers act on it: only nodes
    /// send Raft messages, only operators change the layout.
    #[arg(long, value_parser = parse_role)]
    role: pki::Role,
    /// The process's name, shown in peers' logs (e.g. `node-1`).
    #[arg(long)]
    name: String,
    /// A host name or IP address others reach the process at (nodes and indexers: every name
    /// in their advertised addresses); repeat for several.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Where to write the credential.
    #[arg(long)]
    out: PathBuf,
    /// How long the certificate is valid, in days.
    #[arg(long, default_value_t = pki::LEAF_DAYS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
}

fn parse_role(text: &str) -> Result<pki::Role, String> {
    pki::Role::parse(text).ok_or_else(|| "one of node, api, indexer, operator".to_owned())
}

pub fn run(command: CertsCommand) -> Result<(), pki::PkiError> {
    match command {
        CertsCommand::Init { ca_dir, days } => {
            pki::ClusterCa::create(&ca_dir, days)?;
            println!("cluster CA created in {}: give ca.pem to every process, keep ca.key offline", ca_dir.display());
        }
        CertsCommand::Issue(a) => {
            let ca = pki::ClusterCa::load(&a.ca_dir)?;
            ca.issue(a.role, &a.name, &a.hosts, a.days)?.write(&a.out)?;
            println!(
                "{} credential for {} written to {} (pass --tls-dir {})",
                a.role,
                a.name,
                a.out.display(),
                a.out.display()
            );
        }
    }
    Ok(())
}
