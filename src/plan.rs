//! Launch arithmetic, pure and unit-tested without a GPU: 2-D grids past 65,535
//! workgroups, row chunks that fit `max_storage_buffer_binding_size`, aligned binding
//! windows, the lanes-per-row layout and the levels of the tree reduction.

/// Values folded by one workgroup of the reduction (`REDUCE_BLOCK` in reduce.wgsl).
pub(crate) const REDUCE_BLOCK: u64 = 512;

/// A workgroup grid `[x, y, 1]` with `x * y >= groups`, each side within `max_dim`.
///
/// Kernels recover the linear group as `x + y * num_workgroups.x` and skip groups past
/// the end, so a grid may be slightly larger than `groups`.
pub(crate) fn grid(groups: u64, max_dim: u32) -> [u32; 3] {
    if groups == 0 {
        return [0, 1, 1];
    }
    let max_dim = u64::from(max_dim.max(1));
    let x = groups.min(max_dim);
    let y = groups.div_ceil(x);
    // y <= max_dim holds for every job the chunk planner lets through
    [x as u32, y.min(max_dim) as u32, 1]
}

/// A binding of `size` bytes at `offset` (aligned) whose data starts `base` elements in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Byte offset of the binding (a multiple of the storage offset alignment).
    pub(crate) offset: u64,
    /// Bytes bound.
    pub(crate) size: u64,
    /// Element index, within the binding, where the data starts.
    pub(crate) base: u32,
}

/// The aligned binding that covers bytes `start .. start + len` of a buffer of
/// `buffer_size` bytes, for elements of `elem` bytes.
///
/// The offset is rounded down to `align` (the adapter's
/// `min_storage_buffer_offset_alignment`) and to 32 bytes, so that an element lies in the
/// same place of its octet (the kernels read rows in runs of eight) as in the buffer, and
/// a row's sums do not depend on where a window starts; the size is rounded up to a multiple of 16 (inputs are
/// read as vec4 where the binding allows), clipped to the buffer, which callers allocate
/// padded to 16 bytes; a window clipped to a size off 16 is read a word at a time.
pub(crate) fn window(start: u64, len: u64, elem: u64, align: u64, buffer_size: u64) -> Window {
    // alignments are powers of two: the larger is a multiple of both
    let align = align.max(32);
    let offset = start - start % align;
    let end = (start + len).div_ceil(16) * 16;
    let size = end.min(buffer_size).max(offset + 4) - offset;
    Window { offset, size, base: ((start - offset) / elem) as u32 }
}

/// The most rows one dispatch may take so that every input window of `row_bytes`
/// bytes per row (the largest input) fits `max_binding` bytes, at any alignment.
///
/// `cap_bytes` bounds a chunk's size for memory (the host path uploads chunk by
/// chunk); `Err` carries the number of bytes one row needs when not even one fits.
pub(crate) fn chunk_rows(rows: u64, row_bytes: u64, max_binding: u64, align: u64, cap_bytes: u64) -> Result<u64, u64> {
    // (a window's alignment, its rounding to 16 bytes, and the host's lead elements)
    let room = max_binding.saturating_sub(align + 64);
    if row_bytes > room {
        return Err(row_bytes);
    }
    let by_binding = room / row_bytes.max(1);
    let by_cap = (cap_bytes / row_bytes.max(1)).max(1);
    Ok(rows.min(by_binding).min(by_cap).max(1))
}

/// The split of `[start, end)` into consecutive chunks of at most `chunk` rows.
pub(crate) fn chunks(rows: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let chunk = chunk.max(1);
    (0..rows.div_ceil(chunk)).map(move |i| (i * chunk, chunk.min(rows - i * chunk)))
}

/// Invocations per workgroup of the row kernels (a power of two within the limit).
///
/// CPU adapters (llvmpipe) run a workgroup as SIMD vectors of the subgroup width and pay
/// for every barrier, so a workgroup there is one subgroup (8 on AVX2): measured on
/// [20000, 4096] cross-entropy, 64 invocations took 1.6x the time of 8. Elsewhere 64.
pub(crate) fn workgroup_size(device_type: wgpu::DeviceType, subgroup_min: u32, max_invocations: u32) -> u32 {
    let largest_pow2 = 1u32 << (31 - max_invocations.max(1).leading_zeros());
    let wanted = match device_type {
        wgpu::DeviceType::Cpu if subgroup_min > 0 => subgroup_min.next_power_of_two().clamp(4, 64),
        wgpu::DeviceType::Cpu => 8,
        _ => 64,
    };
    wanted.min(largest_pow2)
}

