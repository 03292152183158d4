#include "io/read_queue.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "io/chunk_source.hpp"
#include "io/merge_runs.hpp"
#include "io/prefetched_bytes.hpp"
#include "io/read_ahead.hpp"
#include "runtime/byte_buffer.hpp"
#include "runtime/fork_local.hpp"
#include "runtime/thread_pool.hpp"

namespace zarrcrop {

struct ReadBatch::Ticket {
    enum State : uint8_t { Queued, Running, Done, Failed, Cancelled, Released };
    ChunkFile::Ref file;
    std::size_t index = 0;
    std::size_t offset = 0;
    std::size_t len = 0;
    std::unique_ptr<ByteBuffer> buf;
    std::exception_ptr error;
    State state = Queued;
    bool claimable = false;
    bool first = false;  // submit_first: short reads allowed, `found` filled in
    ObjectRange found;
    // Claimable in parts (submit's part_ends), and how many of them are claimable so far.
    std::vector<std::size_t> part_ends;
    std::size_t parts_out = 0;
    // Its bytes (once it has arrived; while a remote fetch streams in, already), and how many
    // of its first bytes are in.
    uint8_t* data = nullptr;
    std::size_t arrived = 0;
    std::string stream_version;    // the object's, as the store told it while streaming
    bool unbudget_at_end = false;  // claim_parts: leaves the budget once its read has ended
    // Merged reads (ReadBatch::flush): the read that fetches this ticket's bytes, from
    // `carrier_delta` on in its own; or, for that read, the tickets it carries, and how many
    // of them are not released yet (its buffer is freed with the last).
    Ticket* carrier = nullptr;
    std::size_t carrier_delta = 0;
    std::vector<Ticket*> members;
    std::size_t members_left = 0;
    bool budgeted = false;  // its bytes count against the budget until released
};

// The I/O threads and their FIFO of (batch, ticket). Lock order: the queue's mutex, then a
// batch's; never the other way round.
class ReadQueue {
public:
    ReadQueue(std::size_t threads, std::size_t budget)
        : budget_(budget), asked_(threads), wanted_(threads) {}
    std::size_t threads() const { return asked_; }  // as asked for
    ~ReadQueue() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    ReadQueue(const ReadQueue&) = delete;
    ReadQueue& operator=(const ReadQueue&) = delete;

    // `remote`: the read is a request to an object store (kRemoteReadDepth in flight per
    // batch from the start, and threads for them), else to a local device.
    void push(ReadBatch* batch, ReadBatch::Ticket* t, bool remote) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (remote && batch->q_cap_ == 0) {
                // Round trips dominate: no slow start, a deep window.
                batch->q_cap_ = kRemoteReadDepth;
                batch->q_window_ = kRemoteReadDepth;
                if (wanted_ < kRemoteReadDepth && !start_failed_) wanted_ = kRemoteReadDepth;
            } else if (batch->q_cap_ == 0) {
                batch->q_cap_ = asked_;
            }
            start_threads();
            queue_.emplace_back(batch, t);
        }
        wake_.notify_one();
    }

    // Drops the batch's reads that have not started. Reads being read stay the batch's to
    // wait for.
    void cancel(ReadBatch* batch) {
        std::lock_guard<std::mutex> lock(mutex_);
        std::lock_guard<std::mutex> bl(batch->mutex_);
        const auto end = std::remove_if(queue_.begin(), queue_.end(), [&](const auto& e) {
            if (e.first != batch) return false;
            e.second->state = ReadBatch::Ticket::Cancelled;
            return true;
        });
        queue_.erase(end, queue_.end());
    }

    // A read's bytes are no longer needed: `bytes` leave the budget and its buffer is kept
    // for the next read (buffers faulted in once, not for every read).
    void give_back(std::unique_ptr<ByteBuffer> buf, std::size_t bytes) {
        std::unique_ptr<ByteBuffer> drop;
        bool wake = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            buffered_ -= std::min(buffered_, bytes);
            wake = over_budget_;  // a thread waits for room (else nobody needs waking)
            if (buf) {
                if (pooled_ + buf->capacity() <= kKeepBuffers) {
                    pooled_ += buf->capacity();
                    free_.push_back(std::move(buf));
                } else {
                    drop = std::move(buf);  // freed outside the lock
                }
            }
        }
        if (wake) wake_.notify_one();
    }

