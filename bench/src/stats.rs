//! One measured figure: every round's raw value, and the median with its spread.
//!
//! The machine is shared and noisy, so no single run is trusted: each figure is measured in
//! several rounds and reported as the median, with min/max and the interquartile range so a
//! reader can see how much the rounds disagreed.

use serde::Serialize;

/// A figure measured over several rounds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    pub rounds: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartile (linear interpolation between the sorted rounds).
    pub q1: f64,
    pub q3: f64,
}

impl Sample {
    /// Summarises `rounds` (at least one value).
    pub fn new(rounds: Vec<f64>) -> Sample {
        assert!(!rounds.is_empty(), "a figure needs at least one round");
        let mut sorted = rounds.clone();
        sorted.sort_by(f64::total_cmp);
        Sample {
            median: quantile(&sorted, 0.5),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
            rounds,
        }
    }

    /// Round-by-round ratio `self / other` (rounds measured in the same order pair up), so
    /// a drift of the machine between rounds affects numerator and denominator alike.
    pub fn ratio_to(&self, other: &Sample) -> Sample {
        Sample::new(self.rounds.iter().zip(&other.rounds).map(|(a, b)| if *b == 0.0 { 0.0 } else { a / b }).collect())
    }

    /// `median (min–max)` with `digits` decimals, for tables.
    pub fn show(&self, digits: usize) -> String {
        format!("{:.d$} ({:.d$}–{:.d$})", self.median, self.min, self.max, d = digits)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quartiles_of_an_odd_number_of_rounds() {
        let s = Sample::new(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.median, s.min, s.max, s.q1, s.q3), (3.0, 1.0, 5.0, 2.0, 4.0));
        assert_eq!(s.rounds, vec![5.0, 1.0, 3.0, 2.0, 4.0], "raw rounds keep their order");
    }

    #[test]
    fn median_of_an_even_number_of_rounds_interpolates() {
        assert_eq!(Sample::new(vec![1.0, 2.0, 3.0, 10.0]).median, 2.5);
    }

    #[test]
    fn ratios_pair_rounds_in_order() {
        let a = Sample::new(vec![10.0, 40.0, 90.0]);
        let b = Sample::new(vec![5.0, 10.0, 30.0]);
        assert_eq!(a.ratio_to(&b).rounds, vec![2.0, 4.0, 3.0]);
        assert_eq!(a.ratio_to(&b).median, 3.0);
    }
}
