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
///
/// A buffer without `MAP_READ`, a range not starting on a multiple of 8 or not a
/// multiple of 4 long, or past the end resolves to an error at once (wgpu would raise a
/// validation error).
pub fn read(buffer: &wgpu::Buffer, range: std::ops::Range<u64>) -> impl Future<Output = Result<Vec<u8>>> + use<> {
    let checked = check(buffer, &range);
    let (tx, rx) = oneshot_channel();
    if checked.is_ok() {
        buffer.map_async(wgpu::MapMode::Read, range.clone(), move |r| {
            // the receiver only goes away if the future was dropped: nothing to tell then
            let _ = tx.send(r);
        });
    }
    let buffer = buffer.clone();
    async move {
        checked?;
        match rx.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("the map callback was dropped".into())),
        }
        let mapped = buffer.get_mapped_range(range).map_err(|e| Error::Readback(e.to_string()))?;
        let bytes = crate::error::try_vec(mapped.len(), "a readback").map(|mut v| {
            v.extend_from_slice(&mapped);
            v
        });
        drop(mapped);
        buffer.unmap();
        bytes
    }
}

fn check(buffer: &wgpu::Buffer, range: &std::ops::Range<u64>) -> Result<()> {
    let bad = |detail: String| Error::Binding { name: "readback".into(), detail };
    if !buffer.usage().contains(wgpu::BufferUsages::MAP_READ) {
        return Err(bad("the buffer lacks BufferUsages::MAP_READ; copy into one that has it".into()));
    }
    if range.start > range.end || range.end > buffer.size() {
        return Err(bad(format!("range {range:?} is outside the buffer's {} bytes", buffer.size())));
    }
    if !range.start.is_multiple_of(wgpu::MAP_ALIGNMENT) || !(range.end - range.start).is_multiple_of(4) {
        return Err(bad(format!(
            "range {range:?} must start on a multiple of {} and be a multiple of 4 long",
            wgpu::MAP_ALIGNMENT
        )));
    }
    Ok(())
}

/// [`read`], polling `device` until the copy is done.
pub fn read_blocking(device: &wgpu::Device, buffer: &wgpu::Buffer, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
    let fut = read(buffer, range);
    wait(device, None)?;
    pollster::block_on(fut)
}

/// [`read_blocking`] of a buffer last written by submission `index`: waits for that
/// submission only, so that later ones (the next piece of a stream) keep the device busy
/// while the host reads this one.
pub fn read_after(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    range: std::ops::Range<u64>,
    index: wgpu::SubmissionIndex,
) -> Result<Vec<u8>> {
    let mut fut = std::pin::pin!(read(buffer, range));
    wait(device, Some(index))?;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(bytes) => bytes,
        // not mapped by that wait (a backend that maps later): wait for everything
        std::task::Poll::Pending => {
            wait(device, None)?;
            pollster::block_on(fut)
        }
    }
}

/// Waits for submission `index` (every submission: `None`).
pub(crate) fn wait(device: &wgpu::Device, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
    let how = wgpu::PollType::Wait { submission_index: index, timeout: None };
    device.poll(how).map(|_| ()).map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
}

/// A (sum, flags) word pair of the reduction as f64: the flags say NaN, `+inf` or `-inf`
/// was among the values summed.
pub(crate) fn flagged(sum_bits: u32, flags: u32) -> f64 {
    let (pos, nan, neg) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    if nan || (pos && neg) {
        f64::NAN
    } else if pos {
        f64::INFINITY
    } else if neg {
        f64::NEG_INFINITY
    } else {
        f64::from(f32::from_bits(sum_bits))
    }
}
