//! STUB until the matmul branch lands.
#![allow(missing_docs, dead_code)]
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::loss::DType;
pub(crate) struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub dtype: DType,
    pub row_stride: u64,
    pub col_stride: u64,
}
pub(crate) enum Init<'a> {
    Zero,
    Accumulate(&'a wgpu::Buffer, u64),
    Bias(&'a wgpu::Buffer, u64),
}
pub(crate) struct Product<'a> {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    pub c: (&'a wgpu::Buffer, u64, u64),
    pub init: Init<'a>,
    pub scale: f32,
}
pub(crate) fn record(_k: &Kernels, _e: &mut wgpu::CommandEncoder, _p: &Product) -> Result<()> {
    Err(Error::Gpu("stub".into()))
}