private:
    void start_threads() {
        // With mutex_ held. Runs with the threads it could start (at least one: a queue
        // without threads would never finish a read).
        while (threads_.size() < wanted_) {
            try {
                threads_.emplace_back([this] { loop(); });
            } catch (const std::system_error&) {
                if (threads_.empty()) throw;
                wanted_ = threads_.size();
                start_failed_ = true;
            }
        }
    }

    void loop();

    // With mutex_ held: a kept buffer of at least `len` bytes (the smallest), or a new one
    // (allocated by the caller outside the lock).
    std::unique_ptr<ByteBuffer> take_buffer(std::size_t len) {
        std::size_t best = free_.size();
        for (std::size_t i = 0; i < free_.size(); ++i)
            if (free_[i]->capacity() >= len &&
                (best == free_.size() || free_[i]->capacity() < free_[best]->capacity()))
                best = i;
        if (best == free_.size()) return std::make_unique<ByteBuffer>();
        std::unique_ptr<ByteBuffer> b = std::move(free_[best]);
        free_[best] = std::move(free_.back());
        free_.pop_back();
        pooled_ -= b->capacity();
        return b;
    }

    // Buffers kept between reads, at most this many bytes.
    static constexpr std::size_t kKeepBuffers = 16u << 20;

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::pair<ReadBatch*, ReadBatch::Ticket*>> queue_;
    std::vector<std::thread> threads_;
    std::vector<std::unique_ptr<ByteBuffer>> free_;  // kept buffers
    std::size_t pooled_ = 0;                         // their bytes
    std::size_t buffered_ = 0;                       // bytes of reads started and not yet released
    std::size_t in_flight_ = 0;
    bool over_budget_ = false;  // the next read waits for room in the budget
    bool held_back_ = false;    // reads wait for their batch's window
    const std::size_t budget_;
    const std::size_t asked_;
    std::size_t wanted_;  // asked_ (more for remote reads), or fewer when the system refused
    bool start_failed_ = false;
    bool stopping_ = false;
};

