//! `xent info`: the adapters wgpu finds, the one `auto` picks, its limits and features.

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
    let ctx = Context::new_blocking()?;
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
    });
    if as_json {
        return crate::process::emit(json!({"command": "info", "adapters": adapters, "auto": picked}));
    }
    let mut text = String::from("adapters:");
    for a in &adapters {
        text += &format!("\n  {} ({}, {})", a["name"].as_str().unwrap_or(""), a["backend"], a["type"]);
    }
    text += &format!("\nauto picks: {}", ctx.adapter_label());
    if let Value::Object(fields) = picked {
        for (k, v) in fields.iter().filter(|(k, _)| *k != "adapter") {
            text += &format!("\n  {k}: {v}");
        }
    }
    crate::process::emit(text)
}
