//! Pure data generation for `cdcctl generate-data`: realistic value pools, `--mix` parsing, a
//! table model built from catalog facts, and row/update generation from that model. No IO and no
//! CLI knowledge: the Postgres client reads the catalog into a [`schema::CatalogTable`], the
//! command builds a [`schema::TableSpec`] from it and asks this module for COPY rows, INSERT
//! values and UPDATE values; [`keys`] tracks row keys between the client's reads.
//!
//! Determinism: every inserted row draws from its own ChaCha8 stream keyed by (seed, table,
//! row identity) ([`row_rng`]), so a row's content does not depend on how the bulk load is split
//! across connections; the change stream's choices (operation, table, row, columns) draw from one
//! [`stream_rng`]. The same seed against the same starting database gives the same data.

pub mod copy;
pub mod keys;
pub mod mix;
pub mod pools;
pub mod schema;
pub mod values;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Parses `--rate`: changes per second, a finite number >= 0 (0 = as fast as possible).
pub fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "expected changes per second, a number >= 0 (0 = as fast as possible), got `{raw}`"
        )),
    }
}

/// Parses `--duration` (`30s`, `5m`, `1h`, `250ms`), which must be positive.
pub fn parse_run_duration(raw: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::parse_duration(raw)?;
    if d.is_zero() {
        return Err(format!("the duration must be positive, got `{raw}`"));
    }
    Ok(d)
}

/// FNV-1a 64 of a string: a hash that, unlike `std`'s, never changes between Rust versions, so
/// seeds derived from table names are stable.
pub fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finaliser: a bijection on `u64` that scatters neighbouring inputs.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn rng_from(words: [u64; 4]) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    for (chunk, w) in seed.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

/// Tag in the last seed word of [`stream_rng`], so it never equals a row stream.
const STREAM_TAG: u64 = 0x5354_5245_414d_0001;

/// The random stream of one inserted row: `seed`, the table (`table_id`, a [`stable_hash`] of its
/// name), the row's identity `n` (its key, or a counter) and the table's `salt` (0 unless the
/// table's key is not sequence- or integer-based).
pub fn row_rng(seed: u64, table_id: u64, n: u64, salt: u64) -> ChaCha8Rng {
    rng_from([seed, table_id, n, salt])
}

/// The random stream of the change stream's choices.
pub fn stream_rng(seed: u64) -> ChaCha8Rng {
    rng_from([seed, 0, 0, STREAM_TAG])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn rate_and_duration_flags_reject_nonsense() {
        assert_eq!(parse_rate("0").unwrap(), 0.0);
        assert_eq!(parse_rate("2.5").unwrap(), 2.5);
        for bad in ["-1", "fast", "inf", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_run_duration("30s").unwrap(),
            std::time::Duration::from_secs(30)
        );
        assert!(parse_run_duration("0s").unwrap_err().contains("positive"));
        assert!(parse_run_duration("soon").is_err());
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        // Reference values of FNV-1a 64.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn row_streams_are_reproducible_and_distinct() {
        let a: Vec<u32> = (0..4).map(|_| row_rng(7, 1, 2, 0).random()).collect();
        let b: Vec<u32> = (0..4).map(|_| row_rng(7, 1, 2, 0).random()).collect();
        assert_eq!(a, b);
        let first = |s, t, n, salt| row_rng(s, t, n, salt).random::<u64>();
        let base = first(7, 1, 2, 0);
        assert_ne!(base, first(8, 1, 2, 0));
        assert_ne!(base, first(7, 2, 2, 0));
        assert_ne!(base, first(7, 1, 3, 0));
        assert_ne!(base, first(7, 1, 2, 1));
        assert_ne!(stream_rng(7).random::<u64>(), stream_rng(8).random::<u64>());
    }

    #[test]
    fn mix64_is_a_bijection_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            assert!(seen.insert(mix64(i)));
        }
    }
}