namespace {

std::atomic<uint64_t> g_reads{0};
std::atomic<uint64_t> g_bytes{0};
std::atomic<uint64_t> g_max_in_flight{0};
std::atomic<uint64_t> g_max_buffered{0};

void raise_max(std::atomic<uint64_t>& m, uint64_t v) {
    uint64_t cur = m.load(std::memory_order_relaxed);
    while (v > cur && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}

struct QueueState {
    std::mutex mutex;
    ReadQueueSettings settings;
    std::shared_ptr<ReadQueue> queue;
};

ForkLocal<QueueState>& queue_state() {
    static ForkLocal<QueueState>* state = new ForkLocal<QueueState>();  // never destroyed
    return *state;
}

std::size_t threads_of(const ReadQueueSettings& s) {
    if (s.threads != 0) return s.threads;
    return std::clamp<std::size_t>(2 * get_num_threads(), kMinReadThreads, kMaxReadThreads);
}
std::size_t budget_of(const ReadQueueSettings& s) {
    return s.budget_bytes == 0 ? kDefaultReadBudget : s.budget_bytes;
}

std::shared_ptr<ReadQueue> process_read_queue() {
    QueueState& st = queue_state().get();
    std::lock_guard<std::mutex> lock(st.mutex);
    // The default follows the decode threads (set_num_threads may have changed them).
    const std::size_t threads = threads_of(st.settings);
    if (!st.queue || st.queue->threads() != threads)
        st.queue = std::make_shared<ReadQueue>(threads, budget_of(st.settings));
    return st.queue;
}

}  // namespace

void ReadQueue::loop() {
    for (;;) {
        ReadBatch* batch = nullptr;
        ReadBatch::Ticket* t = nullptr;
        std::unique_ptr<ByteBuffer> buf;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            std::size_t pick = 0;
            wake_.wait(lock, [&] {
                over_budget_ = false;
                held_back_ = false;
                if (stopping_) return true;
                // The first read whose batch may have one more in flight.
                for (pick = 0; pick < queue_.size(); ++pick) {
                    const ReadBatch* b = queue_[pick].first;
                    if (b->q_running_ < std::min(b->q_window_, b->q_cap_)) break;
                }
                if (pick == queue_.size()) {
                    held_back_ = !queue_.empty();
                    return false;
                }
                // len is fixed at submission: readable without the batch's lock.
                const std::size_t len = queue_[pick].second->len;
                // Within the budget; a read larger than all of it runs alone.
                over_budget_ = buffered_ != 0 && buffered_ + len > budget_;
                return !over_budget_;
            });
            if (stopping_) return;
            batch = queue_[pick].first;
            t = queue_[pick].second;
            queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(pick));
            ++batch->q_running_;
            buf = take_buffer(t->len);
            buffered_ += t->len;
            ++in_flight_;
            raise_max(g_max_in_flight, in_flight_);
            raise_max(g_max_buffered, buffered_);
            // Marked running under this lock: a batch ending now waits for it (cancel()
            // can no longer find it in the queue).
            std::lock_guard<std::mutex> bl(batch->mutex_);
            t->state = ReadBatch::Ticket::Running;
            t->budgeted = true;
            ++batch->running_;
        }
        std::exception_ptr error;
        try {
            uint8_t* dst = buf->get(std::max<std::size_t>(t->len, 1));
            if (t->first) {
                {
                    std::lock_guard<std::mutex> bl(batch->mutex_);
                    t->data = dst;
                }
                // The object's size is not known yet: its bytes are told as they come (a Blosc
                // chunk's header says its size; ChunkDecoder::plan_streamed).
                const FetchProgress told = [batch, t](std::size_t n, const std::string& v) {
                    std::lock_guard<std::mutex> bl(batch->mutex_);
                    if (n <= t->arrived) return;
                    t->arrived = n;
                    t->stream_version = v;
                    batch->parts_arrived(*t, n, /*ended=*/false);
                    batch->arrived_.notify_all();
                };
                t->found =
                    t->file.store->fetch(t->file.key, t->file.base, t->len, false, dst, &told);
            } else if (t->file.store && (!t->part_ends.empty() || !t->members.empty())) {
                {
                    std::lock_guard<std::mutex> bl(batch->mutex_);
                    t->data = dst;
                    batch->carried_arrived(*t, 0, /*ended=*/false);
                }
                // Parts are handed out as the response streams in (waiters woken).
                const std::function<void(std::size_t)> arrived = [batch, t](std::size_t n) {
                    std::lock_guard<std::mutex> bl(batch->mutex_);
                    if (n <= t->arrived) return;
                    t->arrived = n;
                    batch->parts_arrived(*t, n, /*ended=*/false);
                    batch->carried_arrived(*t, n, /*ended=*/false);
                    batch->arrived_.notify_all();
                };
                t->file.read_at(t->offset, t->len, dst, &arrived);
            } else {
                t->file.read_at(t->offset, t->len, dst);
            }
        } catch (...) {
            error = std::current_exception();
        }
        count_device_read(t->len);
        g_reads.fetch_add(1, std::memory_order_relaxed);
        g_bytes.fetch_add(t->len, std::memory_order_relaxed);
        bool wake = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            --in_flight_;
            --batch->q_running_;
            ++batch->q_window_;  // each read that arrives lets the batch have one more in flight
            wake = held_back_;
        }
        if (wake) wake_.notify_one();
        std::size_t unbudget = 0;
        {
            std::lock_guard<std::mutex> bl(batch->mutex_);
            if (t->unbudget_at_end && t->budgeted) {
                t->budgeted = false;
                unbudget = t->len;
            }
            t->buf = std::move(buf);
            t->data = t->buf->data();
            t->error = error;
            t->state = error ? ReadBatch::Ticket::Failed : ReadBatch::Ticket::Done;
            batch->parts_arrived(*t, t->len, /*ended=*/true);
            batch->carried_arrived(*t, t->len, /*ended=*/true);
            --batch->running_;
            // Under the lock: once running_ is 0 the batch may end, condition variable and all.
            batch->arrived_.notify_all();
        }
        if (unbudget != 0) give_back(nullptr, unbudget);  // this queue's, not the batch's
    }
}

