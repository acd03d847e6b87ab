//! Command-line interface: flags as the seed defined them, plus a few additions.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{DestinationKind, Overrides, ResumeMode, SourceKind, StateKind};
use crate::filters::FilterConfig;
use crate::shard::Shard;
use crate::stores::chat::Upgrade;

const EXAMPLES: &str = "\
Examples:
  # SQLite (development) to JSON files, one per thread
  ckpt-migrate --source sqlite --source-config '{\"connection_string\": \"sqlite:///checkpoints.db\"}' \\
               --destination json --dest-config '{\"output_dir\": \"./export\"}'

  # PostgreSQL chat history to Qdrant Unified Memory
  ckpt-migrate --source postgresql \\
               --source-config '{\"connection_string\": \"postgresql://u:p@host/db\", \"table_name\": \"chat_message_history\"}' \\
               --destination unified --dest-config '{\"qdrant_url\": \"http://localhost:6333\", \"collection\": \"checkpoints\"}' \\
               --batch-size 500

  # Everything from a YAML file (filters, transformers, batch size)
  ckpt-migrate --config migration.yaml

  # Shard 3 of 8 (e.g. one pod of a Kubernetes Indexed Job), then all shards checked
  ckpt-migrate --config migration.yaml --shard '$JOB_COMPLETION_INDEX/8'
  ckpt-migrate verify --config migration.yaml

  # Check first: counts, a decoded sample, an estimate; writes nothing
  ckpt-migrate --config migration.yaml --dry-run --verbose

  # After a crash or Ctrl-C: continue where the destination stopped, then compare
  ckpt-migrate --config migration.yaml --resume --verify
  ckpt-migrate verify --config migration.yaml

  # Search an embedded Unified Memory collection by meaning
  ckpt-migrate search \"refund for a damaged order\" --path ./memory --limit 3

  # Try a plugin on sample records
  ckpt-migrate plugin check ./plugins/redact_pii.wasm --config '{\"fields\": [\"email\"]}'

Exit codes: 0 success, 1 finished but some records failed (see the dead-letter file),
2 bad usage or configuration, 3 the run failed.";

#[derive(Debug, Parser)]
#[command(
    name = "ckpt-migrate",
    version,
    about = "Move LangGraph / LangChain checkpoints between stores, losslessly.",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compare source and destination: counts per thread and an order-independent
    /// checksum of every record's key and raw values. Exit 0 when equal, 1 otherwise.
    Verify(RunArgs),
    /// Work with WASM plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Search a Unified Memory collection (embedded or on a server) by meaning: the
    /// checkpoints nearest to TEXT, with their thread, step, time and matching message.
    Search(SearchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// What to look for.
    pub text: String,
    /// An embedded collection's directory (what `path:` names in the config).
    #[arg(long, value_name = "DIR", conflicts_with = "qdrant_url")]
    pub path: Option<PathBuf>,
    /// A Qdrant server, e.g. http://localhost:6333.
    #[arg(long, value_name = "URL")]
    pub qdrant_url: Option<String>,
    /// The collection [default: checkpoints].
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
    /// A migration YAML whose unified destination (or source) is searched; the flags
    /// above win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The embedding to search with (`hash` or a model name) [default: the one an
    /// embedded collection was written with].
    #[arg(long, value_name = "MODEL")]
    pub embedding_model: Option<String>,
    /// Only this thread.
    #[arg(long, value_name = "ID")]
    pub thread: Option<String>,
    /// How many checkpoints to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub limit: usize,
    /// Print the hits as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Detailed logs.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Load a plugin, print its name, version, kind and needs, and run it on sample records.
    Check(PluginCheckArgs),
    /// Run a plugin on your own records (a JSON export's lines) and print what it does
    /// with each, with its log lines; `--expect` makes it a test: exit 1 on a difference.
    Test(PluginTestArgs),
    /// Start a plugin project: source, SDK, WIT, build script, README and a sample
    /// migration, ready to build and pass `plugin check`.
    New(PluginNewArgs),
}

#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name (lowercase letters, digits, `-`, `_`); also its folder.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: crate::plugins::scaffold::Language,
    /// A transformer (keep/drop/patch/reject) or a filter (keep/drop/reject).
    #[arg(long, value_enum, default_value = "transformer")]
    pub kind: crate::plugins::scaffold::PluginKind,
    /// Where to write the project [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    #[command(flatten)]
    pub plugin: PluginCheckArgs,
    /// Records to run it on: JSON lines as ckpt-migrate's JSON export writes them
    /// (`threads/*.jsonl`, or `checkpoints.jsonl` with `single_file: true`).
    #[arg(long, value_name = "FILE.jsonl")]
    pub records: PathBuf,
    /// The outcomes it must give (JSON lines, as `--json` prints them): any difference
    /// is listed and the exit code is 1.
    #[arg(long, value_name = "FILE.jsonl")]
    pub expect: Option<PathBuf>,
    /// Print each outcome as a JSON line (what `--expect` reads) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PluginCheckArgs {
    /// The component (`.wasm`), or the name of a reference plugin.
    pub plugin: String,
    /// The plugin's config as JSON (its `config:` block).
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// Wall-clock limit per call in milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Memory limit in MiB [default: 256].
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// A directory the plugin may read, as /data.
    #[arg(long, value_name = "DIR")]
    pub allow_dir: Option<PathBuf>,
    /// Detailed logs.
    #[arg(short, long)]
    pub verbose: bool,
}

