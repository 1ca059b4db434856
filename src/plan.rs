//! Launch arithmetic, pure and unit-tested without a GPU: 2-D grids past 65,535
//! workgroups, row chunks that fit `max_storage_buffer_binding_size`, aligned binding
//! windows, the lanes-per-row layout and the levels of the tree reduction.

/// Values folded by one workgroup of the reduction (`REDUCE_BLOCK` in reduce.wgsl).
pub(crate) const REDUCE_BLOCK: u64 = 512;

/// Blocks of one workgroup of `reduce_sum_serial` (`SERIAL_WG` in reduce.wgsl).
pub(crate) const REDUCE_SERIAL_WG: u64 = 8;

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

/// The tiling of a matrix product (the overrides of shaders/matmul.wgsl): a workgroup
/// computes a `tm`×`tn` block of C from `tk`-deep tiles of A and B staged in workgroup
/// memory, each of its invocations an 8×8 block of that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tile {
    /// Rows of C per workgroup.
    pub(crate) tm: u32,
    /// Columns of C per workgroup.
    pub(crate) tn: u32,
    /// Depth of the staged tiles.
    pub(crate) tk: u32,
}

/// Elements of each staged tile (`MAX_STAGED` in matmul.wgsl).
pub(crate) const MATMUL_STAGED: u32 = 1024;

/// Rows and columns of C per invocation (the 8×8 block of matmul.wgsl).
pub(crate) const MATMUL_BLOCK: u32 = 8;

impl Tile {
    /// A tile of `tm`×`tn` by `tk`.
    pub(crate) const fn new(tm: u32, tn: u32, tk: u32) -> Self {
        Tile { tm, tn, tk }
    }

    /// The workgroup size: invocations along n, then along m.
    pub(crate) fn workgroup(self) -> (u32, u32) {
        (self.tn / MATMUL_BLOCK, self.tm / MATMUL_BLOCK)
    }

    /// Whether the shader can run it: the sides are whole blocks, each staged tile fits its
    /// array and its vectors split evenly among the invocations, which are within
    /// `max_invocations`.
    pub(crate) fn fits(self, max_invocations: u32) -> bool {
        let Tile { tm, tn, tk } = self;
        let (x, y) = self.workgroup();
        let threads = x * y;
        threads > 0
            && tk > 0
            && tm % MATMUL_BLOCK == 0
            && tn % MATMUL_BLOCK == 0
            && tm * tk <= MATMUL_STAGED
            && tk * tn <= MATMUL_STAGED
            && threads <= max_invocations
            && (tm * tk / 4) % threads == 0
            && (tk * tn / 4) % threads == 0
    }
}

/// The tiling of an `m`×`n` product where workgroups may have `max_invocations`: the
/// first that fits of 128×128 by 8 (256 invocations), 64×64 by 16 (64) and 32×32 by 16
/// (16); for a product of at most 8 rows (the bias gradient's column sums) or 8 columns, a
/// tile of that thin shape, which leaves no 120 of every 128 rows idle. On lavapipe the
/// logits product [4096, 256]·[256, 32768] ran at 3.3 GFLOP/s with 128×128 by 8, 3.3 with
/// 128×64 by 8, 3.2 with 64×64 by 16 and 1.6 with 32×32 by 16 (2 cores shared with other
/// jobs; at M = 256, 3.6, 3.3 and 3.1).
pub(crate) fn matmul_tile(max_invocations: u32, m: u64, n: u64) -> Tile {
    let candidates: &[Tile] = if m <= 8 {
        &[Tile::new(8, 128, 8), Tile::new(8, 32, 16)]
    } else if n <= 8 {
        &[Tile::new(128, 8, 8), Tile::new(32, 8, 16)]
    } else {
        &[Tile::new(128, 128, 8), Tile::new(64, 64, 16), Tile::new(32, 32, 16)]
    };
    candidates.iter().copied().find(|t| t.fits(max_invocations)).unwrap_or(Tile::new(8, 8, 16))
}

/// A matrix product's shape for [`matmul_piece`]: C is `m`×`n` over `k` terms; A and B are
/// (element bytes, stride along C's side, stride along k), strides in elements; C's rows
/// are `ldc` f32 apart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProductShape {
    /// Rows of C.
    pub(crate) m: u64,
    /// Columns of C.
    pub(crate) n: u64,
    /// Terms of each element.
    pub(crate) k: u64,
    /// A: element bytes, stride along m, stride along k.
    pub(crate) a: (u64, u64, u64),
    /// B: element bytes, stride along n, stride along k.
    pub(crate) b: (u64, u64, u64),
    /// C's row stride in elements.
    pub(crate) ldc: u64,
}

