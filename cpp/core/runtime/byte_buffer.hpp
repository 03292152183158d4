// A grow-only byte buffer left uninitialized (vector::resize zero-fills every byte it adds:
// wasted work for a buffer a read is about to overwrite) that can give its memory back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace zarrcrop {

class ByteBuffer {
public:
    ByteBuffer() = default;
    ~ByteBuffer() { release(); }
    ByteBuffer(const ByteBuffer&) = delete;
    ByteBuffer& operator=(const ByteBuffer&) = delete;

    // At least n bytes; the contents are kept only when no growth is needed.
    uint8_t* get(std::size_t n) {
        if (n > capacity_) grow(n);
        return data_;
    }
    uint8_t* data() const { return data_; }
    std::size_t capacity() const { return capacity_; }
    void swap(ByteBuffer& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(capacity_, other.capacity_);
        std::swap(mapped_, other.mapped_);
    }
    // Returns the memory to the system (large buffers are mapped: munmap, not the allocator,
    // which may keep freed memory in its heap).
    void release();

private:
    void grow(std::size_t n);

    uint8_t* data_ = nullptr;
    std::size_t capacity_ = 0;
    bool mapped_ = false;
};

}  // namespace zarrcrop
