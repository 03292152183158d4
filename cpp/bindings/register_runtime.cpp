// Process-wide runtime: thread pool, file mapping and index cache settings, library versions.
#include <unistd.h>

#include <cstdint>

#include "../core/codec/bitshuffle.hpp"
#include "../core/codec/blosc_decoder.hpp"
#include "../core/codec/codecs.hpp"
#include "../core/io/chunk_source.hpp"
#include "../core/errors.hpp"
#include "../core/io/file_map.hpp"
#include "../core/io/read_queue.hpp"
#include "../core/stitch/stitcher.hpp"
#include "../core/runtime/thread_pool.hpp"
#include "../core/io/shard_index.hpp"
#include "../core/runtime/worker_scratch.hpp"
#include "bindings.hpp"
#include "native_call.hpp"

void register_runtime(py::module_& m) {
    m.def("set_num_threads", &zarrcrop::set_num_threads, py::arg("n"),
          "Size the native thread pool (the calling thread counts as one).");
    m.attr("MAX_THREADS") = zarrcrop::kMaxThreads;
    m.def("get_num_threads", &zarrcrop::get_num_threads,
          "Size of the native thread pool (default: CPUs in this process's affinity mask).");
    m.def("available_cpus", &zarrcrop::available_cpus,
          "CPUs this process may run on (sched_getaffinity).");
    m.def(
        "set_map_limit", [](std::size_t nbytes) { zarrcrop::process_mappings().set_limit(nbytes); },
        py::arg("nbytes"),
        "Most bytes of chunk files kept mapped between reads (0: read with pread only).");
    m.def(
        "get_map_limit", [] { return zarrcrop::process_mappings().limit(); },
        "Most bytes of chunk files kept mapped between reads.");
    m.attr("DEFAULT_MAP_LIMIT") = zarrcrop::kDefaultMapLimit;
    m.def(
        "map_info",
        [] {
            const zarrcrop::MapStats st = zarrcrop::process_mappings().stats();
            py::dict d;
            d["limit"] = st.limit;
            d["mapped"] = st.mapped;
            d["files"] = st.files;
            d["hits"] = st.hits;
            d["misses"] = st.misses;
            return d;
        },
        "Mapped chunk files: limit and mapped bytes, files held, hits and misses.");
    m.def(
        "clear_maps", [] { zarrcrop::process_mappings().clear(); },
        "Unmap every chunk file held (each once no read uses it) and reset the counters.");
    m.def(
        "set_index_cache_limit",
        [](std::size_t nbytes) { zarrcrop::process_shard_indexes().set_limit(nbytes); },
        py::arg("nbytes"), "Most bytes of parsed shard indexes kept between reads.");
    m.def(
        "get_index_cache_limit", [] { return zarrcrop::process_shard_indexes().limit(); },
        "Most bytes of parsed shard indexes kept between reads.");
    m.attr("DEFAULT_INDEX_CACHE_LIMIT") = zarrcrop::kDefaultIndexCacheLimit;
    m.def(
        "index_cache_info",
        [] {
            const zarrcrop::IndexCacheStats st = zarrcrop::process_shard_indexes().stats();
            py::dict d;
            d["limit"] = st.limit;
            d["size"] = st.size;
            d["entries"] = st.entries;
            d["hits"] = st.hits;
            d["misses"] = st.misses;
            return d;
        },
        "Parsed shard indexes held: limit and size in bytes, entries, hits and misses.");
    m.def(
        "clear_index_cache", [] { zarrcrop::process_shard_indexes().clear(); },
        "Drop every parsed shard index held and reset the counters.");
    m.def(
        "set_io_threads",
        [](std::size_t n) {
            if (n < 1 || n > zarrcrop::kMaxThreads)
                throw std::invalid_argument("number of I/O threads must be between 1 and " +
                                            std::to_string(zarrcrop::kMaxThreads));
            zarrcrop::ReadQueueSettings s = zarrcrop::get_read_queue();
            s.threads = n;
            zarrcrop::set_read_queue(s);
        },
        py::arg("n"), "Reads from the device in flight at most (the I/O threads).");
    m.def(
        "get_io_threads", [] { return zarrcrop::get_read_queue().threads; },
        "Reads from the device in flight at most (the I/O threads).");
    m.attr("SCRATCH_KEEP_BYTES") = zarrcrop::kKeepScratchBytes;
    m.attr("blosc_version") = zarrcrop::blosc_library_version();
    m.def("gzip_available", &zarrcrop::gzip_available,
          "Whether gzip chunks can be decoded natively (the bundled zlib-ng is version 2).");
}
