use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kswarm::cli::Cli::parse();
    kswarm::logging::init(&cli.log_level);
    kswarm::app::exit_code(kswarm::app::run(cli))
}
