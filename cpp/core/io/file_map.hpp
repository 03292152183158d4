// Read-only mappings of chunk files, kept between reads within a byte limit.
//
// Decoding compressed blocks straight out of a mapping saves the kernel's copy of them into a
// buffer (about a tenth of the CPU time of a crop read). Only a mapping that outlives the read
// pays: mapping and unmapping per read costs as much in page faults and TLB flushes as the copy
// it saves. So mappings are cached process-wide, least recently used first out, within a limit
// on the mapped files' total size (the pages a read touches count in the process's RSS; they
// are the page cache's, shared, and clean).
//
// Safety:
// - A cached mapping is reused only for the same file (device, inode) at the same size, checked
//   with the fstat every open does anyway. The mapping is MAP_SHARED, so it sees in-place writes
//   as read() would; only a size change makes it stale.
// - A file truncated while a read is decoding from its mapping would raise SIGBUS. Reads of
//   mapped bytes run inside a MappedReadGuard; the SIGBUS handler installed with the first
//   mapping recognises a fault inside the guarded mapping, marks it damaged, maps a zero page in
//   place of the missing one and returns; the reader then throws ChunkError ("... shrank while it
//   was read"). Any other SIGBUS goes to the handler that was installed before (or the default
//   action). The handler is put back on top when another one (e.g. Python's faulthandler) has
//   replaced it since.
// - Fork: a child process starts with an empty cache (the parent's mappings stay in its address
//   space, unused); it never touches a mutex a parent thread may have held.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/fork_local.hpp"

namespace zarrcrop {

class ChunkFile;

// One file mapped read-only in full. Unmapped when the last reference goes.
class FileMapping {
public:
    FileMapping(const uint8_t* data, std::size_t size, dev_t dev, ino_t ino)
        : data_(data), size_(size), dev_(dev), ino_(ino) {}
    ~FileMapping();
    FileMapping(const FileMapping&) = delete;
    FileMapping& operator=(const FileMapping&) = delete;

    const uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool same_file(dev_t dev, ino_t ino, std::size_t size) const {
        return dev == dev_ && ino == ino_ && size == size_ && !damaged();
    }
    // True once a read hit a page past the file's end (it shrank): the mapping now holds zeros
    // there and must not be used again.
    bool damaged() const { return damaged_.load(std::memory_order_acquire); }
    void mark_damaged() { damaged_.store(true, std::memory_order_release); }

private:
    const uint8_t* data_;
    std::size_t size_;
    dev_t dev_;
    ino_t ino_;
    std::atomic<bool> damaged_{false};
};

using MappingRef = std::shared_ptr<FileMapping>;

struct MapStats {
    std::size_t limit = 0;   // bytes
    std::size_t mapped = 0;  // bytes of the files held mapped
    std::size_t files = 0;
    std::size_t hits = 0;
    std::size_t misses = 0;
};

class MappingCache {
public:
    explicit MappingCache(std::size_t limit_bytes);
    ~MappingCache();
    MappingCache(const MappingCache&) = delete;
    MappingCache& operator=(const MappingCache&) = delete;

    // A mapping of the whole file `file` belongs to (a chunk file, or the shard holding it), or
    // null when mapping is off (limit 0), the file is larger than the limit, or mmap fails (the
    // caller then reads with pread as before).
    MappingRef get(const ChunkFile& file);
    // 0 turns mapping off; lowering the limit unmaps least recently used files (each once no
    // read uses it any more).
    void set_limit(std::size_t bytes);
    std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
    void clear();
    MapStats stats();

private:
    struct State {
        std::mutex mutex;
        std::list<std::pair<std::string, MappingRef>> lru;  // front = most recent
        std::unordered_map<std::string, std::list<std::pair<std::string, MappingRef>>::iterator>
            index;
        std::size_t mapped = 0;
        std::size_t hits = 0;
        std::size_t misses = 0;
    };
    State& state() { return state_.get(); }
    static void evict_to(State& s, std::size_t limit, std::vector<MappingRef>& evicted);

    std::atomic<std::size_t> limit_;
    ForkLocal<State> state_;
};

// The process-wide cache (default limit kDefaultMapLimit).
MappingCache& process_mappings();
// 64 MiB: the slack of the memory target (peak RSS within the output, a chunk per thread and
// 64 MiB), so that mapped pages keep a reader within it whatever the dataset's size.
constexpr std::size_t kDefaultMapLimit = std::size_t{64} << 20;
// Most files held mapped at once, whatever their size (each is a kernel VMA; Linux allows
// 65530 per process by default).
constexpr std::size_t kMaxMappedFiles = 4096;

// While alive, a SIGBUS on this thread inside `m`'s bytes marks `m` damaged instead of killing
// the process (see above). Not nestable; one per thread at a time.
class MappedReadGuard {
public:
    explicit MappedReadGuard(FileMapping& m);
    ~MappedReadGuard();
    MappedReadGuard(const MappedReadGuard&) = delete;
    MappedReadGuard& operator=(const MappedReadGuard&) = delete;
};

// After reading from `m`: false if a read hit a missing page, or the file open as `fd` no
// longer has the mapped size (a truncation inside the last page reads as zeros, without
// SIGBUS; any truncation a read saw happened before this fstat).
bool mapping_intact(const FileMapping& m, int fd);

// Installs the SIGBUS handler, or puts it back on top if another handler replaced it.
void ensure_sigbus_handler();

}  // namespace zarrcrop
