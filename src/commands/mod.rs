//! One module per subcommand. Each exposes `run(args, &Config, &Output) -> Result<Outcome>`: it
//! builds clients from the config, calls the core, and hands a report to the output handle.

pub mod completions;
pub mod config;
pub mod create_connector;
pub mod generate_data;
pub mod load;
pub mod setup_source;
pub mod tail;
