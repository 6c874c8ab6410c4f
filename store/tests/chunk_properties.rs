//! Property test of the chunk codec: any sequence of points comes back bit for bit.

use proptest::prelude::*;
use vigie_store::{integral, ChunkDecoder, ChunkEncoder, Values};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_points_round_trip(points in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..300)) {
        let mut enc = ChunkEncoder::new();
        for (t, v) in &points {
            enc.push(*t, f64::from_bits(*v));
        }
        let back: Vec<(i64, u64)> = ChunkDecoder::new(&enc.to_bytes()).unwrap().map(|p| p.map(|(t, v)| (t, v.to_bits())).unwrap()).collect();
        prop_assert_eq!(back, points);
    }

    #[test]
    fn regular_series_round_trip(start in -1_000_000_000_000i64..1_000_000_000_000, step in 1i64..10_000_000, jitter in proptest::collection::vec(-50_000i64..50_000, 0..300), values in proptest::collection::vec(-1e6f64..1e6, 300)) {
        let mut enc = ChunkEncoder::new();
        let points: Vec<(i64, f64)> = jitter.iter().enumerate().map(|(i, j)| (start + i as i64 * step + j, values[i])).collect();
        for (t, v) in &points {
            enc.push(*t, *v);
        }
        let back: Vec<(i64, f64)> = ChunkDecoder::new(&enc.to_bytes()).unwrap().map(|p| p.unwrap()).collect();
        prop_assert_eq!(back, points);
    }

    #[test]
    fn integers_round_trip_in_an_integer_chunk(points in proptest::collection::vec((any::<i64>(), prop_oneof![-1000i64..1000, -(1i64 << 53) + 1..(1i64 << 53)]), 0..300)) {
        let mut enc = ChunkEncoder::with_values(Values::Int);
        for (t, v) in &points {
            prop_assert!(integral(*v as f64));
            enc.push(*t, *v as f64);
        }
        let back: Vec<(i64, f64)> = ChunkDecoder::new(&enc.to_bytes()).unwrap().map(|p| p.unwrap()).collect();
        let want: Vec<(i64, f64)> = points.iter().map(|(t, v)| (*t, *v as f64)).collect();
        prop_assert_eq!(back, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(dec) = ChunkDecoder::new(&bytes) {
            for p in dec.take(10_000) {
                let _ = p;
            }
        }
    }
}
