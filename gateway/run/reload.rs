//! Live reload: the agreement in force, swapped atomically when its file changes.
//!
//! A watcher thread reads the agreement file once a second (and at once on SIGHUP)
//! and compares its SHA-256 with the last one seen. Reading the content, rather than
//! watching inotify events, notices every kind of change, including the symlink swap
//! by which Kubernetes updates a mounted ConfigMap (`..data` is re-pointed; the file's
//! own inode never changes). A changed file is parsed, checked and compiled on that
//! thread, off the hot path; only if it is valid (and signed, when signatures are
//! required) is it swapped in. The shells take [`Live::current`] at each batch, so
//! every event is decided by exactly one version. A refused file changes nothing:
//! the problems are logged at their lines, counted and written to the audit trail,
//! and the same bytes are not tried again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::agreement::Agreement;
use crate::report::audit::{self, AuditTrail, Kind};
use crate::engine::Engine;
use crate::pseudonym::Pseudonymiser;

/// Where a shell takes its engine from: one fixed engine, or the [`Live`] one.
pub trait Engines {
    /// Changes whenever a new engine is in force (checked per event; must be cheap).
    fn generation(&self) -> u64;
    fn current(&self) -> Arc<Engine>;
}

impl Engines for Arc<Engine> {
    fn generation(&self) -> u64 {
        0
    }

    fn current(&self) -> Arc<Engine> {
        self.clone()
    }
}

impl Engines for Live {
    fn generation(&self) -> u64 {
        Live::generation(self)
    }

    fn current(&self) -> Arc<Engine> {
        Live::current(self)
    }
}

/// A check that a valid agreement may come into force: its bytes (every party's
/// signature) and its compiled form (no topic that loops back into the input).
pub type Gate = Box<dyn Fn(&Path, &[u8], &Agreement) -> Result<(), String> + Send + Sync>;

/// The outcome of one check of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded { id: String, version: u32, sha256: String },
    /// Each problem as `FILE:LINE:COL: error: ...`, or one sentence.
    Refused { sha256: String, problems: Vec<String> },
}

/// The engine in force and what it takes to replace it.
pub struct Live {
    path: PathBuf,
    current: ArcSwap<Engine>,
    generation: AtomicU64,
    pseudonymiser: Arc<Pseudonymiser>,
    gate: Option<Gate>,
    audit: Option<Arc<AuditTrail>>,
    /// SHA-256 of the last bytes tried, loaded or refused.
    last_seen: Mutex<String>,
}

impl Live {
    /// Starts from an agreement already loaded from `path`.
    pub fn new(path: &Path, engine: Arc<Engine>, gate: Option<Gate>, audit: Option<Arc<AuditTrail>>) -> Arc<Live> {
        let sha = engine.agreement().sha256.clone();
        Arc::new(Live {
            path: path.to_path_buf(),
            pseudonymiser: engine.pseudonymiser().clone(),
            current: ArcSwap::new(engine),
            generation: AtomicU64::new(0),
            gate,
            audit,
            last_seen: Mutex::new(sha),
        })
    }

    /// The engine to use for the next batch.
    pub fn current(&self) -> Arc<Engine> {
        self.current.load_full()
    }

