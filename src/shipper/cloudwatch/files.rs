//! Which files the agent tails for one `collect_list` entry, found as the agent finds them
//! (`plugins/inputs/logfile/logfile.go:292-339`, `globpath/globpath.go`):
//! - a path without glob characters is the file itself;
//! - `*`, `?`, `[...]` alone: Go's `filepath.Glob` (a `*` stays within one directory);
//! - `**`, `{a,b}` or `!`: gobwas/glob over a walk from the longest literal directory
//!   (`findRootDir`, which stops only at `*`, `?` or `[`), `*` not crossing `/`;
//! - then skipped: files under the state folder, compressed ones (`.tar .zst .gz .zip .bz2
//!   .rar`), directories, and base names the `blacklist` regexp matches;
//! - without `publish_multi_logs`, only the most recently modified match is tailed.

use super::config::FileConfig;
use globset::GlobBuilder;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How deep a `**` walk goes (the agent's has no bound; this one keeps a look short).
const MAX_DEPTH: usize = 32;

/// A file the glob matched.
#[derive(Debug, Clone)]
pub struct Match {
    pub path: PathBuf,
    pub modified: Option<SystemTime>,
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn has_super_meta(s: &str) -> bool {
    s.contains("**") || s.contains(['!', '{', '}'])
}

/// `findRootDir` (globpath.go:96-121).
fn root_dir(pattern: &str) -> PathBuf {
    let items: Vec<&str> = pattern.split('/').collect();
    let mut out = String::from("/");
    for (i, item) in items.iter().enumerate() {
        if i == items.len() - 1 {
            break;
        }
        if item.is_empty() {
            continue;
        }
        if has_meta(item) {
            break;
        }
        out.push_str(item);
        out.push('/');
    }
    if out != "/" {
        out.pop();
    }
    PathBuf::from(out)
}

/// gobwas/glob's `**` matches any text, `/` included, wherever it stands; globset's only as
/// a whole path component. `X**Y` is therefore `X*Y` (no `/` crossed) or `X*/**/*Y` (at least
/// one), each `*` staying within a directory as in gobwas.
fn expand_super(pattern: &str) -> Vec<String> {
    let Some(i) = pattern.find("**") else {
        return vec![pattern.to_string()];
    };
    let (x, y) = (&pattern[..i], &pattern[i + 2..]);
    let component = (x.is_empty() || x.ends_with('/')) && (y.is_empty() || y.starts_with('/'));
    let heads: Vec<String> = if component {
        vec![format!("{x}**")]
    } else {
        vec![format!("{x}*"), format!("{x}*/**/*")]
    };
    let mut out = Vec::new();
    for h in heads {
        for t in expand_super(y) {
            out.push(format!("{h}{t}"));
        }
    }
    out
}

/// The agent's glob as a matcher over full paths.
pub fn compile(pattern: &str) -> Option<globset::GlobSet> {
    let mut set = globset::GlobSetBuilder::new();
    for p in expand_super(pattern) {
        set.add(
            GlobBuilder::new(&p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .ok()?,
        );
    }
    set.build().ok()
}

/// Every file the entry's glob matches now, after the agent's filters.
pub fn matches(fc: &FileConfig, state_dir: &Path) -> Vec<Match> {
    let pattern = fc.file_path.as_str();
    let candidates: Vec<PathBuf> = if !has_meta(pattern) && !has_super_meta(pattern) {
        vec![PathBuf::from(pattern)]
    } else {
        let Some(m) = compile(pattern) else {
            // The agent logs "failed to compile" and tails nothing for it.
            return Vec::new();
        };
        let root = root_dir(pattern);
        let depth = if has_super_meta(pattern) {
            MAX_DEPTH
        } else {
            pattern
                .split('/')
                .count()
                .saturating_sub(root.components().count())
        };
        let mut found = Vec::new();
        walk(&root, depth, &mut |p| {
            if m.is_match(p) {
                found.push(p.to_path_buf());
            }
        });
        found
    };
    let state = state_dir.to_string_lossy().into_owned();
    candidates
        .into_iter()
        .filter(|p| state.is_empty() || !p.to_string_lossy().starts_with(&state))
        .filter(|p| !is_compressed(p))
        .filter_map(|p| {
            let meta = fs::metadata(&p).ok()?; // follows a symlink, as the agent's isDirectory
            if meta.is_dir() {
                return None;
            }
            let base = p.file_name()?.to_string_lossy().into_owned();
            if fc.blacklist.as_ref().is_some_and(|re| re.is_match(&base)) {
                return None;
            }
            Some(Match {
                path: p,
                modified: meta.modified().ok(),
            })
        })
        .collect()
}

/// The matches the agent tails: all of them with `publish_multi_logs`, otherwise the most
/// recently modified (every one of them if several share that time).
pub fn tailed(fc: &FileConfig, all: Vec<Match>) -> Vec<Match> {
    if fc.publish_multi_logs {
        return all;
    }
    let newest = all.iter().filter_map(|m| m.modified).max();
    all.into_iter().filter(|m| m.modified == newest).collect()
}

fn is_compressed(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("tar" | "zst" | "gz" | "zip" | "bz2" | "rar")
    )
}

/// Visits `dir` and what is below it, `depth` levels down, without following symlinked
/// directories (as Go's `filepath.Walk`).
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        visit(&p);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, depth - 1, visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(pattern: &str) -> FileConfig {
        FileConfig {
            file_path: pattern.into(),
            blacklist: None,
            publish_multi_logs: true,
            group: String::new(),
            stream: String::new(),
            from_beginning: true,
            pipe: false,
            auto_removal: false,
        }
    }

    fn names(v: &[Match], root: &Path) -> Vec<String> {
        let mut n: Vec<String> = v
            .iter()
            .map(|m| m.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn globs_as_the_agent() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for f in [
            "a.log",
            "b.log",
            "a.log.1",
            "old.log.gz",
            "sub/c.log",
            "sub/deep/d.log",
        ] {
            let p = r.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x\n").unwrap();
        }
        let s = |p: &str| format!("{}/{p}", r.display());
        let none = Path::new("/nonexistent-state");
        assert_eq!(
            names(&matches(&fc(&s("*.log")), none), r),
            ["a.log", "b.log"]
        );
        assert_eq!(
            names(&matches(&fc(&s("a.log*")), none), r),
            ["a.log", "a.log.1"]
        );
        assert_eq!(
            names(&matches(&fc(&s("*")), none), r),
            ["a.log", "a.log.1", "b.log"],
            "no dirs, no .gz"
        );
        assert_eq!(
            names(&matches(&fc(&s("**.log")), none), r),
            ["a.log", "b.log", "sub/c.log", "sub/deep/d.log"]
        );
        assert_eq!(
            names(&matches(&fc(&s("{a,b}.log")), none), r),
            ["a.log", "b.log"]
        );
        assert_eq!(names(&matches(&fc(&s("a.log")), none), r), ["a.log"]);
        let mut black = fc(&s("*.log"));
        black.blacklist = Some(regex::Regex::new("^b").unwrap());
        assert_eq!(names(&matches(&black, none), r), ["a.log"]);
        assert_eq!(
            names(&matches(&fc(&s("sub/*.log")), &r.join("sub")), r),
            Vec::<String>::new(),
            "the state folder is skipped"
        );
    }

    #[test]
    fn only_the_newest_without_publish_multi_logs() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a.log.1"), "x\n").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(t.path().join("a.log.1"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::write(t.path().join("a.log"), "x\n").unwrap();
        let mut c = fc(&format!("{}/a.log*", t.path().display()));
        c.publish_multi_logs = false;
        let all = matches(&c, Path::new("/none"));
        assert_eq!(all.len(), 2);
        assert_eq!(names(&tailed(&c, all), t.path()), ["a.log"]);
    }
}