ReadBatch::ReadBatch(const CancelFlags& cancel) : cancel_(cancel) {}

ReadBatch::~ReadBatch() {
    if (!queue_) return;
    queue_->cancel(this);
    std::unique_lock<std::mutex> lock(mutex_);
    arrived_.wait(lock, [this] { return running_ == 0; });
    for (const std::unique_ptr<Ticket>& t : tickets_) {
        if (!t->budgeted || t->state == Ticket::Released) continue;
        // Nothing else uses the batch now: give back without holding its lock (the queue's
        // lock comes first).
        lock.unlock();
        queue_->give_back(std::move(t->buf), t->len);
        t->state = Ticket::Released;
        lock.lock();
    }
}

std::size_t ReadBatch::size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tickets_.size();
}

ReadBatch::Ticket& ReadBatch::ticket(std::size_t t) {
    // With mutex_ held.
    if (t >= tickets_.size()) throw std::out_of_range("no such read ticket");
    return *tickets_[t];
}

std::size_t ReadBatch::submit_first(const ChunkFile& object, std::size_t len) {
    return submit(object, 0, len, false, true, {});
}

ObjectRange ReadBatch::first_result(std::size_t t) {
    std::lock_guard<std::mutex> lock(mutex_);
    return ticket(t).found;
}

std::size_t ReadBatch::submit(const ChunkFile& file, std::size_t offset, std::size_t len,
                              bool claimable, std::vector<std::size_t> part_ends) {
    return submit(file, offset, len, claimable, false, std::move(part_ends));
}

std::size_t ReadBatch::submit(const ChunkFile& file, std::size_t offset, std::size_t len,
                              bool claimable, bool first, std::vector<std::size_t> part_ends) {
    if (!part_ends.empty() && (!claimable || part_ends.back() > len ||
                               !std::is_sorted(part_ends.begin(), part_ends.end())))
        throw std::invalid_argument("read parts must be ascending ends within a claimable read");
    std::size_t index = 0;
    Ticket* ticket = nullptr;
    std::shared_ptr<ReadQueue> queue;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!queue_) queue_ = process_read_queue();
        queue = queue_;
        ticket = tickets_.emplace_back(std::make_unique<Ticket>()).get();
        ticket->file = file.ref();
        ticket->offset = offset;
        ticket->len = len;
        index = tickets_.size() - 1;
        ticket->index = index;
        ticket->claimable = claimable;
        ticket->first = first;
        if (claimable) unclaimed_ += std::max<std::size_t>(1, part_ends.size());
        ticket->part_ends = std::move(part_ends);
        if (holding_ && file.remote() && !first) {
            held_.push_back(ticket);
            return index;
        }
    }
    queue->push(this, ticket, file.remote());
    return index;
}

const uint8_t* ReadBatch::wait(std::size_t t) {
    return wait_streamed(t, static_cast<std::size_t>(-1)).data;  // until it has ended
}

const uint8_t* ReadBatch::wait_bytes(std::size_t t, std::size_t end) {
    const Streamed s = wait_streamed(t, end);
    // A first read may end short of what was asked for: its bytes end there.
    if (s.done && end > s.arrived)
        throw ChunkError("the reply ended after " + std::to_string(s.arrived) +
                         " bytes, before byte " + std::to_string(end) + " its header says it has");
    return s.data;
}

void ReadBatch::pause(std::unique_lock<std::mutex>& lock) {
    if (arrived_.wait_for(lock, std::chrono::milliseconds(2)) == std::cv_status::timeout) {
        lock.unlock();
        cancel_.check();
        lock.lock();
    }
}

