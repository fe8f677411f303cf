//! Measures how soon `drain` returns after the registry shows the last byte acked:
//! `make latency` (20 runs, prints the median). Ignored in `make test`: it is a
//! measurement, not a pass/fail check.

mod common;

use common::*;

#[test]
#[ignore = "measurement: run with `make latency`"]
fn drain_latency_after_the_last_ack() {
    let settle = 1.0;
    let mut samples = Vec::new();
    for run in 0..20 {
        let t = tempfile::tempdir().unwrap();
        let (data, sim, _) = shipping(t.path(), 100_000, &["--rate", "100000"]);
        let out = drainhook()
            .args(["drain", "--settle", "1s", "--registry"])
            .arg(&data)
            .output()
            .unwrap();
        let ended = now_epoch();
        assert!(out.status.success(), "{}", stderr(&out));
        let latency = ended - sim.last_ack() - settle;
        println!(
            "run {run:2}: drain returned {:.0} ms after last ack + settle",
            latency * 1000.0
        );
        samples.push(latency);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = (samples[9] + samples[10]) / 2.0;
    println!(
        "median over 20 runs: {:.0} ms (min {:.0} ms, max {:.0} ms) after last ack + settle",
        median * 1000.0,
        samples[0] * 1000.0,
        samples[19] * 1000.0
    );
}
