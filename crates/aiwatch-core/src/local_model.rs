//! Whether a local model can run on this machine now: the installed models a local runtime
//! lists, judged by their size against the free memory and the GPUs' memory handed in.

use serde::Serialize;
use serde_json::Value;

use crate::service::ServiceKind;

/// A model needs about this much more memory than its file (context, buffers).
pub const MEMORY_HEADROOM: f64 = 1.25;

const GIB: f64 = 1_073_741_824.0;

/// One model a local runtime has installed (Ollama) or loaded (LM Studio, llama.cpp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstalledModel {
    pub name: String,
    pub size_bytes: Option<u64>,
}

/// Whose GPU it is; the vendor decides which runtimes can use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuVendor {
    Nvidia,
    Amd,
    Intel,
    Other,
}

impl GpuVendor {
    /// The vendor of a PCI vendor id (`0x10de` in sysfs).
    pub fn from_pci_id(id: u16) -> Self {
        match id {
            0x10de => Self::Nvidia,
            0x1002 => Self::Amd,
            0x8086 => Self::Intel,
            _ => Self::Other,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Nvidia => "NVIDIA",
            Self::Amd => "AMD",
            Self::Intel => "Intel",
            Self::Other => "other",
        }
    }
}

/// One GPU as the machine describes it; memory is `None` where the source does not say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub vendor: GpuVendor,
    pub name: Option<String>,
    pub vram_total_bytes: Option<u64>,
    pub vram_free_bytes: Option<u64>,
}

impl Gpu {
    /// "NVIDIA GeForce RTX 4090 (20.0 of 24.0 GiB free)".
    pub fn describe(&self) -> String {
        let name = match &self.name {
            Some(n)
                if n.to_ascii_lowercase()
                    .contains(&self.vendor.title().to_ascii_lowercase()) =>
            {
                n.clone()
            }
            Some(n) => format!("{} {n}", self.vendor.title()),
            None => format!("{} GPU", self.vendor.title()),
        };
        match (self.vram_free_bytes, self.vram_total_bytes) {
            (Some(free), Some(total)) => {
                format!("{name} ({:.1} of {} free)", free as f64 / GIB, gib(total))
            }
            (None, Some(total)) => format!("{name} ({} VRAM)", gib(total)),
            _ => format!("{name} (VRAM unknown)"),
        }
    }

    /// The memory a model may use on it: what is free, else the total.
    fn usable(&self) -> Option<u64> {
        self.vram_free_bytes.or(self.vram_total_bytes)
    }
}

/// What this machine offers a local model right now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Available memory (Linux `MemAvailable`); `None` where unknown.
    pub free_memory_bytes: Option<u64>,
    pub gpus: Vec<Gpu>,
}

impl Machine {
    /// "12.3 GiB free memory; GPU: NVIDIA GeForce RTX 4090 (20.0 of 24.0 GiB free)".
    pub fn describe(&self) -> String {
        let memory = self.free_memory_bytes.map_or_else(
            || "free memory unknown".to_owned(),
            |m| format!("{} free memory", gib(m)),
        );
        let gpus = if self.gpus.is_empty() {
            "no GPU found".to_owned()
        } else {
            format!(
                "GPU: {}",
                self.gpus
                    .iter()
                    .map(Gpu::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!("{memory}; {gpus}")
    }
}

/// Where a model of a given size would run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Whole in one GPU's free memory: runs at full speed.
    Gpu,
    /// Split between a GPU and main memory: runs, slower.
    GpuAndMemory,
    /// In main memory, on the CPU: runs, slowly.
    Memory,
    /// Larger than the free memory and VRAM together: will not load, or will swap.
    TooLarge,
    /// The model's size or the free memory is not known.
    Unknown,
}

impl Fit {
    /// Whether the model can run now.
    pub fn runs(self) -> Option<bool> {
        match self {
            Self::Gpu | Self::GpuAndMemory | Self::Memory => Some(true),
            Self::TooLarge => Some(false),
            Self::Unknown => None,
        }
    }

    /// The judgement in words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Gpu => "fits in GPU memory: runs now at full speed",
            Self::GpuAndMemory => "fits across GPU and main memory: runs now, slower",
            Self::Memory => "fits in free memory: runs now on the CPU, slowly",
            Self::TooLarge => {
                "does not fit in free memory or VRAM: expect swapping or a failure to load"
            }
            Self::Unknown => "size or free memory unknown: cannot tell whether it fits",
        }
    }
}

