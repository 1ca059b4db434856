//! Reading buffers back: `map_async` into a `futures-intrusive` channel.
//!
//! [`read`] returns a future that completes once the caller's own polling (or an event
//! loop's) has run the map callback: it never polls the device itself. [`read_blocking`]
//! polls for callers without an executor.

use futures_intrusive::channel::shared::oneshot_channel;

use crate::error::{Error, Result};

/// Copies `range` of a `MAP_READ` buffer to the host once the GPU is done with it.
///
/// The future resolves after the device is polled (`Device::poll`, or the browser's
/// event loop); it does not poll on the caller's behalf.
pub fn read(buffer: &wgpu::Buffer, range: std::ops::Range<u64>) -> impl Future<Output = Result<Vec<u8>>> + use<> {
    let (tx, rx) = oneshot_channel();
    buffer.map_async(wgpu::MapMode::Read, range.clone(), move |r| {
        // the receiver only goes away if the future was dropped: nothing to tell then
        let _ = tx.send(r);
    });
    let buffer = buffer.clone();
    async move {
        match rx.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("the map callback was dropped".into())),
        }
        let bytes = buffer.get_mapped_range(range).map_err(|e| Error::Readback(e.to_string()))?.to_vec();
        buffer.unmap();
        Ok(bytes)
    }
}

/// [`read`], polling `device` until the copy is done.
pub fn read_blocking(device: &wgpu::Device, buffer: &wgpu::Buffer, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
    let fut = read(buffer, range);
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    pollster::block_on(fut)
}
