//! One module per subcommand. Each exposes `run(args, &Config, &Output) -> Result<Outcome>`: it
//! builds clients from the config, calls the core, and hands a report to the output handle.

pub mod completions;
pub mod config;
pub mod create_connector;
pub mod generate_data;
pub mod health;
pub mod load;
pub mod replay_dlq;
pub mod scd2;
pub mod setup_source;
pub mod tail;
pub mod verify;

/// Joins the worker threads of a command; the first error wins, and a panicked thread is an
/// error naming `what` ("a reader thread").
pub(crate) fn join_workers(
    handles: Vec<std::thread::ScopedJoinHandle<'_, anyhow::Result<()>>>,
    what: &str,
) -> anyhow::Result<()> {
    let mut first = Ok(());
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("{what} panicked"))?;
        if first.is_ok() {
            first = result;
        }
    }
    first
}
