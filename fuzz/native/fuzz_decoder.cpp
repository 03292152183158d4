// libFuzzer target over zarrcrop's C++ chunk decoder and planner (see fuzz_input.hpp for the
// input format). The payload is written as a chunk or shard file in a temporary directory
// (under /dev/shm when it exists) and read through CropReader: the whole array, a strided
// selection, and read_crops (in bounds, and reaching outside with fill). Errors the core
// documents for malformed chunks or arguments (zarrcrop::ChunkError, ChunkIoError,
// std::invalid_argument, std::out_of_range) are expected; any other exception aborts, and
// sanitizer reports and crashes are findings. Every read runs twice into outputs prefilled
// differently: a successful read that leaves any output byte unwritten is a finding too.
//
//   fuzz_decoder CORPUS_DIR -max_total_time=60
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors.hpp"
#include "fuzz_input.hpp"
#include "reader.hpp"
#include "runtime/thread_pool.hpp"

namespace {

std::string g_root;
std::vector<std::string> g_written;  // files of the previous input

void write_file(const std::string& path, const uint8_t* data, std::size_t size) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) std::abort();
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::write(fd, data + done, size - done);
        if (n <= 0) std::abort();
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
}

void mkdirs(const std::string& dir) {
    std::string cur;
    for (std::size_t i = 0; i <= dir.size(); ++i) {
        if (i == dir.size() || dir[i] == '/') {
            if (!cur.empty()) ::mkdir(cur.c_str(), 0755);
        }
        if (i < dir.size()) cur += dir[i];
    }
}

// Runs one read; swallows only the documented errors.
// True when f returned; false when it threw a documented error (anything else aborts).
template <class F>
bool expect_documented_errors(F&& f) {
    try {
        f();
        return true;
    } catch (const zarrcrop::ChunkError&) {
    } catch (const zarrcrop::ChunkIoError&) {
    } catch (const std::invalid_argument&) {
    } catch (const std::out_of_range&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_decoder: undocumented exception: %s\n", e.what());
        std::abort();
    }
    return false;
}

// The invariant that a read never returns output it did not write: `read` runs twice, into
// buffers prefilled with 0x00 and with 0xFF; both must end alike, and when they succeed
// every byte must agree (a byte no stitch or fill wrote keeps its prefill).
template <class Read>
void read_checked(std::size_t nbytes, Read&& read) {
    std::vector<uint8_t> zeros(nbytes, 0x00);
    std::vector<uint8_t> ones(nbytes, 0xFF);
    const bool first = expect_documented_errors([&] { read(zeros.data(), zeros.size()); });
    const bool second = expect_documented_errors([&] { read(ones.data(), ones.size()); });
    if (first != second) {
        std::fprintf(stderr, "fuzz_decoder: two reads of the same input ended differently\n");
        std::abort();
    }
    if (first && zeros != ones) {
        std::fprintf(stderr, "fuzz_decoder: a read returned output bytes it never wrote\n");
        std::abort();
    }
}

std::size_t product(const std::vector<int64_t>& v, std::size_t itemsize) {
    std::size_t n = itemsize;
    for (int64_t x : v) n *= static_cast<std::size_t>(x);
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/zarrcrop-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    g_root = tmpl;
    // Two threads: single-chunk reads split their blocks over the pool (process_split).
    zarrcrop::set_num_threads(2);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size < zarrcrop_fuzz::kHeaderBytes) return -1;  // not added to the corpus
    // One directory per kind of key ("0.1", "c/0/1", ...): a key of one dimensionality may be a
    // directory of another.
    const std::string dir =
        g_root + "/" + std::to_string(data[0] % 6 == 5 ? 10 : 0) + std::to_string(1 + data[2] % 3);
    // No file of the previous input survives.
    for (const std::string& path : g_written) ::unlink(path.c_str());
    g_written.clear();
    zarrcrop_fuzz::FuzzCase fc = zarrcrop_fuzz::decode_header(data, dir);
    const uint8_t* payload = data + zarrcrop_fuzz::kHeaderBytes;
    const std::size_t payload_size = size - zarrcrop_fuzz::kHeaderBytes;
    for (const std::string& key : fc.keys) {
        const std::string path = dir + "/" + key;
        mkdirs(path.substr(0, path.rfind('/')));
        write_file(path, payload, payload_size);
        g_written.push_back(path);
    }

    const std::size_t itemsize = fc.spec.itemsize;
    zarrcrop::CropReader reader(fc.spec, fc.cache ? (1u << 20) : 0);
    const auto& spec = reader.spec();
    const std::size_t ndim = spec.ndim();

    // With the cache on, the second of each pair of reads is served from it.
    std::vector<zarrcrop::DimSelection> all;
    for (int64_t n : spec.shape) all.push_back({0, 1, n});
    read_checked(product(spec.shape, itemsize),
                 [&](uint8_t* out, std::size_t n) { reader.read(all, out, n); });
    std::vector<int64_t> counts;
    for (const auto& s : fc.selection) counts.push_back(s.count);
    read_checked(product(counts, itemsize),
                 [&](uint8_t* out, std::size_t n) { reader.read(fc.selection, out, n); });
    const std::size_t crop_bytes = product(fc.crop_shape, itemsize);
    // The first two crops, in bounds unless the crop shape is too large.
    read_checked(2 * crop_bytes, [&](uint8_t* out, std::size_t n) {
        reader.read_crops(fc.crop_starts.data(), 2, fc.crop_shape, out, n, false, nullptr);
    });
    read_checked(3 * crop_bytes, [&](uint8_t* out, std::size_t n) {
        reader.read_crops(fc.crop_starts.data(), 3, fc.crop_shape, out, n, true,
                          spec.fill_value.data());
    });
    // The planner alone, with the selection shifted past the end (must throw out_of_range).
    std::vector<zarrcrop::DimSelection> shifted = fc.selection;
    shifted[ndim - 1].start += spec.shape[ndim - 1];
    expect_documented_errors([&] { zarrcrop::ChunkPlan plan(spec, shifted); });
    return 0;
}
