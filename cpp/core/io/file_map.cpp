#include "io/file_map.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "io/chunk_source.hpp"

namespace zarrcrop {

namespace {

// What the current thread is reading from a mapping (set by MappedReadGuard).
struct GuardedRange {
    const uint8_t* lo;
    const uint8_t* hi;
    FileMapping* mapping;
};

// initial-exec: a plain TLS slot the signal handler can read without a call into the dynamic
// loader (which may allocate).
__attribute__((tls_model("initial-exec"))) thread_local GuardedRange* t_guard = nullptr;
// Set when the handler we chained to handed SIGBUS back to us: Python's faulthandler, when
// it was enabled after zarrcrop and zarrcrop went back on top, restores its previous handler
// (ours) and raises the signal again. That signal then takes the default action; calling the
// other handler again would make the two call each other forever.
__attribute__((tls_model("initial-exec"))) thread_local int t_handed_back = 0;

const std::size_t g_page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

// The SIGBUS disposition found when our handler was (re)installed, for everything not ours.
// Two slots: a reinstall writes the idle one, then flips the index.
struct sigaction g_prev[2];
std::atomic<int> g_prev_slot{0};

// The default action: restore it. A fault then recurs when the handler returns and terminates
// the process as it would have without us; a sent signal is raised again (delivered once the
// handler returns).
void default_action(int sig, const siginfo_t* info) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGBUS, &dfl, nullptr);
    if (info->si_code <= 0) ::raise(sig);
}

bool sigbus_handler_is_ours();

// Calls the previous handler; notes whether it handed the disposition back to us.
template <typename Call>
void call_previous(Call call) {
    call();
    t_handed_back = sigbus_handler_is_ours() ? 1 : 0;
}

void chain(int sig, siginfo_t* info, void* ctx) {
    if (t_handed_back != 0) {
        t_handed_back = 0;
        default_action(sig, info);
        return;
    }
    const struct sigaction& prev = g_prev[g_prev_slot.load(std::memory_order_acquire)];
    if ((prev.sa_flags & SA_SIGINFO) != 0) {
        if (prev.sa_sigaction != nullptr) {
            call_previous([&] { prev.sa_sigaction(sig, info, ctx); });
            return;
        }
    } else if (prev.sa_handler == SIG_IGN) {
        if (info->si_code <= 0) return;  // sent, not a fault: ignored as before
    } else if (prev.sa_handler != SIG_DFL) {
        call_previous([&] { prev.sa_handler(sig); });
        return;
    }
    default_action(sig, info);
}

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
    const int saved_errno = errno;
    GuardedRange* g = t_guard;
    const auto* addr = static_cast<const uint8_t*>(info->si_addr);
    if (g != nullptr && info->si_code > 0 && addr >= g->lo && addr < g->hi) {
        // A page of the mapped file is gone (the file shrank). Mark the mapping first, so
        // that any thread reading the zero page mapped next also sees the mark afterwards.
        g->mapping->mark_damaged();
        const uintptr_t page = reinterpret_cast<uintptr_t>(addr) & ~(uintptr_t{g_page} - 1);
        void* zero = ::mmap(reinterpret_cast<void*>(page), g_page, PROT_READ,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (zero != MAP_FAILED) {
            errno = saved_errno;
            return;  // the read resumes on zeros; the reader then throws ChunkError
        }
    }
    errno = saved_errno;
    chain(sig, info, ctx);
}

bool sigbus_handler_is_ours() {
    struct sigaction cur {};
    return ::sigaction(SIGBUS, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) != 0 &&
           cur.sa_sigaction == &on_sigbus;
}

}  // namespace

void ensure_sigbus_handler() {
    struct sigaction cur {};
    if (::sigaction(SIGBUS, nullptr, &cur) != 0) return;
    if ((cur.sa_flags & SA_SIGINFO) != 0 && cur.sa_sigaction == &on_sigbus) return;
    const int idle = 1 - g_prev_slot.load(std::memory_order_acquire);
    g_prev[idle] = cur;
    g_prev_slot.store(idle, std::memory_order_release);
    struct sigaction ours {};
    ours.sa_sigaction = &on_sigbus;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    ::sigaction(SIGBUS, &ours, nullptr);
}

