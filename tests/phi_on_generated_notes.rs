//! A cross-check of two independent pieces: the synthetic data generator marks the notes into
//! which it leaks one PHI item (`meta.phi_leak`), and the PHI detector, written separately,
//! must find PHI in exactly those notes and in no clean one.

use lablens::data::phi::find_phi;
use lablens::data::record::Task;
use lablens::data::synth::generate;

#[test]
fn detector_finds_every_leak_and_flags_few_clean_notes() {
    let mut leaked = 0;
    let mut leaked_found = 0;
    let mut clean = 0;
    let mut clean_flagged = Vec::new();
    for task in Task::ALL {
        for r in generate(task, 2000, 7, None) {
            let has_leak = r.meta.get("phi_leak").and_then(|v| v.as_bool()) == Some(true);
            let found = !find_phi(&r.input).is_empty() || !find_phi(&r.target).is_empty();
            if has_leak {
                leaked += 1;
                leaked_found += usize::from(found);
            } else {
                clean += 1;
                if found {
                    clean_flagged.push(r.id.clone());
                }
            }
        }
    }
    let recall = leaked_found as f64 / leaked as f64;
    let false_positive_rate = clean_flagged.len() as f64 / clean as f64;
    eprintln!(
        "notes with a leak: {leaked}, found {leaked_found} (recall {recall:.3}); \
         clean notes: {clean}, flagged {} (rate {false_positive_rate:.4})",
        clean_flagged.len()
    );
    assert!(
        leaked >= 50,
        "the generator should leak PHI into ~3% of notes"
    );
    assert_eq!(leaked_found, leaked, "every leaked note must be found");
    assert!(
        false_positive_rate < 0.005,
        "clean notes flagged: {:?}",
        &clean_flagged[..clean_flagged.len().min(10)]
    );
}