/// Where a model of `size_bytes` would run on `machine` (with [`MEMORY_HEADROOM`]).
pub fn fit(size_bytes: Option<u64>, machine: &Machine) -> Fit {
    let Some(size) = size_bytes else {
        return Fit::Unknown;
    };
    let need = size as f64 * MEMORY_HEADROOM;
    let best_gpu = machine.gpus.iter().filter_map(Gpu::usable).max();
    if best_gpu.is_some_and(|v| v as f64 >= need) {
        return Fit::Gpu;
    }
    let Some(free) = machine.free_memory_bytes else {
        return Fit::Unknown;
    };
    if free as f64 >= need {
        return Fit::Memory;
    }
    if best_gpu.is_some_and(|v| (v + free) as f64 >= need) {
        return Fit::GpuAndMemory;
    }
    Fit::TooLarge
}

/// What a local runtime (Ollama, LM Studio, llama.cpp's server) told about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalRuntime {
    pub service: String,
    pub title: String,
    /// It answered its model list.
    pub reachable: bool,
    pub models: Vec<InstalledModel>,
    /// Why it could not be asked, when it could not.
    pub note: Option<String>,
}

/// The lines that say whether the local plan B can run now: each runtime, each of its models
/// with its size and where it fits, and what the machine offers.
pub fn readiness(runtimes: &[LocalRuntime], machine: &Machine) -> Vec<String> {
    let mut out = vec![format!("This machine: {}.", machine.describe())];
    for runtime in runtimes {
        if !runtime.reachable {
            out.push(format!(
                "{} is not running here{}.",
                runtime.title,
                runtime
                    .note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
            continue;
        }
        if runtime.models.is_empty() {
            out.push(format!(
                "{} runs here but has no model installed{}.",
                runtime.title,
                if runtime.service == "ollama" {
                    ": `ollama pull llama3.2` installs a small one"
                } else {
                    ": load one"
                }
            ));
            continue;
        }
        let runnable = runtime
            .models
            .iter()
            .filter(|m| fit(m.size_bytes, machine).runs() == Some(true))
            .count();
        out.push(format!(
            "{} runs here with {} model{} ({runnable} can run now):",
            runtime.title,
            runtime.models.len(),
            if runtime.models.len() == 1 { "" } else { "s" }
        ));
        for model in &runtime.models {
            let size = model
                .size_bytes
                .map_or_else(|| "size unknown".to_owned(), gib);
            out.push(format!(
                "  {} ({size}): {}",
                model.name,
                fit(model.size_bytes, machine).describe()
            ));
        }
    }
    out
}

/// Model names and sizes from Ollama's `/api/tags` or an OpenAI-style `/models` (LM Studio,
/// llama.cpp's server, which puts the file size under `meta.size`).
pub fn parse_model_list(kind: ServiceKind, body: &[u8]) -> Vec<InstalledModel> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let (list, name_key) = match kind {
        ServiceKind::Ollama => (value.get("models"), "name"),
        _ => (value.get("data"), "id"),
    };
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m.get(name_key)?.as_str()?.to_owned();
            let size_bytes = m
                .get("size")
                .or_else(|| m.get("meta").and_then(|meta| meta.get("size")))
                .and_then(Value::as_u64);
            Some(InstalledModel { name, size_bytes })
        })
        .collect()
}

/// Whether an installed model is the one a route names: `llama3.2` is `llama3.2:latest` in
/// Ollama; llama.cpp may report a file path.
pub fn same_model(installed: &str, wanted: &str) -> bool {
    if installed == wanted {
        return true;
    }
    if installed.strip_suffix(":latest") == Some(wanted) {
        return true;
    }
    let file = installed.rsplit(['/', '\\']).next().unwrap_or(installed);
    let stem = file.strip_suffix(".gguf").unwrap_or(file);
    stem == wanted || stem.eq_ignore_ascii_case(wanted)
}

