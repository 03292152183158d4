// Byte ranges of remote objects fetched ahead of the reads that will need them (prefetch on an
// object store): held in memory until a read takes them, or evicted oldest first. A fetch that
// such a range covers is answered from memory; one that a fetch still in flight covers waits
// for it instead of asking the store again. A read may ask for the same bytes more than once
// (a first read, then a window of it): a range a read took bytes from is "spent". Unless one of
// the last kAskedFor prefetches asked for it too (consecutive batches that share a chunk:
// CropLoader asks for batch i + 1 before batch i is read), it is kept for kSpentFor at most,
// evicted first, and dropped when a later prefetch starts (sweep): bytes fetched ahead serve the
// reads they were fetched for, they are not a cache of chunks. A range that arrived more than
// kHeldFor ago is dropped, read or not (a read answered from it must not see an object older
// than that). One per process, keyed by URL, at most kPrefetchHoldBytes; a forked child starts
// empty (the parent's fetches in flight have no thread there).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "io/object_source.hpp"
#include "runtime/fork_local.hpp"

namespace zarrcrop {

// How long fetched-ahead bytes may wait for their read, and stay once it took them.
constexpr std::chrono::seconds kHeldFor{30};
constexpr std::chrono::seconds kSpentFor{2};
// Bytes held fetched ahead in a process at most (prefetch): a few batches of crops.
constexpr std::size_t kPrefetchHoldBytes = 256u << 20;
// A spent range survives the sweeps of this many prefetches after the last that asked for it:
// CropLoader asks for two batches ahead (i + 2, then i + 1) before it reads batch i.
constexpr uint64_t kAskedFor = 2;

class PrefetchedBytes {
public:
    explicit PrefetchedBytes(std::size_t limit) : limit_(limit) {}

    // What covers [offset, offset + len) of `key`.
    enum class Cover { None, Held, Pending };
    // Reserves [offset, offset + len) of `key` for a fetch about to start, unless held or
    // pending ranges cover it already (then says which); evicts the oldest held ranges for
    // room. Returns None when reserved, and also (without reserving) when there is no room:
    // `reserved` tells the two apart.
    Cover reserve(const std::string& key, std::size_t offset, std::size_t len, bool& reserved);
    // The reserved range has arrived (`got` as the store answered, `bytes` its bytes).
    void fill(const std::string& key, std::size_t offset, const ObjectRange& got,
              std::vector<uint8_t> bytes);
    // The reserved range's fetch failed: it is forgotten (waiters fetch it themselves).
    void drop(const std::string& key, std::size_t offset);
    // Answers a fetch of [offset, offset + len) from held ranges (waiting for pending ones
    // that overlap it): true, with `got` and the bytes in dst, when they cover it. With
    // `take`, the ranges it read from are spent.
    bool serve(const std::string& key, std::size_t offset, std::size_t len, ObjectRange& got,
               uint8_t* dst, bool take);
    std::size_t held_bytes();
    // Whether any range of `key` is held or pending (a read then asks for its own ranges,
    // which those may answer, rather than one merged range they would not cover).
    bool holds_any(const std::string& key);
    // A prefetch starts (the reads before it have ended): drops the spent ranges that none of
    // the last kAskedFor prefetches asked for.
    void sweep();

private:
    struct Range {
        std::size_t offset = 0;
        std::size_t reserved = 0;  // bytes asked for (pending) or held
        bool pending = true;
        ObjectRange got;
        std::vector<uint8_t> bytes;
        bool spent = false;
        uint64_t serial = 0;                             // order of reservation, for eviction
        uint64_t asked = 0;                              // the last prefetch that asked for it
        std::chrono::steady_clock::time_point arrived;   // its bytes
        std::chrono::steady_clock::time_point spent_at;  // a read first took bytes from it
    };
    struct State {
        std::mutex mutex;
        std::condition_variable arrived;
        std::map<std::string, std::list<Range>> ranges;  // by key
        std::size_t bytes = 0;                           // reserved or held
        uint64_t serial = 0;
        uint64_t generation = 0;  // prefetches started (sweeps)
    };
    // Whether one of the last kAskedFor prefetches asked for `r` (a read to come needs it).
    static bool wanted(const State& s, const Range& r);
    // Frees the oldest held ranges until `want` more bytes fit; false when they cannot.
    bool make_room(State& s, std::size_t want);
    // Drops the held ranges of `key` that arrived more than kHeldFor ago, and the spent ones
    // no prefetch still wants kSpentFor after a read took them; the key's entry when none is
    // left.
    void expire(State& s, const std::string& key);
    void erase(State& s, std::map<std::string, std::list<Range>>::iterator k,
               std::list<Range>::iterator r);

    std::size_t limit_;
    ForkLocal<State> state_;
};

// The process's bytes fetched ahead.
PrefetchedBytes& process_prefetched();

}  // namespace zarrcrop
