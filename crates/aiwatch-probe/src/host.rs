//! Reads what this machine offers a local model — free memory, GPUs and their memory — and
//! asks local runtimes which models they have; the core judges whether one can run.
//!
//! Sources, in order: `nvidia-smi` when it exists (under a deadline, its output capped), else
//! `/sys/class/drm/card*/device` (PCI vendor, AMD's `mem_info_vram_*`) and
//! `/proc/driver/nvidia/gpus/*/information`; memory from `/proc/meminfo`. The roots and the
//! `nvidia-smi` program are injectable so tests (and containers with the host's `/proc` and
//! `/sys` mounted elsewhere) can point them anywhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aiwatch_core::local_model::{parse_model_list, Gpu, GpuVendor, LocalRuntime, Machine};
use aiwatch_core::secret::ApiKey;
use aiwatch_core::Service;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::layered::{probe, ProbeContext};

/// How long `nvidia-smi` may take (it can hang on a wedged driver).
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of `nvidia-smi`'s output read (one short line per GPU).
const NVIDIA_SMI_CAP: u64 = 64 * 1024;
/// The most read of one file under /proc or /sys.
const FILE_CAP: u64 = 64 * 1024;
/// The most GPUs (DRM cards) looked at.
const MAX_CARDS: usize = 16;
/// A model list's size cap.
const MODEL_LIST_CAP: usize = 4 << 20;
const MIB: u64 = 1024 * 1024;

/// Where the machine's facts are read from.
#[derive(Clone, Debug)]
pub struct HostPaths {
    /// `/proc`.
    pub proc_root: PathBuf,
    /// `/sys`.
    pub sys_root: PathBuf,
    /// The `nvidia-smi` program: a name looked up on `PATH`, or a path.
    pub nvidia_smi: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            nvidia_smi: PathBuf::from("nvidia-smi"),
        }
    }
}

/// Free memory and GPUs, now.
pub async fn machine(paths: &HostPaths) -> Machine {
    let from_smi = nvidia_smi(&paths.nvidia_smi).await;
    let paths = paths.clone();
    let (free_memory_bytes, from_files) = tokio::task::spawn_blocking(move || {
        (
            free_memory_bytes(&paths.proc_root),
            gpus_from_files(&paths.sys_root, &paths.proc_root),
        )
    })
    .await
    .unwrap_or_default();
    // nvidia-smi knows NVIDIA cards best (free VRAM); the files add the others.
    let mut gpus = from_smi.unwrap_or_default();
    let smi_saw_nvidia = !gpus.is_empty();
    gpus.extend(
        from_files
            .into_iter()
            .filter(|g| !(smi_saw_nvidia && g.vendor == GpuVendor::Nvidia)),
    );
    Machine {
        free_memory_bytes,
        gpus,
    }
}

/// Asks a local runtime for its models (Ollama `/api/tags`, else `/models`) before `deadline`.
pub async fn local_runtime(
    ctx: &ProbeContext,
    service: &Service,
    key: Option<&ApiKey>,
    deadline: Instant,
) -> LocalRuntime {
    let mut runtime = LocalRuntime {
        service: service.name.to_string(),
        title: service.title.clone(),
        reachable: false,
        models: Vec::new(),
        note: None,
    };
    let Some(mut call) = crate::api::list_models(service, key) else {
        runtime.note = Some("no API base configured".into());
        return runtime;
    };
    call.ask.body_cap = MODEL_LIST_CAP;
    let probed = probe(
        ctx,
        aiwatch_core::evidence::Purpose::Api,
        &call.url,
        call.ask,
        None,
        deadline,
    )
    .await;
    match probed.report.http {
        Some(aiwatch_core::evidence::HttpOutcome::Response(r))
            if (200..300).contains(&r.status) =>
        {
            runtime.reachable = true;
            runtime.models = parse_model_list(service.kind, &probed.body);
        }
        Some(aiwatch_core::evidence::HttpOutcome::Response(r)) => {
            runtime.note = Some(format!("{} answered {}", call.label, r.status));
        }
        _ => runtime.note = Some(format!("nothing answers at {}", call.url)),
    }
    runtime
}

/// GPUs from `nvidia-smi`; `None` when it is not installed, fails or takes too long.
async fn nvidia_smi(program: &Path) -> Option<Vec<Gpu>> {
    let mut child = tokio::process::Command::new(program)
        .args([
            "--query-gpu=name,memory.total,memory.free",
            "--format=csv,noheader,nounits",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let run = async {
        let mut out = Vec::new();
        (&mut stdout)
            .take(NVIDIA_SMI_CAP)
            .read_to_end(&mut out)
            .await
            .ok()?;
        let status = child.wait().await.ok()?;
        status.success().then_some(out)
    };
    let out = tokio::time::timeout(NVIDIA_SMI_TIMEOUT, run).await.ok()??;
    Some(parse_nvidia_smi(&String::from_utf8_lossy(&out)))
}

/// `name, memory.total, memory.free` per line, in MiB.
fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let name = fields.next().filter(|n| !n.is_empty())?.to_owned();
            let mib = |f: Option<&str>| f?.parse::<u64>().ok().map(|m| m * MIB);
            let total = mib(fields.next());
            let free = mib(fields.next());
            Some(Gpu {
                vendor: GpuVendor::Nvidia,
                name: Some(name),
                vram_total_bytes: total,
                vram_free_bytes: free,
            })
        })
        .collect()
}

/// A small file's text, at most [`FILE_CAP`] bytes.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(FILE_CAP).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn free_memory_bytes(proc_root: &Path) -> Option<u64> {
    let text = read_small(&proc_root.join("meminfo"))?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// GPUs from `/sys/class/drm/card*/device` and NVIDIA's `/proc/driver/nvidia/gpus`.
