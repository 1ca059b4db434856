//! `xent info`: the adapters wgpu finds, the best one's limits and features, and the CPU
//! engine's instruction set and threads.

use serde_json::{Value, json};
use xent::Context;

use crate::Failure;

pub fn info(as_json: bool) -> Result<(), Failure> {
    let adapters: Vec<Value> = xent::context::adapters(None)
        .iter()
        .map(|a| {
            let i = a.get_info();
            json!({"name": i.name, "backend": format!("{:?}", i.backend), "type": format!("{:?}", i.device_type)})
        })
        .collect();
    let engine = xent::cpu::Engine::new();
    let engine_line = json!({"adapter": engine.label(), "simd": engine.simd(), "threads": engine.threads()});
    let ctx = match Context::new_blocking() {
        Ok(ctx) => ctx,
        Err(e) => {
            // no adapter at all: the commands run on the engine
            let line = json!({"command": "info", "adapters": adapters, "auto": null, "engine": engine_line});
            if as_json {
                return crate::process::emit(line);
            }
            return crate::process::emit(format!("adapters: none ({e})\nauto picks: {}", engine.label()));
        }
    };
    let (l, f, i) = (ctx.device().limits(), ctx.device().features(), ctx.adapter().get_info());
    let picked = json!({
        "adapter": ctx.adapter_label(),
        "driver": format!("{} {}", i.driver, i.driver_info),
        "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
        "max_buffer_size": l.max_buffer_size,
        "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
        "min_storage_buffer_offset_alignment": l.min_storage_buffer_offset_alignment,
        "shader_f16": f.contains(wgpu::Features::SHADER_F16),
        "subgroups": f.contains(wgpu::Features::SUBGROUP),
        "subgroup_sizes": [i.subgroup_min_size, i.subgroup_max_size],
        "timestamp_query": f.contains(wgpu::Features::TIMESTAMP_QUERY),
        "mappable_storage": f.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
        "shader_checks": ctx.recorder().shader_checks(),
        // the row kernels' layout: pinned (XENT_LAYOUT), or the rule's for [8192, 4096]
        "layout_pinned": ctx.recorder().layout().map(|l| l.to_string()),
        "layout_8192x4096": ctx.recorder().layout_for(8192, 4096).to_string(),
        // the tuner: off, cached or on (XENT_TUNE), and where its choices are kept
        "tune": format!("{:?}", ctx.tune_mode()).to_lowercase(),
        "tune_cache": xent::tune_cache_path().map(|p| p.display().to_string()),
    });
    if as_json {
        let line = json!({"command": "info", "adapters": adapters, "auto": picked, "engine": engine_line});
        return crate::process::emit(line);
    }
    let mut text = String::from("adapters:");
    for a in &adapters {
        text += &format!("\n  {} ({}, {})", a["name"].as_str().unwrap_or(""), a["backend"], a["type"]);
    }
    text += &format!("\nthe best adapter: {}", ctx.adapter_label());
    if let Value::Object(fields) = picked {
        for (k, v) in fields.iter().filter(|(k, _)| *k != "adapter") {
            text += &format!("\n  {k}: {v}");
        }
    }
    text += &format!("\ncpu engine: {}", engine.label());
    text += "\n--device auto takes a real GPU, else the cpu engine";
    crate::process::emit(text)
}