/// Bytes as "1.9 GiB".
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn machine(free: Option<u64>, vram_free: &[u64]) -> Machine {
        Machine {
            free_memory_bytes: free,
            gpus: vram_free
                .iter()
                .map(|v| Gpu {
                    vendor: GpuVendor::Nvidia,
                    name: Some("GeForce RTX 4090".into()),
                    vram_total_bytes: Some(24 * G),
                    vram_free_bytes: Some(*v),
                })
                .collect(),
        }
    }

    #[test]
    fn a_model_runs_where_its_size_with_headroom_fits() {
        let cases = [
            // (model size, free memory, free VRAM per GPU, expected)
            (Some(2 * G), Some(16 * G), &[20 * G][..], Fit::Gpu),
            (Some(2 * G), Some(16 * G), &[][..], Fit::Memory),
            (Some(20 * G), Some(16 * G), &[10 * G][..], Fit::GpuAndMemory),
            (Some(40 * G), Some(8 * G), &[10 * G][..], Fit::TooLarge),
            (Some(2 * G), Some(2 * G), &[][..], Fit::TooLarge),
            (None, Some(16 * G), &[][..], Fit::Unknown),
            (Some(2 * G), None, &[][..], Fit::Unknown),
            (Some(2 * G), None, &[20 * G][..], Fit::Gpu),
        ];
        for (size, free, vram, expected) in cases {
            assert_eq!(
                fit(size, &machine(free, vram)),
                expected,
                "size {size:?}, free {free:?}, vram {vram:?}"
            );
        }
    }

    #[test]
    fn readiness_names_each_model_its_size_and_whether_it_fits() {
        let ollama = LocalRuntime {
            service: "ollama".into(),
            title: "Ollama".into(),
            reachable: true,
            models: vec![
                InstalledModel {
                    name: "llama3.2:latest".into(),
                    size_bytes: Some(2 * G),
                },
                InstalledModel {
                    name: "llama3.1:70b".into(),
                    size_bytes: Some(40 * G),
                },
            ],
            note: None,
        };
        let lmstudio = LocalRuntime {
            service: "lmstudio".into(),
            title: "LM Studio".into(),
            reachable: false,
            models: Vec::new(),
            note: Some("nothing answers at http://127.0.0.1:1234/v1/models".into()),
        };
        let lines = readiness(&[ollama, lmstudio], &machine(Some(8 * G), &[]));
        assert_eq!(
            lines,
            vec![
                "This machine: 8.0 GiB free memory; no GPU found.",
                "Ollama runs here with 2 models (1 can run now):",
                "  llama3.2:latest (2.0 GiB): fits in free memory: runs now on the CPU, slowly",
                "  llama3.1:70b (40.0 GiB): does not fit in free memory or VRAM: expect swapping or a failure to load",
                "LM Studio is not running here (nothing answers at http://127.0.0.1:1234/v1/models).",
            ]
        );
    }

    #[test]
    fn gpus_are_described_with_their_free_memory() {
        let gpu = &machine(None, &[20 * G]).gpus[0];
        assert_eq!(
            gpu.describe(),
            "NVIDIA GeForce RTX 4090 (20.0 of 24.0 GiB free)"
        );
        let amd = Gpu {
            vendor: GpuVendor::from_pci_id(0x1002),
            name: None,
            vram_total_bytes: Some(8 * G),
            vram_free_bytes: None,
        };
        assert_eq!(amd.describe(), "AMD GPU (8.0 GiB VRAM)");
    }

    #[test]
    fn installed_models_are_read_from_every_local_server() {
        let ollama = br#"{"models":[{"name":"llama3.2:latest","size":2019393189},{"name":"qwen2.5:0.5b","size":397821319}]}"#;
        let got = parse_model_list(ServiceKind::Ollama, ollama);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].size_bytes, Some(2_019_393_189));
        let llama_cpp = br#"{"object":"list","data":[{"id":"smollm2","object":"model","meta":{"n_params":134515008,"size":100000000}}]}"#;
        let got = parse_model_list(ServiceKind::Openai, llama_cpp);
        assert_eq!(got[0].name, "smollm2");
        assert_eq!(got[0].size_bytes, Some(100_000_000));
        assert!(parse_model_list(ServiceKind::Openai, b"<html>").is_empty());
    }

    #[test]
    fn model_names_match_the_way_local_servers_write_them() {
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(same_model(
            "/models/SmolLM2-135M-Instruct.gguf",
            "SmolLM2-135M-Instruct"
        ));
        assert!(!same_model("llama3.2:1b", "llama3.2"));
    }
}
