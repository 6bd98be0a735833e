//! Plot series that stay bounded however long a run gets: past its capacity a series merges
//! neighbouring points into their minimum and maximum, so spikes survive the thinning; and an
//! exponential moving average over a series, cached until the series or the weight changes.

use egui_plot::PlotPoint;

/// Points kept per series before thinning halves them; two plots of this many points cost well
/// under a millisecond a frame.
pub const CAPACITY: usize = 4096;

/// A line of (step, value) points in step order, at most `capacity` long.
#[derive(Debug, Clone)]
pub struct Series {
    points: Vec<PlotPoint>,
    capacity: usize,
    /// Raw samples merged into one bucket (1 until the first thinning).
    per_bucket: usize,
    /// Raw samples in the newest bucket, which is still filling.
    open: usize,
    /// The lowest and highest sample of the newest bucket.
    open_lo: PlotPoint,
    open_hi: PlotPoint,
    /// Points at the end of `points` that show the newest bucket, replaced as it fills.
    tail: usize,
    /// Raw samples pushed in all, which changes whenever the points do.
    pushed: u64,
}

impl Default for Series {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl Series {
    /// `capacity` is rounded up to a multiple of four, the size of the groups thinning merges.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            points: Vec::new(),
            capacity: capacity.max(8).next_multiple_of(4),
            per_bucket: 1,
            open: 0,
            open_lo: PlotPoint::new(0.0, 0.0),
            open_hi: PlotPoint::new(0.0, 0.0),
            tail: 0,
            pushed: 0,
        }
    }

    pub fn points(&self) -> &[PlotPoint] {
        &self.points
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// A key that changes whenever the points do, for caches built over them.
    pub fn version(&self) -> u64 {
        self.pushed
    }

    /// Raw samples one point stands for, about (a bucket keeps two or three).
    pub fn samples_per_point(&self) -> f64 {
        if self.per_bucket == 1 {
            1.0
        } else {
            self.per_bucket as f64 / 2.0
        }
    }

    /// Adds a sample; `x` must not be below the last one. Non-finite values are skipped, so a
    /// diverged step cannot wreck the plot's bounds.
    pub fn push(&mut self, x: f64, y: f64) {
        if !x.is_finite() || !y.is_finite() {
            return;
        }
        self.pushed += 1;
        let p = PlotPoint::new(x, y);
        if self.open == 0 {
            (self.open_lo, self.open_hi) = (p, p);
        } else {
            (self.open_lo, self.open_hi) = extremes(&[self.open_lo, self.open_hi, p]);
        }
        self.open += 1;
        self.points.truncate(self.points.len() - self.tail);
        let before = self.points.len();
        // A bucket keeps its latest sample besides its extremes, so that the line always
        // reaches the newest step.
        let mut shown = vec![self.open_lo, self.open_hi, p];
        shown.sort_by(|a, b| a.x.total_cmp(&b.x));
        shown.dedup_by(|a, b| a.x == b.x && a.y == b.y);
        self.points.extend(shown);
        if self.open >= self.per_bucket {
            self.open = 0;
            self.tail = 0;
        } else {
            self.tail = self.points.len() - before;
        }
        if self.points.len() > self.capacity {
            self.thin();
        }
    }

    /// Merges every four points into their minimum and maximum, in step order, and makes new
    /// buckets as coarse as the merged ones.
    fn thin(&mut self) {
        // The newest bucket closes early; its points merge like the others.
        self.open = 0;
        self.tail = 0;
        let thinned: Vec<PlotPoint> = self
            .points
            .chunks(4)
            .flat_map(|group| {
                let (lo, hi) = extremes(group);
                if group.len() == 1 {
                    vec![lo]
                } else {
                    vec![lo, hi]
                }
            })
            .collect();
        self.points = thinned;
        self.per_bucket = if self.per_bucket == 1 {
            4
        } else {
            self.per_bucket * 2
        };
    }
}

