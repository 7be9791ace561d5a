//! The Debian package that scripts/package.sh builds (scripts/test.sh builds
//! it before the tests; `KSWARM_TEST_DEB` names another one): its files and
//! their modes, its control fields and maintainer scripts, lintian, the
//! packaged unit under `systemd-analyze verify`, the stripped binary and its
//! symbols in the -dbgsym package, and a real `dpkg -i` / `dpkg --purge`
//! (as root, which CI is). No broker needed.
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::output_text;

/// The package to test: `KSWARM_TEST_DEB`, else this version's in target/debian.
fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("KSWARM_TEST_DEB") {
        return PathBuf::from(p);
    }
    let name = format!(
        "kswarm_{}-1_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch().trim()
    );
    let path = target_dir().join("debian").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with scripts/package.sh (scripts/test.sh does), \
         or name a package in KSWARM_TEST_DEB",
        path.display()
    );
    path
}

/// The -dbgsym package cargo-deb writes next to the .deb.
fn dbgsym() -> PathBuf {
    let deb = deb();
    let name = deb.file_name().unwrap().to_str().unwrap();
    let ddeb = name
        .replacen("kswarm_", "kswarm-dbgsym_", 1)
        .replace(".deb", ".ddeb");
    deb.with_file_name(ddeb)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join("target"))
}

fn arch() -> String {
    ok(Command::new("dpkg").arg("--print-architecture"))
}

/// Runs a command that must succeed; its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", output_text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"))
}

/// `dpkg-deb -c`: path -> (mode string, owner/group), directories included.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').to_string();
            (path, (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

/// The files (not directories) the package installs, with mode and owner.
const FILES: &[(&str, &str)] = &[
    ("/usr/bin/kswarm", "-rwxr-xr-x"),
    ("/usr/lib/systemd/system/kswarm.service", "-rw-r--r--"),
    ("/usr/share/man/man1/kswarm.1.gz", "-rw-r--r--"),
    (
        "/usr/share/bash-completion/completions/kswarm",
        "-rw-r--r--",
    ),
    ("/usr/share/zsh/vendor-completions/_kswarm", "-rw-r--r--"),
    (
        "/usr/share/fish/vendor_completions.d/kswarm.fish",
        "-rw-r--r--",
    ),
    ("/etc/init.d/kswarm", "-rwxr-xr-x"),
    ("/etc/default/kswarm", "-rw-r--r--"),
    ("/usr/share/doc/kswarm/copyright", "-rw-r--r--"),
    ("/usr/share/doc/kswarm/changelog.Debian.gz", "-rw-r--r--"),
    ("/usr/share/lintian/overrides/kswarm", "-rw-r--r--"),
];

fn root_owned(owner: &str) -> bool {
    owner == "0/0" || owner == "root/root"
}

#[test]
fn package_has_exactly_its_files_with_their_modes() {
    let listed = contents(&deb());
    let files: BTreeMap<&str, &(String, String)> = listed
        .iter()
        .filter(|(_, (mode, _))| !mode.starts_with('d'))
        .map(|(p, m)| (p.as_str(), m))
        .collect();
    let want: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        files.keys().copied().collect::<Vec<_>>(),
        {
            let mut w = want.clone();
            w.sort_unstable();
            w
        },
        "the package's files"
    );
    for (path, mode) in FILES {
        let (m, owner) = files[path];
        assert_eq!(m, mode, "mode of {path}");
        assert!(root_owned(owner), "owner of {path}: {owner}");
    }
    for (path, (mode, owner)) in &listed {
        assert!(root_owned(owner), "owner of {path}: {owner}");
        if mode.starts_with('d') {
            assert_eq!(mode, "drwxr-xr-x", "mode of directory {path}");
        }
    }
}

/// One field of the control file.
fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

#[test]
fn control_fields_name_the_package_its_maintainer_and_dependencies() {
    let deb = deb();
    assert_eq!(field(&deb, "Package"), "kswarm");
    assert_eq!(
        field(&deb, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(field(&deb, "Architecture"), arch().trim());
    let maint = field(&deb, "Maintainer");
    assert!(
        maint.contains('<') && maint.ends_with('>') && maint.contains('@'),
        "Maintainer: {maint}"
    );
    // cargo-deb wraps the synopsis at 80 columns: compare the words.
    let desc = field(&deb, "Description");
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words(&desc).starts_with(&words(env!("CARGO_PKG_DESCRIPTION"))),
        "Description: {desc}"
    );
    assert!(desc.lines().count() > 2, "an extended description: {desc}");
    // Depends: the C library found by dpkg-shlibdeps (a versioned libc6),
    // and adduser for the postinst.
    let depends = field(&deb, "Depends");
    let deps: Vec<&str> = depends.split(',').map(str::trim).collect();
    assert!(
        deps.iter().any(|d| d.starts_with("libc6 (>= ")),
        "Depends from shlibs: {depends}"
    );
    assert!(deps.contains(&"adduser"), "Depends: {depends}");
    assert_eq!(field(&deb, "Section"), "net");
    assert_eq!(field(&deb, "Priority"), "optional");
}

/// The control members (`dpkg-deb -e`) in a scratch directory.
fn control_dir(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(dir.path().join("DEBIAN")));
    dir
}

#[test]
fn maintainer_scripts_are_valid_sh_and_conffiles_are_listed() {
    let dir = control_dir(&deb());
    let ctl = dir.path().join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        let path = ctl.join(script);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(text.starts_with("#!/bin/sh"), "{script}: {text}");
        assert!(!text.contains("#DEBHELPER#"), "{script} kept the token");
        let out = run(Command::new("sh").arg("-n").arg(&path));
        assert!(
            out.status.success(),
            "sh -n {script}: {}",
            output_text(&out)
        );
    }
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    // cargo-deb's systemd part: not enabled on install (kswarm needs its
    // settings first), restarted on upgrade where it runs.
    // (dh_installsystemd's --no-enable: enable only what was enabled before.)
    assert!(
        postinst.contains("if deb-systemd-helper debian-installed kswarm.service; then"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke $_dh_action kswarm.service"),
        "{postinst}"
    );
    let postrm = std::fs::read_to_string(ctl.join("postrm")).unwrap();
    assert!(postrm.contains("deluser --system"), "{postrm}");
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    let mut listed: Vec<&str> = conffiles.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed, ["/etc/default/kswarm", "/etc/init.d/kswarm"]);
}

