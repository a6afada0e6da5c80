//! Passed file descriptors: QMP `getfd` and `closefd`.
//!
//! A client may pass a host resource along with the bytes of a command: natively a file
//! descriptor sent with SCM_RIGHTS on a unix socket, in the browser a transferable (a
//! MessagePort, a stream, a File) posted with the same message. To the VM such a resource is
//! opaque: a [`PassedFd`] owns it and releases it when dropped (natively the descriptor is
//! closed). Commands that use a named fd later (`migrate fd:NAME`, `add_client`) take it back
//! out of the [`FdStore`] and downcast it to the host's own type.
//!
//! Semantics follow QEMU 1.1's monitor:
//! - only resources that arrived with the input being processed can be claimed, and only the
//!   most recent one: the host hands them over with [`crate::Vm::feed_with_fds`], and whatever
//!   no `getfd` claimed is released once that input has been processed (QEMU closes the
//!   chardev's pending fd after each read);
//! - `getfd NAME` stores the claimed resource under `NAME`, releasing the one already stored
//!   under that name; without a resource it fails with `FdNotSupplied`, and a name starting
//!   with a digit fails with `InvalidParameterValue` (checked in that order, as 1.1 does);
//! - `closefd NAME` releases it, or fails with `FdNotFound`.
//!
//! Names belong to the QMP session that stored them, and a session's resources are released
//! when it closes. (QEMU 1.1 keeps them on the monitor, which outlives a client's connection;
//! wasm86 has one session per connection, and releasing them bounds what a client can pin.)
//! A session holds at most [`MAX_NAMED_FDS`] names; one more answers `TooManyFiles`.

use crate::Ctx;
use serde::Deserialize;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use wasm86_qmp::error::QmpError;
use wasm86_qmp::table::{Args, Reply};

/// The most names one session may hold at a time.
pub const MAX_NAMED_FDS: usize = 64;

/// An opaque host resource passed with QMP input: a native file descriptor, a browser
/// transferable. Dropping it releases the resource (natively: closes the descriptor).
///
/// It carries no `Send` bound: the browser's resources (`JsValue`s) live on the worker's
/// thread, like the VM itself.
pub struct PassedFd {
    resource: Box<dyn Any>,
}

impl PassedFd {
    /// Wraps a host resource. Its `Drop` is what releases it.
    pub fn new<T: Any>(resource: T) -> PassedFd {
        PassedFd {
            resource: Box::new(resource),
        }
    }

    /// The resource, when it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.resource.downcast_ref()
    }

    /// Takes the resource out, when it is a `T`; otherwise gives the handle back.
    pub fn downcast<T: Any>(self) -> Result<T, PassedFd> {
        match self.resource.downcast::<T>() {
            Ok(b) => Ok(*b),
            Err(resource) => Err(PassedFd { resource }),
        }
    }
}

impl fmt::Debug for PassedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PassedFd(..)")
    }
}

/// Why `getfd` or `closefd` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdError {
    /// `getfd` without a resource passed with the current input.
    #[error("No file descriptor supplied via SCM_RIGHTS")]
    NotSupplied,
    /// `getfd` with a name starting with a digit (such names mean fd numbers elsewhere).
    #[error("Parameter 'fdname' expects a name not starting with a digit")]
    DigitName,
    /// `closefd` (or a lookup) of a name this session does not hold.
    #[error("File descriptor named '{0}' not found")]
    NotFound(String),
    /// The session already holds [`MAX_NAMED_FDS`] names.
    #[error("Too many open files")]
    TooMany,
    /// No QMP session is dispatching (a command run outside session input).
    #[error("No file descriptor supplied via SCM_RIGHTS")]
    NoSession,
}

impl From<FdError> for QmpError {
    fn from(e: FdError) -> QmpError {
        match e {
            FdError::NotSupplied | FdError::NoSession => QmpError::fd_not_supplied(),
            FdError::DigitName => {
                QmpError::invalid_parameter_value("fdname", "a name not starting with a digit")
            }
            FdError::NotFound(name) => QmpError::fd_not_found(&name),
            FdError::TooMany => QmpError::too_many_files(),
        }
    }
}

