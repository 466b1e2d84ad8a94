//! The command line: subcommands and flags, parsed with clap.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::exit;

/// Is it down, or is it me? aiwatch checks AI services (ChatGPT, Claude, the APIs, local
/// models) and tells you whether they are down for everyone, or only for you — and why.
#[derive(Debug, Parser)]
#[command(name = "aiwatch", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Config file (TOML); default: ./aiwatch.toml, else the user's config dir.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose services from this machine: is it down, or is it me?
    #[command(
        after_help = "Examples:\n  aiwatch check                  every service in the catalog\n  aiwatch check chatgpt openai-api --deep\n  aiwatch check --json claude | jq '.[0].cause'\n\nExit codes: 0 operational, 1 degraded or maintenance, 2 outage at the provider, 3 the problem is on your side (network, account, local runtime), 4 aiwatch could not tell; with several services, your side ranks first, then outages; 64 usage error, 78 config error."
    )]
    Check(CheckArgs),
    /// What the providers' official status pages say: indicator, components, incidents,
    /// maintenance.
    #[command(
        after_help = "Example: aiwatch status openai-api anthropic-api\n\nExit codes: 0 operational, 1 degraded or maintenance, 2 outage, 4 a page could not be read; 64 usage error."
    )]
    Status(StatusArgs),
    /// Keep watching: scheduled probes and official pages, incidents, history, JSON API,
    /// Statuspage-compatible API and Prometheus metrics.
    #[command(
        after_help = "Examples:\n  aiwatch serve                           the default watch list, dashboard on http://127.0.0.1:8080\n  aiwatch serve chatgpt openai-api --listen 0.0.0.0:8080 --db /var/lib/aiwatch/aiwatch.db\n\nExit codes: 0 stopped by SIGINT/SIGTERM, 64 usage error, 78 config error (including a database it cannot open)."
    )]
    Serve(ServeArgs),
    /// The OpenAI-compatible failover gateway: point SDKs at it, and requests go to the first
    /// healthy upstream of their model's route.
    #[command(
        after_help = "Example: AIWATCH_GATEWAY_KEYS=sk-gw-... aiwatch gateway   then point an SDK at http://127.0.0.1:4000/v1 (see docs/gateway.md)\n\nExit codes: 0 stopped by SIGINT/SIGTERM, 64 usage error, 78 config error."
    )]
    Gateway(GatewayArgs),
    /// Be a vantage point for a server elsewhere: run its checks from here (this region's DNS,
    /// proxy and network) and push what is seen, buffered on disk while the server is away.
    #[command(
        after_help = "Example:\n  AIWATCH_AGENT_TOKEN=... aiwatch agent --server https://aiwatch.example.com --region eu-west\n\nThe server declares the region and its token in an [[agent]] entry (see docs/agents.md).\n\nExit codes: 0 stopped by SIGINT/SIGTERM, 2 the server refused this agent (wrong token, undeclared region: its reason is printed), 64 usage error."
    )]
    Agent(AgentArgs),
    /// Failover drill: which upstream of a route would carry traffic right now, and is the
    /// local plan B installed and able to run?
    #[command(
        after_help = "Example: aiwatch drill gpt-4o-mini\n\nExit codes: 0 some upstream is ready, 2 none is; 64 usage error, 78 config error."
    )]
    Drill(DrillArgs),
    /// List the catalog: built-in services plus those from the config file.
    #[command(after_help = "Example: aiwatch services --json | jq '.[].name'")]
    Services(ServicesArgs),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with the configured `[[alert]]` channels.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Tell an aiwatch server that you see a problem with a service ("is anyone else seeing
    /// this?"), and see what others report.
    #[command(
        after_help = "Example: aiwatch report chatgpt --symptom login_loop --server https://aiwatch.example.com\n\nSymptoms: cannot_load, login_loop, blank_page, access_denied, network_error, logged_out, region_blocked, rate_limited, slow_or_cut_off, missing_history, other.\n\nExit codes: 0 the report was taken (counted or already counted this hour), 2 the server refused it or could not be reached; 64 usage error."
    )]
    Report(ReportArgs),
    /// Write a commented starter config: the services whose keys are set here, the local
    /// models running now, a gateway route ending with a local model, the dashboard address.
    #[command(
        after_help = "Examples:\n  aiwatch init             writes ~/.config/aiwatch/aiwatch.toml (never over an existing file)\n  aiwatch init --print     shows it instead\n  aiwatch init --force     replaces the existing file\n\nExit codes: 0 written (or printed), 64 the file exists (use --force) or usage error."
    )]
    Init {
        /// Replace an existing config file.
        #[arg(long)]
        force: bool,
        /// Print the config instead of writing it.
        #[arg(long)]
        print: bool,
    },
    /// Print shell completions (bash, zsh, fish, powershell, elvish).
    #[command(
        after_help = "Examples:\n  aiwatch completions bash > ~/.local/share/bash-completion/completions/aiwatch\n  aiwatch completions zsh > \"${fpath[1]}/_aiwatch\"\n  aiwatch completions fish > ~/.config/fish/completions/aiwatch.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Write man pages (aiwatch.1 and one per subcommand) into a folder.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The service, as the server names it (e.g. chatgpt).
    pub service: String,
    /// What you see.
    #[arg(long)]
    pub symptom: String,
    /// The server (default: the config's [server] listen address on this machine).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Your coarse region (optional), e.g. eu-west or fr.
    #[arg(long)]
    pub region: Option<String>,
    /// A short comment (at most 500 characters; keys are scrubbed).
    #[arg(long)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a sample notification through one configured channel and show the receiver's
    /// answer.
    #[command(
        after_help = "Example: aiwatch alert test ops\n\nExit codes: 0 the receiver accepted it, 2 it did not; 64 usage error (unknown alert), 78 config error."
    )]
    Test {
        /// The alert's `name`.
        name: String,
        /// The sample's event (opened, degraded, recovered, monitor_trouble, …).
        #[arg(long, default_value = "opened")]
        event: String,
        #[command(flatten)]
        network: NetworkArgs,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// More detail (evidence for every service).
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Less output: one line per service.
    #[arg(short, long)]
    pub quiet: bool,

    /// Services to check (default: every service in the catalog).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Print JSON (an array of verdicts) instead of the report.
    #[arg(long)]
    pub json: bool,

    /// Budget of the whole check, e.g. 5s or 1500ms (default: the config's, else 5s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    #[command(flatten)]
    pub network: NetworkArgs,

    /// Also send one tiny streamed completion per API (costs a few tokens) to measure time to
    /// first token and catch cut-off answers.
    #[arg(long)]
    pub deep: bool,

    /// Skip the control probe to the neutral host.
    #[arg(long)]
    pub no_control: bool,

    /// Also ask this aiwatch server what its other vantage points see (its own machine and
    /// each agent's region): "it fails from here but works from eu-west → it's you". Its API
    /// token, if it has one, is read from AIWATCH_SERVER_TOKEN.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// More detail (evidence for every service).
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Less output: one line per service.
    #[arg(short, long)]
    pub quiet: bool,

    /// Services to show (default: every service that has an official status page).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Print JSON (an array, one object per service) instead of the report.
    #[arg(long)]
    pub json: bool,

    /// Budget of each page's read, e.g. 5s or 1500ms (default: the config's, else 5s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve on (default: the config's [server] listen, else 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,

    /// SQLite database file (default: the config's [server] database — an SQLite file or
    /// PostgreSQL — else aiwatch.db in the user's data dir).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Services to watch (default: every service in the catalog).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    #[command(flatten)]
    pub network: NetworkArgs,
}

