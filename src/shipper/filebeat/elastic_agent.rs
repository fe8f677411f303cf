//! The filebeat registries of an Elastic Agent (Fleet-managed or standalone).
//!
//! The agent runs one filebeat per component, each with its own `path.data`:
//! - 8.6 and later: `<home>/run/<component id>/registry/filebeat/`, e.g. `filestream-default`,
//!   `log-default`, `filestream-monitoring`;
//! - up to 8.5 and 7.x: `<home>/run/<output>/filebeat--<version>/registry/filebeat`.
//!
//! `<home>` is `<top>/data/elastic-agent-<version>-<commit>` (`elastic-agent-<commit>` before
//! 8.13). Upgrades leave old homes behind, so only the running agent's home counts: the home
//! of a running `elastic-agent` process (`/proc/<pid>/exe`), else the one the `elastic-agent`
//! link in `<top>` points to (the install's current version, which upgrades re-point).
//! A package install keeps its homes in `/var/lib/elastic-agent/data` and its link in
//! `/usr/share/elastic-agent/bin/elastic-agent`.

use std::fs;
use std::path::{Path, PathBuf};

/// One filebeat of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `filestream-default`, or `default/filebeat--7.17.0` before 8.6.
    pub id: String,
    /// Its `path.data` (holds `registry/filebeat`).
    pub data: PathBuf,
}

/// What was found under the agent's install directories.
#[derive(Debug, Default)]
pub struct Found {
    pub components: Vec<Component>,
    /// Homes that hold registries but are not the running agent's (left by upgrades).
    pub stale_homes: Vec<PathBuf>,
    /// The home the components belong to.
    pub home: Option<PathBuf>,
}

/// The package install's link and data dir, besides `<top>/elastic-agent` and `<top>/data`.
pub const PACKAGE_LINK: &str = "/usr/share/elastic-agent/bin/elastic-agent";
pub const PACKAGE_TOP: &str = "/var/lib/elastic-agent";

/// Finds the running agent's components. `tops` are install directories (each with
/// `data/elastic-agent-*` homes), `links` the `elastic-agent` links that name the current
/// home, `proc_root` where running agents are looked for.
pub fn find(tops: &[PathBuf], links: &[PathBuf], proc_root: &Path) -> Found {
    let homes: Vec<PathBuf> = tops.iter().flat_map(|t| homes_in(t)).collect();
    let mut found = Found::default();
    if homes.is_empty() {
        return found;
    }
    let current = running_homes(proc_root)
        .into_iter()
        .chain(links.iter().filter_map(|l| home_of_binary(l)))
        .find(|h| homes.iter().any(|known| same(known, h)));
    // No running agent and no link (an agent being reinstalled, a copied tree): the home
    // whose registries were written last is the one in use.
    let Some(current) = current.or_else(|| most_recently_written(&homes)) else {
        return found;
    };
    for h in &homes {
        if same(h, &current) {
            found.components = components_of(h);
        } else if !components_of(h).is_empty() {
            found.stale_homes.push(h.clone());
        }
    }
    found.home = Some(current);
    found
}

fn most_recently_written(homes: &[PathBuf]) -> Option<PathBuf> {
    homes
        .iter()
        .filter_map(|h| {
            let newest = components_of(h)
                .iter()
                .filter_map(|c| last_write(&c.data.join("registry/filebeat")))
                .max()?;
            Some((newest, h.clone()))
        })
        .max()
        .map(|(_, h)| h)
}

fn last_write(dir: &Path) -> Option<std::time::SystemTime> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

fn same(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `<top>/data/elastic-agent-*` directories.
fn homes_in(top: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(top.join("data")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("elastic-agent-"))
        })
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// The home whose binary a link or an executable path names (`<home>/elastic-agent`).
fn home_of_binary(bin: &Path) -> Option<PathBuf> {
    let target = fs::canonicalize(bin).ok()?;
    target.parent().map(Path::to_path_buf)
}

