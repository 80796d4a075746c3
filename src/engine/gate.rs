//! Counts calls in flight so that closing can wait for them, and refuses
//! new ones once closing began. A client guards its blocking calls with
//! one, a stream its readers.

use super::error::{Error, Result};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct Gate {
    /// (calls in flight, shut)
    state: Mutex<(usize, bool)>,
    idle: Condvar,
}

pub struct GateGuard<'a>(&'a Gate);

impl Gate {
    pub fn enter(&self) -> Result<GateGuard<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.1 {
            return Err(Error::closed("the client is being freed"));
        }
        s.0 += 1;
        Ok(GateGuard(self))
    }

    /// Refuses new calls and, the first time, runs `wake` (which must make
    /// calls in flight return).
    pub fn shut(&self, wake: impl FnOnce()) {
        let first = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut s.1, true)
        };
        if first {
            wake();
        }
    }

    /// `shut`, then waits until no call is left in flight.
    pub fn close(&self, wake: impl FnOnce()) {
        self.shut(wake);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.0 > 0 {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 -= 1;
        if s.0 == 0 {
            self.0.idle.notify_all();
        }
    }
}
