//! The first hop, file -> Connect -> raw topic: the connector's and its
//! task's state from Connect's REST API, and how far the task has read the
//! file (its source offset, KIP-875's `GET /connectors/<name>/offsets`).
//! The API asks for basic auth; the password is read from the file the
//! targets name, never taken from the command line.

use anyhow::Context as _;
use serde::Deserialize;

use crate::http::{Http, Login};
use crate::targets::ConnectTarget;

/// `GET /connectors/<name>/status`, the parts status shows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ConnectorStatus {
    pub connector: State,
    pub tasks: Vec<TaskState>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct State {
    pub state: String,
    #[serde(default)]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TaskState {
    pub id: u32,
    pub state: String,
    #[serde(default)]
    pub trace: Option<String>,
}

impl ConnectorStatus {
    /// Up when the connector and every task (at least one) run.
    pub fn running(&self) -> bool {
        self.connector.state == "RUNNING"
            && !self.tasks.is_empty()
            && self.tasks.iter().all(|t| t.state == "RUNNING")
    }

    /// What is wrong, in one line: the first line of a failed task's trace
    /// (the exception), else the states that are not RUNNING.
    pub fn problem(&self) -> Option<String> {
        if self.running() {
            return None;
        }
        let traced = std::iter::once((None, &self.connector.state, &self.connector.trace))
            .chain(self.tasks.iter().map(|t| (Some(t.id), &t.state, &t.trace)));
        for (task, state, trace) in traced {
            if let Some(first) = trace.as_deref().and_then(|t| t.lines().next()) {
                let who = task.map_or("connector".to_string(), |id| format!("task {id}"));
                return Some(format!("{who} {state}: {first}"));
            }
        }
        if self.tasks.is_empty() {
            return Some(format!("connector {}, no task", self.connector.state));
        }
        let states: Vec<String> = self
            .tasks
            .iter()
            .map(|t| format!("task {} {}", t.id, t.state))
            .collect();
        Some(format!(
            "connector {}, {}",
            self.connector.state,
            states.join(", ")
        ))
    }
}

#[derive(Debug, Deserialize)]
struct Offsets {
    offsets: Vec<SourceOffset>,
}

#[derive(Debug, Deserialize)]
struct SourceOffset {
    offset: Position,
}

#[derive(Debug, Deserialize)]
struct Position {
    position: u64,
}

/// The file position the task has committed (bytes), `None` before it read any.
fn parse_position(body: &str) -> anyhow::Result<Option<u64>> {
    let offsets: Offsets = serde_json::from_str(body).context("connector offsets")?;
    Ok(offsets.offsets.iter().map(|o| o.offset.position).max())
}

/// A client of one worker's REST API for one connector.
pub struct Connect<'a> {
    http: &'a Http,
    target: &'a ConnectTarget,
    connector: &'a str,
    password: String,
}

impl<'a> Connect<'a> {
    pub fn new(
        http: &'a Http,
        target: &'a ConnectTarget,
        connector: &'a str,
    ) -> anyhow::Result<Self> {
        let password = std::fs::read_to_string(&target.password_file).with_context(|| {
            format!(
                "cannot read Connect's REST password from {} (run as root on the appliance)",
                target.password_file.display()
            )
        })?;
        let password = password.trim_end_matches(['\n', '\r']).to_owned();
        Ok(Self {
            http,
            target,
            connector,
            password,
        })
    }

    fn get(&self, path: &str) -> anyhow::Result<String> {
        let url = format!(
            "{}/connectors/{}{path}",
            self.target.url.trim_end_matches('/'),
            self.connector
        );
        let login = Login {
            user: &self.target.user,
            password: &self.password,
        };
        self.http.get(&url, Some(&login))
    }

    pub fn status(&self) -> anyhow::Result<ConnectorStatus> {
        let body = self.get("/status")?;
        serde_json::from_str(&body).context("connector status")
    }

    pub fn position(&self) -> anyhow::Result<Option<u64>> {
        parse_position(&self.get("/offsets")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_task_shows_the_first_line_of_its_trace() {
        let status: ConnectorStatus = serde_json::from_str(
            r#"{"name":"pulsewire-readings-file","connector":{"state":"RUNNING","worker_id":"w"},
                "tasks":[{"id":0,"state":"FAILED","worker_id":"w",
                          "trace":"org.apache.kafka.common.errors.RecordTooLargeException: too large\n\tat x"}],
                "type":"source"}"#,
        )
        .unwrap();
        assert!(!status.running());
        assert_eq!(
            status.problem().unwrap(),
            "task 0 FAILED: org.apache.kafka.common.errors.RecordTooLargeException: too large"
        );
    }

    #[test]
    fn running_needs_a_task() {
        let mut status = ConnectorStatus {
            connector: State {
                state: "RUNNING".into(),
                trace: None,
            },
            tasks: vec![],
        };
        assert_eq!(status.problem().unwrap(), "connector RUNNING, no task");
        status.tasks.push(TaskState {
            id: 0,
            state: "PAUSED".into(),
            trace: None,
        });
        assert_eq!(
            status.problem().unwrap(),
            "connector RUNNING, task 0 PAUSED"
        );
        status.tasks[0].state = "RUNNING".into();
        assert!(status.running() && status.problem().is_none());
    }

    #[test]
    fn the_position_is_the_file_offset() {
        let body = r#"{"offsets":[{"partition":{"filename":"/var/lib/pulsewire/readings.csv"},"offset":{"position":4711}}]}"#;
        assert_eq!(parse_position(body).unwrap(), Some(4711));
        assert_eq!(parse_position(r#"{"offsets":[]}"#).unwrap(), None);
    }
}
