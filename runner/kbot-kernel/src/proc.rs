//! Process running lives with the sandbox; kept here under its old name for the callers.
pub use kbot_sandbox::proc::*;
