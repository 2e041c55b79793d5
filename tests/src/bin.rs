//! Locating (and if needed building) the workspace's binaries for process-level tests.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path to the `guardctl` binary of this workspace, built on first use if the
/// test run did not build it already (e.g. `cargo test -p guardian-tests`).
pub fn guardctl() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Test executables live in <target>/<profile>/deps/; binaries one level up.
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir").to_path_buf();
        let bin = profile_dir.join(format!("guardctl{}", std::env::consts::EXE_SUFFIX));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // Same package/target selection as the README's `cargo test --workspace --all-targets`,
        // so features unify identically and this is a no-op after that command's build
        // (building `-p guardctl` alone would recompile shared crates with other features).
        build.args(["build", "-q", "--workspace", "--all-targets"]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        // Always ask cargo: it is a no-op when the binary is fresh, and avoids testing a stale one.
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --all-targets failed");
        assert!(bin.exists(), "guardctl not found at {}", bin.display());
        bin
    })
    .clone()
}

/// Run `guardctl` with arguments; returns its output (never panics on non-zero exit).
pub fn run_guardctl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(guardctl()).args(args).output().expect("spawn guardctl")
}