/// The most rows and columns of C one dispatch of a product may take: A's rows (over all of
/// k), B's columns, C's block and the bias each bound within `max_binding` bytes at any
/// alignment, and the grid within `max_groups` workgroups a side; rounded down to whole
/// tiles. For the binding limit a product is split along m and n only, never along k (only
/// llvmpipe's loop limit splits k: [`matmul_k_chunk`]). `Err`: a single row of A or column of B is over the
/// limit, in words that name the numbers.
pub(crate) fn matmul_piece(
    s: &ProductShape,
    tile: Tile,
    max_binding: u64,
    align: u64,
    max_groups: u32,
) -> Result<(u64, u64), String> {
    // element indices are u32 in the shader: no binding past 4 GiB
    let limit = max_binding.min(u64::from(u32::MAX));
    // (a window's alignment and its rounding to 16 bytes)
    let room = limit.saturating_sub(align.max(32) + 64);
    // the most steps of `stride` after a run of `run` elements that fit the room
    let most = |what: &str, (elem, stride, k_stride): (u64, u64, u64)| -> Result<u64, String> {
        let run = s.k.saturating_sub(1).saturating_mul(k_stride).saturating_add(1);
        let run_bytes = run.saturating_mul(elem);
        if run_bytes > room {
            return Err(format!(
                "one {what} of the product ({} terms {k_stride} elements apart, {elem}-byte elements) spans \
                 {run_bytes} bytes, over the {room} bytes a binding holds here \
                 (max_storage_buffer_binding_size {max_binding}, less alignment); sum fewer terms a \
                 product and accumulate the rest (Init::Accumulate gives the same bits)",
                s.k
            ));
        }
        Ok((room / elem - run).checked_div(stride).map_or(u64::MAX, |steps| steps + 1))
    };
    let groups = u64::from(max_groups.max(1));
    let n_len = s.n.min(most("column of B", s.b)?).min(room / 4).min(groups * u64::from(tile.tn));
    let c_rows = (room / 4 - n_len).checked_div(s.ldc).map_or(u64::MAX, |rows| rows + 1);
    let m_len = s.m.min(most("row of A", s.a)?).min(c_rows).min(groups * u64::from(tile.tm));
    let whole = |len: u64, all: u64, side: u32| {
        let side = u64::from(side);
        if len < all && len >= side { len - len % side } else { len.max(1) }
    };
    Ok((whole(m_len, s.m, tile.tm), whole(n_len, s.n, tile.tn)))
}

