// The I/O stage's reads for data that is not in the page cache: byte ranges of chunk files
// read by I/O threads of their own (separate from the decode threads: they spend their time
// waiting for the device, not on a core), into buffers of their own, started in the order they
// were asked for, a bounded number at a time, each completing on its own. A read of cold
// chunks asks for all its ranges at once and decodes each as soon as it has arrived: the
// device gets a queue deep enough to deliver its best, and decoding overlaps the reads still
// in flight (bench/PROFILE.md, session 8).
//
// Ranges in, bytes out, completion per range: decode and stitch never see where bytes came
// from (files here; object stores plug in behind the same ReadBatch).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/chunk_source.hpp"
#include "runtime/cancel.hpp"

namespace zarrcrop {

class ReadQueue;

// The reads of one read call (a window of chunks), which owns their buffers. Thread-safe:
// any thread may submit, wait or release. Its destructor cancels what has not started and
// waits for what has, so the files it reads must outlive it.
class ReadBatch {
public:
    explicit ReadBatch(const CancelFlags& cancel);
    ~ReadBatch();
    ReadBatch(const ReadBatch&) = delete;
    ReadBatch& operator=(const ReadBatch&) = delete;

    // Queues a read of [offset, offset + len) of the chunk in `file` (offsets from the chunk's
    // first byte) and returns its ticket; tickets count up from 0 in the order of submission,
    // the order in which their reads start. The file's descriptor must stay open until the
    // batch ends (the ChunkFile object itself may move).
    // With `claimable`, the ticket is also handed out by next_arrived: whole once it has
    // arrived, or, with `part_ends` (ascending offsets in the read, the last <= len), in
    // parts: part k once the read's first part_ends[k] bytes have arrived. A remote fetch
    // streams in, so its first parts can be decoded while the rest is on the way.
    std::size_t submit(const ChunkFile& file, std::size_t offset, std::size_t len,
                       bool claimable = false, std::vector<std::size_t> part_ends = {});
    // The first read of a remote chunk object whose size is not known yet: up to `len` bytes
    // from its start (fewer when it is smaller); first_result(t) then says what was found.
    std::size_t submit_first(const ChunkFile& object, std::size_t len);
    // After wait(t) of a ticket from submit_first: found or not, the object's size and
    // version, and how many bytes wait(t) holds.
    ObjectRange first_result(std::size_t t);
    // Waits until ticket t has arrived and returns its bytes, valid until release(t) or the
    // batch ends. Rethrows the read's error: ChunkIoError (EIO, ...), ChunkError when the file
    // ended early (it was truncated). Polls the cancel flags while it waits (throws Cancelled).
    const uint8_t* wait(std::size_t t);
    // Waits until [0, end) of ticket t's bytes have arrived (the whole read when it is not a
    // remote fetch that streams) and returns the read's bytes, valid until release(t) or the
    // batch ends. Rethrows the read's error once it has failed; bytes handed out before are
    // then not the read's result (wait(t) says whether it succeeded).
    const uint8_t* wait_bytes(std::size_t t, std::size_t end);
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    // Where a read stands: its bytes (null before any are in), how many of its first bytes
    // are in, whether it has ended (then wait(t) has its result), and the version of the
    // object they come from as the store said while they streamed in (empty: not said).
    struct Streamed {
        const uint8_t* data = nullptr;
        std::size_t arrived = 0;
        bool done = false;
        std::string version;
    };
    // Waits until ticket t's read has ended or [0, end) of its bytes have arrived (a remote
    // fetch streaming in). Rethrows the read's error.
    Streamed wait_streamed(std::size_t t, std::size_t end);
    // Makes ticket t (submitted, not claimable) claimable in parts, as submit's part_ends
    // (ascending, distinct); parts already in are handed out at once. Its bytes leave the
    // read budget once its read has ended (a read waiting for another one's bytes must not
    // wait for budget these hold until the window decodes): at most `max_held` bytes of such
    // tickets per batch; false (nothing done) when this one would exceed it.
    bool claim_parts(std::size_t t, std::vector<std::size_t> part_ends, std::size_t max_held);
    // A claimable ticket, or a part of one.
    struct Arrival {
        std::size_t ticket = kNone;
        std::size_t part = 0;  // 0 for a ticket handed out whole
    };
    // Waits until a claimable ticket (or part) not handed out yet has arrived (or its read
    // failed) and returns it, in the order they arrive; ticket kNone when every one has been
    // handed out. Polls the cancel flags while it waits.
    Arrival next_arrived();
    // Ticket t's bytes are no longer needed: its buffer is freed and leaves the budget.
    void release(std::size_t t);
    std::size_t size() const;

