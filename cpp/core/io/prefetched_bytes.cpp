#include "io/prefetched_bytes.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace zarrcrop {

bool PrefetchedBytes::wanted(const State& s, const Range& r) {
    return r.asked + kAskedFor >= s.generation;
}

PrefetchedBytes::Cover PrefetchedBytes::reserve(const std::string& key, std::size_t offset,
                                                std::size_t len, bool& reserved) {
    reserved = false;
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    expire(s, key);
    auto k = s.ranges.find(key);
    if (k != s.ranges.end()) {
        const std::size_t end = offset + len;
        // What covers the request is asked for again: a later read will take it.
        const auto ask = [&](Cover cover) {
            for (Range& r : k->second)
                if ((!r.pending && !r.got.found) ||
                    (r.offset < end && r.offset + r.reserved > offset))
                    r.asked = s.generation;
            return cover;
        };
        std::vector<std::pair<std::size_t, std::size_t>> held;
        std::size_t object_size = SIZE_MAX;
        for (const Range& r : k->second) {
            if (r.pending) {
                if (r.offset < end && r.offset + r.reserved > offset) return ask(Cover::Pending);
                continue;
            }
            if (!r.got.found) return ask(Cover::Held);  // the object does not exist
            object_size = r.got.object_size;
            held.emplace_back(r.offset, r.offset + r.bytes.size());
        }
        const std::size_t stop = std::min(end, object_size);
        std::sort(held.begin(), held.end());
        std::size_t pos = offset;
        for (const auto& h : held) {
            if (h.first > pos) break;
            pos = std::max(pos, h.second);
        }
        if (pos >= stop) return ask(Cover::Held);
    }
    if (!make_room(s, len)) return Cover::None;
    Range r;
    r.offset = offset;
    r.reserved = len;
    r.serial = ++s.serial;
    r.asked = s.generation;
    s.ranges[key].push_back(std::move(r));
    s.bytes += len;
    reserved = true;
    return Cover::None;
}

void PrefetchedBytes::fill(const std::string& key, std::size_t offset, const ObjectRange& got,
                           std::vector<uint8_t> bytes) {
    State& s = state_.get();
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        auto k = s.ranges.find(key);
        if (k == s.ranges.end()) return;
        for (Range& r : k->second) {
            if (!r.pending || r.offset != offset) continue;
            s.bytes -= r.reserved;
            r.pending = false;
            r.got = got;
            r.bytes = std::move(bytes);
            r.reserved = r.bytes.size();
            r.arrived = std::chrono::steady_clock::now();
            s.bytes += r.reserved;
            break;
        }
    }
    s.arrived.notify_all();
}

void PrefetchedBytes::drop(const std::string& key, std::size_t offset) {
    State& s = state_.get();
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        auto k = s.ranges.find(key);
        if (k == s.ranges.end()) return;
        for (auto r = k->second.begin(); r != k->second.end(); ++r) {
            if (r->pending && r->offset == offset) {
                erase(s, k, r);
                break;
            }
        }
    }
    s.arrived.notify_all();
}