    /// Bumped at every swap: a cheap per-event check that a new agreement is waiting.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the file and swaps in a changed, valid agreement.
    pub fn check(&self) -> Reload {
        let Ok(bytes) = std::fs::read(&self.path) else {
            // A file briefly absent during a swap is not a change; keep what is in force.
            return Reload::Unchanged;
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        {
            let mut last = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            if *last == sha {
                return Reload::Unchanged;
            }
            *last = sha.clone();
        }
        let file = self.path.display().to_string();
        let refused = |problems: Vec<String>| {
            crate::report::admin::count_reload(false);
            for p in &problems {
                tracing::warn!(sha256 = %sha, "{p}");
            }
            tracing::warn!(sha256 = %sha, "the changed agreement {file} was refused; the agreement in force stays in force");
            if let Some(trail) = &self.audit {
                let _ = trail.append(Kind::AgreementRefused, serde_json::json!({"path": file, "sha256": sha, "problems": problems}));
            }
            Reload::Refused { sha256: sha.clone(), problems }
        };
        let loaded = match Agreement::parse(&bytes) {
            Ok(l) => l,
            Err(diags) => return refused(diags.iter().filter(|d| d.is_error()).map(|d| d.display(&file).to_string()).collect()),
        };
        if let Some(gate) = &self.gate {
            if let Err(why) = gate(&self.path, &bytes, &loaded.agreement) {
                return refused(vec![format!("{file}: {why}")]);
            }
        }
        for w in &loaded.warnings {
            tracing::warn!("{}", w.display(&file));
        }
        let agreement = Arc::new(loaded.agreement);
        let engine = Arc::new(Engine::new(agreement.clone(), self.pseudonymiser.clone()));
        self.current.store(engine);
        self.generation.fetch_add(1, Ordering::AcqRel);
        crate::report::admin::count_reload(true);
        tracing::info!(
            agreement = %agreement.id,
            version = agreement.version,
            sha256 = %agreement.sha256,
            "agreement `{}` version {} is now in force (sha256 {})",
            agreement.id,
            agreement.version,
            agreement.sha256
        );
        if let Some(trail) = &self.audit {
            let _ = trail.append(Kind::AgreementLoaded, audit::agreement_loaded(&agreement));
        }
        Reload::Loaded { id: agreement.id.clone(), version: agreement.version, sha256: agreement.sha256.clone() }
    }

    /// Checks the file every `interval`, and at once on SIGHUP, until `stop` is set.
    pub fn watch(self: &Arc<Self>, interval: Duration, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
        let live = self.clone();
        std::thread::Builder::new().name("accord-reload".into()).spawn(move || {
            let tick = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if hup.swap(false, Ordering::Relaxed) || waited >= interval {
                    waited = Duration::ZERO;
                    live.check();
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::Key;

    fn write(path: &Path, version: u32) {
        let yaml = format!(
            "agreement: {{ id: t, version: {version}, parties: [a] }}\npurposes:\n  p: {{ topic: t.p }}\nrules:\n  - name: r\n    purposes: [p]\n"
        );
        std::fs::write(path, yaml).unwrap();
    }

    #[test]
    fn a_valid_change_is_swapped_in_and_a_broken_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        write(&path, 1);
        let agreement = Arc::new(Agreement::load(&path).unwrap().agreement);
        let p = Arc::new(Pseudonymiser::new(Key::new(&[1; 32], "k").unwrap()));
        let live = Live::new(&path, Arc::new(Engine::new(agreement, p)), None, None);
        assert_eq!(live.check(), Reload::Unchanged);
        write(&path, 2);
        assert!(matches!(live.check(), Reload::Loaded { version: 2, .. }));
        assert_eq!(live.current().agreement().version, 2);
        assert_eq!(live.generation(), 1);
        std::fs::write(&path, "agreement: { id: t, version: 3 }\nrules: [ { name: r, purposes: [nope] } ]\n").unwrap();
        let Reload::Refused { problems, .. } = live.check() else { panic!("not refused") };
        assert!(problems.iter().any(|p| p.contains(":2:") && p.contains("`nope`")), "{problems:?}");
        assert_eq!(live.current().agreement().version, 2);
        // The same broken bytes are not tried again.
        assert_eq!(live.check(), Reload::Unchanged);
    }

    #[test]
    fn a_symlink_swap_like_a_configmap_update_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = (dir.path().join("..2026_01"), dir.path().join("..2026_02"));
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        write(&v1.join("agreement.yaml"), 1);
        write(&v2.join("agreement.yaml"), 2);
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink(&v1, &data).unwrap();
        let path = dir.path().join("agreement.yaml");
        std::os::unix::fs::symlink(data.join("agreement.yaml"), &path).unwrap();
        let agreement = Arc::new(Agreement::load(&path).unwrap().agreement);
        let p = Arc::new(Pseudonymiser::new(Key::new(&[1; 32], "k").unwrap()));
        let live = Live::new(&path, Arc::new(Engine::new(agreement, p)), None, None);
        // Re-point ..data atomically, as the kubelet does.
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&v2, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        assert!(matches!(live.check(), Reload::Loaded { version: 2, .. }));
    }
}
