//! Content of a memory-writer page as a function of (page index,
//! generation). Cheap enough for a guest running under TCG: one mix per
//! page, then one add per word.

use crate::blockgen::{GOLDEN, mix64};

/// 64-bit words in one 4 KiB page.
pub const PAGE_WORDS: usize = 512;

/// Bytes in one page.
pub const PAGE_BYTES: usize = PAGE_WORDS * 8;

/// Per-page base value of the pattern.
fn page_base(index: u64, generation: u64) -> u64 {
    mix64(index.wrapping_mul(GOLDEN) ^ generation.rotate_left(32))
}

/// Writes the pattern of (`index`, `generation`) into `page`.
/// Word 0 is the index, word 1 the generation, word `w >= 2` is a per-page
/// mix plus `w` times a constant. Generation 0 means "never written": the
/// expected content is all zeros.
pub fn fill_page(page: &mut [u64], index: u64, generation: u64) {
    if generation == 0 {
        page.fill(0);
        return;
    }
    let mut value = first_mixed(index, generation);
    if let [w0, w1, rest @ ..] = page {
        *w0 = index;
        *w1 = generation;
        for word in rest {
            *word = value;
            value = value.wrapping_add(GOLDEN);
        }
    }
}

/// Whether `page` holds exactly the pattern of (`index`, `generation`).
pub fn page_matches(page: &[u64], index: u64, generation: u64) -> bool {
    if generation == 0 {
        return page.iter().all(|&w| w == 0);
    }
    let mut value = first_mixed(index, generation);
    match page {
        [w0, w1, rest @ ..] => {
            if *w0 != index || *w1 != generation {
                return false;
            }
            rest.iter().all(|&word| {
                let ok = word == value;
                value = value.wrapping_add(GOLDEN);
                ok
            })
        }
        _ => false,
    }
}

/// Value of word 2 of the page.
fn first_mixed(index: u64, generation: u64) -> u64 {
    page_base(index, generation).wrapping_add(GOLDEN.wrapping_mul(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_match() {
        let mut page = vec![0u64; PAGE_WORDS];
        assert!(page_matches(&page, 3, 0));
        fill_page(&mut page, 3, 7);
        assert!(page_matches(&page, 3, 7));
        assert!(!page_matches(&page, 3, 8));
        assert!(!page_matches(&page, 4, 7));
        page[100] ^= 1;
        assert!(!page_matches(&page, 3, 7));
    }
}
