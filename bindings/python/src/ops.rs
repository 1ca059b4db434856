//! The row operations on arrays: one function for every `Op`, the Python layer giving it
//! PyTorch's names; and the fused linear cross-entropy, whose weight stays on the device.

use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};
use xent::{Batch, Form, HeadGradientsF32, Loss, Op, OptionValue, RunOptions};

use crate::arrays::{FloatArray, LabelArray, Matrix};
use crate::backend::{Backend, CHUNK_BYTES, Context, log_base};
use crate::errors::{OrRaise, input};
use xent::CompensatedSum;

/// `op` (the library's name) with the options of `options` set on its defaults.
pub(crate) fn op_with(name: &str, options: &Bound<'_, PyDict>) -> PyResult<Op> {
    let mut op: Op = name.parse().or_raise()?;
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        let value = if value.is_none() {
            OptionValue::Index(None)
        } else if value.is_instance_of::<PyBool>() {
            OptionValue::Switch(value.extract()?)
        } else if value.is_instance_of::<PyString>() {
            match value.extract::<String>()?.as_str() {
                "logits" => OptionValue::Form(Form::Logits),
                "probs" => OptionValue::Form(Form::Probs),
                other => return Err(input(format!("{key}: {other:?} is not \"logits\" or \"probs\""))),
            }
        } else if key == "ignore_index" {
            OptionValue::Index(Some(value.extract().map_err(|_| input("ignore_index: expected an integer or None"))?))
        } else {
            let v: f64 = value.extract().map_err(|_| input(format!("{key}: expected a number")))?;
            OptionValue::Number(v as f32)
        };
        op.set(&key, value).or_raise()?;
    }
    Ok(op)
}

/// Class weights or a bias: a 1-D float array of `n` entries, as f32.
pub(crate) fn vector(name: &str, obj: &Bound<'_, PyAny>, n: usize, what: &str) -> PyResult<Vec<f32>> {
    let array = FloatArray::new(name, obj)?;
    if array.shape() != [n] {
        return Err(input(format!("{name}: expected shape ({n},), one entry per {what}, got {:?}", array.shape())));
    }
    Ok(match array.all()?.floats() {
        xent::Floats::F32(v) => v.to_vec(),
        f => (0..f.len()).map(|i| f.get(i) as f32).collect(),
    })
}