/// The most loop iterations one invocation may run on llvmpipe: it stops a shader's loops
/// after 65,535 iterations in all, silently (a row of 2^19 columns at 8 lanes came out
/// as if it had 2^17). A quarter of that leaves room for kernels with several column loops.
pub(crate) const CPU_LOOP_STEPS: u64 = 16_384;

/// Rows of fewer columns are read an element at a time: in octets aligned to the binding
/// (shaders/common/row_reduce.wgsl) up to 14 elements of a row's neighbours ride along,
/// which would double the work of a 10-column row.
pub(crate) const SHORT_COLS: u64 = 32;

/// Columns up to which a row is "short": on CPU adapters such rows go 64 to a workgroup.
pub(crate) const FEW_COLS: u64 = 64;

/// Workgroup size and lanes per row for `cols` columns, preferring workgroups of `wg`
/// (a power of two).
///
/// GPUs: few columns get one invocation per row, many rows per workgroup; otherwise the
/// lanes of a row grow with the columns up to a whole workgroup, so short rows do not
/// leave most of a workgroup idle and long rows are read by many invocations at once.
/// CPU adapters (`cpu`): one invocation per row, which llvmpipe runs as one SIMD
/// lane walking its row (measured on [8192, 4096] LSE: 59 ms against 70 ms for a row per
/// 8-wide workgroup and 91 ms for a row per 64). With a `step_cap` (llvmpipe), rows get
/// enough lanes that no lane loops more than that many times, in a larger workgroup if
/// needed (up to `max_wg`). Rows of up to [`FEW_COLS`] columns there take workgroups of
/// 64 rows: a one-lane row has no barrier, and fewer, larger workgroups halve the launch
/// cost (measured on [1048576, 10] LSE: 36 ms against 45-61 ms with workgroups of 8).
pub(crate) fn row_layout(cols: u64, wg: u32, max_wg: u32, step_cap: Option<u64>, cpu: bool) -> (u32, u32) {
    let largest = 1u32 << (31 - max_wg.max(1).leading_zeros());
    let wg = match cpu {
        true if cols <= FEW_COLS => wg.max(64).min(largest),
        _ => wg,
    };
    let mut lanes = match cpu {
        false if cols > 8 => cols.div_ceil(8).next_power_of_two().min(u64::from(wg)) as u32,
        _ => 1,
    };
    if let Some(cap) = step_cap {
        lanes = lanes.max(cols.div_ceil(cap.max(1)).next_power_of_two().min(u64::from(largest)) as u32);
    }
    (wg.max(lanes), lanes)
}

/// Row-kernel workgroups a GPU should have to run at once before rows are split.
pub(crate) const SPLIT_GROUPS: u64 = 1024;

/// Columns one part of a split row spans at least.
pub(crate) const PART_MIN_COLS: u64 = 4096;

/// Parts each row is split into (1: not split) so that few, very long rows still give a
/// GPU [`SPLIT_GROUPS`] workgroups: [64, 1048576] is 64 rows, one workgroup each
/// unsplit, which leaves most of a large GPU idle. Each part writes a partial
/// (max, sum-exp, argmax) that a second dispatch merges in a fixed order. CPU adapters
/// (`cpu`) run a few workgroups at a time and are never split.
pub(crate) fn row_parts(rows: u64, cols: u64, cpu: bool) -> u64 {
    if cpu || rows >= SPLIT_GROUPS {
        return 1;
    }
    SPLIT_GROUPS.div_ceil(rows.max(1)).min(cols / PART_MIN_COLS).max(1)
}

/// Columns per part of a row split into `parts`: even, so that a half-precision pair
/// never straddles two parts.
pub(crate) fn part_cols(cols: u64, parts: u64) -> u64 {
    cols.div_ceil(parts.max(1)).next_multiple_of(2)
}

