//! Who may change the agent's configuration. The agent runs its `pre_drain` commands as root,
//! so whoever can change its config file can run anything as root. Like sshd's StrictModes,
//! the agent refuses to start when the config file it reads is not owned by root, or when
//! the file, its directory or a directory above them can be written by anyone but root.
//!
//! "Root" here is uid 0 and the user the agent runs as (the same when it runs as root, as
//! the units and the SysV script run it): a file that only the agent's own user can change is
//! no way for anyone else into it. Writable means the group or the others write bit; with a
//! POSIX ACL, the group bits are the ACL's mask, so a named user or group that may write
//! shows there too. A directory above the file's own (not the file's own) may be writable by
//! others when its sticky bit is set (`/tmp`): then nobody but an entry's owner can rename or
//! remove it. Both the path as given and the path with its symbolic links resolved are
//! checked. A config file that does not exist is not read, so there is nothing to check
//! (for the default file, the agent runs on flags and defaults; a named one is an error of
//! its own). `/dev/null` is accepted: nothing written to it is ever read back.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Whose files the agent trusts: root and the user it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trusted {
    /// The agent's effective uid.
    pub euid: u32,
}

impl Trusted {
    /// The running process's trust: root and its effective uid.
    pub fn current() -> Trusted {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Trusted {
            euid: unsafe { libc::geteuid() },
        }
    }

    fn trusts(self, uid: u32) -> bool {
        uid == 0 || uid == self.euid
    }

    fn who(self) -> String {
        if self.euid == 0 {
            "root".into()
        } else {
            format!("root or uid {} (the agent's own user)", self.euid)
        }
    }
}

/// The owner and `st_mode` (type and permission bits) of one path, as the check sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub uid: u32,
    pub mode: u32,
}

impl Facts {
    fn of(m: &fs::Metadata) -> Facts {
        Facts {
            uid: m.uid(),
            mode: m.mode(),
        }
    }
}

/// What a checked path is to the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The config file itself.
    File,
    /// The directory that holds it.
    Directory,
    /// A directory above that one.
    Above,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::File => "the file",
            Role::Directory => "its directory",
            Role::Above => "the directory above it",
        }
    }
}

/// Why a config file is refused. Every variant names the config file and the path at fault.
#[derive(Debug)]
pub enum TrustError {
    /// The path is owned by someone the agent does not trust.
    NotOwned {
        config: PathBuf,
        path: PathBuf,
        role: Role,
        uid: u32,
        trusted: Trusted,
    },
    /// The path can be written by its group or by everyone.
    Writable {
        config: PathBuf,
        path: PathBuf,
        role: Role,
        mode: u32,
    },
    /// The config is neither a regular file nor `/dev/null`.
    NotRegular { config: PathBuf },
    /// The path could not be looked at.
    Unreadable {
        config: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
}

const WHY: &str =
    "the agent runs the config's pre_drain commands as root, so only root may be able to change it";

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::NotOwned {
                config,
                path,
                role,
                uid,
                trusted,
            } => {
                let what = if *role == Role::File {
                    format!("config file {} is owned by uid {uid}", config.display())
                } else {
                    format!(
                        "config file {}: {} {} is owned by uid {uid}",
                        config.display(),
                        role.name(),
                        path.display()
                    )
                };
                let fix = if *role == Role::File {
                    format!("chown root:root {}", path.display())
                } else {
                    format!("chown root {}", path.display())
                };
                write!(
                    f,
                    "refusing to start: {what}, not {}; {WHY}. Fix: {fix}",
                    trusted.who()
                )
            }
            TrustError::Writable {
                config,
                path,
                role,
                mode,
            } => {
                let by = if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                };
                let what = if *role == Role::File {
                    format!("config file {}", config.display())
                } else {
                    format!(
                        "config file {}: {} {}",
                        config.display(),
                        role.name(),
                        path.display()
                    )
                };
                write!(
                    f,
                    "refusing to start: {what} is writable by {by} (mode {:04o}); {WHY}. Fix: chmod go-w {}",
                    mode & 0o7777,
                    path.display()
                )
            }
            TrustError::NotRegular { config } => write!(
                f,
                "refusing to start: config file {} is not a regular file; {WHY}. Fix: point --config (or DRAINHOOK_CONFIG) at a file owned by root",
                config.display()
            ),
            TrustError::Unreadable {
                config,
                path,
                source,
            } => write!(
                f,
                "refusing to start: cannot check who may change config file {} ({}: {source})",
                config.display(),
                path.display()
            ),
        }
    }
}