/// Runs `op` over `a` (and `b`, `labels`, `weights`, as the operation takes them), named
/// `names` in errors. Returns the sums (`sum`, `denominator`, `z_sum`, `entropy_sum`) and
/// the per-row arrays asked for (`values`: `[rows]`, softmax `[rows, cols]`; `argmax`;
/// `entropy`).
#[pyfunction]
#[pyo3(signature = (ctx, op, options, a, b=None, labels=None, weights=None, *, names, softcap=None, base="e",
                    keep_values=false, keep_argmax=false, keep_entropy=false, grad_scale=None, grad_mean=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<'py>(
    py: Python<'py>,
    ctx: &Context,
    op: &str,
    options: &Bound<'py, PyDict>,
    a: &Bound<'py, PyAny>,
    b: Option<&Bound<'py, PyAny>>,
    labels: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    names: (String, String, String, String),
    softcap: Option<f32>,
    base: &str,
    keep_values: bool,
    keep_argmax: bool,
    keep_entropy: bool,
    grad_scale: Option<f64>,
    grad_mean: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let op = op_with(op, options)?;
    let sig = op.signature();
    let first = Matrix::new(&names.0, a)?;
    let second = match (sig.second, b) {
        (Some(_), Some(b)) => Some(Matrix::new(&names.1, b)?),
        (Some(s), None) => return Err(input(format!("{}: missing ({})", names.1, s.name))),
        (None, _) => None,
    };
    if let Some(s) = &second {
        first.same_shape(s)?;
    }
    let labels = match (sig.labels, labels) {
        (true, Some(y)) => Some(LabelArray::new(&names.2, y)?),
        (true, None) => return Err(input(format!("{}: missing (class labels)", names.2))),
        (false, _) => None,
    };
    if let Some(y) = &labels
        && y.len() != first.rows
    {
        return Err(input(format!("{}: {} labels for {} rows of {}", names.2, y.len(), first.rows, names.0)));
    }
    let weights = match weights {
        Some(w) if sig.weights => Some(vector(&names.3, w, first.cols, "class")?),
        Some(_) => return Err(input(format!("{}: {} takes no class weights", names.3, op.name()))),
        None => None,
    };
    let held_a = first.array.all()?;
    let held_b = second.as_ref().map(|s| s.array.all()).transpose()?;
    let mut loss = Loss::new(op, batch(&held_a, &first)?);
    loss.softcap = softcap;
    if let (Some(h), Some(s)) = (&held_b, &second) {
        loss = loss.with_second(batch(h, s)?);
    }
    if let Some(y) = &labels {
        loss = loss.with_labels(y.range(0, first.rows)?);
    }
    if let Some(w) = &weights {
        loss = loss.with_weights(w);
    }
    let options = RunOptions { base: log_base(base)?, keep_values, keep_argmax, keep_entropy, ..Default::default() };
    let mut memory = Vec::new();
    for m in [Some(&first), second.as_ref()].into_iter().flatten() {
        memory.extend(m.shared()?);
    }
    if grad_scale.is_some() && !op.has_gradient() {
        return Err(input(format!("return_grad: {} writes no gradient of these inputs", op.name())));
    }
    let (out, grad) = py
        .detach(|| -> PyResult<_> {
            let backend = ctx.lock()?;
            let out = backend.compute(&loss, &options, &memory)?;
            let Some(scale) = grad_scale else { return Ok((out, None)) };
            // the gradient of scale · (sum, or mean over the forward's denominator)
            let scale = if grad_mean { scale / out.denominator } else { scale };
            // in the unit of the values (bits with base 2)
            let scale = (if op.takes_base() { scale * options.base.scale() } else { scale }) as f32;
            let grad = match &*backend {
                Backend::Gpu(gpu) => crate::grad::gpu(gpu, &loss, scale),
                Backend::Cpu(cpu) => crate::grad::cpu(cpu.engine(), &loss, scale),
            };
            Ok((out, Some(grad.or_raise()?)))
        })
        .map_err(|e| name_labels(py, e, &names.2))?;
    let d = PyDict::new(py);
    d.set_item("rows", out.rows)?;
    d.set_item("cols", out.cols)?;
    d.set_item("sum", out.sum)?;
    d.set_item("denominator", out.denominator)?;
    d.set_item("z_sum", out.z_sum)?;
    d.set_item("entropy_sum", out.entropy_sum)?;
    if let Some(v) = out.values {
        let array = v.into_pyarray(py);
        let shaped =
            if op.writes_rows() { array.reshape([first.rows, first.cols])?.into_any() } else { array.into_any() };
        d.set_item("values", shaped)?;
    }
    if let Some(v) = out.argmax {
        d.set_item("argmax", v.into_iter().map(i64::from).collect::<Vec<_>>().into_pyarray(py))?;
    }
    if let Some(v) = out.entropy {
        d.set_item("entropy", v.into_pyarray(py))?;
    }
    if let Some(g) = grad {
        d.set_item("grad", g.into_pyarray(py).reshape([first.rows, first.cols])?)?;
    }
    Ok(d)
}