/// The lowest and the highest point of `group` by value, the earlier one first.
fn extremes(group: &[PlotPoint]) -> (PlotPoint, PlotPoint) {
    let mut lo = group[0];
    let mut hi = group[0];
    for p in &group[1..] {
        if p.y < lo.y {
            lo = *p;
        }
        if p.y > hi.y {
            hi = *p;
        }
    }
    if hi.x < lo.x { (hi, lo) } else { (lo, hi) }
}

/// An exponential moving average of a series (debiased, as TensorBoard draws it), recomputed
/// only when the series or the weight changed.
#[derive(Debug, Clone, Default)]
pub struct Smoothed {
    points: Vec<PlotPoint>,
    key: Option<(u64, u32)>,
}

impl Smoothed {
    pub fn points(&self) -> &[PlotPoint] {
        &self.points
    }

    /// The average of `series` where each raw sample keeps `weight` of the average before it.
    pub fn update(&mut self, series: &Series, weight: f32) {
        let key = (series.version(), weight.to_bits());
        if self.key != Some(key) {
            self.key = Some(key);
            // A thinned point stands for several samples, so it decays the average as they would.
            let w = f64::from(weight.clamp(0.0, 0.999)).powf(series.samples_per_point());
            let (mut num, mut den) = (0.0, 0.0);
            self.points.clear();
            for p in series.points() {
                num = num * w + (1.0 - w) * p.y;
                den = den * w + (1.0 - w);
                self.points.push(PlotPoint::new(p.x, num / den));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_stays_bounded_and_keeps_its_extremes() {
        let mut s = Series::with_capacity(64);
        let spike_step = 7_777;
        for step in 1..=100_000 {
            let y = if step == spike_step {
                50.0
            } else if step == 31_000 {
                -3.0
            } else {
                (step as f64 * 0.01).sin()
            };
            s.push(step as f64, y);
            assert!(s.len() <= 64, "{} points at step {step}", s.len());
        }
        let ys: Vec<f64> = s.points().iter().map(|p| p.y).collect();
        assert!(ys.contains(&50.0) && ys.contains(&-3.0));
        let spike = s.points().iter().find(|p| p.y == 50.0).expect("spike");
        assert_eq!(spike.x, spike_step as f64);
        assert!(s.points().windows(2).all(|w| w[0].x <= w[1].x));
        assert!(s.len() >= 32, "thinning halves, it does not empty");
        assert!(s.points().last().is_some_and(|p| p.x == 100_000.0));
    }

    #[test]
    fn short_series_are_kept_as_they_are() {
        let mut s = Series::with_capacity(64);
        for step in 0..50 {
            s.push(f64::from(step), f64::from(step * 2));
        }
        s.push(50.0, f64::NAN);
        assert_eq!(s.len(), 50);
        assert_eq!(s.points()[10], PlotPoint::new(10.0, 20.0));
    }

    #[test]
    fn smoothing_follows_the_weight_and_zero_is_the_raw_line() {
        let mut s = Series::default();
        for (x, y) in [(1.0, 4.0), (2.0, 2.0), (3.0, 0.0)] {
            s.push(x, y);
        }
        let mut ema = Smoothed::default();
        ema.update(&s, 0.0);
        let raw: Vec<f64> = ema.points().iter().map(|p| p.y).collect();
        assert_eq!(raw, [4.0, 2.0, 0.0]);
        ema.update(&s, 0.5);
        let smooth: Vec<f64> = ema.points().iter().map(|p| p.y).collect();
        // Debiased: (0.5·4) / 0.5 = 4; (0.25·4 + 0.5·2) / 0.75 = 8/3; (0.125·4 + 0.25·2) / 0.875.
        assert_eq!(smooth[0], 4.0);
        assert!((smooth[1] - 8.0 / 3.0).abs() < 1e-12);
        assert!((smooth[2] - 1.0 / 0.875).abs() < 1e-12);
    }
}