void ReadBatch::hold(std::size_t merge_gap, std::size_t max_len) {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_ = true;
    merge_gap_ = merge_gap;
    max_merged_ = max_len;
}

void ReadBatch::drop_held() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_ = false;
    for (Ticket* t : held_) t->state = Ticket::Cancelled;
    held_.clear();
}

void ReadBatch::flush() {
    std::vector<Ticket*> held;
    std::shared_ptr<ReadQueue> queue;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        holding_ = false;
        held.swap(held_);
        queue = queue_;
    }
    if (held.empty()) return;
    const auto start = [](const Ticket* t) { return t->file.base + t->offset; };
    // By object, then by where in it.
    std::sort(held.begin(), held.end(), [&](const Ticket* a, const Ticket* b) {
        if (a->file.store != b->file.store) return a->file.store < b->file.store;
        if (a->file.key != b->file.key) return a->file.key < b->file.key;
        return start(a) < start(b);
    });
    PrefetchedBytes& ahead = process_prefetched();
    std::vector<Ticket*> to_queue;
    std::string fetched_ahead;  // the last key looked up there, and what it said
    bool ahead_holds = false;
    const auto same_object = [&](std::size_t i, std::size_t j) {
        const ChunkFile::Ref& f = held[i]->file;
        if (f.path != fetched_ahead) {
            fetched_ahead = f.path;
            ahead_holds = ahead.holds_any(f.path);
        }
        return !ahead_holds && held[j]->file.store == f.store && held[j]->file.key == f.key &&
               held[j]->file.version == f.version;
    };
    merge_runs(
        held.size(), [&](std::size_t k) { return start(held[k]); },
        [&](std::size_t k) { return start(held[k]) + held[k]->len; }, merge_gap_, max_merged_,
        same_object,
        [&](std::size_t i, std::size_t j, std::size_t lo, std::size_t hi) {
            if (j == i + 1) {
                to_queue.push_back(held[i]);
                return;
            }
            std::lock_guard<std::mutex> lock(mutex_);
            Ticket* c = tickets_.emplace_back(std::make_unique<Ticket>()).get();
            c->index = tickets_.size() - 1;
            c->file = held[i]->file;  // the object: key, store, version; offsets from byte 0
            c->file.base = 0;
            c->file.size = hi;
            c->offset = lo;
            c->len = hi - lo;
            for (std::size_t k = i; k < j; ++k) {
                held[k]->carrier = c;
                held[k]->carrier_delta = start(held[k]) - lo;
                c->members.push_back(held[k]);
            }
            c->members_left = c->members.size();
            to_queue.push_back(c);
        });
    for (Ticket* t : to_queue) queue->push(this, t, true);
}

void ReadBatch::carried_arrived(Ticket& c, std::size_t arrived, bool ended) {
    for (Ticket* m : c.members) {
        m->data = c.data + m->carrier_delta;
        if (ended) {
            m->state = c.state;
            m->error = c.error;
            m->arrived = m->len;
        } else {
            m->arrived =
                arrived > m->carrier_delta ? std::min(arrived - m->carrier_delta, m->len) : 0;
        }
        parts_arrived(*m, m->arrived, ended);
    }
}

ReadBatch::Streamed ReadBatch::wait_streamed(std::size_t t, std::size_t end) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        Ticket& k = ticket(t);
        switch (k.state) {
            case Ticket::Done:
                return Streamed{k.data, k.first ? k.found.bytes : k.len, true, k.stream_version};
            case Ticket::Failed:
                std::rethrow_exception(k.error);
            case Ticket::Cancelled:
            case Ticket::Released:
                throw std::logic_error("read ticket waited for after it ended");
            default:
                if (k.data != nullptr && k.arrived >= end)
                    return Streamed{k.data, k.arrived, false, k.stream_version};
                break;
        }
        pause(lock);
    }
}