    // Remote reads submitted from now on wait for flush(), which merges those of one object
    // (a shard's inner chunks) whose ranges lie within `merge_gap` bytes of each other into
    // one request of at most `max_len` bytes (each ticket then a window of it, streaming in
    // as before): one request instead of one per chunk. Reads of objects with bytes fetched
    // ahead are not merged (those bytes answer the ranges asked for). Local reads, and first
    // reads of objects, are queued at once.
    void hold(std::size_t merge_gap, std::size_t max_len);
    // Queues the reads held since hold(), merged.
    void flush();
    // Drops the reads held since hold() (an error ends the read: nobody waits for them).
    void drop_held() noexcept;

private:
    friend class ReadQueue;
    struct Ticket;
    Ticket& ticket(std::size_t t);
    std::size_t submit(const ChunkFile& file, std::size_t offset, std::size_t len, bool claimable,
                       bool first, std::vector<std::size_t> part_ends);
    // Waits on arrived_ for a moment (lock held on return), then checks the cancel flags.
    void pause(std::unique_lock<std::mutex>& lock);
    // With mutex_ held: ticket k's bytes up to `arrived` are in (all of them when it ended):
    // its parts covered by now become claimable.
    void parts_arrived(Ticket& k, std::size_t arrived, bool ended);
    // With mutex_ held: a merged read's bytes up to `arrived` are in (ended: its read ended,
    // as `c.state` says): so are its tickets'.
    void carried_arrived(Ticket& c, std::size_t arrived, bool ended);

    std::shared_ptr<ReadQueue> queue_;
    const CancelFlags cancel_;
    mutable std::mutex mutex_;
    std::condition_variable arrived_;
    // Tickets keep their address as more are added (reads in flight point at them). Nothing
    // is allocated until the first submit: a read of data in the page cache pays nothing.
    std::vector<std::unique_ptr<Ticket>> tickets_;
    std::vector<Arrival> arrived_claimable_;  // arrived, in order; handed out up to next_
    std::size_t next_ = 0;
    std::size_t unclaimed_ = 0;  // claimable tickets (or parts) not handed out yet
    std::size_t running_ = 0;    // tickets an I/O thread is reading (guarded by mutex_)
    // hold(): remote reads submitted and not queued yet, and how they may be merged.
    std::size_t claimed_held_ = 0;  // bytes of tickets claim_parts took, not released yet
    bool holding_ = false;
    std::vector<Ticket*> held_;
    std::size_t merge_gap_ = 0;
    std::size_t max_merged_ = 0;
    // Guarded by the queue's mutex: reads in flight, and how many may be. The window starts
    // small, so that the first reads arrive soon (decoding can start), and grows by one with
    // each read that arrives, up to the I/O threads (a deep queue for the device).
    std::size_t q_running_ = 0;
    std::size_t q_window_ = kStartWindow;
    std::size_t q_cap_ = 0;  // the most in flight, set by the first read: the queue's depth
    static constexpr std::size_t kStartWindow = 2;
};

// I/O threads for this process (fresh after fork(), like the decode pool).
struct ReadQueueSettings {
    std::size_t threads = 0;       // reads in flight at most; 0: the default
    std::size_t budget_bytes = 0;  // bytes read but not yet released, at most; 0: default
};
// Reads in flight by default: twice the decode threads, within [kMinReadThreads,
// kMaxReadThreads]. Enough to keep the decode threads fed; more only splits the device's
// bandwidth so that every read arrives later, and costs CPU (bench/PROFILE.md, session 8).
constexpr std::size_t kMinReadThreads = 4;
constexpr std::size_t kMaxReadThreads = 64;
// Requests to an object store in flight per read: round trips, not a device, limit them
// (the I/O threads mostly wait; the peers keep 4-28 in flight, obstore 10 per call).
constexpr std::size_t kRemoteReadDepth = 32;
// Bytes read ahead of decoding by default, over all reads of the process.
constexpr std::size_t kDefaultReadBudget = 64u << 20;
void set_read_queue(const ReadQueueSettings& s);
ReadQueueSettings get_read_queue();

// Process-wide counts since the last reset (tests and benchmarks).
struct ReadQueueCounts {
    uint64_t reads = 0;  // ranges read
    uint64_t bytes = 0;  // bytes read
    uint64_t max_in_flight = 0;
    uint64_t max_buffered = 0;  // most bytes held at once
};
ReadQueueCounts read_queue_counts();
void reset_read_queue_counts();

}  // namespace zarrcrop