/// Every session's named resources, and the resource received with the input being
/// processed.
#[derive(Debug, Default)]
pub struct FdStore {
    named: BTreeMap<usize, BTreeMap<String, PassedFd>>,
    /// The session whose input is being processed.
    current: Option<usize>,
    /// The most recent resource received with that input, until claimed.
    received: Option<PassedFd>,
}

impl FdStore {
    /// An empty store.
    pub fn new() -> FdStore {
        FdStore::default()
    }

    /// Input from `session` is about to be processed, with `fds` received along with it. The
    /// most recent (last) one can be claimed by `getfd`; the others are released at once,
    /// as is anything left over from earlier input.
    pub fn begin_input(&mut self, session: usize, fds: Vec<PassedFd>) {
        self.current = Some(session);
        self.received = fds.into_iter().last();
    }

    /// The input has been processed: an unclaimed resource is released.
    pub fn end_input(&mut self) {
        self.current = None;
        self.received = None;
    }

    /// The session whose input is being processed.
    pub fn current_session(&self) -> Option<usize> {
        self.current
    }

    /// Whether a resource received with the current input is still unclaimed.
    pub fn has_received(&self) -> bool {
        self.received.is_some()
    }

    /// `getfd NAME` for the current session.
    pub fn getfd(&mut self, name: &str) -> Result<(), FdError> {
        let session = self.current.ok_or(FdError::NoSession)?;
        let fd = self.received.take().ok_or(FdError::NotSupplied)?;
        // A refused resource is dropped here, so it is released rather than leaked.
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Err(FdError::DigitName);
        }
        let names = self.named.entry(session).or_default();
        if !names.contains_key(name) && names.len() >= MAX_NAMED_FDS {
            return Err(FdError::TooMany);
        }
        // Replacing a name drops (releases) the resource it held.
        names.insert(name.to_string(), fd);
        Ok(())
    }

    /// `closefd NAME` for the current session.
    pub fn closefd(&mut self, name: &str) -> Result<(), FdError> {
        let session = self.current.ok_or(FdError::NoSession)?;
        self.take(session, name).map(drop)
    }

    /// Takes the resource `session` stored under `name` out of the store (for a command that
    /// consumes it, as `migrate fd:NAME` does).
    pub fn take(&mut self, session: usize, name: &str) -> Result<PassedFd, FdError> {
        let names = self
            .named
            .get_mut(&session)
            .ok_or_else(|| FdError::NotFound(name.to_string()))?;
        let fd = names
            .remove(name)
            .ok_or_else(|| FdError::NotFound(name.to_string()))?;
        if names.is_empty() {
            self.named.remove(&session);
        }
        Ok(fd)
    }

    /// The resource `session` stored under `name`.
    pub fn get(&self, session: usize, name: &str) -> Option<&PassedFd> {
        self.named.get(&session)?.get(name)
    }

    /// The names `session` holds, sorted.
    pub fn names(&self, session: usize) -> Vec<&str> {
        self.named
            .get(&session)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Session `session` closed: every resource it held is released.
    pub fn close_session(&mut self, session: usize) {
        self.named.remove(&session);
        if self.current == Some(session) {
            self.received = None;
        }
    }
}

/// The arguments of `getfd` and `closefd`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FdNameArgs {
    fdname: String,
}

/// `getfd` on a store (the handler's body, usable with any context).
pub fn getfd_in(store: &mut FdStore, args: Args) -> Result<Reply, QmpError> {
    let a: FdNameArgs = args.parse()?;
    store.getfd(&a.fdname)?;
    Ok(Reply::empty())
}

/// `closefd` on a store (the handler's body, usable with any context).
pub fn closefd_in(store: &mut FdStore, args: Args) -> Result<Reply, QmpError> {
    let a: FdNameArgs = args.parse()?;
    store.closefd(&a.fdname)?;
    Ok(Reply::empty())
}

/// QMP `getfd` (`fdname:s`).
pub fn getfd(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    getfd_in(&mut ctx.fds, args)
}

