//! Minimum-size padding policies: they hide how long bodies are from the host.
//!
//! The host sees every mail's length. A policy picks a minimum body size; the
//! mail is padded (inside the encryption) up to it, so bodies shorter than the
//! minimum all produce mails of one length.

use std::collections::VecDeque;

/// How to choose the minimum body size of the next mail. Serialisable, so
/// a client can keep a policy's history across its own restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PaddingPolicy {
    /// No padding: the host learns each body's exact length.
    None,
    /// Every body is padded to at least this many bytes.
    Fixed(usize),
    /// Every body is padded to the largest body sent so far through this policy.
    LargestSeen {
        /// The largest body length seen so far.
        largest: usize,
    },
    /// Every body is padded to the average length of the last `window` bodies.
    MovingAverage {
        /// How many recent bodies the average covers (at least 1).
        window: usize,
        /// The recent body lengths.
        recent: VecDeque<usize>,
    },
}

impl Default for PaddingPolicy {
    /// Largest-seen: cheap, and it never shrinks, so repeated mails of one
    /// conversation all look alike once the largest has gone by.
    fn default() -> Self {
        Self::largest_seen()
    }
}

impl PaddingPolicy {
    /// A policy padding every body to at least `min_size` bytes.
    pub fn fixed(min_size: usize) -> Self {
        Self::Fixed(min_size)
    }

    /// A policy padding to the largest body seen so far.
    pub fn largest_seen() -> Self {
        Self::LargestSeen { largest: 0 }
    }

    /// A policy padding to the moving average of the last `window` body lengths.
    pub fn moving_average(window: usize) -> Self {
        Self::MovingAverage { window: window.max(1), recent: VecDeque::new() }
    }

    /// The minimum size for a body of `body_len` bytes, recording the body in
    /// the policy's history.
    pub fn min_size_for(&mut self, body_len: usize) -> usize {
        match self {
            Self::None => 0,
            Self::Fixed(min) => *min,
            Self::LargestSeen { largest } => {
                *largest = (*largest).max(body_len);
                *largest
            }
            Self::MovingAverage { window, recent } => {
                if recent.len() == *window {
                    recent.pop_front();
                }
                recent.push_back(body_len);
                let sum: usize = recent.iter().sum();
                sum / recent.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_is_constant() {
        let mut p = PaddingPolicy::fixed(100);
        assert_eq!(p.min_size_for(3), 100);
        assert_eq!(p.min_size_for(500), 100);
    }

    #[test]
    fn largest_seen_never_shrinks() {
        let mut p = PaddingPolicy::largest_seen();
        assert_eq!(p.min_size_for(10), 10);
        assert_eq!(p.min_size_for(50), 50);
        assert_eq!(p.min_size_for(5), 50);
    }

    #[test]
    fn moving_average_follows_the_window() {
        let mut p = PaddingPolicy::moving_average(2);
        assert_eq!(p.min_size_for(10), 10);
        assert_eq!(p.min_size_for(30), 20);
        assert_eq!(p.min_size_for(50), 40);
    }
}
