//! `webhookd migrate | serve | work | run | stats`: see `cli.rs` for each command.

fn main() -> std::process::ExitCode {
    webhookd::cli::main()
}