/// Element counts of each level of the tree reduction of `n` values, down to 1.
pub(crate) fn reduce_levels(n: u64) -> Vec<u64> {
    let mut levels = vec![n];
    let mut m = n;
    while m > 1 {
        m = m.div_ceil(REDUCE_BLOCK);
        levels.push(m);
    }
    levels
}

/// Pieces of a first reduction level whose input (`stride_bytes` per value) must fit
/// `max_binding`: each piece starts on a block boundary, so the partials it writes are
/// the ones a single dispatch would write, and the result does not depend on the split.
pub(crate) fn reduce_pieces(n: u64, stride_bytes: u64, max_binding: u64, align: u64) -> Vec<(u64, u64)> {
    let per_piece = ((max_binding.saturating_sub(align + 4)) / stride_bytes / REDUCE_BLOCK).max(1) * REDUCE_BLOCK;
    chunks(n, per_piece).collect()
}

/// A device buffer of at least `bytes`, in whole 16-byte vectors: windows bind inputs as
/// vec4 ([`window`]) and never past a buffer's end.
pub(crate) fn buffer(device: &wgpu::Device, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let size = bytes.max(16).div_ceil(16) * 16;
    device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_at_the_dimension_limit() {
        assert_eq!(grid(1, 65535), [1, 1, 1]);
        assert_eq!(grid(65535, 65535), [65535, 1, 1]);
        assert_eq!(grid(65536, 65535), [65535, 2, 1]);
        assert_eq!(grid(10_000_000, 65535), [65535, 153, 1]);
        let [x, y, _] = grid(65535 * 7 + 1, 65535);
        assert!(u64::from(x) * u64::from(y) > 65535 * 7);
        assert_eq!(grid(0, 65535), [0, 1, 1]);
    }

    #[test]
    fn windows_are_aligned_and_cover_the_range() {
        for &(start, len, elem) in &[(0u64, 12u64, 4u64), (12, 12, 4), (1000, 6, 2), (255, 1, 1), (4096, 4096, 4)] {
            let w = window(start, len, elem, 256, 1 << 20);
            assert_eq!(w.offset % 256, 0);
            assert_eq!(w.size % 4, 0);
            assert!(w.offset <= start);
            assert_eq!(w.offset + u64::from(w.base) * elem, start);
            assert!(w.offset + w.size >= start + len);
        }
        // clipped to the buffer, which is padded to 4 bytes
        let w = window(8, 6, 2, 32, 16);
        assert_eq!((w.offset, w.size, w.base), (0, 16, 4));
    }

    #[test]
    fn chunks_fit_the_binding_limit() {
        let limit = 128 << 20;
        // 4097 f32 columns: 16388 bytes a row
        let c = chunk_rows(1 << 20, 16388, limit, 256, u64::MAX).unwrap();
        assert!(c * 16388 + 256 + 4 <= limit);
        assert!((c + 1) * 16388 + 256 + 4 > limit);
        // a row of 2^20 f32 columns fits 31 at a time
        assert_eq!(chunk_rows(100, 4 << 20, limit, 256, u64::MAX), Ok(31));
        // a row over the limit cannot be chunked
        assert_eq!(chunk_rows(1, limit, limit, 256, u64::MAX), Err(limit));
        // the memory cap wins when smaller, but one row always goes
        assert_eq!(chunk_rows(1000, 100, limit, 256, 1000), Ok(10));
        assert_eq!(chunk_rows(1000, 100, limit, 256, 10), Ok(1));
    }

    #[test]
    fn chunk_edges() {
        let v: Vec<_> = chunks(10, 4).collect();
        assert_eq!(v, vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(chunks(8, 4).count(), 2);
        assert_eq!(chunks(65536, 65535).collect::<Vec<_>>(), vec![(0, 65535), (65535, 1)]);
        assert_eq!(chunks(0, 4).count(), 0);
    }

    #[test]
    fn layouts() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu};
        assert_eq!(workgroup_size(DiscreteGpu, 32, 1024), 64);
        assert_eq!(workgroup_size(DiscreteGpu, 32, 48), 32);
        assert_eq!(workgroup_size(Cpu, 8, 1024), 8);
        assert_eq!(workgroup_size(Cpu, 0, 1024), 8);
        assert_eq!(workgroup_size(Cpu, 16, 1024), 16);
        assert_eq!(row_layout(1, 64, 1024, None, false), (64, 1));
        assert_eq!(row_layout(8, 64, 1024, None, false), (64, 1));
        assert_eq!(row_layout(33, 64, 1024, None, false), (64, 8));
        assert_eq!(row_layout(4096, 64, 1024, None, false), (64, 64));
        assert_eq!(row_layout(1 << 22, 64, 1024, None, false), (64, 64));
        assert_eq!(row_layout(4096, 32, 1024, None, false), (32, 32));
        let cap = Some(CPU_LOOP_STEPS);
        assert_eq!(row_layout(4096, 8, 256, cap, true), (8, 1));
        assert_eq!(row_layout(3, 8, 256, cap, true), (64, 1));
        assert_eq!(row_layout(64, 8, 256, cap, true), (64, 1));
        assert_eq!(row_layout(65, 8, 256, cap, true), (8, 1));
        assert_eq!(row_layout(3, 8, 32, cap, true), (32, 1));
        assert_eq!(row_layout(1 << 14, 8, 256, cap, true), (8, 1));
        assert_eq!(row_layout((1 << 14) + 1, 8, 256, cap, true), (8, 2));
        assert_eq!(row_layout(1 << 17, 8, 256, cap, true), (8, 8));
        assert_eq!(row_layout(1 << 20, 8, 256, cap, true), (64, 64));
        assert_eq!(row_layout((1 << 20) + 1, 8, 256, cap, true), (128, 128));
        assert_eq!(row_layout(1 << 30, 8, 256, cap, true), (256, 256));
        assert_eq!(row_layout(1 << 22, 64, 1024, cap, false), (256, 256));
        assert_eq!(row_layout(4096, 64, 1024, cap, false), (64, 64));
    }

    /// The subgroup steps of a row's tree (shaders/common/row_tree.wgsl) need a row's lanes
    /// and the workgroup to be powers of two (a row is then an aligned run of one subgroup, or
    /// whole subgroups); the shader falls back to workgroup memory alone otherwise, so a
    /// layout off that would silently lose them.
    #[test]
    fn layouts_are_powers_of_two() {
        for cols in (1..=5000).chain((12..=31).map(|p| (1u64 << p) + 1)) {
            for (wg, max_wg, cap, cpu) in
                [(64, 1024, None, false), (32, 1024, None, false), (64, 1024, Some(CPU_LOOP_STEPS), false)]
                    .into_iter()
                    .chain([(8, 256, Some(CPU_LOOP_STEPS), true), (8, 1024, Some(CPU_LOOP_STEPS), true)])
            {
                let (w, lanes) = row_layout(cols, wg, max_wg, cap, cpu);
                assert!(
                    w.is_power_of_two() && lanes.is_power_of_two() && lanes <= w && w <= max_wg,
                    "{cols}: {w} {lanes}"
                );
            }
        }
    }

    #[test]
    fn split_rows() {
        assert_eq!(row_parts(8192, 4096, false), 1);
        assert_eq!(row_parts(512, 65536, false), 2);
        assert_eq!(row_parts(64, 1 << 20, false), 16);
        assert_eq!(row_parts(1, 1 << 20, false), 256);
        assert_eq!(row_parts(1, 4095, false), 1);
        assert_eq!(row_parts(64, 1 << 20, true), 1);
        for (cols, parts) in [(1u64 << 20, 16u64), (65537, 2), (12345, 3), (8191, 1)] {
            let span = part_cols(cols, parts);
            assert_eq!(span % 2, 0);
            assert!(span * parts >= cols);
            assert!(span * (parts - 1) < cols, "every part holds a column");
        }
    }

    #[test]
    fn reduction_levels() {
        assert_eq!(reduce_levels(1), vec![1]);
        assert_eq!(reduce_levels(512), vec![512, 1]);
        assert_eq!(reduce_levels(513), vec![513, 2, 1]);
        assert_eq!(reduce_levels(10_000_000), vec![10_000_000, 19532, 39, 1]);
        let pieces = reduce_pieces(10_000, 8, 16 * 1024, 256);
        assert!(pieces.iter().all(|&(s, _)| s % REDUCE_BLOCK == 0));
        assert_eq!(pieces.iter().map(|p| p.1).sum::<u64>(), 10_000);
        assert!(pieces.len() > 1);
    }
}
