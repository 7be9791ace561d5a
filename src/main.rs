use std::process::ExitCode;

fn main() -> ExitCode {
    // Which flags the environment set: a bad value names its variable too.
    let (cli, from_env) = kswarm::from_env::parse();
    let result = kswarm::logging::LogFormat::parse(&cli.log_format)
        .and_then(|format| kswarm::logging::init(&cli.log_level, format))
        .map_err(anyhow::Error::from)
        .and_then(|()| kswarm::app::run(cli));
    kswarm::app::exit_code(result.map_err(|e| from_env.annotate(e)))
}
