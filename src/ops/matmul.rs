//! The matrix product of shaders/matmul.wgsl on the host, the building block of the fused
//! linear cross-entropy (logits = H·Wᵀ + b, dH = G·W, dW += Gᵀ·H, db += column sums of G):
//! a [`Product`] is checked against its buffers, split into dispatches that fit the
//! device's limits, and recorded into the caller's encoder. Nothing here submits.
//!
//! Every element of C is one f32 sum in increasing k (see the shader), so how a product is
//! split along m and n does not change its bits, and a split along k into accumulating
//! dispatches does not either: a product is split along k only where llvmpipe's loop limit
//! asks ([`crate::plan::matmul_k_chunk`]), never for the binding limit.

#[cfg(test)]
mod tests;

use wgpu::util::DeviceExt;

use super::{Bound, bind_group};
use crate::error::{Error, Result};
use crate::kernels::{Binding, Kernel, Kernels, MatmulKey, MatmulParams, binding, matmul_init};
use crate::loss::DType;
use crate::plan::{self, ProductShape, Tile};

/// A or B: element (r, c) is element `offset / size + r·row_stride + c·col_stride` of
/// `buffer`, any stride 0 allowed (a stride-0 A over a 1.0 sums B's columns).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<'a> {
    /// The buffer (`STORAGE`).
    pub(crate) buffer: &'a wgpu::Buffer,
    /// Byte offset of element (0, 0), a multiple of the element size.
    pub(crate) offset: u64,
    /// Element type.
    pub(crate) dtype: DType,
    /// Elements from one row to the next: along m for A, along k for B.
    pub(crate) row_stride: u64,
    /// Elements from one column to the next: along k for A, along n for B.
    pub(crate) col_stride: u64,
}

/// C, f32: element (m, n) at byte `offset + 4·(m·row_stride + n)` of `buffer`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output<'a> {
    /// The buffer (`STORAGE`), none of the operands' or the bias's.
    pub(crate) buffer: &'a wgpu::Buffer,
    /// Byte offset of C[0, 0], a multiple of 4.
    pub(crate) offset: u64,
    /// Elements from one row to the next, at least `n` (rows may not overlap).
    pub(crate) row_stride: u64,
}

/// What C starts from before the sum.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Init<'a> {
    /// Zero: `C = scale · A·B`.
    Zero,
    /// C's own values: `C = scale · (C + A·B)`.
    Accumulate,
    /// An f32 bias per column, at byte `offset` (a multiple of 4) of `buffer`:
    /// `C = scale · (bias + A·B)`.
    Bias {
        /// The buffer (`STORAGE`).
        buffer: &'a wgpu::Buffer,
        /// Byte offset of column 0's bias.
        offset: u64,
    },
}

/// `C[m, n] = scale · (init(m, n) + Σ_{k < K} A(m, k) · B(k, n))` for an `m`×`n` C.
///
/// A product of `k = k1 + k2` terms gives the bits of two: the first `k1` terms with the
/// same init and scale 1, then the rest (operands offset past the first `k1`) with
/// [`Init::Accumulate`] and the scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product<'a> {
    /// Rows of C.
    pub(crate) m: u64,
    /// Columns of C.
    pub(crate) n: u64,
    /// Terms of each element (0: C is its init, scaled).
    pub(crate) k: u64,
    /// A, `m`×`k`.
    pub(crate) a: Operand<'a>,
    /// B, `k`×`n`.
    pub(crate) b: Operand<'a>,
    /// C, `m`×`n`.
    pub(crate) c: Output<'a>,
    /// What C starts from.
    pub(crate) init: Init<'a>,
    /// Factor on `init + Σ` (1: none).
    pub(crate) scale: f32,
}

/// Records `p` into `encoder` with the device's tiling for its shape
/// ([`Kernels::matmul_tile`]).
pub(crate) fn record(kernels: &Kernels, encoder: &mut wgpu::CommandEncoder, p: &Product) -> Result<()> {
    record_tiled(kernels, encoder, p, kernels.matmul_tile(p.m, p.n))
}

