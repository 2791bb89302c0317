use clap::Parser;

fn main() -> std::process::ExitCode {
    fixed_mmap_threshold();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maru: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = maru::cli::Cli::parse();
    match runtime.block_on(maru::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maru: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); after that,
/// decoded images (tens of MiB each, `crate::media`'s workers) come from the heap and stay
/// resident once freed: a release server held 787 MiB after processing 60 photos, and 62 MiB
/// with the threshold fixed at 128 KiB, where every larger block has its own mapping and goes
/// back to the system when freed (loadtest/RESULTS.md, media). `MALLOC_MMAP_THRESHOLD_` in the
/// environment still decides when set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