/// Homes of running `elastic-agent` processes.
fn running_homes(proc_root: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|p| {
            p.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|p| {
            fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim_end() == "elastic-agent")
        })
        .filter_map(|p| {
            let exe = fs::read_link(p.path().join("exe")).ok()?;
            exe.parent().map(Path::to_path_buf)
        })
        .collect()
}

/// The components of one home that have a registry, both layouts.
pub fn components_of(home: &Path) -> Vec<Component> {
    let run = home.join("run");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&run) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if has_registry(&d) {
            // 8.6+: run/<component id>/registry/filebeat
            out.push(Component { id: name, data: d });
            continue;
        }
        // <= 8.5: run/<output>/filebeat--<version>/registry/filebeat
        let Ok(inner) = fs::read_dir(&d) else {
            continue;
        };
        let mut beats: Vec<PathBuf> = inner
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("filebeat--"))
                    && has_registry(p)
            })
            .collect();
        beats.sort();
        for b in beats {
            let beat = b
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.push(Component {
                id: format!("{name}/{beat}"),
                data: b,
            });
        }
    }
    out
}

fn has_registry(data: &Path) -> bool {
    data.join("registry").join("filebeat").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(data: &Path) {
        fs::create_dir_all(data.join("registry/filebeat")).unwrap();
        fs::write(
            data.join("registry/filebeat/meta.json"),
            r#"{"version":"1"}"#,
        )
        .unwrap();
    }

    #[test]
    fn the_linked_home_counts_and_an_upgrade_s_leftover_does_not() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("opt/Elastic/Agent");
        let old = top.join("data/elastic-agent-8.5.3-aaaaaa");
        let new = top.join("data/elastic-agent-8.15.1-bbbbbb");
        registry(&old.join("run/default/filebeat--8.5.3"));
        registry(&new.join("run/filestream-default"));
        registry(&new.join("run/log-default"));
        fs::create_dir_all(new.join("run/metricbeat-default")).unwrap();
        fs::write(new.join("elastic-agent"), "").unwrap();
        std::os::unix::fs::symlink(
            "data/elastic-agent-8.15.1-bbbbbb/elastic-agent",
            top.join("elastic-agent"),
        )
        .unwrap();
        let f = find(
            std::slice::from_ref(&top),
            &[top.join("elastic-agent")],
            &t.path().join("no-proc"),
        );
        let ids: Vec<&str> = f.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["filestream-default", "log-default"]);
        assert_eq!(f.stale_homes, vec![old.clone()]);

        // Re-pointed by an upgrade back to the old layout's home.
        fs::remove_file(top.join("elastic-agent")).unwrap();
        fs::write(old.join("elastic-agent"), "").unwrap();
        std::os::unix::fs::symlink(old.join("elastic-agent"), top.join("elastic-agent")).unwrap();
        let f = find(
            std::slice::from_ref(&top),
            &[top.join("elastic-agent")],
            &t.path().join("no-proc"),
        );
        let ids: Vec<&str> = f.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["default/filebeat--8.5.3"]);
        assert_eq!(f.stale_homes, vec![new]);
    }

    #[test]
    fn without_a_link_or_a_process_the_home_written_last_counts() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("agent");
        let old = top.join("data/elastic-agent-cccccc");
        registry(&old.join("run/filestream-default"));
        let f = find(
            std::slice::from_ref(&top),
            &[top.join("elastic-agent")],
            &t.path().join("no-proc"),
        );
        assert_eq!(f.home.as_deref(), Some(old.as_path()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let new = top.join("data/elastic-agent-9.0.0-dddddd");
        registry(&new.join("run/filestream-default"));
        let f = find(
            std::slice::from_ref(&top),
            &[top.join("elastic-agent")],
            &t.path().join("no-proc"),
        );
        assert_eq!(f.home.as_deref(), Some(new.as_path()));
        assert_eq!(f.stale_homes, vec![old]);
    }
}
