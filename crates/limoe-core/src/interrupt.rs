//! Ctrl-C (SIGINT) and SIGTERM as a request to stop at the next safe point, while a
//! [`Catch`] is held: the trainer finishes its step and checkpoints, the local sweep
//! executor passes the request on to its trials. A second signal ends the process at once,
//! as it would without the catch.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked to stop, 0 while none has.
static REQUESTED: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

extern "C" fn on_signal(signal: libc::c_int) {
    if REQUESTED.swap(signal, Ordering::SeqCst) != 0 {
        // SAFETY: `_exit` is async-signal-safe; the status is the shell's for a signal.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Catches SIGINT and SIGTERM until dropped, then restores what was there before.
pub struct Catch {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Catch {
    /// Starts catching.
    pub fn install() -> Catch {
        let previous = SIGNALS
            .iter()
            .filter_map(|&signal| {
                // SAFETY: a zeroed sigaction is valid; the handler only touches an atomic
                // and calls `_exit`, both async-signal-safe.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                    libc::sigemptyset(&mut action.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    (libc::sigaction(signal, &action, &mut old) == 0).then_some((signal, old))
                }
            })
            .collect();
        Catch { previous }
    }
}

impl Drop for Catch {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores the disposition `install` replaced.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

/// The name of the signal that asked to stop, if one has.
pub fn requested() -> Option<&'static str> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}
