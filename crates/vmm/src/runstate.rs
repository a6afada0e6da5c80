//! Run states as QEMU 1.1 names them, and the transitions between them.

use serde::Serialize;

/// A VM run state (`query-status` `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Stopped by a debugger.
    Debug,
    /// Waiting for an incoming migration.
    Inmigrate,
    /// An internal error stopped the VM.
    InternalError,
    /// An I/O error stopped the VM.
    IoError,
    /// Stopped by `stop`.
    Paused,
    /// Stopped after an outgoing migration.
    Postmigrate,
    /// Not started yet (`-S`).
    Prelaunch,
    /// Finishing an outgoing migration.
    FinishMigrate,
    /// Restoring a snapshot.
    RestoreVm,
    /// Running.
    Running,
    /// Saving a snapshot.
    SaveVm,
    /// The guest powered off and `-no-shutdown` kept the VM.
    Shutdown,
    /// The guest is suspended (S3).
    Suspended,
    /// Stopped by the watchdog.
    Watchdog,
}

impl RunState {
    /// The name QMP uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Debug => "debug",
            RunState::Inmigrate => "inmigrate",
            RunState::InternalError => "internal-error",
            RunState::IoError => "io-error",
            RunState::Paused => "paused",
            RunState::Postmigrate => "postmigrate",
            RunState::Prelaunch => "prelaunch",
            RunState::FinishMigrate => "finish-migrate",
            RunState::RestoreVm => "restore-vm",
            RunState::Running => "running",
            RunState::SaveVm => "save-vm",
            RunState::Shutdown => "shutdown",
            RunState::Suspended => "suspended",
            RunState::Watchdog => "watchdog",
        }
    }

    /// Whether the CPUs execute in this state.
    pub fn is_running(self) -> bool {
        self == RunState::Running
    }

    /// Whether `cont` may leave this state. 1.1 refuses `cont` after an internal error or a
    /// guest shutdown until a reset (`system_reset`) has happened.
    pub fn needs_reset_before_cont(self) -> bool {
        matches!(self, RunState::InternalError | RunState::Shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_qmp() {
        assert_eq!(RunState::InternalError.as_str(), "internal-error");
        assert_eq!(
            serde_json::to_value(RunState::FinishMigrate).unwrap(),
            "finish-migrate"
        );
        assert_eq!(
            serde_json::to_value(RunState::Prelaunch).unwrap(),
            "prelaunch"
        );
        assert!(RunState::Shutdown.needs_reset_before_cont());
        assert!(!RunState::Paused.needs_reset_before_cont());
    }
}
