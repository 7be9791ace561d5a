use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kswarm::cli::Cli::parse();
    let format = match kswarm::logging::LogFormat::parse(&cli.log_format) {
        Ok(f) => f,
        Err(e) => return kswarm::app::exit_code(Err(e.into())),
    };
    kswarm::logging::init(&cli.log_level, format);
    kswarm::app::exit_code(kswarm::app::run(cli))
}
