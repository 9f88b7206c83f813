//! `pulsewire-ctl`: the operator's view of the pipeline from a shell. The
//! logic is in the library; this only parses the flags and sets the exit code.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = pulsewire_ctl::cli::Cli::parse();
    match pulsewire_ctl::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("pulsewire-ctl: {err:#}");
            pulsewire_ctl::Exit::Failed.into()
        }
    }
}
