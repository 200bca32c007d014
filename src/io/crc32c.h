// The checksums of TensorBoard's record format (tensorboard.cpp); private to the library.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pix2pix::detail {

/// CRC-32C (Castagnoli polynomial, reflected, as iSCSI and TensorBoard use) of `size` bytes.
uint32_t crc32c(const void* data, size_t size);
/// TensorBoard's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace pix2pix::detail
