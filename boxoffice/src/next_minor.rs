//! `boxoffice-next-minor`: a test build, not a release. It is `boxoffice` reporting a version
//! one minor higher (`0.1.x` → `0.2.0`), so that the upgrade test runs two versions side by side
//! (`tests/upgrade.rs`) without building an older release. Nothing else differs.

fn main() -> std::process::ExitCode {
    boxoffice::main_as(node::Version::package().next_minor())
}