bool ReadBatch::claim_parts(std::size_t t, std::vector<std::size_t> part_ends,
                            std::size_t max_held) {
    std::size_t unbudget = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        Ticket& k = ticket(t);
        if (k.claimable || part_ends.empty() || part_ends.back() > k.len ||
            std::adjacent_find(part_ends.begin(), part_ends.end(),
                               [](std::size_t a, std::size_t b) { return a >= b; }) !=
                part_ends.end())
            throw std::invalid_argument(
                "read parts must be distinct ascending ends within the read");
        if (claimed_held_ + k.len > max_held) return false;
        claimed_held_ += k.len;
        k.claimable = true;
        k.unbudget_at_end = true;
        unclaimed_ += part_ends.size();
        k.part_ends = std::move(part_ends);
        const bool ended = k.state == Ticket::Done || k.state == Ticket::Failed;
        if (ended && k.budgeted) {
            k.budgeted = false;
            unbudget = k.len;
        }
        parts_arrived(k, ended ? k.len : k.arrived, ended);
        arrived_.notify_all();
    }
    if (unbudget != 0) queue_->give_back(nullptr, unbudget);
    return true;
}

void ReadBatch::parts_arrived(Ticket& k, std::size_t arrived, bool ended) {
    if (!k.claimable) return;
    if (k.part_ends.empty()) {
        if (ended && k.parts_out == 0) {
            arrived_claimable_.push_back(Arrival{k.index, 0});
            k.parts_out = 1;
        }
        return;
    }
    while (k.parts_out < k.part_ends.size() && (ended || k.part_ends[k.parts_out] <= arrived)) {
        arrived_claimable_.push_back(Arrival{k.index, k.parts_out});
        ++k.parts_out;
    }
}

ReadBatch::Arrival ReadBatch::next_arrived() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        if (next_ < arrived_claimable_.size()) {
            --unclaimed_;
            return arrived_claimable_[next_++];
        }
        if (unclaimed_ == 0) return Arrival{};
        pause(lock);
    }
}

void ReadBatch::release(std::size_t t) {
    std::size_t bytes = 0;
    std::unique_ptr<ByteBuffer> buf;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        Ticket& k = ticket(t);
        if (k.state != Ticket::Done && k.state != Ticket::Failed) return;
        k.state = Ticket::Released;
        k.data = nullptr;
        Ticket* owner = &k;
        if (k.carrier != nullptr) {  // the merged read's buffer goes with its last ticket
            if (--k.carrier->members_left != 0) return;
            owner = k.carrier;
            owner->state = Ticket::Released;
            owner->data = nullptr;
        }
        buf = std::move(owner->buf);
        if (owner->budgeted) bytes = owner->len;
        if (owner->unbudget_at_end) claimed_held_ -= std::min(claimed_held_, owner->len);
    }
    queue_->give_back(std::move(buf), bytes);
}

void set_read_queue(const ReadQueueSettings& s) {
    QueueState& st = queue_state().get();
    std::shared_ptr<ReadQueue> old;
    {
        std::lock_guard<std::mutex> lock(st.mutex);
        st.settings = s;
        old.swap(st.queue);  // batches in progress keep theirs; joined by the last of them
    }
}

ReadQueueSettings get_read_queue() {
    QueueState& st = queue_state().get();
    std::lock_guard<std::mutex> lock(st.mutex);
    ReadQueueSettings s = st.settings;
    s.threads = threads_of(s);
    s.budget_bytes = budget_of(s);
    return s;
}

ReadQueueCounts read_queue_counts() {
    return ReadQueueCounts{g_reads.load(std::memory_order_relaxed),
                           g_bytes.load(std::memory_order_relaxed),
                           g_max_in_flight.load(std::memory_order_relaxed),
                           g_max_buffered.load(std::memory_order_relaxed)};
}

void reset_read_queue_counts() {
    g_reads.store(0, std::memory_order_relaxed);
    g_bytes.store(0, std::memory_order_relaxed);
    g_max_in_flight.store(0, std::memory_order_relaxed);
    g_max_buffered.store(0, std::memory_order_relaxed);
}

}  // namespace zarrcrop