impl std::error::Error for TrustError {}

/// Judges one path of the config's chain by its owner and mode alone (no file system access,
/// so any owner can be tested).
pub fn judge(
    config: &Path,
    path: &Path,
    role: Role,
    facts: Facts,
    trusted: Trusted,
) -> Result<(), TrustError> {
    if !trusted.trusts(facts.uid) {
        return Err(TrustError::NotOwned {
            config: config.into(),
            path: path.into(),
            role,
            uid: facts.uid,
            trusted,
        });
    }
    let writable = facts.mode & 0o022 != 0;
    let sticky = facts.mode & 0o1000 != 0;
    if writable && !(role == Role::Above && sticky) {
        return Err(TrustError::Writable {
            config: config.into(),
            path: path.into(),
            role,
            mode: facts.mode,
        });
    }
    Ok(())
}

/// Checks the config file the agent is about to read: `explicit` (`--config`,
/// `DRAINHOOK_CONFIG`) or the default file.
pub fn check_config(explicit: Option<&Path>) -> Result<(), TrustError> {
    let path = explicit.unwrap_or(Path::new(crate::config::DEFAULT_CONFIG));
    check_config_file(path, Trusted::current())
}

/// [`check_config`] for one path and trust.
pub fn check_config_file(config: &Path, trusted: Trusted) -> Result<(), TrustError> {
    let unreadable = |path: &Path, source: io::Error| TrustError::Unreadable {
        config: config.into(),
        path: path.into(),
        source,
    };
    let meta = match fs::metadata(config) {
        Ok(m) => m,
        // Nothing will be read: the caller decides whether a missing file is an error.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unreadable(config, e)),
    };
    if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return Ok(()); // /dev/null: read as empty, whoever writes to it
    }
    if !meta.is_file() {
        return Err(TrustError::NotRegular {
            config: config.into(),
        });
    }
    let real = fs::canonicalize(config).map_err(|e| unreadable(config, e))?;
    judge(config, &real, Role::File, Facts::of(&meta), trusted)?;
    let given = std::path::absolute(config).map_err(|e| unreadable(config, e))?;
    let chains = if given == real {
        vec![real]
    } else {
        vec![given, real]
    };
    for chain in &chains {
        for (i, dir) in chain.ancestors().skip(1).enumerate() {
            let m = fs::metadata(dir).map_err(|e| unreadable(dir, e))?;
            let role = if i == 0 { Role::Directory } else { Role::Above };
            judge(config, dir, role, Facts::of(&m), trusted)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ROOT: Trusted = Trusted { euid: 0 };
    const FILE: u32 = 0o100_000;
    const DIR: u32 = 0o040_000;

    fn judged(role: Role, uid: u32, mode: u32, trusted: Trusted) -> Result<(), String> {
        let cfg = Path::new("/etc/drainhook/drainhook.toml");
        let path = match role {
            Role::File => cfg,
            Role::Directory => Path::new("/etc/drainhook"),
            Role::Above => Path::new("/etc"),
        };
        judge(cfg, path, role, Facts { uid, mode }, trusted).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_not_owned_by_root_is_refused_with_the_file_and_the_fix_named() {
        let e = judged(Role::File, 1000, FILE | 0o644, ROOT).unwrap_err();
        assert!(
            e.contains("config file /etc/drainhook/drainhook.toml is owned by uid 1000, not root")
                && e.contains("Fix: chown root:root /etc/drainhook/drainhook.toml"),
            "{e}"
        );
        let e = judged(Role::Directory, 1000, DIR | 0o755, ROOT).unwrap_err();
        assert!(
            e.contains("its directory /etc/drainhook is owned by uid 1000")
                && e.contains("Fix: chown root /etc/drainhook"),
            "{e}"
        );
    }

    #[test]
    fn a_file_or_directory_writable_by_its_group_or_everyone_is_refused() {
        let e = judged(Role::File, 0, FILE | 0o664, ROOT).unwrap_err();
        assert!(
            e.contains("writable by its group") && e.contains("mode 0664"),
            "{e}"
        );
        assert!(
            e.contains("Fix: chmod go-w /etc/drainhook/drainhook.toml"),
            "{e}"
        );
        let e = judged(Role::File, 0, FILE | 0o646, ROOT).unwrap_err();
        assert!(e.contains("writable by everyone (mode 0646)"), "{e}");
        let e = judged(Role::Directory, 0, DIR | 0o777, ROOT).unwrap_err();
        assert!(
            e.contains("its directory /etc/drainhook is writable by everyone")
                && e.contains("Fix: chmod go-w /etc/drainhook"),
            "{e}"
        );
        // The sticky bit protects other users' entries, not the directory's own file list:
        // it excuses a directory above (as /tmp), never the file's own.
        assert!(judged(Role::Directory, 0, DIR | 0o1777, ROOT).is_err());
        assert!(judged(Role::Above, 0, DIR | 0o1777, ROOT).is_ok());
        assert!(judged(Role::Above, 0, DIR | 0o777, ROOT).is_err());
    }

    #[test]
    fn root_owned_files_that_only_root_can_write_are_accepted() {
        assert!(judged(Role::File, 0, FILE | 0o644, ROOT).is_ok());
        assert!(judged(Role::File, 0, FILE | 0o600, ROOT).is_ok());
        assert!(judged(Role::Directory, 0, DIR | 0o755, ROOT).is_ok());
        // An agent run by another user also trusts its own files (tests, a user's own run).
        let user = Trusted { euid: 1000 };
        assert!(judged(Role::File, 1000, FILE | 0o644, user).is_ok());
        assert!(judged(Role::File, 1001, FILE | 0o644, user).is_err());
        assert!(judged(Role::File, 1000, FILE | 0o664, user).is_err());
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A config file in a fresh directory: `(dir, <dir>/conf/drainhook.toml)`, 0644 in 0755.
    fn config_file() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let conf = t.path().join("conf");
        fs::create_dir(&conf).unwrap();
        chmod(&conf, 0o755);
        let file = conf.join("drainhook.toml");
        fs::write(&file, "max_hold = \"1h\"\n").unwrap();
        chmod(&file, 0o644);
        (t, file)
    }

    #[test]
    fn on_disk_a_safe_file_is_accepted_and_each_unsafe_mode_refused() {
        let (_t, file) = config_file();
        let me = Trusted::current();
        check_config_file(&file, me).unwrap();

        chmod(&file, 0o666);
        let e = check_config_file(&file, me).unwrap_err().to_string();
        assert!(
            e.contains(&format!("config file {}", file.display())),
            "{e}"
        );
        assert!(e.contains("writable by everyone"), "{e}");
        chmod(&file, 0o644);

        let dir = file.parent().unwrap();
        chmod(dir, 0o775);
        let e = check_config_file(&file, me).unwrap_err().to_string();
        assert!(
            e.contains(&format!("its directory {}", dir.display()))
                && e.contains(&format!("chmod go-w {}", dir.display())),
            "{e}"
        );
        chmod(dir, 0o755);
        check_config_file(&file, me).unwrap();
    }

    #[test]
    fn on_disk_a_file_of_another_owner_is_refused() {
        let (_t, file) = config_file();
        let me = Trusted::current();
        let err = if me.euid == 0 {
            // Tests run as root on CI: give the file away.
            std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
            check_config_file(&file, me)
        } else {
            // Not root: our own file, judged by an agent that trusts root alone.
            check_config_file(&file, ROOT)
        };
        let e = err.unwrap_err().to_string();
        assert!(
            e.contains(&format!("config file {} is owned by uid", file.display()))
                && e.contains("chown root:root"),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_is_judged_where_it_points_too() {
        let (t, file) = config_file();
        let open = t.path().join("open");
        fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let target = open.join("real.toml");
        fs::write(&target, "").unwrap();
        chmod(&target, 0o644);
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&target, &file).unwrap();
        let e = check_config_file(&file, Trusted::current())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("its directory {}", open.display())),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_and_dev_null_have_nothing_to_check_and_another_device_is_refused() {
        let (t, _) = config_file();
        let me = Trusted::current();
        check_config_file(&t.path().join("conf/absent.toml"), me).unwrap();
        check_config_file(Path::new("/dev/null"), me).unwrap();
        let e = check_config_file(Path::new("/dev/zero"), me)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero is not a regular file"), "{e}");
    }
}