/// The most terms one dispatch of a product sums where the adapter stops a shader's loops
/// after `step_cap` iterations in all (llvmpipe, [`CPU_LOOP_STEPS`]); `None`: all of `k`.
/// Each tile of `tk` terms counts its own loop, the loop over its terms (one more than
/// `tk`: the exit is a step) and the two staging loops; the loops over an invocation's
/// block unroll, and those of the start and the end run once (counted as if they did not
/// unroll). Measured on lavapipe with 64×64 by 16: 18 steps a tile, where this counts 28.
/// The rest of a longer sum goes in further dispatches that accumulate, which give the
/// same bits (each element is one sum in increasing k).
pub(crate) fn matmul_k_chunk(k: u64, tile: Tile, step_cap: Option<u64>) -> u64 {
    let Some(cap) = step_cap else { return k.max(1) };
    let (x, y) = tile.workgroup();
    let threads = u64::from((x * y).max(1));
    // (each staging step loads 4 elements in a loop of its own)
    let staging = |staged: u32| 5 * (u64::from(staged / 4) / threads + 1);
    let per_tile = 1 + (u64::from(tile.tk) + 1) + staging(tile.tm * tile.tk) + staging(tile.tk * tile.tn);
    let once = 2 * 16 * 5 + 2;
    let tiles = (cap.saturating_sub(once) / per_tile).max(1);
    k.min(tiles * u64::from(tile.tk)).max(1)
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

    /// Bytes each binding of a piece of `rows`×`cols` of `s` spans (A, B, C).
    fn piece_bytes(s: &ProductShape, rows: u64, cols: u64) -> [u64; 3] {
        let run = |(elem, stride, k_stride): (u64, u64, u64), len: u64| {
            ((len - 1) * stride + (s.k - 1) * k_stride + 1) * elem
        };
        [run(s.a, rows), run(s.b, cols), 4 * ((rows - 1) * s.ldc + cols)]
    }

    #[test]
    fn matmul_pieces_fit_the_binding_limit() {
        let tile = Tile::new(128, 128, 8);
        let (limit, align) = (128u64 << 20, 256);
        let room = limit - align - 64;
        // logits [4096, 256]·[32768, 256]ᵀ: W (32 MiB) whole, C (512 MiB) in pieces of whole tiles
        let logits = ProductShape { m: 4096, n: 32768, k: 256, a: (4, 256, 1), b: (4, 256, 1), ldc: 32768 };
        assert_eq!(matmul_piece(&logits, tile, limit, align, 65535), Ok((896, 32768)));
        // dW [32768, 4096] += Gᵀ·H over 2048 rows (a row of Gᵀ spans 128 MiB less 64 KiB),
        // G [2048, 32768] and H [2048, 4096] in f16
        let dw = ProductShape { m: 32768, n: 4096, k: 2048, a: (2, 1, 32768), b: (2, 1, 4096), ldc: 4096 };
        // dH [8192, 4096] = G·W over 32768 classes, W [32768, 4096] in bf16: a column spans 256 MiB
        let dh = ProductShape { m: 8192, n: 4096, k: 32768, a: (4, 32768, 1), b: (2, 1, 4096), ldc: 4096 };
        // db = column sums of G [1024, 32768] f32: A of stride 0
        let db = ProductShape { m: 1, n: 32768, k: 1024, a: (4, 0, 0), b: (4, 1, 32768), ldc: 32768 };
        for s in [logits, dw, db] {
            let (rows, cols) = matmul_piece(&s, tile, limit, align, 65535).expect("fits");
            assert!(piece_bytes(&s, rows, cols).iter().all(|&b| b <= room), "{s:?}: {rows}x{cols}");
            assert!(rows == s.m || rows % 128 == 0, "{s:?}: {rows}");
            assert!(cols == s.n || cols % 128 == 0, "{s:?}: {cols}");
        }
        let e = matmul_piece(&dh, tile, limit, align, 65535).expect_err("a column of W over 128 MiB");
        assert!(e.contains("column of B") && e.contains("268427266 bytes"), "{e}");
        // strides of 0 limit nothing; the grid does
        let ones = ProductShape { m: 1 << 30, n: 1 << 30, k: 5, a: (4, 0, 0), b: (4, 0, 0), ldc: 0 };
        let wide = ProductShape { m: 1, ..ones };
        assert_eq!(matmul_piece(&wide, tile, limit, align, 3), Ok((1, 384)));
        // a 4 KiB limit (944 f32 a binding): B's 300 columns fit, 3 rows of C 302 apart, which
        // stay 3 (under a tile, nothing to round to)
        let small = ProductShape { m: 37, n: 300, k: 3, a: (4, 3, 1), b: (4, 1, 300), ldc: 302 };
        let (rows, cols) = matmul_piece(&small, tile, 4096, 256, 65535).expect("fits");
        assert_eq!((rows, cols), (3, 300));
        assert!(piece_bytes(&small, rows + 1, cols)[2] > 4096 - 256 - 64);
    }

    #[test]
    fn matmul_tiles() {
        assert_eq!(matmul_tile(1024, 4096, 4096), Tile::new(128, 128, 8));
        assert_eq!(matmul_tile(128, 4096, 4096), Tile::new(64, 64, 16));
        assert_eq!(matmul_tile(32, 4096, 4096), Tile::new(32, 32, 16));
        assert_eq!(matmul_tile(256, 1, 4096), Tile::new(8, 128, 8));
        assert_eq!(matmul_tile(256, 4096, 8), Tile::new(128, 8, 8));
        assert_eq!(matmul_tile(1, 4096, 4096), Tile::new(8, 8, 16));
        for t in [Tile::new(128, 128, 8), Tile::new(8, 128, 8), Tile::new(128, 8, 8), Tile::new(8, 8, 16)] {
            assert!(t.fits(256), "{t:?}");
        }
        // too deep for the staged arrays, or staging not split evenly
        assert!(!Tile::new(128, 128, 16).fits(1024));
        assert!(!Tile::new(128, 128, 2).fits(1024));
        assert!(!Tile::new(12, 64, 8).fits(1024));
    }

    #[test]
    fn matmul_k_chunks_under_the_loop_limit() {
        let tile = Tile::new(128, 128, 8);
        assert_eq!(matmul_k_chunk(1 << 30, tile, None), 1 << 30);
        assert_eq!(matmul_k_chunk(0, tile, None), 1);
        let chunk = matmul_k_chunk(1 << 30, tile, Some(CPU_LOOP_STEPS));
        assert_eq!(chunk % 8, 0);
        // 18 steps a tile of 16 measured on lavapipe (of 65,535 in all): well within
        assert!(chunk / 8 * 18 < 65_535 / 2, "{chunk}");
        assert_eq!(matmul_k_chunk(100, tile, Some(CPU_LOOP_STEPS)), 100);
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
