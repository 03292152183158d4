#include "thread_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>

namespace zarrcrop {

namespace {

// How long a thread polls before it blocks: an idle worker for the next job, a caller for its
// job's last task. Waking a sleeping thread costs tens of microseconds on a virtual machine
// (futex wake, then the other vCPU must be scheduled), a noticeable part of a crop that
// decodes in about 4 ms; polling this long costs little when no read follows.
constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Polls `ready` for up to kSpin; true when it became true. Between polls the thread yields
// its core (sched_yield), so that when there are more runnable threads than cores (a pool
// larger than the CPUs, or several processes with pools, as with DataLoader workers) polling
// does not take time from threads with work; on an idle core the yield returns at once.
template <typename Ready>
bool spin_until(Ready ready) {
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (ready()) return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= deadline) return ready();
        sched_yield();
    }
}

}  // namespace

struct ThreadPool::Job {
    const std::function<void(std::size_t)>* fn = nullptr;
    std::size_t n = 0;
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> finished{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::condition_variable done;
    std::exception_ptr error;
};

ThreadPool::ThreadPool(std::size_t size) : size_(size < 1 ? 1 : size) {}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::start_workers() {
    // Called with mutex_ held.
    while (workers_.size() + 1 < size_) workers_.emplace_back([this] { worker_loop(); });
}

void ThreadPool::run_tasks(Job& job) {
    for (;;) {
        const std::size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= job.n) return;
        if (!job.failed.load(std::memory_order_relaxed)) {
            try {
                (*job.fn)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(job.mutex);
                if (!job.error) job.error = std::current_exception();
                job.failed.store(true, std::memory_order_relaxed);
            }
        }
        if (job.finished.fetch_add(1, std::memory_order_acq_rel) + 1 == job.n) {
            std::lock_guard<std::mutex> lock(job.mutex);
            job.done.notify_all();
        }
    }
}

void ThreadPool::worker_loop() {
    for (;;) {
        std::shared_ptr<Job> job;
        spin_until([this] { return queued_.load(std::memory_order_acquire) > 0; });
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            job = queue_.front();
            if (job->next.load(std::memory_order_relaxed) >= job->n) {
                queue_.pop_front();  // fully claimed; its owner waits for completion
                queued_.store(queue_.size(), std::memory_order_release);
                continue;
            }
        }
        run_tasks(*job);
    }
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
    if (n == 0) return;
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n = n;
    if (size_ > 1 && n > 1) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            start_workers();
            queue_.push_back(job);
            queued_.store(queue_.size(), std::memory_order_release);
        }
        wake_.notify_all();
    }
    run_tasks(*job);
    spin_until([&] { return job->finished.load(std::memory_order_acquire) == n; });
    {
        std::unique_lock<std::mutex> lock(job->mutex);
        job->done.wait(lock, [&] { return job->finished.load(std::memory_order_acquire) == n; });
    }
    if (size_ > 1 && n > 1) {
        // Drop the job from the queue if no worker has done so, so it does not outlive fn.
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
            if (*it == job) {
                queue_.erase(it);
                queued_.store(queue_.size(), std::memory_order_release);
                break;
            }
        }
    }
    if (job->error) std::rethrow_exception(job->error);
}

std::size_t available_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return static_cast<std::size_t>(n);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw > 0 ? hw : 1;
}

namespace {

// Process-wide state. It is replaced (and the old one deliberately leaked) in a forked child:
// the parent's mutex may have been held and its worker threads do not exist there.
struct PoolRegistry {
    std::mutex mutex;
    std::shared_ptr<ThreadPool> pool;
    std::atomic<std::size_t> nthreads{0};  // 0 = not chosen yet: available_cpus()
};

std::atomic<PoolRegistry*> g_registry{new PoolRegistry()};

void reset_after_fork() {
    PoolRegistry* old = g_registry.load();
    auto* fresh = new PoolRegistry();
    fresh->nthreads.store(old->nthreads.load());
    g_registry.store(fresh);
    // `old` is leaked on purpose: destroying it would join threads that do not exist here.
}

PoolRegistry& registry() {
    static const int registered = pthread_atfork(nullptr, nullptr, reset_after_fork);
    (void)registered;
    return *g_registry.load();
}

}  // namespace

std::shared_ptr<ThreadPool> process_pool() {
    PoolRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    std::size_t want = r.nthreads.load();
    if (want == 0) want = available_cpus();
    if (!r.pool || r.pool->size() != want) r.pool = std::make_shared<ThreadPool>(want);
    return r.pool;
}

void set_num_threads(std::size_t n) {
    if (n < 1 || n > kMaxThreads)
        throw std::invalid_argument("number of threads must be between 1 and " +
                                    std::to_string(kMaxThreads));
    PoolRegistry& r = registry();
    std::shared_ptr<ThreadPool> old;
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        r.nthreads.store(n);
        if (r.pool && r.pool->size() != n) old.swap(r.pool);
    }
    // `old` is joined here (or by the last reader still using it), outside the lock.
}

std::size_t get_num_threads() {
    const std::size_t n = registry().nthreads.load();
    return n == 0 ? available_cpus() : n;
}

}  // namespace zarrcrop
