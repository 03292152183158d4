// A small fork-aware thread pool. parallel_for() runs tasks on the workers *and* the calling
// thread, so a pool of size n gives n-way parallelism with n-1 worker threads, and several
// callers (Python threads) can share one pool without deadlock: each caller always makes
// progress on its own tasks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/cancel.hpp"

namespace zarrcrop {

class ThreadPool {
public:
    // `idle` (may be null) runs on a worker each time it is about to sleep for want of work.
    explicit ThreadPool(std::size_t size, void (*idle)() = nullptr);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    // Threads that run tasks, the caller's included. Less than asked for when the system
    // refused to start some (see take_thread_warning).
    std::size_t size() const { return size_.load(std::memory_order_relaxed); }
    // The size it was created with.
    std::size_t requested() const { return requested_; }

    // Calls fn(i) for every i in [0, n) and returns when all calls have finished. If a call
    // throws, tasks not yet started are skipped and the first exception is rethrown here, on
    // the calling thread, after every started task has ended. When `cancel` is raised, tasks
    // not yet started are skipped the same way and Cancelled is thrown.
    void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn,
                      const CancelFlags* cancel = nullptr);

private:
    struct Job;
    void start_workers();
    void worker_loop();
    static void run_tasks(Job& job);

    const std::size_t requested_;
    std::atomic<std::size_t> size_;
    void (*idle_)();
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::shared_ptr<Job>> queue_;
    // queue_.size(), readable without the lock: idle workers watch it for a short while
    // before they sleep, so that back-to-back reads find them awake.
    std::atomic<std::size_t> queued_{0};
    std::vector<std::thread> workers_;
    bool stopping_ = false;
};

// The process-wide pool used by readers. Created lazily; after fork() the child gets a fresh
// pool on first use (the parent's worker threads do not exist in the child, so the old pool is
// abandoned, never joined).
std::shared_ptr<ThreadPool> process_pool();
constexpr std::size_t kMaxThreads = 1024;
void set_num_threads(std::size_t n);  // 1 <= n <= kMaxThreads
// The size asked for (set_num_threads, or the CPUs); the pool may run fewer (see below).
std::size_t get_num_threads();
// A message, once, when a pool could not start all the threads it was asked for (it then runs
// with those it has); empty otherwise. thread_warning_pending() is a cheap check for it.
bool thread_warning_pending();
std::string take_thread_warning();
// Number of CPUs this process may run on (sched_getaffinity), at least 1.
std::size_t available_cpus();

}  // namespace zarrcrop
