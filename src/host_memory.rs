//! Host memory the device reads in place ([`SharedBytes`]).
//!
//! Where the adapter's memory is the host's (a CPU or integrated adapter) and its Vulkan
//! driver has `VK_EXT_external_memory_host`, the context opens its device with that
//! extension, and the pages of a range of host memory (a file's mapping, say) become a
//! storage buffer of their own: a file's rows reach the kernel with no copy at all. The
//! buffer keeps a reference to the memory until the device is done with it. Elsewhere
//! nothing is imported, and the stream copies rows as it always does.

use std::sync::Arc;

/// Host memory shared with the device for as long as the device reads it: a file's
/// mapping, or any bytes one owns (`Arc::new(vec)`).
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// How a device imports host memory: pointers and sizes aligned to `alignment` bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostImport {
    alignment: u64,
}

impl HostImport {
    /// Where `bytes` would start in the buffer [`import`] makes of them.
    pub(crate) fn offset(self, bytes: &[u8]) -> u64 {
        bytes.as_ptr() as u64 % self.alignment
    }
}

/// The largest import alignment taken: every page is at least this large, so the pages
/// around a byte range are mapped wherever its bytes are.
const MAX_ALIGNMENT: u64 = 4096;

/// Where `bytes` lies in one of `memory`, that memory.
pub(crate) fn holder<'m>(memory: &'m [SharedBytes], bytes: &[u8]) -> Option<&'m SharedBytes> {
    let (start, end) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
    memory.iter().find(|m| {
        let whole = (***m).as_ref();
        let lo = whole.as_ptr() as usize;
        !bytes.is_empty() && lo <= start && end <= lo + whole.len()
    })
}

#[cfg(any(windows, target_os = "linux", target_os = "android"))]
pub(crate) use vulkan::{import, open};

#[cfg(not(any(windows, target_os = "linux", target_os = "android")))]
pub(crate) fn open(_: &wgpu::Adapter, _: &wgpu::DeviceDescriptor) -> Option<(wgpu::Device, wgpu::Queue, HostImport)> {
    None
}

#[cfg(not(any(windows, target_os = "linux", target_os = "android")))]
pub(crate) fn import(_: &wgpu::Device, _: HostImport, _: &SharedBytes, _: &[u8]) -> Option<(wgpu::Buffer, u64)> {
    None
}

#[cfg(any(windows, target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
mod vulkan {
    use super::{HostImport, MAX_ALIGNMENT, SharedBytes};
    use ash::vk;
    use wgpu::hal::api::Vulkan;

    const HOST: vk::ExternalMemoryHandleTypeFlags = vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;

