// Leak check over repeated reads through zarrcrop_core, for LeakSanitizer (ASan build,
// ASAN_OPTIONS=detect_leaks=1) and valgrind (plain build, --leak-check=full
// --errors-for-leak-kinds=definite,indirect --error-exitcode=1).
//
//   python fuzz/native/make_inputs.py arrays DIR && leak_check DIR [ROUNDS]
//
// Reads the arrays make_inputs.py writes, ROUNDS times over (default 20): full reads (checked
// against the values make_inputs.py wrote), partial and strided crops, read_crops batches
// (in bounds and reaching outside with fill), the same with the decoded-chunk cache on, and
// reads of damaged chunks whose ChunkError / ChunkIoError is caught. Readers are created and
// destroyed every round. Exits 1 on a wrong value or an unexpected outcome; leaks are the
// tools' business. Prints the number of reads done.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors.hpp"
#include "reader.hpp"
#include "runtime/thread_pool.hpp"

using zarrcrop::ArraySpec;
using zarrcrop::Codec;
using zarrcrop::CropReader;
using zarrcrop::DimSelection;

namespace {

long g_reads = 0;
long g_errors = 0;

[[noreturn]] void fail(const std::string& why) {
    std::fprintf(stderr, "leak_check: FAILED: %s\n", why.c_str());
    std::exit(1);
}

ArraySpec make_spec(const std::string& root, const std::string& name) {
    ArraySpec s;
    s.name = name;
    s.root = root + "/" + name;
    if (name.rfind("v2_blosc", 0) == 0) {
        s.shape = {150, 200};
        s.chunks = {64, 64};
        s.itemsize = 2;
        s.codecs = {Codec::Blosc};
    } else if (name == "v2_raw") {
        s.shape = {50, 70};
        s.chunks = {16, 32};
        s.itemsize = 4;
    } else {  // v3_shard, v3_shard_bad
        s.shape = {96, 96};
        s.chunks = {16, 16};
        s.shard_shape = {64, 64};
        s.itemsize = 1;
        s.codecs = {Codec::Zstd};
        s.keys.prefix = "c";
        s.keys.separator = '/';
    }
    s.fill_value.assign(s.itemsize, 0);
    return s;
}

// The value make_inputs.py wrote at (i, j), as little-endian unsigned.
uint64_t expected(int64_t i, int64_t j, std::size_t itemsize) {
    const uint64_t v = static_cast<uint64_t>(131 * i + 7 * j);
    return itemsize >= 4 ? v : v % (uint64_t{1} << (8 * itemsize));
}

uint64_t load(const uint8_t* p, std::size_t itemsize) {
    uint64_t v = 0;
    for (std::size_t k = itemsize; k-- > 0;) v = (v << 8) | p[k];
    return v;
}

void read(const CropReader& r, const std::vector<DimSelection>& sel, std::vector<uint8_t>& out) {
    std::size_t n = r.spec().itemsize;
    for (const auto& s : sel) n *= static_cast<std::size_t>(s.count);
    out.assign(n, 0);
    r.read(sel, out.data(), out.size());
    ++g_reads;
}

void check_selection(const CropReader& r, const std::vector<DimSelection>& sel) {
    std::vector<uint8_t> out;
    read(r, sel, out);
    const std::size_t is = r.spec().itemsize;
    for (int64_t a = 0; a < sel[0].count; ++a)
        for (int64_t b = 0; b < sel[1].count; ++b) {
            const int64_t i = sel[0].start + a * sel[0].step;
            const int64_t j = sel[1].start + b * sel[1].step;
            const uint64_t got = load(out.data() + (a * sel[1].count + b) * is, is);
            if (got != expected(i, j, is))
                fail(r.spec().name + ": wrong value at (" + std::to_string(i) + ", " +
                     std::to_string(j) + ")");
        }
}

void good_reads(const CropReader& r) {
    const auto& shape = r.spec().shape;
    check_selection(r, {{0, 1, shape[0]}, {0, 1, shape[1]}});
    check_selection(r, {{3, 1, 20}, {5, 1, 40}});
    check_selection(r, {{shape[0] - 1, -2, shape[0] / 2}, {1, 3, (shape[1] - 2) / 3}});
    check_selection(r, {{7, 1, 1}, {9, 1, 1}});
    // read_crops: a batch sharing chunks, and one reaching outside with fill.
    const std::vector<int64_t> crop = {17, 23};
    const std::size_t crop_bytes = 17 * 23 * r.spec().itemsize;
    std::vector<int64_t> starts;
    for (int k = 0; k < 8; ++k) {
        starts.push_back((k * 13) % (shape[0] - crop[0]));
        starts.push_back((k * 29) % (shape[1] - crop[1]));
    }
    std::vector<uint8_t> out(8 * crop_bytes);
    r.read_crops(starts.data(), 8, crop, out.data(), out.size(), false, nullptr);
    ++g_reads;
    for (int k = 0; k < 8; ++k) {
        const uint8_t* c = out.data() + k * crop_bytes;
        if (load(c, r.spec().itemsize) !=
            expected(starts[2 * k], starts[2 * k + 1], r.spec().itemsize))
            fail(r.spec().name + ": read_crops returned a wrong value");
    }
    const std::vector<int64_t> outside = {-5, -5, shape[0] - 10, shape[1] - 3};
    std::vector<uint8_t> fout(2 * crop_bytes);
    r.read_crops(outside.data(), 2, crop, fout.data(), fout.size(), true,
                 r.spec().fill_value.data());
    ++g_reads;
    // Documented argument errors.
    try {
        r.read_crops(outside.data(), 2, crop, fout.data(), fout.size(), false, nullptr);
        fail("a crop outside the array did not throw");
    } catch (const std::out_of_range&) {
        ++g_errors;
    }
    try {
        std::vector<uint8_t> small(1);
        r.read({{0, 1, 2}, {0, 1, 2}}, small.data(), small.size());
        fail("a wrong output size did not throw");
    } catch (const std::invalid_argument&) {
        ++g_errors;
    }
}

// Every read touches a damaged chunk and must throw ChunkError or ChunkIoError.
void bad_reads(const CropReader& r) {
    const auto& shape = r.spec().shape;
    const std::vector<std::vector<DimSelection>> sels = {
        {{0, 1, shape[0]}, {0, 1, shape[1]}},
        {{0, 1, 10}, {0, 1, 10}},
        {{70, 1, 10}, {70, 1, 10}},
        {{2, 2, 30}, {3, 1, 5}},
    };
    for (const auto& sel : sels) {
        try {
            std::vector<uint8_t> out;
            read(r, sel, out);
            fail(r.spec().name + ": a read of a damaged chunk did not throw");
        } catch (const zarrcrop::ChunkError&) {
            ++g_errors;
        } catch (const zarrcrop::ChunkIoError&) {
            ++g_errors;
        }
    }
    const std::vector<int64_t> starts = {0, 0, 60, 60, 5, 70};
    const std::vector<int64_t> crop = {10, 10};
    std::vector<uint8_t> out(3 * 100 * r.spec().itemsize);
    try {
        r.read_crops(starts.data(), 3, crop, out.data(), out.size(), false, nullptr);
        ++g_reads;
        fail(r.spec().name + ": read_crops of damaged chunks did not throw");
    } catch (const zarrcrop::ChunkError&) {
        ++g_errors;
    } catch (const zarrcrop::ChunkIoError&) {
        ++g_errors;
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: leak_check ARRAYS_DIR [ROUNDS]  (make_inputs.py arrays)\n");
        return 2;
    }
    const std::string root = argv[1];
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 20;
    try {
        for (int round = 0; round < rounds; ++round) {
            // Alternate one and two threads (the two-thread pool splits single-chunk reads).
            zarrcrop::set_num_threads(1 + round % 2);
            for (const char* name : {"v2_blosc", "v2_raw", "v3_shard"}) {
                for (std::size_t cache : {std::size_t{0}, std::size_t{1} << 20}) {
                    CropReader r(make_spec(root, name), cache);
                    good_reads(r);
                    if (cache) good_reads(r);  // served from the cache
                }
            }
            for (const char* name : {"v2_blosc_bad", "v3_shard_bad"}) {
                for (std::size_t cache : {std::size_t{0}, std::size_t{1} << 20}) {
                    CropReader r(make_spec(root, name), cache);
                    bad_reads(r);
                }
            }
        }
    } catch (const std::exception& e) {
        fail(std::string("unexpected exception: ") + e.what());
    }
    std::printf("leak_check: %d rounds, %ld reads (%ld of them raised the expected error)\n",
                rounds, g_reads + g_errors, g_errors);
    return 0;
}