/// QMP `closefd` (`fdname:s`).
pub fn closefd(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    closefd_in(&mut ctx.fds, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::cell::RefCell;
    use std::rc::Rc;
    use wasm86_qmp::event::Timestamp;
    use wasm86_qmp::session::{Session, SessionConfig};
    use wasm86_qmp::table::CommandTable;

    /// A resource that records its release in a shared log.
    struct Tracked {
        id: u32,
        log: Rc<RefCell<Vec<u32>>>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.log.borrow_mut().push(self.id);
        }
    }

    fn fd(id: u32, log: &Rc<RefCell<Vec<u32>>>) -> PassedFd {
        PassedFd::new(Tracked {
            id,
            log: log.clone(),
        })
    }

    fn released(log: &Rc<RefCell<Vec<u32>>>) -> Vec<u32> {
        log.borrow().clone()
    }

    #[test]
    fn downcast_gives_the_resource_back() {
        let p = PassedFd::new(42u32);
        assert_eq!(p.downcast_ref::<u32>(), Some(&42));
        assert!(p.downcast_ref::<u64>().is_none());
        let p = p.downcast::<String>().expect_err("not a String");
        assert_eq!(p.downcast::<u32>().ok(), Some(42));
    }

    #[test]
    fn getfd_claims_the_last_received_and_releases_the_rest() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        s.begin_input(3, vec![fd(1, &log), fd(2, &log), fd(3, &log)]);
        assert_eq!(released(&log), vec![1, 2], "extras released at once");
        assert!(s.has_received());
        s.getfd("mig").unwrap();
        assert!(!s.has_received());
        // Only one resource per input: a second getfd has nothing to claim.
        assert_eq!(s.getfd("other"), Err(FdError::NotSupplied));
        s.end_input();
        assert_eq!(released(&log), vec![1, 2]);
        assert_eq!(s.names(3), vec!["mig"]);
        assert_eq!(
            s.get(3, "mig")
                .and_then(|p| p.downcast_ref::<Tracked>())
                .map(|t| t.id),
            Some(3)
        );
        assert!(s.get(0, "mig").is_none(), "names are per session");
    }

    #[test]
    fn unclaimed_resources_are_released_after_the_input() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        s.begin_input(0, vec![fd(7, &log)]);
        assert!(released(&log).is_empty());
        s.end_input();
        assert_eq!(released(&log), vec![7]);
        s.begin_input(0, Vec::new());
        assert_eq!(s.getfd("late"), Err(FdError::NotSupplied));
        s.end_input();
        // Leftovers from an input that was never ended are released by the next one.
        s.begin_input(0, vec![fd(8, &log)]);
        s.begin_input(0, Vec::new());
        assert_eq!(released(&log), vec![7, 8]);
    }

    #[test]
    fn digit_names_are_refused_after_the_supply_check() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        s.begin_input(0, Vec::new());
        assert_eq!(s.getfd("1fd"), Err(FdError::NotSupplied));
        s.end_input();
        s.begin_input(0, vec![fd(1, &log)]);
        assert_eq!(s.getfd("1fd"), Err(FdError::DigitName));
        assert_eq!(released(&log), vec![1], "a refused resource is released");
        s.end_input();
        // A digit later in the name is fine, and so is the empty name (as in 1.1).
        s.begin_input(0, vec![fd(2, &log)]);
        s.getfd("fd1").unwrap();
        s.begin_input(0, vec![fd(3, &log)]);
        s.getfd("").unwrap();
        s.end_input();
        assert_eq!(s.names(0), vec!["", "fd1"]);
    }

    #[test]
    fn replacing_a_name_releases_the_old_resource() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        s.begin_input(1, vec![fd(1, &log)]);
        s.getfd("a").unwrap();
        s.begin_input(1, vec![fd(2, &log)]);
        s.getfd("a").unwrap();
        s.end_input();
        assert_eq!(released(&log), vec![1]);
        assert_eq!(s.names(1), vec!["a"]);
    }

    #[test]
    fn closefd_releases_and_unknown_names_are_not_found() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        s.begin_input(0, vec![fd(1, &log)]);
        s.getfd("a").unwrap();
        s.end_input();
        s.begin_input(5, Vec::new());
        assert_eq!(s.closefd("a"), Err(FdError::NotFound("a".into())));
        s.end_input();
        assert!(released(&log).is_empty(), "another session cannot close it");
        s.begin_input(0, Vec::new());
        s.closefd("a").unwrap();
        assert_eq!(released(&log), vec![1]);
        assert_eq!(s.closefd("a"), Err(FdError::NotFound("a".into())));
        s.end_input();
        assert!(s.names(0).is_empty());
    }

    #[test]
    fn closing_a_session_releases_its_resources() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        s.begin_input(0, vec![fd(1, &log)]);
        s.getfd("a").unwrap();
        s.begin_input(1, vec![fd(2, &log)]);
        s.getfd("a").unwrap();
        s.end_input();
        s.close_session(0);
        assert_eq!(released(&log), vec![1]);
        assert_eq!(s.names(1), vec!["a"]);
        let taken = s.take(1, "a").unwrap();
        assert!(s.names(1).is_empty());
        drop(taken);
        assert_eq!(released(&log), vec![1, 2]);
    }

    #[test]
    fn a_session_holds_a_bounded_number_of_names() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        for i in 0..MAX_NAMED_FDS {
            s.begin_input(0, vec![fd(i as u32, &log)]);
            s.getfd(&format!("fd{i}")).unwrap();
        }
        s.begin_input(0, vec![fd(1000, &log)]);
        assert_eq!(s.getfd("one-more"), Err(FdError::TooMany));
        assert_eq!(released(&log), vec![1000]);
        // Replacing an existing name is still allowed.
        s.begin_input(0, vec![fd(1001, &log)]);
        s.getfd("fd0").unwrap();
        assert_eq!(released(&log), vec![1000, 0]);
        assert_eq!(s.names(0).len(), MAX_NAMED_FDS);
    }

    #[test]
    fn no_session_means_no_fd() {
        let mut s = FdStore::new();
        assert_eq!(s.getfd("a"), Err(FdError::NoSession));
        assert_eq!(s.closefd("a"), Err(FdError::NoSession));
    }

    /// Runs one command line through a real session and table over a bare store.
    fn qmp(s: &mut FdStore, session: &mut Session, line: &str, fds: Vec<PassedFd>) -> Value {
        let mut t: CommandTable<FdStore> = CommandTable::new();
        t.register("getfd", "fdname:s", getfd_in).unwrap();
        t.register("closefd", "fdname:s", closefd_in).unwrap();
        s.begin_input(0, fds);
        session.handle(&t, s, line.as_bytes(), Timestamp::from_micros(0));
        s.end_input();
        let out = session.take_output();
        serde_json::from_str(out.trim_end()).unwrap()
    }

    #[test]
    fn qmp_replies_match_qemu_1_1() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut s = FdStore::new();
        let mut session = Session::new(SessionConfig::page_door());
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"getfd","arguments":{"fdname":"fd1"}}"#,
            Vec::new(),
        );
        assert_eq!(
            r["error"],
            json!({"class": "FdNotSupplied", "desc": "No file descriptor supplied via SCM_RIGHTS", "data": {}})
        );
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"getfd","arguments":{"fdname":"9lives"}}"#,
            vec![fd(1, &log)],
        );
        assert_eq!(r["error"]["class"], "InvalidParameterValue");
        assert_eq!(
            r["error"]["data"],
            json!({"name": "fdname", "expected": "a name not starting with a digit"})
        );
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"getfd","arguments":{"fdname":"fd1"},"id":7}"#,
            vec![fd(2, &log)],
        );
        assert_eq!(r, json!({"return": {}, "id": 7}));
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"closefd","arguments":{"fdname":"nope"}}"#,
            Vec::new(),
        );
        assert_eq!(
            r["error"],
            json!({"class": "FdNotFound", "desc": "File descriptor named 'nope' not found", "data": {"name": "nope"}})
        );
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"closefd","arguments":{"fdname":"fd1"}}"#,
            Vec::new(),
        );
        assert_eq!(r, json!({"return": {}}));
        assert_eq!(released(&log), vec![1, 2]);
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"getfd","arguments":{}}"#,
            vec![fd(3, &log)],
        );
        assert_eq!(r["error"]["class"], "MissingParameter");
        let r = qmp(
            &mut s,
            &mut session,
            r#"{"execute":"getfd","arguments":{"fdname":5}}"#,
            Vec::new(),
        );
        assert_eq!(r["error"]["class"], "InvalidParameterType");
        assert_eq!(released(&log), vec![1, 2, 3]);
    }
}
