#include "runtime/thread_pool.hpp"

#include "runtime/worker_scratch.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>

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

// The shortfall message of the last pool that could not start all its threads, until taken.
// An atomic pointer, not a mutex: nothing a forked child could find locked.
std::atomic<std::string*> g_thread_warning{nullptr};

void note_thread_shortfall(std::size_t started, std::size_t wanted, const std::string& why) {
    auto* text =
        new std::string("zarrcrop: could only start " + std::to_string(started) + " of " +
                        std::to_string(wanted) + " native threads (" + why + "); reading with " +
                        std::to_string(started) + " (zarrcrop.set_num_threads sets the number)");
    delete g_thread_warning.exchange(text, std::memory_order_acq_rel);
}

}  // namespace

bool thread_warning_pending() {
    return g_thread_warning.load(std::memory_order_acquire) != nullptr;
}

std::string take_thread_warning() {
    std::unique_ptr<std::string> text(
        g_thread_warning.exchange(nullptr, std::memory_order_acq_rel));
    return text ? *text : std::string();
}

struct ThreadPool::Job {
    const std::function<void(std::size_t)>* fn = nullptr;
    const CancelFlags* cancel = nullptr;
    std::size_t n = 0;
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> finished{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::condition_variable done;
    std::exception_ptr error;
};

ThreadPool::ThreadPool(std::size_t size, void (*idle)())
    : requested_(size < 1 ? 1 : size), size_(requested_), idle_(idle) {}

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
    const std::size_t wanted = size();
    while (workers_.size() + 1 < wanted) {
        try {
            workers_.emplace_back([this] { worker_loop(); });
        } catch (const std::system_error& e) {
            // EAGAIN (thread or memory limits): run with the threads there are, from now on.
            size_.store(workers_.size() + 1, std::memory_order_relaxed);
            note_thread_shortfall(workers_.size() + 1, wanted, e.code().message());
            return;
        }
    }
}

void ThreadPool::run_tasks(Job& job) {
    for (;;) {
        const std::size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= job.n) return;
        if (!job.failed.load(std::memory_order_relaxed)) {
            try {
                if (job.cancel != nullptr) job.cancel->check();
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
        const bool busy =
            spin_until([this] { return queued_.load(std::memory_order_acquire) > 0; });
        if (!busy && idle_ != nullptr) idle_();  // about to sleep: e.g. give back scratch
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

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn,
                              const CancelFlags* cancel) {
    if (n == 0) return;
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->cancel = cancel;
    job->n = n;
    const bool shared = size() > 1 && n > 1;
    if (shared) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            start_workers();
            queue_.push_back(job);
            queued_.store(queue_.size(), std::memory_order_release);
        }
        wake_.notify_all();
    }
    run_tasks(*job);
    const auto all_done = [&] { return job->finished.load(std::memory_order_acquire) == n; };
    if (!spin_until(all_done)) {
        std::unique_lock<std::mutex> lock(job->mutex);
        if (cancel == nullptr || cancel->poll == nullptr) {
            job->done.wait(lock, all_done);
        } else {
            // Poll while waiting too, so an interrupt is seen however long the last tasks take.
            while (!job->done.wait_for(lock, std::chrono::milliseconds(2), all_done)) {
                lock.unlock();
                cancel->poll_here();
                lock.lock();
            }
        }
    }
    if (shared) {
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
    if (!r.pool || r.pool->requested() != want)
        r.pool = std::make_shared<ThreadPool>(want, &release_thread_scratch);
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
        if (r.pool && r.pool->requested() != n) old.swap(r.pool);
    }
    // `old` is joined here (or by the last reader still using it), outside the lock.
}

std::size_t get_num_threads() {
    const std::size_t n = registry().nthreads.load();
    return n == 0 ? available_cpus() : n;
}

}  // namespace zarrcrop