#[test]
fn lintian_finds_no_errors_or_warnings() {
    let lintian = ["/usr/bin/lintian", "/usr/local/bin/lintian"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("lintian not found: apt-get install lintian (scripts/test.sh does as root)");
    let out = run(Command::new(lintian)
        .args(["--fail-on", "error,warning", "--display-level", ">=warning"])
        .arg(deb()));
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian: {}", output_text(&out));
    assert!(out.status.success(), "lintian: {}", output_text(&out));
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("E: ") || l.starts_with("W: ")),
        "{text}"
    );
}

/// The package unpacked (`dpkg-deb -x`) into a scratch root.
fn unpacked() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(root.path()));
    root
}

#[test]
fn systemd_analyze_verifies_the_unit_as_the_package_installs_it() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect(
            "systemd-analyze not found: apt-get install systemd (scripts/test.sh does as root)",
        );
    let root = unpacked();
    let unit = root.path().join("usr/lib/systemd/system/kswarm.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("\nExecStart=/usr/bin/kswarm run\n"), "{text}");
    assert!(text.contains("\nUser=kswarm\n"), "{text}");
    assert!(text.contains("\nRuntimeDirectory=kswarm\n"), "{text}");
    assert!(
        text.contains("\nEnvironment=KSWARM_STATE_DIR=/run/kswarm\n"),
        "{text}"
    );
    // --root: the unit and its ExecStart binary are looked up in the
    // unpacked package, so a missing /usr/bin/kswarm there fails the check.
    // The rest of a system the unit refers to (sysinit.target,
    // network-online.target, /bin/kill) comes from this host.
    let units = root.path().join("usr/lib/systemd/system");
    for e in std::fs::read_dir("/usr/lib/systemd/system")
        .unwrap()
        .flatten()
    {
        let to = units.join(e.file_name());
        if e.file_type().unwrap().is_file() && !to.exists() {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).unwrap();
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.path().display()))
        .arg("kswarm.service"));
    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("kswarm"), "warnings about the unit: {err}");
}

