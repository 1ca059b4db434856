//! The stream's sums over rows, recorded through the recorder like every other pass: each
//! piece reduces the 512-row blocks it completes ([`Recorder::record_block_sums`]), and the
//! end of the job sums the block partials in one tree ([`Recorder::record_block_total`]).

use super::recorder::Recorder;
use crate::error::Result;
use crate::ops::{self, Strided};
use crate::plan::REDUCE_BLOCK;

/// One per-row quantity summed over a job: where a piece's rows of it lie, and the buffer
/// of its block partials (a (sum, flags) pair a block).
pub(crate) struct BlockSum<'b> {
    pub(crate) values: Strided<'b>,
    pub(crate) partials: &'b wgpu::Buffer,
}

impl Recorder {
    /// Records the sums of the blocks from `first_block` over the `n` rows each quantity of
    /// `sums` holds from its start (whole blocks, but for the job's last), into its partials.
    pub(crate) fn record_block_sums(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        sums: &[BlockSum],
        n: u64,
        first_block: u64,
    ) -> Result<()> {
        for sum in sums {
            ops::encode_reduce_blocks(self.kernels(), encoder, sum.values, n, sum.partials, first_block)?;
        }
        Ok(())
    }

    /// Records the tree over the block partials of a job of `rows` rows in `partials`, with
    /// `scratch` as its other level, and returns the buffer whose first pair is the total.
    pub(crate) fn record_block_total<'b>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        rows: u64,
        partials: &'b wgpu::Buffer,
        scratch: &'b wgpu::Buffer,
    ) -> Result<&'b wgpu::Buffer> {
        let levels = [partials, scratch];
        ops::encode_reduce_partials(self.kernels(), encoder, rows.div_ceil(REDUCE_BLOCK), levels)?;
        Ok(levels[ops::reduce_result_index(rows)])
    }
}
