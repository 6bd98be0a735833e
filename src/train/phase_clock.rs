//! Where a training step's time goes, when `LABLENS_STEP_TIMING` asks.

use std::time::Instant;

/// Where a step's time goes, printed to stderr for each step when `LABLENS_STEP_TIMING` is set:
/// the device is synchronized at the end of each phase, so that a GPU's queued work counts in
/// the phase that queued it (which slows the step a little). Off, it does nothing.
pub(super) struct PhaseClock {
    device: Option<candle_core::Device>,
    last: Instant,
    phases: Vec<(&'static str, f64)>,
}

impl PhaseClock {
    pub(super) fn new(device: &candle_core::Device) -> PhaseClock {
        PhaseClock {
            device: std::env::var_os("LABLENS_STEP_TIMING").map(|_| device.clone()),
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Ends the phase `name` (phases of the same name add up).
    pub(super) fn lap(&mut self, name: &'static str) {
        let Some(device) = &self.device else {
            return;
        };
        if let Err(e) = device.synchronize() {
            eprintln!("step timing: the device did not synchronize: {e}");
        }
        let seconds = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        match self.phases.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += seconds,
            None => self.phases.push((name, seconds)),
        }
    }

    pub(super) fn report(&self, step: usize) {
        if self.device.is_some() {
            let parts: Vec<String> = self
                .phases
                .iter()
                .map(|(name, s)| format!("{name} {:.1} ms", s * 1e3))
                .collect();
            eprintln!("step {step} timing: {}", parts.join(", "));
        }
    }
}
