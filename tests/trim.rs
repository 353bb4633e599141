//! Memory freed after a burst goes back to the operating system (`fanout::memory`). Its own
//! test binary, so no other test allocates while it reads the process's RSS.

/// Resident set size of this process, from `/proc/self/statm` (pages).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn freed_small_chunks_are_given_back() {
    use fanout::memory::{free_heap_bytes, give_back};
    // 64 MiB in 8 KiB blocks (below the mmap threshold, so they live in the heap); every
    // other one is kept, so the freed ones cannot simply shrink the top of the heap.
    let mut blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8; 8192]).collect();
    let before = rss();
    let mut kept = Vec::new();
    for (i, b) in blocks.drain(..).enumerate() {
        if i % 2 == 0 {
            kept.push(b);
        }
    }
    assert!(free_heap_bytes() >= 30 << 20, "{}", free_heap_bytes());
    assert!(
        rss() + (8 << 20) > before,
        "freeing alone does not lower RSS"
    );
    assert!(give_back());
    // Only whole pages inside free chunks can go: an 8 KiB hole between two kept blocks holds
    // one or two of them, so about half of the 32 MiB freed here.
    let after = rss();
    assert!(
        before - after >= 12 << 20,
        "RSS {before} -> {after}: the freed half was not given back"
    );
    assert!(
        free_heap_bytes() >= 30 << 20,
        "the chunks are still free for reuse"
    );
    assert!(kept.iter().enumerate().all(|(i, b)| b[0] == (2 * i) as u8));
}
