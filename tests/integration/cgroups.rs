//! Placeholder: filled in by the run-time control issue.