/// The fused linear cross-entropy: `hidden` `[rows, d]`, `weight` `[classes, d]`, `labels`
/// `[rows]`, an optional `bias` `[classes]`. Returns `(sum, denominator, per-row losses)`.
#[pyfunction]
#[pyo3(signature = (ctx, hidden, weight, labels, bias=None, *, options, softcap=None, grad=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_ce<'py>(
    py: Python<'py>,
    ctx: &Context,
    hidden: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    options: &Bound<'py, PyDict>,
    softcap: Option<f32>,
    grad: bool,
) -> PyResult<(f64, f64, Bound<'py, PyAny>, Option<HeadGrads<'py>>)> {
    let op = op_with("linear-ce", options)?;
    let h = Matrix::new("hidden", hidden)?;
    let w = Matrix::new("weight", weight)?;
    if w.cols != h.cols {
        return Err(input(format!(
            "weight: shape [{}, {}] needs {} columns, as hidden [{}, {}]",
            w.rows, w.cols, h.cols, h.rows, h.cols
        )));
    }
    let y = LabelArray::new("target", labels)?;
    if y.len() != h.rows {
        return Err(input(format!("target: {} labels for {} rows of hidden", y.len(), h.rows)));
    }
    let bias = bias.map(|b| vector("bias", b, w.rows, "class")).transpose()?;
    let ignore = match op {
        Op::LinearCrossEntropy { ignore_index, .. } => ignore_index,
        _ => None,
    };
    let held_w = w.array.all()?;
    let wb = Batch::new(held_w.floats(), w.rows, w.cols).or_raise()?;
    // hidden rows a chunk: 32 MiB of them, and no more logits than a chunk's worth either
    let step = (CHUNK_BYTES / (4 * h.cols.max(w.rows))).max(1);
    let chunks: Vec<(usize, usize)> = (0..h.rows).step_by(step).map(|s| (s, step.min(h.rows - s))).collect();
    let mut held = Vec::with_capacity(chunks.len());
    for &(s, n) in &chunks {
        held.push((s, n, h.array.range(s * h.cols, (s + n) * h.cols)?, y.range(s, s + n)?));
    }
    // the whole of hidden and the labels for the backward pass, which takes every row at once
    let whole = if grad { Some((h.array.all()?, y.range(0, h.rows)?)) } else { None };
    let (values, grads) = py.detach(|| -> PyResult<(Vec<f32>, Option<HeadGradientsF32>)> {
        let backend = ctx.lock()?;
        let mut values = Vec::with_capacity(h.rows);
        match &*backend {
            Backend::Gpu(gpu) => {
                let head = gpu.head(op, softcap, &wb, bias.as_deref()).or_raise()?;
                if let Some((all, labels)) = &whole {
                    let hb = Batch::new(all.floats(), h.rows, h.cols).or_raise()?;
                    let g = head.gradient(&hb, labels).or_raise()?;
                    return Ok((g.values.clone(), Some(g)));
                }
                for (s, n, hh, yy) in &held {
                    let hb = Batch::new(hh.floats(), *n, h.cols).or_raise()?;
                    values.extend(head.run(&hb, yy, false, *s as u64).or_raise()?.values);
                }
            }
            Backend::Cpu(cpu) => {
                let head = cpu.engine().head(op, softcap, &wb, bias.as_deref()).or_raise()?;
                if let Some((all, labels)) = &whole {
                    let hb = Batch::new(all.floats(), h.rows, h.cols).or_raise()?;
                    return cpu_head_grads(&head, &hb, labels, w.rows, bias.is_some()).or_raise();
                }
                for (s, n, hh, yy) in &held {
                    let hb = Batch::new(hh.floats(), *n, h.cols).or_raise()?;
                    values.extend(head.run(&hb, yy, false, *s as u64).or_raise()?.values);
                }
            }
        }
        Ok((values, None))
    })?;
    let (mut sum, mut counted) = (CompensatedSum::default(), 0u64);
    for (i, v) in values.iter().enumerate() {
        let label = y.range(i, i + 1)?.get(0);
        if ignore != Some(label) {
            sum.add(f64::from(*v));
            counted += 1;
        }
    }
    let grads = grads.map(|g| -> PyResult<HeadGrads<'py>> {
        Ok((
            g.hidden.into_pyarray(py).reshape([h.rows, h.cols])?.into_any(),
            g.weight.into_pyarray(py).reshape([w.rows, w.cols])?.into_any(),
            g.bias.map(|b| b.into_pyarray(py).into_any()),
        ))
    });
    Ok((sum.value(), counted as f64, values.into_pyarray(py).into_any(), grads.transpose()?))
}

/// The gradients of a linear head's mean: dH, dW and db (with a bias), as NumPy arrays.
type HeadGrads<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

/// The engine's per-row losses and gradients of the mean over every row of `hidden`.
fn cpu_head_grads(
    head: &xent::cpu::CpuHead,
    hidden: &Batch,
    labels: &xent::Labels,
    classes: usize,
    with_bias: bool,
) -> xent::Result<(Vec<f32>, Option<HeadGradientsF32>)> {
    let (rows, d) = (hidden.rows, hidden.cols);
    let values = head.run(hidden, labels, false, 0)?.values;
    let zeros = |n: usize| -> xent::Result<Vec<f32>> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| xent::Error::HostMemory(format!("{n} floats of a gradient")))?;
        v.resize(n, 0.0);
        Ok(v)
    };
    let (mut dh, mut dw) = (zeros(rows * d)?, zeros(classes * d)?);
    let mut db = if with_bias { Some(zeros(classes)?) } else { None };
    let grads = xent::cpu::HeadGrads { hidden: Some(&mut dh), weight: Some(&mut dw), bias: db.as_deref_mut() };
    head.gradient(hidden, labels, xent::Reduction::Mean, 1.0, grads)?;
    Ok((values.clone(), Some(HeadGradientsF32 { hidden: dh, weight: dw, bias: db, values })))
}

/// A label error prefixed with the labels' argument name.
fn name_labels(py: Python<'_>, e: PyErr, name: &str) -> PyErr {
    let message = e.value(py).to_string();
    if e.is_instance_of::<crate::errors::XentInputError>(py)
        && message.contains(": label ")
        && message.starts_with("row ")
    {
        return input(format!("{name}: {message}"));
    }
    e
}

/// The batch of `m`'s elements `h`.
fn batch<'a>(h: &'a crate::arrays::Held, m: &Matrix) -> PyResult<Batch<'a>> {
    Batch::new(h.floats(), m.rows, m.cols).or_raise()
}
