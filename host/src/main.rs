//! `ckpt-migrate`: parse the command line, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use ckpt_migrate::cli::{
    Cli, Command, PluginCheckArgs, PluginCommand, PluginNewArgs, PluginTestArgs, SearchArgs,
};
use ckpt_migrate::config::RunConfig;
use ckpt_migrate::config::StateKind;
use ckpt_migrate::engine::{self, RunReport, Shutdown};
use ckpt_migrate::error::ConfigError;
use ckpt_migrate::plugins::{self, PluginSpec};
use ckpt_migrate::stores::qdrant::config::{DEFAULT_COLLECTION, QdrantConfig};
use ckpt_migrate::stores::qdrant::search;
use ckpt_migrate::{dry_run, error::RunError, migrate_items, verify};
use clap::Parser;

/// jemalloc for the whole process (Rust and SQLite's C code alike): a run allocates
/// and frees many small values per record, and glibc's malloc spent about half of a
/// SQLite → Parquet run in malloc/free. Against mimalloc, which it replaced, jemalloc
/// with its dirty pages returned after a second (`.cargo/config.toml`) keeps peak
/// RSS 35–45 % lower, and with SQLite's allocations leaving glibc too an export to
/// Parquet takes 17 % less user CPU (2.01 → 1.67 s; docs/decisions.md, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose());
    // rayon's global pool is where records are decoded. Named here, its threads show
    // as `decode-N` in `top` and `perf`, not under the name of whichever thread first
    // used the pool (the engine's `select` lane). Already built (never, here): no harm.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("decode-{i}"))
        .build_global();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(3))
        }
    }
}

fn init_logging(verbose: bool) {
    // The embedded Qdrant engine warns about its own start-up (feature flags, mmap
    // checks) on every open; only its errors are the user's business.
    let default = if verbose {
        "ckpt_migrate=debug,info,qdrant_edge=warn"
    } else {
        "ckpt_migrate=info,warn,qdrant_edge=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CKPT_MIGRATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

fn run(cli: &Cli) -> Result<u8, RunError> {
    if let Some(Command::Plugin(PluginCommand::Check(check))) = &cli.command {
        return plugin_check(check);
    }
    if let Some(Command::Plugin(PluginCommand::Test(test))) = &cli.command {
        return plugin_test(test);
    }
    if let Some(Command::Plugin(PluginCommand::New(new))) = &cli.command {
        return plugin_new(new);
    }
    if let Some(Command::Search(search)) = &cli.command {
        return search_memory(search);
    }
    let args = cli.args();
    let config = RunConfig::load(args.config.as_deref(), args.overrides())?;
    let runtime = runtime()?;
    if config.state == StateKind::Store {
        return run_items(cli, &config, &runtime);
    }
    if let Some(Command::Verify(_)) = &cli.command {
        let report = runtime.block_on(verify::verify(&config))?;
        print!("{}", report.render());
        return Ok(if report.is_equal() { 0 } else { 1 });
    }
    if config.dry_run {
        let report = runtime.block_on(dry_run::dry_run(&config))?;
        print!("{}", report.render());
        return Ok(
            match (&report.destination_check, report.problems.is_empty()) {
                (Err(_), _) => 3,
                (Ok(()), false) => 1,
                (Ok(()), true) => 0,
            },
        );
    }
    let shutdown = Shutdown::default();
    let report = runtime.block_on(async {
        shutdown.listen();
        engine::run(&config, &shutdown).await
    })?;
    print_summary(&report, "checkpoints");
    let mut code = if report.stats.failed > 0 { 1 } else { 0 };
    if args.verify {
        let check = runtime.block_on(verify::verify(&config))?;
        print!("{}", check.render());
        if !check.is_equal() {
            code = 1;
        }
    }
    Ok(code)
}

/// A run, dry run or verify of LangGraph Store items (`--state store`).
fn run_items(
    cli: &Cli,
    config: &RunConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<u8, RunError> {
    if let Some(Command::Verify(_)) = &cli.command {
        let report = runtime.block_on(migrate_items::verify(config))?;
        print!("{}", report.render());
        return Ok(if report.is_equal() { 0 } else { 1 });
    }
    if config.dry_run {
        let report = runtime.block_on(migrate_items::dry_run(config))?;
        print!("{}", report.render());
        return Ok(0);
    }
    let shutdown = Shutdown::default();
    let report = runtime.block_on(async {
        shutdown.listen();
        migrate_items::run(config, &shutdown).await
    })?;
    print_summary(&report, "items");
    let mut code = if report.stats.failed > 0 { 1 } else { 0 };
    if cli.args().verify {
        let check = runtime.block_on(migrate_items::verify(config))?;
        print!("{}", check.render());
        if !check.is_equal() {
            code = 1;
        }
    }
    Ok(code)
}

/// The plugin named or pointed to on the command line, with its limits and config.
fn plugin_spec(args: &PluginCheckArgs) -> Result<PluginSpec, RunError> {
    let bad = |m: String| RunError::Config(ConfigError::Invalid(m));
    let config = match &args.config {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| bad(format!("--config is not valid JSON: {e}")))?,
        None => serde_json::Value::Null,
    };
    let named = !args.plugin.ends_with(".wasm") && !std::path::Path::new(&args.plugin).exists();
    let mut entry = serde_json::json!({ "config": config });
    entry[if named { "name" } else { "path" }] = args.plugin.clone().into();
    if let Some(ms) = args.timeout_ms {
        entry["timeout_ms"] = ms.into();
    }
    if let Some(mb) = args.memory_mb {
        entry["memory_mb"] = mb.into();
    }
    if let Some(dir) = &args.allow_dir {
        entry["allow_dir"] = dir.display().to_string().into();
    }
    Ok(PluginSpec::from_entry(&entry, "plugin")?)
}

/// The runtime of a run, a verify or a search: every core.
fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Io(format!("cannot start the runtime: {e}")))
}