bool mapping_intact(const FileMapping& m, int fd) {
    struct stat st {};
    return !m.damaged() && ::fstat(fd, &st) == 0 &&
           static_cast<std::size_t>(st.st_size) == m.size();
}

MappedReadGuard::MappedReadGuard(FileMapping& m) {
    // The range lives in the guard's TLS slot's pointee: a static per thread is enough, as
    // guards do not nest.
    thread_local GuardedRange range{};
    range = GuardedRange{m.data(), m.data() + m.size(), &m};
    t_guard = &range;
    // The handler must see the guard before any read of the mapping: no compiler reordering.
    std::atomic_signal_fence(std::memory_order_seq_cst);
}

MappedReadGuard::~MappedReadGuard() {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    t_guard = nullptr;
}

FileMapping::~FileMapping() {
    ::munmap(const_cast<uint8_t*>(data_), size_);
}

MappingCache::MappingCache(std::size_t limit_bytes) : limit_(limit_bytes) {}

// In a forked child the parent's state (and its mappings) is left behind, unused: ForkLocal.
MappingCache::~MappingCache() = default;

void MappingCache::evict_to(State& s, std::size_t limit, std::vector<MappingRef>& evicted) {
    // Each evicted file is unmapped when `evicted` goes (outside the lock), or when the last
    // read using it ends.
    while (!s.lru.empty() && (s.mapped > limit || s.lru.size() > kMaxMappedFiles)) {
        evicted.push_back(std::move(s.lru.back().second));
        s.mapped -= evicted.back()->size();
        s.index.erase(s.lru.back().first);
        s.lru.pop_back();
    }
}

MappingRef MappingCache::get(const ChunkFile& file) {
    const std::size_t limit = limit_.load(std::memory_order_relaxed);
    const std::size_t size = file.file_size();
    if (limit == 0 || !file.is_open() || size == 0 || size > limit) return nullptr;
    ensure_sigbus_handler();
    State& s = state();
    MappingRef stale;  // released after the lock
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        auto it = s.index.find(file.path());
        if (it != s.index.end()) {
            if (it->second->second->same_file(file.dev(), file.ino(), size)) {
                ++s.hits;
                s.lru.splice(s.lru.begin(), s.lru, it->second);
                return it->second->second;
            }
            stale = std::move(it->second->second);  // replaced, resized or damaged
            s.mapped -= stale->size();
            s.lru.erase(it->second);
            s.index.erase(it);
        }
        ++s.misses;
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, file.fd(), 0);
    if (p == MAP_FAILED) return nullptr;  // e.g. a file system without mmap: pread instead
    auto m =
        std::make_shared<FileMapping>(static_cast<const uint8_t*>(p), size, file.dev(), file.ino());
    std::vector<MappingRef> evicted;
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        if (s.index.count(file.path()) != 0) return m;  // another thread mapped it meanwhile
        s.lru.emplace_front(file.path(), m);
        s.index.emplace(file.path(), s.lru.begin());
        s.mapped += size;
        evict_to(s, limit_.load(std::memory_order_relaxed), evicted);
    }
    return m;
}

void MappingCache::set_limit(std::size_t bytes) {
    limit_.store(bytes, std::memory_order_relaxed);
    State& s = state();
    std::vector<MappingRef> evicted;
    std::lock_guard<std::mutex> lock(s.mutex);
    evict_to(s, bytes, evicted);  // limit 0 evicts everything
}

void MappingCache::clear() {
    State& s = state();
    std::list<std::pair<std::string, MappingRef>> dropped;
    std::lock_guard<std::mutex> lock(s.mutex);
    dropped.swap(s.lru);
    s.index.clear();
    s.mapped = 0;
    s.hits = 0;
    s.misses = 0;
}

MapStats MappingCache::stats() {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    MapStats st;
    st.limit = limit();
    st.mapped = s.mapped;
    st.files = s.lru.size();
    st.hits = s.hits;
    st.misses = s.misses;
    return st;
}

MappingCache& process_mappings() {
    static MappingCache* cache = new MappingCache(kDefaultMapLimit);  // never destroyed
    return *cache;
}

}  // namespace zarrcrop
