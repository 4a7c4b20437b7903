//! The cap arithmetic: whether an allocation stays within a share of a capacity, and how loaded a
//! host is.
//!
//! It exists so both planners, `verify` and the tests use one exact integer rule (no floating
//! point, no rounding that differs between machines). `load_ppm` above `cap_load_ppm(cap)` implies
//! the cap is already broken; the indexed planner relies on that to skip full hosts.

/// `allocated ≤ cap % of capacity`, exactly.
pub(crate) fn within_cap(allocated: u64, capacity: u64, cap_percent: u8) -> bool {
    u128::from(allocated) * 100 <= u128::from(cap_percent) * u128::from(capacity)
}

/// `vcpus ≤ cap % of cpus × overcommit`, exactly (overcommit in percent).
pub(crate) fn vcpus_within_cap(vcpus: u64, cpus: u32, overcommit_percent: u32, cap_percent: u8) -> bool {
    u128::from(vcpus) * 100 * 100 <= u128::from(cap_percent) * u128::from(cpus) * u128::from(overcommit_percent)
}

/// `numerator / denominator` in parts per million, rounded down; nothing allocated is 0 and
/// something allocated against no capacity is `u64::MAX`.
fn ppm(numerator: u128, denominator: u128) -> u64 {
    if numerator == 0 {
        return 0;
    }
    if denominator == 0 {
        return u64::MAX;
    }
    u64::try_from(numerator * 1_000_000 / denominator).unwrap_or(u64::MAX)
}

/// The utilisation of a host's busiest dimension (vCPU against overcommit, or memory), in parts
/// per million of its capacity. Independent of the policy, so hosts can stay ordered by it.
pub(crate) fn load_ppm(vcpus: u64, memory_mib: u64, cpus: u32, overcommit_percent: u32, host_memory_mib: u64) -> u64 {
    let vcpu_load = ppm(u128::from(vcpus) * 100, u128::from(cpus) * u128::from(overcommit_percent));
    let memory_load = ppm(u128::from(memory_mib), u128::from(host_memory_mib));
    vcpu_load.max(memory_load)
}

/// The load above which a host breaks a cap of `cap_percent` already, before any new VM.
pub(crate) fn cap_load_ppm(cap_percent: u8) -> u64 {
    u64::from(cap_percent) * 10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_above_the_cap_load_always_breaks_the_cap() {
        for cap in [0u8, 1, 33, 79, 80] {
            for (cpus, overcommit, memory) in [(1u32, 100u32, 1u64), (3, 150, 7), (64, 400, 262_144), (0, 100, 0)] {
                for allocated in 0..200u64 {
                    let load = load_ppm(allocated, allocated, cpus, overcommit, memory);
                    if load > cap_load_ppm(cap) {
                        let fits =
                            vcpus_within_cap(allocated, cpus, overcommit, cap) && within_cap(allocated, memory, cap);
                        assert!(!fits, "cap {cap} cpus {cpus} oc {overcommit} mem {memory} alloc {allocated}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_cap_is_inclusive() {
        assert!(within_cap(80, 100, 80));
        assert!(!within_cap(81, 100, 80));
        // 4 cpus at 2:1 = 8 vCPUs; 80 % of 8 = 6.4.
        assert!(vcpus_within_cap(6, 4, 200, 80));
        assert!(!vcpus_within_cap(7, 4, 200, 80));
    }
}
