//! CPU time and peak memory of a process, for `dissent bench`.
//!
//! Read from `/proc` on Linux (the `procfs` crate). Other systems report them unavailable
//! (`None`), and the benchmark prints and writes them as such.

/// CPU seconds (user plus system, all threads) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    imp::cpu_seconds(pid)
}

/// Peak resident memory of process `pid` in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    imp::peak_rss(pid)
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn cpu_seconds(pid: u32) -> Option<f64> {
        let p = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
        let stat = p.stat().ok()?;
        let tps = procfs::ticks_per_second() as f64;
        Some((stat.utime + stat.stime) as f64 / tps)
    }

    pub fn peak_rss(pid: u32) -> Option<u64> {
        procfs::process::Process::new(i32::try_from(pid).ok()?)
            .ok()?
            .status()
            .ok()?
            .vmhwm
            .map(|kb| kb * 1024)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn cpu_seconds(_pid: u32) -> Option<f64> {
        None
    }

    pub fn peak_rss(_pid: u32) -> Option<u64> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_memory() {
        let me = std::process::id();
        // Spend CPU time until the counter (in clock ticks) moves; bounded.
        let mut x = 0u64;
        for round in 0..1000u64 {
            if cpu_seconds(me).unwrap() > 0.0 {
                break;
            }
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i ^ round);
            }
            std::hint::black_box(x);
        }
        assert!(cpu_seconds(me).unwrap() > 0.0);
        assert!(peak_rss(me).unwrap() > 0);
        assert_eq!(cpu_seconds(0), None);
        assert_eq!(peak_rss(u32::MAX), None);
    }
}