bool PrefetchedBytes::serve(const std::string& key, std::size_t offset, std::size_t len,
                            ObjectRange& got, uint8_t* dst, bool take) {
    State& s = state_.get();
    std::unique_lock<std::mutex> lock(s.mutex);
    for (;;) {
        expire(s, key);
        auto k = s.ranges.find(key);
        if (k == s.ranges.end()) return false;
        std::list<Range>& list = k->second;
        const Range* facts = nullptr;  // a held range: the object's size and version
        for (auto r = list.begin(); r != list.end(); ++r) {
            if (r->pending) continue;
            if (!r->got.found) {  // the object does not exist
                got = r->got;
                if (take) erase(s, k, r);
                return true;
            }
            facts = &*r;
            break;
        }
        const std::size_t end = offset + len;
        const std::size_t stop = facts != nullptr ? std::min(end, facts->got.object_size) : end;
        bool wait = false;
        for (const Range& r : list)
            if (r.pending && r.offset < stop && r.offset + r.reserved > offset) wait = true;
        if (wait) {
            s.arrived.wait(lock);
            continue;
        }
        if (facts == nullptr || offset >= stop) return false;
        // Held ranges overlapping the request, by offset: do they cover it, of one version?
        std::vector<std::list<Range>::iterator> parts;
        for (auto r = list.begin(); r != list.end(); ++r) {
            if (r->pending || r->offset >= stop || r->offset + r->bytes.size() <= offset) continue;
            if (r->got.version != facts->got.version) return false;
            parts.push_back(r);
        }
        std::sort(parts.begin(), parts.end(),
                  [](const auto& a, const auto& b) { return a->offset < b->offset; });
        std::size_t pos = offset;
        for (const auto& r : parts) {
            if (r->offset > pos) break;
            pos = std::max(pos, r->offset + r->bytes.size());
        }
        if (pos < stop) return false;
        got = facts->got;
        got.offset = offset;
        got.bytes = stop - offset;
        for (const auto& r : parts) {
            const std::size_t lo = std::max(offset, r->offset);
            const std::size_t hi = std::min(stop, r->offset + r->bytes.size());
            if (dst != nullptr)
                std::memcpy(dst + (lo - offset), r->bytes.data() + (lo - r->offset), hi - lo);
        }
        if (take) {
            for (const auto& r : parts) {
                if (r->spent) continue;
                r->spent = true;
                r->spent_at = std::chrono::steady_clock::now();
            }
        }
        return true;
    }
}

std::size_t PrefetchedBytes::held_bytes() {
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.bytes;
}

bool PrefetchedBytes::holds_any(const std::string& key) {
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.bytes == 0) return false;
    expire(s, key);
    return s.ranges.count(key) != 0;
}

bool PrefetchedBytes::make_room(State& s, std::size_t want) {
    if (want > limit_) return false;
    while (s.bytes + want > limit_) {
        auto best_k = s.ranges.end();
        std::list<Range>::iterator best_r;
        // Spent ones no later prefetch asked for go first, then the oldest held one (pending
        // ones are about to be used).
        const auto before = [&](const Range& a, const Range& b) {
            const bool da = a.spent && !wanted(s, a);
            const bool db = b.spent && !wanted(s, b);
            return da != db ? da : a.serial < b.serial;
        };
        for (auto k = s.ranges.begin(); k != s.ranges.end(); ++k)
            for (auto r = k->second.begin(); r != k->second.end(); ++r)
                if (!r->pending && (best_k == s.ranges.end() || before(*r, *best_r))) {
                    best_k = k;
                    best_r = r;
                }
        if (best_k == s.ranges.end()) return false;
        erase(s, best_k, best_r);
    }
    return true;
}

void PrefetchedBytes::expire(State& s, const std::string& key) {
    auto k = s.ranges.find(key);
    if (k == s.ranges.end()) return;
    const auto now = std::chrono::steady_clock::now();
    for (auto r = k->second.begin(); r != k->second.end();) {
        const bool old = r->arrived < now - kHeldFor;
        const bool done = r->spent && !wanted(s, *r) && r->spent_at < now - kSpentFor;
        if (!r->pending && (old || done)) {
            s.bytes -= std::min(s.bytes, r->reserved);
            r = k->second.erase(r);
        } else {
            ++r;
        }
    }
    if (k->second.empty()) s.ranges.erase(k);
}

void PrefetchedBytes::sweep() {
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    ++s.generation;
    for (auto k = s.ranges.begin(); k != s.ranges.end();) {
        for (auto r = k->second.begin(); r != k->second.end();) {
            if (r->spent && !wanted(s, *r)) {
                s.bytes -= std::min(s.bytes, r->reserved);
                r = k->second.erase(r);
            } else {
                ++r;
            }
        }
        k = k->second.empty() ? s.ranges.erase(k) : std::next(k);
    }
}

PrefetchedBytes& process_prefetched() {
    static PrefetchedBytes held(kPrefetchHoldBytes);
    return held;
}

void PrefetchedBytes::erase(State& s, std::map<std::string, std::list<Range>>::iterator k,
                            std::list<Range>::iterator r) {
    s.bytes -= std::min(s.bytes, r->reserved);
    k->second.erase(r);
    if (k->second.empty()) s.ranges.erase(k);
}

}  // namespace zarrcrop
