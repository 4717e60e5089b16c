//! Seeded pseudo-random content of 4 KiB disk blocks: every block is derived
//! from (seed, block index) alone, so blocks can be produced and checked
//! independently and in any order.

/// Size of one block in bytes.
pub const BLOCK_SIZE: usize = 4096;

/// 64-bit golden-ratio increment of splitmix64.
pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 output function (a strong 64-bit mixer).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `block` (exactly [`BLOCK_SIZE`] bytes; shorter slices get a prefix
/// of the same content) with the data of block `index` for `seed`.
pub fn fill_block(seed: u64, index: u64, block: &mut [u8]) {
    let mut state = mix64(seed ^ mix64(index.wrapping_add(GOLDEN)));
    for chunk in block.chunks_mut(8) {
        state = state.wrapping_add(GOLDEN);
        let word = mix64(state).to_le_bytes();
        let n = chunk.len();
        chunk.copy_from_slice(&word[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_distinct() {
        let mut a = vec![0u8; BLOCK_SIZE];
        let mut b = vec![0u8; BLOCK_SIZE];
        fill_block(1, 5, &mut a);
        fill_block(1, 5, &mut b);
        assert_eq!(a, b);
        fill_block(1, 6, &mut b);
        assert_ne!(a, b);
        fill_block(2, 5, &mut b);
        assert_ne!(a, b);
    }
}