impl Cli {
    /// The arguments of whichever command was given.
    pub fn args(&self) -> &RunArgs {
        match &self.command {
            Some(Command::Verify(args)) => args,
            Some(Command::Plugin(_) | Command::Search(_)) | None => &self.run,
        }
    }

    pub fn verbose(&self) -> bool {
        match &self.command {
            Some(Command::Plugin(PluginCommand::Check(a))) => a.verbose,
            Some(Command::Plugin(PluginCommand::Test(a))) => a.plugin.verbose,
            Some(Command::Plugin(PluginCommand::New(_))) => false,
            Some(Command::Search(a)) => a.verbose,
            _ => self.args().verbose,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Where checkpoints come from.
    #[arg(long, value_enum, value_name = "KIND")]
    pub source: Option<SourceKind>,

    /// The source's settings as JSON (e.g. '{"connection_string": "sqlite:///c.db"}').
    #[arg(long, value_name = "JSON")]
    pub source_config: Option<String>,

    /// Where checkpoints go.
    #[arg(long, value_enum, value_name = "KIND")]
    pub destination: Option<DestinationKind>,

    /// The destination's settings as JSON (e.g. '{"output_dir": "./export"}').
    #[arg(long = "dest-config", value_name = "JSON")]
    pub dest_config: Option<String>,

    /// A YAML file with the whole migration; flags given as well take precedence.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Checkpoints per batch [default: 500; 250 into an embedded Unified Memory collection].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Connect, count, decode a sample, estimate the time, check the destination; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Detailed logs.
    #[arg(short, long)]
    pub verbose: bool,

    /// Where records that fail go (JSON lines) [default: next to the output].
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// Only this thread.
    #[arg(long, value_name = "ID")]
    pub thread_id: Option<String>,

    /// Only threads matching this glob.
    #[arg(long, value_name = "GLOB")]
    pub thread_pattern: Option<String>,

    /// Skip threads matching this glob (repeatable).
    #[arg(long = "exclude-thread", value_name = "GLOB")]
    pub exclude_threads: Vec<String>,

    /// Only checkpoints from this date (YYYY-MM-DD, UTC) or RFC 3339 instant on.
    #[arg(long, value_name = "DATE")]
    pub date_from: Option<String>,

    /// Only checkpoints up to this date (inclusive) or instant.
    #[arg(long, value_name = "DATE")]
    pub date_to: Option<String>,

    /// Continue the unfinished run of this configuration after its last confirmed batch.
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,

    /// Forget the unfinished run of this configuration and start over.
    #[arg(long)]
    pub restart: bool,

    /// Stop the run when more records than this have failed (0: never) [default: 100].
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Process the records of a dead-letter file again (instead of the source).
    #[arg(long, value_name = "FILE")]
    pub replay_dead_letter: Option<PathBuf>,

    /// After the run, compare source and destination (as `ckpt-migrate verify`).
    #[arg(long)]
    pub verify: bool,

    /// What chat-history sessions become: `messages_state` makes each a LangGraph
    /// thread (sets `upgrade` in the source config).
    #[arg(long, value_enum, value_name = "HOW")]
    pub upgrade: Option<Upgrade>,

    /// What to move: `checkpoints` (threads, the default) or `store`: LangGraph Store
    /// items (long-term memory) of a PostgresStore / SqliteStore.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub state: Option<StateKind>,

    /// Store items only: namespaces starting with these labels, dot-joined
    /// (`users.u-1`).
    #[arg(long, value_name = "PREFIX")]
    pub namespace_prefix: Option<String>,

    /// Move only shard I of N (from 0): the threads whose hash falls in it. I may be
    /// `$NAME`, an environment variable such as `$JOB_COMPLETION_INDEX`.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            source: self.source,
            source_config: self.source_config.clone(),
            destination: self.destination,
            dest_config: self.dest_config.clone(),
            batch_size: self.batch_size,
            dry_run: self.dry_run,
            dead_letter_path: self.dead_letter.clone(),
            filters: FilterConfig {
                thread_id: self.thread_id.clone(),
                thread_pattern: self.thread_pattern.clone(),
                exclude_threads: self.exclude_threads.clone(),
                date_from: self.date_from.clone(),
                date_to: self.date_to.clone(),
                namespace_prefix: self.namespace_prefix.clone(),
                plugins: Vec::new(),
                shard: None,
            },
            max_errors: self.max_errors,
            resume: if self.resume {
                ResumeMode::Resume
            } else if self.restart {
                ResumeMode::Restart
            } else {
                ResumeMode::Ask
            },
            replay_dead_letter: self.replay_dead_letter.clone(),
            shard: self.shard,
            upgrade: self.upgrade,
            state: self.state,
        }
    }
}
