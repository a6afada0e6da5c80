//! The platform-free owner of a running wasm86 VM.
//!
//! A [`Vm`] holds the [`Machine`], its run state, and every QMP session (one per connection or
//! door). Hosts (the native CLI, the browser worker) feed it session bytes and call
//! [`Vm::step`] in a loop; between steps, commands run with the machine stopped (QEMU's big
//! lock, without a lock). The world is reached only through the [`Host`] trait, so both hosts
//! run this same code and see the same event order.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod block;
pub mod fds;
pub mod hmp;
pub mod keys;
pub mod registry;
pub mod regs;
pub mod runstate;

use runstate::RunState;
use wasm86_machine::{Machine, MachineEvent, RunExit};
use wasm86_qmp::event::{Event, Timestamp};
use wasm86_qmp::session::{Session, SessionConfig};
use wasm86_qmp::table::CommandTable;

/// What the VM needs from the platform.
pub trait Host {
    /// Host wall-clock time in microseconds since the Unix epoch (event timestamps).
    fn wall_clock_us(&self) -> i64;
    /// Writes a file that a command names (`screendump`, `memsave`, `pmemsave`). Natively a
    /// host path; in the browser a name in the worker's file store. The error text is
    /// reported to the client.
    fn write_file(&mut self, name: &str, data: &[u8]) -> Result<(), String>;
    /// The value `query-cpus` reports as `thread_id`.
    fn thread_id(&self) -> i64;
    /// Opens the image a command names (`change`): natively a host path, in the browser a
    /// name in the worker's file store or a URL. The default refuses every name.
    fn open_block(
        &mut self,
        name: &str,
        _read_only: bool,
    ) -> Result<Box<dyn wasm86_block::BlockBackend>, wasm86_block::BlockError> {
        Err(wasm86_block::BlockError::OpenFileFailed {
            filename: name.to_string(),
            reason: "this host opens no images".into(),
        })
    }
}

/// How the VM behaves (from the command line or the page).
#[derive(Debug, Clone, Default)]
pub struct VmConfig {
    /// `-name`.
    pub name: Option<String>,
    /// `-uuid`.
    pub uuid: Option<String>,
    /// `-S`: start in prelaunch.
    pub start_paused: bool,
    /// `-no-reboot`: a guest reset shuts down instead.
    pub no_reboot: bool,
    /// `-no-shutdown`: a guest power-off stops instead of exiting.
    pub no_shutdown: bool,
    /// Deterministic clock: HLT jumps to the next deadline.
    pub deterministic: bool,
    /// Character devices for `query-chardev`: (label, filename) such as
    /// ("serial0", "stdio").
    pub chardevs: Vec<(String, String)>,
}

/// The command context: everything a handler may touch.
pub struct Ctx {
    /// The machine.
    pub machine: Machine,
    /// Run state.
    pub state: RunState,
    /// The platform.
    pub host: Box<dyn Host>,
    /// Configuration.
    pub config: VmConfig,
    /// The CPU HMP/QMP commands refer to (`cpu N`).
    pub current_cpu: usize,
    /// Set by `quit` (and guest power-off without -no-shutdown): the host ends the VM after
    /// flushing every reply.
    pub quit: bool,
    /// Events raised outside a QMP reply (HMP `stop`, ...), sent to every session after the
    /// command that raised them.
    pub pending_events: Vec<Event>,
    /// Exit status for the host: isa-debug-exit's value, else 0.
    pub exit_status: i32,
    /// Block settings (throttle limits by device).
    pub block: block::BlockSettings,
    /// HMP's remembered `x`/`xp` format.
    pub hmp_state: wasm86_qmp::hmp::HmpState,
    /// Passed fds (`getfd`/`closefd`): each session's named ones and those received with the
    /// input being processed.
    pub fds: fds::FdStore,
}

/// Result of one [`Vm::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The guest ran its budget; call again at once.
    Ran,
    /// Nothing to do until virtual time `until` (or host input when `None`): natively sleep,
    /// in the browser yield. In deterministic mode this never happens while running.
    Idle {
        /// The next timer deadline, in virtual ns.
        until: Option<u64>,
    },
    /// The VM is not running (paused, prelaunch, shutdown...): wait for input.
    Stopped,
    /// The VM has ended: flush outputs and exit.
    Quit,
}

/// A running VM with its QMP sessions.
pub struct Vm {
    ctx: Ctx,
    table: CommandTable<Ctx>,
    sessions: Vec<Option<Session>>,
    package: String,
}

/// Package string of the greeting.
pub fn package() -> String {
    format!("wasm86 {}", env!("CARGO_PKG_VERSION"))
}

impl Vm {
    /// Takes ownership of a powered-on machine.
    pub fn new(machine: Machine, config: VmConfig, host: Box<dyn Host>) -> Vm {
        let state = if config.start_paused {
            RunState::Prelaunch
        } else {
            RunState::Running
        };
        Vm {
            ctx: Ctx {
                machine,
                state,
                host,
                config,
                current_cpu: 0,
                quit: false,
                pending_events: Vec::new(),
                exit_status: 0,
                block: Default::default(),
                hmp_state: Default::default(),
                fds: fds::FdStore::new(),
            },
            table: registry::table(),
            sessions: Vec::new(),
            package: package(),
        }
    }

