//! Reading a store leaves it resident only era by era: `Store::release_era` and the checksum pass
//! hand the mapped pages back to the OS (RSS drops), and what is read afterwards is unchanged.
//! Its own binary: it measures this process's resident memory, which other tests would move.

mod common;

use common::TempDir;
use eraengine::data::store::{Store, StoreWriter};
use eraengine::train::era::{ColumnMap, EraBatch};

/// This process's resident file-backed memory in bytes (`RssFile` of /proc/self/status: the
/// mapped store's pages, not the heap).
fn rss_file() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with("RssFile:"))
        .expect("RssFile in /proc/self/status");
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

#[test]
fn reading_eras_and_the_checksum_does_not_keep_the_store_resident() {
    let dir = TempDir::new("store-release");
    let path = dir.join("big.store");
    let (eras, rows, f) = (6, 4000, 1500);
    let fnames: Vec<String> = (0..f).map(|i| format!("feature_{i}")).collect();
    let mut w = StoreWriter::create(&path, &fnames, &["target".to_string()]).unwrap();
    for e in 0..eras {
        let ids: Vec<String> = (0..rows).map(|r| format!("e{e}r{r}")).collect();
        let feats: Vec<i8> = (0..rows * f).map(|k| ((k * 7 + e) % 5) as i8).collect();
        let targs: Vec<f32> = (0..rows).map(|r| (r % 5) as f32 / 4.0).collect();
        w.push_era(&format!("{:04}", e + 1), &ids, &feats, &targs)
            .unwrap();
    }
    w.finish().unwrap();
    let era_bytes = rows * f;

    let store = Store::open(&path).unwrap();
    // the checksum reads every byte, piece by piece, releasing each
    let before = rss_file();
    store.verify_checksum().unwrap();
    let after_verify = rss_file();
    assert!(
        after_verify < before + era_bytes,
        "verifying the checksum left {} MB resident (store {} MB)",
        (after_verify.saturating_sub(before)) >> 20,
        (eras * era_bytes) >> 20
    );

    let map = ColumnMap::identity(&store);
    for i in 0..eras {
        // the bytes as mapped (now resident), then loaded (which releases the era), then mapped
        // again
        let raw: Vec<i8> = store.era(i).features.to_vec();
        let resident = rss_file();
        let a = EraBatch::load(&store, i, &map).unwrap();
        let after = rss_file();
        assert!(
            after + era_bytes * 3 / 4 < resident,
            "era {i}: {} MB resident after reading it, {} MB after loading it (era {} MB)",
            resident >> 20,
            after >> 20,
            era_bytes >> 20
        );
        assert_eq!(store.era(i).features, &raw[..], "era {i}: bytes changed");
        let b = EraBatch::load(&store, i, &map).unwrap();
        assert_eq!(a.x, b.x, "era {i}: a second load differs");
    }
    store.verify_checksum().unwrap();
}
