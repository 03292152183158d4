#include "io/fetch_ahead.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "io/read_queue.hpp"
#include "runtime/fork_local.hpp"

namespace zarrcrop {

namespace {

class AheadThreads {
public:
    AheadThreads() = default;
    ~AheadThreads() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            queue_.clear();
        }
        wake_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    AheadThreads(const AheadThreads&) = delete;
    AheadThreads& operator=(const AheadThreads&) = delete;

    void push(std::function<void()> task) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            queue_.push_back(std::move(task));
            // A thread for every task waiting, up to the depth (each mostly waits on the network).
            if (idle_ < queue_.size() && threads_.size() < kRemoteReadDepth) {
                try {
                    threads_.emplace_back([this] { loop(); });
                } catch (const std::system_error&) {
                    if (threads_.empty()) {
                        queue_.pop_back();
                        throw;
                    }
                }
            }
        }
        wake_.notify_one();
    }

    void wait_idle() {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return queue_.empty() && running_ == 0; });
    }

private:
    void loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            ++idle_;
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            --idle_;
            if (stopping_) return;
            std::function<void()> task = std::move(queue_.front());
            queue_.pop_front();
            ++running_;
            lock.unlock();
            try {
                task();
            } catch (...) {
                // The read that needs these bytes fetches them and reports what failed.
            }
            task = nullptr;  // what it holds is released outside the lock
            lock.lock();
            --running_;
            if (queue_.empty() && running_ == 0) done_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    std::deque<std::function<void()>> queue_;
    std::vector<std::thread> threads_;
    std::size_t idle_ = 0;
    std::size_t running_ = 0;
    bool stopping_ = false;
};

ForkLocal<AheadThreads>& ahead_threads() {
    static ForkLocal<AheadThreads> threads;
    return threads;
}

}  // namespace

void run_ahead(std::function<void()> task) {
    ahead_threads().get().push(std::move(task));
}

void wait_ahead_idle() {
    ahead_threads().get().wait_idle();
}

}  // namespace zarrcrop
