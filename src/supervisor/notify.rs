//! systemd readiness (sd_notify), only when NOTIFY_SOCKET is set.

use sd_notify::NotifyState;
use tracing::debug;

use super::fleet::Notify;

pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    pub fn send(&self, n: &Notify) {
        if !self.enabled {
            return;
        }
        let result = match n {
            Notify::Ready => sd_notify::notify(false, &[NotifyState::Ready]),
            Notify::Stopping => sd_notify::notify(false, &[NotifyState::Stopping]),
            Notify::Reloading => match NotifyState::monotonic_usec_now() {
                Ok(now) => sd_notify::notify(false, &[NotifyState::Reloading, now]),
                Err(_) => sd_notify::notify(false, &[NotifyState::Reloading]),
            },
            Notify::Status(s) => sd_notify::notify(false, &[NotifyState::Status(s)]),
        };
        if let Err(e) = result {
            debug!("sd_notify failed: {e}");
        }
    }
}