fn gpus_from_files(sys_root: &Path, proc_root: &Path) -> Vec<Gpu> {
    let mut cards: Vec<PathBuf> = std::fs::read_dir(sys_root.join("class/drm"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            // `card0`, not its connectors (`card0-DP-1`).
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("card"))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|e| e.path().join("device"))
        .take(MAX_CARDS)
        .collect();
    cards.sort();
    let nvidia_models = nvidia_proc_models(proc_root);
    let mut nvidia_seen = 0;
    let mut gpus = Vec::new();
    for device in cards {
        let Some(vendor) = read_small(&device.join("vendor"))
            .and_then(|v| u16::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
            .map(GpuVendor::from_pci_id)
        else {
            continue;
        };
        let number = |file: &str| read_small(&device.join(file))?.trim().parse::<u64>().ok();
        let total = number("mem_info_vram_total");
        let used = number("mem_info_vram_used");
        let name = if vendor == GpuVendor::Nvidia {
            nvidia_seen += 1;
            nvidia_models.get(nvidia_seen - 1).cloned()
        } else {
            None
        };
        gpus.push(Gpu {
            vendor,
            name,
            vram_total_bytes: total,
            vram_free_bytes: total.zip(used).map(|(t, u)| t.saturating_sub(u)),
        });
    }
    // NVIDIA's driver without a DRM card (older drivers): its own /proc files.
    for model in nvidia_models.into_iter().skip(nvidia_seen) {
        gpus.push(Gpu {
            vendor: GpuVendor::Nvidia,
            name: Some(model),
            vram_total_bytes: None,
            vram_free_bytes: None,
        });
    }
    gpus
}

/// The `Model:` of each GPU under `/proc/driver/nvidia/gpus/*/information`.
fn nvidia_proc_models(proc_root: &Path) -> Vec<String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(proc_root.join("driver/nvidia/gpus"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .take(MAX_CARDS)
        .collect();
    dirs.sort();
    dirs.iter()
        .filter_map(|d| {
            let text = read_small(&d.join("information"))?;
            let line = text.lines().find(|l| l.starts_with("Model:"))?;
            Some(line.trim_start_matches("Model:").trim().to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn paths(root: &Path) -> HostPaths {
        HostPaths {
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
            nvidia_smi: root.join("no-nvidia-smi-here"),
        }
    }

    #[tokio::test]
    async fn memory_and_an_amd_card_come_from_proc_and_sys() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        write(
            root,
            "proc/meminfo",
            "MemTotal:       32768000 kB\nMemFree:         1000000 kB\nMemAvailable:   16777216 kB\n",
        );
        write(root, "sys/class/drm/card0/device/vendor", "0x1002\n");
        write(
            root,
            "sys/class/drm/card0/device/mem_info_vram_total",
            "8589934592\n",
        );
        write(
            root,
            "sys/class/drm/card0/device/mem_info_vram_used",
            "1073741824\n",
        );
        // A connector is not a card.
        write(root, "sys/class/drm/card0-DP-1/device/vendor", "0x1002\n");
        let machine = machine(&paths(root)).await;
        assert_eq!(machine.free_memory_bytes, Some(16 * (1 << 30)));
        assert_eq!(
            machine.gpus,
            vec![Gpu {
                vendor: GpuVendor::Amd,
                name: None,
                vram_total_bytes: Some(8 << 30),
                vram_free_bytes: Some(7 << 30),
            }]
        );
    }

    #[tokio::test]
    async fn an_nvidia_card_without_nvidia_smi_is_named_from_the_drivers_proc_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        write(root, "sys/class/drm/card1/device/vendor", "0x10de\n");
        write(
            root,
            "proc/driver/nvidia/gpus/0000:01:00.0/information",
            "Model: \t\t NVIDIA GeForce RTX 3060\nIRQ:   \t\t 130\n",
        );
        let machine = machine(&paths(root)).await;
        assert_eq!(machine.free_memory_bytes, None);
        assert_eq!(machine.gpus.len(), 1);
        assert_eq!(
            machine.gpus[0].name.as_deref(),
            Some("NVIDIA GeForce RTX 3060")
        );
        assert_eq!(machine.gpus[0].vram_total_bytes, None);
    }

    #[tokio::test]
    async fn nvidia_smi_gives_each_gpus_free_memory_and_a_hung_one_is_cut_off() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let script = root.join("nvidia-smi");
        write(
            root,
            "nvidia-smi",
            "#!/bin/sh\necho 'NVIDIA GeForce RTX 4090, 24564, 20480'\necho 'NVIDIA A100-SXM4-80GB, 81920, 1024'\n",
        );
        make_executable(&script);
        let mut paths = paths(root);
        paths.nvidia_smi = script.clone();
        // The driver's files name the same card; nvidia-smi's reading wins.
        write(root, "sys/class/drm/card0/device/vendor", "0x10de\n");
        let machine = machine(&paths).await;
        assert_eq!(machine.gpus.len(), 2, "{machine:?}");
        assert_eq!(machine.gpus[0].vram_free_bytes, Some(20480 * MIB));
        assert_eq!(machine.gpus[1].vram_total_bytes, Some(81920 * MIB));

        let hung = root.join("nvidia-smi-hung");
        write(root, "nvidia-smi-hung", "#!/bin/sh\nexec sleep 30\n");
        make_executable(&hung);
        let started = std::time::Instant::now();
        assert_eq!(nvidia_smi(&hung).await, None);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn nvidia_smi_lines_that_are_not_numbers_keep_the_name() {
        let gpus = parse_nvidia_smi("Tesla T4, [N/A], [N/A]\n\n");
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].vram_total_bytes, None);
    }

    fn make_executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}
