//! `webhookd migrate | serve | work | run | stats | redrive | probe`: `cli` parses the command
//! line and runs the command; `startup` wires a process.

fn main() -> std::process::ExitCode {
    webhookd::cli::main()
}