/// Records `p` into `encoder` with workgroups of `tile` (any tile gives the same bits: each
/// element's sum is the same).
pub(crate) fn record_tiled(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    p: &Product,
    tile: Tile,
) -> Result<()> {
    check(p)?;
    if p.m == 0 || p.n == 0 {
        return Ok(());
    }
    let device = kernels.device();
    let limits = device.limits();
    let align = u64::from(limits.min_storage_buffer_offset_alignment);
    let (ae, be) = (p.a.dtype.size() as u64, p.b.dtype.size() as u64);
    let shape = ProductShape {
        m: p.m,
        n: p.n,
        k: p.k,
        a: (ae, p.a.row_stride, p.a.col_stride),
        b: (be, p.b.col_stride, p.b.row_stride),
        ldc: p.c.row_stride,
    };
    let (rows, cols) = plan::matmul_piece(
        &shape,
        tile,
        limits.max_storage_buffer_binding_size,
        align,
        limits.max_compute_workgroups_per_dimension,
    )
    .map_err(Error::TooLarge)?;
    let pipeline = kernels.matmul_pipeline(MatmulKey { a: p.a.dtype, b: p.b.dtype, tile })?;
    let mut pass =
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("xent matmul"), timestamp_writes: None });
    pass.set_pipeline(&pipeline);
    // a product of no terms still writes its init, scaled
    let terms: Vec<(u64, u64)> =
        if p.k == 0 { vec![(0, 0)] } else { plan::chunks(p.k, kernels.matmul_k_chunk(p.k, tile)).collect() };
    for (m0, m_len) in plan::chunks(p.m, rows) {
        for (n0, n_len) in plan::chunks(p.n, cols) {
            for (i, &(k0, k_len)) in terms.iter().enumerate() {
                let piece = Piece { m0, m_len, n0, n_len, k0, k_len, first: i == 0, last: i + 1 == terms.len() };
                let group = piece_group(kernels, p, &piece, align)?;
                let x = n_len.div_ceil(u64::from(tile.tn)) as u32;
                let y = m_len.div_ceil(u64::from(tile.tm)) as u32;
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
    }
    Ok(())
}

/// Rows `m0..m0 + m_len`, columns `n0..n0 + n_len` and terms `k0..k0 + k_len` of C: one
/// dispatch, which starts from the product's init when `first` (else accumulates) and
/// applies its scale when `last`.
struct Piece {
    m0: u64,
    m_len: u64,
    n0: u64,
    n_len: u64,
    k0: u64,
    k_len: u64,
    first: bool,
    last: bool,
}

/// Bytes of `len` steps of `stride` after a run of `run` steps of `run_stride` elements of
/// `elem` bytes (0 when either count is 0); a stride of a single step is never taken.
fn span(len: u64, stride: u64, run: u64, run_stride: u64, elem: u64) -> u64 {
    if len == 0 || run == 0 {
        return 0;
    }
    ((len - 1) * stride + (run - 1) * run_stride + 1) * elem
}

/// The bind group of one piece: each binding from its aligned-down window, the element
/// bases and the piece's shape in a uniform of its own.
fn piece_group(kernels: &Kernels, p: &Product, piece: &Piece, align: u64) -> Result<wgpu::BindGroup> {
    let Piece { m0, m_len, n0, n_len, k0, k_len, .. } = *piece;
    let (ae, be) = (p.a.dtype.size() as u64, p.b.dtype.size() as u64);
    // strides of a single step are set to 0, so every stride in the uniform is within its binding
    let one = |len: u64, stride: u64| if len > 1 { stride } else { 0 };
    let (a_sm, a_sk) = (one(m_len, p.a.row_stride), one(k_len, p.a.col_stride));
    let (b_sk, b_sn) = (one(k_len, p.b.row_stride), one(n_len, p.b.col_stride));
    let ldc = one(m_len, p.c.row_stride);
    let a_start = if k_len == 0 { 0 } else { p.a.offset + (m0 * p.a.row_stride + k0 * p.a.col_stride) * ae };
    let b_start = if k_len == 0 { 0 } else { p.b.offset + (k0 * p.b.row_stride + n0 * p.b.col_stride) * be };
    let a = plan::window(a_start, span(m_len, a_sm, k_len, a_sk, ae), ae, align, p.a.buffer.size());
    let b = plan::window(b_start, span(n_len, b_sn, k_len, b_sk, be), be, align, p.b.buffer.size());
    let c_start = p.c.offset + 4 * (m0 * p.c.row_stride + n0);
    let c = plan::window(c_start, span(m_len, ldc, n_len, 1, 4), 4, align, p.c.buffer.size());
    // the bias, or A again where there is none (read-only twice is allowed)
    let (init, bias) = match p.init {
        _ if !piece.first => (matmul_init::ACCUMULATE, Bound { buffer: p.a.buffer, window: a }),
        Init::Zero => (matmul_init::ZERO, Bound { buffer: p.a.buffer, window: a }),
        Init::Accumulate => (matmul_init::ACCUMULATE, Bound { buffer: p.a.buffer, window: a }),
        Init::Bias { buffer, offset } => {
            let window = plan::window(offset + 4 * n0, 4 * n_len, 4, align, buffer.size());
            (matmul_init::BIAS, Bound { buffer, window })
        }
    };
    let params = MatmulParams {
        m: m_len as u32,
        n: n_len as u32,
        k: k_len as u32,
        init,
        a_base: a.base,
        a_sm: a_sm as u32,
        a_sk: a_sk as u32,
        b_base: b.base,
        b_sk: b_sk as u32,
        b_sn: b_sn as u32,
        c_base: c.base,
        ldc: ldc as u32,
        bias_base: bias.window.base,
        scale: if piece.last { p.scale } else { 1.0 },
        ..Default::default()
    };
    let uniform = kernels.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("xent matmul params"),
        contents: bytemuck::bytes_of(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let (a, b, c) = (
        Bound { buffer: p.a.buffer, window: a },
        Bound { buffer: p.b.buffer, window: b },
        Bound { buffer: p.c.buffer, window: c },
    );
    let resource = |slot: Binding| match slot {
        binding::MATMUL_PARAMS => Ok(uniform.as_entire_binding()),
        binding::MATMUL_A => Ok(a.resource()),
        binding::MATMUL_B => Ok(b.resource()),
        binding::MATMUL_BIAS => Ok(bias.resource()),
        binding::MATMUL_C => Ok(c.resource()),
        _ => Err(Error::Gpu(format!("matmul: binding {} is not the product's", slot.index))),
    };
    bind_group(kernels, Kernel::Matmul, resource)
}

/// The product's arguments against each other and their buffers: usages, alignment,
/// every element within its buffer, C in a buffer of its own with rows that do not overlap,
/// and counts within the shader's u32 indices.
fn check(p: &Product) -> Result<()> {
    let bad = |name: &str, detail: String| Error::Binding { name: format!("matmul {name}"), detail };
    let storage = |name: &str, buffer: &wgpu::Buffer| {
        if buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            Ok(())
        } else {
            Err(bad(name, "the buffer lacks BufferUsages::STORAGE".into()))
        }
    };
    for (name, o, len, run) in [("A", &p.a, p.m, p.k), ("B", &p.b, p.k, p.n)] {
        storage(name, o.buffer)?;
        let elem = o.dtype.size() as u64;
        if !o.offset.is_multiple_of(elem) {
            return Err(bad(name, format!("offset {} is not a multiple of the {elem}-byte element", o.offset)));
        }
        // the last element read, in u128 so that no stride overflows
        let end = if len == 0 || run == 0 {
            0
        } else {
            let last = u128::from(len - 1) * u128::from(o.row_stride) + u128::from(run - 1) * u128::from(o.col_stride);
            u128::from(o.offset) + (last + 1) * u128::from(elem)
        };
        if end > u128::from(o.buffer.size()) {
            return Err(bad(name, format!("reads up to byte {end}, past the buffer's {} bytes", o.buffer.size())));
        }
    }
    storage("C", p.c.buffer)?;
    if !p.c.offset.is_multiple_of(4) {
        return Err(bad("C", format!("offset {} is not a multiple of 4", p.c.offset)));
    }
    if p.m > 1 && p.c.row_stride < p.n {
        let detail = format!("row stride {} under the {} columns: rows would overlap", p.c.row_stride, p.n);
        return Err(Error::Shape { what: "matmul C", detail });
    }
    let c_end = if p.m == 0 || p.n == 0 {
        0
    } else {
        u128::from(p.c.offset) + 4 * (u128::from(p.m - 1) * u128::from(p.c.row_stride) + u128::from(p.n))
    };
    if c_end > u128::from(p.c.buffer.size()) {
        return Err(bad("C", format!("writes up to byte {c_end}, past the buffer's {} bytes", p.c.buffer.size())));
    }
    let mut inputs = vec![("A", p.a.buffer), ("B", p.b.buffer)];
    if let Init::Bias { buffer, offset } = p.init {
        storage("bias", buffer)?;
        if !offset.is_multiple_of(4) || offset + 4 * p.n > buffer.size() {
            let detail =
                format!("{} f32 from byte {offset} do not fit the buffer's {} bytes aligned", p.n, buffer.size());
            return Err(bad("bias", detail));
        }
        inputs.push(("bias", buffer));
    }
    if let Some((name, _)) = inputs.iter().find(|(_, b)| *b == p.c.buffer) {
        let detail = format!("C is in {name}'s buffer: a dispatch cannot read and write one buffer; use another");
        return Err(bad("C", detail));
    }
    if p.k > u64::from(u32::MAX) {
        return Err(Error::TooLarge(format!("matmul: {} terms, over the {} one product takes", p.k, u32::MAX)));
    }
    Ok(())
}