fn plugin_runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Io(format!("cannot start the runtime: {e}")))
}

fn plugin_check(args: &PluginCheckArgs) -> Result<u8, RunError> {
    let spec = plugin_spec(args)?;
    let report = plugin_runtime()?
        .block_on(plugins::check::check(&spec))
        .map_err(|e| RunError::Config(ConfigError::Invalid(e.to_string())))?;
    print!("{report}");
    Ok(0)
}

fn plugin_test(args: &PluginTestArgs) -> Result<u8, RunError> {
    let spec = plugin_spec(&args.plugin)?;
    let report = plugin_runtime()?.block_on(plugins::check::test(
        &spec,
        &args.records,
        args.expect.as_deref(),
        args.json,
    ))?;
    print!("{}", report.text);
    Ok(if report.as_expected { 0 } else { 1 })
}

fn plugin_new(args: &PluginNewArgs) -> Result<u8, RunError> {
    let created = plugins::scaffold::create(&args.name, args.lang, args.kind, args.dir.as_deref())
        .map_err(|e| RunError::Config(ConfigError::Invalid(e)))?;
    println!("created {}:", created.dir.display());
    for file in &created.files {
        println!("  {}", file.display());
    }
    println!(
        "next: cd {} && {}, then: ckpt-migrate plugin check {}.wasm",
        created.dir.display(),
        created.build,
        args.name
    );
    Ok(0)
}

/// The collection `search` looks in: the flags, over the unified store of `--config`.
fn search_config(args: &SearchArgs) -> Result<QdrantConfig, RunError> {
    use ckpt_migrate::config::{SinkConfig, SourceConfig, StoreSourceConfig};
    let mut config = match &args.config {
        Some(file) => {
            let run = RunConfig::load(Some(file), Default::default())?;
            match (run.sink, run.source) {
                (SinkConfig::Unified(c), _) => *c,
                (_, SourceConfig::Store(StoreSourceConfig::Unified(c))) => *c,
                _ => {
                    return Err(RunError::Config(ConfigError::Invalid(format!(
                        "{}: neither its destination nor its source is unified",
                        file.display()
                    ))));
                }
            }
        }
        None => QdrantConfig::new(None, None, DEFAULT_COLLECTION.into()),
    };
    if args.path.is_some() || args.qdrant_url.is_some() {
        config.path = args.path.clone();
        config.qdrant_url = args.qdrant_url.clone();
    }
    if let Some(c) = &args.collection {
        config.collection = Some(c.clone());
    }
    if let Some(m) = &args.embedding_model {
        config.embedding_model = Some(m.clone());
        config.embedding = None;
    }
    Ok(config)
}

fn search_memory(args: &SearchArgs) -> Result<u8, RunError> {
    let config = search_config(args)?;
    let runtime = runtime()?;
    let hits = runtime
        .block_on(search::search(
            &config,
            &args.text,
            args.thread.as_deref(),
            args.limit,
        ))
        .map_err(|e| RunError::store("search failed", e))?;
    if args.json {
        for hit in &hits {
            println!("{}", serde_json::to_string(hit).unwrap_or_default());
        }
    } else {
        print!("{}", search::render(&hits));
    }
    Ok(0)
}

fn print_summary(report: &RunReport, unit: &str) {
    let s = &report.stats;
    if let Some(at) = &report.resumed_from {
        eprintln!("resumed after {at}");
    }
    if let Some(shard) = &report.run.shard {
        eprintln!(
            "shard {shard} ({}): the threads whose hash falls in this shard; `ckpt-migrate verify` without --shard checks all shards together",
            shard.part_name()
        );
    }
    eprintln!(
        "done: {} -> {}\n  read {}  written {}  filtered {}  failed {}\n  {:.1} MiB raw in {:.2} s ({:.0} {unit}/s), run id {}",
        report.source,
        report.destination,
        s.read,
        s.written,
        s.filtered,
        s.failed,
        s.bytes_read as f64 / (1024.0 * 1024.0),
        s.duration.as_secs_f64(),
        s.records_per_second(),
        report.run.run_id,
    );
    if let Some(peak) = ckpt_migrate::run::peak_memory_bytes() {
        eprintln!("  peak memory {:.1} MiB", peak as f64 / (1024.0 * 1024.0));
    }
    if s.vanished > 0 {
        eprintln!(
            "  {} key(s) vanished (expired or deleted) between listing and reading: skipped",
            s.vanished
        );
    }
    for (kind, n) in &s.undecoded {
        eprintln!("  note: {kind} ×{n} (raw bytes kept)");
    }
    if let Some(path) = &report.dead_letter {
        eprintln!("  failed records are in {}", path.display());
    }
}
