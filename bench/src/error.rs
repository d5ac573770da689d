//! What can stop a scenario: the server would not start, or answered what it must not.

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot start the server: {0}")]
    Spawn(String),
    #[error(transparent)]
    Process(#[from] harness::HarnessError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected answer {0}: {1}")]
    Answer(u16, String),
    #[error("{0}")]
    Scenario(String),
}