    /// Opens `adapter` as `desc` asks, with `VK_EXT_external_memory_host` enabled, where it
    /// is a Vulkan adapter whose driver has the extension at an alignment of at most a page;
    /// `None` otherwise (the caller then opens it the usual way).
    pub(crate) fn open(
        adapter: &wgpu::Adapter,
        desc: &wgpu::DeviceDescriptor,
    ) -> Option<(wgpu::Device, wgpu::Queue, HostImport)> {
        let name = ash::ext::external_memory_host::NAME;
        let open = {
            // SAFETY: the hal adapter is only read, and dropped before the device is made.
            let hal = unsafe { adapter.as_hal::<Vulkan>() }?;
            let (instance, physical) = (hal.shared_instance().raw_instance(), hal.raw_physical_device());
            // SAFETY: `physical` is this instance's physical device.
            let extensions = unsafe { instance.enumerate_device_extension_properties(physical) }.ok()?;
            if !extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(name)) {
                return None;
            }
            let mut host = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
            let mut properties = vk::PhysicalDeviceProperties2::default().push_next(&mut host);
            // SAFETY: Vulkan 1.1 (wgpu's minimum); the chain holds one extension structure
            // of an extension the device has.
            unsafe { instance.get_physical_device_properties2(physical, &mut properties) };
            let alignment = host.min_imported_host_pointer_alignment;
            if alignment == 0 || alignment > MAX_ALIGNMENT {
                return None;
            }
            let add = Box::new(move |args: wgpu::hal::vulkan::CreateDeviceCallbackArgs| args.extensions.push(name));
            // SAFETY: the callback only adds an extension the device lists; the features
            // and limits are the adapter's own, as `request_device` would pass them.
            let open = unsafe {
                hal.open_with_callback(desc.required_features, &desc.required_limits, &desc.memory_hints, Some(add))
            };
            (open.ok()?, alignment)
        };
        // SAFETY: the hal device was opened on this adapter with `desc`'s features.
        let (device, queue) = unsafe { adapter.create_device_from_hal::<Vulkan>(open.0, desc) }.ok()?;
        Some((device, queue, HostImport { alignment: open.1 }))
    }

    /// A storage buffer over the pages of `bytes`, which lie in `memory`, and the offset of
    /// `bytes` in it; `None` where the driver refuses (the caller then copies). The buffer
    /// holds `memory` until wgpu destroys it, after the last submission that uses it.
    pub(crate) fn import(
        device: &wgpu::Device,
        how: HostImport,
        memory: &SharedBytes,
        bytes: &[u8],
    ) -> Option<(wgpu::Buffer, u64)> {
        let start = bytes.as_ptr() as u64;
        let base = start - how.offset(bytes);
        let size = (start + bytes.len() as u64 - base).div_ceil(how.alignment) * how.alignment;
        let ptr = base as *mut std::ffi::c_void;
        let (raw, buffer, device_memory) = {
            // SAFETY: the hal device is only read, and dropped before wgpu is called again.
            let hal = unsafe { device.as_hal::<Vulkan>() }?;
            let raw = hal.raw_device().clone();
            let ext = ash::ext::external_memory_host::Device::new(hal.shared_instance().raw_instance(), &raw);
            // SAFETY: the pages `ptr .. ptr + size` are mapped: they hold bytes of `memory`
            // (alignments are at most a page), which the buffer keeps alive (below).
            let (buffer, device_memory) = unsafe { bind_host_pages(&raw, &ext, ptr, size) }?;
            (raw, buffer, device_memory)
        };
        let owner = memory.clone();
        let release = Box::new(move || {
            // SAFETY: wgpu calls this when it destroys the buffer, after the device's last
            // use of it; the memory is freed before the host memory it imported is dropped.
            unsafe {
                raw.destroy_buffer(buffer, None);
                raw.free_memory(device_memory, None);
            }
            drop(owner);
        });
        // SAFETY: `release` destroys the buffer and its memory once wgpu is done with them.
        let hal_buffer = unsafe { wgpu::hal::vulkan::Buffer::from_raw_externally_owned(buffer, release) };
        let desc = wgpu::BufferDescriptor {
            label: Some("xent host rows"),
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        };
        // SAFETY: a buffer of this device, of `size` bytes, bound to memory, with the usage
        // described; wgpu never maps it nor clears it (its contents count as written).
        let buffer = unsafe { device.create_buffer_from_hal::<Vulkan>(hal_buffer, &desc) };
        Some((buffer, how.offset(bytes)))
    }

    /// A storage buffer of `size` bytes bound to the host pages from `ptr`, and its memory;
    /// `None` (nothing left behind) where the driver refuses them.
    ///
    /// # Safety
    /// `raw` has the extension `ext` loads enabled, and `ptr .. ptr + size` is mapped host
    /// memory that outlives the buffer.
    unsafe fn bind_host_pages(
        raw: &ash::Device,
        ext: &ash::ext::external_memory_host::Device,
        ptr: *mut std::ffi::c_void,
        size: u64,
    ) -> Option<(vk::Buffer, vk::DeviceMemory)> {
        let mut host = vk::MemoryHostPointerPropertiesEXT::default();
        let get = ext.fp().get_memory_host_pointer_properties_ext;
        // SAFETY: the extension is enabled on this device, and `ptr` is mapped.
        if unsafe { get(ext.device(), HOST, ptr, &mut host) } != vk::Result::SUCCESS {
            return None;
        }
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(HOST);
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(vk::BufferUsageFlags::STORAGE_BUFFER)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .push_next(&mut external);
        // SAFETY: a valid create info on a live device.
        let buffer = unsafe { raw.create_buffer(&info, None) }.ok()?;
        // SAFETY: `buffer` was just made on `raw`.
        let types = unsafe { raw.get_buffer_memory_requirements(buffer) }.memory_type_bits & host.memory_type_bits;
        let mut from = vk::ImportMemoryHostPointerInfoEXT::default().handle_type(HOST).host_pointer(ptr);
        let allocate = vk::MemoryAllocateInfo::default()
            .allocation_size(size)
            .memory_type_index(types.trailing_zeros())
            .push_next(&mut from);
        // SAFETY: the caller's mapped pages, imported as the properties above allow.
        let memory = (types != 0).then(|| unsafe { raw.allocate_memory(&allocate, None) }.ok()).flatten();
        if let Some(memory) = memory
            // SAFETY: fresh buffer and memory of the same device, offset 0.
            && unsafe { raw.bind_buffer_memory(buffer, memory, 0) }.is_ok()
        {
            return Some((buffer, memory));
        }
        // SAFETY: neither is in use.
        unsafe {
            memory.inspect(|&m| raw.free_memory(m, None));
            raw.destroy_buffer(buffer, None);
        }
        None
    }
}