/// The ELF sections of a binary (`readelf -S`), by name.
fn sections(bin: &Path) -> Vec<String> {
    ok(Command::new("readelf").arg("-SW").arg(bin))
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix('[')?;
            let (_, after) = rest.split_once(']')?;
            after.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

fn build_id(bin: &Path) -> String {
    let notes = ok(Command::new("readelf").arg("-n").arg(bin));
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build id in {}: {notes}", bin.display()))
        .to_string()
}

#[test]
fn binaries_are_small_and_the_symbols_are_in_the_dbgsym_package() {
    // The release binary (what `cargo install` installs): no DWARF.
    let release = support::kswarm_bin();
    let secs = sections(&release);
    assert!(
        !secs.iter().any(|s| s.starts_with(".debug_")),
        "{} has debug info: {secs:?}",
        release.display()
    );
    let root = unpacked();
    let bin = root.path().join("usr/bin/kswarm");
    let secs = sections(&bin);
    assert!(
        !secs
            .iter()
            .any(|s| s.starts_with(".debug_") || s == ".symtab"),
        "the packaged binary is not stripped: {secs:?}"
    );
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(size < 20 << 20, "packaged binary of {size} bytes");
    // Its symbols, by build id, where gdb and Rust's backtraces look.
    let id = build_id(&bin);
    let dbg = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("-x")
        .arg(dbgsym())
        .arg(dbg.path()));
    let file = dbg
        .path()
        .join("usr/lib/debug/.build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    assert!(
        file.exists(),
        "no {} in {}",
        file.display(),
        dbgsym().display()
    );
    assert!(sections(&file).iter().any(|s| s == ".symtab"));
}

#[test]
fn packaged_binary_is_this_tree_and_its_generated_files_match_it() {
    let root = unpacked();
    let bin = root.path().join("usr/bin/kswarm");
    let packaged = |args: &[&str]| ok(Command::new(&bin).args(args));
    let ours = |args: &[&str]| ok(support::kswarm().args(args));
    assert_eq!(packaged(&["--version"]), ours(&["--version"]));
    // A package older than the tree's flags shows here.
    assert_eq!(
        packaged(&["man"]),
        ours(&["man"]),
        "rebuild it: scripts/package.sh"
    );
    let man = ok(Command::new("gzip")
        .arg("-dc")
        .arg(root.path().join("usr/share/man/man1/kswarm.1.gz")));
    assert_eq!(man, ours(&["man"]));
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/kswarm"),
        ("zsh", "usr/share/zsh/vendor-completions/_kswarm"),
        ("fish", "usr/share/fish/vendor_completions.d/kswarm.fish"),
    ] {
        let text = std::fs::read_to_string(root.path().join(path)).unwrap();
        assert_eq!(text, ours(&["completions", shell]), "{path}");
    }
    let init = std::fs::read_to_string(root.path().join("etc/init.d/kswarm")).unwrap();
    assert!(init.contains("KSWARM_BIN:-/usr/bin/kswarm}"), "{init}");
    assert!(
        init.contains("\n[ -r /lib/lsb/init-functions ] && . /lib/lsb/init-functions\n"),
        "{init}"
    );
    let out = run(Command::new("sh")
        .arg("-n")
        .arg(root.path().join("etc/init.d/kswarm")));
    assert!(out.status.success(), "{}", output_text(&out));
}

/// Purges the package when the install test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "kswarm"]).output();
    }
}

