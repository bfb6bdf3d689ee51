//! Snapshots of the WGSL sources the kernel wrappers generate at run time, one file per variant
//! under `shaders/generated/<key>.wgsl`, checked byte for byte so a reader can open each kernel
//! as a file and a change to a generator shows in the diff. `STYLIZE_BLESS=1 cargo test --test
//! generated` rewrites them (and removes stale ones).
//!
//! Of the subgroup-specialised variants only those for subgroup size 8 are kept: that is lavapipe's (AVX2), the CPU adapter the
//! texture kernels were written and tuned for, and the other sizes differ only in their unrolling
//! (the full set is 37 files and 8.5 MB; every variant is still validated by tests/shaders.rs).

use std::path::Path;

/// The subgroup size whose variants are kept as snapshots.
const SNAPSHOT_SUBGROUP: u32 = 8;

#[test]
fn generated_sources_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders/generated");
    let bless = std::env::var("STYLIZE_BLESS").is_ok_and(|v| v == "1");
    let generated: Vec<_> =
        stylize::shaders::generated().into_iter().filter(|g| [0, SNAPSHOT_SUBGROUP].contains(&g.subgroup)).collect();
    assert!(generated.len() >= 9, "{} snapshots", generated.len());
    let mut names = vec![];
    for g in &generated {
        let name = format!("{}.wgsl", g.key);
        assert!(!names.contains(&name), "two generated sources named {name}");
        let path = dir.join(&name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &g.source).unwrap();
        } else {
            let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e}; write the snapshots with STYLIZE_BLESS=1 cargo test --test generated", path.display())
            });
            assert!(
                on_disk == g.source,
                "{} differs from what the generator writes; if the change is meant, rewrite the snapshots \
                 with STYLIZE_BLESS=1 cargo test --test generated",
                path.display()
            );
        }
        names.push(name);
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !names.contains(&name) {
            if bless {
                std::fs::remove_file(&path).unwrap();
            } else {
                panic!("{}: no generator writes this snapshot any more (STYLIZE_BLESS=1 removes it)", path.display());
            }
        }
    }
}