/// How a command reaches the network: its resolver and extra trusted roots.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Ask this DNS server instead of the system's resolver: ADDR[:PORT].
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub dns_server: Option<String>,

    /// Trust this extra root CA (PEM), as a corporate machine would; chains that need it are
    /// reported as intercepted, and keys are never sent through them.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The aiwatch server to report to (https://…; plain http only to this machine or a
    /// private network).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// This vantage point's region, as the server's [[agent]] entry names it.
    #[arg(long, value_name = "NAME")]
    pub region: String,
    /// The variable holding this agent's token.
    #[arg(long, value_name = "VAR", default_value = "AIWATCH_AGENT_TOKEN")]
    pub token_env: String,
    /// The server's own CA (PEM), when its certificate is not from a public CA.
    #[arg(long, value_name = "PEM")]
    pub server_ca: Option<PathBuf>,
    /// Where observations wait for delivery (default: agent-REGION.db in the data dir).
    #[arg(long, value_name = "FILE")]
    pub buffer: Option<PathBuf>,
    /// Observations the buffer keeps at most while the server is away; past it the oldest
    /// are given up (and counted).
    #[arg(long, value_name = "N", default_value_t = aiwatch_agent::buffer::DEFAULT_CAPACITY)]
    pub buffer_capacity: u64,
    /// Also use this key variable (from this machine's environment) for the services the
    /// server points it at; built-in key variables are only ever sent to their own provider.
    #[arg(long, value_name = "VAR")]
    pub allow_key: Vec<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to serve on (default: the config's [gateway] listen, else 127.0.0.1:4000).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The route (model alias) to drill.
    #[arg(value_name = "ROUTE")]
    pub route: String,

    /// Print JSON instead of the report.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file; errors name the line and the field.
    #[command(
        after_help = "Example: aiwatch config check ~/.config/aiwatch/aiwatch.toml\n\nExit codes: 0 valid, 64 usage error, 78 an error in the file (its line and field are named)."
    )]
    Check {
        /// The file to validate (default: the one aiwatch would load).
        file: Option<PathBuf>,
    },
}

/// Parses the command line; usage errors exit with 64 (EX_USAGE), help and version with 0.
pub fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
            _ => ExitCode::from(exit::USAGE),
        }
    })
}