fn user_entry(name: &str) -> Option<String> {
    let out = run(Command::new("getent").args(["passwd", name]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn group_exists(name: &str) -> bool {
    run(Command::new("getent").args(["group", name]))
        .status
        .success()
}

fn installed_status() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "kswarm"]));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What of the package is left on the system (empty when purged clean).
fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    for p in [
        "/usr/bin/kswarm",
        "/etc/kswarm",
        "/etc/default/kswarm",
        "/etc/init.d/kswarm",
        "/usr/lib/systemd/system/kswarm.service",
    ] {
        if Path::new(p).exists() {
            left.push(p.to_string());
        }
    }
    for dir in [
        "/etc/rc0.d",
        "/etc/rc1.d",
        "/etc/rc2.d",
        "/etc/rc3.d",
        "/etc/rc4.d",
        "/etc/rc5.d",
        "/etc/rc6.d",
        "/var/lib/systemd/deb-systemd-helper-enabled",
        "/var/lib/systemd/deb-systemd-helper-masked",
    ] {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        left.extend(
            entries
                .map(|e| e.path().display().to_string())
                .filter(|p| p.contains("kswarm")),
        );
    }
    if user_entry("kswarm").is_some() {
        left.push("user kswarm".into());
    }
    if group_exists("kswarm") {
        left.push("group kswarm".into());
    }
    left
}

#[test]
fn dpkg_installs_the_package_with_its_user_and_purges_it_clean() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/package.rs installs the package with dpkg: run it as root"
    );
    // One install test at a time on this machine (CI and a developer's run).
    let lock = std::fs::File::create("/run/lock/kswarm-package-test.lock").unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock /run/lock/kswarm-package-test.lock");
    // Never replace (and then purge) a kswarm this machine has of its own.
    assert!(
        !installed_status().contains("installed") && leftovers().is_empty(),
        "this machine has kswarm installed or left over ({}; {:?}): \
         purge it (dpkg --purge kswarm) before this test",
        installed_status(),
        leftovers()
    );

    let guard = Installed;
    let out = run(Command::new("dpkg").arg("-i").arg(deb()));
    assert!(out.status.success(), "dpkg -i: {}", output_text(&out));
    assert_eq!(installed_status(), "install ok installed");

    // The system user: no login, no home, a system uid, its own group.
    let entry = user_entry("kswarm").expect("the postinst made the kswarm user");
    let f: Vec<&str> = entry.split(':').collect();
    let uid: u32 = f[2].parse().unwrap();
    assert!(uid < 1000, "a system uid: {entry}");
    assert_eq!(f[5], "/nonexistent", "{entry}");
    assert!(f[6].ends_with("nologin"), "{entry}");
    assert_eq!(
        ok(Command::new("id").args(["-gn", "kswarm"])).trim(),
        "kswarm"
    );

    // /etc/kswarm: root:kswarm 0750, readable by kswarm and nobody else.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/etc/kswarm").unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o750);
    assert_eq!(meta.uid(), 0);
    let gid: u32 = f[3].parse().unwrap();
    assert_eq!(meta.gid(), gid);
    let as_user = |user: &str| {
        run(Command::new("runuser").args(["-u", user, "--", "ls", "/etc/kswarm"]))
            .status
            .success()
    };
    assert!(as_user("kswarm"), "kswarm reads /etc/kswarm");
    assert!(!as_user("nobody"), "nobody else does");

    let version = ok(Command::new("/usr/bin/kswarm").arg("--version"));
    assert_eq!(version, ok(support::kswarm().arg("--version")));
    // The SysV script is registered but not enabled: K links only.
    let rc2: Vec<String> = std::fs::read_dir("/etc/rc2.d")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with("kswarm"))
        .collect();
    assert!(
        !rc2.is_empty() && rc2.iter().all(|n| n.starts_with('K')),
        "/etc/rc2.d: {rc2:?}"
    );
    let st = run(Command::new("/etc/init.d/kswarm").arg("status"));
    assert_eq!(st.status.code(), Some(3), "{}", output_text(&st));

    let out = run(Command::new("dpkg").args(["--purge", "kswarm"]));
    std::mem::forget(guard);
    assert!(out.status.success(), "dpkg --purge: {}", output_text(&out));
    let status = installed_status();
    assert!(
        status.is_empty() || status.ends_with("not-installed"),
        "after the purge: {status}"
    );
    assert!(leftovers().is_empty(), "purge left {:?}", leftovers());
}
