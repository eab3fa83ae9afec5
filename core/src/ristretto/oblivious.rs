//! A sorting network: which pairs are compared depends on `n` only, never on the data.
//!
//! The shuffle prover moves rows by its secret permutation with it: every compare-and-swap
//! touches both positions and swaps in constant time, so memory access and timing reveal
//! nothing about the permutation. Bitonic sort for any `n` (H. W. Lang's formulation):
//! about `n·log²(n)/4` compare-and-swaps, recursion depth about `2·log2(n)`.

/// Sorts positions `0..n` ascending with `compare_swap(i, j)`, which must put the smaller
/// element at `i` and the larger at `j` (for `i < j < n`), in constant time. The first error
/// `compare_swap` returns stops the sort and is returned.
pub(crate) fn sort<E>(
    n: usize,
    compare_swap: &mut impl FnMut(usize, usize, bool) -> Result<(), E>,
) -> Result<(), E> {
    sort_range(0, n, true, compare_swap)
}

/// `compare_swap(i, j, ascending)`: for `ascending`, smaller at `i`; otherwise larger at `i`.
fn sort_range<E>(
    lo: usize,
    n: usize,
    ascending: bool,
    cs: &mut impl FnMut(usize, usize, bool) -> Result<(), E>,
) -> Result<(), E> {
    if n > 1 {
        let m = n / 2;
        sort_range(lo, m, !ascending, cs)?;
        sort_range(lo + m, n - m, ascending, cs)?;
        merge(lo, n, ascending, cs)?;
    }
    Ok(())
}

fn merge<E>(
    lo: usize,
    n: usize,
    ascending: bool,
    cs: &mut impl FnMut(usize, usize, bool) -> Result<(), E>,
) -> Result<(), E> {
    if n > 1 {
        // The greatest power of two below n.
        let m = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        for i in lo..lo + n - m {
            cs(i, i + m, ascending)?;
        }
        merge(lo, m, ascending, cs)?;
        merge(lo + m, n - m, ascending, cs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_every_size_and_pattern() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for n in 0..=130usize {
            for _ in 0..4 {
                let mut v: std::vec::Vec<u64> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state % 50
                    })
                    .collect();
                let mut expected = v.clone();
                expected.sort_unstable();
                sort(n, &mut |i, j, ascending| {
                    assert!(i < j && j < n);
                    if (v[i] > v[j]) == ascending && v[i] != v[j] {
                        v.swap(i, j);
                    }
                    Ok::<(), ()>(())
                })
                .unwrap();
                assert_eq!(v, expected, "n = {n}");
            }
        }
    }
}
