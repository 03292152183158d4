#include "runtime/worker_scratch.hpp"

#include <sys/mman.h>

#include <new>

namespace zarrcrop {

namespace {

// Buffers this large are mapped: unmapping returns them to the system at once.
constexpr std::size_t kMapMin = std::size_t{1} << 20;

template <typename V>
void trim_vector(V& v) {
    if (v.capacity() > kKeepScratchBytes) V().swap(v);
}

}  // namespace

void ByteBuffer::grow(std::size_t n) {
    release();
    if (n >= kMapMin) {
        void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        data_ = static_cast<uint8_t*>(p);
        mapped_ = true;
    } else {
        data_ = new uint8_t[n];
        mapped_ = false;
    }
    capacity_ = n;
}

void ByteBuffer::release() {
    if (data_ != nullptr) {
        if (mapped_)
            ::munmap(data_, capacity_);
        else
            delete[] data_;
    }
    data_ = nullptr;
    capacity_ = 0;
    mapped_ = false;
}

void WorkerScratch::trim() {
    for (ByteBuffer* b : {&file, &decoded, &shuffled, &block, &compressed, &block_raw, &block_tmp,
                          &chain[0], &chain[1]})
        if (b->capacity() > kKeepScratchBytes) b->release();
    trim_vector(skip);
    trim_vector(block_mask);
}

WorkerScratch& scratch() {
    thread_local WorkerScratch s;
    return s;
}

void release_thread_scratch() {
    scratch().trim();
}

}  // namespace zarrcrop