    /// The command context (machine, state...).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The command context, mutably (host input such as keys and serial bytes).
    pub fn ctx_mut(&mut self) -> &mut Ctx {
        &mut self.ctx
    }

    /// The machine.
    pub fn machine_mut(&mut self) -> &mut Machine {
        &mut self.ctx.machine
    }

    /// Names of the registered QMP commands, in table order.
    pub fn command_names(&self) -> Vec<String> {
        self.table.names().map(str::to_string).collect()
    }

    /// Opens a session. `negotiate`: a socket-like session (greeting, then negotiation
    /// mode); otherwise the page door (command mode, no greeting).
    pub fn open_session(&mut self, negotiate: bool) -> usize {
        let mut cfg = if negotiate {
            SessionConfig::socket()
        } else {
            SessionConfig::page_door()
        };
        cfg.package = self.package.clone();
        let s = Session::new(cfg);
        if let Some(i) = self.sessions.iter().position(Option::is_none) {
            self.sessions[i] = Some(s);
            i
        } else {
            self.sessions.push(Some(s));
            self.sessions.len() - 1
        }
    }

    /// Closes a session.
    pub fn close_session(&mut self, id: usize) {
        if let Some(s) = self.sessions.get_mut(id) {
            *s = None;
        }
        self.ctx.fds.close_session(id);
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.ctx.host.wall_clock_us())
    }

    /// Feeds bytes a client sent on session `id` and runs every complete command.
    pub fn feed(&mut self, id: usize, bytes: &[u8]) {
        self.feed_with_fds(id, bytes, Vec::new());
    }

    /// [`Vm::feed`] with the host resources (fds passed with SCM_RIGHTS, transferables)
    /// that arrived along with `bytes`: a `getfd` among these commands claims the last one;
    /// the others, and one left unclaimed, are released once the bytes are processed.
    pub fn feed_with_fds(&mut self, id: usize, bytes: &[u8], fds: Vec<fds::PassedFd>) {
        self.ctx.fds.begin_input(id, fds);
        self.dispatch_input(id, bytes);
        self.ctx.fds.end_input();
    }

    fn dispatch_input(&mut self, id: usize, bytes: &[u8]) {
        let now = self.now();
        let Some(Some(session)) = self.sessions.get_mut(id) else {
            return;
        };
        let mut events = session.handle(&self.table, &mut self.ctx, bytes, now);
        let raised = std::mem::take(&mut self.ctx.pending_events);
        for ev in &raised {
            session.push_event(ev, now);
        }
        events.extend(raised);
        for ev in events {
            for (i, s) in self.sessions.iter_mut().enumerate() {
                if i != id {
                    if let Some(s) = s {
                        s.push_event(&ev, now);
                    }
                }
            }
        }
    }

    /// Output waiting for session `id` (lines ending in CRLF).
    pub fn take_output(&mut self, id: usize) -> String {
        match self.sessions.get_mut(id) {
            Some(Some(s)) => s.take_output(),
            _ => String::new(),
        }
    }

    /// Sends an event to every session in command mode.
    pub fn broadcast(&mut self, ev: &Event) {
        let now = self.now();
        for s in self.sessions.iter_mut().flatten() {
            s.push_event(ev, now);
        }
    }

    /// Whether the VM has ended.
    pub fn quit_requested(&self) -> bool {
        self.ctx.quit
    }

    /// Run state.
    pub fn state(&self) -> RunState {
        self.ctx.state
    }

    /// Runs the guest for at most `budget` instructions when the VM is running.
    pub fn step(&mut self, budget: u64) -> Step {
        if self.ctx.quit {
            return Step::Quit;
        }
        if !self.ctx.state.is_running() {
            return Step::Stopped;
        }
        let exit = self.ctx.machine.run(budget);
        let step = match exit {
            RunExit::BudgetSpent => Step::Ran,
            RunExit::Halted { until } => {
                if self.ctx.config.deterministic {
                    match until {
                        Some(t) => {
                            self.ctx.machine.skip_to(t);
                            Step::Ran
                        }
                        None => Step::Idle { until: None },
                    }
                } else {
                    Step::Idle { until }
                }
            }
            RunExit::Reset => Step::Ran,
            RunExit::DebugExit(code) => {
                self.ctx.exit_status = code;
                self.ctx.quit = true;
                Step::Quit
            }
        };
        for ev in block::guest_tray_events(&mut self.ctx) {
            self.broadcast(&ev);
        }
        for ev in self.ctx.machine.take_events() {
            match ev {
                MachineEvent::Reset { guest: true } => {
                    if self.ctx.config.no_reboot {
                        self.guest_shutdown();
                    } else {
                        self.broadcast(&Event::new("RESET"));
                    }
                }
                MachineEvent::Reset { guest: false } => {}
            }
        }
        if self.ctx.quit {
            Step::Quit
        } else {
            step
        }
    }

    /// The guest powered off (or reset with -no-reboot): SHUTDOWN, then stop or exit.
    fn guest_shutdown(&mut self) {
        self.broadcast(&Event::new("SHUTDOWN"));
        if self.ctx.config.no_shutdown {
            self.broadcast(&Event::new("STOP"));
            self.ctx.state = RunState::Shutdown;
        } else {
            self.ctx.quit = true;
        }
    }

    /// The process exit status when the VM has ended (isa-debug-exit's value, else 0).
    pub fn exit_status(&self) -> i32 {
        self.ctx.exit_status
    }
}
