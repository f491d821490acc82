//! The machine: pinning processes to cores, and describing the host.

use std::process::Command;

pub fn set_affinity(tid: i32, cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; the syscall only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Pins every thread of process `pid` to `cpu`.
pub fn pin_process(pid: u32, cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let ok = !tasks.is_empty() && tasks.iter().all(|&t| set_affinity(t, cpu));
    if !ok {
        eprintln!("warning: could not pin pid {pid} to CPU {cpu}");
    }
}

/// Runs `cmd args`, returning its trimmed stdout ("" if it cannot run).
pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> String {
    let lscpu = sh("lscpu", &[]);
    let model = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Model name:"))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let hyper = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Hypervisor vendor:"))
        .map(|m| format!(", {} VM", m.trim()))
        .unwrap_or_default();
    // Not available_parallelism(): that counts only the CPUs we are pinned to.
    // SAFETY: plain sysconf query.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!(
        "{model}{hyper}, {cpus} CPUs, {mem}, Linux {}",
        sh("uname", &["-r"])
    )
}
