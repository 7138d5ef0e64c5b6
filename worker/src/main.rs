//! `tradehabit-worker`: the command line lives in [`tradehabit_worker::cli`].

fn main() -> std::process::ExitCode {
    tradehabit_worker::cli::main_from(std::env::args_os())
}
