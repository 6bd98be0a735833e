//! The debug overlay's frame-time readout: how long building the window's UI took over the last
//! frames, as the median and the 95th percentile (rendering, done by the GPU or llvmpipe, is not
//! counted). Toggled from the top bar or with F12.

use std::collections::VecDeque;
use std::time::Duration;

/// Frames the readout summarises.
const WINDOW: usize = 240;

#[derive(Debug, Default)]
pub struct FrameTimes {
    recent: VecDeque<Duration>,
    pub shown: bool,
}

/// The `q` quantile (0..=1) of `samples`, nearest rank; `None` when there are none.
pub fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let last = sorted.len().checked_sub(1)?;
    let rank = (q.clamp(0.0, 1.0) * last as f64).round() as usize;
    sorted.get(rank).copied()
}

impl FrameTimes {
    pub fn record(&mut self, build: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(build);
    }

    /// The median and 95th percentile of the recent frames.
    pub fn p50_p95(&self) -> Option<(Duration, Duration)> {
        let samples: Vec<Duration> = self.recent.iter().copied().collect();
        Some((quantile(&samples, 0.5)?, quantile(&samples, 0.95)?))
    }

    /// Draws the readout in the top-right corner when it is on.
    pub fn show(&self, ctx: &egui::Context) {
        if !self.shown {
            return;
        }
        let text = match self.p50_p95() {
            Some((p50, p95)) => format!(
                "frame build  p50 {:.2} ms · p95 {:.2} ms  ({} frames)",
                p50.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3,
                self.recent.len()
            ),
            None => "frame build: measuring…".to_string(),
        };
        egui::Area::new(egui::Id::unique("frame_time_overlay"))
            .anchor(egui::Align2::RIGHT_TOP, [-12.0, 44.0])
            .order(egui::Order::Foreground)
            .interactable(false)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.monospace(text);
                });
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_recent_window() {
        let mut f = FrameTimes::default();
        assert!(f.p50_p95().is_none());
        for ms in 1..=300u64 {
            f.record(Duration::from_millis(ms));
        }
        // Only the last 240 frames (61..=300 ms) count.
        let (p50, p95) = f.p50_p95().expect("samples");
        assert_eq!(p50, Duration::from_millis(181));
        assert_eq!(p95, Duration::from_millis(288));
    }
}
