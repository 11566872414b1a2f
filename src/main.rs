//! The `cdcctl` binary: parse the command line, resolve the configuration, run one subcommand,
//! and map whatever happened to an exit code (see `error.rs` and `cdcctl --help`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cdcctl::cli::{Cli, Command, GlobalArgs};
use cdcctl::commands;
use cdcctl::config::{self, Config, FlagValue, LoadRequest};
use cdcctl::error::{self, CliError, Outcome};
use cdcctl::output::{ErrorReport, Output, Terminals};

fn main() -> ExitCode {
    // `COMPLETE=bash cdcctl` prints the shell registration; the shell then calls back with the
    // words being completed (live names: `cdcctl::complete`). Exits when it did either.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    tune_malloc();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(report_usage_error(&err)),
    };
    let no_color_env = std::env::var_os(config::env::NO_COLOR).is_some_and(|v| !v.is_empty());
    let terminals = Terminals::probe();
    let out = Output::new(&cli.global, no_color_env, terminals);
    init_logging(
        &cli.global,
        !no_color_env && !cli.global.no_color && terminals.stderr,
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(
                &anyhow::Error::new(e).context("cannot start the async runtime"),
                1,
            );
            return ExitCode::from(error::EXIT_FAILED);
        }
    };
    // Race the command against Ctrl-C so prompts and progress bars are dropped (restoring the
    // terminal) before we exit; commands that must finish a batch handle signals themselves.
    let result = runtime.block_on(async {
        if handles_ctrl_c(&cli.command) {
            return run(&cli, &out).await;
        }
        tokio::select! {
            r = run(&cli, &out) => r,
            _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted.into()),
        }
    });
    let code = match result {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            let code = error::exit_code_for(&err);
            if !error::is_broken_pipe(&err) {
                out.error(&err, code);
            }
            code
        }
    };
    // Do not wait for tasks still blocked on IO after an error or Ctrl-C.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Keeps freed memory in the process instead of unmapping it: `tail` and `load` allocate and
/// free large buffers (librdkafka fetch responses, decoded batches) all the time, and with
/// glibc's defaults each one came back as fresh pages the kernel had to zero — a quarter of
/// the loader's CPU time (perf: `clear_page_erms`).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// Commands that catch Ctrl-C themselves, to stop after their current transaction and still
/// report what was committed (exit 0), instead of being cut off with exit 130.
fn handles_ctrl_c(command: &Command) -> bool {
    match command {
        Command::GenerateData(_) | Command::Load(_) => true,
        Command::Health(args) => args.watch.is_some(),
        _ => false,
    }
}

/// Dispatches to the subcommand.
async fn run(cli: &Cli, out: &Output) -> Result<Outcome> {
    match &cli.command {
        Command::Completions(args) => commands::completions::run(args, out),
        Command::SetupSource(args) => {
            let config = load_config(&cli.global, args.postgres.flag_values())?;
            commands::setup_source::run(args, &config, out).await
        }
        Command::GenerateData(args) => {
            let config = load_config(&cli.global, args.postgres.flag_values())?;
            commands::generate_data::run(args, &config, out).await
        }
        Command::CreateConnector(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::create_connector::run(args, &config, out).await
        }
        Command::Tail(args) => {
            let config = load_config(&cli.global, args.kafka.flag_values())?;
            commands::tail::run(args, &config, out).await
        }
        Command::Load(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::load::run(args, &config, out).await
        }
        Command::Verify(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::verify::run(args, &config, out).await
        }
        Command::Health(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::health::run(args, &config, out).await
        }
        Command::Scd2(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::scd2::run(args, &config, out).await
        }
        Command::ReplayDlq(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::replay_dlq::run(args, &config, out).await
        }
        Command::Config(args) => {
            let config = load_config(&cli.global, args.flag_values())?;
            commands::config::run(&config, out)
        }
    }
}

/// Resolves the configuration with the real environment and file system.
fn load_config(global: &GlobalArgs, flags: Vec<FlagValue>) -> Result<Config, CliError> {
    let env = |name: &str| std::env::var(name).ok();
    Config::load(&LoadRequest {
        config_path: global.config.clone(),
        profile: global.profile.clone(),
        flags,
        env: &env,
        cwd: std::env::current_dir().unwrap_or_default(),
        user_config_dir: dirs::config_dir(),
    })
}

/// Prints a clap error (text, or JSON when `-o json` is on the command line) and returns its
/// exit code: 0 for `--help`/`--version`, 2 for usage errors.
fn report_usage_error(err: &clap::Error) -> u8 {
    if !err.use_stderr() {
        // --help or --version: a closed pipe here is not an error either.
        let _ = err.print();
        return error::EXIT_OK;
    }
    if wants_json(std::env::args()) {
        let text = err.render().to_string();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let message = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string();
        let report = ErrorReport {
            error: message,
            causes: Vec::new(),
            hint: Some("run `cdcctl --help` for usage".into()),
            exit_code: error::EXIT_USAGE,
        };
        eprintln!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        let _ = err.print();
    }
    error::EXIT_USAGE
}

/// True when the raw arguments ask for JSON output, for errors raised before parsing finished.
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().enumerate().any(|(i, a)| {
        a == "--output=json"
            || a == "-ojson"
            || ((a == "--output" || a == "-o") && args.get(i + 1).is_some_and(|n| n == "json"))
    })
}

/// Logs go to stderr: warnings by default, more with `-v`, errors only with `-q`.
fn init_logging(global: &GlobalArgs, color: bool) {
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},cdcctl={level}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}
